//! Shared fixture of the plugin's tests: a lab node playing the Kubernetes
//! node (host namespace, bpffs dir, node state file, IPAM store) and pod
//! namespaces made as further lab nodes, so the lab's `Drop` removes every
//! namespace, veth and pin whatever happens to the test.

#![allow(dead_code, reason = "each test binary uses a different part")]

pub mod containerd;

use std::io::{Read as _, Write as _};
use std::net::IpAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use lab::{Lab, Topology};
use serde_json::{Value, json};

/// The plugin binary cargo built for these tests.
pub const PLUGIN: &str = env!("CARGO_BIN_EXE_meshfwd-cni");
/// Longest a single plugin run may take in a test.
pub const RUN_LIMIT: Duration = Duration::from_secs(30);

/// One plugin invocation's outcome.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// Return stdout as JSON (panics with the output if it is not).
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!(
                "stdout is not JSON ({e}): {:?} / stderr {:?}",
                self.stdout, self.stderr
            )
        })
    }

    /// Assert success and return the JSON result (or Null for no output).
    pub fn ok(&self) -> Value {
        assert_eq!(
            self.code, 0,
            "plugin failed: {} / stderr {}",
            self.stdout, self.stderr
        );
        if self.stdout.trim().is_empty() {
            Value::Null
        } else {
            self.json()
        }
    }

    /// Assert failure with the spec's error `code`; return the message.
    pub fn err(&self, code: u64) -> String {
        assert_ne!(
            self.code, 0,
            "plugin succeeded, expected error {code}: {}",
            self.stdout
        );
        let v = self.json();
        assert_eq!(v["code"], json!(code), "wrong error code: {v}");
        assert!(v["cniVersion"].is_string(), "error without cniVersion: {v}");
        v["msg"].as_str().expect("error msg").to_owned()
    }
}

/// A Kubernetes node in a lab.
pub struct Node {
    pub lab: Lab,
    /// Name of the lab node playing the host.
    pub host: String,
    pub state_file: PathBuf,
    pub data_dir: PathBuf,
    pub bpffs: PathBuf,
    pub prefix: String,
    /// The IPv4 pod prefix of a dual-stack node.
    pub prefix4: Option<String>,
    pods: usize,
}

impl Node {
    /// Build a lab with one host node and write its state file with `prefix`.
    pub fn new(tag: &str, prefix: &str) -> Node {
        Self::build(tag, prefix, None)
    }

    /// Build a dual-stack node: IPv6 `prefix` and IPv4 `prefix4`.
    pub fn dual(tag: &str, prefix: &str, prefix4: &str) -> Node {
        Self::build(tag, prefix, Some(prefix4))
    }

    fn build(tag: &str, prefix: &str, prefix4: Option<&str>) -> Node {
        let lab = Lab::build(tag, &Topology::new().node("h")).expect("build lab");
        let host = "h".to_owned();
        let bpffs = lab.node(&host).bpffs_dir();
        let state_file = lab.work_dir().join("node.json");
        let data_dir = lab.work_dir().join("ipam");
        let node = Node {
            lab,
            host,
            state_file,
            data_dir,
            bpffs,
            prefix: prefix.to_owned(),
            prefix4: prefix4.map(str::to_owned),
            pods: 0,
        };
        node.write_state(prefix);
        if let Some(p4) = prefix4 {
            // The agent puts the node's IPv4 address on the node; the host
            // needs one to talk to its pods in IPv4.
            let node4 = format!("{}/32", first_host(p4));
            node.lab
                .node(&node.host)
                .run(&["ip", "addr", "add", &node4, "dev", "lo"])
                .expect("node IPv4 address");
        }
        node
    }

    /// (Re)write the node state file with a pod prefix.
    pub fn write_state(&self, prefix: &str) {
        let node_addr = prefix.split('/').next().unwrap().to_owned() + "1";
        let mut state = json!({
            "router_id": "10.0.0.1",
            "pod_prefix": prefix,
            "node_address": node_addr,
            "mtu": 1500,
            "bpffs": self.bpffs,
        });
        if let Some(p4) = &self.prefix4 {
            state["ipv4"] = json!({"pod_prefix": p4, "node_address": first_host(p4)});
        }
        std::fs::write(&self.state_file, state.to_string()).expect("write node state");
    }

    /// Return the plugin configuration for `version` (plus `extra` fields).
    pub fn conf(&self, version: &str, extra: Value) -> String {
        let mut c = json!({
            "cniVersion": version,
            "name": "kubermesh",
            "type": "meshfwd-cni",
            "stateFile": self.state_file,
            "dataDir": self.data_dir,
        });
        if let (Some(c), Some(extra)) = (c.as_object_mut(), extra.as_object()) {
            for (k, v) in extra {
                c.insert(k.clone(), v.clone());
            }
        }
        c.to_string()
    }

