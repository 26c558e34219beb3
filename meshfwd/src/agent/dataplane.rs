//! The agent's side of the forwarding state: the RIB turned into a route
//! table for the map writer (`crate::fib`), the writer running in its own
//! task, XDP attachment per mesh link, and the fast-reroute flip of alive
//! flags that must not wait for anything.
//!
//! The writer task owns the [`FibWriter`] (it also keeps next-hop MACs
//! fresh from neighbour events). The agent's main loop holds a second
//! handle on the same pinned maps for the one thing that cannot queue
//! behind a table apply: on carrier loss it clears the ALIVE flag of every
//! next hop through the link, one map write each, using the ids the writer
//! published after its last apply. Both run on one thread, so a flip never
//! interleaves with the writer's read-modify-write of the same entry.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::Ipv6Addr,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
};

use anyhow::Result;
use ipnet::Ipv6Net;
use meshfwd_common::fib::NEXT_HOP_MAX_ENTRIES;
use routing::Rib;
use serde::Serialize;
use tokio::sync::watch;

use dataplane::{maps::FibMaps, stats::Stats, xdp::AttachMode};

use crate::fib::{
    ApplyReport, FibWriter, NextHopKey, RouteTable,
    dump::{self, FibRow},
    kroute,
    writer::set_alive_id,
};

/// Build the route table the maps and the kernel should hold.
///
/// Next hops through links that are not in the mesh right now (no
/// carrier) are left out, so nothing is written pointing at a dead link
/// while OSPF has not noticed yet; on-link (`::`) next hops are left out
/// because the mesh has none. `own` are this node's prefixes: another
/// router advertising them (a clash being settled) must not pull our own
/// traffic away.
pub fn desired_table(
    rib: &Rib,
    live: impl Fn(u32) -> bool,
    local: &[Ipv6Addr],
    own: &[Ipv6Net],
) -> RouteTable {
    let mut t = RouteTable::default();
    for (prefix, route) in &rib.routes {
        let p = *prefix;
        if own.contains(&p) || routing::packet::prefix::is_link_local(prefix) {
            continue;
        }
        let hops: BTreeSet<NextHopKey> = route
            .nexthops
            .iter()
            .filter(|nh| !nh.addr.is_unspecified() && live(nh.ifindex))
            .map(|nh| NextHopKey {
                ifindex: nh.ifindex,
                via: nh.addr,
            })
            .collect();
        if !hops.is_empty() {
            t.routes.insert(p, hops);
        }
    }
    t.local.extend(local.iter().copied());
    t
}

/// Links the agent has seen lose their carrier (and not regain it).
type DownLinks = Arc<Mutex<BTreeSet<u32>>>;

/// Next-hop slots read past the highest known id when flipping a link.
const SCAN_SLACK: u32 = 256;

/// Next-hop ids by egress ifindex, as of the writer's last apply.
type NextHopIndex = Arc<Mutex<BTreeMap<u32, Vec<u32>>>>;

/// What the writer task reports back.
#[derive(Debug, Clone, Default, Serialize)]
pub struct WriterStatus {
    pub applies: u64,
    pub map_ops: u64,
    pub kernel_writes: u64,
    pub kernel_errors: u64,
    pub last: Option<ApplyReport>,
    pub last_error: Option<String>,
}

/// The fast path as the agent drives it.
pub enum Dataplane {
    /// XDP on the mesh links, maps written by the writer task.
    Xdp(Box<Xdp>),
    /// No XDP: routes go to the kernel FIB only (or nowhere).
    KernelOnly {
        handle: rtnetlink::Handle,
        installed: kroute::KernelRoutes,
        enabled: bool,
    },
}

/// The XDP half of [`Dataplane`].
pub struct Xdp {
    bpffs: PathBuf,
    mode: AttachMode,
    /// A second handle on the pinned maps, for alive flips and `show`.
    maps: FibMaps,
    index: NextHopIndex,
    /// Links without carrier: their next hops stay dead whatever a table
    /// apply under way when the carrier went writes.
    down: DownLinks,
    tables: watch::Sender<Option<RouteTable>>,
    status: Arc<Mutex<WriterStatus>>,
    task: tokio::task::JoinHandle<()>,
}

