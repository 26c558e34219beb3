//! The pods benchmark: pod to pod across three mesh hops, the kubermesh
//! fast path against a baseline of the same lab with Debian's reference
//! `ptp` + `host-local` plugins and kernel routing.
//!
//! ```text
//!   pa ~ a --- b --- c --- d ~ pd       (~ a pod veth, --- a mesh link)
//! ```
//!
//! Both sides build the same line of four nodes with real agents on each:
//! - **fast**: agents with XDP, pods wired by `meshfwd-cni` (TCX on the pod
//!   veths);
//! - **baseline**: agents with `--no-xdp` (their routes go to the kernel
//!   FIB only), pods wired by `ptp` + `host-local` inside each node's pod
//!   prefix.
//!
//! Every node of both labs carries the rules kube-proxy writes (its
//! nftables mode by default, `--proxy-mode iptables` for the other), for
//! [`FILLER_SERVICES`] Services plus the two that front pod d's servers,
//! as on a real node: the fast path runs with its netfilter check on, and
//! every figure is taken pod to pod and again through a ClusterIP.
//!
//! Both labs are built first and stay up; the measurements then take turns
//! between them for `--rounds` rounds (order and CPU placement alternate),
//! so a ratio compares the two paths under the same load on this shared
//! machine.
//!
//! Each side measures the plugin's `ADD` latency (ADD/DEL cycles on a
//! scratch pod of `a`), TCP throughput `pa -> pd` with iperf3, and the
//! request/response latency of 64-byte round trips over one TCP connection
//! with `TCP_NODELAY`, twice: with blocking sockets (each message wakes the
//! other side's thread, as most servers work) and busy-polling (both ends
//! spin on non-blocking sockets, which takes thread wake-ups out and leaves
//! the network path). Blocking ends share one pinned CPU, busy ones get one
//! each (see `Wait::cpus` for why). Busy-polling round trips from node `a`
//! to nodes `b` and `d` give what one transit crossing costs on each path.
//!
//! After the rounds, more blocking passes on the fast side run with the
//! kernel timing every eBPF program run: what the programs cost per round
//! trip, the RR ratio the fast path would reach if they cost nothing, and,
//! from a pass with the netfilter check on and one with it off, what the
//! check costs per packet.
//!
//! `--family ipv4` measures the same over IPv4: the agents of both labs
//! run IPv4 (`--ipv4-cluster-prefix`), the pods are dual-stack (ptp gets an
//! IPv4 range of the node's IPv4 prefix beside the IPv6 one), and every
//! figure is taken between the pods' and nodes' IPv4 addresses, the
//! ClusterIP ones through kube-proxy's IPv4 rules (every node then carries
//! both families' Services, as a dual-stack node does).
//!
//! Goals (pod to pod, against the baseline under the same rules):
//! throughput ≥ 1.2×, RR p50 ≤ 0.85× (blocking), one transit crossing
//! ≤ 0.5× the kernel's, ADD p50 ≤ 20 ms.
//!
//! Usage: `pods [--json] [--family ipv6|ipv4] [--seconds N] [--cycles N]
//! [--round-trips N] [--rounds N] [--meshfwd PATH] [--cni PATH]`; progress
//! on stderr, the table (or JSON) on stdout, JSON also under
//! `bench/results/pods.json` (`pods-ipv4.json` for IPv4).

use std::{
    collections::BTreeMap,
    io::{Read as _, Write as _},
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream},
    path::{Path, PathBuf},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use anyhow::{Context as _, Result, bail};
use bench::agents::{Answers as _, CONVERGE, Mesh, cni_bin, meshfwd_bin, wait_until};
use dataplane::maps::{FibMaps, Netfilter};
use ipnet::{IpNet, Ipv4Net};
use lab::{
    Lab, Topology, Wire,
    kube_proxy::{KubeProxy, Mode, Protocol, Service},
    netns,
    pods::{Invocation, PluginRun, REFERENCE_PLUGINS, pod_netns, run_plugin},
};
use serde::Serialize;
use serde_json::{Value, json};

/// Port of the request/response server.
const RR_PORT: u16 = 47_998;
/// Size of one request and one response.
const RR_SIZE: usize = 64;
/// Round trips before the timed ones, per connection.
const RR_WARMUP: usize = 100;
/// iperf3's port.
const IPERF_PORT: u16 = 5201;
/// Services on every node besides the two measured ones: the rules a
/// node of a modest cluster carries.
const FILLER_SERVICES: u16 = 100;
/// The ClusterIPs fronting pod d's request/response and iperf3 servers.
const VIP_RR: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x96, 0, 0, 0, 0, 0, 0x10);
const VIP_IPERF: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x96, 0, 0, 0, 0, 0, 0x11);
/// The same in IPv4, in the IPv4 Service range (outside the pods').
const VIP4_RR: Ipv4Addr = Ipv4Addr::new(198, 19, 96, 0x10);
const VIP4_IPERF: Ipv4Addr = Ipv4Addr::new(198, 19, 96, 0x11);
/// The IPv4 cluster prefix of `--family ipv4` (half the lab's IPv4
/// space), and the IPv4 Service range in the other half.
const CLUSTER4: &str = "198.18.0.0/16";
const SERVICE4: &str = "198.19.96.0/24";

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Fast,
    Baseline,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Fast => "fast",
            Kind::Baseline => "baseline",
        }
    }
}

#[derive(Debug, Serialize)]
struct RunResult {
    plugin: &'static str,
    xdp: bool,
    add_cycles: usize,
    add_p50_ms: f64,
    add_p99_ms: f64,
    /// From the start of ADD until the pod's TC program is attached (the
    /// agent attaches it after ADD returns); absent for the baseline.
    #[serde(skip_serializing_if = "Option::is_none")]
    fast_path_ready_p50_ms: Option<f64>,
    /// Median over the rounds.
    throughput_bps: f64,
    throughput_rounds_bps: Vec<f64>,
    tcp_retransmits: u64,
    /// XDP redirects counted on the transit nodes b and c during the run
    /// (0 without XDP): evidence the traffic took the fast path.
    transit_xdp_redirects: u64,
    /// Round trips over all rounds, pooled for the percentiles.
    rr_round_trips: usize,
    rr_p50_us: f64,
    rr_p99_us: f64,
    /// The same round trips with both ends busy-polling.
    rr_busy_p50_us: f64,
    rr_busy_p99_us: f64,
    /// Busy-polling p50 from node a to node b (one hop) and to node d
    /// (three hops), node addresses at both ends.
    node_rr_busy_p50_us: (f64, f64),
    /// What one transit crossing adds to a round trip: (a->d - a->b) / 4.
    transit_crossing_us: f64,
    /// Each round's p50, blocking and busy-polling.
    rr_rounds_p50_us: Vec<f64>,
    rr_busy_rounds_p50_us: Vec<f64>,
    /// The same pod a -> pod d traffic through a ClusterIP (DNAT on a);
    /// not measured with `--netfilter ignore`, which breaks it.
    #[serde(skip_serializing_if = "Option::is_none")]
    cluster_ip: Option<ServiceResult>,
}

