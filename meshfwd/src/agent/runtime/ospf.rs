//! The OSPF driver as the runtime runs it: started (and restarted under a
//! new router id) when the core says so, asked for samples and snapshots,
//! and stopped so the neighbours hear our last packets.

use std::{io, net::Ipv4Addr, time::Duration};

use ipnet::Ipv6Net;
use routing::{
    AddressFamily, InstanceConfig, RibDiff, SpfBackoffConfig,
    driver::{self, Handle},
    gr::GracefulRestart,
    instance::LsdbLimits,
    ownership::PrefixPolicy,
    packet::lsa::grace::RestartReason,
};
use tokio::sync::{mpsc, oneshot};

use crate::agent::config::OspfConfig;

/// How long a stopping OSPF driver may take to send its last packets.
const STOP_WAIT: Duration = Duration::from_secs(2);
/// How long the Grace-LSAs of a planned restart get to reach the
/// neighbours (they are sent at once; this covers the send queue).
const GRACE_ANNOUNCE_WAIT: Duration = Duration::from_millis(200);

/// A running OSPF driver.
pub struct Ospf {
    pub handle: Handle,
    /// Route changes, in order.
    pub ribs: mpsc::UnboundedReceiver<RibDiff>,
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<io::Result<routing::Instance>>,
}

/// Why the OSPF driver is gone.
#[derive(Debug, thiserror::Error)]
pub enum OspfDied {
    #[error("the OSPF driver stopped")]
    Stopped,
    #[error("the OSPF driver failed: {0}")]
    Failed(#[source] io::Error),
    #[error("the OSPF driver panicked: {0}")]
    Panicked(#[source] tokio::task::JoinError),
}

impl Ospf {
    /// Start a driver for `router_id` advertising `stubs` (no interfaces
    /// yet: the core adds them); `boot_count` is the high word of its
    /// authentication sequence numbers.
    ///
    /// `af` is the family the instance routes (RFC 5838); an IPv4
    /// instance's `cluster` and `stubs` are in the LSA encoding
    /// (`routing::af::ipv4_to_wire`), its pod prefixes `pod_len4` long.
    #[allow(
        clippy::too_many_arguments,
        reason = "one start, one call site per family"
    )]
    pub fn start(
        config: &OspfConfig,
        af: AddressFamily,
        cluster: Ipv6Net,
        pod_len4: u8,
        router_id: Ipv4Addr,
        stubs: Vec<Ipv6Net>,
        boot_count: u32,
        restarting: Option<(u32, RestartReason)>,
    ) -> Ospf {
        let (handle, commands) = driver::channel();
        let (rib_tx, ribs) = mpsc::unbounded_channel();
        let (stop, stop_rx) = oneshot::channel::<()>();
        let gateways = config.gateways.iter().copied().collect();
        let instance = InstanceConfig {
            router_id,
            af,
            stub_prefixes: stubs,
            auth_boot_count: boot_count,
            prefix_policy: Some(match af {
                AddressFamily::Ipv6 => PrefixPolicy::ipv6(cluster, gateways),
                // The IPv4 space's lengths, in the LSA encoding: a pod
                // prefix of `pod_len4` bits, a /32 node address.
                AddressFamily::Ipv4 { .. } => PrefixPolicy {
                    pod_len: pod_len4,
                    host_len: 32,
                    ..PrefixPolicy::ipv6(cluster, gateways)
                },
            }),
            lsdb_limits: LsdbLimits {
                per_router: config.max_lsas_per_router,
                total: config.max_lsas,
            },
            min_ls_interval_ms: config.min_ls_interval_ms,
            min_ls_arrival_ms: config.min_ls_arrival_ms,
            spf: SpfBackoffConfig {
                initial_delay_ms: config.spf_initial_delay_ms,
                short_delay_ms: config.spf_short_delay_ms,
                long_delay_ms: config.spf_long_delay_ms,
                time_to_learn_ms: config.spf_time_to_learn_ms,
                holddown_ms: config.spf_holddown_ms,
            },
            graceful_restart: GracefulRestart {
                helper: config.graceful_restart,
                strict: config.graceful_restart_strict,
                restarting: restarting.filter(|_| config.graceful_restart),
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
            ribs,
            stop,
            task,
        }
    }

    /// Stop for a restart (RFC 3623 §2.1): announce it with Grace-LSAs,
    /// give them a moment to go out, and stop without a goodbye, so the
    /// neighbours keep routing through us for `period` seconds.
    pub async fn stop_for_restart(self, period: u32) {
        if let Err(e) = self
            .handle
            .prepare_restart(period, RestartReason::SoftwareRestart)
            .await
        {
            tracing::warn!(error = %e, "announcing the restart failed");
        }
        tokio::time::sleep(GRACE_ANNOUNCE_WAIT).await;
        self.stop().await;
    }

    /// Stop the driver, giving it a moment to send its last packets.
    pub async fn stop(self) {
        let _ = self.stop.send(());
        let _ = tokio::time::timeout(STOP_WAIT, self.task).await;
    }

    /// Say why the driver is gone (its RIB channel closed).
    pub async fn died(&mut self) -> OspfDied {
        match (&mut self.task).await {
            Ok(Ok(_)) => OspfDied::Stopped,
            Ok(Err(e)) => OspfDied::Failed(e),
            Err(e) => OspfDied::Panicked(e),
        }
    }
}
