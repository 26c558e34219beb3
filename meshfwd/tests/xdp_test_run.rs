//! The forwarding program under `BPF_PROG_TEST_RUN`: one test per rule, a
//! frame in, the verdict, the reason counted, and for forwarded frames the
//! exact bytes out.

mod support;

use meshfwd_common::{fib::nh_flags, stats::Stat};
use support::{Frame, Harness, MTU, XDP_PASS, XDP_REDIRECT, forwarded, nh_mac};

const DST: &str = "2001:db8:100::42";
const SRC: &str = "2001:db8:1::7";
const LOCAL: &str = "2001:db8:100::1";

/// A router with one route (`2001:db8:100::/48` via next hop 1), one
/// address of its own inside it, and nothing else.
fn router() -> Harness {
    let mut h = Harness::new();
    h.next_hop(1);
    h.group(1, &[1]);
    h.route("2001:db8:100::".parse().unwrap(), 48, 1);
    h.local(LOCAL.parse().unwrap());
    h
}

/// Assert `frame` is handed to the kernel untouched, for `reason`.
fn assert_pass(h: &Harness, frame: &[u8], reason: Stat) {
    let before = h.stat(reason);
    let pass_before = h.stat(Stat::Pass);
    let redirect_before = h.stat(Stat::Redirect);
    let (verdict, out) = h.run(frame);
    assert_eq!(
        verdict, XDP_PASS,
        "expected XDP_PASS ({reason:?}) for {frame:02x?}"
    );
    assert_eq!(out, frame, "a passed frame is not modified ({reason:?})");
    assert_eq!(h.stat(reason), before + 1, "{reason:?} counted once");
    assert_eq!(h.stat(Stat::Pass), pass_before + 1, "pass verdict counted");
    assert_eq!(
        h.stat(Stat::Redirect),
        redirect_before,
        "nothing counted as forwarded"
    );
}

fn assert_forwarded(h: &Harness, frame: &[u8], dst_mac: [u8; 6]) {
    let before = h.stat(Stat::Redirect);
    let (verdict, out) = h.run(frame);
    assert_eq!(
        verdict, XDP_REDIRECT,
        "expected XDP_REDIRECT for {frame:02x?}"
    );
    assert_eq!(out, forwarded(frame, dst_mac), "exact bytes out");
    assert_eq!(h.stat(Stat::Redirect), before + 1, "redirect counted");
}

#[test]
fn routed_udp_is_forwarded_with_new_macs_and_hop_limit() {
    let h = router();
    let frame = Frame::udp(SRC, DST, 40000, 53).bytes();
    assert_forwarded(&h, &frame, nh_mac(1));
    assert_eq!(h.stat(Stat::Rx), 1);
    assert_eq!(h.stat(Stat::Ipv6), 1);
    assert_eq!(h.stat(Stat::Pass), 0);
}

#[test]
fn tcp_and_other_protocols_are_forwarded() {
    let h = router();
    let mut tcp = Frame::udp(SRC, DST, 40000, 80);
    tcp.next_header = 6;
    tcp.payload.extend_from_slice(&[0; 12]); // a 20-byte TCP header's worth
    assert_forwarded(&h, &tcp.bytes(), nh_mac(1));
    // ICMPv6 echo request (128) is ordinary transit traffic.
    assert_forwarded(&h, &Frame::icmp6(SRC, DST, 128).bytes(), nh_mac(1));
    // A protocol without ports (GRE, 47) is hashed on addresses only.
    let mut gre = Frame::udp(SRC, DST, 0, 0);
    gre.next_header = 47;
    assert_forwarded(&h, &gre.bytes(), nh_mac(1));
}

#[test]
fn hop_limit_two_is_forwarded_with_one() {
    let h = router();
    let mut f = Frame::udp(SRC, DST, 1, 2);
    f.hop_limit = 2;
    let frame = f.bytes();
    let (verdict, out) = h.run(&frame);
    assert_eq!(verdict, XDP_REDIRECT);
    assert_eq!(out[21], 1);
}

#[test]
fn hop_limit_one_or_zero_goes_to_the_kernel() {
    let h = router();
    for hl in [0, 1] {
        let mut f = Frame::udp(SRC, DST, 1, 2);
        f.hop_limit = hl;
        assert_pass(&h, &f.bytes(), Stat::HopLimit);
    }
}

#[test]
fn multicast_goes_to_the_kernel() {
    let h = router();
    assert_pass(
        &h,
        &Frame::udp(SRC, "ff0e::1", 1, 2).bytes(),
        Stat::Multicast,
    );
    assert_pass(
        &h,
        &Frame::udp(SRC, "ff02::5", 1, 2).bytes(),
        Stat::Multicast,
    );
    assert_pass(
        &h,
        &Frame::udp("ff05::1", DST, 1, 2).bytes(),
        Stat::Multicast,
    );
}

#[test]
fn link_local_goes_to_the_kernel() {
    let h = router();
    assert_pass(
        &h,
        &Frame::udp("fe80::1", DST, 1, 2).bytes(),
        Stat::LinkLocal,
    );
    assert_pass(
        &h,
        &Frame::udp(SRC, "fe80::2", 1, 2).bytes(),
        Stat::LinkLocal,
    );
    assert_pass(
        &h,
        &Frame::udp(SRC, "febf::2", 1, 2).bytes(),
        Stat::LinkLocal,
    );
}

