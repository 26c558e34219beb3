//! The forwarding benchmark: kernel forwarding vs the XDP fast path vs a
//! MAC-rewrite-and-redirect ceiling, on one core, in one run, with the same
//! frames and routes.
//!
//! ```text
//!  gen --veth--> router ==8 veths==> sink
//! ```
//!
//! - `gen` runs `bench_gen` with `BPF_PROG_TEST_RUN` in live-frames mode:
//!   each 64-byte IPv6/UDP frame gets a flow (one of 10,000 /64 prefixes and
//!   a UDP source port) and is redirected into the generator's veth;
//! - `router` has 10,000 prefixes over 8-way ECMP to the sink, in the
//!   kernel FIB and in our maps (both written by `meshfwd::fib::FibWriter`),
//!   and one of three XDP programs on its ingress: (a) `bench_pass`, so the
//!   kernel forwards; (b) `meshfwd_xdp`, our fast path; (c)
//!   `bench_ceiling`, which only rewrites MACs and redirects (the fast path
//!   runs with its netfilter check off: no conntrack knows these flows);
//! - `sink` counts and drops with `bench_sink` on all 8 links.
//!
//! Usage: `forwarding [--json] [--frames N] [--rounds R]`; progress on
//! stderr, the table (or JSON) on stdout, JSON also under `bench/results/`.

