//! A snapshot of the instance for operators: plain serde structs the agent's
//! CLI prints as tables or JSON (`meshfwd show ospf ...`).

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, Ipv6Addr};

use serde::{Deserialize, Serialize};

use crate::error::DropReason;
use crate::instance::Instance;
use crate::interface::{InterfaceKind, ism};
use crate::neighbor::nsm;
use crate::packet::lsa::header::LsaScope;
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
    /// The type by name (e.g. "Router") or as hex for unknown ones.
    pub ls_type: String,
    pub ls_id: Ipv4Addr,
    pub adv_router: Ipv4Addr,
    pub seq: u32,
    pub age: u16,
    pub checksum: u16,
    pub length: u16,
}

impl Instance {
    /// Return a snapshot for operators (ages as of the last input).
    pub fn state(&self) -> InstanceState {
        let now = self.now;
        let interfaces = self
            .interfaces
            .values()
            .map(|i| InterfaceState {
                ifindex: i.ifindex,
                name: i.name.clone(),
                kind: i.config.kind,
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
                    ls_type: h.ls_type.name(),
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
        }
    }
}
