//! The agent's main loop: one task that owns the node's state and reacts,
//! in this order of urgency, to link events (carrier loss flips alive flags
//! before anything else), RIB changes from OSPF, operator requests and a
//! slow tick that re-checks the router id and the pod prefix against the
//! LSDB.
//!
//! ```text
//!   rtnetlink link/addr events ──> LinkTracker ──> MeshEvent
//!        Down: alive flags off (maps) ─> OSPF remove ─> table without the link
//!        Up:   attach XDP ─> alive on ─> OSPF add
//!   routing driver ──RibDiff──> RIB ──> desired table ──> writer task ──> maps + kernel FIB
//!   tick: snapshot ──> duplicate router id? ──> restart OSPF with a new id
//!                  └─> pod prefix clash?    ──> move: device address, stubs, state file
//!   control socket ──Pending──> answers from the state above
//! ```

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    future::Future,
    hash::{Hash as _, Hasher as _},
    net::{Ipv4Addr, Ipv6Addr},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};
use futures::StreamExt as _;
use ipnet::Ipv6Net;
use routing::{
    DropReason, InstanceConfig, InterfaceConfig, Rib, RibDiff, SpfBackoffConfig,
    driver::{self, InterfaceSpec, Snapshot},
};
use serde::Serialize;
use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot};

use super::{
    config::Config,
    control::{self, Pending, Query},
    dataplane::{Dataplane, desired_table},
    identity::{DupDetector, DupEvidence, Identity, random_u64},
    kernel,
    links::{self, DownReason, LinkFilter, LinkTracker, MeshEvent, MeshLink, NlEvent},
    prefixes,
};
use dataplane::{
    node_state::{NodeState, PodAttach},
    tc as pods,
};

/// How often the agent samples OSPF for the router id and pod prefix checks.
const TICK: Duration = Duration::from_secs(1);
/// Where the sysctls live.
const PROC_SYS: &str = "/proc/sys";
/// How long the LSDB must hold still before the pod prefix is re-checked.
const QUIET: Duration = Duration::from_millis(1500);
/// How long a stopping OSPF driver may take to send its last packets.
const OSPF_STOP_WAIT: Duration = Duration::from_secs(2);

/// Counters of what the agent did, for `meshfwd show stats`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct AgentCounters {
    pub mesh_link_ups: u64,
    pub mesh_link_downs: u64,
    pub carrier_losses: u64,
    pub alive_flips: u64,
    pub rib_changes: u64,
    pub tables_sent: u64,
    pub pod_prefix_moves: u64,
    pub router_id_changes: u64,
    pub duplicate_router_ids: u64,
    pub duplicate_neighbor_ids: u64,
    pub control_requests: u64,
    /// Pod veths whose fast path this agent set out to attach.
    pub pod_attaches: u64,
}

/// The node's prefixes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
struct NodePrefixes {
    pod_prefix: Ipv6Net,
    /// Which candidate of the router id it is (0 = first choice).
    attempt: u32,
    node_address: Ipv6Addr,
}

impl NodePrefixes {
    fn new(pod_prefix: Ipv6Net, attempt: u32) -> Self {
        NodePrefixes {
            pod_prefix,
            attempt,
            node_address: prefixes::node_address(pod_prefix),
        }
    }

    fn stubs(&self) -> Vec<Ipv6Net> {
        self.own().to_vec()
    }

    fn own(&self) -> [Ipv6Net; 2] {
        [self.pod_prefix, Ipv6Net::from(self.node_address)]
    }
}

/// A running OSPF driver.
struct Ospf {
    handle: driver::Handle,
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<std::io::Result<routing::Instance>>,
    ribs: mpsc::UnboundedReceiver<RibDiff>,
}

