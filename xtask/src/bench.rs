//! `cargo xtask bench NAME`: run one benchmark harness from the `bench`
//! crate in release mode. Results are written under `bench/results/` by the
//! harness itself, together with the command that produced them.

use anyhow::{Result, bail};

use crate::cargo::{cargo, run};

/// The benchmarks, with the harness that runs each.
const BENCHES: &[(&str, Harness, &str)] = &[
    (
        "forwarding",
        Harness::Bin,
        "XDP forwarding pps: kernel, fast path, ceiling",
    ),
    (
        "spf",
        Harness::Criterion,
        "SPF + routes on 1,000 and 10,000 routers",
    ),
    (
        "recovery",
        Harness::Bin,
        "probe loss on loud and silent cuts; join time",
    ),
    (
        "restart",
        Harness::Bin,
        "loss and broken TCP through a node and to and from its pod across agent restarts (SIGTERM, kill -9, upgrade)",
    ),
    (
        "pods",
        Harness::Bin,
        "pod to pod over 3 hops: fast path vs ptp baseline",
    ),
    (
        "agent_idle",
        Harness::Bin,
        "agent RSS and CPU at idle, 8 nodes and 1,000",
    ),
];

#[derive(Clone, Copy)]
enum Harness {
    /// A `[[bin]]` of the bench crate that takes `--json`.
    Bin,
    /// A criterion `[[bench]]` target.
    Criterion,
}

#[derive(Debug, clap::Args)]
pub struct Options {
    /// Which benchmark to run (`cargo xtask bench --list` lists them).
    name: Option<String>,
    /// List the benchmarks.
    #[arg(long)]
    list: bool,
    /// Print the results as JSON.
    #[arg(long)]
    json: bool,
    /// Extra arguments for the harness.
    #[arg(last = true)]
    args: Vec<String>,
}

/// Run the named benchmark.
pub fn run_bench(opts: &Options) -> Result<()> {
    let Some(name) = opts.name.as_deref().filter(|_| !opts.list) else {
        for (name, _, what) in BENCHES {
            println!("{name:<12} {what}");
        }
        return Ok(());
    };
    let Some((_, harness, _)) = BENCHES.iter().find(|(n, _, _)| *n == name) else {
        let names: Vec<&str> = BENCHES.iter().map(|(n, _, _)| *n).collect();
        bail!(
            "unknown benchmark {name:?}; choose one of: {}",
            names.join(", ")
        );
    };
    let mut cmd = cargo();
    cmd.env(
        "KUBERMESH_RESULTS_DIR",
        crate::cargo::workspace_root().join("bench").join("results"),
    );
    match harness {
        Harness::Bin => {
            cmd.args([
                "run",
                "--quiet",
                "--release",
                "--package",
                "bench",
                "--bin",
                name,
                "--",
            ]);
            if opts.json {
                cmd.arg("--json");
            }
        }
        Harness::Criterion => {
            cmd.args(["bench", "--package", "bench", "--bench", name, "--"]);
        }
    }
    cmd.args(&opts.args);
    run(&mut cmd, &format!("benchmark {name}"))
}
