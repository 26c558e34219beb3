//! Pods on lab nodes, wired by a CNI plugin the way a runtime runs it: the
//! pod is a namespace of its own (a lab node, so the lab removes it), the
//! plugin is spawned from a thread inside the node's namespace with the
//! CNI environment and the network configuration on stdin.
//!
//! [`AgentMesh::add_pod`] wires a pod with `meshfwd-cni` against the
//! node's agent; [`run_plugin`] runs any plugin (the reference ones too).

use std::{
    io::{Read as _, Write as _},
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};
use serde_json::{Value, json};

use crate::{Lab, agents::AgentMesh, netns};

/// Where Debian's reference plugins live (containernetworking-plugins).
pub const REFERENCE_PLUGINS: &str = "/usr/lib/cni";
/// Longest a single plugin run may take.
pub const PLUGIN_LIMIT: Duration = Duration::from_secs(30);

/// One plugin run's outcome.
#[derive(Debug)]
pub struct PluginRun {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
    /// From spawn to exit.
    pub took: Duration,
}

impl PluginRun {
    /// The result on stdout, or an error with the plugin's message.
    pub fn result(&self) -> Result<Value> {
        if self.code != 0 {
            bail!(
                "the plugin failed ({}): {} {}",
                self.code,
                self.stdout.trim(),
                self.stderr.trim()
            );
        }
        if self.stdout.trim().is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_str(&self.stdout).context("the plugin's result is not JSON")
    }
}

/// What a plugin invocation needs besides the configuration.
pub struct Invocation<'a> {
    pub verb: &'a str,
    pub container_id: &'a str,
    /// The pod's netns path (empty for verbs without one).
    pub netns: &'a str,
    pub ifname: &'a str,
}

/// Run `plugin` in lab node `node` (its host namespace) for `inv`, with
/// `conf` on stdin, bounded by [`PLUGIN_LIMIT`].
pub fn run_plugin(
    lab: &Lab,
    node: &str,
    plugin: &Path,
    inv: &Invocation,
    conf: &str,
) -> Result<PluginRun> {
    let mut cmd = Command::new(plugin);
    cmd.env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .env("CNI_COMMAND", inv.verb)
        .env("CNI_CONTAINERID", inv.container_id)
        .env("CNI_NETNS", inv.netns)
        .env("CNI_IFNAME", inv.ifname)
        .env("CNI_PATH", REFERENCE_PLUGINS)
        .env(
            "CNI_ARGS",
            format!(
                "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME={}",
                inv.container_id
            ),
        )
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let start = Instant::now();
    // Spawned from a thread inside the node's netns, as a runtime execs
    // the plugin in the host netns: no nsenter in between.
    let ns = lab.node(node).netns().to_string();
    let mut child = netns::enter(&ns, || {
        cmd.spawn()
            .with_context(|| format!("starting {}", plugin.display()))
    })?;
    if let Some(mut i) = child.stdin.take() {
        i.write_all(conf.as_bytes())?;
    }
    let status = crate::process::wait_child(&mut child, PLUGIN_LIMIT, Duration::from_micros(200))?
        .with_context(|| {
            format!(
                "{} {} did not finish within {PLUGIN_LIMIT:?}",
                inv.verb, inv.container_id
            )
        })?;
    let took = start.elapsed();
    let (mut stdout, mut stderr) = (String::new(), String::new());
    if let Some(mut o) = child.stdout.take() {
        let _ = o.read_to_string(&mut stdout);
    }
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut stderr);
    }
    Ok(PluginRun {
        code: status.code().unwrap_or(-1),
        stdout,
        stderr,
        took,
    })
}

/// A wired pod.
#[derive(Clone, Debug)]
pub struct Pod {
    /// The lab node that is the pod's namespace.
    pub name: String,
    /// The node it runs on.
    pub node: String,
    pub addr: Ipv6Addr,
    /// Its IPv4 address, on a node that runs IPv4.
    pub addr4: Option<Ipv4Addr>,
    /// The host end of its veth.
    pub host_veth: String,
    /// The network configuration it was added with (for DEL).
    pub conf: Value,
}

/// Return the IPv6 address and host veth of an ADD result.
pub fn parse_add(result: &Value) -> Result<(Ipv6Addr, String)> {
    let (addr, _, host_veth) = parse_add_dual(result)?;
    Ok((addr, host_veth))
}

