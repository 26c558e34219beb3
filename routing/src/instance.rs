//! The OSPFv3 instance: one router in area 0, driven by [`Input`]s.
//!
//! `handle` takes one input, lets the interface, neighbour and flooding code
//! react, and then does the deferred work in a fixed order (`finish`): LSA
//! origination, sending queued floods and acks, the SPF back-off. Nothing in
//! here reads a clock, opens a socket or draws a random number.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::{Ipv4Addr, Ipv6Addr};

use serde::{Deserialize, Serialize};

use crate::error::{DropLog, DropReason};
use crate::events::{Input, Output, Time, TimerId, TimerKind};
use crate::interface::{Interface, ism};
use crate::lsdb::Lsdb;
use crate::neighbor::nsm;
use crate::packet::lsa::LsaBody;
use crate::packet::lsa::header::{LsaHeader, LsaKey};
use crate::packet::{
    ALL_D_ROUTERS, ALL_SPF_ROUTERS, Body, Packet, PacketRepr, PacketType, dbdesc::DbDescRepr,
    hello::HelloRepr,
};
use crate::route::Rib;
use crate::spf::{SpfBackoffConfig, SpfScheduler};
use ipnet::Ipv6Net;

/// Settings of the whole router.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct InstanceConfig {
    pub router_id: Ipv4Addr,
    /// What the instance routes (RFC 5838); its interfaces' Instance IDs
    /// should lie in the family's range.
    #[serde(default)]
    pub af: crate::af::AddressFamily,
    /// Prefixes advertised without an interface (the node's /128, its pod
    /// prefix). An IPv4 instance takes them as [`crate::af::ipv4_to_wire`]
    /// gives them.
    pub stub_prefixes: Vec<Ipv6Net>,
    /// Largest ECMP set kept per prefix.
    pub max_paths: usize,
    pub spf: SpfBackoffConfig,
    /// MinLSInterval (RFC 2328 appendix B), milliseconds: the longest hold
    /// between two originations of one LSA. The first re-origination after
    /// a quiet MinLSInterval waits only `min_ls_hold_ms`; each following
    /// one doubles the hold up to MinLSInterval (an origination throttle
    /// as routers commonly run, so a router's own links are known at once
    /// when its first adjacency forms, not MinLSInterval after it started).
    pub min_ls_interval_ms: u64,
    /// The first hold, milliseconds: at least the neighbours' MinLSArrival
    /// (1 s by RFC 2328), or they would discard the new instance.
    pub min_ls_hold_ms: u64,
    /// MinLSArrival (RFC 2328 appendix B), milliseconds.
    pub min_ls_arrival_ms: u64,
    /// How many times this router has started, kept across restarts by the
    /// embedding: the high 32 bits of every authentication sequence number,
    /// so they keep rising after a restart (RFC 7166 §4.1).
    pub auth_boot_count: u32,
    /// The wall clock at [`Time`] 0, in milliseconds since the Unix epoch:
    /// key lifetimes are wall-clock times. The driver sets it.
    pub epoch_unix_ms: u64,
    /// Who may advertise what (none: every prefix is believed).
    pub prefix_policy: Option<crate::ownership::PrefixPolicy>,
    pub lsdb_limits: LsdbLimits,
    /// Graceful restart, both roles (see [`crate::gr`]).
    #[serde(default)]
    pub graceful_restart: crate::gr::GracefulRestart,
}

/// How many LSAs the database takes, from one router and in all.
///
/// At a limit the router refuses the excess: a new LSA (one whose key the
/// database does not hold yet) is acknowledged, so the sender stops
/// retransmitting it, but neither installed, nor flooded, nor requested in
/// a database exchange, and it is counted as [`crate::DropReason::LsdbFull`].
/// Newer instances of LSAs already held are always taken, so the routers
/// already known keep converging; our own LSAs are never refused. This
/// keeps a flood of junk from growing the database (and every table built
/// from it) without bound; the junk already taken leaves with MaxAge.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct LsdbLimits {
    pub per_router: usize,
    pub total: usize,
}