    /// Add a pod namespace; return its netns path.
    pub fn new_pod(&mut self) -> String {
        self.pods += 1;
        let name = format!("p{}", self.pods);
        self.lab.add_node(&name).expect("add pod namespace");
        format!("/run/netns/{}", self.lab.node(&name).netns())
    }

    /// Run the plugin in the host node with `env` and `stdin`.
    pub fn run(&self, env: &[(&str, &str)], stdin: &str) -> Run {
        let mut cmd = self.lab.node(&self.host).cmd(PLUGIN);
        cmd.env_clear().env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin");
        for (k, v) in env {
            cmd.env(k, v);
        }
        run_with_limit(cmd, stdin)
    }

    /// Run an attachment verb with the usual environment.
    pub fn verb(&self, verb: &str, cid: &str, netns: &str, ifname: &str, stdin: &str) -> Run {
        self.run(
            &[
                ("CNI_COMMAND", verb),
                ("CNI_CONTAINERID", cid),
                ("CNI_NETNS", netns),
                ("CNI_IFNAME", ifname),
                ("CNI_PATH", "/opt/cni/bin"),
                (
                    "CNI_ARGS",
                    "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web-0",
                ),
            ],
            stdin,
        )
    }

    /// Run a verb that takes no attachment (STATUS, GC, VERSION).
    pub fn plain(&self, verb: &str, stdin: &str) -> Run {
        self.run(
            &[("CNI_COMMAND", verb), ("CNI_PATH", "/opt/cni/bin")],
            stdin,
        )
    }

    /// Return the allocation files in the store (addresses).
    pub fn allocations(&self) -> Vec<String> {
        let dir = self.data_dir.join("kubermesh");
        let mut v: Vec<String> = std::fs::read_dir(&dir)
            .map(|rd| {
                rd.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| n.parse::<IpAddr>().is_ok())
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    }

    /// Return the host node's veths made by the plugin (`km...`).
    pub fn host_veths(&self) -> Vec<String> {
        let out = self
            .lab
            .node(&self.host)
            .run(&["ip", "-o", "link", "show"])
            .expect("ip link");
        out.lines()
            .filter_map(|l| l.split(':').nth(1))
            .map(|n| n.trim().split('@').next().unwrap_or("").to_owned())
            .filter(|n| n.starts_with("km"))
            .collect()
    }

    /// Return the endpoint map's keys (addresses), empty if not pinned.
    pub fn endpoints(&self) -> Vec<IpAddr> {
        match dataplane::maps::Endpoints::open(&self.bpffs).expect("open endpoint map") {
            Some(m) => {
                let mut v = m.addrs();
                v.sort();
                v
            }
            None => Vec::new(),
        }
    }

    /// Ping `dst` (either family) from the host node once.
    pub fn ping(&self, dst: &str) -> bool {
        let family = if dst.contains(':') { "-6" } else { "-4" };
        self.lab
            .node(&self.host)
            .run(&["ping", family, "-c", "1", "-W", "2", dst])
            .is_ok()
    }

    /// Run a command inside a pod namespace (by netns path).
    pub fn in_pod(&self, netns: &str, args: &[&str]) -> anyhow::Result<String> {
        let mut cmd = std::process::Command::new("nsenter");
        cmd.arg(format!("--net={netns}")).arg("--").args(args);
        let r = run_with_limit(cmd, "");
        if r.code != 0 {
            anyhow::bail!(
                "{args:?} in {netns} failed ({}): {}{}",
                r.code,
                r.stdout,
                r.stderr
            );
        }
        Ok(r.stdout)
    }
}

/// Return the first host address of an IPv4 prefix (the node's).
pub fn first_host(prefix4: &str) -> std::net::Ipv4Addr {
    let net: ipnet::Ipv4Net = prefix4.parse().expect("IPv4 prefix");
    std::net::Ipv4Addr::from(u32::from(net.network()) + 1)
}

/// Run a command with stdin, bounded by [`RUN_LIMIT`].
pub fn run_with_limit(mut cmd: std::process::Command, stdin: &str) -> Run {
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn");
    if let Some(mut i) = child.stdin.take() {
        let _ = i.write_all(stdin.as_bytes());
    }
    let deadline = Instant::now() + RUN_LIMIT;
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{cmd:?} did not finish within {RUN_LIMIT:?}");
        }
        std::thread::sleep(Duration::from_millis(2));
    };
    let (mut stdout, mut stderr) = (String::new(), String::new());
    if let Some(mut o) = child.stdout.take() {
        let _ = o.read_to_string(&mut stdout);
    }
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut stderr);
    }
    Run {
        code: status.code().unwrap_or(-1),
        stdout,
        stderr,
    }
}
