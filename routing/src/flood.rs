//! Reliable flooding (RFC 2328 §13 with RFC 5340 §4.5): receiving LS
//! Updates, installing newer instances, flooding them on, retransmission
//! lists, direct and delayed acknowledgements.

use std::cmp::Ordering;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use crate::error::{DropReason, ParseError};
use crate::events::TimerKind;
use crate::instance::Instance;
use crate::interface::{InterfaceKind, ism};
use crate::lsdb::LsaEntry;
use crate::neighbor::nsm;
use crate::packet::lsa::header::{
    HEADER_LEN as LSA_HEADER_LEN, LsaHeader, LsaKey, LsaScope, LsaType, MAX_AGE, MAX_SEQ,
};
use crate::packet::lsa::{Lsa, LsaBody};
use crate::packet::lsack::LsAckPacket;
use crate::packet::lsupd::{self, LsUpdatePacket};
use crate::packet::{HEADER_LEN, PacketType, checksum, put_u16, put_u32};

/// Delay before acknowledgements are sent in a batch (must stay well below
/// the neighbours' RxmtInterval).
pub const ACK_DELAY_MS: u64 = 200;

/// Outcome of processing one LSA of an update.
enum LsaOutcome {
    Next,
    /// BadLSReq was raised: stop processing the packet (RFC 2328 §13 step 6).
    Stop,
}

impl Instance {
    /// Process an LS Update from a neighbour (RFC 2328 §13).
    pub(crate) fn rx_ls_update(&mut self, ifindex: u32, rid: Ipv4Addr, body: &[u8]) {
        let now = self.now;
        if !self.may_exchange(ifindex, rid, "LS update") {
            return;
        }
        let Ok(upd) = LsUpdatePacket::new_checked(body) else {
            self.drops
                .drop(now, DropReason::Truncated, ifindex, "LS update");
            return;
        };
        for raw in upd.lsas() {
            match raw {
                Ok(raw) => {
                    if let LsaOutcome::Stop = self.rx_lsa(ifindex, rid, raw) {
                        break;
                    }
                }
                Err(_) => {
                    self.drops
                        .drop(now, DropReason::LsaBadLength, ifindex, "LSA length");
                    break;
                }
            }
        }
    }

    /// Process the LSAs deferred under MinLSArrival, from neighbours still
    /// exchanging with us; one still too early is deferred again.
    pub(crate) fn rx_deferred(&mut self) {
        for ((ifindex, _), (rid, raw)) in std::mem::take(&mut self.deferred) {
            let up = self
                .interfaces
                .get(&ifindex)
                .and_then(|i| i.neighbors.get(&rid))
                .is_some_and(|n| n.state >= nsm::State::Exchange);
            if up {
                self.rx_lsa(ifindex, rid, &raw);
            }
        }
    }

