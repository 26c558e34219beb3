//! A [`Node`]: one simulated PC, i.e. one network namespace, and what runs
//! in it.

use std::net::Ipv6Addr;
use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::cleanup::Shared;
use crate::exec::{self, host};
use crate::netns;
use crate::process::{self, Proc, ProcId};

/// How long [`Node::link_local`] waits for duplicate address detection.
pub const LINK_LOCAL_WAIT: Duration = Duration::from_secs(10);

/// One node of a lab. Borrowed from the [`crate::Lab`], which owns it.
pub struct Node {
    name: String,
    netns: String,
    ifaces: Vec<String>,
    shared: Arc<Shared>,
}

impl Node {
    pub(crate) fn new(name: &str, netns: &str, shared: Arc<Shared>) -> Node {
        Node {
            name: name.into(),
            netns: netns.into(),
            ifaces: Vec::new(),
            shared,
        }
    }

    pub(crate) fn push_iface(&mut self, ifname: String) {
        self.ifaces.push(ifname);
    }

    /// Return the node's name in the topology.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Return the node's namespace name (under /run/netns).
    pub fn netns(&self) -> &str {
        &self.netns
    }

    /// Return this node's bpffs directory (`<lab bpffs>/<node>`), for the
    /// agent's pins; (re)created if missing.
    pub fn bpffs_dir(&self) -> PathBuf {
        let dir = self.shared.bpffs.join(&self.name);
        if !dir.exists() {
            // Creation is checked when the node is added; a failure here
            // shows up as soon as the caller pins something.
            let _ = std::fs::create_dir_all(&dir);
        }
        dir
    }

    /// Return the node's mesh interfaces, in the order links were added.
    pub fn ifaces(&self) -> Vec<String> {
        self.ifaces.clone()
    }

    /// Return the kernel-made IPv6 link-local address of `iface`, waiting
    /// (up to [`crate::LINK_LOCAL_WAIT`]) until duplicate address detection is over.
    pub fn link_local(&self, iface: &str) -> Result<Ipv6Addr> {
        let deadline = Instant::now() + LINK_LOCAL_WAIT;
        let last = loop {
            let out = host(&[
                "ip",
                "-n",
                &self.netns,
                "-6",
                "-o",
                "addr",
                "show",
                "dev",
                iface,
                "scope",
                "link",
            ])
            .with_context(|| format!("node {}: link-local address of {iface}", self.name))?;
            match parse_link_local(&out) {
                LinkLocal::Ready(addr) => return Ok(addr),
                LinkLocal::DadFailed => {
                    bail!("node {}: DAD failed on {iface}: {}", self.name, out.trim())
                }
                LinkLocal::NotYet if Instant::now() >= deadline => break out,
                LinkLocal::NotYet => std::thread::sleep(Duration::from_millis(50)),
            }
        };
        bail!(
            "node {}: no usable link-local address on {iface} after {LINK_LOCAL_WAIT:?} \
             (is the link up with carrier?); last seen: {:?}",
            self.name,
            last.trim()
        )
    }

    /// Return a [`Command`] for `program` that runs inside this node's
    /// network namespace (only: the host's mounts, /sys/fs/bpf included,
    /// stay visible). Add arguments and run it as usual.
    pub fn cmd(&self, program: &str) -> Command {
        netns::command(&self.netns, program)
    }

    /// Run `args` inside the node to completion (at most
    /// [`exec::RUN_TIMEOUT`]) and return its stdout; a failure names the
    /// command and carries its stderr.
    pub fn run(&self, args: &[&str]) -> Result<String> {
        self.run_timeout(args, exec::RUN_TIMEOUT)
    }

    /// [`Node::run`] with an explicit time limit.
    pub fn run_timeout(&self, args: &[&str], timeout: Duration) -> Result<String> {
        let cmd = self.command_for(args)?;
        exec::checked(cmd, timeout).with_context(|| format!("in node {}", self.name))
    }

    fn command_for(&self, args: &[&str]) -> Result<Command> {
        let (prog, rest) = args.split_first().context("empty command")?;
        // nsenter searches PATH too, but the sbin fallbacks help when run
        // from an environment whose PATH lacks them.
        let resolved = exec::find_program(prog)
            .map_or_else(|| prog.to_string(), |p| p.to_string_lossy().into_owned());
        let mut cmd = self.cmd(&resolved);
        cmd.args(rest);
        Ok(cmd)
    }

