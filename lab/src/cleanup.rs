//! Leaving nothing behind: the registry of live labs, their teardown, the
//! Ctrl-C handler, and the sweep of leftovers from dead processes.
//!
//! There are three ways out of a test and each has its path here:
//! - normal end or panic: `Drop for Lab` calls `Shared::teardown` (Drop
//!   runs while a panic unwinds);
//! - Ctrl-C / SIGTERM / SIGHUP: the handler installed on the first build
//!   tears down every registered lab, then exits with 130;
//! - SIGKILL or abort: nothing can run, so the next [`cleanup_stale`] (called
//!   by every `Lab::build`) removes what a dead pid left behind; the pid is
//!   part of every name.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, Once, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use nix::fcntl::{Flock, FlockArg};
use nix::mount::{MsFlags, mount};
use nix::sys::statfs::{BPF_FS_MAGIC, statfs};

use crate::netns;
use crate::process::{self, Proc, ProcId};

/// Where bpffs is expected.
pub const BPFFS_ROOT: &str = "/sys/fs/bpf";
/// Prefix of every lab's namespaces (`km<pid>x<lab>-...`).
pub(crate) const NETNS_PREFIX: &str = "km";
/// Prefix of every lab's bpffs and work directories (`kmlab-<pid>x<lab>-<tag>`).
pub(crate) const DIR_PREFIX: &str = "kmlab-";
/// Host-wide lock serialising one-time host setup between processes.
const HOST_LOCK: &str = "/run/kmlab.lock";

/// What a lab owns, shared by the `Lab`, its nodes and the registry.
pub(crate) struct Shared {
    /// `km<pid>x<counter>`: the unique stem of every name of this lab.
    pub id: String,
    pub bpffs: PathBuf,
    pub work: PathBuf,
    pub state: Mutex<State>,
}

/// The mutable part of a lab's resources.
#[derive(Default)]
pub(crate) struct State {
    /// Set by teardown: nothing new may be created after it.
    pub closed: bool,
    /// Node and cable namespaces, recorded before they are created.
    pub namespaces: Vec<String>,
    pub procs: BTreeMap<ProcId, Proc>,
    pub next_proc: u64,
}

impl Shared {
    /// Lock the state, also after a panic elsewhere: cleanup must go on.
    pub fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Remove everything the lab made: processes first (so nothing holds a
    /// namespace), then namespaces (their veths go with them), the bpffs
    /// dir and, unless `keep_work`, the work dir. Idempotent; problems are
    /// printed, as there is no caller to return them to.
    pub fn teardown(&self, keep_work: bool) {
        let (mut procs, namespaces) = {
            let mut st = self.state();
            st.closed = true;
            let procs: Vec<Proc> = std::mem::take(&mut st.procs).into_values().collect();
            (procs, std::mem::take(&mut st.namespaces))
        };
        let mut refs: Vec<&mut Proc> = procs.iter_mut().collect();
        process::stop_all(&mut refs, process::STOP_GRACE);
        for ns in namespaces.iter().rev() {
            if let Err(e) = netns::delete(ns) {
                eprintln!("kmlab: {e:#}");
            }
        }
        remove_tree(&self.bpffs);
        if keep_work {
            if self.work.exists() {
                eprintln!(
                    "kmlab: keeping work dir {} (logs) for inspection",
                    self.work.display()
                );
            }
        } else {
            remove_tree(&self.work);
        }
    }
}

fn remove_tree(dir: &Path) {
    match std::fs::remove_dir_all(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            eprintln!("kmlab: cannot remove {}: {e}", dir.display());
        }
        _ => {}
    }
}

static LIVE: Mutex<Vec<Arc<Shared>>> = Mutex::new(Vec::new());

fn live() -> MutexGuard<'static, Vec<Arc<Shared>>> {
    LIVE.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Record a lab so the signal handler can find it.
pub(crate) fn register(shared: Arc<Shared>) {
    live().push(shared);
}

/// Forget a lab after its teardown.
pub(crate) fn unregister(id: &str) {
    live().retain(|s| s.id != id);
}

/// Tear down every live lab of this process.
///
/// The lab's own Ctrl-C handler calls this; a program that installs its own
/// handler first (the `ctrlc` crate allows only one) should call it there.
pub fn cleanup_all() {
    let labs: Vec<Arc<Shared>> = std::mem::take(&mut *live());
    for lab in labs {
        lab.teardown(false);
    }
}

