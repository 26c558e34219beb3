//! The OSPFv3 Authentication Trailer (RFC 7166): HMAC-SHA authentication
//! of every packet, with a key chain and a 64-bit cryptographic sequence
//! number against replay.
//!
//! The trailer follows the OSPF packet (whose length field does not count
//! it; the IPv6 payload length does):
//!
//! ```text
//!  0      2          4          6      8                    16
//!  +------+----------+----------+------+--------------------+------------+
//!  | type | data len | reserved | SA ID| sequence (64 bits) | digest (L) |
//!  +------+----------+----------+------+--------------------+------------+
//! ```
//!
//! The digest is `HMAC-H(K ‖ 0x0001, packet ‖ trailer header ‖ Apad)`, with
//! the packet's checksum 0 (it is neither computed nor checked on an
//! authenticated link) and `Apad` = the IPv6 source address followed by
//! 0x878FE1F3 repeated to L bytes, which the digest then replaces.
//!
//! Interop: FRR up to 9.0 appends the protocol id 1 to the key in host
//! byte order (`01 00` on x86) instead of the RFC's `00 01`; BIRD and FRR
//! from 9.1 follow the RFC. [`CpidOrder::Legacy`] speaks to the former.

use std::net::Ipv6Addr;

use hmac::{Hmac, Mac as _};
use serde::{Deserialize, Serialize};

use super::{get_u16, get_u32, put_u16, put_u32};

/// `Auth Type` 1: HMAC Cryptographic Authentication.
pub const AUTH_TYPE_HMAC: u16 = 1;
/// Bytes of the trailer before the digest.
pub const HEADER_LEN: usize = 16;
/// The words `Apad` repeats after the source address.
const APAD_WORD: u32 = 0x878F_E1F3;
/// The OSPFv3 Cryptographic Protocol ID, appended to the key.
const CPID: u16 = 1;
/// Offset of the checksum in the OSPF header.
const CHECKSUM_OFFSET: usize = 12;

/// The HMAC algorithms of RFC 7166 §4.3 (SHA-256 is the one every
/// implementation must have).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Algorithm {
    #[serde(rename = "hmac-sha-1")]
    HmacSha1,
    #[serde(rename = "hmac-sha-256")]
    HmacSha256,
    #[serde(rename = "hmac-sha-384")]
    HmacSha384,
    #[serde(rename = "hmac-sha-512")]
    HmacSha512,
}

impl Algorithm {
    /// The digest length L.
    pub const fn digest_len(self) -> usize {
        match self {
            Algorithm::HmacSha1 => 20,
            Algorithm::HmacSha256 => 32,
            Algorithm::HmacSha384 => 48,
            Algorithm::HmacSha512 => 64,
        }
    }

    /// The trailer's length field for this algorithm.
    pub const fn trailer_len(self) -> usize {
        HEADER_LEN + self.digest_len()
    }
}

/// The byte order of the protocol id appended to the key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CpidOrder {
    /// `00 01`, as RFC 7166 §4.5 says (BIRD, FRR 9.1 and later).
    #[default]
    Rfc,
    /// `01 00`: FRR up to 9.0 on little-endian hosts.
    Legacy,
}

impl CpidOrder {
    fn bytes(self) -> [u8; 2] {
        match self {
            CpidOrder::Rfc => CPID.to_be_bytes(),
            CpidOrder::Legacy => CPID.to_le_bytes(),
        }
    }
}

/// One key of a chain, with lifetimes in seconds since the Unix epoch (the
/// instance converts its clock with [`crate::InstanceConfig::epoch_unix_ms`]).
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Key {
    /// The SA ID the trailer carries.
    pub id: u16,
    pub algorithm: Algorithm,
    #[serde(skip_serializing)]
    pub secret: Vec<u8>,
    /// Used to send from (inclusive) / until (exclusive); `None`: always.
    pub send_from: Option<u64>,
    pub send_until: Option<u64>,
    /// Accepted from / until.
    pub accept_from: Option<u64>,
    pub accept_until: Option<u64>,
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The secret stays out of logs and `show` output.
        f.debug_struct("Key")
            .field("id", &self.id)
            .field("algorithm", &self.algorithm)
            .field("send_from", &self.send_from)
            .field("send_until", &self.send_until)
            .field("accept_from", &self.accept_from)
            .field("accept_until", &self.accept_until)
            .finish_non_exhaustive()
    }
}

fn within(now: u64, from: Option<u64>, until: Option<u64>) -> bool {
    from.is_none_or(|f| now >= f) && until.is_none_or(|u| now < u)
}

