//! The runtime's side of the forwarding state: the map writer
//! (`crate::fib`) running in its own task and fed the core's tables, XDP
//! attachment per mesh link, and the fast-reroute flip of alive flags that
//! must not wait for anything.
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
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
};

use dataplane::{
    maps::{FibMaps, Netfilter},
    stats::Stats,
    xdp::AttachMode,
};
use meshfwd_common::fib::NEXT_HOP_MAX_ENTRIES;
use tokio::sync::watch;

use crate::{
    api::WriterStatus,
    fib::{
        FibError, FibWriter, NextHopKey, RouteTable,
        dump::{self, FibRow},
        kroute,
        writer::set_alive_id,
    },
};

/// Why the fast path could not be set up or asked.
#[derive(Debug, thiserror::Error)]
pub enum DataplaneError {
    #[error(transparent)]
    Dataplane(#[from] dataplane::Error),
    #[error(transparent)]
    Writer(#[from] FibError),
    #[error("the agent runs without XDP (--no-xdp): there is no fast-path FIB")]
    NoXdp,
}

type Result<T, E = DataplaneError> = std::result::Result<T, E>;

/// Links the agent has seen lose their carrier (and not regain it).
type DownLinks = Arc<Mutex<BTreeSet<u32>>>;

/// Next-hop slots read past the highest known id when flipping a link.
const SCAN_SLACK: u32 = 256;

/// Next-hop ids by egress ifindex, as of the writer's last apply.
type NextHopIndex = Arc<Mutex<BTreeMap<u32, Vec<u32>>>>;

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
    tables: watch::Sender<Desired>,
    /// FIB entries an earlier run left (adopted until pruned).
    adopted: usize,
    status: Arc<Mutex<WriterStatus>>,
    task: tokio::task::JoinHandle<()>,
}

impl Dataplane {
    /// Load the eBPF object with its maps pinned under `bpffs` and start
    /// the writer task.
    pub async fn start_xdp(
        bpffs: &Path,
        mode: AttachMode,
        kernel_routes: bool,
        netfilter: Netfilter,
    ) -> Result<Self> {
        dataplane::bpffs::prepare(bpffs)?;
        // Loading with pin paths creates the maps (or reuses pinned ones);
        // the object is dropped, the pinned maps stay.
        drop(dataplane::object::load(Some(bpffs))?);
        // Before any program is attached: the setting is the node's, and
        // pods' TC programs read it as well.
        FibMaps::open(bpffs)?.set_netfilter(netfilter)?;
        // An upgrade: pods' and mesh links' TC programs of the earlier
        // build are swapped for this build's in place. A failure leaves
        // the earlier programs forwarding, which is worth a warning only.
        match dataplane::tc::upgrade(bpffs) {
            Ok(0) => {}
            Ok(n) => tracing::info!(
                links = n,
                "TC programs of an earlier build replaced in place"
            ),
            Err(e) => tracing::warn!(error = %e, "TC programs of an earlier build left in place"),
        }
        let writer = FibWriter::new(FibMaps::open(bpffs)?)
            .await?
            .with_kernel_routes(kernel_routes);
        let adopted = writer.adopted_routes();
        let maps = FibMaps::open(bpffs)?;
        let index = NextHopIndex::default();
        let down = DownLinks::default();
        let status = Arc::new(Mutex::new(WriterStatus::default()));
        let (tables, rx) = watch::channel(Desired::default());
        let task = tokio::spawn(writer_task(
            writer,
            rx,
            index.clone(),
            down.clone(),
            status.clone(),
            RedirectFails::new(bpffs),
        ));
        Ok(Dataplane::Xdp(Box::new(Xdp {
            bpffs: bpffs.to_path_buf(),
            mode,
            maps,
            index,
            down,
            tables,
            adopted,
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
        match dataplane::xdp::attach_or_upgrade(&x.bpffs, ifname, x.mode)? {
            dataplane::xdp::Attached::Current => return Ok(()),
            dataplane::xdp::Attached::Upgraded => {
                tracing::info!(iface = %ifname, "XDP program of an earlier build replaced in place")
            }
            dataplane::xdp::Attached::New => {}
        }
        // Redirect failures are counted by tracepoints, once per node; the
        // fast path works without them, so a failure is only a warning.
        if let Err(e) = dataplane::trace::ensure_attached(&x.bpffs) {
            tracing::warn!(error = %e, "redirect failures will not be counted");
        }
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
                    tracing::warn!(id, ifindex, error = %e, "alive flag write failed")
                }
            }
        }
        n
    }

    /// Hand a new table to the writer (the latest one wins if it is busy).
    pub async fn apply(&mut self, table: RouteTable) -> Result<()> {
        match self {
            Dataplane::Xdp(x) => {
                x.tables.send_modify(|d| d.table = Some(table));
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

    /// Remove what an earlier run left and the tables no longer want
    /// (OSPF has resynchronised); until then it keeps forwarding.
    pub async fn prune(&mut self) -> Result<()> {
        match self {
            Dataplane::Xdp(x) => {
                x.tables.send_modify(|d| d.settled = true);
                Ok(())
            }
            Dataplane::KernelOnly {
                handle,
                installed,
                enabled,
            } => {
                if *enabled {
                    let n = kroute::prune(handle, installed).await?;
                    tracing::info!(
                        removed = n,
                        "an earlier run's kernel routes that are no longer wanted removed"
                    );
                }
                Ok(())
            }
        }
    }

    /// Return whether an earlier run of the agent left routes behind (in
    /// the maps, or in the kernel without XDP): this start is a restart.
    pub async fn earlier_run(&self) -> bool {
        match self {
            Dataplane::Xdp(x) => x.adopted > 0,
            Dataplane::KernelOnly { handle, .. } => {
                kroute::dump_ours(handle).await.is_ok_and(|r| !r.is_empty())
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
            return Err(DataplaneError::NoXdp);
        };
        Ok(dump::rows(&x.maps, ifname)?)
    }

    /// Stop the writer task (the maps and attachments stay pinned, so the
    /// fast path keeps forwarding while the agent is away).
    pub fn stop(self) {
        if let Dataplane::Xdp(x) = self {
            x.task.abort();
        }
    }
}

/// The redirect failures seen so far, to warn when they rise.
struct RedirectFails {
    bpffs: PathBuf,
    seen: BTreeMap<u32, u64>,
}

impl RedirectFails {
    fn new(bpffs: &Path) -> Self {
        let seen = dataplane::trace::redirect_fails(bpffs).unwrap_or_default();
        RedirectFails {
            bpffs: bpffs.to_path_buf(),
            seen,
        }
    }

    /// Warn for every egress device that refused frames since last time.
    fn check(&mut self) {
        let Ok(now) = dataplane::trace::redirect_fails(&self.bpffs) else {
            return;
        };
        for (ifindex, total) in &now {
            let before = self.seen.get(ifindex).copied().unwrap_or(0);
            if *total > before {
                tracing::warn!(
                    ifindex,
                    frames = total - before,
                    total,
                    "egress device did not take redirected frames (driver refused them or its queue was full)"
                );
            }
        }
        self.seen = now;
    }
}

/// What the writer task is to make true.
#[derive(Debug, Clone, Default)]
struct Desired {
    /// The latest table (`None` before the first).
    table: Option<RouteTable>,
    /// OSPF has resynchronised: what an earlier run left may go.
    settled: bool,
}

/// How often the writer asks whether egress devices take redirects.
const EGRESS_CHECK: std::time::Duration = std::time::Duration::from_secs(1);

/// Apply tables as they come, keep MACs fresh in between.
async fn writer_task(
    mut writer: FibWriter,
    mut tables: watch::Receiver<Desired>,
    index: NextHopIndex,
    down: DownLinks,
    status: Arc<Mutex<WriterStatus>>,
    mut fails: RedirectFails,
) {
    let mut events_open = true;
    loop {
        // Serve neighbour/link events until a new table arrives.
        // A table, or a second without one: then ask again which egress
        // devices take redirects (a veth's answer follows its peer).
        let next_table = async { tokio::time::timeout(EGRESS_CHECK, tables.changed()).await };
        let outcome = if events_open {
            let mut outcome = None;
            if let Err(e) = writer
                .run_until(async { outcome = Some(next_table.await) })
                .await
            {
                tracing::warn!(error = %e, "neighbour event loop failed");
            }
            match outcome {
                Some(o) => o,
                None => {
                    // The event stream ended: carry on with tables only.
                    events_open = false;
                    continue;
                }
            }
        } else {
            next_table.await
        };
        let changed = match outcome {
            Ok(changed) => changed.is_ok(),
            Err(_) => {
                fails.check();
                for (ifindex, ok) in writer.refresh_egress() {
                    if ok {
                        tracing::info!(
                            ifindex,
                            "egress device takes XDP redirects again: back on the fast path"
                        );
                    } else {
                        tracing::warn!(
                            ifindex,
                            "egress device no longer takes XDP redirects: the kernel forwards traffic to it"
                        );
                    }
                }
                continue;
            }
        };
        if !changed {
            return;
        }
        let desired = tables.borrow_and_update().clone();
        let Some(table) = desired.table else {
            continue;
        };
        let mut result = writer.apply(&table).await;
        if desired.settled
            && result.is_ok()
            && let Err(e) = writer.prune().await
        {
            result = Err(e);
        }
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
        // An earlier run's next hops forward until pruned: flip them too.
        for (id, ifindex) in writer.adopted_next_hops() {
            by_link.entry(ifindex).or_default().push(id);
        }
        *index.lock().expect("index lock") = by_link;
        let mut st = status.lock().expect("status lock");
        st.applies += 1;
        st.fib_entries = writer.planner().routes().len() as u64;
        st.groups = writer.planner().groups().len() as u64;
        st.next_hops = writer.planner().next_hops().len() as u64;
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
                tracing::error!(error = %e, "applying the route table failed");
                st.errors += 1;
                st.last_error = Some(e.to_string());
            }
        }
    }
}
