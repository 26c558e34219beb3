//! Shortest paths (RFC 2328 §16.1 as adapted by RFC 5340 §4.8) with ECMP,
//! and the RFC 8405 back-off that decides when to run them.
//!
//! The graph is built from the area's Router- and Network-LSAs into a
//! compressed sparse row array, with the two-way check; Dijkstra runs on a
//! binary heap. Next hops are small bit
//! sets over the root's own first hops (a first hop is an interface plus the
//! neighbour's link-local address from its Link-LSA), so merging equal-cost
//! paths is a word-wise OR. Prefixes come from Intra-Area-Prefix LSAs.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap};
use std::net::{Ipv4Addr, Ipv6Addr};

use serde::{Deserialize, Serialize};

use crate::af::AddressFamily;
use crate::events::{Time, TimerKind};
use crate::instance::Instance;
use crate::lsdb::{LsaMap, Lsdb};
use crate::ownership::{PrefixPolicy, Refused};
use crate::packet::lsa::LsaBody;
use crate::packet::lsa::header::{LsaKey, LsaType, MAX_AGE};
use crate::packet::lsa::network::NetworkLsa;
use crate::packet::lsa::router::{RouterLinkType, RouterLsa};
use crate::packet::prefix::{PrefixOptions, is_link_local};
use crate::route::{NextHop, Rib, Route};
use ipnet::Ipv6Net;

/// RFC 8405 SPF back-off timers, in milliseconds.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SpfBackoffConfig {
    pub initial_delay_ms: u64,
    pub short_delay_ms: u64,
    pub long_delay_ms: u64,
    pub time_to_learn_ms: u64,
    pub holddown_ms: u64,
}

impl Default for SpfBackoffConfig {
    fn default() -> Self {
        // RFC 8405 §6 suggested values, with a faster first run.
        SpfBackoffConfig {
            initial_delay_ms: 50,
            short_delay_ms: 200,
            long_delay_ms: 2000,
            time_to_learn_ms: 500,
            holddown_ms: 5000,
        }
    }
}

/// State of the RFC 8405 back-off machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum BackoffState {
    #[default]
    Quiet,
    ShortWait,
    LongWait,
}

/// Key of an LSA range start for one type and router.
fn range_start(ls_type: LsaType, adv_router: Ipv4Addr) -> LsaKey {
    LsaKey {
        ls_type,
        adv_router,
        ls_id: 0,
    }
}

fn type_range(map: &LsaMap, ls_type: LsaType) -> impl Iterator<Item = &crate::lsdb::LsaEntry> {
    map.range(
        range_start(ls_type, Ipv4Addr::UNSPECIFIED)..=LsaKey {
            ls_type,
            adv_router: Ipv4Addr::BROADCAST,
            ls_id: u32::MAX,
        },
    )
    .map(|(_, e)| e)
}

/// Return a neighbour's link-local address on an interface from its Link-LSA.
pub fn link_local_of(lsdb: &Lsdb, ifindex: u32, router: Ipv4Addr) -> Option<Ipv6Addr> {
    let map = lsdb.link(ifindex)?;
    map.range(
        range_start(LsaType::LINK, router)..=LsaKey {
            ls_type: LsaType::LINK,
            adv_router: router,
            ls_id: u32::MAX,
        },
    )
    .filter(|(_, e)| e.lsa.header.age < MAX_AGE)
    .find_map(|(_, e)| match &e.lsa.body {
        LsaBody::Link(l) => Some(l.link_local),
        _ => None,
    })
}

/// Where a next-hop set of a vertex comes from during relaxation.
#[derive(Clone, Copy)]
enum NhSrc {
    /// One of the root's first hops.
    Bit(usize),
    /// The parent's set.
    Parent(usize),
}

/// A small multiplicative hasher for the u32-sized keys of one SPF run
/// (router ids are not attacker-chosen here: they are in the LSDB already).
#[derive(Default, Clone, Copy)]
struct IdHasher(u64);

