//! Command-line interface: argument parsing and dispatch; [`show`] renders
//! the agent's typed answers as tables, [`fib`] drives the map writer by
//! hand.

use std::{
    path::{Path, PathBuf},
    process::ExitCode,
    time::Duration,
};

use anyhow::Result;
use clap::{Parser, Subcommand};
use meshfwd_common::pin;

pub mod fib;
pub mod rates;
pub mod show;

use dataplane::{maps::Netfilter, stats::Stats, xdp::AttachMode};

use crate::{
    agent::{self, AgentArgs, Config, config::DEFAULT_SOCKET, runtime::control},
    api::{Answer, Instance, Query, Request, StatsReport},
};

/// How long `meshfwd show` waits for the agent.
const QUERY_TIMEOUT: Duration = Duration::from_secs(10);

/// kubermesh node agent and operator CLI.
///
/// `meshfwd agent` runs on every node: it finds the mesh links, runs OSPFv3
/// on them, and keeps the XDP fast path's maps and the kernel's routes in
/// step, with no per-node configuration. `meshfwd show ...` asks the running
/// agent over its control socket. The eBPF maps and program links are
/// pinned under a bpffs directory, so the data plane outlives the process
/// that attached it.
#[derive(Debug, Parser)]
#[command(name = "meshfwd", version, about, long_about)]
struct Cli {
    /// bpffs directory holding the node's pinned maps and links [default:
    /// /sys/fs/bpf/kubermesh].
    #[arg(long, global = true, env = "MESHFWD_BPFFS")]
    bpffs: Option<PathBuf>,

    /// The agent's control socket [default: /run/kubermesh/meshfwd.sock].
    #[arg(long, global = true, env = "MESHFWD_SOCKET")]
    socket: Option<PathBuf>,

    #[command(subcommand)]
    command: Command,
}

impl Cli {
    fn bpffs(&self) -> PathBuf {
        self.bpffs
            .clone()
            .unwrap_or_else(|| PathBuf::from(pin::DEFAULT_DIR))
    }

