//! `meshfwd show stats --interval S`: per-second rates for benchmarking on
//! real NICs with any generator. Each interval reads the fast path's pinned
//! counters (summed over CPUs) and the kernel's interface counters, and
//! prints what moved as a table or one JSON line ([`RateSample`]).

use std::{
    collections::BTreeMap,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result};
use dataplane::stats::Stats;

use crate::api::{InterfaceRates, RateSample};

/// The kernel's counters of one interface.
#[derive(Debug, Clone, Copy, Default)]
struct LinkCounters {
    rx: u64,
    tx: u64,
    rx_dropped: u64,
    tx_dropped: u64,
}

/// The counters of `ifaces` from `/proc/net/dev`, which, unlike
/// `/sys/class/net`, always shows this process's network namespace;
/// interfaces that vanished are left out.
fn read_links(ifaces: &[String]) -> BTreeMap<String, LinkCounters> {
    let Ok(all) = procfs::net::dev_status() else {
        return BTreeMap::new();
    };
    ifaces
        .iter()
        .filter_map(|name| {
            let d = all.get(name)?;
            Some((
                name.clone(),
                LinkCounters {
                    rx: d.recv_packets,
                    tx: d.sent_packets,
                    rx_dropped: d.recv_drop,
                    tx_dropped: d.sent_drop,
                },
            ))
        })
        .collect()
}

/// Every interface but loopback.
pub fn all_interfaces() -> Vec<String> {
    let mut out: Vec<String> = procfs::net::dev_status()
        .map(|all| all.into_keys().filter(|n| n != "lo").collect())
        .unwrap_or_default();
    out.sort();
    out
}

/// Per-second rates between two readings.
fn sample(
    t: f64,
    dt: f64,
    (x0, l0): (&Stats, &BTreeMap<String, LinkCounters>),
    (x1, l1): (&Stats, &BTreeMap<String, LinkCounters>),
) -> RateSample {
    let per_s = |a: u64, b: u64| b.saturating_sub(a) as f64 / dt;
    let xdp = x1
        .counters
        .iter()
        .filter_map(|(name, v)| {
            let before = x0.counters.get(name).copied().unwrap_or(0);
            (*v > before).then(|| (name.clone(), per_s(before, *v)))
        })
        .collect();
    let interfaces = l1
        .iter()
        .filter_map(|(name, b)| {
            let a = l0.get(name)?;
            Some((
                name.clone(),
                InterfaceRates {
                    rx_pps: per_s(a.rx, b.rx),
                    tx_pps: per_s(a.tx, b.tx),
                    rx_dropped_pps: per_s(a.rx_dropped, b.rx_dropped),
                    tx_dropped_pps: per_s(a.tx_dropped, b.tx_dropped),
                },
            ))
        })
        .collect();
    RateSample {
        t,
        interval_s: dt,
        xdp,
        interfaces,
    }
}

/// The human form of one sample.
pub fn render(s: &RateSample) -> String {
    let get = |k: &str| s.xdp.get(k).copied().unwrap_or(0.0);
    let mut out = format!(
        "t={:.1}s  forwarded {:.0} pps  passed {:.0} pps  dropped {:.0} pps  (of {:.0} pps seen)\n",
        s.t,
        get("redirect") + get("tx"),
        get("pass"),
        get("drop") + get("aborted"),
        get("rx"),
    );
    if !s.xdp.is_empty() {
        out.push_str(&format!("  {:<20} {:>14}\n", "COUNTER", "PER SECOND"));
        for (k, v) in &s.xdp {
            out.push_str(&format!("  {k:<20} {v:>14.0}\n"));
        }
    }
    if !s.interfaces.is_empty() {
        out.push_str(&format!(
            "  {:<16} {:>12} {:>12} {:>12} {:>12}\n",
            "INTERFACE", "RX pps", "TX pps", "RX drop/s", "TX drop/s"
        ));
        for (name, r) in &s.interfaces {
            out.push_str(&format!(
                "  {name:<16} {:>12.0} {:>12.0} {:>12.0} {:>12.0}\n",
                r.rx_pps, r.tx_pps, r.rx_dropped_pps, r.tx_dropped_pps
            ));
        }
    }
    out
}

/// Print `count` samples (forever without), one per `interval`, reading the
/// fast path's counters with `read_xdp` and the kernel's for `ifaces`.
pub fn run(
    interval: Duration,
    count: Option<u32>,
    json: bool,
    ifaces: &[String],
    read_xdp: impl Fn() -> Result<Stats>,
) -> Result<()> {
    let start = Instant::now();
    let mut last = (read_xdp()?, read_links(ifaces), Instant::now());
    let mut printed = 0u32;
    while count.is_none_or(|c| printed < c) {
        // Sleep to the next tick of the schedule, not `interval` after the
        // reading, so the lines keep their pace.
        let next = start + interval * (printed + 1);
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
        let now = (read_xdp()?, read_links(ifaces), Instant::now());
        let dt = now.2.duration_since(last.2).as_secs_f64().max(1e-6);
        let s = sample(
            now.2.duration_since(start).as_secs_f64(),
            dt,
            (&last.0, &last.1),
            (&now.0, &now.1),
        );
        if json {
            println!(
                "{}",
                serde_json::to_string(&s).context("encoding a rate sample")?
            );
        } else {
            print!("{}", render(&s));
        }
        last = now;
        printed += 1;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_are_deltas_over_the_interval() {
        let x = |rx, redirect| Stats {
            cpus: 2,
            counters: [("rx".to_string(), rx), ("redirect".to_string(), redirect)].into(),
        };
        let l = |rx| {
            BTreeMap::from([(
                "eth0".to_string(),
                LinkCounters {
                    rx,
                    ..LinkCounters::default()
                },
            )])
        };
        let s = sample(2.0, 0.5, (&x(100, 50), &l(10)), (&x(600, 50), &l(510)));
        assert_eq!(s.xdp, BTreeMap::from([("rx".to_string(), 1000.0)]));
        assert_eq!(s.interfaces["eth0"].rx_pps, 1000.0);
        assert!(render(&s).contains("forwarded 0 pps"));
    }
}
