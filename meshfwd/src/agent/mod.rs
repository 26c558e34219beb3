//! `meshfwd agent`: the long-lived process on every node that ties the
//! OSPFv3 engine (`routing`) to the fast path (the eBPF maps) and the
//! kernel, so a node joins and heals with no one configuring it.
//!
//! Pieces, in the order data flows through them:
//! - [`config`]: defaults, TOML file and flags, validated up front;
//! - [`identity`]: the router id (machine id, MAC) and duplicate handling;
//! - [`links`]: which links run OSPF, from rtnetlink link/address events;
//! - [`prefixes`]: the node's pod /64 and /128, chosen from the LSDB;
//! - [`kernel`]: the local device, forwarding sysctls, stale routes;
//! - [`dataplane`]: RIB -> route table -> the map writer task, XDP
//!   attachment, and the alive-flag flip on carrier loss;
//! - [`control`] and [`show`]: the Unix socket `meshfwd show ...` talks
//!   to, and its tables;
//! - [`runtime`]: the main loop tying it all together.

pub mod config;
pub mod control;
pub mod dataplane;
pub mod identity;
pub mod kernel;
pub mod links;
pub mod prefixes;
pub mod runtime;
pub mod show;

use std::future::Future;

use anyhow::Result;

pub use config::{AgentArgs, Config, ConfigError};

/// Run the agent until `shutdown` completes (inside a tokio runtime).
pub async fn run(config: Config, shutdown: impl Future<Output = ()>) -> Result<()> {
    runtime::Agent::start(config).await?.run(shutdown).await
}

/// Run the agent as the process's main job: logging, a single-threaded
/// runtime (the agent is one loop; one thread keeps its memory and CPU
/// small and its map writes ordered), and SIGTERM/SIGINT as shutdown.
pub fn main(config: Config) -> Result<()> {
    init_logging(config.log_format);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let shutdown = async {
            let mut term =
                match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                    Ok(s) => s,
                    Err(e) => {
                        tracing::error!(error = %e, "cannot watch SIGTERM");
                        return std::future::pending().await;
                    }
                };
            tokio::select! {
                _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT: shutting down"),
                _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
            }
        };
        run(config, shutdown).await
    })
}

/// Log to stderr, `RUST_LOG` style filter (default `info`).
fn init_logging(format: config::LogFormat) {
    use tracing_subscriber::{EnvFilter, fmt};
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi);
    let _ = match format {
        config::LogFormat::Text => builder.try_init(),
        config::LogFormat::Json => builder.json().try_init(),
    };
}
