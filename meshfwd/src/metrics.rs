//! The agent's figures in the Prometheus (OpenMetrics) text format, built
//! from the same typed answers `meshfwd show` prints ([`crate::api`]), so
//! the two never disagree. The agent serves them over HTTP
//! (`agent::runtime::metrics`); this module only renders.
//!
//! Totals the agent keeps (SPF runs, fast-path frames, ...) are exported
//! as counters: each scrape builds a fresh registry whose counters start
//! at the current total.

use prometheus_client::{
    encoding::text::encode,
    metrics::{counter::Counter, family::Family, gauge::Gauge},
    registry::Registry,
};
use routing::{neighbor::nsm, state::NeighborState};

use crate::api::{BfdReport, NodeInfo, StatsReport};

/// The content type of [`render`]'s text.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

type Labels = Vec<(String, String)>;

/// What one scrape shows.
pub struct Snapshot<'a> {
    pub node: &'a NodeInfo,
    pub neighbors: &'a [NeighborState],
    /// The IPv4 instance's neighbours (none on an IPv6-only node).
    pub neighbors4: &'a [NeighborState],
    pub stats: &'a StatsReport,
    /// BFD's sessions (none while BFD is off).
    pub bfd: &'a BfdReport,
    /// When this agent process started (Unix seconds): restarts show as
    /// changes of it.
    pub start_time_unix: f64,
}

fn gauge(registry: &mut Registry, name: &str, help: &str, value: i64) {
    let g: Gauge = Gauge::default();
    g.set(value);
    registry.register(name, help, g);
}

fn counter(registry: &mut Registry, name: &str, help: &str, value: u64) {
    let c: Counter = Counter::default();
    c.inc_by(value);
    registry.register(name, help, c);
}

fn label(k: &str, v: impl ToString) -> Labels {
    vec![(k.to_owned(), v.to_string())]
}

/// The state names operators alert on (RFC 2328 §10.1, lower case).
fn state_name(s: nsm::State) -> &'static str {
    match s {
        nsm::State::Down => "down",
        nsm::State::Init => "init",
        nsm::State::TwoWay => "2way",
        nsm::State::ExStart => "exstart",
        nsm::State::Exchange => "exchange",
        nsm::State::Loading => "loading",
        nsm::State::Full => "full",
    }
}

/// Count `neighbors` by state, every state present (zeros included).
fn by_state(neighbors: &[NeighborState]) -> Family<Labels, Gauge> {
    let family: Family<Labels, Gauge> = Family::default();
    for st in [
        nsm::State::Down,
        nsm::State::Init,
        nsm::State::TwoWay,
        nsm::State::ExStart,
        nsm::State::Exchange,
        nsm::State::Loading,
        nsm::State::Full,
    ] {
        let n = neighbors.iter().filter(|n| n.state == st).count();
        family
            .get_or_create(&label("state", state_name(st)))
            .set(n as i64);
    }
    family
}