impl Key {
    /// Whether the key may sign at `now` (Unix seconds).
    pub fn sends_at(&self, now: u64) -> bool {
        within(now, self.send_from, self.send_until)
    }

    /// Whether the key may verify at `now` (Unix seconds).
    pub fn accepts_at(&self, now: u64) -> bool {
        within(now, self.accept_from, self.accept_until)
    }
}

/// A key chain: what an interface signs with and accepts.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub struct KeyChain {
    pub keys: Vec<Key>,
    /// The protocol id's byte order when sending (receiving takes either).
    #[serde(default)]
    pub send_cpid: CpidOrder,
}

impl KeyChain {
    /// The key to sign with at `now`: of the keys valid for sending, the
    /// one that became valid last (so a new key takes over as soon as its
    /// send lifetime starts, the way BIRD picks), the highest id on a tie.
    pub fn send_key(&self, now: u64) -> Option<&Key> {
        self.keys
            .iter()
            .filter(|k| k.sends_at(now))
            .max_by_key(|k| (k.send_from.unwrap_or(0), k.id))
    }

    /// The key with SA ID `id` if it may verify at `now`.
    pub fn accept_key(&self, id: u16, now: u64) -> Option<&Key> {
        self.keys.iter().find(|k| k.id == id && k.accepts_at(now))
    }
}

/// Why a trailer did not authenticate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("no authentication trailer")]
    Missing,
    #[error("trailer of type {0}, not HMAC")]
    BadType(u16),
    #[error("trailer length {0} does not fit the key's algorithm or the packet")]
    BadLength(usize),
    #[error("no key with SA ID {0} is valid")]
    UnknownKey(u16),
    #[error("digest does not match")]
    BadDigest,
}

/// A trailer that authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verified {
    pub sa_id: u16,
    pub seq: u64,
    /// Which protocol id order the sender used.
    pub cpid: CpidOrder,
}

/// The authentication input: `packet ‖ trailer header`, then `Apad` for
/// `src` over the digest's place (all in `buf`, which is the whole datagram
/// with room for the digest).
fn fill_apad(digest: &mut [u8], src: Ipv6Addr) {
    digest[..16].copy_from_slice(&src.octets());
    for word in digest[16..].chunks_exact_mut(4) {
        word.copy_from_slice(&APAD_WORD.to_be_bytes());
    }
}

fn keyed(secret: &[u8], cpid: CpidOrder) -> Vec<u8> {
    let mut k = Vec::with_capacity(secret.len() + 2);
    k.extend_from_slice(secret);
    k.extend_from_slice(&cpid.bytes());
    k
}

/// Append a trailer to `packet` (a whole OSPF packet, its length field
/// already set) signed with `key` for source `src`, sequence `seq`. The
/// checksum is zeroed: an authenticated packet carries none.
pub fn seal(packet: &mut Vec<u8>, src: Ipv6Addr, key: &Key, seq: u64, cpid: CpidOrder) {
    if packet.len() >= CHECKSUM_OFFSET + 2 {
        put_u16(packet, CHECKSUM_OFFSET, 0);
    }
    let at = packet.len();
    let len = key.algorithm.trailer_len();
    packet.resize(at + len, 0);
    let t = &mut packet[at..];
    put_u16(t, 0, AUTH_TYPE_HMAC);
    put_u16(t, 2, len as u16);
    put_u16(t, 4, 0);
    put_u16(t, 6, key.id);
    put_u32(t, 8, (seq >> 32) as u32);
    put_u32(t, 12, seq as u32);
    fill_apad(&mut t[HEADER_LEN..], src);
    let mut m = AnyMac::new(key.algorithm, &keyed(&key.secret, cpid));
    m.update(packet);
    let digest = m.finalize();
    packet[at + HEADER_LEN..].copy_from_slice(&digest);
}

