//! The restart benchmark: what restarting one node's agent costs the
//! traffic through it, with real agents in the namespace lab.
//!
//! ```text
//!   a --- b --- c        the flows cross b (cost 20)
//!    \         /
//!     d ----- e          the detour (cost 30)
//! ```
//!
//! Two UDP probe flows, a to c's /128 and c to a's /128 (10,000 packets
//! per second each by default, sequence numbered), and one long-lived TCP
//! connection from a to c that writes and reads back a message every 5 ms,
//! cross b while its agent is restarted:
//! - **sigterm**: stopped and started again (a planned restart);
//! - **kill9_1s**: killed (SIGKILL) and started 1 s later;
//! - **kill9_10s**: killed and started 10 s later (past the dead interval,
//!   so the neighbours route around b and come back).
//!
//! Each case reports, per flow, packets sent and lost and the largest gap,
//! and whether the TCP connection broke. Goal: nothing lost, nothing
//! broken.
//!
//! Usage: `restart [--json] [--pps N] [--meshfwd PATH]`; progress on
//! stderr, the table (or JSON) on stdout, JSON also under
//! `bench/results/restart.json`.

use std::{
    io::{Read as _, Write as _},
    net::{Ipv6Addr, TcpListener, TcpStream},
    path::PathBuf,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use anyhow::{Context as _, Result, bail};
use bench::agents::{Answers as _, CONVERGE, Mesh, meshfwd_bin, wait_until};
use bench::probe::{Flow, FlowResult};
use ipnet::Ipv6Net;
use lab::{Lab, Topology, Wire, netns};
use serde::Serialize;

const PORT_AC: u16 = 47_997;
const PORT_CA: u16 = 47_998;
const PORT_TCP: u16 = 47_996;

#[derive(Debug, Serialize)]
struct CaseResult {
    case: &'static str,
    a_to_c: FlowResult,
    c_to_a: FlowResult,
    tcp_messages: u64,
    tcp_broken: Option<String>,
    /// How b's graceful restart ended, from its log.
    graceful_restart: String,
}

#[derive(Debug, Serialize)]
struct Report {
    cases: Vec<CaseResult>,
    goal: &'static str,
    unix_time: u64,
    command: String,
}

/// Loss and broken connections across agent restarts.
#[derive(Debug, clap::Parser)]
struct Args {
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
    /// Probe packets per second, each way.
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(100..=100_000))]
    pps: u32,
    /// The agent binary (default: $MESHFWD_BIN, next to this one, or built).
    #[arg(long)]
    meshfwd: Option<PathBuf>,
}

fn main() {
    if let Err(err) = run() {
        eprintln!("restart: error: {err:#}");
        std::process::exit(1);
    }
}

fn progress(what: &str) {
    eprintln!("restart: {what}");
}

/// A long-lived TCP connection a -> c: a message every 5 ms, echoed.
struct Tcp {
    stop: Arc<AtomicBool>,
    client: std::thread::JoinHandle<(u64, Option<String>)>,
    server: std::thread::JoinHandle<()>,
}

impl Tcp {
    fn start(m: &Mesh, c_addr: Ipv6Addr) -> Result<Tcp> {
        let listener = netns::enter(m.lab.node("c").netns(), || {
            Ok(TcpListener::bind((c_addr, PORT_TCP))?)
        })?;
        let server = std::thread::spawn(move || {
            if let Ok((mut s, _)) = listener.accept() {
                let _ = s.set_read_timeout(Some(Duration::from_secs(30)));
                let mut buf = [0u8; 64];
                while let Ok(n) = s.read(&mut buf) {
                    if n == 0 || s.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            }
        });
        let stream = netns::enter(m.lab.node("a").netns(), || {
            Ok(TcpStream::connect_timeout(
                &(c_addr, PORT_TCP).into(),
                Duration::from_secs(5),
            )?)
        })?;
        let stop = Arc::new(AtomicBool::new(false));
        let client = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut s = stream;
                // A connection that stalls this long counts as broken.
                let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
                let mut n = 0u64;
                let mut buf = [0u8; 8];
                while !stop.load(Ordering::Relaxed) {
                    let r = s
                        .write_all(&n.to_be_bytes())
                        .and_then(|()| s.read_exact(&mut buf));
                    if let Err(e) = r {
                        return (n, Some(e.to_string()));
                    }
                    if u64::from_be_bytes(buf) != n {
                        return (n, Some("echo out of order".into()));
                    }
                    n += 1;
                    std::thread::sleep(Duration::from_millis(5));
                }
                (n, None)
            })
        };
        Ok(Tcp {
            stop,
            client,
            server,
        })
    }

    fn stop(self) -> (u64, Option<String>) {
        self.stop.store(true, Ordering::Relaxed);
        let r = self.client.join().expect("TCP client thread");
        // The client's socket is closed: the server's read returns 0.
        let _ = self.server.join();
        r
    }
}

