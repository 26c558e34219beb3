//! OSPFv3 wire format (RFC 5340 appendix A).
//!
//! Two layers, after smoltcp's `wire` module: zero-copy views
//! (`Packet<T: AsRef<[u8]>>` and friends) whose checked constructors make every
//! later getter infallible, and owned `*Repr` structs with `parse`, `emit` and
//! `buffer_len`. The protocol core parses what arrives into `Repr`s, except
//! Link State Updates, whose LSAs it walks with [`lsupd::LsUpdatePacket`] so one
//! bad LSA costs only itself (RFC 2328 §13 step 1).

pub mod auth;
pub mod checksum;
pub mod dbdesc;
pub mod hello;
pub mod lsa;
pub mod lsack;
pub mod lsreq;
pub mod lsupd;
pub mod prefix;

use std::net::{Ipv4Addr, Ipv6Addr};

use serde::{Deserialize, Serialize};

pub use crate::error::ParseError;
use dbdesc::DbDescRepr;
use hello::HelloRepr;
use lsack::LsAckRepr;
use lsreq::LsRequestRepr;
use lsupd::LsUpdateRepr;

/// OSPF version carried in every packet.
pub const VERSION: u8 = 3;
/// Length of the common OSPFv3 packet header.
pub const HEADER_LEN: usize = 16;
/// IPv6 next header value of OSPF.
pub const IP_PROTO_OSPF: u8 = 89;
/// Size of the IPv6 header, subtracted from the MTU to size packets.
pub const IPV6_HEADER_LEN: usize = 40;
/// AllSPFRouters (RFC 5340 A.1).
pub const ALL_SPF_ROUTERS: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 5);
/// AllDRouters (RFC 5340 A.1).
pub const ALL_D_ROUTERS: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 6);

