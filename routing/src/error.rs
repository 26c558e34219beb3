//! What can go wrong with input from the network, and how it is counted.
//!
//! Nothing from the network may panic the core: malformed input becomes a
//! [`ParseError`], and every packet or LSA the core refuses is counted under a
//! [`DropReason`] and logged at most once per reason every few seconds.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::Time;

/// Why bytes could not be parsed as an OSPFv3 packet or LSA.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("truncated")]
    Truncated,
    #[error("length field inconsistent with contents")]
    BadLength,
    #[error("OSPF version {0}, want 3")]
    BadVersion(u8),
    #[error("unknown packet type {0}")]
    UnknownPacketType(u8),
    #[error("prefix length {0} over 128")]
    BadPrefixLength(u8),
    #[error("LSA length field shorter than its header or past the packet")]
    BadLsaLength,
    #[error("LSA body does not match its type")]
    BadLsaBody,
    #[error("Router-LSA link of type {0}, not 1, 2 or 4")]
    BadRouterLinkType(u8),
}

/// Why the core dropped a packet or an LSA.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum DropReason {
    /// Shorter than its headers or its length field.
    Truncated,
    /// Larger than any IPv6 datagram can be.
    Oversized,
    /// A length field that disagrees with the contents.
    BadLength,
    BadVersion,
    UnknownPacketType,
    BadChecksum,
    WrongArea,
    WrongInstanceId,
    /// Source address outside fe80::/10 (RFC 5340 §4.2.2).
    NonLinkLocalSource,
    /// Sent to an address we do not listen on (e.g. AllDRouters when not DR/BDR).
    BadDestination,
    /// Carries our own router id.
    OwnRouterId,
    /// Arrived on an interface we do not run on, or one that is down.
    UnknownInterface,
    /// Arrived on a passive interface.
    PassiveInterface,
    HelloIntervalMismatch,
    DeadIntervalMismatch,
    /// E-bit (or another option that must agree) differs from ours.
    OptionsMismatch,
    /// A DD packet announcing a larger MTU than ours (RFC 2328 §10.6).
    MtuMismatch,
    /// Not a Hello, and from a router we have no neighbour for.
    UnknownNeighbor,
    /// From a neighbour whose state does not allow this packet type.
    NeighborState,
    /// An LSA with a wrong Fletcher checksum (RFC 2328 §13 step 1).
    LsaBadChecksum,
    /// An LSA whose length field is impossible.
    LsaBadLength,
    /// An LSA whose body does not parse as its type says.
    LsaBadBody,
    /// An LSA with the reserved flooding scope.
    LsaReservedScope,
    /// A Router-LSA with a link type RFC 5340 A.4.3 does not define (BIRD
    /// refuses them too).
    LsaBadLinkType,
    /// A malformed prefix inside a packet or LSA.
    BadPrefix,
    /// Authentication is on and the packet has no trailer, or a Hello or
    /// DD packet lacks the AT-bit (RFC 7166 §2.1).
    AuthMissing,
    /// A trailer of another type or length.
    AuthBadTrailer,
    /// A trailer whose SA ID names no key valid now.
    AuthUnknownKey,
    /// A trailer whose digest does not match: a wrong key, or a changed
    /// packet.
    AuthBadDigest,
    /// A sequence number not above the last one accepted from that
    /// neighbour for that packet type (RFC 7166 §4.6): a replay.
    AuthReplay,
    /// Authentication is off and a Hello or DD packet carries the AT-bit.
    AuthUnexpected,
    /// Not sent: authentication is on and no key is valid for sending.
    AuthNoSendKey,
    /// A new LSA refused (acknowledged, neither installed nor requested)
    /// because its advertising router, or the whole database, is at its
    /// limit ([`crate::instance::LsdbLimits`]).
    LsdbFull,
}

impl DropReason {
    /// The counter an authentication failure goes under.
    pub fn from_auth(e: crate::packet::auth::AuthError) -> Self {
        use crate::packet::auth::AuthError as E;
        match e {
            E::Missing => DropReason::AuthMissing,
            E::BadType(_) | E::BadLength(_) => DropReason::AuthBadTrailer,
            E::UnknownKey(_) => DropReason::AuthUnknownKey,
            E::BadDigest => DropReason::AuthBadDigest,
        }
    }

    /// Map a parse error of a whole packet to the counter it goes under.
    pub fn from_parse(e: ParseError) -> Self {
        match e {
            ParseError::Truncated => DropReason::Truncated,
            ParseError::BadLength => DropReason::BadLength,
            ParseError::BadVersion(_) => DropReason::BadVersion,
            ParseError::UnknownPacketType(_) => DropReason::UnknownPacketType,
            ParseError::BadPrefixLength(_) => DropReason::BadPrefix,
            ParseError::BadLsaLength => DropReason::LsaBadLength,
            ParseError::BadLsaBody => DropReason::LsaBadBody,
            ParseError::BadRouterLinkType(_) => DropReason::LsaBadLinkType,
        }
    }
}

/// How long one reason stays quiet in the log after it was logged.
const LOG_INTERVAL_MS: u64 = 10_000;

/// Drop counters plus the rate limiter of their log lines.
#[derive(Debug, Default, Clone)]
pub(crate) struct DropLog {
    pub(crate) counters: BTreeMap<DropReason, u64>,
    /// Drops by the interface they arrived on.
    pub(crate) by_interface: BTreeMap<u32, u64>,
    /// Per reason: when it was last logged and how many drops went unlogged since.
    last: BTreeMap<DropReason, (Time, u64)>,
}

impl DropLog {
    /// Count a drop and log it unless the reason was logged recently.
    pub(crate) fn drop(&mut self, now: Time, reason: DropReason, ifindex: u32, detail: &str) {
        *self.counters.entry(reason).or_default() += 1;
        *self.by_interface.entry(ifindex).or_default() += 1;
        match self.last.get_mut(&reason) {
            Some((at, suppressed)) if now.0.saturating_sub(at.0) < LOG_INTERVAL_MS => {
                *suppressed += 1;
            }
            entry => {
                let suppressed = entry.map(|(_, s)| *s).unwrap_or(0);
                tracing::warn!(?reason, ifindex, detail, suppressed, "ospf: dropped input");
                self.last.insert(reason, (now, 0));
            }
        }
    }
}
