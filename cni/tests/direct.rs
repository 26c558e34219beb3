//! Direct-exec tests: the plugin binary run the way a runtime runs it
//! (`CNI_*` environment, configuration on stdin) inside a lab node, for
//! every verb, every error code and idempotency. Run as root.

mod common;

use cni::wiring::{host_veth_name, macs};
use common::Node;
use dataplane::netlink::Mac;
use serde_json::{Value, json};

const PREFIX: &str = "fd42:1:2:3::/64";

/// The exact result ADD must print for attachment `(cid, eth0)`.
fn expected_result(version: &str, cid: &str, netns: &str, addr: &str) -> Value {
    let (host_mac, pod_mac) = macs(cid, "eth0");
    let mut ip = json!({"address": format!("{addr}/128"), "gateway": "fe80::1", "interface": 1});
    let mut host_if =
        json!({"name": host_veth_name(cid, "eth0"), "mac": Mac(host_mac).to_string()});
    let mut pod_if = json!({"name": "eth0", "mac": Mac(pod_mac).to_string(), "sandbox": netns});
    if version == "0.4.0" {
        ip["version"] = json!("6");
    }
    if version == "1.1.0" {
        host_if["mtu"] = json!(1500);
        pod_if["mtu"] = json!(1500);
    }
    json!({
        "cniVersion": version,
        "interfaces": [host_if, pod_if],
        "ips": [ip],
        "routes": [{"dst": "::/0", "gw": "fe80::1"}],
    })
}

