//! [`FibWriter`]: applies [`Planner`] output to the pinned maps, fills in
//! next hops' MACs and MTUs from the kernel, keeps them fresh from
//! neighbour and link events, mirrors routes into the kernel FIB, and flips
//! alive flags for fast reroute.
//!
//! A writer started over maps an earlier run filled adopts what it finds
//! (see [`Adopted`]): those routes keep forwarding, in the maps and in the
//! kernel, beside whatever the new run writes, until [`FibWriter::prune`]
//! (the agent calls it once OSPF has resynchronised) removes what is no
//! longer wanted. A restart never empties the tables first.
//!
//! Ownership of a next hop's fields: the writer owns the MACs, MTU and
//! ifindex; the ALIVE bit is owned by whoever does fast reroute (this
//! writer's [`FibWriter::set_alive`], or `meshfwd fib alive` from another
//! process), so the writer keeps the bit it finds in the map whenever it
//! rewrites an existing next hop.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    future::Future,
};

use super::xdp_features::NetdevQuery;
use super::{Doing as _, Result};
use aya::maps::lpm_trie::Key;
use futures::{StreamExt as _, channel::mpsc::UnboundedReceiver};
use meshfwd_common::fib::{FibEntry, GROUP_MAX_MEMBERS, NextHop, NextHopGroup, kind, nh_flags};
use netlink_packet_core::{NetlinkMessage, NetlinkPayload};
use netlink_packet_route::RouteNetlinkMessage;
use netlink_sys::SocketAddr;
use rtnetlink::Handle;

use super::{
    IpNet, NextHopKey, RouteTable, kroute,
    neigh::{self, LinkInfo, NeighbourUpdate},
    plan::{Op, Planner},
    table::Publisher,
};
use dataplane::maps::FibMaps;

type Events = UnboundedReceiver<(NetlinkMessage<RouteNetlinkMessage>, SocketAddr)>;

/// What one [`FibWriter::apply`] did (part of `meshfwd show stats`).
pub use crate::api::ApplyReport;

/// What an earlier run left in the maps, kept until [`FibWriter::prune`].
#[derive(Debug, Default)]
struct Adopted {
    /// Its FIB entries the new run has not written over.
    fib: BTreeMap<IpNet, FibEntry>,
    /// The groups they use, by id.
    groups: BTreeSet<u32>,
    /// Their groups' next hops: id -> egress ifindex.
    next_hops: BTreeMap<u32, u32>,
}

impl Adopted {
    /// Read what the maps hold.
    fn read(maps: &FibMaps) -> Self {
        let mut a = Adopted::default();
        let v6 = maps
            .fib_v6
            .iter()
            .filter_map(|r| r.ok())
            .filter_map(|(k, e)| {
                let p = ipnet::Ipv6Net::new(k.data().into(), k.prefix_len() as u8).ok()?;
                Some((IpNet::V6(p.trunc()), e))
            });
        let v4 = maps
            .fib_v4
            .iter()
            .filter_map(|r| r.ok())
            .filter_map(|(k, e)| {
                let p = ipnet::Ipv4Net::new(k.data().into(), k.prefix_len() as u8).ok()?;
                Some((IpNet::V4(p.trunc()), e))
            });
        for (prefix, entry) in v6.chain(v4) {
            if entry.kind == kind::FORWARD {
                a.groups.insert(entry.group);
            }
            a.fib.insert(prefix, entry);
        }
        for g in &a.groups {
            let Ok(group) = maps.groups.get(g, 0) else {
                continue;
            };
            for id in group.members.iter().take(group.len as usize) {
                if let Ok(nh) = maps.next_hops.get(id, 0) {
                    a.next_hops.insert(*id, nh.ifindex);
                }
            }
        }
        a
    }
}

