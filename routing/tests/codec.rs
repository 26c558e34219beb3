//! Codec round trips for every packet and LSA type against byte fixtures.
//!
//! The fixtures were built with scapy 2.8.0 (`scapy.contrib.ospf`), an
//! implementation independent of ours, including both checksums: the
//! OSPFv3 checksum for src fe80::1, dst ff02::5, and the LSAs' Fletcher
//! checksums. Each test parses the bytes into the expected `Repr` and emits
//! the `Repr` back into exactly the same bytes.

use std::net::{Ipv4Addr, Ipv6Addr};

use routing::packet::dbdesc::{DbDescRepr, DdFlags};
use routing::packet::hello::HelloRepr;
use routing::packet::lsa::header::{LsaHeader, LsaKey, LsaType};
use routing::packet::lsa::intra_area_prefix::IntraAreaPrefixLsa;
use routing::packet::lsa::link::LinkLsa;
use routing::packet::lsa::network::NetworkLsa;
use routing::packet::lsa::router::{RouterFlags, RouterLink, RouterLinkType, RouterLsa};
use routing::packet::lsa::{Lsa, LsaBody};
use routing::packet::lsack::LsAckRepr;
use routing::packet::lsreq::LsRequestRepr;
use routing::packet::lsupd::LsUpdateRepr;
use routing::packet::prefix::{LsaPrefix, PrefixOptions};
use routing::packet::{Body, Options, Packet, PacketRepr, checksum};

const SRC: Ipv6Addr = Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 1);
const DST: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 5);

fn rid(n: u8) -> Ipv4Addr {
    Ipv4Addr::new(198, 18, 0, n)
}

const HELLO: [u8; 40] = [
    0x03, 0x01, 0x00, 0x28, 0xc6, 0x12, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x71, 0x8a, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x02, 0x01, 0x00, 0x00, 0x13, 0x00, 0x01, 0x00, 0x03, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0xc6, 0x12, 0x00, 0x02,
];

const ROUTER_LSA: [u8; 40] = [
    0x00, 0x01, 0x20, 0x01, 0x00, 0x00, 0x00, 0x00, 0xc6, 0x12, 0x00, 0x01, 0x80, 0x00, 0x00, 0x01,
    0xce, 0x8e, 0x00, 0x28, 0x00, 0x00, 0x00, 0x13, 0x01, 0x00, 0x00, 0x0a, 0x00, 0x00, 0x00, 0x02,
    0x00, 0x00, 0x00, 0x03, 0xc6, 0x12, 0x00, 0x02,
];

const NETWORK_LSA: [u8; 32] = [
    0x00, 0x01, 0x20, 0x02, 0x00, 0x00, 0x00, 0x04, 0xc6, 0x12, 0x00, 0x03, 0x80, 0x00, 0x00, 0x02,
    0xf5, 0x9c, 0x00, 0x20, 0x00, 0x00, 0x00, 0x13, 0xc6, 0x12, 0x00, 0x03, 0xc6, 0x12, 0x00, 0x01,
];

const LINK_LSA: [u8; 56] = [
    0x00, 0x01, 0x00, 0x08, 0x00, 0x00, 0x00, 0x02, 0xc6, 0x12, 0x00, 0x01, 0x80, 0x00, 0x00, 0x01,
    0xc9, 0xd0, 0x00, 0x38, 0x01, 0x00, 0x00, 0x13, 0xfe, 0x80, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x40, 0x00, 0x00, 0x0a,
    0x20, 0x01, 0x0d, 0xb8, 0x00, 0x01, 0x00, 0x00,
];

const IAP_LSA: [u8; 64] = [
    0x00, 0x01, 0x20, 0x09, 0x00, 0x00, 0x00, 0x00, 0xc6, 0x12, 0x00, 0x01, 0x80, 0x00, 0x00, 0x01,
    0xb3, 0xc8, 0x00, 0x40, 0x00, 0x02, 0x20, 0x01, 0x00, 0x00, 0x00, 0x00, 0xc6, 0x12, 0x00, 0x01,
    0x40, 0x00, 0x00, 0x00, 0xfd, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x80, 0x02, 0x00, 0x00,
    0xfd, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01,
];

