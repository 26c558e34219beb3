//! The recovery benchmark: how much of a steady flow a link failure costs,
//! and how long a new node takes to reach everyone, with real agents in
//! the namespace lab.
//!
//! ```text
//!            b
//!          /   \
//!   g --- a     c  <- receiver (c's /128)
//!          \   /
//!            d        + e, plugged into b for the join run
//! ```
//!
//! `g` sends a UDP probe flow (10,000 packets per second by default,
//! sequence numbered) to `c`'s /128. `a` forwards it in XDP over two
//! equal-cost next hops (via `b` and via `d`); the run finds out which one
//! the flow hashes to, then cuts that link of `a`:
//! - **loud**: both ends lose carrier; the agent clears the next hop's
//!   alive flag and XDP re-hashes the flow onto the survivor;
//! - **silent**: frames vanish on the wire with carrier up; BFD (10 ms x 3
//!   by default) notices, or with `--no-bfd` only the OSPF dead interval.
//!   Repeated (`--cuts`, 5 by default): the detection time (from issuing
//!   the cut to the agent's log line, so it includes installing the cut)
//!   and the loss window of each, and the worst.
//!
//! The receiver records every sequence number; the loss window is the gap
//! in arrival times around the largest hole. Goals: loud ≤ 10 ms, silent ≤
//! 50 ms with BFD (dead interval + 100 ms without). The join run plugs a
//! new node `e` into `b` and times from the cable going in until `e` has
//! exchanged pings with every other node's /128.
//!
//! Usage: `recovery [--json] [--pps N] [--cuts N] [--no-bfd] [--meshfwd PATH]`; progress on
//! stderr, the table (or JSON) on stdout, JSON also under
//! `bench/results/recovery.json`.

use std::{
    collections::BTreeSet,
    net::{Ipv6Addr, SocketAddrV6},
    os::fd::{AsRawFd as _, OwnedFd},
    path::PathBuf,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use anyhow::{Result, bail};
use bench::agents::{Answers as _, CONVERGE, DEAD, HELLO, Mesh, meshfwd_bin, wait_until};
use bench::probe::Flow;
use ipnet::Ipv6Net;
use lab::{Lab, Topology, Wire, netns};
use serde::Serialize;

const PORT: u16 = 47_999;

#[derive(Debug, Serialize)]
struct CutResult {
    kind: &'static str,
    cut_link: String,
    pps: u32,
    sent: u64,
    received: u64,
    lost: u64,
    /// Packets in the largest run of consecutive losses.
    largest_hole: u64,
    /// Arrival-time gap around the largest hole, less one packet interval.
    loss_window_ms: f64,
    /// Silent cuts with BFD: from issuing the cut to the agent taking the
    /// path down (its log), so the time to install the cut is included.
    detect_ms: Option<f64>,
    goal_ms: f64,
    met_goal: bool,
}

#[derive(Debug, Serialize)]
struct JoinResult {
    /// From the cable going in to the last node answering the new one.
    to_full_reachability_ms: f64,
    nodes_reached: usize,
    goal_ms: f64,
    met_goal: bool,
}

#[derive(Debug, Serialize)]
struct Report {
    hello_interval_s: u16,
    dead_interval_s: u16,
    /// BFD's interval and multiplier, when on.
    bfd: Option<(u32, u8)>,
    loud: CutResult,
    silent: Vec<CutResult>,
    /// The worst silent cut's loss window and detection time.
    silent_worst_loss_window_ms: f64,
    silent_worst_detect_ms: Option<f64>,
    join: JoinResult,
    unix_time: u64,
    command: String,
}

/// Loss on a loud and a silent link cut under a steady flow, and a new
/// node's join time, with real agents in the namespace lab.
#[derive(Debug, clap::Parser)]
struct Args {
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
    /// Probe packets per second.
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(100..=100_000))]
    pps: u32,
    /// Silent cuts to make.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=50))]
    cuts: u32,
    /// Run without BFD: silent cuts wait for the dead interval.
    #[arg(long)]
    no_bfd: bool,
    /// The agent binary (default: $MESHFWD_BIN, next to this one, or built).
    #[arg(long)]
    meshfwd: Option<PathBuf>,
}

/// BFD's timers for the run.
const BFD_INTERVAL_MS: u32 = 10;
const BFD_MULT: u8 = 3;

