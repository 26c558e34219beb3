//! Dual-stack pods: on a node whose agent runs IPv4 (its state file has an
//! `ipv4` part), a pod gets a /128 and a /32, both families' default
//! routes and gateways, and both addresses in the endpoint map; CHECK, DEL
//! and GC cover both; `ipFamilies` keeps a pod single-stack or asks for a
//! family the node lacks (an error, nothing made); running out of IPv4
//! addresses gives the IPv6 one back. Run as root.

mod common;

use cni::wiring::{host_veth_name, macs};
use common::Node;
use dataplane::netlink::Mac;
use serde_json::{Value, json};

const PREFIX: &str = "fd42:4:4:4::/64";
const PREFIX4: &str = "198.18.4.0/24";

/// Return the addresses of an ADD result, in order.
fn addresses(result: &Value) -> Vec<String> {
    result["ips"]
        .as_array()
        .expect("ips")
        .iter()
        .map(|ip| ip["address"].as_str().expect("address").to_owned())
        .collect()
}

/// Assert nothing of any pod is left on the node.
fn assert_nothing_left(node: &Node) {
    assert!(node.allocations().is_empty(), "{:?}", node.allocations());
    assert!(node.host_veths().is_empty(), "{:?}", node.host_veths());
    assert!(node.endpoints().is_empty(), "{:?}", node.endpoints());
}

#[test]
fn a_dual_stack_pod_gets_both_families_and_leaves_nothing() {
    let mut node = Node::dual("cni-dual", PREFIX, PREFIX4);
    for (i, version) in ["0.4.0", "1.0.0", "1.1.0"].into_iter().enumerate() {
        let cid = format!("dual-{i}");
        let netns = node.new_pod();
        let conf = node.conf(version, json!({}));
        let result = node.verb("ADD", &cid, &netns, "eth0", &conf).ok();
        let (v6, v4) = (
            format!("fd42:4:4:4::{}", i + 2),
            format!("198.18.4.{}", i + 2),
        );
        let (host_mac, pod_mac) = macs(&cid, "eth0");
        let mut ip6 = json!({"address": format!("{v6}/128"), "gateway": "fe80::1", "interface": 1});
        let mut ip4 =
            json!({"address": format!("{v4}/32"), "gateway": "169.254.1.1", "interface": 1});
        let mut host_if =
            json!({"name": host_veth_name(&cid, "eth0"), "mac": Mac(host_mac).to_string()});
        let mut pod_if = json!({"name": "eth0", "mac": Mac(pod_mac).to_string(), "sandbox": netns});
        if version == "0.4.0" {
            ip6["version"] = json!("6");
            ip4["version"] = json!("4");
        }
        if version == "1.1.0" {
            host_if["mtu"] = json!(1500);
            pod_if["mtu"] = json!(1500);
        }
        assert_eq!(
            result,
            json!({
                "cniVersion": version,
                "interfaces": [host_if, pod_if],
                "ips": [ip6, ip4],
                "routes": [
                    {"dst": "::/0", "gw": "fe80::1"},
                    {"dst": "0.0.0.0/0", "gw": "169.254.1.1"},
                ],
            }),
            "ADD result for {version}"
        );

        // Both families answer at once, and IPv4 needs no ARP either way:
        // the pod's gateway and the host's entry for the pod are static.
        assert!(node.ping(&v6), "host cannot reach pod {v6}");
        assert!(node.ping(&v4), "host cannot reach pod {v4}");
        let route4 = node
            .in_pod(&netns, &["ip", "-4", "route", "show", "default"])
            .unwrap();
        assert!(route4.contains("via 169.254.1.1 dev eth0"), "{route4}");
        let neigh4 = node
            .in_pod(&netns, &["ip", "-4", "neigh", "show", "dev", "eth0"])
            .unwrap();
        assert_eq!(
            neigh4.trim(),
            format!("169.254.1.1 lladdr {} PERMANENT", Mac(host_mac)),
            "the pod resolved something by ARP"
        );
        let host_neigh = node
            .lab
            .node(&node.host)
            .run(&["ip", "-4", "neigh", "show", &v4])
            .unwrap();
        assert!(host_neigh.contains("PERMANENT"), "{host_neigh}");

        let mut held = node.allocations();
        held.sort();
        assert_eq!(held, [v4.clone(), v6.clone()]);
        let mut eps = node.endpoints();
        eps.sort();
        assert_eq!(
            eps,
            [v4.parse::<std::net::IpAddr>().unwrap(), v6.parse().unwrap()]
        );

        let check = node.conf(version, json!({"prevResult": result}));
        assert_eq!(
            node.verb("CHECK", &cid, &netns, "eth0", &check).ok(),
            Value::Null
        );
        // CHECK looks at both families: take the IPv4 address away.
        node.in_pod(
            &netns,
            &["ip", "addr", "del", &format!("{v4}/32"), "dev", "eth0"],
        )
        .unwrap();
        let msg = node.verb("CHECK", &cid, &netns, "eth0", &check).err(101);
        assert!(msg.contains(&format!("{v4}/32")), "{msg}");
        // And a prevResult that lists one family only is no match.
        let mut half = result.clone();
        half["ips"].as_array_mut().unwrap().pop();
        let half = node.conf(version, json!({"prevResult": half}));
        let msg = node.verb("CHECK", &cid, &netns, "eth0", &half).err(101);
        assert!(msg.contains("prevResult does not list"), "{msg}");

        node.verb("DEL", &cid, &netns, "eth0", &conf).ok();
        node.verb("DEL", &cid, "", "eth0", &conf).ok();
        assert_nothing_left(&node);
        assert!(!node.ping(&v4));
    }
}

