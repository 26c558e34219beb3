//! Helpers shared by the lab's namespace tests.

#![allow(dead_code, reason = "each test binary uses a different subset")]

use std::net::Ipv6Addr;
use std::path::PathBuf;
use std::time::Duration;

use lab::{Lab, Link};

/// How long a link may take to carry pings after it came up (DAD, ND).
pub const REACH: Duration = Duration::from_secs(10);

/// Everything needed to check, after the lab is gone, that it left nothing.
pub struct Footprint {
    pub prefix: String,
    pub netns: Vec<String>,
    pub bpffs: PathBuf,
    pub pids: Vec<u32>,
}

impl Footprint {
    pub fn of(lab: &Lab, pids: Vec<u32>) -> Footprint {
        Footprint {
            prefix: lab.netns_prefix(),
            netns: lab.netns_names(),
            bpffs: lab.bpffs_dir().to_owned(),
            pids,
        }
    }

    /// Panic if any namespace, process or bpffs dir of the lab remains.
    pub fn assert_gone(&self) {
        let list = std::process::Command::new("ip")
            .args(["netns", "list"])
            .output()
            .expect("ip netns list");
        let list = String::from_utf8_lossy(&list.stdout);
        let left: Vec<&str> = list
            .lines()
            .filter(|l| l.starts_with(&self.prefix))
            .collect();
        assert!(left.is_empty(), "namespaces left behind: {left:?}");
        for ns in &self.netns {
            assert!(!lab::netns::exists(ns), "namespace {ns} still exists");
        }
        for pid in &self.pids {
            assert!(!alive(*pid), "process {pid} still alive");
        }
        assert!(
            !self.bpffs.exists(),
            "bpffs dir {} still exists",
            self.bpffs.display()
        );
        // Veths were only ever made inside the lab's namespaces; none may
        // have leaked into the host namespace.
        let host = std::process::Command::new("ip")
            .args(["-o", "link"])
            .output()
            .expect("ip -o link");
        let host = String::from_utf8_lossy(&host.stdout);
        for line in host.lines() {
            for leaked in self.netns.iter() {
                assert!(
                    !line.contains(leaked.as_str()),
                    "host link refers to {leaked}: {line}"
                );
            }
        }
    }
}

/// Return the link-local addresses of both ends of a link.
pub fn ends(lab: &Lab, l: &Link) -> (Ipv6Addr, Ipv6Addr) {
    let a = lab
        .node(&l.a)
        .link_local(&l.a_if)
        .unwrap_or_else(|e| panic!("{e:#}"));
    let b = lab
        .node(&l.b)
        .link_local(&l.b_if)
        .unwrap_or_else(|e| panic!("{e:#}"));
    (a, b)
}

/// Assert that pings cross a link both ways (bounded retries).
pub fn assert_reachable(lab: &Lab, l: &Link) {
    let (a_addr, b_addr) = ends(lab, l);
    lab.node(&l.a)
        .wait_ping6(b_addr, Some(&l.a_if), REACH)
        .unwrap_or_else(|e| panic!("{}->{}: {e:#}", l.a, l.b));
    lab.node(&l.b)
        .wait_ping6(a_addr, Some(&l.b_if), REACH)
        .unwrap_or_else(|e| panic!("{}->{}: {e:#}", l.b, l.a));
}

/// Assert that no ping crosses a link in either direction (each ping waits
/// 1 s for its reply; a working link answers in well under 10 ms).
pub fn assert_unreachable(lab: &Lab, l: &Link, a_addr: Ipv6Addr, b_addr: Ipv6Addr) {
    assert!(
        !lab.node(&l.a).ping6(b_addr, Some(&l.a_if)).unwrap(),
        "{}->{} still answers",
        l.a,
        l.b
    );
    assert!(
        !lab.node(&l.b).ping6(a_addr, Some(&l.b_if)).unwrap(),
        "{}->{} still answers",
        l.b,
        l.a
    );
}

/// Return whether a process exists and is not a zombie. Orphans of killed
/// processes are reparented to pid 1, which may take its time reaping them.
pub fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the parenthesised command name.
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}
