//! A minimal OSPFv3 daemon: the driver on the given interfaces, for the
//! interop tests and for trying the router by hand in a namespace.
//!
//! ```text
//! ospfd --router-id 10.0.0.9 --iface m-b --iface m-c:broadcast \
//!       --stub 2001:db8:9::/64 --state-file /tmp/ospfd.json
//! ```
//!
//! - stdout: one JSON object per RIB change, `{"time_ms":..,"rib_diff":{..}}`;
//! - `--state-file`: the driver's [`Snapshot`] as JSON, rewritten every
//!   `--state-interval-ms` (default 500) and at once on SIGUSR1 (written to
//!   a temporary file and renamed, so readers never see half a file);
//! - logs go to stderr (`RUST_LOG`, default `info`);
//! - links are watched like the agent would: an interface that loses
//!   carrier (or goes admin down) is removed at once, and added again when
//!   it is back (`--no-carrier-watch` leaves that to the dead interval);
//! - SIGTERM or SIGINT stop it after taking the interfaces down;
//! - `--auth id=N,alg=hmac-sha-256,secret=S[,send_from=T][,send_until=T]
//!   [,accept_from=T][,accept_until=T]` (repeatable; times in Unix
//!   seconds) authenticates every interface (RFC 7166), `--auth-cpid
//!   legacy` signs the way FRR before 9.1 does, `--auth-boot-count N` sets
//!   the high word of the sequence numbers;
//! - `--ipv4 A.B.C.D` runs the IPv4 unicast family instead (RFC 5838,
//!   Instance ID 64) with A.B.C.D as our address in the Link-LSAs;
//!   `--stub` then takes IPv4 prefixes, and the RIB and the state file hold
//!   them in their LSA encoding (`routing::af::wire_to_ipv4` reads them).

use std::collections::BTreeMap;
use std::io::Write as _;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::net::if_::InterfaceFlags;
use routing::driver::{self, Handle, InterfaceSpec, Snapshot};
use routing::packet::auth::{Algorithm, CpidOrder, Key, KeyChain};
use routing::{AddressFamily, InstanceConfig, InterfaceConfig, InterfaceKind, Ipv6Net, af};
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;

/// How often the carrier of each interface is checked.
const CARRIER_POLL: Duration = Duration::from_millis(200);

#[derive(Debug)]
struct Args {
    router_id: Ipv4Addr,
    ifaces: Vec<(String, InterfaceKind)>,
    stubs: Vec<Ipv6Net>,
    af: AddressFamily,
    state_file: Option<PathBuf>,
    state_interval: Duration,
    cost: u16,
    carrier_watch: bool,
    auth: Option<KeyChain>,
    boot_count: u32,
    /// The kubermesh agent's LSA and SPF timers instead of RFC 2328's.
    agent_timers: bool,
}

const USAGE: &str = "usage: ospfd --router-id A.B.C.D [--iface NAME[:broadcast]]... \
[--stub PREFIX]... [--state-file PATH] [--state-interval-ms N] [--cost N] [--no-carrier-watch] \
[--auth id=N,alg=ALG,secret=S[,send_from=T][,send_until=T][,accept_from=T][,accept_until=T]]... \
[--auth-cpid rfc|legacy] [--auth-boot-count N] [--agent-timers] [--ipv4 A.B.C.D]";

