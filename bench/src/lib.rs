//! kubermesh benchmarks.

pub mod agents;