/// The map writer of one node.
pub struct FibWriter {
    maps: FibMaps,
    planner: Planner,
    handle: Handle,
    events: Option<Events>,
    neighbours: HashMap<NextHopKey, [u8; 6]>,
    links: HashMap<u32, LinkInfo>,
    egress_refs: BTreeMap<u32, u32>,
    /// Asks the kernel which devices take redirected frames (`None` when
    /// the kernel has no `netdev` family: every device is trusted then).
    netdev: Option<NetdevQuery>,
    /// Egress devices kept out of the devmap because they cannot take
    /// redirected frames: the fast path passes traffic for them to the
    /// kernel (`pass_no_egress_dev`).
    egress_blocked: BTreeSet<u32>,
    kernel: kroute::KernelRoutes,
    kernel_routes: bool,
    /// What an earlier run left, until [`FibWriter::prune`]; its kernel
    /// routes are found then.
    adopted: Option<Adopted>,
    /// FIB entries changed since the generation was last bumped.
    routes_dirty: bool,
    /// Compile the FIB into the lookup tables (IPv6, IPv4) and make them
    /// live.
    table6: Publisher,
    table4: Publisher,
}

impl FibWriter {
    /// Return a writer over `maps`, subscribed to neighbour and link events
    /// and with the neighbour table loaded. Call inside a tokio runtime, in
    /// the network namespace whose maps these are.
    pub async fn new(maps: FibMaps) -> Result<Self> {
        let events = neigh::subscribe()?;
        let handle = neigh::connect()?;
        let neighbours = neigh::dump_neighbours(&handle).await?;
        let (table6, table4) = (Publisher::new(&maps.table6), Publisher::new(&maps.table4));
        let adopted = Adopted::read(&maps);
        let mut planner = Planner::new();
        planner.reserve(
            adopted.next_hops.keys().copied(),
            adopted.groups.iter().copied(),
        );
        if !adopted.fib.is_empty() {
            tracing::info!(
                routes = adopted.fib.len(),
                groups = adopted.groups.len(),
                next_hops = adopted.next_hops.len(),
                "adopting the fast path's routes of an earlier run until OSPF has resynchronised"
            );
        }
        Ok(FibWriter {
            maps,
            planner,
            handle,
            events: Some(events),
            neighbours,
            links: HashMap::new(),
            egress_refs: BTreeMap::new(),
            netdev: NetdevQuery::open()
                .inspect_err(|e| {
                    tracing::warn!(error = %e, "no netdev netlink family: every egress device is trusted to take XDP redirects")
                })
                .ok(),
            egress_blocked: BTreeSet::new(),
            kernel: BTreeMap::new(),
            kernel_routes: true,
            adopted: Some(adopted),
            routes_dirty: false,
            table6,
            table4,
        })
    }

    /// Choose whether routes are mirrored into the kernel FIB (default on).
    pub fn with_kernel_routes(mut self, on: bool) -> Self {
        self.kernel_routes = on;
        self
    }

    /// Return the rtnetlink handle the writer uses.
    pub fn handle(&self) -> &Handle {
        &self.handle
    }

    /// Return the maps the writer fills.
    pub fn maps(&self) -> &FibMaps {
        &self.maps
    }

    /// Return the planner (the shadow of the maps).
    pub fn planner(&self) -> &Planner {
        &self.planner
    }

