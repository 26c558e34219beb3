//! Database Description body (RFC 5340 A.3.3): the LSA headers exchanged
//! while an adjacency forms, with the master/slave and sequence machinery.

use crate::error::ParseError;
use crate::packet::lsa::header::{HEADER_LEN as LSA_HEADER_LEN, LsaHeader};
use crate::packet::{Options, get_u16, get_u24, get_u32, put_u16, put_u24, put_u32};

mod field {
    pub const OPTIONS: usize = 1;
    pub const MTU: usize = 4;
    pub const FLAGS: usize = 7;
    pub const SEQ: usize = 8;
    pub const HEADERS: usize = 12;
}

/// Length of a DD body without LSA headers.
pub const MIN_LEN: usize = field::HEADERS;

/// The I/M/MS flags of a DD packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct DdFlags(pub u8);

impl DdFlags {
    /// Master/slave: set by the master.
    pub const MS: u8 = 0x01;
    /// More packets follow.
    pub const M: u8 = 0x02;
    /// Initial packet.
    pub const I: u8 = 0x04;

    /// Return whether `bit` is set.
    pub fn contains(self, bit: u8) -> bool {
        self.0 & bit != 0
    }
}

/// A zero-copy view of a DD body.
#[derive(Debug, Clone)]
pub struct DbDescPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> DbDescPacket<T> {
    /// Wrap a body, checking the fixed part and that headers are whole.
    pub fn new_checked(buffer: T) -> Result<Self, ParseError> {
        let len = buffer.as_ref().len();
        if len < MIN_LEN {
            return Err(ParseError::Truncated);
        }
        if !(len - MIN_LEN).is_multiple_of(LSA_HEADER_LEN) {
            return Err(ParseError::BadLength);
        }
        Ok(DbDescPacket { buffer })
    }
    pub fn options(&self) -> Options {
        Options(get_u24(self.buffer.as_ref(), field::OPTIONS))
    }
    pub fn mtu(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::MTU)
    }
    pub fn flags(&self) -> DdFlags {
        DdFlags(self.buffer.as_ref()[field::FLAGS])
    }
    pub fn seq(&self) -> u32 {
        get_u32(self.buffer.as_ref(), field::SEQ)
    }
    /// Return the raw LSA header area.
    pub fn headers(&self) -> &[u8] {
        &self.buffer.as_ref()[field::HEADERS..]
    }
}

/// A parsed DD body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DbDescRepr {
    pub options: Options,
    pub mtu: u16,
    pub flags: DdFlags,
    pub seq: u32,
    pub lsa_headers: Vec<LsaHeader>,
}

impl DbDescRepr {
    /// Parse a DD body.
    pub fn parse(body: &[u8]) -> Result<Self, ParseError> {
        let p = DbDescPacket::new_checked(body)?;
        let lsa_headers = p
            .headers()
            .chunks_exact(LSA_HEADER_LEN)
            .map(LsaHeader::parse)
            .collect::<Result<_, _>>()?;
        Ok(DbDescRepr {
            options: p.options(),
            mtu: p.mtu(),
            flags: p.flags(),
            seq: p.seq(),
            lsa_headers,
        })
    }

    /// Return the encoded body length.
    pub fn buffer_len(&self) -> usize {
        MIN_LEN + LSA_HEADER_LEN * self.lsa_headers.len()
    }

    /// Emit into `buf`, exactly `buffer_len()` bytes long.
    pub fn emit(&self, buf: &mut [u8]) {
        buf[0] = 0;
        put_u24(buf, field::OPTIONS, self.options.0);
        put_u16(buf, field::MTU, self.mtu);
        buf[6] = 0;
        buf[field::FLAGS] = self.flags.0;
        put_u32(buf, field::SEQ, self.seq);
        for (h, out) in self
            .lsa_headers
            .iter()
            .zip(buf[field::HEADERS..].chunks_exact_mut(LSA_HEADER_LEN))
        {
            h.emit(out);
        }
    }
}
