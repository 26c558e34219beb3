//! The control socket's contract: what `meshfwd show ...` asks the running
//! agent and what it answers, as types the agent, the CLI, the tests, the
//! benchmarks and the demo all share. The CLI's `--json` prints these
//! types as they are; its tables are rendered from them (`show`).
//!
//! One request per connection, one JSON line each way:
//!
//! ```text
//! -> {"show":"neighbors"}
//! <- {"ok":true,"data":[...]}        or   {"ok":false,"error":"..."}
//! ```

use std::{
    collections::BTreeMap,
    net::{Ipv4Addr, Ipv6Addr},
    path::PathBuf,
};

use dataplane::{maps::Netfilter, netlink::Link, object::Conntrack, stats::Stats};
use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use routing::{
    DropReason,
    interface::ism,
    state::{LsaSummary, NeighborState},
};
use serde::{Deserialize, Serialize, de::DeserializeOwned};

use crate::{agent::core::identity::IdSource, fib::dump::FibRow};

/// What can be asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Query {
    /// Router id, prefixes, uptime: the node at a glance.
    Node,
    Neighbors,
    Interfaces,
    Lsdb,
    Routes,
    Fib,
    Stats,
    Bfd,
}

impl Query {
    /// Every question.
    pub const ALL: [Query; 8] = [
        Query::Node,
        Query::Neighbors,
        Query::Interfaces,
        Query::Lsdb,
        Query::Routes,
        Query::Fib,
        Query::Stats,
        Query::Bfd,
    ];

    /// Return the name `meshfwd show` takes (`node`, `neighbors`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Query::Node => "node",
            Query::Neighbors => "neighbors",
            Query::Interfaces => "interfaces",
            Query::Lsdb => "lsdb",
            Query::Routes => "routes",
            Query::Fib => "fib",
            Query::Stats => "stats",
            Query::Bfd => "bfd",
        }
    }
}

impl std::fmt::Display for Query {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Which OSPF instance a question is about: the IPv6 one, or the IPv4
/// one (RFC 5838) of a node that runs IPv4. Neighbours, interfaces, the
/// LSDB and the routes are per instance; the other answers cover the
/// node.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Instance {
    #[default]
    Ipv6,
    Ipv4,
}

impl Instance {
    fn is_ipv6(&self) -> bool {
        *self == Instance::Ipv6
    }
}

/// One request line. `instance` is left out for IPv6, so an agent that
/// predates IPv4 reads what this CLI sends for IPv6 questions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    pub show: Query,
    #[serde(default, skip_serializing_if = "Instance::is_ipv6")]
    pub instance: Instance,
}

impl Request {
    /// Ask `show` of the IPv6 instance (or of the node).
    pub fn new(show: Query) -> Self {
        Request {
            show,
            instance: Instance::Ipv6,
        }
    }
}

/// One reply line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reply {
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// An answer, typed by what was asked.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    Node(Box<NodeInfo>),
    Neighbors(Vec<NeighborState>),
    Interfaces(Vec<InterfaceRow>),
    Lsdb(Vec<LsaSummary>),
    Routes(Vec<RouteRow>),
    Fib(Vec<FibRow>),
    Stats(Box<StatsReport>),
    Bfd(BfdReport),
}

impl Answer {
    /// Return the JSON of the answer alone (what `--json` prints).
    pub fn to_json(&self) -> serde_json::Result<serde_json::Value> {
        match self {
            Answer::Node(v) => serde_json::to_value(v),
            Answer::Neighbors(v) => serde_json::to_value(v),
            Answer::Interfaces(v) => serde_json::to_value(v),
            Answer::Lsdb(v) => serde_json::to_value(v),
            Answer::Routes(v) => serde_json::to_value(v),
            Answer::Fib(v) => serde_json::to_value(v),
            Answer::Stats(v) => serde_json::to_value(v),
            Answer::Bfd(v) => serde_json::to_value(v),
        }
    }

