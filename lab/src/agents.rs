//! A mesh of real `meshfwd agent` processes in a lab: one per node, each
//! with its own bpffs directory, control socket, state file and machine
//! id (the lab's nodes share the host's mount namespace, so nothing may be
//! left at its default path). The one harness the agent's tests, the
//! benchmarks and the demo run their meshes with.
//!
//! The harness knows how to start agents and where their files are; what
//! they answer is typed by the caller (`meshfwd::api`, the node state
//! type), which reads `meshfwd show ... --json` and the state file through
//! [`AgentMesh::show`], [`AgentMesh::counters`] and [`AgentMesh::state`].

use std::{
    collections::BTreeMap,
    fmt::Display,
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};
use meshfwd_common::hash::stable_hash;
use serde::de::DeserializeOwned;

use crate::{Lab, ProcId};

/// Hello interval of lab agents, seconds (fast convergence in a lab).
pub const HELLO: u16 = 1;
/// Dead interval of lab agents, seconds.
pub const DEAD: u16 = 3;

/// A lab with an agent per node.
pub struct AgentMesh {
    pub lab: Lab,
    bin: PathBuf,
    agents: BTreeMap<String, ProcId>,
}

impl AgentMesh {
    /// Run agents from the `meshfwd` binary at `bin` in `lab` (none yet).
    pub fn new(lab: Lab, bin: impl Into<PathBuf>) -> Self {
        AgentMesh {
            lab,
            bin: bin.into(),
            agents: BTreeMap::new(),
        }
    }

    /// Return the agent binary.
    pub fn bin(&self) -> &Path {
        &self.bin
    }

    /// Return the path of a per-node file in the lab's work dir.
    pub fn path(&self, node: &str, ext: &str) -> PathBuf {
        self.lab.work_dir().join(format!("{node}.{ext}"))
    }

    /// Return the control socket of `node`'s agent.
    pub fn socket(&self, node: &str) -> PathBuf {
        self.path(node, "sock")
    }

    /// Return the state file of `node`'s agent.
    pub fn state_file(&self, node: &str) -> PathBuf {
        self.path(node, "json")
    }

    /// Return `node`'s machine id file, written with an id unique to the
    /// lab and node unless the caller wrote one first (cloned disks).
    pub fn machine_id_file(&self, node: &str) -> Result<PathBuf> {
        let p = self.path(node, "machine-id");
        if !p.exists() {
            let seed = |part: &str| {
                stable_hash(&[self.lab.id().as_bytes(), node.as_bytes(), part.as_bytes()])
            };
            std::fs::write(&p, format!("{:016x}{:016x}\n", seed("hi"), seed("lo")))
                .with_context(|| format!("writing {}", p.display()))?;
        }
        Ok(p)
    }

    /// Return the command line every agent in a lab needs.
    pub fn agent_args(&self, node: &str) -> Result<Vec<String>> {
        let n = self.lab.node(node);
        Ok(vec![
            self.bin.display().to_string(),
            "agent".into(),
            "--bpffs".into(),
            n.bpffs_dir().display().to_string(),
            "--socket".into(),
            self.socket(node).display().to_string(),
            "--state-file".into(),
            self.state_file(node).display().to_string(),
            "--machine-id-file".into(),
            self.machine_id_file(node)?.display().to_string(),
            "--hello-interval".into(),
            HELLO.to_string(),
            "--dead-interval".into(),
            DEAD.to_string(),
        ])
    }

    /// Start the agent on `node` with `extra` flags after the usual ones.
    pub fn start(&mut self, node: &str, extra: &[&str]) -> Result<ProcId> {
        let mut args = self.agent_args(node)?;
        // A timer flag in `extra` replaces the harness's (each flag is
        // taken once).
        for flag in ["--hello-interval", "--dead-interval"] {
            if extra.contains(&flag)
                && let Some(i) = args.iter().position(|a| a == flag)
            {
                args.drain(i..i + 2);
            }
        }
        args.extend(extra.iter().map(|s| (*s).to_owned()));
        let argv: Vec<&str> = args.iter().map(String::as_str).collect();
        let id = self
            .lab
            .node(node)
            .spawn("agent", &argv)
            .with_context(|| format!("starting the agent on {node}"))?;
        self.agents.insert(node.to_owned(), id);
        Ok(id)
    }

