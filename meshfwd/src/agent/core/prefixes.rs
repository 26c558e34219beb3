//! The node's prefixes: a /64 pod prefix carved out of the cluster prefix
//! with no coordinator, and the node's own /128 inside it.
//!
//! Each node hashes its router id to a candidate /64 (attempt 0). When a
//! router with a *higher* router id holds the candidate, the node tries the
//! next one (attempt 1, 2, ...). The rule's outcome depends only on the set
//! of router ids in the LSDB ([`assign`]), so every node computes every
//! node's prefix alike: the highest router id never moves, a lower one
//! steps aside, and a clash is settled before it is ever advertised.
//!
//! The node's own address is `::1` of its pod prefix (the CNI plugin's IPAM
//! skips `::` and `::1`), advertised as a /128 next to the /64 and put on
//! the local dummy device.
//!
//! IPv4 pod prefixes (a /24 by default, of an IPv4 cluster prefix) follow
//! the same rule over their own space ([`Ipv4Space`]): the rule needs only
//! the router ids, so every node computes every node's IPv4 prefix alike
//! too. The node's IPv4 address is `.1` of its pod prefix.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::{Ipv4Addr, Ipv6Addr},
};

use ipnet::{Ipv4Net, Ipv6Net};

use meshfwd_common::hash::stable_hash;

/// Attempts before giving up on finding a free /64 (the cluster is full).
pub const MAX_ATTEMPTS: u32 = 4096;

/// Return candidate number `attempt` for `router_id`'s pod /64 inside
/// `cluster` (which must be /60 or shorter). Subnet 0 of the cluster is
/// never handed out, so `cluster::/64` stays free for infrastructure.
pub fn pod_prefix_candidate(cluster: Ipv6Net, router_id: Ipv4Addr, attempt: u32) -> Ipv6Net {
    let bits = 64 - u32::from(cluster.prefix_len().min(63));
    let slots = 1u128 << bits;
    let h = u128::from(stable_hash(&[
        b"kubermesh/pod-prefix",
        &router_id.octets(),
        &attempt.to_be_bytes(),
    ]));
    // Map into 1..slots (slot 0 reserved).
    let slot = 1 + h % (slots - 1);
    let base = u128::from(cluster.network());
    Ipv6Net::new_assert(Ipv6Addr::from(base | (slot << 64)), 64)
}

/// Return the node's own address inside its pod prefix (`::1`).
pub fn node_address(pod_prefix: Ipv6Net) -> Ipv6Addr {
    Ipv6Addr::from(u128::from(pod_prefix.network()) | 1)
}

/// Where pod prefixes are carved from: the cluster prefix of a family and
/// the pod prefix's length.
pub trait PodSpace: Copy {
    type Net: Copy + Ord + std::fmt::Debug;
    /// Candidate number `attempt` for `router_id`.
    fn candidate(self, router_id: Ipv4Addr, attempt: u32) -> Self::Net;
    /// Whether `p` is a pod prefix of this space.
    fn holds(self, p: &Self::Net) -> bool;
}

/// The IPv6 space: /64s of the cluster prefix.
impl PodSpace for Ipv6Net {
    type Net = Ipv6Net;
    fn candidate(self, router_id: Ipv4Addr, attempt: u32) -> Ipv6Net {
        pod_prefix_candidate(self, router_id, attempt)
    }
    fn holds(self, p: &Ipv6Net) -> bool {
        p.prefix_len() == 64 && self.contains(p)
    }
}

/// The IPv4 space: prefixes of `pod_len` bits of `cluster`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv4Space {
    pub cluster: Ipv4Net,
    pub pod_len: u8,
}

impl PodSpace for Ipv4Space {
    type Net = Ipv4Net;
    /// Subnet 0 of the cluster is never handed out, as in IPv6. The space
    /// must hold at least two pod prefixes (checked with the settings).
    fn candidate(self, router_id: Ipv4Addr, attempt: u32) -> Ipv4Net {
        let bits = u32::from(self.pod_len.saturating_sub(self.cluster.prefix_len())).max(1);
        let slots = 1u64 << bits;
        let h = stable_hash(&[
            b"kubermesh/pod-prefix4",
            &router_id.octets(),
            &attempt.to_be_bytes(),
        ]);
        let slot = 1 + h % (slots - 1);
        let base = u32::from(self.cluster.network());
        let shift = 32 - u32::from(self.pod_len);
        let net = Ipv4Addr::from(base | ((slot as u32) << shift));
        Ipv4Net::new(net, self.pod_len).map_or(self.cluster, |n| n.trunc())
    }
    fn holds(self, p: &Ipv4Net) -> bool {
        p.prefix_len() == self.pod_len && self.cluster.contains(p)
    }
}

/// Return the node's own IPv4 address inside its pod prefix (`.1`).
pub fn node_address4(pod_prefix: Ipv4Net) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(pod_prefix.network()) | 1)
}