    /// Start a long-lived process in the node; its stdout and stderr go to
    /// `<work dir>/<node>-<label>.log`. The lab stops it on drop.
    pub fn spawn(&self, label: &str, args: &[&str]) -> Result<ProcId> {
        process::check_label(label)?;
        let mut st = self.shared.state();
        if st.closed {
            bail!("lab {} is shut down", self.shared.id);
        }
        if st
            .procs
            .values()
            .any(|p| p.node == self.name && p.label == label && p.child.is_some())
        {
            bail!(
                "node {}: a process labelled {label:?} is already running",
                self.name
            );
        }
        let log = self.shared.work.join(format!("{}-{label}.log", self.name));
        let proc = Proc::start(&self.name, &self.netns, label, args, log)?;
        st.next_proc += 1;
        let id = ProcId(st.next_proc);
        st.procs.insert(id, proc);
        Ok(id)
    }

    /// Stop a process: SIGTERM to its process group, SIGKILL after
    /// [`process::STOP_GRACE`]. Stopping a stopped process is fine.
    pub fn kill(&self, id: ProcId) -> Result<()> {
        let mut st = self.shared.state();
        let p = self.own(&mut st.procs, id)?;
        process::stop_all(&mut [p], process::STOP_GRACE);
        Ok(())
    }

    /// Stop every process of this node (sharing one grace period).
    pub fn kill_all(&self) -> Result<()> {
        let mut st = self.shared.state();
        let mut mine: Vec<&mut Proc> = st
            .procs
            .values_mut()
            .filter(|p| p.node == self.name)
            .collect();
        process::stop_all(&mut mine, process::STOP_GRACE);
        Ok(())
    }

    /// Stop a process and start the same command again under the same id;
    /// the log keeps the previous run's output.
    pub fn restart(&self, id: ProcId) -> Result<()> {
        let mut st = self.shared.state();
        if st.closed {
            bail!("lab {} is shut down", self.shared.id);
        }
        let p = self.own(&mut st.procs, id)?;
        process::stop_all(&mut [&mut *p], process::STOP_GRACE);
        p.respawn()
    }