const DD: [u8; 48] = [
    0x03, 0x02, 0x00, 0x30, 0xc6, 0x12, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0xeb, 0xb2, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x13, 0x05, 0xdc, 0x00, 0x03, 0x00, 0x00, 0x12, 0x34, 0x00, 0x01, 0x20, 0x01,
    0x00, 0x00, 0x00, 0x00, 0xc6, 0x12, 0x00, 0x01, 0x80, 0x00, 0x00, 0x01, 0xce, 0x8e, 0x00, 0x28,
];

const LSR: [u8; 40] = [
    0x03, 0x03, 0x00, 0x28, 0xc6, 0x12, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x8c, 0x80, 0x00, 0x00,
    0x00, 0x00, 0x20, 0x01, 0x00, 0x00, 0x00, 0x00, 0xc6, 0x12, 0x00, 0x02, 0x00, 0x00, 0x00, 0x08,
    0x00, 0x00, 0x00, 0x03, 0xc6, 0x12, 0x00, 0x02,
];

const LSU: [u8; 92] = [
    0x03, 0x04, 0x00, 0x5c, 0xc6, 0x12, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x54, 0x2d, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x02, 0x00, 0x01, 0x20, 0x01, 0x00, 0x00, 0x00, 0x00, 0xc6, 0x12, 0x00, 0x01,
    0x80, 0x00, 0x00, 0x01, 0xce, 0x8e, 0x00, 0x28, 0x00, 0x00, 0x00, 0x13, 0x01, 0x00, 0x00, 0x0a,
    0x00, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00, 0x03, 0xc6, 0x12, 0x00, 0x02, 0x00, 0x01, 0x20, 0x02,
    0x00, 0x00, 0x00, 0x04, 0xc6, 0x12, 0x00, 0x03, 0x80, 0x00, 0x00, 0x02, 0xf5, 0x9c, 0x00, 0x20,
    0x00, 0x00, 0x00, 0x13, 0xc6, 0x12, 0x00, 0x03, 0xc6, 0x12, 0x00, 0x01,
];

const ACK: [u8; 56] = [
    0x03, 0x05, 0x00, 0x38, 0xc6, 0x12, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x99, 0xda, 0x00, 0x00,
    0x00, 0x01, 0x20, 0x01, 0x00, 0x00, 0x00, 0x00, 0xc6, 0x12, 0x00, 0x01, 0x80, 0x00, 0x00, 0x01,
    0xce, 0x8e, 0x00, 0x28, 0x0e, 0x10, 0x20, 0x02, 0x00, 0x00, 0x00, 0x04, 0xc6, 0x12, 0x00, 0x03,
    0x80, 0x00, 0x00, 0x02, 0xf5, 0x9c, 0x00, 0x20,
];

fn header(
    ls_type: LsaType,
    ls_id: u32,
    adv: u8,
    seq: u32,
    checksum: u16,
    length: u16,
) -> LsaHeader {
    LsaHeader {
        age: 1,
        ls_type,
        ls_id,
        adv_router: rid(adv),
        seq,
        checksum,
        length,
    }
}

fn router_lsa() -> Lsa {
    Lsa {
        header: header(LsaType::ROUTER, 0, 1, 0x8000_0001, 0xce8e, 40),
        body: LsaBody::Router(RouterLsa {
            flags: RouterFlags(0),
            options: Options(0x13),
            links: vec![RouterLink {
                link_type: RouterLinkType::PointToPoint,
                metric: 10,
                interface_id: 2,
                neighbor_interface_id: 3,
                neighbor_router_id: rid(2),
            }],
        }),
    }
}

fn network_lsa() -> Lsa {
    Lsa {
        header: header(LsaType::NETWORK, 4, 3, 0x8000_0002, 0xf59c, 32),
        body: LsaBody::Network(NetworkLsa {
            options: Options(0x13),
            attached: vec![rid(3), rid(1)],
        }),
    }
}