impl Default for LsdbLimits {
    /// Far above any area this crate is meant for; embeddings that know
    /// their size set tighter ones.
    fn default() -> Self {
        LsdbLimits {
            per_router: 10_000,
            total: 200_000,
        }
    }
}

impl Instance {
    /// Whether a new LSA for `key` must be refused under the limits.
    pub(crate) fn over_limit(&self, ifindex: u32, key: &LsaKey) -> bool {
        let limits = self.config.lsdb_limits;
        key.adv_router != self.config.router_id
            && self.lsdb.get(ifindex, key).is_none()
            && (self.lsdb.count_of(key.adv_router) >= limits.per_router
                || self.lsdb.len() >= limits.total)
    }
}

impl Default for InstanceConfig {
    fn default() -> Self {
        InstanceConfig {
            router_id: Ipv4Addr::UNSPECIFIED,
            af: crate::af::AddressFamily::Ipv6,
            stub_prefixes: Vec::new(),
            max_paths: 16,
            spf: SpfBackoffConfig::default(),
            min_ls_interval_ms: 5000,
            min_ls_hold_ms: 1000,
            min_ls_arrival_ms: 1000,
            auth_boot_count: 0,
            epoch_unix_ms: 0,
            prefix_policy: None,
            lsdb_limits: LsdbLimits::default(),
            graceful_restart: crate::gr::GracefulRestart::default(),
        }
    }
}

/// One OSPFv3 router.
#[derive(Debug)]
pub struct Instance {
    pub(crate) config: InstanceConfig,
    /// The time of the input being handled (or the last one).
    pub(crate) now: Time,
    pub(crate) interfaces: BTreeMap<u32, Interface>,
    pub(crate) lsdb: Lsdb,
    pub(crate) rib: Rib,
    pub(crate) spf: SpfScheduler,
    pub(crate) drops: DropLog,
    /// The last authentication sequence number sent (boot count in the
    /// high 32 bits).
    pub(crate) auth_seq: u64,
    /// Deadline of every armed timer: a delivery before it (or of a timer
    /// not armed) is stale and ignored.
    pub(crate) timers: HashMap<TimerKind, Time>,
    pub(crate) out: Vec<Output>,
    pub(crate) originate_needed: bool,
    pub(crate) spf_needed: bool,
    /// Own LSAs to re-originate even if unchanged (refresh, §13.4).
    pub(crate) force_originate: BTreeSet<LsaKey>,
    /// When each own LSA was last originated (MinLSInterval).
    /// When each of our LSAs was last originated, and the hold before the
    /// next origination may follow (see `originate::next_hold`).
    pub(crate) last_originated: HashMap<LsaKey, (Time, u64)>,
    /// Encoded LSAs to multicast per interface at the end of this input.
    pub(crate) flood_queue: BTreeMap<u32, Vec<Vec<u8>>>,
    /// Direct acknowledgements per (interface, neighbour) at the end of this input.
    pub(crate) direct_acks: BTreeMap<(u32, Ipv4Addr), Vec<LsaHeader>>,
    pub(crate) dd_seq_seed: u32,
    /// Newer instances of our own LSAs received (RFC 2328 §13.4).
    pub(crate) self_originated_newer: u64,
    /// Of those, the ones for an LSA we had already re-originated after an
    /// earlier such event in this life: a fight with another router using
    /// our id, not leftovers of a previous life.
    pub(crate) self_originated_repeat: u64,
    /// Newer instances of our own LSAs whose content we never originated
    /// (RFC 2328 §13.4 evidence of another router with our id, or of a
    /// forger): a running count.
    pub(crate) self_originated_foreign: u64,
    /// The bodies of our last originations, per LSA: what tells our own
    /// stale copies from someone else's.
    pub(crate) own_bodies: HashMap<LsaKey, std::collections::VecDeque<LsaBody>>,
    /// Packets with our router id that passed authentication: only a
    /// holder of the key can send them.
    pub(crate) own_id_authenticated: u64,
    /// The routers the last SPF run reached.
    pub(crate) reachable: BTreeSet<Ipv4Addr>,
    /// LSAs that arrived within MinLSArrival of the copy they would
    /// replace, per interface and key: the latest one, with the neighbour
    /// that sent it (see `flood::rx_deferred`).
    pub(crate) deferred: BTreeMap<(u32, LsaKey), (Ipv4Addr, Vec<u8>)>,
    /// What the prefix policy refused in the last SPF run.
    pub(crate) refused: Vec<crate::ownership::Refused>,
    /// Prefixes the last SPF run left out as not of the family.
    pub(crate) misfits: std::collections::BTreeSet<(Ipv6Net, Ipv4Addr)>,
    /// Set by [`Input::Retire`]: we advertise nothing any more.
    pub(crate) retired: bool,
    /// Own LSAs re-originated or flushed after a newer copy came back.
    pub(crate) self_originated_fought: BTreeSet<LsaKey>,
    /// Restarting gracefully until then (see [`crate::gr`]).
    pub(crate) restart_until: Option<Time>,
    /// How the graceful restart ended.
    pub(crate) gr_exit: Option<crate::gr::GrExit>,
    /// When this instance started restarting gracefully.
    pub(crate) gr_started: Time,
    /// How helping a neighbour last ended.
    pub(crate) gr_helper_exit: Option<crate::gr::GrExit>,
    /// A planned restart is prepared: Grace-LSAs with this body announced.
    pub(crate) gr_prepared: Option<Vec<u8>>,
}

