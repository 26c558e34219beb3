//! RFC 7166 authentication in the simulator: keys that agree form
//! adjacencies and route; a wrong key, a missing trailer or a replay is
//! dropped and counted; a key rollover with overlapping lifetimes keeps
//! every adjacency.

use routing::packet::auth::{Algorithm, CpidOrder, Key, KeyChain};
use routing::sim::{Sim, router_id};
use routing::{DropReason, InstanceConfig, InterfaceConfig, Ipv6Net};

fn pod(n: usize) -> Ipv6Net {
    format!("fd00:{:x}::/64", n + 1).parse().expect("prefix")
}

fn key(id: u16, secret: &str) -> Key {
    Key {
        id,
        algorithm: Algorithm::HmacSha256,
        secret: secret.as_bytes().to_vec(),
        send_from: None,
        send_until: None,
        accept_from: None,
        accept_until: None,
    }
}

fn chain(keys: Vec<Key>) -> InterfaceConfig {
    InterfaceConfig {
        auth: Some(KeyChain {
            keys,
            send_cpid: CpidOrder::Rfc,
        }),
        ..InterfaceConfig::default()
    }
}

fn sim(n: usize, config: impl Fn(usize) -> InterfaceConfig) -> Sim {
    let mut sim = Sim::new();
    for i in 0..n {
        sim.add_router(InstanceConfig {
            router_id: router_id(i),
            stub_prefixes: vec![pod(i)],
            auth_boot_count: 3,
            ..Default::default()
        });
        sim.router_interface_config.insert(i, config(i));
    }
    sim
}

fn full(sim: &Sim, r: usize) -> usize {
    sim.instance(r)
        .state()
        .neighbors
        .iter()
        .filter(|n| format!("{:?}", n.state) == "Full")
        .count()
}

fn drops(sim: &Sim, r: usize, reason: DropReason) -> u64 {
    sim.instance(r)
        .drop_counters()
        .get(&reason)
        .copied()
        .unwrap_or(0)
}

#[test]
fn routers_with_one_key_form_adjacencies_and_route() {
    let mut s = sim(3, |_| chain(vec![key(1, "mesh-key")]));
    s.capture = Some(Vec::new());
    s.add_link(0, 1, 1);
    s.add_link(1, 2, 1);
    s.run_for(20_000);
    assert_eq!(full(&s, 1), 2);
    assert!(s.routers[0].rib.routes.contains_key(&pod(2)));
    // Every packet carried a trailer with the boot count in its high word.
    for (_, _, _, _, data) in s.capture.as_ref().unwrap() {
        let len = usize::from(u16::from_be_bytes([data[2], data[3]]));
        assert_eq!(data.len(), len + 48, "a SHA-256 trailer");
        assert_eq!(&data[len + 8..len + 12], &3u32.to_be_bytes());
        assert_eq!(&data[12..14], &[0, 0], "no checksum");
    }
}

#[test]
fn a_wrong_key_or_no_authentication_forms_no_adjacency() {
    for (other, reason) in [
        (chain(vec![key(1, "other-key")]), DropReason::AuthBadDigest),
        (chain(vec![key(2, "mesh-key")]), DropReason::AuthUnknownKey),
        (InterfaceConfig::default(), DropReason::AuthMissing),
    ] {
        let mut s = sim(2, |i| match i {
            0 => chain(vec![key(1, "mesh-key")]),
            _ => other.clone(),
        });
        s.add_link(0, 1, 1);
        s.run_for(20_000);
        assert_eq!(full(&s, 0), 0, "{reason:?}");
        assert_eq!(s.instance(0).state().neighbors.len(), 0, "{reason:?}");
        assert!(drops(&s, 0, reason) > 5, "{reason:?}");
        assert!(!s.routers[0].rib.routes.contains_key(&pod(1)));
    }
    // And the unauthenticated side refuses the trailer's AT-bit.
    let mut s = sim(2, |i| match i {
        0 => chain(vec![key(1, "mesh-key")]),
        _ => InterfaceConfig::default(),
    });
    s.add_link(0, 1, 1);
    s.run_for(20_000);
    assert!(drops(&s, 1, DropReason::AuthUnexpected) + drops(&s, 1, DropReason::BadChecksum) > 5);
    assert_eq!(full(&s, 1), 0);
}

#[test]
fn a_replayed_packet_is_dropped() {
    let mut s = sim(2, |_| chain(vec![key(1, "mesh-key")]));
    s.capture = Some(Vec::new());
    s.add_link(0, 1, 1);
    s.run_for(20_000);
    assert_eq!(full(&s, 0), 1);
    // Deliver an old packet of router 1 to router 0 again.
    let (r, ifindex, src, dst, data) = s
        .capture
        .as_ref()
        .unwrap()
        .iter()
        .find(|(r, ..)| *r == 0)
        .cloned()
        .expect("a packet to router 0");
    let before = drops(&s, r, DropReason::AuthReplay);
    s.input(
        r,
        routing::Input::Packet {
            ifindex,
            src,
            dst,
            data,
        },
    );
    assert_eq!(drops(&s, r, DropReason::AuthReplay), before + 1);
    assert_eq!(full(&s, 0), 1, "the replay changed nothing");
}

#[test]
fn a_key_rollover_with_overlapping_lifetimes_keeps_the_adjacencies() {
    // The simulator's clock starts at the Unix epoch (lifetimes are
    // Unix seconds).
    let at = Some;
    // Key 1 signs until 60 s and is accepted until 80 s; key 2 is
    // accepted from 40 s and signs from 50 s. The routers switch at 50 s.
    let keys = vec![
        Key {
            send_until: at(60),
            accept_until: at(80),
            ..key(1, "old-key")
        },
        Key {
            send_from: at(50),
            accept_from: at(40),
            ..key(2, "new-key")
        },
    ];
    let mut s = sim(3, |_| chain(keys.clone()));
    s.add_link(0, 1, 1);
    s.add_link(1, 2, 1);
    s.add_link(2, 0, 1);
    s.run_for(20_000);
    for _ in 0..100 {
        s.run_for(1_000);
        for r in 0..3 {
            assert_eq!(full(&s, r), 2, "router {r} at {:?}", s.now);
        }
    }
    for r in 0..3 {
        for reason in [
            DropReason::AuthUnknownKey,
            DropReason::AuthBadDigest,
            DropReason::AuthReplay,
        ] {
            assert_eq!(drops(&s, r, reason), 0, "router {r} {reason:?}");
        }
    }
}
