//! The forwarding program's IPv4 path under `BPF_PROG_TEST_RUN`: IPv4
//! prefixes over the same groups and IPv6 next hops, one test per rule.
//! Forwarded frames are compared byte for byte with the frame a correct
//! router sends, its header checksum computed from scratch
//! (`support::forwarded4`), not by the incremental update under test.

mod support;

use meshfwd_common::stats::Stat;
use support::{Frame4, Harness, MTU, XDP_PASS, XDP_REDIRECT, forwarded4, nh_mac};

const DST: &str = "198.18.100.42";
const SRC: &str = "198.18.1.7";
const LOCAL: &str = "198.18.100.1";

/// A router with `198.18.100.0/24` via next hop 1 (an IPv6 neighbour, as
/// every next hop), an address of its own inside it, and nothing else.
fn router() -> Harness {
    let mut h = Harness::new();
    h.next_hop(1);
    h.group(1, &[1]);
    h.route4("198.18.100.0".parse().unwrap(), 24, 1);
    h.local4(LOCAL.parse().unwrap());
    h
}

fn assert_pass(h: &Harness, frame: &[u8], reason: Stat) {
    let before = h.stat(reason);
    let pass_before = h.stat(Stat::Pass);
    let (verdict, out) = h.run(frame);
    assert_eq!(verdict, XDP_PASS, "expected XDP_PASS ({reason:?})");
    assert_eq!(out, frame, "a passed frame is not modified ({reason:?})");
    assert_eq!(h.stat(reason), before + 1, "{reason:?} counted once");
    assert_eq!(h.stat(Stat::Pass), pass_before + 1);
}

fn assert_forwarded(h: &Harness, frame: &[u8], dst_mac: [u8; 6]) {
    let before = h.stat(Stat::Redirect);
    let (verdict, out) = h.run(frame);
    assert_eq!(verdict, XDP_REDIRECT, "expected XDP_REDIRECT");
    assert_eq!(out, forwarded4(frame, dst_mac), "exact bytes out");
    assert_eq!(h.stat(Stat::Redirect), before + 1, "redirect counted");
}

#[test]
fn routed_udp_is_forwarded_with_new_macs_ttl_and_checksum() {
    let h = router();
    let frame = Frame4::udp(SRC, DST, 40000, 53).bytes();
    assert_forwarded(&h, &frame, nh_mac(1));
    assert_eq!(h.stat(Stat::Rx), 1);
    assert_eq!(h.stat(Stat::Ipv4), 1);
    assert_eq!(h.stat(Stat::Ipv6), 0);
}

#[test]
fn the_checksum_is_right_for_every_ttl_and_many_headers() {
    // The incremental update against a full recomputation, including the
    // sums that wrap around.
    let h = router();
    for ttl in 2..=255u8 {
        for id in [0u16, 0x1c46, 0xffff, 0x8000] {
            let mut f = Frame4::tcp(SRC, DST, 10);
            f.ttl = ttl;
            f.id = id;
            assert_forwarded(&h, &f.bytes(), nh_mac(1));
        }
    }
}

#[test]
fn ttl_one_or_zero_goes_to_the_kernel() {
    let h = router();
    for ttl in [0, 1] {
        let mut f = Frame4::udp(SRC, DST, 1, 2);
        f.ttl = ttl;
        assert_pass(&h, &f.bytes(), Stat::HopLimit);
    }
}

#[test]
fn options_fragments_and_bad_checksums_go_to_the_kernel() {
    let h = router();
    let mut f = Frame4::udp(SRC, DST, 1, 2);
    f.options = vec![1, 1, 1, 0]; // NOP NOP NOP EOL
    assert_pass(&h, &f.bytes(), Stat::Ipv4Options);
    for frag in [0x2000u16, 0x0010, 0x6000] {
        let mut f = Frame4::udp(SRC, DST, 1, 2);
        f.frag = frag;
        assert_pass(&h, &f.bytes(), Stat::Fragment);
    }
    let mut bad = Frame4::udp(SRC, DST, 1, 2).bytes();
    bad[14 + 11] ^= 0x40;
    assert_pass(&h, &bad, Stat::BadChecksum);
}

#[test]
fn special_addresses_go_to_the_kernel() {
    let h = router();
    for (addr, why) in [
        ("224.0.0.5", Stat::Multicast),
        ("239.255.255.250", Stat::Multicast),
        ("255.255.255.255", Stat::BadAddress),
        ("169.254.1.1", Stat::LinkLocal),
        ("127.0.0.1", Stat::BadAddress),
        ("0.0.0.0", Stat::BadAddress),
    ] {
        assert_pass(&h, &Frame4::udp(SRC, addr, 1, 2).bytes(), why);
        assert_pass(&h, &Frame4::udp(addr, DST, 1, 2).bytes(), why);
    }
}

#[test]
fn local_unrouted_and_too_big_go_to_the_kernel() {
    let h = router();
    assert_pass(&h, &Frame4::udp(SRC, LOCAL, 1, 2).bytes(), Stat::Local);
    assert_pass(
        &h,
        &Frame4::udp(SRC, "198.18.200.1", 1, 2).bytes(),
        Stat::NoRoute,
    );
    let big = Frame4::tcp(SRC, DST, MTU as usize - 40 + 1).bytes();
    assert_pass(&h, &big, Stat::TooBig);
    let fits = Frame4::tcp(SRC, DST, MTU as usize - 40).bytes();
    assert_forwarded(&h, &fits, nh_mac(1));
}

