//! The reference plugins chained after meshfwd-cni, on nodes with real
//! agents (the netfilter check on):
//!
//! - hostPorts: containerd's CRI runs a sandbox with `port_mappings`
//!   through the shipped conflist (`deploy/kubermesh.yaml`), whose
//!   `portmap` DNATs the node's port to the pod; reached from another
//!   node's host and from a pod there;
//! - `firewall` on a node whose forward policy drops: its rules let the
//!   chained pod's connections out (and their replies in), and those flows
//!   still take the fast path;
//! - `bandwidth`: a shaped pod's traffic takes the kernel path, through the
//!   plugin's qdiscs.
//!
//! The `firewall` and `bandwidth` chains are run the way libcni runs a
//! conflist: each plugin gets its entry with the list's name and version,
//! the runtime config its capabilities ask for, and the previous plugin's
//! result as `prevResult`; DEL runs the list in reverse.

mod common;

use std::{
    io::{BufRead as _, BufReader, Read as _, Write as _},
    net::{Ipv6Addr, SocketAddr, TcpStream},
    os::unix::process::CommandExt as _,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::Duration,
};

use common::containerd::{Runtime, build_pause_image};
use k8s_cri::v1::{PortMapping, Protocol};
use lab::{
    Topology, Wire,
    agents::AgentMesh,
    netns,
    pods::{Invocation, REFERENCE_PLUGINS, parse_add, pod_netns, run_plugin},
};
use meshfwd_common::stats::Stat;
use serde_json::{Value, json};

const CONVERGE: Duration = Duration::from_secs(60);
const IO: Duration = Duration::from_secs(5);
const BULK: usize = 256 * 1024;
const HOST_PORT: u16 = 30080;
const WEB_PORT: u16 = 8080;
/// The version containerd 1.6's libcni and the reference plugins share.
const VERSION: &str = "1.0.0";

/// Two nodes with agents, pod routes converged.
fn two_nodes(tag: &str) -> AgentMesh {
    let meshfwd = lab::pods::built_bin(None, "MESHFWD_BIN", "meshfwd", "meshfwd")
        .expect("the meshfwd binary");
    let lab = lab::Lab::build(tag, &Topology::new().line(&["a", "b"], Wire::Direct))
        .expect("build the lab");
    let mut m = AgentMesh::new(lab, meshfwd);
    m.start_all().expect("start the agents");
    for (from, to) in [("a", "b"), ("b", "a")] {
        let state: dataplane::node_state::NodeState = m
            .wait_state(to, CONVERGE)
            .unwrap_or_else(|e| panic!("{e:#}"));
        m.lab
            .node(from)
            .wait_ping6(state.node_address, None, CONVERGE)
            .unwrap_or_else(|e| panic!("{from} reaches {to}: {e:#}"));
    }
    m
}

/// The programs on `veth`'s TCX ingress in `node`, as the kernel lists
/// them.
fn ingress_programs(m: &AgentMesh, node: &str, veth: &str) -> Vec<String> {
    netns::enter(m.lab.node(node).netns(), || {
        Ok(dataplane::tc::ingress_programs(veth)?)
    })
    .unwrap_or_else(|e| panic!("querying {veth}'s TCX ingress: {e:#}"))
}

/// Wait until the agent on `node` has attached the fast path to the pod
/// whose ADD result is `result` (it does so just after ADD).
fn wait_attached(m: &AgentMesh, node: &str, result: &Value) {
    let (_, veth) = parse_add(result).unwrap();
    lab::agents::wait_until(&format!("the fast path on {veth}"), CONVERGE, || {
        ingress_programs(m, node, &veth) == [dataplane::object::POD_PROGRAM]
    })
    .unwrap_or_else(|e| panic!("{e:#}"));
}

fn node_address(m: &AgentMesh, node: &str) -> Ipv6Addr {
    let state: dataplane::node_state::NodeState = m.state(node).expect("state file");
    state.node_address
}

fn counter(m: &AgentMesh, node: &str, stat: Stat) -> u64 {
    #[derive(serde::Deserialize)]
    struct Report {
        #[serde(flatten)]
        xdp: Option<dataplane::stats::Stats>,
    }
    m.counters::<Report>(node)
        .and_then(|r| r.xdp)
        .map_or(0, |s| s.get(stat))
}

/// A TCP server in the namespace at `netns_path` that says `name`, then
/// echoes; killed on drop.
struct Server(Child);