/// Render `s` as OpenMetrics text.
pub fn render(s: &Snapshot<'_>) -> String {
    let mut r = <Registry>::with_prefix("kubermesh");
    let info: Family<Labels, Gauge> = Family::default();
    info.get_or_create(&vec![
        ("version".to_owned(), s.node.version.clone()),
        ("router_id".to_owned(), s.node.router_id.to_string()),
        ("pod_prefix".to_owned(), s.node.pod_prefix.to_string()),
    ])
    .set(1);
    r.register("agent", "The agent's version and the node's identity", info);
    let start: Gauge<f64, std::sync::atomic::AtomicU64> = Gauge::default();
    start.set(s.start_time_unix);
    r.register(
        "agent_start_time_seconds",
        "When the agent process started (Unix time); it changes at every restart",
        start,
    );
    counter(
        &mut r,
        "agent_router_id_changes",
        "Router id changes forced by a proven duplicate",
        u64::from(s.node.router_id_rederived),
    );

    // OSPF.
    r.register(
        "ospf_neighbors",
        "OSPF neighbours by state",
        by_state(s.neighbors),
    );
    gauge(
        &mut r,
        "ospf_mesh_links",
        "Links running OSPF",
        s.node.mesh_links as i64,
    );
    gauge(
        &mut r,
        "ospf_lsdb_lsas",
        "LSAs in the database",
        s.node.lsdb as i64,
    );
    gauge(
        &mut r,
        "ospf_routes",
        "Routes SPF computed",
        s.node.routes as i64,
    );
    counter(&mut r, "ospf_spf_runs", "SPF runs", s.node.spf_runs);
    gauge(
        &mut r,
        "ospf_graceful_restart_restarting",
        "1 while this router restarts gracefully (RFC 3623)",
        i64::from(s.node.gr_restarting),
    );
    gauge(
        &mut r,
        "ospf_graceful_restart_helping",
        "Neighbours this router helps restart",
        s.node.gr_helping as i64,
    );
    if let Some(v4) = &s.node.ipv4 {
        let info: Family<Labels, Gauge> = Family::default();
        info.get_or_create(&vec![
            ("pod_prefix".to_owned(), v4.pod_prefix.to_string()),
            ("node_address".to_owned(), v4.node_address.to_string()),
        ])
        .set(1);
        r.register("agent_ipv4", "The node's IPv4 pod prefix and address", info);
        r.register(
            "ospf_ipv4_neighbors",
            "The IPv4 instance's OSPF neighbours by state",
            by_state(s.neighbors4),
        );
        gauge(
            &mut r,
            "ospf_ipv4_lsdb_lsas",
            "LSAs in the IPv4 instance's database",
            v4.lsdb as i64,
        );
        gauge(
            &mut r,
            "ospf_ipv4_routes",
            "Routes the IPv4 instance's SPF computed",
            v4.routes as i64,
        );
        gauge(
            &mut r,
            "ospf_ipv4_misfit_prefixes",
            "Prefixes longer than 32 bits in the IPv4 instance: flooded, not routed",
            v4.misfits as i64,
        );
        counter(
            &mut r,
            "ospf_ipv4_spf_runs",
            "The IPv4 instance's SPF runs",
            v4.spf_runs,
        );
    }
    if let Some(o) = &s.stats.ospf {
        let seconds = |us: u64| us as f64 / 1e6;
        let total: Counter<f64, std::sync::atomic::AtomicU64> = Counter::default();
        total.inc_by(seconds(o.spf_time.total_us));
        r.register(
            "ospf_spf_duration_seconds",
            "Time SPF took, summed over every run (divide by the runs for the mean)",
            total,
        );
        for (name, help, us) in [
            (
                "ospf_spf_last_duration_seconds",
                "Time the last SPF run took",
                o.spf_time.last_us,
            ),
            (
                "ospf_spf_max_duration_seconds",
                "Time the longest SPF run took",
                o.spf_time.max_us,
            ),
        ] {
            let g: Gauge<f64, std::sync::atomic::AtomicU64> = Gauge::default();
            g.set(seconds(us));
            r.register(name, help, g);
        }
        let drops: Family<Labels, Counter> = Family::default();
        for (reason, n) in &o.drops {
            drops
                .get_or_create(&label("reason", format!("{reason:?}")))
                .inc_by(*n);
        }
        r.register(
            "ospf_packets_dropped",
            "OSPF packets and LSAs dropped, by reason",
            drops,
        );
    }

    // BFD.
    let sessions: Family<Labels, Gauge> = Family::default();
    for st in [
        routing::bfd::State::AdminDown,
        routing::bfd::State::Down,
        routing::bfd::State::Init,
        routing::bfd::State::Up,
    ] {
        let n = s.bfd.sessions.iter().filter(|x| x.state == st).count();
        let name = match st {
            routing::bfd::State::AdminDown => "admin_down",
            routing::bfd::State::Down => "down",
            routing::bfd::State::Init => "init",
            routing::bfd::State::Up => "up",
        };
        sessions.get_or_create(&label("state", name)).set(n as i64);
    }
    r.register("bfd_sessions", "BFD sessions by state", sessions);
    counter(
        &mut r,
        "bfd_session_flaps",
        "Times a BFD session of a current neighbour left Up",
        s.bfd.sessions.iter().map(|x| x.counters.flaps).sum(),
    );
    let discards: Family<Labels, Counter> = Family::default();
    for (reason, n) in &s.bfd.discards {
        discards
            .get_or_create(&label("reason", format!("{reason:?}")))
            .inc_by(*n);
    }
    r.register(
        "bfd_packets_discarded",
        "BFD packets discarded, by reason (RFC 5880 6.8.6, RFC 5881 5)",
        discards,
    );

    // The map writer and the FIB.
    if let Some(w) = &s.stats.writer {
        gauge(
            &mut r,
            "fib_entries",
            "FIB entries the map writer keeps",
            w.fib_entries as i64,
        );
        gauge(
            &mut r,
            "fib_groups",
            "ECMP groups in the FIB",
            w.groups as i64,
        );
        gauge(
            &mut r,
            "fib_next_hops",
            "Next hops in the FIB",
            w.next_hops as i64,
        );
        gauge(
            &mut r,
            "fib_unresolved_next_hops",
            "Next hops whose neighbour's MAC is not known yet",
            w.last.as_ref().map_or(0, |l| l.unresolved as i64),
        );
        counter(
            &mut r,
            "map_writer_applies",
            "Route tables applied",
            w.applies,
        );
        counter(
            &mut r,
            "map_writer_errors",
            "Route tables whose apply failed",
            w.errors,
        );
        counter(
            &mut r,
            "map_writer_kernel_errors",
            "Kernel route changes that failed",
            w.kernel_errors,
        );
    }

    // The fast path.
    if let Some(x) = &s.stats.xdp {
        let frames: Family<Labels, Counter> = Family::default();
        for (name, n) in &x.counters {
            frames.get_or_create(&label("counter", name)).inc_by(*n);
        }
        r.register(
            "fastpath_frames",
            "Fast-path frames by verdict, reason and TC action (names as in `meshfwd show stats`)",
            frames,
        );
    }
    let refused: Family<Labels, Counter> = Family::default();
    for (iface, n) in &s.stats.redirect_failed_by_iface {
        refused.get_or_create(&label("interface", iface)).inc_by(*n);
    }
    r.register(
        "fastpath_redirect_failed_frames",
        "Redirected frames the egress device did not take",
        refused,
    );
    if let Some(p) = &s.stats.process
        && let Some(rss) = p.rss_kb
    {
        gauge(
            &mut r,
            "agent_resident_memory_bytes",
            "The agent's resident memory",
            (rss * 1024) as i64,
        );
    }

    let mut out = String::new();
    // Writing into a String cannot fail.
    let _ = encode(&mut out, &r);
    out
}