    /// Make the maps and the kernel FIB match `table` with the smallest
    /// change, make-before-break.
    pub async fn apply(&mut self, table: &RouteTable) -> Result<ApplyReport> {
        let mut report = ApplyReport::default();
        let ops = self.planner.plan(table)?;
        for op in &ops {
            self.execute(op).await?;
        }
        report.map_ops = ops.len();

        // The new run's entries replace adopted ones of the same prefix.
        if let Some(a) = &mut self.adopted {
            let mine = self.planner.routes();
            a.fib.retain(|prefix, _| !mine.contains_key(prefix));
        }
        self.flush_routes().await?;

        let unresolved: Vec<NextHopKey> = self
            .planner
            .next_hops()
            .keys()
            .filter(|k| !self.neighbours.contains_key(k))
            .copied()
            .collect();
        report.unresolved = unresolved.len();
        for key in unresolved {
            if let Err(err) = neigh::resolve(&self.handle, key).await {
                tracing::debug!(next_hop = %key, error = %format!("{err:#}"), "resolution request failed");
            }
        }

        if self.kernel_routes {
            let desired: kroute::KernelRoutes = table
                .routes
                .iter()
                .filter(|(_, h)| !h.is_empty())
                .map(|(p, h)| (*p, h.clone()))
                .collect();
            // Route by route, so one refused route does not hold up the rest.
            for (prefix, hops) in &desired {
                if self.kernel.get(prefix) == Some(hops) {
                    continue;
                }
                match kroute::replace(&self.handle, *prefix, hops).await {
                    Ok(()) => {
                        self.kernel.insert(*prefix, hops.clone());
                    }
                    Err(err) => report.kernel_errors.push(format!("{err:#}")),
                }
                report.kernel_writes += 1;
            }
            let gone: Vec<IpNet> = self
                .kernel
                .keys()
                .filter(|p| !desired.contains_key(*p))
                .copied()
                .collect();
            for prefix in gone {
                if let Err(err) = kroute::remove(&self.handle, prefix).await {
                    report.kernel_errors.push(format!("{err:#}"));
                }
                self.kernel.remove(&prefix);
                report.kernel_writes += 1;
            }
        }
        Ok(report)
    }

    /// Remove what an earlier run left and the current table does not want:
    /// its FIB entries, then (once no entry points at them) its groups and
    /// next hops, and its kernel routes. Call once OSPF has resynchronised;
    /// later calls do nothing.
    pub async fn prune(&mut self) -> Result<ApplyReport> {
        let mut report = ApplyReport::default();
        let Some(adopted) = self.adopted.take() else {
            return Ok(report);
        };
        for prefix in adopted.fib.keys() {
            let _ = self.remove_fib(prefix);
            report.map_ops += 1;
            self.routes_dirty = true;
        }
        // Publishing without them first: the lookup table and every CPU's
        // cache stop pointing at the groups before they are cleared.
        self.flush_routes().await?;
        for id in &adopted.groups {
            self.maps
                .groups
                .set(*id, NextHopGroup::default(), 0)
                .doing(|| "clearing an earlier run's group".into())?;
            report.map_ops += 1;
        }
        for id in adopted.next_hops.keys() {
            self.maps
                .next_hops
                .set(*id, NextHop::default(), 0)
                .doing(|| "clearing an earlier run's next hop".into())?;
            report.map_ops += 1;
        }
        self.planner.release(
            adopted.next_hops.keys().copied(),
            adopted.groups.iter().copied(),
        );
        if self.kernel_routes {
            match kroute::prune(&self.handle, &self.kernel).await {
                Ok(n) => report.kernel_writes += n,
                Err(err) => report.kernel_errors.push(format!("{err:#}")),
            }
        }
        tracing::info!(
            map_ops = report.map_ops,
            kernel_routes = report.kernel_writes,
            "an earlier run's routes that are no longer wanted removed"
        );
        Ok(report)
    }

    /// Return how many FIB entries of an earlier run are still adopted.
    pub fn adopted_routes(&self) -> usize {
        self.adopted.as_ref().map_or(0, |a| a.fib.len())
    }

    /// Return the earlier run's next hops still adopted: id -> ifindex.
    pub fn adopted_next_hops(&self) -> BTreeMap<u32, u32> {
        self.adopted
            .as_ref()
            .map(|a| a.next_hops.clone())
            .unwrap_or_default()
    }