impl Server {
    fn start(netns_path: &str, name: &str) -> Server {
        let child = Command::new("nsenter")
            .arg(format!("--net={netns_path}"))
            .args([
                "--",
                "socat",
                &format!("TCP6-LISTEN:{WEB_PORT},reuseaddr,fork"),
                &format!("SYSTEM:echo {name}; exec cat"),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            // Its own group, so the forked children go with it.
            .process_group(0)
            .spawn()
            .expect("socat");
        Server(child)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let pgid = nix::unistd::Pid::from_raw(-(self.0.id() as i32));
        let _ = nix::sys::signal::kill(pgid, nix::sys::signal::Signal::SIGKILL);
        let _ = self.0.wait();
    }
}

/// Connect from namespace `ns` (a lab node's) to `to`:`port`, read the
/// server's name and echo [`BULK`] bytes; return the name.
fn exchange(ns: &str, to: Ipv6Addr, port: u16) -> std::io::Result<String> {
    let conn = netns::enter(ns, || {
        Ok(TcpStream::connect_timeout(
            &SocketAddr::new(to.into(), port),
            IO,
        ))
    })
    .expect("enter the namespace")?;
    conn.set_read_timeout(Some(IO))?;
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut name = String::new();
    reader.read_line(&mut name)?;
    let data: Vec<u8> = (0..BULK).map(|i| (i % 251) as u8).collect();
    let mut writer = conn.try_clone()?;
    let sent = data.clone();
    let sender = std::thread::spawn(move || writer.write_all(&sent));
    let mut back = vec![0u8; BULK];
    reader.read_exact(&mut back)?;
    sender.join().expect("sender")?;
    assert!(back == data, "the echo differs");
    Ok(name.trim().to_owned())
}

/// The conflist `deploy/kubermesh.yaml` installs, with the node's state
/// file and a store in the lab.
fn shipped_conflist(m: &AgentMesh, node: &str) -> Value {
    let dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let text = std::fs::read_to_string(Path::new(&dir).join("../deploy/kubermesh.yaml"))
        .expect("deploy/kubermesh.yaml");
    let conflist = text
        .split("10-kubermesh.conflist: |")
        .nth(1)
        .and_then(|rest| rest.split("\n---").next())
        .expect("the conflist in the ConfigMap");
    let mut list: Value = serde_json::from_str(conflist).expect("the conflist is JSON");
    list["plugins"][0]["stateFile"] = json!(m.state_file(node));
    list["plugins"][0]["dataDir"] = json!(m.lab.work_dir().join(format!("{node}-ipam")));
    list
}

#[test]
fn a_host_port_through_portmap_chained_by_containerd() {
    let mut m = two_nodes("cni-hostport");
    // A pod on a, wired by the plugin directly.
    m.add_pod("a", "ca", Path::new(common::PLUGIN), &json!({}))
        .expect("a pod on a");
    let image = {
        let d = m.lab.work_dir().join("image");
        std::fs::create_dir_all(&d).unwrap();
        build_pause_image(&d)
    };
    let rt = Runtime::start(&m.lab, "b", &shipped_conflist(&m, "b"), &image);
    let (id, _, netns_path) = rt.run_pod_with_ports(
        "web",
        vec![PortMapping {
            protocol: Protocol::Tcp as i32,
            container_port: i32::from(WEB_PORT),
            host_port: i32::from(HOST_PORT),
            host_ip: String::new(),
        }],
    );
    let _server = Server::start(&netns_path, "web");
    let b = node_address(&m, "b");

    for from in [
        m.lab.node("a").netns().to_string(),
        m.lab.node("ca").netns().to_string(),
    ] {
        // The agent attaches the pod's fast path once it sees the finished
        // veth, a moment after the sandbox is up: an exchange before that
        // takes the kernel path alone. So exchange until one is counted
        // (bounded), each exchange checked.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let translated = loop {
            let before = counter(&m, "b", Stat::TcTranslated);
            let name = retry(Duration::from_secs(10), || exchange(&from, b, HOST_PORT));
            let translated = counter(&m, "b", Stat::TcTranslated) - before;
            assert_eq!(
                name.unwrap_or_else(|e| panic!("{from} -> [{b}]:{HOST_PORT}: {e}")),
                "web"
            );
            if translated > 0 || std::time::Instant::now() >= deadline {
                break translated;
            }
            std::thread::sleep(Duration::from_millis(200));
        };
        assert!(
            translated > 0,
            "the pod's replies met conntrack on b (un-DNAT) instead of the fast path"
        );
    }
    rt.remove_pod(&id);
    let nat = m
        .lab
        .node("b")
        .run(&["ip6tables-save", "-t", "nat"])
        .unwrap();
    assert!(
        !nat.contains(&format!("--dport {HOST_PORT}")),
        "portmap removed its rules with the pod: {nat}"
    );
}

/// A conflist run the way libcni runs it.
struct Chain {
    plugins: Vec<Value>,
    runtime_config: Value,
}

impl Chain {
    /// The configuration plugin `i` gets.
    fn conf(&self, i: usize, prev: Option<&Value>) -> Value {
        let mut conf = self.plugins[i].clone();
        conf["name"] = json!("kubermesh");
        conf["cniVersion"] = json!(VERSION);
        let mut rc = serde_json::Map::new();
        if let Some(caps) = conf["capabilities"].as_object() {
            for (cap, on) in caps {
                if on == &json!(true)
                    && let Some(v) = self.runtime_config.get(cap)
                {
                    rc.insert(cap.clone(), v.clone());
                }
            }
        }
        if !rc.is_empty() {
            conf["runtimeConfig"] = Value::Object(rc);
        }
        if let Some(prev) = prev {
            conf["prevResult"] = prev.clone();
        }
        conf
    }

