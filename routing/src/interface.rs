//! OSPF interfaces: configuration, the interface state machine (RFC 2328
//! §9.3), Hellos (§9.5, §10.5) and the DR election of broadcast links (§9.4).
//!
//! The mesh default is point-to-point: no election, everything sent to
//! AllSPFRouters. Broadcast links elect a DR/BDR by router id (RFC 5340 §4.2.1).

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, Ipv6Addr};

use serde::{Deserialize, Serialize};

use crate::af::AddressFamily;
use crate::events::{Time, TimerKind};
use crate::instance::Instance;
use crate::neighbor::{Neighbor, nsm};
use crate::packet::hello::HelloRepr;
use crate::packet::lsa::header::LsaHeader;
use crate::packet::{ALL_D_ROUTERS, ALL_SPF_ROUTERS, Body, Options};

/// Network type of an interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub enum InterfaceKind {
    /// One neighbour, no election (the mesh default).
    #[default]
    PointToPoint,
    /// A multi-access link with DR/BDR election.
    Broadcast,
}

/// Per-interface settings.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct InterfaceConfig {
    pub kind: InterfaceKind,
    /// Start point-to-point, and turn broadcast (for as long as the
    /// interface stays up) when the link shows it is multi-access: Hellos
    /// from two routers with different link-local addresses, or a Hello
    /// naming a DR or BDR. A cheap switch on a mesh port then needs no
    /// configuration. Only read when `kind` is point-to-point.
    #[serde(default)]
    pub detect_broadcast: bool,
    /// Send and accept no packets; the interface only exists for the record.
    pub passive: bool,
    /// Output cost of the interface.
    pub cost: u16,
    /// Seconds between Hellos.
    pub hello_interval: u16,
    /// Seconds without a Hello before a neighbour is declared down.
    pub dead_interval: u16,
    /// Seconds before an unacknowledged LSA, DD packet or request is resent.
    pub retransmit_interval: u16,
    /// OSPFv3 instance id (RFC 5340 §2.4); must match the neighbours'.
    pub instance_id: u8,
    /// DR election priority; 0 never becomes DR/BDR.
    pub priority: u8,
    /// Authenticate every packet (RFC 7166) with this key chain; `None`:
    /// no authentication.
    #[serde(default)]
    pub auth: Option<crate::packet::auth::KeyChain>,
}

impl Default for InterfaceConfig {
    fn default() -> Self {
        InterfaceConfig {
            kind: InterfaceKind::PointToPoint,
            detect_broadcast: false,
            passive: false,
            cost: 10,
            hello_interval: 1,
            dead_interval: 3,
            retransmit_interval: 2,
            instance_id: 0,
            priority: 1,
            auth: None,
        }
    }
}

/// The interface state machine (RFC 2328 §9.1, §9.2).
pub mod ism {
    use serde::{Deserialize, Serialize};

    #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
    pub enum State {
        Down,
        Loopback,
        Waiting,
        PointToPoint,
        DrOther,
        Backup,
        Dr,
    }

    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
    pub enum Event {
        InterfaceUp,
        WaitTimer,
        BackupSeen,
        NeighborChange,
        InterfaceDown,
    }
}

/// One interface the instance runs on.
#[derive(Debug, Clone)]
pub struct Interface {
    pub ifindex: u32,
    pub name: String,
    pub link_local: Ipv6Addr,
    pub mtu: u16,
    pub config: InterfaceConfig,
    /// The instance's address family.
    pub af: AddressFamily,
    /// The network type in force: `config.kind`, or broadcast once
    /// `config.detect_broadcast` saw a multi-access link.
    pub kind: InterfaceKind,
    pub state: ism::State,
    /// Router id of the DR (broadcast), 0.0.0.0 if none.
    pub dr: Ipv4Addr,
    /// Router id of the BDR (broadcast), 0.0.0.0 if none.
    pub bdr: Ipv4Addr,
    pub neighbors: BTreeMap<Ipv4Addr, Neighbor>,
    /// Headers waiting for the delayed-ack timer (RFC 2328 §13.5).
    pub(crate) delayed_acks: Vec<LsaHeader>,
}

