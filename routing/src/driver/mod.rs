//! The tokio driver: real sockets and timers around the sans-IO core.
//!
//! [`run`] owns one [`Instance`], one [`OspfSocket`] per interface and the
//! timer queue. It turns received packets, expired timers and [`Command`]s
//! into [`Input`]s, and carries out every [`Output`]: packets go to the
//! interface's socket, timers into the queue, RIB changes to the caller's
//! channel. The agent embeds it (adding and removing interfaces as links come
//! and go, asking for [`Snapshot`]s for `meshfwd show`); the `ospfd` example
//! runs it alone for the interop tests.
//!
//! The loop never blocks on the network: each socket has a task that only
//! receives and forwards packets to the loop, and a send that cannot go out
//! at once is dropped after a short wait (OSPF retransmits).

pub mod socket;
mod timers;

use std::collections::BTreeMap;
use std::future::Future;
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::interface::ism;
use crate::state::Summary;
use crate::{
    Input, Instance, InstanceConfig, InstanceState, InterfaceConfig, InterfaceKind, Ipv6Net,
    Output, Rib, RibDiff, Time, TimerId,
};
pub use socket::{ALL_D_ROUTERS, ALL_SPF_ROUTERS, OspfSocket, Received};
use timers::{Clock, TimerQueue};

/// How long a send may wait for room in the socket buffer.
const SEND_WAIT: Duration = Duration::from_millis(100);
/// Packets received but not yet handled by the loop, over all interfaces.
const PACKET_QUEUE: usize = 1024;
/// Offset of the Instance ID in the OSPFv3 header (RFC 5340 A.3.1).
const INSTANCE_ID_AT: usize = 14;
/// Pause after a failed receive, so a broken socket cannot spin.
const RECV_ERROR_PAUSE: Duration = Duration::from_millis(100);

/// An interface to run OSPF on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InterfaceSpec {
    /// Kernel name of the interface.
    pub name: String,
    pub config: InterfaceConfig,
    /// Source address of our packets; the interface's first link-local
    /// address when `None`.
    pub link_local: Option<Ipv6Addr>,
    /// IPv6 MTU; read from `/proc/sys/net/ipv6/conf/<name>/mtu` when `None`.
    pub mtu: Option<u16>,
}

impl InterfaceSpec {
    /// Run on `name` with `config`, discovering its address and MTU.
    pub fn new(name: &str, config: InterfaceConfig) -> Self {
        Self {
            name: name.to_owned(),
            config,
            link_local: None,
            mtu: None,
        }
    }
}

/// The instance as seen at one moment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    /// Driver time (ms since it started) of the snapshot.
    pub time: Time,
    pub state: InstanceState,
    pub rib: Rib,
    #[serde(default)]
    pub spf_time: SpfTime,
}

/// Wall-clock time the core spent on the inputs that ran SPF. The core
/// has no clock of its own (its time is what the driver hands it), so the
/// driver measures.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpfTime {
    /// Summed over every run, in microseconds.
    pub total_us: u64,
    /// The last run.
    pub last_us: u64,
    /// The longest run.
    pub max_us: u64,
}

impl SpfTime {
    fn record(&mut self, took: std::time::Duration) {
        let us = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        self.total_us = self.total_us.saturating_add(us);
        self.last_us = us;
        self.max_us = self.max_us.max(us);
    }
}