    /// Read the answer to `query` from its JSON.
    pub fn from_json(query: Query, v: serde_json::Value) -> serde_json::Result<Answer> {
        fn typed<T: DeserializeOwned>(v: serde_json::Value) -> serde_json::Result<T> {
            serde_json::from_value(v)
        }
        Ok(match query {
            Query::Node => Answer::Node(typed(v)?),
            Query::Neighbors => Answer::Neighbors(typed(v)?),
            Query::Interfaces => Answer::Interfaces(typed(v)?),
            Query::Lsdb => Answer::Lsdb(typed(v)?),
            Query::Routes => Answer::Routes(typed(v)?),
            Query::Fib => Answer::Fib(typed(v)?),
            Query::Stats => Answer::Stats(typed(v)?),
            Query::Bfd => Answer::Bfd(typed(v)?),
        })
    }
}

/// `meshfwd show bfd`: every session, and the packets none took.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BfdReport {
    pub sessions: Vec<routing::bfd::SessionInfo>,
    /// Packets discarded, by reason (RFC 5880 §6.8.6, RFC 5881 §5).
    pub discards: BTreeMap<routing::bfd::Discard, u64>,
}

/// `meshfwd show node`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeInfo {
    pub version: String,
    pub router_id: Ipv4Addr,
    pub router_id_source: IdSource,
    /// How many times a collision forced a new router id.
    pub router_id_rederived: u32,
    pub cluster_prefix: Ipv6Net,
    pub pod_prefix: Ipv6Net,
    /// Which candidate of the router id the pod prefix is (0 = first).
    pub pod_prefix_attempt: u32,
    pub node_address: Ipv6Addr,
    /// The device carrying the node address.
    pub local_device: String,
    pub mesh_links: usize,
    pub neighbors_full: usize,
    pub routes: usize,
    pub lsdb: usize,
    pub spf_runs: u64,
    pub xdp: bool,
    /// The fast path's netfilter check on this node.
    pub netfilter: NetfilterInfo,
    /// OSPF authentication (RFC 7166); `None`: off.
    #[serde(default)]
    pub ospf_auth: Option<AuthInfo>,
    /// OSPF graceful restart: this agent is restarting, and how many
    /// neighbours it helps restart.
    #[serde(default)]
    pub gr_restarting: bool,
    #[serde(default)]
    pub gr_helping: usize,
    pub state_file: PathBuf,
    pub bpffs: PathBuf,
    pub uptime_s: u64,
    /// The IPv4 side of a node that runs IPv4 (`[ipv4]`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipv4: Option<Ipv4Info>,
}

/// `meshfwd show node`'s IPv4 part: the prefixes and the IPv4 instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ipv4Info {
    pub cluster_prefix: Ipv4Net,
    pub pod_prefix: Ipv4Net,
    pub node_address: Ipv4Addr,
    pub neighbors_full: usize,
    pub routes: usize,
    pub lsdb: usize,
    pub spf_runs: u64,
    /// Prefixes longer than 32 bits others advertise in the instance:
    /// flooded, never routed (RFC 5838 §2.3).
    pub misfits: usize,
}

/// OSPF authentication as the agent runs it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthInfo {
    /// Keys in the chain.
    pub keys: usize,
    /// The key that signs now (`None`: no key is valid for sending, and
    /// nothing is sent).
    pub send_key: Option<u16>,
    /// The high word of this run's sequence numbers.
    pub boot_count: u32,
}

/// The netfilter check as the agent set it up (`agent::runtime::netfilter`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetfilterInfo {
    /// Whether the fast path asks conntrack.
    pub mode: Netfilter,
    /// Whether the programs' conntrack lookups are linked to the kernel.
    pub lookups: Conntrack,
    /// Why conntrack may not be tracking the node's flows, if it may not.
    pub tracking: Option<String>,
    /// Whether `nf_conntrack_tcp_be_liberal` is on.
    pub tcp_be_liberal: bool,
}

/// One row of `meshfwd show interfaces`: a link, whether it is in the
/// mesh, why not, and OSPF on it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InterfaceRow {
    #[serde(flatten)]
    pub link: Link,
    pub link_local: Option<Ipv6Addr>,
    pub mesh: bool,
    /// Why the link is not in the mesh.
    pub reason: Option<String>,
    pub ospf_state: Option<ism::State>,
    /// The network type in force (`auto` links turn broadcast on a switch).
    #[serde(default)]
    pub ospf_network: Option<routing::InterfaceKind>,
    /// DR and BDR of a broadcast link.
    #[serde(default)]
    pub dr: Option<std::net::Ipv4Addr>,
    #[serde(default)]
    pub bdr: Option<std::net::Ipv4Addr>,
    pub ospf_neighbors: Option<usize>,
    /// OSPF packets and LSAs dropped on the interface.
    #[serde(default)]
    pub ospf_drops: Option<u64>,
    pub cost: Option<u16>,
}

