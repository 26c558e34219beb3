//! The Prometheus endpoint of a real agent, scraped over HTTP inside its
//! node and read with a Prometheus text-format parser.

mod agent_support;

use std::{
    io::{Read as _, Write as _},
    net::TcpStream,
    time::Duration,
};

use agent_support::{Answers as _, mesh};
use lab::{Topology, Wire};
use prometheus_parse::{Scrape, Value};

const CONVERGE: Duration = Duration::from_secs(30);

/// `GET /metrics` on 127.0.0.1:9470 of `node`: (head, body).
fn scrape(m: &lab::agents::AgentMesh, node: &str) -> std::io::Result<(String, String)> {
    lab::netns::enter(m.lab.node(node).netns(), || {
        let mut s = TcpStream::connect_timeout(
            &"127.0.0.1:9470".parse().expect("address"),
            Duration::from_secs(2),
        )?;
        s.set_read_timeout(Some(Duration::from_secs(5)))?;
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")?;
        let mut raw = String::new();
        s.read_to_string(&mut raw)?;
        let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
        Ok((head.to_owned(), body.to_owned()))
    })
    .map_err(std::io::Error::other)
}

fn value(scrape: &Scrape, name: &str, label: Option<(&str, &str)>) -> Option<f64> {
    scrape
        .samples
        .iter()
        .find(|s| s.metric == name && label.is_none_or(|(k, v)| s.labels.get(k) == Some(v)))
        .map(|s| match s.value {
            Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => v,
            _ => f64::NAN,
        })
}

#[test]
fn the_agent_serves_its_figures_to_prometheus() {
    let topo = Topology::new().line(&["a", "b"], Wire::Direct);
    let mut m = mesh("metrics", &topo);
    let v4 = ["--ipv4-cluster-prefix", "198.18.0.0/15"];
    m.start("a", &["--bfd", v4[0], v4[1]]).unwrap();
    m.start("b", &["--metrics", "off", "--bfd", v4[0], v4[1]])
        .unwrap();
    m.wait_full_reachability(&["a", "b"], CONVERGE);
    // The BFD session comes Up at 1 s packets, after OSPF's 2-Way; the
    // IPv4 instance's adjacency comes up beside the IPv6 one.
    agent_support::wait_until("a's BFD session Up in the scrape", CONVERGE, || {
        scrape(&m, "a").is_ok_and(|(_, body)| {
            body.contains("kubermesh_bfd_sessions{state=\"up\"} 1")
                && body.contains("kubermesh_ospf_ipv4_neighbors{state=\"full\"} 1")
        })
    });
    let (head, body) = scrape(&m, "a").expect("scrape a");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(
        head.to_lowercase().contains("application/openmetrics-text"),
        "{head}"
    );
    let lines = body.lines().map(|l| Ok(l.to_owned()));
    let s = Scrape::parse(lines).expect("the exposition format parses");
    let get = |name, label| {
        value(&s, name, label).unwrap_or_else(|| panic!("no {name} {label:?} in:\n{body}"))
    };
    assert_eq!(
        get("kubermesh_ospf_neighbors", Some(("state", "full"))),
        1.0
    );
    assert_eq!(
        get("kubermesh_ospf_neighbors", Some(("state", "exstart"))),
        0.0
    );
    assert_eq!(get("kubermesh_ospf_mesh_links", None), 1.0);
    assert!(get("kubermesh_ospf_spf_runs_total", None) >= 1.0);
    assert_eq!(get("kubermesh_bfd_sessions", Some(("state", "up"))), 1.0);
    assert_eq!(get("kubermesh_bfd_sessions", Some(("state", "down"))), 0.0);
    assert_eq!(get("kubermesh_bfd_session_flaps_total", None), 0.0);
    // SPF takes time, and the longest run is at least the last one.
    let (spf_total, spf_last, spf_max) = (
        get("kubermesh_ospf_spf_duration_seconds_total", None),
        get("kubermesh_ospf_spf_last_duration_seconds", None),
        get("kubermesh_ospf_spf_max_duration_seconds", None),
    );
    assert!(
        spf_total > 0.0 && spf_max >= spf_last && spf_total >= spf_max,
        "SPF time: total {spf_total}, last {spf_last}, max {spf_max}"
    );
    assert_eq!(get("kubermesh_ospf_graceful_restart_restarting", None), 0.0);
    assert_eq!(get("kubermesh_ospf_graceful_restart_helping", None), 0.0);
    assert!(get("kubermesh_ospf_lsdb_lsas", None) >= 4.0);
    // The IPv4 instance: b's /24 and /32 routed, and a's IPv4 prefixes.
    assert!(get("kubermesh_ospf_ipv4_routes", None) >= 2.0);
    assert!(get("kubermesh_ospf_ipv4_lsdb_lsas", None) >= 4.0);
    assert!(get("kubermesh_ospf_ipv4_spf_runs_total", None) >= 1.0);
    assert_eq!(get("kubermesh_ospf_ipv4_misfit_prefixes", None), 0.0);
    let a4 = m.node_state("a").ipv4.expect("a runs IPv4").pod_prefix;
    let a4 = a4.to_string();
    assert_eq!(get("kubermesh_agent_ipv4", Some(("pod_prefix", &a4))), 1.0);
    // b's /64 and /128 at least.
    assert!(get("kubermesh_fib_entries", None) >= 2.0);
    assert!(get("kubermesh_fastpath_frames_total", Some(("counter", "rx"))) > 0.0);
    let router_id = m.node("a").expect("a answers").router_id.to_string();
    assert_eq!(get("kubermesh_agent", Some(("router_id", &router_id))), 1.0);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let started = get("kubermesh_agent_start_time_seconds", None);
    assert!(
        (now - 120.0..=now).contains(&started),
        "started {started}, now {now}"
    );
    // Counters only grow between scrapes.
    let rx = get("kubermesh_fastpath_frames_total", Some(("counter", "rx")));
    let (_, again) = scrape(&m, "a").expect("scrape a again");
    let s2 = Scrape::parse(again.lines().map(|l| Ok(l.to_owned()))).unwrap();
    assert!(
        value(
            &s2,
            "kubermesh_fastpath_frames_total",
            Some(("counter", "rx"))
        )
        .unwrap()
            >= rx
    );
    // Off means off.
    assert!(scrape(&m, "b").is_err(), "b serves no metrics");
}
