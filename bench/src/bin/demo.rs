//! The demo (`cargo xtask demo`): kubermesh at work in a lab of network
//! namespaces.
//!
//! Eight nodes cabled as a ring with two chords (every node has 2 or 3
//! links, and there are equal-cost paths), one `meshfwd agent` per node
//! and nothing configured by hand. The demo shows, with progress lines and
//! a final summary:
//!
//! 1. every adjacency coming up by itself;
//! 2. every node reaching every other node's /128 (pings: ICMP, which the
//!    fast path leaves to the kernel, as conntrack cannot vouch for it);
//! 3. a cable pulled (loud cut) under a 5,000 packets-per-second UDP flow
//!    (iperf3) that a transit node forwards over one of two equal-cost
//!    paths, and the loss measured; XDP forwards the flow once conntrack
//!    has accepted its first packet (the `redirect` counters);
//! 4. the same with a silent cut (frames dropped, carrier up), caught by
//!    BFD (10 ms x 3, every agent runs it with every neighbour);
//! 5. a new node plugged into one neighbour, timed to full reachability;
//! 6. a third of the nodes powered off, the survivors still reaching each
//!    other.
//!
//! Then the lab is torn down (or kept with `--keep`). The agents run on
//! the shared harness (`bench::agents`) and are read through the typed
//! answers of `meshfwd::api`.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::Ipv6Addr,
    path::PathBuf,
    process::{Child, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};
use bench::agents::{Answers as _, CONVERGE, Mesh, meshfwd_bin, wait_for};
use ipnet::Ipv6Net;
use lab::{Lab, Topology, Wire};
use meshfwd::api::{NodeInfo, Query, RouteRow};
use routing::{neighbor::nsm, state::NeighborState};

/// kubermesh at work: an 8-node lab that joins, forwards in XDP and heals.
#[derive(Debug, clap::Parser)]
struct Options {
    /// Keep the lab running until Ctrl-C instead of tearing it down.
    #[arg(long)]
    keep: bool,
    /// The agent binary (default: $MESHFWD_BIN, next to this one, or built).
    #[arg(long)]
    meshfwd: Option<PathBuf>,
}

const NODES: usize = 8;
/// Chords across the ring: the mesh gets equal-cost paths through transit
/// nodes (n1 and n4 reach n3 and n2 two ways).
const CHORDS: [(usize, usize); 2] = [(1, 4), (6, 0)];
/// The probe flow: small UDP datagrams at a steady rate (one lost = 0.2 ms).
const PROBE_PPS: u64 = 5_000;
const PROBE_LEN: u64 = 64;

struct Demo {
    mesh: Mesh,
    started: Instant,
}

/// What the summary reports.
#[derive(Default)]
struct Summary {
    adjacencies: String,
    reachability: String,
    xdp_forwarded: u64,
    loud: Option<(String, u64, f64)>,
    silent: Option<(String, u64, f64)>,
    join_ms: Option<f64>,
    third: Option<(Vec<String>, usize, f64)>,
}

/// Every agent runs BFD with its neighbours at 10 ms x 3.
const BFD_ARGS: &[&str] = &["--bfd", "--bfd-interval-ms", "10", "--bfd-multiplier", "3"];

fn main() {
    let opts = <Options as clap::Parser>::parse();
    if let Err(err) = run(&opts) {
        eprintln!("demo: error: {err:#}");
        std::process::exit(1);
    }
}

