//! Human tables for `meshfwd show ...`, rendered from the same typed
//! answers `--json` prints (`crate::api`), so the two never disagree.

use std::fmt::Display;

use dataplane::{maps::Netfilter, object::Conntrack};

use crate::{
    agent::core::identity::IdSource,
    api::{Answer, BfdReport, NetfilterInfo, NodeInfo, StatsReport},
    fib::dump::FibKind,
};

fn bfd(r: &BfdReport) -> String {
    let ms = |us: u64| format!("{:.1}", us as f64 / 1000.0);
    let mut out = table(
        &[
            "IFINDEX",
            "PEER",
            "STATE",
            "REMOTE",
            "DIAG",
            "TX MS",
            "RX MS",
            "MULT",
            "NEG TX MS",
            "DETECT MS",
            "FLAPS",
            "RX",
            "TX",
        ],
        r.sessions
            .iter()
            .map(|s| {
                vec![
                    s.key.ifindex.to_string(),
                    s.key.peer.to_string(),
                    format!("{:?}", s.state),
                    format!("{:?}", s.remote_state),
                    format!("{:?}", s.diag),
                    ms(u64::from(s.timers.desired_min_tx_us)),
                    ms(u64::from(s.timers.required_min_rx_us)),
                    s.timers.detect_mult.to_string(),
                    ms(u64::from(s.tx_interval_us)),
                    ms(s.detect_time_us),
                    s.counters.flaps.to_string(),
                    s.counters.rx.to_string(),
                    s.counters.tx.to_string(),
                ]
            })
            .collect(),
    );
    if !r.discards.is_empty() {
        out.push_str(&format!("\n{:<24} {:>10}\n", "DISCARDED", "PACKETS"));
        for (reason, n) in &r.discards {
            out.push_str(&format!("{:<24} {n:>10}\n", format!("{reason:?}")));
        }
    }
    out
}

/// Render an answer as text.
pub fn render(answer: &Answer) -> String {
    match answer {
        Answer::Node(n) => node(n),
        Answer::Bfd(r) => bfd(r),
        Answer::Neighbors(rows) => table(
            &[
                "NEIGHBOR",
                "INTERFACE",
                "ADDRESS",
                "STATE",
                "DEAD IN",
                "RXMT",
                "REQ",
            ],
            rows.iter()
                .map(|n| {
                    vec![
                        n.router_id.to_string(),
                        n.interface.clone(),
                        n.addr.to_string(),
                        format!("{:?}", n.state),
                        n.dead_in_ms
                            .map_or("-".into(), |ms| format!("{:.1}s", ms as f64 / 1000.0)),
                        n.retransmit_list.to_string(),
                        n.request_list.to_string(),
                    ]
                })
                .collect(),
        ),
        Answer::Interfaces(rows) => table(
            &[
                "INTERFACE",
                "INDEX",
                "MESH",
                "OSPF",
                "NETWORK",
                "DR",
                "BDR",
                "NBRS",
                "DROPS",
                "CARRIER",
                "MTU",
                "LINK-LOCAL",
                "WHY NOT",
            ],
            rows.iter()
                .map(|i| {
                    vec![
                        i.link.name.clone(),
                        i.link.ifindex.to_string(),
                        yes_no(i.mesh),
                        opt(i.ospf_state.map(|s| format!("{s:?}"))),
                        opt(i.ospf_network.map(|k| match k {
                            routing::InterfaceKind::PointToPoint => "ptp",
                            routing::InterfaceKind::Broadcast => "broadcast",
                        })),
                        opt(i.dr),
                        opt(i.bdr),
                        opt(i.ospf_neighbors),
                        opt(i.ospf_drops),
                        yes_no(i.link.carrier),
                        opt(i.link.mtu),
                        opt(i.link_local),
                        opt(i.reason.as_ref()),
                    ]
                })
                .collect(),
        ),
        Answer::Lsdb(rows) => table(
            &[
                "TYPE",
                "LS ID",
                "ADV ROUTER",
                "SEQ",
                "AGE",
                "SCOPE",
                "IFINDEX",
            ],
            rows.iter()
                .map(|l| {
                    vec![
                        l.ls_type.to_string(),
                        l.ls_id.to_string(),
                        l.adv_router.to_string(),
                        format!("{:#010x}", l.seq),
                        l.age.to_string(),
                        format!("{:?}", l.scope),
                        opt(l.ifindex),
                    ]
                })
                .collect(),
        ),
        Answer::Routes(rows) => table(
            &["PREFIX", "COST", "NEXT HOPS"],
            rows.iter()
                .map(|r| {
                    let hops: Vec<String> = r
                        .next_hops
                        .iter()
                        .map(|h| format!("{}%{}", h.via, name_or_index(&h.iface, h.ifindex)))
                        .collect();
                    vec![r.prefix.to_string(), r.cost.to_string(), hops.join(", ")]
                })
                .collect(),
        ),
        Answer::Fib(rows) => table(
            &["PREFIX", "KIND", "GROUP", "NEXT HOPS (iface mac, * = dead)"],
            rows.iter()
                .map(|r| {
                    let hops: Vec<String> = r
                        .next_hops
                        .iter()
                        .map(|h| {
                            format!(
                                "{}{} {}",
                                if h.alive { "" } else { "*" },
                                name_or_index(&h.iface, h.ifindex),
                                opt(h.dst_mac)
                            )
                        })
                        .collect();
                    let kind = match r.kind {
                        FibKind::Forward => "forward",
                        FibKind::Local => "local",
                        FibKind::OnLink => "on-link",
                    };
                    vec![
                        r.prefix.to_string(),
                        kind.into(),
                        r.group.to_string(),
                        hops.join(", "),
                    ]
                })
                .collect(),
        ),
        Answer::Stats(s) => stats(s),
    }
}

