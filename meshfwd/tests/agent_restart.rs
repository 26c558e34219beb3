//! Restarting the agent, crashed or stopped, with graceful restart (RFC
//! 3623): the neighbours keep routing through the node, so none of their
//! routes moves, and the restarted agent hands out its own routes only
//! once its adjacencies are back. The line of agents runs both families:
//! the IPv4 instance (RFC 5838) restarts gracefully beside the IPv6 one.

mod agent_support;

use std::time::{Duration, Instant};

use agent_support::{Answers as _, mesh, wait_until};
use lab::{Topology, Wire, agents::AgentMesh};
use meshfwd::api::StatsReport;

const CONVERGE: Duration = Duration::from_secs(30);

/// `count` pings at 10 ms from `from` to `dst`, running in the background.
struct Pings(std::process::Child);

impl Pings {
    fn start(m: &AgentMesh, from: &str, dst: &str, count: u32) -> Pings {
        let count = count.to_string();
        let family = if dst.contains(':') { "-6" } else { "-4" };
        let child = m
            .lab
            .node(from)
            .cmd("ping")
            .args([
                family, "-n", "-q", "-i", "0.01", "-c", &count, "-W", "1", dst,
            ])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("ping");
        Pings(child)
    }

    /// Wait for the last (bounded: the count at 10 ms, then 1 s) and
    /// return ping's summary.
    fn summary(self) -> String {
        let out = self.0.wait_with_output().expect("ping finishes");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

fn rib_changes(m: &AgentMesh, node: &str) -> u64 {
    m.show::<StatsReport>(node, meshfwd::api::Query::Stats)
        .and_then(|s| s.agent)
        .map(|a| a.rib_changes)
        .unwrap_or_else(|| panic!("{node}'s agent answers"))
}

/// Restart b of a line a - b - c (dual-stack) with `restart` and check
/// that a and c noticed nothing: no route change in either family, a's
/// kernel routes to c's /128 and /32 always there.
fn restart_b(tag: &str, restart: impl FnOnce(&AgentMesh)) {
    let topo = Topology::new().line(&["a", "b", "c"], Wire::Direct);
    let mut m = mesh(tag, &topo);
    for n in ["a", "b", "c"] {
        m.start(n, &["--ipv4-cluster-prefix", "198.18.0.0/15"])
            .unwrap();
    }
    m.wait_full_reachability(&["a", "b", "c"], CONVERGE);
    let c4 = m.node_state("c").ipv4.expect("c runs IPv4").node_address;
    m.lab
        .node("a")
        .wait_ping(c4.into(), CONVERGE)
        .expect("a reaches c over IPv4");
    // Settled: no more route changes from the start.
    std::thread::sleep(Duration::from_secs(2));
    let before = (rib_changes(&m, "a"), rib_changes(&m, "c"));
    let c = m.node_address("c").to_string();
    let c4 = c4.to_string();
    // 100 pings a second from a to c across b in each family, for 6 s
    // around the restart.
    let ping = Pings::start(&m, "a", &c, 600);
    let ping4 = Pings::start(&m, "a", &c4, 600);
    std::thread::sleep(Duration::from_millis(500));
    restart(&m);
    // Until b is done restarting, a's route to c must stay.
    let new_log = || m.latest_log("b");
    let start = Instant::now();
    let mut samples = 0;
    while !new_log().contains("gr: restart ends") {
        assert!(
            start.elapsed() < CONVERGE,
            "b did not finish restarting:\n{}",
            new_log()
        );
        for (family, dst) in [("-6", &c), ("-4", &c4)] {
            let route = m
                .lab
                .node("a")
                .run(&["ip", family, "route", "show", dst])
                .unwrap_or_default();
            assert!(
                route.contains("via"),
                "a lost its route to c's {dst} (sample {samples}):\n{}",
                m.log("a")
            );
        }
        samples += 1;
        std::thread::sleep(Duration::from_millis(20));
    }
    for ping in [ping, ping4] {
        let pinged = ping.summary();
        eprintln!("{pinged}");
        assert!(
            pinged.contains(" 0% packet loss"),
            "a lost pings to c while b restarted:\n{pinged}"
        );
    }
    let log = new_log();
    assert!(log.contains("restarting gracefully"), "{log}");
    assert!(
        log.contains("why=Completed"),
        "b's adjacencies all came back:\n{log}"
    );
    for n in ["a", "c"] {
        assert!(
            m.log(n).contains("gr: helping a restarting neighbour"),
            "{n} helped"
        );
        assert!(
            !m.log(n).contains("uses our router id"),
            "{n} kept its identity"
        );
    }
    m.wait_full_reachability(&["a", "b", "c"], CONVERGE);
    wait_until("the helpers stop helping", CONVERGE, || {
        ["a", "c"]
            .iter()
            .all(|n| m.log(n).contains("gr: helping ends"))
    });
    assert_eq!(
        (rib_changes(&m, "a"), rib_changes(&m, "c")),
        before,
        "no route of a or c moved while b restarted"
    );
}

#[test]
fn a_crashed_agent_back_within_the_dead_interval_moves_no_route_of_its_neighbours() {
    restart_b("gr-kill", |m| {
        m.crash("b").unwrap();
        std::thread::sleep(Duration::from_secs(1));
        m.lab.node("b").restart(m.agent("b").unwrap()).unwrap();
    });
}

#[test]
fn a_stopped_and_restarted_agent_moves_no_route_of_its_neighbours() {
    // SIGTERM: a planned restart, announced before the agent goes.
    restart_b("gr-term", |m| {
        m.lab.node("b").restart(m.agent("b").unwrap()).unwrap();
    });
}

// Interop: BIRD 2 as the helper of our restart, and as the restarting
// router we help.

#[allow(dead_code, reason = "this file uses a subset")]
#[path = "../../routing/tests/common/bird.rs"]
mod bird;

use bird::{BirdConf, BirdFiles};

const BIRD_ID: std::net::Ipv4Addr = std::net::Ipv4Addr::new(10, 0, 0, 99);
const BIRD_STUB: &str = "2001:db8:99::/64";

/// Start BIRD in `node` (point-to-point on its mesh links, the agents'
/// timers), restarting from an earlier run with `-R` if `recover`.
fn start_bird(
    m: &AgentMesh,
    node: &str,
    graceful: bool,
    recover: bool,
) -> (BirdFiles, lab::ProcId) {
    let n = m.lab.node(node);
    let files = BirdFiles::new(m.lab.work_dir(), node);
    let ifaces = n.ifaces();
    let ifaces: Vec<&str> = ifaces.iter().map(String::as_str).collect();
    let mut text = BirdConf::ptp(BIRD_ID, &ifaces, &[BIRD_STUB]).render(&files.log);
    if graceful {
        // BIRD restarts gracefully only when told to; helping it does by
        // default (`aware`).
        text = text.replace(
            "protocol ospf v3 ospf1 {",
            "protocol ospf v3 ospf1 {\n  graceful restart yes;\n  graceful restart time 60;",
        );
    }
    std::fs::write(&files.conf, text).expect("BIRD configuration");
    let mut args = files.bird_args();
    if recover {
        args.push("-R".into());
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let proc = n
        .spawn(if recover { "bird-r" } else { "bird" }, &args)
        .expect("start BIRD");
    (files, proc)
}

fn birdc(m: &AgentMesh, node: &str, files: &BirdFiles, command: &str) -> String {
    let args = files.birdc_args(command);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    m.lab.node(node).run(&args).unwrap_or_default()
}

/// BIRD's OSPF routes, each line with the time its route was learnt taken
/// out as milliseconds of the day: BIRD prints that time as now's wall
/// clock less a monotonic age, so two printings of an unchanged route can
/// differ by a millisecond.
fn bird_routes(m: &AgentMesh, files: &BirdFiles) -> Vec<(String, Option<u64>)> {
    birdc(m, "r", files, "show route protocol ospf1")
        .lines()
        .filter(|l| !l.starts_with("BIRD "))
        .map(|l| {
            let Some((head, rest)) = l.split_once("[ospf1 ") else {
                return (l.to_owned(), None);
            };
            let Some((time, tail)) = rest.split_once(']') else {
                return (l.to_owned(), None);
            };
            let ms = time
                .split([':', '.'])
                .map(|f| f.parse::<u64>().ok())
                .collect::<Option<Vec<_>>>();
            match ms.as_deref() {
                Some([h, mi, sec, milli]) => (
                    format!("{head}[ospf1 ...]{tail}"),
                    Some(((h * 60 + mi) * 60 + sec) * 1000 + milli),
                ),
                _ => (l.to_owned(), None),
            }
        })
        .collect()
}

/// Whether two readings of BIRD's routes show the same routes learnt at
/// the same moments (within the printing's jitter).
fn same_routes(a: &[(String, Option<u64>)], b: &[(String, Option<u64>)]) -> bool {
    a.len() == b.len()
        && a.iter().zip(b).all(|((la, ta), (lb, tb))| {
            la == lb
                && match (ta, tb) {
                    (Some(x), Some(y)) => x.abs_diff(*y) <= 5,
                    (None, None) => true,
                    _ => false,
                }
        })
}

/// Crash b's agent, start it again 1 s later, and run `check` every
/// `every` until b's graceful restart is over; it must complete.
fn crash_and_watch(m: &AgentMesh, every: Duration, mut check: impl FnMut()) {
    m.crash("b").unwrap();
    std::thread::sleep(Duration::from_secs(1));
    m.lab.node("b").restart(m.agent("b").unwrap()).unwrap();
    let start = Instant::now();
    while !m.latest_log("b").contains("gr: restart ends") {
        assert!(
            start.elapsed() < CONVERGE,
            "b did not finish restarting:\n{}",
            m.latest_log("b")
        );
        check();
        std::thread::sleep(every);
    }
    assert!(
        m.latest_log("b").contains("why=Completed"),
        "{}",
        m.latest_log("b")
    );
}

#[test]
fn our_restart_moves_no_route_of_a_bird_helper() {
    let topo = Topology::new().line(&["a", "b", "r"], Wire::Direct);
    let mut m = mesh("gr-bird-helps", &topo);
    let (files, _bird) = start_bird(&m, "r", false, false);
    m.start("a", &[]).unwrap();
    m.start("b", &[]).unwrap();
    m.wait_full_reachability(&["a", "b"], CONVERGE);
    let a = m.node_address("a");
    wait_until("BIRD routes to a through b", CONVERGE, || {
        birdc(&m, "r", &files, "show route protocol ospf1").contains(&format!("{a}/128"))
    });
    std::thread::sleep(Duration::from_secs(2));
    // BIRD prints each route with the time it was learnt: a route that
    // flapped, even for a moment, prints a later time.
    let before = bird_routes(&m, &files);
    crash_and_watch(&m, Duration::from_millis(100), || {
        let now = bird_routes(&m, &files);
        assert!(
            same_routes(&now, &before),
            "BIRD's routes moved while b restarted: {now:?} against {before:?}"
        );
    });
    std::thread::sleep(Duration::from_secs(2));
    let after = bird_routes(&m, &files);
    assert!(same_routes(&after, &before), "{after:?} against {before:?}");
}

#[test]
fn we_help_bird_restart_and_keep_our_routes() {
    let topo = Topology::new().line(&["b", "r"], Wire::Direct);
    let mut m = mesh("gr-bird-restarts", &topo);
    let (files, bird) = start_bird(&m, "r", true, false);
    m.start("b", &[]).unwrap();
    let stub: ipnet::Ipv6Net = BIRD_STUB.parse().unwrap();
    wait_until("b routes to BIRD's stub", CONVERGE, || {
        m.routes("b")
            .iter()
            .any(|r| r.prefix == ipnet::IpNet::V6(stub))
    });
    std::thread::sleep(Duration::from_secs(2));
    let before = rib_changes(&m, "b");
    // BIRD's planned restart: Grace-LSAs, then it exits; back with -R.
    birdc(&m, "r", &files, "graceful restart");
    wait_until("BIRD exits for its restart", CONVERGE, || {
        !m.lab.node("r").is_running(bird)
    });
    let (_files, _bird) = start_bird(&m, "r", true, true);
    wait_until(
        "b helps BIRD and stops when BIRD is done",
        Duration::from_secs(70),
        || m.log("b").contains("gr: helping ends"),
    );
    let log = m.log("b");
    assert!(log.contains("gr: helping a restarting neighbour"), "{log}");
    assert!(
        log.contains("why=Completed"),
        "BIRD flushed its Grace-LSA:\n{log}"
    );
    assert_eq!(
        rib_changes(&m, "b"),
        before,
        "no route of b moved while BIRD restarted"
    );
    assert!(
        m.routes("b")
            .iter()
            .any(|r| r.prefix == ipnet::IpNet::V6(stub))
    );
}

#[allow(dead_code, reason = "this file uses a subset")]
#[path = "../../routing/tests/common/frr.rs"]
mod frr;

#[test]
fn our_restart_moves_no_route_of_an_frr_helper() {
    let topo = Topology::new().line(&["a", "b", "f"], Wire::Direct);
    let mut m = mesh("gr-frr-helps", &topo);
    // FRR 8.4 helps only when told to.
    let frr = frr::Frr::start_on(
        &m.lab,
        "f",
        BIRD_ID,
        BIRD_STUB,
        None,
        bird::LinkType::PointToPoint,
        &["graceful-restart helper enable"],
    );
    m.start("a", &[]).unwrap();
    m.start("b", &[]).unwrap();
    m.wait_full_reachability(&["a", "b"], CONVERGE);
    let a = format!("{}/128", m.node_address("a"));
    wait_until("FRR routes to a through b", CONVERGE, || {
        frr.has_route(&m.lab, &a)
    });
    std::thread::sleep(Duration::from_secs(2));
    // zebra prints each route's age: a route that flapped prints younger.
    let uptime = |out: &str| -> Option<u64> {
        // "... ospf6 ... 00:00:12" style: the last hh:mm:ss on the line.
        out.lines().find(|l| l.contains("ospf6"))?;
        let t = out
            .split_whitespace()
            .rev()
            .find(|w| w.matches(':').count() == 2)?;
        let mut secs = 0;
        for p in t.trim_end_matches(',').split(':') {
            secs = secs * 60 + p.parse::<u64>().ok()?;
        }
        Some(secs)
    };
    let show = || {
        frr.vtysh(&m.lab, &format!("show ipv6 route {a}"))
            .unwrap_or_default()
    };
    let before = uptime(&show()).unwrap_or_else(|| panic!("a route age in:\n{}", show()));
    crash_and_watch(&m, Duration::from_millis(200), || {
        let now = show();
        let age = uptime(&now)
            .unwrap_or_else(|| panic!("FRR lost its route to a:\n{now}\n{}", frr.describe(&m.lab)));
        assert!(
            age >= before,
            "FRR's route to a was replaced ({before} s old, now {age} s):\n{now}"
        );
    });
    let age = uptime(&show()).expect("the route");
    assert!(
        age > before,
        "the same route, older: {before} s then {age} s"
    );
}

/// The id of the XDP program on `iface` of `node`.
fn xdp_prog_id(m: &AgentMesh, node: &str, iface: &str) -> Option<u64> {
    let out = m
        .lab
        .node(node)
        .run(&["ip", "-j", "link", "show", "dev", iface])
        .ok()?;
    let v: serde_json::Value = serde_json::from_str(&out).ok()?;
    v[0]["xdp"]["prog"]["id"].as_u64()
}

/// The ids of the programs on `iface`'s TCX ingress in `node`.
fn tc_prog_ids(m: &AgentMesh, node: &str, iface: &str) -> Vec<u32> {
    lab::netns::enter(m.lab.node(node).netns(), || {
        Ok(dataplane::tc::ingress_program_ids(iface)?)
    })
    .unwrap_or_else(|e| panic!("querying {iface}'s TCX ingress: {e:#}"))
}

/// An upgrade: the restarted agent finds XDP, and TC on a pod and on the
/// mesh links, attached by another build, and swaps every program in
/// place (one `bpf_link_update` each), while traffic crosses the node and
/// reaches the pod.
#[test]
fn an_upgrade_swaps_the_programs_in_place_without_loss() {
    let topo = Topology::new().line(&["a", "b", "c"], Wire::Direct);
    let mut m = mesh("gr-upgrade", &topo);
    m.start_all().unwrap();
    m.wait_full_reachability(&["a", "b", "c"], CONVERGE);
    let cni = lab::pods::built_bin(None, "MESHFWD_CNI_BIN", "cni", "meshfwd-cni").unwrap();
    let pod = m.add_pod("b", "pb", &cni, &serde_json::json!({})).unwrap();
    let b_ifaces = m.lab.node("b").ifaces();
    // The TC links: the pod's veth, and every mesh link once a pod exists.
    let tc_links: Vec<String> = std::iter::once(pod.host_veth.clone())
        .chain(b_ifaces.iter().cloned())
        .collect();
    wait_until("the fast path on the pod", CONVERGE, || {
        tc_links.iter().all(|l| tc_prog_ids(&m, "b", l).len() == 1)
    });
    let tc_before: Vec<Vec<u32>> = tc_links.iter().map(|l| tc_prog_ids(&m, "b", l)).collect();
    let before: Vec<Option<u64>> = b_ifaces.iter().map(|i| xdp_prog_id(&m, "b", i)).collect();
    assert!(before.iter().all(Option::is_some), "{before:?}");
    // What an earlier build leaves: its programs pinned under another
    // build's name (`progs/xdp-<iface>:<object tag>`, `progs/<program>-<tag>`).
    let progs = m.lab.node("b").bpffs_dir().join("progs");
    let pins = |prefix: &str| -> Vec<String> {
        std::fs::read_dir(&progs)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with(prefix))
            .collect()
    };
    let earlier = |prefix: &str, to: String| {
        let current = pins(prefix);
        assert_eq!(current.len(), 1, "{current:?}");
        std::fs::rename(progs.join(&current[0]), progs.join(to)).unwrap();
    };
    for i in &b_ifaces {
        earlier(&format!("xdp-{i}:"), format!("xdp-{i}:an-earlier-build"));
    }
    for p in [
        dataplane::object::POD_PROGRAM,
        dataplane::object::MESH_PROGRAM,
    ] {
        earlier(&format!("{p}-"), format!("{p}-earlier"));
    }
    let c = m.node_address("c").to_string();
    let through = Pings::start(&m, "a", &c, 400);
    let to_pod = Pings::start(&m, "a", &pod.addr.to_string(), 400);
    std::thread::sleep(Duration::from_millis(500));
    m.lab.node("b").restart(m.agent("b").unwrap()).unwrap();
    wait_until("b replaces its programs", CONVERGE, || {
        let log = m.latest_log("b");
        log.matches("XDP program of an earlier build replaced")
            .count()
            == b_ifaces.len()
            && log.contains("TC programs of an earlier build replaced in place")
    });
    for (what, pings) in [("through b", through), ("to b's pod", to_pod)] {
        let pinged = pings.summary();
        assert!(pinged.contains(" 0% packet loss"), "{what}: {pinged}");
    }
    for (i, old) in b_ifaces.iter().zip(&before) {
        let now = xdp_prog_id(&m, "b", i);
        assert!(
            now.is_some() && now != *old,
            "{i}: program {old:?} -> {now:?}"
        );
        let now_pinned = pins(&format!("xdp-{i}:"));
        assert!(
            now_pinned.len() == 1 && !now_pinned[0].ends_with("an-earlier-build"),
            "{now_pinned:?}"
        );
    }
    for (l, old) in tc_links.iter().zip(&tc_before) {
        let now = tc_prog_ids(&m, "b", l);
        assert!(
            now.len() == 1 && now != *old,
            "{l}: programs {old:?} -> {now:?}"
        );
    }
    for p in [
        dataplane::object::POD_PROGRAM,
        dataplane::object::MESH_PROGRAM,
    ] {
        let left = pins(&format!("{p}-"));
        assert!(left.len() == 1 && !left[0].ends_with("earlier"), "{left:?}");
    }
    // A restart of the same build keeps the programs.
    let ids: Vec<Option<u64>> = b_ifaces.iter().map(|i| xdp_prog_id(&m, "b", i)).collect();
    let tc_ids: Vec<Vec<u32>> = tc_links.iter().map(|l| tc_prog_ids(&m, "b", l)).collect();
    m.lab.node("b").restart(m.agent("b").unwrap()).unwrap();
    wait_until("b is back", CONVERGE, || {
        m.latest_log("b").contains("gr: restart ends")
    });
    let again: Vec<Option<u64>> = b_ifaces.iter().map(|i| xdp_prog_id(&m, "b", i)).collect();
    assert_eq!(again, ids);
    let tc_again: Vec<Vec<u32>> = tc_links.iter().map(|l| tc_prog_ids(&m, "b", l)).collect();
    assert_eq!(tc_again, tc_ids);
    assert!(!m.latest_log("b").contains("replaced in place"));
}

/// A build whose maps differ from the pinned ones: the agent refuses to
/// start, naming the map, and leaves the pinned tables (and the fast path
/// that reads them) as they are.
#[test]
fn a_changed_map_layout_is_refused_and_left_alone() {
    let topo = Topology::new().line(&["a", "b"], Wire::Direct);
    let mut m = mesh("gr-layout", &topo);
    m.start_all().unwrap();
    m.wait_full_reachability(&["a", "b"], CONVERGE);
    let maps = m.lab.node("b").bpffs_dir();
    let id = |name: &str| {
        aya::maps::MapInfo::from_pin(maps.join(name))
            .map(|i| i.id())
            .unwrap_or_else(|e| panic!("{name} pinned: {e}"))
    };
    let iface = &m.lab.node("b").ifaces()[0];
    assert!(xdp_prog_id(&m, "b", iface).is_some(), "XDP on {iface}");
    m.crash("b").unwrap();
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        xdp_prog_id(&m, "b", iface).is_some(),
        "XDP on {iface} after the crash"
    );
    // What a build with another NH_GROUPS finds: a map of another shape
    // pinned under the name (here FIB_GEN's, an array of one u32).
    let groups = maps.join(meshfwd_common::pin::NH_GROUPS);
    std::fs::remove_file(&groups).unwrap();
    std::fs::rename(maps.join(meshfwd_common::pin::FIB_GEN), &groups).unwrap();
    let pinned = id(meshfwd_common::pin::NH_GROUPS);
    m.lab.node("b").restart(m.agent("b").unwrap()).unwrap();
    wait_until("b's agent refuses the pinned map", CONVERGE, || {
        let log = m.latest_log("b");
        log.contains("the pinned map NH_GROUPS") && log.contains("another layout")
    });
    let pid = m.pid("b").expect("b's agent was started");
    wait_until("b's agent exits", CONVERGE, || {
        std::fs::read_to_string(format!("/proc/{pid}/status"))
            .map_or(true, |s| s.contains("State:\tZ"))
    });
    assert_eq!(
        id(meshfwd_common::pin::NH_GROUPS),
        pinned,
        "the pin is left"
    );
    // Nothing was torn down: XDP still runs on b's link.
    assert!(
        xdp_prog_id(&m, "b", iface).is_some(),
        "XDP left on {iface}: {:?}\n{}",
        m.lab
            .node("b")
            .run(&["ip", "-d", "link", "show", "dev", iface]),
        m.latest_log("b")
    );
}
