//! IPv4 under the same rules as IPv6: which frames the fast path may
//! forward, and why every other one goes to the kernel. IPv4 prefixes are
//! routed over the IPv6 mesh (next hops are IPv6 neighbours), so only the
//! header differs.
//!
//! The rules, in order (the first that applies names the reason):
//! 1. [`check_frame`]: version 4, a header length of at least 20 bytes, a
//!    total length inside the frame (more is Ethernet padding); no options
//!    (RFC 1812 5.2.4: a router processes them, the kernel does), no
//!    fragment (the kernel reassembles what is for us and refragments);
//! 2. [`checksum_ok`]: the header checksum verifies (RFC 1812 5.2.2: a
//!    router must check it; the kernel drops and counts a bad one);
//! 3. [`classify`]: no multicast, broadcast or reserved (240/4), link-local
//!    (169.254/16), `0/8` or loopback (`127/8`) address on either side
//!    (RFC 1812 5.3.7, 4.2.2.11), and a TTL above 1 (the kernel sends Time
//!    Exceeded).
//!
//! A forwarded packet's TTL drops by one and its checksum is updated
//! incrementally ([`decrement_ttl`], RFC 1624).

use super::ETH_HDR_LEN;
use crate::stats::Stat;

/// EtherType of IPv4.
pub const ETH_P_IP: u16 = 0x0800;
/// Length of an IPv4 header without options.
pub const IPV4_HDR_LEN: usize = 20;
/// Offset of the TTL, from the start of the IPv4 header (the protocol
/// follows it: the two make one 16-bit word of the checksum).
pub const TTL_OFFSET: usize = 8;
/// Offset of the header checksum.
pub const CHECKSUM_OFFSET: usize = 10;
/// Frame offset of the transport header (no options before it).
pub const L4_OFFSET: usize = ETH_HDR_LEN + IPV4_HDR_LEN;

/// The IPv4 header fields the fast path decides on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ipv4Header {
    /// Version (high nibble) and header length in words (low nibble).
    pub version_ihl: u8,
    pub total_len: u16,
    /// Flags and fragment offset, in host order.
    pub frag: u16,
    pub ttl: u8,
    pub protocol: u8,
    /// The header checksum as a host-order number.
    pub checksum: u16,
    /// Addresses loaded in native byte order from the wire bytes (as the
    /// last word of an IPv4-mapped [`super::Addr`]): only compared and
    /// hashed.
    pub src: u32,
    pub dst: u32,
}

impl Ipv4Header {
    /// Read the fields from the 20 header bytes.
    #[inline(always)]
    pub fn from_bytes(h: &[u8; IPV4_HDR_LEN]) -> Self {
        Ipv4Header {
            version_ihl: h[0],
            total_len: u16::from_be_bytes([h[2], h[3]]),
            frag: u16::from_be_bytes([h[6], h[7]]),
            ttl: h[8],
            protocol: h[9],
            checksum: u16::from_be_bytes([h[10], h[11]]),
            src: u32::from_ne_bytes([h[12], h[13], h[14], h[15]]),
            dst: u32::from_ne_bytes([h[16], h[17], h[18], h[19]]),
        }
    }

    /// Return whether the transport header starts with two ports the flow
    /// hash and conntrack take in (TCP, UDP, SCTP, UDP-Lite with room).
    #[inline(always)]
    pub fn has_ports(&self) -> bool {
        matches!(
            self.protocol,
            super::proto::TCP | super::proto::UDP | super::proto::SCTP | super::proto::UDPLITE
        ) && usize::from(self.total_len) >= IPV4_HDR_LEN + 4
    }
}

/// Check the header describes a whole, unfragmented IPv4 packet without
/// options inside a frame of `frame_len` bytes (Ethernet header included).
#[inline(always)]
pub fn check_frame(ip: &Ipv4Header, frame_len: usize) -> Result<(), Stat> {
    if ip.version_ihl >> 4 != 4 || ip.version_ihl & 0xf < 5 {
        return Err(Stat::Malformed);
    }
    if usize::from(ip.total_len) < IPV4_HDR_LEN
        || ETH_HDR_LEN + usize::from(ip.total_len) > frame_len
    {
        return Err(Stat::Malformed);
    }
    if ip.version_ihl & 0xf != 5 {
        return Err(Stat::Ipv4Options);
    }
    // More fragments, or an offset: a fragment.
    if ip.frag & 0x3fff != 0 {
        return Err(Stat::Fragment);
    }
    Ok(())
}