impl Dataplane {
    /// Load the eBPF object with its maps pinned under `bpffs` and start
    /// the writer task.
    pub async fn start_xdp(bpffs: &Path, mode: AttachMode, kernel_routes: bool) -> Result<Self> {
        dataplane::bpffs::prepare(bpffs)?;
        // Loading with pin paths creates the maps (or reuses pinned ones);
        // the object is dropped, the pinned maps stay.
        drop(dataplane::object::load(Some(bpffs))?);
        let writer = FibWriter::new(FibMaps::open(bpffs)?)
            .await?
            .with_kernel_routes(kernel_routes);
        let maps = FibMaps::open(bpffs)?;
        let index = NextHopIndex::default();
        let down = DownLinks::default();
        let status = Arc::new(Mutex::new(WriterStatus::default()));
        let (tables, rx) = watch::channel(None);
        let task = tokio::spawn(writer_task(
            writer,
            rx,
            index.clone(),
            down.clone(),
            status.clone(),
        ));
        Ok(Dataplane::Xdp(Box::new(Xdp {
            bpffs: bpffs.to_path_buf(),
            mode,
            maps,
            index,
            down,
            tables,
            status,
            task,
        })))
    }

    /// Run without XDP; mirror routes into the kernel when `kernel_routes`.
    pub fn start_kernel_only(handle: rtnetlink::Handle, kernel_routes: bool) -> Self {
        Dataplane::KernelOnly {
            handle,
            installed: Default::default(),
            enabled: kernel_routes,
        }
    }

    /// Attach XDP to a link that joined the mesh (kept across restarts: an
    /// attachment pinned by an earlier run is left as it is).
    pub fn attach(&mut self, ifname: &str) -> Result<()> {
        let Dataplane::Xdp(x) = self else {
            return Ok(());
        };
        if dataplane::xdp::link_pin(&x.bpffs, ifname).exists() {
            return Ok(());
        }
        dataplane::xdp::attach(&x.bpffs, ifname, x.mode)?;
        Ok(())
    }

    /// Forget the attachment of a link that was deleted (the kernel
    /// detached it with the device).
    pub fn forget(&mut self, ifname: &str) {
        if let Dataplane::Xdp(x) = self {
            dataplane::xdp::forget(&x.bpffs, ifname);
        }
    }

    /// Set or clear ALIVE on every next hop through `ifindex`, now.
    /// Return how many next hops were flipped.
    ///
    /// The ids come from the writer's last finished apply; one still under
    /// way (its kernel half can take a while) may already have written
    /// next hops the index does not list yet. Ids are handed out from 1
    /// upwards, so the entries just past the highest known id are read
    /// too, and every next hop through the link among them is flipped.
    pub fn set_link_alive(&mut self, ifindex: u32, alive: bool) -> usize {
        let Dataplane::Xdp(x) = self else { return 0 };
        {
            let mut down = x.down.lock().expect("down lock");
            if alive {
                down.remove(&ifindex);
            } else {
                down.insert(ifindex);
            }
        }
        let (mut ids, highest) = {
            let index = x.index.lock().expect("index lock");
            let ids: BTreeSet<u32> = index.get(&ifindex).into_iter().flatten().copied().collect();
            (ids, index.values().flatten().copied().max().unwrap_or(0))
        };
        let limit = (highest + SCAN_SLACK).min(NEXT_HOP_MAX_ENTRIES - 1);
        for id in 1..=limit {
            if !ids.contains(&id)
                && x.maps
                    .next_hops
                    .get(&id, 0)
                    .is_ok_and(|nh| nh.ifindex == ifindex)
            {
                ids.insert(id);
            }
        }
        let mut n = 0;
        for id in ids {
            match set_alive_id(&mut x.maps, id, alive) {
                Ok(()) => n += 1,
                Err(e) => {
                    tracing::warn!(id, ifindex, error = %format!("{e:#}"), "alive flag write failed")
                }
            }
        }
        n
    }

    /// Hand a new table to the writer (the latest one wins if it is busy).
    pub async fn apply(&mut self, table: RouteTable) -> Result<()> {
        match self {
            Dataplane::Xdp(x) => {
                x.tables.send_replace(Some(table));
                Ok(())
            }
            Dataplane::KernelOnly {
                handle,
                installed,
                enabled,
            } => {
                if *enabled {
                    let desired: kroute::KernelRoutes = table.routes.into_iter().collect();
                    kroute::sync(handle, installed, &desired).await?;
                }
                Ok(())
            }
        }
    }

    /// Return the writer's counters.
    pub fn writer_status(&self) -> Option<WriterStatus> {
        match self {
            Dataplane::Xdp(x) => Some(x.status.lock().expect("status lock").clone()),
            Dataplane::KernelOnly { .. } => None,
        }
    }

    /// Return the XDP counters.
    pub fn xdp_stats(&self) -> Option<Stats> {
        match self {
            Dataplane::Xdp(x) => Stats::read(&x.maps.stats).ok(),
            Dataplane::KernelOnly { .. } => None,
        }
    }