/// Pod a to pod d's servers through their ClusterIPs.
#[derive(Debug, Serialize)]
struct ServiceResult {
    /// Median over the rounds.
    throughput_bps: f64,
    throughput_rounds_bps: Vec<f64>,
    rr_round_trips: usize,
    rr_p50_us: f64,
    rr_p99_us: f64,
    rr_rounds_p50_us: Vec<f64>,
}

/// What the fast path's eBPF programs cost inside a blocking round trip,
/// timed by the kernel (`BPF_ENABLE_STATS`) in a pass of its own after the
/// rounds. The timestamps add to every run, so the times are upper bounds,
/// and the pass's own p50 is only shown: the bound below starts from the
/// p50 measured in turns with the baseline.
#[derive(Debug, Serialize)]
struct ProgramCost {
    #[serde(flatten)]
    timed: TimedPass,
    /// (the fast RR p50 - `ebpf_us_per_round_trip`) / the baseline's RR
    /// p50: the ratio the fast path would reach if its programs took no
    /// time.
    rr_p50_ratio_without_ebpf: f64,
}

/// What the netfilter check costs: the same timed pass with the check on
/// (as shipped) and with it off (`netfilter = "ignore"` on every node).
#[derive(Debug, Serialize)]
struct CheckCost {
    on: TimedPass,
    off: TimedPass,
    /// Per program: its ns per run with the check on minus with it off,
    /// i.e. per packet it handles.
    ns_per_packet: BTreeMap<String, f64>,
    /// All programs' run time per round trip, on minus off.
    us_per_round_trip: f64,
}

/// The timed pass itself.
#[derive(Debug, Serialize)]
struct TimedPass {
    /// Blocking round trips pod a -> pod d in the pass, both placements.
    round_trips: usize,
    rr_p50_us: f64,
    programs: Vec<ProgramRuns>,
    /// All programs' run time per round trip.
    ebpf_us_per_round_trip: f64,
}

#[derive(Debug, Serialize)]
struct ProgramRuns {
    name: String,
    /// Summed over every node's copy of the program.
    runs_per_round_trip: f64,
    ns_per_run: f64,
}

#[derive(Debug, Serialize)]
struct Ratios {
    /// Fast throughput over baseline throughput.
    throughput: f64,
    /// Fast transit crossing over the kernel's.
    transit_crossing: f64,
    /// Through the ClusterIP: fast over baseline throughput and RR p50.
    #[serde(skip_serializing_if = "Option::is_none")]
    cluster_ip_throughput: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cluster_ip_rr_p50: Option<f64>,
    /// Fast RR p50 over baseline RR p50.
    rr_p50: f64,
    /// Fast RR p99 over baseline RR p99.
    rr_p99: f64,
    /// The same two ratios, busy-polling.
    rr_busy_p50: f64,
    rr_busy_p99: f64,
    /// Fast ADD p50 over baseline ADD p50.
    add_p50: f64,
    /// Each round's throughput, RR p50 and busy-polling RR p50 ratio.
    throughput_rounds: Vec<f64>,
    rr_p50_rounds: Vec<f64>,
    rr_busy_p50_rounds: Vec<f64>,
}

#[derive(Debug, Serialize)]
struct Goals {
    throughput_ratio_min: f64,
    rr_p50_ratio_max: f64,
    transit_crossing_ratio_max: f64,
    add_p50_ms_max: f64,
    throughput_met: bool,
    rr_p50_met: bool,
    transit_crossing_met: bool,
    add_p50_met: bool,
}

#[derive(Debug, Serialize)]
struct Report {
    /// The family every figure was taken in.
    family: &'static str,
    mesh_hops: u32,
    iperf_seconds: u32,
    rounds: usize,
    fast: RunResult,
    baseline: RunResult,
    ratios: Ratios,
    goals: Goals,
    /// The fast side's netfilter setting during the rounds.
    netfilter: Netfilter,
    /// Which of kube-proxy's modes wrote the rules on every node, and how
    /// many Services they hold.
    proxy_mode: &'static str,
    services: usize,
    fast_ebpf_cost: ProgramCost,
    netfilter_check_cost: CheckCost,
    unix_time: u64,
    command: String,
    /// Load average when the run started: the machine is shared.
    loadavg: String,
}

/// Pod to pod over three mesh hops, meshfwd-cni + XDP against ptp +
/// host-local with kernel routing, both labs up and measured in turns.
///
/// After the rounds, a blocking pass on the fast side with the kernel's
/// BPF run-time stats on reports what each eBPF program costs per round
/// trip. The report is always written to bench/results/pods.json.
/// Progress goes to stderr. Needs root, iperf3 and Debian's
/// containernetworking-plugins (cargo xtask setup installs them).
#[derive(Debug, clap::Parser)]
struct Args {
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
    /// The address family the pods and nodes talk in.
    #[arg(long, value_enum, default_value_t = Family::Ipv6)]
    family: Family,
    /// iperf3 run per side and round, in seconds.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=60))]
    seconds: u32,
    /// ADD/DEL cycles timed per side.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u16).range(1..=1000))]
    cycles: u16,
    /// Request/response round trips per measure and round.
    #[arg(long, default_value_t = 2000, value_parser = clap::value_parser!(u32).range(10..=1_000_000))]
    round_trips: u32,
    /// Rounds of turns between the two labs.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=100))]
    rounds: u16,
    /// The agent binary (default: $MESHFWD_BIN, next to this one, or built).
    #[arg(long)]
    meshfwd: Option<PathBuf>,
    /// The plugin binary (default: $MESHFWD_CNI_BIN, next to this one, or built).
    #[arg(long)]
    cni: Option<PathBuf>,
    /// Which of kube-proxy's modes writes the Service rules on every node.
    #[arg(long, value_enum, default_value_t = ProxyMode::Nftables)]
    proxy_mode: ProxyMode,
    /// The fast side's netfilter setting for the rounds (`ignore` shows
    /// what the check costs the ratios; the report then goes to
    /// `pods-netfilter-ignore.json`).
    #[arg(long, value_enum, default_value_t = Netfilter::Check)]
    netfilter: Netfilter,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum Family {
    Ipv6,
    Ipv4,
}

impl Family {
    fn name(self) -> &'static str {
        match self {
            Family::Ipv6 => "IPv6",
            Family::Ipv4 => "IPv4",
        }
    }
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum ProxyMode {
    Nftables,
    Iptables,
}

impl ProxyMode {
    fn mode(self) -> Mode {
        match self {
            ProxyMode::Nftables => Mode::Nftables,
            ProxyMode::Iptables => Mode::Iptables,
        }
    }

    fn name(self) -> &'static str {
        match self {
            ProxyMode::Nftables => "nftables",
            ProxyMode::Iptables => "iptables",
        }
    }
}