fn case(
    m: &Mesh,
    name: &'static str,
    pps: u32,
    (a_addr, c_addr): (Ipv6Addr, Ipv6Addr),
) -> Result<CaseResult> {
    let (a_ns, c_ns) = (
        m.lab.node("a").netns().to_string(),
        m.lab.node("c").netns().to_string(),
    );
    let ac = Flow::start(&a_ns, &c_ns, c_addr, PORT_AC, pps)?;
    let ca = Flow::start(&c_ns, &a_ns, a_addr, PORT_CA, pps)?;
    let tcp = Tcp::start(m, c_addr)?;
    std::thread::sleep(Duration::from_secs(2));
    let id = m.agent("b").context("b's agent")?;
    progress(&format!("{name}: restarting b's agent"));
    match name {
        "sigterm" => m.lab.node("b").restart(id)?,
        _ => {
            m.crash("b")?;
            let pause = if name == "kill9_1s" { 1 } else { 10 };
            std::thread::sleep(Duration::from_secs(pause));
            m.lab.node("b").restart(id)?;
        }
    }
    wait_until("b's restart ends", CONVERGE, || {
        m.latest_log("b").contains("gr: restart ends")
    })?;
    let c_pod = Ipv6Net::from(c_addr);
    wait_until("a routes to c through b again", CONVERGE, || {
        m.route_ifaces("a", &c_pod).contains("m-b")
    })?;
    std::thread::sleep(Duration::from_secs(2));
    let a_to_c = ac.stop();
    let c_to_a = ca.stop();
    let (tcp_messages, tcp_broken) = tcp.stop();
    let log = m.latest_log("b");
    let graceful_restart = log
        .lines()
        .find(|l| l.contains("gr: restart ends"))
        .and_then(|l| l.split("why=").nth(1))
        .unwrap_or("?")
        .trim()
        .to_owned();
    progress(&format!(
        "{name}: lost {} a->c, {} c->a; TCP {} messages{}; restart {graceful_restart}",
        a_to_c.lost,
        c_to_a.lost,
        tcp_messages,
        tcp_broken
            .as_ref()
            .map(|e| format!(", broken: {e}"))
            .unwrap_or_default()
    ));
    // Let the helpers finish and the SPF back-off calm down.
    std::thread::sleep(Duration::from_secs(5));
    Ok(CaseResult {
        case: name,
        a_to_c,
        c_to_a,
        tcp_messages,
        tcp_broken,
        graceful_restart,
    })
}

fn run() -> Result<()> {
    let args = <Args as clap::Parser>::parse();
    let bin = meshfwd_bin(args.meshfwd.clone())?;
    let topo = Topology::new()
        .line(&["a", "b", "c"], Wire::Direct)
        .line(&["a", "d", "e", "c"], Wire::Direct);
    progress("building the lab (a - b - c, detour a - d - e - c)");
    let lab = Lab::build("restart", &topo)?;
    let mut m = Mesh::new(lab, bin);
    for n in ["a", "b", "c", "d", "e"] {
        m.start(n, &[])?;
    }
    let a_addr = m.node_address("a")?;
    let c_addr = m.node_address("c")?;
    wait_until("a routes to c through b", CONVERGE, || {
        m.route_ifaces("a", &Ipv6Net::from(c_addr)).contains("m-b")
    })?;
    wait_until("c routes to a through b", CONVERGE, || {
        m.route_ifaces("c", &Ipv6Net::from(a_addr)).contains("m-b")
    })?;
    // Neighbour entries along the path, so the first probes are not lost
    // to address resolution.
    let _ = m.lab.node("a").wait_ping6(c_addr, None, CONVERGE);
    std::thread::sleep(Duration::from_secs(3));

    let mut cases = Vec::new();
    for name in ["sigterm", "kill9_1s", "kill9_10s"] {
        cases.push(case(&m, name, args.pps, (a_addr, c_addr))?);
    }
    let report = Report {
        cases,
        goal: "0 packets lost and no broken connection in every case",
        unix_time: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
        command: format!("cargo xtask bench restart -- --pps {}", args.pps),
    };
    let json = serde_json::to_string_pretty(&report)?;
    let dir = bench::results_dir();
    std::fs::create_dir_all(&dir)?;
    std::fs::write(dir.join("restart.json"), format!("{json}\n"))?;
    if args.json {
        println!("{json}");
    } else {
        println!("{:<10} {:^28} {:^28}", "", "a -> c", "c -> a");
        println!(
            "case          sent     lost     gap ms     sent     lost     gap ms    tcp restart"
        );
        for c in &report.cases {
            println!(
                "{:<10} {:>8} {:>8} {:>10.1} {:>8} {:>8} {:>10.1} {:>6} {}",
                c.case,
                c.a_to_c.sent,
                c.a_to_c.lost,
                c.a_to_c.loss_window_ms,
                c.c_to_a.sent,
                c.c_to_a.lost,
                c.c_to_a.loss_window_ms,
                if c.tcp_broken.is_some() {
                    "broke"
                } else {
                    "ok"
                },
                c.graceful_restart
            );
        }
    }
    if report.cases.iter().any(|c| c.tcp_messages == 0) {
        bail!("a TCP connection never carried a message");
    }
    Ok(())
}
