//! A real container runtime: containerd (Debian's 1.6 with runc) runs pod
//! sandboxes through the CRI, the way kubelet does, and calls meshfwd-cni.
//!
//! Two lab nodes joined by a mesh link, one containerd per node (inside the
//! node's namespace, with its own config, root, state and socket under the
//! lab's work dir), a pause image built here from a static binary and
//! imported with `ctr`. Pods on the two nodes ping each other; removing
//! them leaves no veth, endpoint or allocation; a containerd killed with
//! SIGKILL and started again still tears its pods down cleanly. On
//! dual-stack nodes a pod gets an address of each family through the CRI
//! and reaches the other node's pod in both.
//!
//! The runtime's harness is `common::containerd`.

mod common;

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use common::containerd::{Runtime, build_pause_image, ping_from};
use lab::{Lab, Topology, Wire};
use serde_json::json;

/// Return the plugin's veths in a lab node.
fn km_veths(lab: &Lab, node: &str) -> Vec<String> {
    let out = lab.node(node).run(&["ip", "-o", "link", "show"]).unwrap();
    out.lines()
        .filter_map(|l| l.split(':').nth(1))
        .map(|n| n.trim().split('@').next().unwrap_or("").to_owned())
        .filter(|n| n.starts_with("km"))
        .collect()
}

fn allocations(data_dir: &Path) -> Vec<String> {
    std::fs::read_dir(data_dir.join("kubermesh"))
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.parse::<std::net::IpAddr>().is_ok())
                .collect()
        })
        .unwrap_or_default()
}

fn endpoints(bpffs: &Path) -> usize {
    dataplane::maps::Endpoints::open(bpffs)
        .unwrap()
        .map_or(0, |m| m.addrs().len())
}

/// One node of the two: name, state file, IPAM dir, bpffs dir.
struct NodeFiles {
    name: &'static str,
    state: PathBuf,
    ipam: PathBuf,
    bpffs: PathBuf,
}

/// Build the two-node lab and the pause image.
fn lab_with_image(tag: &str) -> (Lab, PathBuf) {
    let lab = Lab::build(tag, &Topology::new().line(&["a", "b"], Wire::Direct)).expect("build lab");
    let d = lab.work_dir().join("image");
    std::fs::create_dir_all(&d).unwrap();
    let image = build_pause_image(&d);
    (lab, image)
}

/// Return a node's conflist. containerd 1.6's libcni speaks CNI up to
/// 1.0.0.
fn conflist(n: &NodeFiles) -> serde_json::Value {
    json!({
        "cniVersion": "1.0.0",
        "name": "kubermesh",
        "plugins": [{"type": "meshfwd-cni", "stateFile": n.state, "dataDir": n.ipam}],
    })
}

/// Write both nodes' state files (dual-stack ones with `dual`) and the
/// kernel routes to each other's pod prefixes via the link-local next hop,
/// IPv4 ones `via inet6` (the agent's job on a real node; these tests are
/// about the runtime and the plugin).
fn two_nodes(lab: &Lab, dual: bool) -> Vec<NodeFiles> {
    let prefixes = [
        (
            "a",
            "fd42:a::/64",
            "fd42:a::1",
            "198.18.10.0/24",
            "198.18.10.1",
        ),
        (
            "b",
            "fd42:b::/64",
            "fd42:b::1",
            "198.18.11.0/24",
            "198.18.11.1",
        ),
    ];
    let mut nodes = Vec::new();
    for (name, prefix, node_address, prefix4, node4) in prefixes {
        let state = lab.work_dir().join(format!("{name}-node.json"));
        let bpffs = lab.node(name).bpffs_dir();
        let mut body = json!({"router_id": "10.0.0.1", "pod_prefix": prefix,
            "node_address": node_address, "mtu": 1500, "bpffs": bpffs});
        if dual {
            body["ipv4"] = json!({"pod_prefix": prefix4, "node_address": node4});
            lab.node(name)
                .run(&["ip", "addr", "add", &format!("{node4}/32"), "dev", "lo"])
                .unwrap();
        }
        std::fs::write(&state, body.to_string()).unwrap();
        nodes.push(NodeFiles {
            name,
            state,
            ipam: lab.work_dir().join(format!("{name}-ipam")),
            bpffs,
        });
    }
    let link = lab.link("a", "b").clone();
    let a_ll = lab.node("a").link_local(&link.a_if).unwrap().to_string();
    let b_ll = lab.node("b").link_local(&link.b_if).unwrap().to_string();
    let mut routes = vec![
        (
            "a",
            vec![
                "-6",
                "route",
                "add",
                "fd42:b::/64",
                "via",
                &b_ll,
                "dev",
                &link.a_if,
            ],
        ),
        (
            "b",
            vec![
                "-6",
                "route",
                "add",
                "fd42:a::/64",
                "via",
                &a_ll,
                "dev",
                &link.b_if,
            ],
        ),
    ];
    if dual {
        for (node, dst, via, dev) in [
            ("a", "198.18.11.0/24", &b_ll, &link.a_if),
            ("b", "198.18.10.0/24", &a_ll, &link.b_if),
        ] {
            routes.push((
                node,
                vec!["-4", "route", "add", dst, "via", "inet6", via, "dev", dev],
            ));
        }
        for node in ["a", "b"] {
            lab.node(node)
                .run(&["sysctl", "-qw", "net.ipv4.ip_forward=1"])
                .unwrap();
        }
    }
    for (node, args) in routes {
        let mut cmd = vec!["ip"];
        cmd.extend(args);
        lab.node(node).run(&cmd).unwrap();
    }
    nodes
}

