//! The agent's decisions, as a sans-IO core: [`Core::handle`] takes the
//! time and one [`Event`] (a link or address change, route changes from
//! OSPF, a periodic OSPF sample) and returns the [`Action`]s the runtime
//! must carry out, in order. It owns the node's state and does no I/O, so
//! every decision is tested here with a simulated clock, no namespace.
//!
//! ```text
//!   Event::Link ──> LinkTracker ──> MeshEvent
//!       Down: SetLinkAlive(false) first, then OSPF remove, then the table
//!       Up:   SetLinkAlive(true), OSPF add, XDP attach, then the table
//!   Event::Rib ──> RIB ──> ApplyTable (desired_table)
//!   Event::OspfSample ──> resynchronised since start? ──> PruneStale (once)
//!   Event::OspfSample ──> duplicate router id? ──> new id: StartOspf, ...
//!                     └─> pod prefix taken?    ──> move: address, stubs, state file
//!   Event::Ospf4Sample ──> who else claims our IPv4 pod prefix (for the next sample)
//!   pod veths the plugin finished ──> AttachPod / DetachPod
//!   Event::OspfSample ──> BFD sessions for 2-Way neighbours: BfdAdd / BfdRemove
//!   Event::Bfd Down ──> SetLinkAlive(false), then OspfNeighborDown
//! ```
//!
//! - [`links`]: which links run OSPF;
//! - [`identity`]: the router id and duplicate detection;
//! - [`prefixes`]: the pod prefix rule;
//! - [`table`]: the route table handed to the map writer;
//! - [`bfd`]: BFD sessions for OSPF's neighbours and what their changes do.

pub mod bfd;
pub mod identity;
pub mod links;
pub mod prefixes;
pub mod table;

use std::{
    collections::{BTreeMap, BTreeSet},
    net::{Ipv4Addr, Ipv6Addr},
    path::PathBuf,
};

use dataplane::{
    node_state::{Ipv4Prefixes, NodeState, PodAttach},
    tc::{HOST_VETH_PREFIX, POD_VETH_ALIAS},
};
use ipnet::{Ipv4Net, Ipv6Net};
use routing::{
    InterfaceConfig, Rib, RibDiff, driver::InterfaceSpec, neighbor::nsm, state::Summary,
};

use self::{
    identity::{DupDetector, DupEvidence, Identity},
    links::{DownReason, Link, LinkEvent, LinkFilter, LinkTracker, MeshEvent, MeshLink},
    prefixes::PodSpace as _,
};
use super::config::NetworkChoice;
use crate::{api::AgentCounters, fib::RouteTable};

/// Milliseconds on the agent's clock (since it started).
pub type Millis = u64;

/// How long the LSDB must hold still before the pod prefix is re-checked.
pub const QUIET_MS: Millis = 1500;
/// The longest an earlier run's routes are kept after start when OSPF
/// does not settle (a neighbour stuck in its exchange, say).
pub const RESYNC_MAX_MS: Millis = 15_000;

/// What the core needs to know of the configuration.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The XDP fast path runs (pods' veths get the TC programs).
    pub xdp: bool,
    /// The prefix every pod prefix is carved from.
    pub cluster_prefix: Ipv6Net,
    /// A fixed pod prefix; `None` chooses one.
    pub pod_prefix: Option<Ipv6Net>,
    /// Where IPv4 pod prefixes come from; `None`: IPv6 only.
    pub ipv4: Option<prefixes::Ipv4Space>,
    /// Turn DAD off on links that may join the mesh.
    pub skip_dad: bool,
    /// Which links may join the mesh.
    pub filter: LinkFilter,
    /// OSPF settings of every mesh interface...
    pub interface: InterfaceConfig,
    /// ...but the network type, chosen per link.
    pub networks: NetworkChoice,
    /// Written to the state file for the CNI plugin.
    pub mtu: u32,
    pub bpffs: PathBuf,
    /// BFD for every OSPF neighbour at these timers; `None`: off.
    pub bfd: Option<routing::bfd::Timers>,
}

