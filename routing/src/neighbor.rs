//! Neighbours: the neighbour state machine (RFC 2328 §10.3), the Database
//! Description exchange with master/slave negotiation and sequence numbers
//! (§10.6, §10.8) and Link State Requests (§10.7, §10.9).
//!
//! All of a state change's side effects live in [`Instance::nsm_event`].

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::{Ipv4Addr, Ipv6Addr};

use crate::error::DropReason;
use crate::events::TimerKind;
use crate::instance::Instance;
use crate::interface::InterfaceKind;
use crate::packet::dbdesc::{self, DbDescRepr, DdFlags};
use crate::packet::lsa::header::{HEADER_LEN as LSA_HEADER_LEN, LsaHeader, LsaKey};
use crate::packet::lsreq::{self, LsRequestPacket, LsRequestRepr};
use crate::packet::{Body, HEADER_LEN, Options};

/// The neighbour state machine (RFC 2328 §10.1, §10.2; Attempt is NBMA-only).
pub mod nsm {
    use serde::{Deserialize, Serialize};

    #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
    pub enum State {
        Down,
        Init,
        TwoWay,
        ExStart,
        Exchange,
        Loading,
        Full,
    }

    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
    pub enum Event {
        HelloReceived,
        TwoWayReceived,
        OneWayReceived,
        NegotiationDone,
        ExchangeDone,
        LoadingDone,
        AdjOk,
        SeqNumberMismatch,
        BadLsReq,
        KillNbr,
        InactivityTimer,
    }
}

/// One neighbour on one interface, known by its router id.
#[derive(Debug, Clone)]
pub struct Neighbor {
    pub router_id: Ipv4Addr,
    /// Source address of its Hellos (its link-local address).
    pub addr: Ipv6Addr,
    /// Its interface id, from its Hellos.
    pub interface_id: u32,
    pub priority: u8,
    pub options: Options,
    /// The DR it declares.
    pub dr: Ipv4Addr,
    /// The BDR it declares.
    pub bdr: Ipv4Addr,
    pub state: nsm::State,
    /// Whether we are master of the DD exchange.
    pub(crate) master: bool,
    pub(crate) dd_seq: u32,
    /// Flags, options and sequence number of the last DD accepted, to spot duplicates.
    pub(crate) last_rx_dd: Option<(u8, Options, u32)>,
    /// The last DD sent, for retransmission (master) or duplicate replies (slave).
    pub(crate) last_tx_dd: Option<Vec<u8>>,
    /// Whether the last DD we sent had the M bit set.
    pub(crate) dd_last_more: bool,
    /// LSAs still to describe (the Database summary list).
    pub(crate) summary: VecDeque<LsaKey>,
    /// How many summary entries the master's outstanding DD packet covers.
    pub(crate) dd_batch: usize,
    /// LSAs to request, with the header the neighbour described.
    pub(crate) requests: BTreeMap<LsaKey, LsaHeader>,
    /// The keys of the last LS Request sent (empty when none is outstanding).
    pub(crate) requests_sent: Vec<LsaKey>,
    /// LSAs flooded to the neighbour and not yet acknowledged.
    pub(crate) rxmt: BTreeSet<LsaKey>,
    /// The last authentication sequence number accepted, per packet type
    /// (index `type - 1`).
    pub(crate) auth_seq: [Option<u64>; 5],
    /// We help it restart until then (see [`crate::gr`]).
    pub(crate) helping: Option<crate::Time>,
    /// In this ExStart, our first DD was sent again when the slave's own
    /// first DD came (once: see `rx_dd`).
    pub(crate) dd_prompted: bool,
}

impl Neighbor {
    pub(crate) fn new(router_id: Ipv4Addr, addr: Ipv6Addr) -> Self {
        Neighbor {
            router_id,
            addr,
            interface_id: 0,
            priority: 0,
            options: Options::default(),
            dr: Ipv4Addr::UNSPECIFIED,
            bdr: Ipv4Addr::UNSPECIFIED,
            state: nsm::State::Down,
            master: false,
            dd_seq: 0,
            last_rx_dd: None,
            last_tx_dd: None,
            auth_seq: [None; 5],
            dd_last_more: true,
            summary: VecDeque::new(),
            dd_batch: 0,
            requests: BTreeMap::new(),
            requests_sent: Vec::new(),
            rxmt: BTreeSet::new(),
            helping: None,
            dd_prompted: false,
        }
    }