/// Assert no veth, allocation or endpoint is left on either node.
fn assert_nothing_left(lab: &Lab, nodes: &[NodeFiles], when: &str) {
    for n in nodes {
        assert!(
            km_veths(lab, n.name).is_empty(),
            "veths left on {} {when}: {:?}",
            n.name,
            km_veths(lab, n.name)
        );
        assert!(
            allocations(&n.ipam).is_empty(),
            "allocations left on {} {when}",
            n.name
        );
        assert_eq!(
            endpoints(&n.bpffs),
            0,
            "endpoints left on {} {when}",
            n.name
        );
    }
}

#[test]
fn containerd_pods_across_two_nodes() {
    let (lab, image) = lab_with_image("cni-containerd");
    let nodes = two_nodes(&lab, false);
    let ra = Runtime::start(&lab, "a", &conflist(&nodes[0]), &image);
    let rb = Runtime::start(&lab, "b", &conflist(&nodes[1]), &image);

    let (id_a, ip_a, ns_a) = ra.run_pod("web-a");
    let (id_b, ip_b, ns_b) = rb.run_pod("web-b");
    assert_eq!(
        (&ip_a.segments()[..2], &ip_b.segments()[..2]),
        (&[0xfd42, 0xa][..], &[0xfd42, 0xb][..])
    );
    assert!(
        ping_from(&ns_a, ip_b),
        "pod {ip_a} on a cannot reach pod {ip_b} on b"
    );
    assert!(
        ping_from(&ns_b, ip_a),
        "pod {ip_b} on b cannot reach pod {ip_a} on a"
    );
    assert_eq!(km_veths(&lab, "a").len(), 1);
    assert_eq!(endpoints(&nodes[0].bpffs), 1);

    // Removing the pods leaves nothing.
    ra.remove_pod(&id_a);
    rb.remove_pod(&id_b);
    assert_nothing_left(&lab, &nodes, "after removal");

    // A containerd killed while its pod runs still tears it down after restart.
    let (id_c, _, ns_c) = ra.run_pod("web-c");
    let (id_d, ip_d, _) = rb.run_pod("web-d");
    assert!(
        ping_from(&ns_c, ip_d),
        "pod on a cannot reach pod {ip_d} on b"
    );
    ra.kill_and_restart();
    assert!(
        ping_from(&ns_c, ip_d),
        "pods keep their network while containerd restarts"
    );
    ra.remove_pod(&id_c);
    rb.remove_pod(&id_d);
    assert_nothing_left(&lab, &nodes, "after restart");
    drop(rb);
    drop(ra);
}

#[test]
fn a_dual_stack_pod_through_the_cri_gets_both_addresses_and_reaches_both_families() {
    let (lab, image) = lab_with_image("cni-containerd-dual");
    let nodes = two_nodes(&lab, true);
    let ra = Runtime::start(&lab, "a", &conflist(&nodes[0]), &image);
    let rb = Runtime::start(&lab, "b", &conflist(&nodes[1]), &image);

    let (id_a, ips_a, ns_a) = ra.run_pod_ips("web-a", Vec::new());
    let (id_b, ips_b, ns_b) = rb.run_pod_ips("web-b", Vec::new());
    // The CRI reports both addresses (containerd makes the IPv4 one the
    // primary), each in its node's prefix of its family.
    let split = |ips: &[IpAddr]| {
        let v4: Vec<_> = ips.iter().filter(|a| a.is_ipv4()).copied().collect();
        let v6: Vec<_> = ips.iter().filter(|a| a.is_ipv6()).copied().collect();
        assert_eq!(
            (v4.len(), v6.len()),
            (1, 1),
            "one address of each family: {ips:?}"
        );
        (v4[0], v6[0])
    };
    let ((a4, a6), (b4, b6)) = (split(&ips_a), split(&ips_b));
    assert!(ips_a[0].is_ipv4(), "containerd's primary pod IP: {ips_a:?}");
    for (addr, prefix) in [
        (a4, "198.18.10.0/24"),
        (a6, "fd42:a::/64"),
        (b4, "198.18.11.0/24"),
        (b6, "fd42:b::/64"),
    ] {
        assert!(
            prefix.parse::<ipnet::IpNet>().unwrap().contains(&addr),
            "{addr} outside {prefix}"
        );
    }
    for (from, to) in [(&ns_a, b4), (&ns_a, b6), (&ns_b, a4), (&ns_b, a6)] {
        assert!(
            ping_from(from, to),
            "a pod cannot reach {to} on the other node"
        );
    }
    assert_eq!(allocations(&nodes[0].ipam).len(), 2);
    assert_eq!(endpoints(&nodes[0].bpffs), 2);

    ra.remove_pod(&id_a);
    rb.remove_pod(&id_b);
    assert_nothing_left(&lab, &nodes, "after removal");
    drop(rb);
    drop(ra);
}