    /// Process one LSA of an update (RFC 2328 §13 steps 1-8).
    fn rx_lsa(&mut self, ifindex: u32, rid: Ipv4Addr, raw: &[u8]) -> LsaOutcome {
        let now = self.now;
        if !checksum::lsa_checksum_valid(raw) {
            self.drops
                .drop(now, DropReason::LsaBadChecksum, ifindex, "LSA checksum");
            return LsaOutcome::Next;
        }
        let mut lsa = match Lsa::parse(raw) {
            Ok(l) => l,
            Err(e) => {
                let reason = match e {
                    ParseError::BadRouterLinkType(_) => DropReason::LsaBadLinkType,
                    _ => DropReason::LsaBadBody,
                };
                self.drops.drop(now, reason, ifindex, "LSA body");
                return LsaOutcome::Next;
            }
        };
        let Some(scope) = lsa.header.ls_type.flooding_scope() else {
            self.drops
                .drop(now, DropReason::LsaReservedScope, ifindex, "LSA scope");
            return LsaOutcome::Next;
        };
        if lsa.header.seq == 0x8000_0000 {
            self.drops.drop(
                now,
                DropReason::LsaBadBody,
                ifindex,
                "reserved sequence number",
            );
            return LsaOutcome::Next;
        }
        let mut raw: Vec<u8> = raw.to_vec();
        if lsa.header.age > MAX_AGE {
            lsa.header.age = MAX_AGE;
            put_u16(&mut raw, 0, MAX_AGE);
        }
        let header = lsa.header;
        let key = header.key();
        // Content we never originated, under our router id (§13.4).
        let foreign_own = header.adv_router == self.config.router_id
            && !self
                .own_bodies
                .get(&key)
                .is_some_and(|bodies| bodies.contains(&lsa.body));
        let db = self
            .lsdb
            .get(ifindex, &key)
            .map(|e| (e.header_at(now), e.received, e.installed_at));

        // Step 4: a MaxAge LSA we do not have, while no exchange is under way.
        if header.is_max_age() && db.is_none() && !self.any_exchange() {
            self.direct_ack(ifindex, rid, header);
            return LsaOutcome::Next;
        }

        if db.is_none() && self.over_limit(ifindex, &key) {
            self.drops
                .drop(now, DropReason::LsdbFull, ifindex, "LSDB limit");
            self.direct_ack(ifindex, rid, header);
            return LsaOutcome::Next;
        }

        // An instance we asked for in a database exchange. MinLSArrival
        // (RFC 2328 §13 (5a)) limits how fast an originator's changes are
        // taken "via flooding"; a copy fetched by our own request is not
        // one of them, so the next instance, typically the originator's
        // new Router-LSA as the adjacency turns Full, is taken at once
        // rather than MinLSArrival later.
        let requested = self
            .interfaces
            .get(&ifindex)
            .and_then(|i| i.neighbors.get(&rid))
            .is_some_and(|n| n.requests.contains_key(&key));
        let cmp = db.map(|(h, _, _)| header.compare(&h));
        if cmp.is_none() || cmp == Some(Ordering::Greater) {
            // Step 5a: MinLSArrival. The RFC discards the LSA unacknowledged
            // and waits for the neighbour's retransmission (RxmtInterval
            // later, 5 s by default). We keep the copy and look at it again
            // once MinLSArrival has passed, as if that retransmission had
            // come then: the rate limit holds, and a router fighting back a
            // forged copy of its LSA, or one that re-originated twice in a
            // row, is not cut off for a whole RxmtInterval.
            if let Some((_, true, at)) = db
                && now.since(at) < self.config.min_ls_arrival_ms
            {
                tracing::debug!(ifindex, %key, "flood: MinLSArrival, deferred");
                self.deferred.insert((ifindex, key), (rid, raw));
                let due = at.plus_ms(self.config.min_ls_arrival_ms);
                match self.timers.get(&TimerKind::Deferred) {
                    Some(&cur) if cur <= due => {}
                    _ => self.arm(TimerKind::Deferred, due),
                }
                return LsaOutcome::Next;
            }
            let raw: Arc<[u8]> = raw.into();
            // Steps 5b-5d: take the old copy off retransmission lists (first:
            // the lists hold keys, and flooding adds the new instance's),
            // flood, install.
            self.remove_from_rxmt_lists(ifindex, scope, &key);
            let flooded_back = self.flood(ifindex, Some(rid), scope, &header, &raw);
            self.install(ifindex, LsaEntry::new(lsa, raw, now, !requested));
            // Step 5e: acknowledge (RFC 2328 §13.5, table 19).
            if !flooded_back
                && self
                    .interfaces
                    .get(&ifindex)
                    .is_some_and(|i| i.state != ism::State::Backup || i.dr == rid)
            {
                self.delayed_ack(ifindex, header);
            }
            if header.ls_type == LsaType::GRACE
                && header.adv_router != self.config.router_id
                && let Some(LsaBody::Other(body)) =
                    self.lsdb.get(ifindex, &key).map(|e| e.lsa.body.clone())
            {
                self.gr_grace_lsa(ifindex, &header, &body);
            }
            // Restarting: our own LSAs handed back are the record of our
            // adjacencies, kept as they are until the restart ends.
            if header.adv_router == self.config.router_id && self.is_restarting() {
                tracing::debug!(%key, seq = header.seq, "gr: own LSA handed back");
                return LsaOutcome::Next;
            }
            // Step 5f: our own LSA came back newer (RFC 2328 §13.4).
            if header.adv_router == self.config.router_id {
                self.self_originated_newer += 1;
                // The first one per LSA may be a leftover of our previous
                // life; another after we re-originated means a router far
                // away originates with our id.
                let repeat = !self.self_originated_fought.insert(key);
                if repeat {
                    self.self_originated_repeat += 1;
                }
                if foreign_own {
                    self.self_originated_foreign += 1;
                }
                tracing::info!(%key, seq = header.seq, repeat, "flood: newer self-originated LSA received");
                self.force_originate.insert(key);
                self.originate_needed = true;
            }
            return LsaOutcome::Next;
        }

        // Step 6: requested but not newer than ours.
        if self
            .neighbor_mut(ifindex, rid)
            .is_some_and(|n| n.requests.contains_key(&key))
        {
            self.nsm_event(ifindex, rid, nsm::Event::BadLsReq);
            return LsaOutcome::Stop;
        }

        if cmp == Some(Ordering::Equal) {
            // Step 7: a duplicate; maybe an implied acknowledgement.
            let implied = self
                .neighbor_mut(ifindex, rid)
                .is_some_and(|n| n.rxmt.remove(&key));
            if implied {
                if self
                    .interfaces
                    .get(&ifindex)
                    .is_some_and(|i| i.state == ism::State::Backup && i.dr == rid)
                {
                    self.delayed_ack(ifindex, header);
                }
            } else {
                self.direct_ack(ifindex, rid, header);
            }
            return LsaOutcome::Next;
        }

        // Step 8: ours is newer; send it back unless it is a wrapping flush.
        if let Some(e) = self.lsdb.get(ifindex, &key) {
            let h = e.header_at(now);
            if !(h.is_max_age() && h.seq == MAX_SEQ) {
                let copy = e.aged_copy(now);
                let Some(iface) = self.interfaces.get(&ifindex) else {
                    return LsaOutcome::Next;
                };
                let Some(nbr) = iface.neighbors.get(&rid) else {
                    return LsaOutcome::Next;
                };
                let dst = iface.unicast_dst(nbr.addr);
                self.send_ls_updates(ifindex, dst, vec![copy]);
            }
        }
        LsaOutcome::Next
    }