    /// Return the process's log so far (empty if nothing was written).
    pub fn log(&self, id: ProcId) -> String {
        let path = self.shared.state().procs.get(&id).map(|p| p.log.clone());
        path.and_then(|p| std::fs::read(p).ok())
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    /// Return the log file path of a process.
    pub fn log_path(&self, id: ProcId) -> Option<PathBuf> {
        self.shared.state().procs.get(&id).map(|p| p.log.clone())
    }

    /// Return the pid of a process while it is running (not yet stopped).
    pub fn pid(&self, id: ProcId) -> Option<u32> {
        self.shared.state().procs.get(&id).and_then(Proc::pid)
    }

    /// Return whether a process is still running (an exited but unstopped
    /// process counts as not running).
    pub fn is_running(&self, id: ProcId) -> bool {
        // Not `try_wait`: reaping here would free the process group id
        // that a later stop still signals.
        self.pid(id).is_some_and(|pid| !process::leader_exited(pid))
    }

    fn own<'a>(
        &self,
        procs: &'a mut std::collections::BTreeMap<ProcId, Proc>,
        id: ProcId,
    ) -> Result<&'a mut Proc> {
        match procs.get_mut(&id) {
            Some(p) if p.node == self.name => Ok(p),
            Some(p) => bail!("{id} belongs to node {}, not {}", p.node, self.name),
            None => bail!("node {}: no process {id}", self.name),
        }
    }

    /// Send one ping (1 s deadline) and return whether a reply came.
    ///
    /// `via` is the outgoing interface, required for link-local targets.
    /// Only lab addresses are accepted: link-local, `2001:db8::/32`,
    /// `fd00::/8` and loopback, per the project's network rule.
    pub fn ping6(&self, dst: Ipv6Addr, via: Option<&str>) -> Result<bool> {
        check_lab_addr(dst)?;
        let target = match via {
            Some(i) => format!("{dst}%{i}"),
            None if is_link_local(dst) => bail!("ping6 to link-local {dst} needs an interface"),
            None => dst.to_string(),
        };
        let cmd = self.command_for(&["ping", "-6", "-n", "-q", "-c", "1", "-W", "1", &target])?;
        let done = exec::finish(cmd, Duration::from_secs(5))
            .with_context(|| format!("in node {}", self.name))?;
        Ok(done.status.success())
    }

    /// Return the kernel's counts of forwarded packets in this node:
    /// (IPv6 `Ip6OutForwDatagrams`, IPv4 `ForwDatagrams`). The fast path
    /// forwards past them, so a transit node whose counts stay flat while
    /// traffic crosses it forwarded none of it in the kernel.
    pub fn kernel_forwarded(&self) -> Result<(u64, u64)> {
        let snmp6 = self.run(&["cat", "/proc/net/snmp6"])?;
        let v6 = snmp6
            .lines()
            .find_map(|l| l.strip_prefix("Ip6OutForwDatagrams"))
            .and_then(|v| v.trim().parse().ok())
            .context("no Ip6OutForwDatagrams in /proc/net/snmp6")?;
        // /proc/net/snmp: an "Ip:" line of names, then one of values.
        let snmp = self.run(&["cat", "/proc/net/snmp"])?;
        let ip: Vec<Vec<&str>> = snmp
            .lines()
            .filter(|l| l.starts_with("Ip: "))
            .map(|l| l.split_whitespace().collect())
            .collect();
        let v4 = match ip.as_slice() {
            [names, values, ..] => names
                .iter()
                .position(|n| *n == "ForwDatagrams")
                .and_then(|col| values.get(col)?.parse().ok()),
            _ => None,
        }
        .context("no Ip ForwDatagrams in /proc/net/snmp")?;
        Ok((v6, v4))
    }

    /// Send one IPv4 ping (1 s deadline) and return whether a reply came.
    /// Only `198.18.0.0/15` is accepted, per the project's network rule.
    pub fn ping4(&self, dst: std::net::Ipv4Addr) -> Result<bool> {
        check_lab_addr4(dst)?;
        let target = dst.to_string();
        let cmd = self.command_for(&["ping", "-4", "-n", "-q", "-c", "1", "-W", "1", &target])?;
        let done = exec::finish(cmd, Duration::from_secs(5))
            .with_context(|| format!("in node {}", self.name))?;
        Ok(done.status.success())
    }

    /// Ping `dst` (either family) until a reply comes, for at most
    /// `timeout`.
    pub fn wait_ping(&self, dst: std::net::IpAddr, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            let ok = match dst {
                std::net::IpAddr::V4(a) => self.ping4(a)?,
                std::net::IpAddr::V6(a) => self.ping6(a, None)?,
            };
            if ok {
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!("node {}: no reply from {dst} within {timeout:?}", self.name);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Ping until a reply comes, for at most `timeout` (one try per second).
    pub fn wait_ping6(&self, dst: Ipv6Addr, via: Option<&str>, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            if self.ping6(dst, via)? {
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!(
                    "node {}: no reply from {dst} via {via:?} within {timeout:?}",
                    self.name
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Open a TCP connection from this node to `dst` on `server`, send
    /// `bytes` bytes and check that `server` echoes them back unchanged:
    /// real transport traffic, which checksums, MSS and both directions of
    /// a path must all get right (a ping needs none of that). Everything
    /// is bounded by `timeout`; only lab addresses are accepted.
    pub fn tcp_echo(
        &self,
        server: &Node,
        dst: impl Into<std::net::IpAddr>,
        bytes: usize,
        timeout: Duration,
    ) -> Result<()> {
        use std::io::{Read as _, Write as _};
        use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};

        let dst = dst.into();
        match dst {
            IpAddr::V6(a) => check_lab_addr(a)?,
            IpAddr::V4(a) => check_lab_addr4(a)?,
        }
        let deadline = Instant::now() + timeout;
        let listener = netns::enter(&server.netns, || {
            Ok(TcpListener::bind(SocketAddr::new(dst, 0))?)
        })
        .with_context(|| format!("node {}: listening on [{dst}]", server.name))?;
        let port = listener.local_addr()?.port();
        listener.set_nonblocking(true)?;
        let echo = std::thread::spawn(move || -> Result<()> {
            let (mut s, _) = loop {
                match listener.accept() {
                    Ok(c) => break c,
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        if Instant::now() > deadline {
                            bail!("no connection came");
                        }
                        std::thread::sleep(Duration::from_millis(5));
                    }
                    Err(e) => return Err(e.into()),
                }
            };
            s.set_nonblocking(false)?;
            s.set_read_timeout(Some(timeout))?;
            let mut buf = vec![0u8; 64 * 1024];
            let mut left = bytes;
            while left > 0 {
                let n = s.read(&mut buf[..left.min(64 * 1024)])?;
                if n == 0 {
                    bail!("the client closed with {left} bytes still to come");
                }
                s.write_all(&buf[..n])?;
                left -= n;
            }
            Ok(())
        });
        let sent: Vec<u8> = (0..bytes).map(|i| (i * 7 + i / 251) as u8).collect();
        let client = netns::enter(&self.netns, || {
            let to = SocketAddr::new(dst, port);
            Ok(TcpStream::connect_timeout(&to, timeout)?)
        });
        let result = client.and_then(|mut c| {
            c.set_read_timeout(Some(timeout))?;
            c.set_write_timeout(Some(timeout))?;
            let mut got = vec![0u8; bytes];
            // Write and read on two threads: echoes fill the socket
            // buffers long before a large payload is all written.
            std::thread::scope(|s| {
                let mut w = c.try_clone()?;
                let writer = s.spawn(move || w.write_all(&sent).map(|()| sent));
                c.read_exact(&mut got)?;
                let sent = writer
                    .join()
                    .map_err(|_| anyhow::anyhow!("writer panicked"))??;
                if got != sent {
                    let at = got.iter().zip(&sent).position(|(a, b)| a != b).unwrap_or(0);
                    bail!("the echo differs from what was sent at byte {at}");
                }
                Ok(())
            })
        });
        let served = echo
            .join()
            .map_err(|_| anyhow::anyhow!("echo thread panicked"))?;
        result
            .and(served)
            .with_context(|| format!("TCP echo {} -> {} [{dst}]:{port}", self.name, server.name))
    }

    /// Return the flags `ip link` shows for `iface` (`UP`, `LOWER_UP`,
    /// `NO-CARRIER`, ...).
    pub fn link_flags(&self, iface: &str) -> Result<Vec<String>> {
        let out = host(&["ip", "-n", &self.netns, "-o", "link", "show", "dev", iface])
            .with_context(|| format!("node {}: flags of {iface}", self.name))?;
        let flags = out
            .split_once('<')
            .and_then(|(_, r)| r.split_once('>'))
            .map(|(f, _)| f.split(',').map(str::to_owned).collect())
            .with_context(|| {
                format!("node {}: cannot parse `ip link` output {out:?}", self.name)
            })?;
        Ok(flags)
    }

    /// Return whether `iface` has carrier (`LOWER_UP`, no `NO-CARRIER`).
    pub fn has_carrier(&self, iface: &str) -> Result<bool> {
        let flags = self.link_flags(iface)?;
        Ok(flags.iter().any(|f| f == "LOWER_UP") && !flags.iter().any(|f| f == "NO-CARRIER"))
    }
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("name", &self.name)
            .field("netns", &self.netns)
            .field("ifaces", &self.ifaces)
            .finish()
    }
}

fn is_link_local(a: Ipv6Addr) -> bool {
    a.segments()[0] & 0xffc0 == 0xfe80
}

/// Refuse addresses outside the ones tests may use.
/// Refuse IPv4 addresses outside the lab's space, `198.18.0.0/15`.
fn check_lab_addr4(a: std::net::Ipv4Addr) -> Result<()> {
    let o = a.octets();
    if o[0] != 198 || o[1] & 0xfe != 18 {
        bail!("{a} is outside the lab's IPv4 space (198.18.0.0/15)");
    }
    Ok(())
}

fn check_lab_addr(a: Ipv6Addr) -> Result<()> {
    let s = a.segments();
    let ok = is_link_local(a)
        || a.is_loopback()
        || (s[0] == 0x2001 && s[1] == 0x0db8)
        || s[0] & 0xff00 == 0xfd00;
    if !ok {
        bail!("{a} is outside the lab's address space (fe80::/10, 2001:db8::/32, fd00::/8)");
    }
    Ok(())
}

enum LinkLocal {
    Ready(Ipv6Addr),
    NotYet,
    DadFailed,
}

/// Read `ip -6 -o addr show scope link` output.
fn parse_link_local(out: &str) -> LinkLocal {
    let mut state = LinkLocal::NotYet;
    for line in out.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        let Some(pos) = words.iter().position(|w| *w == "inet6") else {
            continue;
        };
        let Some(addr) = words
            .get(pos + 1)
            .and_then(|a| a.split('/').next()?.parse::<Ipv6Addr>().ok())
        else {
            continue;
        };
        if !is_link_local(addr) {
            continue;
        }
        if words.contains(&"dadfailed") {
            state = LinkLocal::DadFailed;
        } else if !words.contains(&"tentative") {
            return LinkLocal::Ready(addr);
        }
    }
    state
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_link_local() {
        let ready = "2: m-b    inet6 fe80::ec18:c3ff:fe99:1387/64 scope link \\       valid_lft forever preferred_lft forever\n";
        assert!(
            matches!(parse_link_local(ready), LinkLocal::Ready(a) if a == "fe80::ec18:c3ff:fe99:1387".parse::<Ipv6Addr>().unwrap())
        );
        let tentative =
            "2: m-b    inet6 fe80::1/64 scope link tentative \\       valid_lft forever\n";
        assert!(matches!(parse_link_local(tentative), LinkLocal::NotYet));
        let failed =
            "2: m-b    inet6 fe80::1/64 scope link tentative dadfailed \\  valid_lft forever\n";
        assert!(matches!(parse_link_local(failed), LinkLocal::DadFailed));
        assert!(matches!(parse_link_local(""), LinkLocal::NotYet));
    }

    #[test]
    fn lab_addresses_only() {
        for ok in ["fe80::1", "2001:db8::1", "fd00::1", "fdab:1::2", "::1"] {
            assert!(check_lab_addr(ok.parse().unwrap()).is_ok(), "{ok}");
        }
        for bad in ["2001:4860::8888", "fc00::1", "ff02::1", "2001:db9::1", "::"] {
            assert!(check_lab_addr(bad.parse().unwrap()).is_err(), "{bad}");
        }
    }
}
