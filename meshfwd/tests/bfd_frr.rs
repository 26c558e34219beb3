//! BFD against FRR 8.4's bfdd, a real peer: sessions Up at 50 ms and at
//! 10 ms x 3, a silent cut seen by both sides within the detection time,
//! an administrative shutdown on the FRR side that takes nothing down,
//! and FRR's ospf6d with `ipv6 ospf6 bfd` rerouting on a silent cut next
//! to our agents.
//!
//! FRR 8.4 quirks met here: a session with a link-local peer needs
//! `interface`; bfdd needs zebra beside it.

mod agent_support;
#[allow(dead_code, reason = "this file uses a subset")]
#[path = "../../routing/tests/common/bird.rs"]
mod bird;
#[allow(dead_code, reason = "this file uses a subset")]
#[path = "../../routing/tests/common/frr.rs"]
mod frr;

use std::{
    net::Ipv4Addr,
    time::{Duration, SystemTime},
};

use agent_support::{Answers as _, mesh, wait_until};
use frr::{Extra, Frr};
use lab::{Topology, Wire, agents::AgentMesh};
use meshfwd::api::{BfdReport, Query};
use routing::bfd::State;
use serde_json::Value;

const CONVERGE: Duration = Duration::from_secs(30);
const FRR_ID: Ipv4Addr = Ipv4Addr::new(10, 9, 9, 9);
const FRR_STUB: &str = "2001:db8:f::/64";

fn ours(m: &AgentMesh, node: &str) -> Option<BfdReport> {
    m.show(node, Query::Bfd)
}

/// FRR's sessions (`show bfd peers json`).
fn theirs(m: &AgentMesh, f: &Frr) -> Vec<Value> {
    f.vtysh(&m.lab, "show bfd peers json")
        .and_then(|o| serde_json::from_str::<Value>(&o).ok())
        .and_then(|v| v.as_array().cloned())
        .unwrap_or_default()
}

/// bfdd's static session with `peer` on every mesh link of `node`, at
/// `interval_ms` x 3.
fn bfdd_peers(m: &AgentMesh, node: &str, peers: &[(&str, &str)], interval_ms: u32) -> String {
    let mut conf = String::from("debug bfd peer\nbfd\n");
    for (iface, peer_node) in peers {
        let peer_iface = format!("m-{node}");
        let ll = m.lab.node(peer_node).link_local(&peer_iface).unwrap();
        conf.push_str(&format!(
            " peer {ll} interface {iface}\n  transmit-interval {interval_ms}\n  receive-interval {interval_ms}\n  detect-multiplier 3\n !\n"
        ));
    }
    conf
}

/// k (our agent, BFD at `interval_ms`) cabled to f (FRR with bfdd).
fn pair(tag: &str, interval_ms: u32) -> (AgentMesh, Frr) {
    let mut m = mesh(tag, &Topology::new().line(&["k", "f"], Wire::Cable));
    let conf = bfdd_peers(&m, "f", &[("m-k", "k")], interval_ms);
    let f = Frr::start_with(
        &m.lab,
        "f",
        FRR_ID,
        FRR_STUB,
        &Extra {
            bfdd: Some(conf),
            ..Extra::default()
        },
    );
    let i = interval_ms.to_string();
    m.start(
        "k",
        &["--bfd", "--bfd-interval-ms", &i, "--bfd-multiplier", "3"],
    )
    .unwrap();
    wait_until("k Full with FRR", CONVERGE, || m.full_neighbors("k") == 1);
    wait_until("both sessions Up", CONVERGE, || {
        let up_here = ours(&m, "k").is_some_and(|r| {
            r.sessions.len() == 1
                && r.sessions[0].state == State::Up
                && r.sessions[0].tx_interval_us == interval_ms * 1000
        });
        let up_there = theirs(&m, &f)
            .iter()
            .any(|p| p["status"] == "up" && p["remote-receive-interval"] == interval_ms);
        up_here && up_there
    });
    (m, f)
}

#[test]
fn sessions_come_up_against_bfdd_at_50_ms_and_at_10_ms() {
    for ms in [50, 10] {
        let (m, f) = pair(&format!("bfd-frr-{ms}"), ms);
        let r = ours(&m, "k").unwrap();
        assert_eq!(
            r.sessions[0].detect_time_us,
            3 * u64::from(ms) * 1000,
            "{r:?}"
        );
        let peer = &theirs(&m, &f)[0];
        assert_eq!(peer["remote-detect-multiplier"], 3, "{peer}");
        assert_eq!(peer["remote-transmit-interval"], ms, "{peer}");
        // Stable for a while: no flap either side.
        std::thread::sleep(Duration::from_secs(3));
        let r = ours(&m, "k").unwrap();
        assert_eq!(r.sessions[0].counters.flaps, 0);
        // bfdd's static peer sends before OSPF has made our session: those
        // packets find no session. Nothing else of bfdd's is discarded.
        assert!(
            r.discards
                .keys()
                .all(|d| *d == routing::bfd::Discard::NoSession),
            "{r:?}"
        );
        assert_eq!(theirs(&m, &f)[0]["status"], "up");
    }
}