fn main() {
    if let Err(err) = run() {
        eprintln!("recovery: error: {err:#}");
        std::process::exit(1);
    }
}

fn progress(what: &str) {
    eprintln!("recovery: {what}");
}

/// One cut run: steady flow, find the member, cut, measure, restore.
fn cut_run(
    m: &Mesh,
    kind: &'static str,
    pps: u32,
    c_addr: Ipv6Addr,
    c_pod: &Ipv6Net,
    bfd: bool,
) -> Result<CutResult> {
    let flow = Flow::start(
        m.lab.node("g").netns(),
        m.lab.node("c").netns(),
        c_addr,
        PORT,
        pps,
    )?;
    std::thread::sleep(Duration::from_secs(1));
    // Which of a's two next hops does the flow take? The one whose XDP
    // forwards it on to c.
    let (b0, d0) = (m.xdp_redirects("b"), m.xdp_redirects("d"));
    std::thread::sleep(Duration::from_millis(500));
    let (b1, d1) = (m.xdp_redirects("b"), m.xdp_redirects("d"));
    let via = if b1 - b0 >= d1 - d0 { "b" } else { "d" };
    progress(&format!(
        "{kind} cut of a-{via} (the flow's member; b +{}, d +{})",
        b1 - b0,
        d1 - d0
    ));
    let cut_at = SystemTime::now();
    match kind {
        "loud" => m.lab.cut_loud("a", via)?,
        _ => m.lab.cut_silent("a", via)?,
    }
    let after = Duration::from_secs(if kind == "loud" || bfd {
        3
    } else {
        u64::from(DEAD) + 4
    });
    std::thread::sleep(after);
    let r = flow.stop();

    let detect_ms = (kind == "silent" && bfd)
        .then(|| detected_at(&m.latest_log("a"), cut_at))
        .flatten()
        .map(|t| t.duration_since(cut_at).unwrap_or_default().as_secs_f64() * 1000.0);

    m.lab.restore("a", via)?;
    let both: BTreeSet<String> = ["m-b".to_string(), "m-d".to_string()].into();
    wait_until("a's two paths to c back", CONVERGE, || {
        m.route_ifaces("a", c_pod) == both
    })?;
    if bfd {
        wait_until("a's BFD sessions Up again", CONVERGE, || bfd_up(m, "a", 3))?;
    }

    let goal_ms = match (kind, bfd) {
        ("loud", _) => 10.0,
        (_, true) => 50.0,
        _ => f64::from(DEAD) * 1000.0 + 100.0,
    };
    Ok(CutResult {
        kind,
        cut_link: format!("a-{via}"),
        pps,
        sent: r.sent,
        received: r.received,
        lost: r.lost,
        largest_hole: r.largest_hole,
        loss_window_ms: r.loss_window_ms,
        detect_ms,
        goal_ms,
        met_goal: r.loss_window_ms <= goal_ms,
    })
}

/// When `log` says BFD took a path down, the first time after `after`.
fn detected_at(log: &str, after: SystemTime) -> Option<SystemTime> {
    log.lines()
        .filter(|l| l.contains("BFD: path to the neighbour failed"))
        .filter_map(|l| humantime::parse_rfc3339(l.split_whitespace().next()?).ok())
        .find(|t| *t >= after)
}

/// Whether `node` has `n` BFD sessions, all Up at the run's interval.
fn bfd_up(m: &Mesh, node: &str, n: usize) -> bool {
    m.show::<meshfwd::api::BfdReport>(node, meshfwd::api::Query::Bfd)
        .is_some_and(|r| {
            r.sessions.len() == n
                && r.sessions.iter().all(|s| {
                    s.state == routing::bfd::State::Up && s.tx_interval_us == BFD_INTERVAL_MS * 1000
                })
        })
}

/// An ICMPv6 echo socket inside the current netns.
fn icmp_socket() -> Result<OwnedFd> {
    use nix::sys::socket::{AddressFamily, SockFlag, SockProtocol, SockType, socket};
    Ok(socket(
        AddressFamily::Inet6,
        SockType::Raw,
        SockFlag::SOCK_NONBLOCK,
        SockProtocol::IcmpV6,
    )?)
}