    fn clear_lists(&mut self) {
        self.summary.clear();
        self.dd_batch = 0;
        self.requests.clear();
        self.requests_sent.clear();
        self.rxmt.clear();
        self.last_rx_dd = None;
        self.last_tx_dd = None;
        self.dd_last_more = true;
    }
}

impl Instance {
    /// Feed an event to a neighbour's state machine and carry out what the
    /// resulting transition requires.
    pub(crate) fn nsm_event(&mut self, ifindex: u32, rid: Ipv4Addr, event: nsm::Event) {
        use nsm::Event as E;
        use nsm::State as S;
        let router_id = self.config.router_id;
        let now = self.now;
        let Some(iface) = self.interfaces.get_mut(&ifindex) else {
            return;
        };
        let adjacency_wanted = iface.adjacency_wanted(router_id, rid);
        let dead = iface.config.dead_interval;
        let rxmt_secs = iface.config.retransmit_interval;
        let broadcast = iface.kind == InterfaceKind::Broadcast;
        let Some(nbr) = iface.neighbors.get_mut(&rid) else {
            return;
        };
        let old = nbr.state;
        // A neighbour we help restart stays adjacent whatever its Hellos
        // say and however long they take (RFC 3623 §3).
        let helping = nbr.helping.is_some();
        if helping && matches!(event, E::OneWayReceived | E::InactivityTimer) {
            tracing::debug!(ifindex, neighbor = %rid, ?event, "gr: helping, event ignored");
            // Keep counting: once helping ends, a neighbour that stays
            // silent is declared dead a dead interval later as usual.
            if event == E::InactivityTimer {
                self.arm(TimerKind::Inactivity(ifindex, rid), now.plus_secs(dead));
            }
            return;
        }
        let new = match (old, event) {
            (_, E::KillNbr | E::InactivityTimer) => S::Down,
            (S::Down, E::HelloReceived) => S::Init,
            (_, E::HelloReceived) => old,
            (S::Init, E::TwoWayReceived) => {
                if adjacency_wanted {
                    S::ExStart
                } else {
                    S::TwoWay
                }
            }
            (_, E::TwoWayReceived) => old,
            (S::ExStart, E::NegotiationDone) => S::Exchange,
            (S::Exchange, E::ExchangeDone) => {
                if nbr.requests.is_empty() {
                    S::Full
                } else {
                    S::Loading
                }
            }
            (S::Loading, E::LoadingDone) => S::Full,
            (S::TwoWay, E::AdjOk) if adjacency_wanted => S::ExStart,
            (S::TwoWay, E::AdjOk) => old,
            (s, E::AdjOk) if s >= S::ExStart && !adjacency_wanted => S::TwoWay,
            (s, E::AdjOk) if s >= S::ExStart => old,
            (s, E::SeqNumberMismatch | E::BadLsReq) if s >= S::Exchange => S::ExStart,
            (s, E::OneWayReceived) if s >= S::TwoWay => S::Init,
            (S::Init, E::OneWayReceived) => old,
            (state, event) => {
                tracing::debug!(ifindex, neighbor = %rid, ?state, ?event, "nsm: event ignored");
                return;
            }
        };
        nbr.state = new;
        if event == E::HelloReceived {
            self.arm(TimerKind::Inactivity(ifindex, rid), now.plus_secs(dead));
        }
        if new == old && !matches!(event, E::SeqNumberMismatch | E::BadLsReq) {
            return;
        }
        tracing::info!(ifindex, neighbor = %rid, ?old, ?new, ?event, "nsm: state change");
        match new {
            S::Down => {
                if let Some(iface) = self.interfaces.get_mut(&ifindex) {
                    iface.neighbors.remove(&rid);
                }
                self.cancel(TimerKind::Inactivity(ifindex, rid));
                self.cancel(TimerKind::Retransmit(ifindex, rid));
            }
            S::Init | S::TwoWay => {
                if let Some(nbr) = self.neighbor_mut(ifindex, rid) {
                    nbr.clear_lists();
                }
                self.cancel(TimerKind::Retransmit(ifindex, rid));
            }
            S::ExStart => {
                self.dd_seq_seed = self.dd_seq_seed.wrapping_add(0x0101_0101);
                let seq = self.dd_seq_seed ^ (now.0 as u32);
                if let Some(nbr) = self.neighbor_mut(ifindex, rid) {
                    nbr.clear_lists();
                    nbr.dd_seq = seq;
                    nbr.master = true;
                    nbr.dd_prompted = false;
                }
                self.send_dd(ifindex, rid);
            }
            S::Exchange => {
                let (keys, max_age) = self.lsdb.summary_keys(ifindex, now);
                let Some(nbr) = self.neighbor_mut(ifindex, rid) else {
                    return;
                };
                nbr.summary = keys.into();
                // MaxAge LSAs are sent rather than described (RFC 2328 §10.3, NegotiationDone).
                let any = !max_age.is_empty();
                nbr.rxmt.extend(max_age);
                if any {
                    self.arm_retransmit(ifindex, rid, now.plus_secs(rxmt_secs));
                }
            }
            S::Loading | S::Full => {}
        }
        if (old == S::Full) != (new == S::Full) {
            self.originate_needed = true;
            self.spf_needed = true;
        }
        if broadcast && !helping && (old >= S::TwoWay) != (new >= S::TwoWay) {
            self.ism_event(ifindex, crate::interface::ism::Event::NeighborChange);
        }
    }