#[test]
fn unspecified_and_loopback_go_to_the_kernel() {
    let h = router();
    assert_pass(&h, &Frame::udp("::", DST, 1, 2).bytes(), Stat::BadAddress);
    assert_pass(&h, &Frame::udp("::1", DST, 1, 2).bytes(), Stat::BadAddress);
    assert_pass(&h, &Frame::udp(SRC, "::1", 1, 2).bytes(), Stat::BadAddress);
}

#[test]
fn neighbour_discovery_and_mld_go_to_the_kernel() {
    let h = router();
    // Even with routable addresses: RS, RA, NS, NA, redirect, MLD.
    for t in [130, 131, 132, 133, 134, 135, 136, 137, 143] {
        assert_pass(&h, &Frame::icmp6(SRC, DST, t).bytes(), Stat::NdpMld);
    }
}

#[test]
fn hop_by_hop_header_goes_to_the_kernel() {
    let h = router();
    let mut f = Frame::udp(SRC, DST, 1, 2);
    f.next_header = 0;
    assert_pass(&h, &f.bytes(), Stat::HopByHop);
}

#[test]
fn packets_for_this_node_go_to_the_kernel() {
    let h = router();
    assert_pass(&h, &Frame::udp(SRC, LOCAL, 1, 2).bytes(), Stat::Local);
}

#[test]
fn unrouted_destination_goes_to_the_kernel() {
    let h = router();
    assert_pass(
        &h,
        &Frame::udp(SRC, "2001:db8:200::1", 1, 2).bytes(),
        Stat::NoRoute,
    );
}

#[test]
fn larger_than_egress_mtu_goes_to_the_kernel() {
    let h = router();
    // IPv6 header + payload exactly the MTU: forwarded.
    let mut f = Frame::udp(SRC, DST, 1, 2);
    f.payload.resize(MTU as usize - 40, 0x5a);
    assert_forwarded(&h, &f.bytes(), nh_mac(1));
    // One byte more: the kernel must send Packet Too Big.
    f.payload.push(0x5a);
    assert_pass(&h, &f.bytes(), Stat::TooBig);
}

#[test]
fn unresolved_next_hop_mac_goes_to_the_kernel() {
    let mut h = router();
    let mut nh = h.get_next_hop(1);
    nh.flags &= !nh_flags::MAC_VALID;
    h.set_next_hop(1, nh);
    assert_pass(&h, &Frame::udp(SRC, DST, 1, 2).bytes(), Stat::NoNeighbour);
}

#[test]
fn dead_next_hops_go_to_the_kernel() {
    let mut h = router();
    h.set_alive(1, false);
    assert_pass(&h, &Frame::udp(SRC, DST, 1, 2).bytes(), Stat::NoLiveNextHop);
}

#[test]
fn dead_member_is_skipped_for_a_live_one() {
    let mut h = router();
    h.next_hop(2);
    h.group(2, &[1, 2]);
    h.route("2001:db8:300::".parse().unwrap(), 48, 2);
    h.set_alive(1, false);
    for port in 0..64 {
        let frame = Frame::udp(SRC, "2001:db8:300::9", port, 2).bytes();
        assert_forwarded(&h, &frame, nh_mac(2));
    }
    assert!(
        h.stat(Stat::Rehashed) > 0,
        "some flows had member 1 as first choice"
    );
}

#[test]
fn egress_not_in_devmap_goes_to_the_kernel() {
    let mut h = router();
    h.maps
        .egress
        .remove(support::EGRESS_IFINDEX)
        .expect("remove devmap entry");
    assert_pass(&h, &Frame::udp(SRC, DST, 1, 2).bytes(), Stat::NoEgressDev);
}

#[test]
fn longest_prefix_wins() {
    let mut h = router();
    h.next_hop(3);
    h.group(3, &[3]);
    h.route("2001:db8:100:5::".parse().unwrap(), 64, 3);
    assert_forwarded(
        &h,
        &Frame::udp(SRC, "2001:db8:100:5::1", 1, 2).bytes(),
        nh_mac(3),
    );
    assert_forwarded(
        &h,
        &Frame::udp(SRC, "2001:db8:100:6::1", 1, 2).bytes(),
        nh_mac(1),
    );
}

#[test]
fn non_ipv6_goes_to_the_kernel() {
    let h = router();
    let mut frame = Frame::udp(SRC, DST, 1, 2).bytes();
    frame[12..14].copy_from_slice(&[0x08, 0x06]); // ARP
    assert_pass(&h, &frame, Stat::NonIpv6);
    frame[12..14].copy_from_slice(&[0x81, 0x00]); // VLAN tag
    assert_pass(&h, &frame, Stat::NonIpv6);
}

