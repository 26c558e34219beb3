//! Hello packet body (RFC 5340 A.3.2): neighbour discovery, two-way check and
//! DR election input.

use std::net::Ipv4Addr;

use crate::error::ParseError;
use crate::packet::{Options, get_id, get_u16, get_u24, get_u32, put_u16, put_u24, put_u32};

mod field {
    pub const INTERFACE_ID: usize = 0;
    pub const PRIORITY: usize = 4;
    pub const OPTIONS: usize = 5;
    pub const HELLO_INTERVAL: usize = 8;
    pub const DEAD_INTERVAL: usize = 10;
    pub const DR: usize = 12;
    pub const BDR: usize = 16;
    pub const NEIGHBORS: usize = 20;
}

/// Length of a Hello body without neighbours.
pub const MIN_LEN: usize = field::NEIGHBORS;

/// A zero-copy view of a Hello body.
#[derive(Debug, Clone)]
pub struct HelloPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> HelloPacket<T> {
    /// Wrap a body, checking the fixed part and that neighbours are whole.
    pub fn new_checked(buffer: T) -> Result<Self, ParseError> {
        let len = buffer.as_ref().len();
        if len < MIN_LEN {
            return Err(ParseError::Truncated);
        }
        if !(len - MIN_LEN).is_multiple_of(4) {
            return Err(ParseError::BadLength);
        }
        Ok(HelloPacket { buffer })
    }
    pub fn interface_id(&self) -> u32 {
        get_u32(self.buffer.as_ref(), field::INTERFACE_ID)
    }
    pub fn priority(&self) -> u8 {
        self.buffer.as_ref()[field::PRIORITY]
    }
    pub fn options(&self) -> Options {
        Options(get_u24(self.buffer.as_ref(), field::OPTIONS))
    }
    pub fn hello_interval(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::HELLO_INTERVAL)
    }
    pub fn dead_interval(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::DEAD_INTERVAL)
    }
    pub fn dr(&self) -> Ipv4Addr {
        get_id(self.buffer.as_ref(), field::DR)
    }
    pub fn bdr(&self) -> Ipv4Addr {
        get_id(self.buffer.as_ref(), field::BDR)
    }
    /// Iterate over the router ids of the neighbours seen.
    pub fn neighbors(&self) -> impl Iterator<Item = Ipv4Addr> + '_ {
        let b = self.buffer.as_ref();
        (field::NEIGHBORS..b.len())
            .step_by(4)
            .map(move |at| get_id(b, at))
    }
}

/// A parsed Hello body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HelloRepr {
    pub interface_id: u32,
    pub priority: u8,
    pub options: Options,
    pub hello_interval: u16,
    pub dead_interval: u16,
    /// Router id of the DR, 0.0.0.0 if none.
    pub dr: Ipv4Addr,
    /// Router id of the BDR, 0.0.0.0 if none.
    pub bdr: Ipv4Addr,
    pub neighbors: Vec<Ipv4Addr>,
}

impl HelloRepr {
    /// Parse a Hello body.
    pub fn parse(body: &[u8]) -> Result<Self, ParseError> {
        let p = HelloPacket::new_checked(body)?;
        Ok(HelloRepr {
            interface_id: p.interface_id(),
            priority: p.priority(),
            options: p.options(),
            hello_interval: p.hello_interval(),
            dead_interval: p.dead_interval(),
            dr: p.dr(),
            bdr: p.bdr(),
            neighbors: p.neighbors().collect(),
        })
    }

    /// Return the encoded body length.
    pub fn buffer_len(&self) -> usize {
        MIN_LEN + 4 * self.neighbors.len()
    }

    /// Emit into `buf`, exactly `buffer_len()` bytes long.
    pub fn emit(&self, buf: &mut [u8]) {
        put_u32(buf, field::INTERFACE_ID, self.interface_id);
        buf[field::PRIORITY] = self.priority;
        put_u24(buf, field::OPTIONS, self.options.0);
        put_u16(buf, field::HELLO_INTERVAL, self.hello_interval);
        put_u16(buf, field::DEAD_INTERVAL, self.dead_interval);
        put_u32(buf, field::DR, self.dr.into());
        put_u32(buf, field::BDR, self.bdr.into());
        for (i, n) in self.neighbors.iter().enumerate() {
            put_u32(buf, field::NEIGHBORS + 4 * i, (*n).into());
        }
    }
}