    /// Start an agent on every node of the lab.
    pub fn start_all(&mut self) -> Result<()> {
        let names: Vec<String> = self.lab.nodes().map(|n| n.name().to_owned()).collect();
        for n in names {
            self.start(&n, &[])?;
        }
        Ok(())
    }

    /// Return the process of `node`'s agent.
    pub fn agent(&self, node: &str) -> Option<ProcId> {
        self.agents.get(node).copied()
    }

    /// Return the pid of `node`'s agent while it runs.
    pub fn pid(&self, node: &str) -> Option<u32> {
        self.lab.node(node).pid(self.agent(node)?)
    }

    /// Return `node`'s agent log so far.
    pub fn log(&self, node: &str) -> String {
        self.agent(node)
            .map(|id| self.lab.node(node).log(id))
            .unwrap_or_default()
    }

    /// Return `node`'s agent log since its latest start.
    pub fn latest_log(&self, node: &str) -> String {
        let log = self.log(node);
        let at = log.rfind(crate::process::START_MARKER).unwrap_or(0);
        log[at..].to_owned()
    }

    /// Kill `node`'s agent with SIGKILL, as a crash does: no goodbye to
    /// its neighbours, no Grace-LSA, nothing cleaned up.
    pub fn crash(&self, node: &str) -> Result<()> {
        let pid = self
            .pid(node)
            .with_context(|| format!("{node}'s agent is not running"))?;
        let pid = i32::try_from(pid).context("a pid beyond i32")?;
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        )
        .with_context(|| format!("killing {node}'s agent"))
    }

    /// Ask `node`'s agent (`meshfwd show <what> --json`, `what` split at
    /// spaces: `routes --ipv4`); `None` when it does not answer or the
    /// answer is not a `T`.
    pub fn show<T: DeserializeOwned>(&self, node: &str, what: impl Display) -> Option<T> {
        let what = what.to_string();
        let out = Command::new(&self.bin)
            .arg("--socket")
            .arg(self.socket(node))
            .arg("show")
            .args(what.split_whitespace())
            .arg("--json")
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| serde_json::from_slice(&out.stdout).ok())
            .flatten()
    }

    /// Read `node`'s fast-path counters from its pinned maps
    /// (`meshfwd --bpffs <dir> show stats --json`), agent or not.
    pub fn counters<T: DeserializeOwned>(&self, node: &str) -> Option<T> {
        let out = Command::new(&self.bin)
            .arg("--bpffs")
            .arg(self.lab.node(node).bpffs_dir())
            .arg("--socket")
            .arg(self.socket(node))
            .args(["show", "stats", "--json"])
            .output()
            .ok()?;
        serde_json::from_slice(&out.stdout).ok()
    }

    /// Read `node`'s state file, if it is there and a `T`.
    pub fn state<T: DeserializeOwned>(&self, node: &str) -> Option<T> {
        let text = std::fs::read(self.state_file(node)).ok()?;
        serde_json::from_slice(&text).ok()
    }

    /// Wait for `node`'s state file.
    pub fn wait_state<T: DeserializeOwned>(&self, node: &str, timeout: Duration) -> Result<T> {
        wait_for(timeout, || self.state(node)).with_context(|| {
            format!(
                "{node} wrote no state file within {timeout:?}; log:\n{}",
                self.log(node)
            )
        })
    }
}

/// Poll `f` every 100 ms until it returns `Some`, for at most `timeout`.
pub fn wait_for<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
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

/// Poll `f` every 100 ms until it holds, for at most `timeout`.
pub fn wait_until(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) -> Result<()> {
    if wait_for(timeout, || f().then_some(())).is_none() {
        bail!("timed out after {timeout:?} waiting for {what}");
    }
    Ok(())
}
