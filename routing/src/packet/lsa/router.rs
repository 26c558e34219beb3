//! Router-LSA body (RFC 5340 A.4.3): the router's links into the area.

use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

use crate::error::ParseError;
use crate::packet::{
    Options, enum_with_unknown, get_id, get_u16, get_u24, get_u32, put_u16, put_u24, put_u32,
};

mod field {
    pub const FLAGS: usize = 0;
    pub const OPTIONS: usize = 1;
    pub const LINKS: usize = 4;
    // Inside one link description.
    pub const LINK_TYPE: usize = 0;
    pub const METRIC: usize = 2;
    pub const INTERFACE_ID: usize = 4;
    pub const NBR_INTERFACE_ID: usize = 8;
    pub const NBR_ROUTER_ID: usize = 12;
    pub const LINK_LEN: usize = 16;
}

enum_with_unknown! {
    /// Type of a Router-LSA link.
    pub enum RouterLinkType(u8) {
        PointToPoint = 1,
        Transit = 2,
        Virtual = 4,
    }
}

/// Router-LSA flags byte (Nt, x, V, E, B).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub struct RouterFlags(pub u8);

impl RouterFlags {
    pub const B: u8 = 0x01;
    pub const E: u8 = 0x02;
    pub const V: u8 = 0x04;
    pub const NT: u8 = 0x10;
}

/// One link of a Router-LSA.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct RouterLink {
    pub link_type: RouterLinkType,
    pub metric: u16,
    /// Our interface id (ifindex).
    pub interface_id: u32,
    /// The neighbour's interface id (the DR's for transit links).
    pub neighbor_interface_id: u32,
    /// The neighbour's router id (the DR's for transit links).
    pub neighbor_router_id: Ipv4Addr,
}

/// A parsed Router-LSA body.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub struct RouterLsa {
    pub flags: RouterFlags,
    pub options: Options,
    pub links: Vec<RouterLink>,
}

impl RouterLsa {
    /// Parse a body (the bytes after the LSA header).
    pub fn parse(body: &[u8]) -> Result<Self, ParseError> {
        if body.len() < field::LINKS || !(body.len() - field::LINKS).is_multiple_of(field::LINK_LEN)
        {
            return Err(ParseError::BadLsaBody);
        }
        let links = body[field::LINKS..]
            .chunks_exact(field::LINK_LEN)
            .map(|l| {
                let link_type = RouterLinkType::from(l[field::LINK_TYPE]);
                // RFC 5340 A.4.3 defines 1, 2 and 4; 3 is reserved.
                if let RouterLinkType::Unknown(t) = link_type {
                    return Err(ParseError::BadRouterLinkType(t));
                }
                Ok(RouterLink {
                    link_type,
                    metric: get_u16(l, field::METRIC),
                    interface_id: get_u32(l, field::INTERFACE_ID),
                    neighbor_interface_id: get_u32(l, field::NBR_INTERFACE_ID),
                    neighbor_router_id: get_id(l, field::NBR_ROUTER_ID),
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(RouterLsa {
            flags: RouterFlags(body[field::FLAGS]),
            options: Options(get_u24(body, field::OPTIONS)),
            links,
        })
    }

    /// Return the encoded body length.
    pub fn buffer_len(&self) -> usize {
        field::LINKS + self.links.len() * field::LINK_LEN
    }

    /// Emit the body into `buf` (exactly `buffer_len()` bytes long).
    pub fn emit(&self, buf: &mut [u8]) {
        buf[field::FLAGS] = self.flags.0;
        put_u24(buf, field::OPTIONS, self.options.0);
        for (l, out) in self
            .links
            .iter()
            .zip(buf[field::LINKS..].chunks_exact_mut(field::LINK_LEN))
        {
            out[field::LINK_TYPE] = l.link_type.into();
            out[1] = 0;
            put_u16(out, field::METRIC, l.metric);
            put_u32(out, field::INTERFACE_ID, l.interface_id);
            put_u32(out, field::NBR_INTERFACE_ID, l.neighbor_interface_id);
            put_u32(out, field::NBR_ROUTER_ID, l.neighbor_router_id.into());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(link_type: u8) -> Vec<u8> {
        let lsa = RouterLsa {
            links: vec![RouterLink {
                link_type: RouterLinkType::PointToPoint,
                metric: 10,
                interface_id: 1,
                neighbor_interface_id: 2,
                neighbor_router_id: Ipv4Addr::new(198, 18, 0, 2),
            }],
            ..Default::default()
        };
        let mut buf = vec![0; lsa.buffer_len()];
        lsa.emit(&mut buf);
        buf[field::LINKS + field::LINK_TYPE] = link_type;
        buf
    }

    #[test]
    fn only_the_link_types_rfc_5340_defines_parse() {
        for t in [1, 2, 4] {
            assert!(RouterLsa::parse(&body(t)).is_ok(), "type {t}");
        }
        for t in [0, 3, 5, 255] {
            assert_eq!(
                RouterLsa::parse(&body(t)),
                Err(ParseError::BadRouterLinkType(t)),
                "type {t}"
            );
        }
    }
}