/// Something that happened, as the runtime reports it.
#[derive(Debug, Clone)]
pub enum Event {
    /// The runtime is ready (OSPF can be started, XDP loaded): set the
    /// node up from the links known at start.
    Start,
    /// A link or address notification.
    Link(LinkEvent),
    /// Route changes from OSPF, in order.
    Rib(Vec<RibDiff>),
    /// Route changes from the IPv4 instance (RFC 5838), in order; its
    /// prefixes in their LSA encoding (`routing::af`).
    Rib4(Vec<RibDiff>),
    /// The periodic sample of OSPF, with 64 fresh random bits (a new router
    /// id after a collision is drawn from them).
    OspfSample { summary: Summary, salt: u64 },
    /// What the IPv4 instance's prefix policy refused, sampled just
    /// before [`Event::OspfSample`]: the evidence of a clash on our IPv4
    /// pod prefix.
    Ospf4Sample {
        refused: Vec<routing::ownership::Refused>,
    },
    /// A BFD session changed state.
    Bfd(routing::bfd::SessionChange),
}

/// Something the runtime must do.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Set or clear the alive flag of every next hop through a link: fast
    /// reroute, before anything else learns of the change.
    SetLinkAlive { ifindex: u32, alive: bool },
    /// Turn off duplicate address detection on a link (`default` for links
    /// made later).
    SkipDad { ifname: String },
    /// Make a veth mesh link behave like a NIC on a wire: finish checksums
    /// when it sends, and take the frames the neighbour's XDP redirects
    /// into its peer (GRO on, which a veth without XDP needs for that).
    PrepareVeth { ifname: String },
    /// Start OSPF (stopping a running instance first) under this router id,
    /// advertising these prefixes.
    StartOspf {
        router_id: Ipv4Addr,
        stubs: Vec<Ipv6Net>,
        /// The IPv4 instance's prefixes (in their LSA encoding), when the
        /// node has IPv4: it starts beside the IPv6 one.
        stubs4: Option<Vec<Ipv6Net>>,
    },
    /// Run OSPF on a link.
    OspfAddInterface(InterfaceSpec),
    /// Stop running OSPF on a link.
    OspfRemoveInterface { ifname: String },
    /// Advertise these prefixes instead.
    OspfStubPrefixes(Vec<Ipv6Net>),
    /// The IPv4 instance advertises these instead (LSA encoding).
    OspfStubPrefixes4(Vec<Ipv6Net>),
    /// Attach XDP to a mesh link (kept if an earlier run attached it).
    AttachXdp { ifname: String },
    /// Forget the XDP pin of a link that was deleted.
    ForgetXdp { ifname: String },
    /// Hand this table to the map writer (maps and kernel FIB).
    ApplyTable(RouteTable),
    /// OSPF has resynchronised since start: remove what an earlier run
    /// left in the maps and the kernel that the tables no longer want.
    /// Until then those routes keep forwarding (a restart costs nothing).
    PruneStale,
    /// Make the node's /128 the one address of the cluster prefix on the
    /// local device.
    SetNodeAddress(Ipv6Addr),
    /// Make the node's IPv4 /32 the one address of the IPv4 cluster prefix
    /// on the local device.
    SetNodeAddress4(Ipv4Addr),
    /// Write the node state file for the CNI plugin.
    WriteState(NodeState),
    /// Attach the TC fast path to a pod's host veth.
    AttachPod { ifindex: u32, ifname: String },
    /// Forget the TC pin of a pod's host veth that went away.
    DetachPod { ifname: String },
    /// Run a BFD session with an OSPF neighbour.
    BfdAdd {
        key: routing::bfd::Key,
        timers: routing::bfd::Timers,
    },
    /// Stop a BFD session (its neighbour is gone).
    BfdRemove(routing::bfd::Key),
    /// Take an adjacency down at once (BFD saw its path fail).
    OspfNeighborDown { ifindex: u32, router_id: Ipv4Addr },
}

/// The node's prefixes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodePrefixes {
    pub pod_prefix: Ipv6Net,
    /// Which candidate of the router id it is (0 = first choice).
    pub attempt: u32,
    pub node_address: Ipv6Addr,
}

impl NodePrefixes {
    fn new(pod_prefix: Ipv6Net, attempt: u32) -> Self {
        NodePrefixes {
            pod_prefix,
            attempt,
            node_address: prefixes::node_address(pod_prefix),
        }
    }

    /// Return the prefixes OSPF advertises for the node, which are also
    /// the ones no other router's advertisement may take over.
    pub fn own(&self) -> Vec<Ipv6Net> {
        vec![self.pod_prefix, Ipv6Net::from(self.node_address)]
    }
}