/// Return whether a header's ten 16-bit words sum to all ones: its
/// checksum verifies (RFC 1071). The one's complement sum is the same in
/// either byte order, swapped (RFC 1071 2(B)), and all ones swapped is all
/// ones, so words loaded in native order need no conversion.
#[inline(always)]
pub fn checksum_ok(words: &[u16; IPV4_HDR_LEN / 2]) -> bool {
    let mut sum = 0u32;
    for w in words {
        sum += u32::from(*w);
    }
    fold(sum) == 0xffff
}

/// Fold a 32-bit sum of 16-bit words into 16 bits with end-around carry.
#[inline(always)]
const fn fold(mut sum: u32) -> u16 {
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    sum as u16
}

/// Decide a verified, whole IPv4 packet: `Err` names why the kernel must
/// see it.
#[inline(always)]
pub fn classify(ip: &Ipv4Header) -> Result<(), Stat> {
    if let Some(reason) = address_reason(ip.src, ip.dst) {
        return Err(reason);
    }
    if ip.ttl <= 1 {
        return Err(Stat::HopLimit);
    }
    Ok(())
}

/// Return why a packet with these addresses (native-order loads of the
/// wire bytes) must go to the kernel, if it must.
#[inline(always)]
pub fn address_reason(src: u32, dst: u32) -> Option<Stat> {
    let [s0, s1, ..] = src.to_ne_bytes();
    let [d0, d1, ..] = dst.to_ne_bytes();
    // 224/4 multicast; 240/4 reserved, with 255.255.255.255 in it.
    if (224..240).contains(&d0) || (224..240).contains(&s0) {
        return Some(Stat::Multicast);
    }
    if (d0 == 169 && d1 == 254) || (s0 == 169 && s1 == 254) {
        return Some(Stat::LinkLocal);
    }
    if d0 >= 240 || s0 >= 240 || d0 == 0 || s0 == 0 || d0 == 127 || s0 == 127 {
        return Some(Stat::BadAddress);
    }
    None
}