impl std::hash::Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.write_u8(*b);
        }
    }
    fn write_u8(&mut self, i: u8) {
        self.write_u64(u64::from(i));
    }
    fn write_u32(&mut self, i: u32) {
        self.write_u64(u64::from(i));
    }
    fn write_u64(&mut self, i: u64) {
        self.0 = (self.0.rotate_left(5) ^ i).wrapping_mul(0x517c_c1b7_2722_0a95);
    }
}

type IdMap<K> = HashMap<K, u32, std::hash::BuildHasherDefault<IdHasher>>;

/// What an edge leads to.
#[derive(Clone, Copy, PartialEq, Eq)]
enum EdgeKind {
    /// Router to router over a point-to-point link.
    PointToPoint,
    /// Router to a transit network.
    Transit,
    /// Transit network to an attached router (cost 0).
    Attached,
}

/// One directed edge of the SPF graph.
#[derive(Clone, Copy)]
struct Edge {
    to: u32,
    cost: u32,
    /// The interface id of the link at the source router.
    ifid: u32,
    kind: EdgeKind,
}

/// The SPF graph in compressed sparse row form: routers first, then networks.
struct Graph {
    rids: Vec<Ipv4Addr>,
    /// Whether a router may carry transit traffic of the family (V6 and R
    /// bits for IPv6, RFC 5340 §4.8.1; R for IPv4, RFC 5838 §2.8).
    transit: Vec<bool>,
    rindex: IdMap<u32>,
    nindex: IdMap<(u32, u32)>,
    start: Vec<u32>,
    edges: Vec<Edge>,
}

impl Graph {
    fn build(area: &LsaMap, af: AddressFamily) -> Self {
        let mut routers: Vec<(Ipv4Addr, Vec<&RouterLsa>)> = Vec::new();
        for e in type_range(area, LsaType::ROUTER) {
            if e.lsa.header.age >= MAX_AGE {
                continue;
            }
            let LsaBody::Router(r) = &e.lsa.body else {
                continue;
            };
            let adv = e.lsa.header.adv_router;
            match routers.last_mut() {
                Some((last, lsas)) if *last == adv => lsas.push(r),
                _ => routers.push((adv, vec![r])),
            }
        }
        let nr = routers.len();
        let mut rindex = IdMap::with_capacity_and_hasher(nr, Default::default());
        for (i, (r, _)) in routers.iter().enumerate() {
            rindex.insert(u32::from(*r), i as u32);
        }
        let mut networks: Vec<(Ipv4Addr, u32, &NetworkLsa)> = Vec::new();
        for e in type_range(area, LsaType::NETWORK) {
            if e.lsa.header.age >= MAX_AGE {
                continue;
            }
            let LsaBody::Network(n) = &e.lsa.body else {
                continue;
            };
            networks.push((e.lsa.header.adv_router, e.lsa.header.ls_id, n));
        }
        let mut nindex = IdMap::with_capacity_and_hasher(networks.len(), Default::default());
        for (i, (r, id, _)) in networks.iter().enumerate() {
            nindex.insert((u32::from(*r), *id), (nr + i) as u32);
        }
        let mut start = Vec::with_capacity(nr + networks.len() + 1);
        let mut edges = Vec::with_capacity(nr * 4);
        let mut transit = Vec::with_capacity(nr);
        for (rid, lsas) in &routers {
            start.push(edges.len() as u32);
            transit.push(lsas.iter().all(|l| af.is_transit(l.options)));
            for l in lsas.iter().flat_map(|l| l.links.iter()) {
                let (to, kind) = match l.link_type {
                    RouterLinkType::PointToPoint => {
                        let Some(&v) = rindex.get(&u32::from(l.neighbor_router_id)) else {
                            continue;
                        };
                        (v, EdgeKind::PointToPoint)
                    }
                    RouterLinkType::Transit => {
                        let key = (u32::from(l.neighbor_router_id), l.neighbor_interface_id);
                        let Some(&v) = nindex.get(&key) else { continue };
                        // Two-way check: the network lists us.
                        if !networks[v as usize - nr].2.attached.contains(rid) {
                            continue;
                        }
                        (v, EdgeKind::Transit)
                    }
                    _ => continue,
                };
                edges.push(Edge {
                    to,
                    cost: u32::from(l.metric),
                    ifid: l.interface_id,
                    kind,
                });
            }
        }
        // Networks to their attached routers that link back to them.
        for (i, (_, _, net)) in networks.iter().enumerate() {
            start.push(edges.len() as u32);
            let me = (nr + i) as u32;
            for r in &net.attached {
                let Some(&v) = rindex.get(&u32::from(*r)) else {
                    continue;
                };
                let (a, b) = (start[v as usize] as usize, start[v as usize + 1] as usize);
                if edges[a..b]
                    .iter()
                    .any(|e| e.kind == EdgeKind::Transit && e.to == me)
                {
                    edges.push(Edge {
                        to: v,
                        cost: 0,
                        ifid: 0,
                        kind: EdgeKind::Attached,
                    });
                }
            }
        }
        start.push(edges.len() as u32);
        Graph {
            rids: routers.iter().map(|(r, _)| *r).collect(),
            transit,
            rindex,
            nindex,
            start,
            edges,
        }
    }