    fn socket(&self) -> PathBuf {
        self.socket
            .clone()
            .unwrap_or_else(|| PathBuf::from(DEFAULT_SOCKET))
    }
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the node agent (until SIGTERM): zero-touch mesh join, OSPFv3,
    /// the XDP fast path and the kernel routes.
    ///
    /// A bare `meshfwd agent` works on a node: the router id comes from
    /// /etc/machine-id, every Ethernet link with carrier joins the mesh,
    /// and the pod prefix is carved from fd6b:6d65:7368::/48. Settings come
    /// from /etc/kubermesh/meshfwd.toml (if present) and these flags.
    Agent(Box<AgentArgs>),
    /// Attach the XDP program to a mesh interface and pin it.
    ///
    /// Example: `meshfwd attach --iface eth1`. Attaching a second interface
    /// reuses the pinned maps, so counters cover the whole node.
    Attach {
        /// Interface to attach to.
        #[arg(long)]
        iface: String,
        /// XDP attach mode.
        #[arg(long, value_enum, default_value_t = AttachMode::Auto)]
        mode: AttachMode,
        /// Whether the fast path asks conntrack first (check) or forwards
        /// without asking (ignore); as the agent's `netfilter` setting.
        #[arg(long, value_enum, default_value_t = Netfilter::Check)]
        netfilter: Netfilter,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Detach the XDP program from an interface (removes its pinned link).
    Detach {
        /// Interface to detach from.
        #[arg(long)]
        iface: String,
    },
    /// Show the node's state (asks the running agent).
    Show {
        #[command(subcommand)]
        what: Show,
    },
    /// Static routes into the fast path's maps (see `meshfwd fib --help`).
    Fib {
        #[command(subcommand)]
        cmd: fib::FibCommand,
    },
    /// Print the version.
    Version,
}

#[derive(Debug, Subcommand)]
enum Show {
    /// Router id, prefixes and health of the node at a glance.
    Node {
        /// Print as JSON (for scripts).
        #[arg(long)]
        json: bool,
    },
    /// BFD sessions: state, timers, detection time, diagnostic, counts.
    Bfd {
        /// Print as JSON (for scripts).
        #[arg(long)]
        json: bool,
    },
    /// OSPF neighbours and their states.
    Neighbors {
        /// Print as JSON (for scripts).
        #[arg(long)]
        json: bool,
        /// Ask the IPv4 instance (RFC 5838) instead of the IPv6 one.
        #[arg(long)]
        ipv4: bool,
    },
    /// Links of the node: which are in the mesh, and why the others are not.
    Interfaces {
        /// Print as JSON (for scripts).
        #[arg(long)]
        json: bool,
        /// Ask the IPv4 instance (RFC 5838) instead of the IPv6 one.
        #[arg(long)]
        ipv4: bool,
    },
    /// The OSPF link state database.
    Lsdb {
        /// Print as JSON (for scripts).
        #[arg(long)]
        json: bool,
        /// Ask the IPv4 instance (RFC 5838) instead of the IPv6 one.
        #[arg(long)]
        ipv4: bool,
    },
    /// The routes OSPF computed (prefix, cost, ECMP next hops).
    Routes {
        /// Print as JSON (for scripts).
        #[arg(long)]
        json: bool,
        /// Ask the IPv4 instance (RFC 5838) instead of the IPv6 one.
        #[arg(long)]
        ipv4: bool,
    },
    /// The fast path's FIB: entries, next-hop groups, MACs, alive flags.
    Fib {
        /// Print as JSON (for scripts).
        #[arg(long)]
        json: bool,
    },
    /// Per-verdict packet counters of the XDP program, summed over CPUs,
    /// plus the agent's own counters when it is running. With `--interval`,
    /// per-second rates instead: by counter, and per interface from the
    /// kernel's counters.
    Stats {
        /// Print as JSON (for scripts); with `--interval`, one line per
        /// sample.
        #[arg(long)]
        json: bool,
        /// Print rates every this many seconds.
        #[arg(long, value_parser = parse_interval)]
        interval: Option<Duration>,
        /// Stop after this many samples (default: run until interrupted).
        #[arg(long, requires = "interval", value_parser = clap::value_parser!(u32).range(1..))]
        count: Option<u32>,
    },
}

/// Parse arguments, run the command, report errors on stderr.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("meshfwd: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    let bpffs = cli.bpffs();
    let socket = cli.socket();
    match cli.command {
        Command::Agent(args) => {
            let config = Config::load(&args, cli.bpffs.as_deref(), cli.socket.as_deref())?;
            agent::main(config)?;
        }
        Command::Attach {
            iface,
            mode,
            netfilter,
            json,
        } => {
            let link = dataplane::xdp::attach(&bpffs, &iface, mode)?;
            dataplane::maps::FibMaps::open(&bpffs)?.set_netfilter(netfilter)?;
            agent::runtime::netfilter::prepare(Path::new("/proc/sys"), netfilter);
            if json {
                let out = serde_json::json!({"iface": iface, "link": link, "bpffs": bpffs});
                println!("{out}");
            } else {
                println!(
                    "attached XDP to {iface} (link pinned at {})",
                    link.display()
                );
            }
        }
        Command::Detach { iface } => {
            dataplane::xdp::detach(&bpffs, &iface)?;
            println!("detached XDP from {iface}");
        }
        Command::Show { what } => show_cmd(&bpffs, cli.bpffs.as_deref(), &socket, what)?,
        Command::Fib { cmd } => fib::run(&bpffs, cmd)?,
        Command::Version => println!("meshfwd {}", env!("CARGO_PKG_VERSION")),
    }
    Ok(())
}