/// Return the new TTL and header checksum (host order) after a decrement:
/// RFC 1624 eqn. 3, HC' = ~(~HC + ~m + m'), over the word the TTL shares
/// with the protocol.
#[inline(always)]
pub const fn decrement_ttl(ttl: u8, protocol: u8, checksum: u16) -> (u8, u16) {
    let new_ttl = ttl.wrapping_sub(1);
    let m = ((ttl as u32) << 8) | protocol as u32;
    let m_new = ((new_ttl as u32) << 8) | protocol as u32;
    let sum = (!checksum as u32 & 0xffff) + (!m & 0xffff) + m_new;
    (new_ttl, !fold(sum))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A UDP header from `src` to `dst` with a valid checksum.
    fn header(src: [u8; 4], dst: [u8; 4], ttl: u8) -> [u8; 20] {
        let mut h = [0u8; 20];
        h[0] = 0x45;
        h[2..4].copy_from_slice(&28u16.to_be_bytes());
        h[4..6].copy_from_slice(&0x1c46u16.to_be_bytes());
        h[6] = 0x40; // don't fragment
        h[8] = ttl;
        h[9] = super::super::proto::UDP;
        h[12..16].copy_from_slice(&src);
        h[16..20].copy_from_slice(&dst);
        let c = reference_checksum(&h);
        h[10..12].copy_from_slice(&c.to_be_bytes());
        h
    }

    /// The header checksum computed from scratch, byte pair by byte pair
    /// (RFC 791): the reference the incremental update must match.
    fn reference_checksum(h: &[u8; 20]) -> u16 {
        let mut sum: u64 = 0;
        for (i, pair) in h.chunks(2).enumerate() {
            if i != 5 {
                sum += u64::from(u16::from_be_bytes([pair[0], pair[1]]));
            }
        }
        while sum > 0xffff {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        !(sum as u16)
    }

    fn words(h: &[u8; 20]) -> [u16; 10] {
        let mut w = [0u16; 10];
        for (i, x) in w.iter_mut().enumerate() {
            *x = u16::from_be_bytes([h[2 * i], h[2 * i + 1]]);
        }
        w
    }

    const A: [u8; 4] = [198, 18, 1, 7];
    const B: [u8; 4] = [198, 18, 2, 9];

    fn decide(h: &[u8; 20]) -> Result<(), Stat> {
        let ip = Ipv4Header::from_bytes(h);
        check_frame(&ip, ETH_HDR_LEN + 28)?;
        if !checksum_ok(&words(h)) {
            return Err(Stat::BadChecksum);
        }
        classify(&ip)
    }

    #[test]
    fn ordinary_transit_packets_take_the_fast_path() {
        assert_eq!(decide(&header(A, B, 64)), Ok(()));
        assert_eq!(decide(&header(A, B, 2)), Ok(()));
    }

    #[test]
    fn every_reason_is_named() {
        let mut v6 = header(A, B, 64);
        v6[0] = 0x65;
        assert_eq!(decide(&v6), Err(Stat::Malformed));
        let mut short_ihl = header(A, B, 64);
        short_ihl[0] = 0x44;
        assert_eq!(decide(&short_ihl), Err(Stat::Malformed));
        let mut options = header(A, B, 64);
        options[0] = 0x46;
        assert_eq!(decide(&options), Err(Stat::Ipv4Options));
        let ip = Ipv4Header::from_bytes(&header(A, B, 64));
        assert_eq!(check_frame(&ip, ETH_HDR_LEN + 27), Err(Stat::Malformed));
        let mut tiny = header(A, B, 64);
        tiny[2..4].copy_from_slice(&19u16.to_be_bytes());
        assert_eq!(decide(&tiny), Err(Stat::Malformed));
        for frag in [0x2000u16, 0x0001, 0x3fff] {
            let mut f = header(A, B, 64);
            f[6..8].copy_from_slice(&frag.to_be_bytes());
            assert_eq!(decide(&f), Err(Stat::Fragment), "{frag:#x}");
        }
        let mut bad = header(A, B, 64);
        bad[11] ^= 1;
        assert_eq!(decide(&bad), Err(Stat::BadChecksum));
        for (addr, why) in [
            ([224, 0, 0, 5], Stat::Multicast),
            ([239, 1, 2, 3], Stat::Multicast),
            ([169, 254, 1, 1], Stat::LinkLocal),
            ([255, 255, 255, 255], Stat::BadAddress),
            ([240, 0, 0, 1], Stat::BadAddress),
            ([127, 0, 0, 1], Stat::BadAddress),
            ([0, 0, 0, 0], Stat::BadAddress),
        ] {
            assert_eq!(decide(&header(A, addr, 64)), Err(why), "to {addr:?}");
            assert_eq!(decide(&header(addr, B, 64)), Err(why), "from {addr:?}");
        }
        // 169.255/16 and 126/8 are ordinary addresses.
        assert_eq!(decide(&header(A, [169, 255, 0, 1], 64)), Ok(()));
        assert_eq!(decide(&header(A, [126, 0, 0, 1], 64)), Ok(()));
        assert_eq!(decide(&header(A, B, 1)), Err(Stat::HopLimit));
        assert_eq!(decide(&header(A, B, 0)), Err(Stat::HopLimit));
    }

    #[test]
    fn the_incremental_checksum_matches_a_full_recomputation() {
        // Every TTL and a spread of checksums, including the ones where
        // the sum wraps and RFC 1141's shortcut went wrong (0x0000 and
        // 0xffff around the TTL word).
        for ttl in 2..=255u8 {
            for (src, id) in [
                (A, 0x1c46u16),
                ([10, 0, 0, 1], 0),
                ([255, 254, 0, 0], 0xffff),
            ] {
                let mut h = header(src, B, ttl);
                h[4..6].copy_from_slice(&id.to_be_bytes());
                let c = reference_checksum(&h);
                h[10..12].copy_from_slice(&c.to_be_bytes());
                let ip = Ipv4Header::from_bytes(&h);
                let (new_ttl, new_sum) = decrement_ttl(ip.ttl, ip.protocol, ip.checksum);
                let mut want = h;
                want[8] = ttl - 1;
                assert_eq!(new_ttl, ttl - 1);
                assert_eq!(new_sum, reference_checksum(&want), "ttl {ttl} src {src:?}");
                want[10..12].copy_from_slice(&new_sum.to_be_bytes());
                assert!(checksum_ok(&words(&want)));
            }
        }
    }

    #[test]
    fn ports_only_for_transports_that_have_them() {
        let ip = |p, len: u16| {
            let mut h = header(A, B, 64);
            h[9] = p;
            h[2..4].copy_from_slice(&len.to_be_bytes());
            Ipv4Header::from_bytes(&h)
        };
        assert!(ip(super::super::proto::TCP, 40).has_ports());
        assert!(!ip(super::super::proto::UDP, 23).has_ports());
        assert!(!ip(1, 28).has_ports());
    }
}
