//! The forwarding benchmark: kernel forwarding vs the XDP fast path vs a
//! MAC-rewrite-and-redirect ceiling, with the same frames and routes, the
//! router on one core and the generator on the other.
//!
//! ```text
//!            egress: N next hops on one veth
//!  router ---------------------------------> reflector
//!         <---------------------------------
//!            return: into the router's ingress
//!     ^ one core                       ^ the other core
//! ```
//!
//! - `router` holds P prefixes over N-way ECMP (N neighbours on the egress
//!   link, each its own address and MAC), in the kernel FIB and in our maps
//!   (both written by `meshfwd::fib::FibWriter`), and runs one of three XDP
//!   programs on its ingress: (a) `bench_pass`, so the kernel forwards;
//!   (b) `meshfwd_xdp`, our fast path (netfilter check off: no conntrack
//!   knows these flows); (c) `bench_ceiling`, which only rewrites MACs and
//!   redirects.
//! - `reflector` runs `bench_reflect` on the egress link: it counts each
//!   frame the router forwarded, gives it the next flow (the next of P
//!   prefixes, one of 32,768 UDP source ports), restores the hop limit and
//!   redirects it into the return link. A few hundred 64-byte UDP frames
//!   sent once by the reflector's kernel keep circulating, each lap one
//!   forwarding by the router. No live-frames test run is needed: the
//!   kernel refuses `BPF_F_TEST_XDP_LIVE_FRAMES` on some machines.
//! - Each side's veth NAPI runs threaded, pinned to its own core, so the
//!   router's core does only the router's work. The report shows both
//!   cores' load per mode: a busy router core beside a reflector core with
//!   room to spare means the rate is the router's. The reflector does about
//!   the ceiling's work per frame (rewrite and redirect), so in ceiling mode
//!   both cores are busy and (c) is a floor of the ceiling: b/c is then an
//!   upper bound.
//! - Each mode also reports each core's busy time per forwarded frame and
//!   what the reflector could offer with its core fully busy at that cost
//!   (`generator_capacity_pps`). The router's time per frame does not
//!   depend on the loop's pace, so c's over b's (`b_over_c_router_time`) is
//!   the ratio of the two programs' costs on the router.
//! - After each measurement the reflector is told to stop and drops what
//!   still arrives; frames primed but not drained were lost in the loop.
//!
//! Usage: `forwarding [--json] [--rounds R] [--seconds S] [--in-flight K]
//! [--scale P:N ...]`; progress on stderr, the table (or JSON) on stdout,
//! JSON and a PNG also under `bench/results/`.

use std::{
    net::{Ipv4Addr, Ipv6Addr, SocketAddrV4, SocketAddrV6, UdpSocket},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use anyhow::{Context as _, Result, bail};
use aya::{
    Ebpf,
    maps::{Array, DevMapHash, PerCpuArray},
    programs::{Xdp, XdpMode, xdp::XdpLinkId},
};
use bench::{
    BENCH_OBJECT,
    plot::{ScaleSeries, write_png},
};
use bench_ebpf::{cfg, counter, prefix_groups};
use dataplane::{
    maps::{FibMaps, Netfilter},
    object,
};
use ipnet::{Ipv4Net, Ipv6Net};
use lab::{Lab, Topology, Wire, netns};
use meshfwd::fib::{FibWriter, NextHopKey, RouteTable};
use meshfwd_common::fib::{NextHop, nh_flags};
use nix::sched::{CpuSet, sched_setaffinity};
use serde::Serialize;

/// UDP source ports the reflector cycles through (with every prefix).
const FLOWS: u32 = 32_768;
const FRAME_LEN: usize = 64;
/// The router's core and the reflector's.
const ROUTER_CPU: usize = 0;
const REFLECTOR_CPU: usize = 1;
/// The reflector's source address (on its loopback) for the primed frames.
const REFLECTOR_ADDR: &str = "fd00:ffff::1";
/// Its IPv4 source address: the last but one of the IPv4 space, above
/// every scale's prefixes (see `v4_shift`).
const REFLECTOR_ADDR4: Ipv4Addr = Ipv4Addr::new(198, 19, 255, 254);

/// Which IP version the frames and routes are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
enum Family {
    Ipv6,
    Ipv4,
}

/// One route scale: prefixes over ECMP next hops.
#[derive(Debug, Clone, Copy, Serialize)]
struct Scale {
    prefixes: u32,
    ecmp: usize,
    family: Family,
}

/// The IPv4 prefixes' host bits: the widest prefixes that fit `prefixes`
/// times into `198.18.0.0/15` with the top address free (the reflector's).
fn v4_shift(prefixes: u32) -> u32 {
    let per = bench_ebpf::ipv4::SPACE / (prefixes + 1);
    31 - per.max(1).leading_zeros()
}

impl std::str::FromStr for Scale {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (p, n) = s
            .split_once(':')
            .ok_or_else(|| format!("{s:?}: expected PREFIXES:ECMP, e.g. 10000:8"))?;
        let prefixes: u32 = p.parse().map_err(|_| format!("{p:?} is not a count"))?;
        let ecmp: usize = n.parse().map_err(|_| format!("{n:?} is not a count"))?;
        if !(1..=1_000_000).contains(&prefixes) {
            return Err(format!("{prefixes} prefixes: 1 to 1,000,000"));
        }
        if !(1..=bench_ebpf::MAX_PORTS as usize).contains(&ecmp) {
            return Err(format!("{ecmp}-way ECMP: 1 to {}", bench_ebpf::MAX_PORTS));
        }
        Ok(Scale {
            prefixes,
            ecmp,
            family: Family::Ipv6,
        })
    }
}

