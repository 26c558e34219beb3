//! The netfilter rules kube-proxy writes for Services, for a lab node: the
//! chains and maps of its `nftables` mode and the chains of its `iptables`
//! mode (through `ip6tables-restore` or `iptables-restore`, which are
//! iptables-nft on Debian), as kube-proxy lays them out for ClusterIP and
//! NodePort Services with the default settings. One [`KubeProxy`] is one
//! family, as kube-proxy runs one proxier per family: its own table
//! (`ip6 kube-proxy` or `ip kube-proxy`) or its own iptables, so a
//! dual-stack node installs one of each side by side.
//!
//!
//! - a ClusterIP is DNATed to one endpoint, chosen at random (`numgen
//!   random` / `statistic --mode random`), with no SNAT for traffic from
//!   the cluster's pods (only from outside the cluster CIDR, and a pod
//!   reaching itself through its Service: hairpin);
//! - a NodePort on any local address is DNATed the same way and always
//!   masqueraded (`externalTrafficPolicy: Cluster`);
//! - the forward chain drops packets conntrack calls invalid and rejects
//!   unknown ports of a ClusterIP.
//!
//! [`KubeProxy::install`] replaces the node's rules the way a kube-proxy
//! sync does; established connections keep their translation in conntrack.
//! A test builds the same rules on every node, as kube-proxy runs on every
//! node.

use std::{fmt::Write as _, net::IpAddr};

use anyhow::{Context as _, Result};

use crate::Lab;

/// The packet mark that asks for masquerading (kube-proxy's default bit).
const MASQ_MARK: u32 = 0x4000;

/// Which of kube-proxy's proxy modes writes the rules.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// `--proxy-mode=nftables`: table `ip6 kube-proxy` (`ip` for IPv4).
    Nftables,
    /// `--proxy-mode=iptables`: `KUBE-*` chains in `ip6tables`' (or
    /// `iptables`') nat and filter tables.
    Iptables,
}

/// A Service port's protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    Tcp,
    Udp,
}

impl Protocol {
    fn name(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        }
    }
}

/// One port of a Service and the endpoints behind it.
#[derive(Clone, Debug)]
pub struct Service {
    /// `namespace/name:port`, as kube-proxy names it in comments.
    pub name: String,
    /// Of the [`KubeProxy`]'s family, as every endpoint.
    pub cluster_ip: IpAddr,
    pub protocol: Protocol,
    pub port: u16,
    /// The port on every node, for a NodePort Service.
    pub node_port: Option<u16>,
    /// The endpoints' (pods') port.
    pub target_port: u16,
    /// The ready endpoints.
    pub endpoints: Vec<IpAddr>,
}

/// Return `addr:port` as netfilter writes a destination (`[v6]:port`).
fn host_port(addr: IpAddr, port: u16) -> String {
    match addr {
        IpAddr::V6(a) => format!("[{a}]:{port}"),
        IpAddr::V4(a) => format!("{a}:{port}"),
    }
}

/// What differs between the families in kube-proxy's rules.
struct Family {
    /// nftables' family and address match (`ip6`, `ip`).
    nft: &'static str,
    /// nftables' address type.
    addr_type: &'static str,
    /// A host prefix's length.
    host_len: u8,
    loopback: &'static str,
    /// The iptables tools' prefix (`ip6tables`, `iptables`).
    iptables: &'static str,
}

const IPV6: Family = Family {
    nft: "ip6",
    addr_type: "ipv6_addr",
    host_len: 128,
    loopback: "::1",
    iptables: "ip6tables",
};
const IPV4: Family = Family {
    nft: "ip",
    addr_type: "ipv4_addr",
    host_len: 32,
    loopback: "127.0.0.1",
    iptables: "iptables",
};

impl Service {
    /// A short stable id for chain names (kube-proxy hashes the name too).
    fn id(&self) -> String {
        let h = meshfwd_common::hash::fnv1a(&[self.name.as_bytes()]);
        format!("{:08X}", (h >> 32) as u32)
    }

    /// The name as it may appear in a chain name (no `:`).
    fn chain_part(&self) -> String {
        format!("{}/{}", self.name.replace(':', "/"), self.protocol.name())
    }
}

/// The Services of a cluster, as every node's kube-proxy sees them.
#[derive(Clone, Debug)]
pub struct KubeProxy {
    /// The pods' prefix (`--cluster-cidr`): traffic from outside it to a
    /// ClusterIP is masqueraded.
    pub cluster_cidr: String,
    /// The ClusterIP range (`--service-cluster-ip-range`); its family is
    /// the proxier's.
    pub service_cidr: String,
    pub services: Vec<Service>,
}