    /// Return whether a neighbour may exchange LSAs with us (state Exchange
    /// or later: RFC 2328 §10.7, §13, §13.7); if not, count the drop under
    /// `what`.
    pub(crate) fn may_exchange(&mut self, ifindex: u32, rid: Ipv4Addr, what: &'static str) -> bool {
        let reason = match self
            .interfaces
            .get(&ifindex)
            .and_then(|i| i.neighbors.get(&rid))
        {
            None => DropReason::UnknownNeighbor,
            Some(n) if n.state < nsm::State::Exchange => DropReason::NeighborState,
            Some(_) => return true,
        };
        self.drops.drop(self.now, reason, ifindex, what);
        false
    }

    pub(crate) fn neighbor_mut(
        &mut self,
        ifindex: u32,
        rid: Ipv4Addr,
    ) -> Option<&mut crate::neighbor::Neighbor> {
        self.interfaces.get_mut(&ifindex)?.neighbors.get_mut(&rid)
    }

    /// Send the next DD packet to a neighbour, as its state and role say.
    pub(crate) fn send_dd(&mut self, ifindex: u32, rid: Ipv4Addr) {
        let now = self.now;
        let Some(iface) = self.interfaces.get(&ifindex) else {
            return;
        };
        let Some(nbr) = iface.neighbors.get(&rid) else {
            return;
        };
        let cap = ((iface.max_packet() - HEADER_LEN - dbdesc::MIN_LEN) / LSA_HEADER_LEN).max(1);
        let (dst, mtu, rxmt, options) = (
            iface.unicast_dst(nbr.addr),
            iface.mtu,
            iface.config.retransmit_interval,
            iface.options(),
        );
        let mut flags = 0u8;
        let mut headers = Vec::new();
        let take;
        if nbr.state == nsm::State::ExStart {
            flags = DdFlags::I | DdFlags::M | DdFlags::MS;
            take = 0;
        } else {
            take = cap.min(nbr.summary.len());
            for key in nbr.summary.iter().take(take) {
                if let Some(e) = self.lsdb.get(ifindex, key) {
                    headers.push(e.header_at(now));
                }
            }
            let more = nbr.summary.len() > take;
            if more {
                flags |= DdFlags::M;
            }
            if nbr.master {
                flags |= DdFlags::MS;
            }
        }
        let dd = DbDescRepr {
            options,
            mtu,
            flags: DdFlags(flags),
            seq: nbr.dd_seq,
            lsa_headers: headers,
        };
        let master = nbr.master;
        let data = self.encode(ifindex, dst, Body::DbDesc(dd));
        let Some(nbr) = self.neighbor_mut(ifindex, rid) else {
            return;
        };
        nbr.dd_last_more = flags & DdFlags::M != 0;
        nbr.last_tx_dd = Some(data.clone());
        if master {
            nbr.dd_batch = take;
        } else {
            nbr.summary.drain(..take);
        }
        self.transmit(ifindex, dst, data);
        if master {
            self.arm(TimerKind::Retransmit(ifindex, rid), now.plus_secs(rxmt));
        }
    }

