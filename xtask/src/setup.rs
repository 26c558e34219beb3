//! `cargo xtask setup`: install what a bare Debian 12 machine lacks.
//!
//! Every step checks first and skips what is already there, so running it
//! again is cheap; `test` and `demo` run it before anything else. Each step
//! prints one line (on stderr, so `--json` output on stdout stays clean); a
//! failing step names itself and what to do by hand.

use std::{
    ffi::OsString,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, Result, bail};

/// Debian packages the project uses, with why.
const APT_PACKAGES: &[(&str, &str)] = &[
    ("llvm-22-dev", "LLVM 22 for bpf-linker"),
    ("libpolly-22-dev", "LLVM 22 for bpf-linker"),
    ("libzstd-dev", "LLVM 22 for bpf-linker"),
    ("zlib1g-dev", "LLVM 22 for bpf-linker"),
    ("iproute2", "ip, tc, bridge: the lab"),
    ("util-linux", "nsenter: the lab"),
    ("procps", "sysctl: the lab"),
    ("ethtool", "GRO on lab veths"),
    ("iputils-ping", "reachability checks"),
    ("python3", "raw frame sender in tests"),
    ("iperf3", "TCP streams in tests and benchmarks"),
    ("tcpdump", "packet captures"),
    ("bpftool", "inspecting maps and programs"),
    ("bird2", "OSPFv3 interop peer"),
    ("frr", "second OSPFv3 peer"),
    ("containerd", "CRI runtime for CNI tests"),
    ("runc", "OCI runtime for containerd"),
    (
        "containernetworking-plugins",
        "reference CNI plugins (baseline, loopback)",
    ),
    (
        "protobuf-compiler",
        "protoc for the CRI client in CNI tests",
    ),
    ("nftables", "kube-proxy-style Service rules in tests"),
    (
        "iptables",
        "kube-proxy's iptables mode and portmap in tests",
    ),
    ("conntrack", "conntrack entries in tests"),
    (
        "dnsmasq-base",
        "a real DNS server behind a ClusterIP in tests",
    ),
    ("socat", "TCP and UDP endpoints in tests"),
    (
        "bind9-dnsutils",
        "dig: DNS queries through a ClusterIP in tests",
    ),
    ("gcc", "static pause binary for CNI tests"),
    ("libc6-dev", "static pause binary for CNI tests"),
    ("fonts-dejavu-core", "TrueType font for benchmark plots"),
];

const BPF_LINKER_VERSION: &str = "0.13.0";
const LLVM_PREFIX: &str = "/usr/lib/llvm-22";

/// Run every setup step in order.
pub fn run() -> Result<()> {
    require_root()?;
    step("Debian packages", apt_packages)?;
    step("rust-src component", rust_src)?;
    step("bpf-linker", bpf_linker)?;
    step("bpffs at /sys/fs/bpf", bpffs)?;
    Ok(())
}

/// Return PATH with `~/.cargo/bin` (where `cargo install` puts binaries)
/// first, so bpf-linker is found even from a shell that lacks it.
pub fn path_with_cargo_bin() -> OsString {
    let mut dirs = vec![cargo_home().join("bin")];
    if let Some(path) = std::env::var_os("PATH") {
        dirs.extend(std::env::split_paths(&path));
    }
    std::env::join_paths(dirs).unwrap_or_default()
}

fn cargo_home() -> PathBuf {
    std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| "/root".into())).join(".cargo")
        })
}

/// What a step did, for its one line of output.
enum Done {
    Present(String),
    Installed(String),
}

fn step(name: &str, f: impl FnOnce() -> Result<Done>) -> Result<()> {
    match f() {
        Ok(Done::Present(what)) => eprintln!("setup: {name:<22} ok ({what})"),
        Ok(Done::Installed(what)) => eprintln!("setup: {name:<22} installed ({what})"),
        Err(err) => {
            eprintln!("setup: {name:<22} FAILED");
            return Err(err.context(format!("setup step '{name}' failed")));
        }
    }
    Ok(())
}

fn require_root() -> Result<()> {
    if !nix_is_root() {
        bail!(
            "setup installs packages and mounts bpffs: run it as root (e.g. `sudo -E cargo xtask setup`)"
        );
    }
    Ok(())
}