fn show_cmd(bpffs: &Path, bpffs_flag: Option<&Path>, socket: &Path, what: Show) -> Result<()> {
    let (query, json) = match what {
        Show::Stats {
            json,
            interval: Some(interval),
            count,
        } => return show_rates(bpffs_flag, socket, json, interval, count),
        Show::Stats { json, .. } => return show_stats(bpffs_flag, socket, json),
        Show::Fib { json } if !socket.exists() => {
            // No agent: read the pinned maps directly.
            return fib::run(bpffs, fib::FibCommand::Show { json });
        }
        Show::Node { json } => (Request::new(Query::Node), json),
        Show::Neighbors { json, ipv4 } => (of(Query::Neighbors, ipv4), json),
        Show::Bfd { json } => (Request::new(Query::Bfd), json),
        Show::Interfaces { json, ipv4 } => (of(Query::Interfaces, ipv4), json),
        Show::Lsdb { json, ipv4 } => (of(Query::Lsdb, ipv4), json),
        Show::Routes { json, ipv4 } => (of(Query::Routes, ipv4), json),
        Show::Fib { json } => (Request::new(Query::Fib), json),
    };
    let answer = control::query(socket, query, QUERY_TIMEOUT)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&answer.to_json()?)?);
    } else {
        print!("{}", show::render(&answer));
    }
    Ok(())
}

/// Ask `show` of the IPv4 instance if `ipv4`, else of the IPv6 one.
fn of(show: Query, ipv4: bool) -> Request {
    Request {
        show,
        instance: if ipv4 { Instance::Ipv4 } else { Instance::Ipv6 },
    }
}

/// A `--interval` of 0.1 to 3600 seconds.
fn parse_interval(s: &str) -> Result<Duration, String> {
    let secs: f64 = s
        .parse()
        .map_err(|_| format!("{s:?} is not a number of seconds"))?;
    if !(0.1..=3600.0).contains(&secs) {
        return Err(format!("{secs} s is outside 0.1 to 3600 s"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// `show stats --interval`: rates of the pinned counters and of the mesh
/// interfaces (the agent names them; without one, every interface).
fn show_rates(
    bpffs: Option<&Path>,
    socket: &Path,
    json: bool,
    interval: Duration,
    count: Option<u32>,
) -> Result<()> {
    let dir = bpffs.map_or_else(|| PathBuf::from(pin::DEFAULT_DIR), Path::to_path_buf);
    let map = dataplane::maps::open_stats(&dir)?;
    let ifaces = match control::query(socket, Request::new(Query::Interfaces), QUERY_TIMEOUT) {
        Ok(Answer::Interfaces(rows)) => rows
            .into_iter()
            .filter(|r| r.mesh)
            .map(|r| r.link.name)
            .collect(),
        _ => rates::all_interfaces(),
    };
    rates::run(interval, count, json, &ifaces, || Ok(Stats::read(&map)?))
}

/// The XDP counters plus the agent's own counters when it answers. With
/// `--bpffs` (or no agent) the XDP counters come straight from the pinned
/// map, so this works without an agent too.
fn show_stats(bpffs: Option<&Path>, socket: &Path, json: bool) -> Result<()> {
    let mut report = if socket.exists() {
        match control::query(socket, Request::new(Query::Stats), QUERY_TIMEOUT) {
            Ok(Answer::Stats(r)) => *r,
            _ => StatsReport::default(),
        }
    } else {
        StatsReport::default()
    };
    let dir = bpffs.map_or_else(|| PathBuf::from(pin::DEFAULT_DIR), Path::to_path_buf);
    if bpffs.is_some() || report.xdp.is_none() {
        report.xdp = Some(Stats::read(&dataplane::maps::open_stats(&dir)?)?);
    }
    // Read here, in the node's namespace, where the ifindexes have names.
    report.redirect_failed_by_iface = dataplane::trace::redirect_fails(&dir)?
        .into_iter()
        .map(|(ifindex, n)| {
            let name = nix::net::if_::if_indextoname(ifindex)
                .map(|c| c.to_string_lossy().into_owned())
                .unwrap_or_else(|_| format!("ifindex {ifindex}"));
            (name, n)
        })
        .collect();
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", show::stats(&report));
    }
    Ok(())
}