#[test]
fn a_silent_cut_is_seen_by_both_sides_within_the_detection_time() {
    let (m, f) = pair("bfd-frr-cut", 10);
    m.lab.cut_silent("k", "f").unwrap();
    let cut = SystemTime::now();
    wait_until("FRR's session down", Duration::from_secs(2), || {
        theirs(&m, &f).iter().any(|p| p["status"] == "down")
    });
    let peer = &theirs(&m, &f)[0];
    assert_eq!(
        peer["diagnostic"], "control detection time expired",
        "{peer}"
    );
    wait_until("k took FRR down", Duration::from_secs(2), || {
        m.latest_log("k").contains("path to the neighbour failed")
    });
    let line = m
        .latest_log("k")
        .lines()
        .find(|l| l.contains("path to the neighbour failed"))
        .map(str::to_owned)
        .unwrap();
    let at = humantime::parse_rfc3339(line.split_whitespace().next().unwrap()).unwrap();
    let after = at.duration_since(cut).unwrap_or_default();
    assert!(
        after <= Duration::from_millis(50),
        "k: {after:?} after the cut"
    );
    // bfdd's own log says when it went down.
    let log =
        std::fs::read_to_string(format!("/var/run/frr/{}/bfdd.log", f.name)).unwrap_or_default();
    assert!(log.contains("up -> down"), "bfdd's log:\n{log}");
}

#[test]
fn an_administrative_shutdown_on_frr_takes_nothing_down() {
    let (m, f) = pair("bfd-frr-admin", 10);
    let k_ll = m.lab.node("k").link_local("m-f").unwrap().to_string();
    let before = m.stats("k").and_then(|s| s.agent).map(|a| a.rib_changes);
    m.lab
        .node("f")
        .run(&[
            "vtysh",
            "-N",
            &f.name,
            "-c",
            "configure terminal",
            "-c",
            "bfd",
            "-c",
            &format!("peer {k_ll} interface m-k"),
            "-c",
            "shutdown",
        ])
        .unwrap();
    wait_until("k hears AdminDown", CONVERGE, || {
        m.latest_log("k").contains("the peer went AdminDown")
    });
    let r = ours(&m, "k").unwrap();
    assert_eq!(r.sessions[0].state, State::Down);
    assert_eq!(r.sessions[0].remote_state, State::AdminDown);
    std::thread::sleep(Duration::from_secs(1));
    assert!(!m.latest_log("k").contains("path to the neighbour failed"));
    assert_eq!(m.full_neighbors("k"), 1, "the adjacency stays");
    assert_eq!(
        m.stats("k").and_then(|s| s.agent).map(|a| a.rib_changes),
        before,
        "no route moved"
    );
}

#[test]
fn frr_ospf6d_with_bfd_reroutes_on_a_silent_cut_next_to_our_agents() {
    // f - a - c - b - f: FRR reaches a directly, and around through b.
    let mut m = mesh(
        "bfd-frr-ospf",
        &Topology::new().ring(&["f", "a", "c", "b"], Wire::Cable),
    );
    let conf = "debug bfd peer\nbfd\n profile fast\n  transmit-interval 10\n  receive-interval 10\n  detect-multiplier 3\n !\n";
    let f = Frr::start_with(
        &m.lab,
        "f",
        FRR_ID,
        FRR_STUB,
        &Extra {
            interface: vec!["ipv6 ospf6 bfd profile fast".into()],
            bfdd: Some(conf.into()),
        },
    );
    for n in ["a", "b", "c"] {
        m.start(
            n,
            &["--bfd", "--bfd-interval-ms", "10", "--bfd-multiplier", "3"],
        )
        .unwrap();
    }
    m.wait_full_reachability(&["a", "b", "c"], CONVERGE);
    let a = format!("{}/128", m.node_address("a"));
    let via = |iface: &str| {
        f.vtysh(&m.lab, &format!("show ipv6 route {a}"))
            .is_some_and(|o| {
                o.contains("ospf6") && o.contains(&format!("via {iface}"))
                    || o.contains(&format!(", {iface}"))
            })
    };
    wait_until("FRR routes to a directly", CONVERGE, || via("m-a"));
    wait_until("FRR's sessions Up", CONVERGE, || {
        let peers = theirs(&m, &f);
        peers.len() == 2 && peers.iter().all(|p| p["status"] == "up")
    });
    m.lab.cut_silent("f", "a").unwrap();
    // Far inside the 3 s dead interval.
    wait_until("FRR routes to a through b", Duration::from_secs(1), || {
        via("m-b")
    });
    assert!(f.is_full_with(&m.lab, m.node("b").unwrap().router_id));
}
