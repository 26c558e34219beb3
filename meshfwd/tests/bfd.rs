//! BFD with real agents (RFC 5880, 5881, 5882): sessions with every OSPF
//! neighbour, a silent cut taken down in tens of milliseconds rather than
//! the dead interval, AdminDown on a planned restart taking nothing down,
//! and the sessions after a restart.

mod agent_support;

use std::{
    collections::BTreeSet,
    time::{Duration, SystemTime},
};

use agent_support::{Answers as _, mesh, route_ifaces, wait_until};
use ipnet::Ipv6Net;
use lab::{Topology, Wire, agents::AgentMesh};
use meshfwd::api::{BfdReport, Query};
use routing::bfd::State;

const CONVERGE: Duration = Duration::from_secs(30);
/// Sessions come Up at 1 s packets (RFC 5880 §6.8.3), then speed up.
const SESSION_UP: Duration = Duration::from_secs(10);

fn bfd(m: &AgentMesh, node: &str) -> BfdReport {
    m.show(node, Query::Bfd)
        .unwrap_or_else(|| panic!("{node}'s agent answers show bfd"))
}

/// Start every node's agent with BFD at `interval_ms` x `mult`.
fn start_with_bfd(m: &mut AgentMesh, nodes: &[&str], interval_ms: u32, mult: u8) {
    let (i, k) = (interval_ms.to_string(), mult.to_string());
    for n in nodes {
        m.start(
            n,
            &["--bfd", "--bfd-interval-ms", &i, "--bfd-multiplier", &k],
        )
        .unwrap_or_else(|e| panic!("starting {n}: {e:#}"));
    }
}

/// Wait until `node` has `n` sessions, all Up at the fast timers.
fn wait_sessions_up(m: &AgentMesh, node: &str, n: usize, interval_ms: u32) {
    wait_until(
        &format!("{node}'s {n} BFD sessions Up"),
        SESSION_UP + CONVERGE,
        || {
            let Some(r) = m.show::<BfdReport>(node, Query::Bfd) else {
                return false;
            };
            r.sessions.len() == n
                && r.sessions
                    .iter()
                    .all(|s| s.state == State::Up && s.tx_interval_us == interval_ms * 1000)
        },
    );
}

/// When the first line of `log` containing `what` was written (the
/// agent's RFC 3339 timestamps).
fn logged_at(log: &str, what: &str) -> Option<SystemTime> {
    let line = log.lines().find(|l| l.contains(what))?;
    humantime::parse_rfc3339(line.split_whitespace().next()?).ok()
}

#[test]
fn a_silent_cut_is_taken_down_within_the_detection_time() {
    let mut m = mesh(
        "bfd-silent",
        &Topology::new().ring(&["a", "b", "c", "d"], Wire::Cable),
    );
    start_with_bfd(&mut m, &["a", "b", "c", "d"], 10, 3);
    m.wait_full_reachability(&["a", "b", "c", "d"], CONVERGE);
    for n in ["a", "b", "c", "d"] {
        wait_sessions_up(&m, n, 2, 10);
    }
    let b_addr = Ipv6Net::from(m.node_address("b"));
    assert_eq!(route_ifaces(&m, "a", &b_addr), ["m-b".to_string()].into());
    let r = bfd(&m, "a");
    assert!(
        r.sessions.iter().all(|s| s.detect_time_us == 30_000),
        "{r:?}"
    );

    m.lab.cut_silent("a", "b").unwrap();
    let cut = SystemTime::now();
    assert!(m.lab.node("a").has_carrier("m-b").unwrap(), "a silent cut");
    wait_until("a routes to b via d", Duration::from_secs(2), || {
        route_ifaces(&m, "a", &b_addr) == ["m-d".to_string()].into()
    });
    // The alive flags went first: that is when traffic left the link.
    for (node, what) in [
        ("a", "BFD: path to the neighbour failed"),
        ("a", "alive flags cleared"),
        ("b", "BFD: path to the neighbour failed"),
    ] {
        let at = logged_at(&m.latest_log(node), what)
            .unwrap_or_else(|| panic!("{node} logged {what:?}:\n{}", m.latest_log(node)));
        let after = at.duration_since(cut).unwrap_or(Duration::ZERO);
        assert!(
            after <= Duration::from_millis(30 + 20),
            "{node}: {what:?} {after:?} after the cut"
        );
    }
    assert!(
        m.latest_log("a")
            .contains("diag=ControlDetectionTimeExpired"),
        "{}",
        m.latest_log("a")
    );

    // Healed: the session and the adjacency come back, and so does the
    // direct route.
    m.lab.restore("a", "b").unwrap();
    wait_sessions_up(&m, "a", 2, 10);
    wait_until("a routes to b directly again", CONVERGE, || {
        route_ifaces(&m, "a", &b_addr) == ["m-b".to_string()].into()
    });
}

