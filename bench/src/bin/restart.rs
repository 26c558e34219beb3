//! The restart benchmark: what restarting one node's agent costs the
//! traffic through it, with real agents in the namespace lab.
//!
//! ```text
//!   a --- b --- c        the flows cross b (cost 20)
//!    \         /
//!     d ----- e          the detour (cost 30)
//! ```
//!
//! b's agent is restarted while sequence-numbered UDP probe flows (10,000
//! packets per second each by default) run on three paths, each both ways:
//! - **through b** (transit): a to c's /128 and c to a's /128;
//! - **to a pod on b**: a to pod pb;
//! - **from a pod on b**: pb to a's /128;
//!
//! and two long-lived TCP connections, a to c and a to pb, each writing
//! and reading back a message every 5 ms. The cases:
//! - **sigterm**: stopped and started again (a planned restart);
//! - **kill9_1s**: killed (SIGKILL) and started 1 s later;
//! - **kill9_10s**: killed and started 10 s later (past the dead interval,
//!   so the neighbours route around b and come back);
//! - **upgrade**: stopped and started as if by another build: the pins
//!   naming b's XDP and TC programs are renamed to another object tag
//!   first, so the agent takes the running programs for an earlier
//!   build's and swaps its own in (the same code path as a real upgrade;
//!   the programs' bytes are the same).
//!
//! Each case reports, per flow, packets sent and lost and the largest gap,
//! and per connection whether it broke. Goal: nothing lost, nothing
//! broken.
//!
//! Usage: `restart [--json] [--pps N] [--bfd] [--dead-interval S]
//! [--meshfwd PATH]`; progress on stderr, the table (or JSON) on stdout,
//! JSON also under `bench/results/restart.json` (`restart-bfd.json` with
//! `--bfd`).

