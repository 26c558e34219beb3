//! The agent's configuration: built-in defaults, then a TOML file, then
//! command-line flags, each overriding the one before.
//!
//! A bare `meshfwd agent` needs no file at all: every field has a default
//! that suits a node of the mesh. Whatever is given is checked before the
//! agent touches the system, and a bad value is refused with an error that
//! names the field (`ospf.dead_interval`, `cluster_prefix`, ...).
//!
//! ```toml
//! # /etc/kubermesh/meshfwd.toml (every key optional)
//! router_id = "10.0.0.1"                  # default: from /etc/machine-id
//! machine_id_file = "/etc/machine-id"
//! cluster_prefix = "fd6b:6d65:7368::/48"  # each node takes a /64 of it
//! pod_prefix = "fd6b:6d65:7368:12::/64"   # default: chosen automatically
//! mtu = 1500
//! bpffs = "/sys/fs/bpf/kubermesh"
//! socket = "/run/kubermesh/meshfwd.sock"
//! state_file = "/run/kubermesh/node.json"
//! local_device = "kubermesh0"
//! xdp = true
//! xdp_mode = "auto"                       # auto | native | generic
//! kernel_routes = true
//! netfilter = "check"                     # check | ignore
//! log_format = "text"                     # text | json
//! metrics = "127.0.0.1:9470"              # Prometheus endpoint (/metrics), or "off"
//!
//! [interfaces]
//! include = ["*"]
//! exclude = ["lo", "km*", "docker*"]
//! skip_dad = true   # mesh link-locals usable at once, no 1-2 s DAD wait
//!
//! [ospf]
//! hello_interval = 1
//! dead_interval = 3
//! retransmit_interval = 2
//! cost = 10
//! min_ls_interval_ms = 1000   # RFC 2328 MinLSInterval (5 s there)
//! min_ls_arrival_ms = 500     # RFC 2328 MinLSArrival (1 s there)
//! spf_initial_delay_ms = 20   # RFC 8405 SPF back-off, tuned for a small mesh
//! spf_short_delay_ms = 100
//! spf_long_delay_ms = 1000
//! spf_time_to_learn_ms = 1000
//! spf_holddown_ms = 3000
//! max_lsas = 20000            # LSDB limit in all (the excess is refused)
//! max_lsas_per_router = 100   # and per advertising router
//! gateways = []               # router ids allowed to advertise ::/0 and aggregates
//! network = "auto"            # auto | point-to-point | broadcast
//! graceful_restart = true     # RFC 3623: restart without moving the neighbours' routes
//! grace_period = 60           # seconds a restart may take (1-1800)
//! graceful_restart_strict = true  # as helper, stop on a topology change
//!
//! [bfd]                       # RFC 5880/5881/5882: fast failure detection
//! enabled = false             # a session with every OSPF neighbour
//! interval_ms = 10            # desired TX and required RX once Up (1-10000)
//! multiplier = 3              # packets missed before Down (1-255)
//!
//! [ipv4]                      # absent: IPv6 only (--ipv4-cluster-prefix)
//! cluster_prefix = "198.18.0.0/15"   # each node takes a pod prefix of it
//! pod_prefix_len = 24
//!
//! [[ospf.link]]               # per-link overrides, first match wins
//! name = "eth2"               # a glob over interface names
//! network = "broadcast"
//!
//! [ospf.auth]                 # RFC 7166; see `agent::auth` for the key file
//! key_file = "/etc/kubermesh/ospf-keys.toml"   # default: none (no authentication)
//! boot_count_file = "/var/lib/kubermesh/ospf-boot-count"
//! cpid = "rfc"                # legacy: for neighbours running FRR before 9.1
//! ```

use std::{
    fmt,
    net::Ipv4Addr,
    path::{Path, PathBuf},
};

use dataplane::{maps::Netfilter, xdp::AttachMode};
use ipnet::{Ipv4Net, Ipv6Net};
use meshfwd_common::pin;
use serde::{Deserialize, Serialize};

use super::{auth::AuthConfig, core::links::Pattern};

/// Where the agent looks for its file when `--config` is not given.
pub const DEFAULT_CONFIG_FILE: &str = "/etc/kubermesh/meshfwd.toml";
/// The control socket `meshfwd show ...` talks to.
pub const DEFAULT_SOCKET: &str = "/run/kubermesh/meshfwd.sock";
/// The node state file the CNI plugin reads.
pub const DEFAULT_STATE_FILE: &str = "/run/kubermesh/node.json";
/// The cluster prefix: a ULA /48 (RFC 4193; global id 6b:6d65:7368, "kmesh").
pub const DEFAULT_CLUSTER_PREFIX: &str = "fd6b:6d65:7368::/48";
/// The device that carries the node's own /128.
pub const DEFAULT_LOCAL_DEVICE: &str = "kubermesh0";
/// The file the router id is derived from.
pub const DEFAULT_MACHINE_ID_FILE: &str = "/etc/machine-id";
/// Links that never join the mesh: loopback, our own devices, pod veths of
/// kubermesh (`km...`) and of other CNIs, bridges and tunnels.
pub const DEFAULT_EXCLUDE: &[&str] = &[
    "lo",
    "km*",
    "kubermesh*",
    "veth*",
    "docker*",
    "br-*",
    "virbr*",
    "cni*",
    "flannel*",
    "cali*",
    "cilium*",
    "lxc*",
    "vxlan*",
    "wg*",
    "tun*",
    "tap*",
];

/// A configuration value that cannot be used, and which field it is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid configuration: {field}: {reason}")]
pub struct ConfigError {
    /// The field as written in the TOML file (`ospf.dead_interval`).
    pub field: String,
    pub reason: String,
}

