//! The agent's runtime: the thin async shell around the core. It turns
//! kernel and OSPF events into [`Event`]s for [`Core::handle`] and carries
//! out the [`Action`]s that come back, in order; it decides nothing.
//!
//! ```text
//!   rtnetlink link/addr events ─┐
//!   OSPF route changes ─────────┼─> Core::handle ─> actions: maps (alive flags,
//!   tick: OSPF summary ─────────┘                   table), OSPF, XDP/TC attach,
//!                                                   addresses, state file, sysctls
//!   control socket ──> answers from the core's state, OSPF and the maps
//! ```
//!
//! - [`kernel`]: rtnetlink, sysctls, the local device, veth checksums;
//! - [`ospf`]: the OSPF driver's life;
//! - [`dataplane`]: the map writer task, XDP attachment, alive flips;
//! - [`netfilter`]: what conntrack needs for the fast path's check;
//! - [`control`]: the socket `meshfwd show ...` talks to.

pub mod bfd;
pub mod control;
pub mod dataplane;
pub mod kernel;
pub mod metrics;
pub mod netfilter;
pub mod ospf;
pub mod restart;

use std::{
    collections::BTreeMap,
    future::Future,
    path::Path,
    time::{Duration, Instant},
};

use futures::StreamExt as _;
use ipnet::IpNet;
use tokio::sync::mpsc;

use self::{
    control::Pending,
    dataplane::{Dataplane, DataplaneError},
    kernel::{KernelError, Notifications},
    ospf::{Ospf, OspfDied},
};
use super::{
    config::{Config, MetricsListen},
    core::{Action, Core, Event, Millis, Settings, links::LinkFilter},
};
use crate::api::{
    AgentCounters, Answer, AuthInfo, BfdReport, Instance, InterfaceRow, Ipv4Info, NetfilterInfo,
    NodeInfo, OspfStats, ProcessStats, Query, RouteHop, RouteRow, StatsReport,
};

/// How often the agent samples OSPF for the router id and pod prefix checks.
const TICK: Duration = Duration::from_secs(1);
impl Agent {
    /// The boot count for an OSPF start: the one read at start the first
    /// time, then the file's next (or, should the file fail now, one more
    /// than the last, with a warning). 0 without authentication.
    fn next_boot_count(&mut self) -> u32 {
        if self.config.keys.is_none() {
            return 0;
        }
        let n = match self.boot_count.0.take() {
            Some(n) => n,
            None => crate::agent::auth::next_boot_count(&self.config.ospf.auth.boot_count_file)
                .unwrap_or_else(|e| {
                    tracing::warn!(error = %e, "the boot count file failed: counting on in memory");
                    self.boot_count.1.saturating_add(1)
                }),
        };
        self.boot_count.1 = n;
        n
    }
}

/// Where the sysctls live.
const PROC_SYS: &str = "/proc/sys";