/// The node's IPv4 prefixes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodePrefixes4 {
    pub pod_prefix: Ipv4Net,
    pub attempt: u32,
    pub node_address: Ipv4Addr,
}

impl NodePrefixes4 {
    fn new(pod_prefix: Ipv4Net, attempt: u32) -> Self {
        NodePrefixes4 {
            pod_prefix,
            attempt,
            node_address: prefixes::node_address4(pod_prefix),
        }
    }

    /// The node's IPv4 prefixes.
    pub fn own(&self) -> Vec<Ipv4Net> {
        vec![self.pod_prefix, Ipv4Net::from(self.node_address)]
    }

    /// What the IPv4 OSPF instance advertises: [`Self::own`] in the LSA
    /// encoding.
    fn stubs(&self) -> Vec<Ipv6Net> {
        self.own()
            .into_iter()
            .map(routing::af::ipv4_to_wire)
            .collect()
    }
}

/// What the pod prefix check last looked at, so an unchanged picture is
/// not worked through again.
type PrefixInputs = (Ipv4Addr, BTreeSet<Ipv4Addr>, Vec<Ipv6Net>);

/// The agent's decisions and the state they rest on.
#[derive(Debug)]
pub struct Core {
    settings: Settings,
    identity: Identity,
    links: LinkTracker,
    prefixes: NodePrefixes,
    prefixes4: Option<NodePrefixes4>,
    rib: Rib,
    /// The IPv4 instance's routes (prefixes in their LSA encoding).
    rib4: Rib,
    dup: DupDetector,
    /// A configured router id in use elsewhere has been reported.
    dup_reported: bool,
    /// Packets with our router id at the last sample, and whether the
    /// unproven ones were reported.
    own_id_drops: (u64, bool),
    /// Router ids seen on two of our links at once (reported once each).
    dup_neighbours: BTreeSet<Ipv4Addr>,
    last_prefix_check: Option<PrefixInputs>,
    /// Since when a reachable router has advertised our own pod prefix
    /// (a clash a node with pods waits out before it acts on it).
    clash_since: Option<Millis>,
    /// The same for the IPv4 pod prefix, with the IPv4 instance's last
    /// refusals.
    clash4_since: Option<Millis>,
    refused4: Vec<routing::ownership::Refused>,
    /// The LSDB's change count and the RIB's size at the last sample, and
    /// since when they have held still.
    lsdb_shape: ((u64, usize), Millis),
    /// Since when OSPF has been resynchronising after start; `None` once
    /// an earlier run's routes were pruned.
    resync_since: Option<Millis>,
    /// Pods' host veths whose fast path was attached, by ifindex.
    pods: BTreeMap<u32, String>,
    /// The state file as last written.
    published: Option<NodeState>,
    counters: AgentCounters,
    bfd: Option<bfd::BfdClient>,
}

impl Core {
    /// Take over a node whose links are `links` (a dump, before any
    /// notification). `identity` is decided by the runtime from the
    /// configuration, the machine id and the links' MACs (see
    /// [`Core::discover_identity`]).
    pub fn new(settings: Settings, identity: Identity, links: Vec<LinkEvent>) -> Core {
        let mut tracker = LinkTracker::new(settings.filter.clone());
        for ev in links {
            tracker.apply(ev);
        }
        let prefixes = match settings.pod_prefix {
            Some(p) => NodePrefixes::new(p, 0),
            None => NodePrefixes::new(
                prefixes::pod_prefix_candidate(settings.cluster_prefix, identity.router_id, 0),
                0,
            ),
        };
        let prefixes4 = settings
            .ipv4
            .map(|space| NodePrefixes4::new(space.candidate(identity.router_id, 0), 0));
        let dead_ms = u64::from(settings.interface.dead_interval) * 1_000;
        Core {
            prefixes4,
            rib4: Rib::default(),
            bfd: settings.bfd.map(bfd::BfdClient::new),
            settings,
            identity,
            links: tracker,
            prefixes,
            rib: Rib::default(),
            dup: DupDetector::new(dead_ms),
            dup_reported: false,
            own_id_drops: (0, false),
            dup_neighbours: BTreeSet::new(),
            last_prefix_check: None,
            clash_since: None,
            clash4_since: None,
            refused4: Vec::new(),
            lsdb_shape: ((0, 0), 0),
            resync_since: None,
            pods: BTreeMap::new(),
            published: None,
            counters: AgentCounters::default(),
        }
    }