fn nix_is_root() -> bool {
    // `id -u` keeps this crate free of unsafe/libc for one syscall.
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

fn apt_packages() -> Result<Done> {
    let missing: Vec<&str> = APT_PACKAGES
        .iter()
        .map(|(p, _)| *p)
        .filter(|p| !dpkg_installed(p))
        .collect();
    if missing.is_empty() {
        return Ok(Done::Present(format!("{} packages", APT_PACKAGES.len())));
    }
    let hint = format!(
        "run `apt-get update && apt-get install -y {}`",
        missing.join(" ")
    );
    quiet(Command::new("apt-get").arg("update"), "apt-get update").with_context(|| hint.clone())?;
    quiet(
        Command::new("apt-get")
            .env("DEBIAN_FRONTEND", "noninteractive")
            .args(["install", "-y", "--no-install-recommends"])
            .args(&missing),
        "apt-get install",
    )
    .with_context(|| hint.clone())?;
    Ok(Done::Installed(missing.join(" ")))
}

fn dpkg_installed(package: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", package])
        .output()
        .map(|o| o.status.success() && String::from_utf8_lossy(&o.stdout).contains("ok installed"))
        .unwrap_or(false)
}

fn rust_src() -> Result<Done> {
    let out = Command::new("rustup")
        .args(["component", "list", "--installed"])
        .output()
        .context("running rustup (is the Rust toolchain installed with rustup?)")?;
    if String::from_utf8_lossy(&out.stdout)
        .lines()
        .any(|l| l.starts_with("rust-src"))
    {
        return Ok(Done::Present("rust-src".into()));
    }
    quiet(
        Command::new("rustup").args(["component", "add", "rust-src"]),
        "rustup component add",
    )
    .context("run `rustup component add rust-src`")?;
    Ok(Done::Installed("rust-src".into()))
}

fn bpf_linker() -> Result<Done> {
    let bin = cargo_home().join("bin").join("bpf-linker");
    if let Some(version) = tool_version(&bin)
        && version.contains(BPF_LINKER_VERSION)
    {
        return Ok(Done::Present(version));
    }
    eprintln!(
        "setup: building bpf-linker {BPF_LINKER_VERSION} against LLVM 22 (about a minute)..."
    );
    let mut path = OsString::from(format!("{LLVM_PREFIX}/bin:"));
    path.push(path_with_cargo_bin());
    quiet(
        Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
            .args(["install", "bpf-linker", "--version", BPF_LINKER_VERSION])
            .args(["--no-default-features", "--features", "llvm-22"])
            .env("LLVM_SYS_221_PREFIX", LLVM_PREFIX)
            .env("PATH", path),
        "cargo install bpf-linker",
    )
    .context(format!(
        "run `LLVM_SYS_221_PREFIX={LLVM_PREFIX} cargo install bpf-linker --version {BPF_LINKER_VERSION} \
         --no-default-features --features llvm-22` (needs the llvm-22-dev packages)"
    ))?;
    let version = tool_version(&bin).context("bpf-linker installed but does not run")?;
    Ok(Done::Installed(version))
}

fn tool_version(bin: &Path) -> Option<String> {
    let out = Command::new(bin).arg("--version").output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn bpffs() -> Result<Done> {
    let fs_type = fs_type("/sys/fs/bpf")?;
    if fs_type == "bpf_fs" {
        return Ok(Done::Present("mounted".into()));
    }
    quiet(
        Command::new("mount").args(["-t", "bpf", "bpf", "/sys/fs/bpf"]),
        "mount bpffs",
    )
    .context("run `mount -t bpf bpf /sys/fs/bpf`")?;
    Ok(Done::Installed("mounted".into()))
}

fn fs_type(path: &str) -> Result<String> {
    let out = Command::new("stat")
        .args(["-f", "-c", "%T", path])
        .output()
        .context("running stat")?;
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Run a command, keeping its output unless it fails (then show the tail).
fn quiet(cmd: &mut Command, what: &str) -> Result<()> {
    let out = cmd
        .output()
        .with_context(|| format!("{what}: could not start"))?;
    if !out.status.success() {
        let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.push_str(&String::from_utf8_lossy(&out.stderr));
        let tail: Vec<&str> = text.lines().rev().take(15).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        bail!("{what} exited with {}:\n{}", out.status, tail.join("\n"));
    }
    Ok(())
}