    fn len(&self) -> usize {
        self.start.len() - 1
    }

    fn edges(&self, v: usize) -> &[Edge] {
        &self.edges[self.start[v] as usize..self.start[v + 1] as usize]
    }
}

/// Compute routes from the database as seen by router `root` (RFC 5340
/// §4.8). `fallback` gives a neighbour's address on an interface when its
/// Link-LSA is missing (e.g. the source of its Hellos). At most `max_paths`
/// next hops are kept per prefix: the lowest in (ifindex, address) order.
pub fn compute(
    lsdb: &Lsdb,
    root: Ipv4Addr,
    max_paths: usize,
    fallback: &dyn Fn(u32, Ipv4Addr) -> Option<Ipv6Addr>,
) -> Rib {
    compute_full(lsdb, root, max_paths, fallback, None, AddressFamily::Ipv6).rib
}

/// What one SPF run yields.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SpfResult {
    pub rib: Rib,
    /// The routers the run reached (two-way links all the way), the root
    /// among them: the only ones whose word counts for identity and
    /// prefix decisions.
    pub reachable: BTreeSet<Ipv4Addr>,
    /// Advertisements the prefix policy refused (not in `rib`).
    pub refused: Vec<Refused>,
    /// Prefixes of reachable routers that do not belong to the family (an
    /// IPv4 instance's longer than 32 bits), left out of `rib` (RFC 5838
    /// §2.3), with their advertiser.
    pub misfits: BTreeSet<(Ipv6Net, Ipv4Addr)>,
}

