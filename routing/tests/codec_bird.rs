//! Round trips over the packets BIRD 2 really sent (captured by the IO
//! engineer's `bird_capture` into `tests/fixtures/bird/`): every packet
//! verifies, parses, and re-emits into exactly the same bytes; every LSA has
//! a valid Fletcher checksum and re-encodes identically.

use std::net::Ipv6Addr;
use std::path::PathBuf;

use routing::packet::lsa::{Lsa, LsaBody};
use routing::packet::{Body, Packet, PacketRepr, checksum};

struct Fixture {
    file: String,
    /// `ptp` or `broadcast`.
    run: String,
    src: Ipv6Addr,
    dst: Ipv6Addr,
    data: Vec<u8>,
}

fn fixtures() -> Vec<Fixture> {
    let dir = PathBuf::from(
        std::env::var("CARGO_MANIFEST_DIR").expect("cargo test sets CARGO_MANIFEST_DIR"),
    )
    .join("tests/fixtures/bird");
    let Ok(manifest) = std::fs::read_to_string(dir.join("manifest.tsv")) else {
        eprintln!("no BIRD fixtures yet");
        return Vec::new();
    };
    manifest
        .lines()
        .skip(1)
        .filter(|l| !l.trim().is_empty())
        .map(|line| {
            let cols: Vec<&str> = line.split('\t').collect();
            let file = cols[0].to_string();
            let data = std::fs::read(dir.join(&file)).unwrap_or_else(|e| panic!("{file}: {e}"));
            Fixture {
                run: cols[1].to_string(),
                src: cols[4].parse().expect("src"),
                dst: cols[5].parse().expect("dst"),
                file,
                data,
            }
        })
        .collect()
}

#[test]
fn bird_packets_round_trip() {
    let all = fixtures();
    let mut lsas = 0;
    for f in &all {
        let p = Packet::new_checked(&f.data[..]).unwrap_or_else(|e| panic!("{}: {e}", f.file));
        assert!(p.verify_checksum(f.src, f.dst), "{}: checksum", f.file);
        let repr = PacketRepr::parse(&p).unwrap_or_else(|e| panic!("{}: {e}", f.file));
        assert_eq!(
            repr.to_bytes(f.src, f.dst),
            f.data,
            "{}: re-emitted bytes differ",
            f.file
        );
        if let Body::LsUpdate(u) = &repr.body {
            for lsa in &u.lsas {
                let mut again = lsa.clone();
                let bytes = again.encode();
                assert!(checksum::lsa_checksum_valid(&bytes), "{}", f.file);
                assert_eq!(
                    again.header.checksum, lsa.header.checksum,
                    "{}: Fletcher differs",
                    f.file
                );
                assert_eq!(Lsa::parse(&bytes).unwrap(), *lsa);
                assert!(
                    !matches!(lsa.body, LsaBody::Other(_))
                        || !lsa.header.ls_type.is_known()
                        || lsa.header.ls_type.0 == 0x4005
                );
                lsas += 1;
            }
        }
    }
    if !all.is_empty() {
        assert!(lsas > 0, "fixtures hold LS Updates");
    }
}

#[test]
fn bird_hellos_make_neighbours() {
    use routing::{Input, Instance, InstanceConfig, InterfaceConfig, InterfaceKind, Time};
    for f in fixtures().iter().filter(|f| f.file.starts_with("hello-")) {
        let repr = PacketRepr::parse_bytes(&f.data).unwrap();
        let Body::Hello(h) = &repr.body else {
            panic!("{}: not a hello", f.file)
        };
        let af = if f.run == "ipv4" {
            routing::AddressFamily::Ipv4 {
                interface_address: None,
            }
        } else {
            routing::AddressFamily::Ipv6
        };
        let cfg = InstanceConfig {
            router_id: "10.0.0.3".parse().unwrap(),
            af,
            ..Default::default()
        };
        let (mut inst, _) = Instance::new(cfg, Time(0));
        let kind = if f.run == "broadcast" {
            InterfaceKind::Broadcast
        } else {
            InterfaceKind::PointToPoint
        };
        assert_eq!(h.dead_interval, 3, "{}", f.file);
        let link_local: Ipv6Addr = "fe80::ff:fe00:c".parse().unwrap();
        inst.handle(
            Time(0),
            Input::InterfaceUp {
                ifindex: 1,
                name: "eth0".into(),
                link_local,
                mtu: 1500,
                config: InterfaceConfig {
                    kind,
                    instance_id: af.default_instance_id(),
                    ..Default::default()
                },
            },
        );
        inst.handle(
            Time(10),
            Input::Packet {
                ifindex: 1,
                src: f.src,
                dst: f.dst,
                data: f.data.clone(),
            },
        );
        let st = inst.state();
        assert!(st.drops.is_empty(), "{}: {:?}", f.file, st.drops);
        assert_eq!(st.neighbors.len(), 1, "{}", f.file);
        assert_eq!(st.neighbors[0].router_id, repr.router_id);
        assert_eq!(st.neighbors[0].addr, f.src);
    }
}

/// What BIRD's IPv4 instance sends (RFC 5838): Instance ID 64, the AF-bit
/// in Hellos, DD packets and LSAs, IPv4 addresses in Link-LSAs and IPv4
/// prefixes (at most 32 bits) in Intra-Area-Prefix-LSAs, all read by our
/// codec as the address family module describes.
#[test]
fn bird_ipv4_packets_read_as_the_ipv4_family() {
    use routing::af;
    use routing::packet::Options;
    let ipv4: Vec<Fixture> = fixtures().into_iter().filter(|f| f.run == "ipv4").collect();
    if ipv4.is_empty() {
        return;
    }
    let (mut link_lsas, mut prefixes) = (0, Vec::new());
    for f in &ipv4 {
        let repr = PacketRepr::parse_bytes(&f.data).unwrap();
        assert_eq!(repr.instance_id, 64, "{}", f.file);
        match &repr.body {
            Body::Hello(h) => assert!(h.options.contains(Options::AF), "{}", f.file),
            Body::DbDesc(d) => assert!(d.options.contains(Options::AF), "{}", f.file),
            Body::LsUpdate(u) => {
                for lsa in &u.lsas {
                    match &lsa.body {
                        LsaBody::Link(l) => {
                            link_lsas += 1;
                            let id = u32::from(lsa.header.adv_router) & 0xff;
                            assert_eq!(
                                af::ipv4_of_link_lsa(l.link_local),
                                Some(format!("198.19.255.{id}").parse().unwrap()),
                                "{}",
                                f.file
                            );
                            assert!(l.options.contains(Options::AF), "{}", f.file);
                        }
                        LsaBody::IntraAreaPrefix(p) => prefixes.extend(
                            p.prefixes
                                .iter()
                                .map(|x| af::wire_to_ipv4(x.prefix).expect("at most 32 bits")),
                        ),
                        LsaBody::Router(r) => {
                            assert!(r.options.contains(Options::AF), "{}", f.file);
                            assert!(!r.options.contains(Options::V6), "{}", f.file);
                        }
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    assert!(link_lsas > 0);
    let want: ipnet::Ipv4Net = "198.18.1.0/24".parse().unwrap();
    assert!(prefixes.contains(&want), "{prefixes:?}");
}