/// Install the Ctrl-C / SIGTERM / SIGHUP handler once per process.
pub(crate) fn install_signal_handler() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let installed = ctrlc::set_handler(|| {
            eprintln!("kmlab: interrupted, removing labs");
            cleanup_all();
            std::process::exit(130);
        });
        if let Err(e) = installed {
            eprintln!(
                "kmlab: no Ctrl-C handler of our own ({e}); call lab::cleanup_all() from yours"
            );
        }
    });
}

/// Take the host-wide lab lock (bounded wait), held while the guard lives.
pub(crate) fn host_lock() -> Result<Flock<File>> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(HOST_LOCK)
            .with_context(|| format!("open {HOST_LOCK}"))?;
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(guard) => return Ok(guard),
            Err((_, e)) if Instant::now() >= deadline => {
                bail!("cannot lock {HOST_LOCK} within 30 s: {e}")
            }
            Err(_) => std::thread::sleep(Duration::from_millis(10)),
        }
    }
}

/// Mount bpffs at /sys/fs/bpf unless it already is there.
pub(crate) fn ensure_bpffs() -> Result<()> {
    let is_bpf = || statfs(BPFFS_ROOT).is_ok_and(|s| s.filesystem_type() == BPF_FS_MAGIC);
    if is_bpf() {
        return Ok(());
    }
    let _lock = host_lock()?;
    if !is_bpf() {
        mount(
            Some("bpf"),
            BPFFS_ROOT,
            Some("bpf"),
            MsFlags::empty(),
            None::<&str>,
        )
        .with_context(|| format!("mount -t bpf bpf {BPFFS_ROOT}"))?;
    }
    Ok(())
}

/// Return the pid in a name `<prefix><pid>x<counter>...`, if it is one of ours.
pub(crate) fn owner_pid(name: &str, prefix: &str) -> Option<u32> {
    let rest = name.strip_prefix(prefix)?;
    let (pid, rest) = rest.split_once('x')?;
    let digits = rest.chars().take_while(char::is_ascii_digit).count();
    let after = &rest[digits..];
    if digits == 0 || !(after.is_empty() || after.starts_with('-')) {
        return None;
    }
    pid.parse().ok()
}

fn dead(pid: u32) -> bool {
    pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists()
}

/// Remove namespaces and `/sys/fs/bpf/kmlab-*` directories left behind by
/// dead processes (a test killed with SIGKILL, an abort); return how many.
///
/// Safe to run while other labs, in this or other processes, are live: only
/// names whose creating pid no longer exists are touched. Work dirs in the
/// temp dir are kept, since they hold the logs of what went wrong.
pub fn cleanup_stale() -> Result<usize> {
    let mut removed = 0;
    let mut errors = Vec::new();
    if let Ok(entries) = std::fs::read_dir(netns::NETNS_DIR) {
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if owner_pid(&name, NETNS_PREFIX).is_some_and(dead) {
                match netns::delete(&name) {
                    Ok(()) => removed += 1,
                    Err(e) => errors.push(format!("{e:#}")),
                }
            }
        }
    }
    if let Ok(entries) = std::fs::read_dir(BPFFS_ROOT) {
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if owner_pid(&name, DIR_PREFIX).is_some_and(dead) {
                match std::fs::remove_dir_all(entry.path()) {
                    Ok(()) => removed += 1,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => errors.push(format!("remove {}: {e}", entry.path().display())),
                }
            }
        }
    }
    if errors.is_empty() {
        Ok(removed)
    } else {
        Err(anyhow!("stale lab cleanup: {}", errors.join("; ")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owner_pids() {
        assert_eq!(owner_pid("km123x4-n0", "km"), Some(123));
        assert_eq!(owner_pid("km123x45-c2", "km"), Some(123));
        assert_eq!(owner_pid("kmlab-77x1-mesh6", "kmlab-"), Some(77));
        assert_eq!(owner_pid("kmlab-77x1", "kmlab-"), Some(77));
        assert_eq!(owner_pid("km123x-n0", "km"), None);
        assert_eq!(owner_pid("km123x4n0", "km"), None);
        assert_eq!(owner_pid("kmfoo", "km"), None);
        assert_eq!(owner_pid("other", "km"), None);
        // A bpffs dir is not mistaken for a namespace name and vice versa.
        assert_eq!(owner_pid("kmlab-77x1", "km"), None);
    }
}