/// XDP forwarding throughput: the kernel, our fast path and the ceiling on
/// the same frames and routes.
#[derive(Debug, clap::Parser)]
struct Args {
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
    /// Rounds through the three modes, per scale.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=50))]
    rounds: u32,
    /// Seconds each mode is measured per round.
    #[arg(long, default_value_t = 2.0)]
    seconds: f64,
    /// Frames primed into the loop. Every lap passes the router's one
    /// ingress queue (a veth holds 256), so more than that only overflow;
    /// far fewer leave the router idle between batches.
    #[arg(long, default_value_t = 224, value_parser = clap::value_parser!(u32).range(1..=4096))]
    in_flight: u32,
    /// IPv6 route scales as PREFIXES:ECMP (repeatable).
    #[arg(long = "scale", default_values = ["10000:8", "100000:16"])]
    scales: Vec<Scale>,
    /// IPv4 route scales as PREFIXES:ECMP (repeatable; at most 65,535
    /// prefixes, the IPv4 FIB's size less one).
    #[arg(long = "scale4", default_values = ["10000:8", "60000:16"])]
    scales4: Vec<Scale>,
    /// Which families to measure (repeatable; both by default).
    #[arg(long = "family", value_enum, default_values = ["ipv6", "ipv4"])]
    families: Vec<Family>,
}

#[derive(Debug, Serialize, Clone, Copy, Default)]
struct Rate {
    forwarded: u64,
    seconds: f64,
    pps: f64,
    /// Busy share of the router's core and of the reflector's, 0 to 1.
    router_cpu: f64,
    reflector_cpu: f64,
    /// Frames primed into the loop and drained after the stop: more are
    /// primed than the veth queues hold, so the loop settles at what they
    /// hold (the rest is dropped before the measurement starts).
    primed: u32,
    drained: u64,
    /// Frames the veths dropped during the measurement (queue overflow and
    /// failed transmits, both directions), and their share of `forwarded`.
    dropped: u64,
    loss: f64,
    /// Busy time of each core per forwarded frame, in ns: the router's is
    /// what one forwarding costs it, whatever the loop's pace.
    router_ns_per_frame: f64,
    reflector_ns_per_frame: f64,
    /// What the reflector could offer at its cost per frame with its core
    /// fully busy (`pps / reflector_cpu`): above `pps`, the generator had
    /// room and the router set the rate.
    generator_capacity_pps: f64,
}

#[derive(Debug, Serialize)]
struct ScaleReport {
    family: Family,
    prefixes: u32,
    ecmp: usize,
    /// Medians over the rounds (by pps).
    kernel: Rate,
    fastpath: Rate,
    ceiling: Rate,
    b_over_a: f64,
    b_over_c: f64,
    /// The same ratio from the router core's busy time per frame (c's over
    /// b's): what b/c would be if the loop kept the router's core busy in
    /// both modes.
    b_over_c_router_time: f64,
    /// b/c of each round (b and c measured back to back).
    b_over_c_per_round: Vec<f64>,
    /// Every measurement: rounds x [kernel, fast path, ceiling].
    rounds: Vec<[Rate; 3]>,
    goal_met: bool,
}

#[derive(Debug, Serialize)]
struct Report {
    frame_len: usize,
    flows: u32,
    /// Frames primed into the loop.
    in_flight: u32,
    seconds_per_mode: f64,
    rounds: u32,
    scales: Vec<ScaleReport>,
    unix_time: u64,
    /// The command line that produced this report.
    command: String,
    /// Load average when the run started: the machine is shared.
    loadavg: String,
}

