//! Packet classification shared by the XDP and TC programs: which frames
//! the fast path may forward, and for every other frame the reason it goes
//! to the kernel.
//!
//! Written as pure functions over the parsed fixed header, so the XDP
//! program, the TC programs and host tests all run the very same rules.
//! The programs only read the bytes (each with its own bounds checks, which
//! the verifier must see); everything decided from those bytes lives here.
//!
//! The rules, in the order they are checked (the first that applies names
//! the reason):
//! 1. [`check_frame`]: IP version 6, and a frame at least as long as the
//!    payload it claims (longer is Ethernet padding and fine);
//! 2. [`classify`]: no multicast or link-local address on either side, no
//!    `::` or `::1` (RFC 4291 2.5.2, 2.5.3: never forwarded), no Hop-by-Hop
//!    options (RFC 8200 4.3: a router must look at them; the kernel does),
//!    no ND, MLD or redirect message (link-scoped control traffic), and a
//!    hop limit above 1 (the kernel sends Time Exceeded).

use crate::stats::Stat;

pub mod ipv4;

/// Length of the Ethernet header.
pub const ETH_HDR_LEN: usize = 14;
/// EtherType of IPv6.
pub const ETH_P_IPV6: u16 = 0x86DD;
/// Length of the fixed IPv6 header.
pub const IPV6_HDR_LEN: usize = 40;
/// Offset of the hop limit, from the start of the IPv6 header.
pub const HOP_LIMIT_OFFSET: usize = 7;
/// Frame offset of the transport header (no extension header before it).
pub const L4_OFFSET: usize = ETH_HDR_LEN + IPV6_HDR_LEN;

/// IPv6 next-header values the fast path knows.
pub mod proto {
    pub const HOPOPTS: u8 = 0;
    pub const TCP: u8 = 6;
    pub const UDP: u8 = 17;
    pub const ICMPV6: u8 = 58;
    pub const SCTP: u8 = 132;
    pub const UDPLITE: u8 = 136;
}

/// An IPv6 address as four words loaded in native byte order from the
/// wire bytes (see [`crate::fib::addr_words`]): only compared and hashed.
pub type Addr = [u32; 4];

/// The fixed IPv6 header fields the fast path decides on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ipv6Header {
    /// Version, traffic class and flow label, in host order.
    pub vtc_flow: u32,
    pub payload_len: u16,
    pub next_header: u8,
    pub hop_limit: u8,
    pub src: Addr,
    pub dst: Addr,
}

impl Ipv6Header {
    /// Read the fields from the 40 header bytes.
    #[inline(always)]
    pub fn from_bytes(h: &[u8; IPV6_HDR_LEN]) -> Self {
        let mut src = [0u8; 16];
        let mut dst = [0u8; 16];
        src.copy_from_slice(&h[8..24]);
        dst.copy_from_slice(&h[24..40]);
        Ipv6Header {
            vtc_flow: u32::from_be_bytes([h[0], h[1], h[2], h[3]]),
            payload_len: u16::from_be_bytes([h[4], h[5]]),
            next_header: h[6],
            hop_limit: h[7],
            src: crate::fib::addr_words(&src),
            dst: crate::fib::addr_words(&dst),
        }
    }

    /// Return whether the transport header starts with two ports the flow
    /// hash should take in (TCP, UDP, SCTP, UDP-Lite with room for them).
    #[inline(always)]
    pub fn has_ports(&self) -> bool {
        matches!(
            self.next_header,
            proto::TCP | proto::UDP | proto::SCTP | proto::UDPLITE
        ) && self.payload_len >= 4
    }
}

