//! `cargo xtask demo`: build and run the lab demo, `bench`'s `demo`
//! binary (it reads the agents through the typed answers of
//! `meshfwd::api`, which xtask cannot link: xtask must build on a bare
//! machine, before setup has installed bpf-linker).

use anyhow::Result;

use crate::cargo::{cargo, run as run_cmd};

/// Options of the mesh demo.
#[derive(Debug, clap::Args)]
pub struct Options {
    /// Keep the lab running until Ctrl-C instead of tearing it down.
    #[arg(long)]
    keep: bool,
    /// Build and run the agent in release mode.
    #[arg(long)]
    release: bool,
}

/// Run the demo.
pub fn run(opts: &Options) -> Result<()> {
    let mut cmd = cargo();
    cmd.args(["run", "--quiet", "--package", "bench", "--bin", "demo"]);
    if opts.release {
        cmd.arg("--release");
    }
    cmd.arg("--");
    if opts.keep {
        cmd.arg("--keep");
    }
    run_cmd(&mut cmd, "the demo")
}
