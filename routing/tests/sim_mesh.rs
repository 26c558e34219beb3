//! Deterministic simulation of a 200-router partial mesh (degree 2-5) with
//! simulated links and clock. Checks, after start-up and after every
//! disruption (links cut with and without carrier loss, routers killed, a
//! partition and its healing):
//!
//! - every connected component's LSDBs hold the same LSA instances;
//! - every router's RIB equals shortest paths computed independently here
//!   by BFS on the generated graph (all costs equal), ECMP sets included;
//!   once with IPv6 and once with an IPv4 instance (RFC 5838), whose
//!   next hops are the same IPv6 link-local addresses;
//! - the RIB rebuilt from `RibChanged` diffs equals the instance's RIB.
//!
//! `SIM_TRACE='[router{n=10}]=trace'` logs one router's view of the heal.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use routing::neighbor::nsm;
use routing::sim::{Sim, link_local, router_id};
use routing::{AddressFamily, InstanceConfig, Ipv6Net, NextHop, af};

const ROUTERS: usize = 200;
const COST: u32 = 10;

/// Router `n`'s pod prefix, as the instance of family `af` carries it.
fn pod(af: AddressFamily, n: usize) -> Ipv6Net {
    match af {
        AddressFamily::Ipv6 => format!("fd00:{:x}::/64", n + 1).parse().expect("prefix"),
        AddressFamily::Ipv4 { .. } => {
            af::ipv4_to_wire(format!("198.18.{n}.0/24").parse().expect("prefix"))
        }
    }
}

/// Router `n`'s host prefix, as the instance of family `af` carries it.
fn host(af: AddressFamily, n: usize) -> Ipv6Net {
    match af {
        AddressFamily::Ipv6 => format!("fd00:ffff::{:x}/128", n + 1)
            .parse()
            .expect("prefix"),
        AddressFamily::Ipv4 { .. } => {
            af::ipv4_to_wire(format!("198.19.255.{}/32", n + 1).parse().expect("prefix"))
        }
    }
}

/// Generate a connected partial mesh: a ring over a random order, plus
/// chords to nearby ring positions until each node reaches its degree target.
fn generate(rng: &mut ChaCha8Rng, n: usize) -> Vec<(usize, usize)> {
    let mut order: Vec<usize> = (0..n).collect();
    order.shuffle(rng);
    let mut edges = BTreeSet::new();
    let mut degree = vec![0usize; n];
    let add =
        |a: usize, b: usize, edges: &mut BTreeSet<(usize, usize)>, degree: &mut Vec<usize>| {
            let e = (a.min(b), a.max(b));
            if a != b && !edges.contains(&e) {
                edges.insert(e);
                degree[a] += 1;
                degree[b] += 1;
            }
        };
    for i in 0..n {
        add(order[i], order[(i + 1) % n], &mut edges, &mut degree);
    }
    let target: Vec<usize> = (0..n).map(|_| rng.gen_range(2..=5)).collect();
    for _ in 0..n * 4 {
        let i = rng.gen_range(0..n);
        let j = (i + rng.gen_range(2..=10)) % n;
        let (a, b) = (order[i], order[j]);
        if degree[a] < target[a] && degree[b] < target[b] && degree[a] < 5 && degree[b] < 5 {
            add(a, b, &mut edges, &mut degree);
        }
    }
    edges.into_iter().collect()
}

/// Adjacency of the live graph: router -> [(my ifindex, neighbour, its ifindex)].
fn live_graph(sim: &Sim) -> Vec<Vec<(u32, usize, u32)>> {
    let mut adj = vec![Vec::new(); sim.routers.len()];
    for link in &sim.links {
        if !link.up {
            continue;
        }
        let [(a, ia), (b, ib)] = [link.ends[0], link.ends[1]];
        if sim.alive(a) && sim.alive(b) {
            adj[a].push((ia, b, ib));
            adj[b].push((ib, a, ia));
        }
    }
    adj
}

fn bfs(adj: &[Vec<(u32, usize, u32)>], from: usize) -> Vec<u32> {
    let mut dist = vec![u32::MAX; adj.len()];
    dist[from] = 0;
    let mut q = VecDeque::from([from]);
    while let Some(u) = q.pop_front() {
        for &(_, v, _) in &adj[u] {
            if dist[v] == u32::MAX {
                dist[v] = dist[u] + 1;
                q.push_back(v);
            }
        }
    }
    dist
}

