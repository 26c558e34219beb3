//! Human tables for `meshfwd show ...`, rendered from the JSON the agent
//! answers with (the same JSON `--json` prints), so the two never disagree.

use serde_json::Value;

use super::control::Query;

/// Render an answer to `query` as text.
pub fn render(query: Query, data: &Value) -> String {
    match query {
        Query::Node => node(data),
        Query::Neighbors => table(
            &[
                "NEIGHBOR",
                "INTERFACE",
                "ADDRESS",
                "STATE",
                "DEAD IN",
                "RXMT",
                "REQ",
            ],
            rows(data, |n| {
                vec![
                    s(&n["router_id"]),
                    s(&n["interface"]),
                    s(&n["addr"]),
                    s(&n["state"]),
                    n["dead_in_ms"]
                        .as_u64()
                        .map_or("-".into(), |ms| format!("{:.1}s", ms as f64 / 1000.0)),
                    s(&n["retransmit_list"]),
                    s(&n["request_list"]),
                ]
            }),
        ),
        Query::Interfaces => table(
            &[
                "INTERFACE",
                "INDEX",
                "MESH",
                "OSPF",
                "NBRS",
                "CARRIER",
                "MTU",
                "LINK-LOCAL",
                "WHY NOT",
            ],
            rows(data, |i| {
                vec![
                    s(&i["name"]),
                    s(&i["ifindex"]),
                    yes_no(&i["mesh"]),
                    s(&i["ospf_state"]),
                    s(&i["ospf_neighbors"]),
                    yes_no(&i["carrier"]),
                    s(&i["mtu"]),
                    s(&i["link_local"]),
                    s(&i["reason"]),
                ]
            }),
        ),
        Query::Lsdb => table(
            &[
                "TYPE",
                "LS ID",
                "ADV ROUTER",
                "SEQ",
                "AGE",
                "SCOPE",
                "IFINDEX",
            ],
            rows(data, |l| {
                vec![
                    s(&l["ls_type"]),
                    s(&l["ls_id"]),
                    s(&l["adv_router"]),
                    l["seq"]
                        .as_u64()
                        .map_or("-".into(), |v| format!("{v:#010x}")),
                    s(&l["age"]),
                    s(&l["scope"]),
                    s(&l["ifindex"]),
                ]
            }),
        ),
        Query::Routes => table(
            &["PREFIX", "COST", "NEXT HOPS"],
            rows(data, |r| {
                let hops: Vec<String> = r["next_hops"]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .map(|h| format!("{}%{}", s(&h["via"]), name_or_index(h)))
                            .collect()
                    })
                    .unwrap_or_default();
                vec![s(&r["prefix"]), s(&r["cost"]), hops.join(", ")]
            }),
        ),
        Query::Fib => table(
            &["PREFIX", "KIND", "GROUP", "NEXT HOPS (iface mac, * = dead)"],
            rows(data, |r| {
                let hops: Vec<String> = r["next_hops"]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .map(|h| {
                                let dead = if h["alive"].as_bool() == Some(true) {
                                    ""
                                } else {
                                    "*"
                                };
                                format!("{dead}{} {}", name_or_index(h), s(&h["dst_mac"]))
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                vec![
                    s(&r["prefix"]),
                    s(&r["kind"]),
                    s(&r["group"]),
                    hops.join(", "),
                ]
            }),
        ),
        Query::Stats => stats(data),
    }
}

