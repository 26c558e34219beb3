//! Link-LSA body (RFC 5340 A.4.9): a router's link-local address and
//! prefixes on one link, flooded only on that link.

use std::net::Ipv6Addr;

use serde::{Deserialize, Serialize};

use crate::error::ParseError;
use crate::packet::prefix::LsaPrefix;
use crate::packet::{Options, get_ipv6, get_u24, get_u32, put_u24, put_u32};

mod field {
    pub const PRIORITY: usize = 0;
    pub const OPTIONS: usize = 1;
    pub const LINK_LOCAL: usize = 4;
    pub const NUM_PREFIXES: usize = 20;
    pub const PREFIXES: usize = 24;
}

/// A parsed Link-LSA body.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct LinkLsa {
    pub priority: u8,
    pub options: Options,
    pub link_local: Ipv6Addr,
    pub prefixes: Vec<LsaPrefix>,
}

impl LinkLsa {
    /// Parse a body (the bytes after the LSA header).
    pub fn parse(body: &[u8]) -> Result<Self, ParseError> {
        if body.len() < field::PREFIXES {
            return Err(ParseError::BadLsaBody);
        }
        let count = get_u32(body, field::NUM_PREFIXES) as usize;
        let prefixes = LsaPrefix::parse_list(&body[field::PREFIXES..], count)
            .map_err(|_| ParseError::BadLsaBody)?;
        Ok(LinkLsa {
            priority: body[field::PRIORITY],
            options: Options(get_u24(body, field::OPTIONS)),
            link_local: get_ipv6(body, field::LINK_LOCAL),
            prefixes,
        })
    }

    /// Return the encoded body length.
    pub fn buffer_len(&self) -> usize {
        field::PREFIXES
            + self
                .prefixes
                .iter()
                .map(LsaPrefix::buffer_len)
                .sum::<usize>()
    }

    /// Emit the body into `buf` (exactly `buffer_len()` bytes long).
    pub fn emit(&self, buf: &mut [u8]) {
        buf[field::PRIORITY] = self.priority;
        put_u24(buf, field::OPTIONS, self.options.0);
        buf[field::LINK_LOCAL..field::LINK_LOCAL + 16].copy_from_slice(&self.link_local.octets());
        put_u32(buf, field::NUM_PREFIXES, self.prefixes.len() as u32);
        let mut at = field::PREFIXES;
        for p in &self.prefixes {
            at += p.emit(&mut buf[at..]);
        }
    }
}
