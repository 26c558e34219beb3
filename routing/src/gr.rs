//! Graceful restart (RFC 3623, for OSPFv3 RFC 5187), both roles.
//!
//! **Restarting.** An instance started with [`GracefulRestart::restarting`]
//! had a life before this one whose routes still forward (the embedding
//! kept them). Before its first Hello on each interface it announces a
//! Grace-LSA there (RFC 3623 §5: an unplanned restart sends them before
//! any Hello; a planned one sent them already, and sends them again), so
//! its neighbours keep it adjacent and keep routing through it. Until it
//! leaves graceful restart it originates nothing else, takes its own LSAs
//! as the neighbours hand them back (neither flushing nor re-originating
//! them: they are the record of its adjacencies before the restart), and
//! computes routes without handing them out (§2). It leaves when every
//! adjacency its own Router-LSA lists is Full again, when a neighbour's
//! Router-LSA no longer lists it (that neighbour is not helping), or when
//! the grace period ends (§2.2); then it re-originates everything with
//! new sequence numbers, flushes what it no longer advertises (the
//! Grace-LSAs among it) and hands out its routes (§2.3).
//!
//! **Helping.** A Full neighbour that announces a Grace-LSA is kept
//! adjacent for its grace period minus the LSA's age (§3.1): Hellos that
//! no longer list us and its inactivity timer do not take it down, and our
//! LSAs keep listing it whatever its state while it resynchronises. We stop
//! when it flushes its Grace-LSA, when the period ends (then it goes Down
//! if it is not Full), or, with strict checking, when an LSA that changes
//! the topology arrives (§3.2).
//!
//! The Grace-LSA is tied to its advertising router, as RFC 5187 says;
//! FRR 8.4 and holo tie it to the neighbour that sent it, which is the
//! same router on a point-to-point link.

use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

use crate::events::{Time, TimerKind};
use crate::instance::Instance;
use crate::neighbor::nsm;
use crate::packet::lsa::grace::{Grace, RestartReason};
use crate::packet::lsa::header::{LsaHeader, LsaType};

/// Graceful-restart settings of an instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct GracefulRestart {
    /// Help neighbours that restart.
    pub helper: bool,
    /// Stop helping when the topology changes (RFC 3623 §3.2, default on).
    pub strict: bool,
    /// This start is a restart: announce Grace-LSAs with this period
    /// (seconds) and reason before the first Hello.
    pub restarting: Option<(u32, RestartReason)>,
}

impl Default for GracefulRestart {
    fn default() -> Self {
        GracefulRestart {
            helper: true,
            strict: true,
            restarting: None,
        }
    }
}

/// Why graceful restart ended (for the log and the tests).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum GrExit {
    /// Restarting: every adjacency is back. Helping: the Grace-LSA was flushed.
    Completed,
    /// The grace period ran out.
    Expired,
    /// Restarting: a neighbour does not help. Helping: the topology changed.
    Inconsistent,
}

/// LS types whose changed content is a topology change (RFC 3623 §3.2:
/// types 1-5 and 7; RFC 5187 adds nothing, the intra-area-prefix LSA as
/// FRR and holo count it).
fn is_topology(t: LsaType) -> bool {
    matches!(
        t,
        LsaType::ROUTER
            | LsaType::NETWORK
            | LsaType::INTER_AREA_PREFIX
            | LsaType::INTER_AREA_ROUTER
            | LsaType::AS_EXTERNAL
            | LsaType::NSSA
            | LsaType::INTRA_AREA_PREFIX
    )
}

impl Instance {
    /// Return whether this instance is restarting gracefully.
    pub fn is_restarting(&self) -> bool {
        self.restart_until.is_some()
    }

    /// Return the neighbours we help, as (ifindex, router id).
    pub fn helping(&self) -> Vec<(u32, Ipv4Addr)> {
        self.interfaces
            .values()
            .flat_map(|i| {
                i.neighbors
                    .values()
                    .filter(|n| n.helping.is_some())
                    .map(|n| (i.ifindex, n.router_id))
            })
            .collect()
    }

