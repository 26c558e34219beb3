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

/// Restart b of a line a - b - c (`crash`: SIGKILL, back after 1 s; else
/// SIGTERM) with BFD at 10 ms: XDP answers b's sessions while its agent is
/// away and the new agent adopts them, so no session of a or c leaves Up,
/// nothing is taken down and no route moves.
fn restart_keeps_sessions_up(tag: &str, crash: bool) {
    let mut m = mesh(tag, &Topology::new().line(&["a", "b", "c"], Wire::Direct));
    start_with_bfd(&mut m, &["a", "b", "c"], 10, 3);
    m.wait_full_reachability(&["a", "b", "c"], CONVERGE);
    wait_sessions_up(&m, "b", 2, 10);
    wait_sessions_up(&m, "a", 1, 10);
    wait_sessions_up(&m, "c", 1, 10);
    std::thread::sleep(Duration::from_secs(2));
    let changes = |node: &str| m.stats(node).and_then(|s| s.agent).map(|a| a.rib_changes);
    let before = (changes("a"), changes("c"));
    let discs =
        |n: &str| -> BTreeSet<u32> { bfd(&m, n).sessions.iter().map(|s| s.local_disc).collect() };
    let b_before = discs("b");
    let answered = m.xdp_counter("b", meshfwd_common::stats::Stat::BfdAnswered);
    let id = m.agent("b").unwrap();
    if crash {
        m.crash("b").unwrap();
        std::thread::sleep(Duration::from_secs(1));
    }
    m.lab.node("b").restart(id).unwrap();
    wait_until("b's agent answers again", CONVERGE, || {
        m.node("b").is_some()
    });
    wait_sessions_up(&m, "b", 2, 10);
    std::thread::sleep(Duration::from_secs(1));
    assert!(
        m.latest_log("b")
            .contains("BFD sessions of an earlier run adopted"),
        "{}",
        m.latest_log("b")
    );
    assert_eq!(discs("b"), b_before, "the same sessions, adopted");
    assert!(
        m.xdp_counter("b", meshfwd_common::stats::Stat::BfdAnswered) > answered,
        "XDP answered while the agent was away"
    );
    for n in ["a", "c"] {
        let r = bfd(&m, n);
        assert!(
            r.sessions
                .iter()
                .all(|s| s.state == State::Up && s.counters.flaps == 0),
            "{n}: {r:?}"
        );
        let log = m.log(n);
        assert!(!log.contains("path to the neighbour failed"), "{n}:\n{log}");
        assert!(!log.contains("AdminDown"), "{n}:\n{log}");
    }
    assert_eq!(
        (changes("a"), changes("c")),
        before,
        "no route of a or c moved"
    );
}

#[test]
fn a_planned_restart_keeps_every_session_up() {
    restart_keeps_sessions_up("bfd-restart", false);
}

#[test]
fn a_crash_keeps_every_session_up_while_xdp_answers() {
    restart_keeps_sessions_up("bfd-crash", true);
}

#[test]
fn a_stop_for_good_says_admin_down_and_takes_nothing_down() {
    // Graceful restart off: a stop is not a restart, so b says AdminDown
    // and stops answering in XDP; a takes nothing down for AdminDown and
    // its dead interval ends the adjacency.
    let mut m = mesh(
        "bfd-admin",
        &Topology::new().line(&["a", "b"], Wire::Direct),
    );
    let conf = m.lab.work_dir().join("b.toml");
    std::fs::write(&conf, "[ospf]\ngraceful_restart = false\n").unwrap();
    m.start("a", &["--bfd"]).unwrap();
    let conf = conf.to_string_lossy().into_owned();
    m.start("b", &["--bfd", "--config", &conf]).unwrap();
    m.wait_full_reachability(&["a", "b"], CONVERGE);
    wait_sessions_up(&m, "a", 1, 10);
    m.lab.node("b").kill(m.agent("b").unwrap()).unwrap();
    wait_until("a hears AdminDown", CONVERGE, || {
        m.log("a").contains("the peer went AdminDown")
    });
    let r = bfd(&m, "a");
    assert!(
        r.sessions
            .iter()
            .all(|s| s.remote_state == State::AdminDown || s.state == State::Down),
        "{r:?}"
    );
    assert!(
        !m.log("a").contains("path to the neighbour failed"),
        "{}",
        m.log("a")
    );
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
