//! Interop with BIRD 2: our `ospfd` and BIRD in lab namespaces, talking
//! OSPFv3 over veths with link-local addresses only.
//!
//! - `pair`: one link; both Full, the same LSDB, each routes to the other's
//!   stub prefix via the other's link-local address.
//! - `pair_broadcast_with_us_as_dr`: the same as a broadcast link where we
//!   are DR: BIRD accepts our Network-LSA.
//! - `square`: a 4-cycle with BIRD on one corner; the opposite corner (ours)
//!   has both equal-cost paths to BIRD's prefix, and BIRD both to ours.
//! - `mesh6`: 3 BIRD and 3 of ours in a 2-edge-connected mesh; after a loud
//!   cut every router still reaches every stub prefix at the new shortest
//!   cost, and nothing uses the cut link.
//!
//! Needs root, `ip`/`tc`/`ethtool`/`nsenter` (the lab) and BIRD 2 at
//! `/usr/sbin/bird`. Waits are bounded (polls every 200 ms).
#![cfg(feature = "driver")]

mod common;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;

use common::bird::LinkType;
use common::routers::{Bird, Hops, Ours, Routes, wait_identical_lsdbs};
use common::{link_local, rid, stub, wait_until};
use routing::packet::lsa::header::LsaType;

/// Metric BIRD gives a `stubnet` by default.
const BIRD_STUB_METRIC: u32 = 10;
/// Metric of our stub prefixes in our Intra-Area-Prefix-LSA.
const OUR_STUB_METRIC: u32 = 0;

/// How long adjacencies and routes may take to settle (hello 1 s, dead 3 s).
const CONVERGE: Duration = Duration::from_secs(30);

#[test]
fn pair() {
    let topo =
        lab::Topology::new()
            .node("ours")
            .node("bird")
            .link("ours", "bird", lab::Wire::Direct);
    let lab = lab::Lab::build("bird-pair", &topo).expect("build lab");
    let link = lab.link("ours", "bird").clone();
    let our_ll = link_local(&lab, "ours", &link.a_if);
    let bird_ll = link_local(&lab, "bird", &link.b_if);

    let bird = Bird::start(&lab, "bird", rid(2), &[&stub(2)]);
    let ours = Ours::start(&lab, "ours", rid(1), &[&stub(1)]);
    let describe = || format!("{}\n{}", ours.describe(), bird.describe(&lab));

    wait_until(
        "Full on both sides",
        CONVERGE,
        || (ours.is_full_with(rid(2)) && bird.is_full_with(&lab, rid(1))).then_some(()),
        describe,
    );

    wait_identical_lsdbs(&ours, &bird, &lab, CONVERGE);

    // Each routes to the other's stub prefix via the other's link-local.
    let want_ours: Hops = [(link.a_if.clone(), bird_ll)].into();
    let want_bird: Hops = [(link.b_if.clone(), our_ll)].into();
    wait_until(
        "stub prefixes learned with link-local next hops",
        CONVERGE,
        || {
            let o = ours.routes()?;
            let b = bird.routes(&lab)?;
            (o.get(&stub(2)).map(|r| &r.1) == Some(&want_ours)
                && b.get(&stub(1)).map(|r| &r.1) == Some(&want_bird))
            .then_some(())
        },
        describe,
    );
    // At the right cost: one link (10) plus the prefix's own metric, which
    // is 10 for a BIRD stubnet and 0 for our stub prefixes.
    let o = ours.routes().expect("routes");
    let b = bird.routes(&lab).expect("routes");
    assert_eq!(
        o[&stub(2)].0,
        10 + BIRD_STUB_METRIC,
        "our cost to BIRD's stub"
    );
    assert_eq!(
        b[&stub(1)].0,
        10 + OUR_STUB_METRIC,
        "BIRD's cost to our stub"
    );
}