fn main() {
    if let Err(err) = run() {
        eprintln!("forwarding: error: {err:#}");
        std::process::exit(1);
    }
}

fn ifindex(name: &str) -> Result<u32> {
    nix::net::if_::if_nametoindex(name).with_context(|| format!("no interface {name}"))
}

fn mac_of(node: &lab::Node, iface: &str) -> Result<[u8; 6]> {
    let out = node.run(&["ip", "-br", "link", "show", "dev", iface])?;
    let text = out
        .split_whitespace()
        .nth(2)
        .context("MAC in `ip -br link`")?;
    let mut mac = [0u8; 6];
    for (i, part) in text.split(':').enumerate().take(6) {
        mac[i] = u8::from_str_radix(part, 16)?;
    }
    Ok(mac)
}

fn mac_text(mac: &[u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

fn xdp<'a>(ebpf: &'a mut Ebpf, name: &str) -> Result<&'a mut Xdp> {
    Ok(ebpf
        .program_mut(name)
        .with_context(|| format!("no program {name}"))?
        .try_into()?)
}

fn sum(map: &PerCpuArray<aya::maps::MapData, u64>, slot: u32) -> Result<u64> {
    Ok(map.get(&slot, 0)?.iter().sum())
}

/// Busy and total jiffies of two CPUs.
fn cpu_times() -> Result<[(u64, u64); 2]> {
    use procfs::CurrentSI as _;
    let stat = procfs::KernelStats::current().context("reading /proc/stat")?;
    let mut out = [(0, 0); 2];
    for (i, cpu) in [ROUTER_CPU, REFLECTOR_CPU].into_iter().enumerate() {
        let c = stat.cpu_time.get(cpu).context("a CPU in /proc/stat")?;
        let idle = c.idle + c.iowait.unwrap_or(0);
        let total = c.user
            + c.nice
            + c.system
            + c.idle
            + c.iowait.unwrap_or(0)
            + c.irq.unwrap_or(0)
            + c.softirq.unwrap_or(0)
            + c.steal.unwrap_or(0);
        out[i] = (total - idle, total);
    }
    Ok(out)
}

/// Pin the threaded NAPI kthreads of the veth ends: `napi/<ifname>-<id>`
/// (truncated to 15 characters). Router ends are named `m-reflector...`
/// inside the router, the reflector's ends `m-router...`.
fn pin_napi_threads() -> Result<usize> {
    let mut pinned = 0;
    for p in procfs::process::all_processes().context("listing processes")? {
        let Ok(p) = p else { continue };
        let Ok(comm) = std::fs::read_to_string(format!("/proc/{}/comm", p.pid)) else {
            continue;
        };
        let cpu = if comm.starts_with("napi/m-reflec") {
            ROUTER_CPU
        } else if comm.starts_with("napi/m-router") {
            REFLECTOR_CPU
        } else {
            continue;
        };
        let mut set = CpuSet::new();
        set.set(cpu)?;
        sched_setaffinity(nix::unistd::Pid::from_raw(p.pid), &set)
            .with_context(|| format!("pinning {}", comm.trim()))?;
        pinned += 1;
    }
    Ok(pinned)
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Mode {
    Kernel,
    Fastpath,
    Ceiling,
}

impl Mode {
    const ALL: [Mode; 3] = [Mode::Kernel, Mode::Fastpath, Mode::Ceiling];

    fn program(self) -> &'static str {
        match self {
            Mode::Kernel => "bench_pass",
            Mode::Fastpath => object::XDP_PROGRAM,
            Mode::Ceiling => "bench_ceiling",
        }
    }
}

/// The router's programs and which one is attached to its ingress.
struct Router {
    ns: String,
    ingress: u32,
    bench: Ebpf,
    fast: Ebpf,
    _writer: FibWriter,
    _rt: tokio::runtime::Runtime,
    attached: Option<(Mode, XdpLinkId)>,
}

impl Router {
    fn prog(&mut self, mode: Mode) -> Result<&mut Xdp> {
        match mode {
            Mode::Fastpath => xdp(&mut self.fast, mode.program()),
            Mode::Kernel | Mode::Ceiling => xdp(&mut self.bench, mode.program()),
        }
    }

    fn attach(&mut self, mode: Mode) -> Result<()> {
        self.detach()?;
        let (ns, ingress) = (self.ns.clone(), self.ingress);
        let prog = self.prog(mode)?;
        let id = netns::enter(&ns, || {
            Ok(prog.attach_to_if_index(ingress, XdpMode::Driver)?)
        })?;
        self.attached = Some((mode, id));
        Ok(())
    }

