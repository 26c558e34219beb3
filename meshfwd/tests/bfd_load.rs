//! BFD at 10 ms x 3 under CPU load: a busy loop on every core for 60 s,
//! and no session of a pair of agents goes Down. The sessions run on a
//! real-time thread (see `agent::runtime::bfd`), so the load, at normal
//! priority, cannot delay them. Its own binary: the hogs would disturb
//! other tests.

mod agent_support;

use std::time::Duration;

use agent_support::{Answers as _, mesh, wait_until};
use lab::{Topology, Wire};
use meshfwd::api::{BfdReport, Query};
use routing::bfd::State;

const CONVERGE: Duration = Duration::from_secs(30);
const LOADED: Duration = Duration::from_secs(60);

/// Busy loops at normal priority, one thread per core, that end by
/// themselves after `LOADED` (or when dropped).
struct Hogs {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    threads: Vec<std::thread::JoinHandle<u64>>,
}

impl Hogs {
    fn start() -> Hogs {
        use std::sync::atomic::Ordering;
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let until = std::time::Instant::now() + LOADED;
        let threads = (0..cores)
            .map(|_| {
                let stop = stop.clone();
                std::thread::spawn(move || {
                    let mut spins = 0u64;
                    while !stop.load(Ordering::Relaxed) && std::time::Instant::now() < until {
                        spins = std::hint::black_box(spins.wrapping_add(1));
                    }
                    spins
                })
            })
            .collect();
        Hogs { stop, threads }
    }
}

impl Drop for Hogs {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

#[test]
fn no_session_goes_down_at_10_ms_while_every_core_is_busy() {
    let mut m = mesh(
        "bfd-load",
        &Topology::new().line(&["a", "b", "c"], Wire::Direct),
    );
    for n in ["a", "b", "c"] {
        m.start(
            n,
            &["--bfd", "--bfd-interval-ms", "10", "--bfd-multiplier", "3"],
        )
        .unwrap();
    }
    m.wait_full_reachability(&["a", "b", "c"], CONVERGE);
    let report = |n: &str| m.show::<BfdReport>(n, Query::Bfd);
    wait_until("b's sessions Up at 10 ms", CONVERGE, || {
        report("b").is_some_and(|r| {
            r.sessions.len() == 2
                && r.sessions
                    .iter()
                    .all(|s| s.state == State::Up && s.tx_interval_us == 10_000)
        })
    });
    let rx_before: u64 = report("b")
        .unwrap()
        .sessions
        .iter()
        .map(|s| s.counters.rx)
        .sum();
    let hogs = Hogs::start();
    std::thread::sleep(LOADED);
    drop(hogs);
    for n in ["a", "b", "c"] {
        let r = report(n).unwrap_or_else(|| panic!("{n} answers"));
        for s in &r.sessions {
            assert_eq!(s.state, State::Up, "{n}: {s:?}");
            assert_eq!(s.counters.flaps, 0, "{n}: {s:?}");
        }
        assert!(
            !m.log(n).contains("path to the neighbour failed"),
            "{n}:\n{}",
            m.log(n)
        );
    }
    // The packets kept coming: 10 ms less up to 25% jitter (RFC 5880
    // §6.8.7), 100 to 133 a second per session.
    let rx_after: u64 = report("b")
        .unwrap()
        .sessions
        .iter()
        .map(|s| s.counters.rx)
        .sum();
    let per_session_per_s = (rx_after - rx_before) as f64 / 2.0 / LOADED.as_secs_f64();
    assert!(
        (95.0..=140.0).contains(&per_session_per_s),
        "{per_session_per_s:.1} packets a second per session"
    );
}
