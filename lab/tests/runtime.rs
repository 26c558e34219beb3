//! Changing a running lab: processes restarted, nodes and links added, and
//! the direct-link cuts.

mod common;

use std::time::{Duration, Instant};

use common::{Footprint, assert_reachable};
use lab::{Lab, Topology, Wire};

#[test]
fn add_node_and_links_at_run_time() {
    let mut lab = Lab::build("grow", &Topology::new().line(&["a", "b"], Wire::Direct))
        .unwrap_or_else(|e| panic!("{e:#}"));
    lab.add_node("c").unwrap();
    assert!(lab.add_node("c").is_err(), "duplicate node");
    assert!(lab.add_node("bad name").is_err());
    let bc = lab.add_link("b", "c", Wire::Cable).unwrap();
    let ac = lab.add_link("a", "c", Wire::Direct).unwrap();
    // A second, parallel cable between the same nodes gets its own names.
    let ac2 = lab.add_link("a", "c", Wire::Cable).unwrap();
    assert!(lab.add_link("a", "nope", Wire::Direct).is_err());
    assert!(lab.add_link("a", "a", Wire::Direct).is_err());
    assert_eq!(
        (bc.b_if.as_str(), ac.a_if.as_str(), ac2.a_if.as_str()),
        ("m-b", "m-c", "m-c-2")
    );
    assert_eq!(lab.node("c").ifaces(), ["m-b", "m-a", "m-a-2"]);
    assert_eq!(lab.links().len(), 4);
    for l in lab.links() {
        assert_reachable(&lab, l);
    }

    // Direct links cannot be cut silently, only loudly.
    let e = lab.cut_silent("a", "c").unwrap_err().to_string();
    assert!(e.contains("Wire::Cable"), "{e}");
    lab.cut_loud("c", "a").unwrap();
    let c = lab.node("c");
    assert!(
        !c.link_flags("m-a").unwrap().iter().any(|f| f == "UP"),
        "c's end is set down"
    );
    assert!(
        lab.node("a")
            .link_flags("m-c")
            .unwrap()
            .iter()
            .any(|f| f == "NO-CARRIER")
    );
    lab.restore("a", "c").unwrap();
    assert_reachable(&lab, lab.link("a", "c"));

    assert!(lab.cut_loud("b", "nope").is_err());
    let fp = Footprint::of(&lab, vec![]);
    drop(lab);
    fp.assert_gone();
}

#[test]
fn a_switch_joins_its_members_on_one_segment() {
    let mut lab = Lab::build("switch", &Topology::new().line(&["a", "b"], Wire::Direct))
        .unwrap_or_else(|e| panic!("{e:#}"));
    lab.add_node("c").unwrap();
    assert!(lab.add_switch("sw", &["a"]).is_err(), "one member");
    assert!(
        lab.add_switch("sw", &["a", "nope"]).is_err(),
        "unknown member"
    );
    assert!(lab.add_switch("a", &["b", "c"]).is_err(), "a node's name");
    let sw = lab.add_switch("sw", &["a", "b", "c"]).unwrap();
    assert_eq!(sw.iface_of("a"), Some("m-sw"));
    assert_eq!(lab.node("b").ifaces(), ["m-a", "m-sw"]);
    // Every member reaches every other one's link-local on the segment.
    for x in ["a", "b", "c"] {
        for y in ["a", "b", "c"] {
            if x != y {
                let dst = lab.node(y).link_local("m-sw").unwrap();
                lab.node(x)
                    .wait_ping6(dst, Some("m-sw"), Duration::from_secs(5))
                    .unwrap_or_else(|e| panic!("{x} -> {y}: {e:#}"));
            }
        }
    }
    let fp = Footprint::of(&lab, vec![]);
    assert!(fp.netns.contains(&sw.netns), "{:?}", fp.netns);
    drop(lab);
    fp.assert_gone();
}

#[test]
fn processes_restart_and_log() {
    let lab = Lab::build("procs", &Topology::new().node("p")).unwrap_or_else(|e| panic!("{e:#}"));
    let p = lab.node("p");
    // The process sees the node's namespace (only `lo`), and the host's bpffs.
    let id = p.spawn("talker", &["sh", "-c", "ip -o link | wc -l; X=llo; echo he$X; test -d /sys/fs/bpf && echo bpf$X; exec sleep 600"]).unwrap();
    assert!(p.spawn("talker", &["true"]).is_err(), "label in use");
    assert!(p.spawn("../x", &["true"]).is_err(), "bad label");
    assert!(
        p.spawn("ghost", &["/nonexistent/prog"])
            .unwrap_err()
            .to_string()
            .contains("not found")
    );
    let first = p.pid(id).unwrap();
    wait_for(|| p.log(id).contains("bpfllo"));
    let log = p.log(id);
    assert!(
        log.lines().any(|l| l.trim() == "1"),
        "only lo inside the node: {log}"
    );

    p.restart(id).unwrap();
    let second = p.pid(id).unwrap();
    assert_ne!(first, second);
    assert!(!common::alive(first), "old process gone");
    assert!(p.is_running(id));
    wait_for(|| p.log(id).matches("hello").count() == 2);

    p.kill(id).unwrap();
    assert!(!p.is_running(id));
    assert!(!common::alive(second));
    p.kill(id).unwrap(); // idempotent

    // A process that ignores SIGTERM is killed after the grace period.
    let stubborn = p
        .spawn(
            "stubborn",
            &[
                "sh",
                "-c",
                "trap '' TERM; X=dy; echo rea$X; while :; do sleep 1; done",
            ],
        )
        .unwrap();
    wait_for(|| p.log(stubborn).contains("ready"));
    let t = Instant::now();
    p.kill_all().unwrap();
    assert!(!p.is_running(stubborn));
    assert!(t.elapsed() < Duration::from_secs(10));

    // run(): stdout on success, command and stderr on failure.
    assert_eq!(p.run(&["echo", "hi"]).unwrap().trim(), "hi");
    let e = format!(
        "{:#}",
        p.run(&["ip", "link", "show", "dev", "nosuchdev"])
            .unwrap_err()
    );
    assert!(
        e.contains("ip link show dev nosuchdev")
            && e.contains("nosuchdev")
            && e.contains("in node p"),
        "{e}"
    );
    let e = format!(
        "{:#}",
        p.run_timeout(&["sleep", "30"], Duration::from_millis(300))
            .unwrap_err()
    );
    assert!(e.contains("did not finish"), "{e}");

    // cmd() gives a plain Command in the node's namespace.
    let out = p.cmd("ip").args(["-o", "link"]).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("lo:"));
    assert!(
        p.ping6("2001:4860::1".parse().unwrap(), None).is_err(),
        "outside the lab's addresses"
    );
    assert!(
        p.ping6("::1".parse().unwrap(), None).unwrap(),
        "loopback answers"
    );
}

fn wait_for(mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !f() {
        assert!(Instant::now() < deadline, "condition not met within 10 s");
        std::thread::sleep(Duration::from_millis(20));
    }
}
