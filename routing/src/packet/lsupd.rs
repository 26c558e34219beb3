//! Link State Update body (RFC 5340 A.3.5): a count and that many LSAs.

use crate::error::ParseError;
use crate::packet::lsa::{Lsa, lsa_len};
use crate::packet::{get_u32, put_u32};

/// Length of the LSA count before the LSAs.
pub const MIN_LEN: usize = 4;

/// A zero-copy view of an LS Update body.
#[derive(Debug, Clone)]
pub struct LsUpdatePacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> LsUpdatePacket<T> {
    /// Wrap a body, checking the count field is there.
    pub fn new_checked(buffer: T) -> Result<Self, ParseError> {
        if buffer.as_ref().len() < MIN_LEN {
            return Err(ParseError::Truncated);
        }
        Ok(LsUpdatePacket { buffer })
    }

    /// Return the number of LSAs the packet claims to carry.
    pub fn count(&self) -> u32 {
        get_u32(self.buffer.as_ref(), 0)
    }

    /// Iterate over the raw LSAs, each delimited by its length field. The
    /// iteration stops after the first LSA whose length is impossible (it
    /// yields the error): nothing after it can be delimited.
    pub fn lsas(&self) -> LsaIter<'_> {
        LsaIter {
            rest: &self.buffer.as_ref()[MIN_LEN..],
            left: self.count(),
            failed: false,
        }
    }
}

/// Iterator over the raw LSAs of an LS Update.
#[derive(Debug)]
pub struct LsaIter<'a> {
    rest: &'a [u8],
    left: u32,
    failed: bool,
}

impl<'a> Iterator for LsaIter<'a> {
    type Item = Result<&'a [u8], ParseError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.left == 0 || self.failed {
            return None;
        }
        self.left -= 1;
        match lsa_len(self.rest) {
            Ok(len) => {
                let (lsa, rest) = self.rest.split_at(len);
                self.rest = rest;
                Some(Ok(lsa))
            }
            Err(e) => {
                self.failed = true;
                Some(Err(e))
            }
        }
    }
}

/// A parsed LS Update body.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LsUpdateRepr {
    pub lsas: Vec<Lsa>,
}

impl LsUpdateRepr {
    /// Parse an LS Update body; any malformed LSA fails the whole packet.
    pub fn parse(body: &[u8]) -> Result<Self, ParseError> {
        let p = LsUpdatePacket::new_checked(body)?;
        let mut lsas = Vec::new();
        let mut used = MIN_LEN;
        for raw in p.lsas() {
            let raw = raw?;
            used += raw.len();
            lsas.push(Lsa::parse(raw)?);
        }
        if used != body.len() {
            return Err(ParseError::BadLength);
        }
        Ok(LsUpdateRepr { lsas })
    }

    /// Return the encoded body length.
    pub fn buffer_len(&self) -> usize {
        MIN_LEN + self.lsas.iter().map(Lsa::buffer_len).sum::<usize>()
    }

    /// Emit into `buf`, exactly `buffer_len()` bytes long.
    pub fn emit(&self, buf: &mut [u8]) {
        put_u32(buf, 0, self.lsas.len() as u32);
        let mut at = MIN_LEN;
        for lsa in &self.lsas {
            let n = lsa.buffer_len();
            lsa.emit(&mut buf[at..at + n]);
            at += n;
        }
    }
}
