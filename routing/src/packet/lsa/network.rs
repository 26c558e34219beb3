//! Network-LSA body (RFC 5340 A.4.4): the routers on a transit link, by its DR.

use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

use crate::error::ParseError;
use crate::packet::{Options, get_id, get_u24, put_u24, put_u32};

mod field {
    pub const OPTIONS: usize = 1;
    pub const ROUTERS: usize = 4;
}

/// A parsed Network-LSA body.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub struct NetworkLsa {
    pub options: Options,
    pub attached: Vec<Ipv4Addr>,
}

impl NetworkLsa {
    /// Parse a body (the bytes after the LSA header).
    pub fn parse(body: &[u8]) -> Result<Self, ParseError> {
        if body.len() < field::ROUTERS || !(body.len() - field::ROUTERS).is_multiple_of(4) {
            return Err(ParseError::BadLsaBody);
        }
        let attached = (field::ROUTERS..body.len())
            .step_by(4)
            .map(|at| get_id(body, at))
            .collect();
        Ok(NetworkLsa {
            options: Options(get_u24(body, field::OPTIONS)),
            attached,
        })
    }

    /// Return the encoded body length.
    pub fn buffer_len(&self) -> usize {
        field::ROUTERS + 4 * self.attached.len()
    }

    /// Emit the body into `buf` (exactly `buffer_len()` bytes long).
    pub fn emit(&self, buf: &mut [u8]) {
        buf[0] = 0;
        put_u24(buf, field::OPTIONS, self.options.0);
        for (i, r) in self.attached.iter().enumerate() {
            put_u32(buf, field::ROUTERS + 4 * i, (*r).into());
        }
    }
}
