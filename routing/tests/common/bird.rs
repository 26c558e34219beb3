//! BIRD 2 as an OSPFv3 peer: configuration and `birdc` output parsers.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};

/// Path of the BIRD daemon.
pub const BIRD: &str = "/usr/sbin/bird";
/// Path of the BIRD client.
pub const BIRDC: &str = "/usr/sbin/birdc";

/// Network type of an OSPF interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkType {
    PointToPoint,
    Broadcast,
}

/// What one BIRD instance runs: OSPFv3 on some interfaces, announcing stub
/// networks and (optionally) external routes.
#[derive(Debug, Clone)]
pub struct BirdConf {
    pub router_id: Ipv4Addr,
    /// Interface name (or BIRD pattern) and its network type.
    pub interfaces: Vec<(String, LinkType)>,
    /// Prefixes announced as stub networks of area 0 (Intra-Area-Prefix LSA).
    pub stubnets: Vec<String>,
    /// Prefixes announced as AS-external routes (from blackhole statics).
    pub externals: Vec<String>,
    /// Keys for RFC 7166 authentication on every interface (none: off).
    pub keys: Vec<TestKey>,
    /// Run the IPv4 unicast family (RFC 5838, BIRD's `ipv4` channel on
    /// Instance ID 64) instead of IPv6: stubnets and externals are IPv4.
    pub ipv4: bool,
}

/// A key both routers of a test get: HMAC-SHA-256 with an ASCII secret,
/// lifetimes in Unix seconds.
#[derive(Debug, Clone)]
pub struct TestKey {
    pub id: u8,
    pub secret: String,
    pub send: (Option<u64>, Option<u64>),
    pub accept: (Option<u64>, Option<u64>),
}

impl TestKey {
    /// A key valid at all times.
    pub fn always(id: u8, secret: &str) -> Self {
        TestKey {
            id,
            secret: secret.to_owned(),
            send: (None, None),
            accept: (None, None),
        }
    }

    /// The key as `ospfd --auth` takes it.
    pub fn ospfd_arg(&self) -> String {
        let mut s = format!("id={},alg=hmac-sha-256,secret={}", self.id, self.secret);
        for (name, v) in [
            ("send_from", self.send.0),
            ("send_until", self.send.1),
            ("accept_from", self.accept.0),
            ("accept_until", self.accept.1),
        ] {
            if let Some(v) = v {
                s.push_str(&format!(",{name}={v}"));
            }
        }
        s
    }

    /// The key as a BIRD `password` clause (BIRD reads its times as local
    /// time: the tests run in UTC).
    fn bird_clause(&self) -> String {
        let mut opts = format!("id {}; algorithm hmac sha256;", self.id);
        for (name, v) in [
            ("generate from", self.send.0),
            ("generate to", self.send.1),
            ("accept from", self.accept.0),
            ("accept to", self.accept.1),
        ] {
            if let Some(v) = v {
                opts.push_str(&format!(" {name} \"{}\";", bird_time(v)));
            }
        }
        format!("password \"{}\" {{ {opts} }};", self.secret)
    }
}