use std::{
    collections::BTreeMap,
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
use bench::agents::{Answers as _, CONVERGE, Mesh, cni_bin, meshfwd_bin, wait_until};
use bench::probe::{Flow, FlowResult};
use ipnet::Ipv6Net;
use lab::{Lab, Topology, Wire, netns};
use serde::Serialize;

/// The probe flows: name, from, to (whose address is the destination),
/// UDP port.
const FLOWS: [(&str, &str, &str, u16); 4] = [
    ("a_to_c", "a", "c", 47_997),
    ("c_to_a", "c", "a", 47_998),
    ("a_to_pod", "a", "pb", 47_999),
    ("pod_to_a", "pb", "a", 48_000),
];

/// The long-lived TCP connections: name, client, server, port.
const CONNECTIONS: [(&str, &str, &str, u16); 2] = [
    ("tcp_a_to_c", "a", "c", 47_996),
    ("tcp_a_to_pod", "a", "pb", 47_995),
];

const CASES: [&str; 4] = ["sigterm", "kill9_1s", "kill9_10s", "upgrade"];

#[derive(Debug, Serialize)]
struct NamedFlow {
    flow: &'static str,
    #[serde(flatten)]
    result: FlowResult,
}

#[derive(Debug, Serialize)]
struct Connection {
    connection: &'static str,
    messages: u64,
    broken: Option<String>,
}

#[derive(Debug, Serialize)]
struct CaseResult {
    case: &'static str,
    flows: Vec<NamedFlow>,
    connections: Vec<Connection>,
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
    /// The CNI plugin binary (default: $MESHFWD_CNI_BIN, next to this one,
    /// or built).
    #[arg(long)]
    cni: Option<PathBuf>,
    /// Run BFD (10 ms x 3) on every agent; the result goes to
    /// `restart-bfd.json`.
    #[arg(long)]
    bfd: bool,
    /// The OSPF dead interval of every agent, in seconds: with BFD
    /// catching failures it can outlast a restart's back-off.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u16).range(2..=600))]
    dead_interval: u16,
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

/// A long-lived TCP connection: a message every 5 ms, echoed.
struct Tcp {
    stop: Arc<AtomicBool>,
    client: std::thread::JoinHandle<(u64, Option<String>)>,
    server: std::thread::JoinHandle<()>,
}

impl Tcp {
    fn start(m: &Mesh, client: &str, server: &str, addr: Ipv6Addr, port: u16) -> Result<Tcp> {
        let listener = netns::enter(m.lab.node(server).netns(), || {
            Ok(TcpListener::bind((addr, port))?)
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
        let stream = netns::enter(m.lab.node(client).netns(), || {
            Ok(TcpStream::connect_timeout(
                &(addr, port).into(),
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

/// Rename the pins that name b's programs as this build's, so the next
/// start takes them for another build's: what an upgrade finds.
fn pose_as_earlier_build(m: &Mesh) -> Result<()> {
    let progs = m.lab.node("b").bpffs_dir().join("progs");
    for e in std::fs::read_dir(&progs)?.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let tc = [
            dataplane::object::POD_PROGRAM,
            dataplane::object::MESH_PROGRAM,
        ]
        .into_iter()
        .find(|p| name.starts_with(&format!("{p}-")));
        let earlier = match (name.split_once(':'), tc) {
            // progs/xdp-<iface>:<tag>
            (Some((program, _)), _) if program.starts_with("xdp-") => {
                format!("{program}:earlier-build")
            }
            // progs/<tc program>-<tag>
            (None, Some(program)) => format!("{program}-earlier"),
            _ => continue,
        };
        std::fs::rename(e.path(), progs.join(earlier))?;
    }
    Ok(())
}

fn case(
    m: &Mesh,
    name: &'static str,
    pps: u32,
    addrs: &BTreeMap<&str, Ipv6Addr>,
) -> Result<CaseResult> {
    let ns = |n: &str| m.lab.node(n).netns().to_string();
    let mut flows = Vec::new();
    for (flow, from, to, port) in FLOWS {
        flows.push((flow, Flow::start(&ns(from), &ns(to), addrs[to], port, pps)?));
    }
    let mut connections = Vec::new();
    for (conn, client, server, port) in CONNECTIONS {
        connections.push((conn, Tcp::start(m, client, server, addrs[server], port)?));
    }
    std::thread::sleep(Duration::from_secs(2));
    let id = m.agent("b").context("b's agent")?;
    progress(&format!("{name}: restarting b's agent"));
    match name {
        "sigterm" => m.lab.node("b").restart(id)?,
        "upgrade" => {
            pose_as_earlier_build(m)?;
            m.lab.node("b").restart(id)?;
        }
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
    let c_node = Ipv6Net::from(addrs["c"]);
    wait_until("a routes to c through b again", CONVERGE, || {
        m.route_ifaces("a", &c_node).contains("m-b")
    })?;
    if name == "upgrade" && !m.latest_log("b").contains("replaced in place") {
        bail!("upgrade: b's agent replaced no program");
    }
    std::thread::sleep(Duration::from_secs(2));
    let flows: Vec<NamedFlow> = flows
        .into_iter()
        .map(|(flow, f)| NamedFlow {
            flow,
            result: f.stop(),
        })
        .collect();
    let connections: Vec<Connection> = connections
        .into_iter()
        .map(|(connection, t)| {
            let (messages, broken) = t.stop();
            Connection {
                connection,
                messages,
                broken,
            }
        })
        .collect();
    let log = m.latest_log("b");
    let graceful_restart = log
        .lines()
        .find(|l| l.contains("gr: restart ends"))
        .and_then(|l| l.split("why=").nth(1))
        .unwrap_or("?")
        .trim()
        .to_owned();
    let lost: Vec<String> = flows
        .iter()
        .map(|f| format!("{} {}", f.result.lost, f.flow))
        .collect();
    let broken: Vec<String> = connections
        .iter()
        .filter_map(|c| Some(format!("{} broke: {}", c.connection, c.broken.as_ref()?)))
        .collect();
    progress(&format!(
        "{name}: lost {}; {}; restart {graceful_restart}",
        lost.join(", "),
        if broken.is_empty() {
            "no connection broke".to_owned()
        } else {
            broken.join(", ")
        }
    ));
    // Let the helpers finish and the SPF back-off calm down.
    std::thread::sleep(Duration::from_secs(5));
    Ok(CaseResult {
        case: name,
        flows,
        connections,
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
    let cni = cni_bin(args.cni.clone())?;
    let lab = Lab::build("restart", &topo)?;
    let dead = args.dead_interval.to_string();
    let mut agent_args = vec!["--dead-interval", dead.as_str()];
    if args.bfd {
        agent_args.extend(["--bfd", "--bfd-interval-ms", "10", "--bfd-multiplier", "3"]);
    }
    let mut m = Mesh::new(lab, bin);
    for n in ["a", "b", "c", "d", "e"] {
        m.start(n, &agent_args)?;
    }
    let a_addr = m.node_address("a")?;
    let c_addr = m.node_address("c")?;
    progress("wiring pod pb on b");
    let pod = m.add_pod("b", "pb", &cni, &serde_json::json!({}))?;
    let addrs = BTreeMap::from([("a", a_addr), ("c", c_addr), ("pb", pod.addr)]);
    wait_until("a routes to c through b", CONVERGE, || {
        m.route_ifaces("a", &Ipv6Net::from(c_addr)).contains("m-b")
    })?;
    wait_until("c routes to a through b", CONVERGE, || {
        m.route_ifaces("c", &Ipv6Net::from(a_addr)).contains("m-b")
    })?;
    // Neighbour entries along the path, so the first probes are not lost
    // to address resolution.
    let _ = m.lab.node("a").wait_ping6(c_addr, None, CONVERGE);
    m.lab
        .node("a")
        .wait_ping6(pod.addr, None, CONVERGE)
        .context("a reaches the pod on b")?;
    let _ = m.lab.node("pb").wait_ping6(a_addr, None, CONVERGE);
    std::thread::sleep(Duration::from_secs(3));

    let mut cases = Vec::new();
    for name in CASES {
        cases.push(case(&m, name, args.pps, &addrs)?);
    }
    let report = Report {
        cases,
        goal: "0 packets lost and no broken connection in every case",
        unix_time: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
        command: format!(
            "cargo xtask bench restart -- --pps {} --dead-interval {}{}",
            args.pps,
            args.dead_interval,
            if args.bfd { " --bfd" } else { "" }
        ),
    };
    let json = serde_json::to_string_pretty(&report)?;
    let dir = bench::results_dir();
    std::fs::create_dir_all(&dir)?;
    let file = if args.bfd {
        "restart-bfd.json"
    } else {
        "restart.json"
    };
    std::fs::write(dir.join(file), format!("{json}\n"))?;
    if args.json {
        println!("{json}");
    } else {
        print!("{:<10}", "case");
        for (flow, ..) in FLOWS {
            print!(" {:>9} {:>6} {:>8}", flow, "lost", "gap ms");
        }
        println!(" {:>8} restart", "tcp");
        for c in &report.cases {
            print!("{:<10}", c.case);
            for f in &c.flows {
                print!(
                    " {:>9} {:>6} {:>8.1}",
                    f.result.sent, f.result.lost, f.result.loss_window_ms
                );
            }
            let broken = c.connections.iter().filter(|t| t.broken.is_some()).count();
            println!(
                " {:>8} {}",
                if broken == 0 {
                    "ok".to_owned()
                } else {
                    format!("{broken} broke")
                },
                c.graceful_restart
            );
        }
    }
    if report
        .cases
        .iter()
        .any(|c| c.connections.iter().any(|t| t.messages == 0))
    {
        bail!("a TCP connection never carried a message");
    }
    Ok(())
}
