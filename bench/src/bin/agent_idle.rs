//! The agent's footprint: resident memory and CPU of every `meshfwd agent`
//! at idle in an 8-node lab mesh, and what a 1,000-node mesh adds to it.
//!
//! 1. **Lab**: the demo's mesh (a ring of 8 with two chords), one agent per
//!    node; once every node reaches every other, each agent's RSS and CPU
//!    time are sampled over an idle window (`--idle-secs`, default 30).
//! 2. **LSDB-scaled**: a 1,000-router LSDB as one router holds it
//!    (`routing::sim::mesh_lsdb`, average degree 4), with what the agent
//!    keeps beside it: the RIB from SPF, the route table and the map
//!    writer's shadow (`meshfwd::fib::plan::Planner`), two prefixes per
//!    router as the agent advertises. The heap growth over the same built
//!    for 8 routers is added to the idle RSS measured in the lab. The
//!    per-second work of an idle agent (the OSPF snapshot: the LSDB
//!    summarised and the RIB copied) is timed on that LSDB too.
//!
//! Goals: under 30 MB RSS and under 1% of a core at idle.
//!
//! Usage: `agent_idle [--json] [--idle-secs N] [--meshfwd PATH]`; JSON also
//! under `bench/results/agent_idle.json`.

use std::{
    collections::BTreeSet,
    hint::black_box,
    net::Ipv6Addr,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use anyhow::{Context as _, Result};
use bench::agents::{Answers as _, CONVERGE, Mesh, meshfwd_bin, wait_until};
use ipnet::Ipv6Net;
use lab::{Lab, Topology, Wire};
use meshfwd::api::{NodeInfo, ProcessStats, Query};
use meshfwd::fib::{NextHopKey, RouteTable, plan::Planner};
use routing::sim::{mesh_lsdb, router_id};
use serde::Serialize;

const NODES: usize = 8;
const CHORDS: [(usize, usize); 2] = [(1, 4), (6, 0)];
const RSS_GOAL_KB: u64 = 30 * 1024;
const CPU_GOAL_PCT: f64 = 1.0;

#[derive(Debug, Serialize)]
struct AgentSample {
    node: String,
    rss_kb: u64,
    peak_rss_kb: u64,
    cpu_pct: f64,
}

#[derive(Debug, Serialize)]
struct Scaled {
    routers: usize,
    lsas: usize,
    routes: usize,
    /// Heap growth for the LSDB, RIB, route table and writer shadow.
    state_kb: u64,
    /// The same for the 8-router mesh.
    state_kb_8: u64,
    /// Idle RSS in the lab plus the difference.
    estimated_rss_kb: u64,
    /// One idle tick's snapshot work on this LSDB.
    tick_us: f64,
    /// That work once a second, plus the lab's idle CPU.
    estimated_cpu_pct: f64,
    met_rss_goal: bool,
    met_cpu_goal: bool,
}

#[derive(Debug, Serialize)]
struct Report {
    idle_secs: u64,
    agents: Vec<AgentSample>,
    max_rss_kb: u64,
    max_cpu_pct: f64,
    met_rss_goal: bool,
    met_cpu_goal: bool,
    scaled: Scaled,
    unix_time: u64,
    command: String,
}

fn main() {
    if let Err(err) = run() {
        eprintln!("agent_idle: error: {err:#}");
        std::process::exit(1);
    }
}

/// The agent's memory and CPU at idle in an 8-node lab, and scaled to a
/// 1,000-router LSDB.
#[derive(Debug, clap::Parser)]
struct Args {
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
    /// Seconds to watch the idle agents.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(5..=600))]
    idle_secs: u64,
    /// The agent binary (default: $MESHFWD_BIN, next to this one, or built).
    #[arg(long)]
    meshfwd: Option<std::path::PathBuf>,
}

fn run() -> Result<()> {
    let Args {
        json,
        idle_secs,
        meshfwd: bin,
    } = <Args as clap::Parser>::parse();

    // The scaled figure first, in this process, before the lab adds noise.
    eprintln!("agent_idle: the agent's state for 8 and for 1,000 routers");
    let (state_kb_8, _, _, _, _) = scaled_state(NODES)?;
    let (state_kb, lsas, routes, tick_us, routers) = scaled_state(1_000)?;

    let bin = meshfwd_bin(bin)?;
    let topo = Topology::ring_with_chords(NODES, &CHORDS, Wire::Direct);
    eprintln!("agent_idle: building the 8-node lab mesh");
    let lab = Lab::build("idle", &topo)?;
    let mut m = Mesh::new(lab, bin);
    let names = topo.nodes.clone();
    for n in &names {
        m.start(n, &[])?;
    }
    let addrs: Vec<Ipv6Addr> = names
        .iter()
        .map(|n| m.node_address(n))
        .collect::<Result<_>>()?;
    eprintln!("agent_idle: waiting until every node reaches every other");
    for n in &names {
        for a in &addrs {
            m.lab.node(n).wait_ping6(*a, None, CONVERGE)?;
        }
    }
    // Let SPF back-off and flooding of the start settle.
    std::thread::sleep(Duration::from_secs(5));
    let pids: Vec<(String, u32)> = names
        .iter()
        .map(|n| {
            Ok((
                n.clone(),
                m.pid(n)
                    .with_context(|| format!("no pid for {n}'s agent"))?,
            ))
        })
        .collect::<Result<_>>()?;
    let usage = |n: &str, pid: u32| {
        i32::try_from(pid)
            .ok()
            .and_then(|pid| ProcessStats::read(Some(pid)))
            .with_context(|| format!("{n}'s agent is gone"))
    };
    let start: Vec<ProcessStats> = pids
        .iter()
        .map(|(n, p)| usage(n, *p))
        .collect::<Result<_>>()?;
    eprintln!("agent_idle: idle for {idle_secs} s");
    let t0 = Instant::now();
    std::thread::sleep(Duration::from_secs(idle_secs));
    let secs = t0.elapsed().as_secs_f64();
    let mut agents = Vec::new();
    for ((n, p), before) in pids.iter().zip(&start) {
        let now = usage(n, *p)?;
        agents.push(AgentSample {
            node: n.clone(),
            rss_kb: now.rss_kb.unwrap_or(0),
            peak_rss_kb: now.hwm_kb.unwrap_or(0),
            cpu_pct: now.cpu_ms.saturating_sub(before.cpu_ms) as f64 / 10.0 / secs,
        });
    }
    wait_until("agents still answering", Duration::from_secs(5), || {
        m.show::<NodeInfo>(&names[0], Query::Node).is_some()
    })?;
    drop(m);

    let max_rss_kb = agents.iter().map(|a| a.rss_kb).max().unwrap_or(0);
    let max_cpu_pct = agents.iter().map(|a| a.cpu_pct).fold(0.0, f64::max);
    let estimated_rss_kb = max_rss_kb + state_kb.saturating_sub(state_kb_8);
    let estimated_cpu_pct = max_cpu_pct + tick_us / 1e6 * 100.0;
    let report = Report {
        idle_secs,
        met_rss_goal: max_rss_kb <= RSS_GOAL_KB,
        met_cpu_goal: max_cpu_pct <= CPU_GOAL_PCT,
        agents,
        max_rss_kb,
        max_cpu_pct,
        scaled: Scaled {
            routers,
            lsas,
            routes,
            state_kb,
            state_kb_8,
            estimated_rss_kb,
            tick_us,
            estimated_cpu_pct,
            met_rss_goal: estimated_rss_kb <= RSS_GOAL_KB,
            met_cpu_goal: estimated_cpu_pct <= CPU_GOAL_PCT,
        },
        unix_time: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
        command: std::env::args().collect::<Vec<_>>().join(" "),
    };
    let text = serde_json::to_string_pretty(&report)?;
    let dir = bench::results_dir();
    std::fs::create_dir_all(&dir)?;
    std::fs::write(dir.join("agent_idle.json"), format!("{text}\n"))?;
    eprintln!(
        "agent_idle: wrote {}",
        dir.join("agent_idle.json").display()
    );
    if json {
        println!("{text}");
        return Ok(());
    }
    let goal = |ok: bool| if ok { "met" } else { "MISSED" };
    println!(
        "{:<6} {:>10} {:>10} {:>8}",
        "agent", "RSS kB", "peak kB", "CPU %"
    );
    for a in &report.agents {
        println!(
            "{:<6} {:>10} {:>10} {:>8.3}",
            a.node, a.rss_kb, a.peak_rss_kb, a.cpu_pct
        );
    }
    println!(
        "8-node lab, idle {idle_secs} s: max RSS {:.1} MB (goal 30 MB: {}), max CPU {:.3}% of a core (goal 1%: {})",
        max_rss_kb as f64 / 1024.0,
        goal(report.met_rss_goal),
        max_cpu_pct,
        goal(report.met_cpu_goal)
    );
    let s = &report.scaled;
    println!(
        "1,000-router LSDB ({} LSAs, {} routes): +{:.1} MB of state -> about {:.1} MB RSS ({}); \
         idle tick {:.0} us -> about {:.3}% CPU ({})",
        s.lsas,
        s.routes,
        (s.state_kb.saturating_sub(s.state_kb_8)) as f64 / 1024.0,
        s.estimated_rss_kb as f64 / 1024.0,
        goal(s.met_rss_goal),
        s.tick_us,
        s.estimated_cpu_pct,
        goal(s.met_cpu_goal)
    );
    Ok(())
}

/// Build what the agent holds for an `n`-router mesh and return (heap
/// growth in kB, LSAs, routes, one idle tick's work in µs, routers).
fn scaled_state(n: usize) -> Result<(u64, usize, usize, f64, usize)> {
    let before = self_rss_kb();
    let lsdb = mesh_lsdb(n, 4, 1);
    let rib = routing::spf::compute(&lsdb, router_id(0), 16, &|_, _| None);
    // Two prefixes per router (pod /64 and node /128), as the agent
    // advertises, over the first hops SPF found.
    let mut table = RouteTable::default();
    for (p, r) in &rib.routes {
        let hops: BTreeSet<NextHopKey> = r
            .nexthops
            .iter()
            .map(|h| NextHopKey {
                ifindex: h.ifindex,
                via: fake_ll(h.ifindex),
            })
            .collect();
        table.route(*p, hops.iter().copied());
        table.route(Ipv6Net::from(host(p.addr())), hops);
    }
    let mut planner = Planner::new();
    let ops = planner.plan(&table).context("planning the table")?;
    let after = self_rss_kb();
    // The idle tick: the agent's OSPF sample (`routing::state::Summary`)
    // gathers the advertising routers and our own LSAs' sequence numbers
    // in one pass over the LSDB.
    let rounds = 20;
    let t = Instant::now();
    for _ in 0..rounds {
        let mut routers = BTreeSet::new();
        let mut seqs = 0u64;
        for (_, e) in lsdb.iter() {
            routers.insert(e.lsa.header.adv_router);
            seqs += u64::from(e.lsa.header.seq);
        }
        black_box((routers, seqs));
    }
    let tick_us = t.elapsed().as_secs_f64() * 1e6 / f64::from(rounds);
    let lsas = lsdb.len();
    let routes = table.routes.len();
    black_box((&lsdb, &rib, &planner, ops.len()));
    Ok((after.saturating_sub(before), lsas, routes, tick_us, n))
}

fn fake_ll(ifindex: u32) -> Ipv6Addr {
    Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, ifindex as u16)
}

fn host(net: Ipv6Addr) -> Ipv6Addr {
    Ipv6Addr::from(u128::from(net) | 1)
}

fn self_rss_kb() -> u64 {
    ProcessStats::read(None).and_then(|p| p.rss_kb).unwrap_or(0)
}
