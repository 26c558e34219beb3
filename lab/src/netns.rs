//! Named network namespaces: create, enter, sweep and delete.
//!
//! Namespaces are made with `ip netns add` so they show in `ip netns list`
//! and outlive no one by accident: their names carry the creating pid
//! (`km<pid>x<lab>-<node>`), which is how [`crate::cleanup_stale`] tells
//! leftovers of a dead process from a live parallel test.
//!
//! Commands enter a namespace with `nsenter --net=...`, which switches the
//! network namespace only. `ip netns exec` would also unshare the mount
//! namespace and remount `/sys`, hiding `/sys/fs/bpf` and with it every pin
//! the agent under test makes.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use crate::exec;

/// Directory where `ip netns` keeps its bind mounts.
pub const NETNS_DIR: &str = "/run/netns";

/// Return the path of a named namespace.
pub fn path(name: &str) -> PathBuf {
    Path::new(NETNS_DIR).join(name)
}

/// Return whether a named namespace exists.
pub fn exists(name: &str) -> bool {
    path(name).exists()
}

/// Return a [`Command`] that runs `program` inside namespace `name`
/// (network namespace only; mounts, pids and users stay the host's).
pub fn command(name: &str, program: &str) -> Command {
    // nsenter is checked for when a lab is built; fall back to the bare name
    // here so this stays infallible and a missing tool shows at spawn time.
    let nsenter = exec::tool("nsenter").unwrap_or_else(|_| PathBuf::from("nsenter"));
    let mut cmd = Command::new(nsenter);
    cmd.arg(format!("--net={}", path(name).display()))
        .arg("--")
        .arg(program);
    cmd
}

/// Run `f` with the calling thread inside namespace `name`, then bring the
/// thread back. Sockets `f` opens stay in `name` for their whole life.
pub fn enter<T>(name: &str, f: impl FnOnce() -> Result<T>) -> Result<T> {
    use nix::sched::{CloneFlags, setns};
    let home = std::fs::File::open("/proc/thread-self/ns/net").context("opening our netns")?;
    let target =
        std::fs::File::open(path(name)).with_context(|| format!("opening netns {name}"))?;
    setns(&target, CloneFlags::CLONE_NEWNET).with_context(|| format!("entering netns {name}"))?;
    let out = f();
    // Failing to return would leave this thread's later sockets in the lab
    // namespace: nothing sane can continue from there.
    setns(&home, CloneFlags::CLONE_NEWNET).expect("returning to our own netns");
    out
}

/// Run a command inside a namespace with the lab's tool timeout.
pub(crate) fn run_in(name: &str, args: &[&str]) -> Result<String> {
    let (prog, rest) = args.split_first().context("empty command")?;
    let prog = exec::tool(prog)?;
    let mut cmd = command(name, &prog.to_string_lossy());
    cmd.args(rest);
    exec::checked(cmd, exec::TOOL_TIMEOUT)
}

/// Create a namespace and bring its loopback up.
pub(crate) fn create(name: &str) -> Result<()> {
    {
        // `ip netns add` makes /run/netns a shared mount the first time; two
        // of them racing on a fresh machine can stack that mount, so take
        // the lab's host-wide lock for the add itself.
        let _lock = crate::cleanup::host_lock()?;
        exec::host(&["ip", "netns", "add", name])?;
    }
    exec::host(&["ip", "-n", name, "link", "set", "lo", "up"])?;
    Ok(())
}

/// Set sysctls inside a namespace (`/proc/sys/net` is per namespace).
pub(crate) fn sysctl(name: &str, settings: &[&str]) -> Result<()> {
    let mut args = vec!["sysctl", "-q", "-w"];
    args.extend_from_slice(settings);
    run_in(name, &args).map(drop)
}

/// Return the pids of processes whose network namespace is `name`.
///
/// This is what `ip netns pids` does; done here so a sweep needs no tool.
/// Processes that vanish mid-scan are skipped.
pub fn pids(name: &str) -> Vec<i32> {
    let Ok(ns) = std::fs::metadata(path(name)) else {
        return Vec::new();
    };
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            std::fs::metadata(format!("/proc/{pid}/ns/net"))
                .is_ok_and(|m| m.dev() == ns.dev() && m.ino() == ns.ino())
        })
        .collect()
}

/// Kill every process left in a namespace and wait (bounded) until they are
/// gone, so the namespace and its veths really disappear on delete.
///
/// These are stragglers that escaped their process group (daemons that
/// called `setsid`), or processes of a crashed test.
pub(crate) fn sweep(name: &str, wait: Duration) {
    let deadline = Instant::now() + wait;
    loop {
        let left = pids(name);
        if left.is_empty() {
            return;
        }
        for pid in &left {
            crate::process::kill_pid(*pid);
        }
        if Instant::now() >= deadline {
            eprintln!("kmlab: processes {left:?} in netns {name} survived SIGKILL");
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Kill what is left inside a namespace and delete it; a missing namespace
/// is not an error (cleanup runs from several places).
pub(crate) fn delete(name: &str) -> Result<()> {
    if !exists(name) {
        return Ok(());
    }
    sweep(name, Duration::from_secs(3));
    match exec::host(&["ip", "netns", "del", name]) {
        Err(_) if !exists(name) => Ok(()),
        other => other.map(drop),
    }
}