#[test]
fn two_dual_stack_pods_reach_each_other_in_both_families() {
    let mut node = Node::dual("cni-dual-pods", PREFIX, PREFIX4);
    let conf = node.conf("1.1.0", json!({}));
    let (ns_a, ns_b) = (node.new_pod(), node.new_pod());
    node.verb("ADD", "a", &ns_a, "eth0", &conf).ok();
    let b = node.verb("ADD", "b", &ns_b, "eth0", &conf).ok();
    for addr in addresses(&b) {
        let (bare, family) = match addr.split_once('/') {
            Some((a, "32")) => (a.to_owned(), "-4"),
            Some((a, _)) => (a.to_owned(), "-6"),
            None => unreachable!(),
        };
        node.in_pod(&ns_a, &["ping", family, "-c", "1", "-W", "2", &bare])
            .unwrap_or_else(|e| panic!("pod a cannot reach pod b at {bare}: {e}"));
    }
    node.verb("DEL", "a", &ns_a, "eth0", &conf).ok();
    node.verb("DEL", "b", &ns_b, "eth0", &conf).ok();
    assert_nothing_left(&node);
}

#[test]
fn ip_families_choose_single_stack_or_fail_on_a_family_the_node_lacks() {
    // On a dual-stack node, ipFamilies ["IPv6"] keeps a pod IPv6-only.
    let mut node = Node::dual("cni-fam", PREFIX, PREFIX4);
    let netns = node.new_pod();
    let v6_only = node.conf("1.1.0", json!({"ipFamilies": ["IPv6"]}));
    let r = node.verb("ADD", "c1", &netns, "eth0", &v6_only).ok();
    assert_eq!(addresses(&r), ["fd42:4:4:4::2/128"]);
    assert_eq!(r["routes"], json!([{"dst": "::/0", "gw": "fe80::1"}]));
    let none4 = node
        .in_pod(&netns, &["ip", "-4", "addr", "show", "dev", "eth0"])
        .unwrap();
    assert!(none4.trim().is_empty(), "{none4}");
    node.verb("DEL", "c1", &netns, "eth0", &v6_only).ok();
    assert_nothing_left(&node);

    // On an IPv6-only node, asking for IPv4 is an error that says why, and
    // nothing is made.
    let mut node = Node::new("cni-fam6", PREFIX);
    let netns = node.new_pod();
    let dual = node.conf("1.1.0", json!({"ipFamilies": ["IPv6", "IPv4"]}));
    let msg = node.verb("ADD", "c1", &netns, "eth0", &dual).err(7);
    assert!(
        msg.contains("ipFamilies asks for IPv4") && msg.contains("no IPv4 pod prefix"),
        "{msg}"
    );
    assert_nothing_left(&node);
    let links = node.in_pod(&netns, &["ip", "-o", "link"]).unwrap();
    assert_eq!(links.lines().count(), 1, "half-made pod: {links}");
    // STATUS says the same.
    let msg = node.plain("STATUS", &dual).err(50);
    assert!(msg.contains("no IPv4 pod prefix"), "{msg}");
    // Without ipFamilies the pod gets what the node has.
    let r = node
        .verb("ADD", "c1", &netns, "eth0", &node.conf("1.1.0", json!({})))
        .ok();
    assert_eq!(addresses(&r), ["fd42:4:4:4::2/128"]);
}