/// Return the IPv6 address, the IPv4 address if any, and the host veth of
/// an ADD result.
pub fn parse_add_dual(result: &Value) -> Result<(Ipv6Addr, Option<Ipv4Addr>, String)> {
    let addrs: Vec<IpAddr> = result["ips"]
        .as_array()
        .context("ADD result without ips")?
        .iter()
        .map(|ip| {
            let a = ip["address"].as_str().context("ips[] without an address")?;
            Ok(a.split('/').next().unwrap_or(a).parse()?)
        })
        .collect::<Result<_>>()?;
    let addr = addrs
        .iter()
        .find_map(|a| match a {
            IpAddr::V6(a) => Some(*a),
            IpAddr::V4(_) => None,
        })
        .context("ADD result without an IPv6 address")?;
    let addr4 = addrs.iter().find_map(|a| match a {
        IpAddr::V4(a) => Some(*a),
        IpAddr::V6(_) => None,
    });
    let host_veth = result["interfaces"]
        .as_array()
        .and_then(|a| a.iter().find(|i| i.get("sandbox").is_none()))
        .and_then(|i| i["name"].as_str())
        .context("ADD result without a host interface")?
        .to_string();
    Ok((addr, addr4, host_veth))
}

impl AgentMesh {
    /// The `meshfwd-cni` configuration for pods on `node` (its agent's
    /// state file, a store in the work dir), with `extra` fields laid over.
    pub fn cni_conf(&self, node: &str, extra: &Value) -> Value {
        let work = self.lab.work_dir();
        let mut conf = json!({
            "cniVersion": "1.1.0",
            "name": "kubermesh",
            "type": "meshfwd-cni",
            "stateFile": self.state_file(node),
            "dataDir": work.join(format!("{node}-ipam")),
        });
        if let (Some(c), Some(extra)) = (conf.as_object_mut(), extra.as_object()) {
            for (k, v) in extra {
                c.insert(k.clone(), v.clone());
            }
        }
        conf
    }

    /// Make pod `pod` on `node` and wire it with the plugin at `cni`
    /// (`extra` laid over the configuration).
    pub fn add_pod(&mut self, node: &str, pod: &str, cni: &Path, extra: &Value) -> Result<Pod> {
        self.lab.add_node(pod)?;
        let netns = pod_netns(&self.lab, pod);
        let conf = self.cni_conf(node, extra);
        let run = run_plugin(
            &self.lab,
            node,
            cni,
            &Invocation {
                verb: "ADD",
                container_id: pod,
                netns: &netns,
                ifname: "eth0",
            },
            &conf.to_string(),
        )?;
        let result = run
            .result()
            .with_context(|| format!("ADD of pod {pod} on {node}"))?;
        let (addr, addr4, host_veth) = parse_add_dual(&result)?;
        Ok(Pod {
            name: pod.to_owned(),
            node: node.to_owned(),
            addr,
            addr4,
            host_veth,
            conf,
        })
    }
}

/// The netns path of lab node `pod`.
pub fn pod_netns(lab: &Lab, pod: &str) -> String {
    netns::path(lab.node(pod).netns()).display().to_string()
}

/// Find a binary of this workspace: `given`, else `$env`, else binary
/// `bin` of `package` built now (cargo is quick when it is up to date)
/// into the target directory of the running executable, in its profile.
pub fn built_bin(given: Option<PathBuf>, env: &str, package: &str, bin: &str) -> Result<PathBuf> {
    if let Some(p) = given.or_else(|| std::env::var_os(env).map(PathBuf::from)) {
        return Ok(p);
    }
    let exe = std::env::current_exe()?;
    let mut dir = exe.parent().context("no directory for this binary")?;
    // Test binaries live one level down, in `deps`.
    if dir.ends_with("deps") {
        dir = dir.parent().context("no profile directory")?;
    }
    let sibling = dir.join(bin);
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.args(["build", "--quiet", "--package", package, "--bin", bin]);
    if dir.ends_with("release") {
        cmd.arg("--release");
    }
    if !cmd.status().context("running cargo build")?.success() {
        bail!("building {bin} failed");
    }
    if !sibling.exists() {
        bail!(
            "{} does not exist after the build; set ${env}",
            sibling.display()
        );
    }
    Ok(sibling)
}