/// [`compute`] for family `af`, with the routers it reached, and the
/// prefixes of reachable routers judged by `policy` (see
/// [`crate::ownership`]).
///
/// An IPv4 instance's next hops are the neighbours' IPv6 link-local
/// addresses from `fallback` (see [`crate::af`]): its Link-LSAs carry IPv4
/// addresses.
pub fn compute_full(
    lsdb: &Lsdb,
    root: Ipv4Addr,
    max_paths: usize,
    fallback: &dyn Fn(u32, Ipv4Addr) -> Option<Ipv6Addr>,
    policy: Option<&PrefixPolicy>,
    af: AddressFamily,
) -> SpfResult {
    let area = lsdb.area();
    let g = Graph::build(area, af);
    let Some(&root_ix) = g.rindex.get(&u32::from(root)) else {
        return SpfResult::default();
    };
    let root_ix = root_ix as usize;
    let n = g.len();

    // Bound the number of first hops to size the bit sets.
    let first_hops_max: usize = g
        .edges(root_ix)
        .iter()
        .map(|e| match e.kind {
            EdgeKind::Transit => g.edges(e.to as usize).len() + 1,
            _ => 1,
        })
        .sum();
    let words = first_hops_max.div_ceil(64).max(1);
    let mut first_hops: Vec<NextHop> = Vec::new();
    let mut first_hop_ix: HashMap<NextHop, usize> = HashMap::new();
    let mut hop_bit = |nh: NextHop| -> usize {
        *first_hop_ix.entry(nh).or_insert_with(|| {
            first_hops.push(nh);
            first_hops.len() - 1
        })
    };
    let addr_of = |ifindex: u32, rid: Ipv4Addr| match af {
        AddressFamily::Ipv6 => link_local_of(lsdb, ifindex, rid).or_else(|| fallback(ifindex, rid)),
        AddressFamily::Ipv4 { .. } => fallback(ifindex, rid),
    };

    let mut dist = vec![u32::MAX; n];
    let mut done = vec![false; n];
    let mut nh = vec![0u64; n * words];
    let mut direct_if = vec![0u32; n];
    let mut heap = BinaryHeap::with_capacity(n);
    dist[root_ix] = 0;
    heap.push(Reverse((0u32, root_ix as u32)));

    while let Some(Reverse((d, u))) = heap.pop() {
        let u = u as usize;
        if done[u] {
            continue;
        }
        done[u] = true;
        if u != root_ix && u < g.rids.len() && !g.transit[u] {
            continue;
        }
        for e in g.edges(u) {
            let v = e.to as usize;
            if v == root_ix || done[v] {
                continue;
            }
            let nd = d.saturating_add(e.cost);
            if nd > dist[v] {
                continue;
            }
            let src = match e.kind {
                EdgeKind::PointToPoint => {
                    // Two-way check: v links back to u.
                    if !g
                        .edges(v)
                        .iter()
                        .any(|b| b.kind == EdgeKind::PointToPoint && b.to as usize == u)
                    {
                        continue;
                    }
                    if u == root_ix {
                        let Some(addr) = addr_of(e.ifid, g.rids[v]) else {
                            continue;
                        };
                        NhSrc::Bit(hop_bit(NextHop {
                            ifindex: e.ifid,
                            addr,
                        }))
                    } else {
                        NhSrc::Parent(u)
                    }
                }
                EdgeKind::Transit => {
                    if u == root_ix {
                        direct_if[v] = e.ifid;
                        NhSrc::Bit(hop_bit(NextHop {
                            ifindex: e.ifid,
                            addr: Ipv6Addr::UNSPECIFIED,
                        }))
                    } else {
                        NhSrc::Parent(u)
                    }
                }
                EdgeKind::Attached => {
                    if direct_if[u] != 0 {
                        let Some(addr) = addr_of(direct_if[u], g.rids[v]) else {
                            continue;
                        };
                        NhSrc::Bit(hop_bit(NextHop {
                            ifindex: direct_if[u],
                            addr,
                        }))
                    } else {
                        NhSrc::Parent(u)
                    }
                }
            };
            if nd < dist[v] {
                dist[v] = nd;
                nh[v * words..(v + 1) * words].fill(0);
                heap.push(Reverse((nd, v as u32)));
            }
            match src {
                NhSrc::Bit(b) => nh[v * words + b / 64] |= 1u64 << (b % 64),
                NhSrc::Parent(p) => {
                    for w in 0..words {
                        nh[v * words + w] |= nh[p * words + w];
                    }
                }
            }
        }
    }

    // Prefixes (RFC 5340 §4.8.3).
    let mut own: BTreeSet<Ipv6Net> = BTreeSet::new();
    let mut cands: Vec<(Ipv6Net, u32, usize, Ipv4Addr)> = Vec::new();
    let mut misfits: BTreeSet<(Ipv6Net, Ipv4Addr)> = BTreeSet::new();
    for e in type_range(area, LsaType::INTRA_AREA_PREFIX) {
        if e.lsa.header.age >= MAX_AGE {
            continue;
        }
        let LsaBody::IntraAreaPrefix(iap) = &e.lsa.body else {
            continue;
        };
        let adv = e.lsa.header.adv_router;
        if iap.ref_adv_router != adv {
            continue;
        }
        let v = match iap.ref_ls_type {
            LsaType::ROUTER => g.rindex.get(&u32::from(adv)).copied(),
            LsaType::NETWORK => g.nindex.get(&(u32::from(adv), iap.ref_ls_id)).copied(),
            _ => None,
        };
        let Some(v) = v else { continue };
        let v = v as usize;
        if v == root_ix {
            own.extend(iap.prefixes.iter().map(|p| p.prefix));
            continue;
        }
        if dist[v] == u32::MAX || nh[v * words..(v + 1) * words].iter().all(|w| *w == 0) {
            continue;
        }
        for p in &iap.prefixes {
            if p.prefix.prefix_len() > af.max_prefix_len() {
                misfits.insert((p.prefix, adv));
                continue;
            }
            if p.options.contains(PrefixOptions::NU)
                || (af == AddressFamily::Ipv6 && is_link_local(&p.prefix))
            {
                continue;
            }
            cands.push((
                p.prefix,
                dist[v].saturating_add(u32::from(p.metric)),
                v,
                adv,
            ));
        }
    }
    let refused = match policy {
        Some(policy) => {
            let claims: BTreeSet<(Ipv6Net, Ipv4Addr)> = cands
                .iter()
                .map(|c| (c.0, c.3))
                .chain(own.iter().map(|p| (*p, root)))
                .collect();
            let refused = policy.judge(root, &claims);
            let out: BTreeSet<(Ipv6Net, Ipv4Addr)> =
                refused.iter().map(|r| (r.prefix, r.advertiser)).collect();
            cands.retain(|c| !out.contains(&(c.0, c.3)));
            refused
        }
        None => Vec::new(),
    };
    cands.sort_unstable();
    let mut routes = Vec::with_capacity(cands.len());
    let mut scratch = vec![0u64; words];
    let mut i = 0;
    while i < cands.len() {
        let (prefix, cost, _, _) = cands[i];
        let mut j = i;
        scratch.fill(0);
        while j < cands.len() && cands[j].0 == prefix {
            if cands[j].1 == cost {
                let v = cands[j].2;
                for w in 0..words {
                    scratch[w] |= nh[v * words + w];
                }
            }
            j += 1;
        }
        i = j;
        if own.contains(&prefix) {
            continue;
        }
        let mut nexthops: BTreeSet<NextHop> = BTreeSet::new();
        for (w, word) in scratch.iter().enumerate() {
            let mut bits = *word;
            while bits != 0 {
                let b = bits.trailing_zeros() as usize;
                bits &= bits - 1;
                nexthops.insert(first_hops[w * 64 + b]);
            }
        }
        while nexthops.len() > max_paths.max(1) {
            nexthops.pop_last();
        }
        routes.push((prefix, Route { cost, nexthops }));
    }
    let reachable = g
        .rids
        .iter()
        .enumerate()
        .filter(|(v, _)| dist[*v] != u32::MAX)
        .map(|(_, r)| *r)
        .collect();
    SpfResult {
        rib: Rib {
            routes: routes.into_iter().collect::<BTreeMap<_, _>>(),
        },
        reachable,
        refused,
        misfits,
    }
}