#[test]
fn running_out_of_ipv4_gives_the_ipv6_address_back() {
    // A /29 holds 8 IPv4 addresses: network, node, broadcast reserved: 5.
    let mut node = Node::dual("cni-dual-full", PREFIX, "198.18.5.0/29");
    let conf = node.conf("1.1.0", json!({}));
    for i in 0..5 {
        let netns = node.new_pod();
        node.verb("ADD", &format!("c{i}"), &netns, "eth0", &conf)
            .ok();
    }
    assert_eq!(node.allocations().len(), 10);
    let netns = node.new_pod();
    let msg = node.verb("ADD", "c5", &netns, "eth0", &conf).err(100);
    assert!(
        msg.contains("198.18.5.0/29") && msg.contains("no free address"),
        "{msg}"
    );
    assert_eq!(node.allocations().len(), 10, "the IPv6 address went back");
    assert_eq!(node.host_veths().len(), 5);
    let links = node.in_pod(&netns, &["ip", "-o", "link"]).unwrap();
    assert_eq!(links.lines().count(), 1, "half-made pod: {links}");
    let msg = node.plain("STATUS", &conf).err(50);
    assert!(
        msg.contains("198.18.5.0/29") && msg.contains("full"),
        "{msg}"
    );
    // The same network IPv6-only still has room.
    let v6_only = node.conf("1.1.0", json!({"ipFamilies": ["IPv6"]}));
    let r = node.verb("ADD", "c5", &netns, "eth0", &v6_only).ok();
    assert_eq!(addresses(&r).len(), 1);
}

#[test]
fn requested_addresses_one_per_family() {
    let mut node = Node::dual("cni-dual-req", PREFIX, PREFIX4);
    let netns = node.new_pod();
    let conf = node.conf(
        "1.1.0",
        json!({"runtimeConfig": {"ips": ["198.18.4.77/32", "fd42:4:4:4::77"]}}),
    );
    let r = node.verb("ADD", "c1", &netns, "eth0", &conf).ok();
    assert_eq!(addresses(&r), ["fd42:4:4:4::77/128", "198.18.4.77/32"]);

    let netns = node.new_pod();
    for (ips, code, says) in [
        (json!(["198.18.4.8", "198.18.4.9"]), 2, "one IPv4 address"),
        (json!(["198.18.4.255"]), 7, "broadcast"),
        (json!(["198.18.4.1"]), 7, "reserved"),
        (json!(["198.18.9.9"]), 7, "outside"),
        (json!(["198.18.4.77"]), 7, "already in use"),
    ] {
        let conf = node.conf("1.1.0", json!({"runtimeConfig": {"ips": ips}}));
        let msg = node.verb("ADD", "c2", &netns, "eth0", &conf).err(code);
        assert!(msg.contains(says), "{ips}: {msg}");
        assert_eq!(node.allocations().len(), 2, "{ips}: something allocated");
        assert_eq!(node.host_veths().len(), 1, "{ips}: something wired");
    }
    // IPv4 asked of a pod that gets IPv6 only.
    let conf = node.conf(
        "1.1.0",
        json!({"ipFamilies": ["IPv6"], "runtimeConfig": {"ips": ["198.18.4.8"]}}),
    );
    let msg = node.verb("ADD", "c2", &netns, "eth0", &conf).err(2);
    assert!(msg.contains("gets no IPv4"), "{msg}");
}

#[test]
fn gc_releases_both_families_of_an_attachment() {
    let mut node = Node::dual("cni-dual-gc", PREFIX, PREFIX4);
    let conf = node.conf("1.1.0", json!({}));
    for i in 0..3 {
        let netns = node.new_pod();
        node.verb("ADD", &format!("c{i}"), &netns, "eth0", &conf)
            .ok();
    }
    assert_eq!(node.allocations().len(), 6);
    let gc = node.conf(
        "1.1.0",
        json!({"cni.dev/valid-attachments": [{"containerID": "c1", "ifname": "eth0"}]}),
    );
    node.plain("GC", &gc).ok();
    assert_eq!(
        node.allocations(),
        ["198.18.4.3", "fd42:4:4:4::3"],
        "only c1's pair is kept"
    );
    assert_eq!(node.host_veths(), [host_veth_name("c1", "eth0")]);
    assert_eq!(node.endpoints().len(), 2);
}
