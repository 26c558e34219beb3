//! IPv6 prefixes inside LSAs (RFC 5340 A.4.1): their wire encoding, and the
//! options that come with them. Everywhere else a prefix is an
//! [`ipnet::Ipv6Net`] with its host bits cleared, the type all of
//! kubermesh shares.

use std::net::Ipv6Addr;

use ipnet::Ipv6Net;
use serde::{Deserialize, Serialize};

use super::{get_u16, put_u16};
use crate::error::ParseError;

/// Return whether `prefix` lies in fe80::/10.
pub fn is_link_local(prefix: &Ipv6Net) -> bool {
    prefix.prefix_len() >= 10 && (prefix.addr().segments()[0] & 0xffc0) == 0xfe80
}

/// The PrefixOptions byte (RFC 5340 A.4.1.1).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
pub struct PrefixOptions(pub u8);

impl PrefixOptions {
    /// No unicast: exclude from IPv6 unicast routing.
    pub const NU: u8 = 0x01;
    /// Local address: the prefix is an address of the advertising router.
    pub const LA: u8 = 0x02;
    /// Propagate (NSSA).
    pub const P: u8 = 0x08;
    /// Down bit (RFC 4576).
    pub const DN: u8 = 0x10;

    /// Return whether `bit` is set.
    pub fn contains(self, bit: u8) -> bool {
        self.0 & bit != 0
    }
}

/// A prefix as carried in Link and Intra-Area-Prefix LSAs.
///
/// `metric` is the 16-bit field after the options: a metric in
/// Intra-Area-Prefix LSAs, reserved (zero) in Link-LSAs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct LsaPrefix {
    /// Host bits cleared.
    pub prefix: Ipv6Net,
    pub options: PrefixOptions,
    pub metric: u16,
}

/// Return the number of address bytes for a prefix length.
fn addr_bytes(len: u8) -> usize {
    usize::from(len).div_ceil(32) * 4
}

impl LsaPrefix {
    /// Parse one prefix at the start of `buf`; return it and its encoded length.
    pub fn parse(buf: &[u8]) -> Result<(Self, usize), ParseError> {
        if buf.len() < 4 {
            return Err(ParseError::Truncated);
        }
        let len = buf[0];
        if len > 128 {
            return Err(ParseError::BadPrefixLength(len));
        }
        let n = addr_bytes(len);
        if buf.len() < 4 + n {
            return Err(ParseError::Truncated);
        }
        let mut a = [0u8; 16];
        a[..n].copy_from_slice(&buf[4..4 + n]);
        let prefix = Ipv6Net::new(Ipv6Addr::from(a), len)
            .map_err(|_| ParseError::BadPrefixLength(len))?
            .trunc();
        Ok((
            LsaPrefix {
                prefix,
                options: PrefixOptions(buf[1]),
                metric: get_u16(buf, 2),
            },
            4 + n,
        ))
    }

    /// Return the encoded length.
    pub fn buffer_len(&self) -> usize {
        4 + addr_bytes(self.prefix.prefix_len())
    }

    /// Emit at the start of `buf`; return the number of bytes written.
    pub fn emit(&self, buf: &mut [u8]) -> usize {
        let n = addr_bytes(self.prefix.prefix_len());
        buf[0] = self.prefix.prefix_len();
        buf[1] = self.options.0;
        put_u16(buf, 2, self.metric);
        buf[4..4 + n].copy_from_slice(&self.prefix.network().octets()[..n]);
        4 + n
    }

    /// Parse `count` prefixes from `buf`, which must hold exactly them.
    pub(crate) fn parse_list(buf: &[u8], count: usize) -> Result<Vec<Self>, ParseError> {
        let mut out = Vec::with_capacity(count.min(buf.len() / 4));
        let mut at = 0;
        for _ in 0..count {
            let (p, n) = LsaPrefix::parse(&buf[at..])?;
            out.push(p);
            at += n;
        }
        if at != buf.len() {
            return Err(ParseError::BadLength);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_local_prefixes() {
        let p = |s: &str| s.parse::<Ipv6Net>().unwrap();
        assert!(is_link_local(&p("fe80::/64")));
        assert!(is_link_local(&p("febf::/16")));
        assert!(!is_link_local(&p("fec0::/10")));
        assert!(!is_link_local(&p("fe80::/9")));
        assert!(!is_link_local(&p("2001:db8::/64")));
    }

    #[test]
    fn wire_round_trip() {
        // /64 takes two words, /0 none, /128 four, /33 two.
        for (s, n) in [
            ("2001:db8:1:2::/64", 8),
            ("::/0", 0),
            ("fd00::1/128", 16),
            ("2001:db8:8000::/33", 8),
        ] {
            let p = LsaPrefix {
                prefix: s.parse().unwrap(),
                options: PrefixOptions(PrefixOptions::LA),
                metric: 10,
            };
            let mut buf = vec![0xa5u8; 4 + n];
            assert_eq!(p.emit(&mut buf), 4 + n);
            assert_eq!(p.buffer_len(), 4 + n);
            let (q, used) = LsaPrefix::parse(&buf).unwrap();
            assert_eq!((q, used), (p, 4 + n));
        }
        let bytes = [64u8, 0, 0, 10, 0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 1];
        // Bits past the length in the last word are not part of the prefix.
        let sloppy = [
            33u8, 0, 0, 10, 0x20, 0x01, 0x0d, 0xb8, 0xff, 0xff, 0xff, 0xff,
        ];
        let (p, _) = LsaPrefix::parse(&sloppy).unwrap();
        assert_eq!(p.prefix.to_string(), "2001:db8:8000::/33");
        let (p, n) = LsaPrefix::parse(&bytes).unwrap();
        assert_eq!(n, 12);
        assert_eq!(p.prefix.to_string(), "2001:db8:0:1::/64");
        assert_eq!(
            LsaPrefix::parse(&bytes[..8]).unwrap_err(),
            ParseError::Truncated
        );
        assert_eq!(
            LsaPrefix::parse(&[129, 0, 0, 0]).unwrap_err(),
            ParseError::BadPrefixLength(129)
        );
    }
}
