//! The 20-byte LSA header (RFC 5340 A.4.2) and what follows from it: the
//! LS type with its U-bit and flooding scope, LSA identity and the "which
//! instance is newer" rule of RFC 2328 §13.1.

use std::cmp::Ordering;
use std::fmt;
use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

use crate::error::ParseError;
use crate::packet::{enum_with_unknown, get_id, get_u16, get_u32, put_u16, put_u32};

/// Length of an LSA header.
pub const HEADER_LEN: usize = 20;
/// An LSA this old is being flushed (seconds).
pub const MAX_AGE: u16 = 3600;
/// Own LSAs are re-originated at this age (seconds).
pub const LS_REFRESH_TIME: u16 = 1800;
/// Ages closer than this are considered equal (seconds).
pub const MAX_AGE_DIFF: u16 = 900;
/// Added to the age of every LSA we transmit (seconds).
pub const INF_TRANS_DELAY: u16 = 1;
/// First sequence number of a new LSA.
pub const INITIAL_SEQ: u32 = 0x8000_0001;
/// Last usable sequence number; reaching it forces a flush (RFC 2328 §12.1.6).
pub const MAX_SEQ: u32 = 0x7fff_ffff;

enum_with_unknown! {
    /// The function code of an LS type (its low 13 bits).
    pub enum LsaFunction(u16) {
        Router = 1,
        Network = 2,
        InterAreaPrefix = 3,
        InterAreaRouter = 4,
        AsExternal = 5,
        GroupMembership = 6,
        Nssa = 7,
        Link = 8,
        IntraAreaPrefix = 9,
    }
}

/// Flooding scope of an LSA (the S2/S1 bits, RFC 5340 A.4.2.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum LsaScope {
    Link,
    Area,
    As,
    Reserved,
}

/// The 16-bit LS type: U-bit, scope bits and function code.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
pub struct LsaType(pub u16);

impl LsaType {
    pub const ROUTER: LsaType = LsaType(0x2001);
    pub const NETWORK: LsaType = LsaType(0x2002);
    pub const INTER_AREA_PREFIX: LsaType = LsaType(0x2003);
    pub const INTER_AREA_ROUTER: LsaType = LsaType(0x2004);
    pub const AS_EXTERNAL: LsaType = LsaType(0x4005);
    pub const NSSA: LsaType = LsaType(0x2007);
    pub const LINK: LsaType = LsaType(0x0008);
    pub const INTRA_AREA_PREFIX: LsaType = LsaType(0x2009);
    /// Grace-LSA (RFC 5187 §2.1): link-local scope, function code 11.
    pub const GRACE: LsaType = LsaType(0x000b);

    /// Return the U-bit: handle an unknown type as if understood.
    pub fn u_bit(self) -> bool {
        self.0 & 0x8000 != 0
    }

    /// Return the scope the S2/S1 bits name.
    pub fn scope_bits(self) -> LsaScope {
        match (self.0 >> 13) & 0x3 {
            0 => LsaScope::Link,
            1 => LsaScope::Area,
            2 => LsaScope::As,
            _ => LsaScope::Reserved,
        }
    }

    /// Return the function code.
    pub fn function(self) -> LsaFunction {
        LsaFunction::from(self.0 & 0x1fff)
    }

    /// Return whether this implementation knows the type (function and scope).
    pub fn is_known(self) -> bool {
        matches!(
            self,
            LsaType::ROUTER
                | LsaType::NETWORK
                | LsaType::INTER_AREA_PREFIX
                | LsaType::INTER_AREA_ROUTER
                | LsaType::AS_EXTERNAL
                | LsaType::NSSA
                | LsaType::LINK
                | LsaType::INTRA_AREA_PREFIX
        )
    }

    /// Return the scope the LSA is flooded and stored with (RFC 5340 §4.5.1):
    /// the scope bits for known types and for unknown ones with the U-bit
    /// set, link-local for unknown ones without it. `None` for the reserved
    /// scope, which is not flooded at all.
    pub fn flooding_scope(self) -> Option<LsaScope> {
        let scope = if self.is_known() || self.u_bit() {
            self.scope_bits()
        } else {
            LsaScope::Link
        };
        (scope != LsaScope::Reserved).then_some(scope)
    }

    /// Return a short name for operators.
    pub fn name(self) -> String {
        match self.function() {
            LsaFunction::Unknown(_) => format!("0x{:04x}", self.0),
            f if !self.is_known() => format!("{f:?}(0x{:04x})", self.0),
            f => format!("{f:?}"),
        }
    }
}

impl fmt::Display for LsaType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())
    }
}