/// SPF scheduling and running, as part of the instance.
#[derive(Debug, Clone, Default)]
pub(crate) struct SpfScheduler {
    pub(crate) state: BackoffState,
    pub(crate) runs: u64,
    pub(crate) last_run: Option<Time>,
}

impl Instance {
    /// Note that the database changed (RFC 8405 §5, event IGP_EVENT).
    pub(crate) fn spf_event(&mut self) {
        let now = self.now;
        let cfg = self.config.spf.clone();
        let delay_armed = self.timers.contains_key(&TimerKind::SpfDelay);
        match self.spf.state {
            BackoffState::Quiet => {
                self.spf.state = BackoffState::ShortWait;
                self.arm(TimerKind::SpfLearn, now.plus_ms(cfg.time_to_learn_ms));
                self.arm(TimerKind::SpfHoldDown, now.plus_ms(cfg.holddown_ms));
                if !delay_armed {
                    self.arm(TimerKind::SpfDelay, now.plus_ms(cfg.initial_delay_ms));
                }
            }
            BackoffState::ShortWait | BackoffState::LongWait => {
                self.arm(TimerKind::SpfHoldDown, now.plus_ms(cfg.holddown_ms));
                if !delay_armed {
                    let d = if self.spf.state == BackoffState::ShortWait {
                        cfg.short_delay_ms
                    } else {
                        cfg.long_delay_ms
                    };
                    self.arm(TimerKind::SpfDelay, now.plus_ms(d));
                }
            }
        }
    }