/// Define a code point enum with an `Unknown(n)` variant and both conversions.
macro_rules! enum_with_unknown {
    (
        $(#[$meta:meta])*
        pub enum $name:ident($ty:ty) {
            $( $(#[$vmeta:meta])* $variant:ident = $value:expr ),+ $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(
            Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash,
            serde::Serialize, serde::Deserialize,
        )]
        pub enum $name {
            $( $(#[$vmeta])* $variant, )+
            /// A code point this implementation does not know.
            Unknown($ty),
        }

        impl From<$ty> for $name {
            fn from(value: $ty) -> Self {
                match value {
                    $( $value => $name::$variant, )+
                    other => $name::Unknown(other),
                }
            }
        }

        impl From<$name> for $ty {
            fn from(value: $name) -> Self {
                match value {
                    $( $name::$variant => $value, )+
                    $name::Unknown(other) => other,
                }
            }
        }
    };
}
pub(crate) use enum_with_unknown;

enum_with_unknown! {
    /// OSPFv3 packet type (RFC 5340 A.3.1).
    pub enum PacketType(u8) {
        Hello = 1,
        DbDesc = 2,
        LsRequest = 3,
        LsUpdate = 4,
        LsAck = 5,
    }
}

/// The 24-bit Options field of Hellos, DD packets and some LSAs (RFC 5340 A.2).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
pub struct Options(pub u32);

impl Options {
    /// The router takes part in IPv6 routing.
    pub const V6: u32 = 0x01;
    /// The router floods AS-external LSAs (clear in stub areas).
    pub const E: u32 = 0x02;
    /// NSSA.
    pub const N: u32 = 0x08;
    /// The originator is an active router (may forward transit traffic).
    pub const R: u32 = 0x10;
    /// Demand circuits.
    pub const DC: u32 = 0x20;
    /// Address families (RFC 5838).
    pub const AF: u32 = 0x100;
    /// Link-local signalling.
    pub const L: u32 = 0x200;
    /// Authentication trailer (RFC 7166).
    pub const AT: u32 = 0x400;
    /// What this implementation advertises: an IPv6 router in a normal area.
    pub const DEFAULT: Options = Options(Self::V6 | Self::E | Self::R);

    /// Return whether `bit` is set.
    pub fn contains(self, bit: u32) -> bool {
        self.0 & bit != 0
    }
}

/// Read a big-endian u16; callers have checked the bounds.
pub(crate) fn get_u16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

/// Read a big-endian 24-bit value; callers have checked the bounds.
pub(crate) fn get_u24(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([0, b[at], b[at + 1], b[at + 2]])
}

/// Read a big-endian u32; callers have checked the bounds.
pub(crate) fn get_u32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// Read an IPv4-shaped identifier (router id, area id).
pub(crate) fn get_id(b: &[u8], at: usize) -> Ipv4Addr {
    Ipv4Addr::from(get_u32(b, at))
}

/// Read an IPv6 address; callers have checked the bounds.
pub(crate) fn get_ipv6(b: &[u8], at: usize) -> Ipv6Addr {
    let mut a = [0u8; 16];
    a.copy_from_slice(&b[at..at + 16]);
    Ipv6Addr::from(a)
}

pub(crate) fn put_u16(b: &mut [u8], at: usize, v: u16) {
    b[at..at + 2].copy_from_slice(&v.to_be_bytes());
}

pub(crate) fn put_u24(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 3].copy_from_slice(&v.to_be_bytes()[1..]);
}

pub(crate) fn put_u32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_be_bytes());
}

mod field {
    pub const VERSION: usize = 0;
    pub const TYPE: usize = 1;
    pub const LENGTH: usize = 2;
    pub const ROUTER_ID: usize = 4;
    pub const AREA_ID: usize = 8;
    pub const CHECKSUM: usize = 12;
    pub const INSTANCE_ID: usize = 14;
    pub const RESERVED: usize = 15;
}

/// Offset of the checksum in the packet header (for `IPV6_CHECKSUM`).
pub const CHECKSUM_OFFSET: usize = field::CHECKSUM;

/// A zero-copy view of an OSPFv3 packet: header plus body.
#[derive(Debug, Clone)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wrap a buffer without checking it; getters may panic on short input.
    pub fn new_unchecked(buffer: T) -> Self {
        Packet { buffer }
    }

    /// Wrap a buffer, checking the header fits and the length field is sane.
    ///
    /// Bytes after `packet_len()` (e.g. an RFC 7166 trailer) are allowed and ignored.
    pub fn new_checked(buffer: T) -> Result<Self, ParseError> {
        let p = Self::new_unchecked(buffer);
        let len = p.buffer.as_ref().len();
        if len < HEADER_LEN {
            return Err(ParseError::Truncated);
        }
        let declared = usize::from(p.packet_len());
        if declared < HEADER_LEN {
            return Err(ParseError::BadLength);
        }
        if declared > len {
            return Err(ParseError::Truncated);
        }
        Ok(p)
    }

    /// Return the underlying buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[field::VERSION]
    }

    pub fn packet_type(&self) -> PacketType {
        PacketType::from(self.buffer.as_ref()[field::TYPE])
    }

    pub fn packet_len(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::LENGTH)
    }

    pub fn router_id(&self) -> Ipv4Addr {
        get_id(self.buffer.as_ref(), field::ROUTER_ID)
    }

    pub fn area_id(&self) -> Ipv4Addr {
        get_id(self.buffer.as_ref(), field::AREA_ID)
    }

    pub fn checksum(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::CHECKSUM)
    }

    pub fn instance_id(&self) -> u8 {
        self.buffer.as_ref()[field::INSTANCE_ID]
    }

    /// Return the body: the bytes after the header up to the packet length.
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..usize::from(self.packet_len())]
    }

    /// Return the bytes covered by the length field.
    pub fn packet_bytes(&self) -> &[u8] {
        &self.buffer.as_ref()[..usize::from(self.packet_len())]
    }

    /// Verify the checksum over the IPv6 pseudo-header (RFC 5340 §4.2.2).
    pub fn verify_checksum(&self, src: Ipv6Addr, dst: Ipv6Addr) -> bool {
        checksum::ospf_checksum(src, dst, self.packet_bytes(), field::CHECKSUM) == self.checksum()
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    fn set_header(
        &mut self,
        ty: PacketType,
        len: u16,
        router_id: Ipv4Addr,
        area_id: Ipv4Addr,
        instance_id: u8,
    ) {
        let b = self.buffer.as_mut();
        b[field::VERSION] = VERSION;
        b[field::TYPE] = ty.into();
        put_u16(b, field::LENGTH, len);
        put_u32(b, field::ROUTER_ID, router_id.into());
        put_u32(b, field::AREA_ID, area_id.into());
        put_u16(b, field::CHECKSUM, 0);
        b[field::INSTANCE_ID] = instance_id;
        b[field::RESERVED] = 0;
    }

    /// Return the body for writing.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let len = usize::from(self.packet_len());
        &mut self.buffer.as_mut()[HEADER_LEN..len]
    }

    /// Compute and store the checksum over the IPv6 pseudo-header.
    pub fn fill_checksum(&mut self, src: Ipv6Addr, dst: Ipv6Addr) {
        let len = usize::from(self.packet_len());
        let sum = checksum::ospf_checksum(src, dst, &self.buffer.as_ref()[..len], field::CHECKSUM);
        put_u16(self.buffer.as_mut(), field::CHECKSUM, sum);
    }
}

/// The body of an OSPFv3 packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body {
    Hello(HelloRepr),
    DbDesc(DbDescRepr),
    LsRequest(LsRequestRepr),
    LsUpdate(LsUpdateRepr),
    LsAck(LsAckRepr),
}

impl Body {
    /// Return the packet type of this body.
    pub fn packet_type(&self) -> PacketType {
        match self {
            Body::Hello(_) => PacketType::Hello,
            Body::DbDesc(_) => PacketType::DbDesc,
            Body::LsRequest(_) => PacketType::LsRequest,
            Body::LsUpdate(_) => PacketType::LsUpdate,
            Body::LsAck(_) => PacketType::LsAck,
        }
    }

    fn buffer_len(&self) -> usize {
        match self {
            Body::Hello(r) => r.buffer_len(),
            Body::DbDesc(r) => r.buffer_len(),
            Body::LsRequest(r) => r.buffer_len(),
            Body::LsUpdate(r) => r.buffer_len(),
            Body::LsAck(r) => r.buffer_len(),
        }
    }
}