    /// A Grace-LSA of another router was installed on `ifindex` (§3.1).
    pub(crate) fn gr_grace_lsa(&mut self, ifindex: u32, header: &LsaHeader, body: &[u8]) {
        let now = self.now;
        let rid = header.adv_router;
        if header.is_max_age() {
            if self
                .neighbor_mut(ifindex, rid)
                .is_some_and(|n| n.helping.is_some())
            {
                self.gr_helper_exit(ifindex, rid, GrExit::Completed);
            }
            return;
        }
        let Some(grace) = Grace::parse(body) else {
            tracing::info!(ifindex, neighbor = %rid, "gr: Grace-LSA without period or reason: not helping");
            return;
        };
        let age = u32::from(header.age);
        let helper = self.config.graceful_restart.helper;
        let restarting = self.is_restarting();
        let Some(nbr) = self.neighbor_mut(ifindex, rid) else {
            return;
        };
        let refusal = if !helper {
            Some("helping is off")
        } else if restarting {
            Some("we are restarting ourselves")
        } else if nbr.helping.is_none() && nbr.state != nsm::State::Full {
            Some("the neighbour is not Full")
        } else if age >= grace.period {
            Some("the grace period is over")
        } else if nbr.helping.is_none() && nbr.rxmt.iter().any(|k| is_topology(k.ls_type)) {
            // Its database differs from ours already (§3.1 check 2).
            Some("a topology change is still on its retransmission list")
        } else {
            None
        };
        if let Some(why) = refusal {
            tracing::info!(ifindex, neighbor = %rid, why, "gr: not helping");
            return;
        }
        let already = nbr.helping.is_some();
        let until = now.plus_ms(u64::from(grace.period - age) * 1000);
        nbr.helping = Some(until);
        self.arm(TimerKind::HelperGrace(ifindex, rid), until);
        if !already {
            tracing::info!(ifindex, neighbor = %rid, period = grace.period, age, reason = ?grace.reason, "gr: helping a restarting neighbour");
        }
    }

    /// Stop helping `rid` on `ifindex`.
    pub(crate) fn gr_helper_exit(&mut self, ifindex: u32, rid: Ipv4Addr, why: GrExit) {
        let Some(nbr) = self.neighbor_mut(ifindex, rid) else {
            return;
        };
        if nbr.helping.take().is_none() {
            return;
        }
        let full = nbr.state == nsm::State::Full;
        tracing::info!(ifindex, neighbor = %rid, ?why, full, "gr: helping ends");
        self.gr_helper_exit = Some(why);
        self.cancel(TimerKind::HelperGrace(ifindex, rid));
        // Our LSAs and routes now follow the adjacency as it is (§3.2).
        self.originate_needed = true;
        self.spf_needed = true;
        if !full {
            self.nsm_event(ifindex, rid, nsm::Event::InactivityTimer);
        } else {
            self.ism_event(ifindex, crate::interface::ism::Event::NeighborChange);
        }
    }

    /// An LSA was installed whose content changed: with strict checking a
    /// topology change ends all helping (§3.2).
    pub(crate) fn gr_topology_changed(&mut self, ls_type: LsaType) {
        if !self.config.graceful_restart.strict || !is_topology(ls_type) {
            return;
        }
        for (ifindex, rid) in self.helping() {
            self.gr_helper_exit(ifindex, rid, GrExit::Inconsistent);
        }
    }

    /// Leave graceful restart if its work is done or cannot be done
    /// (§2.2); call after adjacency changes and installs.
    pub(crate) fn gr_restart_check(&mut self) {
        let Some(until) = self.restart_until else {
            return;
        };
        if self.now >= until {
            self.gr_restart_exit(GrExit::Expired);
            return;
        }
        match self.gr_adjacencies_back() {
            Some(true) => self.gr_restart_exit(GrExit::Completed),
            Some(false) => {}
            None => self.gr_restart_exit(GrExit::Inconsistent),
        }
    }

