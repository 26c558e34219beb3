//! `meshfwd agent`: the long-lived process on every node that ties the
//! OSPFv3 engine (`routing`) to the fast path (the eBPF maps) and the
//! kernel, so a node joins and heals with no one configuring it.
//!
//! Data flows OSPF -> RIB -> agent core -> map writer -> maps -> XDP/TC:
//! - [`config`]: defaults, TOML file and flags, validated up front;
//! - [`core`]: every decision (links, identity, prefixes, fast reroute,
//!   the route table, the state file, pods), sans-IO;
//! - [`runtime`]: the async shell that feeds the core kernel and OSPF
//!   events and carries out its actions (rtnetlink, the OSPF driver, the
//!   map writer task, the control socket).

pub mod auth;
pub mod config;
pub mod core;
pub mod runtime;

use std::future::Future;

pub use config::{AgentArgs, Config, ConfigError};
pub use runtime::AgentError;

/// Run the agent until `shutdown` completes (inside a tokio runtime).
pub async fn run(config: Config, shutdown: impl Future<Output = ()>) -> Result<(), AgentError> {
    runtime::Agent::start(config).await?.run(shutdown).await
}

/// Run the agent as the process's main job: logging, a single-threaded
/// runtime (the agent is one loop; one thread keeps its memory and CPU
/// small and its map writes ordered), and SIGTERM/SIGINT as shutdown.
pub fn main(config: Config) -> anyhow::Result<()> {
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
        Ok(run(config, shutdown).await?)
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