    /// Process a DD packet (RFC 2328 §10.6).
    pub(crate) fn rx_dbdesc(&mut self, ifindex: u32, rid: Ipv4Addr, dd: DbDescRepr) {
        use nsm::State as S;
        let now = self.now;
        let router_id = self.config.router_id;
        let Some(iface) = self.interfaces.get(&ifindex) else {
            return;
        };
        if dd.mtu > iface.mtu {
            self.drops.drop(
                now,
                DropReason::MtuMismatch,
                ifindex,
                "DD MTU larger than ours",
            );
            return;
        }
        let Some(nbr) = iface.neighbors.get(&rid) else {
            self.drops
                .drop(now, DropReason::UnknownNeighbor, ifindex, "DD");
            return;
        };
        if nbr.state == S::Init {
            self.nsm_event(ifindex, rid, nsm::Event::TwoWayReceived);
        }
        let Some(nbr) = self
            .interfaces
            .get(&ifindex)
            .and_then(|i| i.neighbors.get(&rid))
        else {
            return;
        };
        let flags = dd.flags;
        let dup = nbr.last_rx_dd == Some((flags.0, dd.options, dd.seq));
        match nbr.state {
            S::Down | S::Init => self
                .drops
                .drop(now, DropReason::NeighborState, ifindex, "DD"),
            S::TwoWay => {}
            S::ExStart => {
                let all = DdFlags::I | DdFlags::M | DdFlags::MS;
                if flags.0 & all == all && dd.lsa_headers.is_empty() && rid > router_id {
                    // The neighbour is master; adopt its sequence number.
                    let Some(nbr) = self.neighbor_mut(ifindex, rid) else {
                        return;
                    };
                    nbr.master = false;
                    nbr.dd_seq = dd.seq;
                    nbr.options = dd.options;
                    self.nsm_event(ifindex, rid, nsm::Event::NegotiationDone);
                    self.accept_dd(ifindex, rid, &dd);
                } else if !flags.contains(DdFlags::I)
                    && !flags.contains(DdFlags::MS)
                    && dd.seq == nbr.dd_seq
                    && rid < router_id
                {
                    let Some(nbr) = self.neighbor_mut(ifindex, rid) else {
                        return;
                    };
                    nbr.master = true;
                    nbr.options = dd.options;
                    self.nsm_event(ifindex, rid, nsm::Event::NegotiationDone);
                    self.accept_dd(ifindex, rid, &dd);
                } else if flags.0 & all == all && rid < router_id && !nbr.dd_prompted {
                    // The slave's own first DD: it is in ExStart now and
                    // waits for ours. It may have thrown our last one away
                    // (a neighbour still Full, as a graceful-restart helper
                    // is, discards it and only then starts over), so send
                    // it again now rather than a RxmtInterval later; once.
                    if let Some(nbr) = self.neighbor_mut(ifindex, rid) {
                        nbr.dd_prompted = true;
                    }
                    self.resend_last_dd(ifindex, rid);
                }
            }
            S::Exchange => {
                if dup {
                    if !nbr.master {
                        self.resend_last_dd(ifindex, rid);
                    }
                    return;
                }
                let expected = if nbr.master {
                    nbr.dd_seq
                } else {
                    nbr.dd_seq.wrapping_add(1)
                };
                let mismatch = flags.contains(DdFlags::MS) == nbr.master
                    || flags.contains(DdFlags::I)
                    || nbr.last_rx_dd.is_some_and(|(_, o, _)| o != dd.options)
                    || dd.seq != expected;
                if mismatch {
                    tracing::debug!(ifindex, neighbor = %rid, seq = dd.seq, expected, "dd: sequence mismatch");
                    self.nsm_event(ifindex, rid, nsm::Event::SeqNumberMismatch);
                } else {
                    self.accept_dd(ifindex, rid, &dd);
                }
            }
            S::Loading | S::Full => {
                if dup && !nbr.master {
                    self.resend_last_dd(ifindex, rid);
                } else if !dup {
                    self.nsm_event(ifindex, rid, nsm::Event::SeqNumberMismatch);
                }
            }
        }
    }