/// The agent's state.
pub struct Agent {
    config: Config,
    started: Instant,
    identity: Identity,
    netlink: rtnetlink::Handle,
    notifications: links::Notifications,
    tracker: LinkTracker,
    local_ifindex: u32,
    /// The device carrying the node's /128 (`lo` without dummy support).
    local_device: String,
    prefixes: NodePrefixes,
    ospf: Ospf,
    /// The control socket, bound at start, served by `run`.
    listener: Option<tokio::net::UnixListener>,
    rib: Rib,
    dataplane: Dataplane,
    dup: DupDetector,
    counters: AgentCounters,
    /// The router ids and RIB prefixes the last prefix check looked at.
    last_prefix_check: Option<u64>,
    last_state: Option<NodeState>,
    dup_warned: bool,
    dup_neighbours_seen: BTreeSet<Ipv4Addr>,
    /// What the LSDB looked like at the last tick, and since when.
    lsdb_shape: (u64, Instant),
    /// Pods' host veths seen, by ifindex, when this agent attaches their
    /// fast path (with XDP on).
    pod_veths: HashMap<u32, String>,
}

impl Agent {
    /// Set the node up: links, identity, addresses, eBPF, OSPF.
    pub async fn start(config: Config) -> Result<Agent> {
        // First, so a second agent on the node stops before touching anything.
        let listener = control::bind(&config.socket)?;
        let socket = config.socket.clone();
        let agent = Self::start_bound(config, listener).await;
        if agent.is_err() {
            let _ = std::fs::remove_file(&socket);
        }
        agent
    }

    async fn start_bound(config: Config, listener: tokio::net::UnixListener) -> Result<Agent> {
        let started = Instant::now();
        let listener = Some(listener);
        match kernel::enable_forwarding(std::path::Path::new(PROC_SYS)) {
            Ok(changed) if !changed.is_empty() => tracing::info!(?changed, "sysctls set"),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %format!("{e:#}"), "could not enable IPv6 forwarding"),
        }

        let (netlink, notifications) = links::open().context("opening rtnetlink")?;
        let mut tracker = LinkTracker::new(LinkFilter {
            include: config.interfaces.include.clone(),
            exclude: config.interfaces.exclude.clone(),
        });
        for ev in links::dump(&netlink)
            .await
            .context("listing links and addresses")?
        {
            tracker.apply(ev);
        }
        if config.interfaces.skip_dad {
            let proc_sys = std::path::Path::new(PROC_SYS);
            let mut names = vec!["default".to_string()];
            names.extend(
                tracker
                    .status()
                    .iter()
                    .filter(|s| tracker.is_candidate(s.link.ifindex))
                    .map(|s| s.link.name.clone()),
            );
            for name in names {
                if let Err(e) = kernel::skip_dad(proc_sys, &name) {
                    tracing::warn!(iface = %name, error = %format!("{e:#}"), "could not turn DAD off");
                }
            }
        }

        let identity = match config.router_id {
            Some(id) => Identity::configured(id),
            None => Identity::discover(&config.machine_id_file, &tracker.macs()),
        };
        tracing::info!(router_id = %identity.router_id, source = ?identity.source, "router id");

        let (local_ifindex, local_device) =
            kernel::ensure_local_device(&netlink, &config.local_device).await?;
        let prefixes = match config.pod_prefix {
            Some(p) => NodePrefixes::new(p, 0),
            None => NodePrefixes::new(
                prefixes::pod_prefix_candidate(config.cluster_prefix, identity.router_id, 0),
                0,
            ),
        };