/// `check (conntrack lookups linked, tcp_be_liberal)`, or what is missing.
fn netfilter(n: &NetfilterInfo) -> String {
    let mut notes = vec![match &n.lookups {
        Conntrack::Linked => "conntrack lookups linked".to_owned(),
        Conntrack::Unavailable(why) => format!("conntrack lookups unavailable: {why}"),
    }];
    if n.mode == Netfilter::Check {
        if let Some(why) = &n.tracking {
            notes.push(format!("tracking not ensured: {why}"));
        }
        if !n.tcp_be_liberal {
            notes.push("tcp_be_liberal off".to_owned());
        }
    }
    format!("{} ({})", n.mode, notes.join("; "))
}

fn node(d: &NodeInfo) -> String {
    let source = match &d.router_id_source {
        IdSource::Configured => "configured".to_owned(),
        IdSource::MachineId(f) => format!("machine_id ({f})"),
        IdSource::Mac(i) => format!("mac ({i})"),
        IdSource::Random => "random".to_owned(),
    };
    let ipv4 = match &d.ipv4 {
        None => vec![("IPv4", "off".to_owned())],
        Some(v4) => vec![
            ("IPv4 cluster", v4.cluster_prefix.to_string()),
            ("IPv4 pod prefix", v4.pod_prefix.to_string()),
            ("IPv4 address", v4.node_address.to_string()),
            (
                "IPv4 instance",
                format!(
                    "{} neighbours full, {} routes, {} LSAs, {} SPF runs{}",
                    v4.neighbors_full,
                    v4.routes,
                    v4.lsdb,
                    v4.spf_runs,
                    if v4.misfits > 0 {
                        format!(", {} prefixes too long to route", v4.misfits)
                    } else {
                        String::new()
                    }
                ),
            ),
        ],
    };
    let fields = [
        ("router id", d.router_id.to_string()),
        ("  from", source),
        ("cluster prefix", d.cluster_prefix.to_string()),
        ("pod prefix", d.pod_prefix.to_string()),
        (
            "node address",
            format!("{} on {}", d.node_address, d.local_device),
        ),
        ("mesh links", d.mesh_links.to_string()),
        ("neighbours full", d.neighbors_full.to_string()),
        ("routes", d.routes.to_string()),
        ("LSAs", d.lsdb.to_string()),
        ("SPF runs", d.spf_runs.to_string()),
    ];
    let rest = [
        ("XDP fast path", yes_no(d.xdp)),
        ("netfilter", netfilter(&d.netfilter)),
        (
            "OSPF auth",
            match &d.ospf_auth {
                None => "off".to_owned(),
                Some(a) => format!(
                    "RFC 7166, {} key(s), signing with {}, boot count {}",
                    a.keys,
                    a.send_key
                        .map_or("none (nothing sent)".to_owned(), |k| format!("key {k}")),
                    a.boot_count
                ),
            },
        ),
        ("state file", d.state_file.display().to_string()),
        ("uptime", format!("{}s", d.uptime_s)),
        ("version", d.version.clone()),
    ];
    fields
        .into_iter()
        .chain(ipv4)
        .chain(rest)
        .map(|(k, v)| format!("{k:<16} {v}\n"))
        .collect()
}