    fn detach(&mut self) -> Result<()> {
        let Some((mode, id)) = self.attached.take() else {
            return Ok(());
        };
        let ns = self.ns.clone();
        let prog = self.prog(mode)?;
        netns::enter(&ns, || Ok(prog.detach(id)?))
    }
}

/// One scale's lab, with everything loaded and the routes written.
struct Bench {
    lab: Lab,
    scale: Scale,
    router: Router,
    reflector: Ebpf,
    count: PerCpuArray<aya::maps::MapData, u64>,
}

impl Bench {
    fn build(scale: Scale) -> Result<Bench> {
        let Scale { prefixes, ecmp, .. } = scale;
        eprintln!("forwarding: building router =={ecmp}==> reflector");
        // The egress link, then the return link into the router's ingress.
        let topo = Topology::new()
            .node("router")
            .node("reflector")
            .link("router", "reflector", Wire::Direct)
            .link("router", "reflector", Wire::Direct);
        let lab = Lab::build("fwdbench", &topo)?;
        let (router_node, refl_node) = (lab.node("router"), lab.node("reflector"));
        let ports: Vec<(String, String)> = lab
            .links()
            .iter()
            .filter(|l| l.joins("router", "reflector"))
            .map(|l| {
                if l.a == "router" {
                    (l.a_if.clone(), l.b_if.clone())
                } else {
                    (l.b_if.clone(), l.a_if.clone())
                }
            })
            .collect();
        let [egress, ret]: [(String, String); 2] = ports
            .try_into()
            .map_err(|p: Vec<_>| anyhow::anyhow!("expected 2 links, got {}", p.len()))?;
        let ret_idx = (
            netns::enter(router_node.netns(), || ifindex(&ret.0))?,
            netns::enter(refl_node.netns(), || ifindex(&ret.1))?,
        );

        // Reflector: the loop's far end on the egress link, its settings as
        // load-time constants.
        let mut macs = [0u8; 12];
        macs[..6].copy_from_slice(&mac_of(router_node, &ret.0)?);
        macs[6..].copy_from_slice(&mac_of(refl_node, &ret.1)?);
        let v4 = u32::from(scale.family == Family::Ipv4);
        let shift = v4_shift(prefixes);
        let mut reflector = aya::EbpfLoader::new()
            .override_global("REFL_PREFIXES", &prefixes, true)
            .override_global("REFL_RETURN_IFINDEX", &ret_idx.1, true)
            .override_global("REFL_MACS", &macs, true)
            .override_global("REFL_IPV4", &v4, true)
            .override_global("REFL_V4_SHIFT", &shift, true)
            .load(BENCH_OBJECT)
            .context("loading the bench object (reflector)")?;
        {
            let mut cfgmap: Array<_, u32> =
                Array::try_from(reflector.map_mut("BENCH_CFG").context("BENCH_CFG")?)?;
            cfgmap.set(cfg::STOP, 1, 0)?;
        }
        {
            let mut devs: DevMapHash<_> =
                DevMapHash::try_from(reflector.map_mut("REFL_DEVS").context("REFL_DEVS")?)?;
            netns::enter(refl_node.netns(), || {
                Ok(devs.insert(ret_idx.1, ret_idx.1, None, 0)?)
            })?;
        }
        {
            let prog = xdp(&mut reflector, "bench_reflect")?;
            prog.load()?;
            let name = egress.1.clone();
            netns::enter(refl_node.netns(), || {
                prog.attach_to_if_index(ifindex(&name)?, XdpMode::Driver)?;
                Ok(())
            })?;
        }
        let count: PerCpuArray<_, u64> =
            PerCpuArray::try_from(reflector.take_map("BENCH_COUNT").context("counters")?)?;

        // N next hops on the egress link: neighbours with static entries,
        // each its own link-local address and MAC, so the router's ECMP
        // choice and MAC rewrite are exercised in full while one device
        // carries the frames. (With a veth per next hop, each side's NAPI
        // would poll N devices with a few frames each, and the rates would
        // measure the threads' wakeups more than the router.) The reflector
        // takes every frame whatever its MAC: XDP sees it before the
        // kernel's MAC filter.
        let r_if = &egress.0;
        let r_mac = mac_of(router_node, r_if)?;
        let r_idx = netns::enter(router_node.netns(), || ifindex(r_if))?;
        let mut hops = Vec::new();
        let mut ceil_ports = Vec::new();
        for j in 0..ecmp {
            let via = Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0x100, j as u16 + 1);
            let mac = [0x02, 0x6b, 0x6d, 0, 1, j as u8 + 1];
            router_node.run(&[
                "ip",
                "-6",
                "neigh",
                "replace",
                &via.to_string(),
                "lladdr",
                &mac_text(&mac),
                "dev",
                r_if,
                "nud",
                "permanent",
            ])?;
            hops.push(NextHopKey {
                ifindex: r_idx,
                via,
            });
            ceil_ports.push(NextHop {
                ifindex: r_idx,
                mtu: 1500,
                dst_mac: mac,
                src_mac: r_mac,
                flags: nh_flags::ALIVE | nh_flags::MAC_VALID,
            });
        }
        // The primed frames enter the router where the loop does: through
        // the return link.
        let r_ll = router_node.link_local(&ret.0)?;
        let r_mac = mac_of(router_node, &ret.0)?;
        let (ll, mac) = (r_ll.to_string(), mac_text(&r_mac));
        refl_node.run(&[
            "ip",
            "-6",
            "neigh",
            "replace",
            &ll,
            "lladdr",
            &mac,
            "dev",
            &ret.1,
            "nud",
            "permanent",
        ])?;
        let addr = format!("{REFLECTOR_ADDR}/128");
        refl_node.run(&["ip", "-6", "addr", "add", &addr, "dev", "lo"])?;
        refl_node.run(&[
            "ip",
            "-6",
            "route",
            "replace",
            "fd00::/16",
            "via",
            &ll,
            "dev",
            &ret.1,
        ])?;
        // IPv4 the same way, via the router's IPv6 link-local address; the
        // router forwards IPv4 in mode (a).
        let addr4 = format!("{REFLECTOR_ADDR4}/32");
        refl_node.run(&["ip", "-4", "addr", "add", &addr4, "dev", "lo"])?;
        let via = format!("inet6 {ll}");
        refl_node.run(&[
            "sh",
            "-c",
            &format!("ip -4 route replace 198.18.0.0/15 via {via} dev {}", ret.1),
        ])?;
        router_node.run(&["sysctl", "-qw", "net.ipv4.ip_forward=1"])?;
        // Each side's NAPI in its own kthread, so it can be pinned.
        for (node, ifs) in [
            (router_node, [&egress.0, &ret.0]),
            (refl_node, [&egress.1, &ret.1]),
        ] {
            for i in ifs {
                // `ip netns exec` mounts the namespace's own sysfs.
                let out = std::process::Command::new("ip")
                    .args(["netns", "exec", node.netns(), "sh", "-c"])
                    .arg(format!("echo 1 > /sys/class/net/{i}/threaded"))
                    .output()?;
                if !out.status.success() {
                    bail!(
                        "threaded NAPI on {i}: {}",
                        String::from_utf8_lossy(&out.stderr).trim()
                    );
                }
            }
        }

