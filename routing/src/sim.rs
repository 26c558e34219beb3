//! A deterministic network simulator for [`Instance`]s: simulated links
//! (queues with a delay), a simulated clock and a timer heap. Used by the
//! convergence tests and benchmarks; it is small and has no dependencies, so
//! the agent's own tests can use it too.
//!
//! Every packet an instance sends is delivered, after the link's delay, to
//! the other ends of its link (multicast) or to the end owning the
//! destination address (unicast), unless the link is cut. Timers fire at
//! their deadline; re-arming replaces, as the driver contract says.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap};
use std::net::{Ipv4Addr, Ipv6Addr};

use crate::events::{Input, Output, Time, TimerId};
use crate::instance::{Instance, InstanceConfig};
use crate::interface::{InterfaceConfig, InterfaceKind};
use crate::route::Rib;

/// One router of the simulation.
#[derive(Debug)]
pub struct SimRouter {
    /// `None` once the router was killed.
    pub instance: Option<Instance>,
    pub config: InstanceConfig,
    /// The RIB rebuilt from the `RibChanged` diffs the instance emitted.
    pub rib: Rib,
    /// Ports: ifindex -> (link, link-local address).
    pub ports: BTreeMap<u32, (usize, Ipv6Addr)>,
    /// Count of outputs of each kind, for statistics.
    pub sent_packets: u64,
    /// `RibChanged` outputs applied (a route flap shows as two).
    pub rib_changes: u64,
}

/// A link: two ends (point-to-point) or more (broadcast segment).
#[derive(Debug, Clone)]
pub struct SimLink {
    pub ends: Vec<(usize, u32)>,
    pub up: bool,
    pub delay_ms: u64,
    pub kind: InterfaceKind,
}

#[derive(Debug)]
enum Event {
    Deliver {
        router: usize,
        ifindex: u32,
        src: Ipv6Addr,
        dst: Ipv6Addr,
        data: Vec<u8>,
    },
    Timer {
        router: usize,
        id: TimerId,
        generation: u64,
    },
}

/// A delivered packet: (receiving router, ifindex, src, dst, data).
pub type Captured = (usize, u32, Ipv6Addr, Ipv6Addr, Vec<u8>);

/// The simulation.
#[derive(Debug, Default)]
pub struct Sim {
    pub now: Time,
    pub routers: Vec<SimRouter>,
    pub links: Vec<SimLink>,
    queue: BinaryHeap<Reverse<(Time, u64)>>,
    events: HashMap<u64, Event>,
    next_event: u64,
    timers: HashMap<(usize, TimerId), u64>,
    next_generation: u64,
    /// Packets delivered so far.
    pub delivered: u64,
    /// Template for interfaces created by `add_link`.
    pub interface_config: InterfaceConfig,
    /// Per router: the template for its interfaces instead (a key chain
    /// of its own, say), network type included.
    pub router_interface_config: HashMap<usize, InterfaceConfig>,
    /// MTU of simulated interfaces.
    pub mtu: u16,
    /// When set, every delivered packet is also recorded here as
    /// (receiving router, ifindex, src, dst, data).
    pub capture: Option<Vec<Captured>>,
}

/// Return the router id the simulator gives router `n`.
pub fn router_id(n: usize) -> Ipv4Addr {
    let n = n as u32 + 1;
    Ipv4Addr::new(198, 18, (n >> 8) as u8, n as u8)
}

/// Return the link-local address of router `n` on interface `ifindex`.
pub fn link_local(n: usize, ifindex: u32) -> Ipv6Addr {
    let n = n as u32 + 1;
    Ipv6Addr::new(
        0xfe80,
        0,
        0,
        0,
        (n >> 16) as u16,
        n as u16,
        0,
        ifindex as u16,
    )
}

impl Sim {
    /// Return an empty simulation at time 0.
    pub fn new() -> Self {
        Sim {
            interface_config: InterfaceConfig::default(),
            mtu: 1500,
            ..Default::default()
        }
    }