impl ConfigError {
    fn new(field: &str, reason: impl fmt::Display) -> Self {
        ConfigError {
            field: field.to_string(),
            reason: reason.to_string(),
        }
    }
}

/// How logs are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One human-readable line per event.
    #[default]
    Text,
    /// One JSON object per event.
    Json,
}

/// Where the Prometheus endpoint listens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricsListen {
    Off,
    On(std::net::SocketAddr),
}

/// The default endpoint: loopback only, so nothing leaves the node unless
/// the operator says so.
pub const DEFAULT_METRICS: &str = "127.0.0.1:9470";

impl std::str::FromStr for MetricsListen {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s == "off" {
            return Ok(MetricsListen::Off);
        }
        s.parse()
            .map(MetricsListen::On)
            .map_err(|_| format!("{s:?} is neither an address:port nor \"off\""))
    }
}

impl fmt::Display for MetricsListen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MetricsListen::Off => f.write_str("off"),
            MetricsListen::On(a) => write!(f, "{a}"),
        }
    }
}

impl Serialize for MetricsListen {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for MetricsListen {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

/// The `[interfaces]` section: which links join the mesh.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct InterfacesConfig {
    /// A link must match one of these...
    pub include: Vec<Pattern>,
    /// ...and none of these.
    pub exclude: Vec<Pattern>,
    /// Turn duplicate address detection off for mesh links (and links
    /// created later), so a link-local address is usable the moment the
    /// carrier is there instead of 1-2 s later. Two EUI-64 or random
    /// link-locals on one cable do not collide in practice.
    pub skip_dad: bool,
}

impl Default for InterfacesConfig {
    fn default() -> Self {
        InterfacesConfig {
            include: vec!["*".parse().expect("a valid glob")],
            exclude: DEFAULT_EXCLUDE
                .iter()
                .map(|p| p.parse().expect("a valid glob"))
                .collect(),
            skip_dad: true,
        }
    }
}

/// The OSPF network type of a mesh link.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum NetworkType {
    /// Point-to-point until the link shows it is multi-access (two routers
    /// heard on it, or a neighbour that elects a DR), then broadcast for as
    /// long as the link stays up: a switch on a mesh port needs no setting.
    #[default]
    Auto,
    /// Always point-to-point: one neighbour, no election.
    PointToPoint,
    /// Always broadcast: DR/BDR election and a Network-LSA.
    Broadcast,
}

impl NetworkType {
    /// Set `config` up for this network type.
    pub fn apply(self, config: routing::InterfaceConfig) -> routing::InterfaceConfig {
        use routing::InterfaceKind as K;
        let (kind, detect_broadcast) = match self {
            NetworkType::Auto => (K::PointToPoint, true),
            NetworkType::PointToPoint => (K::PointToPoint, false),
            NetworkType::Broadcast => (K::Broadcast, false),
        };
        routing::InterfaceConfig {
            kind,
            detect_broadcast,
            ..config
        }
    }
}

/// A `[[ospf.link]]` entry: settings for the mesh links it names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinkOverride {
    /// Interface names (a glob).
    pub name: Pattern,
    pub network: NetworkType,
}

/// How the network type of a link is chosen: the first `[[ospf.link]]`
/// entry naming it, else the default.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NetworkChoice {
    pub default: NetworkType,
    pub links: Vec<LinkOverride>,
}

impl NetworkChoice {
    /// Return the network type of the link `name`.
    pub fn of(&self, name: &str) -> NetworkType {
        self.links
            .iter()
            .find(|l| l.name.matches(name))
            .map_or(self.default, |l| l.network)
    }
}

/// The `[ospf]` section: settings of every mesh interface.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OspfConfig {
    /// Seconds between Hellos.
    pub hello_interval: u16,
    /// Seconds without a Hello before a neighbour is declared down.
    pub dead_interval: u16,
    /// Seconds before an unacknowledged packet is resent.
    pub retransmit_interval: u16,
    /// Output cost of every mesh interface.
    pub cost: u16,
    /// Shortest time between two originations of one LSA, in ms. RFC 2328
    /// says 5 s; a mesh with 1 s Hellos wants a joining node's links known
    /// sooner.
    pub min_ls_interval_ms: u64,
    /// Shortest time between accepting two instances of one LSA, in ms
    /// (at most `min_ls_interval_ms`).
    pub min_ls_arrival_ms: u64,
    /// RFC 8405 SPF back-off: delay of the first run after a quiet time.
    pub spf_initial_delay_ms: u64,
    /// Delay while changes keep coming (SHORT_WAIT).
    pub spf_short_delay_ms: u64,
    /// Delay once they have come for `spf_time_to_learn_ms` (LONG_WAIT).
    pub spf_long_delay_ms: u64,
    pub spf_time_to_learn_ms: u64,
    /// Quiet time that resets the back-off.
    pub spf_holddown_ms: u64,
    /// LSAs the database takes in all; the excess is refused (see
    /// `routing::instance::LsdbLimits`). A node originates about 2 plus
    /// one per link, so the default fits a few thousand nodes.
    pub max_lsas: usize,
    /// LSAs the database takes from one router.
    pub max_lsas_per_router: usize,
    /// Routers (by router id) allowed to advertise a default route or an
    /// aggregate covering the cluster prefix (see `routing::ownership`).
    pub gateways: Vec<Ipv4Addr>,
    /// Graceful restart (RFC 3623, RFC 5187): help restarting neighbours,
    /// announce our own restarts (a stop on SIGTERM is a planned restart;
    /// a start that finds an earlier run's routes an unplanned one).
    pub graceful_restart: bool,
    /// Seconds our restart may take before the neighbours give up on it.
    pub grace_period: u32,
    /// As a helper, stop helping when the topology changes (RFC 3623
    /// §3.2 strict LSA checking).
    pub graceful_restart_strict: bool,
    /// The network type of every mesh link...
    pub network: NetworkType,
    /// ...but those a `[[ospf.link]]` entry names (the first match).
    #[serde(rename = "link")]
    pub links: Vec<LinkOverride>,
    /// `[ospf.auth]`: RFC 7166 authentication of every packet.
    pub auth: AuthConfig,
}