#[test]
fn malformed_and_truncated_headers_are_never_forwarded() {
    let h = router();
    let good = Frame4::udp(SRC, DST, 40000, 53).bytes();
    for len in 14..good.len() {
        let (verdict, out) = h.run(&good[..len]);
        assert_eq!(verdict, XDP_PASS, "truncated to {len} bytes");
        assert_eq!(out, &good[..len]);
    }
    let mut v6 = good.clone();
    v6[14] = 0x65;
    assert_pass(&h, &v6, Stat::Malformed);
    let mut long = good.clone();
    long[16..18].copy_from_slice(&1000u16.to_be_bytes());
    assert_pass(&h, &long, Stat::Malformed);
    assert_eq!(h.stat(Stat::Redirect), 0);
}

#[test]
fn ethernet_padding_is_carried_along() {
    let h = router();
    let mut f = Frame4::udp(SRC, DST, 1, 2);
    f.payload.truncate(8);
    let mut frame = f.bytes();
    frame.resize(64, 0);
    assert_forwarded(&h, &frame, nh_mac(1));
}

#[test]
fn flows_spread_over_the_group_and_skip_dead_members() {
    let mut h = router();
    for id in 2..=4 {
        h.next_hop(id);
    }
    h.group(2, &[2, 3, 4]);
    h.route4("198.18.30.0".parse().unwrap(), 24, 2);
    let mut used = std::collections::BTreeSet::new();
    for port in 0..64u16 {
        let frame = Frame4::udp(SRC, "198.18.30.9", 1000 + port, 53).bytes();
        let (verdict, out) = h.run(&frame);
        assert_eq!(verdict, XDP_REDIRECT);
        used.insert(out[5]);
        // One flow, one path: the same member every time.
        assert_eq!(h.run(&frame).1[5], out[5]);
    }
    assert_eq!(used.len(), 3, "every member carries some of 64 flows");
    h.set_alive(3, false);
    for port in 0..64u16 {
        let frame = Frame4::udp(SRC, "198.18.30.9", 1000 + port, 53).bytes();
        let (verdict, out) = h.run(&frame);
        assert_eq!(verdict, XDP_REDIRECT);
        assert_ne!(out[5], 3, "the dead member is skipped");
    }
}

#[test]
fn longest_prefix_wins_and_the_cache_follows_changes() {
    let mut h = router();
    h.next_hop(5);
    h.group(5, &[5]);
    let frame = Frame4::udp(SRC, "198.18.100.77", 1, 2).bytes();
    assert_forwarded(&h, &frame, nh_mac(1));
    // A longer prefix arrives after the destination was cached.
    h.route4("198.18.100.64".parse().unwrap(), 26, 5);
    assert_forwarded(&h, &frame, nh_mac(5));
    assert_forwarded(
        &h,
        &Frame4::udp(SRC, "198.18.100.9", 1, 2).bytes(),
        nh_mac(1),
    );
}

#[test]
fn non_ip_still_goes_to_the_kernel_named_as_before() {
    let h = router();
    let mut frame = Frame4::udp(SRC, DST, 1, 2).bytes();
    frame[12..14].copy_from_slice(&[0x08, 0x06]); // ARP
    assert_pass(&h, &frame, Stat::NonIpv6);
}

#[test]
fn the_compiled_ipv4_table_decides_once_live() {
    use meshfwd::fib::table::{Publisher, ipv4_mapped};
    use meshfwd_common::fib::{FibEntry, kind};

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut h = router();
    h.next_hop(3);
    h.group(3, &[3]);
    h.route4("198.18.100.128".parse().unwrap(), 25, 3);
    let entries: Vec<(ipnet::Ipv4Net, FibEntry)> = vec![
        (
            "198.18.100.0/24".parse().unwrap(),
            FibEntry {
                kind: kind::FORWARD,
                group: 1,
            },
        ),
        (
            "198.18.100.128/25".parse().unwrap(),
            FibEntry {
                kind: kind::FORWARD,
                group: 3,
            },
        ),
        (
            format!("{LOCAL}/32").parse().unwrap(),
            FibEntry {
                kind: kind::LOCAL,
                group: 0,
            },
        ),
    ];
    let routes = entries.iter().map(|(p, e)| (ipv4_mapped(*p), *e)).collect();
    let mut publisher = Publisher::new(&h.maps.table4);
    let published = rt
        .block_on(publisher.publish(&mut h.maps.table4, &routes))
        .unwrap();
    assert!(published.writes > 0, "{published:?}");
    // With the trie emptied, only the table can route.
    for (p, _) in &entries {
        let key = aya::maps::lpm_trie::Key::new(u32::from(p.prefix_len()), p.addr().octets());
        h.maps.fib_v4.remove(&key).unwrap();
    }
    assert_forwarded(
        &h,
        &Frame4::udp(SRC, "198.18.100.200", 1, 2).bytes(),
        nh_mac(3),
    );
    assert_forwarded(&h, &Frame4::udp(SRC, DST, 1, 2).bytes(), nh_mac(1));
    assert_pass(&h, &Frame4::udp(SRC, LOCAL, 1, 2).bytes(), Stat::Local);
    assert_pass(
        &h,
        &Frame4::udp(SRC, "198.18.101.1", 1, 2).bytes(),
        Stat::NoRoute,
    );
    assert_eq!(
        h.maps.table4.root.get(&0, 0).unwrap(),
        1,
        "region 0 is live"
    );
}
