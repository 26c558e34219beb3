//! Bare network namespaces for the fixture capture, which must not depend
//! on anything but `ip` and BIRD. The interop tests use the `lab` crate.

use std::process::{Child, Command, Stdio};

/// A network namespace made by the test, deleted (with its veths) on drop.
pub struct Netns {
    name: String,
}

impl Netns {
    /// Create namespace `name` with `lo` up and IPv6 DAD off, so link-local
    /// addresses are usable at once.
    pub fn new(name: &str) -> Self {
        // A namespace left over by a killed earlier run of the same test.
        let _ = Command::new("ip")
            .args(["netns", "del", name])
            .stderr(Stdio::null())
            .status();
        sh(&["ip", "netns", "add", name]);
        let ns = Self {
            name: name.to_owned(),
        };
        ns.run(&["sysctl", "-qw", "net.ipv6.conf.all.accept_dad=0"]);
        ns.run(&["sysctl", "-qw", "net.ipv6.conf.default.accept_dad=0"]);
        ns.run(&["ip", "link", "set", "lo", "up"]);
        ns
    }

    /// Return the namespace name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Return a command running `prog` inside the namespace.
    pub fn cmd(&self, prog: &str) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.name, prog]);
        cmd
    }

    /// Run `args` inside the namespace and return its stdout; panic on failure.
    pub fn run(&self, args: &[&str]) -> String {
        let mut full = vec!["ip", "netns", "exec", &self.name];
        full.extend_from_slice(args);
        sh(&full)
    }

    /// Run `args` inside the namespace; return stdout, or `None` on failure.
    pub fn try_run(&self, args: &[&str]) -> Option<String> {
        let out = self.cmd(args[0]).args(&args[1..]).output().ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .stderr(Stdio::null())
            .status();
    }
}

/// Connect `a` and `b` with a veth named `ifname` on both ends, with fixed
/// MAC addresses so the link-local addresses (EUI-64) are the same every run.
pub fn veth(a: &Netns, mac_a: &str, b: &Netns, mac_b: &str, ifname: &str) {
    sh(&[
        "ip",
        "-n",
        a.name(),
        "link",
        "add",
        ifname,
        "address",
        mac_a,
        "type",
        "veth",
        "peer",
        "name",
        ifname,
        "netns",
        b.name(),
        "address",
        mac_b,
    ]);
    a.run(&["ip", "link", "set", ifname, "up"]);
    b.run(&["ip", "link", "set", ifname, "up"]);
}

/// Run a host command, return its stdout; panic with its stderr on failure.
pub fn sh(args: &[&str]) -> String {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("cannot run {args:?}: {e}"));
    assert!(
        out.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Child processes killed (and reaped) on drop, so a failing test leaves
/// no BIRD or tcpdump behind.
#[derive(Default)]
pub struct Procs(Vec<(String, Child)>);

impl Procs {
    /// Start `cmd` and keep it under `label`.
    pub fn spawn(&mut self, label: &str, mut cmd: Command) {
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {label}: {e}"));
        self.0.push((label.to_owned(), child));
    }

    /// Stop `label` with SIGINT (tcpdump flushes its file on it) and wait up
    /// to two seconds before killing it.
    pub fn interrupt(&mut self, label: &str) {
        let Some(pos) = self.0.iter().position(|(l, _)| l == label) else {
            return;
        };
        let (_, mut child) = self.0.remove(pos);
        let _ = Command::new("kill")
            .args(["-INT", &child.id().to_string()])
            .status();
        for _ in 0..20 {
            if matches!(child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Drop for Procs {
    fn drop(&mut self) {
        for (_, child) in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