    /// If FIB entries changed, make a new lookup table live and bump the
    /// FIB generation, so no CPU keeps using a cached entry: done before
    /// groups or next hops are released, so neither the table nor a cached
    /// entry ever points at a cleared or reused slot.
    async fn flush_routes(&mut self) -> Result<()> {
        if self.routes_dirty {
            // Each family's table; adopted entries stay in them until
            // pruned (the new run's win where both have a prefix). IPv4
            // prefixes are compiled as IPv4-mapped ones.
            let mut v6 = BTreeMap::new();
            let mut v4 = BTreeMap::new();
            let adopted = self.adopted.iter().flat_map(|a| a.fib.iter());
            for (p, e) in adopted.chain(self.planner.routes()) {
                match p {
                    IpNet::V6(p) => v6.insert(*p, *e),
                    IpNet::V4(p) => v4.insert(super::table::ipv4_mapped(*p), *e),
                };
            }
            let p6 = self.table6.publish(&mut self.maps.table6, &v6).await?;
            let p4 = self.table4.publish(&mut self.maps.table4, &v4).await?;
            tracing::debug!(
                writes = p6.writes + p4.writes,
                groups6 = p6.groups,
                groups4 = p4.groups,
                "lookup tables published"
            );
            self.maps.bump_generation()?;
            self.routes_dirty = false;
        }
        Ok(())
    }

    /// Remove `prefix`'s entry from its family's trie.
    fn remove_fib(&mut self, prefix: &IpNet) -> std::result::Result<(), aya::maps::MapError> {
        let len = u32::from(prefix.prefix_len());
        match prefix {
            IpNet::V6(p) => self
                .maps
                .fib_v6
                .remove(&Key::new(len, p.network().octets())),
            IpNet::V4(p) => self
                .maps
                .fib_v4
                .remove(&Key::new(len, p.network().octets())),
        }
    }

    async fn execute(&mut self, op: &Op) -> Result<()> {
        match op {
            Op::SetRoute { .. } | Op::DelRoute { .. } => self.routes_dirty = true,
            Op::DelGroup { .. } | Op::DelNextHop { .. } => self.flush_routes().await?,
            Op::AddNextHop { .. } | Op::AddGroup { .. } => {}
        }
        match op {
            Op::AddNextHop { id, key } => {
                self.ensure_link(key.ifindex).await?;
                let first = self.egress_refs.get(&key.ifindex).is_none_or(|r| *r == 0);
                if first {
                    if self.takes_redirects(key.ifindex) {
                        self.maps
                            .egress
                            .insert(key.ifindex, key.ifindex, None, 0)
                            .doing(|| format!("adding ifindex {} to the devmap", key.ifindex))?;
                    } else {
                        tracing::warn!(
                            ifindex = key.ifindex,
                            "egress device cannot take XDP redirects (no ndo_xdp_xmit now): the kernel forwards traffic to it"
                        );
                        self.egress_blocked.insert(key.ifindex);
                    }
                }
                *self.egress_refs.entry(key.ifindex).or_default() += 1;
                let value = self.next_hop_value(key, nh_flags::ALIVE);
                self.maps
                    .next_hops
                    .set(*id, value, 0)
                    .doing(|| "writing a next hop".into())?;
            }
            Op::AddGroup { id, members } => {
                let mut g = NextHopGroup {
                    len: members.len() as u32,
                    members: [0; GROUP_MAX_MEMBERS],
                };
                g.members[..members.len()].copy_from_slice(members);
                self.maps
                    .groups
                    .set(*id, g, 0)
                    .doing(|| "writing a group".into())?;
            }
            Op::SetRoute { prefix, entry } => {
                let len = u32::from(prefix.prefix_len());
                match prefix {
                    IpNet::V6(p) => {
                        self.maps
                            .fib_v6
                            .insert(&Key::new(len, p.network().octets()), entry, 0)
                    }
                    IpNet::V4(p) => {
                        self.maps
                            .fib_v4
                            .insert(&Key::new(len, p.network().octets()), entry, 0)
                    }
                }
                .doing(|| format!("writing FIB entry {prefix}"))?;
            }
            Op::DelRoute { prefix } => {
                self.remove_fib(prefix)
                    .doing(|| format!("removing FIB entry {prefix}"))?;
            }
            Op::DelGroup { id } => {
                self.maps
                    .groups
                    .set(*id, NextHopGroup::default(), 0)
                    .doing(|| "clearing a group".into())?;
            }
            Op::DelNextHop { id, key } => {
                self.maps
                    .next_hops
                    .set(*id, NextHop::default(), 0)
                    .doing(|| "clearing a next hop".into())?;
                if let Some(refs) = self.egress_refs.get_mut(&key.ifindex) {
                    *refs -= 1;
                    if *refs == 0 {
                        self.egress_refs.remove(&key.ifindex);
                        self.egress_blocked.remove(&key.ifindex);
                        let _ = self.maps.egress.remove(key.ifindex);
                    }
                }
            }
        }
        Ok(())
    }