/// Check the header describes a whole IPv6 packet inside a frame of
/// `frame_len` bytes (Ethernet header included).
#[inline(always)]
pub fn check_frame(ip: &Ipv6Header, frame_len: usize) -> Result<(), Stat> {
    if ip.vtc_flow >> 28 != 6 {
        return Err(Stat::Malformed);
    }
    // A frame shorter than the payload it claims is truncated: the kernel
    // drops it, the fast path never forwards it.
    if ETH_HDR_LEN + IPV6_HDR_LEN + ip.payload_len as usize > frame_len {
        return Err(Stat::Malformed);
    }
    Ok(())
}

/// Decide whether a well-formed IPv6 packet may take the fast path; `Err`
/// names why the kernel must see it. `icmp_type` reads the first transport
/// byte; it is called only for ICMPv6 (`None`: not in the frame).
#[inline(always)]
pub fn classify(ip: &Ipv6Header, icmp_type: impl FnOnce() -> Option<u8>) -> Result<(), Stat> {
    if let Some(reason) = address_reason(&ip.src, &ip.dst) {
        return Err(reason);
    }
    if ip.next_header == proto::HOPOPTS {
        return Err(Stat::HopByHop);
    }
    if ip.next_header == proto::ICMPV6 {
        let t = icmp_type().ok_or(Stat::Malformed)?;
        if is_link_control(t) {
            return Err(Stat::NdpMld);
        }
    }
    if ip.hop_limit <= 1 {
        return Err(Stat::HopLimit);
    }
    Ok(())
}

/// Return whether an ICMPv6 type is link-scoped control traffic: MLD
/// query, report and done (130-132), RS, RA, NS, NA and redirect
/// (133-137), MLDv2 report (143).
#[inline(always)]
pub const fn is_link_control(icmp_type: u8) -> bool {
    matches!(icmp_type, 130..=137 | 143)
}

/// Return why a packet with these addresses must go to the kernel, if it
/// must.
#[inline(always)]
pub fn address_reason(src: &Addr, dst: &Addr) -> Option<Stat> {
    let [s0, s1, ..] = src[0].to_ne_bytes();
    let [d0, d1, ..] = dst[0].to_ne_bytes();
    if d0 == 0xff || s0 == 0xff {
        return Some(Stat::Multicast);
    }
    // fe80::/10
    if (d0 == 0xfe && d1 & 0xc0 == 0x80) || (s0 == 0xfe && s1 & 0xc0 == 0x80) {
        return Some(Stat::LinkLocal);
    }
    if is_unspecified_or_loopback(src) || is_unspecified_or_loopback(dst) {
        return Some(Stat::BadAddress);
    }
    None
}

