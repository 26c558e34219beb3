//! Declarative description of a lab: which nodes exist and which are cabled.
//!
//! A [`Topology`] is plain data; [`crate::Lab::build`] turns it into
//! namespaces and veths and is where it gets validated, so building one never
//! fails and tests can write topologies as one expression.

use std::collections::BTreeSet;

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// How the two ends of a link are joined.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Wire {
    /// One veth pair straight from node to node: cheapest, but it can only
    /// be cut loudly (carrier down), because XDP-redirected frames bypass
    /// every hook on the sending side.
    Direct,
    /// A small namespace in the middle that carries frames between two veth
    /// pairs and can stop doing so while both node ends keep carrier; the
    /// only way to lose frames "on the wire" that XDP cannot bypass.
    Cable,
}

/// One point-to-point link of a [`Topology`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkSpec {
    pub a: String,
    pub b: String,
    pub wire: Wire,
}

/// Nodes and the links between them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Topology {
    pub nodes: Vec<String>,
    pub links: Vec<LinkSpec>,
}

/// Largest number of links a generated mesh gives a node (a PC with 5 NICs).
pub const MESH_MAX_DEGREE: usize = 5;
/// Smallest number of links a generated mesh gives a node, so that losing
/// any one link never isolates a node by itself.
pub const MESH_MIN_DEGREE: usize = 2;

impl Topology {
    /// Return an empty topology.
    pub fn new() -> Self {
        Self::default()
    }

    /// Add a node (builder style).
    pub fn node(mut self, name: &str) -> Self {
        self.nodes.push(name.to_owned());
        self
    }

    /// Add a link between two nodes (builder style).
    pub fn link(mut self, a: &str, b: &str, wire: Wire) -> Self {
        self.links.push(LinkSpec {
            a: a.to_owned(),
            b: b.to_owned(),
            wire,
        });
        self
    }

    /// Add `names` as a line, each linked to the next (nodes not there yet
    /// are added).
    pub fn line(mut self, names: &[&str], wire: Wire) -> Self {
        for n in names {
            if !self.nodes.iter().any(|x| x == n) {
                self = self.node(n);
            }
        }
        for pair in names.windows(2) {
            self = self.link(pair[0], pair[1], wire);
        }
        self
    }

    /// Add `names` as a ring: a line closed by a link from the last to the
    /// first.
    pub fn ring(self, names: &[&str], wire: Wire) -> Self {
        let (first, last) = match names {
            [first, .., last] if names.len() > 2 => (*first, *last),
            _ => return self.line(names, wire),
        };
        self.line(names, wire).link(last, first, wire)
    }

    /// Nodes `n0..n{n-1}` in a ring with extra `chords` across it, by node
    /// number.
    pub fn ring_with_chords(n: usize, chords: &[(usize, usize)], wire: Wire) -> Self {
        let names: Vec<String> = (0..n).map(|i| format!("n{i}")).collect();
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        let mut topo = Topology::new().ring(&refs, wire);
        for (a, b) in chords {
            topo = topo.link(&names[*a], &names[*b], wire);
        }
        topo
    }

    /// Generate a random partial mesh like a warehouse floor: nodes
    /// `n0..n{n-1}`, connected, every node with 2 to 5 links, at least one
    /// cycle, and the same graph for the same `(n, seed)`.
    ///
    /// Below 3 nodes the degree bounds cannot hold without parallel links,
    /// so `n = 2` gives a single link and `n < 2` no links.
    pub fn partial_mesh(n: usize, seed: u64, wire: Wire) -> Self {
        let mut topo = Topology::new();
        for i in 0..n {
            topo = topo.node(&format!("n{i}"));
        }
        for (a, b) in mesh_edges(n, seed) {
            topo = topo.link(&format!("n{a}"), &format!("n{b}"), wire);
        }
        topo
    }
}