use std::{
    net::Ipv6Addr,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use anyhow::{Context as _, Result, bail};
use aya::{
    Ebpf,
    maps::{Array, DevMapHash, PerCpuArray},
    programs::{TestRun as _, TestRunAttrs, TestRunOptions, Xdp, XdpMode, xdp::XdpLinkId},
};
use bench::BENCH_OBJECT;
use bench_ebpf::{TEMPLATE_LEN, cfg, counter};
use dataplane::{
    maps::{FibMaps, Netfilter},
    object,
    stats::Stats,
};
use ipnet::Ipv6Net;
use lab::{Lab, Topology, Wire, netns};
use meshfwd::fib::{FibWriter, NextHopKey, RouteTable};
use meshfwd_common::fib::{NextHop, nh_flags};
use nix::sched::{CpuSet, sched_setaffinity};
use serde::Serialize;

const PREFIXES: u32 = 10_000;
const ECMP: usize = 8;
const FLOWS: u32 = 65_536;
const FRAME_LEN: usize = 64;
const BATCH: u32 = 64;
/// Each round sends at most this long per mode (bounded load).
const MAX_ROUND_TIME: Duration = Duration::from_secs(20);

#[derive(Debug, Serialize, Clone, Copy, Default)]
struct Rate {
    frames: u64,
    delivered: u64,
    seconds: f64,
    offered_pps: f64,
    delivered_pps: f64,
    loss: f64,
}

#[derive(Debug, Serialize)]
struct Report {
    frame_len: usize,
    prefixes: u32,
    ecmp: usize,
    flows: u32,
    frames_per_round: u32,
    rounds: u32,
    cpu: usize,
    kernel: Rate,
    fastpath: Rate,
    ceiling: Rate,
    /// Ratios of the medians over all rounds.
    b_over_a: f64,
    b_over_c: f64,
    /// b/c of each round (b and c measured back to back): the spread shows
    /// how much the shared machine moved during the run.
    b_over_c_per_round: Vec<f64>,
    /// The median of `b_over_c_per_round`.
    b_over_c_round_median: f64,
    goal_met: bool,
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

/// XDP forwarding throughput: the kernel, our fast path and the ceiling on
/// the same frames and routes.
#[derive(Debug, clap::Parser)]
struct Args {
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
    /// Frames per mode and round.
    #[arg(long, default_value_t = 2_000_000, value_parser = clap::value_parser!(u32).range(1..))]
    frames: u32,
    /// Rounds through the three modes.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..))]
    rounds: u32,
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

fn xdp<'a>(ebpf: &'a mut Ebpf, name: &str) -> Result<&'a mut Xdp> {
    Ok(ebpf
        .program_mut(name)
        .with_context(|| format!("no program {name}"))?
        .try_into()?)
}

/// The template frame: gen -> router, fd00::1 (the generator fills in the
/// prefix and source port), UDP, 64 bytes on the wire.
fn frame(dst_mac: [u8; 6], src_mac: [u8; 6]) -> Vec<u8> {
    let mut f = Vec::with_capacity(FRAME_LEN);
    f.extend_from_slice(&dst_mac);
    f.extend_from_slice(&src_mac);
    f.extend_from_slice(&[0x86, 0xdd]);
    f.extend_from_slice(&(6u32 << 28).to_be_bytes());
    f.extend_from_slice(&10u16.to_be_bytes()); // UDP header + 2 bytes
    f.push(17);
    f.push(64);
    f.extend_from_slice(&"fd00:ffff::1".parse::<Ipv6Addr>().expect("src").octets());
    f.extend_from_slice(&"fd00::1".parse::<Ipv6Addr>().expect("dst").octets());
    f.extend_from_slice(&[0x80, 0x00, 0x13, 0x89, 0x00, 0x0a, 0x00, 0x00, 0x6b, 0x6d]);
    assert_eq!(f.len(), FRAME_LEN);
    f
}

fn sum(map: &PerCpuArray<aya::maps::MapData, u64>, slot: u32) -> Result<u64> {
    Ok(map.get(&slot, 0)?.iter().sum())
}

struct Router {
    ingress: u32,
    bench: Ebpf,
    fast: Ebpf,
    _writer: FibWriter,
    _rt: tokio::runtime::Runtime,
    attached: Option<(Mode, XdpLinkId)>,
}

#[derive(Clone, Copy, Debug)]
enum Mode {
    Kernel,
    Fastpath,
    Ceiling,
}

impl Router {
    fn attach(&mut self, ns: &str, mode: Mode) -> Result<()> {
        self.detach(ns)?;
        let ingress = self.ingress;
        let name = mode.program();
        let prog = match mode {
            Mode::Fastpath => xdp(&mut self.fast, name)?,
            Mode::Kernel | Mode::Ceiling => xdp(&mut self.bench, name)?,
        };
        let id = netns::enter(
            ns,
            || Ok(prog.attach_to_if_index(ingress, XdpMode::Driver)?),
        )?;
        self.attached = Some((mode, id));
        Ok(())
    }

    fn detach(&mut self, ns: &str) -> Result<()> {
        let Some((mode, id)) = self.attached.take() else {
            return Ok(());
        };
        let prog = match mode {
            Mode::Fastpath => xdp(&mut self.fast, mode.program())?,
            Mode::Kernel | Mode::Ceiling => xdp(&mut self.bench, mode.program())?,
        };
        netns::enter(ns, || Ok(prog.detach(id)?))
    }
}

impl Mode {
    fn program(self) -> &'static str {
        match self {
            Mode::Kernel => "bench_pass",
            Mode::Fastpath => object::XDP_PROGRAM,
            Mode::Ceiling => "bench_ceiling",
        }
    }
}