impl Default for OspfConfig {
    fn default() -> Self {
        OspfConfig {
            hello_interval: 1,
            dead_interval: 3,
            retransmit_interval: 2,
            cost: 10,
            min_ls_interval_ms: 1000,
            min_ls_arrival_ms: 500,
            spf_initial_delay_ms: 20,
            spf_short_delay_ms: 100,
            spf_long_delay_ms: 1000,
            spf_time_to_learn_ms: 1000,
            spf_holddown_ms: 3000,
            max_lsas: 20_000,
            max_lsas_per_router: 100,
            gateways: Vec::new(),
            graceful_restart: true,
            grace_period: 60,
            graceful_restart_strict: true,
            network: NetworkType::Auto,
            links: Vec::new(),
            auth: AuthConfig::default(),
        }
    }
}

impl OspfConfig {
    /// Return the settings of every mesh interface (the network type is
    /// chosen per link by [`OspfConfig::networks`]).
    pub fn interface(&self) -> routing::InterfaceConfig {
        routing::InterfaceConfig {
            hello_interval: self.hello_interval,
            dead_interval: self.dead_interval,
            retransmit_interval: self.retransmit_interval,
            cost: self.cost,
            ..routing::InterfaceConfig::default()
        }
    }

    /// Return how each link's network type is chosen.
    pub fn networks(&self) -> NetworkChoice {
        NetworkChoice {
            default: self.network,
            links: self.links.clone(),
        }
    }
}

/// The `[bfd]` section: a BFD session with every OSPF neighbour, whose
/// Down takes the adjacency down at once (RFC 5882).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BfdConfig {
    /// Off by default: a session that fails while the agent is gone (a
    /// crash) takes the node's adjacencies down, which graceful restart
    /// would otherwise have kept.
    pub enabled: bool,
    /// Desired TX and required RX interval once Up, in milliseconds.
    pub interval_ms: u32,
    /// Detect multiplier.
    pub multiplier: u8,
}

impl Default for BfdConfig {
    fn default() -> Self {
        BfdConfig {
            enabled: false,
            interval_ms: 10,
            multiplier: 3,
        }
    }
}

impl BfdConfig {
    /// The session timers, when BFD runs.
    pub fn timers(&self) -> Option<routing::bfd::Timers> {
        self.enabled.then(|| routing::bfd::Timers {
            desired_min_tx_us: self.interval_ms * 1000,
            required_min_rx_us: self.interval_ms * 1000,
            detect_mult: self.multiplier,
        })
    }
}

/// The agent's complete configuration: the TOML file's schema, every key
/// optional.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Fixed router id; `None` derives one from the machine id.
    pub router_id: Option<Ipv4Addr>,
    /// File holding the machine id the router id is derived from.
    pub machine_id_file: PathBuf,
    /// The prefix every node's pod prefix is carved from.
    pub cluster_prefix: Ipv6Net,
    /// Fixed pod prefix (a /64 of the cluster prefix); `None` chooses one.
    pub pod_prefix: Option<Ipv6Net>,
    /// MTU handed to the CNI plugin for pod interfaces.
    pub mtu: u32,
    /// bpffs directory of the node's pinned maps and links.
    pub bpffs: PathBuf,
    /// Control socket for `meshfwd show ...`.
    pub socket: PathBuf,
    /// Node state file for the CNI plugin.
    pub state_file: PathBuf,
    /// Dummy device that carries the node's /128.
    pub local_device: String,
    /// Load and attach the XDP fast path.
    pub xdp: bool,
    /// How XDP is attached.
    pub xdp_mode: AttachMode,
    /// Mirror the routes into the kernel FIB.
    pub kernel_routes: bool,
    /// `check`: the fast path takes only flows conntrack has accepted, seen
    /// established and does not translate, so kube-proxy's Services,
    /// hostPorts and netfilter policies work. `ignore`: for nodes where
    /// nothing filters or translates forwarded traffic.
    pub netfilter: Netfilter,
    pub log_format: LogFormat,
    /// The Prometheus endpoint (`GET /metrics`).
    pub metrics: MetricsListen,
    pub interfaces: InterfacesConfig,
    pub ospf: OspfConfig,
    pub bfd: BfdConfig,
    /// IPv4 for pods and nodes (RFC 5838 beside the IPv6 instance);
    /// absent: IPv6 only.
    pub ipv4: Option<Ipv4Config>,
    /// The key chain read from `ospf.auth.key_file` by [`Config::load`].
    #[serde(skip)]
    pub keys: Option<routing::packet::auth::KeyChain>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            router_id: None,
            machine_id_file: DEFAULT_MACHINE_ID_FILE.into(),
            cluster_prefix: DEFAULT_CLUSTER_PREFIX
                .parse()
                .expect("default cluster prefix parses"),
            pod_prefix: None,
            mtu: 1500,
            bpffs: pin::DEFAULT_DIR.into(),
            socket: DEFAULT_SOCKET.into(),
            state_file: dataplane::node_state::DEFAULT_PATH.into(),
            local_device: DEFAULT_LOCAL_DEVICE.into(),
            xdp: true,
            xdp_mode: AttachMode::Auto,
            kernel_routes: true,
            netfilter: Netfilter::Check,
            log_format: LogFormat::Text,
            metrics: DEFAULT_METRICS
                .parse()
                .expect("the default metrics address parses"),
            interfaces: InterfacesConfig::default(),
            ospf: OspfConfig::default(),
            bfd: BfdConfig::default(),
            ipv4: None,
            keys: None,
        }
    }
}