    /// Return whether any neighbour is in Exchange or Loading.
    pub(crate) fn any_exchange(&self) -> bool {
        self.interfaces.values().any(|i| {
            i.neighbors
                .values()
                .any(|n| matches!(n.state, nsm::State::Exchange | nsm::State::Loading))
        })
    }

    /// Return the interfaces an LSA of `scope` living on `ifindex` is flooded on.
    fn flood_interfaces(&self, ifindex: Option<u32>, scope: LsaScope) -> Vec<u32> {
        match scope {
            LsaScope::Link => ifindex
                .into_iter()
                .filter(|i| self.interfaces.contains_key(i))
                .collect(),
            _ => self.interfaces.keys().copied().collect(),
        }
    }

    /// Flood an LSA (RFC 2328 §13.3); return whether it went back out the
    /// interface it came in on. `ifindex` is where a link-scope LSA lives
    /// (and where a received LSA came in); `from` is the neighbour that sent
    /// it, `None` for our own LSAs.
    pub(crate) fn flood(
        &mut self,
        ifindex_of: u32,
        from: Option<Ipv4Addr>,
        scope: LsaScope,
        header: &LsaHeader,
        raw: &Arc<[u8]>,
    ) -> bool {
        let now = self.now;
        let key = header.key();
        let mut flooded_back = false;
        let mut arm = Vec::new();
        let rx_ifindex = from.map(|_| ifindex_of);
        for ifindex in self.flood_interfaces(Some(ifindex_of), scope) {
            let Some(iface) = self.interfaces.get_mut(&ifindex) else {
                continue;
            };
            if !iface.is_active() {
                continue;
            }
            let mut added = false;
            for nbr in iface.neighbors.values_mut() {
                if nbr.state < nsm::State::Exchange {
                    continue;
                }
                if nbr.state < nsm::State::Full
                    && let Some(req) = nbr.requests.get(&key)
                {
                    match header.compare(req) {
                        Ordering::Less => continue,
                        Ordering::Equal => {
                            nbr.requests.remove(&key);
                            continue;
                        }
                        Ordering::Greater => {
                            nbr.requests.remove(&key);
                        }
                    }
                }
                // The sender is a neighbour on the receiving interface: a
                // router id alone is not enough, since two routers far apart
                // with one id are both our neighbours (on different links).
                if Some(nbr.router_id) == from && Some(ifindex) == rx_ifindex {
                    continue;
                }
                nbr.rxmt.insert(key);
                added = true;
                arm.push((ifindex, nbr.router_id, iface.config.retransmit_interval));
            }
            if !added {
                continue;
            }
            if Some(ifindex) == rx_ifindex {
                let from_dr_bdr = from.is_some_and(|f| f == iface.dr || f == iface.bdr);
                if iface.kind == InterfaceKind::Broadcast && from_dr_bdr {
                    continue;
                }
                if iface.state == ism::State::Backup {
                    continue;
                }
                flooded_back = true;
            }
            let mut copy = raw.to_vec();
            let age = header
                .age
                .saturating_add(crate::packet::lsa::header::INF_TRANS_DELAY)
                .min(MAX_AGE);
            put_u16(&mut copy, 0, age);
            self.flood_queue.entry(ifindex).or_default().push(copy);
        }
        for (ifindex, rid, secs) in arm {
            self.arm_retransmit(ifindex, rid, now.plus_secs(secs));
        }
        flooded_back
    }