impl Interface {
    pub(crate) fn new(
        ifindex: u32,
        name: String,
        link_local: Ipv6Addr,
        mtu: u16,
        config: InterfaceConfig,
        af: AddressFamily,
    ) -> Self {
        Interface {
            ifindex,
            name,
            link_local,
            mtu,
            af,
            kind: config.kind,
            config,
            state: ism::State::Down,
            dr: Ipv4Addr::UNSPECIFIED,
            bdr: Ipv4Addr::UNSPECIFIED,
            neighbors: BTreeMap::new(),
            delayed_acks: Vec::new(),
        }
    }

    /// Return whether packets go out and come in here.
    pub fn is_active(&self) -> bool {
        self.state != ism::State::Down && !self.config.passive
    }

    /// Return the largest OSPF packet (without IPv6 header, and without
    /// the authentication trailer that may follow it) we send here.
    pub fn max_packet(&self) -> usize {
        let trailer = self.config.auth.as_ref().map_or(0, |c| {
            c.keys
                .iter()
                .map(|k| k.algorithm.trailer_len())
                .max()
                .unwrap_or(0)
        });
        usize::from(self.mtu)
            .saturating_sub(crate::packet::IPV6_HEADER_LEN + trailer)
            .max(256)
    }

    /// The options our Hellos and DD packets carry here: the family's, and
    /// the AT-bit when the interface authenticates (RFC 7166 §2.1).
    pub fn options(&self) -> Options {
        let base = self.af.options();
        match self.config.auth {
            Some(_) => Options(base.0 | Options::AT),
            None => base,
        }
    }

    /// Return where multicast LSUs and delayed acks go (RFC 2328 §13.3 step 5).
    pub fn flood_dst(&self) -> Ipv6Addr {
        match (self.kind, self.state) {
            (InterfaceKind::Broadcast, ism::State::DrOther | ism::State::Waiting) => ALL_D_ROUTERS,
            _ => ALL_SPF_ROUTERS,
        }
    }

    /// Return where packets for one neighbour go: unicast on broadcast
    /// links, AllSPFRouters on point-to-point ones (RFC 2328 §8.1).
    pub fn unicast_dst(&self, nbr_addr: Ipv6Addr) -> Ipv6Addr {
        match self.kind {
            InterfaceKind::Broadcast => nbr_addr,
            InterfaceKind::PointToPoint => ALL_SPF_ROUTERS,
        }
    }

    /// Return whether an adjacency should form with `nbr` (RFC 2328 §10.4).
    pub(crate) fn adjacency_wanted(&self, router_id: Ipv4Addr, nbr: Ipv4Addr) -> bool {
        match self.kind {
            InterfaceKind::PointToPoint => true,
            InterfaceKind::Broadcast => [router_id, nbr]
                .iter()
                .any(|r| *r == self.dr || *r == self.bdr),
        }
    }
}

/// One candidate in the DR election.
#[derive(Debug, Clone, Copy)]
struct Candidate {
    router_id: Ipv4Addr,
    priority: u8,
    declared_dr: bool,
    declared_bdr: bool,
}

/// Run the DR election of RFC 2328 §9.4 steps 2-3; return (DR, BDR).
fn elect(cands: &[Candidate]) -> (Ipv4Addr, Ipv4Addr) {
    let best = |it: &mut dyn Iterator<Item = &Candidate>| {
        it.max_by_key(|c| (c.priority, c.router_id))
            .map(|c| c.router_id)
    };
    let eligible: Vec<&Candidate> = cands.iter().filter(|c| c.priority > 0).collect();
    let bdr = best(
        &mut eligible
            .iter()
            .copied()
            .filter(|c| !c.declared_dr && c.declared_bdr),
    )
    .or_else(|| best(&mut eligible.iter().copied().filter(|c| !c.declared_dr)))
    .unwrap_or(Ipv4Addr::UNSPECIFIED);
    let dr = best(&mut eligible.iter().copied().filter(|c| c.declared_dr)).unwrap_or(bdr);
    let bdr = if dr == bdr {
        Ipv4Addr::UNSPECIFIED
    } else {
        bdr
    };
    (dr, bdr)
}