impl Instance {
    /// Start a router with no interfaces yet.
    pub fn new(mut config: InstanceConfig, now: Time) -> (Self, Vec<Output>) {
        config.stub_prefixes.sort();
        config.stub_prefixes.dedup();
        let mut inst = Instance {
            dd_seq_seed: u32::from(config.router_id),
            auth_seq: u64::from(config.auth_boot_count) << 32,
            config,
            now,
            interfaces: BTreeMap::new(),
            lsdb: Lsdb::new(),
            rib: Rib::default(),
            spf: SpfScheduler::default(),
            drops: DropLog::default(),
            timers: HashMap::new(),
            out: Vec::new(),
            originate_needed: true,
            spf_needed: false,
            force_originate: BTreeSet::new(),
            last_originated: HashMap::new(),
            flood_queue: BTreeMap::new(),
            direct_acks: BTreeMap::new(),
            self_originated_newer: 0,
            self_originated_repeat: 0,
            self_originated_foreign: 0,
            own_bodies: HashMap::new(),
            own_id_authenticated: 0,
            reachable: BTreeSet::new(),
            retired: false,
            refused: Vec::new(),
            misfits: Default::default(),
            deferred: BTreeMap::new(),
            self_originated_fought: BTreeSet::new(),
            restart_until: None,
            gr_exit: None,
            gr_helper_exit: None,
            gr_started: now,
            gr_prepared: None,
        };
        inst.restart_until = Instance::gr_start(&inst.config.graceful_restart, now);
        if let Some(until) = inst.restart_until {
            tracing::info!(router_id = %inst.config.router_id, "gr: restarting gracefully");
            inst.arm(TimerKind::GraceEnd, until);
        }
        inst.finish();
        let out = std::mem::take(&mut inst.out);
        (inst, out)
    }

    /// Return the router id.
    pub fn router_id(&self) -> Ipv4Addr {
        self.config.router_id
    }

    /// Return the current routes.
    pub fn rib(&self) -> &Rib {
        &self.rib
    }

    /// Return the link state database.
    pub fn lsdb(&self) -> &Lsdb {
        &self.lsdb
    }

    /// Return the interfaces.
    pub fn interfaces(&self) -> &BTreeMap<u32, Interface> {
        &self.interfaces
    }

