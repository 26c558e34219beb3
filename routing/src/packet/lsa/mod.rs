//! LSAs (RFC 5340 A.4): a header plus a body that depends on the LS type.
//!
//! Bodies of the four types the protocol core uses are parsed; every other
//! type, known or not, is carried as raw bytes so it can be stored and
//! flooded unchanged (RFC 5340 §4.5.1, the U-bit).

pub mod grace;
pub mod header;
pub mod intra_area_prefix;
pub mod link;
pub mod network;
pub mod router;

use serde::{Deserialize, Serialize};

use self::header::{HEADER_LEN, LsaHeader, LsaType};
use self::intra_area_prefix::IntraAreaPrefixLsa;
use self::link::LinkLsa;
use self::network::NetworkLsa;
use self::router::RouterLsa;
use super::checksum;
use crate::error::ParseError;

/// The body of an LSA.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum LsaBody {
    Router(RouterLsa),
    Network(NetworkLsa),
    Link(LinkLsa),
    IntraAreaPrefix(IntraAreaPrefixLsa),
    /// Any other type: the body bytes as received.
    Other(Vec<u8>),
}

impl LsaBody {
    /// Parse the body of an LSA of type `ls_type`.
    pub fn parse(ls_type: LsaType, body: &[u8]) -> Result<Self, ParseError> {
        Ok(match ls_type {
            LsaType::ROUTER => LsaBody::Router(RouterLsa::parse(body)?),
            LsaType::NETWORK => LsaBody::Network(NetworkLsa::parse(body)?),
            LsaType::LINK => LsaBody::Link(LinkLsa::parse(body)?),
            LsaType::INTRA_AREA_PREFIX => {
                LsaBody::IntraAreaPrefix(IntraAreaPrefixLsa::parse(body)?)
            }
            _ => LsaBody::Other(body.to_vec()),
        })
    }

    /// Return the encoded body length.
    pub fn buffer_len(&self) -> usize {
        match self {
            LsaBody::Router(b) => b.buffer_len(),
            LsaBody::Network(b) => b.buffer_len(),
            LsaBody::Link(b) => b.buffer_len(),
            LsaBody::IntraAreaPrefix(b) => b.buffer_len(),
            LsaBody::Other(b) => b.len(),
        }
    }

    /// Emit into `buf`, exactly `buffer_len()` bytes long.
    pub fn emit(&self, buf: &mut [u8]) {
        match self {
            LsaBody::Router(b) => b.emit(buf),
            LsaBody::Network(b) => b.emit(buf),
            LsaBody::Link(b) => b.emit(buf),
            LsaBody::IntraAreaPrefix(b) => b.emit(buf),
            LsaBody::Other(b) => buf.copy_from_slice(b),
        }
    }
}

/// A parsed LSA.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Lsa {
    pub header: LsaHeader,
    pub body: LsaBody,
}

impl Lsa {
    /// Parse one LSA that fills `buf` exactly (use [`lsa_len`] to delimit it).
    /// The checksum is not verified: see [`checksum::lsa_checksum_valid`].
    pub fn parse(buf: &[u8]) -> Result<Self, ParseError> {
        let header = LsaHeader::parse(buf)?;
        if usize::from(header.length) != buf.len() {
            return Err(ParseError::BadLsaLength);
        }
        let body = LsaBody::parse(header.ls_type, &buf[HEADER_LEN..])?;
        Ok(Lsa { header, body })
    }

    /// Return the encoded length.
    pub fn buffer_len(&self) -> usize {
        HEADER_LEN + self.body.buffer_len()
    }

    /// Emit into `buf` (at least `buffer_len()` bytes) as the header says,
    /// except the length, which is always the real one.
    pub fn emit(&self, buf: &mut [u8]) {
        let len = self.buffer_len();
        let mut h = self.header;
        h.length = u16::try_from(len).unwrap_or(u16::MAX);
        h.emit(buf);
        self.body.emit(&mut buf[HEADER_LEN..len]);
    }

    /// Encode for origination: fix the length and compute the checksum in
    /// both the bytes and `self.header`.
    pub fn encode(&mut self) -> Vec<u8> {
        let mut buf = vec![0u8; self.buffer_len()];
        self.header.length = u16::try_from(buf.len()).unwrap_or(u16::MAX);
        self.header.checksum = 0;
        self.emit(&mut buf);
        checksum::fill_lsa_checksum(&mut buf);
        self.header.checksum = super::get_u16(&buf, checksum::LSA_CHECKSUM_OFFSET);
        buf
    }
}

/// Return the length of the LSA at the start of `buf`, checked against the
/// buffer: at least a header, at most what is left.
pub fn lsa_len(buf: &[u8]) -> Result<usize, ParseError> {
    let header = header::LsaHeaderPacket::new_checked(buf)?;
    let len = usize::from(header.length());
    if len < HEADER_LEN || len > buf.len() {
        return Err(ParseError::BadLsaLength);
    }
    Ok(len)
}