    /// Take an LSA off every retransmission list it could be on.
    pub(crate) fn remove_from_rxmt_lists(&mut self, ifindex: u32, scope: LsaScope, key: &LsaKey) {
        for i in self.flood_interfaces(Some(ifindex), scope) {
            if let Some(iface) = self.interfaces.get_mut(&i) {
                for nbr in iface.neighbors.values_mut() {
                    nbr.rxmt.remove(key);
                }
            }
        }
    }

    /// Install an instance and note what it changes (RFC 2328 §13.2).
    pub(crate) fn install(&mut self, ifindex: u32, entry: LsaEntry) {
        let now = self.now;
        let new_max_age = entry.is_max_age(now);
        let header = entry.lsa.header;
        let deadline = if new_max_age {
            now.plus_ms(1000)
        } else if header.adv_router == self.config.router_id {
            entry.reaches(crate::packet::lsa::header::LS_REFRESH_TIME)
        } else {
            entry.reaches(MAX_AGE)
        };
        let is_link = matches!(entry.lsa.body, LsaBody::Link(_));
        tracing::trace!(ifindex, key = %header.key(), seq = header.seq, age = header.age, "lsdb: install");
        let old = self.lsdb.insert(ifindex, entry);
        let changed = match &old {
            None => true,
            Some(o) => {
                let n = self.lsdb.get(ifindex, &header.key());
                o.is_max_age(now) != new_max_age || n.is_none_or(|n| n.lsa.body != o.lsa.body)
            }
        };
        if changed {
            self.spf_needed = true;
            if header.adv_router != self.config.router_id {
                self.gr_topology_changed(header.ls_type);
            }
            if is_link
                && self
                    .interfaces
                    .get(&ifindex)
                    .is_some_and(|i| i.state == ism::State::Dr)
            {
                // The DR's prefix LSA for the link lists the Link-LSA prefixes.
                self.originate_needed = true;
            }
        }
        self.note_aging_deadline(deadline);
    }

    /// Queue an acknowledgement for the delayed-ack timer.
    pub(crate) fn delayed_ack(&mut self, ifindex: u32, header: LsaHeader) {
        let now = self.now;
        if let Some(iface) = self.interfaces.get_mut(&ifindex) {
            iface.delayed_acks.push(header);
            if !self.timers.contains_key(&TimerKind::DelayedAck(ifindex)) {
                self.arm(TimerKind::DelayedAck(ifindex), now.plus_ms(ACK_DELAY_MS));
            }
        }
    }

    /// Queue an acknowledgement sent straight to the neighbour.
    pub(crate) fn direct_ack(&mut self, ifindex: u32, rid: Ipv4Addr, header: LsaHeader) {
        self.direct_acks
            .entry((ifindex, rid))
            .or_default()
            .push(header);
    }

