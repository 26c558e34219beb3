//! kubermesh benchmarks.
