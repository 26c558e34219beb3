//! Real `meshfwd agent` processes in the namespace lab, for the
//! benchmarks that need a running mesh (`recovery`, `agent_idle`): finding
//! or building the agent binary, starting one agent per node with its own
//! paths and machine id, asking agents over their control sockets, and
//! entering a node's network namespace from a thread.

use std::{
    collections::BTreeSet,
    net::Ipv6Addr,
    path::PathBuf,
    process::Command,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};
use lab::{Lab, ProcId};
use serde_json::Value;

/// Hello interval of the lab agents, seconds.
pub const HELLO: u16 = 1;
/// Dead interval of the lab agents, seconds.
pub const DEAD: u16 = 3;
/// Longest wait for the mesh to converge at any step.
pub const CONVERGE: Duration = Duration::from_secs(60);

/// Find the agent binary: `--meshfwd`, `$MESHFWD_BIN`, next to this
/// binary, or build it.
pub fn meshfwd_bin(given: Option<PathBuf>) -> Result<PathBuf> {
    if let Some(p) = given.or_else(|| std::env::var_os("MESHFWD_BIN").map(PathBuf::from)) {
        return Ok(p);
    }
    let exe = std::env::current_exe()?;
    let dir = exe.parent().context("no directory for this binary")?;
    let sibling = dir.join("meshfwd");
    let release = dir.ends_with("release");
    eprintln!("building the meshfwd binary");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.args([
        "build",
        "--quiet",
        "--package",
        "meshfwd",
        "--bin",
        "meshfwd",
    ]);
    if release {
        cmd.arg("--release");
    }
    if !cmd.status().context("running cargo build")?.success() {
        bail!("building meshfwd failed");
    }
    if !sibling.exists() {
        bail!(
            "{} does not exist after the build; pass --meshfwd PATH",
            sibling.display()
        );
    }
    Ok(sibling)
}

/// The lab with an agent per node.
pub struct Mesh {
    pub lab: Lab,
    pub bin: PathBuf,
    pub agents: Vec<(String, ProcId)>,
}

impl Mesh {
    pub fn start(&mut self, node: &str) -> Result<()> {
        self.start_with(node, &[])
    }

    /// Start `node`'s agent with `extra` flags after the usual ones.
    pub fn start_with(&mut self, node: &str, extra: &[&str]) -> Result<()> {
        let n = self.lab.node(node);
        let work = self.lab.work_dir();
        let mid = work.join(format!("{node}.machine-id"));
        std::fs::write(
            &mid,
            format!(
                "{:032x}\n",
                fnv(format!("{}{node}", self.lab.id()).as_bytes())
            ),
        )?;
        let args: Vec<String> = vec![
            self.bin.display().to_string(),
            "agent".into(),
            "--bpffs".into(),
            n.bpffs_dir().display().to_string(),
            "--socket".into(),
            work.join(format!("{node}.sock")).display().to_string(),
            "--state-file".into(),
            work.join(format!("{node}.json")).display().to_string(),
            "--machine-id-file".into(),
            mid.display().to_string(),
            "--hello-interval".into(),
            HELLO.to_string(),
            "--dead-interval".into(),
            DEAD.to_string(),
        ];
        let args: Vec<String> = args
            .into_iter()
            .chain(extra.iter().map(|s| (*s).to_string()))
            .collect();
        let argv: Vec<&str> = args.iter().map(String::as_str).collect();
        let id = n.spawn("agent", &argv)?;
        self.agents.push((node.to_string(), id));
        Ok(())
    }

    pub fn show(&self, node: &str, what: &str) -> Option<Value> {
        let out = Command::new(&self.bin)
            .arg("--socket")
            .arg(self.lab.work_dir().join(format!("{node}.sock")))
            .args(["show", what, "--json"])
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| serde_json::from_slice(&out.stdout).ok())
            .flatten()
    }

    /// The state file `node`'s agent wrote, waiting for it to appear.
    pub fn state(&self, node: &str) -> Result<Value> {
        let path = self.lab.work_dir().join(format!("{node}.json"));
        let deadline = Instant::now() + CONVERGE;
        loop {
            if let Ok(text) = std::fs::read_to_string(&path) {
                return Ok(serde_json::from_str(&text)?);
            }
            if Instant::now() > deadline {
                bail!("{node} wrote no state file");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn node_address(&self, node: &str) -> Result<Ipv6Addr> {
        self.state(node)?["node_address"]
            .as_str()
            .context("node_address")?
            .parse()
            .context("node_address")
    }

    /// The interfaces of `node`'s route to `prefix`.
    pub fn route_ifaces(&self, node: &str, prefix: &str) -> BTreeSet<String> {
        self.show(node, "routes")
            .and_then(|v| {
                let r = v
                    .as_array()?
                    .iter()
                    .find(|r| r["prefix"] == prefix)?
                    .clone();
                Some(
                    r["next_hops"]
                        .as_array()?
                        .iter()
                        .filter_map(|h| h["iface"].as_str().map(String::from))
                        .collect(),
                )
            })
            .unwrap_or_default()
    }

    pub fn xdp_redirects(&self, node: &str) -> u64 {
        let out = Command::new(&self.bin)
            .arg("--bpffs")
            .arg(self.lab.node(node).bpffs_dir())
            .args(["show", "stats", "--json"])
            .output();
        out.ok()
            .and_then(|o| serde_json::from_slice::<Value>(&o.stdout).ok())
            .and_then(|v| v["counters"]["redirect"].as_u64())
            .unwrap_or(0)
    }
}

pub fn wait_until(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) -> Result<()> {
    let deadline = Instant::now() + timeout;
    while !f() {
        if Instant::now() > deadline {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}

fn fnv(b: &[u8]) -> u128 {
    let h = b.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, x| {
        (h ^ u64::from(*x)).wrapping_mul(0x100_0000_01b3)
    });
    (u128::from(h) << 64) | u128::from(h.rotate_left(17) ^ 0x6b6d)
}

impl Mesh {
    /// Wrap a built lab (no agents yet).
    pub fn new(lab: Lab, bin: PathBuf) -> Self {
        Mesh {
            lab,
            bin,
            agents: Vec::new(),
        }
    }

    /// The pid of `node`'s agent.
    pub fn pid(&self, node: &str) -> Option<u32> {
        let id = self.agents.iter().find(|(n, _)| n == node)?.1;
        self.lab.node(node).pid(id)
    }
}

/// Resident memory (kB) and CPU time (ms) of a process, from /proc.
pub fn proc_usage(pid: u32) -> Option<(u64, u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb = |key: &str| {
        status
            .lines()
            .find(|l| l.starts_with(key))?
            .split_whitespace()
            .nth(1)?
            .parse::<u64>()
            .ok()
    };
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    let hz = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .unwrap_or(100) as u64;
    Some((kb("VmRSS:")?, kb("VmHWM:")?, ticks * 1000 / hz.max(1)))
}