impl LsaType {
    /// Every type this implementation knows, for reading names back.
    const KNOWN: [LsaType; 8] = [
        LsaType::ROUTER,
        LsaType::NETWORK,
        LsaType::INTER_AREA_PREFIX,
        LsaType::INTER_AREA_ROUTER,
        LsaType::AS_EXTERNAL,
        LsaType::NSSA,
        LsaType::LINK,
        LsaType::INTRA_AREA_PREFIX,
    ];

    /// Read back what [`LsaType::name`] wrote.
    pub fn from_name(name: &str) -> Option<LsaType> {
        let hex = |h: &str| u16::from_str_radix(h.strip_prefix("0x")?, 16).ok();
        if let Some(raw) = hex(name) {
            return Some(LsaType(raw));
        }
        if let Some((_, rest)) = name.split_once('(') {
            return hex(rest.strip_suffix(')')?).map(LsaType);
        }
        LsaType::KNOWN.into_iter().find(|t| t.name() == name)
    }
}

/// Serde as the operator's name (`"Router"`, `"0x4321"`), for the
/// snapshots `meshfwd show` prints and reads back.
pub mod lsa_type_name {
    use serde::{Deserialize, Deserializer, Serializer};

    use super::LsaType;

    pub fn serialize<S: Serializer>(t: &LsaType, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(t)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<LsaType, D::Error> {
        let name = String::deserialize(d)?;
        LsaType::from_name(&name)
            .ok_or_else(|| serde::de::Error::custom(format!("{name:?} is not an LS type")))
    }
}

/// What identifies an LSA (RFC 5340 §4.4.2: type, Link State ID, Advertising
/// Router), ordered so all LSAs of one type and router are adjacent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct LsaKey {
    pub ls_type: LsaType,
    pub adv_router: Ipv4Addr,
    pub ls_id: u32,
}

impl fmt::Display for LsaKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} {}",
            self.ls_type,
            Ipv4Addr::from(self.ls_id),
            self.adv_router
        )
    }
}

mod field {
    pub const AGE: usize = 0;
    pub const TYPE: usize = 2;
    pub const LS_ID: usize = 4;
    pub const ADV_ROUTER: usize = 8;
    pub const SEQ: usize = 12;
    pub const CHECKSUM: usize = 16;
    pub const LENGTH: usize = 18;
}

/// Offset of the LS age, patched when an LSA is transmitted.
pub(crate) const AGE_OFFSET: usize = field::AGE;

/// A zero-copy view of an LSA header (and whatever follows it).
#[derive(Debug, Clone)]
pub struct LsaHeaderPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> LsaHeaderPacket<T> {
    /// Wrap a buffer that holds at least a header.
    pub fn new_checked(buffer: T) -> Result<Self, ParseError> {
        if buffer.as_ref().len() < HEADER_LEN {
            return Err(ParseError::Truncated);
        }
        Ok(LsaHeaderPacket { buffer })
    }

    pub fn age(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::AGE)
    }
    pub fn ls_type(&self) -> LsaType {
        LsaType(get_u16(self.buffer.as_ref(), field::TYPE))
    }
    pub fn ls_id(&self) -> u32 {
        get_u32(self.buffer.as_ref(), field::LS_ID)
    }
    pub fn adv_router(&self) -> Ipv4Addr {
        get_id(self.buffer.as_ref(), field::ADV_ROUTER)
    }
    pub fn seq(&self) -> u32 {
        get_u32(self.buffer.as_ref(), field::SEQ)
    }
    pub fn checksum(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::CHECKSUM)
    }
    pub fn length(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::LENGTH)
    }
}

/// A parsed LSA header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct LsaHeader {
    pub age: u16,
    pub ls_type: LsaType,
    pub ls_id: u32,
    pub adv_router: Ipv4Addr,
    pub seq: u32,
    pub checksum: u16,
    pub length: u16,
}

impl LsaHeader {
    /// Parse the header at the start of `buf`.
    pub fn parse(buf: &[u8]) -> Result<Self, ParseError> {
        let p = LsaHeaderPacket::new_checked(buf)?;
        Ok(LsaHeader {
            age: p.age(),
            ls_type: p.ls_type(),
            ls_id: p.ls_id(),
            adv_router: p.adv_router(),
            seq: p.seq(),
            checksum: p.checksum(),
            length: p.length(),
        })
    }

    /// Return the encoded length.
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    /// Emit at the start of `buf` (at least 20 bytes).
    pub fn emit(&self, buf: &mut [u8]) {
        put_u16(buf, field::AGE, self.age);
        put_u16(buf, field::TYPE, self.ls_type.0);
        put_u32(buf, field::LS_ID, self.ls_id);
        put_u32(buf, field::ADV_ROUTER, self.adv_router.into());
        put_u32(buf, field::SEQ, self.seq);
        put_u16(buf, field::CHECKSUM, self.checksum);
        put_u16(buf, field::LENGTH, self.length);
    }