/// Run the demo.
fn run(opts: &Options) -> Result<()> {
    let started = Instant::now();
    let bin = meshfwd_bin(opts.meshfwd.clone())?;

    let topo = Topology::ring_with_chords(NODES, &CHORDS, Wire::Cable);
    say(
        started,
        &format!(
            "building a partial mesh of {} nodes and {} cables (a ring with two chords) in network namespaces",
            topo.nodes.len(),
            topo.links.len()
        ),
    );
    let lab = Lab::build("mesh", &topo)?;
    let mut d = Demo {
        mesh: Mesh::new(lab, bin),
        started,
    };
    let mut sum = Summary::default();

    say(
        started,
        "starting one `meshfwd agent` per node (no per-node configuration)",
    );
    for n in &topo.nodes {
        d.mesh.start(n, BFD_ARGS)?;
    }
    let names: Vec<String> = topo.nodes.clone();
    for n in &names {
        d.wait_answering(n)?;
    }
    for n in &names {
        let node: NodeInfo = d.mesh.show(n, Query::Node).context("node summary")?;
        println!(
            "    {n:<3} router id {:<16} pod prefix {:<26} address {}",
            node.router_id.to_string(),
            node.pod_prefix.to_string(),
            node.node_address
        );
    }

    // 1. Adjacencies.
    let want = 2 * topo.links.len();
    say(
        started,
        &format!(
            "waiting for all {want} OSPF adjacencies (both ends of {} cables)",
            topo.links.len()
        ),
    );
    let t = Instant::now();
    wait(CONVERGE, || d.full_adjacencies(&names) == want).with_context(|| {
        format!(
            "only {} of {want} adjacencies Full",
            d.full_adjacencies(&names)
        )
    })?;
    sum.adjacencies = format!(
        "{want}/{want} Full after {:.1} s",
        t.elapsed().as_secs_f64()
    );
    println!("    {}", sum.adjacencies);

    // 2. Reachability. Pings are ICMP, which conntrack cannot vouch for,
    // so transit kernels forward them; XDP takes the UDP probe flows below.
    say(started, "every node pings every other node's /128");
    let pairs = d.reach_all(&names, CONVERGE)?;
    sum.reachability = format!("{pairs}/{pairs} node pairs");
    println!("    {pairs} of {pairs} pairs answered");

    // 3 and 4. Cuts under an equal-cost flow.
    // Routes may still be settling after the first pings: look a few times.
    let mut flow = None;
    let deadline = Instant::now() + Duration::from_secs(20);
    while flow.is_none() && Instant::now() < deadline {
        flow = d.find_ecmp_flow(&names);
        if flow.is_none() {
            std::thread::sleep(Duration::from_millis(500));
        }
    }
    match flow {
        Some(flow) => {
            say(
                started,
                &format!(
                    "probe flow {} -> {}: {} forwards it over two equal-cost paths (via {})",
                    flow.src,
                    flow.dst,
                    flow.transit,
                    flow.members.join(" and ")
                ),
            );
            wait(CONVERGE, || d.bfd_up(&flow.transit))
                .context("the transit node's BFD sessions did not come Up")?;
            let before = d.xdp_redirects(&names);
            sum.loud = Some(d.cut_run(&flow, false)?);
            sum.xdp_forwarded = d.xdp_redirects(&names) - before;
            if sum.xdp_forwarded == 0 {
                bail!("no packet of the probe flow was forwarded by the XDP fast path");
            }
            let (link, lost, ms) = sum.loud.clone().expect("just set");
            println!(
                "    loud cut of {link}: {lost} packets lost = {ms:.0} ms without connectivity; {} transit packets forwarded by XDP",
                sum.xdp_forwarded
            );
            sum.silent = Some(d.cut_run(&flow, true)?);
            let (link, lost, ms) = sum.silent.clone().expect("just set");
            println!(
                "    silent cut of {link}: {lost} packets lost = {ms:.0} ms (BFD at 10 ms x 3 took the path down)"
            );
        }
        None => println!("    (no transit node with equal-cost paths found; cuts skipped)"),
    }

    // 5. A new node.
    say(
        started,
        "plugging a new node n8 into n3 (its agent was already running)",
    );
    d.mesh.lab.add_node("n8")?;
    d.mesh.start("n8", BFD_ARGS)?;
    d.wait_answering("n8")?;
    std::thread::sleep(Duration::from_secs(3));
    let targets: Vec<(String, Ipv6Addr)> = names
        .iter()
        .map(|n| Ok((n.clone(), d.node_address(n)?)))
        .collect::<Result<_>>()?;
    d.mesh.lab.add_link("n8", "n3", Wire::Cable)?;
    let t = Instant::now();
    d.wait_reaches("n8", &targets, CONVERGE)?;
    let ms = t.elapsed().as_secs_f64() * 1000.0;
    sum.join_ms = Some(ms);
    println!(
        "    n8 exchanged pings with all {} nodes {ms:.0} ms after its cable came up",
        targets.len()
    );

    // 6. A third of the nodes off.
    let mut all = names.clone();
    all.push("n8".into());
    let mut links: Vec<(String, String)> = topo
        .links
        .iter()
        .map(|l| (l.a.clone(), l.b.clone()))
        .collect();
    links.push(("n8".into(), "n3".into()));
    let third = all.len() / 3;
    let victims = pick_victims(&all, &links, third)
        .context("no third of the mesh can go without splitting it")?;
    say(
        started,
        &format!(
            "powering off {} of {} nodes: {}",
            victims.len(),
            all.len(),
            victims.join(", ")
        ),
    );
    for v in &victims {
        d.mesh
            .lab
            .node(v)
            .kill(d.mesh.agent(v).context("an agent on every node")?)?;
    }
    for (a, b) in links
        .iter()
        .filter(|(a, b)| victims.contains(a) || victims.contains(b))
    {
        d.mesh.lab.cut_loud(a, b)?;
    }
    let survivors: Vec<String> = all
        .iter()
        .filter(|n| !victims.contains(n))
        .cloned()
        .collect();
    let t = Instant::now();
    let pairs = d.reach_all(&survivors, CONVERGE)?;
    let secs = t.elapsed().as_secs_f64();
    println!(
        "    the {} survivors reach each other: all {pairs} pairs answered within {secs:.1} s of the power cut",
        survivors.len()
    );
    sum.third = Some((victims, survivors.len(), secs));

    summary(&sum);
    if opts.keep {
        println!(
            "lab kept running: `meshfwd --socket {}/<node>.sock show neighbors` and friends work; \
             press Ctrl-C to tear it down.",
            d.mesh.lab.work_dir().display()
        );
        loop {
            std::thread::sleep(Duration::from_secs(3600));
        }
    }
    say(started, "tearing the lab down");
    drop(d);
    Ok(())
}