/// A request to the running driver.
#[derive(Debug)]
pub enum Command {
    /// Start running on an interface; replies with its ifindex.
    AddInterface {
        spec: InterfaceSpec,
        reply: oneshot::Sender<io::Result<u32>>,
    },
    /// Stop running on an interface; replies whether it was there.
    RemoveInterface {
        name: String,
        reply: oneshot::Sender<bool>,
    },
    /// Replace the prefixes advertised without an interface.
    SetStubPrefixes(Vec<Ipv6Net>),
    /// Change the IPv4 address of an IPv4 instance's Link-LSAs
    /// ([`Input::SetInterfaceAddress4`]).
    SetInterfaceAddress4(Option<Ipv4Addr>),
    /// Flush our LSAs and advertise nothing more ([`Input::Retire`]).
    Retire,
    /// Announce a planned restart ([`Input::PrepareRestart`]); the stop
    /// that follows leaves the neighbours adjacent.
    PrepareRestart {
        period: u32,
        reason: crate::packet::lsa::grace::RestartReason,
    },
    /// Take an adjacency down ([`Input::NeighborDown`]).
    NeighborDown { ifindex: u32, router_id: Ipv4Addr },
    /// Reply with the current state.
    Snapshot(oneshot::Sender<Snapshot>),
    /// Reply with the small summary an agent samples.
    Summary(oneshot::Sender<Summary>),
}

/// The caller's end of a running driver: cheap to clone.
#[derive(Debug, Clone)]
pub struct Handle {
    tx: mpsc::Sender<Command>,
}

/// Make the command channel of a driver: the [`Handle`] for the caller and
/// the receiver to pass to [`run`].
pub fn channel() -> (Handle, mpsc::Receiver<Command>) {
    let (tx, rx) = mpsc::channel(64);
    (Handle { tx }, rx)
}

fn gone() -> io::Error {
    io::Error::new(io::ErrorKind::BrokenPipe, "the OSPF driver has stopped")
}

impl Handle {
    /// Start running on an interface; return its ifindex.
    pub async fn add_interface(&self, spec: InterfaceSpec) -> io::Result<u32> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Command::AddInterface { spec, reply })
            .await
            .map_err(|_| gone())?;
        rx.await.map_err(|_| gone())?
    }

    /// Stop running on an interface; return whether it was there.
    pub async fn remove_interface(&self, name: &str) -> io::Result<bool> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Command::RemoveInterface {
                name: name.to_owned(),
                reply,
            })
            .await
            .map_err(|_| gone())?;
        rx.await.map_err(|_| gone())
    }

    /// Replace the prefixes advertised without an interface.
    pub async fn set_stub_prefixes(&self, prefixes: Vec<Ipv6Net>) -> io::Result<()> {
        self.tx
            .send(Command::SetStubPrefixes(prefixes))
            .await
            .map_err(|_| gone())
    }

    /// Change the IPv4 address an IPv4 instance puts into its Link-LSAs.
    pub async fn set_interface_address4(&self, address: Option<Ipv4Addr>) -> io::Result<()> {
        self.tx
            .send(Command::SetInterfaceAddress4(address))
            .await
            .map_err(|_| gone())
    }

    /// Flush every LSA this router originated and advertise nothing more
    /// (before it stops under a router id it gives up).
    pub async fn retire(&self) -> io::Result<()> {
        self.tx.send(Command::Retire).await.map_err(|_| gone())
    }

    /// Take the adjacency with `router_id` on `ifindex` down at once (BFD
    /// saw its path fail).
    pub async fn neighbor_down(&self, ifindex: u32, router_id: Ipv4Addr) -> io::Result<()> {
        self.tx
            .send(Command::NeighborDown { ifindex, router_id })
            .await
            .map_err(|_| gone())
    }

    /// Announce a planned restart with this grace period (seconds): a
    /// Grace-LSA on every interface. The driver's next stop then leaves
    /// every interface as it is, so the neighbours keep us adjacent.
    pub async fn prepare_restart(
        &self,
        period: u32,
        reason: crate::packet::lsa::grace::RestartReason,
    ) -> io::Result<()> {
        self.tx
            .send(Command::PrepareRestart { period, reason })
            .await
            .map_err(|_| gone())
    }

    /// Return the summary an embedding agent samples (cheap, unlike
    /// [`Handle::snapshot`]).
    pub async fn summary(&self) -> io::Result<Summary> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Command::Summary(reply))
            .await
            .map_err(|_| gone())?;
        rx.await.map_err(|_| gone())
    }

    /// Return the current state of the instance.
    pub async fn snapshot(&self) -> io::Result<Snapshot> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Command::Snapshot(reply))
            .await
            .map_err(|_| gone())?;
        rx.await.map_err(|_| gone())
    }
}