fn link_lsa() -> Lsa {
    Lsa {
        header: header(LsaType::LINK, 2, 1, 0x8000_0001, 0xc9d0, 56),
        body: LsaBody::Link(LinkLsa {
            priority: 1,
            options: Options(0x13),
            link_local: SRC,
            prefixes: vec![LsaPrefix {
                prefix: "2001:db8:1::/64".parse().unwrap(),
                options: PrefixOptions(0),
                metric: 10,
            }],
        }),
    }
}

fn iap_lsa() -> Lsa {
    Lsa {
        header: header(LsaType::INTRA_AREA_PREFIX, 0, 1, 0x8000_0001, 0xb3c8, 64),
        body: LsaBody::IntraAreaPrefix(IntraAreaPrefixLsa {
            ref_ls_type: LsaType::ROUTER,
            ref_ls_id: 0,
            ref_adv_router: rid(1),
            prefixes: vec![
                LsaPrefix {
                    prefix: "fd00:1::/64".parse().unwrap(),
                    options: PrefixOptions(0),
                    metric: 0,
                },
                LsaPrefix {
                    prefix: "fd00:1::1/128".parse().unwrap(),
                    options: PrefixOptions(PrefixOptions::LA),
                    metric: 0,
                },
            ],
        }),
    }
}

fn packet(body: Body) -> PacketRepr {
    PacketRepr {
        router_id: rid(1),
        area_id: Ipv4Addr::UNSPECIFIED,
        instance_id: 0,
        body,
    }
}

/// Parse `bytes`, compare with `expected`, emit `expected` and compare with `bytes`.
fn round_trip(bytes: &[u8], expected: &PacketRepr) {
    let p = Packet::new_checked(bytes).expect("valid header");
    assert!(p.verify_checksum(SRC, DST), "fixture checksum");
    assert_eq!(&PacketRepr::parse(&p).expect("parses"), expected);
    assert_eq!(expected.buffer_len(), bytes.len());
    assert_eq!(expected.to_bytes(SRC, DST), bytes, "emitted bytes differ");
    // emit() leaves the checksum zero and writes every byte: pre-fill with a marker.
    let mut buf = vec![0xa5u8; bytes.len()];
    expected.emit(&mut buf);
    assert_eq!(&buf[..12], &bytes[..12]);
    assert_eq!(&buf[12..14], &[0, 0]);
    assert_eq!(&buf[14..], &bytes[14..]);
}

fn lsa_round_trip(bytes: &[u8], expected: &Lsa) {
    assert!(checksum::lsa_checksum_valid(bytes), "fixture LSA checksum");
    assert_eq!(&Lsa::parse(bytes).expect("parses"), expected);
    let mut fresh = expected.clone();
    fresh.header.checksum = 0;
    assert_eq!(
        fresh.encode(),
        bytes,
        "our Fletcher checksum must equal scapy's"
    );
    assert_eq!(fresh.header.checksum, expected.header.checksum);
}

#[test]
fn hello() {
    round_trip(
        &HELLO,
        &packet(Body::Hello(HelloRepr {
            interface_id: 2,
            priority: 1,
            options: Options(0x13),
            hello_interval: 1,
            dead_interval: 3,
            dr: Ipv4Addr::UNSPECIFIED,
            bdr: Ipv4Addr::UNSPECIFIED,
            neighbors: vec![rid(2)],
        })),
    );
}

#[test]
fn database_description() {
    round_trip(
        &DD,
        &packet(Body::DbDesc(DbDescRepr {
            options: Options(0x13),
            mtu: 1500,
            flags: DdFlags(DdFlags::M | DdFlags::MS),
            seq: 0x1234,
            lsa_headers: vec![router_lsa().header],
        })),
    );
}

#[test]
fn ls_request() {
    round_trip(
        &LSR,
        &packet(Body::LsRequest(LsRequestRepr {
            entries: vec![
                LsaKey {
                    ls_type: LsaType::ROUTER,
                    adv_router: rid(2),
                    ls_id: 0,
                },
                LsaKey {
                    ls_type: LsaType::LINK,
                    adv_router: rid(2),
                    ls_id: 3,
                },
            ],
        })),
    );
}

