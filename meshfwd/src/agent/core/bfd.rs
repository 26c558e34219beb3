//! BFD as OSPF's client sees it (RFC 5882): which sessions run, and what a
//! session's change does to the node.
//!
//! - Every OSPF neighbour at 2-Way or above gets a session on its link
//!   (§4.1.1); a neighbour that goes away takes its session with it.
//! - A session that goes Down takes the path down at once: on a link with
//!   that one neighbour the alive flags of its next hops are cleared first
//!   (as for a carrier loss), then the adjacency is killed and OSPF
//!   reconverges around it.
//! - Down because the peer said AdminDown takes nothing down (§3.2): the
//!   peer is restarting or being reconfigured, not failing.
//! - Up again gives the link its alive flags back, and so does the
//!   neighbour coming back to 2-Way (its new session may never come Up if
//!   it stopped running BFD). Not the session going away with the killed
//!   adjacency: OSPF may still route over the link until its SPF runs,
//!   which its back-off can hold for a second.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::Ipv4Addr,
};

use routing::{
    bfd::{Change, Key, SessionChange, Timers},
    neighbor::nsm,
    state::Summary,
};

use super::Action;

/// The sessions the node runs and the links BFD took down.
#[derive(Debug, Clone)]
pub struct BfdClient {
    timers: Timers,
    /// Each session's neighbour.
    sessions: BTreeMap<Key, Ipv4Addr>,
    /// How many neighbours each link had at the last sample.
    neighbours_on: BTreeMap<u32, usize>,
    /// Links whose alive flags a session's Down cleared.
    dead_links: BTreeSet<u32>,
}

impl BfdClient {
    pub fn new(timers: Timers) -> BfdClient {
        BfdClient {
            timers,
            sessions: BTreeMap::new(),
            neighbours_on: BTreeMap::new(),
            dead_links: BTreeSet::new(),
        }
    }

    /// Follow OSPF's neighbours: add and remove sessions.
    pub fn sample(&mut self, s: &Summary, out: &mut Vec<Action>) {
        let wanted: BTreeMap<Key, Ipv4Addr> = s
            .neighbors
            .iter()
            .filter(|n| n.state >= nsm::State::TwoWay && !n.addr.is_unspecified())
            .map(|n| {
                (
                    Key {
                        ifindex: n.ifindex,
                        peer: n.addr,
                    },
                    n.router_id,
                )
            })
            .collect();
        self.neighbours_on.clear();
        for n in &s.neighbors {
            *self.neighbours_on.entry(n.ifindex).or_default() += 1;
        }
        let gone: Vec<Key> = self
            .sessions
            .keys()
            .filter(|k| !wanted.contains_key(k))
            .copied()
            .collect();
        for key in gone {
            self.sessions.remove(&key);
            out.push(Action::BfdRemove(key));
        }
        for (key, rid) in wanted {
            if self.sessions.insert(key, rid).is_none() {
                out.push(Action::BfdAdd {
                    key,
                    timers: self.timers,
                });
                self.revive(key.ifindex, out);
            }
        }
    }

    /// Act on a session's change.
    pub fn change(&mut self, c: SessionChange, out: &mut Vec<Action>) {
        let Some(&router_id) = self.sessions.get(&c.key) else {
            return;
        };
        let ifindex = c.key.ifindex;
        match c.change {
            Change::Up => self.revive(ifindex, out),
            Change::Down {
                peer_admin: true, ..
            } => {
                tracing::info!(ifindex, neighbor = %router_id, "BFD: the peer went AdminDown: nothing taken down");
            }
            Change::Down { diag, .. } => {
                tracing::warn!(ifindex, neighbor = %router_id, ?diag, "BFD: path to the neighbour failed");
                if self.neighbours_on.get(&ifindex).copied().unwrap_or(0) <= 1
                    && self.dead_links.insert(ifindex)
                {
                    out.push(Action::SetLinkAlive {
                        ifindex,
                        alive: false,
                    });
                }
                out.push(Action::OspfNeighborDown { ifindex, router_id });
            }
        }
    }

    fn revive(&mut self, ifindex: u32, out: &mut Vec<Action>) {
        if self.dead_links.remove(&ifindex) {
            out.push(Action::SetLinkAlive {
                ifindex,
                alive: true,
            });
        }
    }

    /// A link went away or lost carrier: whatever BFD said of it is moot.
    pub fn forget_link(&mut self, ifindex: u32) {
        self.dead_links.remove(&ifindex);
    }
}