        let dataplane = if config.xdp {
            Dataplane::start_xdp(&config.bpffs, config.xdp_mode, config.kernel_routes)
                .await
                .context("starting the XDP fast path (run with --no-xdp to go without)")?
        } else {
            // Without the writer (which reconciles on its first apply),
            // routes of an earlier run are removed here.
            match kernel::remove_stale_routes(&netlink).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(removed = n, "stale routes of an earlier run removed"),
                Err(e) => tracing::warn!(error = %format!("{e:#}"), "removing stale routes failed"),
            }
            Dataplane::start_kernel_only(netlink.clone(), config.kernel_routes)
        };

        let ospf = start_ospf(&config, identity.router_id, &prefixes);
        let mut agent = Agent {
            config,
            started,
            identity,
            netlink,
            notifications,
            tracker,
            local_ifindex,
            local_device,
            prefixes,
            ospf,
            listener,
            rib: Rib::default(),
            dataplane,
            dup: DupDetector::new(),
            counters: AgentCounters::default(),
            last_prefix_check: None,
            last_state: None,
            dup_warned: false,
            dup_neighbours_seen: BTreeSet::new(),
            lsdb_shape: (0, started),
            pod_veths: HashMap::new(),
        };
        // Pods wired while the agent was away.
        let pods: Vec<(u32, String)> = agent
            .tracker
            .status()
            .iter()
            .filter(|s| is_pod_veth(&s.link))
            .map(|s| (s.link.ifindex, s.link.name.clone()))
            .collect();
        for (ifindex, name) in pods {
            agent.pod_veth_seen(ifindex, name);
        }
        agent.publish_prefixes().await?;
        let links: Vec<MeshLink> = agent.tracker.mesh_links().cloned().collect();
        for link in links {
            agent.link_up(link).await;
        }
        agent.send_table().await;
        Ok(agent)
    }

    /// Serve until `shutdown` completes.
    pub async fn run(mut self, shutdown: impl Future<Output = ()>) -> Result<()> {
        let listener = self.listener.take().context("the agent runs once")?;
        let (control_tx, mut control_rx) = mpsc::channel::<Pending>(16);
        let server = tokio::spawn(control::serve(listener, control_tx));
        tracing::info!(
            router_id = %self.identity.router_id,
            pod_prefix = %self.prefixes.pod_prefix,
            node_address = %self.prefixes.node_address,
            socket = %self.config.socket.display(),
            "agent running"
        );
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tokio::pin!(shutdown);
        let result = loop {
            tokio::select! {
                biased;
                () = &mut shutdown => break Ok(()),
                msg = self.notifications.next() => match msg {
                    Some((msg, _)) => {
                        self.netlink_event(msg).await;
                        // Drain what else is queued before recomputing.
                        while let Ok(Some((msg, _))) = tokio::time::timeout(Duration::ZERO, self.notifications.next()).await {
                            self.netlink_event(msg).await;
                        }
                    }
                    None => break Err(anyhow::anyhow!("the rtnetlink notification socket closed")),
                },
                diff = self.ospf.ribs.recv() => match diff {
                    Some(diff) => {
                        self.rib.apply(&diff);
                        self.counters.rib_changes += 1;
                        while let Ok(diff) = self.ospf.ribs.try_recv() {
                            self.rib.apply(&diff);
                            self.counters.rib_changes += 1;
                        }
                        self.send_table().await;
                    }
                    None => break self.ospf_died().await,
                },
                Some(p) = control_rx.recv() => {
                    self.counters.control_requests += 1;
                    let answer = self.answer(p.query).await.map_err(|e| format!("{e:#}"));
                    let _ = p.reply.send(answer);
                }
                _ = tick.tick() => {
                    if let Err(e) = self.tick().await {
                        tracing::warn!(error = %format!("{e:#}"), "periodic check failed");
                    }
                }
            }
        };
        server.abort();
        let _ = std::fs::remove_file(&self.config.socket);
        if !self.ospf.task.is_finished() {
            let _ = self.ospf.stop.send(());
            let _ = tokio::time::timeout(OSPF_STOP_WAIT, self.ospf.task).await;
        }
        self.dataplane.stop();
        tracing::info!("agent stopped");
        result
    }

    /// The RIB channel closes only when the driver stopped: say why.
    async fn ospf_died(&mut self) -> Result<()> {
        match (&mut self.ospf.task).await {
            Ok(Ok(_)) => bail!("the OSPF driver stopped"),
            Ok(Err(e)) => Err(e).context("the OSPF driver failed"),
            Err(e) => Err(e).context("the OSPF driver panicked"),
        }
    }

    /// React to one link or address notification.
    async fn netlink_event(
        &mut self,
        msg: netlink_packet_core::NetlinkMessage<netlink_packet_route::RouteNetlinkMessage>,
    ) {
        let Some(ev) = NlEvent::from_netlink(msg) else {
            return;
        };
        match &ev {
            NlEvent::Link(l) if is_pod_veth(l) => self.pod_veth_seen(l.ifindex, l.name.clone()),
            NlEvent::LinkGone(ifindex) => {
                if let Some(name) = self.pod_veths.remove(ifindex) {
                    // Its TCX link went with it; the pin may be left.
                    pods::detach(&self.config.bpffs, &name);
                }
            }
            _ => {}
        }
        let new_link = match &ev {
            NlEvent::Link(l) if self.tracker.link(l.ifindex).is_none() => {
                Some((l.ifindex, l.name.clone()))
            }
            _ => None,
        };
        let change = self.tracker.apply(ev);
        if let Some((ifindex, name)) = new_link
            && self.config.interfaces.skip_dad
            && self.tracker.is_candidate(ifindex)
            && let Err(e) = kernel::skip_dad(std::path::Path::new(PROC_SYS), &name)
        {
            tracing::debug!(iface = %name, error = %format!("{e:#}"), "could not turn DAD off");
        }
        match change {
            Some(MeshEvent::Down {
                ifindex,
                name,
                reason,
            }) => {
                // First the fast path: flows leave the link now, before OSPF
                // has noticed anything.
                let flipped = self.dataplane.set_link_alive(ifindex, false);
                self.counters.alive_flips += flipped as u64;
                self.counters.mesh_link_downs += 1;
                if reason == DownReason::CarrierLost {
                    self.counters.carrier_losses += 1;
                }
                tracing::info!(iface = %name, ifindex, ?reason, next_hops_dead = flipped, "mesh link down");
                if reason == DownReason::Removed {
                    self.dataplane.forget(&name);
                }
                if let Err(e) = self.ospf.handle.remove_interface(&name).await {
                    tracing::warn!(iface = %name, error = %e, "removing the interface from OSPF");
                }
                self.send_table().await;
            }
            Some(MeshEvent::Up(link)) => {
                self.link_up(link).await;
                self.send_table().await;
            }
            None => {}
        }
    }

    /// Attach the TC fast path to a pod's host veth the first time it is
    /// seen, off the main loop: a TCX attach waits out an RCU grace period.
    fn pod_veth_seen(&mut self, ifindex: u32, name: String) {
        if !self.config.xdp || self.pod_veths.contains_key(&ifindex) {
            return;
        }
        self.pod_veths.insert(ifindex, name.clone());
        let bpffs = self.config.bpffs.clone();
        self.counters.pod_attaches += 1;
        tokio::task::spawn_blocking(move || {
            if pods::check(&bpffs, &name).is_ok() {
                return;
            }
            match pods::attach(&bpffs, &name) {
                // A veth deleted meanwhile (ADD then DEL at once) leaves a
                // pin of a dead link: drop it.
                Ok(()) if nix::net::if_::if_nametoindex(name.as_str()).ok() != Some(ifindex) => {
                    pods::detach(&bpffs, &name);
                }
                Ok(()) => tracing::debug!(iface = %name, "pod fast path attached"),
                Err(e) => {
                    tracing::debug!(iface = %name, error = %format!("{e:#}"), "pod fast path not attached")
                }
            }
        });
    }

    /// Start using a link that joined the mesh.
    async fn link_up(&mut self, link: MeshLink) {
        self.counters.mesh_link_ups += 1;
        let flipped = self.dataplane.set_link_alive(link.ifindex, true);
        self.counters.alive_flips += flipped as u64;
        tracing::info!(iface = %link.name, ifindex = link.ifindex, link_local = %link.link_local, mtu = link.mtu, "mesh link up");
        let is_veth = self
            .tracker
            .link(link.ifindex)
            .is_some_and(|l| l.kind.as_deref() == Some("veth"));
        if is_veth {
            match kernel::veth_finish_checksums(&link.name) {
                Ok(true) => {
                    tracing::info!(iface = %link.name, "veth mesh link: checksums now finished on send (tx offload off), as XDP forwarding on the neighbour needs")
                }
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(iface = %link.name, error = %format!("{e:#}"), "veth mesh link keeps tx checksum offload: TCP through XDP on the neighbour will fail; run `ethtool -K <if> tx off`")
                }
            }
        }
        // OSPF first: loading XDP takes the verifier a moment, and until it
        // is attached the kernel forwards with the same routes.
        let spec = interface_spec(&self.config, &link);
        if let Err(e) = self.ospf.handle.add_interface(spec).await {
            tracing::warn!(iface = %link.name, error = %e, "starting OSPF on the interface failed");
        }
        if let Err(e) = self.dataplane.attach(&link.name) {
            tracing::warn!(iface = %link.name, error = %format!("{e:#}"), "attaching XDP failed; the kernel forwards on this link");
        }
    }

    /// Recompute the route table and hand it to the data plane.
    async fn send_table(&mut self) {
        let tracker = &self.tracker;
        let table = desired_table(
            &self.rib,
            |ifindex| tracker.mesh_link(ifindex).is_some(),
            &[self.prefixes.node_address],
            &self.prefixes.own(),
        );
        self.counters.tables_sent += 1;
        if let Err(e) = self.dataplane.apply(table).await {
            tracing::warn!(error = %format!("{e:#}"), "updating the routes failed");
        }
    }

    /// Put the node's prefixes everywhere they belong: the local device,
    /// OSPF's stub prefixes, the state file.
    async fn publish_prefixes(&mut self) -> Result<()> {
        let p = self.prefixes;
        kernel::sync_addresses(
            &self.netlink,
            self.local_ifindex,
            self.config.cluster_prefix,
            &[p.node_address],
        )
        .await
        .with_context(|| format!("putting {} on {}", p.node_address, self.local_device))?;
        self.ospf
            .handle
            .set_stub_prefixes(p.stubs())
            .await
            .context("advertising the node's prefixes")?;
        let state = NodeState {
            router_id: self.identity.router_id,
            pod_prefix: p.pod_prefix,
            node_address: p.node_address,
            mtu: self.config.mtu,
            bpffs: self.config.bpffs.clone(),
            // With XDP off the CNI plugin attaches pods itself.
            pod_attach: if self.config.xdp {
                PodAttach::Agent
            } else {
                PodAttach::Plugin
            },
        };
        if self.last_state.as_ref() != Some(&state) {
            state.write(&self.config.state_file)?;
            tracing::info!(path = %self.config.state_file.display(), pod_prefix = %p.pod_prefix, node_address = %p.node_address, "node state written");
            self.last_state = Some(state);
        }
        Ok(())
    }

    /// The slow checks: duplicate router id, pod prefix clash.
    async fn tick(&mut self) -> Result<()> {
        let snap = self.ospf.handle.snapshot().await.context("OSPF snapshot")?;
        let me = self.identity.router_id;
        let evidence = DupEvidence {
            now_ms: self.started.elapsed().as_millis() as u64,
            own_id_packets: snap
                .state
                .drops
                .get(&DropReason::OwnRouterId)
                .copied()
                .unwrap_or(0),
            own_lsa_seqs: Some(
                snap.state
                    .lsdb
                    .iter()
                    .filter(|l| {
                        l.adv_router == me
                            && matches!(l.ls_type.as_str(), "Router" | "IntraAreaPrefix")
                    })
                    .map(|l| u64::from(l.seq))
                    .sum(),
            ),
            topology: topology_fingerprint(&snap, &self.prefixes),
            own_lsa_repeats: snap.state.self_originated_repeat,
        };
        self.check_neighbour_ids(&snap);
        if self.dup.sample(&evidence) {
            self.counters.duplicate_router_ids += 1;
            if self.identity.can_rederive() {
                let avoid: BTreeSet<Ipv4Addr> =
                    snap.state.lsdb.iter().map(|l| l.adv_router).collect();
                let new = self.identity.rederive(random_u64(), &avoid);
                tracing::warn!(old = %me, new = %new, "another router uses our router id: changing ours");
                self.restart_ospf().await?;
                return Ok(());
            } else if !self.dup_warned {
                self.dup_warned = true;
                tracing::error!(router_id = %me, "another router uses our configured router id; change router_id on one of them");
            }
        }
        // Decide on the pod prefix only once the LSDB holds still (every
        // neighbour Full, nothing new for a while): a half-synchronised
        // LSDB could send us onto a /64 someone else holds, and once we
        // advertise it ourselves the RIB no longer shows theirs.
        let mut h = std::collections::hash_map::DefaultHasher::new();
        for l in &snap.state.lsdb {
            (l.adv_router, &l.ls_type, l.ls_id, l.seq).hash(&mut h);
        }
        self.rib.routes.len().hash(&mut h);
        let shape = h.finish();
        if shape != self.lsdb_shape.0 {
            self.lsdb_shape = (shape, Instant::now());
        }
        let synced = snap
            .state
            .neighbors
            .iter()
            .all(|n| n.state == routing::neighbor::nsm::State::Full);
        if self.config.pod_prefix.is_none() && synced && self.lsdb_shape.1.elapsed() >= QUIET {
            self.check_pod_prefix(&snap).await?;
        }
        Ok(())
    }

    /// Two neighbours of ours with one router id on different links are
    /// two routers with a duplicate id (cloned disks): we cannot renumber
    /// them, but say so loudly, once per pair.
    fn check_neighbour_ids(&mut self, snap: &Snapshot) {
        let mut by_id: BTreeMap<Ipv4Addr, BTreeSet<&str>> = BTreeMap::new();
        for n in &snap.state.neighbors {
            by_id
                .entry(n.router_id)
                .or_default()
                .insert(n.interface.as_str());
        }
        for (id, ifaces) in by_id {
            if ifaces.len() > 1 && self.dup_neighbours_seen.insert(id) {
                self.counters.duplicate_neighbor_ids += 1;
                tracing::error!(router_id = %id, interfaces = ?ifaces, "two neighbours use the same router id; they will change theirs once they notice");
            }
        }
    }

    /// Move the pod prefix if a router with a higher id (or one outside the
    /// rule) holds it.
    async fn check_pod_prefix(&mut self, snap: &Snapshot) -> Result<()> {
        let me = self.identity.router_id;
        let routers: BTreeSet<Ipv4Addr> = snap
            .state
            .lsdb
            .iter()
            .filter(|l| l.ls_type == "Router" && l.adv_router != me)
            .map(|l| l.adv_router)
            .collect();
        let advertised: Vec<Ipv6Net> = self
            .rib
            .routes
            .keys()
            .copied()
            .filter(|p| p.prefix_len() == 64)
            .collect();
        let mut h = std::collections::hash_map::DefaultHasher::new();
        (me, &routers, &advertised).hash(&mut h);
        let fingerprint = h.finish();
        if self.last_prefix_check == Some(fingerprint) {
            return Ok(());
        }
        self.last_prefix_check = Some(fingerprint);
        let Some((prefix, attempt)) =
            prefixes::choose_pod_prefix(self.config.cluster_prefix, me, &routers, advertised)
        else {
            bail!(
                "no free /64 left in the cluster prefix {}",
                self.config.cluster_prefix
            );
        };
        if prefix != self.prefixes.pod_prefix {
            tracing::warn!(old = %self.prefixes.pod_prefix, new = %prefix, attempt, routers = routers.len(), "pod prefix taken by a higher router id: moving");
            self.prefixes = NodePrefixes::new(prefix, attempt);
            self.counters.pod_prefix_moves += 1;
            self.publish_prefixes().await?;
            self.send_table().await;
        }
        Ok(())
    }

    /// Restart OSPF under the (new) router id, on the same links.
    async fn restart_ospf(&mut self) -> Result<()> {
        self.counters.router_id_changes += 1;
        let fresh = start_ospf(&self.config, self.identity.router_id, &self.prefixes);
        let old = std::mem::replace(&mut self.ospf, fresh);
        let _ = old.stop.send(());
        let _ = tokio::time::timeout(OSPF_STOP_WAIT, old.task).await;
        self.rib = Rib::default();
        self.dup.reset();
        self.last_prefix_check = None;
        if self.config.pod_prefix.is_none() {
            self.prefixes = NodePrefixes::new(
                prefixes::pod_prefix_candidate(
                    self.config.cluster_prefix,
                    self.identity.router_id,
                    0,
                ),
                0,
            );
        }
        self.publish_prefixes().await?;
        let links: Vec<MeshLink> = self.tracker.mesh_links().cloned().collect();
        for link in links {
            let spec = interface_spec(&self.config, &link);
            if let Err(e) = self.ospf.handle.add_interface(spec).await {
                tracing::warn!(iface = %link.name, error = %e, "starting OSPF on the interface failed");
            }
        }
        self.send_table().await;
        Ok(())
    }

    fn ifname(&self, ifindex: u32) -> Option<String> {
        self.tracker.link(ifindex).map(|l| l.name.clone())
    }

    /// Answer an operator's question.
    async fn answer(&mut self, query: Query) -> Result<Value> {
        Ok(match query {
            Query::Node => {
                let snap = self.ospf.handle.snapshot().await?;
                let full = snap
                    .state
                    .neighbors
                    .iter()
                    .filter(|n| n.state == routing::neighbor::nsm::State::Full)
                    .count();
                json!({
                    "version": env!("CARGO_PKG_VERSION"),
                    "router_id": self.identity.router_id,
                    "router_id_source": self.identity.source,
                    "router_id_rederived": self.identity.rederived,
                    "cluster_prefix": self.config.cluster_prefix,
                    "pod_prefix": self.prefixes.pod_prefix,
                    "pod_prefix_attempt": self.prefixes.attempt,
                    "node_address": self.prefixes.node_address,
                    "local_device": self.local_device,
                    "mesh_links": self.tracker.mesh_links().count(),
                    "neighbors_full": full,
                    "routes": self.rib.routes.len(),
                    "lsdb": snap.state.lsdb.len(),
                    "spf_runs": snap.state.spf_runs,
                    "xdp": self.config.xdp,
                    "state_file": self.config.state_file,
                    "bpffs": self.config.bpffs,
                    "uptime_s": self.started.elapsed().as_secs(),
                })
            }
            Query::Neighbors => {
                serde_json::to_value(self.ospf.handle.snapshot().await?.state.neighbors)?
            }
            Query::Interfaces => {
                let snap = self.ospf.handle.snapshot().await?;
                let ospf: BTreeMap<u32, &routing::state::InterfaceState> = snap
                    .state
                    .interfaces
                    .iter()
                    .map(|i| (i.ifindex, i))
                    .collect();
                let rows: Vec<Value> = self
                    .tracker
                    .status()
                    .into_iter()
                    .map(|s| {
                        let o = ospf.get(&s.link.ifindex);
                        let mut v = serde_json::to_value(&s).unwrap_or(Value::Null);
                        v["ospf_state"] = o.map_or(Value::Null, |o| json!(o.state));
                        v["ospf_neighbors"] = o.map_or(Value::Null, |o| json!(o.neighbors));
                        v["cost"] = o.map_or(Value::Null, |o| json!(o.cost));
                        v
                    })
                    .collect();
                Value::Array(rows)
            }
            Query::Lsdb => serde_json::to_value(self.ospf.handle.snapshot().await?.state.lsdb)?,
            Query::Routes => {
                let rows: Vec<Value> = self
                    .rib
                    .routes
                    .iter()
                    .map(|(p, r)| {
                        let hops: Vec<Value> = r
                            .nexthops
                            .iter()
                            .map(|nh| json!({"ifindex": nh.ifindex, "iface": self.ifname(nh.ifindex), "via": nh.addr}))
                            .collect();
                        json!({"prefix": p, "cost": r.cost, "next_hops": hops})
                    })
                    .collect();
                Value::Array(rows)
            }
            Query::Fib => serde_json::to_value(self.dataplane.fib(|i| self.ifname(i))?)?,
            Query::Stats => {
                let snap = self.ospf.handle.snapshot().await?;
                let xdp = self.dataplane.xdp_stats();
                json!({
                    "cpus": xdp.as_ref().map_or(0, |s| s.cpus),
                    "counters": xdp.as_ref().map(|s| &s.counters),
                    "agent": self.counters,
                    "writer": self.dataplane.writer_status(),
                    "ospf": {"spf_runs": snap.state.spf_runs, "drops": snap.state.drops},
                    "process": process_stats(),
                })
            }
        })
    }
}