    /// Add a router; return its number.
    pub fn add_router(&mut self, config: InstanceConfig) -> usize {
        let n = self.routers.len();
        let (inst, out) = Instance::new(config.clone(), self.now);
        self.routers.push(SimRouter {
            instance: Some(inst),
            config,
            rib: Rib::default(),
            ports: BTreeMap::new(),
            sent_packets: 0,
            rib_changes: 0,
        });
        self.apply(n, out);
        n
    }

    /// Connect routers with a link of the given kind and delay; bring the
    /// interfaces up. Return the link number.
    pub fn add_segment(&mut self, members: &[usize], kind: InterfaceKind, delay_ms: u64) -> usize {
        let l = self.links.len();
        let mut ends = Vec::new();
        for &r in members {
            let ifindex = self.routers[r]
                .ports
                .keys()
                .next_back()
                .map_or(1, |i| i + 1);
            self.routers[r]
                .ports
                .insert(ifindex, (l, link_local(r, ifindex)));
            ends.push((r, ifindex));
        }
        self.links.push(SimLink {
            ends,
            up: true,
            delay_ms,
            kind,
        });
        self.interfaces_up(l);
        l
    }

    /// Connect two routers point-to-point; return the link number.
    pub fn add_link(&mut self, a: usize, b: usize, delay_ms: u64) -> usize {
        self.add_segment(&[a, b], InterfaceKind::PointToPoint, delay_ms)
    }

    fn interfaces_up(&mut self, l: usize) {
        let link = self.links[l].clone();
        for (r, ifindex) in link.ends {
            self.interface_up(r, ifindex, link.kind);
        }
    }

    /// Bring one port of router `r` up, on a link of network type `kind`.
    fn interface_up(&mut self, r: usize, ifindex: u32, kind: InterfaceKind) {
        // A router's own template keeps its network type (a router
        // configured differently from its segment); the shared one
        // takes the link's.
        let config = match self.router_interface_config.get(&r) {
            Some(own) => own.clone(),
            None => InterfaceConfig {
                kind,
                ..self.interface_config.clone()
            },
        };
        let input = Input::InterfaceUp {
            ifindex,
            name: format!("mesh{ifindex}"),
            link_local: link_local(r, ifindex),
            mtu: self.mtu,
            config,
        };
        self.input(r, input);
    }

    /// Cut a link. With `carrier_loss` both ends see their interface go
    /// down; without, packets just stop and the dead interval must notice.
    pub fn cut_link(&mut self, l: usize, carrier_loss: bool) {
        self.links[l].up = false;
        if carrier_loss {
            for (r, ifindex) in self.links[l].ends.clone() {
                self.input(r, Input::InterfaceDown { ifindex });
            }
        }
    }

    /// Repair a cut link (and bring its interfaces up again).
    pub fn restore_link(&mut self, l: usize) {
        self.links[l].up = true;
        self.interfaces_up(l);
    }

    /// Kill a router: it vanishes without a word.
    pub fn kill_router(&mut self, r: usize) {
        self.routers[r].instance = None;
    }

    /// Start router `r` again as a new instance of `config` (its earlier
    /// one vanishes without a word, as a crashed process does) on the same
    /// interfaces; its RIB, the forwarding state, stays.
    pub fn restart_router(&mut self, r: usize, config: InstanceConfig) {
        let (inst, out) = Instance::new(config.clone(), self.now);
        self.routers[r].instance = Some(inst);
        self.routers[r].config = config;
        self.apply(r, out);
        let ports: Vec<(u32, usize)> = self.routers[r]
            .ports
            .iter()
            .map(|(ifindex, (l, _))| (*ifindex, *l))
            .collect();
        for (ifindex, l) in ports {
            if self.links[l].up {
                self.interface_up(r, ifindex, self.links[l].kind);
            }
        }
    }

    /// Return whether router `r` is alive.
    pub fn alive(&self, r: usize) -> bool {
        self.routers[r].instance.is_some()
    }

