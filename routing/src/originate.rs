//! Origination of our own LSAs (RFC 5340 §4.4.3, RFC 2328 §12.4) and LSDB
//! aging (RFC 2328 §14).
//!
//! Instead of originating at each event, the core recomputes the whole set
//! of LSAs it should advertise once per input (`originate_needed`) and
//! compares it with the database: changed ones are re-originated (subject to
//! MinLSInterval), missing ones created, unwanted ones flushed.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

/// How many of our last bodies of each own LSA are remembered.
const OWN_BODIES_KEPT: usize = 16;

use crate::events::TimerKind;
use crate::instance::Instance;
use crate::interface::{InterfaceKind, ism};
use crate::lsdb::LsaEntry;
use crate::neighbor::nsm;
use crate::packet::lsa::header::{
    INITIAL_SEQ, LS_REFRESH_TIME, LsaHeader, LsaKey, LsaType, MAX_SEQ,
};
use crate::packet::lsa::intra_area_prefix::IntraAreaPrefixLsa;
use crate::packet::lsa::link::LinkLsa;
use crate::packet::lsa::network::NetworkLsa;
use crate::packet::lsa::router::{RouterFlags, RouterLink, RouterLinkType, RouterLsa};
use crate::packet::lsa::{Lsa, LsaBody};
use crate::packet::prefix::{LsaPrefix, PrefixOptions, is_link_local};

impl Instance {
    /// Return every LSA we should be advertising, by (interface, key); the
    /// interface matters for Link-LSAs only (0 otherwise).
    fn desired_lsas(&self) -> BTreeMap<(u32, LsaKey), LsaBody> {
        let rid = self.config.router_id;
        let key = |ls_type, ls_id| LsaKey {
            ls_type,
            adv_router: rid,
            ls_id,
        };
        let mut out = BTreeMap::new();
        if self.retired {
            return out;
        }
        // Restarting or about to: Grace-LSAs, and nothing else changes
        // (RFC 3623 §2, §2.1).
        if let Some(body) = self.gr_grace_body().or_else(|| self.gr_prepared.clone()) {
            for iface in self.interfaces.values().filter(|i| i.is_active()) {
                out.insert(
                    (iface.ifindex, key(LsaType::GRACE, iface.ifindex)),
                    LsaBody::Other(body.clone()),
                );
            }
            if self.is_restarting() {
                return out;
            }
        }
        let mut links = Vec::new();
        for iface in self.interfaces.values().filter(|i| i.is_active()) {
            let ifindex = iface.ifindex;
            // A neighbour we help restart counts as Full (RFC 3623 §3).
            let full = || {
                iface
                    .neighbors
                    .values()
                    .filter(|n| n.state == nsm::State::Full || n.helping.is_some())
            };
            match iface.kind {
                InterfaceKind::PointToPoint => {
                    for n in full() {
                        links.push(RouterLink {
                            link_type: RouterLinkType::PointToPoint,
                            metric: iface.config.cost,
                            interface_id: ifindex,
                            neighbor_interface_id: n.interface_id,
                            neighbor_router_id: n.router_id,
                        });
                    }
                }
                InterfaceKind::Broadcast => {
                    let dr_if_id = if iface.state == ism::State::Dr && full().next().is_some() {
                        Some(ifindex)
                    } else {
                        iface
                            .neighbors
                            .get(&iface.dr)
                            .filter(|n| n.state == nsm::State::Full || n.helping.is_some())
                            .map(|n| n.interface_id)
                    };
                    if let Some(nbr_if) = dr_if_id {
                        links.push(RouterLink {
                            link_type: RouterLinkType::Transit,
                            metric: iface.config.cost,
                            interface_id: ifindex,
                            neighbor_interface_id: nbr_if,
                            neighbor_router_id: iface.dr,
                        });
                    }
                    if iface.state == ism::State::Dr && full().next().is_some() {
                        let mut attached: Vec<Ipv4Addr> = full().map(|n| n.router_id).collect();
                        attached.push(rid);
                        attached.sort();
                        out.insert(
                            (0, key(LsaType::NETWORK, ifindex)),
                            LsaBody::Network(NetworkLsa {
                                options: self.config.af.options(),
                                attached: attached.clone(),
                            }),
                        );
                        // The link's prefixes, from the attached routers' Link-LSAs.
                        let mut prefixes: Vec<LsaPrefix> = Vec::new();
                        if let Some(db) = self.lsdb.link(ifindex) {
                            for e in db.values() {
                                if let LsaBody::Link(l) = &e.lsa.body
                                    && attached.contains(&e.lsa.header.adv_router)
                                {
                                    for p in &l.prefixes {
                                        if p.options.contains(PrefixOptions::NU | PrefixOptions::LA)
                                            || is_link_local(&p.prefix)
                                        {
                                            continue;
                                        }
                                        prefixes.push(LsaPrefix { metric: 0, ..*p });
                                    }
                                }
                            }
                        }
                        prefixes.sort();
                        prefixes.dedup_by_key(|p| p.prefix);
                        if !prefixes.is_empty() {
                            out.insert(
                                (0, key(LsaType::INTRA_AREA_PREFIX, ifindex)),
                                LsaBody::IntraAreaPrefix(IntraAreaPrefixLsa {
                                    ref_ls_type: LsaType::NETWORK,
                                    ref_ls_id: ifindex,
                                    ref_adv_router: rid,
                                    prefixes,
                                }),
                            );
                        }
                    }
                }
            }
            out.insert(
                (ifindex, key(LsaType::LINK, ifindex)),
                LsaBody::Link(LinkLsa {
                    priority: iface.config.priority,
                    options: self.config.af.options(),
                    link_local: self.config.af.link_lsa_address(iface.link_local),
                    prefixes: Vec::new(),
                }),
            );
        }
        out.insert(
            (0, key(LsaType::ROUTER, 0)),
            LsaBody::Router(RouterLsa {
                flags: RouterFlags(0),
                options: self.config.af.options(),
                links,
            }),
        );
        if !self.config.stub_prefixes.is_empty() {
            let prefixes = self
                .config
                .stub_prefixes
                .iter()
                .map(|p| LsaPrefix {
                    prefix: *p,
                    options: PrefixOptions(if p.prefix_len() == self.config.af.max_prefix_len() {
                        PrefixOptions::LA
                    } else {
                        0
                    }),
                    metric: 0,
                })
                .collect();
            out.insert(
                (0, key(LsaType::INTRA_AREA_PREFIX, 0)),
                LsaBody::IntraAreaPrefix(IntraAreaPrefixLsa {
                    ref_ls_type: LsaType::ROUTER,
                    ref_ls_id: 0,
                    ref_adv_router: rid,
                    prefixes,
                }),
            );
        }
        out
    }