/// A parsed OSPFv3 packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PacketRepr {
    pub router_id: Ipv4Addr,
    pub area_id: Ipv4Addr,
    pub instance_id: u8,
    pub body: Body,
}

impl PacketRepr {
    /// Parse a checked packet. The checksum is not verified here (it needs the
    /// IPv6 addresses): see [`Packet::verify_checksum`].
    pub fn parse<T: AsRef<[u8]>>(packet: &Packet<T>) -> Result<Self, ParseError> {
        if packet.version() != VERSION {
            return Err(ParseError::BadVersion(packet.version()));
        }
        let payload = packet.payload();
        let body = match packet.packet_type() {
            PacketType::Hello => Body::Hello(HelloRepr::parse(payload)?),
            PacketType::DbDesc => Body::DbDesc(DbDescRepr::parse(payload)?),
            PacketType::LsRequest => Body::LsRequest(LsRequestRepr::parse(payload)?),
            PacketType::LsUpdate => Body::LsUpdate(LsUpdateRepr::parse(payload)?),
            PacketType::LsAck => Body::LsAck(LsAckRepr::parse(payload)?),
            PacketType::Unknown(t) => return Err(ParseError::UnknownPacketType(t)),
        };
        Ok(PacketRepr {
            router_id: packet.router_id(),
            area_id: packet.area_id(),
            instance_id: packet.instance_id(),
            body,
        })
    }

    /// Parse raw bytes (convenience for [`Packet::new_checked`] + [`PacketRepr::parse`]).
    pub fn parse_bytes(data: &[u8]) -> Result<Self, ParseError> {
        Self::parse(&Packet::new_checked(data)?)
    }

    /// Return the length of the emitted packet.
    pub fn buffer_len(&self) -> usize {
        HEADER_LEN + self.body.buffer_len()
    }

    /// Emit into `buffer`, which must be at least `buffer_len()` bytes; the
    /// checksum is left zero.
    pub fn emit(&self, buffer: &mut [u8]) {
        let len = self.buffer_len();
        let mut p = Packet::new_unchecked(&mut buffer[..len]);
        p.set_header(
            self.body.packet_type(),
            u16::try_from(len).unwrap_or(u16::MAX),
            self.router_id,
            self.area_id,
            self.instance_id,
        );
        let payload = p.payload_mut();
        match &self.body {
            Body::Hello(r) => r.emit(payload),
            Body::DbDesc(r) => r.emit(payload),
            Body::LsRequest(r) => r.emit(payload),
            Body::LsUpdate(r) => r.emit(payload),
            Body::LsAck(r) => r.emit(payload),
        }
    }

    /// Emit into a new buffer with the checksum computed for `src` -> `dst`.
    pub fn to_bytes(&self, src: Ipv6Addr, dst: Ipv6Addr) -> Vec<u8> {
        let mut buf = vec![0u8; self.buffer_len()];
        self.emit(&mut buf);
        Packet::new_unchecked(&mut buf[..]).fill_checksum(src, dst);
        buf
    }
}

/// Build a packet around an already encoded body; used by the flooding code,
/// which copies stored LSAs without re-encoding them.
pub(crate) fn build_raw(
    ty: PacketType,
    router_id: Ipv4Addr,
    instance_id: u8,
    body: &[u8],
    src: Ipv6Addr,
    dst: Ipv6Addr,
) -> Vec<u8> {
    let len = HEADER_LEN + body.len();
    let mut buf = vec![0u8; len];
    buf[HEADER_LEN..].copy_from_slice(body);
    let mut p = Packet::new_unchecked(&mut buf[..]);
    p.set_header(
        ty,
        u16::try_from(len).unwrap_or(u16::MAX),
        router_id,
        Ipv4Addr::UNSPECIFIED,
        instance_id,
    );
    p.fill_checksum(src, dst);
    buf
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_rejects_short_and_bad_length() {
        assert_eq!(
            Packet::new_checked(&[3u8; 10][..]).unwrap_err(),
            ParseError::Truncated
        );
        let mut b = [0u8; 16];
        b[0] = 3;
        b[1] = 1;
        b[3] = 8; // length 8 < header
        assert_eq!(
            Packet::new_checked(&b[..]).unwrap_err(),
            ParseError::BadLength
        );
        b[3] = 40; // length beyond buffer
        assert_eq!(
            Packet::new_checked(&b[..]).unwrap_err(),
            ParseError::Truncated
        );
    }

    #[test]
    fn wrong_version_and_unknown_type() {
        let mut b = [0u8; 16];
        b[0] = 2;
        b[1] = 1;
        b[3] = 16;
        assert_eq!(
            PacketRepr::parse_bytes(&b).unwrap_err(),
            ParseError::BadVersion(2)
        );
        b[0] = 3;
        b[1] = 9;
        assert_eq!(
            PacketRepr::parse_bytes(&b).unwrap_err(),
            ParseError::UnknownPacketType(9)
        );
    }
}