/// Unix seconds as BIRD 2's `yyyy-mm-dd HH:MM:SS` (UTC).
fn bird_time(unix: u64) -> String {
    let days = unix / 86_400;
    let secs = unix % 86_400;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

impl BirdConf {
    /// Return a point-to-point configuration on `interfaces` with `stubnets`.
    pub fn ptp(router_id: Ipv4Addr, interfaces: &[&str], stubnets: &[&str]) -> Self {
        Self {
            router_id,
            interfaces: interfaces
                .iter()
                .map(|i| ((*i).to_owned(), LinkType::PointToPoint))
                .collect(),
            stubnets: stubnets.iter().map(|s| (*s).to_owned()).collect(),
            externals: Vec::new(),
            keys: Vec::new(),
            ipv4: false,
        }
    }

    /// Render `bird.conf`, logging to `log`.
    pub fn render(&self, log: &Path) -> String {
        let mut c = self.render_head(log);
        self.render_protocol(&mut c, "ospf1");
        c
    }

    /// Render a `bird.conf` that runs two OSPFv3 instances: `self` as
    /// `ospf1` and `other` (the other family, with its own interfaces and
    /// stubnets) as `ospf2`, as a router carrying both families does.
    pub fn render_with(&self, other: &BirdConf, log: &Path) -> String {
        let mut c = self.render_head(log);
        self.render_protocol(&mut c, "ospf1");
        other.render_protocol(&mut c, "ospf2");
        c
    }

    fn render_head(&self, log: &Path) -> String {
        let mut c = String::new();
        let _ = writeln!(c, "router id {};", self.router_id);
        let _ = writeln!(c, "log \"{}\" all;", log.display());
        let _ = writeln!(c, "protocol device {{ scan time 1; }}");
        c
    }

    fn render_protocol(&self, c: &mut String, name: &str) {
        let channel = if self.ipv4 { "ipv4" } else { "ipv6" };
        let _ = writeln!(c, "protocol static {{");
        let _ = writeln!(c, "  {channel};");
        for e in &self.externals {
            let _ = writeln!(c, "  route {e} blackhole;");
        }
        let _ = writeln!(c, "}}");
        let _ = writeln!(c, "protocol ospf v3 {name} {{");
        let _ = writeln!(
            c,
            "  {channel} {{ import all; export where source = RTS_STATIC; }};"
        );
        // Full SPF at once on every change: the tests time convergence.
        let _ = writeln!(c, "  tick 1;");
        let _ = writeln!(c, "  ecmp yes;");
        let _ = writeln!(c, "  area 0 {{");
        for s in &self.stubnets {
            let _ = writeln!(c, "    stubnet {s};");
        }
        for (iface, ty) in &self.interfaces {
            let ty = match ty {
                LinkType::PointToPoint => "ptp",
                LinkType::Broadcast => "broadcast",
            };
            let auth = if self.keys.is_empty() {
                String::new()
            } else {
                let keys: Vec<String> = self.keys.iter().map(TestKey::bird_clause).collect();
                format!(" authentication cryptographic; {}", keys.join(" "))
            };
            let _ = writeln!(
                c,
                "    interface \"{iface}\" {{ type {ty}; cost 10; hello 1; dead 3; retransmit 2;{auth} }};"
            );
        }
        let _ = writeln!(c, "  }};");
        let _ = writeln!(c, "}}");
    }
}

/// Files of one BIRD instance under a work directory.
#[derive(Debug, Clone)]
pub struct BirdFiles {
    pub conf: PathBuf,
    pub ctl: PathBuf,
    pub pid: PathBuf,
    pub log: PathBuf,
}

impl BirdFiles {
    /// Return the file names for instance `name` in `dir`.
    pub fn new(dir: &Path, name: &str) -> Self {
        Self {
            conf: dir.join(format!("{name}.bird.conf")),
            ctl: dir.join(format!("{name}.bird.ctl")),
            pid: dir.join(format!("{name}.bird.pid")),
            log: dir.join(format!("{name}.bird.log")),
        }
    }

    /// Write the configuration file.
    pub fn write_conf(&self, conf: &BirdConf) {
        std::fs::write(&self.conf, conf.render(&self.log))
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", self.conf.display()));
    }

    /// Return the argv of a foreground BIRD using these files.
    pub fn bird_args(&self) -> Vec<String> {
        vec![
            BIRD.to_owned(),
            "-f".to_owned(),
            "-c".to_owned(),
            self.conf.display().to_string(),
            "-s".to_owned(),
            self.ctl.display().to_string(),
            "-P".to_owned(),
            self.pid.display().to_string(),
        ]
    }

    /// Return the argv of `birdc` running `command` against this instance.
    pub fn birdc_args(&self, command: &str) -> Vec<String> {
        let mut v = vec![
            BIRDC.to_owned(),
            "-s".to_owned(),
            self.ctl.display().to_string(),
        ];
        v.extend(command.split_whitespace().map(str::to_owned));
        v
    }
}

/// One row of `show ospf neighbors`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Neighbor {
    pub router_id: Ipv4Addr,
    /// "Full/PtP", "Full/DR", "2-Way/Other", ...
    pub state: String,
    pub iface: String,
    pub addr: Ipv6Addr,
}

impl Neighbor {
    /// Return whether the adjacency is Full.
    pub fn is_full(&self) -> bool {
        self.state.starts_with("Full")
    }
}

/// Parse `birdc show ospf neighbors`.
pub fn parse_neighbors(out: &str) -> Vec<Neighbor> {
    out.lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() < 6 {
                return None;
            }
            Some(Neighbor {
                router_id: f[0].parse().ok()?,
                state: f[2].to_owned(),
                iface: f[4].to_owned(),
                addr: f[5].parse().ok()?,
            })
        })
        .collect()
}

/// Identity and instance of one LSA, as both sides list their LSDBs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct LsaKey {
    /// LS type including the U and scope bits (0x2001 = Router-LSA).
    pub ls_type: u16,
    pub ls_id: u32,
    pub adv_router: Ipv4Addr,
    pub seq: u32,
}