    /// Send the delayed acknowledgements of an interface.
    pub(crate) fn send_delayed_acks(&mut self, ifindex: u32) {
        let Some(iface) = self.interfaces.get_mut(&ifindex) else {
            return;
        };
        let headers = std::mem::take(&mut iface.delayed_acks);
        if headers.is_empty() || !iface.is_active() {
            return;
        }
        let dst = iface.flood_dst();
        self.send_acks(ifindex, dst, &headers);
    }

    /// Send LS Acks for `headers`, split to fit the MTU.
    pub(crate) fn send_acks(&mut self, ifindex: u32, dst: Ipv6Addr, headers: &[LsaHeader]) {
        let Some(iface) = self.interfaces.get(&ifindex) else {
            return;
        };
        let per = ((iface.max_packet() - HEADER_LEN) / LSA_HEADER_LEN).max(1);
        for chunk in headers.chunks(per) {
            let mut body = vec![0u8; chunk.len() * LSA_HEADER_LEN];
            for (h, out) in chunk.iter().zip(body.chunks_exact_mut(LSA_HEADER_LEN)) {
                h.emit(out);
            }
            self.send_raw(ifindex, dst, PacketType::LsAck, &body);
        }
    }

    /// Send encoded LSAs in as few LS Updates as the MTU allows.
    pub(crate) fn send_ls_updates(&mut self, ifindex: u32, dst: Ipv6Addr, lsas: Vec<Vec<u8>>) {
        let Some(iface) = self.interfaces.get(&ifindex) else {
            return;
        };
        let room = iface.max_packet() - HEADER_LEN;
        let mut body: Vec<u8> = Vec::new();
        let mut count = 0u32;
        for lsa in lsas {
            if count > 0 && body.len() + lsa.len() > room {
                put_u32(&mut body, 0, count);
                self.send_raw(ifindex, dst, PacketType::LsUpdate, &body);
                body.clear();
                count = 0;
            }
            if count == 0 {
                body.extend_from_slice(&[0u8; lsupd::MIN_LEN]);
            }
            body.extend_from_slice(&lsa);
            count += 1;
        }
        if count > 0 {
            put_u32(&mut body, 0, count);
            self.send_raw(ifindex, dst, PacketType::LsUpdate, &body);
        }
    }

    /// Send everything flooding and acknowledging queued during this input.
    pub(crate) fn flush_queues(&mut self) {
        for (ifindex, lsas) in std::mem::take(&mut self.flood_queue) {
            let Some(iface) = self.interfaces.get(&ifindex) else {
                continue;
            };
            if !iface.is_active() {
                continue;
            }
            let dst = iface.flood_dst();
            self.send_ls_updates(ifindex, dst, lsas);
        }
        for ((ifindex, rid), headers) in std::mem::take(&mut self.direct_acks) {
            let Some(iface) = self.interfaces.get(&ifindex) else {
                continue;
            };
            let Some(nbr) = iface.neighbors.get(&rid) else {
                continue;
            };
            let dst = iface.unicast_dst(nbr.addr);
            self.send_acks(ifindex, dst, &headers);
        }
    }

    /// Process an LS Ack (RFC 2328 §13.7).
    pub(crate) fn rx_ls_ack(&mut self, ifindex: u32, rid: Ipv4Addr, body: &[u8]) {
        let now = self.now;
        let Ok(ack) = LsAckPacket::new_checked(body) else {
            self.drops
                .drop(now, DropReason::BadLength, ifindex, "LS ack");
            return;
        };
        if !self.may_exchange(ifindex, rid, "LS ack") {
            return;
        }
        let Some(nbr) = self
            .interfaces
            .get(&ifindex)
            .and_then(|i| i.neighbors.get(&rid))
        else {
            return;
        };
        let mut acked = Vec::new();
        for h in ack.headers() {
            let key = h.key();
            if !nbr.rxmt.contains(&key) {
                continue;
            }
            match self.lsdb.get(ifindex, &key) {
                Some(e) if h.compare(&e.header_at(now)) == Ordering::Equal => acked.push(key),
                None => acked.push(key),
                Some(_) => {
                    tracing::debug!(ifindex, neighbor = %rid, %key, "flood: ack for another instance")
                }
            }
        }
        if let Some(nbr) = self.neighbor_mut(ifindex, rid) {
            for k in acked {
                nbr.rxmt.remove(&k);
            }
        }
    }
}
