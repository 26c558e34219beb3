//! The pod program (TC ingress on a pod's host veth) under
//! `BPF_PROG_TEST_RUN`: which skbs it sends out of the mesh NIC itself and
//! which it leaves to the kernel, with the size rules for GSO skbs.

mod support;

use support::{Frame, Harness, MTU, TC_ACT_REDIRECT, TCX_NEXT, forwarded, nh_mac};

const DST: &str = "2001:db8:100::42";
const SRC: &str = "2001:db8:1::7";

/// One route (`2001:db8:100::/48` via next hop 1).
fn node() -> Harness {
    let mut h = Harness::new();
    h.next_hop(1);
    h.group(1, &[1]);
    h.route("2001:db8:100::".parse().unwrap(), 48, 1);
    h
}

#[test]
fn a_packet_that_fits_goes_straight_to_the_mesh() {
    let h = node();
    // 40 + 32 + 1428 = 1500 bytes: exactly the MTU.
    let f = Frame::tcp(SRC, DST, MTU as usize - 40 - 32).bytes();
    let (verdict, out) = h.run_tc_pod(&f, 0);
    assert_eq!(verdict, TC_ACT_REDIRECT);
    assert_eq!(out, forwarded(&f, nh_mac(1)));
    // One byte more and the kernel must answer Packet Too Big.
    let f = Frame::tcp(SRC, DST, MTU as usize - 40 - 32 + 1).bytes();
    let (verdict, out) = h.run_tc_pod(&f, 0);
    assert_eq!(verdict, TCX_NEXT);
    assert_eq!(out, f, "left untouched for the kernel");
}

#[test]
fn a_gso_skb_is_judged_by_its_segments() {
    let h = node();
    // What a pod with TSO on hands its veth: two segments' worth at once
    // (a test run takes at most a page of data; real ones reach 64 KiB).
    let mss = MTU as usize - 40 - 32;
    let f = Frame::tcp(SRC, DST, 2 * mss).bytes();
    let (verdict, out) = h.run_tc_pod(&f, mss as u32);
    assert_eq!(verdict, TC_ACT_REDIRECT, "segments of {mss} fit the MTU");
    assert_eq!(out, forwarded(&f, nh_mac(1)));
    // Segments one byte too big go to the kernel, GSO or not.
    let (verdict, out) = h.run_tc_pod(&f, mss as u32 + 1);
    assert_eq!(verdict, TCX_NEXT);
    assert_eq!(out, f);
    let (verdict, _) = h.run_tc_pod(&f, 0);
    assert_eq!(verdict, TCX_NEXT, "not GSO: one packet of 2 MSS");
}

#[test]
fn a_gso_skb_of_another_protocol_goes_to_the_kernel() {
    let h = node();
    let mut f = Frame::tcp(SRC, DST, 2000);
    f.next_header = 47; // GRE: segment headers unknown here
    let f = f.bytes();
    let (verdict, _) = h.run_tc_pod(&f, 1000);
    assert_eq!(verdict, TCX_NEXT);
}

#[test]
fn the_pod_program_leaves_to_the_kernel_what_xdp_does() {
    // The shared classification (`meshfwd_common::packet`): the TC path
    // used to forward a few of these that XDP refuses.
    let mut h = node();
    h.route("::1".parse().unwrap(), 128, 1);
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("loopback destination", Frame::tcp(SRC, "::1", 10).bytes()),
        ("unspecified source", Frame::tcp("::", DST, 10).bytes()),
        ("link-local source", Frame::tcp("fe80::7", DST, 10).bytes()),
        (
            "multicast destination",
            Frame::udp(SRC, "ff0e::1", 1, 2).bytes(),
        ),
        (
            "neighbour solicitation",
            Frame::icmp6(SRC, DST, 135).bytes(),
        ),
        ("hop limit 1", {
            let mut f = Frame::tcp(SRC, DST, 10);
            f.hop_limit = 1;
            f.bytes()
        }),
        ("truncated: claims more payload than the frame has", {
            let mut f = Frame::tcp(SRC, DST, 10).bytes();
            f.truncate(f.len() - 4);
            f
        }),
    ];
    for (what, f) in cases {
        let (verdict, out) = h.run_tc_pod(&f, 0);
        assert_eq!(verdict, TCX_NEXT, "{what}");
        assert_eq!(out, f, "{what}: left untouched for the kernel");
    }
    // And an ordinary one still goes straight to the mesh.
    let f = Frame::tcp(SRC, DST, 10).bytes();
    assert_eq!(h.run_tc_pod(&f, 0).0, TC_ACT_REDIRECT);
}