/// Ping every target from the socket until all answered or `timeout`;
/// return when the last one answered.
fn ping_all(
    fd: &OwnedFd,
    targets: &[Ipv6Addr],
    start: Instant,
    timeout: Duration,
) -> Result<Duration> {
    use nix::sys::socket::{MsgFlags, SockaddrIn6, recvfrom, sendto};
    let ident: u16 = (std::process::id() & 0xffff) as u16;
    let mut answered = vec![false; targets.len()];
    let mut seq: u16 = 0;
    let mut last = Duration::ZERO;
    while answered.iter().any(|a| !a) {
        if start.elapsed() > timeout {
            bail!(
                "only {} of {} nodes answered within {timeout:?}",
                answered.iter().filter(|a| **a).count(),
                targets.len()
            );
        }
        for (i, t) in targets.iter().enumerate() {
            if answered[i] {
                continue;
            }
            seq = seq.wrapping_add(1);
            let mut pkt = [0u8; 16];
            pkt[0] = 128; // echo request; the kernel fills in the checksum
            pkt[4..6].copy_from_slice(&ident.to_be_bytes());
            pkt[6..8].copy_from_slice(&(i as u16).to_be_bytes());
            pkt[8..10].copy_from_slice(&seq.to_be_bytes());
            let dst = SockaddrIn6::from(SocketAddrV6::new(*t, 0, 0, 0));
            let _ = sendto(fd.as_raw_fd(), &pkt, &dst, MsgFlags::empty());
        }
        let round = Instant::now();
        while round.elapsed() < Duration::from_millis(20) {
            let mut buf = [0u8; 256];
            match recvfrom::<SockaddrIn6>(fd.as_raw_fd(), &mut buf) {
                Ok((n, _))
                    if n >= 8 && buf[0] == 129 && u16::from_be_bytes([buf[4], buf[5]]) == ident =>
                {
                    let i = usize::from(u16::from_be_bytes([buf[6], buf[7]]));
                    if i < answered.len() && !answered[i] {
                        answered[i] = true;
                        last = start.elapsed();
                    }
                }
                Ok(_) => {}
                Err(_) => std::thread::sleep(Duration::from_millis(1)),
            }
        }
    }
    Ok(last)
}