/// The counters of `meshfwd show stats`: the fast path's, then the
/// agent's when it answered.
pub fn stats(d: &StatsReport) -> String {
    let mut out = d.xdp.as_ref().map(|x| x.table()).unwrap_or_default();
    if let Some(agent) = &d.agent
        && let Ok(serde_json::Value::Object(fields)) = serde_json::to_value(agent)
    {
        out.push_str(&format!("\n{:<24} {:>14}\n", "AGENT", "COUNT"));
        for (k, v) in fields {
            out.push_str(&format!("{k:<24} {v:>14}\n"));
        }
    }
    if let Some(w) = &d.writer {
        out.push_str(&format!("\n{:<24} {:>14}\n", "MAP WRITER", "COUNT"));
        for (k, v) in [
            ("applies", w.applies),
            ("map_ops", w.map_ops),
            ("kernel_writes", w.kernel_writes),
            ("kernel_errors", w.kernel_errors),
        ] {
            out.push_str(&format!("{k:<24} {v:>14}\n"));
        }
    }
    if let Some(o) = &d.ospf {
        out.push_str(&format!(
            "\nSPF: {} runs, {} us in all, last {} us, longest {} us\n",
            o.spf_runs, o.spf_time.total_us, o.spf_time.last_us, o.spf_time.max_us
        ));
        out.push_str(&format!("\n{:<24} {:>14}\n", "OSPF DROPPED", "COUNT"));
        if o.drops.is_empty() {
            out.push_str("(none)\n");
        }
        for (reason, n) in &o.drops {
            out.push_str(&format!("{:<24} {n:>14}\n", format!("{reason:?}")));
        }
    }
    if !d.redirect_failed_by_iface.is_empty() {
        out.push_str(&format!("\n{:<24} {:>14}\n", "REDIRECT FAILED", "FRAMES"));
        for (iface, n) in &d.redirect_failed_by_iface {
            out.push_str(&format!("{iface:<24} {n:>14}\n"));
        }
    }
    if let Some(p) = &d.process {
        out.push_str(&format!(
            "\nprocess: rss {} kB (peak {} kB), cpu {} ms\n",
            opt(p.rss_kb),
            opt(p.hwm_kb),
            p.cpu_ms
        ));
    }
    out
}

fn name_or_index(iface: &Option<String>, ifindex: u32) -> String {
    match iface {
        Some(n) => n.clone(),
        None => format!("if{ifindex}"),
    }
}

fn yes_no(v: bool) -> String {
    if v { "yes" } else { "no" }.into()
}

/// A value as plain text (`-` for none).
fn opt(v: Option<impl Display>) -> String {
    v.map_or_else(|| "-".into(), |v| v.to_string())
}

/// Left-aligned columns, two spaces apart; the last column is not padded.
pub fn table(headers: &[&str], rows: Vec<Vec<String>>) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for r in &rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let n = cells.len();
        let mut l = String::new();
        for (i, (c, w)) in cells.into_iter().zip(&widths).enumerate() {
            if i + 1 == n {
                l.push_str(&c);
            } else {
                l.push_str(&format!("{c:<w$}  "));
            }
        }
        l.trim_end().to_string() + "\n"
    };
    let mut out = line(headers.iter().map(|h| h.to_string()).collect());
    if rows.is_empty() {
        out.push_str("(none)\n");
    }
    for r in rows {
        out.push_str(&line(r));
    }
    out
}