    /// Decide the router id: `configured`, else from the machine id file
    /// (its path and content), else from the first universal MAC of
    /// `links`, else from `random`.
    pub fn discover_identity(
        configured: Option<Ipv4Addr>,
        machine_id: Option<(&str, &str)>,
        links: &[LinkEvent],
        random: u64,
    ) -> Identity {
        if let Some(id) = configured {
            return Identity::configured(id);
        }
        let mut macs: Vec<(u32, String, [u8; 6])> = links
            .iter()
            .filter_map(|ev| match ev {
                LinkEvent::Link(l) if !l.loopback => {
                    let mac = l.perm_mac.or(l.mac)?;
                    Some((l.ifindex, l.name.clone(), mac.0))
                }
                _ => None,
            })
            .collect();
        // A stable order, whatever order the dump came in.
        macs.sort();
        let macs: Vec<(String, [u8; 6])> = macs.into_iter().map(|(_, n, m)| (n, m)).collect();
        Identity::discover(machine_id, &macs, random)
    }

    /// Handle one event at `now`; return what to do, in order.
    pub fn handle(&mut self, now: Millis, event: Event) -> Vec<Action> {
        let mut out = Vec::new();
        match event {
            Event::Start => {
                self.resync_since = Some(now);
                self.start(&mut out);
            }
            Event::Link(ev) => self.link_event(ev, &mut out),
            Event::Rib(diffs) => {
                for diff in &diffs {
                    self.rib.apply(diff);
                    self.counters.rib_changes += 1;
                }
                self.send_table(&mut out);
            }
            Event::Rib4(diffs) => {
                for diff in &diffs {
                    self.rib4.apply(diff);
                    self.counters.rib_changes += 1;
                }
                self.send_table(&mut out);
            }
            Event::OspfSample { summary, salt } => {
                if let Some(b) = &mut self.bfd {
                    b.sample(&summary, &mut out);
                }
                self.sample(now, &summary, salt, &mut out)
            }
            Event::Ospf4Sample { refused } => self.refused4 = refused,
            Event::Bfd(change) => {
                if let Some(b) = &mut self.bfd {
                    b.change(change, &mut out);
                }
            }
        }
        out
    }

    /// The router id and where it came from.
    pub fn identity(&self) -> &Identity {
        &self.identity
    }

    /// The node's prefixes.
    pub fn prefixes(&self) -> &NodePrefixes {
        &self.prefixes
    }

    /// The node's IPv4 prefixes, if it has IPv4.
    pub fn prefixes4(&self) -> Option<&NodePrefixes4> {
        self.prefixes4.as_ref()
    }

    /// The links and which of them run OSPF.
    pub fn links(&self) -> &LinkTracker {
        &self.links
    }

    /// The routes OSPF computed.
    pub fn rib(&self) -> &Rib {
        &self.rib
    }

    /// The IPv4 instance's routes (prefixes in their wire form, see
    /// `routing::af`); empty on a node without IPv4.
    pub fn rib4(&self) -> &Rib {
        &self.rib4
    }

    /// What the core decided so far, counted.
    pub fn counters(&self) -> &AgentCounters {
        &self.counters
    }

    fn start(&mut self, out: &mut Vec<Action>) {
        if self.settings.skip_dad {
            out.push(Action::SkipDad {
                ifname: "default".into(),
            });
            for s in self.links.status() {
                if self.links.is_candidate(s.link.ifindex) {
                    out.push(Action::SkipDad {
                        ifname: s.link.name.clone(),
                    });
                }
            }
        }
        out.push(self.start_ospf());
        // Pods wired while the agent was away.
        let pods: Vec<Link> = self
            .links
            .status()
            .into_iter()
            .map(|s| s.link)
            .filter(is_pod_veth)
            .collect();
        for pod in pods {
            self.pod_seen(&pod, out);
        }
        self.publish(out);
        let mesh: Vec<MeshLink> = self.links.mesh_links().cloned().collect();
        for link in mesh {
            self.link_up(link, out);
        }
        self.send_table(out);
    }