impl Instance {
    /// Feed an event to the interface state machine.
    pub(crate) fn ism_event(&mut self, ifindex: u32, event: ism::Event) {
        use ism::Event as E;
        use ism::State as S;
        let now = self.now;
        let Some(iface) = self.interfaces.get_mut(&ifindex) else {
            return;
        };
        let old = iface.state;
        let new = match (old, event) {
            (S::Down, E::InterfaceUp) => match iface.kind {
                InterfaceKind::PointToPoint => S::PointToPoint,
                InterfaceKind::Broadcast if iface.config.passive => S::DrOther,
                InterfaceKind::Broadcast if iface.config.priority == 0 => S::DrOther,
                InterfaceKind::Broadcast => {
                    let at = now.plus_secs(iface.config.dead_interval);
                    self.arm(TimerKind::Wait(ifindex), at);
                    S::Waiting
                }
            },
            (S::Waiting, E::WaitTimer | E::BackupSeen) => {
                self.cancel(TimerKind::Wait(ifindex));
                self.dr_election(ifindex)
            }
            (S::DrOther | S::Backup | S::Dr, E::NeighborChange) => self.dr_election(ifindex),
            (_, E::InterfaceDown) => {
                self.interface_down(ifindex);
                S::Down
            }
            (state, event) => {
                tracing::debug!(ifindex, ?state, ?event, "ism: event ignored");
                return;
            }
        };
        let Some(iface) = self.interfaces.get_mut(&ifindex) else {
            return;
        };
        iface.state = new;
        if old != new {
            tracing::info!(ifindex, name = %iface.name, ?old, ?new, "ism: state change");
            if old == S::Down && !iface.config.passive {
                // First Hello right away, then every HelloInterval.
                self.arm(TimerKind::Hello(ifindex), now);
            }
            self.originate_needed = true;
            self.spf_needed = true;
        }
    }

    /// Leave an interface: drop its neighbours, timers and link-scope LSAs.
    fn interface_down(&mut self, ifindex: u32) {
        let nbrs: Vec<Ipv4Addr> = self
            .interfaces
            .get(&ifindex)
            .map(|i| i.neighbors.keys().copied().collect())
            .unwrap_or_default();
        for rid in nbrs {
            self.nsm_event(ifindex, rid, nsm::Event::KillNbr);
        }
        for t in [
            TimerKind::Hello(ifindex),
            TimerKind::Wait(ifindex),
            TimerKind::DelayedAck(ifindex),
        ] {
            self.cancel(t);
        }
        if let Some(iface) = self.interfaces.get_mut(&ifindex) {
            iface.delayed_acks.clear();
            iface.dr = Ipv4Addr::UNSPECIFIED;
            iface.bdr = Ipv4Addr::UNSPECIFIED;
        }
        self.lsdb.drop_link_scope(ifindex);
        self.flood_queue.remove(&ifindex);
    }

    /// Elect DR and BDR on a broadcast interface (RFC 2328 §9.4); return the
    /// interface's new state and raise AdjOK? where the result changed.
    fn dr_election(&mut self, ifindex: u32) -> ism::State {
        let router_id = self.config.router_id;
        let Some(iface) = self.interfaces.get_mut(&ifindex) else {
            return ism::State::Down;
        };
        let mut cands: Vec<Candidate> = iface
            .neighbors
            .values()
            .filter(|n| n.state >= nsm::State::TwoWay)
            .map(|n| Candidate {
                router_id: n.router_id,
                priority: n.priority,
                declared_dr: n.dr == n.router_id,
                declared_bdr: n.bdr == n.router_id,
            })
            .collect();
        let me = Candidate {
            router_id,
            priority: iface.config.priority,
            declared_dr: iface.dr == router_id,
            declared_bdr: iface.bdr == router_id,
        };
        cands.push(me);
        let (old_dr, old_bdr) = (iface.dr, iface.bdr);
        let (mut dr, mut bdr) = elect(&cands);
        // Step 4: if we newly became or stopped being DR/BDR, run it again
        // with our own declaration updated.
        let was = (me.declared_dr, me.declared_bdr);
        let is = (dr == router_id, bdr == router_id);
        if was != is {
            if let Some(c) = cands.last_mut() {
                c.declared_dr = is.0;
                c.declared_bdr = is.1;
            }
            (dr, bdr) = elect(&cands);
        }
        iface.dr = dr;
        iface.bdr = bdr;
        let state = if dr == router_id {
            ism::State::Dr
        } else if bdr == router_id {
            ism::State::Backup
        } else {
            ism::State::DrOther
        };
        if (dr, bdr) != (old_dr, old_bdr) {
            tracing::info!(ifindex, %dr, %bdr, "ism: DR election");
            // The new state matters for AdjOK? below.
            iface.state = state;
            let nbrs: Vec<Ipv4Addr> = iface
                .neighbors
                .values()
                .filter(|n| n.state >= nsm::State::TwoWay)
                .map(|n| n.router_id)
                .collect();
            for rid in nbrs {
                self.nsm_event(ifindex, rid, nsm::Event::AdjOk);
            }
            self.originate_needed = true;
        }
        state
    }

