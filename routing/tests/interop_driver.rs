//! The driver embedded in a process, as the agent uses it: two instances in
//! two lab namespaces (each on a thread that entered its namespace) reach
//! Full, report routes over the RIB channel, follow interfaces removed and
//! added at run time, and hand their instance back on shutdown.
#![cfg(feature = "driver")]

mod common;

use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use routing::driver::{self, Handle, InterfaceSpec, Snapshot};
use routing::neighbor::nsm;
use routing::{Instance, InstanceConfig, InterfaceConfig, Ipv6Net, Rib, RibDiff};
use tokio::sync::{mpsc, oneshot};

const LIMIT: Duration = Duration::from_secs(20);

/// One driver on its own thread inside a namespace.
struct Embedded {
    handle: Handle,
    ribs: mpsc::UnboundedReceiver<RibDiff>,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<std::io::Result<Instance>>>,
}

impl Embedded {
    fn start(ns: PathBuf, router_id: Ipv4Addr, stub: &str, iface: &str) -> Self {
        let (handle, commands) = driver::channel();
        let (rib_tx, ribs) = mpsc::unbounded_channel();
        let (stop, stop_rx) = oneshot::channel::<()>();
        let config = InstanceConfig {
            router_id,
            stub_prefixes: vec![stub.parse().expect("prefix")],
            ..InstanceConfig::default()
        };
        let spec = InterfaceSpec::new(iface, InterfaceConfig::default());
        let thread = std::thread::spawn(move || {
            let file = std::fs::File::open(&ns)?;
            nix::sched::setns(file, nix::sched::CloneFlags::CLONE_NEWNET)?;
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            rt.block_on(driver::run(config, vec![spec], commands, rib_tx, async {
                let _ = stop_rx.await;
            }))
        });
        Self {
            handle,
            ribs,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// Stop the driver and return its instance.
    fn shutdown(mut self) -> Instance {
        let _ = self.stop.take().map(|s| s.send(()));
        self.thread
            .take()
            .expect("running")
            .join()
            .expect("driver thread panicked")
            .expect("driver failed")
    }
}

impl Drop for Embedded {
    fn drop(&mut self) {
        // On a failing test: stop the thread before the lab goes away.
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Poll `check` on `rt` every 200 ms until it yields, for at most `LIMIT`.
fn wait<T>(
    rt: &tokio::runtime::Runtime,
    what: &str,
    mut check: impl AsyncFnMut() -> Option<T>,
) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = rt.block_on(check()) {
            return v;
        }
        assert!(start.elapsed() < LIMIT, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn full_with(s: &Snapshot, router_id: Ipv4Addr) -> bool {
    s.state
        .neighbors
        .iter()
        .any(|n| n.router_id == router_id && n.state == nsm::State::Full)
}

#[test]
fn embedded_driver() {
    let topo = lab::Topology::new()
        .node("x")
        .node("y")
        .link("x", "y", lab::Wire::Direct);
    let lab = lab::Lab::build("driver", &topo).expect("build lab");
    let link = lab.link("x", "y").clone();
    let y_ll: Ipv6Addr = lab.node("y").link_local(&link.b_if).expect("y link-local");
    lab.node("x").link_local(&link.a_if).expect("x link-local");
    let (x_id, y_id) = (Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(10, 0, 0, 2));
    let ns = |n: &str| lab::netns::path(lab.node(n).netns());
    let mut x = Embedded::start(ns("x"), x_id, "2001:db8:1::/64", &link.a_if);
    let y = Embedded::start(ns("y"), y_id, "2001:db8:2::/64", &link.b_if);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");

    wait(&rt, "x Full with y", async || {
        let s = x.handle.snapshot().await.ok()?;
        full_with(&s, y_id).then_some(())
    });

    // The RIB diffs over the channel add up to a route to y's prefix via
    // y's link-local address on x's interface.
    let y_prefix: Ipv6Net = "2001:db8:2::/64".parse().expect("prefix");
    let x_ifindex = rt
        .block_on(x.handle.snapshot())
        .expect("snapshot")
        .state
        .interfaces[0]
        .ifindex;
    let mut rib = Rib::default();
    wait(&rt, "y's prefix in x's RIB diffs", async || {
        while let Ok(diff) = x.ribs.try_recv() {
            rib.apply(&diff);
        }
        let route = rib.routes.get(&y_prefix)?;
        let hop = route.nexthops.first()?;
        (route.nexthops.len() == 1 && hop.addr == y_ll && hop.ifindex == x_ifindex).then_some(())
    });

    // Removing the interface at run time: y loses x (dead interval) and
    // withdraws the route; adding it back restores the adjacency.
    assert!(
        rt.block_on(x.handle.remove_interface(&link.a_if))
            .expect("remove")
    );
    assert!(
        rt.block_on(x.handle.snapshot())
            .expect("snapshot")
            .state
            .interfaces
            .is_empty()
    );
    wait(&rt, "y to drop x", async || {
        let s = y.handle.snapshot().await.ok()?;
        let gone = !full_with(&s, x_id);
        let withdrawn = !s
            .rib
            .routes
            .contains_key(&"2001:db8:1::/64".parse().expect("prefix"));
        (gone && withdrawn).then_some(())
    });
    let spec = InterfaceSpec::new(&link.a_if, InterfaceConfig::default());
    assert_eq!(
        rt.block_on(x.handle.add_interface(spec)).expect("add"),
        x_ifindex
    );
    wait(&rt, "x Full with y again", async || {
        let s = x.handle.snapshot().await.ok()?;
        full_with(&s, y_id).then_some(())
    });

    // Stub prefixes change at run time too.
    let extra: Ipv6Net = "2001:db8:2:1::/64".parse().expect("prefix");
    rt.block_on(y.handle.set_stub_prefixes(vec![y_prefix, extra]))
        .expect("set stubs");
    wait(&rt, "y's new stub prefix at x", async || {
        let s = x.handle.snapshot().await.ok()?;
        s.rib.routes.contains_key(&extra).then_some(())
    });

    let x_instance = x.shutdown();
    assert_eq!(x_instance.router_id(), x_id);
    assert!(
        x_instance
            .interfaces()
            .values()
            .all(|i| i.neighbors.is_empty())
    );
    assert_eq!(y.shutdown().router_id(), y_id);
}