    fn start_ospf(&self) -> Action {
        Action::StartOspf {
            router_id: self.identity.router_id,
            stubs: self.prefixes.own(),
            stubs4: self.prefixes4.map(|p| p.stubs()),
        }
    }

    fn link_event(&mut self, ev: LinkEvent, out: &mut Vec<Action>) {
        match &ev {
            LinkEvent::Link(l) if is_pod_veth(l) => self.pod_seen(l, out),
            LinkEvent::LinkGone(ifindex) => {
                if let Some(ifname) = self.pods.remove(ifindex) {
                    // Its TCX link went with it; the pin may be left.
                    out.push(Action::DetachPod { ifname });
                }
            }
            _ => {}
        }
        let new_link = match &ev {
            LinkEvent::Link(l) if self.links.link(l.ifindex).is_none() => {
                Some((l.ifindex, l.name.clone()))
            }
            _ => None,
        };
        let change = self.links.apply(ev);
        if let Some((ifindex, ifname)) = new_link
            && self.settings.skip_dad
            && self.links.is_candidate(ifindex)
        {
            out.push(Action::SkipDad { ifname });
        }
        match change {
            Some(MeshEvent::Down {
                ifindex,
                name,
                reason,
            }) => {
                // First the fast path: flows leave the link now, before
                // OSPF has noticed anything.
                out.push(Action::SetLinkAlive {
                    ifindex,
                    alive: false,
                });
                self.counters.mesh_link_downs += 1;
                if let Some(b) = &mut self.bfd {
                    b.forget_link(ifindex);
                }
                if reason == DownReason::CarrierLost {
                    self.counters.carrier_losses += 1;
                }
                tracing::info!(iface = %name, ifindex, ?reason, "mesh link down");
                if reason == DownReason::Removed {
                    out.push(Action::ForgetXdp {
                        ifname: name.clone(),
                    });
                }
                out.push(Action::OspfRemoveInterface { ifname: name });
                self.send_table(out);
            }
            Some(MeshEvent::Up(link)) => {
                self.link_up(link, out);
                self.send_table(out);
            }
            None => {}
        }
    }

    /// Start using a link that joined the mesh.
    fn link_up(&mut self, link: MeshLink, out: &mut Vec<Action>) {
        self.counters.mesh_link_ups += 1;
        tracing::info!(iface = %link.name, ifindex = link.ifindex, link_local = %link.link_local, mtu = link.mtu, "mesh link up");
        out.push(Action::SetLinkAlive {
            ifindex: link.ifindex,
            alive: true,
        });
        if link.veth {
            out.push(Action::PrepareVeth {
                ifname: link.name.clone(),
            });
        }
        // OSPF first: loading XDP takes the verifier a moment, and until it
        // is attached the kernel forwards with the same routes.
        out.push(Action::OspfAddInterface(self.interface_spec(&link)));
        out.push(Action::AttachXdp { ifname: link.name });
    }

    fn interface_spec(&self, link: &MeshLink) -> InterfaceSpec {
        InterfaceSpec {
            name: link.name.clone(),
            config: self
                .settings
                .networks
                .of(&link.name)
                .apply(self.settings.interface.clone()),
            link_local: Some(link.link_local),
            mtu: Some(u16::try_from(link.mtu).unwrap_or(u16::MAX)),
        }
    }

    /// Attach the fast path to a pod's host veth the first time it is seen.
    fn pod_seen(&mut self, link: &Link, out: &mut Vec<Action>) {
        if !self.settings.xdp || self.pods.contains_key(&link.ifindex) {
            return;
        }
        self.pods.insert(link.ifindex, link.name.clone());
        self.counters.pod_attaches += 1;
        out.push(Action::AttachPod {
            ifindex: link.ifindex,
            ifname: link.name.clone(),
        });
    }

    /// Hand the route table to the map writer.
    fn send_table(&mut self, out: &mut Vec<Action>) {
        let links = &self.links;
        let mut table = table::desired_table(
            &self.rib,
            |ifindex| links.mesh_link(ifindex).is_some(),
            &[self.prefixes.node_address],
            &self.prefixes.own(),
        );
        if let Some(p4) = &self.prefixes4 {
            table::add_ipv4(
                &mut table,
                &self.rib4,
                |ifindex| links.mesh_link(ifindex).is_some(),
                p4.node_address,
                &p4.own(),
            );
        }
        self.counters.tables_sent += 1;
        out.push(Action::ApplyTable(table));
    }