/// Flags of `meshfwd agent`; each overrides the file.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct AgentArgs {
    /// TOML configuration file (default /etc/kubermesh/meshfwd.toml, which
    /// may be absent).
    #[arg(long, env = "MESHFWD_CONFIG")]
    pub config: Option<PathBuf>,
    /// Router id (dotted quad); default derived from the machine id.
    #[arg(long)]
    pub router_id: Option<Ipv4Addr>,
    /// File the router id is derived from (default /etc/machine-id).
    #[arg(long)]
    pub machine_id_file: Option<PathBuf>,
    /// Cluster prefix the pod prefixes are carved from (default
    /// fd6b:6d65:7368::/48).
    #[arg(long)]
    pub cluster_prefix: Option<Ipv6Net>,
    /// Fixed pod prefix, a /64 inside the cluster prefix.
    #[arg(long)]
    pub pod_prefix: Option<Ipv6Net>,
    /// Pod MTU written to the node state file.
    #[arg(long)]
    pub mtu: Option<u32>,
    /// Node state file for the CNI plugin (default /run/kubermesh/node.json).
    #[arg(long)]
    pub state_file: Option<PathBuf>,
    /// Device that carries the node's /128 (default kubermesh0).
    #[arg(long)]
    pub local_device: Option<String>,
    /// Links to leave out of the mesh (glob; repeatable; replaces the list).
    #[arg(long = "exclude", value_name = "PATTERN")]
    pub exclude: Vec<Pattern>,
    /// Links that may join the mesh (glob; repeatable; replaces the list).
    #[arg(long = "include", value_name = "PATTERN")]
    pub include: Vec<Pattern>,
    /// Seconds between Hellos.
    #[arg(long)]
    pub hello_interval: Option<u16>,
    /// Seconds without a Hello before a neighbour is declared down.
    #[arg(long)]
    pub dead_interval: Option<u16>,
    /// OSPF network type of mesh links without a `[[ospf.link]]` entry.
    #[arg(long, value_enum)]
    pub network: Option<NetworkType>,
    /// Run BFD with every OSPF neighbour.
    #[arg(long)]
    pub bfd: bool,
    /// BFD interval once Up, in milliseconds (TX and RX).
    #[arg(long, value_name = "MS")]
    pub bfd_interval_ms: Option<u32>,
    /// BFD detect multiplier.
    #[arg(long)]
    pub bfd_multiplier: Option<u8>,
    /// Run without the XDP fast path (routes go to the kernel only).
    #[arg(long)]
    pub no_xdp: bool,
    /// How XDP is attached.
    #[arg(long, value_enum)]
    pub xdp_mode: Option<AttachMode>,
    /// Do not install routes in the kernel FIB.
    #[arg(long)]
    pub no_kernel_routes: bool,
    /// Whether the fast path asks conntrack first (check) or forwards
    /// without asking (ignore: nothing on the node filters or translates).
    #[arg(long, value_enum)]
    pub netfilter: Option<Netfilter>,
    /// Log format.
    #[arg(long, value_enum)]
    pub log_format: Option<LogFormat>,
    /// Prometheus endpoint, ADDRESS:PORT or `off` (default 127.0.0.1:9470).
    #[arg(long, value_name = "ADDR|off")]
    pub metrics: Option<MetricsListen>,
    /// OSPF key file (RFC 7166 authentication; see `meshfwd agent --help`
    /// and the README for its format).
    #[arg(long)]
    pub auth_key_file: Option<PathBuf>,
    /// File the authentication boot count is kept in.
    #[arg(long)]
    pub auth_boot_count_file: Option<PathBuf>,
    /// Sign with the protocol id in FRR-before-9.1 order (`legacy`) or the
    /// RFC's (`rfc`).
    #[arg(long, value_parser = parse_cpid)]
    pub auth_cpid: Option<routing::packet::auth::CpidOrder>,
    /// Give nodes and pods IPv4 from this prefix too (each node takes a
    /// pod prefix of `ipv4.pod_prefix_len` bits and its `.1`).
    #[arg(long, value_name = "PREFIX")]
    pub ipv4_cluster_prefix: Option<Ipv4Net>,
}

/// `[ipv4]`: the IPv4 family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ipv4Config {
    /// The prefix every node's IPv4 pod prefix is carved from.
    pub cluster_prefix: Ipv4Net,
    /// Length of a node's IPv4 pod prefix.
    #[serde(default = "default_pod_prefix_len4")]
    pub pod_prefix_len: u8,
}

fn default_pod_prefix_len4() -> u8 {
    24
}

fn parse_cpid(s: &str) -> Result<routing::packet::auth::CpidOrder, String> {
    use routing::packet::auth::CpidOrder;
    match s {
        "rfc" => Ok(CpidOrder::Rfc),
        "legacy" => Ok(CpidOrder::Legacy),
        other => Err(format!("{other:?} is not rfc or legacy")),
    }
}

