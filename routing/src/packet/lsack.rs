//! Link State Acknowledgment body (RFC 5340 A.3.6): LSA headers.

use crate::error::ParseError;
use crate::packet::lsa::header::{HEADER_LEN as LSA_HEADER_LEN, LsaHeader};

/// A zero-copy view of an LS Ack body.
#[derive(Debug, Clone)]
pub struct LsAckPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> LsAckPacket<T> {
    /// Wrap a body, checking headers are whole.
    pub fn new_checked(buffer: T) -> Result<Self, ParseError> {
        if !buffer.as_ref().len().is_multiple_of(LSA_HEADER_LEN) {
            return Err(ParseError::BadLength);
        }
        Ok(LsAckPacket { buffer })
    }

    /// Iterate over the acknowledged headers.
    pub fn headers(&self) -> impl Iterator<Item = LsaHeader> + '_ {
        // Chunks are exactly a header long, so parsing cannot fail.
        self.buffer
            .as_ref()
            .chunks_exact(LSA_HEADER_LEN)
            .filter_map(|c| LsaHeader::parse(c).ok())
    }
}

/// A parsed LS Ack body.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LsAckRepr {
    pub headers: Vec<LsaHeader>,
}

impl LsAckRepr {
    /// Parse an LS Ack body.
    pub fn parse(body: &[u8]) -> Result<Self, ParseError> {
        Ok(LsAckRepr {
            headers: LsAckPacket::new_checked(body)?.headers().collect(),
        })
    }

    /// Return the encoded body length.
    pub fn buffer_len(&self) -> usize {
        LSA_HEADER_LEN * self.headers.len()
    }

    /// Emit into `buf`, exactly `buffer_len()` bytes long.
    pub fn emit(&self, buf: &mut [u8]) {
        for (h, out) in self
            .headers
            .iter()
            .zip(buf.chunks_exact_mut(LSA_HEADER_LEN))
        {
            h.emit(out);
        }
    }
}
