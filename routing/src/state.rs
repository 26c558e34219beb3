//! What the instance shows of itself: a full snapshot for operators
//! ([`InstanceState`], plain serde structs the agent's CLI prints as tables
//! or JSON), and a small [`Summary`] an embedding agent samples every
//! second to watch for duplicate router ids and a settled LSDB.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{Ipv4Addr, Ipv6Addr};

use serde::{Deserialize, Serialize};

use crate::error::DropReason;
use crate::instance::Instance;
use crate::interface::{InterfaceKind, ism};
use crate::neighbor::nsm;
use crate::packet::lsa::header::{LsaScope, LsaType, lsa_type_name};
use crate::route::Route;
use crate::spf::BackoffState;
use ipnet::Ipv6Net;

/// Everything an operator may want to see.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InstanceState {
    pub router_id: Ipv4Addr,
    pub interfaces: Vec<InterfaceState>,
    pub neighbors: Vec<NeighborState>,
    pub lsdb: Vec<LsaSummary>,
    pub routes: BTreeMap<Ipv6Net, Route>,
    pub drops: BTreeMap<DropReason, u64>,
    pub spf_runs: u64,
    pub spf_backoff: BackoffState,
    /// Newer instances of our own LSAs received (RFC 2328 §13.4).
    #[serde(default)]
    pub self_originated_newer: u64,
    /// Of those, repeats for an LSA we had already re-originated: a sign of
    /// another router with our id.
    #[serde(default)]
    pub self_originated_repeat: u64,
    /// Graceful restart: whether we are restarting, and the neighbours
    /// (ifindex, router id) we help restart.
    #[serde(default)]
    pub gr_restarting: bool,
    #[serde(default)]
    pub gr_helping: Vec<(u32, Ipv4Addr)>,
    /// Prefixes of reachable routers that are not of the instance's family
    /// (an IPv4 instance's longer than 32 bits), with their advertiser:
    /// flooded, never routed.
    #[serde(default)]
    pub misfits: BTreeSet<(Ipv6Net, Ipv4Addr)>,
}

impl InstanceState {
    /// How many neighbours are Full.
    pub fn neighbors_full(&self) -> usize {
        self.neighbors
            .iter()
            .filter(|n| n.state == crate::neighbor::nsm::State::Full)
            .count()
    }
}

/// One interface.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InterfaceState {
    pub ifindex: u32,
    pub name: String,
    pub kind: InterfaceKind,
    pub passive: bool,
    pub state: ism::State,
    pub link_local: Ipv6Addr,
    pub mtu: u16,
    pub cost: u16,
    pub hello_interval: u16,
    pub dead_interval: u16,
    pub dr: Ipv4Addr,
    pub bdr: Ipv4Addr,
    pub neighbors: usize,
    /// Packets and LSAs dropped on this interface, every reason.
    #[serde(default)]
    pub drops: u64,
}

/// One neighbour.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NeighborState {
    pub ifindex: u32,
    pub interface: String,
    pub router_id: Ipv4Addr,
    pub addr: Ipv6Addr,
    pub state: nsm::State,
    pub priority: u8,
    pub interface_id: u32,
    pub dr: Ipv4Addr,
    pub bdr: Ipv4Addr,
    /// LSAs flooded and not yet acknowledged.
    pub retransmit_list: usize,
    /// LSAs still to be requested.
    pub request_list: usize,
    /// Milliseconds until the neighbour is declared dead.
    pub dead_in_ms: Option<u64>,
}

/// One LSA in the database.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LsaSummary {
    pub scope: LsaScope,
    /// The interface of link-scope LSAs.
    pub ifindex: Option<u32>,
    /// Written by name ("Router"), or as hex for unknown types.
    #[serde(with = "lsa_type_name")]
    pub ls_type: LsaType,
    pub ls_id: Ipv4Addr,
    pub adv_router: Ipv4Addr,
    pub seq: u32,
    pub age: u16,
    pub checksum: u16,
    pub length: u16,
}

/// The facts an embedding agent samples every second: cheap to build,
/// unlike an [`InstanceState`], which copies the whole LSDB and RIB.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    pub router_id: Ipv4Addr,
    /// Each interface's state, by ifindex.
    pub interfaces: Vec<(u32, ism::State)>,
    pub neighbors: Vec<NeighborSummary>,
    /// Advertising routers of every LSA in the database.
    pub advertisers: BTreeSet<Ipv4Addr>,
    /// How many times an LSA was installed or removed (see
    /// [`crate::lsdb::Lsdb::changes`]).
    pub lsdb_changes: u64,
    /// Packets dropped because they carried our own router id.
    pub own_id_drops: u64,
    /// Newer instances of our own LSAs with content we never originated
    /// (a running count).
    pub self_originated_foreign: u64,
    /// Packets with our router id that passed authentication (a running
    /// count): a neighbour holding the key uses our id.
    pub own_id_authenticated: u64,
    /// The routers the last SPF run reached (us among them).
    pub reachable: BTreeSet<Ipv4Addr>,
    /// Point-to-point links to our router id, in the Router-LSAs of
    /// reachable routers, that none of our adjacencies explains: a router
    /// elsewhere with our id, as those routers see it.
    pub foreign_links: Vec<ForeignLink>,
    /// Advertisements of reachable routers the prefix policy refused.
    pub refused: Vec<crate::ownership::Refused>,
    /// We are restarting gracefully: our routes are not out yet.
    #[serde(default)]
    pub restarting: bool,
}

/// A link to our router id that is not one of our adjacencies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ForeignLink {
    /// The router whose Router-LSA lists it.
    pub reporter: Ipv4Addr,
    /// Its interface id, and the one it gives for the far end.
    pub interface_id: u32,
    pub neighbor_interface_id: u32,
}