/// The automatic pod prefixes of a cluster: router id -> (prefix,
/// attempt), as every node computes it alike from the router ids in its
/// LSDB.
pub type Assignment<N = Ipv6Net> = BTreeMap<Ipv4Addr, (N, u32)>;

/// Settle the pod prefixes of `routers` the way the rule says, in one go.
///
/// The rule — a router moves off a candidate a higher router id holds —
/// has one fixed point, and it can be computed from the router ids alone:
/// the highest id takes its first candidate, the next takes its first
/// candidate not taken yet, and so on down. So a node needs no one to
/// tell it which router holds which prefix (the OSPF snapshot the agent
/// sees does not say, and the RIB hides prefixes we advertise ourselves):
/// every node with the same LSDB reaches the same answer, and a clash
/// never forms. `taken` are /64s held by someone outside the rule (a node
/// with a configured pod prefix); nobody is assigned those.
pub fn assign<S: PodSpace>(
    space: S,
    routers: &BTreeSet<Ipv4Addr>,
    taken: &BTreeSet<S::Net>,
) -> Assignment<S::Net> {
    let mut used: BTreeSet<S::Net> = taken.clone();
    let mut out = Assignment::new();
    for r in routers.iter().rev() {
        let choice = (0..MAX_ATTEMPTS)
            .map(|a| (space.candidate(*r, a), a))
            .find(|(p, _)| !used.contains(p));
        if let Some((p, a)) = choice {
            used.insert(p);
            out.insert(*r, (p, a));
        }
    }
    out
}