#[test]
fn ls_update() {
    round_trip(
        &LSU,
        &packet(Body::LsUpdate(LsUpdateRepr {
            lsas: vec![router_lsa(), network_lsa()],
        })),
    );
}

#[test]
fn ls_ack() {
    let mut maxage = network_lsa().header;
    maxage.age = 3600;
    round_trip(
        &ACK,
        &packet(Body::LsAck(LsAckRepr {
            headers: vec![router_lsa().header, maxage],
        })),
    );
}

#[test]
fn router_lsa_round_trip() {
    lsa_round_trip(&ROUTER_LSA, &router_lsa());
}

#[test]
fn network_lsa_round_trip() {
    lsa_round_trip(&NETWORK_LSA, &network_lsa());
}

#[test]
fn link_lsa_round_trip() {
    lsa_round_trip(&LINK_LSA, &link_lsa());
}

#[test]
fn intra_area_prefix_lsa_round_trip() {
    lsa_round_trip(&IAP_LSA, &iap_lsa());
}

#[test]
fn unknown_lsa_types_are_carried_through() {
    // An AS-external LSA (known type, body not interpreted) and an unknown
    // type with the U-bit set, both carried as raw bodies.
    for ls_type in [LsaType::AS_EXTERNAL, LsaType(0xa00f), LsaType(0x200f)] {
        let mut lsa = Lsa {
            header: header(ls_type, 7, 1, 0x8000_0003, 0, 0),
            body: LsaBody::Other(vec![0xde, 0xad, 0xbe, 0xef, 0, 1, 2, 3]),
        };
        let bytes = lsa.encode();
        assert_eq!(bytes.len(), 28);
        assert!(checksum::lsa_checksum_valid(&bytes));
        assert_eq!(Lsa::parse(&bytes).unwrap(), lsa);
        let upd = packet(Body::LsUpdate(LsUpdateRepr {
            lsas: vec![lsa.clone(), router_lsa()],
        }));
        let data = upd.to_bytes(SRC, DST);
        assert_eq!(PacketRepr::parse_bytes(&data).unwrap(), upd);
    }
}

#[test]
fn bogus_lengths_are_errors_not_panics() {
    use routing::ParseError;
    // LSA length past the update.
    let mut lsu = LSU;
    lsu[16 + 4 + 19] = 0xff;
    assert!(PacketRepr::parse_bytes(&lsu).is_err());
    // LSA length shorter than a header.
    let mut lsu = LSU;
    lsu[16 + 4 + 18] = 0;
    lsu[16 + 4 + 19] = 4;
    assert_eq!(
        PacketRepr::parse_bytes(&lsu).unwrap_err(),
        ParseError::BadLsaLength
    );
    // Count larger than the LSAs present.
    let mut lsu = LSU;
    lsu[19] = 3;
    assert!(PacketRepr::parse_bytes(&lsu).is_err());
    // Hello with a partial neighbour.
    let mut hello = HELLO.to_vec();
    hello.push(0);
    hello[3] = 41;
    assert_eq!(
        PacketRepr::parse_bytes(&hello).unwrap_err(),
        ParseError::BadLength
    );
    // Router-LSA body not a multiple of links.
    let mut r = ROUTER_LSA.to_vec();
    r.extend_from_slice(&[0, 0, 0, 0]);
    r[19] = 44;
    assert_eq!(Lsa::parse(&r).unwrap_err(), ParseError::BadLsaBody);
    // Link-LSA claiming more prefixes than present.
    let mut l = LINK_LSA;
    l[43] = 2;
    assert_eq!(Lsa::parse(&l).unwrap_err(), ParseError::BadLsaBody);
    // Prefix length over 128.
    let mut l = LINK_LSA;
    l[44] = 200;
    assert_eq!(Lsa::parse(&l).unwrap_err(), ParseError::BadLsaBody);
}