#[test]
fn pair_broadcast_with_us_as_dr() {
    let topo =
        lab::Topology::new()
            .node("ours")
            .node("bird")
            .link("ours", "bird", lab::Wire::Direct);
    let lab = lab::Lab::build("bird-bcast", &topo).expect("build lab");
    let link = lab.link("ours", "bird").clone();
    let bird_ll = link_local(&lab, "bird", &link.b_if);

    // We start alone, so after the Wait timer we are DR and BIRD, arriving
    // later, keeps us (no preemption, RFC 2328 §9.4): our DR code and our
    // Network-LSA must satisfy BIRD.
    let ours = Ours::start_on(&lab, "ours", rid(1), &[&stub(1)], LinkType::Broadcast);
    wait_until(
        "us as DR of the lone link",
        CONVERGE,
        || {
            let s = ours.snapshot()?;
            s.state
                .interfaces
                .iter()
                .any(|i| i.state == routing::interface::ism::State::Dr)
                .then_some(())
        },
        || ours.describe(),
    );
    let bird = Bird::start_on(&lab, "bird", rid(2), &[&stub(2)], LinkType::Broadcast);
    let describe = || format!("{}\n{}", ours.describe(), bird.describe(&lab));
    wait_until(
        "Full on both sides, with us as DR",
        CONVERGE,
        || {
            (ours.is_full_with(rid(2))
                && bird.neighbor_state(&lab, rid(1)).as_deref() == Some("Full/DR"))
            .then_some(())
        },
        describe,
    );
    wait_until(
        "identical LSDBs with our Network-LSA",
        CONVERGE,
        || {
            let (o, b) = (ours.lsdb()?, bird.lsdb(&lab)?);
            let network = o
                .iter()
                .any(|k| k.ls_type == LsaType::NETWORK && k.adv_router == rid(1));
            (o == b && network).then_some(())
        },
        || {
            format!(
                "ours {:#?}\nBIRD {:#?}",
                ours.lsdb().unwrap_or_default(),
                bird.lsdb(&lab).unwrap_or_default()
            )
        },
    );
    let want_ours: Hops = [(link.a_if.clone(), bird_ll)].into();
    wait_until(
        "stub prefixes learned across the broadcast link",
        CONVERGE,
        || {
            let o = ours.routes()?;
            let b = bird.routes(&lab)?;
            (o.get(&stub(2)).map(|r| &r.1) == Some(&want_ours) && b.contains_key(&stub(1)))
                .then_some(())
        },
        describe,
    );
}

#[test]
fn square() {
    // a - b - c - d - a with BIRD on c; a is the corner opposite c.
    let topo = lab::Topology::new()
        .node("a")
        .node("b")
        .node("c")
        .node("d")
        .link("a", "b", lab::Wire::Direct)
        .link("b", "c", lab::Wire::Direct)
        .link("c", "d", lab::Wire::Direct)
        .link("d", "a", lab::Wire::Direct);
    let lab = lab::Lab::build("bird-square", &topo).expect("build lab");
    let bird = Bird::start(&lab, "c", rid(3), &[&stub(3)]);
    let ours: Vec<Ours> = [("a", 1), ("b", 2), ("d", 4)]
        .into_iter()
        .map(|(n, i)| Ours::start(&lab, n, rid(i), &[&stub(i)]))
        .collect();
    let a = &ours[0];
    let describe = || {
        let mut s: Vec<String> = ours.iter().map(Ours::describe).collect();
        s.push(bird.describe(&lab));
        s.join("\n")
    };

    // a's two ways to c: via b and via d, each to that neighbour's link-local.
    let ab = lab.link("a", "b").clone();
    let da = lab.link("d", "a").clone();
    let want_a: Hops = [
        (ab.a_if.clone(), link_local(&lab, "b", &ab.b_if)),
        (da.b_if.clone(), link_local(&lab, "d", &da.a_if)),
    ]
    .into();
    // And c's two ways to a, through BIRD's ECMP.
    let bc = lab.link("b", "c").clone();
    let cd = lab.link("c", "d").clone();
    let want_c: Hops = [
        (bc.b_if.clone(), link_local(&lab, "b", &bc.a_if)),
        (cd.a_if.clone(), link_local(&lab, "d", &cd.b_if)),
    ]
    .into();

    wait_until(
        "both equal-cost paths across the square, in both directions",
        CONVERGE,
        || {
            let ra = a.routes()?;
            let rc = bird.routes(&lab)?;
            let (cost_a, hops_a) = ra.get(&stub(3))?;
            let (cost_c, hops_c) = rc.get(&stub(1))?;
            (*hops_a == want_a
                && *hops_c == want_c
                && *cost_a == 20 + BIRD_STUB_METRIC
                && *cost_c == 20 + OUR_STUB_METRIC)
                .then_some(())
        },
        describe,
    );
}

/// Who runs where in the mixed mesh, and its links.
const MESH_NODES: [(&str, u8, bool); 6] = [
    ("n1", 1, false),
    ("n2", 2, true),
    ("n3", 3, false),
    ("n4", 4, true),
    ("n5", 5, false),
    ("n6", 6, true),
];
/// A ring with three chords: every node has degree 3, no single cut
/// disconnects it, and there are ours-BIRD, ours-ours (n3-n5) and BIRD-BIRD
/// (n2-n6) adjacencies.
const MESH_LINKS: [(&str, &str); 9] = [
    ("n1", "n2"),
    ("n2", "n3"),
    ("n3", "n4"),
    ("n4", "n5"),
    ("n5", "n6"),
    ("n6", "n1"),
    ("n1", "n4"),
    ("n2", "n6"),
    ("n3", "n5"),
];

/// Hop counts from `from` to every node over `links`.
fn hops_from(from: &str, links: &[(&str, &str)]) -> BTreeMap<String, u32> {
    let mut dist = BTreeMap::from([(from.to_owned(), 0)]);
    let mut queue = VecDeque::from([from.to_owned()]);
    while let Some(n) = queue.pop_front() {
        let d = dist[&n];
        for (x, y) in links {
            let next = if *x == n {
                y
            } else if *y == n {
                x
            } else {
                continue;
            };
            if !dist.contains_key(*next) {
                dist.insert((*next).to_owned(), d + 1);
                queue.push_back((*next).to_owned());
            }
        }
    }
    dist
}