fn run() -> Result<()> {
    let args = <Args as clap::Parser>::parse();
    let bin = meshfwd_bin(args.meshfwd.clone())?;
    let topo = Topology::new()
        .line(&["g", "a"], Wire::Cable)
        .ring(&["a", "b", "c", "d"], Wire::Cable);
    progress("building the lab (g - a = b/d = c, cables)");
    let lab = Lab::build("recovery", &topo)?;
    let mut m = Mesh::new(lab, bin);
    let bfd = !args.no_bfd;
    let (interval, mult) = (BFD_INTERVAL_MS.to_string(), BFD_MULT.to_string());
    let agent_args: Vec<&str> = if bfd {
        vec![
            "--bfd",
            "--bfd-interval-ms",
            &interval,
            "--bfd-multiplier",
            &mult,
        ]
    } else {
        Vec::new()
    };
    for n in ["g", "a", "b", "c", "d"] {
        m.start(n, &agent_args)?;
    }
    let c_addr = m.node_address("c")?;
    let c_pod = Ipv6Net::from(c_addr);
    progress("waiting for a's two equal-cost paths to c");
    let both: BTreeSet<String> = ["m-b".to_string(), "m-d".to_string()].into();
    wait_until("a's two paths to c", CONVERGE, || {
        m.route_ifaces("a", &c_pod) == both
    })?;
    wait_until("g's route to c", CONVERGE, || {
        !m.route_ifaces("g", &c_pod).is_empty()
    })?;
    // Neighbour entries along the path, so the first probe packets are
    // not lost to address resolution.
    let _ = m.lab.node("g").wait_ping6(c_addr, None, CONVERGE);
    if bfd {
        progress("waiting for a's BFD sessions (g, b, d) to come Up");
        wait_until("a's BFD sessions Up", CONVERGE, || bfd_up(&m, "a", 3))?;
    }

    let loud = cut_run(&m, "loud", args.pps, c_addr, &c_pod, bfd)?;
    progress(&format!(
        "loud: lost {} packets, window {:.1} ms",
        loud.lost, loud.loss_window_ms
    ));
    let mut silent = Vec::new();
    for i in 0..args.cuts {
        let r = cut_run(&m, "silent", args.pps, c_addr, &c_pod, bfd)?;
        progress(&format!(
            "silent {}: lost {} packets, window {:.1} ms, detected after {}",
            i + 1,
            r.lost,
            r.loss_window_ms,
            r.detect_ms.map_or("-".into(), |d| format!("{d:.1} ms"))
        ));
        silent.push(r);
    }
    let silent_worst_loss_window_ms = silent.iter().map(|r| r.loss_window_ms).fold(0.0, f64::max);
    let silent_worst_detect_ms = silent.iter().filter_map(|r| r.detect_ms).reduce(f64::max);

    // A node joins a settled mesh: let the SPF back-off of the cuts above
    // (RFC 8405 hold-down, 5 s) run out first.
    std::thread::sleep(Duration::from_secs(6));
    progress("join: a new node e, agent running, then plugged into b");
    m.lab.add_node("e")?;
    m.start("e", &agent_args)?;
    let mut targets = Vec::new();
    for n in ["g", "a", "b", "c", "d"] {
        targets.push(m.node_address(n)?);
    }
    let _ = m.node_address("e")?;
    // The agent starts at boot; the cable goes in later.
    std::thread::sleep(Duration::from_secs(4));
    let e_ns = m.lab.node("e").netns().to_string();
    let fd = netns::enter(&e_ns, icmp_socket)?;
    // Building a cable takes the lab a moment; its ends come up last, so
    // the clock starts when it is done.
    m.lab.add_link("e", "b", Wire::Cable)?;
    let t0 = Instant::now();
    let took = ping_all(&fd, &targets, t0, CONVERGE)?;
    let join = JoinResult {
        to_full_reachability_ms: took.as_secs_f64() * 1000.0,
        nodes_reached: targets.len(),
        goal_ms: 1500.0,
        met_goal: took <= Duration::from_millis(1500),
    };
    progress(&format!(
        "join: every node answered e after {:.0} ms",
        join.to_full_reachability_ms
    ));
    if std::env::var_os("RECOVERY_DEBUG").is_some() {
        eprintln!(
            "cable in at {:?} (unix)",
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default()
                - t0.elapsed()
        );
        for n in ["e", "b"] {
            eprintln!("--- {n}\n{}", m.log(n));
        }
    }

    let report = Report {
        hello_interval_s: HELLO,
        dead_interval_s: DEAD,
        bfd: bfd.then_some((BFD_INTERVAL_MS, BFD_MULT)),
        loud,
        silent,
        silent_worst_loss_window_ms,
        silent_worst_detect_ms,
        join,
        unix_time: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
        command: std::env::args().collect::<Vec<_>>().join(" "),
    };
    let json = serde_json::to_string_pretty(&report)?;
    let dir = bench::results_dir();
    std::fs::create_dir_all(&dir)?;
    std::fs::write(dir.join("recovery.json"), format!("{json}\n"))?;
    progress(&format!("wrote {}", dir.join("recovery.json").display()));
    if args.json {
        println!("{json}");
    } else {
        println!(
            "{:<8} {:>8} {:>8} {:>8} {:>12} {:>10} {:>10}  goal",
            "cut", "pps", "sent", "lost", "window ms", "detect ms", "goal ms"
        );
        for r in std::iter::once(&report.loud).chain(&report.silent) {
            println!(
                "{:<8} {:>8} {:>8} {:>8} {:>12.1} {:>10} {:>10.0}  {}",
                r.kind,
                r.pps,
                r.sent,
                r.lost,
                r.loss_window_ms,
                r.detect_ms.map_or("-".into(), |d| format!("{d:.1}")),
                r.goal_ms,
                if r.met_goal { "met" } else { "MISSED" }
            );
        }
        println!(
            "silent   worst window {:.1} ms, worst detection {}",
            report.silent_worst_loss_window_ms,
            report
                .silent_worst_detect_ms
                .map_or("-".into(), |d| format!("{d:.1} ms"))
        );
        let j = &report.join;
        println!(
            "join     new node reached all {} nodes {:.0} ms after its first link came up (goal {:.0} ms: {})",
            j.nodes_reached,
            j.to_full_reachability_ms,
            j.goal_ms,
            if j.met_goal { "met" } else { "MISSED" }
        );
    }
    Ok(())
}
