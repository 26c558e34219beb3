//! Each kind of bad input is dropped and counted under its reason.

use std::net::{Ipv4Addr, Ipv6Addr};

use routing::packet::dbdesc::{DbDescRepr, DdFlags};
use routing::packet::hello::HelloRepr;
use routing::packet::{ALL_D_ROUTERS, ALL_SPF_ROUTERS, Body, Options, PacketRepr};
use routing::{DropReason, Input, Instance, InstanceConfig, InterfaceConfig, Time};

const ME: Ipv6Addr = Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 1);
const PEER: Ipv6Addr = Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 2);

fn peer_id() -> Ipv4Addr {
    Ipv4Addr::new(198, 18, 0, 2)
}

fn instance() -> Instance {
    let cfg = InstanceConfig {
        router_id: Ipv4Addr::new(198, 18, 0, 1),
        ..Default::default()
    };
    let (mut inst, _) = Instance::new(cfg, Time(0));
    inst.handle(
        Time(0),
        Input::InterfaceUp {
            ifindex: 1,
            name: "mesh1".into(),
            link_local: ME,
            mtu: 1500,
            config: InterfaceConfig::default(),
        },
    );
    inst
}

fn hello() -> HelloRepr {
    HelloRepr {
        interface_id: 7,
        priority: 1,
        options: Options::DEFAULT,
        hello_interval: 1,
        dead_interval: 3,
        dr: Ipv4Addr::UNSPECIFIED,
        bdr: Ipv4Addr::UNSPECIFIED,
        neighbors: vec![],
    }
}

fn packet(body: Body) -> PacketRepr {
    PacketRepr {
        router_id: peer_id(),
        area_id: Ipv4Addr::UNSPECIFIED,
        instance_id: 0,
        body,
    }
}

fn feed(inst: &mut Instance, src: Ipv6Addr, dst: Ipv6Addr, data: Vec<u8>) {
    inst.handle(
        Time(10),
        Input::Packet {
            ifindex: 1,
            src,
            dst,
            data,
        },
    );
}

/// Feed one packet and return the single counter that moved.
fn dropped(
    inst: &mut Instance,
    src: Ipv6Addr,
    dst: Ipv6Addr,
    data: Vec<u8>,
    ifindex: u32,
) -> Option<DropReason> {
    let before = inst.drop_counters().clone();
    inst.handle(
        Time(10),
        Input::Packet {
            ifindex,
            src,
            dst,
            data,
        },
    );
    let after = inst.drop_counters();
    let moved: Vec<DropReason> = after
        .iter()
        .filter(|(r, n)| before.get(r).copied().unwrap_or(0) < **n)
        .map(|(r, _)| *r)
        .collect();
    assert!(moved.len() <= 1, "{moved:?}");
    moved.first().copied()
}