    /// Return the identity of the LSA.
    pub fn key(&self) -> LsaKey {
        LsaKey {
            ls_type: self.ls_type,
            adv_router: self.adv_router,
            ls_id: self.ls_id,
        }
    }

    /// Return whether this instance is being flushed.
    pub fn is_max_age(&self) -> bool {
        self.age >= MAX_AGE
    }

    /// Compare two instances of the same LSA (RFC 2328 §13.1): `Greater`
    /// means `self` is newer.
    pub fn compare(&self, other: &LsaHeader) -> Ordering {
        let (a, b) = (self.seq as i32, other.seq as i32);
        if a != b {
            return a.cmp(&b);
        }
        if self.checksum != other.checksum {
            return self.checksum.cmp(&other.checksum);
        }
        match (self.is_max_age(), other.is_max_age()) {
            (true, false) => return Ordering::Greater,
            (false, true) => return Ordering::Less,
            _ => {}
        }
        if self.age.abs_diff(other.age) > MAX_AGE_DIFF {
            // The younger one is newer.
            return other.age.cmp(&self.age);
        }
        Ordering::Equal
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_names_read_back() {
        for t in [
            LsaType::ROUTER,
            LsaType::INTRA_AREA_PREFIX,
            LsaType::LINK,
            LsaType(0x4001), // a known function with other scope bits
            LsaType(0xa00f), // unknown function, U-bit set
        ] {
            assert_eq!(LsaType::from_name(&t.name()), Some(t), "{}", t.name());
        }
        assert_eq!(LsaType::ROUTER.name(), "Router");
        assert_eq!(LsaType::from_name("Routr"), None);
        assert_eq!(LsaType::from_name("0xzz"), None);
    }

    fn hdr(seq: u32, checksum: u16, age: u16) -> LsaHeader {
        LsaHeader {
            age,
            ls_type: LsaType::ROUTER,
            ls_id: 0,
            adv_router: Ipv4Addr::new(198, 18, 0, 1),
            seq,
            checksum,
            length: 20,
        }
    }

    #[test]
    fn newer_rules() {
        assert_eq!(
            hdr(INITIAL_SEQ + 1, 1, 0).compare(&hdr(INITIAL_SEQ, 9, 0)),
            Ordering::Greater
        );
        // Sequence numbers are signed: 0x80000001 is the smallest.
        assert_eq!(
            hdr(1, 1, 0).compare(&hdr(INITIAL_SEQ, 1, 0)),
            Ordering::Greater
        );
        assert_eq!(hdr(5, 2, 0).compare(&hdr(5, 1, 0)), Ordering::Greater);
        assert_eq!(
            hdr(5, 1, MAX_AGE).compare(&hdr(5, 1, 10)),
            Ordering::Greater
        );
        assert_eq!(hdr(5, 1, 10).compare(&hdr(5, 1, 1000)), Ordering::Greater);
        assert_eq!(hdr(5, 1, 10).compare(&hdr(5, 1, 800)), Ordering::Equal);
    }

    #[test]
    fn type_bits() {
        assert_eq!(LsaType::ROUTER.flooding_scope(), Some(LsaScope::Area));
        assert_eq!(LsaType::LINK.flooding_scope(), Some(LsaScope::Link));
        assert_eq!(LsaType::AS_EXTERNAL.flooding_scope(), Some(LsaScope::As));
        // Unknown, U clear: link scope whatever the S bits say.
        assert_eq!(LsaType(0x2020).flooding_scope(), Some(LsaScope::Link));
        // Unknown, U set: as the S bits say.
        assert_eq!(LsaType(0xa020).flooding_scope(), Some(LsaScope::Area));
        assert_eq!(LsaType(0xe020).flooding_scope(), None);
        assert_eq!(
            LsaType::INTRA_AREA_PREFIX.function(),
            LsaFunction::IntraAreaPrefix
        );
    }

    #[test]
    fn header_round_trip() {
        let bytes = [
            0x00, 0x05, 0x20, 0x01, 0x00, 0x00, 0x00, 0x00, 0xc6, 0x12, 0x00, 0x01, 0x80, 0x00,
            0x00, 0x02, 0xab, 0xcd, 0x00, 0x28,
        ];
        let h = LsaHeader::parse(&bytes).unwrap();
        assert_eq!(
            h,
            LsaHeader {
                age: 5,
                length: 40,
                checksum: 0xabcd,
                ..hdr(INITIAL_SEQ + 1, 0, 0)
            }
        );
        let mut out = [0xa5u8; 20];
        h.emit(&mut out);
        assert_eq!(out, bytes);
        assert_eq!(
            LsaHeader::parse(&bytes[..19]).unwrap_err(),
            ParseError::Truncated
        );
    }
}