#[test]
fn admin_down_on_a_planned_restart_takes_nothing_down() {
    let mut m = mesh(
        "bfd-admin",
        &Topology::new().line(&["a", "b", "c"], Wire::Direct),
    );
    start_with_bfd(&mut m, &["a", "b", "c"], 10, 3);
    m.wait_full_reachability(&["a", "b", "c"], CONVERGE);
    wait_sessions_up(&m, "b", 2, 10);
    let changes = |node: &str| m.stats(node).and_then(|s| s.agent).map(|a| a.rib_changes);
    let before = (changes("a"), changes("c"));
    let old_disc: BTreeSet<u32> = bfd(&m, "b").sessions.iter().map(|s| s.local_disc).collect();

    // SIGTERM: b says AdminDown on both sessions, then restarts
    // gracefully; a and c take nothing down.
    m.lab.node("b").restart(m.agent("b").unwrap()).unwrap();
    wait_until("a heard AdminDown", CONVERGE, || {
        m.log("a").contains("the peer went AdminDown")
    });
    wait_sessions_up(&m, "b", 2, 10);
    wait_sessions_up(&m, "a", 1, 10);
    for n in ["a", "c"] {
        assert!(
            !m.latest_log(n).contains("path to the neighbour failed"),
            "{n} took b down:\n{}",
            m.latest_log(n)
        );
    }
    assert_eq!(
        (changes("a"), changes("c")),
        before,
        "no route of a or c moved"
    );
    // The new run's sessions have new discriminators.
    let new_disc: BTreeSet<u32> = bfd(&m, "b").sessions.iter().map(|s| s.local_disc).collect();
    assert!(old_disc.is_disjoint(&new_disc), "{old_disc:?} {new_disc:?}");
}

#[test]
fn a_crash_is_a_failure_to_the_neighbours_sessions() {
    // What a crash costs with BFD on (see the README): b's sessions fall
    // silent, a's times out within its detection time and takes the
    // adjacency down; once b is back, sessions and routes return.
    let mut m = mesh(
        "bfd-crash",
        &Topology::new().line(&["a", "b"], Wire::Direct),
    );
    start_with_bfd(&mut m, &["a", "b"], 10, 3);
    m.wait_full_reachability(&["a", "b"], CONVERGE);
    wait_sessions_up(&m, "a", 1, 10);
    m.crash("b").unwrap();
    let crashed = SystemTime::now();
    wait_until("a takes b down", Duration::from_secs(2), || {
        m.latest_log("a").contains("path to the neighbour failed")
    });
    let at = logged_at(&m.latest_log("a"), "path to the neighbour failed").unwrap();
    assert!(at.duration_since(crashed).unwrap_or_default() <= Duration::from_millis(50));
    m.lab.node("b").restart(m.agent("b").unwrap()).unwrap();
    wait_sessions_up(&m, "a", 1, 10);
    m.wait_full_reachability(&["a", "b"], CONVERGE);
}

#[test]
fn bad_bfd_settings_are_refused_naming_the_field() {
    let mut m = mesh(
        "bfd-config",
        &Topology::new().line(&["a", "b"], Wire::Direct),
    );
    m.start("a", &["--bfd", "--bfd-multiplier", "0"]).unwrap();
    wait_until("a refuses", CONVERGE, || {
        m.log("a").contains("bfd.multiplier")
    });
}