/// Check the trailer after the first `ospf_len` bytes of `data` (the OSPF
/// packet), sent from `src`, against `chain` at `now` (Unix seconds).
/// Either protocol id order is accepted.
pub fn verify(
    data: &[u8],
    ospf_len: usize,
    src: Ipv6Addr,
    chain: &KeyChain,
    now: u64,
) -> Result<Verified, AuthError> {
    let trailer = data.get(ospf_len..).unwrap_or_default();
    if trailer.len() < HEADER_LEN {
        return Err(AuthError::Missing);
    }
    let kind = get_u16(trailer, 0);
    if kind != AUTH_TYPE_HMAC {
        return Err(AuthError::BadType(kind));
    }
    let len = usize::from(get_u16(trailer, 2));
    let sa_id = get_u16(trailer, 6);
    let key = chain
        .accept_key(sa_id, now)
        .ok_or(AuthError::UnknownKey(sa_id))?;
    if len != key.algorithm.trailer_len() || trailer.len() != len {
        return Err(AuthError::BadLength(len));
    }
    let seq = (u64::from(get_u32(trailer, 8)) << 32) | u64::from(get_u32(trailer, 12));
    let received = &trailer[HEADER_LEN..];
    let mut apad = vec![0u8; key.algorithm.digest_len()];
    fill_apad(&mut apad, src);
    for cpid in [CpidOrder::Rfc, CpidOrder::Legacy] {
        let mut m = AnyMac::new(key.algorithm, &keyed(&key.secret, cpid));
        m.update(&data[..ospf_len + HEADER_LEN]);
        m.update(&apad);
        if m.verify(received) {
            return Ok(Verified { sa_id, seq, cpid });
        }
    }
    Err(AuthError::BadDigest)
}

/// An HMAC of `algorithm` that checks a digest in constant time.
enum AnyMac {
    Sha1(Hmac<sha1::Sha1>),
    Sha256(Hmac<sha2::Sha256>),
    Sha384(Hmac<sha2::Sha384>),
    Sha512(Hmac<sha2::Sha512>),
}

impl AnyMac {
    fn new(algorithm: Algorithm, key: &[u8]) -> Self {
        fn make<M: hmac::Mac + hmac::digest::KeyInit>(key: &[u8]) -> M {
            <M as hmac::Mac>::new_from_slice(key).expect("HMAC takes keys of any length")
        }
        match algorithm {
            Algorithm::HmacSha1 => AnyMac::Sha1(make(key)),
            Algorithm::HmacSha256 => AnyMac::Sha256(make(key)),
            Algorithm::HmacSha384 => AnyMac::Sha384(make(key)),
            Algorithm::HmacSha512 => AnyMac::Sha512(make(key)),
        }
    }

    fn finalize(self) -> Vec<u8> {
        match self {
            AnyMac::Sha1(m) => m.finalize().into_bytes().to_vec(),
            AnyMac::Sha256(m) => m.finalize().into_bytes().to_vec(),
            AnyMac::Sha384(m) => m.finalize().into_bytes().to_vec(),
            AnyMac::Sha512(m) => m.finalize().into_bytes().to_vec(),
        }
    }

    fn update(&mut self, data: &[u8]) {
        match self {
            AnyMac::Sha1(m) => m.update(data),
            AnyMac::Sha256(m) => m.update(data),
            AnyMac::Sha384(m) => m.update(data),
            AnyMac::Sha512(m) => m.update(data),
        }
    }