#[test]
fn every_reason_is_counted() {
    let mut inst = instance();
    let good = packet(Body::Hello(hello())).to_bytes(PEER, ALL_SPF_ROUTERS);
    assert_eq!(
        dropped(&mut inst, PEER, ALL_SPF_ROUTERS, good.clone(), 1),
        None
    );

    let cases: Vec<(DropReason, Ipv6Addr, Ipv6Addr, Vec<u8>, u32)> = vec![
        (
            DropReason::Truncated,
            PEER,
            ALL_SPF_ROUTERS,
            good[..10].to_vec(),
            1,
        ),
        (
            DropReason::Oversized,
            PEER,
            ALL_SPF_ROUTERS,
            vec![0; 70_000],
            1,
        ),
        (
            DropReason::BadVersion,
            PEER,
            ALL_SPF_ROUTERS,
            {
                let mut d = good.clone();
                d[0] = 2;
                d
            },
            1,
        ),
        (
            DropReason::BadChecksum,
            PEER,
            ALL_SPF_ROUTERS,
            {
                let mut d = good.clone();
                d[12] ^= 0xff;
                d
            },
            1,
        ),
        (
            DropReason::WrongArea,
            PEER,
            ALL_SPF_ROUTERS,
            PacketRepr {
                area_id: Ipv4Addr::new(0, 0, 0, 1),
                ..packet(Body::Hello(hello()))
            }
            .to_bytes(PEER, ALL_SPF_ROUTERS),
            1,
        ),
        (
            DropReason::WrongInstanceId,
            PEER,
            ALL_SPF_ROUTERS,
            PacketRepr {
                instance_id: 5,
                ..packet(Body::Hello(hello()))
            }
            .to_bytes(PEER, ALL_SPF_ROUTERS),
            1,
        ),
        (
            DropReason::NonLinkLocalSource,
            "2001:db8::2".parse().unwrap(),
            ALL_SPF_ROUTERS,
            good.clone(),
            1,
        ),
        (
            DropReason::BadDestination,
            PEER,
            ALL_D_ROUTERS,
            good.clone(),
            1,
        ),
        (
            DropReason::BadDestination,
            PEER,
            "fe80::99".parse().unwrap(),
            good.clone(),
            1,
        ),
        (
            DropReason::UnknownInterface,
            PEER,
            ALL_SPF_ROUTERS,
            good.clone(),
            9,
        ),
        (
            DropReason::OwnRouterId,
            PEER,
            ALL_SPF_ROUTERS,
            PacketRepr {
                router_id: Ipv4Addr::new(198, 18, 0, 1),
                ..packet(Body::Hello(hello()))
            }
            .to_bytes(PEER, ALL_SPF_ROUTERS),
            1,
        ),
        (
            DropReason::HelloIntervalMismatch,
            PEER,
            ALL_SPF_ROUTERS,
            packet(Body::Hello(HelloRepr {
                hello_interval: 10,
                ..hello()
            }))
            .to_bytes(PEER, ALL_SPF_ROUTERS),
            1,
        ),
        (
            DropReason::DeadIntervalMismatch,
            PEER,
            ALL_SPF_ROUTERS,
            packet(Body::Hello(HelloRepr {
                dead_interval: 40,
                ..hello()
            }))
            .to_bytes(PEER, ALL_SPF_ROUTERS),
            1,
        ),
        (
            DropReason::OptionsMismatch,
            PEER,
            ALL_SPF_ROUTERS,
            packet(Body::Hello(HelloRepr {
                options: Options(Options::V6 | Options::R),
                ..hello()
            }))
            .to_bytes(PEER, ALL_SPF_ROUTERS),
            1,
        ),
        (
            DropReason::UnknownPacketType,
            PEER,
            ALL_SPF_ROUTERS,
            {
                let mut d = good.clone();
                d[1] = 9;
                d[12] = 0;
                d[13] = 0;
                d
            },
            1,
        ),
        (
            DropReason::BadLength,
            PEER,
            ALL_SPF_ROUTERS,
            {
                // A Hello body with a partial neighbour id.
                let mut d = good.clone();
                d.extend_from_slice(&[1, 2]);
                d[3] += 2;
                d[12] = 0;
                d[13] = 0;
                d
            },
            1,
        ),
    ];
    for (reason, src, dst, data, ifindex) in cases {
        assert_eq!(
            dropped(&mut inst, src, dst, data, ifindex),
            Some(reason),
            "{reason:?}"
        );
    }

    // A DD from a router we never heard a Hello from.
    let dd = DbDescRepr {
        options: Options::DEFAULT,
        mtu: 1500,
        flags: DdFlags(DdFlags::I | DdFlags::M | DdFlags::MS),
        seq: 1,
        lsa_headers: vec![],
    };
    let stranger = PacketRepr {
        router_id: Ipv4Addr::new(198, 18, 0, 9),
        ..packet(Body::DbDesc(dd.clone()))
    };
    assert_eq!(
        dropped(
            &mut inst,
            "fe80::9".parse().unwrap(),
            ALL_SPF_ROUTERS,
            stranger.to_bytes("fe80::9".parse().unwrap(), ALL_SPF_ROUTERS),
            1
        ),
        Some(DropReason::UnknownNeighbor)
    );
    // MTU mismatch: the peer announces a bigger MTU than ours.
    let big = packet(Body::DbDesc(DbDescRepr { mtu: 9000, ..dd }));
    assert_eq!(
        dropped(
            &mut inst,
            PEER,
            ALL_SPF_ROUTERS,
            big.to_bytes(PEER, ALL_SPF_ROUTERS),
            1
        ),
        Some(DropReason::MtuMismatch)
    );
    // A zero checksum is accepted unverified (see the crate docs).
    let mut zero = good.clone();
    zero[12] = 0;
    zero[13] = 0;
    feed(&mut inst, PEER, ALL_SPF_ROUTERS, zero);
    let state = inst.state();
    assert_eq!(state.neighbors.len(), 1);
    assert!(
        serde_json::to_string(&state)
            .unwrap()
            .contains("\"MtuMismatch\":1")
    );
}

#[test]
fn passive_interface_drops_everything_and_sends_nothing() {
    let cfg = InstanceConfig {
        router_id: Ipv4Addr::new(198, 18, 0, 1),
        ..Default::default()
    };
    let (mut inst, _) = Instance::new(cfg, Time(0));
    let out = inst.handle(
        Time(0),
        Input::InterfaceUp {
            ifindex: 1,
            name: "pod0".into(),
            link_local: ME,
            mtu: 1500,
            config: InterfaceConfig {
                passive: true,
                ..Default::default()
            },
        },
    );
    assert!(
        !out.iter()
            .any(|o| matches!(o, routing::Output::Send { .. }))
    );
    let good = packet(Body::Hello(hello())).to_bytes(PEER, ALL_SPF_ROUTERS);
    assert_eq!(
        dropped(&mut inst, PEER, ALL_SPF_ROUTERS, good, 1),
        Some(DropReason::PassiveInterface)
    );
}