fn summary(sum: &Summary) {
    println!("\nsummary");
    println!("  adjacencies        {}", sum.adjacencies);
    println!("  reachability       {} (every /128)", sum.reachability);
    println!(
        "  XDP                {} transit packets of the probe flow forwarded (its first went through conntrack)",
        sum.xdp_forwarded
    );
    for (what, r) in [("loud cut", &sum.loud), ("silent cut", &sum.silent)] {
        match r {
            Some((link, lost, ms)) => {
                println!("  {what:<18} {link}: {lost} probes lost, {ms:.0} ms to recover")
            }
            None => println!("  {what:<18} skipped"),
        }
    }
    if let Some(ms) = sum.join_ms {
        println!("  new node           reached everyone {ms:.0} ms after its first link came up");
    }
    if let Some((victims, n, secs)) = &sum.third {
        println!(
            "  a third off        {} down; {n} survivors all reached each other within {secs:.1} s",
            victims.join(", ")
        );
    }
}

fn say(started: Instant, what: &str) {
    println!("[{:6.1}s] {what}", started.elapsed().as_secs_f64());
}

fn wait(timeout: Duration, f: impl FnMut() -> bool) -> Result<()> {
    bench::agents::wait_until("the mesh", timeout, f)
}

/// A flow whose transit node has two equal-cost next hops.
struct Flow {
    src: String,
    transit: String,
    dst: String,
    members: Vec<String>,
}

impl Demo {
    /// Whether every BFD session of `node` is Up at the fast timers.
    fn bfd_up(&self, node: &str) -> bool {
        self.mesh
            .show::<meshfwd::api::BfdReport>(node, Query::Bfd)
            .is_some_and(|r| {
                !r.sessions.is_empty()
                    && r.sessions
                        .iter()
                        .all(|s| s.state == routing::bfd::State::Up && s.tx_interval_us == 10_000)
            })
    }

    fn wait_answering(&self, node: &str) -> Result<()> {
        wait_for(CONVERGE, || self.mesh.show::<NodeInfo>(node, Query::Node)).with_context(
            || {
                format!(
                    "the agent on {node} does not answer; its log:\n{}",
                    self.mesh.log(node)
                )
            },
        )?;
        Ok(())
    }

    fn node_address(&self, node: &str) -> Result<Ipv6Addr> {
        self.mesh.node_address(node)
    }

    fn full_adjacencies(&self, nodes: &[String]) -> usize {
        nodes
            .iter()
            .filter_map(|n| self.mesh.show::<Vec<NeighborState>>(n, Query::Neighbors))
            .map(|v| v.iter().filter(|x| x.state == nsm::State::Full).count())
            .sum()
    }

    fn xdp_redirects(&self, nodes: &[String]) -> u64 {
        nodes.iter().map(|n| self.redirects(n)).sum()
    }

    fn redirects(&self, node: &str) -> u64 {
        self.mesh.xdp_redirects(node)
    }