        eprintln!(
            "forwarding: writing {prefixes} {:?} routes x {ecmp}-way ECMP (maps + kernel FIB)",
            scale.family
        );
        let mut table = RouteTable::default();
        for i in 0..prefixes {
            match scale.family {
                Family::Ipv6 => {
                    let [h, l] = prefix_groups(i);
                    let addr = Ipv6Addr::new(0xfd00, 0, h, l, 0, 0, 0, 0);
                    table.route(Ipv6Net::new_assert(addr, 64), hops.iter().copied());
                }
                Family::Ipv4 => {
                    let shift = v4_shift(prefixes);
                    let addr = Ipv4Addr::from(bench_ebpf::ipv4::BASE + (i << shift));
                    table.route(
                        Ipv4Net::new_assert(addr, 32 - shift as u8),
                        hops.iter().copied(),
                    );
                }
            }
        }
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let mut fast = object::load(None).context("loading the forwarding object")?;
        let mut maps = FibMaps::take(&mut fast)?;
        // 65,536 flows no conntrack has seen: this benchmark measures
        // forwarding, with the netfilter check off (the pods benchmark
        // measures the check).
        maps.set_netfilter(Netfilter::Ignore)?;
        xdp(&mut fast, object::XDP_PROGRAM)?.load()?;
        let started = Instant::now();
        let (writer, report) = netns::enter(router_node.netns(), || {
            rt.block_on(async {
                let mut w = FibWriter::new(maps).await?;
                let r = w.apply(&table).await?;
                Ok::<_, anyhow::Error>((w, r))
            })
        })?;
        eprintln!(
            "forwarding: {} map ops, {} kernel routes in {:.1}s",
            report.map_ops,
            report.kernel_writes,
            started.elapsed().as_secs_f64(),
        );
        if report.unresolved > 0 || !report.kernel_errors.is_empty() {
            bail!("routes not fully installed: {report:?}");
        }