    /// Return the FIB as the maps hold it.
    pub fn fib(&self, ifname: impl Fn(u32) -> Option<String>) -> Result<Vec<FibRow>> {
        let Dataplane::Xdp(x) = self else {
            anyhow::bail!("the agent runs without XDP (--no-xdp): there is no fast-path FIB");
        };
        dump::rows(&x.maps, ifname)
    }

    /// Stop the writer task (the maps and attachments stay pinned, so the
    /// fast path keeps forwarding while the agent is away).
    pub fn stop(self) {
        if let Dataplane::Xdp(x) = self {
            x.task.abort();
        }
    }
}

/// Apply tables as they come, keep MACs fresh in between.
async fn writer_task(
    mut writer: FibWriter,
    mut tables: watch::Receiver<Option<RouteTable>>,
    index: NextHopIndex,
    down: DownLinks,
    status: Arc<Mutex<WriterStatus>>,
) {
    let mut events_open = true;
    loop {
        // Serve neighbour/link events until a new table arrives.
        let changed = if events_open {
            let mut outcome = None;
            if let Err(e) = writer
                .run_until(async { outcome = Some(tables.changed().await.is_ok()) })
                .await
            {
                tracing::warn!(error = %format!("{e:#}"), "neighbour event loop failed");
            }
            match outcome {
                Some(ok) => ok,
                None => {
                    // The event stream ended: carry on with tables only.
                    events_open = false;
                    continue;
                }
            }
        } else {
            tables.changed().await.is_ok()
        };
        if !changed {
            return;
        }
        let Some(table) = tables.borrow_and_update().clone() else {
            continue;
        };
        let result = writer.apply(&table).await;
        // A link may have lost its carrier while this table was written:
        // whatever it added through that link is dead on arrival.
        let down_now = down.lock().expect("down lock").clone();
        let dead: Vec<NextHopKey> = writer
            .planner()
            .next_hops()
            .keys()
            .filter(|k| down_now.contains(&k.ifindex))
            .copied()
            .collect();
        for key in dead {
            let _ = writer.set_alive(&key, false);
        }
        // Publish the ids of the next hops per link for the alive flips.
        let mut by_link: BTreeMap<u32, Vec<u32>> = BTreeMap::new();
        for (key, shared) in writer.planner().next_hops() {
            by_link.entry(key.ifindex).or_default().push(shared.id);
        }
        *index.lock().expect("index lock") = by_link;
        let mut st = status.lock().expect("status lock");
        st.applies += 1;
        match result {
            Ok(report) => {
                st.map_ops += report.map_ops as u64;
                st.kernel_writes += report.kernel_writes as u64;
                st.kernel_errors += report.kernel_errors.len() as u64;
                if !report.kernel_errors.is_empty() {
                    tracing::warn!(errors = ?report.kernel_errors, "kernel route changes failed");
                }
                tracing::debug!(
                    map_ops = report.map_ops,
                    kernel = report.kernel_writes,
                    unresolved = report.unresolved,
                    "table applied"
                );
                st.last = Some(report);
            }
            Err(e) => {
                tracing::error!(error = %format!("{e:#}"), "applying the route table failed");
                st.last_error = Some(format!("{e:#}"));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use routing::{NextHop, Route};

    use super::*;

    fn ll(n: u16) -> Ipv6Addr {
        Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, n)
    }

    fn rib(routes: &[(&str, &[(u32, Ipv6Addr)])]) -> Rib {
        let mut r = Rib::default();
        for (p, hops) in routes {
            r.routes.insert(
                p.parse().unwrap(),
                Route {
                    cost: 10,
                    nexthops: hops
                        .iter()
                        .map(|(ifindex, addr)| NextHop {
                            ifindex: *ifindex,
                            addr: *addr,
                        })
                        .collect(),
                },
            );
        }
        r
    }

    #[test]
    fn table_skips_dead_links_on_link_hops_and_own_prefixes() {
        let r = rib(&[
            ("fd00:1::/64", &[(2, ll(1)), (3, ll(2))]),
            ("fd00:2::1/128", &[(3, ll(2))]),
            ("fd00:3::/64", &[(4, Ipv6Addr::UNSPECIFIED)]),
            ("fd00:9::/64", &[(2, ll(1))]),
        ]);
        let me: Ipv6Addr = "fd00:9::1".parse().unwrap();
        let own = [
            Ipv6Net::new_assert("fd00:9::".parse().unwrap(), 64).trunc(),
            Ipv6Net::from(me),
        ];
        let t = desired_table(&r, |i| i != 3, &[me], &own);
        let keys: Vec<String> = t.routes.keys().map(|p| p.to_string()).collect();
        assert_eq!(keys, vec!["fd00:1::/64"]);
        assert_eq!(
            t.routes.values().next().unwrap().len(),
            1,
            "the hop via the dead link is left out"
        );
        assert!(t.local.contains(&me));
    }
}