/// One row of `meshfwd show routes`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteRow {
    /// IPv6, or IPv4 in the IPv4 instance's answer.
    pub prefix: IpNet,
    pub cost: u32,
    pub next_hops: Vec<RouteHop>,
}

/// One next hop of a route.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteHop {
    pub ifindex: u32,
    pub iface: Option<String>,
    pub via: Ipv6Addr,
}

/// `meshfwd show stats`: the fast path's counters and the agent's own.
/// Without a running agent only the counters read from the pinned map are
/// there.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatsReport {
    /// The XDP counters summed over CPUs (`None` without XDP).
    #[serde(flatten)]
    pub xdp: Option<Stats>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<AgentCounters>,
    /// The map writer's counters (`None` without XDP).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub writer: Option<WriterStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ospf: Option<OspfStats>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub process: Option<ProcessStats>,
    /// Redirected frames each egress device did not take, by interface
    /// name (ifindex where the name is gone), from the pinned map.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub redirect_failed_by_iface: BTreeMap<String, u64>,
}

/// What the agent did, counted.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentCounters {
    pub mesh_link_ups: u64,
    pub mesh_link_downs: u64,
    pub carrier_losses: u64,
    /// Next hops whose alive flag was flipped.
    pub alive_flips: u64,
    pub rib_changes: u64,
    pub tables_sent: u64,
    pub pod_prefix_moves: u64,
    /// Times a reachable router was found advertising our pod prefix.
    #[serde(default)]
    pub pod_prefix_clashes: u64,
    /// Advertisements the prefix ownership policy refuses now (a gauge;
    /// each is logged by OSPF when first refused).
    #[serde(default)]
    pub prefixes_refused: u64,
    pub router_id_changes: u64,
    pub duplicate_router_ids: u64,
    pub duplicate_neighbor_ids: u64,
    pub control_requests: u64,
    /// Pod veths whose fast path this agent set out to attach.
    pub pod_attaches: u64,
}

/// One line of `meshfwd show stats --interval`: per-second rates over the
/// last interval, from the fast path's counters and the kernel's interface
/// counters.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RateSample {
    /// Seconds since the first reading.
    pub t: f64,
    /// Length of the interval the rates cover, in seconds.
    pub interval_s: f64,
    /// Frames per second by fast-path counter (verdicts and reasons), the
    /// ones that moved.
    pub xdp: BTreeMap<String, f64>,
    /// Per interface (the mesh links when the agent answers, else every
    /// interface but loopback), from the kernel's counters.
    pub interfaces: BTreeMap<String, InterfaceRates>,
}

/// One interface's rates, per second.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct InterfaceRates {
    pub rx_pps: f64,
    pub tx_pps: f64,
    pub rx_dropped_pps: f64,
    pub tx_dropped_pps: f64,
}

/// What the map writer task reports back.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WriterStatus {
    pub applies: u64,
    pub map_ops: u64,
    pub kernel_writes: u64,
    pub kernel_errors: u64,
    /// Applies that failed (`last_error` says how the last one did).
    #[serde(default)]
    pub errors: u64,
    /// FIB entries, groups and next hops the writer keeps (an earlier
    /// run's still adopted ones not counted).
    #[serde(default)]
    pub fib_entries: u64,
    #[serde(default)]
    pub groups: u64,
    #[serde(default)]
    pub next_hops: u64,
    pub last: Option<ApplyReport>,
    pub last_error: Option<String>,
}

/// What one apply of the map writer did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApplyReport {
    /// Map writes (next hops, groups, FIB entries, removals).
    pub map_ops: usize,
    /// Kernel routes replaced or removed.
    pub kernel_writes: usize,
    /// Next hops still waiting for their neighbour's MAC.
    pub unresolved: usize,
    /// Kernel route changes that failed (the fast path is unaffected).
    pub kernel_errors: Vec<String>,
}

/// OSPF's own counters.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OspfStats {
    pub spf_runs: u64,
    /// Time SPF took, as the OSPF driver measured it.
    #[serde(default)]
    pub spf_time: routing::driver::SpfTime,
    /// Packets dropped, by reason.
    pub drops: BTreeMap<DropReason, u64>,
}

