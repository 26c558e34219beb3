//! The two checksums of OSPFv3.
//!
//! Packets carry the Internet checksum over an IPv6 pseudo-header (RFC 5340
//! §4.2.2, as for ICMPv6); LSAs carry the Fletcher checksum of RFC 2328
//! §12.1.7 (ISO 8473 annex C) over everything but the LS age.

use std::net::Ipv6Addr;

use super::IP_PROTO_OSPF;

/// Offset of the checksum inside an LSA (RFC 5340 A.4.2).
pub const LSA_CHECKSUM_OFFSET: usize = 16;
/// The checksum covers the LSA from this offset (the LS age is excluded).
const LSA_CHECKSUM_START: usize = 2;

/// Return the Fletcher sums (c0, c1) of `data`, reading the two bytes at
/// `zero_at` as zero when given.
fn fletcher_sums(data: &[u8], zero_at: Option<usize>) -> (i64, i64) {
    let (mut c0, mut c1) = (0i64, 0i64);
    // 4102 bytes keep c1 below 2^31 before reduction; i64 is ample anyway.
    for (chunk_no, chunk) in data.chunks(4096).enumerate() {
        for (i, &byte) in chunk.iter().enumerate() {
            let pos = chunk_no * 4096 + i;
            let b = match zero_at {
                Some(z) if pos == z || pos == z + 1 => 0,
                _ => byte,
            };
            c0 += i64::from(b);
            c1 += c0;
        }
        c0 %= 255;
        c1 %= 255;
    }
    (c0, c1)
}

/// Compute the Fletcher checksum of an LSA (the bytes at offset 16 are taken
/// as zero). `lsa` must be at least 20 bytes long; shorter input gives 0.
pub fn lsa_checksum(lsa: &[u8]) -> u16 {
    if lsa.len() < 20 {
        return 0;
    }
    let data = &lsa[LSA_CHECKSUM_START..];
    let pos = LSA_CHECKSUM_OFFSET - LSA_CHECKSUM_START;
    let (c0, c1) = fletcher_sums(data, Some(pos));
    let len = data.len() as i64;
    let mut x = ((len - pos as i64 - 1) * c0 - c1).rem_euclid(255);
    if x == 0 {
        x = 255;
    }
    let mut y = 510 - c0 - x;
    if y > 255 {
        y -= 255;
    }
    ((x as u16) << 8) | (y as u16 & 0xff)
}

/// Return whether the checksum stored in an LSA is correct.
pub fn lsa_checksum_valid(lsa: &[u8]) -> bool {
    if lsa.len() < 20 {
        return false;
    }
    let stored = super::get_u16(lsa, LSA_CHECKSUM_OFFSET);
    // A zero checksum is never produced by the algorithm above.
    stored != 0 && {
        let (c0, c1) = fletcher_sums(&lsa[LSA_CHECKSUM_START..], None);
        c0 == 0 && c1 == 0
    }
}

/// Compute and store the Fletcher checksum of an LSA in place.
pub fn fill_lsa_checksum(lsa: &mut [u8]) {
    let sum = lsa_checksum(lsa);
    if lsa.len() >= 20 {
        super::put_u16(lsa, LSA_CHECKSUM_OFFSET, sum);
    }
}

/// Compute the Internet checksum of an OSPF packet with the IPv6
/// pseudo-header, reading the two bytes at `checksum_at` as zero.
pub fn ospf_checksum(src: Ipv6Addr, dst: Ipv6Addr, packet: &[u8], checksum_at: usize) -> u16 {
    let mut sum: u64 = 0;
    for chunk in src.octets().chunks(2).chain(dst.octets().chunks(2)) {
        sum += u64::from(u16::from_be_bytes([chunk[0], chunk[1]]));
    }
    let len = packet.len() as u64;
    sum += (len >> 16) + (len & 0xffff);
    sum += u64::from(IP_PROTO_OSPF);
    let mut i = 0;
    while i + 1 < packet.len() {
        if i != checksum_at {
            sum += u64::from(u16::from_be_bytes([packet[i], packet[i + 1]]));
        }
        i += 2;
    }
    if i < packet.len() {
        sum += u64::from(packet[i]) << 8;
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A Router-LSA with one point-to-point link: filling the checksum makes
    /// the verification sums zero, and any covered change breaks it.
    #[test]
    fn lsa_fill_then_verify() {
        let mut lsa = vec![
            0x00, 0x01, 0x20, 0x01, 0x00, 0x00, 0x00, 0x00, 0xc6, 0x12, 0x00, 0x01, 0x80, 0x00,
            0x00, 0x01, 0x00, 0x00, 0x00, 0x28, 0x00, 0x00, 0x00, 0x13, 0x01, 0x00, 0x00, 0x0a,
            0x00, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00, 0x03, 0xc6, 0x12, 0x00, 0x02,
        ];
        assert!(!lsa_checksum_valid(&lsa));
        fill_lsa_checksum(&mut lsa);
        assert!(lsa_checksum_valid(&lsa));
        // The age is not covered.
        lsa[1] = 0x99;
        assert!(lsa_checksum_valid(&lsa));
        lsa[30] ^= 1;
        assert!(!lsa_checksum_valid(&lsa));
    }

    #[test]
    fn fletcher_known_vector() {
        // RFC 905 style check: an all-zero body still gives a nonzero checksum
        // because of the sequence number bytes.
        let mut lsa = [0u8; 20];
        lsa[12] = 0x80;
        lsa[15] = 0x01;
        lsa[19] = 20;
        fill_lsa_checksum(&mut lsa);
        assert_ne!(get(&lsa), 0);
        assert!(lsa_checksum_valid(&lsa));
    }

    fn get(b: &[u8]) -> u16 {
        u16::from_be_bytes([b[16], b[17]])
    }

    #[test]
    fn ospf_checksum_verifies_to_zero() {
        let src: Ipv6Addr = "fe80::1".parse().unwrap();
        let dst: Ipv6Addr = "ff02::5".parse().unwrap();
        let mut pkt = vec![3u8, 1, 0, 17, 1, 2, 3, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0x42];
        let sum = ospf_checksum(src, dst, &pkt, 12);
        pkt[12..14].copy_from_slice(&sum.to_be_bytes());
        // Summing with the checksum included yields 0xffff, i.e. !sum == 0.
        assert_eq!(ospf_checksum(src, dst, &pkt, usize::MAX), 0);
    }
}