/// Whether a link is a pod's host veth the CNI plugin has finished wiring.
fn is_pod_veth(l: &links::LinkSnapshot) -> bool {
    l.kind.as_deref() == Some("veth")
        && l.name.starts_with(pods::HOST_VETH_PREFIX)
        && l.alias.as_deref() == Some(pods::POD_VETH_ALIAS)
}

/// Start an OSPF driver for `router_id` with the node's stub prefixes.
fn start_ospf(config: &Config, router_id: Ipv4Addr, prefixes: &NodePrefixes) -> Ospf {
    let (handle, commands) = driver::channel();
    let (rib_tx, ribs) = mpsc::unbounded_channel();
    let (stop, stop_rx) = oneshot::channel::<()>();
    let instance = InstanceConfig {
        router_id,
        stub_prefixes: prefixes.stubs(),
        min_ls_interval_ms: config.ospf.min_ls_interval_ms,
        min_ls_arrival_ms: config.ospf.min_ls_arrival_ms,
        spf: SpfBackoffConfig {
            initial_delay_ms: config.ospf.spf_initial_delay_ms,
            short_delay_ms: config.ospf.spf_short_delay_ms,
            long_delay_ms: config.ospf.spf_long_delay_ms,
            time_to_learn_ms: config.ospf.spf_time_to_learn_ms,
            holddown_ms: config.ospf.spf_holddown_ms,
        },
        ..InstanceConfig::default()
    };
    let task = tokio::spawn(driver::run(
        instance,
        Vec::new(),
        commands,
        rib_tx,
        async move {
            let _ = stop_rx.await;
        },
    ));
    Ospf {
        handle,
        stop,
        task,
        ribs,
    }
}