impl Config {
    /// Build the configuration from the file (if any) and the flags.
    ///
    /// `bpffs` and `socket` are the CLI's global options (`None` when not
    /// given). A file named with `--config` must exist; the default path may
    /// be absent.
    pub fn load(
        args: &AgentArgs,
        bpffs: Option<&Path>,
        socket: Option<&Path>,
    ) -> Result<Config, ConfigError> {
        let (path, required) = match &args.config {
            Some(p) => (p.clone(), true),
            None => (PathBuf::from(DEFAULT_CONFIG_FILE), false),
        };
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => Some(t),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => None,
            Err(e) => {
                return Err(ConfigError::new(
                    "config",
                    format!("reading {}: {e}", path.display()),
                ));
            }
        };
        let mut config = match text {
            Some(t) => Config::from_toml(&t).map_err(|e| ConfigError {
                reason: format!("{} (in {})", e.reason, path.display()),
                ..e
            })?,
            None => Config::default(),
        };
        config.apply_args(args, bpffs, socket);
        config.validate()?;
        if let Some(path) = &config.ospf.auth.key_file {
            let keys = super::auth::load_keys(path, config.ospf.auth.cpid)
                .map_err(|e| ConfigError::new("ospf.auth.key_file", e))?;
            config.keys = Some(keys);
        }
        Ok(config)
    }

    /// Parse a TOML document over the defaults (not yet validated as a
    /// whole). An error names the field by its path (`ospf.dead_interval`);
    /// unknown keys are refused, so a typo never silently becomes a default.
    pub fn from_toml(text: &str) -> Result<Config, ConfigError> {
        let de = toml::Deserializer::new(text);
        serde_path_to_error::deserialize(de).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner();
            let field = if path == "." {
                "config".to_owned()
            } else {
                path
            };
            ConfigError::new(&field, inner.message().trim())
        })
    }

    /// Lay the flags over the file's values.
    fn apply_args(&mut self, a: &AgentArgs, bpffs: Option<&Path>, socket: Option<&Path>) {
        fn set<T: Clone>(field: &mut T, flag: &Option<T>) {
            if let Some(v) = flag {
                *field = v.clone();
            }
        }
        if a.router_id.is_some() {
            self.router_id = a.router_id;
        }
        if a.pod_prefix.is_some() {
            self.pod_prefix = a.pod_prefix;
        }
        set(&mut self.machine_id_file, &a.machine_id_file);
        set(&mut self.cluster_prefix, &a.cluster_prefix);
        set(&mut self.mtu, &a.mtu);
        set(&mut self.bpffs, &bpffs.map(Path::to_path_buf));
        set(&mut self.socket, &socket.map(Path::to_path_buf));
        set(&mut self.state_file, &a.state_file);
        set(&mut self.local_device, &a.local_device);
        set(&mut self.ospf.hello_interval, &a.hello_interval);
        if a.auth_key_file.is_some() {
            self.ospf.auth.key_file = a.auth_key_file.clone();
        }
        set(&mut self.ospf.auth.boot_count_file, &a.auth_boot_count_file);
        set(&mut self.ospf.auth.cpid, &a.auth_cpid);
        set(&mut self.ospf.dead_interval, &a.dead_interval);
        set(&mut self.ospf.network, &a.network);
        set(&mut self.xdp_mode, &a.xdp_mode);
        set(&mut self.netfilter, &a.netfilter);
        set(&mut self.log_format, &a.log_format);
        set(&mut self.metrics, &a.metrics);
        if a.bfd {
            self.bfd.enabled = true;
        }
        set(&mut self.bfd.interval_ms, &a.bfd_interval_ms);
        set(&mut self.bfd.multiplier, &a.bfd_multiplier);
        if !a.exclude.is_empty() {
            self.interfaces.exclude = a.exclude.clone();
        }
        if !a.include.is_empty() {
            self.interfaces.include = a.include.clone();
        }
        if a.no_xdp {
            self.xdp = false;
        }
        if let Some(cluster_prefix) = a.ipv4_cluster_prefix {
            let pod_prefix_len = self
                .ipv4
                .map_or_else(default_pod_prefix_len4, |c| c.pod_prefix_len);
            self.ipv4 = Some(Ipv4Config {
                cluster_prefix,
                pod_prefix_len,
            });
        }
        if a.no_kernel_routes {
            self.kernel_routes = false;
        }
    }

    /// Check the values together; the first problem found is returned.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if let Some(id) = self.router_id {
            check_router_id("router_id", id)?;
        }
        for (field, prefix) in [
            ("cluster_prefix", Some(self.cluster_prefix)),
            ("pod_prefix", self.pod_prefix),
        ] {
            if let Some(p) = prefix
                && p.trunc() != p
            {
                return Err(ConfigError::new(
                    field,
                    format!("{p} has host bits set (did you mean {}?)", p.trunc()),
                ));
            }
        }
        let cp = self.cluster_prefix;
        if !(16..=60).contains(&cp.prefix_len()) {
            return Err(ConfigError::new(
                "cluster_prefix",
                format!(
                    "{cp}: the length must be between /16 and /60 so it holds many /64 pod prefixes"
                ),
            ));
        }
        if let Some(pp) = self.pod_prefix {
            if pp.prefix_len() != 64 {
                return Err(ConfigError::new(
                    "pod_prefix",
                    format!("{pp}: must be a /64"),
                ));
            }
            if !cp.contains(&pp) {
                return Err(ConfigError::new(
                    "pod_prefix",
                    format!("{pp} is not inside cluster_prefix {cp}"),
                ));
            }
        }
        if !dataplane::node_state::MTU_RANGE.contains(&self.mtu) {
            return Err(ConfigError::new(
                "mtu",
                format!("{} is outside 1280..=65535 (IPv6 minimum MTU)", self.mtu),
            ));
        }
        for (field, path) in [
            ("bpffs", &self.bpffs),
            ("socket", &self.socket),
            ("state_file", &self.state_file),
        ] {
            if path.as_os_str().is_empty() {
                return Err(ConfigError::new(field, "must not be empty"));
            }
        }
        if self.machine_id_file.as_os_str().is_empty() && self.router_id.is_none() {
            return Err(ConfigError::new(
                "machine_id_file",
                "must not be empty (or set router_id)",
            ));
        }
        check_ifname("local_device", &self.local_device)?;
        if let Some(v4) = self.ipv4 {
            let cp = v4.cluster_prefix;
            if cp.trunc() != cp {
                return Err(ConfigError::new(
                    "ipv4.cluster_prefix",
                    format!("{cp} has host bits set (did you mean {}?)", cp.trunc()),
                ));
            }
            // At least two pod prefixes (subnet 0 is never handed out),
            // and each with room for pods beside the node's `.1`.
            if !(cp.prefix_len() < v4.pod_prefix_len && v4.pod_prefix_len <= 29) {
                return Err(ConfigError::new(
                    "ipv4.pod_prefix_len",
                    format!(
                        "/{} must be longer than ipv4.cluster_prefix {cp} and at most /29",
                        v4.pod_prefix_len
                    ),
                ));
            }
        }
        if self.interfaces.include.is_empty() {
            return Err(ConfigError::new(
                "interfaces.include",
                "must list at least one pattern",
            ));
        }
        let o = &self.ospf;
        if o.hello_interval == 0 {
            return Err(ConfigError::new(
                "ospf.hello_interval",
                "must be at least 1 second",
            ));
        }
        if o.dead_interval <= o.hello_interval {
            return Err(ConfigError::new(
                "ospf.dead_interval",
                format!(
                    "{} must be greater than ospf.hello_interval ({})",
                    o.dead_interval, o.hello_interval
                ),
            ));
        }
        if o.retransmit_interval == 0 {
            return Err(ConfigError::new(
                "ospf.retransmit_interval",
                "must be at least 1 second",
            ));
        }
        if o.cost == 0 {
            return Err(ConfigError::new("ospf.cost", "must be at least 1"));
        }
        if !(1..=10_000).contains(&self.bfd.interval_ms) {
            return Err(ConfigError::new(
                "bfd.interval_ms",
                format!("{} is outside 1..=10000 milliseconds", self.bfd.interval_ms),
            ));
        }
        if self.bfd.multiplier == 0 {
            return Err(ConfigError::new(
                "bfd.multiplier",
                "must be at least 1 (RFC 5880: a multiplier of 0 is discarded)",
            ));
        }
        if !(1..=1800).contains(&o.grace_period) {
            return Err(ConfigError::new(
                "ospf.grace_period",
                "must be 1 to 1800 seconds (RFC 3623: at most LSRefreshTime)",
            ));
        }
        if o.min_ls_arrival_ms > o.min_ls_interval_ms {
            return Err(ConfigError::new(
                "ospf.min_ls_arrival_ms",
                format!(
                    "{} must not exceed ospf.min_ls_interval_ms ({}): neighbours would drop our updates",
                    o.min_ls_arrival_ms, o.min_ls_interval_ms
                ),
            ));
        }
        if o.max_lsas_per_router < 16 {
            return Err(ConfigError::new(
                "ospf.max_lsas_per_router",
                "must be at least 16: a node with 5 links originates 7",
            ));
        }
        if o.max_lsas < o.max_lsas_per_router {
            return Err(ConfigError::new(
                "ospf.max_lsas",
                format!(
                    "{} must be at least ospf.max_lsas_per_router ({})",
                    o.max_lsas, o.max_lsas_per_router
                ),
            ));
        }
        for (i, g) in o.gateways.iter().enumerate() {
            check_router_id(&format!("ospf.gateways[{i}]"), *g)?;
        }
        if o.min_ls_interval_ms > 60_000 {
            return Err(ConfigError::new(
                "ospf.min_ls_interval_ms",
                "must be at most 60000",
            ));
        }
        if o.spf_short_delay_ms < o.spf_initial_delay_ms {
            return Err(ConfigError::new(
                "ospf.spf_short_delay_ms",
                format!(
                    "{} must be at least ospf.spf_initial_delay_ms ({})",
                    o.spf_short_delay_ms, o.spf_initial_delay_ms
                ),
            ));
        }
        if o.spf_long_delay_ms < o.spf_short_delay_ms {
            return Err(ConfigError::new(
                "ospf.spf_long_delay_ms",
                format!(
                    "{} must be at least ospf.spf_short_delay_ms ({})",
                    o.spf_long_delay_ms, o.spf_short_delay_ms
                ),
            ));
        }
        if o.spf_long_delay_ms > 60_000 || o.spf_holddown_ms > 600_000 {
            return Err(ConfigError::new(
                "ospf.spf_long_delay_ms",
                "SPF delays must stay under a minute",
            ));
        }
        Ok(())
    }
}