/// Why the agent could not start or had to stop. Causes are part of the
/// message, not sources: `{:#}` would print them twice.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("the control socket: {0}")]
    Control(anyhow::Error),
    #[error("opening rtnetlink: {0}")]
    Netlink(std::io::Error),
    #[error(transparent)]
    Kernel(#[from] KernelError),
    #[error("starting the XDP fast path (run with --no-xdp to go without): {0}")]
    Dataplane(DataplaneError),
    #[error("writing the node state: {0}")]
    State(#[from] ::dataplane::node_state::StateError),
    #[error("the rtnetlink notification socket closed")]
    NetlinkClosed,
    #[error(transparent)]
    Ospf(#[from] OspfDied),
    #[error("the OSPF driver is not running")]
    NoOspf,
    #[error("the agent runs once")]
    AlreadyRan,
    #[error("starting BFD (UDP {port}): {0}", port = routing::bfd::CONTROL_PORT)]
    Bfd(std::io::Error),
    #[error("the OSPF authentication boot count: {0}")]
    BootCount(std::io::Error),
}

/// The agent process: the core and what it needs to act.
pub struct Agent {
    config: Config,
    started: Instant,
    core: Core,
    netlink: rtnetlink::Handle,
    notifications: Notifications,
    /// The device carrying the node's /128 (`lo` without dummy support).
    local_device: (u32, String),
    ospf: Option<Ospf>,
    /// The IPv4 instance (RFC 5838), on a node with IPv4.
    ospf4: Option<Ospf>,
    dataplane: Dataplane,
    /// The control socket, bound at start, served by `run`.
    listener: Option<tokio::net::UnixListener>,
    /// The netfilter check as set up at start.
    netfilter: NetfilterInfo,
    /// With authentication: the boot count the next OSPF start uses
    /// (taken from its file at start), and the last one used.
    boot_count: (Option<u32>, u32),
    /// Counters of what the runtime carried out (the core counts its
    /// decisions).
    alive_flips: u64,
    /// How the first OSPF start restarts (see [`restart::take`]).
    restart: restart::Start,
    control_requests: u64,
    /// BFD's thread and the session changes it reports.
    bfd: Option<(
        bfd::BfdRuntime,
        tokio::sync::mpsc::UnboundedReceiver<routing::bfd::SessionChange>,
    )>,
}

impl Agent {
    /// Set the node up: links, identity, addresses, eBPF, OSPF.
    pub async fn start(config: Config) -> Result<Agent, AgentError> {
        // First, so a second agent on the node stops before touching anything.
        let listener = control::bind(&config.socket).map_err(AgentError::Control)?;
        let socket = config.socket.clone();
        let agent = Self::start_bound(config, listener).await;
        if agent.is_err() {
            let _ = std::fs::remove_file(&socket);
        }
        agent
    }

    async fn start_bound(
        config: Config,
        listener: tokio::net::UnixListener,
    ) -> Result<Agent, AgentError> {
        let started = Instant::now();
        match kernel::enable_forwarding(Path::new(PROC_SYS)) {
            Ok(changed) if !changed.is_empty() => tracing::info!(?changed, "sysctls set"),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "could not enable IPv6 forwarding"),
        }
        if config.ipv4.is_some() {
            match kernel::enable_ipv4_forwarding(Path::new(PROC_SYS)) {
                Ok(changed) if !changed.is_empty() => tracing::info!(?changed, "sysctls set"),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "could not enable IPv4 forwarding"),
            }
        }
        let (netlink, notifications) = kernel::open().map_err(AgentError::Netlink)?;
        let links = kernel::dump(&netlink).await?;
        let machine_id = match config.router_id {
            Some(_) => None,
            None => std::fs::read_to_string(&config.machine_id_file).ok(),
        };
        let machine_id_file = config.machine_id_file.display().to_string();
        let identity = Core::discover_identity(
            config.router_id,
            machine_id
                .as_deref()
                .map(|text| (machine_id_file.as_str(), text)),
            &links,
            kernel::random_u64(),
        );
        tracing::info!(router_id = %identity.router_id, source = ?identity.source, "router id");
        let local_device = kernel::ensure_local_device(&netlink, &config.local_device).await?;
        let netfilter = netfilter::prepare(Path::new(PROC_SYS), config.netfilter);
        // With authentication the sequence numbers must rise across
        // restarts: a boot count that cannot be kept is an error at start.
        let boot_count = match &config.keys {
            Some(_) => Some(
                crate::agent::auth::next_boot_count(&config.ospf.auth.boot_count_file)
                    .map_err(AgentError::BootCount)?,
            ),
            None => None,
        };
        let dataplane = if config.xdp {
            Dataplane::start_xdp(
                &config.bpffs,
                config.xdp_mode,
                config.kernel_routes,
                config.netfilter,
            )
            .await
            .map_err(AgentError::Dataplane)?
        } else {
            // Routes of an earlier run stay until OSPF has resynchronised
            // (`Action::PruneStale`).
            Dataplane::start_kernel_only(netlink.clone(), config.kernel_routes)
        };
        let earlier_run = dataplane.earlier_run().await;
        let restart = restart::take(
            &restart::record_path(&config.state_file),
            earlier_run && config.ospf.graceful_restart,
            config.ospf.grace_period,
        );
        match restart {
            restart::Start::Graceful(period, _) => tracing::info!(
                period,
                "an earlier run's routes are in place: restarting gracefully"
            ),
            restart::Start::Late => tracing::warn!(
                "the planned restart's grace period ran out before this start: restarting afresh"
            ),
            restart::Start::Fresh => {}
        }
        let core = Core::new(settings(&config), identity, links);
        let bfd = match config.bfd.enabled {
            true => {
                let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
                // With XDP, sessions are kept where XDP answers for them
                // while the agent is away, and the next agent adopts them.
                let maps = match config.xdp {
                    true => match ::dataplane::maps::BfdMaps::open(&config.bpffs) {
                        Ok(m) => Some(m),
                        Err(e) => {
                            tracing::warn!(error = %e, "BFD sessions will not outlive the agent");
                            None
                        }
                    },
                    false => None,
                };
                let runtime = bfd::BfdRuntime::start(tx, maps).map_err(AgentError::Bfd)?;
                tracing::info!(
                    interval_ms = config.bfd.interval_ms,
                    multiplier = config.bfd.multiplier,
                    "BFD on: a session with every OSPF neighbour"
                );
                Some((runtime, rx))
            }
            false => None,
        };
        let mut agent = Agent {
            config,
            started,
            core,
            netlink,
            notifications,
            local_device,
            ospf: None,
            ospf4: None,
            dataplane,
            netfilter,
            boot_count: (boot_count, 0),
            listener: Some(listener),
            alive_flips: 0,
            restart,
            control_requests: 0,
            bfd,
        };
        let actions = agent.core.handle(0, Event::Start);
        // At start a node that cannot publish its address or state is not
        // one the plugin can use: fail rather than run half set up.
        agent.execute(actions, true).await?;
        Ok(agent)
    }

    /// Serve until `shutdown` completes.
    pub async fn run(mut self, shutdown: impl Future<Output = ()>) -> Result<(), AgentError> {
        let listener = self.listener.take().ok_or(AgentError::AlreadyRan)?;
        let (control_tx, mut control_rx) = mpsc::channel::<Pending>(16);
        let metrics = match self.config.metrics {
            MetricsListen::On(addr) => {
                let start = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_secs_f64() - self.started.elapsed().as_secs_f64())
                    .unwrap_or(0.0);
                match metrics::bind(addr, control_tx.clone(), start).await {
                    Ok(task) => {
                        tracing::info!(%addr, "metrics endpoint listening (GET /metrics)");
                        Some(task)
                    }
                    Err(e) => {
                        tracing::warn!(%addr, error = %e, "no metrics endpoint");
                        None
                    }
                }
            }
            MetricsListen::Off => None,
        };
        let server = tokio::spawn(control::serve(listener, control_tx));
        let p = self.core.prefixes();
        tracing::info!(
            router_id = %self.core.identity().router_id,
            pod_prefix = %p.pod_prefix,
            node_address = %p.node_address,
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
                        self.netlink_event(&msg).await;
                        // Drain what else is queued, one event at a time:
                        // each carrier loss flips its alive flags at once.
                        while let Ok(Some((msg, _))) = tokio::time::timeout(Duration::ZERO, self.notifications.next()).await {
                            self.netlink_event(&msg).await;
                        }
                    }
                    None => break Err(AgentError::NetlinkClosed),
                },
                (instance, diffs) = next_ribs(&mut self.ospf, &mut self.ospf4) => {
                    let ospf = match instance {
                        Instance::Ipv6 => &mut self.ospf,
                        Instance::Ipv4 => &mut self.ospf4,
                    };
                    let Some(diffs) = diffs else {
                        break Err(match ospf.as_mut() {
                            Some(o) => o.died().await.into(),
                            None => AgentError::NoOspf,
                        });
                    };
                    let event = match instance {
                        Instance::Ipv6 => Event::Rib(diffs),
                        Instance::Ipv4 => Event::Rib4(diffs),
                    };
                    let actions = self.core.handle(self.now(), event);
                    self.execute_logged(actions).await;
                }
                Some(change) = next_bfd(&mut self.bfd) => {
                    let actions = self.core.handle(self.now(), Event::Bfd(change));
                    self.execute_logged(actions).await;
                }
                Some(p) = control_rx.recv() => {
                    self.control_requests += 1;
                    let answer = self.answer(p.query, p.instance).await;
                    let _ = p.reply.send(answer);
                }
                _ = tick.tick() => self.sample().await,
            }
        };
        server.abort();
        if let Some(m) = metrics {
            m.abort();
        }
        let _ = std::fs::remove_file(&self.config.socket);
        if let Some((bfd, _)) = self.bfd.take() {
            // A restart leaves the sessions to XDP (the next agent adopts
            // them); a stop for good says AdminDown, which the peers'
            // clients take nothing down for. The thread takes the command
            // within its idle wait (5 ms): a short block of this runtime,
            // once, on the way out.
            bfd.stop(!self.config.ospf.graceful_restart);
        }
        if let Some(ospf) = self.ospf.take() {
            // A stop is a restart unless graceful restart is off: the
            // pinned fast path keeps forwarding, and the neighbours keep
            // routing through it for the grace period.
            if self.config.ospf.graceful_restart {
                let period = self.config.ospf.grace_period;
                if let Err(e) =
                    restart::write(&restart::record_path(&self.config.state_file), period)
                {
                    tracing::warn!(error = %e, "recording the restart failed: the next start counts it as unplanned");
                }
                if let Some(o4) = self.ospf4.take() {
                    o4.stop_for_restart(period).await;
                }
                ospf.stop_for_restart(period).await;
            } else {
                if let Some(o4) = self.ospf4.take() {
                    o4.stop().await;
                }
                ospf.stop().await;
            }
        }
        self.dataplane.stop();
        tracing::info!("agent stopped");
        result
    }

    fn now(&self) -> Millis {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    async fn netlink_event(
        &mut self,
        msg: &netlink_packet_core::NetlinkMessage<netlink_packet_route::RouteNetlinkMessage>,
    ) {
        if let Some(ev) = ::dataplane::netlink::LinkEvent::from_netlink(msg) {
            let actions = self.core.handle(self.now(), Event::Link(ev));
            self.execute_logged(actions).await;
        }
    }

    /// Sample OSPF and let the core check the router id and pod prefix
    /// (the IPv4 instance first: its refusals are the evidence of a clash
    /// on the IPv4 pod prefix).
    async fn sample(&mut self) {
        if let Some(o4) = &self.ospf4 {
            match o4.handle.summary().await {
                Ok(summary) => {
                    let event = Event::Ospf4Sample {
                        refused: summary.refused,
                    };
                    let actions = self.core.handle(self.now(), event);
                    self.execute_logged(actions).await;
                }
                Err(e) => tracing::warn!(error = %e, "sampling the IPv4 instance failed"),
            }
        }
        let Some(ospf) = &self.ospf else { return };
        match ospf.handle.summary().await {
            Ok(summary) => {
                let salt = kernel::random_u64();
                let actions = self
                    .core
                    .handle(self.now(), Event::OspfSample { summary, salt });
                self.execute_logged(actions).await;
            }
            Err(e) => tracing::warn!(error = %e, "sampling OSPF failed"),
        }
    }

    async fn execute_logged(&mut self, actions: Vec<Action>) {
        if let Err(e) = self.execute(actions, false).await {
            tracing::error!(error = %e, "carrying out the agent's decision failed");
        }
    }

    /// Make `addr` the local device's only address inside `managed` (a
    /// cluster prefix). With `strict` a failure is an error, otherwise it
    /// is logged.
    async fn place_node_address(
        &self,
        managed: IpNet,
        addr: std::net::IpAddr,
        strict: bool,
    ) -> Result<(), AgentError> {
        let (ifindex, device) = &self.local_device;
        match kernel::sync_addresses(&self.netlink, *ifindex, managed, &[addr]).await {
            Ok(_) => Ok(()),
            Err(e) if strict => Err(e.into()),
            Err(e) => {
                tracing::error!(address = %addr, device = %device, error = %e, "putting the node address on the local device failed");
                Ok(())
            }
        }
    }

    /// Carry out the core's actions in order. With `strict`, failing to
    /// publish the node's address or state is an error; otherwise every
    /// failure is logged and the rest still runs.
    async fn execute(&mut self, actions: Vec<Action>, strict: bool) -> Result<(), AgentError> {
        for action in actions {
            match action {
                Action::SetLinkAlive { ifindex, alive } => {
                    let flipped = self.dataplane.set_link_alive(ifindex, alive);
                    self.alive_flips += flipped as u64;
                    let iface = self.ifname(ifindex).unwrap_or_default();
                    if alive {
                        tracing::debug!(%iface, ifindex, next_hops_alive = flipped, "alive flags set");
                    } else {
                        tracing::info!(%iface, ifindex, next_hops_dead = flipped, "alive flags cleared");
                    }
                }
                Action::SkipDad { ifname } => {
                    if let Err(e) = kernel::skip_dad(Path::new(PROC_SYS), &ifname) {
                        tracing::debug!(iface = %ifname, error = %e, "could not turn DAD off");
                    }
                }
                Action::PrepareVeth { ifname } => {
                    match kernel::veth_finish_checksums(&ifname) {
                        Ok(true) => {
                            tracing::info!(iface = %ifname, "veth mesh link: checksums now finished on send (tx offload off), as XDP forwarding on the neighbour needs")
                        }
                        Ok(false) => {}
                        Err(e) => {
                            tracing::warn!(iface = %ifname, error = %e, "veth mesh link keeps tx checksum offload: TCP through XDP on the neighbour will fail; run `ethtool -K <if> tx off`")
                        }
                    }
                    match kernel::veth_take_redirects(&ifname) {
                        Ok(true) => {
                            tracing::info!(iface = %ifname, "veth mesh link: GRO on, so the neighbour's XDP can redirect into it")
                        }
                        Ok(false) => {}
                        Err(e) => {
                            tracing::warn!(iface = %ifname, error = %e, "veth mesh link without GRO: without XDP here, the neighbour's fast path cannot redirect into it")
                        }
                    }
                }
                Action::StartOspf {
                    router_id,
                    stubs,
                    stubs4,
                } => {
                    for old in [self.ospf.take(), self.ospf4.take()].into_iter().flatten() {
                        // The old id's LSAs leave every LSDB now rather
                        // than linger for an hour (MaxAge).
                        if let Err(e) = old.handle.retire().await {
                            tracing::warn!(error = %e, "flushing the old router id's LSAs failed");
                        }
                        old.stop().await;
                    }
                    let boot = self.next_boot_count();
                    // Only the first start of a process can be a restart;
                    // one under a new router id is a new router.
                    let restarting =
                        match std::mem::replace(&mut self.restart, restart::Start::Fresh) {
                            restart::Start::Graceful(period, reason) => Some((period, reason)),
                            restart::Start::Fresh | restart::Start::Late => None,
                        };
                    if let (Some(stubs4), Some(v4)) = (stubs4, self.config.ipv4) {
                        let af = routing::AddressFamily::Ipv4 {
                            interface_address: self.core.prefixes4().map(|p| p.node_address),
                        };
                        self.ospf4 = Some(Ospf::start(
                            &self.config.ospf,
                            af,
                            routing::af::ipv4_to_wire(v4.cluster_prefix),
                            v4.pod_prefix_len,
                            router_id,
                            stubs4,
                            boot,
                            restarting,
                        ));
                    }
                    self.ospf = Some(Ospf::start(
                        &self.config.ospf,
                        routing::AddressFamily::Ipv6,
                        self.config.cluster_prefix,
                        0,
                        router_id,
                        stubs,
                        boot,
                        restarting,
                    ));
                }
                Action::OspfAddInterface(spec) => {
                    let name = spec.name.clone();
                    if let Some(o4) = &self.ospf4 {
                        // The same link, the IPv4 instance's Instance ID.
                        let mut spec4 = spec.clone();
                        spec4.config.instance_id = routing::AddressFamily::Ipv4 {
                            interface_address: None,
                        }
                        .default_instance_id();
                        if let Err(e) = o4.handle.add_interface(spec4).await {
                            tracing::warn!(iface = %name, error = %e, "starting IPv4 OSPF on the interface failed");
                        }
                    }
                    let added = match &self.ospf {
                        Some(o) => o.handle.add_interface(spec).await.map(drop),
                        None => Err(std::io::Error::other("OSPF is not running")),
                    };
                    if let Err(e) = added {
                        tracing::warn!(iface = %name, error = %e, "starting OSPF on the interface failed");
                    }
                }
                Action::OspfRemoveInterface { ifname } => {
                    for o in [&self.ospf, &self.ospf4].into_iter().flatten() {
                        if let Err(e) = o.handle.remove_interface(&ifname).await {
                            tracing::warn!(iface = %ifname, error = %e, "removing the interface from OSPF");
                        }
                    }
                }
                Action::OspfStubPrefixes4(stubs) => {
                    if let Some(o) = &self.ospf4
                        && let Err(e) = o.handle.set_stub_prefixes(stubs).await
                    {
                        tracing::warn!(error = %e, "advertising the node's IPv4 prefixes failed");
                    }
                }
                Action::SetNodeAddress4(addr) => {
                    let Some(v4) = self.config.ipv4 else { continue };
                    // The address our IPv4 Link-LSAs carry for routers
                    // that take next hops from there (BIRD) follows it.
                    if let Some(o4) = &self.ospf4
                        && let Err(e) = o4.handle.set_interface_address4(Some(addr)).await
                    {
                        tracing::warn!(error = %e, "updating the IPv4 instance's Link-LSA address failed");
                    }
                    self.place_node_address(v4.cluster_prefix.into(), addr.into(), strict)
                        .await?;
                }
                Action::OspfStubPrefixes(stubs) => {
                    if let Some(o) = &self.ospf
                        && let Err(e) = o.handle.set_stub_prefixes(stubs).await
                    {
                        tracing::warn!(error = %e, "advertising the node's prefixes failed");
                    }
                }
                Action::AttachXdp { ifname } => {
                    if let Err(e) = self.dataplane.attach(&ifname) {
                        tracing::warn!(iface = %ifname, error = %e, "attaching XDP failed; the kernel forwards on this link");
                    }
                }
                Action::ForgetXdp { ifname } => self.dataplane.forget(&ifname),
                Action::PruneStale => {
                    if let Err(e) = self.dataplane.prune().await {
                        tracing::warn!(error = %e, "removing an earlier run's routes failed");
                    }
                }
                Action::ApplyTable(table) => {
                    if let Err(e) = self.dataplane.apply(table).await {
                        tracing::warn!(error = %e, "updating the routes failed");
                    }
                }
                Action::SetNodeAddress(addr) => {
                    let managed = self.config.cluster_prefix.into();
                    self.place_node_address(managed, addr.into(), strict)
                        .await?;
                }
                Action::WriteState(state) => match state.write(&self.config.state_file) {
                    Ok(()) => {
                        tracing::info!(path = %self.config.state_file.display(), pod_prefix = %state.pod_prefix, node_address = %state.node_address, "node state written")
                    }
                    Err(e) if strict => return Err(e.into()),
                    Err(e) => tracing::error!(error = %e, "writing the node state failed"),
                },
                Action::AttachPod { ifindex, ifname } => self.attach_pod(ifindex, ifname),
                Action::DetachPod { ifname } => {
                    ::dataplane::tc::detach(&self.config.bpffs, &ifname);
                }
                Action::BfdAdd { key, timers } => {
                    if let Some((b, _)) = &self.bfd {
                        b.send(bfd::Command::Add { key, timers });
                    }
                }
                Action::BfdRemove(key) => {
                    if let Some((b, _)) = &self.bfd {
                        b.send(bfd::Command::Remove(key));
                    }
                }
                Action::OspfNeighborDown { ifindex, router_id } => {
                    // The path failed for both families.
                    for o in [&self.ospf, &self.ospf4].into_iter().flatten() {
                        if let Err(e) = o.handle.neighbor_down(ifindex, router_id).await {
                            tracing::warn!(error = %e, "taking the adjacency down failed");
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// Attach the TC fast path to a pod's host veth off the main loop: a
    /// TCX attach waits out an RCU grace period.
    fn attach_pod(&self, ifindex: u32, ifname: String) {
        let bpffs = self.config.bpffs.clone();
        tokio::task::spawn_blocking(move || {
            if ::dataplane::tc::check(&bpffs, &ifname).is_ok() {
                return;
            }
            match ::dataplane::tc::attach(&bpffs, &ifname) {
                // A veth deleted meanwhile (ADD then DEL at once) leaves a
                // pin of a dead link: drop it.
                Ok(()) if nix::net::if_::if_nametoindex(ifname.as_str()).ok() != Some(ifindex) => {
                    ::dataplane::tc::detach(&bpffs, &ifname);
                }
                Ok(()) => tracing::debug!(iface = %ifname, "pod fast path attached"),
                Err(e) => {
                    tracing::debug!(iface = %ifname, error = %e, "pod fast path not attached")
                }
            }
        });
    }

    fn ifname(&self, ifindex: u32) -> Option<String> {
        self.core.links().link(ifindex).map(|l| l.name.clone())
    }

    /// Answer an operator's question; per-instance questions (neighbours,
    /// interfaces, LSDB, routes) about `instance`.
    async fn answer(&mut self, query: Query, instance: Instance) -> Result<Answer, String> {
        let ospf = match instance {
            Instance::Ipv6 => self.ospf.as_ref().ok_or("OSPF is not running")?,
            Instance::Ipv4 => self.ospf4.as_ref().ok_or(
                "this node runs no IPv4 instance (start the agent with [ipv4] cluster_prefix or \
                 --ipv4-cluster-prefix)",
            )?,
        };
        let snapshot = || async {
            ospf.handle
                .snapshot()
                .await
                .map_err(|e| format!("asking OSPF: {e}"))
        };
        Ok(match query {
            Query::Node => {
                let snap = snapshot().await?;
                let id = self.core.identity();
                let p = self.core.prefixes();
                Answer::Node(Box::new(NodeInfo {
                    version: env!("CARGO_PKG_VERSION").into(),
                    router_id: id.router_id,
                    router_id_source: id.source.clone(),
                    router_id_rederived: id.rederived,
                    cluster_prefix: self.config.cluster_prefix,
                    pod_prefix: p.pod_prefix,
                    pod_prefix_attempt: p.attempt,
                    node_address: p.node_address,
                    local_device: self.local_device.1.clone(),
                    mesh_links: self.core.links().mesh_links().count(),
                    neighbors_full: snap.state.neighbors_full(),
                    routes: self.core.rib().routes.len(),
                    lsdb: snap.state.lsdb.len(),
                    spf_runs: snap.state.spf_runs,
                    xdp: self.config.xdp,
                    netfilter: self.netfilter.clone(),
                    gr_restarting: snap.state.gr_restarting,
                    gr_helping: snap.state.gr_helping.len(),
                    ospf_auth: self.config.keys.as_ref().map(|chain| {
                        let now = std::time::SystemTime::now()
                            .duration_since(std::time::UNIX_EPOCH)
                            .map_or(0, |d| d.as_secs());
                        AuthInfo {
                            keys: chain.keys.len(),
                            send_key: chain.send_key(now).map(|k| k.id),
                            boot_count: self.boot_count.1,
                        }
                    }),
                    state_file: self.config.state_file.clone(),
                    bpffs: self.config.bpffs.clone(),
                    uptime_s: self.started.elapsed().as_secs(),
                    ipv4: self.ipv4_info().await?,
                }))
            }
            Query::Neighbors => Answer::Neighbors(snapshot().await?.state.neighbors),
            Query::Bfd => Answer::Bfd(match &self.bfd {
                Some((b, _)) => b.report().await.ok_or("the BFD thread is gone")?,
                None => BfdReport::default(),
            }),
            Query::Interfaces => {
                let snap = snapshot().await?;
                let ospf: BTreeMap<u32, &routing::state::InterfaceState> = snap
                    .state
                    .interfaces
                    .iter()
                    .map(|i| (i.ifindex, i))
                    .collect();
                let rows = self
                    .core
                    .links()
                    .status()
                    .into_iter()
                    .map(|s| {
                        let o = ospf.get(&s.link.ifindex);
                        InterfaceRow {
                            link_local: s.link_local,
                            mesh: s.mesh,
                            reason: s.reason.map(str::to_owned),
                            ospf_state: o.map(|o| o.state),
                            ospf_network: o.map(|o| o.kind),
                            dr: o
                                .filter(|o| o.kind == routing::InterfaceKind::Broadcast)
                                .map(|o| o.dr),
                            bdr: o
                                .filter(|o| o.kind == routing::InterfaceKind::Broadcast)
                                .map(|o| o.bdr),
                            ospf_neighbors: o.map(|o| o.neighbors),
                            ospf_drops: o.map(|o| o.drops),
                            cost: o.map(|o| o.cost),
                            link: s.link,
                        }
                    })
                    .collect();
                Answer::Interfaces(rows)
            }
            Query::Lsdb => Answer::Lsdb(snapshot().await?.state.lsdb),
            Query::Routes => Answer::Routes(
                match instance {
                    Instance::Ipv6 => self.core.rib(),
                    Instance::Ipv4 => self.core.rib4(),
                }
                .routes
                .iter()
                .filter_map(|(prefix, r)| {
                    // The IPv4 instance's prefixes are kept as their wire
                    // form; longer ones are never routes.
                    let prefix = match instance {
                        Instance::Ipv6 => IpNet::V6(*prefix),
                        Instance::Ipv4 => IpNet::V4(routing::af::wire_to_ipv4(*prefix)?),
                    };
                    Some((prefix, r))
                })
                .map(|(prefix, r)| RouteRow {
                    prefix,
                    cost: r.cost,
                    next_hops: r
                        .nexthops
                        .iter()
                        .map(|nh| RouteHop {
                            ifindex: nh.ifindex,
                            iface: self.ifname(nh.ifindex),
                            via: nh.addr,
                        })
                        .collect(),
                })
                .collect(),
            ),
            Query::Fib => Answer::Fib(
                self.dataplane
                    .fib(|i| self.ifname(i))
                    .map_err(|e| e.to_string())?,
            ),
            Query::Stats => {
                let snap = snapshot().await?;
                let agent = AgentCounters {
                    alive_flips: self.alive_flips,
                    control_requests: self.control_requests,
                    ..self.core.counters().clone()
                };
                Answer::Stats(Box::new(StatsReport {
                    xdp: self.dataplane.xdp_stats(),
                    agent: Some(agent),
                    writer: self.dataplane.writer_status(),
                    ospf: Some(OspfStats {
                        spf_runs: snap.state.spf_runs,
                        spf_time: snap.spf_time,
                        drops: snap.state.drops,
                    }),
                    process: ProcessStats::read(None),
                    redirect_failed_by_iface: ::dataplane::trace::redirect_fails(
                        &self.config.bpffs,
                    )
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(i, n)| (self.ifname(i).unwrap_or_else(|| format!("ifindex {i}")), n))
                    .collect(),
                }))
            }
        })
    }

    /// `show node`'s IPv4 part, asking the IPv4 instance; `None` on a node
    /// without IPv4.
    async fn ipv4_info(&self) -> Result<Option<Ipv4Info>, String> {
        let (Some(o4), Some(p4), Some(c4)) = (
            &self.ospf4,
            self.core.prefixes4(),
            self.config.ipv4.as_ref(),
        ) else {
            return Ok(None);
        };
        let snap = o4
            .handle
            .snapshot()
            .await
            .map_err(|e| format!("asking the IPv4 instance: {e}"))?;
        Ok(Some(Ipv4Info {
            cluster_prefix: c4.cluster_prefix,
            pod_prefix: p4.pod_prefix,
            node_address: p4.node_address,
            neighbors_full: snap.state.neighbors_full(),
            routes: self.core.rib4().routes.len(),
            lsdb: snap.state.lsdb.len(),
            spf_runs: snap.state.spf_runs,
            misfits: snap.state.misfits.len(),
        }))
    }
}

/// The next BFD session change; pending forever while BFD is off.
async fn next_bfd(
    bfd: &mut Option<(
        bfd::BfdRuntime,
        tokio::sync::mpsc::UnboundedReceiver<routing::bfd::SessionChange>,
    )>,
) -> Option<routing::bfd::SessionChange> {
    match bfd {
        Some((_, rx)) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// The next batch of route changes of either instance, with the instance
/// it came from (`None` once that driver is gone).
async fn next_ribs(
    ospf: &mut Option<Ospf>,
    ospf4: &mut Option<Ospf>,
) -> (Instance, Option<Vec<routing::RibDiff>>) {
    tokio::select! {
        diffs = next_ribs_of(ospf) => (Instance::Ipv6, diffs),
        diffs = next_ribs_of(ospf4) => (Instance::Ipv4, diffs),
    }
}

/// The next batch of route changes (everything queued), or `None` once
/// the driver is gone; pending forever while no driver runs.
async fn next_ribs_of(ospf: &mut Option<Ospf>) -> Option<Vec<routing::RibDiff>> {
    let Some(o) = ospf else {
        return std::future::pending().await;
    };
    let first = o.ribs.recv().await?;
    let mut diffs = vec![first];
    while let Ok(d) = o.ribs.try_recv() {
        diffs.push(d);
    }
    Some(diffs)
}

/// What the core needs of the configuration.
fn settings(config: &Config) -> Settings {
    Settings {
        xdp: config.xdp,
        cluster_prefix: config.cluster_prefix,
        pod_prefix: config.pod_prefix,
        skip_dad: config.interfaces.skip_dad,
        filter: LinkFilter {
            include: config.interfaces.include.clone(),
            exclude: config.interfaces.exclude.clone(),
        },
        interface: routing::InterfaceConfig {
            auth: config.keys.clone(),
            ..config.ospf.interface()
        },
        networks: config.ospf.networks(),
        mtu: config.mtu,
        bpffs: config.bpffs.clone(),
        bfd: config.bfd.timers(),
        ipv4: config.ipv4.map(|v4| super::core::prefixes::Ipv4Space {
            cluster: v4.cluster_prefix,
            pod_len: v4.pod_prefix_len,
        }),
    }
}