    /// Feed an input to router `r` now.
    pub fn input(&mut self, r: usize, input: Input) {
        let now = self.now;
        let Some(inst) = self.routers[r].instance.as_mut() else {
            return;
        };
        let span = tracing::debug_span!("router", n = r, t = now.0);
        let out = span.in_scope(|| inst.handle(now, input));
        self.apply(r, out);
    }

    fn push(&mut self, at: Time, ev: Event) {
        let id = self.next_event;
        self.next_event += 1;
        self.events.insert(id, ev);
        self.queue.push(Reverse((at, id)));
    }

    fn apply(&mut self, r: usize, outputs: Vec<Output>) {
        for o in outputs {
            match o {
                Output::Send { ifindex, dst, data } => {
                    self.routers[r].sent_packets += 1;
                    let Some(&(l, src)) = self.routers[r].ports.get(&ifindex) else {
                        continue;
                    };
                    let link = &self.links[l];
                    if !link.up {
                        continue;
                    }
                    let at = self.now.plus_ms(link.delay_ms);
                    let targets: Vec<(usize, u32)> = link
                        .ends
                        .iter()
                        .copied()
                        .filter(|&(r2, i2)| {
                            (r2, i2) != (r, ifindex)
                                && (dst.is_multicast() || dst == link_local(r2, i2))
                        })
                        .collect();
                    for (r2, i2) in targets {
                        self.push(
                            at,
                            Event::Deliver {
                                router: r2,
                                ifindex: i2,
                                src,
                                dst,
                                data: data.clone(),
                            },
                        );
                    }
                }
                Output::ArmTimer { id, at } => {
                    self.next_generation += 1;
                    let generation = self.next_generation;
                    self.timers.insert((r, id), generation);
                    self.push(
                        at.max(self.now),
                        Event::Timer {
                            router: r,
                            id,
                            generation,
                        },
                    );
                }
                Output::CancelTimer(id) => {
                    self.timers.remove(&(r, id));
                }
                Output::RibChanged(diff) => {
                    self.routers[r].rib_changes += 1;
                    self.routers[r].rib.apply(&diff);
                }
            }
        }
    }

    /// Process events until the clock would pass `until`.
    pub fn run_until(&mut self, until: Time) {
        while let Some(&Reverse((at, id))) = self.queue.peek() {
            if at > until {
                break;
            }
            self.queue.pop();
            self.now = at;
            let Some(ev) = self.events.remove(&id) else {
                continue;
            };
            match ev {
                Event::Deliver {
                    router,
                    ifindex,
                    src,
                    dst,
                    data,
                } => {
                    // A link cut while the packet was on the wire loses it.
                    let Some(&(l, _)) = self.routers[router].ports.get(&ifindex) else {
                        continue;
                    };
                    if !self.links[l].up {
                        continue;
                    }
                    self.delivered += 1;
                    if let Some(c) = self.capture.as_mut() {
                        c.push((router, ifindex, src, dst, data.clone()));
                    }
                    self.input(
                        router,
                        Input::Packet {
                            ifindex,
                            src,
                            dst,
                            data,
                        },
                    );
                }
                Event::Timer {
                    router,
                    id,
                    generation,
                } => {
                    if self.timers.get(&(router, id)) != Some(&generation) {
                        continue;
                    }
                    self.timers.remove(&(router, id));
                    self.input(router, Input::Timer(id));
                }
            }
        }
        self.now = self.now.max(until);
    }

    /// Run for `ms` more milliseconds.
    pub fn run_for(&mut self, ms: u64) {
        let until = self.now.plus_ms(ms);
        self.run_until(until);
    }

    /// Return the instance of router `r` (panics if killed).
    pub fn instance(&self, r: usize) -> &Instance {
        self.routers[r].instance.as_ref().expect("router is alive")
    }
}