    /// Send a Hello on an interface and re-arm its timer.
    pub(crate) fn send_hello(&mut self, ifindex: u32) {
        let now = self.now;
        let Some(iface) = self.interfaces.get(&ifindex) else {
            return;
        };
        if !iface.is_active() {
            return;
        }
        let hello = HelloRepr {
            interface_id: ifindex,
            priority: iface.config.priority,
            options: iface.options(),
            hello_interval: iface.config.hello_interval,
            dead_interval: iface.config.dead_interval,
            dr: iface.dr,
            bdr: iface.bdr,
            neighbors: iface
                .neighbors
                .values()
                .filter(|n| n.state >= nsm::State::Init)
                .map(|n| n.router_id)
                .collect(),
        };
        let next = now.plus_secs(iface.config.hello_interval.max(1));
        // Restarting: the Grace-LSA goes out before every Hello until an
        // exchange is under way, as the neighbours that still hold us Full
        // take it from us without one (RFC 3623 §5); flooding needs one.
        let exchanging = iface
            .neighbors
            .values()
            .any(|n| n.state >= nsm::State::Exchange);
        // Restarting, and no neighbour heard here yet: hold our Hello back
        // (two Hello intervals at most). A Hello that does not list a
        // helper takes BIRD 2.0.12's adjacency down to Init, and BIRD then
        // finds no next hop through us, helping or not; once we have heard
        // the neighbour, our first Hello lists it (see `rx_hello`).
        let hold_hello = self.is_restarting()
            && iface.neighbors.is_empty()
            && now.since(self.gr_started) < 2 * 1000 * u64::from(iface.config.hello_interval);
        if self.is_restarting() && !exchanging {
            let key = crate::packet::lsa::header::LsaKey {
                ls_type: crate::packet::lsa::header::LsaType::GRACE,
                adv_router: self.config.router_id,
                ls_id: ifindex,
            };
            if let Some(e) = self.lsdb.get(ifindex, &key) {
                let copy = e.aged_copy(now);
                self.send_ls_updates(ifindex, ALL_SPF_ROUTERS, vec![copy]);
            }
        }
        if !hold_hello {
            self.send_body(ifindex, ALL_SPF_ROUTERS, Body::Hello(hello));
        }
        self.arm(TimerKind::Hello(ifindex), next);
    }