    /// Whether `ifindex` takes redirected frames now; a failed question
    /// trusts it (the fast path's behaviour before the question existed).
    fn takes_redirects(&mut self, ifindex: u32) -> bool {
        match self.netdev.as_mut().map(|q| q.takes_redirects(ifindex)) {
            None => true,
            Some(Ok(ok)) => ok,
            Some(Err(e)) => {
                tracing::debug!(ifindex, error = %e, "xdp-features unknown: trusting the device");
                true
            }
        }
    }

    /// Ask again whether each egress device takes redirected frames (a
    /// veth does only while its peer runs XDP or GRO), and put it in or
    /// take it out of the devmap. Returns the devices that changed, with
    /// their new answer.
    pub fn refresh_egress(&mut self) -> Vec<(u32, bool)> {
        let mut changed = Vec::new();
        let devices: Vec<u32> = self.egress_refs.keys().copied().collect();
        for ifindex in devices {
            let ok = self.takes_redirects(ifindex);
            let blocked = self.egress_blocked.contains(&ifindex);
            if ok && blocked {
                if self.maps.egress.insert(ifindex, ifindex, None, 0).is_ok() {
                    self.egress_blocked.remove(&ifindex);
                    changed.push((ifindex, true));
                }
            } else if !ok && !blocked {
                let _ = self.maps.egress.remove(ifindex);
                self.egress_blocked.insert(ifindex);
                changed.push((ifindex, false));
            }
        }
        changed
    }

    /// The egress devices kept out of the devmap.
    pub fn egress_blocked(&self) -> &BTreeSet<u32> {
        &self.egress_blocked
    }

    async fn ensure_link(&mut self, ifindex: u32) -> Result<()> {
        if !self.links.contains_key(&ifindex) {
            let info = neigh::link_info(&self.handle, ifindex).await?;
            self.links.insert(ifindex, info);
        }
        Ok(())
    }

    /// The map value for `key` from what is known now, with `alive` bits.
    fn next_hop_value(&self, key: &NextHopKey, alive: u32) -> NextHop {
        let link = self.links.get(&key.ifindex);
        let mac = self.neighbours.get(key);
        let mut flags = alive & nh_flags::ALIVE;
        if mac.is_some() && link.is_some() {
            flags |= nh_flags::MAC_VALID;
        }
        NextHop {
            ifindex: key.ifindex,
            mtu: link.map_or(0, |l| l.mtu),
            dst_mac: mac.copied().unwrap_or_default(),
            src_mac: link.map_or([0; 6], |l| l.mac),
            flags,
        }
    }

    /// Rewrite next hop `key` from current knowledge, keeping the map's
    /// ALIVE bit. Return whether anything changed.
    fn refresh_next_hop(&mut self, key: &NextHopKey) -> Result<bool> {
        let Some(id) = self.planner.next_hop_id(key) else {
            return Ok(false);
        };
        let old = self.maps.next_hops.get(&id, 0)?;
        let new = self.next_hop_value(key, old.flags);
        if new == old {
            return Ok(false);
        }
        self.maps.next_hops.set(id, new, 0)?;
        Ok(true)
    }