    fn resend_last_dd(&mut self, ifindex: u32, rid: Ipv4Addr) {
        let Some(iface) = self.interfaces.get(&ifindex) else {
            return;
        };
        let Some(nbr) = iface.neighbors.get(&rid) else {
            return;
        };
        if let Some(data) = nbr.last_tx_dd.clone() {
            let dst = iface.unicast_dst(nbr.addr);
            // Sealed again: each copy needs a sequence number of its own.
            self.transmit(ifindex, dst, data);
        }
    }

    /// Take in an accepted DD packet and answer it (RFC 2328 §10.8).
    fn accept_dd(&mut self, ifindex: u32, rid: Ipv4Addr, dd: &DbDescRepr) {
        let now = self.now;
        let mut wanted = Vec::new();
        for h in &dd.lsa_headers {
            if h.ls_type.flooding_scope().is_none() {
                continue;
            }
            let newer = match self.lsdb.get(ifindex, &h.key()) {
                None if self.over_limit(ifindex, &h.key()) => {
                    self.drops
                        .drop(now, DropReason::LsdbFull, ifindex, "LSDB limit");
                    false
                }
                None => true,
                Some(e) => h.compare(&e.header_at(now)) == std::cmp::Ordering::Greater,
            };
            if newer {
                wanted.push(*h);
            }
        }
        let Some(nbr) = self.neighbor_mut(ifindex, rid) else {
            return;
        };
        nbr.last_rx_dd = Some((dd.flags.0, dd.options, dd.seq));
        for h in wanted {
            nbr.requests.insert(h.key(), h);
        }
        let their_more = dd.flags.contains(DdFlags::M);
        if nbr.master {
            // The slave acknowledged our outstanding packet.
            let n = nbr.dd_batch.min(nbr.summary.len());
            nbr.summary.drain(..n);
            nbr.dd_batch = 0;
            if !nbr.dd_last_more && !their_more {
                self.cancel_dd_rxmt(ifindex, rid);
                self.nsm_event(ifindex, rid, nsm::Event::ExchangeDone);
            } else {
                nbr.dd_seq = nbr.dd_seq.wrapping_add(1);
                self.send_dd(ifindex, rid);
            }
        } else {
            nbr.dd_seq = dd.seq;
            self.send_dd(ifindex, rid);
            let ours_more = self
                .neighbor_mut(ifindex, rid)
                .is_some_and(|n| n.dd_last_more);
            if !their_more && !ours_more {
                self.nsm_event(ifindex, rid, nsm::Event::ExchangeDone);
            }
        }
        self.send_ls_request(ifindex, rid, false);
    }

    /// Stop retransmitting DDs; keep the timer if requests or LSAs still need it.
    fn cancel_dd_rxmt(&mut self, ifindex: u32, rid: Ipv4Addr) {
        if let Some(nbr) = self.neighbor_mut(ifindex, rid)
            && nbr.rxmt.is_empty()
            && nbr.requests.is_empty()
        {
            self.cancel(TimerKind::Retransmit(ifindex, rid));
        }
    }

    /// Send an LS Request for the first requests not yet satisfied, unless
    /// one is outstanding and `resend` is false.
    pub(crate) fn send_ls_request(&mut self, ifindex: u32, rid: Ipv4Addr, resend: bool) {
        let now = self.now;
        let Some(iface) = self.interfaces.get_mut(&ifindex) else {
            return;
        };
        let cap = ((iface.max_packet() - HEADER_LEN) / lsreq::ENTRY_LEN).max(1);
        let rxmt = iface.config.retransmit_interval;
        let kind = iface.kind;
        let Some(nbr) = iface.neighbors.get_mut(&rid) else {
            return;
        };
        if !matches!(nbr.state, nsm::State::Exchange | nsm::State::Loading)
            || nbr.requests.is_empty()
        {
            nbr.requests_sent.clear();
            return;
        }
        if !nbr.requests_sent.is_empty() && !resend {
            return;
        }
        let entries: Vec<LsaKey> = nbr.requests.keys().take(cap).copied().collect();
        nbr.requests_sent = entries.clone();
        let dst = match kind {
            InterfaceKind::Broadcast => nbr.addr,
            InterfaceKind::PointToPoint => crate::packet::ALL_SPF_ROUTERS,
        };
        self.send_body(ifindex, dst, Body::LsRequest(LsRequestRepr { entries }));
        self.arm(TimerKind::Retransmit(ifindex, rid), now.plus_secs(rxmt));
    }