    /// Return the drop counters.
    pub fn drop_counters(&self) -> &BTreeMap<DropReason, u64> {
        &self.drops.counters
    }

    /// Return how many times SPF ran.
    pub fn spf_runs(&self) -> u64 {
        self.spf.runs
    }

    /// Process one input at time `now`; return what to do.
    pub fn handle(&mut self, now: Time, input: Input) -> Vec<Output> {
        self.now = self.now.max(now);
        match input {
            Input::InterfaceUp {
                ifindex,
                name,
                link_local,
                mtu,
                config,
            } => {
                if let Some(old) = self.interfaces.get(&ifindex) {
                    if old.config == config && old.mtu == mtu && old.link_local == link_local {
                        return self.take_output();
                    }
                    self.ism_event(ifindex, ism::Event::InterfaceDown);
                }
                tracing::info!(ifindex, %name, %link_local, mtu, "interface up");
                self.interfaces.insert(
                    ifindex,
                    Interface::new(ifindex, name, link_local, mtu, config, self.config.af),
                );
                self.ism_event(ifindex, ism::Event::InterfaceUp);
            }
            Input::InterfaceDown { ifindex } => {
                if self.interfaces.contains_key(&ifindex) {
                    tracing::info!(ifindex, "interface down");
                    self.ism_event(ifindex, ism::Event::InterfaceDown);
                    self.interfaces.remove(&ifindex);
                    self.originate_needed = true;
                    self.spf_needed = true;
                }
            }
            Input::Packet {
                ifindex,
                src,
                dst,
                data,
            } => self.rx_packet(ifindex, src, dst, &data),
            Input::Timer(TimerId(kind)) => self.timer(kind),
            Input::SetStubPrefixes(mut prefixes) => {
                prefixes.sort();
                prefixes.dedup();
                if prefixes != self.config.stub_prefixes {
                    self.config.stub_prefixes = prefixes;
                    self.originate_needed = true;
                }
            }
            Input::SetInterfaceAddress4(address) => {
                if let crate::af::AddressFamily::Ipv4 { interface_address } = &mut self.config.af
                    && *interface_address != address
                {
                    tracing::info!(?address, "IPv4 address of our Link-LSAs changed");
                    *interface_address = address;
                    for iface in self.interfaces.values_mut() {
                        iface.af = self.config.af;
                    }
                    self.originate_needed = true;
                }
            }
            Input::PrepareRestart { period, reason } => {
                tracing::info!(
                    period,
                    ?reason,
                    "gr: restart prepared: Grace-LSAs announced"
                );
                self.gr_prepared = Some(crate::packet::lsa::grace::Grace { period, reason }.emit());
                self.originate_needed = true;
            }
            Input::NeighborDown { ifindex, router_id } => {
                tracing::info!(ifindex, neighbor = %router_id, "neighbour down by BFD: adjacency killed");
                self.nsm_event(ifindex, router_id, crate::neighbor::nsm::Event::KillNbr);
            }
            Input::Retire => {
                tracing::info!(router_id = %self.config.router_id, "retiring: flushing our LSAs");
                self.retired = true;
                self.originate_needed = true;
            }
        }
        self.take_output()
    }

    fn take_output(&mut self) -> Vec<Output> {
        self.finish();
        std::mem::take(&mut self.out)
    }

    /// Do the work deferred while handling an input.
    fn finish(&mut self) {
        self.progress_requests();
        self.gr_restart_check();
        if std::mem::take(&mut self.originate_needed) {
            self.originate_all();
        }
        self.flush_queues();
        if std::mem::take(&mut self.spf_needed) {
            self.spf_event();
        }
    }

    /// Arm (or re-arm) a timer.
    pub(crate) fn arm(&mut self, kind: TimerKind, at: Time) {
        self.timers.insert(kind, at);
        self.out.push(Output::ArmTimer {
            id: TimerId(kind),
            at,
        });
    }