/// The Services every node's kube-proxy knows in the family of `pd`: pod
/// d's two servers behind their ClusterIPs, and [`FILLER_SERVICES`] more
/// with two endpoints each in d's pod prefix of that family. A dual-stack
/// node runs one such proxier per family.
fn services(pd: IpAddr, d_prefix: IpNet) -> KubeProxy {
    let (vip_rr, vip_iperf, cluster_cidr, service_cidr): (IpAddr, IpAddr, _, _) = match pd {
        IpAddr::V6(_) => (
            VIP_RR.into(),
            VIP_IPERF.into(),
            "fd6b:6d65:7368::/48",
            "fd00:96::/108",
        ),
        IpAddr::V4(_) => (VIP4_RR.into(), VIP4_IPERF.into(), CLUSTER4, SERVICE4),
    };
    let svc = |name: String, ip: IpAddr, port: u16, endpoints: Vec<IpAddr>| Service {
        name,
        cluster_ip: ip,
        protocol: Protocol::Tcp,
        port,
        node_port: None,
        target_port: port,
        endpoints,
    };
    let mut list = vec![
        svc("bench/rr:rr".into(), vip_rr, RR_PORT, vec![pd]),
        svc("bench/iperf:iperf".into(), vip_iperf, IPERF_PORT, vec![pd]),
    ];
    for i in 0..FILLER_SERVICES {
        let (vip, eps) = match d_prefix {
            IpNet::V6(p) => {
                let first = u128::from(p.network()) + 0x1000 + 2 * u128::from(i);
                (
                    IpAddr::V6(Ipv6Addr::new(0xfd00, 0x96, 0, 0, 0, 0, 1, i)),
                    [0, 1].map(|k| IpAddr::V6(Ipv6Addr::from(first + k))),
                )
            }
            IpNet::V4(p) => {
                let (base, i) = (u32::from(p.network()), u32::from(i));
                // Inside the /24, past the node's and pods' first addresses.
                (
                    IpAddr::V4(Ipv4Addr::from(u32::from(VIP4_RR) + 0x20 + i)),
                    [0, 1].map(|k| IpAddr::V4(Ipv4Addr::from(base + 3 + (2 * i + k) % 250))),
                )
            }
        };
        list.push(svc(format!("filler/svc-{i}:http"), vip, 80, eps.to_vec()));
    }
    KubeProxy {
        cluster_cidr: cluster_cidr.into(),
        service_cidr: service_cidr.into(),
        services: list,
    }
}

fn main() {
    if let Err(err) = run() {
        eprintln!("pods: error: {err:#}");
        std::process::exit(1);
    }
}

fn progress(what: &str) {
    eprintln!("pods: {what}");
}

/// Percentile `p` (0..=100) of sorted `v`, nearest rank.
fn percentile(v: &[f64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * v.len() as f64).ceil() as usize;
    v[rank.clamp(1, v.len()) - 1]
}

fn sorted(mut v: Vec<f64>) -> Vec<f64> {
    v.sort_by(f64::total_cmp);
    v
}

/// The lab of one run, with the plugin it wires pods with.
struct PodLab {
    kind: Kind,
    mesh: Mesh,
    cni: PathBuf,
}

/// A node's pod prefixes, as its agent published them.
#[derive(Clone)]
struct Prefixes {
    v6: String,
    /// With `--family ipv4`.
    v4: Option<Ipv4Net>,
}

impl PodLab {
    /// The network configuration handed to the plugin on `node`.
    fn conf(&self, node: &str, prefixes: &Prefixes) -> String {
        let pod_prefix = prefixes.v6.as_str();
        let work = self.mesh.lab.work_dir();
        match self.kind {
            Kind::Fast => json!({
                "cniVersion": "1.1.0",
                "name": "kubermesh",
                "type": "meshfwd-cni",
                "stateFile": work.join(format!("{node}.json")),
                "dataDir": work.join(format!("{node}-ipam")),
            }),
            Kind::Baseline => {
                // The agent holds `::1` of the prefix (the node address):
                // give ptp's gateway and pods other addresses.
                let base = pod_prefix.split("::/").next().unwrap_or(pod_prefix);
                let mut ranges = vec![json!([{
                    "subnet": pod_prefix,
                    "rangeStart": format!("{base}::100"),
                    "rangeEnd": format!("{base}::ffff"),
                    "gateway": format!("{base}::2"),
                }])];
                let mut routes = vec![json!({"dst": "::/0"})];
                if let Some(v4) = prefixes.v4 {
                    // `.1` is the node's: the same layout as in IPv6.
                    let at = |i: u32| Ipv4Addr::from(u32::from(v4.network()) + i);
                    ranges.push(json!([{
                        "subnet": v4.to_string(),
                        "rangeStart": at(100).to_string(),
                        "rangeEnd": at(250).to_string(),
                        "gateway": at(2).to_string(),
                    }]));
                    routes.push(json!({"dst": "0.0.0.0/0"}));
                }
                json!({
                    "cniVersion": "1.0.0",
                    "name": "baseline",
                    "type": "ptp",
                    "mtu": 1500,
                    "ipam": {
                        "type": "host-local",
                        "ranges": ranges,
                        "routes": routes,
                        "dataDir": work.join(format!("{node}-host-local")),
                    },
                })
            }
        }
        .to_string()
    }

    /// Run the plugin's `verb` on `node` for container `cid` in `netns`.
    fn verb(
        &self,
        node: &str,
        verb: &str,
        cid: &str,
        netns: &str,
        conf: &str,
    ) -> Result<PluginRun> {
        let inv = Invocation {
            verb,
            container_id: cid,
            netns,
            ifname: "eth0",
        };
        run_plugin(&self.mesh.lab, node, &self.cni, &inv, conf)
    }

    /// Run `verb` and fail unless it succeeded.
    fn checked(
        &self,
        node: &str,
        verb: &str,
        cid: &str,
        netns: &str,
        conf: &str,
    ) -> Result<PluginRun> {
        let r = self.verb(node, verb, cid, netns, conf)?;
        if r.code != 0 {
            bail!(
                "{} {verb} {cid} on {node} failed ({}): {} {}",
                self.kind.name(),
                r.code,
                r.stdout.trim(),
                r.stderr.trim()
            );
        }
        Ok(r)
    }

    /// The netns path of lab node `pod`.
    fn netns_path(&self, pod: &str) -> String {
        pod_netns(&self.mesh.lab, pod)
    }
}

/// A wired pod: its addresses and the host end of its veth.
struct Pod {
    addr: Ipv6Addr,
    addr4: Option<Ipv4Addr>,
    host_veth: String,
}

impl Pod {
    /// The pod's address of `family`.
    fn at(&self, family: Family) -> Result<IpAddr> {
        Ok(match family {
            Family::Ipv6 => IpAddr::V6(self.addr),
            Family::Ipv4 => IpAddr::V4(self.addr4.context("the pod got no IPv4 address")?),
        })
    }
}

fn parse_add(result: &str) -> Result<Pod> {
    let v: Value = serde_json::from_str(result).context("ADD result is not JSON")?;
    let (addr, addr4, host_veth) = lab::pods::parse_add_dual(&v)?;
    Ok(Pod {
        addr,
        addr4,
        host_veth,
    })
}