/// The pod prefix of `me`, given the other routers in the LSDB and the
/// prefixes the RIB shows them advertising. `None` when the cluster
/// prefix is full.
///
/// A /64 of the cluster in the RIB that no automatic choice explains is
/// held outside the rule (a configured pod prefix) and is avoided.
pub fn choose_pod_prefix<S: PodSpace>(
    space: S,
    me: Ipv4Addr,
    others: &BTreeSet<Ipv4Addr>,
    advertised: impl IntoIterator<Item = S::Net>,
) -> Option<(S::Net, u32)> {
    let mut routers = others.clone();
    routers.insert(me);
    let first = assign(space, &routers, &BTreeSet::new());
    // Our own choice explains nothing: the RIB never holds what we
    // advertise, so if it shows our choice, someone else has it.
    let explained: BTreeSet<S::Net> = first
        .iter()
        .filter(|(r, _)| **r != me)
        .map(|(_, (p, _))| *p)
        .collect();
    let foreign: BTreeSet<S::Net> = advertised
        .into_iter()
        .filter(|p| space.holds(p) && !explained.contains(p))
        .collect();
    if foreign.is_empty() {
        return first.get(&me).copied();
    }
    assign(space, &routers, &foreign).get(&me).copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> Ipv6Net {
        s.parse().unwrap()
    }

    /// Whether a prefix is unique local (fc00::/7).
    fn is_ula(p: &Ipv6Net) -> bool {
        "fc00::/7".parse::<Ipv6Net>().unwrap().contains(p)
    }

    fn rid(n: u32) -> Ipv4Addr {
        Ipv4Addr::from(n)
    }

    #[test]
    fn ula_and_serde() {
        assert!(is_ula(&net("fd6b:6d65:7368::/48")));
        assert!(!is_ula(&net("2001:db8::/32")));
        let json = serde_json::to_string(&net("fd00::/8")).unwrap();
        assert_eq!(json, "\"fd00::/8\"");
        assert_eq!(
            serde_json::from_str::<Ipv6Net>(&json).unwrap(),
            net("fd00::/8")
        );
    }

    #[test]
    fn containment() {
        let c = net("fd00:1:2::/48");
        assert!(c.contains(&net("fd00:1:2:ffff::/64")));
        assert!(!c.contains(&net("fd00:1:3::/64")));
        assert!(!c.contains(&net("fd00::/16")));
        assert!(c.contains(&"fd00:1:2::1".parse::<Ipv6Addr>().unwrap()));
    }

    #[test]
    fn candidates_are_64s_inside_the_cluster_and_never_subnet_zero() {
        let c = net("fd6b:6d65:7368::/48");
        for n in 0..2000 {
            let p = pod_prefix_candidate(c, rid(n), n % 3);
            assert_eq!(p.prefix_len(), 64);
            assert!(c.contains(&p));
            assert_ne!(p.network(), c.network());
        }
        // Pinned: a changed hash would move every pod of a running cluster.
        assert_eq!(
            pod_prefix_candidate(c, Ipv4Addr::new(10, 0, 0, 1), 0),
            net("fd6b:6d65:7368:89d2::/64")
        );
        // Stable: the same router id always starts from the same /64.
        assert_eq!(
            pod_prefix_candidate(c, rid(7), 0),
            pod_prefix_candidate(c, rid(7), 0)
        );
        assert_ne!(
            pod_prefix_candidate(c, rid(7), 0),
            pod_prefix_candidate(c, rid(7), 1)
        );
    }

    #[test]
    fn small_cluster_prefix_uses_every_slot_but_zero() {
        let c = net("fd00:0:0:10::/60");
        let seen: BTreeSet<Ipv6Net> = (0..500)
            .map(|n| pod_prefix_candidate(c, rid(n), 0))
            .collect();
        assert_eq!(seen.len(), 15);
    }

    #[test]
    fn node_address_is_one_of_the_pod_prefix() {
        assert_eq!(
            node_address(net("fd42:1:2:3::/64")),
            "fd42:1:2:3::1".parse::<Ipv6Addr>().unwrap()
        );
    }

    #[test]
    fn lower_id_moves_higher_id_stays() {
        let c = net("fd00:77:0:10::/60"); // 15 slots: clashes are easy to find
        let (lo, hi) = (1..1000u32)
            .flat_map(|i| (i + 1..i + 100).map(move |j| (rid(i), rid(j))))
            .find(|(x, y)| pod_prefix_candidate(c, *x, 0) == pod_prefix_candidate(c, *y, 0))
            .unwrap();
        let clash = pod_prefix_candidate(c, lo, 0);
        let (hi_p, hi_a) = choose_pod_prefix(c, hi, &[lo].into(), []).unwrap();
        assert_eq!(
            (hi_p, hi_a),
            (clash, 0),
            "the higher id keeps its first choice"
        );
        let (lo_p, lo_a) = choose_pod_prefix(c, lo, &[hi].into(), []).unwrap();
        assert_ne!(lo_p, clash);
        assert!(lo_a >= 1);
        // Alone, the lower one takes its first choice.
        assert_eq!(
            choose_pod_prefix(c, lo, &BTreeSet::new(), []).unwrap(),
            (clash, 0)
        );
    }

    #[test]
    fn a_thousand_nodes_agree_on_distinct_prefixes() {
        let c = net("fd00:9::/52"); // 4095 slots: clashes are certain
        let ids: BTreeSet<Ipv4Addr> = (1..=1000).map(|n| rid(n * 7919)).collect();
        let all = assign(c, &ids, &BTreeSet::new());
        assert_eq!(all.len(), ids.len());
        let distinct: BTreeSet<_> = all.values().map(|(p, _)| *p).collect();
        assert_eq!(distinct.len(), ids.len());
        assert!(all.values().any(|(_, a)| *a > 0), "some had to move");
        // Each node, knowing the others, picks exactly its share.
        for me in ids.iter().step_by(97) {
            let mut others = ids.clone();
            others.remove(me);
            assert_eq!(choose_pod_prefix(c, *me, &others, []), all.get(me).copied());
        }
    }

    #[test]
    fn foreign_prefixes_are_avoided() {
        let c = net("fd6b:6d65:7368::/48");
        let me = rid(100);
        let first = pod_prefix_candidate(c, me, 0);
        // Someone outside the rule advertises our first choice (and other
        // things that do not matter).
        let adv = [
            first,
            Ipv6Net::from(node_address(first)),
            net("2001:db8::/64"),
        ];
        let (p, a) = choose_pod_prefix(c, me, &BTreeSet::new(), adv).unwrap();
        assert_eq!((p, a), (pod_prefix_candidate(c, me, 1), 1));
        // A /64 explained by another router's automatic choice is not foreign.
        let other = rid(200);
        let theirs = pod_prefix_candidate(c, other, 0);
        let (p, _) = choose_pod_prefix(c, me, &[other].into(), [theirs]).unwrap();
        assert_eq!(p, first);
    }

    #[test]
    fn ipv4_pod_prefixes_follow_the_same_rule_in_their_own_space() {
        let space = Ipv4Space {
            cluster: "198.18.0.0/15".parse().unwrap(),
            pod_len: 24,
        };
        for n in 0..2000 {
            let p = space.candidate(rid(n), n % 3);
            assert_eq!(p.prefix_len(), 24);
            assert!(space.cluster.contains(&p));
            assert_ne!(
                p.network(),
                space.cluster.network(),
                "subnet 0 is kept free"
            );
        }
        // Pinned: a changed hash would renumber every IPv4 pod.
        assert_eq!(
            space.candidate(Ipv4Addr::new(10, 0, 0, 1), 0),
            "198.18.64.0/24".parse::<Ipv4Net>().unwrap()
        );
        // 511 slots for 300 routers: clashes are certain, and settled.
        let ids: BTreeSet<Ipv4Addr> = (1..=300).map(|n| rid(n * 7919)).collect();
        let all = assign(space, &ids, &BTreeSet::new());
        let distinct: BTreeSet<_> = all.values().map(|(p, _)| *p).collect();
        assert_eq!(distinct.len(), ids.len());
        for me in ids.iter().step_by(37) {
            let mut others = ids.clone();
            others.remove(me);
            assert_eq!(
                choose_pod_prefix(space, *me, &others, []),
                all.get(me).copied()
            );
        }
        assert_eq!(
            node_address4("198.18.7.0/24".parse().unwrap()),
            Ipv4Addr::new(198, 18, 7, 1)
        );
    }
}
