//! IPv6 prefixes: the normalised [`Prefix`] used everywhere (RIB, config) and
//! the wire encoding of prefixes inside LSAs (RFC 5340 A.4.1).

use std::fmt;
use std::net::Ipv6Addr;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::{get_u16, put_u16};
use crate::error::ParseError;

/// An IPv6 prefix with its host bits cleared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Prefix {
    pub addr: Ipv6Addr,
    pub len: u8,
}

/// Why a prefix could not be built or parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PrefixError {
    #[error("prefix length {0} is over 128")]
    BadLength(u8),
    #[error("not of the form ADDR/LEN: {0:?}")]
    Syntax(String),
}

impl Prefix {
    /// Build a prefix, clearing the host bits of `addr`.
    pub fn new(addr: Ipv6Addr, len: u8) -> Result<Self, PrefixError> {
        if len > 128 {
            return Err(PrefixError::BadLength(len));
        }
        Ok(Prefix {
            addr: mask(addr, len),
            len,
        })
    }

    /// Return the host route of `addr`.
    pub fn host(addr: Ipv6Addr) -> Self {
        Prefix { addr, len: 128 }
    }

    /// Return whether this prefix lies in fe80::/10.
    pub fn is_link_local(&self) -> bool {
        self.len >= 10 && (self.addr.segments()[0] & 0xffc0) == 0xfe80
    }

    /// Return whether `addr` is inside this prefix.
    pub fn contains(&self, addr: Ipv6Addr) -> bool {
        mask(addr, self.len) == self.addr
    }
}

fn mask(addr: Ipv6Addr, len: u8) -> Ipv6Addr {
    let bits = u128::from(addr);
    let m = if len == 0 {
        0
    } else {
        u128::MAX << (128 - u32::from(len.min(128)))
    };
    Ipv6Addr::from(bits & m)
}

impl fmt::Display for Prefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

impl FromStr for Prefix {
    type Err = PrefixError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (a, l) = s
            .split_once('/')
            .ok_or_else(|| PrefixError::Syntax(s.to_string()))?;
        let addr: Ipv6Addr = a.parse().map_err(|_| PrefixError::Syntax(s.to_string()))?;
        let len: u8 = l.parse().map_err(|_| PrefixError::Syntax(s.to_string()))?;
        Prefix::new(addr, len)
    }
}

impl Serialize for Prefix {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Prefix {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
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
    pub prefix: Prefix,
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
        let prefix = Prefix {
            addr: mask(Ipv6Addr::from(a), len),
            len,
        };
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
        4 + addr_bytes(self.prefix.len)
    }

    /// Emit at the start of `buf`; return the number of bytes written.
    pub fn emit(&self, buf: &mut [u8]) -> usize {
        let n = addr_bytes(self.prefix.len);
        buf[0] = self.prefix.len;
        buf[1] = self.options.0;
        put_u16(buf, 2, self.metric);
        buf[4..4 + n].copy_from_slice(&self.prefix.addr.octets()[..n]);
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
    fn normalises_and_prints() {
        let p: Prefix = "2001:db8::1/64".parse().unwrap();
        assert_eq!(p.to_string(), "2001:db8::/64");
        assert!(p.contains("2001:db8::77".parse().unwrap()));
        assert!("2001:db8::/129".parse::<Prefix>().is_err());
        assert!("2001:db8::".parse::<Prefix>().is_err());
        assert_eq!(serde_json::to_string(&p).unwrap(), "\"2001:db8::/64\"");
        let back: Prefix = serde_json::from_str("\"2001:db8::/64\"").unwrap();
        assert_eq!(back, p);
        assert!("fe80::1/64".parse::<Prefix>().unwrap().is_link_local());
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