#[cfg(test)]
mod tests {
    use dataplane::netlink::Mac;
    use routing::{neighbor::nsm, state::NeighborState};

    use super::*;
    use crate::{
        api::{RouteHop, RouteRow},
        fib::dump::{FibHop, FibRow},
    };

    #[test]
    fn tables_align_and_say_none() {
        let t = table(
            &["A", "LONGER"],
            vec![
                vec!["xyz".into(), "1".into()],
                vec!["q".into(), "22".into()],
            ],
        );
        assert_eq!(t, "A    LONGER\nxyz  1\nq    22\n");
        assert_eq!(table(&["A", "B"], vec![]), "A  B\n(none)\n");
    }

    #[test]
    fn ospf_drops_show_in_the_stats_text() {
        let report = StatsReport {
            xdp: None,
            agent: None,
            writer: None,
            ospf: Some(crate::api::OspfStats {
                spf_runs: 3,
                spf_time: routing::driver::SpfTime {
                    total_us: 900,
                    last_us: 250,
                    max_us: 400,
                },
                drops: [(routing::DropReason::LsaBadLinkType, 7)].into(),
            }),
            process: None,
            redirect_failed_by_iface: [("m-c".to_string(), 12)].into(),
        };
        let t = stats(&report);
        assert!(t.contains("OSPF DROPPED"), "{t}");
        assert!(
            t.contains("SPF: 3 runs, 900 us in all, last 250 us, longest 400 us"),
            "{t}"
        );
        assert!(
            t.lines()
                .any(|l| l.starts_with("m-c") && l.ends_with(" 12")),
            "{t}"
        );
        assert!(
            t.lines()
                .any(|l| l.starts_with("LsaBadLinkType") && l.ends_with(" 7")),
            "{t}"
        );
    }

    #[test]
    fn routes_and_fib_render() {
        let routes = Answer::Routes(vec![RouteRow {
            prefix: "fd00:1::/64".parse().unwrap(),
            cost: 20,
            next_hops: vec![
                RouteHop {
                    ifindex: 3,
                    iface: Some("m-b".into()),
                    via: "fe80::1".parse().unwrap(),
                },
                RouteHop {
                    ifindex: 4,
                    iface: None,
                    via: "fe80::2".parse().unwrap(),
                },
            ],
        }]);
        let t = render(&routes);
        assert!(
            t.contains("fd00:1::/64  20    fe80::1%m-b, fe80::2%if4"),
            "{t}"
        );
        let fib = Answer::Fib(vec![FibRow {
            prefix: "fd00:1::/64".parse().unwrap(),
            kind: FibKind::Forward,
            group: 1,
            next_hops: vec![FibHop {
                id: 1,
                ifindex: 3,
                iface: Some("m-b".into()),
                dst_mac: Some(Mac([2, 0, 0, 0, 0, 1])),
                mtu: 1500,
                alive: false,
            }],
        }]);
        assert!(render(&fib).contains("*m-b 02:00:00:00:00:01"));
    }

    #[test]
    fn neighbours_render() {
        let n = Answer::Neighbors(vec![NeighborState {
            ifindex: 3,
            interface: "m-b".into(),
            router_id: "10.0.0.2".parse().unwrap(),
            addr: "fe80::1".parse().unwrap(),
            state: nsm::State::Full,
            priority: 1,
            interface_id: 3,
            dr: "0.0.0.0".parse().unwrap(),
            bdr: "0.0.0.0".parse().unwrap(),
            retransmit_list: 0,
            request_list: 0,
            dead_in_ms: Some(2500),
        }]);
        let t = render(&n);
        assert!(
            t.contains("10.0.0.2") && t.contains("Full") && t.contains("2.5s"),
            "{t}"
        );
    }
}
