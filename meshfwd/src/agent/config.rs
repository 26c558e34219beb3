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
//! log_format = "text"                     # text | json
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
//! ```

use std::{
    fmt,
    net::Ipv4Addr,
    path::{Path, PathBuf},
};

use meshfwd_common::pin;

use ipnet::Ipv6Net;

use super::links::Pattern;
use dataplane::xdp::AttachMode;

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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One human-readable line per event.
    #[default]
    Text,
    /// One JSON object per event.
    Json,
}

/// The `[interfaces]` section: which links join the mesh.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
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

/// The `[ospf]` section: settings of every mesh interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
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
        }
    }
}

/// The agent's complete, validated configuration.
#[derive(Debug, Clone, serde::Serialize)]
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
    #[serde(skip)]
    pub xdp_mode: AttachMode,
    /// Mirror the routes into the kernel FIB.
    pub kernel_routes: bool,
    pub log_format: LogFormat,
    pub interfaces: InterfacesConfig,
    pub ospf: OspfConfig,
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
            state_file: DEFAULT_STATE_FILE.into(),
            local_device: DEFAULT_LOCAL_DEVICE.into(),
            xdp: true,
            xdp_mode: AttachMode::Auto,
            kernel_routes: true,
            log_format: LogFormat::Text,
            interfaces: InterfacesConfig {
                include: vec![Pattern::new("*")],
                exclude: DEFAULT_EXCLUDE.iter().map(|p| Pattern::new(p)).collect(),
                skip_dad: true,
            },
            ospf: OspfConfig::default(),
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
    pub router_id: Option<String>,
    /// File the router id is derived from (default /etc/machine-id).
    #[arg(long)]
    pub machine_id_file: Option<PathBuf>,
    /// Cluster prefix the pod prefixes are carved from (default
    /// fd6b:6d65:7368::/48).
    #[arg(long)]
    pub cluster_prefix: Option<String>,
    /// Fixed pod prefix, a /64 inside the cluster prefix.
    #[arg(long)]
    pub pod_prefix: Option<String>,
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
    pub exclude: Vec<String>,
    /// Links that may join the mesh (glob; repeatable; replaces the list).
    #[arg(long = "include", value_name = "PATTERN")]
    pub include: Vec<String>,
    /// Seconds between Hellos.
    #[arg(long)]
    pub hello_interval: Option<u16>,
    /// Seconds without a Hello before a neighbour is declared down.
    #[arg(long)]
    pub dead_interval: Option<u16>,
    /// Run without the XDP fast path (routes go to the kernel only).
    #[arg(long)]
    pub no_xdp: bool,
    /// How XDP is attached.
    #[arg(long, value_enum)]
    pub xdp_mode: Option<AttachMode>,
    /// Do not install routes in the kernel FIB.
    #[arg(long)]
    pub no_kernel_routes: bool,
    /// Log format.
    #[arg(long, value_enum)]
    pub log_format: Option<LogFormat>,
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
        config.apply_args(args, bpffs, socket)?;
        config.validate()?;
        Ok(config)
    }

    /// Parse a TOML document over the defaults (not yet validated as a whole).
    pub fn from_toml(text: &str) -> Result<Config, ConfigError> {
        let mut root: toml::Table = text
            .parse()
            .map_err(|e: toml::de::Error| ConfigError::new("config", e.message().trim()))?;
        let mut c = Config::default();
        let t = &mut root;
        if let Some(v) = take::<String>(t, "", "router_id")? {
            c.router_id = Some(parse_router_id("router_id", &v)?);
        }
        if let Some(v) = take(t, "", "machine_id_file")? {
            c.machine_id_file = v;
        }
        if let Some(v) = take::<String>(t, "", "cluster_prefix")? {
            c.cluster_prefix = parse_net("cluster_prefix", &v)?;
        }
        if let Some(v) = take::<String>(t, "", "pod_prefix")? {
            c.pod_prefix = Some(parse_net("pod_prefix", &v)?);
        }
        if let Some(v) = take(t, "", "mtu")? {
            c.mtu = v;
        }
        if let Some(v) = take(t, "", "bpffs")? {
            c.bpffs = v;
        }
        if let Some(v) = take(t, "", "socket")? {
            c.socket = v;
        }
        if let Some(v) = take(t, "", "state_file")? {
            c.state_file = v;
        }
        if let Some(v) = take(t, "", "local_device")? {
            c.local_device = v;
        }
        if let Some(v) = take(t, "", "xdp")? {
            c.xdp = v;
        }
        if let Some(v) = take::<String>(t, "", "xdp_mode")? {
            c.xdp_mode = parse_enum("xdp_mode", &v)?;
        }
        if let Some(v) = take(t, "", "kernel_routes")? {
            c.kernel_routes = v;
        }
        if let Some(v) = take::<String>(t, "", "log_format")? {
            c.log_format = parse_enum("log_format", &v)?;
        }
        if let Some(mut i) = take::<toml::Table>(t, "", "interfaces")? {
            if let Some(v) = take::<Vec<String>>(&mut i, "interfaces.", "include")? {
                c.interfaces.include = v.iter().map(|p| Pattern::new(p)).collect();
            }
            if let Some(v) = take::<Vec<String>>(&mut i, "interfaces.", "exclude")? {
                c.interfaces.exclude = v.iter().map(|p| Pattern::new(p)).collect();
            }
            if let Some(v) = take(&mut i, "interfaces.", "skip_dad")? {
                c.interfaces.skip_dad = v;
            }
            refuse_unknown(&i, "interfaces.")?;
        }
        if let Some(mut o) = take::<toml::Table>(t, "", "ospf")? {
            let d = &mut c.ospf;
            d.hello_interval = take(&mut o, "ospf.", "hello_interval")?.unwrap_or(d.hello_interval);
            d.dead_interval = take(&mut o, "ospf.", "dead_interval")?.unwrap_or(d.dead_interval);
            d.retransmit_interval =
                take(&mut o, "ospf.", "retransmit_interval")?.unwrap_or(d.retransmit_interval);
            d.cost = take(&mut o, "ospf.", "cost")?.unwrap_or(d.cost);
            d.min_ls_interval_ms =
                take(&mut o, "ospf.", "min_ls_interval_ms")?.unwrap_or(d.min_ls_interval_ms);
            d.min_ls_arrival_ms =
                take(&mut o, "ospf.", "min_ls_arrival_ms")?.unwrap_or(d.min_ls_arrival_ms);
            for (key, field) in [
                ("spf_initial_delay_ms", &mut d.spf_initial_delay_ms),
                ("spf_short_delay_ms", &mut d.spf_short_delay_ms),
                ("spf_long_delay_ms", &mut d.spf_long_delay_ms),
                ("spf_time_to_learn_ms", &mut d.spf_time_to_learn_ms),
                ("spf_holddown_ms", &mut d.spf_holddown_ms),
            ] {
                if let Some(v) = take(&mut o, "ospf.", key)? {
                    *field = v;
                }
            }
            refuse_unknown(&o, "ospf.")?;
        }
        refuse_unknown(t, "")?;
        Ok(c)
    }

    /// Lay the flags over the file's values.
    fn apply_args(
        &mut self,
        a: &AgentArgs,
        bpffs: Option<&Path>,
        socket: Option<&Path>,
    ) -> Result<(), ConfigError> {
        if let Some(v) = &a.router_id {
            self.router_id = Some(parse_router_id("router_id", v)?);
        }
        if let Some(v) = &a.machine_id_file {
            self.machine_id_file = v.clone();
        }
        if let Some(v) = &a.cluster_prefix {
            self.cluster_prefix = parse_net("cluster_prefix", v)?;
        }
        if let Some(v) = &a.pod_prefix {
            self.pod_prefix = Some(parse_net("pod_prefix", v)?);
        }
        if let Some(v) = a.mtu {
            self.mtu = v;
        }
        if let Some(v) = bpffs {
            self.bpffs = v.to_path_buf();
        }
        if let Some(v) = socket {
            self.socket = v.to_path_buf();
        }
        if let Some(v) = &a.state_file {
            self.state_file = v.clone();
        }
        if let Some(v) = &a.local_device {
            self.local_device = v.clone();
        }
        if !a.exclude.is_empty() {
            self.interfaces.exclude = a.exclude.iter().map(|p| Pattern::new(p)).collect();
        }
        if !a.include.is_empty() {
            self.interfaces.include = a.include.iter().map(|p| Pattern::new(p)).collect();
        }
        if let Some(v) = a.hello_interval {
            self.ospf.hello_interval = v;
        }
        if let Some(v) = a.dead_interval {
            self.ospf.dead_interval = v;
        }
        if a.no_xdp {
            self.xdp = false;
        }
        if let Some(v) = a.xdp_mode {
            self.xdp_mode = v;
        }
        if a.no_kernel_routes {
            self.kernel_routes = false;
        }
        if let Some(v) = a.log_format {
            self.log_format = v;
        }
        Ok(())
    }

    /// Check the values together; the first problem found is returned.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if let Some(id) = self.router_id {
            check_router_id("router_id", id)?;
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
        if !(1280..=65535).contains(&self.mtu) {
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
        if self.interfaces.include.is_empty() {
            return Err(ConfigError::new(
                "interfaces.include",
                "must list at least one pattern",
            ));
        }
        for (field, list) in [
            ("interfaces.include", &self.interfaces.include),
            ("interfaces.exclude", &self.interfaces.exclude),
        ] {
            if let Some(p) = list.iter().find(|p| p.as_str().is_empty()) {
                return Err(ConfigError::new(
                    field,
                    format!("empty pattern {:?}", p.as_str()),
                ));
            }
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
        if o.min_ls_arrival_ms > o.min_ls_interval_ms {
            return Err(ConfigError::new(
                "ospf.min_ls_arrival_ms",
                format!(
                    "{} must not exceed ospf.min_ls_interval_ms ({}): neighbours would drop our updates",
                    o.min_ls_arrival_ms, o.min_ls_interval_ms
                ),
            ));
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

/// Remove `key` from `table` and convert it, naming `prefix key` on error.
fn take<T: serde::de::DeserializeOwned>(
    table: &mut toml::Table,
    prefix: &str,
    key: &str,
) -> Result<Option<T>, ConfigError> {
    let Some(value) = table.remove(key) else {
        return Ok(None);
    };
    let kind = value.type_str();
    T::deserialize(value).map(Some).map_err(|e| {
        ConfigError::new(
            &format!("{prefix}{key}"),
            format!("{} (found a {kind})", e.message().trim()),
        )
    })
}

/// Refuse keys nobody took: a typo must not silently become a default.
fn refuse_unknown(table: &toml::Table, prefix: &str) -> Result<(), ConfigError> {
    match table.keys().next() {
        Some(key) => Err(ConfigError::new(&format!("{prefix}{key}"), "unknown key")),
        None => Ok(()),
    }
}

fn parse_router_id(field: &str, s: &str) -> Result<Ipv4Addr, ConfigError> {
    let id: Ipv4Addr = s.trim().parse().map_err(|_| {
        ConfigError::new(
            field,
            format!("{s:?} is not a dotted-quad router id such as 10.0.0.1"),
        )
    })?;
    check_router_id(field, id)?;
    Ok(id)
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

fn parse_net(field: &str, s: &str) -> Result<Ipv6Net, ConfigError> {
    s.trim()
        .parse::<Ipv6Net>()
        .map(|p| p.trunc())
        .map_err(|e| ConfigError::new(field, format!("{s:?}: {e}")))
}

fn parse_enum<T: clap::ValueEnum>(field: &str, s: &str) -> Result<T, ConfigError> {
    T::from_str(s, true).map_err(|_| {
        let names: Vec<String> = T::value_variants()
            .iter()
            .filter_map(|v| v.to_possible_value())
            .map(|p| p.get_name().to_string())
            .collect();
        ConfigError::new(field, format!("{s:?} is not one of {}", names.join(", ")))
    })
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
        assert_eq!(c.interfaces.exclude, vec![Pattern::new("eth0")]);
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
            router_id: Some("10.9.9.9".into()),
            dead_interval: Some(10),
            exclude: vec!["eth9".into()],
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
        assert_eq!(c.interfaces.exclude, vec![Pattern::new("eth9")]);
        assert!(!c.xdp);
        assert_eq!(c.bpffs, Path::new("/sys/fs/bpf/x"));
        assert_eq!(c.socket, Path::new("/tmp/s.sock"));
    }

    #[test]
    fn flag_errors_name_the_field_and_missing_named_file_is_an_error() {
        let a = AgentArgs {
            router_id: Some("1.2.3".into()),
            ..args()
        };
        assert_eq!(Config::load(&a, None, None).unwrap_err().field, "config");
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
}