#[inline(always)]
fn is_unspecified_or_loopback(a: &Addr) -> bool {
    (a[0] | a[1] | a[2]) == 0 && u32::from_be(a[3]) <= 1
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A UDP header from `src` to `dst` with the given payload length and
    /// hop limit.
    fn header(src: [u8; 16], dst: [u8; 16], next_header: u8, hop_limit: u8) -> [u8; 40] {
        let mut h = [0u8; 40];
        h[0] = 0x60;
        h[4..6].copy_from_slice(&8u16.to_be_bytes());
        h[6] = next_header;
        h[7] = hop_limit;
        h[8..24].copy_from_slice(&src);
        h[24..40].copy_from_slice(&dst);
        h
    }

    const A: [u8; 16] = [0xfd, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1];
    const B: [u8; 16] = [0xfd, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 1];

    fn decide(h: &[u8; 40], icmp: Option<u8>) -> Result<(), Stat> {
        let ip = Ipv6Header::from_bytes(h);
        check_frame(&ip, ETH_HDR_LEN + IPV6_HDR_LEN + 8)?;
        classify(&ip, || icmp)
    }

    fn with(addr: &[u8], base: [u8; 16]) -> [u8; 16] {
        let mut a = base;
        a[..addr.len()].copy_from_slice(addr);
        a
    }

    #[test]
    fn ordinary_transit_packets_take_the_fast_path() {
        assert_eq!(decide(&header(A, B, proto::UDP, 64), None), Ok(()));
        assert_eq!(decide(&header(A, B, proto::TCP, 2), None), Ok(()));
        // Echo request: not link control.
        assert_eq!(decide(&header(A, B, proto::ICMPV6, 64), Some(128)), Ok(()));
    }

    #[test]
    fn every_reason_is_named() {
        let mut bad_version = header(A, B, proto::UDP, 64);
        bad_version[0] = 0x40;
        assert_eq!(decide(&bad_version, None), Err(Stat::Malformed));
        let truncated = Ipv6Header::from_bytes(&header(A, B, proto::UDP, 64));
        assert_eq!(
            check_frame(&truncated, ETH_HDR_LEN + IPV6_HDR_LEN + 7),
            Err(Stat::Malformed)
        );
        let ff02 = with(&[0xff, 0x02], [0; 16]);
        assert_eq!(
            decide(&header(A, ff02, proto::UDP, 64), None),
            Err(Stat::Multicast)
        );
        assert_eq!(
            decide(&header(ff02, B, proto::UDP, 64), None),
            Err(Stat::Multicast)
        );
        let fe80 = with(&[0xfe, 0x80], B);
        let febf = with(&[0xfe, 0xbf], B);
        assert_eq!(
            decide(&header(fe80, B, proto::UDP, 64), None),
            Err(Stat::LinkLocal)
        );
        assert_eq!(
            decide(&header(A, febf, proto::UDP, 64), None),
            Err(Stat::LinkLocal)
        );
        // fec0:: is not link-local.
        let fec0 = with(&[0xfe, 0xc0], B);
        assert_eq!(decide(&header(A, fec0, proto::UDP, 64), None), Ok(()));
        let mut loopback = [0u8; 16];
        loopback[15] = 1;
        assert_eq!(
            decide(&header(A, loopback, proto::UDP, 64), None),
            Err(Stat::BadAddress)
        );
        assert_eq!(
            decide(&header([0; 16], B, proto::UDP, 64), None),
            Err(Stat::BadAddress)
        );
        assert_eq!(
            decide(&header(A, B, proto::HOPOPTS, 64), None),
            Err(Stat::HopByHop)
        );
        for t in [130, 133, 135, 136, 137, 143] {
            assert_eq!(
                decide(&header(A, B, proto::ICMPV6, 255), Some(t)),
                Err(Stat::NdpMld),
                "ICMPv6 type {t}"
            );
        }
        assert_eq!(
            decide(&header(A, B, proto::ICMPV6, 64), None),
            Err(Stat::Malformed),
            "ICMPv6 without its type byte"
        );
        assert_eq!(
            decide(&header(A, B, proto::UDP, 1), None),
            Err(Stat::HopLimit)
        );
        assert_eq!(
            decide(&header(A, B, proto::UDP, 0), None),
            Err(Stat::HopLimit)
        );
    }

    #[test]
    fn ports_only_for_transports_that_have_them() {
        let ip = |nh, len: u16| {
            let mut h = header(A, B, nh, 64);
            h[4..6].copy_from_slice(&len.to_be_bytes());
            Ipv6Header::from_bytes(&h)
        };
        assert!(ip(proto::TCP, 20).has_ports());
        assert!(ip(proto::UDPLITE, 8).has_ports());
        assert!(!ip(proto::UDP, 3).has_ports());
        assert!(!ip(proto::ICMPV6, 8).has_ports());
    }

    #[test]
    fn header_fields_read_in_the_fast_paths_word_order() {
        let h = header(A, B, proto::UDP, 9);
        let ip = Ipv6Header::from_bytes(&h);
        assert_eq!(ip.vtc_flow, 0x6000_0000);
        assert_eq!(ip.payload_len, 8);
        assert_eq!(ip.hop_limit, 9);
        assert_eq!(crate::fib::addr_bytes(&ip.src), A);
        assert_eq!(crate::fib::addr_bytes(&ip.dst), B);
    }
}