    /// Put the node's prefixes everywhere they belong: the local device,
    /// OSPF's stub prefixes (when OSPF runs already), the state file.
    fn publish(&mut self, out: &mut Vec<Action>) {
        let p = self.prefixes;
        out.push(Action::SetNodeAddress(p.node_address));
        if let Some(p4) = self.prefixes4 {
            out.push(Action::SetNodeAddress4(p4.node_address));
        }
        let state = NodeState {
            router_id: self.identity.router_id,
            pod_prefix: p.pod_prefix,
            node_address: p.node_address,
            mtu: self.settings.mtu,
            bpffs: self.settings.bpffs.clone(),
            // With XDP off the CNI plugin attaches pods itself.
            pod_attach: if self.settings.xdp {
                PodAttach::Agent
            } else {
                PodAttach::Plugin
            },
            ipv4: self.prefixes4.map(|p4| Ipv4Prefixes {
                pod_prefix: p4.pod_prefix,
                node_address: p4.node_address,
            }),
        };
        if self.published.as_ref() != Some(&state) {
            self.published = Some(state.clone());
            out.push(Action::WriteState(state));
        }
    }

    /// The periodic checks: duplicate router id, pod prefix clash.
    fn sample(&mut self, now: Millis, s: &Summary, salt: u64, out: &mut Vec<Action>) {
        let me = self.identity.router_id;
        let evidence = DupEvidence {
            now_ms: now,
            foreign_links: s.foreign_links.len(),
            foreign_content: s.self_originated_foreign,
            own_id_authenticated: s.own_id_authenticated,
        };
        self.check_neighbour_ids(s);
        // Without the mesh key a packet with our id proves nothing (anyone
        // can send one), so it never moves us; a clone cabled next to us
        // stays a clone, and the operator has to hear about it.
        let rising = s.own_id_drops > self.own_id_drops.0;
        self.own_id_drops.0 = s.own_id_drops;
        if rising && self.settings.interface.auth.is_none() && !self.own_id_drops.1 {
            self.own_id_drops.1 = true;
            tracing::error!(router_id = %me, "packets with our router id arrive: a clone, or someone on a mesh port; without the mesh key they prove nothing and we keep our id (set router_id on one node, or configure [ospf.auth])");
        }
        self.counters.prefixes_refused = (s.refused.len() + self.refused4.len()) as u64;
        if self.dup.sample(&evidence) {
            self.counters.duplicate_router_ids += 1;
            if self.identity.can_rederive() {
                let new = self.identity.rederive(salt, &s.advertisers);
                tracing::warn!(old = %me, new = %new, "another router uses our router id: changing ours");
                self.restart_ospf(out);
                return;
            } else if !self.dup_reported {
                self.dup_reported = true;
                tracing::error!(router_id = %me, "another router uses our configured router id; change router_id on one of them");
            }
        }
        // Decide on the pod prefix only once the LSDB holds still (every
        // neighbour Full, nothing new for a while): a half-synchronised
        // LSDB could send us onto a /64 someone else holds, and once we
        // advertise it ourselves the RIB no longer shows theirs.
        let shape = (s.lsdb_changes, self.rib.routes.len());
        if shape != self.lsdb_shape.0 {
            self.lsdb_shape = (shape, now);
        }
        // Full, or 2-Way between two routers of a segment that are neither
        // DR nor BDR (on a point-to-point link 2-Way passes at once).
        let synced = s
            .neighbors
            .iter()
            .all(|n| matches!(n.state, nsm::State::Full | nsm::State::TwoWay));
        let quiet = now.saturating_sub(self.lsdb_shape.1) >= QUIET_MS;
        if let Some(since) = self.resync_since {
            // Every neighbour had a dead interval to show up, and the
            // exchanges are done: what OSPF computes now is the truth.
            let waited = now.saturating_sub(since);
            let dead_ms = u64::from(self.settings.interface.dead_interval) * 1_000;
            // A graceful restart hands its routes out when it ends.
            let settled = synced && quiet && waited >= dead_ms && !s.restarting;
            if settled || waited >= RESYNC_MAX_MS {
                tracing::info!(
                    after_ms = waited,
                    settled,
                    "OSPF resynchronised since start"
                );
                self.resync_since = None;
                out.push(Action::PruneStale);
            }
        }
        if self.settings.pod_prefix.is_none() && synced && quiet {
            self.check_pod_prefix(now, s, out);
        }
        if synced && quiet {
            self.check_pod_prefix4(now, s, out);
        }
    }

