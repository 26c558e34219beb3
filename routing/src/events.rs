//! The sans-IO boundary: what goes into the core ([`Input`]) and what comes
//! out ([`Output`]). The tokio driver and the simulator both speak only this.

use std::net::{Ipv4Addr, Ipv6Addr};

use crate::interface::InterfaceConfig;
use crate::route::RibDiff;
use ipnet::Ipv6Net;

/// Monotonic milliseconds since an arbitrary epoch, supplied by the caller.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Default,
    serde::Serialize,
    serde::Deserialize,
)]
pub struct Time(pub u64);

impl Time {
    /// Return this time plus `ms` milliseconds.
    pub fn plus_ms(self, ms: u64) -> Time {
        Time(self.0.saturating_add(ms))
    }

    /// Return this time plus `s` seconds.
    pub fn plus_secs(self, s: u16) -> Time {
        self.plus_ms(u64::from(s) * 1000)
    }

    /// Return the milliseconds from `earlier` to `self` (0 if negative).
    pub fn since(self, earlier: Time) -> u64 {
        self.0.saturating_sub(earlier.0)
    }
}

/// Something that happened to the router.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// An interface to run on came up (or its configuration changed).
    InterfaceUp {
        ifindex: u32,
        name: String,
        link_local: Ipv6Addr,
        mtu: u16,
        config: InterfaceConfig,
    },
    /// An interface went away or lost carrier.
    InterfaceDown { ifindex: u32 },
    /// An OSPF packet (no IPv6 header) arrived on `ifindex` from `src` to `dst`.
    Packet {
        ifindex: u32,
        src: Ipv6Addr,
        dst: Ipv6Addr,
        data: Vec<u8>,
    },
    /// A timer armed by [`Output::ArmTimer`] expired.
    Timer(TimerId),
    /// Replace the prefixes advertised without an interface.
    SetStubPrefixes(Vec<Ipv6Net>),
    /// The IPv4 address an IPv4 instance puts into its Link-LSAs changed
    /// (the node's address moved with its prefix): re-originate them with
    /// it (RFC 5838 §2.5). An IPv6 instance ignores it.
    SetInterfaceAddress4(Option<Ipv4Addr>),
    /// A planned restart follows (RFC 3623 §2.1): announce a Grace-LSA on
    /// every interface now. The embedding then stops the instance without
    /// taking its interfaces down ([`crate::driver`]'s graceful stop), and
    /// starts the next one restarting ([`crate::gr::GracefulRestart`]).
    PrepareRestart {
        period: u32,
        reason: crate::packet::lsa::grace::RestartReason,
    },
    /// A neighbour's forwarding path failed, as BFD saw it (RFC 5882
    /// §4.1.1): take the adjacency down at once (KillNbr) rather than wait
    /// for the dead interval.
    NeighborDown { ifindex: u32, router_id: Ipv4Addr },
    /// Give the router id up: flush every LSA we originated (premature
    /// aging, RFC 2328 §14.1) and originate none from now on, so the old
    /// identity leaves every LSDB at once instead of after an hour.
    Retire,
}

/// Something the caller must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Send an OSPF packet. The checksum is already filled in for the
    /// interface's link-local source address and `dst`; a kernel with
    /// `IPV6_CHECKSUM` set recomputes the same value.
    Send {
        ifindex: u32,
        dst: Ipv6Addr,
        data: Vec<u8>,
    },
    /// Deliver `Input::Timer(id)` at `at`; re-arming the same id replaces it.
    ArmTimer { id: TimerId, at: Time },
    /// Forget the timer `id` (a late delivery is harmless all the same).
    CancelTimer(TimerId),
    /// The routes changed.
    RibChanged(RibDiff),
}

/// An opaque timer name. It carries ids, never references: a timer that
/// fires for a neighbour or interface that is gone (or was cancelled) is
/// ignored, and one delivered before the deadline the core last set for it
/// is answered with the same `ArmTimer` again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TimerId(pub(crate) TimerKind);

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum TimerKind {
    /// Send a Hello on the interface.
    Hello(u32),
    /// The broadcast Wait timer (RFC 2328 §9.4) of the interface.
    Wait(u32),
    /// Send the interface's delayed acknowledgements.
    DelayedAck(u32),
    /// The neighbour's dead interval ran out.
    Inactivity(u32, Ipv4Addr),
    /// Retransmit DD packets, LS requests or LSAs to the neighbour.
    Retransmit(u32, Ipv4Addr),
    /// Run SPF (RFC 8405 SPF_TIMER).
    SpfDelay,
    /// RFC 8405 HOLDDOWN_TIMER.
    SpfHoldDown,
    /// RFC 8405 LEARN_TIMER.
    SpfLearn,
    /// Originate LSAs held back by MinLSInterval.
    Originate,
    /// LSDB aging: refresh own LSAs, flush and remove MaxAge ones.
    Aging,
    /// Look again at LSAs put aside under MinLSArrival.
    Deferred,
    /// Stop helping a restarting neighbour: its grace period is over.
    HelperGrace(u32, Ipv4Addr),
    /// Our own graceful restart's grace period is over.
    GraceEnd,
}