/// Build the LSDB of a generated mesh as router 0 would hold it, for SPF
/// benchmarks: `n` routers on a ring plus `n * (degree - 2) / 2` random
/// chords (average degree `degree`), all links point-to-point with cost 10,
/// one stub /64 per router, and the Link-LSAs of router 0's neighbours.
/// Deterministic for a given `seed`.
pub fn mesh_lsdb(n: usize, degree: usize, seed: u64) -> crate::lsdb::Lsdb {
    use crate::packet::Options;
    use crate::packet::lsa::header::{INITIAL_SEQ, LsaHeader, LsaType};
    use crate::packet::lsa::intra_area_prefix::IntraAreaPrefixLsa;
    use crate::packet::lsa::link::LinkLsa;
    use crate::packet::lsa::router::{RouterFlags, RouterLink, RouterLinkType, RouterLsa};
    use crate::packet::lsa::{Lsa, LsaBody};
    use crate::packet::prefix::{LsaPrefix, PrefixOptions};
    use ipnet::Ipv6Net;

    // xorshift64*: enough for a benchmark topology, no dependency.
    let mut state = seed.max(1);
    let mut next = move |bound: usize| {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        (state.wrapping_mul(0x2545_f491_4f6c_dd1d) % bound as u64) as usize
    };
    let mut edges = std::collections::BTreeSet::new();
    for i in 0..n {
        edges.insert((i.min((i + 1) % n), i.max((i + 1) % n)));
    }
    let chords = n * degree.saturating_sub(2) / 2;
    while edges.len() < n + chords {
        let (a, b) = (next(n), next(n));
        if a != b {
            edges.insert((a.min(b), a.max(b)));
        }
    }
    // Ports: router -> [(ifindex, neighbour, neighbour's ifindex)].
    let mut ports: Vec<Vec<(u32, usize, u32)>> = vec![Vec::new(); n];
    for &(a, b) in &edges {
        let ia = ports[a].len() as u32 + 1;
        let ib = ports[b].len() as u32 + 1;
        ports[a].push((ia, b, ib));
        ports[b].push((ib, a, ia));
    }
    let now = Time(0);
    let header = |ls_type, ls_id, r: usize| LsaHeader {
        age: 1,
        ls_type,
        ls_id,
        adv_router: router_id(r),
        seq: INITIAL_SEQ,
        checksum: 0,
        length: 0,
    };
    let mut lsdb = crate::lsdb::Lsdb::new();
    for (r, p) in ports.iter().enumerate() {
        let links = p
            .iter()
            .map(|&(ifindex, nbr, nif)| RouterLink {
                link_type: RouterLinkType::PointToPoint,
                metric: 10,
                interface_id: ifindex,
                neighbor_interface_id: nif,
                neighbor_router_id: router_id(nbr),
            })
            .collect();
        let body = LsaBody::Router(RouterLsa {
            flags: RouterFlags(0),
            options: Options::DEFAULT,
            links,
        });
        lsdb.insert_lsa(
            0,
            Lsa {
                header: header(LsaType::ROUTER, 0, r),
                body,
            },
            now,
        );
        let addr = std::net::Ipv6Addr::new(0xfd00, 0, (r >> 16) as u16, r as u16, 0, 0, 0, 0);
        let prefix = LsaPrefix {
            prefix: Ipv6Net::new_assert(addr, 64),
            options: PrefixOptions(0),
            metric: 0,
        };
        let body = LsaBody::IntraAreaPrefix(IntraAreaPrefixLsa {
            ref_ls_type: LsaType::ROUTER,
            ref_ls_id: 0,
            ref_adv_router: router_id(r),
            prefixes: vec![prefix],
        });
        lsdb.insert_lsa(
            0,
            Lsa {
                header: header(LsaType::INTRA_AREA_PREFIX, 0, r),
                body,
            },
            now,
        );
    }
    for &(ifindex, nbr, nif) in &ports[0] {
        let body = LsaBody::Link(LinkLsa {
            priority: 1,
            options: Options::DEFAULT,
            link_local: link_local(nbr, nif),
            prefixes: Vec::new(),
        });
        lsdb.insert_lsa(
            ifindex,
            Lsa {
                header: header(LsaType::LINK, nif, nbr),
                body,
            },
            now,
        );
    }
    lsdb
}
