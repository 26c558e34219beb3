//! RFC 7166 authentication against BIRD 2: our `ospfd` and BIRD on one
//! link, HMAC-SHA-256.
//!
//! - one key on both sides: Full, identical LSDBs, routes both ways;
//! - a different key: no adjacency, and our digest-failure counter rises;
//! - a rollover: two keys with overlapping lifetimes (the old one signs
//!   for 20 s more and is accepted for 35 s, the new one is accepted from
//!   10 s and signs from 15 s), the same on both sides: the adjacency
//!   stays Full across the change and afterwards, with no failure counted.
//!
//! Needs root, the lab's tools and BIRD 2 at `/usr/sbin/bird`.
#![cfg(feature = "driver")]

mod common;

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::bird::{LinkType, TestKey};
use common::routers::{Bird, Ours, wait_identical_lsdbs};
use common::{rid, stub, wait_until};
use routing::DropReason;

const CONVERGE: Duration = Duration::from_secs(30);

/// A BIRD and an `ospfd` on one link, both with `ours` and `birds` keys.
fn pair(tag: &str, ours: &[TestKey], birds: &[TestKey]) -> (lab::Lab, Ours, Bird) {
    let topo =
        lab::Topology::new()
            .node("ours")
            .node("bird")
            .link("ours", "bird", lab::Wire::Direct);
    let lab = lab::Lab::build(tag, &topo).expect("build lab");
    let bird = Bird::start_with_keys(
        &lab,
        "bird",
        rid(2),
        &[&stub(2)],
        LinkType::PointToPoint,
        birds,
    );
    let args: Vec<String> = ours
        .iter()
        .flat_map(|k| ["--auth".to_owned(), k.ospfd_arg()])
        .chain(["--auth-boot-count".to_owned(), "7".to_owned()])
        .collect();
    let o = Ours::start_with(
        &lab,
        "ours",
        rid(1),
        &[&stub(1)],
        LinkType::PointToPoint,
        &args,
    );
    (lab, o, bird)
}

#[test]
fn one_key_on_both_sides_forms_the_adjacency_and_routes() {
    let key = [TestKey::always(1, "mesh-secret-1234")];
    let (lab, ours, bird) = pair("bird-auth", &key, &key);
    let describe = || format!("{}\n{}", ours.describe(), bird.describe(&lab));
    wait_until(
        "Full on both sides, authenticated",
        CONVERGE,
        || (ours.is_full_with(rid(2)) && bird.is_full_with(&lab, rid(1))).then_some(()),
        describe,
    );
    wait_until(
        "routes both ways",
        CONVERGE,
        || {
            let (o, b) = (ours.routes()?, bird.routes(&lab)?);
            (o.contains_key(&stub(2)) && b.contains_key(&stub(1))).then_some(())
        },
        describe,
    );
    wait_identical_lsdbs(&ours, &bird, &lab, CONVERGE);
    for reason in [
        DropReason::AuthBadDigest,
        DropReason::AuthReplay,
        DropReason::AuthMissing,
    ] {
        assert_eq!(ours.drops(reason), 0, "{reason:?}");
    }
}

#[test]
fn a_different_key_forms_no_adjacency() {
    let (lab, ours, bird) = pair(
        "bird-badkey",
        &[TestKey::always(1, "mesh-secret-1234")],
        &[TestKey::always(1, "other-secret-567")],
    );
    let describe = || format!("{}\n{}", ours.describe(), bird.describe(&lab));
    wait_until(
        "our digest check refusing BIRD's packets",
        CONVERGE,
        || (ours.drops(DropReason::AuthBadDigest) >= 5).then_some(()),
        describe,
    );
    assert!(!ours.is_full_with(rid(2)), "{}", describe());
    assert!(!bird.is_full_with(&lab, rid(1)), "{}", describe());
    assert!(
        ours.snapshot()
            .is_some_and(|s| s.state.neighbors.is_empty()),
        "not even a neighbour: {}",
        describe()
    );
}

#[test]
fn a_key_rollover_keeps_the_adjacency() {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs();
    let keys = [
        TestKey {
            send: (None, Some(now + 20)),
            accept: (None, Some(now + 35)),
            ..TestKey::always(1, "old-secret-1234")
        },
        TestKey {
            send: (Some(now + 15), None),
            accept: (Some(now + 10), None),
            ..TestKey::always(2, "new-secret-5678")
        },
    ];
    let (lab, ours, bird) = pair("bird-rollover", &keys, &keys);
    let describe = || format!("{}\n{}", ours.describe(), bird.describe(&lab));
    wait_until(
        "Full with the old key",
        CONVERGE,
        || (ours.is_full_with(rid(2)) && bird.is_full_with(&lab, rid(1))).then_some(()),
        describe,
    );
    // Through the change (15-20 s) and past the old key's end (35 s).
    let until = Instant::now() + Duration::from_secs(now + 40)
        - Duration::from_secs(
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .expect("clock")
                .as_secs(),
        );
    while Instant::now() < until {
        assert!(
            ours.is_full_with(rid(2)) && bird.is_full_with(&lab, rid(1)),
            "the adjacency dropped during the rollover: {}",
            describe()
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    for reason in [
        DropReason::AuthBadDigest,
        DropReason::AuthUnknownKey,
        DropReason::AuthReplay,
    ] {
        assert_eq!(ours.drops(reason), 0, "{reason:?}: {}", describe());
    }
}
