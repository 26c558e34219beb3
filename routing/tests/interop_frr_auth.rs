//! Interop with FRR 8.4's ospf6d, plain and with RFC 7166 authentication
//! (HMAC-SHA-256), on one point-to-point link.
//!
//! FRR before 9.1 appends the protocol id to the key in host byte order
//! (`01 00` on x86) where RFC 7166 §4.5 has `00 01`, so its digests and
//! the RFC's differ. We accept either; towards FRR 8.4 we sign the way it
//! does (`--auth-cpid legacy`), and a test shows the RFC order is refused
//! by it.
//!
//! Needs root, the lab's tools and FRR at `/usr/lib/frr`.
#![cfg(feature = "driver")]

mod common;

use std::time::{Duration, Instant};

use common::bird::{LinkType, TestKey};
use common::frr::Frr;
use common::routers::Ours;
use common::{rid, stub, wait_until};
use routing::DropReason;

const CONVERGE: Duration = Duration::from_secs(30);

/// FRR with `frr_key`, ours with `our_keys` and extra arguments.
fn pair(
    tag: &str,
    frr_key: Option<&TestKey>,
    our_keys: &[TestKey],
    extra: &[&str],
) -> (lab::Lab, Ours, Frr) {
    let topo = lab::Topology::new()
        .node("ours")
        .node("frr")
        .link("ours", "frr", lab::Wire::Direct);
    let lab = lab::Lab::build(tag, &topo).expect("build lab");
    let frr = Frr::start(&lab, "frr", rid(2), &stub(2), frr_key);
    let args: Vec<String> = our_keys
        .iter()
        .flat_map(|k| ["--auth".to_owned(), k.ospfd_arg()])
        .chain(extra.iter().map(|s| (*s).to_owned()))
        .collect();
    let ours = Ours::start_with(
        &lab,
        "ours",
        rid(1),
        &[&stub(1)],
        LinkType::PointToPoint,
        &args,
    );
    (lab, ours, frr)
}

fn converges(lab: &lab::Lab, ours: &Ours, frr: &Frr) {
    let describe = || format!("{}\n{}", ours.describe(), frr.describe(lab));
    wait_until(
        "Full on both sides",
        CONVERGE,
        || (ours.is_full_with(rid(2)) && frr.is_full_with(lab, rid(1))).then_some(()),
        describe,
    );
    wait_until(
        "routes both ways",
        CONVERGE,
        || {
            let o = ours.routes()?;
            (o.contains_key(&stub(2)) && frr.has_route(lab, &stub(1))).then_some(())
        },
        describe,
    );
}

#[test]
fn without_authentication_frr_and_we_route_to_each_other() {
    let (lab, ours, frr) = pair("frr-plain", None, &[], &[]);
    converges(&lab, &ours, &frr);
}

#[test]
fn one_key_forms_the_adjacency_in_frrs_byte_order() {
    let key = TestKey::always(1, "mesh-secret-1234");
    let (lab, ours, frr) = pair(
        "frr-auth",
        Some(&key),
        std::slice::from_ref(&key),
        &["--auth-cpid", "legacy"],
    );
    converges(&lab, &ours, &frr);
    for reason in [DropReason::AuthBadDigest, DropReason::AuthReplay] {
        assert_eq!(ours.drops(reason), 0, "{reason:?}");
    }
}

#[test]
fn frr_8_4_refuses_the_rfc_byte_order() {
    let key = TestKey::always(1, "mesh-secret-1234");
    let (lab, ours, frr) = pair(
        "frr-rfc",
        Some(&key),
        std::slice::from_ref(&key),
        &["--auth-cpid", "rfc"],
    );
    // We accept FRR's packets (either order verifies), FRR refuses ours.
    let describe = || format!("{}\n{}", ours.describe(), frr.describe(&lab));
    wait_until(
        "FRR's Hellos accepted by us",
        CONVERGE,
        || {
            ours.snapshot()
                .is_some_and(|s| !s.state.neighbors.is_empty())
                .then_some(())
        },
        describe,
    );
    std::thread::sleep(Duration::from_secs(5));
    assert!(!frr.is_full_with(&lab, rid(1)), "{}", describe());
}

#[test]
fn a_different_key_forms_no_adjacency() {
    let (lab, ours, frr) = pair(
        "frr-badkey",
        Some(&TestKey::always(1, "other-secret-567")),
        &[TestKey::always(1, "mesh-secret-1234")],
        &["--auth-cpid", "legacy"],
    );
    let describe = || format!("{}\n{}", ours.describe(), frr.describe(&lab));
    wait_until(
        "our digest check refusing FRR's packets",
        CONVERGE,
        || (ours.drops(DropReason::AuthBadDigest) >= 5).then_some(()),
        describe,
    );
    assert!(!ours.is_full_with(rid(2)), "{}", describe());
    assert!(!frr.is_full_with(&lab, rid(1)), "{}", describe());
}

/// Time from Full with FRR to FRR's prefix in our RIB.
fn full_to_routes(tag: &str, extra: &[&str]) -> Duration {
    let (lab, ours, frr) = pair(tag, None, &[], extra);
    let poll = |what: &str, f: &dyn Fn() -> bool| {
        let deadline = Instant::now() + CONVERGE;
        while !f() {
            assert!(
                Instant::now() < deadline,
                "{what}: timed out\n{}\n{}",
                ours.describe(),
                frr.describe(&lab)
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Instant::now()
    };
    let full = poll("Full with FRR", &|| ours.is_full_with(rid(2)));
    let routed = poll("FRR's prefix routed", &|| {
        ours.routes().is_some_and(|r| r.contains_key(&stub(2)))
    });
    routed - full
}

#[test]
fn routes_follow_full_without_waiting_for_frrs_retransmission() {
    // FRR originates its LSAs with seq 1 during the database exchange and
    // seq 2 right after. RFC 2328 §13 (5a) discards seq 2 under MinLSArrival
    // without an acknowledgement, and FRR resends it only after its 5 s
    // RxmtInterval; we look at the deferred copy again once MinLSArrival
    // has passed. Our own Router-LSA with the new link goes out at once
    // (origination throttle), not MinLSInterval after our start.
    //
    // The bound tells those apart from the 5 s waits they replace; the
    // figures themselves are in the log.
    let rfc = full_to_routes("frr-rfc", &[]);
    let agent = full_to_routes("frr-agent", &["--agent-timers"]);
    eprintln!(
        "Full to routes: {} ms with RFC timers, {} ms with the agent's",
        rfc.as_millis(),
        agent.as_millis()
    );
    assert!(rfc < Duration::from_millis(3_500), "RFC timers: {rfc:?}");
    assert!(
        agent < Duration::from_millis(2_000),
        "agent timers: {agent:?}"
    );
}