        // The ceiling picks its port by the destination's last byte.
        let port_byte = match scale.family {
            Family::Ipv6 => bench_ebpf::PREFIX_OFFSET + 3,
            Family::Ipv4 => bench_ebpf::ipv4::DST_OFFSET + 3,
        } as u32;
        let mut bench = aya::EbpfLoader::new()
            .override_global("CEIL_PORT_BYTE", &port_byte, true)
            .load(BENCH_OBJECT)
            .context("loading the bench object (router)")?;
        for name in ["bench_pass", "bench_ceiling"] {
            xdp(&mut bench, name)?.load()?;
        }
        {
            let mut cfgmap: Array<_, u32> =
                Array::try_from(bench.map_mut("BENCH_CFG").context("BENCH_CFG")?)?;
            cfgmap.set(cfg::PORTS, ecmp as u32, 0)?;
            let mut ceil: Array<_, NextHop> =
                Array::try_from(bench.map_mut("CEIL_PORTS").context("CEIL_PORTS")?)?;
            for (i, p) in ceil_ports.iter().enumerate() {
                ceil.set(i as u32, *p, 0)?;
            }
        }
        {
            let mut devs: DevMapHash<_> =
                DevMapHash::try_from(bench.map_mut("CEIL_DEVS").context("CEIL_DEVS")?)?;
            netns::enter(router_node.netns(), || {
                for p in &ceil_ports {
                    // The same device for every port: inserted again, no harm.
                    devs.insert(p.ifindex, p.ifindex, None, 0)?;
                }
                Ok(())
            })?;
        }
        let router = Router {
            ns: router_node.netns().to_owned(),
            ingress: ret_idx.0,
            bench,
            fast,
            _writer: writer,
            _rt: rt,
            attached: None,
        };
        Ok(Bench {
            lab,
            scale,
            router,
            reflector,
            count,
        })
    }

    fn set_stop(&mut self, stop: bool) -> Result<()> {
        let mut cfgmap: Array<_, u32> =
            Array::try_from(self.reflector.map_mut("BENCH_CFG").context("BENCH_CFG")?)?;
        cfgmap.set(cfg::STOP, u32::from(stop), 0)?;
        Ok(())
    }

    /// Send `n` 64-byte UDP frames from the reflector's kernel into the
    /// router: the loop's frames.
    fn prime(&self, n: u32) -> Result<()> {
        let prefixes = self.scale.prefixes;
        if self.scale.family == Family::Ipv4 {
            let shift = v4_shift(prefixes);
            return netns::enter(self.lab.node("reflector").netns(), || {
                let sock = UdpSocket::bind(SocketAddrV4::new(REFLECTOR_ADDR4, 0))?;
                for i in 0..n {
                    let dst = Ipv4Addr::from(bench_ebpf::ipv4::host(i % prefixes, shift));
                    // 22 bytes of payload: 14 + 20 + 8 + 22 = 64 bytes.
                    sock.send_to(&[0x6b; 22], SocketAddrV4::new(dst, 5001))?;
                    if i % 32 == 31 {
                        std::thread::sleep(Duration::from_millis(2));
                    }
                }
                Ok(())
            });
        }
        netns::enter(self.lab.node("reflector").netns(), || {
            let src: Ipv6Addr = REFLECTOR_ADDR.parse()?;
            let sock = UdpSocket::bind(SocketAddrV6::new(src, 0, 0, 0))?;
            for i in 0..n {
                let [h, l] = prefix_groups(i % prefixes);
                let dst = Ipv6Addr::new(0xfd00, 0, h, l, 0, 0, 0, 1);
                // 2 bytes of payload: 14 + 40 + 8 + 2 = 64 bytes on the wire.
                sock.send_to(b"km", SocketAddrV6::new(dst, 5001, 0, 0))?;
                // In small bursts: a veth queue holds 256 frames, and the
                // loop spreads each burst over every link before the next.
                if i % 32 == 31 {
                    std::thread::sleep(Duration::from_millis(2));
                }
            }
            Ok(())
        })
    }

    /// Frames the veths of both sides dropped so far: XDP transmit and
    /// redirect failures and queue drops, from `ethtool -S`.
    fn queue_drops(&self) -> u64 {
        let mut total = 0;
        for node in ["router", "reflector"] {
            let n = self.lab.node(node);
            for i in n.ifaces() {
                let stats = n.run(&["ethtool", "-S", &i]).unwrap_or_default();
                total += stats
                    .lines()
                    .filter_map(|l| l.trim().split_once(": "))
                    .filter(|(k, _)| {
                        k.ends_with("xdp_tx_errors")
                            || k.ends_with("xdp_xmit_errors")
                            || k.ends_with("peer_tq_xdp_xmit_err")
                    })
                    .filter_map(|(_, v)| v.parse::<u64>().ok())
                    .sum::<u64>();
            }
        }
        total
    }

    /// Measure one mode: prime, let it settle, count for `seconds`, stop
    /// and drain.
    fn measure(&mut self, mode: Mode, seconds: f64, in_flight: u32) -> Result<Rate> {
        self.router.attach(mode)?;
        pin_napi_threads()?;
        let drained0 = sum(&self.count, counter::DRAINED)?;
        self.set_stop(false)?;
        self.prime(in_flight)?;
        std::thread::sleep(Duration::from_millis(300));
        let (f0, c0, d0, t0) = (
            sum(&self.count, counter::FORWARDED)?,
            cpu_times()?,
            self.queue_drops(),
            Instant::now(),
        );
        std::thread::sleep(Duration::from_secs_f64(seconds));
        let (f1, c1, d1, secs) = (
            sum(&self.count, counter::FORWARDED)?,
            cpu_times()?,
            self.queue_drops(),
            t0.elapsed().as_secs_f64(),
        );
        self.set_stop(true)?;
        std::thread::sleep(Duration::from_millis(300));
        let drained = sum(&self.count, counter::DRAINED)? - drained0;
        let load = |i: usize| {
            let (busy, total) = (c1[i].0 - c0[i].0, c1[i].1 - c0[i].1);
            if total == 0 {
                0.0
            } else {
                busy as f64 / total as f64
            }
        };
        let forwarded = f1 - f0;
        let dropped = d1.saturating_sub(d0);
        Ok(Rate {
            forwarded,
            seconds: secs,
            pps: forwarded as f64 / secs,
            router_cpu: load(0),
            reflector_cpu: load(1),
            primed: in_flight,
            drained,
            dropped,
            loss: if forwarded == 0 {
                1.0
            } else {
                dropped as f64 / forwarded as f64
            },
            router_ns_per_frame: per_frame_ns(load(0), forwarded, secs),
            reflector_ns_per_frame: per_frame_ns(load(1), forwarded, secs),
            generator_capacity_pps: if load(1) > 0.0 {
                forwarded as f64 / secs / load(1)
            } else {
                0.0
            },
        })
    }
}

