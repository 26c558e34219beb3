//! The demo (`cargo xtask demo`): kubermesh at work in a lab of network
//! namespaces.
//!
//! Eight nodes cabled as a ring with two chords (every node has 2 or 3
//! links, and there are equal-cost paths), one `meshfwd agent` per node,
//! dual-stack (`--ipv4-cluster-prefix`, the same on every node), and
//! nothing configured per node. The demo shows, with progress lines and
//! a final summary:
//!
//! 1. every adjacency coming up by itself;
//! 2. every node reaching every other node's /128 and /32 (pings: ICMP,
//!    which the fast path leaves to the kernel, as conntrack cannot vouch
//!    for it), then a TCP echo between every ordered pair in each family,
//!    whose transit frames XDP forwards (the `redirect` counters, against
//!    the kernels' forwarding counters);
//! 3. a cable pulled (loud cut) under a 5,000 packets-per-second UDP flow
//!    (iperf3) that a transit node forwards over one of two equal-cost
//!    paths, and the loss measured; XDP forwards the flow once conntrack
//!    has accepted its first packet (the `redirect` counters);
//! 4. the same with a silent cut (frames dropped, carrier up), caught by
//!    BFD (10 ms x 3, every agent runs it with every neighbour);
//! 5. a new node plugged into one neighbour, timed to full reachability
//!    in each family;
//! 6. a third of the nodes powered off, the survivors still reaching each
//!    other.
//!
//! Then the lab is torn down (or kept with `--keep`). The agents run on
//! the shared harness (`bench::agents`) and are read through the typed
//! answers of `meshfwd::api`.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::{IpAddr, Ipv6Addr},
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
    /// Per family: (pairs, frames XDP forwarded, packets kernels forwarded).
    echo: Vec<(&'static str, usize, u64, u64)>,
    xdp_forwarded: u64,
    loud: Option<(String, u64, f64)>,
    silent: Option<(String, u64, f64)>,
    /// Per family: ms until the new node reached every address.
    join_ms: Vec<(&'static str, f64)>,
    third: Option<(Vec<String>, usize, f64)>,
}

/// Every agent runs BFD with its neighbours at 10 ms x 3, and IPv4 pods
/// in the lab's IPv4 space.
const AGENT_ARGS: &[&str] = &[
    "--bfd",
    "--bfd-interval-ms",
    "10",
    "--bfd-multiplier",
    "3",
    "--ipv4-cluster-prefix",
    "198.18.0.0/15",
];
/// Bytes each TCP echo of step 2 sends (and gets back).
const ECHO_BYTES: usize = 32 * 1024;

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
        d.mesh.start(n, AGENT_ARGS)?;
    }
    let names: Vec<String> = topo.nodes.clone();
    for n in &names {
        d.wait_answering(n)?;
    }
    for n in &names {
        let node: NodeInfo = d.mesh.show(n, Query::Node).context("node summary")?;
        let v4 = d.mesh.node_state(n)?.ipv4.context("the agent runs IPv4")?;
        println!(
            "    {n:<3} router id {:<16} pod prefixes {:<26} {:<18} addresses {} {}",
            node.router_id.to_string(),
            node.pod_prefix.to_string(),
            v4.pod_prefix.to_string(),
            node.node_address,
            v4.node_address
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
    say(started, "every node pings every other node's /128 and /32");
    let pairs = d.reach_all(&names, CONVERGE)?;
    sum.reachability = format!("{pairs}/{pairs} node pairs");
    println!("    {pairs} of {pairs} pairs answered in both families");
    for family in [Family::V6, Family::V4] {
        say(
            started,
            &format!(
                "a TCP echo of {} KiB between every ordered pair over {}",
                ECHO_BYTES / 1024,
                family.name()
            ),
        );
        let (n, xdp, kernel) = d.echo_all(&names, family)?;
        println!(
            "    {n} of {n} pairs echoed; transit frames forwarded by XDP: {xdp}, by the kernels: {kernel} (the segments that open and close each connection, which conntrack must see)"
        );
        sum.echo.push((family.name(), n, xdp, kernel));
    }

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
    d.mesh.start("n8", AGENT_ARGS)?;
    d.wait_answering("n8")?;
    std::thread::sleep(Duration::from_secs(3));
    let targets: Vec<(String, IpAddr)> = names
        .iter()
        .map(|n| Ok(d.addresses(n)?.into_iter().map(|a| (n.clone(), a))))
        .collect::<Result<Vec<_>>>()?
        .into_iter()
        .flatten()
        .collect();
    d.mesh.lab.add_link("n8", "n3", Wire::Cable)?;
    sum.join_ms = d.wait_reaches("n8", &targets, CONVERGE)?;
    for (family, ms) in &sum.join_ms {
        println!(
            "    n8 exchanged pings with all {} nodes over {family} {ms:.0} ms after its cable came up",
            names.len()
        );
    }

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
    println!(
        "  reachability       {} (every /128 and every /32)",
        sum.reachability
    );
    for (family, n, xdp, kernel) in &sum.echo {
        println!(
            "  TCP over {family:<8} {n} pairs; transit frames forwarded by XDP {xdp}, by the kernels {kernel}"
        );
    }
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
    for (family, ms) in &sum.join_ms {
        println!(
            "  new node           reached everyone over {family} {ms:.0} ms after its first link came up"
        );
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

/// An address family of the demo.
#[derive(Clone, Copy)]
enum Family {
    V6,
    V4,
}

impl Family {
    fn of(a: IpAddr) -> Self {
        if a.is_ipv4() { Family::V4 } else { Family::V6 }
    }

    /// Its place in [`Demo::addresses`].
    fn index(self) -> usize {
        match self {
            Family::V6 => 0,
            Family::V4 => 1,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Family::V6 => "IPv6",
            Family::V4 => "IPv4",
        }
    }
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

    /// Return a node's addresses: its /128 and its /32.
    fn addresses(&self, node: &str) -> Result<Vec<IpAddr>> {
        let state = self.mesh.node_state(node)?;
        let v4 = state.ipv4.context("the agent runs IPv4")?;
        Ok(vec![
            IpAddr::V6(state.node_address),
            IpAddr::V4(v4.node_address),
        ])
    }

    fn ping_once(&self, from: &str, dst: IpAddr, wait_s: &str) -> bool {
        let family = if dst.is_ipv4() { "-4" } else { "-6" };
        self.mesh
            .lab
            .node(from)
            .cmd("ping")
            .args([
                family,
                "-n",
                "-q",
                "-c",
                "1",
                "-W",
                wait_s,
                &dst.to_string(),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    /// Ping every address of every other node from every node until each
    /// has answered once; return the number of node pairs.
    fn reach_all(&self, nodes: &[String], timeout: Duration) -> Result<usize> {
        let addrs: Vec<Vec<IpAddr>> = nodes
            .iter()
            .map(|n| self.addresses(n))
            .collect::<Result<_>>()?;
        let mut todo: BTreeSet<(usize, usize, IpAddr)> = (0..nodes.len())
            .flat_map(|a| {
                (0..nodes.len())
                    .filter(move |b| *b != a)
                    .flat_map(move |b| (0..2).map(move |i| (a, b, i)))
            })
            .map(|(a, b, i)| (a, b, addrs[b][i]))
            .collect();
        let pairs = nodes.len() * (nodes.len() - 1);
        let deadline = Instant::now() + timeout;
        while !todo.is_empty() {
            if Instant::now() > deadline {
                let (a, b, addr) = todo.first().copied().expect("not empty");
                bail!(
                    "{} cannot reach {} ({addr}) after {timeout:?}",
                    nodes[a],
                    nodes[b]
                );
            }
            let round: Vec<_> = todo.iter().copied().collect();
            for (a, b, addr) in round {
                if self.ping_once(&nodes[a], addr, "1") {
                    todo.remove(&(a, b, addr));
                }
            }
        }
        Ok(pairs)
    }

    /// Run a TCP echo between every ordered pair of `nodes` over `family`;
    /// return (pairs, frames the nodes' XDP forwarded, packets their
    /// kernels forwarded) during it.
    fn echo_all(&self, nodes: &[String], family: Family) -> Result<(usize, u64, u64)> {
        let kernel = |n: &String| -> Result<u64> {
            let (v6, v4) = self.mesh.lab.node(n).kernel_forwarded()?;
            Ok(match family {
                Family::V6 => v6,
                Family::V4 => v4,
            })
        };
        let kernel_sum = || -> Result<u64> { nodes.iter().map(kernel).sum() };
        let (xdp_before, kernel_before) = (self.xdp_redirects(nodes), kernel_sum()?);
        let mut pairs = 0;
        for (a, from) in nodes.iter().enumerate() {
            for (b, to) in nodes.iter().enumerate().filter(|(b, _)| *b != a) {
                let dst = self.addresses(to)?[family.index()];
                let (lab_from, lab_to) = (self.mesh.lab.node(from), self.mesh.lab.node(to));
                lab_from
                    .tcp_echo(lab_to, dst, ECHO_BYTES, Duration::from_secs(10))
                    .with_context(|| format!("TCP echo {} -> {} ({dst})", nodes[a], nodes[b]))?;
                pairs += 1;
            }
        }
        Ok((
            pairs,
            self.xdp_redirects(nodes) - xdp_before,
            kernel_sum()? - kernel_before,
        ))
    }

    /// Wait until `from` has exchanged a ping with every target; return,
    /// per family, how long until its last target first answered (both
    /// families are pinged in the same rounds, so neither waits for the
    /// other).
    fn wait_reaches(
        &self,
        from: &str,
        targets: &[(String, IpAddr)],
        timeout: Duration,
    ) -> Result<Vec<(&'static str, f64)>> {
        let started = Instant::now();
        let mut todo: Vec<&(String, IpAddr)> = targets.iter().collect();
        let mut done = [Duration::ZERO; 2];
        let deadline = started + timeout;
        while !todo.is_empty() {
            if Instant::now() > deadline {
                bail!(
                    "{from} cannot reach {} ({}) after {timeout:?}",
                    todo[0].0,
                    todo[0].1
                );
            }
            todo.retain(|(_, addr)| {
                if self.ping_once(from, *addr, "0.2") {
                    let i = Family::of(*addr).index();
                    done[i] = done[i].max(started.elapsed());
                    false
                } else {
                    true
                }
            });
        }
        Ok([Family::V6, Family::V4]
            .into_iter()
            .map(|f| (f.name(), done[f.index()].as_secs_f64() * 1000.0))
            .collect())
    }

    /// The interfaces (hence neighbours: links are named `m-<peer>`) of
    /// the route to `prefix` in `routes`.
    fn route_peers(&self, routes: &[RouteRow], prefix: &Ipv6Net) -> Vec<String> {
        routes
            .iter()
            .find(|r| r.prefix == ipnet::IpNet::V6(*prefix))
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