fn interface_spec(config: &Config, link: &MeshLink) -> InterfaceSpec {
    let o = &config.ospf;
    InterfaceSpec {
        name: link.name.clone(),
        config: InterfaceConfig {
            hello_interval: o.hello_interval,
            dead_interval: o.dead_interval,
            retransmit_interval: o.retransmit_interval,
            cost: o.cost,
            ..InterfaceConfig::default()
        },
        link_local: Some(link.link_local),
        mtu: Some(u16::try_from(link.mtu).unwrap_or(u16::MAX)),
    }
}

/// Fingerprint what makes us re-originate our LSAs.
fn topology_fingerprint(snap: &Snapshot, prefixes: &NodePrefixes) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    prefixes.pod_prefix.hash(&mut h);
    for i in &snap.state.interfaces {
        (i.ifindex, i.state).hash(&mut h);
    }
    for n in &snap.state.neighbors {
        (n.ifindex, n.router_id, n.state).hash(&mut h);
    }
    h.finish()
}

/// Resident memory and CPU time of this process, from /proc/self.
pub fn process_stats() -> Value {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kb = |key: &str| {
        status
            .lines()
            .find(|l| l.starts_with(key))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
    };
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which may hold spaces) start at ')'.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, r)| r.split_whitespace().collect())
        .unwrap_or_default();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // utime and stime are fields 14 and 15 (1-based), i.e. 11 and 12 here.
    let hz = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .unwrap_or(100) as u64;
    let cpu_ms = (ticks(11) + ticks(12)) * 1000 / hz.max(1);
    json!({"rss_kb": kb("VmRSS:"), "hwm_kb": kb("VmHWM:"), "cpu_ms": cpu_ms})
}
