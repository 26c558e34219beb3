//! Shared fixtures for the agent's namespace tests: a lab with one real
//! `meshfwd agent` process per node, each with its own bpffs directory,
//! control socket, state file and machine id (the lab's nodes share the
//! host's mount namespace, so nothing may be left at its default path).
#![allow(dead_code, reason = "each test file uses a different subset")]

use std::{
    collections::BTreeMap,
    net::Ipv6Addr,
    path::PathBuf,
    process::Command,
    time::{Duration, Instant},
};

use lab::{Lab, ProcId, Topology};
use serde_json::Value;

/// The agent binary under test.
pub const MESHFWD: &str = env!("CARGO_BIN_EXE_meshfwd");

/// A lab with agents.
pub struct Mesh {
    pub lab: Lab,
    pub agents: BTreeMap<String, ProcId>,
}

impl Mesh {
    /// Build `topo` (no agents yet).
    pub fn build(tag: &str, topo: &Topology) -> Mesh {
        let lab = Lab::build(tag, topo).unwrap_or_else(|e| panic!("building the lab: {e:#}"));
        Mesh {
            lab,
            agents: BTreeMap::new(),
        }
    }

    /// Start an agent on every node.
    pub fn start_all(&mut self) {
        let names: Vec<String> = self.lab.nodes().map(|n| n.name().to_string()).collect();
        for n in names {
            self.start(&n, &[]);
        }
    }

    /// Path of a per-node file in the lab's work dir.
    pub fn path(&self, node: &str, suffix: &str) -> PathBuf {
        self.lab.work_dir().join(format!("{node}.{suffix}"))
    }

    pub fn socket(&self, node: &str) -> PathBuf {
        self.path(node, "sock")
    }

    pub fn state_file(&self, node: &str) -> PathBuf {
        self.path(node, "json")
    }

    /// Write the node's machine id file (unique per lab and node unless
    /// the caller overwrites it) and return its path.
    pub fn machine_id(&self, node: &str) -> PathBuf {
        let p = self.path(node, "machine-id");
        if !p.exists() {
            let id = format!(
                "{:016x}{:016x}",
                fnv(self.lab.id().as_bytes()),
                fnv(node.as_bytes())
            );
            std::fs::write(&p, format!("{id}\n")).expect("write machine id");
        }
        p
    }

    /// The arguments every agent in a lab needs.
    pub fn agent_args(&self, node: &str) -> Vec<String> {
        let n = self.lab.node(node);
        vec![
            MESHFWD.to_string(),
            "agent".into(),
            "--bpffs".into(),
            n.bpffs_dir().display().to_string(),
            "--socket".into(),
            self.socket(node).display().to_string(),
            "--state-file".into(),
            self.state_file(node).display().to_string(),
            "--machine-id-file".into(),
            self.machine_id(node).display().to_string(),
            "--hello-interval".into(),
            "1".into(),
            "--dead-interval".into(),
            "3".into(),
        ]
    }

    /// Start the agent on `node` with extra flags.
    pub fn start(&mut self, node: &str, extra: &[&str]) -> ProcId {
        let mut args = self.agent_args(node);
        args.extend(extra.iter().map(|s| s.to_string()));
        let argv: Vec<&str> = args.iter().map(String::as_str).collect();
        let id = self
            .lab
            .node(node)
            .spawn("agent", &argv)
            .unwrap_or_else(|e| panic!("spawn agent on {node}: {e:#}"));
        self.agents.insert(node.to_string(), id);
        id
    }

    /// The agent's log so far.
    pub fn log(&self, node: &str) -> String {
        self.lab.node(node).log(self.agents[node])
    }

    /// Ask the agent on `node` (`meshfwd show <what> --json`).
    pub fn show(&self, node: &str, what: &str) -> Option<Value> {
        let out = Command::new(MESHFWD)
            .arg("--socket")
            .arg(self.socket(node))
            .args(["show", what, "--json"])
            .output()
            .expect("run meshfwd show");
        if !out.status.success() {
            return None;
        }
        serde_json::from_slice(&out.stdout).ok()
    }

    /// Wait until the agent on `node` answers and return its node summary.
    pub fn wait_agent(&self, node: &str, timeout: Duration) -> Value {
        let what = format!("agent on {node} answering");
        wait_for(&what, timeout, || self.show(node, "node")).unwrap_or_else(|| {
            panic!(
                "{what}: timed out after {timeout:?}; log:\n{}",
                self.log(node)
            )
        })
    }

    /// The node's /128 from its state file.
    pub fn node_address(&self, node: &str) -> Ipv6Addr {
        let s = self.state(node);
        s["node_address"]
            .as_str()
            .and_then(|a| a.parse().ok())
            .expect("node_address in the state file")
    }

    /// The node's state file.
    pub fn state(&self, node: &str) -> Value {
        let text = std::fs::read_to_string(self.state_file(node)).unwrap_or_else(|e| {
            panic!("reading {node}'s state file: {e}; log:\n{}", self.log(node))
        });
        serde_json::from_str(&text).expect("state file is JSON")
    }

    /// Number of Full neighbours of `node`.
    pub fn full_neighbors(&self, node: &str) -> usize {
        self.show(node, "neighbors")
            .and_then(|v| {
                v.as_array()
                    .map(|a| a.iter().filter(|n| n["state"] == "Full").count())
            })
            .unwrap_or(0)
    }

    /// Ping `dst` once from `from`.
    pub fn ping(&self, from: &str, dst: Ipv6Addr) -> bool {
        self.lab.node(from).ping6(dst, None).unwrap_or(false)
    }

    /// Wait until every node in `nodes` answers pings from every other.
    pub fn wait_full_reachability(&self, nodes: &[&str], timeout: Duration) {
        let deadline = Instant::now() + timeout;
        for n in nodes {
            self.wait_agent(n, timeout);
        }
        for a in nodes {
            for b in nodes {
                if a == b {
                    continue;
                }
                let dst = self.node_address(b);
                let left = deadline
                    .saturating_duration_since(Instant::now())
                    .max(Duration::from_secs(1));
                if self.lab.node(a).wait_ping6(dst, None, left).is_err() {
                    panic!(
                        "{a} cannot reach {b} ({dst}); {a}'s routes: {}\nlog of {a}:\n{}",
                        self.show(a, "routes")
                            .map(|v| v.to_string())
                            .unwrap_or_default(),
                        self.log(a)
                    );
                }
            }
        }
    }

    /// The XDP program's counters on `node` (from its pinned map).
    pub fn xdp_counter(&self, node: &str, name: &str) -> u64 {
        let out = Command::new(MESHFWD)
            .arg("--bpffs")
            .arg(self.lab.node(node).bpffs_dir())
            .args(["show", "stats", "--json"])
            .output()
            .expect("run meshfwd show stats");
        let v: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        v["counters"][name].as_u64().unwrap_or(0)
    }
}

/// Poll `f` every 100 ms until it returns `Some`, for at most `timeout`.
pub fn wait_for<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    let _ = what;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Poll `f` until true or panic with `what`.
pub fn wait_until(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    if wait_for(what, timeout, || f().then_some(())).is_none() {
        panic!("timed out after {timeout:?} waiting for {what}");
    }
}

fn fnv(b: &[u8]) -> u64 {
    b.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, x| {
        (h ^ u64::from(*x)).wrapping_mul(0x100_0000_01b3)
    })
}
