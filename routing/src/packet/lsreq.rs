//! Link State Request body (RFC 5340 A.3.4): the LSAs a router still needs
//! after the DD exchange.

use std::net::Ipv4Addr;

use crate::error::ParseError;
use crate::packet::lsa::header::{LsaKey, LsaType};
use crate::packet::{get_id, get_u16, get_u32, put_u16, put_u32};

mod field {
    pub const TYPE: usize = 2;
    pub const LS_ID: usize = 4;
    pub const ADV_ROUTER: usize = 8;
    pub const ENTRY_LEN: usize = 12;
}

/// Length of one request entry.
pub const ENTRY_LEN: usize = field::ENTRY_LEN;

/// A zero-copy view of an LS Request body.
#[derive(Debug, Clone)]
pub struct LsRequestPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> LsRequestPacket<T> {
    /// Wrap a body, checking entries are whole.
    pub fn new_checked(buffer: T) -> Result<Self, ParseError> {
        if !buffer.as_ref().len().is_multiple_of(ENTRY_LEN) {
            return Err(ParseError::BadLength);
        }
        Ok(LsRequestPacket { buffer })
    }

    /// Iterate over the requested LSAs.
    pub fn entries(&self) -> impl Iterator<Item = LsaKey> + '_ {
        self.buffer
            .as_ref()
            .chunks_exact(ENTRY_LEN)
            .map(|e| LsaKey {
                ls_type: LsaType(get_u16(e, field::TYPE)),
                ls_id: get_u32(e, field::LS_ID),
                adv_router: get_id(e, field::ADV_ROUTER),
            })
    }
}

/// A parsed LS Request body.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LsRequestRepr {
    pub entries: Vec<LsaKey>,
}

impl LsRequestRepr {
    /// Parse an LS Request body.
    pub fn parse(body: &[u8]) -> Result<Self, ParseError> {
        Ok(LsRequestRepr {
            entries: LsRequestPacket::new_checked(body)?.entries().collect(),
        })
    }

    /// Return the encoded body length.
    pub fn buffer_len(&self) -> usize {
        ENTRY_LEN * self.entries.len()
    }

    /// Emit into `buf`, exactly `buffer_len()` bytes long.
    pub fn emit(&self, buf: &mut [u8]) {
        for (k, out) in self.entries.iter().zip(buf.chunks_exact_mut(ENTRY_LEN)) {
            put_u16(out, 0, 0);
            put_u16(out, field::TYPE, k.ls_type.0);
            put_u32(out, field::LS_ID, k.ls_id);
            put_u32(out, field::ADV_ROUTER, Ipv4Addr::into(k.adv_router));
        }
    }
}