/// A packet a receive task hands to the loop.
struct Incoming {
    ifindex: u32,
    src: Ipv6Addr,
    dst: Ipv6Addr,
    data: Vec<u8>,
}

/// One interface the driver runs on.
struct Iface {
    name: String,
    socket: Arc<OspfSocket>,
    reader: JoinHandle<()>,
}

impl Drop for Iface {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

/// Run an OSPF instance until `shutdown` completes; return it then.
///
/// Starts on `interfaces` (failing if one cannot be opened), then serves
/// `commands` (see [`channel`]) and sends every RIB change to `rib_tx`
/// (dropped silently once the receiver is gone). On shutdown every
/// interface is taken down, so neighbours hear our last packets, and the
/// instance is returned for inspection.
///
/// Must run inside a tokio runtime, in the network namespace of the
/// interfaces.
pub async fn run(
    config: InstanceConfig,
    interfaces: Vec<InterfaceSpec>,
    mut commands: mpsc::Receiver<Command>,
    rib_tx: mpsc::UnboundedSender<RibDiff>,
    shutdown: impl Future<Output = ()>,
) -> io::Result<Instance> {
    let clock = Clock::start();
    let mut config = config;
    // Key lifetimes are wall-clock times; the core's clock starts now.
    config.epoch_unix_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .saturating_sub(clock.now().0);
    let (instance, outputs) = Instance::new(config, clock.now());
    let (packet_tx, mut packet_rx) = mpsc::channel(PACKET_QUEUE);
    let mut driver = Driver {
        instance,
        clock,
        timers: TimerQueue::default(),
        ifaces: BTreeMap::new(),
        packet_tx,
        rib_tx,
        spf_time: SpfTime::default(),
    };
    driver.execute(outputs).await;
    for spec in interfaces {
        driver.add_interface(spec).await?;
    }

    tokio::pin!(shutdown);
    let mut commands_open = true;
    loop {
        let wake = driver.timers.next().map(|t| clock.instant(t));
        tokio::select! {
            biased;
            () = &mut shutdown => break,
            // Timers before packets: a burst of updates must not delay
            // Hellos until neighbours declare us dead.
            () = sleep_until(wake) => driver.fire_timers().await,
            cmd = commands.recv(), if commands_open => match cmd {
                Some(cmd) => driver.command(cmd).await,
                // The caller dropped its handles: keep routing until shutdown.
                None => commands_open = false,
            },
            Some(p) = packet_rx.recv() => {
                let (ifindex, src, dst, data) = (p.ifindex, p.src, p.dst, p.data);
                driver.input(Input::Packet { ifindex, src, dst, data }).await;
            }
        }
    }

    // A planned restart leaves the neighbours adjacent: no goodbye.
    if !driver.instance.restart_prepared() {
        let ifindexes: Vec<u32> = driver.ifaces.keys().copied().collect();
        for ifindex in ifindexes {
            driver.remove_interface(ifindex).await;
        }
    }
    Ok(driver.instance)
}

/// Sleep until `at`, or forever without a deadline.
async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// The loop's state.
struct Driver {
    instance: Instance,
    clock: Clock,
    timers: TimerQueue<TimerId>,
    ifaces: BTreeMap<u32, Iface>,
    packet_tx: mpsc::Sender<Incoming>,
    rib_tx: mpsc::UnboundedSender<RibDiff>,
    spf_time: SpfTime,
}

impl Driver {
    /// Hand one input to the core and carry out what it says.
    async fn input(&mut self, input: Input) {
        let runs = self.instance.spf_runs();
        let started = std::time::Instant::now();
        let outputs = self.instance.handle(self.clock.now(), input);
        if self.instance.spf_runs() != runs {
            self.spf_time.record(started.elapsed());
        }
        self.execute(outputs).await;
    }