/// Core busy time per frame, in ns, from the core's busy share over
/// `secs` seconds that forwarded `frames`.
fn per_frame_ns(busy: f64, frames: u64, secs: f64) -> f64 {
    if frames == 0 {
        return 0.0;
    }
    busy * secs * 1e9 / frames as f64
}

fn median(v: &[Rate]) -> Rate {
    let mut v = v.to_vec();
    v.sort_by(|a, b| a.pps.total_cmp(&b.pps));
    v[v.len() / 2]
}

fn run_scale(args: &Args, scale: Scale) -> Result<ScaleReport> {
    let mut bench = Bench::build(scale)?;
    let mut rounds = Vec::new();
    for round in 0..args.rounds {
        let mut r = [Rate::default(); 3];
        for (mi, mode) in Mode::ALL.iter().enumerate() {
            r[mi] = bench.measure(*mode, args.seconds, args.in_flight)?;
            eprintln!(
                "forwarding: {:?} {}x{} round {} {:?}: {:.3} Mpps, router core {:.0}% ({:.1} ns a frame), reflector core {:.0}% (could offer {:.2} Mpps), dropped {}, circulating {} of {}",
                scale.family,
                scale.prefixes,
                scale.ecmp,
                round + 1,
                mode,
                r[mi].pps / 1e6,
                r[mi].router_cpu * 100.0,
                r[mi].router_ns_per_frame,
                r[mi].reflector_cpu * 100.0,
                r[mi].generator_capacity_pps / 1e6,
                r[mi].dropped,
                r[mi].drained,
                r[mi].primed
            );
        }
        rounds.push(r);
    }
    bench.router.detach()?;
    let per_mode = |i: usize| rounds.iter().map(|r| r[i]).collect::<Vec<_>>();
    let (a, b, c) = (
        median(&per_mode(0)),
        median(&per_mode(1)),
        median(&per_mode(2)),
    );
    let b_over_a = b.pps / a.pps.max(1.0);
    let b_over_c = b.pps / c.pps.max(1.0);
    let b_over_c_router_time = if b.router_ns_per_frame > 0.0 {
        c.router_ns_per_frame / b.router_ns_per_frame
    } else {
        0.0
    };
    let no_loss = rounds.iter().flatten().all(|r| r.dropped == 0);
    Ok(ScaleReport {
        family: scale.family,
        prefixes: scale.prefixes,
        ecmp: scale.ecmp,
        kernel: a,
        fastpath: b,
        ceiling: c,
        b_over_a,
        b_over_c,
        b_over_c_router_time,
        b_over_c_per_round: rounds
            .iter()
            .map(|r| r[1].pps / r[2].pps.max(1.0))
            .collect(),
        rounds,
        goal_met: b_over_c >= 0.95 && b_over_a >= 5.0 && no_loss,
    })
}

