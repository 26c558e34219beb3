//! Long-lived processes inside nodes: spawn, stop, restart, logs.
//!
//! Every process is started in its own process group, so that stopping it
//! also stops whatever it forked, and so that a Ctrl-C at the terminal
//! reaches only the test binary, whose handler then tears the lab down in
//! order. A stop signals the group while the leader is still unreaped: a
//! zombie leader keeps its pid (and so the group id) from being reused, so
//! the final SIGKILL cannot hit an unrelated group.

use std::fmt;
use std::fs::File;
use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use nix::sys::signal::{Signal, kill, killpg};
use nix::sys::wait::{Id, WaitPidFlag, WaitStatus, waitid};
use nix::unistd::Pid;

use crate::{exec, netns};

/// What a process's log says at each start (the line goes on with the
/// command), so a reader can find the latest run.
pub const START_MARKER: &str = "=== kmlab: starting";

/// How long a process gets between SIGTERM and SIGKILL.
pub const STOP_GRACE: Duration = Duration::from_secs(3);

/// Handle of a process spawned with [`crate::Node::spawn`]; stays valid
/// across [`crate::Node::restart`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ProcId(pub(crate) u64);

impl fmt::Display for ProcId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "proc#{}", self.0)
    }
}

/// One tracked process (or the memory of one, after it was stopped).
pub(crate) struct Proc {
    pub node: String,
    pub netns: String,
    pub label: String,
    pub args: Vec<String>,
    pub log: PathBuf,
    /// `None` once stopped and reaped.
    pub child: Option<Child>,
}

impl Proc {
    /// Start `args` in `netns`, output appended to `log`.
    pub fn start(
        node: &str,
        netns: &str,
        label: &str,
        args: &[&str],
        log: PathBuf,
    ) -> Result<Proc> {
        let mut proc = Proc {
            node: node.to_owned(),
            netns: netns.to_owned(),
            label: label.to_owned(),
            args: args.iter().map(|s| s.to_string()).collect(),
            log,
            child: None,
        };
        proc.respawn()?;
        Ok(proc)
    }

    /// Start the recorded command again (after a stop).
    pub fn respawn(&mut self) -> Result<()> {
        let line = exec::shell_line(&self.args);
        let (prog, rest) = self.args.split_first().context("empty command")?;
        // nsenter would only report a missing program from the child, after
        // spawn succeeded; resolve it here so the error is immediate.
        let resolved = exec::find_program(prog).with_context(|| {
            format!(
                "cannot spawn `{line}` in node {}: `{prog}` not found",
                self.node
            )
        })?;
        let mut log = File::options()
            .create(true)
            .append(true)
            .open(&self.log)
            .with_context(|| format!("open log {}", self.log.display()))?;
        writeln!(log, "{START_MARKER} `{line}` in node {} ===", self.node)?;
        let mut cmd = netns::command(&self.netns, &resolved.to_string_lossy());
        cmd.args(rest)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .process_group(0);
        let child = cmd
            .spawn()
            .with_context(|| format!("cannot spawn `{line}` in node {}", self.node))?;
        self.child = Some(child);
        Ok(())
    }

    /// Return the pid while the process is tracked as running.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }
}

/// Stop processes: SIGTERM to each group, wait up to `grace` for the
/// leaders, SIGKILL the groups (stragglers included), reap.
///
/// All processes share the one grace period, so tearing down a lab with many
/// processes takes `grace` at most, not `grace` per process.
pub(crate) fn stop_all(procs: &mut [&mut Proc], grace: Duration) {
    let running: Vec<u32> = procs.iter().filter_map(|p| p.pid()).collect();
    for &pid in &running {
        kill_group(pid, false);
    }
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline && !running.iter().all(|&pid| leader_exited(pid)) {
        std::thread::sleep(Duration::from_millis(10));
    }
    for &pid in &running {
        // The leader is a zombie at worst, so this group id is still ours.
        kill_group(pid, true);
    }
    for p in procs.iter_mut() {
        if let Some(mut child) = p.child.take() {
            reap(&mut child, &p.label);
        }
    }
}

/// Wait (bounded) for a killed child so it does not linger as a zombie.
fn reap(child: &mut Child, label: &str) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match child.try_wait() {
            Ok(Some(_)) | Err(_) => return,
            Ok(None) if Instant::now() >= deadline => {
                eprintln!(
                    "kmlab: process {} ({label}) did not die after SIGKILL",
                    child.id()
                );
                return;
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(10)),
        }
    }
}

/// Return whether the child `pid` has exited, without reaping it.
pub(crate) fn leader_exited(pid: u32) -> bool {
    let pid = pid_i32(pid);
    let flags = WaitPidFlag::WEXITED | WaitPidFlag::WNOHANG | WaitPidFlag::WNOWAIT;
    match waitid(Id::Pid(Pid::from_raw(pid)), flags) {
        Ok(WaitStatus::StillAlive) => false,
        // Exited (or not our child any more): either way nothing to wait for.
        Ok(_) | Err(_) => true,
    }
}

/// SIGKILL (or SIGTERM) a whole process group whose leader we have not reaped.
pub(crate) fn kill_group(pgid: u32, hard: bool) {
    let sig = if hard {
        Signal::SIGKILL
    } else {
        Signal::SIGTERM
    };
    let _ = killpg(Pid::from_raw(pid_i32(pgid)), sig);
}

/// SIGKILL one process (used on stragglers found in a namespace).
pub(crate) fn kill_pid(pid: i32) {
    if pid > 1 && pid != pid_i32(std::process::id()) {
        let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
    }
}

fn pid_i32(pid: u32) -> i32 {
    i32::try_from(pid).unwrap_or(i32::MAX)
}

/// Check a process label: it names the log file, so keep it to a safe set.
pub(crate) fn check_label(label: &str) -> Result<()> {
    let ok = !label.is_empty()
        && label.len() <= 64
        && label
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        && !label.starts_with('.');
    if !ok {
        bail!("bad process label {label:?}: use 1-64 of [A-Za-z0-9._-], not starting with '.'");
    }
    Ok(())
}

/// Wait for `child` to exit, polling every `poll`, for at most `timeout`;
/// on timeout kill and reap it and return `None`. For short-lived helper
/// processes whose exit is the point (a CLI run, a probe).
pub fn wait_child(
    child: &mut Child,
    timeout: Duration,
    poll: Duration,
) -> std::io::Result<Option<std::process::ExitStatus>> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(Some(status));
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Ok(None);
        }
        std::thread::sleep(poll);
    }
}