    /// Arm a neighbour's retransmission timer unless it is already armed.
    pub(crate) fn arm_retransmit(&mut self, ifindex: u32, rid: Ipv4Addr, at: Time) {
        let kind = TimerKind::Retransmit(ifindex, rid);
        if !self.timers.contains_key(&kind) {
            self.arm(kind, at);
        }
    }

    /// Cancel a timer.
    pub(crate) fn cancel(&mut self, kind: TimerKind) {
        if self.timers.remove(&kind).is_some() {
            self.out.push(Output::CancelTimer(TimerId(kind)));
        }
    }

    fn timer(&mut self, kind: TimerKind) {
        match self.timers.get(&kind) {
            Some(&at) if at <= self.now => {
                self.timers.remove(&kind);
            }
            Some(&at) => {
                // Delivered early (a coarser clock in the driver): ask again
                // rather than lose the timer.
                self.out.push(Output::ArmTimer {
                    id: TimerId(kind),
                    at,
                });
                return;
            }
            None => return,
        }
        match kind {
            TimerKind::Hello(ifindex) => self.send_hello(ifindex),
            TimerKind::Wait(ifindex) => self.ism_event(ifindex, ism::Event::WaitTimer),
            TimerKind::DelayedAck(ifindex) => self.send_delayed_acks(ifindex),
            TimerKind::Inactivity(ifindex, rid) => {
                self.nsm_event(ifindex, rid, nsm::Event::InactivityTimer)
            }
            TimerKind::Retransmit(ifindex, rid) => self.retransmit(ifindex, rid),
            TimerKind::SpfDelay | TimerKind::SpfHoldDown | TimerKind::SpfLearn => {
                self.spf_timer(kind)
            }
            TimerKind::Originate => self.originate_needed = true,
            TimerKind::Aging => self.age_lsdb(),
            TimerKind::Deferred => self.rx_deferred(),
            TimerKind::HelperGrace(ifindex, rid) => {
                self.gr_helper_exit(ifindex, rid, crate::gr::GrExit::Expired)
            }
            TimerKind::GraceEnd => self.gr_restart_exit(crate::gr::GrExit::Expired),
        }
    }

