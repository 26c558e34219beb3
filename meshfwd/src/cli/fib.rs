//! `meshfwd fib ...`: feed the map writer a static route table, flip alive
//! flags, and show what the fast path will do.
//!
//! The route file is JSON:
//!
//! ```json
//! {"routes": [{"prefix": "2001:db8:4::/64",
//!              "via": [{"iface": "eth1", "addr": "fe80::1"}]},
//!             {"prefix": "198.18.4.0/24",
//!              "via": [{"iface": "eth1", "addr": "fe80::1"}]}],
//!  "local": ["2001:db8::1", "198.18.0.1"]}
//! ```
//!
//! IPv4 prefixes go via IPv6 neighbours too.
//!
//! The node's own global addresses are added to `local` automatically.

use std::{
    net::{IpAddr, Ipv6Addr},
    path::{Path, PathBuf},
};

use anyhow::{Context as _, Result, bail};
use clap::Subcommand;
use meshfwd_common::fib::NEXT_HOP_MAX_ENTRIES;
use serde::Deserialize;

use dataplane::maps::FibMaps;

use ipnet::IpNet;

use crate::{
    api::Answer,
    fib::{FibWriter, NextHopKey, RouteTable, dump, neigh, writer::set_alive_id},
};

/// `meshfwd fib` subcommands.
#[derive(Debug, Subcommand)]
pub enum FibCommand {
    /// Apply a static route table to the pinned maps and the kernel FIB,
    /// then keep next-hop MACs fresh from neighbour events until SIGINT or
    /// SIGTERM (unless `--once`).
    ///
    /// Example: `meshfwd fib apply --routes routes.json`.
    Apply {
        /// JSON route table (see `meshfwd fib --help`).
        #[arg(long)]
        routes: PathBuf,
        /// Apply and exit instead of tracking neighbours.
        #[arg(long)]
        once: bool,
        /// Do not mirror the routes into the kernel FIB.
        #[arg(long)]
        no_kernel_routes: bool,
    },
    /// Set or clear the alive flag of every next hop through an interface
    /// (fast reroute: one map write per next hop).
    Alive {
        /// Interface whose next hops change.
        #[arg(long)]
        iface: String,
        /// Mark them dead instead of alive.
        #[arg(long)]
        down: bool,
    },
    /// Show the FIB entries, groups and next hops in the maps.
    Show {
        /// Print as JSON.
        #[arg(long)]
        json: bool,
    },
}

/// One route of the route file.
#[derive(Debug, Deserialize)]
struct RouteSpec {
    prefix: String,
    via: Vec<ViaSpec>,
}

#[derive(Debug, Deserialize)]
struct ViaSpec {
    iface: String,
    /// The neighbour's IPv6 (link-local) address, for IPv4 prefixes too.
    addr: Ipv6Addr,
}

#[derive(Debug, Deserialize)]
struct RouteFile {
    #[serde(default)]
    routes: Vec<RouteSpec>,
    #[serde(default)]
    local: Vec<IpAddr>,
}

/// Run one `meshfwd fib` command.
pub fn run(bpffs: &Path, cmd: FibCommand) -> Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        match cmd {
            FibCommand::Apply {
                routes,
                once,
                no_kernel_routes,
            } => apply(bpffs, &routes, once, !no_kernel_routes).await,
            FibCommand::Alive { iface, down } => alive(bpffs, &iface, !down).await,
            FibCommand::Show { json } => show(bpffs, json),
        }
    })
}

async fn apply(bpffs: &Path, routes: &Path, once: bool, kernel_routes: bool) -> Result<()> {
    let text =
        std::fs::read_to_string(routes).with_context(|| format!("reading {}", routes.display()))?;
    let file: RouteFile =
        serde_json::from_str(&text).with_context(|| format!("parsing {}", routes.display()))?;
    let maps = FibMaps::open(bpffs)?;
    let mut writer = FibWriter::new(maps)
        .await?
        .with_kernel_routes(kernel_routes);
    let mut table = RouteTable::default();
    for r in &file.routes {
        // A bare address is its /128 or /32.
        let prefix = match r.prefix.parse::<IpNet>() {
            Ok(p) => p.trunc(),
            Err(_) => IpNet::from(
                r.prefix
                    .parse::<IpAddr>()
                    .with_context(|| format!("{:?} is not an IP prefix (ADDR/LEN)", r.prefix))?,
            ),
        };
        let mut hops = Vec::new();
        for v in &r.via {
            let ifindex = neigh::ifindex(writer.handle(), &v.iface).await?;
            hops.push(NextHopKey {
                ifindex,
                via: v.addr,
            });
        }
        table.route(prefix, hops);
    }
    table.local.extend(file.local);
    table.local.extend(
        neigh::local_addresses(writer.handle())
            .await?
            .into_iter()
            .map(IpAddr::V6),
    );
    // The file is the whole table: whatever an earlier writer left and it
    // does not list goes at once.
    let mut report = writer.apply(&table).await?;
    let pruned = writer.prune().await?;
    report.map_ops += pruned.map_ops;
    report.kernel_writes += pruned.kernel_writes;
    report.kernel_errors.extend(pruned.kernel_errors);
    println!("{}", serde_json::to_string(&report)?);
    if once {
        return Ok(());
    }
    let shutdown = async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("installing a SIGTERM handler");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    };
    Ok(writer.run_until(shutdown).await?)
}

async fn alive(bpffs: &Path, iface: &str, alive: bool) -> Result<()> {
    let handle = neigh::connect()?;
    let ifindex = neigh::ifindex(&handle, iface).await?;
    let mut maps = FibMaps::open(bpffs)?;
    let mut changed = 0;
    for id in 1..NEXT_HOP_MAX_ENTRIES {
        let nh = maps.next_hops.get(&id, 0)?;
        if nh.ifindex == ifindex {
            set_alive_id(&mut maps, id, alive)?;
            changed += 1;
        }
    }
    if changed == 0 {
        bail!("no next hop uses {iface}");
    }
    println!(
        "{changed} next hop(s) via {iface} marked {}",
        if alive { "alive" } else { "dead" }
    );
    Ok(())
}

fn show(bpffs: &Path, json: bool) -> Result<()> {
    // No agent to name the interfaces: the table shows ifindexes.
    let rows = Answer::Fib(dump::rows(&FibMaps::open(bpffs)?, |_| None)?);
    if json {
        println!("{}", serde_json::to_string_pretty(&rows.to_json()?)?);
    } else {
        print!("{}", super::show::render(&rows));
    }
    Ok(())
}
