//! A real container runtime: containerd (Debian's 1.6 with runc) runs pod
//! sandboxes through the CRI, the way kubelet does, and calls meshfwd-cni.
//!
//! Two lab nodes joined by a mesh link, one containerd per node (inside the
//! node's namespace, with its own config, root, state and socket under the
//! lab's work dir), a pause image built here from a static binary and
//! imported with `ctr`. Pods on the two nodes ping each other; removing
//! them leaves no veth, endpoint or allocation; a containerd killed with
//! SIGKILL and started again still tears its pods down cleanly.
//!
//! The runtime's harness is `common::containerd`.

mod common;

use std::net::Ipv6Addr;
use std::path::Path;

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
                .filter(|n| n.parse::<Ipv6Addr>().is_ok())
                .collect()
        })
        .unwrap_or_default()
}

fn endpoints(bpffs: &Path) -> usize {
    dataplane::maps::Endpoints::open(bpffs)
        .unwrap()
        .map_or(0, |m| m.addrs().len())
}

#[test]
fn containerd_pods_across_two_nodes() {
    let lab = Lab::build(
        "cni-containerd",
        &Topology::new().line(&["a", "b"], Wire::Direct),
    )
    .expect("build lab");
    let image = {
        let d = lab.work_dir().join("image");
        std::fs::create_dir_all(&d).unwrap();
        build_pause_image(&d)
    };

    // Node state files, and kernel routes for each other's pod prefix via
    // the link-local next hop (the agent's job once it exists).
    let prefixes = [
        ("a", "fd42:a::/64", "fd42:a::1"),
        ("b", "fd42:b::/64", "fd42:b::1"),
    ];
    let mut nodes = Vec::new();
    for (name, prefix, node_address) in prefixes {
        let state = lab.work_dir().join(format!("{name}-node.json"));
        let bpffs = lab.node(name).bpffs_dir();
        std::fs::write(
            &state,
            json!({"router_id": "10.0.0.1", "pod_prefix": prefix, "node_address": node_address,
                "mtu": 1500, "bpffs": bpffs})
            .to_string(),
        )
        .unwrap();
        nodes.push((
            name,
            prefix,
            state,
            lab.work_dir().join(format!("{name}-ipam")),
            bpffs,
        ));
    }
    let link = lab.link("a", "b").clone();
    let a_ll = lab.node("a").link_local(&link.a_if).unwrap();
    let b_ll = lab.node("b").link_local(&link.b_if).unwrap();
    lab.node("a")
        .run(&[
            "ip",
            "-6",
            "route",
            "add",
            "fd42:b::/64",
            "via",
            &b_ll.to_string(),
            "dev",
            &link.a_if,
        ])
        .unwrap();
    lab.node("b")
        .run(&[
            "ip",
            "-6",
            "route",
            "add",
            "fd42:a::/64",
            "via",
            &a_ll.to_string(),
            "dev",
            &link.b_if,
        ])
        .unwrap();

    // containerd 1.6's libcni speaks CNI up to 1.0.0.
    let conflist = |i: usize| {
        json!({
            "cniVersion": "1.0.0",
            "name": "kubermesh",
            "plugins": [{"type": "meshfwd-cni", "stateFile": nodes[i].2, "dataDir": nodes[i].3}],
        })
    };
    let ra = Runtime::start(&lab, "a", &conflist(0), &image);
    let rb = Runtime::start(&lab, "b", &conflist(1), &image);

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
    assert_eq!(endpoints(&nodes[0].4), 1);

    // Removing the pods leaves nothing.
    ra.remove_pod(&id_a);
    rb.remove_pod(&id_b);
    for (i, (name, ..)) in nodes.iter().enumerate() {
        assert!(
            km_veths(&lab, name).is_empty(),
            "veths left on {name}: {:?}",
            km_veths(&lab, name)
        );
        assert!(
            allocations(&nodes[i].3).is_empty(),
            "allocations left on {name}"
        );
        assert_eq!(endpoints(&nodes[i].4), 0, "endpoints left on {name}");
    }

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
    for (i, (name, ..)) in nodes.iter().enumerate() {
        assert!(
            km_veths(&lab, name).is_empty(),
            "veths left on {name} after restart: {:?}",
            km_veths(&lab, name)
        );
        assert!(
            allocations(&nodes[i].3).is_empty(),
            "allocations left on {name} after restart"
        );
        assert_eq!(
            endpoints(&nodes[i].4),
            0,
            "endpoints left on {name} after restart"
        );
    }
    drop(rb);
    drop(ra);
}