    /// The pod prefix rule over the IPv4 space, among the same routers.
    ///
    /// IPv4 prefixes held outside the rule are avoided as in IPv6, and a
    /// node with pods keeps its IPv4 prefix unless the clash is proven the
    /// same way: a reachable router has advertised it in the IPv4 instance
    /// for the whole hold-down.
    fn check_pod_prefix4(&mut self, now: Millis, s: &Summary, out: &mut Vec<Action>) {
        let (Some(space), Some(current)) = (self.settings.ipv4, self.prefixes4) else {
            return;
        };
        let (me, routers) = self.others_reachable(s);
        let advertised: Vec<Ipv4Net> = self
            .rib4
            .routes
            .keys()
            .filter_map(|p| routing::af::wire_to_ipv4(*p))
            .collect();
        let Some((prefix, attempt)) = prefixes::choose_pod_prefix(space, me, &routers, advertised)
        else {
            tracing::error!(cluster_prefix = %space.cluster, "no free IPv4 pod prefix left: keeping ours");
            return;
        };
        let ours = routing::af::ipv4_to_wire(current.pod_prefix);
        let clash = self
            .refused4
            .iter()
            .any(|r| r.prefix == ours && r.reason == routing::ownership::Refusal::Contested);
        let proven = track_clash(
            &mut self.clash4_since,
            clash,
            now,
            self.dup.hold_ms(),
            &mut self.counters,
            current.pod_prefix,
        );
        if prefix == current.pod_prefix {
            return;
        }
        if self.has_pods() && !proven {
            return;
        }
        tracing::warn!(old = %current.pod_prefix, new = %prefix, attempt, "IPv4 pod prefix taken by a higher router id: moving");
        let p4 = NodePrefixes4::new(prefix, attempt);
        self.prefixes4 = Some(p4);
        self.clash4_since = None;
        self.counters.pod_prefix_moves += 1;
        out.push(Action::OspfStubPrefixes4(p4.stubs()));
        self.publish(out);
        self.send_table(out);
    }

    /// Our router id, and the other routers the last SPF run reached: the
    /// ones the pod prefix rule counts.
    fn others_reachable(&self, s: &Summary) -> (Ipv4Addr, BTreeSet<Ipv4Addr>) {
        let me = self.identity.router_id;
        (
            me,
            s.reachable.iter().copied().filter(|r| *r != me).collect(),
        )
    }

    /// Two neighbours of ours with one router id on different links are
    /// two routers with a duplicate id (cloned disks): we cannot renumber
    /// them, but say so loudly, once per id.
    fn check_neighbour_ids(&mut self, s: &Summary) {
        let mut by_id: BTreeMap<Ipv4Addr, BTreeSet<&str>> = BTreeMap::new();
        for n in &s.neighbors {
            by_id
                .entry(n.router_id)
                .or_default()
                .insert(n.interface.as_str());
        }
        for (id, ifaces) in by_id {
            if ifaces.len() > 1 && self.dup_neighbours.insert(id) {
                self.counters.duplicate_neighbor_ids += 1;
                tracing::error!(router_id = %id, interfaces = ?ifaces, "two neighbours use the same router id; they will change theirs once they notice");
            }
        }
    }

    /// Whether pods run on the node (their host veths exist): its prefix
    /// is then in use, and moving it would take every pod's address.
    fn has_pods(&self) -> bool {
        self.links
            .all()
            .any(|l| l.is_veth() && l.name.starts_with(HOST_VETH_PREFIX))
    }

