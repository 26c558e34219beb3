//! `cargo xtask test`: everything CI checks, in the order that fails fastest.

use anyhow::Result;

use crate::cargo::{cargo, run as run_cmd};

/// Run formatting, clippy and all tests; fail on the first failing step.
pub fn run(test_args: &[String]) -> Result<()> {
    step("cargo fmt --check");
    run_cmd(
        cargo().args(["fmt", "--all", "--check"]),
        "formatting check (run `cargo fmt --all`)",
    )?;

    step("cargo clippy (host crates, eBPF stub)");
    run_cmd(
        cargo().args([
            "clippy",
            "--workspace",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ]),
        "clippy",
    )?;

    step("cargo clippy (eBPF programs, bpfel-unknown-none)");
    run_cmd(
        cargo()
            .env("RUSTC_BOOTSTRAP", "1")
            .args([
                "clippy",
                "--package",
                "meshfwd-ebpf",
                "--package",
                "bench-ebpf",
            ])
            .arg("--release")
            .args(["--target", "bpfel-unknown-none", "-Z", "build-std=core"])
            .args(["--", "-D", "warnings"]),
        "clippy on the eBPF programs",
    )?;

    step("cargo test (unit, simulation, eBPF test-run, namespace and interop tests)");
    let mut test = cargo();
    test.args([
        "test",
        "--workspace",
        "--exclude",
        "meshfwd-ebpf",
        "--exclude",
        "bench-ebpf",
        "--no-fail-fast",
    ]);
    if !test_args.is_empty() {
        test.arg("--").args(test_args);
    }
    run_cmd(&mut test, "tests")?;
    println!("xtask test: all checks passed");
    Ok(())
}

fn step(what: &str) {
    println!("==> {what}");
}