    fn ping_once(&self, from: &str, dst: Ipv6Addr, wait_s: &str) -> bool {
        self.mesh
            .lab
            .node(from)
            .cmd("ping")
            .args(["-6", "-n", "-q", "-c", "1", "-W", wait_s, &dst.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    /// Ping every ordered pair until each has answered once; return the
    /// number of pairs.
    fn reach_all(&self, nodes: &[String], timeout: Duration) -> Result<usize> {
        let addrs: Vec<(String, Ipv6Addr)> = nodes
            .iter()
            .map(|n| Ok((n.clone(), self.node_address(n)?)))
            .collect::<Result<_>>()?;
        let mut todo: BTreeSet<(usize, usize)> = (0..nodes.len())
            .flat_map(|a| {
                (0..nodes.len())
                    .filter(move |b| *b != a)
                    .map(move |b| (a, b))
            })
            .collect();
        let pairs = todo.len();
        let deadline = Instant::now() + timeout;
        while !todo.is_empty() {
            if Instant::now() > deadline {
                let (a, b) = todo.first().copied().expect("not empty");
                bail!(
                    "{} cannot reach {} ({}) after {timeout:?}",
                    nodes[a],
                    nodes[b],
                    addrs[b].1
                );
            }
            let round: Vec<(usize, usize)> = todo.iter().copied().collect();
            for (a, b) in round {
                if self.ping_once(&nodes[a], addrs[b].1, "1") {
                    todo.remove(&(a, b));
                }
            }
        }
        Ok(pairs)
    }

    /// Wait until `from` has exchanged a ping with every target.
    fn wait_reaches(
        &self,
        from: &str,
        targets: &[(String, Ipv6Addr)],
        timeout: Duration,
    ) -> Result<()> {
        let mut todo: Vec<&(String, Ipv6Addr)> = targets.iter().collect();
        let deadline = Instant::now() + timeout;
        while !todo.is_empty() {
            if Instant::now() > deadline {
                bail!("{from} cannot reach {} after {timeout:?}", todo[0].0);
            }
            todo.retain(|(_, addr)| !self.ping_once(from, *addr, "0.2"));
        }
        Ok(())
    }

    /// The interfaces (hence neighbours: links are named `m-<peer>`) of
    /// the route to `prefix` in `routes`.
    fn route_peers(&self, routes: &[RouteRow], prefix: &Ipv6Net) -> Vec<String> {
        routes
            .iter()
            .find(|r| r.prefix == *prefix)
            .map(|r| {
                r.next_hops
                    .iter()
                    .filter_map(|x| x.iface.as_deref()?.strip_prefix("m-"))
                    .map(String::from)
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Find S -> T -> D where T has two equal-cost next hops to D and S
    /// reaches D only through T: S's flow crosses T's fast-path ECMP.
    fn find_ecmp_flow(&self, nodes: &[String]) -> Option<Flow> {
        let routes: BTreeMap<&String, Vec<RouteRow>> = nodes
            .iter()
            .filter_map(|n| Some((n, self.mesh.show(n, Query::Routes)?)))
            .collect();
        for dst in nodes {
            let prefix = Ipv6Net::from(self.node_address(dst).ok()?);
            for transit in nodes.iter().filter(|t| *t != dst) {
                let members = self.route_peers(routes.get(transit)?, &prefix);
                if members.len() < 2 {
                    continue;
                }
                for src in nodes
                    .iter()
                    .filter(|s| *s != dst && *s != transit && !members.contains(s))
                {
                    let via = self.route_peers(routes.get(src)?, &prefix);
                    if via == [transit.clone()] {
                        return Some(Flow {
                            src: src.clone(),
                            transit: transit.clone(),
                            dst: dst.clone(),
                            members: members.into_iter().take(2).collect(),
                        });
                    }
                }
            }
        }
        None
    }

    /// Send the probe flow S -> D, cut the member it takes, report the
    /// loss.
    fn cut_run(&self, flow: &Flow, silent: bool) -> Result<(String, u64, f64)> {
        let dst = self.node_address(&flow.dst)?;
        let secs = if silent { 8 } else { 4 };
        let mut server = self
            .mesh
            .lab
            .node(&flow.dst)
            .cmd("iperf3")
            .args(["-s", "-1", "-p", "5201", "-B", &dst.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting iperf3 -s")?;
        std::thread::sleep(Duration::from_millis(300));
        let bitrate = format!("{}", PROBE_PPS * PROBE_LEN * 8);
        let mut client = self
            .mesh
            .lab
            .node(&flow.src)
            .cmd("iperf3")
            .args([
                "-c",
                &dst.to_string(),
                "-p",
                "5201",
                "-u",
                "-l",
                &PROBE_LEN.to_string(),
                "-b",
                &bitrate,
            ])
            .args(["-t", &secs.to_string(), "-J"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .context("starting iperf3 -c")?;
        std::thread::sleep(Duration::from_millis(1500));
        let before: Vec<u64> = flow.members.iter().map(|m| self.redirects(m)).collect();
        std::thread::sleep(Duration::from_millis(500));
        let grew: Vec<u64> = flow
            .members
            .iter()
            .zip(&before)
            .map(|(m, b)| self.redirects(m).saturating_sub(*b))
            .collect();
        let member = if grew[0] >= grew[1] {
            &flow.members[0]
        } else {
            &flow.members[1]
        };
        let link = format!("{}-{member}", flow.transit);
        say(
            self.started,
            &format!(
                "{} cut of {link}, the cable the flow uses",
                if silent { "silent" } else { "loud" }
            ),
        );
        if silent {
            self.mesh.lab.cut_silent(&flow.transit, member)?;
        } else {
            self.mesh.lab.cut_loud(&flow.transit, member)?;
        }
        let out = finish(&mut client, Duration::from_secs(secs + 15));
        let _ = server.kill();
        let _ = server.wait();
        self.mesh.lab.restore(&flow.transit, member)?;
        let out = out?;
        let (_, lost) = parse_iperf(&out).with_context(|| format!("iperf3 output: {out}"))?;
        // Let the mesh settle again (both paths back).
        let prefix = Ipv6Net::from(dst);
        wait(CONVERGE, || {
            self.mesh
                .show::<Vec<RouteRow>>(&flow.transit, Query::Routes)
                .is_some_and(|r| self.route_peers(&r, &prefix).len() >= 2)
        })
        .context("the equal-cost paths did not come back")?;
        wait(CONVERGE, || self.bfd_up(&flow.transit))
            .context("the BFD sessions did not come back")?;
        Ok((link, lost, lost as f64 * 1000.0 / PROBE_PPS as f64))
    }
}

/// Wait for a child (bounded) and return its stdout.
fn finish(child: &mut Child, timeout: Duration) -> Result<String> {
    lab::process::wait_child(child, timeout, Duration::from_millis(50))?
        .context("the probe flow did not finish")?;
    let mut out = String::new();
    if let Some(mut o) = child.stdout.take() {
        std::io::Read::read_to_string(&mut o, &mut out)?;
    }
    Ok(out)
}

/// Read (packets, lost packets) from `iperf3 -u -J` output.
fn parse_iperf(out: &str) -> Option<(u64, u64)> {
    let v: serde_json::Value = serde_json::from_str(out).ok()?;
    let sum = &v["end"]["sum"];
    Some((sum["packets"].as_u64()?, sum["lost_packets"].as_u64()?))
}

/// Pick `k` nodes whose removal leaves the rest connected.
fn pick_victims(nodes: &[String], links: &[(String, String)], k: usize) -> Option<Vec<String>> {
    fn connected(alive: &BTreeSet<&String>, links: &[(String, String)]) -> bool {
        let Some(start) = alive.iter().next() else {
            return true;
        };
        let mut seen: BTreeSet<&String> = [*start].into();
        let mut todo = vec![*start];
        while let Some(n) = todo.pop() {
            for (a, b) in links {
                let other = if a == n {
                    b
                } else if b == n {
                    a
                } else {
                    continue;
                };
                if alive.contains(other) && seen.insert(other) {
                    todo.push(other);
                }
            }
        }
        seen.len() == alive.len()
    }
    let n = nodes.len();
    // Spread the victims out: try combinations in order, first fit wins.
    let mut idx: Vec<usize> = (0..k).collect();
    loop {
        let dead: BTreeSet<&String> = idx.iter().map(|i| &nodes[*i]).collect();
        let alive: BTreeSet<&String> = nodes.iter().filter(|x| !dead.contains(x)).collect();
        if connected(&alive, links) {
            return Some(idx.iter().map(|i| nodes[*i].clone()).collect());
        }
        // Next combination.
        let mut i = k;
        loop {
            if i == 0 {
                return None;
            }
            i -= 1;
            if idx[i] < n - k + i {
                idx[i] += 1;
                for j in i + 1..k {
                    idx[j] = idx[j - 1] + 1;
                }
                break;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iperf_summary_parses() {
        let out =
            r#"{"end": {"sum": {"packets": 20000, "lost_packets": 15, "lost_percent": 0.075}}}"#;
        assert_eq!(parse_iperf(out), Some((20000, 15)));
    }

    #[test]
    fn victims_leave_the_rest_connected() {
        let nodes: Vec<String> = (0..6).map(|i| format!("n{i}")).collect();
        let links: Vec<(String, String)> = (0..6)
            .map(|i| (format!("n{i}"), format!("n{}", (i + 1) % 6)))
            .collect();
        let v = pick_victims(&nodes, &links, 2).unwrap();
        // In a ring, two adjacent nodes can go.
        assert_eq!(v, vec!["n0".to_string(), "n1".to_string()]);
    }
}