    /// Check and dispatch a received packet (RFC 5340 §4.2.2, RFC 2328 §8.2).
    fn rx_packet(&mut self, ifindex: u32, src: Ipv6Addr, dst: Ipv6Addr, data: &[u8]) {
        let now = self.now;
        let drop = |s: &mut Self, r: DropReason, d: &str| s.drops.drop(now, r, ifindex, d);
        let Some(iface) = self.interfaces.get(&ifindex) else {
            return drop(self, DropReason::UnknownInterface, "no such interface");
        };
        if iface.state == ism::State::Down {
            return drop(self, DropReason::UnknownInterface, "interface down");
        }
        if iface.config.passive {
            return drop(self, DropReason::PassiveInterface, "passive");
        }
        if data.len() > usize::from(u16::MAX) {
            return drop(self, DropReason::Oversized, "over 65535 bytes");
        }
        if (src.segments()[0] & 0xffc0) != 0xfe80 {
            return drop(
                self,
                DropReason::NonLinkLocalSource,
                "source not link-local",
            );
        }
        let dst_ok = dst == ALL_SPF_ROUTERS
            || dst == iface.link_local
            || (dst == ALL_D_ROUTERS && matches!(iface.state, ism::State::Dr | ism::State::Backup));
        if !dst_ok {
            return drop(self, DropReason::BadDestination, "destination");
        }
        let instance_id = iface.config.instance_id;
        let packet = match Packet::new_checked(data) {
            Ok(p) => p,
            Err(e) => return drop(self, DropReason::from_parse(e), "header"),
        };
        if packet.version() != crate::packet::VERSION {
            return drop(self, DropReason::BadVersion, "version");
        }
        // On an authenticating interface the trailer stands for the
        // checksum, which senders leave 0 (RFC 7166 §4.2).
        let wall = self.unix_secs();
        let verified = match self
            .interfaces
            .get(&ifindex)
            .and_then(|i| i.config.auth.as_ref())
        {
            Some(chain) => {
                let len = usize::from(packet.packet_len());
                match crate::packet::auth::verify(data, len, src, chain, wall) {
                    Ok(v) => Some(v),
                    Err(e) => return drop(self, DropReason::from_auth(e), "authentication"),
                }
            }
            None => None,
        };
        // Otherwise a zero checksum is accepted unverified: see
        // `Output::Send` and the crate docs. Anything else must be right.
        if verified.is_none() && packet.checksum() != 0 && !packet.verify_checksum(src, dst) {
            return drop(self, DropReason::BadChecksum, "checksum");
        }
        if !packet.area_id().is_unspecified() {
            return drop(self, DropReason::WrongArea, "area");
        }
        if packet.instance_id() != instance_id {
            return drop(self, DropReason::WrongInstanceId, "instance id");
        }
        let rid = packet.router_id();
        if rid == self.config.router_id {
            // Only a packet we cannot have sent counts: not from our own
            // address, and numbered beyond anything we have sent. Our own
            // packets replayed at us fail both.
            let ours = self
                .interfaces
                .get(&ifindex)
                .is_some_and(|i| i.link_local == src);
            if verified.is_some_and(|v| v.seq > self.auth_seq) && !ours {
                self.own_id_authenticated += 1;
            }
            return drop(self, DropReason::OwnRouterId, "own router id");
        }
        let ty = packet.packet_type();
        let slot = usize::from(u8::from(ty)).wrapping_sub(1);
        if let Some(v) = verified {
            let last = self
                .interfaces
                .get(&ifindex)
                .and_then(|i| i.neighbors.get(&rid))
                .and_then(|n| n.auth_seq.get(slot).copied().flatten());
            if last.is_some_and(|last| v.seq <= last) {
                return drop(
                    self,
                    DropReason::AuthReplay,
                    "sequence number not above the last",
                );
            }
        }
        self.dispatch(ifindex, src, rid, ty, packet.payload());
        // Recorded once the packet authenticated (RFC 7166 §4.6), also for
        // the Hello that made the neighbour.
        if let Some(v) = verified
            && let Some(seen) = self
                .neighbor_mut(ifindex, rid)
                .and_then(|n| n.auth_seq.get_mut(slot))
        {
            *seen = Some(seen.map_or(v.seq, |s| s.max(v.seq)));
        }
    }

    /// Whether `options` of a Hello or DD packet on `ifindex` disagree with
    /// our authentication there (RFC 7166 §2.1): count and say so.
    fn at_bit_mismatch(
        &mut self,
        ifindex: u32,
        options: crate::packet::Options,
        what: &str,
    ) -> bool {
        let ours = self
            .interfaces
            .get(&ifindex)
            .is_some_and(|i| i.config.auth.is_some());
        let reason = match (ours, options.contains(crate::packet::Options::AT)) {
            (true, false) => DropReason::AuthMissing,
            (false, true) => DropReason::AuthUnexpected,
            _ => return false,
        };
        self.drops.drop(self.now, reason, ifindex, what);
        true
    }