    /// Whether every adjacency our pre-restart Router-LSA lists is Full
    /// again: `None` if a neighbour it lists no longer lists us (it is not
    /// helping), `Some(false)` while one is still resynchronising or the
    /// LSA has not come back yet.
    fn gr_adjacencies_back(&self) -> Option<bool> {
        use crate::packet::lsa::{LsaBody, router::RouterLinkType};
        let me = self.config.router_id;
        let key = crate::packet::lsa::header::LsaKey {
            ls_type: LsaType::ROUTER,
            adv_router: me,
            ls_id: 0,
        };
        let Some(entry) = self.lsdb.get(0, &key) else {
            // No neighbour handed our Router-LSA back. Once every one of
            // them has finished its exchange, none holds it: there is no
            // earlier life to restore.
            let mut nbrs = self
                .interfaces
                .values()
                .flat_map(|i| i.neighbors.values())
                .peekable();
            let synced = nbrs.peek().is_some()
                && nbrs.all(|n| matches!(n.state, nsm::State::Full | nsm::State::TwoWay));
            return Some(synced);
        };
        let LsaBody::Router(own) = &entry.lsa.body else {
            return Some(false);
        };
        let full = |ifindex: u32, rid: Ipv4Addr| {
            self.interfaces
                .get(&ifindex)
                .and_then(|i| i.neighbors.get(&rid))
                .is_some_and(|n| n.state == nsm::State::Full)
        };
        let mut back = true;
        for link in &own.links {
            let nbr = link.neighbor_router_id;
            match link.link_type {
                RouterLinkType::PointToPoint => {
                    // A neighbour that re-originated without us is not helping.
                    let theirs = crate::packet::lsa::header::LsaKey {
                        ls_type: LsaType::ROUTER,
                        adv_router: nbr,
                        ls_id: 0,
                    };
                    if let Some(LsaBody::Router(r)) = self.lsdb.get(0, &theirs).map(|e| &e.lsa.body)
                        && !r.links.iter().any(|l| l.neighbor_router_id == me)
                    {
                        return None;
                    }
                    back &= full(link.interface_id, nbr);
                }
                RouterLinkType::Transit if nbr == me => {
                    // We were the DR: everyone our Network-LSA lists.
                    let net = crate::packet::lsa::header::LsaKey {
                        ls_type: LsaType::NETWORK,
                        adv_router: me,
                        ls_id: link.interface_id,
                    };
                    match self.lsdb.get(0, &net).map(|e| &e.lsa.body) {
                        Some(LsaBody::Network(n)) => {
                            for r in n.attached.iter().filter(|r| **r != me) {
                                back &= full(link.interface_id, *r);
                            }
                        }
                        _ => back = false,
                    }
                }
                RouterLinkType::Transit => back &= full(link.interface_id, nbr),
                _ => {}
            }
        }
        Some(back)
    }

    /// Leave graceful restart (§2.3): everything re-originated with new
    /// sequence numbers, stale own LSAs and the Grace-LSAs flushed, routes
    /// handed out.
    pub(crate) fn gr_restart_exit(&mut self, why: GrExit) {
        if self.restart_until.take().is_none() {
            return;
        }
        tracing::info!(?why, "gr: restart ends");
        self.cancel(TimerKind::GraceEnd);
        self.gr_exit = Some(why);
        let rid = self.config.router_id;
        for (_, key) in self.lsdb.keys_of(rid) {
            self.force_originate.insert(key);
        }
        self.originate_needed = true;
        self.spf_needed = true;
    }

    /// Return whether a planned restart was announced ([`crate::Input::PrepareRestart`]).
    pub fn restart_prepared(&self) -> bool {
        self.gr_prepared.is_some()
    }

    /// How helping a restarting neighbour last ended, if it did.
    pub fn helper_exit(&self) -> Option<GrExit> {
        self.gr_helper_exit
    }

    /// How the last graceful restart of this instance ended, if it did.
    pub fn gr_exit(&self) -> Option<GrExit> {
        self.gr_exit
    }

    /// The Grace-LSA body this instance announces while restarting.
    pub(crate) fn gr_grace_body(&self) -> Option<Vec<u8>> {
        let (period, reason) = self.config.graceful_restart.restarting?;
        self.restart_until?;
        Some(Grace { period, reason }.emit())
    }

    /// The deadline of a restart starting `now`.
    pub(crate) fn gr_start(config: &GracefulRestart, now: Time) -> Option<Time> {
        config
            .restarting
            .map(|(period, _)| now.plus_ms(u64::from(period) * 1000))
    }
}