    fn binary(plugin: &Value) -> PathBuf {
        match plugin["type"].as_str().expect("type") {
            "meshfwd-cni" => PathBuf::from(common::PLUGIN),
            other => Path::new(REFERENCE_PLUGINS).join(other),
        }
    }

    /// ADD through the list; return the final result.
    fn add(&self, m: &AgentMesh, node: &str, pod: &str) -> Value {
        let netns = pod_netns(&m.lab, pod);
        let mut prev: Option<Value> = None;
        for (i, plugin) in self.plugins.iter().enumerate() {
            let conf = self.conf(i, prev.as_ref());
            let inv = Invocation {
                verb: "ADD",
                container_id: pod,
                netns: &netns,
                ifname: "eth0",
            };
            let run = run_plugin(&m.lab, node, &Self::binary(plugin), &inv, &conf.to_string())
                .expect("run the plugin");
            prev = Some(
                run.result()
                    .unwrap_or_else(|e| panic!("{} ADD: {e:#}", plugin["type"])),
            );
        }
        prev.expect("a non-empty list")
    }

    /// DEL through the list in reverse.
    fn del(&self, m: &AgentMesh, node: &str, pod: &str, result: &Value) {
        let netns = pod_netns(&m.lab, pod);
        for (i, plugin) in self.plugins.iter().enumerate().rev() {
            let conf = self.conf(i, Some(result));
            let inv = Invocation {
                verb: "DEL",
                container_id: pod,
                netns: &netns,
                ifname: "eth0",
            };
            run_plugin(&m.lab, node, &Self::binary(plugin), &inv, &conf.to_string())
                .expect("run the plugin")
                .result()
                .unwrap_or_else(|e| panic!("{} DEL: {e:#}", plugin["type"]));
        }
    }
}

fn ours(m: &AgentMesh, node: &str, caps: Value) -> Value {
    json!({
        "type": "meshfwd-cni",
        "stateFile": m.state_file(node),
        "dataDir": m.lab.work_dir().join(format!("{node}-ipam")),
        "capabilities": caps,
    })
}

/// Retry `f` until it succeeds or `limit` has passed (a server that has
/// just been started may not listen yet).
fn retry<T>(limit: Duration, mut f: impl FnMut() -> std::io::Result<T>) -> std::io::Result<T> {
    let deadline = std::time::Instant::now() + limit;
    loop {
        match f() {
            Ok(v) => return Ok(v),
            Err(e) if std::time::Instant::now() >= deadline => return Err(e),
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

#[test]
fn firewall_chained_lets_its_pods_out_through_a_dropping_forward_policy() {
    let mut m = two_nodes("cni-firewall");
    // The firewall plugin accepts what its pod sends and the replies to
    // it: a's forward policy drops everything else.
    m.lab
        .node("a")
        .run(&["ip6tables", "-P", "FORWARD", "DROP"])
        .unwrap();
    let chain = |node: &str| Chain {
        plugins: vec![
            ours(&m, node, json!({})),
            json!({"type": "firewall", "backend": "iptables"}),
        ],
        runtime_config: json!({}),
    };
    let (ca, cb) = (chain("a"), chain("b"));
    m.lab.add_node("fa").unwrap();
    m.lab.add_node("fb").unwrap();
    let ra = ca.add(&m, "a", "fa");
    let rb = cb.add(&m, "b", "fb");
    // firewall passes our result on as it is: the pod's interface and its
    // address, which points at it.
    wait_attached(&m, "a", &ra);
    wait_attached(&m, "b", &rb);
    let (fb_addr, _) = parse_add(&rb).unwrap();
    assert_eq!(rb["interfaces"].as_array().unwrap().len(), 2, "{rb}");
    assert_eq!(rb["ips"][0]["interface"], json!(1), "{rb}");
    assert!(rb["interfaces"][1]["sandbox"].is_string(), "{rb}");
    let _server = Server::start(&pod_netns(&m.lab, "fb"), "fb");

    let fa_ns = m.lab.node("fa").netns().to_string();
    let before = [
        counter(&m, "a", Stat::TcPodToMesh),
        counter(&m, "a", Stat::TcMeshToPod),
    ];
    let name = retry(Duration::from_secs(10), || {
        exchange(&fa_ns, fb_addr, WEB_PORT)
    });
    assert_eq!(name.expect("fa reaches fb through the firewall"), "fb");
    let fast = [
        counter(&m, "a", Stat::TcPodToMesh) - before[0],
        counter(&m, "a", Stat::TcMeshToPod) - before[1],
    ];
    assert!(
        fast.iter().all(|n| *n >= 4),
        "accepted by the firewall's rules, the flow took the fast path: {fast:?}"
    );

    // A pod the firewall plugin does not know is dropped, fast path or not.
    let plain = Chain {
        plugins: vec![ours(&m, "a", json!({}))],
        runtime_config: json!({}),
    };
    m.lab.add_node("na").unwrap();
    let rn = plain.add(&m, "a", "na");
    let na_ns = m.lab.node("na").netns().to_string();
    assert!(
        exchange(&na_ns, fb_addr, WEB_PORT).is_err(),
        "the forward policy drops a pod the firewall plugin did not add"
    );

    plain.del(&m, "a", "na", &rn);
    ca.del(&m, "a", "fa", &ra);
    cb.del(&m, "b", "fb", &rb);
    let (fa_addr, _) = parse_add(&ra).unwrap();
    let rules = m
        .lab
        .node("a")
        .run(&["ip6tables-save", "-t", "filter"])
        .unwrap();
    assert!(
        !rules.contains(&fa_addr.to_string()),
        "firewall removed its rules: {rules}"
    );
}

#[test]
fn bandwidth_chained_shapes_a_pod_that_takes_the_kernel_path() {
    let mut m = two_nodes("cni-bandwidth");
    let shaped = Chain {
        plugins: vec![
            ours(&m, "a", json!({"bandwidth": true})),
            json!({"type": "bandwidth", "capabilities": {"bandwidth": true}}),
        ],
        // 100 Mbit/s each way, as kubelet passes the pod's annotations.
        runtime_config: json!({"bandwidth": {
            "ingressRate": 100_000_000, "ingressBurst": 1_000_000,
            "egressRate": 100_000_000, "egressBurst": 1_000_000,
        }}),
    };
    let server = Chain {
        plugins: vec![ours(&m, "b", json!({}))],
        runtime_config: json!({}),
    };
    m.lab.add_node("sa").unwrap();
    m.lab.add_node("wb").unwrap();
    let ra = shaped.add(&m, "a", "sa");
    let rb = server.add(&m, "b", "wb");
    let (_, veth) = parse_add(&ra).unwrap();
    let (wb_addr, _) = parse_add(&rb).unwrap();
    let _server = Server::start(&pod_netns(&m.lab, "wb"), "wb");

    wait_attached(&m, "b", &rb);
    // The agent on a had the same chance to attach, and did not.
    assert_eq!(
        ingress_programs(&m, "a", &veth),
        Vec::<String>::new(),
        "no fast path on the shaped pod's veth"
    );
    let sa_ns = m.lab.node("sa").netns().to_string();
    let name = retry(Duration::from_secs(10), || {
        exchange(&sa_ns, wb_addr, WEB_PORT)
    });
    assert_eq!(name.expect("sa reaches wb"), "wb");
    // Both directions went through the plugin's shapers: the tbf on the
    // host veth (towards the pod) and the one on its ifb (from the pod).
    let qdiscs = m.lab.node("a").run(&["tc", "-s", "qdisc", "show"]).unwrap();
    let tbf_bytes: Vec<u64> = qdiscs
        .split("qdisc ")
        .filter(|q| q.starts_with("tbf"))
        .filter_map(|q| q.split("Sent ").nth(1)?.split(' ').next()?.parse().ok())
        .collect();
    assert_eq!(tbf_bytes.len(), 2, "two shapers: {qdiscs}");
    assert!(
        tbf_bytes.iter().all(|b| *b >= BULK as u64),
        "each carried the exchange: {tbf_bytes:?}\n{qdiscs}"
    );
    shaped.del(&m, "a", "sa", &ra);
    server.del(&m, "b", "wb", &rb);
    let links = m.lab.node("a").run(&["ip", "-o", "link", "show"]).unwrap();
    assert!(!links.contains("bwp"), "the ifb went with the pod: {links}");
}