fn check_router_id(field: &str, id: Ipv4Addr) -> Result<(), ConfigError> {
    if id.is_unspecified() || id.is_broadcast() {
        return Err(ConfigError::new(
            field,
            format!("{id} cannot be a router id"),
        ));
    }
    Ok(())
}

fn check_ifname(field: &str, name: &str) -> Result<(), ConfigError> {
    if name.is_empty() || name.len() > 15 {
        return Err(ConfigError::new(
            field,
            format!("{name:?}: an interface name has 1 to 15 bytes"),
        ));
    }
    if name.contains(['/', ':'])
        || name.chars().any(char::is_whitespace)
        || name == "."
        || name == ".."
    {
        return Err(ConfigError::new(
            field,
            format!("{name:?} is not a valid interface name"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args() -> AgentArgs {
        AgentArgs {
            config: Some("/nonexistent/meshfwd.toml".into()),
            ..Default::default()
        }
    }

    #[test]
    fn defaults_are_valid_and_use_a_ula_48() {
        let c = Config::default();
        c.validate().unwrap();
        assert_eq!(c.cluster_prefix.prefix_len(), 48);
        assert_eq!(c.cluster_prefix.addr().segments()[0] & 0xff00, 0xfd00);
        assert!(c.interfaces.exclude.iter().any(|p| p.matches("km1234abcd")));
        assert!(c.interfaces.exclude.iter().any(|p| p.matches("lo")));
    }

    #[test]
    fn full_file_is_read() {
        let c = Config::from_toml(
            r#"
            router_id = "10.0.0.7"
            cluster_prefix = "fd00:1:2::/48"
            pod_prefix = "fd00:1:2:3::/64"
            mtu = 9000
            socket = "/tmp/x.sock"
            xdp_mode = "generic"
            log_format = "json"
            [interfaces]
            exclude = ["eth0"]
            [ospf]
            hello_interval = 2
            dead_interval = 8
            cost = 5
            "#,
        )
        .unwrap();
        c.validate().unwrap();
        assert_eq!(c.router_id, Some(Ipv4Addr::new(10, 0, 0, 7)));
        assert_eq!(c.pod_prefix.unwrap().to_string(), "fd00:1:2:3::/64");
        assert_eq!(c.mtu, 9000);
        assert_eq!(c.log_format, LogFormat::Json);
        assert!(matches!(c.xdp_mode, AttachMode::Generic));
        assert_eq!(
            c.interfaces.exclude,
            vec!["eth0".parse::<Pattern>().unwrap()]
        );
        assert_eq!(
            c.ospf,
            OspfConfig {
                hello_interval: 2,
                dead_interval: 8,
                cost: 5,
                ..OspfConfig::default()
            }
        );
    }

    #[test]
    fn network_type_per_link() {
        let c = Config::from_toml(
            r#"
            [ospf]
            network = "point-to-point"
            [[ospf.link]]
            name = "sw*"
            network = "broadcast"
            [[ospf.link]]
            name = "*"
            network = "auto"
            "#,
        )
        .unwrap();
        let n = c.ospf.networks();
        assert_eq!(n.of("sw0"), NetworkType::Broadcast);
        assert_eq!(n.of("eth1"), NetworkType::Auto);
        assert_eq!(
            Config::default().ospf.networks().of("eth1"),
            NetworkType::Auto
        );
        let auto = NetworkType::Auto.apply(routing::InterfaceConfig::default());
        assert!(auto.detect_broadcast);
        assert_eq!(auto.kind, routing::InterfaceKind::PointToPoint);
        let field = |toml: &str| Config::from_toml(toml).unwrap_err().field;
        assert_eq!(field("[ospf]\nnetwork = \"nbma\""), "ospf.network");
        assert_eq!(
            field("[[ospf.link]]\nname = \"eth1\"\nnetwork = \"mesh\""),
            "ospf.link[0].network"
        );
        assert_eq!(field("[[ospf.link]]\nnetwork = \"auto\""), "ospf.link[0]");
        assert_eq!(field("metrics = \"everywhere\""), "metrics");
        for bad in ["[ospf]\ngrace_period = 0", "[ospf]\ngrace_period = 3600"] {
            let e = Config::from_toml(bad).unwrap().validate().unwrap_err();
            assert_eq!(e.field, "ospf.grace_period");
        }
        let c = Config::from_toml("metrics = \"off\"").unwrap();
        assert_eq!(c.metrics, MetricsListen::Off);
        assert_eq!(Config::default().metrics.to_string(), DEFAULT_METRICS);
    }

    #[test]
    fn ipv4_is_optional_and_checked() {
        assert!(Config::default().ipv4.is_none(), "IPv6 only unless asked");
        let c = Config::from_toml("[ipv4]\ncluster_prefix = \"198.18.0.0/15\"").unwrap();
        c.validate().unwrap();
        let v4 = c.ipv4.unwrap();
        assert_eq!(v4.pod_prefix_len, 24);
        let invalid = |toml: &str| {
            Config::from_toml(toml)
                .unwrap()
                .validate()
                .unwrap_err()
                .field
        };
        assert_eq!(
            invalid("[ipv4]\ncluster_prefix = \"198.18.0.1/15\""),
            "ipv4.cluster_prefix"
        );
        for len in [15, 30] {
            assert_eq!(
                invalid(&format!(
                    "[ipv4]\ncluster_prefix = \"198.18.0.0/15\"\npod_prefix_len = {len}"
                )),
                "ipv4.pod_prefix_len"
            );
        }
        assert_eq!(
            Config::from_toml("[ipv4]\ncluster_prefix = \"fd00::/8\"")
                .unwrap_err()
                .field,
            "ipv4.cluster_prefix"
        );
    }

    #[test]
    fn errors_name_the_field() {
        let field = |toml: &str| {
            Config::from_toml(toml)
                .and_then(|c| c.validate())
                .unwrap_err()
                .field
        };
        assert_eq!(field("router_id = \"ten\""), "router_id");
        assert_eq!(field("router_id = \"0.0.0.0\""), "router_id");
        assert_eq!(field("cluster_prefix = \"fd00::/64\""), "cluster_prefix");
        assert_eq!(field("cluster_prefix = \"nonsense\""), "cluster_prefix");
        assert_eq!(field("pod_prefix = \"fd00:9::/64\""), "pod_prefix");
        assert_eq!(
            field("pod_prefix = \"fd6b:6d65:7368:1::/80\""),
            "pod_prefix"
        );
        assert_eq!(field("mtu = 100"), "mtu");
        assert_eq!(field("local_device = \"a/b\""), "local_device");
        assert_eq!(field("xdp_mode = \"turbo\""), "xdp_mode");
        assert_eq!(
            field("[ospf]\nhello_interval = 5\ndead_interval = 5"),
            "ospf.dead_interval"
        );
        assert_eq!(field("[ospf]\nhello_interval = 0"), "ospf.hello_interval");
        assert_eq!(field("[ospf]\ncost = 0"), "ospf.cost");
        assert_eq!(
            field("[ospf]\nmin_ls_arrival_ms = 2000"),
            "ospf.min_ls_arrival_ms"
        );
        assert_eq!(
            field("[ospf]\nspf_long_delay_ms = 10"),
            "ospf.spf_long_delay_ms"
        );
        assert_eq!(
            field("[interfaces]\nskip_dad = \"yes\""),
            "interfaces.skip_dad"
        );
        assert_eq!(field("[interfaces]\ninclude = []"), "interfaces.include");
        assert_eq!(
            field("[interfaces]\ninclude = [\"\"]"),
            "interfaces.include[0]"
        );
        assert_eq!(
            field("[interfaces]\nexclude = [\"eth[\"]"),
            "interfaces.exclude[0]"
        );
        assert_eq!(
            field("cluster_prefix = \"fd00:1:2:3::/48\""),
            "cluster_prefix"
        );
        assert_eq!(
            field("pod_prefix = \"fd6b:6d65:7368:1::5/64\""),
            "pod_prefix"
        );
        assert_eq!(field("xdp = 1"), "xdp");
        assert_eq!(field("colour = \"blue\""), "colour");
        assert_eq!(field("[ospf]\nhelo = 1"), "ospf.helo");
        assert_eq!(field("mtu = \"big\""), "mtu");
        assert_eq!(field("[ospf]\ncost = -1"), "ospf.cost");
        assert_eq!(
            field("[interfaces]\nexclude = \"eth0\""),
            "interfaces.exclude"
        );
    }

    #[test]
    fn error_message_reads_well() {
        let e = Config::from_toml("[ospf]\ndead_interval = 1")
            .unwrap()
            .validate()
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid configuration: ospf.dead_interval: 1 must be greater than ospf.hello_interval (1)"
        );
    }

    #[test]
    fn flags_override_the_file() {
        let dir = std::env::temp_dir().join(format!("meshfwd-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("a.toml");
        std::fs::write(
            &path,
            "router_id = \"10.0.0.1\"\nmtu = 1400\n[ospf]\nhello_interval = 2\ndead_interval = 6\n",
        )
        .unwrap();
        let a = AgentArgs {
            config: Some(path),
            router_id: Some(Ipv4Addr::new(10, 9, 9, 9)),
            dead_interval: Some(10),
            exclude: vec!["eth9".parse().unwrap()],
            no_xdp: true,
            ..Default::default()
        };
        let c = Config::load(
            &a,
            Some(Path::new("/sys/fs/bpf/x")),
            Some(Path::new("/tmp/s.sock")),
        )
        .unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(c.router_id, Some(Ipv4Addr::new(10, 9, 9, 9)));
        assert_eq!(c.mtu, 1400);
        assert_eq!((c.ospf.hello_interval, c.ospf.dead_interval), (2, 10));
        assert_eq!(
            c.interfaces.exclude,
            vec!["eth9".parse::<Pattern>().unwrap()]
        );
        assert!(!c.xdp);
        assert_eq!(c.bpffs, Path::new("/sys/fs/bpf/x"));
        assert_eq!(c.socket, Path::new("/tmp/s.sock"));
    }

    #[test]
    fn flag_errors_name_the_flag_and_missing_named_file_is_an_error() {
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            agent: AgentArgs,
        }
        let parse = |args: &[&str]| {
            <Cli as clap::Parser>::try_parse_from(
                std::iter::once("agent").chain(args.iter().copied()),
            )
            .map(|c| c.agent)
        };
        for (flag, value) in [
            ("--router-id", "1.2.3"),
            ("--cluster-prefix", "fd00::"),
            ("--pod-prefix", "nonsense/64"),
            ("--exclude", "eth["),
            ("--hello-interval", "often"),
        ] {
            let err = parse(&[flag, value]).unwrap_err().to_string();
            assert!(err.contains(flag), "{flag} {value}: {err}");
        }
        let ok = parse(&["--router-id", "10.0.0.1", "--exclude", "eth*"]).unwrap();
        assert_eq!(ok.router_id, Some(Ipv4Addr::new(10, 0, 0, 1)));
        assert_eq!(
            Config::load(&args(), None, None).unwrap_err().field,
            "config"
        );
        let a = AgentArgs {
            config: None,
            hello_interval: Some(9),
            ..Default::default()
        };
        // The default file may be absent; the flag still makes it invalid.
        if !Path::new(DEFAULT_CONFIG_FILE).exists() {
            assert_eq!(
                Config::load(&a, None, None).unwrap_err().field,
                "ospf.dead_interval"
            );
        }
    }

    #[test]
    fn bfd_settings_are_checked_naming_the_field() {
        assert_eq!(Config::default().bfd.timers(), None, "off by default");
        let c =
            Config::from_toml("[bfd]\nenabled = true\ninterval_ms = 50\nmultiplier = 5").unwrap();
        c.validate().unwrap();
        assert_eq!(
            c.bfd.timers(),
            Some(routing::bfd::Timers {
                desired_min_tx_us: 50_000,
                required_min_rx_us: 50_000,
                detect_mult: 5
            })
        );
        let invalid = |toml: &str| {
            Config::from_toml(toml)
                .and_then(|c| c.validate())
                .unwrap_err()
                .field
        };
        assert_eq!(invalid("[bfd]\ninterval_ms = 0"), "bfd.interval_ms");
        assert_eq!(invalid("[bfd]\ninterval_ms = 10001"), "bfd.interval_ms");
        assert_eq!(invalid("[bfd]\nmultiplier = 0"), "bfd.multiplier");
        assert_eq!(invalid("[bfd]\nmultiplier = 256"), "bfd.multiplier");
        assert_eq!(invalid("[bfd]\nintervals = 5"), "bfd.intervals");
    }
}