    /// Process a Hello from `src` with router id `rid` (RFC 2328 §10.5).
    pub(crate) fn rx_hello(
        &mut self,
        ifindex: u32,
        src: Ipv6Addr,
        rid: Ipv4Addr,
        hello: HelloRepr,
    ) {
        use crate::error::DropReason as R;
        let now: Time = self.now;
        let router_id = self.config.router_id;
        let Some(iface) = self.interfaces.get_mut(&ifindex) else {
            return;
        };
        if hello.hello_interval != iface.config.hello_interval {
            self.drops
                .drop(now, R::HelloIntervalMismatch, ifindex, "hello interval");
            return;
        }
        if hello.dead_interval != iface.config.dead_interval {
            self.drops
                .drop(now, R::DeadIntervalMismatch, ifindex, "dead interval");
            return;
        }
        if hello.options.contains(Options::E) != Options::DEFAULT.contains(Options::E) {
            self.drops.drop(now, R::OptionsMismatch, ifindex, "E-bit");
            return;
        }
        if !iface.af.accepts_hello(hello.options) {
            self.drops.drop(now, R::OptionsMismatch, ifindex, "AF-bit");
            return;
        }
        if iface.kind == InterfaceKind::PointToPoint {
            // A second router behind another link-local address (a router
            // renumbering keeps its address, so it is no second router),
            // or a neighbour that runs an election: the link is a segment.
            let other = iface
                .neighbors
                .values()
                .find(|n| n.router_id != rid && n.addr != src && n.state > nsm::State::Down)
                .map(|n| n.router_id);
            let names_dr = !hello.dr.is_unspecified() || !hello.bdr.is_unspecified();
            let multi_access = other.is_some() || names_dr;
            if multi_access && !iface.config.detect_broadcast {
                // Configured point-to-point: say so once per new neighbour,
                // as adjacencies on a segment run this way will flap.
                if !iface.neighbors.contains_key(&rid) {
                    tracing::warn!(
                        ifindex,
                        name = %iface.name,
                        neighbor = %rid,
                        other = ?other,
                        "point-to-point link with more than one neighbour (a switch?): \
                         configure it broadcast or auto"
                    );
                }
            } else if multi_access {
                tracing::warn!(
                    ifindex,
                    name = %iface.name,
                    neighbor = %rid,
                    other = ?other,
                    dr = %hello.dr,
                    bdr = %hello.bdr,
                    "link is multi-access: running it as broadcast"
                );
                self.ism_event(ifindex, ism::Event::InterfaceDown);
                if let Some(iface) = self.interfaces.get_mut(&ifindex) {
                    iface.kind = InterfaceKind::Broadcast;
                }
                self.ism_event(ifindex, ism::Event::InterfaceUp);
                // Now broadcast, so this cannot come back here.
                return self.rx_hello(ifindex, src, rid, hello);
            }
        }
        let broadcast = iface.kind == InterfaceKind::Broadcast;
        let waiting = iface.state == ism::State::Waiting;
        let nbr = iface.neighbors.entry(rid).or_insert_with(|| {
            tracing::info!(ifindex, neighbor = %rid, %src, "nsm: new neighbour");
            Neighbor::new(rid, src)
        });
        // Answer a neighbour's first Hello at once, with a Hello that lists
        // it, rather than at our next Hello: it goes 2-Way now instead of up
        // to a HelloInterval later, which is most of the time a new cable
        // takes to carry traffic. Restarting, this is also what keeps a
        // helper's adjacency up (see `send_hello`). One Hello per new
        // neighbour, so a flood of forged neighbours gets one each at most.
        let answer_now = nbr.state == nsm::State::Down;
        let (old_prio, old_dr, old_bdr) = (nbr.priority, nbr.dr, nbr.bdr);
        let first = nbr.state == nsm::State::Down;
        nbr.addr = src;
        nbr.interface_id = hello.interface_id;
        nbr.priority = hello.priority;
        nbr.options = hello.options;
        nbr.dr = hello.dr;
        nbr.bdr = hello.bdr;
        self.nsm_event(ifindex, rid, nsm::Event::HelloReceived);
        if answer_now {
            self.arm(TimerKind::Hello(ifindex), now);
        }
        if hello.neighbors.contains(&router_id) {
            self.nsm_event(ifindex, rid, nsm::Event::TwoWayReceived);
        } else {
            self.nsm_event(ifindex, rid, nsm::Event::OneWayReceived);
            return;
        }
        if !broadcast {
            return;
        }
        let declares_dr = hello.dr == rid;
        let declares_bdr = hello.bdr == rid;
        let mut change = !first && old_prio != hello.priority;
        let mut backup_seen = false;
        if waiting && ((declares_dr && hello.bdr.is_unspecified()) || declares_bdr) {
            backup_seen = true;
        }
        if declares_dr != (old_dr == rid) || declares_bdr != (old_bdr == rid) {
            change = true;
        }
        if backup_seen {
            self.ism_event(ifindex, ism::Event::BackupSeen);
        } else if change {
            self.ism_event(ifindex, ism::Event::NeighborChange);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(id: u8, priority: u8, dr: bool, bdr: bool) -> Candidate {
        Candidate {
            router_id: Ipv4Addr::new(198, 18, 0, id),
            priority,
            declared_dr: dr,
            declared_bdr: bdr,
        }
    }

    #[test]
    fn election_prefers_declared_then_priority_then_id() {
        let r = |id| Ipv4Addr::new(198, 18, 0, id);
        // Nobody declared: highest becomes BDR, then DR = BDR, BDR cleared.
        assert_eq!(
            elect(&[c(1, 1, false, false), c(2, 1, false, false)]),
            (r(2), Ipv4Addr::UNSPECIFIED)
        );
        // An existing DR stays even with a lower id.
        assert_eq!(
            elect(&[
                c(1, 1, true, false),
                c(2, 1, false, false),
                c(3, 1, false, true)
            ]),
            (r(1), r(3))
        );
        // Priority beats id; priority 0 never elected.
        assert_eq!(
            elect(&[
                c(1, 5, false, false),
                c(2, 1, false, false),
                c(3, 0, false, false)
            ])
            .0,
            r(1)
        );
    }
}