fn run() -> Result<()> {
    let args = <Args as clap::Parser>::parse();
    if !(0.2..=30.0).contains(&args.seconds) {
        bail!("--seconds {}: 0.2 to 30", args.seconds);
    }
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    if cpus < 2 {
        bail!("the benchmark needs two cores (router and reflector), found {cpus}");
    }
    let loadavg = std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default();
    // This thread stays off the router's core.
    let mut set = CpuSet::new();
    set.set(REFLECTOR_CPU)?;
    sched_setaffinity(nix::unistd::Pid::from_raw(0), &set).context("pinning the harness")?;

    let mut todo = Vec::new();
    if args.families.contains(&Family::Ipv6) {
        todo.extend(args.scales.iter().copied());
    }
    if args.families.contains(&Family::Ipv4) {
        for s in &args.scales4 {
            if s.prefixes > meshfwd_common::fib::FIB_V4_MAX_ENTRIES - 1 {
                bail!(
                    "--scale4 {}: at most {} IPv4 prefixes (the IPv4 FIB's size less one)",
                    s.prefixes,
                    meshfwd_common::fib::FIB_V4_MAX_ENTRIES - 1
                );
            }
            todo.push(Scale {
                family: Family::Ipv4,
                ..*s
            });
        }
    }
    let mut scales = Vec::new();
    for scale in todo {
        scales.push(run_scale(&args, scale)?);
    }
    let report = Report {
        frame_len: FRAME_LEN,
        flows: FLOWS,
        in_flight: args.in_flight,
        seconds_per_mode: args.seconds,
        rounds: args.rounds,
        scales,
        unix_time: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
        command: format!(
            "cargo xtask bench forwarding -- {}",
            std::env::args().skip(1).collect::<Vec<_>>().join(" ")
        ),
        loadavg,
    };
    let json = serde_json::to_string_pretty(&report)?;
    let dir = bench::results_dir();
    std::fs::create_dir_all(&dir)?;
    std::fs::write(dir.join("forwarding.json"), format!("{json}\n"))?;
    let series: Vec<ScaleSeries> = report
        .scales
        .iter()
        .map(|s| ScaleSeries {
            label: format!(
                "{:?}: {} prefixes x {}-way ECMP",
                s.family, s.prefixes, s.ecmp
            ),
            rounds: s
                .rounds
                .iter()
                .map(|r| [r[0].pps, r[1].pps, r[2].pps])
                .collect(),
            b_over_a: s.b_over_a,
            b_over_c: s.b_over_c,
        })
        .collect();
    write_png(
        &dir.join("forwarding.png"),
        "XDP forwarding, 64-byte IPv6/UDP, router on one core",
        &series,
    )?;
    eprintln!(
        "forwarding: wrote forwarding.json and forwarding.png in {}",
        dir.display()
    );
    if args.json {
        println!("{json}");
        return Ok(());
    }
    for s in &report.scales {
        println!(
            "{:?}: {} prefixes x {}-way ECMP",
            s.family, s.prefixes, s.ecmp
        );
        println!(
            "  {:<28} {:>8} {:>12} {:>15} {:>12} {:>8}",
            "MODE", "Mpps", "ROUTER CORE", "ROUTER NS/FRAME", "GEN. CAN DO", "DROPPED"
        );
        for (name, r) in [
            ("(a) kernel forwarding", s.kernel),
            ("(b) meshfwd XDP fast path", s.fastpath),
            ("(c) ceiling (MAC+redirect)", s.ceiling),
        ] {
            println!(
                "  {:<28} {:>8.3} {:>11.0}% {:>15.1} {:>7.2} Mpps {:>8}",
                name,
                r.pps / 1e6,
                r.router_cpu * 100.0,
                r.router_ns_per_frame,
                r.generator_capacity_pps / 1e6,
                r.dropped
            );
        }
        println!(
            "  b/c by router core time per frame = {:.1}%",
            s.b_over_c_router_time * 100.0
        );
        println!(
            "  b/a = {:.2}x   b/c = {:.1}%   goal (b >= 5x a, >= 95% c, no loss): {}",
            s.b_over_a,
            s.b_over_c * 100.0,
            if s.goal_met { "met" } else { "NOT met" }
        );
    }
    Ok(())
}
