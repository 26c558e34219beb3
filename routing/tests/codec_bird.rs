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
        let cfg = InstanceConfig {
            router_id: "10.0.0.3".parse().unwrap(),
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