/// The agent process's memory and CPU.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessStats {
    pub rss_kb: Option<u64>,
    pub hwm_kb: Option<u64>,
    pub cpu_ms: u64,
}

impl ProcessStats {
    /// Read the figures of process `pid` (the caller's own with `None`).
    pub fn read(pid: Option<i32>) -> Option<ProcessStats> {
        let p = match pid {
            Some(pid) => procfs::process::Process::new(pid),
            None => procfs::process::Process::myself(),
        }
        .ok()?;
        let status = p.status().ok()?;
        let stat = p.stat().ok()?;
        let ticks = procfs::ticks_per_second().max(1);
        Some(ProcessStats {
            rss_kb: status.vmrss,
            hwm_kb: status.vmhwm,
            cpu_ms: (stat.utime + stat.stime) * 1000 / ticks,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_and_reply_wire_format() {
        assert_eq!(
            serde_json::to_string(&Request::new(Query::Neighbors)).unwrap(),
            r#"{"show":"neighbors"}"#
        );
        let v4 = Request {
            show: Query::Routes,
            instance: Instance::Ipv4,
        };
        let line = serde_json::to_string(&v4).unwrap();
        assert_eq!(line, r#"{"show":"routes","instance":"ipv4"}"#);
        assert_eq!(serde_json::from_str::<Request>(&line).unwrap(), v4);
        assert_eq!(
            serde_json::from_str::<Request>(r#"{"show":"lsdb"}"#)
                .unwrap()
                .instance,
            Instance::Ipv6
        );
        let r = Reply {
            ok: true,
            data: Some(serde_json::json!([1])),
            error: None,
        };
        assert_eq!(
            serde_json::to_string(&r).unwrap(),
            r#"{"ok":true,"data":[1]}"#
        );
    }

    #[test]
    fn query_names_are_the_wire_names() {
        for q in Query::ALL {
            assert_eq!(serde_json::to_value(q).unwrap(), q.name());
        }
    }

    #[test]
    fn answers_read_back_as_what_was_asked() {
        let routes = Answer::Routes(vec![RouteRow {
            prefix: "fd00:1::/64".parse().unwrap(),
            cost: 20,
            next_hops: vec![RouteHop {
                ifindex: 3,
                iface: Some("m-b".into()),
                via: "fe80::1".parse().unwrap(),
            }],
        }]);
        let json = routes.to_json().unwrap();
        assert_eq!(json[0]["prefix"], "fd00:1::/64");
        assert_eq!(json[0]["next_hops"][0]["iface"], "m-b");
        assert_eq!(
            Answer::from_json(Query::Routes, json.clone()).unwrap(),
            routes
        );
        // The wrong question for the data is an error, not a guess.
        assert!(Answer::from_json(Query::Node, json).is_err());
    }

    #[test]
    fn stats_flatten_the_xdp_counters_to_the_top() {
        let report = StatsReport {
            xdp: Some(Stats {
                cpus: 2,
                counters: [("redirect".to_string(), 5)].into(),
            }),
            agent: Some(AgentCounters::default()),
            writer: None,
            ospf: Some(OspfStats::default()),
            process: Some(ProcessStats::default()),
            redirect_failed_by_iface: [("m-b".to_string(), 3)].into(),
        };
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["counters"]["redirect"], 5);
        assert_eq!(json["cpus"], 2);
        let back: StatsReport = serde_json::from_value(json).unwrap();
        assert_eq!(back, report);
        // Counters alone (no agent), and nothing at all, read back too.
        let alone = StatsReport {
            xdp: report.xdp.clone(),
            ..StatsReport::default()
        };
        let json = serde_json::to_value(&alone).unwrap();
        assert_eq!(json.as_object().unwrap().len(), 2, "{json}");
        assert_eq!(serde_json::from_value::<StatsReport>(json).unwrap(), alone);
        let none: StatsReport = serde_json::from_str("{}").unwrap();
        assert_eq!(none, StatsReport::default());
    }

    #[test]
    fn this_process_can_be_measured() {
        let p = ProcessStats::read(None).expect("/proc/self");
        assert!(p.rss_kb.is_some_and(|kb| kb > 0));
    }
}