    /// Bring our LSAs in the database in line with what we should advertise.
    pub(crate) fn originate_all(&mut self) {
        let now = self.now;
        let rid = self.config.router_id;
        let desired = self.desired_lsas();
        let mut wait_until = None;
        for ((ifindex, key), body) in &desired {
            let db = self
                .lsdb
                .get(*ifindex, key)
                .map(|e| (e.header_at(now), e.lsa.body == *body));
            let forced = self.force_originate.contains(key);
            let seq = match db {
                Some((h, same)) if same && !forced && !h.is_max_age() => continue,
                Some((h, _)) if h.seq == MAX_SEQ => {
                    // Sequence wrap (RFC 2328 §12.1.6): flush, then start over
                    // once the flushed instance is gone.
                    if !h.is_max_age() {
                        self.flush(*ifindex, key);
                    }
                    continue;
                }
                Some((h, _)) => h.seq.wrapping_add(1),
                None => INITIAL_SEQ,
            };
            let hold = match self.last_originated.get(key) {
                Some(&(last, hold)) => {
                    let hold = self.current_hold(now, last, hold);
                    let ready = last.plus_ms(hold);
                    if ready > now {
                        wait_until = Some(wait_until.map_or(ready, |w: crate::Time| w.min(ready)));
                        continue;
                    }
                    Some(hold)
                }
                None => None,
            };
            self.force_originate.remove(key);
            let mut lsa = Lsa {
                header: LsaHeader {
                    age: 0,
                    ls_type: key.ls_type,
                    ls_id: key.ls_id,
                    adv_router: rid,
                    seq,
                    checksum: 0,
                    length: 0,
                },
                body: body.clone(),
            };
            let raw: std::sync::Arc<[u8]> = lsa.encode().into();
            tracing::debug!(%key, seq, "originate");
            let bodies = self.own_bodies.entry(*key).or_default();
            if !bodies.contains(body) {
                bodies.push_back(body.clone());
                if bodies.len() > OWN_BODIES_KEPT {
                    bodies.pop_front();
                }
            }
            let scope = key
                .ls_type
                .flooding_scope()
                .unwrap_or(crate::packet::lsa::header::LsaScope::Area);
            self.remove_from_rxmt_lists(*ifindex, scope, key);
            let header = lsa.header;
            self.install(*ifindex, LsaEntry::new(lsa, raw.clone(), now, false));
            self.flood(*ifindex, None, scope, &header, &raw);
            let next = self.next_hold(hold);
            self.last_originated.insert(*key, (now, next));
        }
        // Flush what we advertise but no longer should (including leftovers
        // of an earlier life of this router learnt from neighbours); not
        // while restarting, when those are the record of our adjacencies.
        let keep_all = self.is_restarting();
        for (ifindex, key) in self.lsdb.keys_of(rid) {
            if keep_all {
                break;
            }
            if desired.contains_key(&(ifindex, key)) {
                continue;
            }
            if self
                .lsdb
                .get(ifindex, &key)
                .is_some_and(|e| !e.is_max_age(now))
            {
                self.flush(ifindex, &key);
            }
            self.force_originate.remove(&key);
        }
        if let Some(at) = wait_until {
            self.arm(TimerKind::Originate, at);
        }
    }

