//! A 6-node partial mesh of cables: every link carries link-local pings
//! both ways, a silent cut loses frames with carrier up, a loud cut drops
//! carrier, restoring brings both back, and dropping the lab leaves nothing.

mod common;

use common::{Footprint, assert_reachable, assert_unreachable, ends};
use lab::{Lab, Topology, Wire};

const SEED: u64 = 6;

#[test]
fn mesh6() {
    let topo = Topology::partial_mesh(6, SEED, Wire::Cable);
    let lab = Lab::build("mesh6", &topo).unwrap_or_else(|e| panic!("{e:#}"));
    assert_eq!(lab.nodes().count(), 6);
    assert_eq!(lab.links().len(), topo.links.len());
    let sleeper = lab.node("n0").spawn("sleeper", &["sleep", "600"]).unwrap();
    let pids = vec![lab.node("n0").pid(sleeper).expect("running")];

    for l in lab.links() {
        assert_reachable(&lab, l);
    }

    let silent = lab.links()[0].clone();
    let loud = lab.links()[1].clone();
    let (sa, sb) = ends(&lab, &silent);
    let (la, lb) = ends(&lab, &loud);

    lab.cut_silent(&silent.a, &silent.b).unwrap();
    lab.cut_loud(&loud.a, &loud.b).unwrap();

    // Silent: frames vanish, yet both ends still see a live cable.
    for (node, ifname) in [(&silent.a, &silent.a_if), (&silent.b, &silent.b_if)] {
        let flags = lab.node(node).link_flags(ifname).unwrap();
        assert!(
            flags.iter().any(|f| f == "LOWER_UP"),
            "{node}/{ifname} after silent cut: {flags:?}"
        );
        assert!(
            !flags.iter().any(|f| f == "NO-CARRIER"),
            "{node}/{ifname} after silent cut: {flags:?}"
        );
    }
    assert_unreachable(&lab, &silent, sa, sb);

    // Loud: both ends lose carrier but stay administratively up.
    for (node, ifname) in [(&loud.a, &loud.a_if), (&loud.b, &loud.b_if)] {
        let flags = lab.node(node).link_flags(ifname).unwrap();
        assert!(
            flags.iter().any(|f| f == "NO-CARRIER"),
            "{node}/{ifname} after loud cut: {flags:?}"
        );
        assert!(
            flags.iter().any(|f| f == "UP"),
            "{node}/{ifname} after loud cut: {flags:?}"
        );
        assert!(!lab.node(node).has_carrier(ifname).unwrap());
    }
    assert_unreachable(&lab, &loud, la, lb);

    // The other links are unaffected.
    for l in &lab.links()[2..] {
        assert_reachable(&lab, l);
    }

    lab.restore(&silent.a, &silent.b).unwrap();
    lab.restore(&loud.a, &loud.b).unwrap();
    assert_reachable(&lab, &silent);
    assert_reachable(&lab, &loud);
    assert!(lab.node(&loud.a).has_carrier(&loud.a_if).unwrap());
    // Restoring twice is harmless.
    lab.restore(&silent.a, &silent.b).unwrap();

    let footprint = Footprint::of(&lab, pids);
    assert_eq!(
        footprint.netns.len(),
        6 + lab.links().len(),
        "one namespace per node and per cable"
    );
    let work = lab.work_path();
    drop(lab);
    footprint.assert_gone();
    assert!(!work.exists(), "work dir {} left behind", work.display());
}
