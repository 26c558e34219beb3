//! Running external tools (`ip`, `tc`, `ethtool`, `nsenter`, ...) with a time
//! limit and errors that say what failed.
//!
//! The lab drives the kernel through the same tools a person would type, so
//! a failure message can be pasted into a shell as is. Output goes to
//! unlinked temporary files rather than pipes: a command that leaves a
//! daemon behind holding its stdout must not hang the caller.

use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// Time limit for the lab's own plumbing commands (`ip`, `tc`, ...).
pub(crate) const TOOL_TIMEOUT: Duration = Duration::from_secs(20);
/// Time limit for [`crate::Node::run`].
pub const RUN_TIMEOUT: Duration = Duration::from_secs(60);
/// How often a running command is polled for exit.
const POLL: Duration = Duration::from_millis(5);

/// Where to look for a tool when `PATH` (e.g. under `sudo` or cargo) lacks
/// the sbin directories.
const FALLBACK_DIRS: &[&str] = &["/usr/sbin", "/usr/bin", "/sbin", "/bin", "/usr/local/sbin"];

/// Return the absolute path of an external tool, or an error that says which
/// package provides it.
pub(crate) fn tool(name: &str) -> Result<PathBuf> {
    static CACHE: OnceLock<Mutex<HashMap<String, PathBuf>>> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    if let Some(p) = cache
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .get(name)
    {
        return Ok(p.clone());
    }
    let found = find_program(name).with_context(|| {
        let package = match name {
            "ip" | "tc" | "bridge" => "iproute2",
            "nsenter" | "mount" => "util-linux",
            "ping" => "iputils-ping",
            "sysctl" => "procps",
            other => other,
        };
        format!("`{name}` not found in PATH or {FALLBACK_DIRS:?} (apt-get install -y {package})")
    })?;
    cache
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .insert(name.to_owned(), found.clone());
    Ok(found)
}

/// Look a program up the way a shell would, plus the sbin fallbacks.
pub(crate) fn find_program(name: &str) -> Option<PathBuf> {
    if name.contains('/') {
        let p = PathBuf::from(name);
        return is_executable(&p).then_some(p);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(FALLBACK_DIRS.iter().map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|p| is_executable(p))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    p.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Quote an argument list so it can be pasted into a shell.
pub(crate) fn shell_line<S: AsRef<str>>(args: &[S]) -> String {
    args.iter()
        .map(|a| {
            let a = a.as_ref();
            let plain = !a.is_empty()
                && a.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_./=:,%@+".contains(c));
            if plain {
                a.to_owned()
            } else {
                format!("'{}'", a.replace('\'', r"'\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Return the command line of a [`Command`] for messages.
pub(crate) fn describe(cmd: &Command) -> String {
    let mut v = vec![cmd.get_program().to_string_lossy().into_owned()];
    v.extend(cmd.get_args().map(|a| a.to_string_lossy().into_owned()));
    shell_line(&v)
}

/// What a finished command printed.
pub(crate) struct Finished {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

/// Run a command to completion within `timeout`, capturing its output.
///
/// The command gets its own process group so that on timeout the whole
/// group (not just the first process) is killed. Fails only if it could not
/// be started or timed out; the exit status is the caller's to judge.
pub(crate) fn finish(mut cmd: Command, timeout: Duration) -> Result<Finished> {
    let line = describe(&cmd);
    let mut out = scratch_file().context("temporary file for stdout")?;
    let mut err = scratch_file().context("temporary file for stderr")?;
    cmd.stdin(Stdio::null())
        .stdout(out.try_clone()?)
        .stderr(err.try_clone()?)
        .process_group(0);
    let mut child = cmd
        .spawn()
        .with_context(|| format!("cannot start `{line}`"))?;
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child
            .try_wait()
            .with_context(|| format!("waiting for `{line}`"))?
        {
            break status;
        }
        if Instant::now() >= deadline {
            crate::process::kill_group(child.id(), true);
            let _ = child.wait();
            bail!("`{line}` did not finish within {timeout:?} and was killed");
        }
        std::thread::sleep(POLL);
    };
    Ok(Finished {
        status,
        stdout: read_all(&mut out)?,
        stderr: read_all(&mut err)?,
    })
}

/// Run a command to completion and return its stdout; a non-zero exit is an
/// error naming the command line, the status and stderr.
pub(crate) fn checked(cmd: Command, timeout: Duration) -> Result<String> {
    let line = describe(&cmd);
    let f = finish(cmd, timeout)?;
    if !f.status.success() {
        bail!("`{line}` failed ({}): {}", f.status, f.stderr.trim());
    }
    Ok(f.stdout)
}

/// Run a host tool (in the caller's namespaces) and return its stdout.
pub(crate) fn host(args: &[&str]) -> Result<String> {
    let (prog, rest) = args.split_first().context("empty command")?;
    let mut cmd = Command::new(tool(prog)?);
    cmd.args(rest);
    checked(cmd, TOOL_TIMEOUT)
}

/// Create a read-write file that is already unlinked, so nothing is left in
/// the temp dir whatever happens to this process.
fn scratch_file() -> Result<File> {
    static N: AtomicU64 = AtomicU64::new(0);
    let path = std::env::temp_dir().join(format!(
        ".kmlab-out-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let f = File::options()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&path)
        .with_context(|| format!("create {}", path.display()))?;
    let _ = std::fs::remove_file(&path);
    Ok(f)
}

fn read_all(f: &mut File) -> Result<String> {
    f.seek(SeekFrom::Start(0))?;
    let mut buf = Vec::new();
    f.read_to_end(&mut buf)?;
    Ok(String::from_utf8_lossy(&buf).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting() {
        assert_eq!(shell_line(&["ip", "-n", "x", "link"]), "ip -n x link");
        assert_eq!(
            shell_line(&["sh", "-c", "echo 'hi' there"]),
            r#"sh -c 'echo '\''hi'\'' there'"#
        );
        assert_eq!(shell_line(&[""]), "''");
    }

    #[test]
    fn failure_names_command_and_stderr() {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "echo oops >&2; exit 3"]);
        let e = checked(cmd, Duration::from_secs(5))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("sh -c") && e.contains("oops") && e.contains('3'),
            "{e}"
        );
    }

    #[test]
    fn timeout_kills() {
        let mut cmd = Command::new("sleep");
        cmd.arg("30");
        let t = Instant::now();
        let e = finish(cmd, Duration::from_millis(200))
            .err()
            .expect("must time out");
        assert!(e.to_string().contains("did not finish"), "{e}");
        assert!(t.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn daemon_holding_stdout_does_not_hang() {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "(sleep 3 &) ; echo done"]);
        let t = Instant::now();
        let f = finish(cmd, Duration::from_secs(10)).unwrap();
        assert_eq!(f.stdout.trim(), "done");
        assert!(t.elapsed() < Duration::from_secs(2));
    }
}