    /// Deliver every timer that is due.
    async fn fire_timers(&mut self) {
        // Bounded: each round removes one timer; new ones due at once are
        // handled on the next turn of the loop.
        let due: Vec<TimerId> =
            std::iter::from_fn(|| self.timers.pop_due(self.clock.now())).collect();
        for id in due {
            self.input(Input::Timer(id)).await;
        }
    }

    async fn execute(&mut self, outputs: Vec<Output>) {
        for output in outputs {
            match output {
                Output::Send { ifindex, dst, data } => self.send(ifindex, dst, &data).await,
                Output::ArmTimer { id, at } => self.timers.arm(id, at),
                Output::CancelTimer(id) => self.timers.cancel(id),
                Output::RibChanged(diff) => {
                    // A caller that stopped listening does not stop routing.
                    let _ = self.rib_tx.send(diff);
                }
            }
        }
        self.sync_all_d_routers();
    }

    async fn send(&self, ifindex: u32, dst: Ipv6Addr, data: &[u8]) {
        let Some(iface) = self.ifaces.get(&ifindex) else {
            tracing::debug!(ifindex, %dst, "send on an interface that is gone");
            return;
        };
        match tokio::time::timeout(SEND_WAIT, iface.socket.send(dst, data)).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => {
                tracing::warn!(iface = %iface.name, %dst, len = data.len(), %error, "send failed");
            }
            Err(_) => tracing::warn!(iface = %iface.name, %dst, "send timed out; dropped"),
        }
    }

    /// Be a member of AllDRouters exactly where we are DR or BDR.
    fn sync_all_d_routers(&self) {
        for (ifindex, iface) in &self.ifaces {
            let want = self.instance.interfaces().get(ifindex).is_some_and(|i| {
                i.kind == InterfaceKind::Broadcast
                    && matches!(i.state, ism::State::Dr | ism::State::Backup)
            });
            if let Err(error) = iface.socket.set_all_d_routers(want) {
                tracing::warn!(iface = %iface.name, want, %error, "AllDRouters membership");
            }
        }
    }

    async fn command(&mut self, cmd: Command) {
        match cmd {
            Command::AddInterface { spec, reply } => {
                let result = self.add_interface(spec).await;
                let _ = reply.send(result);
            }
            Command::RemoveInterface { name, reply } => {
                let found = self
                    .ifaces
                    .iter()
                    .find(|(_, i)| i.name == name)
                    .map(|(ifindex, _)| *ifindex);
                if let Some(ifindex) = found {
                    self.remove_interface(ifindex).await;
                }
                let _ = reply.send(found.is_some());
            }
            Command::SetStubPrefixes(prefixes) => {
                self.input(Input::SetStubPrefixes(prefixes)).await;
            }
            Command::SetInterfaceAddress4(address) => {
                self.input(Input::SetInterfaceAddress4(address)).await;
            }
            Command::Retire => self.input(Input::Retire).await,
            Command::NeighborDown { ifindex, router_id } => {
                self.input(Input::NeighborDown { ifindex, router_id }).await
            }
            Command::PrepareRestart { period, reason } => {
                self.input(Input::PrepareRestart { period, reason }).await
            }
            Command::Snapshot(reply) => {
                let _ = reply.send(Snapshot {
                    time: self.clock.now(),
                    state: self.instance.state(),
                    rib: self.instance.rib().clone(),
                    spf_time: self.spf_time,
                });
            }
            Command::Summary(reply) => {
                let _ = reply.send(self.instance.summary());
            }
        }
    }