    fn verify(self, digest: &[u8]) -> bool {
        match self {
            AnyMac::Sha1(m) => m.verify_slice(digest).is_ok(),
            AnyMac::Sha256(m) => m.verify_slice(digest).is_ok(),
            AnyMac::Sha384(m) => m.verify_slice(digest).is_ok(),
            AnyMac::Sha512(m) => m.verify_slice(digest).is_ok(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    /// A Hello from fe80::1 (router 1.1.1.1, interface 2, options
    /// V6|E|R|AT, hello 10, dead 40, neighbour 2.2.2.2).
    const HELLO: &str =
        "030100280101010100000000000000000000000201000413000a0028000000000000000002020202";

    fn key(algorithm: Algorithm) -> Key {
        Key {
            id: 1,
            algorithm,
            secret: b"secret".to_vec(),
            send_from: None,
            send_until: None,
            accept_from: None,
            accept_until: None,
        }
    }

    /// Digests of [`HELLO`] with SA ID 1, sequence 1, key "secret", in
    /// both protocol id orders. Computed independently (Python's hmac
    /// module) from the construction in RFC 7166 §4.5 as BIRD implements it.
    const VECTORS: [(Algorithm, &str, &str); 4] = [
        (
            Algorithm::HmacSha1,
            "01054cce065e970e31465a4c80013881733cc3fd",
            "16b64ebad25710db1d387fd2fb458181be4dc4f5",
        ),
        (
            Algorithm::HmacSha256,
            "d33aaa56af315ab4b35416fbbd148f88f884e65e74e355b485b7bf6ae9425718",
            "a9f5058ed39ad9bd06e0d6cb0b916fc7c22e4b4daa928acf85dcae1c7e404b8a",
        ),
        (
            Algorithm::HmacSha384,
            "61d6bd2d929890ae5c5fe5975039799ccbe6decdc8e34046debf8a64f9cb02e207650a51375d2f37b93e3266b0f6841f",
            "1c040bcca7f9522b3730ced14a123dd01a227d1d93458daea9ab823c27cc5421e79abd2bbcfa14db41c5de1b6f8ef065",
        ),
        (
            Algorithm::HmacSha512,
            "3e8af9e2368b6699619c7aae42720fb8a49650c58335cc86d2198c989ada30cd4ec09d6fd13f6cf1438a93b2df7efb99c6e32337610fcbe190f9e03b158eb29d",
            "ceee794969d04b2dd61016ee65cb518e21ee556524b38fccce85cd94bb74051303685ecdb3217ffa5f4b1a45ad6e7d357300aaf5bb4f8088e0222fe093d4d5ca",
        ),
    ];

    #[test]
    fn seal_matches_the_independent_vectors_in_both_orders() {
        let src: Ipv6Addr = "fe80::1".parse().unwrap();
        for (alg, rfc, legacy) in VECTORS {
            for (cpid, want) in [(CpidOrder::Rfc, rfc), (CpidOrder::Legacy, legacy)] {
                let mut p = hex(HELLO);
                seal(&mut p, src, &key(alg), 1, cpid);
                assert_eq!(p.len(), 40 + alg.trailer_len());
                assert_eq!(&p[40..44], &[0, 1, 0, alg.trailer_len() as u8]);
                assert_eq!(&p[44..56], &hex("000000010000000000000001"));
                assert_eq!(p[56..], hex(want)[..], "{alg:?} {cpid:?}");
                let chain = KeyChain {
                    keys: vec![key(alg)],
                    send_cpid: cpid,
                };
                assert_eq!(
                    verify(&p, 40, src, &chain, 0),
                    Ok(Verified {
                        sa_id: 1,
                        seq: 1,
                        cpid
                    })
                );
            }
        }
    }

    #[test]
    fn a_changed_byte_source_key_or_id_fails() {
        let src: Ipv6Addr = "fe80::1".parse().unwrap();
        let k = key(Algorithm::HmacSha256);
        let chain = KeyChain {
            keys: vec![k.clone()],
            ..Default::default()
        };
        let mut p = hex(HELLO);
        seal(&mut p, src, &k, 7, CpidOrder::Rfc);
        for i in 0..p.len() {
            if (44..46).contains(&i) {
                continue; // the reserved field is not checked
            }
            let mut bad = p.clone();
            bad[i] ^= 0x01;
            assert!(verify(&bad, 40, src, &chain, 0).is_err(), "byte {i}");
        }
        let other: Ipv6Addr = "fe80::2".parse().unwrap();
        assert_eq!(verify(&p, 40, other, &chain, 0), Err(AuthError::BadDigest));
        let wrong = KeyChain {
            keys: vec![Key {
                secret: b"secreT".to_vec(),
                ..k.clone()
            }],
            ..Default::default()
        };
        assert_eq!(verify(&p, 40, src, &wrong, 0), Err(AuthError::BadDigest));
        let other_id = KeyChain {
            keys: vec![Key { id: 2, ..k }],
            ..Default::default()
        };
        assert_eq!(
            verify(&p, 40, src, &other_id, 0),
            Err(AuthError::UnknownKey(1))
        );
        assert_eq!(
            verify(&p[..40], 40, src, &chain, 0),
            Err(AuthError::Missing)
        );
        // Cut anywhere in the trailer: an error, never a panic.
        for cut in 41..p.len() {
            assert!(verify(&p[..cut], 40, src, &chain, 0).is_err());
        }
    }

    #[test]
    fn the_newest_valid_key_signs_and_each_verifies_in_its_window() {
        let at = Some;
        let old = Key {
            id: 1,
            send_until: at(100),
            accept_until: at(120),
            ..key(Algorithm::HmacSha256)
        };
        let new = Key {
            id: 2,
            send_from: at(90),
            accept_from: at(80),
            ..key(Algorithm::HmacSha256)
        };
        let chain = KeyChain {
            keys: vec![old, new],
            ..Default::default()
        };
        let id = |t: u64| chain.send_key(t).map(|k| k.id);
        assert_eq!(id(50), Some(1));
        assert_eq!(id(95), Some(2), "the newer key takes over at once");
        assert_eq!(id(200), Some(2));
        assert!(chain.accept_key(1, 110).is_some());
        assert!(chain.accept_key(1, 120).is_none());
        assert!(chain.accept_key(2, 70).is_none());
    }
}