/// Check the whole simulation against the reference; describe the first problems.
fn check(sim: &Sim, af: AddressFamily) -> Result<(), String> {
    let adj = live_graph(sim);
    let alive: Vec<usize> = (0..sim.routers.len()).filter(|&r| sim.alive(r)).collect();
    // dist_to[d][x] = hops from x to d.
    let dist_to: BTreeMap<usize, Vec<u32>> = alive.iter().map(|&d| (d, bfs(&adj, d))).collect();
    let mut problems = Vec::new();
    for &r in &alive {
        let inst = sim.instance(r);
        if sim.routers[r].rib != *inst.rib() {
            problems.push(format!(
                "router {r}: RIB from diffs differs from instance RIB"
            ));
        }
        let mut expected = BTreeMap::new();
        for &d in &alive {
            let dd = &dist_to[&d];
            if d == r || dd[r] == u32::MAX {
                continue;
            }
            let hops: BTreeSet<NextHop> = adj[r]
                .iter()
                .filter(|&&(_, n, _)| dd[n] == dd[r] - 1)
                .map(|&(ifindex, n, nif)| NextHop {
                    ifindex,
                    addr: link_local(n, nif),
                })
                .collect();
            expected.insert(pod(af, d), (dd[r] * COST, hops.clone()));
            expected.insert(host(af, d), (dd[r] * COST, hops));
        }
        let got: BTreeMap<Ipv6Net, (u32, BTreeSet<NextHop>)> = inst
            .rib()
            .routes
            .iter()
            .map(|(p, rt)| (*p, (rt.cost, rt.nexthops.clone())))
            .collect();
        if got != expected {
            let missing = expected.keys().filter(|p| !got.contains_key(p)).count();
            let extra = got.keys().filter(|p| !expected.contains_key(p)).count();
            let wrong: Vec<_> = expected
                .iter()
                .filter(|(p, e)| got.get(p).is_some_and(|g| g != *e))
                .take(2)
                .map(|(p, e)| format!("{p}: want {e:?} got {:?}", got[p]))
                .collect();
            problems.push(format!(
                "router {r}: {missing} missing, {extra} extra, wrong: {wrong:?}"
            ));
        }
    }
    // Every live link carries a Full adjacency.
    for (r, ports) in adj.iter().enumerate() {
        for &(ifindex, n, _) in ports {
            let iface = &sim.instance(r).interfaces()[&ifindex];
            let state = iface.neighbors.get(&router_id(n)).map(|x| x.state);
            if state != Some(nsm::State::Full) {
                problems.push(format!(
                    "router {r} if {ifindex}: no Full adjacency with {n}: {state:?}"
                ));
            }
        }
    }
    // LSDBs agree within each connected component.
    let mut seen = BTreeSet::new();
    for &r in &alive {
        if seen.contains(&r) {
            continue;
        }
        let comp: Vec<usize> = alive
            .iter()
            .copied()
            .filter(|&x| dist_to[&r][x] != u32::MAX)
            .collect();
        seen.extend(comp.iter().copied());
        let db = |x: usize| -> BTreeSet<(routing::packet::lsa::header::LsaKey, u32, u16)> {
            sim.instance(x)
                .lsdb()
                .area()
                .values()
                .filter(|e| !e.is_max_age(sim.now))
                .map(|e| (e.lsa.header.key(), e.lsa.header.seq, e.lsa.header.checksum))
                .collect()
        };
        let first = db(comp[0]);
        for &x in &comp[1..] {
            let other = db(x);
            if other != first {
                let only_first: Vec<_> = first
                    .difference(&other)
                    .take(3)
                    .map(|(k, s, c)| format!("{k} {s:x} {c:x}"))
                    .collect();
                let only_other: Vec<_> = other
                    .difference(&first)
                    .take(3)
                    .map(|(k, s, c)| format!("{k} {s:x} {c:x}"))
                    .collect();
                problems.push(format!(
                    "router {x}: LSDB differs from router {}: {only_first:?} vs {only_other:?}",
                    comp[0]
                ));
                break;
            }
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        let n = problems.len();
        problems.sort_by_key(|p| !p.contains("LSDB") && !p.contains("adjacency"));
        problems.truncate(8);
        Err(format!("{n} problems, first: {problems:#?}"))
    }
}

/// Run until `check` passes (polled every second) or `limit_ms` passes;
/// return the time it took.
fn converge(sim: &mut Sim, af: AddressFamily, what: &str, limit_ms: u64) -> u64 {
    let start = sim.now;
    loop {
        sim.run_for(1000);
        if check(sim, af).is_ok() {
            // Stay converged: run a little longer and check again.
            let took = sim.now.since(start);
            sim.run_for(5_000);
            check(sim, af).unwrap_or_else(|e| panic!("{what}: unstable after converging: {e}"));
            eprintln!("{what}: converged in {took} ms (simulated)");
            return took;
        }
        if sim.now.since(start) > limit_ms {
            panic!(
                "{what}: no convergence in {limit_ms} ms: {}",
                check(sim, af).unwrap_err()
            );
        }
    }
}

#[test]
fn mesh_of_200_converges_and_heals() {
    mesh_of_200(AddressFamily::Ipv6);
}

#[test]
fn ipv4_mesh_of_200_converges_and_heals() {
    mesh_of_200(AddressFamily::Ipv4 {
        interface_address: None,
    });
}

fn mesh_of_200(af: AddressFamily) {
    let wall = std::time::Instant::now();
    let mut rng = ChaCha8Rng::seed_from_u64(0x6b75_6265);
    let edges = generate(&mut rng, ROUTERS);
    let mut sim = Sim::new();
    sim.interface_config.instance_id = af.default_instance_id();
    for n in 0..ROUTERS {
        sim.add_router(InstanceConfig {
            router_id: router_id(n),
            af,
            stub_prefixes: vec![pod(af, n), host(af, n)],
            ..Default::default()
        });
    }
    let mut link_of = BTreeMap::new();
    for &(a, b) in &edges {
        let l = sim.add_link(a, b, rng.gen_range(1..=3));
        link_of.insert((a, b), l);
    }
    let degrees: Vec<usize> = (0..ROUTERS).map(|r| sim.routers[r].ports.len()).collect();
    assert!(
        degrees.iter().all(|d| (2..=5).contains(d)),
        "degrees {degrees:?}"
    );
    eprintln!("{} routers, {} links", ROUTERS, edges.len());

    converge(&mut sim, af, "start-up", 120_000);

    // Cut 10 links with carrier loss and 10 silently.
    let mut links: Vec<usize> = (0..sim.links.len()).collect();
    links.shuffle(&mut rng);
    for (i, &l) in links.iter().take(20).enumerate() {
        sim.cut_link(l, i % 2 == 0);
    }
    converge(&mut sim, af, "20 links cut", 60_000);

    // Kill 10 routers.
    let mut victims: Vec<usize> = (0..ROUTERS).collect();
    victims.shuffle(&mut rng);
    for &r in victims.iter().take(10) {
        sim.kill_router(r);
    }
    converge(&mut sim, af, "10 routers killed", 60_000);

    // Partition: a BFS ball around one live router, all its border links cut.
    let adj = live_graph(&sim);
    let centre = (0..ROUTERS).find(|&r| sim.alive(r)).expect("a live router");
    let dist = bfs(&adj, centre);
    let mut by_dist: Vec<usize> = (0..ROUTERS).filter(|&r| dist[r] != u32::MAX).collect();
    by_dist.sort_by_key(|&r| dist[r]);
    let side: BTreeSet<usize> = by_dist.iter().take(by_dist.len() / 3).copied().collect();
    let mut border = Vec::new();
    for (l, link) in sim.links.iter().enumerate() {
        let (a, b) = (link.ends[0].0, link.ends[1].0);
        if link.up && side.contains(&a) != side.contains(&b) {
            border.push(l);
        }
    }
    for &l in &border {
        sim.cut_link(l, false);
    }
    converge(&mut sim, af, "partition", 60_000);
    let comps = {
        let adj = live_graph(&sim);
        let d = bfs(&adj, centre);
        (0..ROUTERS)
            .filter(|&r| sim.alive(r) && d[r] == u32::MAX)
            .count()
    };
    assert!(comps > 0, "the partition split the mesh");

    if let Ok(filter) = std::env::var("SIM_TRACE") {
        tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .try_init()
            .ok();
    }
    for &l in &border {
        sim.restore_link(l);
    }
    converge(&mut sim, af, "partition healed", 60_000);

    let drops: u64 = (0..ROUTERS)
        .filter(|&r| sim.alive(r))
        .map(|r| sim.instance(r).drop_counters().values().sum::<u64>())
        .sum();
    // Unique router ids and no restarts: nobody ever gets a newer copy of
    // its own LSA back (RFC 2328 §13.4), let alone fights over one.
    for r in (0..ROUTERS).filter(|&r| sim.alive(r)) {
        let st = sim.instance(r).state();
        assert_eq!(
            (st.self_originated_newer, st.self_originated_repeat),
            (0, 0),
            "router {r}: spurious newer self-originated LSAs"
        );
    }
    let spf: u64 = (0..ROUTERS)
        .filter(|&r| sim.alive(r))
        .map(|r| sim.instance(r).spf_runs())
        .sum();
    eprintln!(
        "simulated {} s, {} packets delivered, {} SPF runs, {} drops, wall {:?}",
        sim.now.0 / 1000,
        sim.delivered,
        spf,
        drops,
        wall.elapsed()
    );
}
