//! The Grace-LSA of OSPFv3 graceful restart (RFC 5187 §2, RFC 3623 App. A):
//! LS type 0x000b (link-local scope, function code 11), Link State ID the
//! interface id, a body of TLVs laid out as in RFC 3630 §2.3.2 (type and
//! length in 16 bits each, the value padded to 4 bytes, the padding not
//! counted).
//!
//! The body is stored and flooded as received ([`super::LsaBody::Other`]),
//! so TLVs this code does not know travel unchanged; [`Grace::parse`]
//! reads the two that matter out of it.

use crate::packet::{get_u16, get_u32, put_u16, put_u32};

/// Grace Period TLV: seconds, 32 bits.
const TLV_GRACE_PERIOD: u16 = 1;
/// Graceful Restart Reason TLV: 8 bits.
const TLV_REASON: u16 = 2;

/// Why a router restarts (RFC 3623 App. A).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum RestartReason {
    Unknown,
    SoftwareRestart,
    SoftwareUpgrade,
    SwitchToRedundant,
}

impl RestartReason {
    fn code(self) -> u8 {
        match self {
            RestartReason::Unknown => 0,
            RestartReason::SoftwareRestart => 1,
            RestartReason::SoftwareUpgrade => 2,
            RestartReason::SwitchToRedundant => 3,
        }
    }

    fn from_code(code: u8) -> Option<Self> {
        Some(match code {
            0 => RestartReason::Unknown,
            1 => RestartReason::SoftwareRestart,
            2 => RestartReason::SoftwareUpgrade,
            3 => RestartReason::SwitchToRedundant,
            _ => return None,
        })
    }
}

/// What a Grace-LSA says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Grace {
    /// Seconds from origination (LS age 0) the restart may take.
    pub period: u32,
    pub reason: RestartReason,
}

impl Grace {
    /// Read the two TLVs out of a body; `None` if either is missing or
    /// malformed, or the reason unknown: such an LSA is flooded like any
    /// other and starts no helping (RFC 3623 §3.1).
    pub fn parse(body: &[u8]) -> Option<Grace> {
        let (mut period, mut reason) = (None, None);
        let mut at = 0;
        while at + 4 <= body.len() {
            let ty = get_u16(body, at);
            let len = usize::from(get_u16(body, at + 2));
            let value = body.get(at + 4..at + 4 + len)?;
            match (ty, len) {
                (TLV_GRACE_PERIOD, 4) => period = Some(get_u32(value, 0)),
                (TLV_REASON, 1) => reason = RestartReason::from_code(value[0]),
                _ => {}
            }
            at += 4 + len.div_ceil(4) * 4;
        }
        Some(Grace {
            period: period?,
            reason: reason?,
        })
    }

    /// Return the body: the grace period, then the reason.
    pub fn emit(&self) -> Vec<u8> {
        let mut buf = vec![0u8; 16];
        put_u16(&mut buf, 0, TLV_GRACE_PERIOD);
        put_u16(&mut buf, 2, 4);
        put_u32(&mut buf, 4, self.period);
        put_u16(&mut buf, 8, TLV_REASON);
        put_u16(&mut buf, 10, 1);
        buf[12] = self.reason.code();
        buf
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_layout() {
        let g = Grace {
            period: 120,
            reason: RestartReason::SoftwareRestart,
        };
        let body = g.emit();
        // RFC 3623 App. A: type 1 len 4, then type 2 len 1 plus padding.
        assert_eq!(body, [0, 1, 0, 4, 0, 0, 0, 120, 0, 2, 0, 1, 1, 0, 0, 0]);
        assert_eq!(Grace::parse(&body), Some(g));
    }

    #[test]
    fn unknown_tlvs_are_skipped_and_missing_ones_refused() {
        // An unknown TLV of 3 bytes (padded to 4) before the two.
        let mut body = vec![0, 9, 0, 3, 1, 2, 3, 0];
        body.extend(
            Grace {
                period: 60,
                reason: RestartReason::Unknown,
            }
            .emit(),
        );
        assert_eq!(Grace::parse(&body).map(|g| g.period), Some(60));
        // Only the period: no helping.
        assert_eq!(Grace::parse(&body[..16]), None);
        // Truncated value, bad reason, empty: no panic, no helping.
        assert_eq!(Grace::parse(&[0, 1, 0, 4, 0, 0]), None);
        assert_eq!(
            Grace::parse(&[0, 1, 0, 4, 0, 0, 0, 9, 0, 2, 0, 1, 7, 0, 0, 0]),
            None
        );
        assert_eq!(Grace::parse(&[]), None);
    }
}