/// IPv4 from a pod: `198.18.100.0/24` via next hop 1 (an IPv6 neighbour).
fn node4() -> Harness {
    let mut h = node();
    h.route4("198.18.100.0".parse().unwrap(), 24, 1);
    h
}

#[test]
fn an_ipv4_packet_that_fits_goes_to_the_mesh_with_ttl_and_checksum_updated() {
    use support::{Frame4, forwarded4};
    let h = node4();
    // 20 + 20 + 1460 = 1500 bytes: exactly the MTU.
    let f = Frame4::tcp("198.18.1.7", "198.18.100.42", MTU as usize - 40).bytes();
    let (verdict, out) = h.run_tc_pod(&f, 0);
    assert_eq!(verdict, TC_ACT_REDIRECT);
    assert_eq!(
        out,
        forwarded4(&f, nh_mac(1)),
        "exact bytes, checksum recomputed"
    );
    let f = Frame4::tcp("198.18.1.7", "198.18.100.42", MTU as usize - 40 + 1).bytes();
    let (verdict, out) = h.run_tc_pod(&f, 0);
    assert_eq!(
        verdict, TCX_NEXT,
        "too big: the kernel fragments or says so"
    );
    assert_eq!(out, f);
    // GSO: judged by its segments.
    let mss = MTU as usize - 40;
    let f = Frame4::tcp("198.18.1.7", "198.18.100.42", 2 * mss).bytes();
    let (verdict, out) = h.run_tc_pod(&f, mss as u32);
    assert_eq!(verdict, TC_ACT_REDIRECT);
    assert_eq!(out, forwarded4(&f, nh_mac(1)));
    let (verdict, _) = h.run_tc_pod(&f, mss as u32 + 1);
    assert_eq!(verdict, TCX_NEXT);
}

#[test]
fn the_pod_program_leaves_to_the_kernel_what_xdp_does_for_ipv4() {
    use support::Frame4;
    let h = node4();
    let ok = || Frame4::udp("198.18.1.7", "198.18.100.42", 1, 2);
    let mut ttl1 = ok();
    ttl1.ttl = 1;
    let mut options = ok();
    options.options = vec![1, 1, 1, 0];
    let mut fragment = ok();
    fragment.frag = 0x2000;
    let mut bad_sum = ok().bytes();
    bad_sum[14 + 10] ^= 0xff;
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("TTL 1", ttl1.bytes()),
        ("options", options.bytes()),
        ("a fragment", fragment.bytes()),
        ("a bad checksum", bad_sum),
        (
            "multicast",
            Frame4::udp("198.18.1.7", "224.0.0.5", 1, 2).bytes(),
        ),
        (
            "link-local",
            Frame4::udp("169.254.0.1", "198.18.100.42", 1, 2).bytes(),
        ),
        (
            "no route",
            Frame4::udp("198.18.1.7", "198.18.200.1", 1, 2).bytes(),
        ),
    ];
    for (what, f) in cases {
        let (verdict, out) = h.run_tc_pod(&f, 0);
        assert_eq!(verdict, TCX_NEXT, "{what}");
        assert_eq!(out, f, "{what}: untouched");
    }
    let (verdict, _) = h.run_tc_pod(&ok().bytes(), 0);
    assert_eq!(verdict, TC_ACT_REDIRECT, "and the ordinary packet goes");
}