    /// Handle the back-off timers.
    pub(crate) fn spf_timer(&mut self, kind: TimerKind) {
        match kind {
            TimerKind::SpfDelay => self.run_spf(),
            TimerKind::SpfLearn if self.spf.state == BackoffState::ShortWait => {
                self.spf.state = BackoffState::LongWait;
            }
            TimerKind::SpfHoldDown => {
                self.spf.state = BackoffState::Quiet;
                self.cancel(TimerKind::SpfLearn);
            }
            _ => {}
        }
    }

    /// Run SPF now and report what changed.
    pub(crate) fn run_spf(&mut self) {
        let nbr_addrs: HashMap<(u32, Ipv4Addr), Ipv6Addr> = self
            .interfaces
            .values()
            .flat_map(|i| {
                i.neighbors
                    .values()
                    .map(move |n| ((i.ifindex, n.router_id), n.addr))
            })
            .collect();
        let fallback = |ifindex: u32, rid: Ipv4Addr| nbr_addrs.get(&(ifindex, rid)).copied();
        let SpfResult {
            rib,
            reachable,
            refused,
            misfits,
        } = compute_full(
            &self.lsdb,
            self.config.router_id,
            self.config.max_paths,
            &fallback,
            self.config.prefix_policy.as_ref(),
            self.config.af,
        );
        for (prefix, advertiser) in misfits.difference(&self.misfits) {
            tracing::warn!(%prefix, %advertiser, "prefix longer than the family's addresses: not routed");
        }
        self.misfits = misfits;
        self.reachable = reachable;
        if refused != self.refused {
            for r in refused.iter().filter(|r| !self.refused.contains(r)) {
                tracing::warn!(prefix = %r.prefix, advertiser = %r.advertiser, reason = ?r.reason, "prefix refused by the ownership policy");
            }
            self.refused = refused;
        }
        self.spf.runs += 1;
        self.spf.last_run = Some(self.now);
        // Restarting: the routes of our earlier life stay until the restart
        // ends (RFC 3623 §2).
        if self.is_restarting() {
            return;
        }
        let diff = self.rib.diff(&rib);
        if !diff.is_empty() {
            tracing::info!(
                changed = diff.added_or_changed.len(),
                removed = diff.removed.len(),
                routes = rib.routes.len(),
                "spf: routes changed"
            );
            self.rib = rib;
            self.out.push(crate::Output::RibChanged(diff));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::{mesh_lsdb, router_id};

    #[test]
    fn generated_mesh_routes_every_prefix() {
        let lsdb = mesh_lsdb(300, 4, 7);
        let rib = compute(&lsdb, router_id(0), 16, &|_, _| None);
        assert_eq!(rib.routes.len(), 299);
        assert!(
            rib.routes
                .values()
                .all(|r| !r.nexthops.is_empty() && r.cost % 10 == 0)
        );
        // A cap of one path keeps exactly one next hop.
        let rib1 = compute(&lsdb, router_id(0), 1, &|_, _| None);
        assert!(rib1.routes.values().all(|r| r.nexthops.len() == 1));
        assert!(
            rib.routes.values().any(|r| r.nexthops.len() > 1),
            "some ECMP"
        );
    }

    /// Rough timing in the test profile; the real figures come from
    /// `cargo bench -p bench --bench spf`.
    #[test]
    #[ignore = "timing, run by hand with --release"]
    fn time_spf() {
        for n in [1_000, 10_000] {
            let lsdb = mesh_lsdb(n, 4, 1);
            let start = std::time::Instant::now();
            let runs = 20;
            for _ in 0..runs {
                std::hint::black_box(compute(&lsdb, router_id(0), 16, &|_, _| None));
            }
            eprintln!("{n} routers: {:?} per SPF", start.elapsed() / runs);
        }
    }
}