    /// Apply the pod prefix rule (see [`prefixes`]) among the routers SPF
    /// reaches: an LSA of a router nobody can reach moves no one.
    ///
    /// A node without pods follows the rule at once. A node with pods keeps
    /// its prefix unless the clash is proven: a reachable router has
    /// advertised the same /64 for the whole hold-down. Then the rule
    /// decides who moves (the lower router id), once, and the clash is
    /// reported either way.
    fn check_pod_prefix(&mut self, now: Millis, s: &Summary, out: &mut Vec<Action>) {
        let (me, routers) = self.others_reachable(s);
        let advertised: Vec<Ipv6Net> = self
            .rib
            .routes
            .keys()
            .filter(|p| p.prefix_len() == 64)
            .copied()
            .collect();
        // The ownership policy keeps our /64 ours in our own table, and
        // reports who else claims it.
        let clash = s.refused.iter().any(|r| {
            r.prefix == self.prefixes.pod_prefix
                && r.reason == routing::ownership::Refusal::Contested
        });
        let proven = track_clash(
            &mut self.clash_since,
            clash,
            now,
            self.dup.hold_ms(),
            &mut self.counters,
            self.prefixes.pod_prefix,
        );
        let inputs = (me, routers, advertised);
        if self.last_prefix_check.as_ref() == Some(&inputs) && !clash {
            return;
        }
        let (_, routers, advertised) = self.last_prefix_check.insert(inputs);
        let cluster = self.settings.cluster_prefix;
        let known = routers.len();
        let choice = prefixes::choose_pod_prefix(cluster, me, routers, advertised.iter().copied());
        let Some((prefix, attempt)) = choice else {
            tracing::error!(cluster_prefix = %cluster, routers = known, "no free /64 left in the cluster prefix: keeping ours");
            return;
        };
        if prefix == self.prefixes.pod_prefix {
            return;
        }
        if self.has_pods() && !proven {
            tracing::debug!(new = %prefix, "the pod prefix rule would move us; our pods keep it unless the clash is proven");
            return;
        }
        tracing::warn!(old = %self.prefixes.pod_prefix, new = %prefix, attempt, routers = known, "pod prefix taken by a higher router id: moving");
        self.prefixes = NodePrefixes::new(prefix, attempt);
        self.clash_since = None;
        self.counters.pod_prefix_moves += 1;
        out.push(Action::OspfStubPrefixes(self.prefixes.own()));
        self.publish(out);
        self.send_table(out);
    }

    /// Restart OSPF under the (new) router id, on the same links.
    fn restart_ospf(&mut self, out: &mut Vec<Action>) {
        self.counters.router_id_changes += 1;
        self.rib = Rib::default();
        self.rib4 = Rib::default();
        if let Some(space) = self.settings.ipv4 {
            self.prefixes4 = Some(NodePrefixes4::new(
                space.candidate(self.identity.router_id, 0),
                0,
            ));
        }
        self.dup.reset();
        self.last_prefix_check = None;
        self.clash4_since = None;
        self.refused4.clear();
        if self.settings.pod_prefix.is_none() {
            self.prefixes = NodePrefixes::new(
                prefixes::pod_prefix_candidate(
                    self.settings.cluster_prefix,
                    self.identity.router_id,
                    0,
                ),
                0,
            );
        }
        out.push(self.start_ospf());
        self.publish(out);
        let mesh: Vec<MeshLink> = self.links.mesh_links().cloned().collect();
        for link in &mesh {
            out.push(Action::OspfAddInterface(self.interface_spec(link)));
        }
        self.send_table(out);
    }
}

/// Whether a link is a pod's host veth the CNI plugin has finished wiring.
fn is_pod_veth(l: &Link) -> bool {
    l.is_veth()
        && l.name.starts_with(HOST_VETH_PREFIX)
        && l.alias.as_deref() == Some(POD_VETH_ALIAS)
}

#[cfg(test)]
mod testing;
/// Follow a clash on one of our pod prefixes (`since`: when it began):
/// count and report it when it begins, forget it when it ends; return
/// whether it is proven (it has lasted `hold_ms`).
fn track_clash(
    since: &mut Option<Millis>,
    clash: bool,
    now: Millis,
    hold_ms: Millis,
    counters: &mut AgentCounters,
    prefix: impl std::fmt::Display,
) -> bool {
    if !clash {
        *since = None;
        return false;
    }
    if since.is_none() {
        counters.pod_prefix_clashes += 1;
        tracing::error!(%prefix, "another reachable router advertises our pod prefix");
    }
    now.saturating_sub(*since.get_or_insert(now)) >= hold_ms
}

#[cfg(test)]
mod tests;