#[test]
fn truncated_frames_are_never_forwarded() {
    let h = router();
    let frame = Frame::udp(SRC, DST, 40000, 53).bytes();
    // BPF_PROG_TEST_RUN needs at least an Ethernet header; every cut from
    // there to one byte short of the whole packet is truncated.
    for len in 14..frame.len() {
        let cut = &frame[..len];
        let (verdict, out) = h.run(cut);
        assert_eq!(verdict, XDP_PASS, "truncated to {len} bytes");
        assert_eq!(out, cut, "truncated frame untouched");
    }
    assert_eq!(h.stat(Stat::Redirect), 0);
    assert!(h.stat(Stat::Malformed) >= (frame.len() - 14) as u64 - 2);
}

#[test]
fn malformed_headers_are_never_forwarded() {
    let h = router();
    let good = Frame::udp(SRC, DST, 40000, 53).bytes();
    // Version 4 in an IPv6 ethertype.
    let mut bad = good.clone();
    bad[14] = (bad[14] & 0x0f) | 0x40;
    assert_pass(&h, &bad, Stat::Malformed);
    // Payload length longer than the frame.
    let mut bad = good.clone();
    bad[18..20].copy_from_slice(&1000u16.to_be_bytes());
    assert_pass(&h, &bad, Stat::Malformed);
    // ICMPv6 with no room for its type byte.
    let mut f = Frame::icmp6(SRC, DST, 128);
    f.payload.clear();
    assert_pass(&h, &f.bytes(), Stat::Malformed);
}

#[test]
fn ethernet_padding_is_carried_along() {
    let h = router();
    // A small packet padded to the Ethernet minimum: payload length says
    // less than the frame holds; forwarded as is.
    let mut f = Frame::icmp6(SRC, DST, 128);
    f.payload.truncate(8);
    let mut frame = f.bytes();
    frame.resize(64, 0);
    assert_forwarded(&h, &frame, nh_mac(1));
}

#[test]
fn every_frame_gets_exactly_one_verdict_and_reason() {
    let h = router();
    let frames = [
        Frame::udp(SRC, DST, 1, 2).bytes(),
        Frame::udp(SRC, "ff02::1", 1, 2).bytes(),
        Frame::udp(SRC, LOCAL, 1, 2).bytes(),
        Frame::udp(SRC, "2001:db8:999::1", 1, 2).bytes(),
    ];
    for f in &frames {
        h.run(f);
    }
    let rx = h.stat(Stat::Rx);
    assert_eq!(rx, frames.len() as u64);
    assert_eq!(h.stat(Stat::Pass) + h.stat(Stat::Redirect), rx);
    let reasons: u64 = [Stat::Multicast, Stat::Local, Stat::NoRoute]
        .iter()
        .map(|s| h.stat(*s))
        .sum();
    assert_eq!(reasons, h.stat(Stat::Pass));
}

/// Every FIB entry of the harness's trie, as the writer's planner holds it.
fn trie_routes(
    h: &Harness,
) -> std::collections::BTreeMap<ipnet::Ipv6Net, meshfwd_common::fib::FibEntry> {
    h.maps
        .fib_v6
        .iter()
        .map(|kv| kv.expect("read the trie"))
        .map(|(k, v)| {
            let addr = std::net::Ipv6Addr::from(k.data());
            (
                ipnet::Ipv6Net::new_assert(addr, k.prefix_len() as u8).trunc(),
                v,
            )
        })
        .collect()
}

#[test]
fn the_compiled_table_decides_once_live() {
    use meshfwd::fib::table::Publisher;

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut h = router();
    h.next_hop(3);
    h.group(3, &[3]);
    h.route("2001:db8:100:5::".parse().unwrap(), 64, 3);
    let mut routes = trie_routes(&h);
    let mut publisher = Publisher::new(&h.maps.table6);
    let published = rt
        .block_on(publisher.publish(&mut h.maps.table6, &routes))
        .unwrap();
    assert!(
        published.groups > 1 && published.writes > 0,
        "{published:?}"
    );

    // With the trie emptied, only the table can route.
    for prefix in routes.keys() {
        let key =
            aya::maps::lpm_trie::Key::new(u32::from(prefix.prefix_len()), prefix.addr().octets());
        h.maps.fib_v6.remove(&key).unwrap();
    }
    let five = Frame::udp(SRC, "2001:db8:100:5::1", 1, 2).bytes();
    assert_forwarded(&h, &five, nh_mac(3));
    assert_forwarded(&h, &Frame::udp(SRC, DST, 1, 2).bytes(), nh_mac(1));
    assert_pass(&h, &Frame::udp(SRC, LOCAL, 1, 2).bytes(), Stat::Local);
    assert_pass(
        &h,
        &Frame::udp(SRC, "2001:db8:200::1", 1, 2).bytes(),
        Stat::NoRoute,
    );

    // The next table is written into the other region, then made live.
    routes.remove(&"2001:db8:100:5::/64".parse::<ipnet::Ipv6Net>().unwrap());
    rt.block_on(publisher.publish(&mut h.maps.table6, &routes))
        .unwrap();
    assert_forwarded(&h, &five, nh_mac(1));
    assert_eq!(
        h.maps.table6.root.get(&0, 0).unwrap(),
        2,
        "region 1 is live"
    );
}