    /// Open the interface's socket and tell the core it is up. Adding an
    /// interface that runs already restarts it with the new settings.
    async fn add_interface(&mut self, spec: InterfaceSpec) -> io::Result<u32> {
        let (ifindex, found_ll) = socket::interface_info(&spec.name)?;
        let link_local = spec.link_local.or(found_ll).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::AddrNotAvailable,
                format!("{} has no IPv6 link-local address", spec.name),
            )
        })?;
        let mtu = match spec.mtu {
            Some(mtu) => mtu,
            None => ipv6_mtu(&spec.name)?,
        };
        if self.ifaces.contains_key(&ifindex) {
            self.remove_interface(ifindex).await;
        }
        let kernel_checksum = spec.config.auth.is_none();
        let socket = Arc::new(OspfSocket::open(
            &spec.name,
            ifindex,
            link_local,
            kernel_checksum,
        )?);
        let reader = tokio::spawn(receive(
            socket.clone(),
            spec.config.instance_id,
            self.packet_tx.clone(),
        ));
        tracing::info!(iface = %spec.name, ifindex, %link_local, mtu, "interface up");
        self.ifaces.insert(
            ifindex,
            Iface {
                name: spec.name.clone(),
                socket,
                reader,
            },
        );
        self.input(Input::InterfaceUp {
            ifindex,
            name: spec.name,
            link_local,
            mtu,
            config: spec.config,
        })
        .await;
        Ok(ifindex)
    }

    /// Tell the core the interface is down (its last packets still go out),
    /// then close the socket.
    async fn remove_interface(&mut self, ifindex: u32) {
        self.input(Input::InterfaceDown { ifindex }).await;
        if let Some(iface) = self.ifaces.remove(&ifindex) {
            tracing::info!(iface = %iface.name, ifindex, "interface down");
        }
    }
}

/// Receive packets on `socket` and pass them to the loop until it is gone.
async fn receive(socket: Arc<OspfSocket>, instance_id: u8, tx: mpsc::Sender<Incoming>) {
    let mut buf = vec![0u8; socket::MAX_PACKET];
    loop {
        match socket.recv(&mut buf).await {
            // Another instance's packet on this link: every raw socket of
            // protocol 89 gets every packet, and RFC 5838 runs an
            // instance per address family on the same links. Not ours,
            // and no fault of the sender's, so not a drop either. (A
            // packet too short to say goes to the core, which counts it.)
            Ok(r) if r.len > INSTANCE_ID_AT && buf[INSTANCE_ID_AT] != instance_id => {}
            // Bound to the device, so this holds; a stray packet of
            // another link must not reach that link's neighbours.
            Ok(r) if r.ifindex == socket.ifindex() => {
                let p = Incoming {
                    ifindex: r.ifindex,
                    src: r.src,
                    dst: r.dst,
                    data: buf[..r.len].to_vec(),
                };
                if tx.send(p).await.is_err() {
                    return;
                }
            }
            Ok(r) => {
                tracing::debug!(
                    iface = socket.ifname(),
                    got = r.ifindex,
                    "packet of another interface"
                );
            }
            Err(error) => {
                tracing::warn!(iface = socket.ifname(), %error, "receive failed");
                tokio::time::sleep(RECV_ERROR_PAUSE).await;
            }
        }
    }
}

/// Return the IPv6 MTU of `ifname` in the current network namespace.
///
/// `/proc/sys/net` belongs to the reading thread's namespace, unlike
/// `/sys/class/net`, which shows the namespace sysfs was mounted in.
pub fn ipv6_mtu(ifname: &str) -> io::Result<u16> {
    if ifname.contains('/') || ifname.starts_with('.') {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "bad interface name",
        ));
    }
    let text = std::fs::read_to_string(format!("/proc/sys/net/ipv6/conf/{ifname}/mtu"))?;
    let mtu: u32 = text
        .trim()
        .parse()
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("mtu {text:?}: {e}")))?;
    Ok(u16::try_from(mtu).unwrap_or(u16::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_mtu() {
        assert!(ipv6_mtu("lo").expect("lo has an IPv6 MTU") >= 1280);
        assert!(ipv6_mtu("../lo").is_err());
    }
}