    /// Answer an LS Request with the LSAs asked for (RFC 2328 §10.7).
    pub(crate) fn rx_ls_request(&mut self, ifindex: u32, rid: Ipv4Addr, body: &[u8]) {
        let now = self.now;
        let Ok(req) = LsRequestPacket::new_checked(body) else {
            self.drops
                .drop(now, DropReason::BadLength, ifindex, "LS request");
            return;
        };
        if !self.may_exchange(ifindex, rid, "LS request") {
            return;
        }
        let mut lsas = Vec::new();
        for key in req.entries() {
            match self.lsdb.get(ifindex, &key) {
                Some(e) => lsas.push(e.aged_copy(now)),
                None => {
                    tracing::debug!(ifindex, neighbor = %rid, %key, "lsr: unknown LSA requested");
                    self.nsm_event(ifindex, rid, nsm::Event::BadLsReq);
                    return;
                }
            }
        }
        let Some(iface) = self.interfaces.get(&ifindex) else {
            return;
        };
        let Some(nbr) = iface.neighbors.get(&rid) else {
            return;
        };
        let dst = iface.unicast_dst(nbr.addr);
        self.send_ls_updates(ifindex, dst, lsas);
    }

    /// Retransmit what a neighbour has not acknowledged (RFC 2328 §10.8, §10.9, §13.6).
    pub(crate) fn retransmit(&mut self, ifindex: u32, rid: Ipv4Addr) {
        use nsm::State as S;
        let now = self.now;
        let Some(iface) = self.interfaces.get(&ifindex) else {
            return;
        };
        let Some(nbr) = iface.neighbors.get(&rid) else {
            return;
        };
        let rxmt_secs = iface.config.retransmit_interval;
        let dst = iface.unicast_dst(nbr.addr);
        let mut again = false;
        if nbr.state == S::ExStart || (nbr.state == S::Exchange && nbr.master) {
            self.resend_last_dd(ifindex, rid);
            again = true;
        }
        let Some(nbr) = self
            .interfaces
            .get(&ifindex)
            .and_then(|i| i.neighbors.get(&rid))
        else {
            return;
        };
        if matches!(nbr.state, S::Exchange | S::Loading) && !nbr.requests.is_empty() {
            self.send_ls_request(ifindex, rid, true);
            again = true;
        }
        let Some(nbr) = self
            .interfaces
            .get(&ifindex)
            .and_then(|i| i.neighbors.get(&rid))
        else {
            return;
        };
        if nbr.state >= S::Exchange && !nbr.rxmt.is_empty() {
            let lsas: Vec<Vec<u8>> = nbr
                .rxmt
                .iter()
                .filter_map(|k| self.lsdb.get(ifindex, k).map(|e| e.aged_copy(now)))
                .collect();
            tracing::debug!(ifindex, neighbor = %rid, count = lsas.len(), "flood: retransmit");
            self.send_ls_updates(ifindex, dst, lsas);
            again = true;
        }
        if again {
            self.arm(
                TimerKind::Retransmit(ifindex, rid),
                now.plus_secs(rxmt_secs),
            );
        }
    }

    /// After LSAs arrived: send the next LS Request where the last one is
    /// answered, and finish Loading where nothing is left (RFC 2328 §10.9).
    pub(crate) fn progress_requests(&mut self) {
        let mut next = Vec::new();
        let mut done = Vec::new();
        for (ifindex, iface) in &mut self.interfaces {
            for (rid, nbr) in &mut iface.neighbors {
                if !matches!(nbr.state, nsm::State::Exchange | nsm::State::Loading) {
                    continue;
                }
                let outstanding = nbr
                    .requests_sent
                    .iter()
                    .any(|k| nbr.requests.contains_key(k));
                if !outstanding {
                    nbr.requests_sent.clear();
                    if nbr.requests.is_empty() {
                        if nbr.state == nsm::State::Loading {
                            done.push((*ifindex, *rid));
                        }
                    } else {
                        next.push((*ifindex, *rid));
                    }
                }
            }
        }
        for (ifindex, rid) in next {
            self.send_ls_request(ifindex, rid, false);
        }
        for (ifindex, rid) in done {
            self.nsm_event(ifindex, rid, nsm::Event::LoadingDone);
        }
    }
}