    /// Set or clear one next hop's ALIVE flag: a single map write. Return
    /// whether the next hop exists.
    pub fn set_alive(&mut self, key: &NextHopKey, alive: bool) -> Result<bool> {
        let Some(id) = self.planner.next_hop_id(key) else {
            return Ok(false);
        };
        set_alive_id(&mut self.maps, id, alive)?;
        Ok(true)
    }

    /// Set or clear ALIVE on every next hop through `ifindex` (a link went
    /// down or came back). Return how many next hops changed.
    pub fn set_link_alive(&mut self, ifindex: u32, alive: bool) -> Result<usize> {
        let ids: Vec<u32> = self
            .planner
            .next_hops()
            .iter()
            .filter(|(k, _)| k.ifindex == ifindex)
            .map(|(_, s)| s.id)
            .collect();
        for id in &ids {
            set_alive_id(&mut self.maps, *id, alive)?;
        }
        Ok(ids.len())
    }

    /// Apply one rtnetlink event (neighbour or link change).
    pub async fn handle_event(&mut self, msg: RouteNetlinkMessage) -> Result<()> {
        match msg {
            RouteNetlinkMessage::NewNeighbour(m) => {
                if let Some(update) = neigh::parse_neighbour(&m, false) {
                    self.on_neighbour(update)?;
                }
            }
            RouteNetlinkMessage::DelNeighbour(m) => {
                if let Some(update) = neigh::parse_neighbour(&m, true) {
                    self.on_neighbour(update)?;
                }
            }
            RouteNetlinkMessage::NewLink(m) => {
                if let Some((ifindex, info)) = neigh::parse_link(&m)
                    && self.links.get(&ifindex).is_some_and(|old| *old != info)
                {
                    self.links.insert(ifindex, info);
                    let keys: Vec<NextHopKey> = self
                        .planner
                        .next_hops()
                        .keys()
                        .filter(|k| k.ifindex == ifindex)
                        .copied()
                        .collect();
                    for key in keys {
                        self.refresh_next_hop(&key)?;
                    }
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// Record a neighbour change and rewrite its next hop if it has one.
    pub fn on_neighbour(&mut self, update: NeighbourUpdate) -> Result<bool> {
        match update {
            NeighbourUpdate::Resolved { key, mac } => {
                self.neighbours.insert(key, mac);
            }
            NeighbourUpdate::Unresolved { key } => {
                self.neighbours.remove(&key);
            }
        }
        let key = update.key();
        let changed = self.refresh_next_hop(&key)?;
        if changed {
            tracing::debug!(next_hop = %key, ?update, "next hop rewritten");
        }
        Ok(changed)
    }

    /// Process events until `shutdown` completes.
    pub async fn run_until(&mut self, shutdown: impl Future<Output = ()>) -> Result<()> {
        let mut events = self
            .events
            .take()
            .doing(|| "the event stream is already in use".into())?;
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                () = &mut shutdown => break,
                ev = events.next() => {
                    let Some((msg, _)) = ev else { break };
                    if let NetlinkPayload::InnerMessage(inner) = msg.payload
                        && let Err(err) = self.handle_event(inner).await
                    {
                        tracing::warn!(error = %format!("{err:#}"), "handling an rtnetlink event failed");
                    }
                }
            }
        }
        self.events = Some(events);
        Ok(())
    }
}

/// Set or clear the ALIVE bit of next hop `id` in the map.
pub fn set_alive_id(maps: &mut FibMaps, id: u32, alive: bool) -> Result<()> {
    let mut nh = maps.next_hops.get(&id, 0)?;
    if alive {
        nh.flags |= nh_flags::ALIVE;
    } else {
        nh.flags &= !nh_flags::ALIVE;
    }
    maps.next_hops.set(id, nh, 0)?;
    Ok(())
}
