//! Intra-Area-Prefix-LSA body (RFC 5340 A.4.10): the prefixes of a router
//! (referencing its Router-LSA) or of a transit link (referencing the DR's
//! Network-LSA). Stub prefixes like the node's /128 and pod prefix travel here.

use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

use super::header::LsaType;
use crate::error::ParseError;
use crate::packet::prefix::LsaPrefix;
use crate::packet::{get_id, get_u16, get_u32, put_u16, put_u32};

mod field {
    pub const NUM_PREFIXES: usize = 0;
    pub const REF_TYPE: usize = 2;
    pub const REF_LS_ID: usize = 4;
    pub const REF_ADV_ROUTER: usize = 8;
    pub const PREFIXES: usize = 12;
}

/// A parsed Intra-Area-Prefix-LSA body.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct IntraAreaPrefixLsa {
    pub ref_ls_type: LsaType,
    pub ref_ls_id: u32,
    pub ref_adv_router: Ipv4Addr,
    pub prefixes: Vec<LsaPrefix>,
}

impl IntraAreaPrefixLsa {
    /// Parse a body (the bytes after the LSA header).
    pub fn parse(body: &[u8]) -> Result<Self, ParseError> {
        if body.len() < field::PREFIXES {
            return Err(ParseError::BadLsaBody);
        }
        let count = usize::from(get_u16(body, field::NUM_PREFIXES));
        let prefixes = LsaPrefix::parse_list(&body[field::PREFIXES..], count)
            .map_err(|_| ParseError::BadLsaBody)?;
        Ok(IntraAreaPrefixLsa {
            ref_ls_type: LsaType(get_u16(body, field::REF_TYPE)),
            ref_ls_id: get_u32(body, field::REF_LS_ID),
            ref_adv_router: get_id(body, field::REF_ADV_ROUTER),
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
        put_u16(buf, field::NUM_PREFIXES, self.prefixes.len() as u16);
        put_u16(buf, field::REF_TYPE, self.ref_ls_type.0);
        put_u32(buf, field::REF_LS_ID, self.ref_ls_id);
        put_u32(buf, field::REF_ADV_ROUTER, self.ref_adv_router.into());
        let mut at = field::PREFIXES;
        for p in &self.prefixes {
            at += p.emit(&mut buf[at..]);
        }
    }
}