    /// The hold an LSA last originated at `last` must keep: the short one
    /// again after a quiet MinLSInterval, else the one stored with it.
    fn current_hold(&self, now: crate::Time, last: crate::Time, stored: u64) -> u64 {
        let c = &self.config;
        if now.since(last) >= c.min_ls_interval_ms {
            c.min_ls_hold_ms.min(c.min_ls_interval_ms)
        } else {
            stored
        }
    }

    /// The hold after an origination that kept `hold` (none: the first):
    /// doubled, up to MinLSInterval.
    fn next_hold(&self, hold: Option<u64>) -> u64 {
        let c = &self.config;
        let first = c.min_ls_hold_ms.min(c.min_ls_interval_ms);
        match hold {
            None => first,
            Some(h) => h.saturating_mul(2).clamp(first, c.min_ls_interval_ms),
        }
    }

    /// Prematurely age one of our LSAs and flood it (RFC 2328 §14.1).
    fn flush(&mut self, ifindex: u32, key: &LsaKey) {
        let now = self.now;
        let Some(e) = self.lsdb.get_mut(ifindex, key) else {
            return;
        };
        tracing::debug!(%key, "flush");
        e.set_max_age(now);
        let (header, raw) = (e.lsa.header, e.raw.clone());
        let scope = key
            .ls_type
            .flooding_scope()
            .unwrap_or(crate::packet::lsa::header::LsaScope::Area);
        self.remove_from_rxmt_lists(ifindex, scope, key);
        self.flood(ifindex, None, scope, &header, &raw);
        self.spf_needed = true;
        self.note_aging_deadline(now.plus_ms(1000));
    }

    /// Age the database (RFC 2328 §14): refresh our LSAs at LSRefreshTime,
    /// flood LSAs that reached MaxAge, remove MaxAge LSAs nobody still needs.
    pub(crate) fn age_lsdb(&mut self) {
        let now = self.now;
        let rid = self.config.router_id;
        let exchange = self.any_exchange();
        let mut expired = Vec::new();
        let mut removable = Vec::new();
        let mut refresh = Vec::new();
        let mut next = None::<crate::Time>;
        let mut upd = |t: crate::Time| next = Some(next.map_or(t, |n| n.min(t)));
        for (ifindex, e) in self.lsdb.iter() {
            let ifindex = ifindex.unwrap_or(0);
            let key = e.lsa.header.key();
            if e.lsa.header.is_max_age() {
                let listed = self
                    .interfaces
                    .values()
                    .any(|i| i.neighbors.values().any(|n| n.rxmt.contains(&key)));
                if !listed && !exchange {
                    removable.push((ifindex, key));
                } else {
                    upd(now.plus_ms(1000));
                }
            } else if e.is_max_age(now) {
                expired.push((ifindex, key));
                // Flushed below; looked at again to remove it once no
                // neighbour still has to acknowledge it. The timer is
                // re-armed from `next` at the end, so the flush's own
                // deadline must be in it.
                upd(now.plus_ms(1000));
            } else if e.lsa.header.adv_router == rid {
                if e.age(now) >= LS_REFRESH_TIME {
                    refresh.push(key);
                } else {
                    upd(e.reaches(LS_REFRESH_TIME));
                }
            } else {
                upd(e.reaches(crate::packet::lsa::header::MAX_AGE));
            }
        }
        if !refresh.is_empty() {
            self.force_originate.extend(refresh);
            self.originate_needed = true;
        }
        for (ifindex, key) in expired {
            // Reached MaxAge on its own: flood it so everybody drops it.
            self.flush(ifindex, &key);
        }
        for (ifindex, key) in removable {
            self.lsdb.remove(ifindex, &key);
            if key.adv_router == rid {
                // A flushed own LSA (e.g. after a sequence wrap) may be wanted again.
                self.originate_needed = true;
            }
        }
        if let Some(at) = next {
            self.arm(TimerKind::Aging, at.max(now.plus_ms(1000)));
        }
    }

    /// Make sure the aging timer fires no later than `at`.
    pub(crate) fn note_aging_deadline(&mut self, at: crate::Time) {
        let at = at.max(self.now.plus_ms(1000));
        match self.timers.get(&TimerKind::Aging) {
            Some(&cur) if cur <= at => {}
            _ => self.arm(TimerKind::Aging, at),
        }
    }
}