/// Return the edges `(a, b)` with `a < b`, sorted, of the mesh for `(n, seed)`.
///
/// A random tree makes it connected (each new node hangs off an earlier one
/// that still has room), then every leaf gets a second link (preferably to
/// another leaf), which closes at least one cycle, then a few random chords
/// add variety. Attachment stops at degree 4 so leaves always find a partner.
fn mesh_edges(n: usize, seed: u64) -> Vec<(usize, usize)> {
    match n {
        0 | 1 => return Vec::new(),
        2 => return vec![(0, 1)],
        _ => {}
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    // A few independent attempts; the construction below succeeds at the
    // first one in practice, the ring is a last resort that always holds.
    for _ in 0..8 {
        if let Some(edges) = try_mesh(n, &mut rng) {
            return edges;
        }
    }
    let mut ring: Vec<(usize, usize)> = (0..n).map(|i| ordered(i, (i + 1) % n)).collect();
    ring.sort_unstable();
    ring
}

fn try_mesh(n: usize, rng: &mut ChaCha8Rng) -> Option<Vec<(usize, usize)>> {
    let mut order: Vec<usize> = (0..n).collect();
    order.shuffle(rng);
    let mut g = Graph::new(n);

    // Random tree over a shuffled order, attach targets capped below the max.
    for i in 1..n {
        let room: Vec<usize> = order[..i]
            .iter()
            .copied()
            .filter(|&v| g.degree(v) < MESH_MAX_DEGREE - 1)
            .collect();
        let parent = *room.choose(rng)?;
        g.add(order[i], parent);
    }

    // Give every node its second link.
    let mut needy: Vec<usize> = (0..n).filter(|&v| g.degree(v) < MESH_MIN_DEGREE).collect();
    needy.shuffle(rng);
    for u in needy {
        if g.degree(u) >= MESH_MIN_DEGREE {
            continue; // paired up with an earlier leaf
        }
        let candidates: Vec<usize> = (0..n).filter(|&v| g.can_add(u, v)).collect();
        let min = candidates.iter().map(|&v| g.degree(v)).min()?;
        let lowest: Vec<usize> = candidates
            .iter()
            .copied()
            .filter(|&v| g.degree(v) == min)
            .collect();
        let v = *lowest.choose(rng)?;
        g.add(u, v);
    }

    // A few chords, bounded in attempts.
    let extra = rng.gen_range(0..=n / 3);
    let mut added = 0;
    for _ in 0..extra * 8 {
        if added == extra {
            break;
        }
        let (u, v) = (rng.gen_range(0..n), rng.gen_range(0..n));
        if g.can_add(u, v) {
            g.add(u, v);
            added += 1;
        }
    }
    Some(g.edges.into_iter().collect())
}

fn ordered(a: usize, b: usize) -> (usize, usize) {
    if a < b { (a, b) } else { (b, a) }
}

/// Simple undirected graph with degree bookkeeping.
struct Graph {
    degree: Vec<usize>,
    edges: BTreeSet<(usize, usize)>,
}

impl Graph {
    fn new(n: usize) -> Self {
        Graph {
            degree: vec![0; n],
            edges: BTreeSet::new(),
        }
    }

    fn degree(&self, v: usize) -> usize {
        self.degree[v]
    }

    fn can_add(&self, u: usize, v: usize) -> bool {
        u != v
            && self.degree[u] < MESH_MAX_DEGREE
            && self.degree[v] < MESH_MAX_DEGREE
            && !self.edges.contains(&ordered(u, v))
    }

    fn add(&mut self, u: usize, v: usize) {
        if self.edges.insert(ordered(u, v)) {
            self.degree[u] += 1;
            self.degree[v] += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_and_rings() {
        let t = Topology::new().line(&["a", "b", "c"], Wire::Direct);
        assert_eq!(t.nodes, ["a", "b", "c"]);
        let pairs: Vec<(&str, &str)> = t
            .links
            .iter()
            .map(|l| (l.a.as_str(), l.b.as_str()))
            .collect();
        assert_eq!(pairs, [("a", "b"), ("b", "c")]);
        let r = Topology::new()
            .node("g")
            .ring(&["a", "b", "c", "d"], Wire::Cable);
        assert_eq!(r.nodes, ["g", "a", "b", "c", "d"]);
        assert_eq!(r.links.len(), 4);
        assert_eq!((r.links[3].a.as_str(), r.links[3].b.as_str()), ("d", "a"));
        let c = Topology::ring_with_chords(8, &[(1, 4), (6, 0)], Wire::Direct);
        assert_eq!((c.nodes.len(), c.links.len()), (8, 10));
        assert_eq!((c.links[8].a.as_str(), c.links[8].b.as_str()), ("n1", "n4"));
    }
    use std::collections::BTreeMap;

    fn index(name: &str) -> usize {
        name.strip_prefix('n')
            .and_then(|s| s.parse().ok())
            .expect("node name nK")
    }

    fn check(n: usize, seed: u64) {
        let t = Topology::partial_mesh(n, seed, Wire::Cable);
        assert_eq!(t.nodes.len(), n);
        let mut adj: BTreeMap<usize, BTreeSet<usize>> =
            (0..n).map(|i| (i, BTreeSet::new())).collect();
        for l in &t.links {
            let (a, b) = (index(&l.a), index(&l.b));
            assert_ne!(a, b, "self link n={n} seed={seed}");
            assert!(
                adj.get_mut(&a).unwrap().insert(b),
                "parallel link n={n} seed={seed}"
            );
            adj.get_mut(&b).unwrap().insert(a);
            assert_eq!(l.wire, Wire::Cable);
        }
        for (v, peers) in &adj {
            let d = peers.len();
            assert!(
                (MESH_MIN_DEGREE..=MESH_MAX_DEGREE).contains(&d),
                "n={n} seed={seed}: node n{v} has degree {d}"
            );
        }
        // Connected: a search from n0 reaches everything.
        let mut seen = BTreeSet::from([0]);
        let mut stack = vec![0];
        while let Some(v) = stack.pop() {
            for &w in &adj[&v] {
                if seen.insert(w) {
                    stack.push(w);
                }
            }
        }
        assert_eq!(seen.len(), n, "n={n} seed={seed}: not connected");
        // A connected graph has a cycle exactly when it has at least n edges.
        assert!(t.links.len() >= n, "n={n} seed={seed}: no cycle");
    }

    #[test]
    fn partial_mesh_invariants() {
        for n in 3..=40 {
            for seed in 0..200 {
                check(n, seed);
            }
        }
    }

    #[test]
    fn partial_mesh_is_deterministic() {
        for n in 3..=40 {
            for seed in [0, 1, 42, u64::MAX] {
                assert_eq!(
                    Topology::partial_mesh(n, seed, Wire::Direct),
                    Topology::partial_mesh(n, seed, Wire::Direct)
                );
            }
        }
        // Different seeds give different meshes (for a mesh big enough).
        assert_ne!(
            Topology::partial_mesh(20, 1, Wire::Direct),
            Topology::partial_mesh(20, 2, Wire::Direct)
        );
    }

    #[test]
    fn partial_mesh_small() {
        assert!(Topology::partial_mesh(0, 7, Wire::Direct).nodes.is_empty());
        let one = Topology::partial_mesh(1, 7, Wire::Direct);
        assert_eq!((one.nodes.len(), one.links.len()), (1, 0));
        let two = Topology::partial_mesh(2, 7, Wire::Direct);
        assert_eq!((two.nodes.len(), two.links.len()), (2, 1));
    }

    #[test]
    fn builder() {
        let t = Topology::new()
            .node("a")
            .node("b")
            .link("a", "b", Wire::Direct);
        assert_eq!(t.nodes, ["a", "b"]);
        assert_eq!(
            t.links,
            [LinkSpec {
                a: "a".into(),
                b: "b".into(),
                wire: Wire::Direct
            }]
        );
    }
}