fn run() -> Result<()> {
    let args = <Args as clap::Parser>::parse();
    let cpu = 0usize;
    let loadavg = std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default();

    eprintln!("forwarding: building gen -> router =={ECMP}==> sink");
    let mut topo = Topology::new()
        .node("gen")
        .node("router")
        .node("sink")
        .link("gen", "router", Wire::Direct);
    for _ in 0..ECMP {
        topo = topo.link("router", "sink", Wire::Direct);
    }
    let lab = Lab::build("fwdbench", &topo)?;
    let (gen_node, router_node, sink_node) =
        (lab.node("gen"), lab.node("router"), lab.node("sink"));
    let gen_link = lab.link("gen", "router").clone();
    let (gen_if, router_in) = if gen_link.a == "gen" {
        (gen_link.a_if.clone(), gen_link.b_if.clone())
    } else {
        (gen_link.b_if.clone(), gen_link.a_if.clone())
    };
    let sink_links: Vec<(String, String)> = lab
        .links()
        .iter()
        .filter(|l| l.joins("router", "sink"))
        .map(|l| {
            if l.a == "router" {
                (l.a_if.clone(), l.b_if.clone())
            } else {
                (l.b_if.clone(), l.a_if.clone())
            }
        })
        .collect();
    if sink_links.len() != ECMP {
        bail!(
            "expected {ECMP} router-sink links, got {}",
            sink_links.len()
        );
    }

    // Sink: count and drop on every link.
    let mut sink = Ebpf::load(BENCH_OBJECT).context("loading the bench object (sink)")?;
    {
        let prog = xdp(&mut sink, "bench_sink")?;
        prog.load()?;
        let names: Vec<String> = sink_links.iter().map(|(_, s)| s.clone()).collect();
        netns::enter(sink_node.netns(), || {
            for name in &names {
                prog.attach_to_if_index(ifindex(name)?, XdpMode::Driver)?;
            }
            Ok(())
        })?;
    }
    let sink_count: PerCpuArray<_, u64> =
        PerCpuArray::try_from(sink.take_map("BENCH_COUNT").context("sink counters")?)?;

    // Router: static neighbours for the sink's link-locals, then 10,000
    // prefixes over 8 next hops written by the map writer.
    eprintln!("forwarding: writing {PREFIXES} routes x {ECMP}-way ECMP (maps + kernel FIB)");
    let mut hops = Vec::new();
    let mut ceil_ports = Vec::new();
    for (r_if, s_if) in &sink_links {
        let ll = sink_node.link_local(s_if)?;
        let mac = mac_of(sink_node, s_if)?;
        let mac_s = mac
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<Vec<_>>()
            .join(":");
        router_node.run(&[
            "ip",
            "-6",
            "neigh",
            "replace",
            &ll.to_string(),
            "lladdr",
            &mac_s,
            "dev",
            r_if,
            "nud",
            "permanent",
        ])?;
        let r_mac = mac_of(router_node, r_if)?;
        let r_idx = netns::enter(router_node.netns(), || ifindex(r_if))?;
        hops.push(NextHopKey {
            ifindex: r_idx,
            via: ll,
        });
        ceil_ports.push(NextHop {
            ifindex: r_idx,
            mtu: 1500,
            dst_mac: mac,
            src_mac: r_mac,
            flags: nh_flags::ALIVE | nh_flags::MAC_VALID,
        });
    }
    let mut table = RouteTable::default();
    for i in 0..PREFIXES {
        let addr = Ipv6Addr::new(0xfd00, 0, 0, i as u16, 0, 0, 0, 0);
        table.route(Ipv6Net::new_assert(addr, 64).trunc(), hops.iter().copied());
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let mut fast = object::load(None).context("loading the forwarding object")?;
    let mut maps = FibMaps::take(&mut fast)?;
    // The generated frames belong to 65,536 flows no conntrack has seen:
    // this benchmark measures forwarding, with the netfilter check off
    // (the pods benchmark measures the check).
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
        "forwarding: {} map ops, {} kernel routes in {:.1}s ({} unresolved, {} kernel errors)",
        report.map_ops,
        report.kernel_writes,
        started.elapsed().as_secs_f64(),
        report.unresolved,
        report.kernel_errors.len()
    );
    if report.unresolved > 0 || !report.kernel_errors.is_empty() {
        bail!("routes not fully installed: {report:?}");
    }

    // The router's bench object: pass-all and the ceiling.
    let mut bench = Ebpf::load(BENCH_OBJECT).context("loading the bench object (router)")?;
    for name in ["bench_pass", "bench_ceiling"] {
        xdp(&mut bench, name)?.load()?;
    }
    {
        let mut cfgmap: Array<_, u32> =
            Array::try_from(bench.map_mut("BENCH_CFG").context("BENCH_CFG")?)?;
        cfgmap.set(cfg::PORTS, ECMP as u32, 0)?;
        let mut ports: Array<_, NextHop> =
            Array::try_from(bench.map_mut("CEIL_PORTS").context("CEIL_PORTS")?)?;
        for (i, p) in ceil_ports.iter().enumerate() {
            ports.set(i as u32, *p, 0)?;
        }
    }
    {
        let ports = ceil_ports.clone();
        let mut devs: DevMapHash<_> =
            DevMapHash::try_from(bench.map_mut("CEIL_DEVS").context("CEIL_DEVS")?)?;
        netns::enter(router_node.netns(), || {
            for p in &ports {
                devs.insert(p.ifindex, p.ifindex, None, 0)?;
            }
            Ok(())
        })?;
    }
    let router_in_idx = netns::enter(router_node.netns(), || ifindex(&router_in))?;
    let mut router = Router {
        ingress: router_in_idx,
        bench,
        fast,
        _writer: writer,
        _rt: rt,
        attached: None,
    };

    // Generator.
    let mut gen_obj = Ebpf::load(BENCH_OBJECT).context("loading the bench object (gen)")?;
    xdp(&mut gen_obj, "bench_gen")?.load()?;
    let gen_idx = netns::enter(gen_node.netns(), || ifindex(&gen_if))?;
    {
        let mut cfgmap: Array<_, u32> =
            Array::try_from(gen_obj.map_mut("BENCH_CFG").context("BENCH_CFG")?)?;
        cfgmap.set(cfg::GEN_IFINDEX, gen_idx, 0)?;
        cfgmap.set(cfg::FLOWS, FLOWS, 0)?;
        cfgmap.set(cfg::PREFIXES, PREFIXES, 0)?;
    }
    let template = frame(mac_of(router_node, &router_in)?, mac_of(gen_node, &gen_if)?);
    {
        let mut t: Array<_, [u8; TEMPLATE_LEN]> =
            Array::try_from(gen_obj.map_mut("GEN_TEMPLATE").context("GEN_TEMPLATE")?)?;
        let mut bytes = [0u8; TEMPLATE_LEN];
        bytes.copy_from_slice(&template);
        t.set(0, bytes, 0)?;
    }
    let gen_count: PerCpuArray<_, u64> =
        PerCpuArray::try_from(gen_obj.take_map("BENCH_COUNT").context("gen counters")?)?;

    // One core: this thread, its test runs and the softirqs they raise.
    let mut set = CpuSet::new();
    set.set(cpu)?;
    sched_setaffinity(nix::unistd::Pid::from_raw(0), &set).context("pinning to one CPU")?;

    let mut results: [Vec<Rate>; 3] = Default::default();
    let modes = [Mode::Kernel, Mode::Fastpath, Mode::Ceiling];
    for round in 0..args.rounds {
        for (mi, mode) in modes.iter().enumerate() {
            router.attach(router_node.netns(), *mode)?;
            std::thread::sleep(Duration::from_millis(200));
            let g0 = sum(&gen_count, counter::GENERATED)?;
            let s0 = sum(&sink_count, counter::SUNK)?;
            let prog = xdp(&mut gen_obj, "bench_gen")?;
            let started = Instant::now();
            // Chunks, so a slow mode stays bounded in time.
            let chunk = 250_000u32.min(args.frames);
            let mut sent = 0u32;
            netns::enter(gen_node.netns(), || {
                while sent < args.frames && started.elapsed() < MAX_ROUND_TIME {
                    let n = chunk.min(args.frames - sent);
                    let opts = TestRunOptions {
                        data_in: Some(&template),
                        repeat: n,
                        attrs: TestRunAttrs::new().xdp_live_frames(BATCH),
                        ..Default::default()
                    };
                    prog.test_run(opts)
                        .context("BPF_PROG_TEST_RUN live frames")?;
                    sent += n;
                }
                Ok(())
            })?;
            let seconds = started.elapsed().as_secs_f64();
            std::thread::sleep(Duration::from_millis(200));
            let frames = sum(&gen_count, counter::GENERATED)? - g0;
            let delivered = sum(&sink_count, counter::SUNK)? - s0;
            let rate = Rate {
                frames,
                delivered,
                seconds,
                offered_pps: frames as f64 / seconds,
                delivered_pps: delivered as f64 / seconds,
                // The sink also counts the odd frame the router's kernel
                // sends itself (MLD, ND): never report a negative loss.
                loss: if frames == 0 {
                    0.0
                } else {
                    (1.0 - delivered as f64 / frames as f64).max(0.0)
                },
            };
            eprintln!(
                "forwarding: round {} {:?}: offered {:.3} Mpps, delivered {:.3} Mpps, loss {:.4}%",
                round + 1,
                mode,
                rate.offered_pps / 1e6,
                rate.delivered_pps / 1e6,
                rate.loss * 100.0
            );
            if std::env::var_os("FWD_DEBUG").is_some() {
                let stats = Stats::read(&router._writer.maps().stats)?;
                eprintln!(
                    "{:?}",
                    stats
                        .counters
                        .iter()
                        .filter(|(_, v)| **v > 0)
                        .collect::<Vec<_>>()
                );
                eprintln!("{}", router_node.run(&["nstat", "-a"]).unwrap_or_default());
            }
            results[mi].push(rate);
        }
    }
    router.detach(router_node.netns())?;

    let median = |v: &Vec<Rate>| {
        let mut v = v.clone();
        v.sort_by(|a, b| a.delivered_pps.total_cmp(&b.delivered_pps));
        v[v.len() / 2]
    };
    let (a, b, c) = (
        median(&results[0]),
        median(&results[1]),
        median(&results[2]),
    );
    let b_over_a = b.delivered_pps / a.delivered_pps.max(1.0);
    let b_over_c = b.delivered_pps / c.delivered_pps.max(1.0);
    let b_over_c_per_round: Vec<f64> = results[1]
        .iter()
        .zip(&results[2])
        .map(|(b, c)| b.delivered_pps / c.delivered_pps.max(1.0))
        .collect();
    let b_over_c_round_median = {
        let mut v = b_over_c_per_round.clone();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let report = Report {
        frame_len: FRAME_LEN,
        prefixes: PREFIXES,
        ecmp: ECMP,
        flows: FLOWS,
        frames_per_round: args.frames,
        rounds: args.rounds,
        cpu,
        kernel: a,
        fastpath: b,
        ceiling: c,
        b_over_a,
        b_over_c,
        b_over_c_per_round,
        b_over_c_round_median,
        goal_met: b_over_c >= 0.9 && b_over_a >= 3.0 && b.loss <= 0.0,
        unix_time: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
        command: format!(
            "cargo run --release -p bench --bin forwarding -- {}",
            std::env::args().skip(1).collect::<Vec<_>>().join(" ")
        ),
        loadavg,
    };
    let json = serde_json::to_string_pretty(&report)?;
    let dir = bench::results_dir();
    std::fs::create_dir_all(&dir)?;
    std::fs::write(dir.join("forwarding.json"), format!("{json}\n"))?;
    eprintln!(
        "forwarding: wrote {}",
        dir.join("forwarding.json").display()
    );
    if args.json {
        println!("{json}");
    } else {
        println!(
            "{:<28} {:>14} {:>16} {:>8}",
            "MODE", "OFFERED Mpps", "DELIVERED Mpps", "LOSS %"
        );
        for (name, r) in [
            ("(a) kernel forwarding", a),
            ("(b) meshfwd XDP fast path", b),
            ("(c) ceiling (MAC+redirect)", c),
        ] {
            println!(
                "{:<28} {:>14.3} {:>16.3} {:>8.4}",
                name,
                r.offered_pps / 1e6,
                r.delivered_pps / 1e6,
                r.loss * 100.0
            );
        }
        println!(
            "b/a = {b_over_a:.2}x   b/c = {:.1}% (per-round median {:.1}%)   goal (b >= 3x a, >= 90% c, no loss): {}",
            b_over_c * 100.0,
            report.b_over_c_round_median * 100.0,
            if report.goal_met { "met" } else { "NOT met" }
        );
    }
    drop(lab);
    Ok(())
}