/// The pod prefixes the agent on `node` wrote to its state file.
fn pod_prefixes(mesh: &Mesh, node: &str) -> Result<Prefixes> {
    let state = mesh.node_state(node)?;
    Ok(Prefixes {
        v6: state.pod_prefix.to_string(),
        v4: state.ipv4.map(|v4| v4.pod_prefix),
    })
}

/// The node address of `family` the agent on `node` published.
fn node_address(mesh: &Mesh, node: &str, family: Family) -> Result<IpAddr> {
    let state = mesh.node_state(node)?;
    Ok(match family {
        Family::Ipv6 => IpAddr::V6(state.node_address),
        Family::Ipv4 => IpAddr::V4(state.ipv4.context("the agent runs no IPv4")?.node_address),
    })
}

/// Measure `ADD` latency over `cycles` ADD/DEL cycles on a scratch pod;
/// with the fast path, also how long until the pod's TC program is
/// attached (by the agent, after ADD has returned). Both sorted, in ms.
fn add_cycles(
    pl: &PodLab,
    node: &str,
    prefix: &Prefixes,
    cycles: usize,
) -> Result<(Vec<f64>, Vec<f64>)> {
    let netns = pl.netns_path("px");
    let conf = pl.conf(node, prefix);
    let bpffs = node_bpffs(&pl.mesh, node)?;
    let mut took = Vec::with_capacity(cycles);
    let mut ready = Vec::with_capacity(cycles);
    let limit = Instant::now() + Duration::from_secs(120);
    for i in 0..cycles {
        if Instant::now() > limit {
            progress(&format!("ADD cycles stopped after {i} (time limit)"));
            break;
        }
        let cid = format!("cycle-{i}");
        let start = Instant::now();
        let r = pl.checked(node, "ADD", &cid, &netns, &conf)?;
        took.push(r.took.as_secs_f64() * 1000.0);
        if pl.kind == Kind::Fast {
            let pod = parse_add(&r.stdout)?;
            let pin = dataplane::tc::link_pin(&bpffs, &pod.host_veth);
            let by = Instant::now() + Duration::from_secs(2);
            while !pin.exists() {
                if Instant::now() > by {
                    bail!("no TC link pinned at {} 2 s after ADD", pin.display());
                }
                std::thread::sleep(Duration::from_micros(200));
            }
            ready.push(start.elapsed().as_secs_f64() * 1000.0);
        }
        pl.checked(node, "DEL", &cid, &netns, &conf)?;
    }
    Ok((sorted(took), sorted(ready)))
}

/// The bpffs directory the agent on `node` wrote to its state file.
fn node_bpffs(mesh: &Mesh, node: &str) -> Result<PathBuf> {
    Ok(mesh.node_state(node)?.bpffs)
}

/// iperf3 from `from` to the server on `to_addr` in pod `to`, reached at
/// `via` (the address itself, or a ClusterIP in front of it): (bits per
/// second, retransmits).
fn iperf(
    pl: &PodLab,
    (from, to): (&str, &str),
    to_addr: IpAddr,
    via: IpAddr,
    seconds: u32,
) -> Result<(f64, u64)> {
    let server = pl.mesh.lab.node(to).spawn(
        "iperf3",
        &["iperf3", "-s", "-1", "-B", &to_addr.to_string()],
    )?;
    // Give the server a moment to listen; the client retries on refusal.
    let addr = via.to_string();
    let secs = seconds.to_string();
    let family = if via.is_ipv4() { "-4" } else { "-6" };
    let deadline = Instant::now() + Duration::from_secs(10);
    let out = loop {
        std::thread::sleep(Duration::from_millis(300));
        match pl.mesh.lab.node(from).run_timeout(
            &["iperf3", family, "-c", &addr, "-t", &secs, "-J"],
            Duration::from_secs(u64::from(seconds) + 30),
        ) {
            Ok(o) => break o,
            Err(e) if Instant::now() > deadline => {
                let _ = pl.mesh.lab.node(to).kill(server);
                return Err(e);
            }
            Err(_) => {}
        }
    };
    let _ = pl.mesh.lab.node(to).kill(server);
    let v: Value = serde_json::from_str(&out).context("iperf3 -J output")?;
    let bps = v["end"]["sum_received"]["bits_per_second"]
        .as_f64()
        .context("iperf3 without end.sum_received")?;
    let retr = v["end"]["sum_sent"]["retransmits"].as_u64().unwrap_or(0);
    Ok((bps, retr))
}

/// How the request/response ends wait for data.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Wait {
    /// Blocking reads: the kernel wakes the thread.
    Block,
    /// Non-blocking reads in a loop: no wake-up on the path.
    BusyPoll,
}

