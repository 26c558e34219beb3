//! 50 ADDs at once on one node: 50 distinct addresses, all reachable, and
//! 50 DELs at once leave nothing behind. Run as root.

mod common;

use std::collections::BTreeSet;

use common::Node;
use serde_json::json;

const PODS: usize = 50;

#[test]
fn fifty_parallel_adds() {
    let mut node = Node::new("cni-parallel", "fd42:5:5:5::/64");
    let conf = node.conf("1.1.0", json!({}));
    let netns: Vec<String> = (0..PODS).map(|_| node.new_pod()).collect();

    let results: Vec<serde_json::Value> = std::thread::scope(|s| {
        let handles: Vec<_> = netns
            .iter()
            .enumerate()
            .map(|(i, ns)| {
                let (node, conf) = (&node, &conf);
                s.spawn(move || node.verb("ADD", &format!("par-{i}"), ns, "eth0", conf).ok())
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("ADD thread"))
            .collect()
    });

    let addrs: BTreeSet<String> = results
        .iter()
        .map(|r| {
            r["ips"][0]["address"]
                .as_str()
                .expect("address")
                .trim_end_matches("/128")
                .to_owned()
        })
        .collect();
    assert_eq!(addrs.len(), PODS, "addresses handed out twice: {results:?}");
    assert_eq!(node.allocations().len(), PODS);
    assert_eq!(node.host_veths().len(), PODS);
    assert_eq!(node.endpoints().len(), PODS);
    for a in &addrs {
        assert!(node.ping(a), "pod {a} unreachable from the node");
    }
    // Pod to pod through the node, first to last and back.
    let (first, last) = (addrs.first().unwrap(), addrs.last().unwrap());
    let from_first = results
        .iter()
        .position(|r| r["ips"][0]["address"] == json!(format!("{first}/128")))
        .unwrap();
    node.in_pod(
        &netns[from_first],
        &["ping", "-6", "-c", "1", "-W", "2", last],
    )
    .unwrap_or_else(|e| panic!("pod {first} cannot reach pod {last}: {e}"));

    std::thread::scope(|s| {
        for (i, ns) in netns.iter().enumerate() {
            let (node, conf) = (&node, &conf);
            s.spawn(move || node.verb("DEL", &format!("par-{i}"), ns, "eth0", conf).ok());
        }
    });
    assert!(node.allocations().is_empty(), "{:?}", node.allocations());
    assert!(node.host_veths().is_empty(), "{:?}", node.host_veths());
    assert!(node.endpoints().is_empty(), "{:?}", node.endpoints());
    let links: Vec<_> = std::fs::read_dir(node.bpffs.join("links"))
        .map(|rd| rd.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(links.is_empty(), "TC link pins left: {links:?}");
}
