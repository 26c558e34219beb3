//! `cargo xtask`: the project's chores, one subcommand each.
//!
//! `setup` installs what a bare Debian 12 machine lacks, `test` runs every
//! check CI runs, `demo` shows the lab mesh at work, `bench` runs the
//! benchmarks. `test` and `demo` run `setup` first, so a fresh clone needs
//! nothing else.

mod bench;
mod cargo;
mod demo;
mod setup;
mod test;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "cargo xtask",
    about = "kubermesh chores: setup, tests, the lab demo, benchmarks"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Install everything the project needs (idempotent; run as root).
    ///
    /// Checks each piece and installs only what is missing: Debian packages
    /// (LLVM 22, BIRD 2, FRR, containerd, runc, iperf3, bpftool, ...), the
    /// `rust-src` component, bpf-linker 0.13 built against LLVM 22, and a
    /// mounted bpffs. Prints one line per step.
    Setup,
    /// Run setup, formatting and clippy checks, then every test (as root).
    Test {
        /// Extra arguments passed to `cargo test` after `--` (e.g. a filter).
        #[arg(last = true)]
        test_args: Vec<String>,
    },
    /// The kubermesh lab demo: an 8-node mesh of agents in network
    /// namespaces joining, forwarding in XDP, healing cuts and losing a third
    /// of its nodes.
    Demo(demo::Options),
    /// Run a benchmark (setup first); results go to `bench/results/`.
    Bench(bench::Options),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Setup => setup::run(),
        Command::Test { test_args } => setup::run().and_then(|()| test::run(&test_args)),
        Command::Demo(opts) => setup::run().and_then(|()| demo::run(&opts)),
        Command::Bench(opts) => setup::run().and_then(|()| bench::run_bench(&opts)),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("xtask: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