/// Read exactly `buf.len()` bytes, waiting as `wait` says, until `deadline`.
fn read_full(s: &mut TcpStream, buf: &mut [u8], wait: Wait, deadline: Instant) -> Result<()> {
    if wait == Wait::Block {
        return Ok(s.read_exact(buf)?);
    }
    let mut got = 0;
    while got < buf.len() {
        match s.read(&mut buf[got..]) {
            Ok(0) => bail!("the peer closed the connection"),
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                if Instant::now() > deadline {
                    bail!("no reply before the deadline");
                }
                std::hint::spin_loop();
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

impl Wait {
    /// CPUs for (client, server) in round `round`. Blocking: both on one
    /// CPU. On a VM, a thread woken on another, idle vCPU waits for the
    /// hypervisor to run that vCPU again (tens of µs), and whether the
    /// scheduler wakes it there or next to the waker flips from run to
    /// run: unpinned, one run's p50 came out at 21 µs and the next at
    /// 75 µs on the same path. On one CPU every round trip still has two
    /// real wake-ups and context switches, and the rest is the network
    /// path. Busy-polling: both ends spin, so each gets a CPU of its own.
    /// The placement alternates by round: the same exchange measured
    /// 11 µs with the client on one vCPU of this machine and 15 µs with
    /// it on the other.
    fn cpus(self, round: usize) -> (usize, usize) {
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        let (x, y) = if cpus < 2 {
            (0, 0)
        } else if round.is_multiple_of(2) {
            (0, 1)
        } else {
            (1, 0)
        };
        match self {
            Wait::Block => (x, x),
            Wait::BusyPoll => (x, y),
        }
    }
}

/// Pin the calling thread to `cpu`.
fn pin(cpu: usize) -> Result<()> {
    let mut set = nix::sched::CpuSet::new();
    set.set(cpu)?;
    nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &set)
        .with_context(|| format!("pinning to CPU {cpu}"))
}

/// `n` round trips of [`RR_SIZE`] bytes from node `from` to a server on
/// `to_addr` in node `to`, reached at `via` (the address itself, or a
/// ClusterIP in front of it), after a warm-up; return the sorted
/// round-trip times in µs. Both ends run on threads of their own, pinned
/// as [`Wait::cpus`] says.
fn request_response(
    pl: &PodLab,
    (from, to): (&str, &str),
    (to_addr, via): (IpAddr, IpAddr),
    n: usize,
    wait: Wait,
    round: usize,
) -> Result<Vec<f64>> {
    let total = n + RR_WARMUP;
    let (client_cpu, server_cpu) = wait.cpus(round);
    // Bounds every loop below, busy or not.
    let deadline = Instant::now() + Duration::from_secs(60);
    let to_ns = pl.mesh.lab.node(to).netns().to_string();
    let from_ns = pl.mesh.lab.node(from).netns().to_string();
    let listener = netns::enter(&to_ns, || {
        Ok(TcpListener::bind(SocketAddr::new(to_addr, RR_PORT))?)
    })?;
    listener.set_nonblocking(true)?;
    let server = std::thread::spawn(move || -> Result<()> {
        pin(server_cpu)?;
        let accept_by = Instant::now() + Duration::from_secs(10);
        let (mut s, _) = loop {
            match listener.accept() {
                Ok(c) => break c,
                Err(_) if Instant::now() < accept_by => {
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(e) => return Err(e.into()),
            }
        };
        s.set_nonblocking(wait == Wait::BusyPoll)?;
        s.set_nodelay(true)?;
        s.set_read_timeout(Some(Duration::from_secs(5)))?;
        let mut buf = [0u8; RR_SIZE];
        for _ in 0..total {
            read_full(&mut s, &mut buf, wait, deadline)?;
            s.write_all(&buf)?;
        }
        Ok(())
    });
    let client = std::thread::spawn(move || -> Result<Vec<f64>> {
        pin(client_cpu)?;
        let mut c = netns::enter(&from_ns, || {
            Ok(TcpStream::connect_timeout(
                &SocketAddr::new(via, RR_PORT),
                Duration::from_secs(5),
            )?)
        })?;
        c.set_nodelay(true)?;
        c.set_read_timeout(Some(Duration::from_secs(5)))?;
        c.set_nonblocking(wait == Wait::BusyPoll)?;
        let mut buf = [0x5au8; RR_SIZE];
        let mut rtt = Vec::with_capacity(n);
        for i in 0..total {
            if Instant::now() > deadline {
                bail!("round trips did not finish within 60 s ({i} done)");
            }
            let t = Instant::now();
            // A 64-byte write fits any socket buffer: it never would-blocks.
            c.write_all(&buf)?;
            read_full(&mut c, &mut buf, wait, deadline)?;
            if i >= RR_WARMUP {
                rtt.push(t.elapsed().as_secs_f64() * 1e6);
            }
        }
        Ok(rtt)
    });
    // The client ends first (it closes the connection when it returns),
    // so joining it first never waits on a server stuck in accept.
    let rtt = client
        .join()
        .map_err(|_| anyhow::anyhow!("RR client panicked"))?;
    let served = server
        .join()
        .map_err(|_| anyhow::anyhow!("RR server panicked"))?;
    let rtt = rtt?;
    served?;
    Ok(sorted(rtt))
}

/// One lab with its agents and the two measured pods, ready to measure.
/// The lab's `Drop` removes namespaces, veths, processes and pins
/// whatever happens.
struct Side {
    pl: PodLab,
    /// Pod d's address in the measured family.
    pd: IpAddr,
    prefixes: (Prefixes, Prefixes),
    add: Vec<f64>,
    ready: Vec<f64>,
    redirects0: u64,
}

impl Side {
    fn name(&self) -> &'static str {
        self.pl.kind.name()
    }

    /// XDP redirects on the transit nodes b and c so far.
    fn redirects(&self) -> u64 {
        self.pl.mesh.xdp_redirects("b") + self.pl.mesh.xdp_redirects("c")
    }
}

/// Build one side: lab, agents, ADD/DEL cycles, the pods `pa` and `pd`.
fn build(kind: Kind, args: &Args, meshfwd: &Path, cni: &Path) -> Result<Side> {
    let topo = Topology::new().line(&["a", "b", "c", "d"], Wire::Direct);
    progress(&format!("{}: building a - b - c - d", kind.name()));
    let lab = Lab::build(&format!("pods-{}", kind.name()), &topo)?;
    let plugin = match kind {
        Kind::Fast => cni.to_path_buf(),
        Kind::Baseline => Path::new(REFERENCE_PLUGINS).join("ptp"),
    };
    let mut pl = PodLab {
        kind,
        mesh: Mesh::new(lab, meshfwd.to_path_buf()),
        cni: plugin,
    };
    // Only the mesh links run OSPF: ptp's host veths are not called km*.
    let mut extra = vec!["--include", "m-*"];
    if kind == Kind::Baseline {
        extra.push("--no-xdp");
    }
    if args.family == Family::Ipv4 {
        extra.extend(["--ipv4-cluster-prefix", CLUSTER4]);
    }
    for n in ["a", "b", "c", "d"] {
        pl.mesh.start(n, &extra)?;
    }
    let a_prefix = pod_prefixes(&pl.mesh, "a")?;
    let d_prefix = pod_prefixes(&pl.mesh, "d")?;
    progress(&format!(
        "{}: pod prefixes a {} {:?}, d {} {:?}; waiting for routes",
        kind.name(),
        a_prefix.v6,
        a_prefix.v4,
        d_prefix.v6,
        d_prefix.v4
    ));
    wait_until("a's route to d's pods", CONVERGE, || {
        d_prefix
            .v6
            .parse()
            .is_ok_and(|p| !pl.mesh.route_ifaces("a", &p).is_empty())
    })?;
    wait_until("d's route to a's pods", CONVERGE, || {
        a_prefix
            .v6
            .parse()
            .is_ok_and(|p| !pl.mesh.route_ifaces("d", &p).is_empty())
    })?;
    for p in ["px", "pa", "pd"] {
        pl.mesh.lab.add_node(p)?;
    }

    progress(&format!("{}: {} ADD/DEL cycles", kind.name(), args.cycles));
    let (add, ready) = add_cycles(&pl, "a", &a_prefix, usize::from(args.cycles))?;

    let (pa_ns, pd_ns) = (pl.netns_path("pa"), pl.netns_path("pd"));
    let pa = parse_add(
        &pl.checked("a", "ADD", "pod-a", &pa_ns, &pl.conf("a", &a_prefix))?
            .stdout,
    )?;
    let pd = parse_add(
        &pl.checked("d", "ADD", "pod-d", &pd_ns, &pl.conf("d", &d_prefix))?
            .stdout,
    )?;
    let (pa_at, pd_at) = (pa.at(args.family)?, pd.at(args.family)?);
    progress(&format!(
        "{}: pods {pa_at} (a) and {pd_at} (d); waiting for ping",
        kind.name(),
    ));
    pl.mesh
        .lab
        .node("pa")
        .wait_ping(pd_at, CONVERGE)
        .with_context(|| format!("{}: pod a cannot reach pod d", kind.name()))?;
    // A dual-stack node runs a proxier per family.
    let mut proxiers = vec![services(pd.addr.into(), d_prefix.v6.parse()?)];
    if let (Some(pd4), Some(d4)) = (pd.addr4, d_prefix.v4)
        && args.family == Family::Ipv4
    {
        proxiers.push(services(pd4.into(), d4.into()));
    }
    for kp in &proxiers {
        progress(&format!(
            "{}: kube-proxy's {} rules for {} Services of {} on every node",
            kind.name(),
            args.proxy_mode.name(),
            kp.services.len(),
            kp.service_cidr
        ));
        for n in ["a", "b", "c", "d"] {
            kp.install(&pl.mesh.lab, n, args.proxy_mode.mode())?;
        }
    }
    let mut side = Side {
        pl,
        pd: pd_at,
        prefixes: (a_prefix, d_prefix),
        add,
        ready,
        redirects0: 0,
    };
    side.redirects0 = side.redirects();
    Ok(side)
}

/// What one side measured over all rounds.
#[derive(Default)]
struct Samples {
    bps: Vec<f64>,
    retransmits: u64,
    rtt: Vec<f64>,
    busy: Vec<f64>,
    /// p50 of each round's blocking and busy-polling round trips.
    round_p50: Vec<(f64, f64)>,
    /// Busy-polling round trips from node a to node b and to node d.
    to_b: Vec<f64>,
    to_d: Vec<f64>,
    /// Through the ClusterIPs: throughput, blocking round trips and each
    /// round's p50.
    svc_bps: Vec<f64>,
    svc_rtt: Vec<f64>,
    svc_round_p50: Vec<f64>,
}

/// One round on one side: iperf3, then blocking and busy-polling round
/// trips with the CPU placement of `round`.
fn measure(side: &Side, args: &Args, round: usize, out: &mut Samples) -> Result<()> {
    let pods = ("pa", "pd");
    let (addr, n) = (side.pd, args.round_trips as usize);
    let (bps, retr) = iperf(&side.pl, pods, addr, addr, args.seconds)?;
    let rtt = request_response(&side.pl, pods, (addr, addr), n, Wait::Block, round)?;
    let busy = request_response(&side.pl, pods, (addr, addr), n, Wait::BusyPoll, round)?;
    // Node a to node b, then to node d: two more transit crossings each
    // way, four in all, so the difference / 4 is what one crossing costs.
    let mesh = &side.pl.mesh;
    let (b, d) = (
        node_address(mesh, "b", args.family)?,
        node_address(mesh, "d", args.family)?,
    );
    let to_b = request_response(&side.pl, ("a", "b"), (b, b), n, Wait::BusyPoll, round)?;
    let to_d = request_response(&side.pl, ("a", "d"), (d, d), n, Wait::BusyPoll, round)?;
    out.to_b.extend(to_b);
    out.to_d.extend(to_d);
    let (p50, busy_p50) = (percentile(&rtt, 50.0), percentile(&busy, 50.0));
    progress(&format!(
        "round {round}: {}: {:.2} Gbit/s ({retr} retransmits), RR p50 {p50:.1} µs, busy-poll {busy_p50:.1} µs",
        side.name(),
        bps / 1e9
    ));
    out.bps.push(bps);
    out.retransmits += retr;
    out.rtt.extend(rtt);
    out.busy.extend(busy);
    out.round_p50.push((p50, busy_p50));
    // The same pods through the ClusterIPs. With the check off the fast
    // path would hand the backend's replies to the client un-NATed, which
    // is the breakage the check exists to prevent: not measured then.
    if args.netfilter == Netfilter::Ignore {
        return Ok(());
    }
    let (vip_iperf, vip_rr): (IpAddr, IpAddr) = match args.family {
        Family::Ipv6 => (VIP_IPERF.into(), VIP_RR.into()),
        Family::Ipv4 => (VIP4_IPERF.into(), VIP4_RR.into()),
    };
    let (svc_bps, _) = iperf(&side.pl, pods, addr, vip_iperf, args.seconds)?;
    let svc_rtt = request_response(&side.pl, pods, (addr, vip_rr), n, Wait::Block, round)?;
    let svc_p50 = percentile(&svc_rtt, 50.0);
    progress(&format!(
        "round {round}: {}: through the ClusterIP {:.2} Gbit/s, RR p50 {svc_p50:.1} µs",
        side.name(),
        svc_bps / 1e9
    ));
    out.svc_bps.push(svc_bps);
    out.svc_rtt.extend(svc_rtt);
    out.svc_round_p50.push(svc_p50);
    Ok(())
}

/// DEL the pods the way the runtime would and sum up one side.
fn finish(side: Side, s: Samples) -> RunResult {
    let transit_xdp_redirects = side.redirects().saturating_sub(side.redirects0);
    let (pa_ns, pd_ns) = (side.pl.netns_path("pa"), side.pl.netns_path("pd"));
    for (node, cid, ns, prefix) in [
        ("a", "pod-a", &pa_ns, &side.prefixes.0),
        ("d", "pod-d", &pd_ns, &side.prefixes.1),
    ] {
        // The lab's Drop catches whatever a failed DEL leaves.
        if let Err(e) = side
            .pl
            .checked(node, "DEL", cid, ns, &side.pl.conf(node, prefix))
        {
            progress(&format!("{e:#}"));
        }
    }
    let (rtt, busy, bps) = (sorted(s.rtt), sorted(s.busy), sorted(s.bps.clone()));
    let (to_b, to_d) = (sorted(s.to_b), sorted(s.to_d));
    let (to_b_p50, to_d_p50) = (percentile(&to_b, 50.0), percentile(&to_d, 50.0));
    let r = RunResult {
        plugin: match side.pl.kind {
            Kind::Fast => "meshfwd-cni",
            Kind::Baseline => "ptp+host-local",
        },
        xdp: side.pl.kind == Kind::Fast,
        add_cycles: side.add.len(),
        add_p50_ms: percentile(&side.add, 50.0),
        add_p99_ms: percentile(&side.add, 99.0),
        fast_path_ready_p50_ms: (!side.ready.is_empty()).then(|| percentile(&side.ready, 50.0)),
        throughput_bps: percentile(&bps, 50.0),
        throughput_rounds_bps: s.bps,
        tcp_retransmits: s.retransmits,
        transit_xdp_redirects,
        rr_round_trips: rtt.len(),
        rr_p50_us: percentile(&rtt, 50.0),
        rr_p99_us: percentile(&rtt, 99.0),
        rr_busy_p50_us: percentile(&busy, 50.0),
        rr_busy_p99_us: percentile(&busy, 99.0),
        node_rr_busy_p50_us: (to_b_p50, to_d_p50),
        transit_crossing_us: (to_d_p50 - to_b_p50) / 4.0,
        rr_rounds_p50_us: s.round_p50.iter().map(|r| r.0).collect(),
        rr_busy_rounds_p50_us: s.round_p50.iter().map(|r| r.1).collect(),
        cluster_ip: (!s.svc_bps.is_empty()).then(|| {
            let (bps, rtt) = (sorted(s.svc_bps.clone()), sorted(s.svc_rtt));
            ServiceResult {
                throughput_bps: percentile(&bps, 50.0),
                throughput_rounds_bps: s.svc_bps,
                rr_round_trips: rtt.len(),
                rr_p50_us: percentile(&rtt, 50.0),
                rr_p99_us: percentile(&rtt, 99.0),
                rr_rounds_p50_us: s.svc_round_p50,
            }
        }),
    };
    progress(&format!(
        "{}: ADD p50 {:.1} ms p99 {:.1} ms; {:.2} Gbit/s; RR p50 {:.1} µs p99 {:.1} µs; busy-poll RR p50 {:.1} µs p99 {:.1} µs",
        side.name(),
        r.add_p50_ms,
        r.add_p99_ms,
        r.throughput_bps / 1e9,
        r.rr_p50_us,
        r.rr_p99_us,
        r.rr_busy_p50_us,
        r.rr_busy_p99_us
    ));
    r
}

/// Run time and run count of every loaded `meshfwd_*` program, summed by
/// name. Only the fast side's agents load them, and the bench runs alone.
fn program_runs() -> BTreeMap<String, (Duration, u64)> {
    let mut runs = BTreeMap::new();
    // A program unloaded while we walk the list is simply not counted.
    for info in aya::programs::loaded_programs().flatten() {
        let Some(name) = info.name_as_str().filter(|n| n.starts_with("meshfwd_")) else {
            continue;
        };
        let e = runs.entry(name.to_string()).or_insert((Duration::ZERO, 0));
        e.0 += info.run_time();
        e.1 += info.run_count();
    }
    runs
}

/// Blocking round trips on the fast side with the kernel timing every
/// program run, in both CPU placements; see [`ProgramCost`].
fn time_programs(side: &Side, args: &Args) -> Result<TimedPass> {
    progress("fast: timing the eBPF programs inside the round trips");
    let stats = aya::sys::enable_stats(aya::sys::Stats::RunTime)
        .context("enabling BPF run-time stats (BPF_ENABLE_STATS)")?;
    let before = program_runs();
    let placements = 0..2;
    let mut rtt = Vec::new();
    for round in placements.clone() {
        rtt.extend(request_response(
            &side.pl,
            ("pa", "pd"),
            (side.pd, side.pd),
            args.round_trips as usize,
            Wait::Block,
            round,
        )?);
    }
    let after = program_runs();
    drop(stats);
    // The warm-up round trips ran the programs too.
    let trips = (rtt.len() + placements.len() * RR_WARMUP) as f64;
    let mut programs = Vec::new();
    let mut total = Duration::ZERO;
    for (name, (time, runs)) in &after {
        let (time0, runs0) = before.get(name).copied().unwrap_or_default();
        let (time, runs) = (time.saturating_sub(time0), runs.saturating_sub(runs0));
        if runs == 0 {
            continue;
        }
        total += time;
        programs.push(ProgramRuns {
            name: name.clone(),
            runs_per_round_trip: runs as f64 / trips,
            ns_per_run: time.as_nanos() as f64 / runs as f64,
        });
    }
    if programs.is_empty() {
        bail!("no meshfwd program ran during the timed round trips");
    }
    let rtt = sorted(rtt);
    Ok(TimedPass {
        round_trips: rtt.len(),
        rr_p50_us: percentile(&rtt, 50.0),
        programs,
        ebpf_us_per_round_trip: total.as_secs_f64() * 1e6 / trips,
    })
}

/// Time the fast side's programs with the netfilter check on, then off
/// on every node, then on again; see [`CheckCost`].
fn check_cost(side: &Side, args: &Args) -> Result<CheckCost> {
    let set = |netfilter: Netfilter| -> Result<()> {
        for n in ["a", "b", "c", "d"] {
            FibMaps::open(&node_bpffs(&side.pl.mesh, n)?)?.set_netfilter(netfilter)?;
        }
        Ok(())
    };
    progress("fast: the netfilter check's cost, on");
    let on = time_programs(side, args)?;
    progress("fast: the netfilter check's cost, off");
    set(Netfilter::Ignore)?;
    let off = time_programs(side, args);
    set(Netfilter::Check)?;
    let off = off?;
    let ns_per_packet = on
        .programs
        .iter()
        .filter_map(|p| {
            let o = off.programs.iter().find(|o| o.name == p.name)?;
            Some((p.name.clone(), p.ns_per_run - o.ns_per_run))
        })
        .collect();
    Ok(CheckCost {
        us_per_round_trip: on.ebpf_us_per_round_trip - off.ebpf_us_per_round_trip,
        on,
        off,
        ns_per_packet,
    })
}

fn run() -> Result<()> {
    let args = <Args as clap::Parser>::parse();
    let loadavg = std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default();
    let meshfwd = meshfwd_bin(args.meshfwd.clone())?;
    let cni = cni_bin(args.cni.clone())?;
    if !Path::new(REFERENCE_PLUGINS).join("ptp").exists() {
        bail!("{REFERENCE_PLUGINS}/ptp is missing (containernetworking-plugins)");
    }
    // Both sides stay up and take turns, round by round, in alternating
    // order and CPU placement: the machine is shared and drifts, and a
    // ratio of two runs minutes apart measured the drift as much as the
    // paths.
    let sides = [
        build(Kind::Fast, &args, &meshfwd, &cni)?,
        build(Kind::Baseline, &args, &meshfwd, &cni)?,
    ];
    for n in ["a", "b", "c", "d"] {
        FibMaps::open(&node_bpffs(&sides[0].pl.mesh, n)?)?.set_netfilter(args.netfilter)?;
    }
    let mut samples = [Samples::default(), Samples::default()];
    for round in 0..usize::from(args.rounds) {
        let order = if round % 2 == 0 { [0, 1] } else { [1, 0] };
        for i in order {
            measure(&sides[i], &args, round, &mut samples[i])?;
        }
    }
    // Timed while the pods still exist (`finish` deletes them), with the
    // check on.
    for n in ["a", "b", "c", "d"] {
        FibMaps::open(&node_bpffs(&sides[0].pl.mesh, n)?)?.set_netfilter(Netfilter::Check)?;
    }
    let timed = time_programs(&sides[0], &args)?;
    let netfilter_check_cost = check_cost(&sides[0], &args)?;
    let [fast_side, baseline_side] = sides;
    let [fast_samples, baseline_samples] = samples;
    let fast = finish(fast_side, fast_samples);
    let baseline = finish(baseline_side, baseline_samples);
    let per_round = |f: &[f64], b: &[f64]| f.iter().zip(b).map(|(f, b)| f / b).collect();
    let fast_ebpf_cost = ProgramCost {
        rr_p50_ratio_without_ebpf: (fast.rr_p50_us - timed.ebpf_us_per_round_trip)
            / baseline.rr_p50_us,
        timed,
    };

    let ratios = Ratios {
        throughput: fast.throughput_bps / baseline.throughput_bps,
        transit_crossing: fast.transit_crossing_us / baseline.transit_crossing_us,
        cluster_ip_throughput: fast
            .cluster_ip
            .as_ref()
            .zip(baseline.cluster_ip.as_ref())
            .map(|(f, b)| f.throughput_bps / b.throughput_bps),
        cluster_ip_rr_p50: fast
            .cluster_ip
            .as_ref()
            .zip(baseline.cluster_ip.as_ref())
            .map(|(f, b)| f.rr_p50_us / b.rr_p50_us),
        rr_p50: fast.rr_p50_us / baseline.rr_p50_us,
        rr_p99: fast.rr_p99_us / baseline.rr_p99_us,
        rr_busy_p50: fast.rr_busy_p50_us / baseline.rr_busy_p50_us,
        rr_busy_p99: fast.rr_busy_p99_us / baseline.rr_busy_p99_us,
        add_p50: fast.add_p50_ms / baseline.add_p50_ms,
        throughput_rounds: per_round(&fast.throughput_rounds_bps, &baseline.throughput_rounds_bps),
        rr_p50_rounds: per_round(&fast.rr_rounds_p50_us, &baseline.rr_rounds_p50_us),
        rr_busy_p50_rounds: per_round(&fast.rr_busy_rounds_p50_us, &baseline.rr_busy_rounds_p50_us),
    };
    let goals = Goals {
        throughput_ratio_min: 1.2,
        rr_p50_ratio_max: 0.85,
        transit_crossing_ratio_max: 0.5,
        add_p50_ms_max: 20.0,
        throughput_met: ratios.throughput >= 1.2,
        rr_p50_met: ratios.rr_p50 <= 0.85,
        transit_crossing_met: ratios.transit_crossing <= 0.5,
        add_p50_met: fast.add_p50_ms <= 20.0,
    };
    let report = Report {
        family: args.family.name(),
        mesh_hops: 3,
        iperf_seconds: args.seconds,
        rounds: usize::from(args.rounds),
        fast,
        baseline,
        ratios,
        goals,
        netfilter: args.netfilter,
        proxy_mode: args.proxy_mode.name(),
        services: 2 + usize::from(FILLER_SERVICES),
        fast_ebpf_cost,
        netfilter_check_cost,
        unix_time: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
        command: std::env::args().collect::<Vec<_>>().join(" "),
        loadavg,
    };
    let json = serde_json::to_string_pretty(&report)?;
    let dir = bench::results_dir();
    std::fs::create_dir_all(&dir)?;
    let family = match args.family {
        Family::Ipv6 => "",
        Family::Ipv4 => "-ipv4",
    };
    let file = match args.netfilter {
        Netfilter::Check => format!("pods{family}.json"),
        other => format!("pods{family}-netfilter-{other}.json"),
    };
    std::fs::write(dir.join(&file), format!("{json}\n"))?;
    progress(&format!("wrote {}", dir.join(&file).display()));
    if args.json {
        println!("{json}");
    } else {
        let (f, b, r, g) = (
            &report.fast,
            &report.baseline,
            &report.ratios,
            &report.goals,
        );
        let met = |m: bool| if m { "met" } else { "MISSED" };
        println!(
            "{:<16} {:>14} {:>14} {:>8}  goal",
            report.family, "fast", "baseline", "ratio"
        );
        println!(
            "{:<16} {:>14.2} {:>14.2} {:>8.2}  ≥ 1.2×: {}",
            "TCP Gbit/s",
            f.throughput_bps / 1e9,
            b.throughput_bps / 1e9,
            r.throughput,
            met(g.throughput_met)
        );
        println!(
            "{:<16} {:>14.1} {:>14.1} {:>8.2}  ≤ 0.85×: {}",
            "RR p50 µs",
            f.rr_p50_us,
            b.rr_p50_us,
            r.rr_p50,
            met(g.rr_p50_met)
        );
        println!(
            "{:<16} {:>14.1} {:>14.1} {:>8.2}",
            "RR p99 µs", f.rr_p99_us, b.rr_p99_us, r.rr_p99
        );
        println!(
            "{:<16} {:>14.1} {:>14.1} {:>8.2}",
            "RR busy p50 µs", f.rr_busy_p50_us, b.rr_busy_p50_us, r.rr_busy_p50
        );
        println!(
            "{:<16} {:>14.1} {:>14.1} {:>8.2}",
            "RR busy p99 µs", f.rr_busy_p99_us, b.rr_busy_p99_us, r.rr_busy_p99
        );
        println!(
            "{:<16} {:>14.1} {:>14.1} {:>8.2}  ≤ 20 ms: {}",
            "ADD p50 ms",
            f.add_p50_ms,
            b.add_p50_ms,
            r.add_p50,
            met(g.add_p50_met)
        );
        println!(
            "{:<16} {:>14.1} {:>14.1}",
            "ADD p99 ms", f.add_p99_ms, b.add_p99_ms
        );
        println!(
            "{:<16} {:>14.2} {:>14.2} {:>8.2}  ≤ 0.5×: {}",
            "transit hop µs",
            f.transit_crossing_us,
            b.transit_crossing_us,
            r.transit_crossing,
            met(g.transit_crossing_met)
        );
        if let (Some(fc), Some(bc)) = (&f.cluster_ip, &b.cluster_ip) {
            println!(
                "{:<16} {:>14.2} {:>14.2} {:>8.2}",
                "ClusterIP Gbit/s",
                fc.throughput_bps / 1e9,
                bc.throughput_bps / 1e9,
                fc.throughput_bps / bc.throughput_bps
            );
            println!(
                "{:<16} {:>14.1} {:>14.1} {:>8.2}",
                "ClusterIP RR p50",
                fc.rr_p50_us,
                bc.rr_p50_us,
                fc.rr_p50_us / bc.rr_p50_us
            );
        }
        let range = |v: &[f64]| {
            let v = sorted(v.to_vec());
            format!(
                "{:.2}-{:.2}",
                v.first().unwrap_or(&0.0),
                v.last().unwrap_or(&0.0)
            )
        };
        println!(
            "per-round ratios: TCP {}, RR p50 {}, RR busy p50 {}",
            range(&r.throughput_rounds),
            range(&r.rr_p50_rounds),
            range(&r.rr_busy_p50_rounds)
        );
        let c = &report.fast_ebpf_cost;
        println!(
            "eBPF per round trip: {:.2} µs (timed pass, its RR p50 {:.1} µs); RR p50 ratio if it were free: {:.2}",
            c.timed.ebpf_us_per_round_trip, c.timed.rr_p50_us, c.rr_p50_ratio_without_ebpf
        );
        for p in &c.timed.programs {
            println!(
                "  {:<16} {:>5.2} runs/round trip {:>7.0} ns/run",
                p.name, p.runs_per_round_trip, p.ns_per_run
            );
        }
        let k = &report.netfilter_check_cost;
        println!(
            "netfilter check ({} rules, {} Services): {:.2} µs per round trip (RR p50 {:.1} µs on, {:.1} µs off)",
            report.proxy_mode,
            report.services,
            k.us_per_round_trip,
            k.on.rr_p50_us,
            k.off.rr_p50_us
        );
        for (name, ns) in &k.ns_per_packet {
            println!("  {name:<16} {ns:>7.0} ns per packet");
        }
        if let Some(ready) = f.fast_path_ready_p50_ms {
            println!("{:<16} {:>14.1}", "TC ready p50 ms", ready);
        }
    }
    Ok(())
}