/// One router of the mesh, whichever implementation.
enum Router {
    Ours(Ours),
    Bird(Bird),
}

impl Router {
    fn routes(&self, lab: &lab::Lab) -> Option<Routes> {
        match self {
            Router::Ours(o) => o.routes(),
            Router::Bird(b) => b.routes(lab),
        }
    }

    fn describe(&self, lab: &lab::Lab) -> String {
        match self {
            Router::Ours(o) => o.describe(),
            Router::Bird(b) => b.describe(lab),
        }
    }
}

/// Return what is wrong with `node`'s routes: every other node's stub must
/// be there, at the cost of the shortest path over `links` (10 per link,
/// plus the stub's own metric), with no next hop on `banned` interfaces.
fn check_routes(
    node: &str,
    routes: &Routes,
    links: &[(&str, &str)],
    banned: &BTreeSet<String>,
) -> Result<(), String> {
    let dist = hops_from(node, links);
    for (other, i, is_bird) in MESH_NODES {
        if other == node {
            continue;
        }
        let stub_metric = if is_bird {
            BIRD_STUB_METRIC
        } else {
            OUR_STUB_METRIC
        };
        let want_cost = 10 * dist[other] + stub_metric;
        let Some((cost, hops)) = routes.get(&stub(i)) else {
            return Err(format!("{node}: no route to {other}'s {}", stub(i)));
        };
        if *cost != want_cost {
            return Err(format!(
                "{node}: cost {cost} to {other}'s {}, want {want_cost}",
                stub(i)
            ));
        }
        if hops.is_empty() || hops.iter().any(|(iface, _)| banned.contains(iface)) {
            return Err(format!("{node}: next hops {hops:?} to {other}"));
        }
    }
    Ok(())
}

#[test]
fn mesh6_routes_around_a_cut() {
    let mut topo = lab::Topology::new();
    for (n, _, _) in MESH_NODES {
        topo = topo.node(n);
    }
    for (a, b) in MESH_LINKS {
        topo = topo.link(a, b, lab::Wire::Direct);
    }
    let lab = lab::Lab::build("bird-mesh6", &topo).expect("build lab");
    let routers: Vec<(&str, Router)> = MESH_NODES
        .iter()
        .map(|&(n, i, is_bird)| {
            let stubs = [stub(i)];
            let stubs: Vec<&str> = stubs.iter().map(String::as_str).collect();
            let r = if is_bird {
                Router::Bird(Bird::start(&lab, n, rid(i), &stubs))
            } else {
                Router::Ours(Ours::start(&lab, n, rid(i), &stubs))
            };
            (n, r)
        })
        .collect();
    let describe = || {
        routers
            .iter()
            .map(|(_, r)| r.describe(&lab))
            .collect::<Vec<_>>()
            .join("\n")
    };
    let converged = |links: &[(&str, &str)], banned: &BTreeSet<String>| {
        routers.iter().try_for_each(|(n, r)| {
            let routes = r.routes(&lab).ok_or_else(|| format!("{n}: no state yet"))?;
            check_routes(n, &routes, links, banned)
        })
    };

    wait_until(
        "every router at the shortest cost to every stub",
        CONVERGE,
        || converged(&MESH_LINKS, &BTreeSet::new()).ok(),
        || {
            format!(
                "{:?}\n{}",
                converged(&MESH_LINKS, &BTreeSet::new()),
                describe()
            )
        },
    );

    // Cut an ours-BIRD link of the ring: n1 and n2 lose their direct path
    // and every path that used it gets longer.
    let cut = lab.link("n1", "n2").clone();
    lab.cut_loud("n1", "n2").expect("cut n1-n2");
    let remaining: Vec<(&str, &str)> = MESH_LINKS
        .iter()
        .copied()
        .filter(|&(a, b)| !cut.joins(a, b))
        .collect();
    // Only the two ends had the cut link; their interface on it must carry
    // no route any more.
    let after_cut = || {
        routers.iter().try_for_each(|(n, r)| {
            let routes = r.routes(&lab).ok_or_else(|| format!("{n}: no state"))?;
            let banned: BTreeSet<String> = if *n == cut.a {
                [cut.a_if.clone()].into()
            } else if *n == cut.b {
                [cut.b_if.clone()].into()
            } else {
                BTreeSet::new()
            };
            check_routes(n, &routes, &remaining, &banned)
        })
    };
    wait_until(
        "every router routed around the cut n1-n2",
        CONVERGE,
        || after_cut().ok(),
        || format!("{:?}\n{}", after_cut(), describe()),
    );
    eprintln!("{}", describe());
}