impl KubeProxy {
    fn family(&self) -> &'static Family {
        if self.service_cidr.contains(':') {
            &IPV6
        } else {
            &IPV4
        }
    }

    /// The ruleset of `--proxy-mode=nftables` (an `nft -f` script that
    /// replaces the table whole).
    pub fn nftables(&self) -> String {
        let f = self.family();
        let ip = f.nft;
        let mut s = String::new();
        let w = &mut s;
        let _ = writeln!(w, "table {ip} kube-proxy");
        let _ = writeln!(w, "delete table {ip} kube-proxy");
        let _ = writeln!(w, "table {ip} kube-proxy {{");
        let _ = writeln!(w, "  comment \"rules for kube-proxy\"");
        let _ = writeln!(
            w,
            "  chain mark-for-masquerade {{ meta mark set meta mark | {MASQ_MARK:#x}; }}"
        );
        let _ = writeln!(
            w,
            "  chain masquerading {{\n    meta mark & {MASQ_MARK:#x} == 0 return\n    meta mark set meta mark ^ {MASQ_MARK:#x}\n    masquerade fully-random\n  }}"
        );
        let _ = writeln!(
            w,
            "  chain nat-prerouting {{ type nat hook prerouting priority dstnat; policy accept; jump services; }}"
        );
        let _ = writeln!(
            w,
            "  chain nat-output {{ type nat hook output priority -100; policy accept; jump services; }}"
        );
        let _ = writeln!(
            w,
            "  chain nat-postrouting {{ type nat hook postrouting priority srcnat; policy accept; jump masquerading; }}"
        );
        let _ = writeln!(
            w,
            "  chain filter-forward {{\n    type filter hook forward priority -110; policy accept;\n    ct state invalid drop\n    ct state new jump cluster-ips-check\n  }}"
        );
        let _ = writeln!(
            w,
            "  chain filter-output-post-dnat {{ type filter hook output priority -90; policy accept; ct state new jump cluster-ips-check; }}"
        );
        let cluster_ips: Vec<String> = self
            .services
            .iter()
            .map(|s| s.cluster_ip.to_string())
            .collect();
        let _ = writeln!(w, "  set cluster-ips {{ type {};", f.addr_type);
        if !cluster_ips.is_empty() {
            let _ = writeln!(w, "    elements = {{ {} }}", cluster_ips.join(", "));
        }
        let _ = writeln!(w, "  }}");
        let _ = writeln!(
            w,
            "  chain cluster-ips-check {{\n    {ip} daddr @cluster-ips reject comment \"Reject traffic to invalid ports of ClusterIPs\"\n    {ip} daddr {} drop comment \"Drop traffic to unallocated ClusterIPs\"\n  }}",
            self.service_cidr
        );
        for svc in &self.services {
            let (id, part) = (svc.id(), svc.chain_part());
            let proto = svc.protocol.name();
            let _ = writeln!(w, "  chain service-{id}-{part} {{");
            let _ = writeln!(
                w,
                "    {ip} daddr {} {proto} dport {} {ip} saddr != {} jump mark-for-masquerade",
                svc.cluster_ip, svc.port, self.cluster_cidr
            );
            match svc.endpoints.len() {
                0 => {
                    let _ = writeln!(w, "    reject");
                }
                n => {
                    let arms: Vec<String> = (0..n)
                        .map(|i| format!("{i} : goto endpoint-{id}-{part}__{i}"))
                        .collect();
                    let _ = writeln!(
                        w,
                        "    numgen random mod {n} vmap {{ {} }}",
                        arms.join(", ")
                    );
                }
            }
            let _ = writeln!(w, "  }}");
            let _ = writeln!(
                w,
                "  chain external-{id}-{part} {{ jump mark-for-masquerade; goto service-{id}-{part}; }}"
            );
            for (i, ep) in svc.endpoints.iter().enumerate() {
                let _ = writeln!(
                    w,
                    "  chain endpoint-{id}-{part}__{i} {{\n    {ip} saddr {ep} jump mark-for-masquerade\n    meta l4proto {proto} dnat to {}\n  }}",
                    host_port(*ep, svc.target_port)
                );
            }
        }
        let ips: Vec<String> = self
            .services
            .iter()
            .map(|s| {
                format!(
                    "{} . {} . {} : goto service-{}-{}",
                    s.cluster_ip,
                    s.protocol.name(),
                    s.port,
                    s.id(),
                    s.chain_part()
                )
            })
            .collect();
        let _ = writeln!(
            w,
            "  map service-ips {{ type {} . inet_proto . inet_service : verdict;",
            f.addr_type
        );
        if !ips.is_empty() {
            let _ = writeln!(w, "    elements = {{ {} }}", ips.join(", "));
        }
        let _ = writeln!(w, "  }}");
        let node_ports: Vec<String> = self
            .services
            .iter()
            .filter_map(|s| {
                s.node_port.map(|p| {
                    format!(
                        "{} . {p} : goto external-{}-{}",
                        s.protocol.name(),
                        s.id(),
                        s.chain_part()
                    )
                })
            })
            .collect();
        let _ = writeln!(
            w,
            "  map service-nodeports {{ type inet_proto . inet_service : verdict;"
        );
        if !node_ports.is_empty() {
            let _ = writeln!(w, "    elements = {{ {} }}", node_ports.join(", "));
        }
        let _ = writeln!(w, "  }}");
        let _ = writeln!(
            w,
            "  chain nodeports {{ meta l4proto . th dport vmap @service-nodeports; }}"
        );
        let _ = writeln!(
            w,
            "  chain services {{\n    {ip} daddr . meta l4proto . th dport vmap @service-ips\n    fib daddr type local {ip} daddr != {} jump nodeports\n  }}",
            f.loopback
        );
        let _ = writeln!(w, "}}");
        s
    }

    /// The `ip6tables-restore --noflush` (or `iptables-restore`) input of
    /// `--proxy-mode=iptables` (every `KUBE-*` chain it declares is flushed
    /// and refilled).
    pub fn iptables(&self) -> String {
        let host = self.family().host_len;
        let mut s = String::new();
        let w = &mut s;
        let mark = format!("{MASQ_MARK:#x}/{MASQ_MARK:#x}");
        let _ = writeln!(w, "*nat");
        let mut chains = vec![
            "KUBE-SERVICES".to_owned(),
            "KUBE-NODEPORTS".to_owned(),
            "KUBE-POSTROUTING".to_owned(),
            "KUBE-MARK-MASQ".to_owned(),
        ];
        for svc in &self.services {
            let id = svc.id();
            chains.push(format!("KUBE-SVC-{id}"));
            chains.push(format!("KUBE-EXT-{id}"));
            for i in 0..svc.endpoints.len() {
                chains.push(format!("KUBE-SEP-{id}-{i}"));
            }
        }
        for c in &chains {
            let _ = writeln!(w, ":{c} - [0:0]");
        }
        let _ = writeln!(w, "-A KUBE-MARK-MASQ -j MARK --set-xmark {mark}");
        let _ = writeln!(
            w,
            "-A KUBE-POSTROUTING -m mark ! --mark {mark} -j RETURN\n-A KUBE-POSTROUTING -j MARK --set-xmark {MASQ_MARK:#x}/0x0\n-A KUBE-POSTROUTING -m comment --comment \"kubernetes service traffic requiring SNAT\" -j MASQUERADE --random-fully"
        );
        for svc in &self.services {
            let id = svc.id();
            let p = svc.protocol.name();
            let name = &svc.name;
            let _ = writeln!(
                w,
                "-A KUBE-SERVICES -d {}/{host} -p {p} -m comment --comment \"{name} cluster IP\" -m {p} --dport {} -j KUBE-SVC-{id}",
                svc.cluster_ip, svc.port
            );
            if let Some(np) = svc.node_port {
                let _ = writeln!(
                    w,
                    "-A KUBE-NODEPORTS -p {p} -m comment --comment \"{name}\" -m {p} --dport {np} -j KUBE-EXT-{id}"
                );
            }
            let _ = writeln!(
                w,
                "-A KUBE-EXT-{id} -m comment --comment \"masquerade traffic for {name} external destinations\" -j KUBE-MARK-MASQ\n-A KUBE-EXT-{id} -j KUBE-SVC-{id}"
            );
            let _ = writeln!(
                w,
                "-A KUBE-SVC-{id} ! -s {} -d {}/{host} -p {p} -m comment --comment \"{name} cluster IP\" -m {p} --dport {} -j KUBE-MARK-MASQ",
                self.cluster_cidr, svc.cluster_ip, svc.port
            );
            let n = svc.endpoints.len();
            if n == 0 {
                let _ = writeln!(
                    w,
                    "-A KUBE-SVC-{id} -m comment --comment \"{name} has no endpoints\" -j REJECT"
                );
            }
            for (i, ep) in svc.endpoints.iter().enumerate() {
                // Each rule takes its share of what the ones before left.
                let statistic = if i + 1 < n {
                    format!(
                        " -m statistic --mode random --probability {:.11}",
                        1.0 / (n - i) as f64
                    )
                } else {
                    String::new()
                };
                let to = host_port(*ep, svc.target_port);
                let _ = writeln!(
                    w,
                    "-A KUBE-SVC-{id} -m comment --comment \"{name} -> {to}\"{statistic} -j KUBE-SEP-{id}-{i}"
                );
                let _ = writeln!(
                    w,
                    "-A KUBE-SEP-{id}-{i} -s {ep}/{host} -m comment --comment \"{name}\" -j KUBE-MARK-MASQ\n-A KUBE-SEP-{id}-{i} -p {p} -m comment --comment \"{name}\" -m {p} -j DNAT --to-destination {to}"
                );
            }
        }
        let _ = writeln!(
            w,
            "-A KUBE-SERVICES -m comment --comment \"kubernetes service nodeports; NOTE: this must be the last rule in this chain\" -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS"
        );
        let _ = writeln!(w, "COMMIT");
        let _ = writeln!(w, "*filter");
        for c in ["KUBE-FORWARD", "KUBE-SERVICES"] {
            let _ = writeln!(w, ":{c} - [0:0]");
        }
        let _ = writeln!(
            w,
            "-A KUBE-FORWARD -m conntrack --ctstate INVALID -j DROP\n-A KUBE-FORWARD -m comment --comment \"kubernetes forwarding rules\" -m mark --mark {mark} -j ACCEPT\n-A KUBE-FORWARD -m comment --comment \"kubernetes forwarding conntrack rule\" -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT"
        );
        for svc in &self.services {
            let p = svc.protocol.name();
            if svc.endpoints.is_empty() {
                let _ = writeln!(
                    w,
                    "-A KUBE-SERVICES -d {}/{host} -p {p} -m comment --comment \"{} has no endpoints\" -m {p} --dport {} -j REJECT",
                    svc.cluster_ip, svc.name, svc.port
                );
            }
        }
        let _ = writeln!(w, "COMMIT");
        s
    }

    /// Write the rules of `mode` into `node`, replacing what an earlier
    /// call wrote (a kube-proxy sync).
    pub fn install(&self, lab: &Lab, node: &str, mode: Mode) -> Result<()> {
        let n = lab.node(node);
        let tool = self.family().iptables;
        let file = lab
            .work_dir()
            .join(format!("{node}-kube-proxy-{mode:?}-{tool}.rules"));
        match mode {
            Mode::Nftables => {
                std::fs::write(&file, self.nftables())?;
                n.run(&["nft", "-f", &file.to_string_lossy()])
                    .context("installing kube-proxy's nftables rules")?;
            }
            Mode::Iptables => {
                std::fs::write(&file, self.iptables())?;
                let restore = format!("{tool}-restore");
                n.run(&[&restore, "--noflush", &file.to_string_lossy()])
                    .context("installing kube-proxy's iptables rules")?;
                // The jumps from the built-in chains, once, as kube-proxy
                // ensures them.
                for (table, chain, rule) in [
                    ("nat", "PREROUTING", "-j KUBE-SERVICES"),
                    ("nat", "OUTPUT", "-j KUBE-SERVICES"),
                    ("nat", "POSTROUTING", "-j KUBE-POSTROUTING"),
                    ("filter", "FORWARD", "-j KUBE-FORWARD"),
                    (
                        "filter",
                        "FORWARD",
                        "-m conntrack --ctstate NEW -j KUBE-SERVICES",
                    ),
                ] {
                    let rule: Vec<&str> = rule.split(' ').collect();
                    let mut check = vec![tool, "-t", table, "-C", chain];
                    check.extend(&rule);
                    if n.run(&check).is_err() {
                        let mut add = vec![tool, "-t", table, "-A", chain];
                        add.extend(&rule);
                        n.run(&add).context("adding kube-proxy's jump")?;
                    }
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> KubeProxy {
        KubeProxy {
            cluster_cidr: "fd6b:6d65:7368::/48".into(),
            service_cidr: "fd00:96::/108".into(),
            services: vec![Service {
                name: "default/web:http".into(),
                cluster_ip: "fd00:96::10".parse().unwrap(),
                protocol: Protocol::Tcp,
                port: 80,
                node_port: Some(30080),
                target_port: 8080,
                endpoints: vec!["fd00:1::5".parse().unwrap(), "fd00:2::7".parse().unwrap()],
            }],
        }
    }

    /// The same Service, IPv4.
    fn sample4() -> KubeProxy {
        KubeProxy {
            cluster_cidr: "198.18.0.0/15".into(),
            service_cidr: "198.19.96.0/24".into(),
            services: vec![Service {
                cluster_ip: "198.19.96.10".parse().unwrap(),
                endpoints: vec!["198.18.1.5".parse().unwrap()],
                ..sample().services[0].clone()
            }],
        }
    }

    #[test]
    fn nftables_dnats_at_random_and_masquerades_only_what_kube_proxy_does() {
        let s = sample().nftables();
        assert!(s.contains("numgen random mod 2 vmap"));
        assert!(s.contains("dnat to [fd00:1::5]:8080"));
        assert!(s.contains("ip6 saddr != fd6b:6d65:7368::/48 jump mark-for-masquerade"));
        assert!(s.contains("tcp . 30080 : goto external-"));
        assert!(s.contains("ct state invalid drop"));
    }

    #[test]
    fn iptables_splits_the_endpoints_evenly() {
        let s = sample().iptables();
        assert!(s.contains("--probability 0.50000000000 -j KUBE-SEP-"));
        assert_eq!(s.matches("DNAT --to-destination").count(), 2);
        assert!(s.contains("--ctstate INVALID -j DROP"));
    }

    #[test]
    fn ipv4_rules_are_the_ip_family_s() {
        let v4 = sample4();
        let s = v4.nftables();
        assert!(s.contains("table ip kube-proxy {"));
        assert!(s.contains("dnat to 198.18.1.5:8080"));
        assert!(s.contains("ip saddr != 198.18.0.0/15 jump mark-for-masquerade"));
        assert!(s.contains("type ipv4_addr . inet_proto"));
        assert!(!s.contains("ip6"), "{s}");
        let s = v4.iptables();
        assert!(s.contains("-d 198.19.96.10/32 -p tcp"));
        assert!(s.contains("--to-destination 198.18.1.5:8080"));
    }

    #[test]
    fn both_modes_install_and_resync_in_a_namespace() {
        let lab = Lab::build("kube-proxy", &crate::Topology::new().node("n")).unwrap();
        let mut kp = sample();
        for mode in [Mode::Nftables, Mode::Iptables] {
            kp.install(&lab, "n", mode).unwrap();
            // A sync with one endpoint gone replaces the rules.
            kp.services[0].endpoints.pop();
            kp.install(&lab, "n", mode).unwrap();
            kp.services[0].endpoints.push("fd00:2::7".parse().unwrap());
        }
        let nft = lab
            .node("n")
            .run(&["nft", "list", "table", "ip6", "kube-proxy"])
            .unwrap();
        assert!(nft.contains("dnat to [fd00:1::5]:8080"), "{nft}");
        let ipt = lab.node("n").run(&["ip6tables-save", "-t", "nat"]).unwrap();
        assert_eq!(
            ipt.matches("-j KUBE-SERVICES").count(),
            2,
            "jumps added once: {ipt}"
        );
        assert!(ipt.contains("--to-destination [fd00:1::5]:8080"), "{ipt}");
        // The IPv4 proxier's rules beside them, in their own table and
        // iptables.
        let v4 = sample4();
        for mode in [Mode::Nftables, Mode::Iptables] {
            v4.install(&lab, "n", mode).unwrap();
        }
        let nft4 = lab
            .node("n")
            .run(&["nft", "list", "table", "ip", "kube-proxy"])
            .unwrap();
        assert!(nft4.contains("dnat to 198.18.1.5:8080"), "{nft4}");
        let ipt4 = lab.node("n").run(&["iptables-save", "-t", "nat"]).unwrap();
        assert!(ipt4.contains("--to-destination 198.18.1.5:8080"), "{ipt4}");
        let nft6 = lab
            .node("n")
            .run(&["nft", "list", "table", "ip6", "kube-proxy"])
            .unwrap();
        assert!(nft6.contains("dnat to [fd00:1::5]:8080"), "{nft6}");
    }
}
