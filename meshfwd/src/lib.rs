//! The kubermesh node agent (`meshfwd`) as a library: the binary is a thin
//! `main` over [`cli`]; tests and benchmarks reuse the rest.
//!
//! Data flows OSPF (`routing`) -> RIB -> [`agent`] core -> [`fib`] (the map
//! writer) -> the pinned maps (`dataplane`) -> XDP/TC (`meshfwd-ebpf`).
//! [`api`] is the control socket's contract that `meshfwd show` and every
//! harness read.

pub mod agent;
pub mod api;
pub mod cli;
pub mod fib;
pub mod metrics;