    /// Hand a checked packet to the code for its type.
    fn dispatch(
        &mut self,
        ifindex: u32,
        src: Ipv6Addr,
        rid: Ipv4Addr,
        ty: PacketType,
        payload: &[u8],
    ) {
        let now = self.now;
        let drop = |s: &mut Self, r: DropReason, d: &str| s.drops.drop(now, r, ifindex, d);
        match ty {
            PacketType::Hello => match HelloRepr::parse(payload) {
                Ok(h) if self.at_bit_mismatch(ifindex, h.options, "Hello AT-bit") => {}
                Ok(h) => self.rx_hello(ifindex, src, rid, h),
                Err(e) => drop(self, DropReason::from_parse(e), "hello"),
            },
            t => {
                // Everything but Hellos needs a known neighbour (RFC 2328 §8.2).
                let Some(nbr) = self
                    .interfaces
                    .get(&ifindex)
                    .and_then(|i| i.neighbors.get(&rid))
                else {
                    return drop(self, DropReason::UnknownNeighbor, "no such neighbour");
                };
                if nbr.addr != src {
                    tracing::debug!(ifindex, neighbor = %rid, %src, "neighbour address changed");
                    if let Some(n) = self.neighbor_mut(ifindex, rid) {
                        n.addr = src;
                    }
                }
                match t {
                    PacketType::DbDesc => match DbDescRepr::parse(payload) {
                        Ok(dd) if self.at_bit_mismatch(ifindex, dd.options, "DD AT-bit") => {}
                        Ok(dd) => self.rx_dbdesc(ifindex, rid, dd),
                        Err(e) => drop(self, DropReason::from_parse(e), "DD"),
                    },
                    PacketType::LsRequest => self.rx_ls_request(ifindex, rid, payload),
                    PacketType::LsUpdate => self.rx_ls_update(ifindex, rid, payload),
                    PacketType::LsAck => self.rx_ls_ack(ifindex, rid, payload),
                    _ => drop(self, DropReason::UnknownPacketType, "type"),
                }
            }
        }
    }

    /// Encode a packet from us on `ifindex` to `dst`, checksum included.
    pub(crate) fn encode(&self, ifindex: u32, dst: Ipv6Addr, body: Body) -> Vec<u8> {
        let (src, instance_id) = self
            .interfaces
            .get(&ifindex)
            .map_or((Ipv6Addr::UNSPECIFIED, 0), |i| {
                (i.link_local, i.config.instance_id)
            });
        PacketRepr {
            router_id: self.config.router_id,
            area_id: Ipv4Addr::UNSPECIFIED,
            instance_id,
            body,
        }
        .to_bytes(src, dst)
    }

    /// Send a packet body.
    pub(crate) fn send_body(&mut self, ifindex: u32, dst: Ipv6Addr, body: Body) {
        let data = self.encode(ifindex, dst, body);
        self.transmit(ifindex, dst, data);
    }

    /// The wall clock now, in seconds since the Unix epoch.
    pub(crate) fn unix_secs(&self) -> u64 {
        (self.config.epoch_unix_ms + self.now.0) / 1000
    }

    /// Send an encoded packet, sealed with the interface's key when it
    /// authenticates (RFC 7166); with no key valid for sending, nothing is
    /// sent (an unauthenticated packet would only be dropped).
    pub(crate) fn transmit(&mut self, ifindex: u32, dst: Ipv6Addr, mut data: Vec<u8>) {
        let now = self.now;
        let wall = self.unix_secs();
        let sealing = self.interfaces.get(&ifindex).and_then(|i| {
            let chain = i.config.auth.as_ref()?;
            Some((i.link_local, chain.send_key(wall).cloned(), chain.send_cpid))
        });
        if let Some((src, key, cpid)) = sealing {
            let Some(key) = key else {
                self.drops.drop(
                    now,
                    DropReason::AuthNoSendKey,
                    ifindex,
                    "no key to send with",
                );
                return;
            };
            self.auth_seq += 1;
            crate::packet::auth::seal(&mut data, src, &key, self.auth_seq, cpid);
        }
        self.out.push(Output::Send { ifindex, dst, data });
    }

    /// Send an already encoded body of type `ty`.
    pub(crate) fn send_raw(&mut self, ifindex: u32, dst: Ipv6Addr, ty: PacketType, body: &[u8]) {
        let Some(iface) = self.interfaces.get(&ifindex) else {
            return;
        };
        let data = crate::packet::build_raw(
            ty,
            self.config.router_id,
            iface.config.instance_id,
            body,
            iface.link_local,
            dst,
        );
        self.transmit(ifindex, dst, data);
    }
}
