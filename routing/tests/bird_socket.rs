//! The raw socket against a real BIRD: we hear its Hellos with the right
//! addresses and interface, and it hears ours (so source address, hop
//! limit and checksum are right) and starts exchanging
//! databases with us.
#![cfg(feature = "driver")]

mod common;

use std::net::{Ipv4Addr, Ipv6Addr};
use std::time::{Duration, Instant};

use common::bird::{BirdConf, BirdFiles, parse_neighbors};
use routing::driver::socket::{ALL_SPF_ROUTERS, MAX_PACKET, OspfSocket, interface_info};
use routing::packet::checksum::ospf_checksum;

const OUR_ID: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 9);
const BIRD_ID: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);

/// Build a point-to-point Hello (RFC 5340 A.3.2) from `OUR_ID` at `src` to
/// AllSPFRouters.
fn hello(src: Ipv6Addr, ifindex: u32, neighbors: &[Ipv4Addr]) -> Vec<u8> {
    let len = 16 + 20 + 4 * neighbors.len();
    let mut p = vec![3, 1];
    p.extend_from_slice(&u16::try_from(len).expect("short").to_be_bytes());
    p.extend_from_slice(&OUR_ID.octets());
    p.extend_from_slice(&[0, 0, 0, 0]); // area 0
    p.extend_from_slice(&[0, 0, 0, 0]); // checksum, instance id, reserved
    p.extend_from_slice(&ifindex.to_be_bytes());
    p.extend_from_slice(&[1, 0x00, 0x00, 0x13]); // priority, options V6|E|R
    p.extend_from_slice(&1u16.to_be_bytes()); // hello interval
    p.extend_from_slice(&3u16.to_be_bytes()); // router dead interval
    p.extend_from_slice(&[0; 8]); // DR, BDR
    for n in neighbors {
        p.extend_from_slice(&n.octets());
    }
    let sum = ospf_checksum(src, ALL_SPF_ROUTERS, &p, 12);
    p[12..14].copy_from_slice(&sum.to_be_bytes());
    p
}

#[test]
fn raw_socket_talks_to_bird() {
    let topo =
        lab::Topology::new()
            .node("ours")
            .node("bird")
            .link("ours", "bird", lab::Wire::Direct);
    let lab = lab::Lab::build("bird-socket", &topo).expect("build lab");
    let link = lab.link("ours", "bird").clone();
    let bird_node = lab.node("bird");
    let bird_ll = bird_node.link_local(&link.b_if).expect("BIRD link-local");
    let our_ll = lab
        .node("ours")
        .link_local(&link.a_if)
        .expect("our link-local");

    let files = BirdFiles::new(lab.work_dir(), "bird");
    files.write_conf(&BirdConf::ptp(BIRD_ID, &[&link.b_if], &["2001:db8:1::/64"]));
    let args = files.bird_args();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    bird_node.spawn("bird", &args).expect("start BIRD");

    let ns = lab::netns::path(lab.node("ours").netns());
    let (ifindex, dd_from, dd_to, dd_ifindex) = common::in_netns(&ns, || {
        let (ifindex, ll) = interface_info(&link.a_if).expect("interface info");
        assert_eq!(
            ll,
            Some(our_ll),
            "interface_info finds the kernel's link-local"
        );
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async {
            let sock = OspfSocket::open(&link.a_if, ifindex, our_ll, true).expect("open socket");
            sock.set_all_d_routers(true).expect("join ff02::6");
            sock.set_all_d_routers(false).expect("leave ff02::6");
            let mut buf = vec![0u8; MAX_PACKET];
            let mut heard_bird = false;
            let deadline = Instant::now() + Duration::from_secs(20);
            let mut next_hello = Instant::now();
            // Say Hello every second (listing BIRD once we heard it) until
            // BIRD sends a Database Description: then it saw us 2-Way.
            while Instant::now() < deadline {
                if Instant::now() >= next_hello {
                    let neighbors: &[Ipv4Addr] = if heard_bird { &[BIRD_ID] } else { &[] };
                    sock.send(ALL_SPF_ROUTERS, &hello(our_ll, ifindex, neighbors))
                        .await
                        .expect("send hello");
                    next_hello = Instant::now() + Duration::from_secs(1);
                }
                let Ok(r) =
                    tokio::time::timeout(Duration::from_millis(250), sock.recv(&mut buf)).await
                else {
                    continue;
                };
                let r = r.expect("recv");
                assert!(r.len >= 16, "short packet {r:?}");
                let data = &buf[..r.len];
                assert_eq!(
                    &data[4..8],
                    BIRD_ID.octets(),
                    "packet from BIRD's router id"
                );
                assert_eq!(
                    ospf_checksum(r.src, r.dst, data, 12).to_be_bytes(),
                    data[12..14],
                    "checksum verifies with the reported src and dst: {r:?}"
                );
                match buf[1] {
                    1 => heard_bird = true,
                    2 => return (ifindex, r.src, r.dst, r.ifindex),
                    _ => {}
                }
            }
            panic!("no Database Description from BIRD within 20 s (heard its Hello: {heard_bird})");
        })
    });
    assert_eq!(dd_from, bird_ll, "source is BIRD's link-local");
    assert_eq!(
        dd_to, ALL_SPF_ROUTERS,
        "BIRD sends DDs on a PtP link to AllSPFRouters"
    );
    assert_eq!(dd_ifindex, ifindex, "IPV6_PKTINFO names our interface");

    // BIRD has us as a neighbour at our link-local address, past 2-Way.
    let out = bird_node
        .run(
            &files
                .birdc_args("show ospf neighbors")
                .iter()
                .map(String::as_str)
                .collect::<Vec<_>>(),
        )
        .expect("birdc");
    let n = parse_neighbors(&out);
    assert!(
        n.iter().any(|n| n.router_id == OUR_ID && n.addr == our_ll),
        "BIRD lists us at {our_ll}: {out}"
    );
}