/// One neighbour, as [`Summary`] lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NeighborSummary {
    pub ifindex: u32,
    pub interface: String,
    pub router_id: Ipv4Addr,
    /// Its link-local address (BFD sessions go to it).
    #[serde(default = "unspecified")]
    pub addr: Ipv6Addr,
    pub state: nsm::State,
}

fn unspecified() -> Ipv6Addr {
    Ipv6Addr::UNSPECIFIED
}

impl Instance {
    /// Return what an embedding agent samples (see [`Summary`]).
    pub fn summary(&self) -> Summary {
        let me = self.config.router_id;
        Summary {
            router_id: me,
            interfaces: self
                .interfaces
                .values()
                .map(|i| (i.ifindex, i.state))
                .collect(),
            neighbors: self
                .interfaces
                .values()
                .flat_map(|i| {
                    i.neighbors.values().map(move |n| NeighborSummary {
                        ifindex: i.ifindex,
                        interface: i.name.clone(),
                        router_id: n.router_id,
                        addr: n.addr,
                        state: n.state,
                    })
                })
                .collect(),
            lsdb_changes: self.lsdb.changes(),
            own_id_drops: self
                .drops
                .counters
                .get(&DropReason::OwnRouterId)
                .copied()
                .unwrap_or(0),
            self_originated_foreign: self.self_originated_foreign,
            own_id_authenticated: self.own_id_authenticated,
            reachable: self.reachable.clone(),
            foreign_links: self.foreign_links(),
            refused: self.refused.clone(),
            restarting: self.is_restarting(),
            advertisers: self
                .lsdb
                .iter()
                .map(|(_, e)| e.lsa.header.adv_router)
                .collect(),
        }
    }

    /// Links to our router id in reachable routers' Router-LSAs that are
    /// not our adjacencies (see [`Summary::foreign_links`]): a link is
    /// ours when we have that router as a Full neighbour on the interface
    /// the link names (our ifindex is our interface id) and the neighbour's
    /// interface id matches.
    fn foreign_links(&self) -> Vec<ForeignLink> {
        use crate::packet::lsa::{LsaBody, router::RouterLinkType};
        let me = self.config.router_id;
        let mut out = Vec::new();
        for (_, e) in self.lsdb.iter() {
            let h = &e.lsa.header;
            if h.ls_type != LsaType::ROUTER
                || h.adv_router == me
                || h.is_max_age()
                || !self.reachable.contains(&h.adv_router)
            {
                continue;
            }
            let LsaBody::Router(r) = &e.lsa.body else {
                continue;
            };
            for l in &r.links {
                if l.link_type != RouterLinkType::PointToPoint || l.neighbor_router_id != me {
                    continue;
                }
                let ours = self
                    .interfaces
                    .get(&l.neighbor_interface_id)
                    .and_then(|i| i.neighbors.get(&h.adv_router))
                    .is_some_and(|n| {
                        n.state == nsm::State::Full && n.interface_id == l.interface_id
                    });
                if !ours {
                    out.push(ForeignLink {
                        reporter: h.adv_router,
                        interface_id: l.interface_id,
                        neighbor_interface_id: l.neighbor_interface_id,
                    });
                }
            }
        }
        out
    }

    /// Return a snapshot for operators (ages as of the last input).
    pub fn state(&self) -> InstanceState {
        let now = self.now;
        let interfaces = self
            .interfaces
            .values()
            .map(|i| InterfaceState {
                ifindex: i.ifindex,
                name: i.name.clone(),
                kind: i.kind,
                passive: i.config.passive,
                state: i.state,
                link_local: i.link_local,
                mtu: i.mtu,
                cost: i.config.cost,
                hello_interval: i.config.hello_interval,
                dead_interval: i.config.dead_interval,
                dr: i.dr,
                bdr: i.bdr,
                neighbors: i.neighbors.len(),
                drops: self
                    .drops
                    .by_interface
                    .get(&i.ifindex)
                    .copied()
                    .unwrap_or(0),
            })
            .collect();
        let neighbors = self
            .interfaces
            .values()
            .flat_map(|i| {
                i.neighbors.values().map(move |n| NeighborState {
                    ifindex: i.ifindex,
                    interface: i.name.clone(),
                    router_id: n.router_id,
                    addr: n.addr,
                    state: n.state,
                    priority: n.priority,
                    interface_id: n.interface_id,
                    dr: n.dr,
                    bdr: n.bdr,
                    retransmit_list: n.rxmt.len(),
                    request_list: n.requests.len(),
                    dead_in_ms: self
                        .timers
                        .get(&crate::events::TimerKind::Inactivity(
                            i.ifindex,
                            n.router_id,
                        ))
                        .map(|t| t.since(now)),
                })
            })
            .collect();
        let lsdb = self
            .lsdb
            .iter()
            .map(|(ifindex, e)| {
                let h = e.header_at(now);
                LsaSummary {
                    scope: h.ls_type.flooding_scope().unwrap_or(LsaScope::Reserved),
                    ifindex,
                    ls_type: h.ls_type,
                    ls_id: Ipv4Addr::from(h.ls_id),
                    adv_router: h.adv_router,
                    seq: h.seq,
                    age: h.age,
                    checksum: h.checksum,
                    length: h.length,
                }
            })
            .collect();
        InstanceState {
            router_id: self.config.router_id,
            interfaces,
            neighbors,
            lsdb,
            routes: self.rib.routes.clone(),
            drops: self.drops.counters.clone(),
            spf_runs: self.spf.runs,
            spf_backoff: self.spf.state,
            self_originated_newer: self.self_originated_newer,
            self_originated_repeat: self.self_originated_repeat,
            gr_restarting: self.is_restarting(),
            gr_helping: self.helping(),
            misfits: self.misfits.clone(),
        }
    }
}