impl std::fmt::Display for LsaKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:04x} {} {} {:08x}",
            self.ls_type,
            Ipv4Addr::from(self.ls_id),
            self.adv_router,
            self.seq
        )
    }
}

/// Parse `birdc show ospf lsadb`: every LSA of every scope.
///
/// BIRD keeps LSAs at MaxAge until they are flushed; those are left out
/// (age 3600) because the peers may flush them at different moments.
pub fn parse_lsadb(out: &str) -> BTreeSet<LsaKey> {
    out.lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() != 6 || f[0].len() != 4 {
                return None;
            }
            let age: u32 = f[4].parse().ok()?;
            if age >= 3600 {
                return None;
            }
            Some(LsaKey {
                ls_type: u16::from_str_radix(f[0], 16).ok()?,
                ls_id: u32::from(f[1].parse::<Ipv4Addr>().ok()?),
                adv_router: f[2].parse().ok()?,
                seq: u32::from_str_radix(f[3], 16).ok()?,
            })
        })
        .collect()
}

/// The best route of one prefix in `birdc show route`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BirdRoute {
    /// OSPF metric (the second number of `(150/20)`), if shown.
    pub metric: Option<u32>,
    /// (via address, interface) of each next hop; empty for blackholes.
    pub nexthops: BTreeSet<(IpAddr, String)>,
}

/// Best routes by prefix (as BIRD prints it, e.g. `2001:db8:1::/64`).
pub type Routes = BTreeMap<String, BirdRoute>;

/// Parse `birdc show route` (best routes only).
pub fn parse_routes(out: &str) -> Routes {
    let mut routes = Routes::new();
    let mut current: Option<String> = None;
    for line in out.lines() {
        let trimmed = line.trim_start();
        if !line.starts_with(char::is_whitespace) {
            let mut f = line.split_whitespace();
            current = match f.next() {
                Some(prefix) if prefix.contains('/') => {
                    let metric = line
                        .split_once('(')
                        .and_then(|(_, rest)| rest.split(')').next())
                        .and_then(|m| m.split('/').nth(1))
                        .and_then(|m| m.parse().ok());
                    routes.insert(
                        prefix.to_owned(),
                        BirdRoute {
                            metric,
                            nexthops: BTreeSet::new(),
                        },
                    );
                    Some(prefix.to_owned())
                }
                _ => None,
            };
        } else if let Some(rest) = trimmed.strip_prefix("via ") {
            let Some(route) = current.as_ref().and_then(|p| routes.get_mut(p)) else {
                continue;
            };
            let mut f = rest.split_whitespace();
            if let (Some(addr), Some("on"), Some(iface)) = (f.next(), f.next(), f.next())
                && let Ok(addr) = addr.parse()
            {
                route.nexthops.insert((addr, iface.to_owned()));
            }
        } else if !trimmed.is_empty() {
            // A second, non-best route of the same prefix: skip its hops.
            current = None;
        }
    }
    routes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_birdc_output() {
        let n = parse_neighbors(
            "BIRD 2.0.12 ready.\nospf1:\nRouter ID   \tPri\t     State     \tDTime\tInterface  Router IP\n10.0.0.2    \t  1\tFull/PtP  \t 2.992\teth0       fe80::ff:fe00:b\n",
        );
        assert_eq!(n.len(), 1);
        assert!(n[0].is_full());
        let db = parse_lsadb(
            "Area 0.0.0.0\n\n Type   LS ID           Router          Sequence   Age  Checksum\n 2001  0.0.0.0         10.0.0.1         80000002     0    8d6a\n 0008  0.0.0.2         10.0.0.2         80000001  3600    405d\n",
        );
        assert_eq!(db.len(), 1);
        let r = parse_routes(
            "Table master6:\n2001:db8:b::/64      unicast [ospf1 22:19:55.920] * I (150/20) [10.0.0.2]\n\tvia fe80::ff:fe00:b on eth0\n\tvia fe80::ff:fe00:c on eth1\n2001:db8:ee01::/48   blackhole [static1 22:19:48.819] * (200)\n",
        );
        assert_eq!(r["2001:db8:b::/64"].nexthops.len(), 2);
        assert_eq!(r["2001:db8:b::/64"].metric, Some(20));
        assert!(r["2001:db8:ee01::/48"].nexthops.is_empty());
        let r = parse_routes(
            "Table master4:\n198.18.1.0/24        unicast [ospf1 10:00:00.000] * I (150/10) [198.18.255.1]\n\tvia 198.19.255.1 on eth0 onlink\n",
        );
        assert_eq!(
            r["198.18.1.0/24"].nexthops,
            [("198.19.255.1".parse().unwrap(), "eth0".to_owned())].into()
        );
    }
}