#[test]
fn version_verb() {
    let node = Node::new("cni-version", PREFIX);
    let r = node.plain("VERSION", r#"{"cniVersion":"1.0.0"}"#).ok();
    assert_eq!(
        r,
        json!({"cniVersion": "1.0.0", "supportedVersions": ["0.4.0", "1.0.0", "1.1.0"]})
    );
    let r = node.plain("VERSION", "").ok();
    assert_eq!(r["cniVersion"], json!("1.1.0"));
}

#[test]
fn add_check_del_every_version() {
    let mut node = Node::new("cni-lifecycle", PREFIX);
    for (i, version) in ["0.4.0", "1.0.0", "1.1.0"].into_iter().enumerate() {
        let cid = format!("ctr-{i}");
        let netns = node.new_pod();
        let conf = node.conf(version, json!({}));
        let result = node.verb("ADD", &cid, &netns, "eth0", &conf).ok();
        let addr = format!("fd42:1:2:3::{}", i + 2);
        assert_eq!(
            result,
            expected_result(version, &cid, &netns, &addr),
            "ADD result for {version}"
        );

        // The pod is usable at once: no DAD, static neighbours.
        assert!(node.ping(&addr), "host cannot reach pod {addr}");
        let pod_addrs = node
            .in_pod(&netns, &["ip", "-6", "addr", "show", "eth0"])
            .unwrap();
        assert!(
            pod_addrs.contains(&format!("{addr}/128")) && !pod_addrs.contains("tentative"),
            "{pod_addrs}"
        );
        let routes = node
            .in_pod(&netns, &["ip", "-6", "route", "show", "default"])
            .unwrap();
        assert!(routes.contains("via fe80::1 dev eth0"), "{routes}");

        // Allocation recorded with the Kubernetes pod from CNI_ARGS.
        let record = std::fs::read_to_string(node.data_dir.join("kubermesh").join(&addr)).unwrap();
        let record: Value = serde_json::from_str(&record).unwrap();
        assert_eq!(
            record,
            json!({"containerID": cid, "ifname": "eth0", "podName": "web-0", "podNamespace": "default"})
        );
        let ep = dataplane::maps::Endpoints::open(&node.bpffs)
            .unwrap()
            .unwrap()
            .get(addr.parse().unwrap());
        let ep = ep.expect("endpoint entry");
        assert_eq!(ep.pod_mac, macs(&cid, "eth0").1);
        // The TC fast path is attached to the host veth and pinned.
        let link = cni::fastpath::link_pin(&node.bpffs, &host_veth_name(&cid, "eth0"));
        assert!(link.exists(), "no TC link pinned at {}", link.display());

        // CHECK with the result as prevResult.
        let check = node.conf(version, json!({"prevResult": result}));
        assert_eq!(
            node.verb("CHECK", &cid, &netns, "eth0", &check).ok(),
            Value::Null
        );

        // DEL, then DEL again the way containerd does (no netns, no prevResult).
        assert_eq!(
            node.verb("DEL", &cid, &netns, "eth0", &check).ok(),
            Value::Null
        );
        assert_eq!(node.verb("DEL", &cid, "", "eth0", &conf).ok(), Value::Null);
        assert!(
            !node.allocations().contains(&addr),
            "allocation left: {:?}",
            node.allocations()
        );
        assert!(
            node.host_veths().is_empty(),
            "veths left: {:?}",
            node.host_veths()
        );
        assert!(
            node.endpoints().is_empty(),
            "endpoints left: {:?}",
            node.endpoints()
        );
        assert!(!node.ping(&addr));
        // CHECK now fails with the plugin's "differs" code.
        let msg = node.verb("CHECK", &cid, &netns, "eth0", &check).err(101);
        assert!(msg.contains(&cid), "{msg}");
    }
}

#[test]
fn bad_input_gives_spec_codes_and_leaves_nothing() {
    let mut node = Node::new("cni-errors", PREFIX);
    let netns = node.new_pod();
    let good = node.conf("1.1.0", json!({}));
    let env_full = |netns: &str| -> Vec<(&'static str, String)> {
        vec![
            ("CNI_COMMAND", "ADD".into()),
            ("CNI_CONTAINERID", "c1".into()),
            ("CNI_NETNS", netns.into()),
            ("CNI_IFNAME", "eth0".into()),
            ("CNI_PATH", "/opt/cni/bin".into()),
        ]
    };
    let run_env = |env: &[(&'static str, String)], stdin: &str| {
        let pairs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        node.run(&pairs, stdin)
    };

    // 6: malformed JSON.
    let msg = node
        .verb("ADD", "c1", &netns, "eth0", r#"{"cniVersion":"1.1.0","#)
        .err(6);
    assert!(msg.contains("not valid JSON"), "{msg}");
    // 1: unknown cniVersion.
    let msg = node
        .verb("ADD", "c1", &netns, "eth0", &node.conf("0.2.0", json!({})))
        .err(1);
    assert!(msg.contains("0.2.0"), "{msg}");
    // 7: a required field missing; a field of the wrong type.
    let msg = node
        .verb(
            "ADD",
            "c1",
            &netns,
            "eth0",
            r#"{"cniVersion":"1.1.0","type":"meshfwd-cni"}"#,
        )
        .err(7);
    assert!(msg.contains("name"), "{msg}");
    node.verb(
        "ADD",
        "c1",
        &netns,
        "eth0",
        &node.conf("1.1.0", json!({"mtu": "big"})),
    )
    .err(7);
    // 2: a field we do not support.
    let msg = node
        .verb(
            "ADD",
            "c1",
            &netns,
            "eth0",
            &node.conf("1.1.0", json!({"ipam": {"type": "host-local"}})),
        )
        .err(2);
    assert!(msg.contains("ipam"), "{msg}");
    // 4: each missing or malformed variable is named.
    for (drop, _) in env_full(&netns) {
        if drop == "CNI_PATH" {
            continue;
        }
        let env: Vec<_> = env_full(&netns)
            .into_iter()
            .filter(|(k, _)| *k != drop)
            .collect();
        let msg = run_env(&env, &good).err(4);
        assert!(msg.contains(drop), "{drop}: {msg}");
    }
    let mut env = env_full(&netns);
    env[3].1 = "this-name-is-too-long".into();
    assert!(run_env(&env, &good).err(4).contains("CNI_IFNAME"));
    env = env_full(&netns);
    env.push(("CNI_ARGS", "K8S_POD_NAME=x;BOGUS=1".into()));
    assert!(run_env(&env, &good).err(4).contains("BOGUS"));
    // 3: the netns does not exist; 4: the path is not a netns.
    let msg = node
        .verb("ADD", "c1", "/run/netns/km-does-not-exist", "eth0", &good)
        .err(3);
    assert!(msg.contains("/run/netns/km-does-not-exist"), "{msg}");
    let msg = node
        .verb(
            "ADD",
            "c1",
            node.state_file.to_str().unwrap(),
            "eth0",
            &good,
        )
        .err(4);
    assert!(msg.contains("not a network namespace"), "{msg}");
    // 4: the interface name is taken in the pod.
    node.in_pod(
        &netns,
        &[
            "ip", "link", "add", "eth0", "type", "veth", "peer", "name", "peer0",
        ],
    )
    .unwrap();
    let msg = node.verb("ADD", "c1", &netns, "eth0", &good).err(4);
    assert!(
        msg.contains("eth0") && msg.contains("already exists"),
        "{msg}"
    );
    // 11: no node state yet (the agent has not started).
    let missing = node.conf(
        "1.1.0",
        json!({"stateFile": "/run/km-no-such-dir/node.json"}),
    );
    node.verb("ADD", "c1", &netns, "eth1", &missing).err(11);
    // 1: STATUS and GC exist only from 1.1.0.
    node.plain("STATUS", &node.conf("1.0.0", json!({}))).err(1);
    node.plain(
        "GC",
        &node.conf("0.4.0", json!({"cni.dev/valid-attachments": []})),
    )
    .err(1);
    // 4: an unknown verb.
    node.run(&[("CNI_COMMAND", "FROB")], &good).err(4);

    assert!(
        node.allocations().is_empty(),
        "allocations made: {:?}",
        node.allocations()
    );
    assert!(
        node.host_veths().is_empty(),
        "veths made: {:?}",
        node.host_veths()
    );
    assert!(
        node.endpoints().is_empty(),
        "endpoints made: {:?}",
        node.endpoints()
    );
    let links = node.in_pod(&netns, &["ip", "-o", "link"]).unwrap();
    assert_eq!(
        links.lines().count(),
        3,
        "pod links (lo, eth0, peer0): {links}"
    );
}

#[test]
fn exhausted_prefix_allocates_nothing() {
    // A /125 holds 8 addresses; ::0 and ::1 are reserved: 6 pods.
    let mut node = Node::new("cni-exhaust", "fd42:9::/125");
    let conf = node.conf("1.1.0", json!({}));
    assert_eq!(node.plain("STATUS", &conf).ok(), Value::Null);
    for i in 0..6 {
        let netns = node.new_pod();
        node.verb("ADD", &format!("c{i}"), &netns, "eth0", &conf)
            .ok();
    }
    assert_eq!(node.allocations().len(), 6);
    let netns = node.new_pod();
    let msg = node.verb("ADD", "c6", &netns, "eth0", &conf).err(100);
    assert!(
        msg.contains("fd42:9::/125") && msg.contains("no free address"),
        "{msg}"
    );
    assert_eq!(node.allocations().len(), 6);
    assert_eq!(node.host_veths().len(), 6);
    let links = node.in_pod(&netns, &["ip", "-o", "link"]).unwrap();
    assert_eq!(links.lines().count(), 1, "half-made pod: {links}");
    // STATUS says no new pods.
    let msg = node.plain("STATUS", &conf).err(50);
    assert!(msg.contains("full"), "{msg}");
    // Free one: the next ADD gets exactly that address.
    node.verb("DEL", "c3", "", "eth0", &conf).ok();
    let r = node.verb("ADD", "c6", &netns, "eth0", &conf).ok();
    assert_eq!(r["ips"][0]["address"], json!("fd42:9::5/128"));
}

#[test]
fn gc_releases_what_is_not_valid() {
    let mut node = Node::new("cni-gc", PREFIX);
    let conf = node.conf("1.1.0", json!({}));
    let mut pods = Vec::new();
    for i in 0..3 {
        let netns = node.new_pod();
        let r = node
            .verb("ADD", &format!("c{i}"), &netns, "eth0", &conf)
            .ok();
        pods.push((format!("c{i}"), netns, r));
    }
    let gc = node.conf(
        "1.1.0",
        json!({"cni.dev/valid-attachments": [{"containerID": "c1", "ifname": "eth0"}]}),
    );
    assert_eq!(node.plain("GC", &gc).ok(), Value::Null);
    assert_eq!(node.allocations(), ["fd42:1:2:3::3"]);
    assert_eq!(node.host_veths(), [host_veth_name("c1", "eth0")]);
    assert_eq!(
        node.endpoints(),
        ["fd42:1:2:3::3".parse::<std::net::Ipv6Addr>().unwrap()]
    );
    let (cid, netns, result) = &pods[1];
    let check = node.conf("1.1.0", json!({"prevResult": result}));
    node.verb("CHECK", cid, netns, "eth0", &check).ok();
    // GC is idempotent; GC without the list is a config error.
    node.plain("GC", &gc).ok();
    node.plain("GC", &node.conf("1.1.0", json!({}))).err(7);
}

#[test]
fn del_after_netns_is_gone() {
    let mut node = Node::new("cni-del-gone", PREFIX);
    let conf = node.conf("1.0.0", json!({}));
    let netns = node.new_pod();
    node.verb("ADD", "c1", &netns, "eth0", &conf).ok();
    // The pod's namespace vanishes (and its veth with it).
    let ns_name = netns.rsplit('/').next().unwrap().to_owned();
    std::process::Command::new("ip")
        .args(["netns", "del", &ns_name])
        .status()
        .unwrap();
    // The kernel dismantles a namespace asynchronously.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !node.host_veths().is_empty() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(node.host_veths().is_empty());
    node.verb("DEL", "c1", &netns, "eth0", &conf).ok();
    node.verb("DEL", "c1", "", "eth0", &conf).ok();
    assert!(node.allocations().is_empty());
    assert!(node.endpoints().is_empty());
    // DEL of something never added, with no store at all, is fine too.
    let fresh = node.conf(
        "1.0.0",
        json!({"dataDir": node.lab.work_dir().join("never")}),
    );
    node.verb("DEL", "nothing", "", "eth0", &fresh).ok();
}

#[test]
fn store_survives_a_reboot() {
    let mut node = Node::new("cni-reboot", PREFIX);
    let conf = node.conf("1.1.0", json!({}));
    let old_ns = node.new_pod();
    let old = node.verb("ADD", "old", &old_ns, "eth0", &conf).ok();
    // "Reboot": namespaces, veths and bpffs are wiped, /var/lib is not.
    let ns_name = old_ns.rsplit('/').next().unwrap().to_owned();
    std::process::Command::new("ip")
        .args(["netns", "del", &ns_name])
        .status()
        .unwrap();
    std::fs::remove_file(node.bpffs.join(meshfwd_common::endpoint::PIN)).unwrap();
    let netns = node.new_pod();
    let new = node.verb("ADD", "new", &netns, "eth0", &conf).ok();
    assert_ne!(old["ips"][0]["address"], new["ips"][0]["address"]);
    // After the reboot the runtime's GC lists only the live pod.
    let gc = node.conf(
        "1.1.0",
        json!({"cni.dev/valid-attachments": [{"containerID": "new", "ifname": "eth0"}]}),
    );
    node.plain("GC", &gc).ok();
    assert_eq!(node.allocations(), ["fd42:1:2:3::3"]);
}

#[test]
fn chained_prev_result_runtime_config_and_args() {
    let mut node = Node::new("cni-chain", PREFIX);
    let netns = node.new_pod();
    let prev = json!({
        "cniVersion": "1.1.0",
        "interfaces": [{"name": "lo", "sandbox": netns}],
        "ips": [{"address": "fd00:99::1/128", "interface": 0}],
        "dns": {"nameservers": ["fd00:99::53"]},
    });
    let conf = node.conf(
        "1.1.0",
        json!({"prevResult": prev, "runtimeConfig": {"IPs": ["fd42:1:2:3::99/128"], "Mac": "02:00:00:aa:bb:cc"}}),
    );
    let r = node.verb("ADD", "c1", &netns, "eth0", &conf).ok();
    assert_eq!(r["interfaces"].as_array().unwrap().len(), 3, "{r}");
    assert_eq!(r["interfaces"][2]["mac"], json!("02:00:00:aa:bb:cc"));
    assert_eq!(r["ips"][0]["address"], json!("fd00:99::1/128"));
    assert_eq!(
        r["ips"][1],
        json!({"address": "fd42:1:2:3::99/128", "gateway": "fe80::1", "interface": 2})
    );
    assert_eq!(r["dns"], json!({"nameservers": ["fd00:99::53"]}));
    assert!(node.ping("fd42:1:2:3::99"));
    // A requested address outside the prefix or already taken is refused.
    let other = node.new_pod();
    let taken = node.conf(
        "1.1.0",
        json!({"runtimeConfig": {"ips": ["fd42:1:2:3::99/128"]}}),
    );
    node.verb("ADD", "c2", &other, "eth0", &taken).err(7);
    let outside = node.conf("1.1.0", json!({"runtimeConfig": {"ips": ["fd43::5/128"]}}));
    node.verb("ADD", "c2", &other, "eth0", &outside).err(7);
    assert_eq!(node.allocations(), ["fd42:1:2:3::99"]);
}

#[test]
fn status_follows_the_node() {
    let node = Node::new("cni-status", PREFIX);
    let conf = node.conf("1.1.0", json!({}));
    node.plain("STATUS", &conf).ok();
    let gone = node.conf(
        "1.1.0",
        json!({"stateFile": "/run/km-no-such-dir/node.json"}),
    );
    let msg = node.plain("STATUS", &gone).err(50);
    assert!(msg.contains("meshfwd agent"), "{msg}");
}

#[test]
fn status_reports_a_moved_prefix() {
    let mut node = Node::new("cni-moved", PREFIX);
    let conf = node.conf("1.1.0", json!({}));
    let netns = node.new_pod();
    node.verb("ADD", "c1", &netns, "eth0", &conf).ok();
    node.write_state("fd42:1:2:4::/64");
    let msg = node.plain("STATUS", &conf).err(51);
    assert!(msg.contains("fd42:1:2:4::/64"), "{msg}");
    node.verb("DEL", "c1", "", "eth0", &conf).ok();
    node.plain("STATUS", &conf).ok();
}

#[test]
fn with_an_agent_add_marks_the_veth_and_leaves_the_attach_to_it() {
    let mut node = Node::new("cni-agentattach", PREFIX);
    // The state file of a node whose agent attaches pods' veths.
    let mut state: Value =
        serde_json::from_str(&std::fs::read_to_string(&node.state_file).unwrap()).unwrap();
    state["pod_attach"] = json!("agent");
    std::fs::write(&node.state_file, state.to_string()).unwrap();

    let cid = "ctr-agent";
    let netns = node.new_pod();
    let conf = node.conf("1.1.0", json!({}));
    let result = node.verb("ADD", cid, &netns, "eth0", &conf).ok();
    let veth = host_veth_name(cid, "eth0");
    let link = cni::fastpath::link_pin(&node.bpffs, &veth);
    assert!(!link.exists(), "ADD attached although the agent does");
    let shown = node
        .lab
        .node(&node.host)
        .run(&["ip", "link", "show", &veth])
        .unwrap();
    assert!(
        shown.contains(&format!("alias {}", dataplane::tc::POD_VETH_ALIAS)),
        "the finished veth is marked for the agent: {shown}"
    );

    // Until the agent attaches, CHECK waits a moment, then says so.
    let check = node.conf("1.1.0", json!({"prevResult": result}));
    let err = node.verb("CHECK", cid, &netns, "eth0", &check).err(101);
    assert!(err.contains("fast path is not attached"), "{err}");

    // Playing the agent: attach, and CHECK passes.
    lab::netns::enter(node.lab.node(&node.host).netns(), || {
        Ok(dataplane::tc::attach(&node.bpffs, &veth)?)
    })
    .unwrap();
    assert_eq!(
        node.verb("CHECK", cid, &netns, "eth0", &check).ok(),
        Value::Null
    );
    assert_eq!(
        node.verb("DEL", cid, &netns, "eth0", &check).ok(),
        Value::Null
    );
    assert!(!link.exists(), "DEL removes the agent's pin");
}

#[test]
fn more_addresses_than_a_pod_has_are_an_error_naming_the_extra_one() {
    let mut node = Node::new("cni-extra-ip", PREFIX);
    let netns = node.new_pod();
    let conf = node.conf(
        "1.1.0",
        json!({"runtimeConfig": {"ips": ["fd42:1:2:3::99/128", "198.18.0.9/32"]}}),
    );
    let msg = node.verb("ADD", "c1", &netns, "eth0", &conf).err(2);
    assert!(msg.contains("198.18.0.9/32"), "{msg}");
    assert!(node.allocations().is_empty(), "nothing allocated");
    assert!(node.host_veths().is_empty(), "nothing wired");
}

/// Whether the host veth of `cid` carries the agent's mark, and whether a
/// fast-path link is pinned for it.
fn marked_and_attached(node: &Node, cid: &str) -> (bool, bool) {
    let veth = host_veth_name(cid, "eth0");
    let shown = node
        .lab
        .node(&node.host)
        .run(&["ip", "link", "show", &veth])
        .unwrap();
    let marked = shown.contains(&format!("alias {}", dataplane::tc::POD_VETH_ALIAS));
    (marked, cni::fastpath::link_pin(&node.bpffs, &veth).exists())
}

#[test]
fn a_pod_without_the_fast_path_gets_no_mark_no_endpoint_and_no_program() {
    for (tag, extra) in [
        ("cni-nofast", json!({"fastPath": false})),
        // A pod the bandwidth plugin shapes: its qdiscs sit where the fast
        // path would skip them.
        (
            "cni-shaped",
            json!({"runtimeConfig": {"bandwidth": {"ingressRate": 1000000, "ingressBurst": 100000}}}),
        ),
    ] {
        for attach in ["plugin", "agent"] {
            let mut node = Node::new(tag, PREFIX);
            let mut state: Value =
                serde_json::from_str(&std::fs::read_to_string(&node.state_file).unwrap()).unwrap();
            state["pod_attach"] = json!(attach);
            std::fs::write(&node.state_file, state.to_string()).unwrap();
            let netns = node.new_pod();
            let conf = node.conf("1.1.0", extra.clone());
            let result = node.verb("ADD", "c1", &netns, "eth0", &conf).ok();
            assert_eq!(
                marked_and_attached(&node, "c1"),
                (false, false),
                "{tag} ({attach} attaches)"
            );
            assert!(node.endpoints().is_empty(), "{tag}: no endpoint");
            let addr = result["ips"][0]["address"].as_str().unwrap();
            assert!(
                node.ping(addr.split('/').next().unwrap()),
                "{tag}: reachable"
            );
            let check = node.conf("1.1.0", {
                let mut e = extra.clone();
                e["prevResult"] = result.clone();
                e
            });
            node.verb("CHECK", "c1", &netns, "eth0", &check).ok();
            node.verb("DEL", "c1", &netns, "eth0", &check).ok();
            assert!(node.host_veths().is_empty());
        }
    }
}