/// Parse one `--auth` key.
fn parse_key(v: &str) -> Result<Key, String> {
    let mut key = Key {
        id: 0,
        algorithm: Algorithm::HmacSha256,
        secret: Vec::new(),
        send_from: None,
        send_until: None,
        accept_from: None,
        accept_until: None,
    };
    for part in v.split(',') {
        let (k, val) = part
            .split_once('=')
            .ok_or_else(|| format!("--auth: {part:?} is not key=value"))?;
        let secs = || val.parse::<u64>().map_err(|e| format!("--auth {k}: {e}"));
        match k {
            "id" => key.id = val.parse().map_err(|e| format!("--auth id: {e}"))?,
            "alg" => {
                key.algorithm = serde_json::from_value(serde_json::Value::String(val.into()))
                    .map_err(|e| format!("--auth alg: {e}"))?
            }
            "secret" => key.secret = val.as_bytes().to_vec(),
            "send_from" => key.send_from = Some(secs()?),
            "send_until" => key.send_until = Some(secs()?),
            "accept_from" => key.accept_from = Some(secs()?),
            "accept_until" => key.accept_until = Some(secs()?),
            other => return Err(format!("--auth: unknown field {other:?}")),
        }
    }
    if key.secret.is_empty() {
        return Err("--auth: secret is required".into());
    }
    Ok(key)
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        router_id: Ipv4Addr::UNSPECIFIED,
        ifaces: Vec::new(),
        stubs: Vec::new(),
        af: AddressFamily::Ipv6,
        state_file: None,
        state_interval: Duration::from_millis(500),
        cost: 10,
        carrier_watch: true,
        auth: None,
        boot_count: 0,
        agent_timers: false,
    };
    let mut stubs: Vec<String> = Vec::new();
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--router-id" => {
                args.router_id = value()?.parse().map_err(|e| format!("--router-id: {e}"))?;
            }
            "--iface" => {
                let v = value()?;
                let (name, kind) = match v.split_once(':') {
                    Some((name, "broadcast")) => (name, InterfaceKind::Broadcast),
                    Some((name, "ptp")) | Some((name, "")) => (name, InterfaceKind::PointToPoint),
                    Some((_, other)) => return Err(format!("--iface: unknown type {other:?}")),
                    None => (v.as_str(), InterfaceKind::PointToPoint),
                };
                args.ifaces.push((name.to_owned(), kind));
            }
            "--stub" => stubs.push(value()?),
            "--ipv4" => {
                args.af = AddressFamily::Ipv4 {
                    interface_address: Some(value()?.parse().map_err(|e| format!("--ipv4: {e}"))?),
                };
            }
            "--state-file" => args.state_file = Some(PathBuf::from(value()?)),
            "--state-interval-ms" => {
                let ms: u64 = value()?
                    .parse()
                    .map_err(|e| format!("--state-interval-ms: {e}"))?;
                args.state_interval = Duration::from_millis(ms.max(10));
            }
            "--cost" => args.cost = value()?.parse().map_err(|e| format!("--cost: {e}"))?,
            "--no-carrier-watch" => args.carrier_watch = false,
            "--auth" => args
                .auth
                .get_or_insert_with(KeyChain::default)
                .keys
                .push(parse_key(&value()?)?),
            "--auth-cpid" => {
                args.auth.get_or_insert_with(KeyChain::default).send_cpid = match value()?.as_str()
                {
                    "rfc" => CpidOrder::Rfc,
                    "legacy" => CpidOrder::Legacy,
                    other => return Err(format!("--auth-cpid: {other:?} is not rfc or legacy")),
                }
            }
            "--auth-boot-count" => {
                args.boot_count = value()?
                    .parse()
                    .map_err(|e| format!("--auth-boot-count: {e}"))?
            }
            "--agent-timers" => args.agent_timers = true,
            "-h" | "--help" => return Err(USAGE.to_owned()),
            other => return Err(format!("unknown argument {other:?}\n{USAGE}")),
        }
    }
    if args.router_id.is_unspecified() {
        return Err(format!("--router-id is required\n{USAGE}"));
    }
    for s in stubs {
        args.stubs.push(match args.af {
            AddressFamily::Ipv6 => s.parse().map_err(|e| format!("--stub {s}: {e}"))?,
            AddressFamily::Ipv4 { .. } => af::ipv4_to_wire(
                s.parse()
                    .map_err(|e| format!("--stub {s}: {e} (an IPv4 prefix with --ipv4)"))?,
            ),
        });
    }
    Ok(args)
}

fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = match parse_args() {
        Ok(args) => args,
        Err(e) => {
            eprintln!("{e}");
            return std::process::ExitCode::from(2);
        }
    };
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("ospfd: tokio runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match rt.block_on(serve(args)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ospfd: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn serve(args: Args) -> std::io::Result<()> {
    let mut config = InstanceConfig {
        router_id: args.router_id,
        af: args.af,
        stub_prefixes: args.stubs.clone(),
        auth_boot_count: args.boot_count,
        ..InstanceConfig::default()
    };
    if args.agent_timers {
        // The defaults of `meshfwd agent` ([ospf] in its configuration).
        config.min_ls_interval_ms = 1000;
        config.min_ls_arrival_ms = 500;
        config.spf = routing::SpfBackoffConfig {
            initial_delay_ms: 20,
            short_delay_ms: 100,
            long_delay_ms: 1000,
            time_to_learn_ms: 1000,
            holddown_ms: 3000,
        };
    }
    let specs: BTreeMap<String, InterfaceSpec> = args
        .ifaces
        .iter()
        .map(|(name, kind)| {
            let config = InterfaceConfig {
                kind: *kind,
                cost: args.cost,
                instance_id: args.af.default_instance_id(),
                auth: args.auth.clone(),
                ..InterfaceConfig::default()
            };
            (name.clone(), InterfaceSpec::new(name, config))
        })
        .collect();
    let (handle, commands) = driver::channel();
    let (rib_tx, mut rib_rx) = mpsc::unbounded_channel();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    // Interfaces are added by the carrier watch (or right here without
    // it), so one that is down at start is picked up when it comes up.
    let initial = if args.carrier_watch {
        Vec::new()
    } else {
        specs.values().cloned().collect()
    };
    let driver = tokio::spawn(driver::run(config, initial, commands, rib_tx, async {
        let _ = stop_rx.await;
    }));

    let mut sigterm = signal(SignalKind::terminate())?;
    let mut sigint = signal(SignalKind::interrupt())?;
    let mut sigusr1 = signal(SignalKind::user_defined1())?;
    let mut state_tick = tokio::time::interval(args.state_interval);
    let mut carrier_tick = tokio::time::interval(CARRIER_POLL);
    let mut running: BTreeMap<String, bool> = BTreeMap::new();
    let mut stdout = std::io::stdout();
    loop {
        tokio::select! {
            _ = sigterm.recv() => break,
            _ = sigint.recv() => break,
            _ = sigusr1.recv() => write_state(&handle, args.state_file.as_deref()).await,
            _ = state_tick.tick() => write_state(&handle, args.state_file.as_deref()).await,
            _ = carrier_tick.tick(), if args.carrier_watch => {
                watch_carrier(&handle, &specs, &mut running).await;
            }
            diff = rib_rx.recv() => {
                let Some(diff) = diff else { break };
                let time_ms = handle.snapshot().await.map(|s| s.time.0).unwrap_or_default();
                let line = serde_json::json!({ "time_ms": time_ms, "rib_diff": diff });
                let _ = writeln!(stdout, "{line}");
                let _ = stdout.flush();
            }
        }
    }
    write_state(&handle, args.state_file.as_deref()).await;
    let _ = stop_tx.send(());
    match driver.await {
        Ok(result) => result.map(drop),
        Err(e) => Err(std::io::Error::other(e)),
    }
}

/// Write the snapshot to `path` (atomically, via a rename).
async fn write_state(handle: &Handle, path: Option<&Path>) {
    let Some(path) = path else { return };
    let snapshot: Snapshot = match handle.snapshot().await {
        Ok(s) => s,
        Err(error) => {
            tracing::warn!(%error, "no snapshot");
            return;
        }
    };
    let tmp = path.with_extension("tmp");
    let result = serde_json::to_vec_pretty(&snapshot)
        .map_err(std::io::Error::other)
        .and_then(|json| std::fs::write(&tmp, json))
        .and_then(|()| std::fs::rename(&tmp, path));
    if let Err(error) = result {
        tracing::warn!(path = %path.display(), %error, "cannot write state");
    }
}

/// Add interfaces that are up with carrier and a link-local address, and
/// remove those that lost either, as the agent does from rtnetlink events.
async fn watch_carrier(
    handle: &Handle,
    specs: &BTreeMap<String, InterfaceSpec>,
    running: &mut BTreeMap<String, bool>,
) {
    let Ok(addrs) = nix::ifaddrs::getifaddrs() else {
        return;
    };
    let mut usable: BTreeMap<String, bool> = BTreeMap::new();
    for ifa in addrs {
        if !specs.contains_key(&ifa.interface_name) {
            continue;
        }
        let up = ifa
            .flags
            .contains(InterfaceFlags::IFF_UP | InterfaceFlags::IFF_RUNNING);
        let link_local = ifa
            .address
            .as_ref()
            .and_then(|a| a.as_sockaddr_in6())
            .is_some_and(|a| a.ip().is_unicast_link_local());
        let e = usable.entry(ifa.interface_name.clone()).or_insert(false);
        *e |= up && link_local;
    }
    for (name, spec) in specs {
        let now = usable.get(name).copied().unwrap_or(false);
        let was = running.get(name).copied().unwrap_or(false);
        if now && !was {
            match handle.add_interface(spec.clone()).await {
                Ok(ifindex) => {
                    tracing::info!(iface = %name, ifindex, "carrier up: running");
                    running.insert(name.clone(), true);
                }
                // Tried again on the next tick.
                Err(error) => tracing::warn!(iface = %name, %error, "cannot start"),
            }
        } else if !now && was {
            tracing::info!(iface = %name, "carrier lost: stopping");
            let _ = handle.remove_interface(name).await;
            running.insert(name.clone(), false);
        }
    }
}
