//! Helpers shared by the BIRD capture and interop tests.
#![allow(dead_code, reason = "each test binary uses a different subset")]

pub mod bird;
#[cfg(feature = "driver")]
pub mod frr;
pub mod netns;
#[cfg(feature = "driver")]
pub mod routers;

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

/// Router id `10.0.0.n` of test router `n`.
/// Return the link-local address of `node` on `iface`.
pub fn link_local(lab: &lab::Lab, node: &str, iface: &str) -> std::net::Ipv6Addr {
    lab.node(node)
        .link_local(iface)
        .unwrap_or_else(|e| panic!("link-local of {node}/{iface}: {e:#}"))
}

pub fn rid(n: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, 0, 0, n)
}

/// The stub prefix test router `n` advertises.
pub fn stub(n: u8) -> String {
    format!("2001:db8:{n}::/64")
}

/// Run `f` on a thread that has entered the network namespace at `ns_path`,
/// so sockets it opens live there; the calling thread stays where it was.
#[cfg(feature = "driver")]
pub fn in_netns<T: Send>(ns_path: &std::path::Path, f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|s| {
        s.spawn(|| {
            let ns = std::fs::File::open(ns_path)
                .unwrap_or_else(|e| panic!("open {}: {e}", ns_path.display()));
            nix::sched::setns(ns, nix::sched::CloneFlags::CLONE_NEWNET)
                .unwrap_or_else(|e| panic!("setns {}: {e}", ns_path.display()));
            f()
        })
        .join()
        .unwrap_or_else(|e| std::panic::resume_unwind(e))
    })
}

/// Poll `check` every 200 ms until it returns `Some` or `limit` passes; on
/// timeout panic with `what` and the last `describe()` of the state.
pub fn wait_until<T>(
    what: &str,
    limit: Duration,
    mut check: impl FnMut() -> Option<T>,
    describe: impl Fn() -> String,
) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = check() {
            return v;
        }
        if start.elapsed() >= limit {
            panic!(
                "timed out after {limit:?} waiting for {what}; state:\n{}",
                describe()
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}