fn node(d: &Value) -> String {
    let mut out = String::new();
    let fields = [
        ("router id", s(&d["router_id"])),
        ("  from", source(&d["router_id_source"])),
        ("cluster prefix", s(&d["cluster_prefix"])),
        ("pod prefix", s(&d["pod_prefix"])),
        (
            "node address",
            format!("{} on {}", s(&d["node_address"]), s(&d["local_device"])),
        ),
        ("mesh links", s(&d["mesh_links"])),
        ("neighbours full", s(&d["neighbors_full"])),
        ("routes", s(&d["routes"])),
        ("LSAs", s(&d["lsdb"])),
        ("SPF runs", s(&d["spf_runs"])),
        ("XDP fast path", yes_no(&d["xdp"])),
        ("state file", s(&d["state_file"])),
        ("uptime", format!("{}s", s(&d["uptime_s"]))),
        ("version", s(&d["version"])),
    ];
    for (k, v) in fields {
        out.push_str(&format!("{k:<16} {v}\n"));
    }
    out
}

fn source(v: &Value) -> String {
    match (v["kind"].as_str(), v["from"].as_str()) {
        (Some(k), Some(f)) => format!("{k} ({f})"),
        (Some(k), None) => k.to_string(),
        _ => s(v),
    }
}

fn stats(d: &Value) -> String {
    let mut out = String::new();
    if let Some(agent) = d["agent"].as_object() {
        out.push_str(&format!("\n{:<24} {:>14}\n", "AGENT", "COUNT"));
        for (k, v) in agent {
            out.push_str(&format!("{k:<24} {:>14}\n", s(v)));
        }
    }
    if let Some(w) = d["writer"].as_object() {
        out.push_str(&format!("\n{:<24} {:>14}\n", "MAP WRITER", "COUNT"));
        for k in ["applies", "map_ops", "kernel_writes", "kernel_errors"] {
            out.push_str(&format!("{k:<24} {:>14}\n", s(&w[k])));
        }
    }
    let p = &d["process"];
    if p.is_object() {
        out.push_str(&format!(
            "\nprocess: rss {} kB (peak {} kB), cpu {} ms\n",
            s(&p["rss_kb"]),
            s(&p["hwm_kb"]),
            s(&p["cpu_ms"])
        ));
    }
    out
}

fn name_or_index(h: &Value) -> String {
    match h["iface"].as_str() {
        Some(n) => n.to_string(),
        None => format!("if{}", s(&h["ifindex"])),
    }
}

fn yes_no(v: &Value) -> String {
    match v.as_bool() {
        Some(true) => "yes".into(),
        Some(false) => "no".into(),
        None => "-".into(),
    }
}

/// A JSON scalar as plain text (`-` for null).
fn s(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(x) => x.clone(),
        other => other.to_string(),
    }
}

fn rows(data: &Value, f: impl Fn(&Value) -> Vec<String>) -> Vec<Vec<String>> {
    data.as_array()
        .map(|a| a.iter().map(f).collect())
        .unwrap_or_default()
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
    use serde_json::json;

    use super::*;

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
    fn routes_and_fib_render() {
        let routes = json!([{"prefix": "fd00:1::/64", "cost": 20,
            "next_hops": [{"ifindex": 3, "iface": "m-b", "via": "fe80::1"}, {"ifindex": 4, "iface": null, "via": "fe80::2"}]}]);
        let t = render(Query::Routes, &routes);
        assert!(
            t.contains("fd00:1::/64  20    fe80::1%m-b, fe80::2%if4"),
            "{t}"
        );
        let fib = json!([{"prefix": "fd00:1::/64", "kind": "forward", "group": 1,
            "next_hops": [{"id": 1, "ifindex": 3, "iface": "m-b", "dst_mac": "02:00:00:00:00:01", "mtu": 1500, "alive": false}]}]);
        assert!(render(Query::Fib, &fib).contains("*m-b 02:00:00:00:00:01"));
    }

    #[test]
    fn neighbours_render() {
        let n = json!([{"router_id": "10.0.0.2", "interface": "m-b", "addr": "fe80::1", "state": "Full",
            "dead_in_ms": 2500, "retransmit_list": 0, "request_list": 0}]);
        let t = render(Query::Neighbors, &n);
        assert!(
            t.contains("10.0.0.2") && t.contains("Full") && t.contains("2.5s"),
            "{t}"
        );
    }
}
