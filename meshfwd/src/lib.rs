//! The kubermesh node agent (`meshfwd`) as a library: the binary is a thin
//! `main` over [`cli`], and tests and benchmarks reuse the loader directly.
//!
//! Data flow: [`ebpf`] loads the XDP program from `meshfwd-ebpf` and pins
//! its maps; [`stats`] reads the counters back.

pub mod agent;
pub mod cli;
pub mod cli_fib;
pub mod fib;
