//! Prefix ownership: who may advertise what inside a cluster's address
//! space. OSPF itself believes every router; an embedding that hands out
//! prefixes (the kubermesh agent) sets a [`PrefixPolicy`] so that no router
//! can take over another node's prefixes.
//!
//! The rule, applied to every prefix a reachable router advertises:
//!
//! 1. **Default and aggregates.** A prefix that covers the whole cluster
//!    prefix (`::/0`, `fd00::/8`, the cluster prefix itself) comes only from
//!    a configured gateway.
//! 2. **Inside the cluster, only node prefixes.** A /64 is a node's pod
//!    prefix and a /128 its node address; any other length (a /80 inside a
//!    pod's /64, a /56) is refused.
//! 3. **One owner per /64.** When several routers advertise the same /64,
//!    the owner is the highest router id, the same router the pod prefix
//!    rule leaves on it, so every router picks the same one. This router
//!    never yields its own /64 in its own table; it hears about the clash
//!    (a [`Refusal::Contested`] on its own prefix) and the embedding
//!    decides who moves.
//! 4. **A /128 only inside its advertiser's own /64.** Nobody else's node
//!    address can be advertised, nor a host route into someone's pods.
//!
//! The lengths are the IPv6 ones by default; an IPv4 instance (RFC 5838)
//! sets its own ([`PrefixPolicy::pod_len`], [`PrefixPolicy::host_len`]:
//! 24 and 32, say), its prefixes in their LSA encoding.
//!
//! Everything outside the cluster prefix that does not cover it (a peer's
//! own networks) is left alone. A refused prefix is not routed and is
//! reported, so the embedding can raise an alarm.
//!
//! Without authentication this cannot tell a rogue router from a node: a
//! rogue with a higher router id wins a contested /64. The mesh's key
//! (RFC 7166) keeps such routers out of the LSDB in the first place.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use ipnet::Ipv6Net;
use serde::{Deserialize, Serialize};

/// The cluster's ownership rule (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PrefixPolicy {
    /// Where node prefixes live.
    pub cluster: Ipv6Net,
    /// Routers allowed to advertise default and aggregate routes.
    pub gateways: BTreeSet<Ipv4Addr>,
    /// Length of a node's pod prefix (64 in IPv6).
    #[serde(default = "default_pod_len")]
    pub pod_len: u8,
    /// Length of a node's own address (128 in IPv6).
    #[serde(default = "default_host_len")]
    pub host_len: u8,
}

fn default_pod_len() -> u8 {
    64
}

fn default_host_len() -> u8 {
    128
}

impl PrefixPolicy {
    /// The IPv6 policy for `cluster`.
    pub fn ipv6(cluster: Ipv6Net, gateways: BTreeSet<Ipv4Addr>) -> Self {
        PrefixPolicy {
            cluster,
            gateways,
            pod_len: default_pod_len(),
            host_len: default_host_len(),
        }
    }
}

/// Why a prefix was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Refusal {
    /// Covers the cluster prefix, from a router that is not a gateway.
    Aggregate,
    /// Inside the cluster prefix, neither a /64 nor a /128.
    NotANodePrefix,
    /// A /64 another router owns.
    Contested,
    /// A /128 outside the advertiser's own /64.
    OutsideOwnPrefix,
}

/// One refused advertisement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Refused {
    pub prefix: Ipv6Net,
    pub advertiser: Ipv4Addr,
    pub reason: Refusal,
}

impl PrefixPolicy {
    /// Judge every `(prefix, advertiser)` claim of the reachable routers,
    /// `root`'s own among them; return the refused ones (never `root`'s).
    pub fn judge(&self, root: Ipv4Addr, claims: &BTreeSet<(Ipv6Net, Ipv4Addr)>) -> Vec<Refused> {
        let cluster = self.cluster;
        // Owners of the /64s: root first, then the highest id.
        let mut owner: BTreeMap<Ipv6Net, Ipv4Addr> = BTreeMap::new();
        for (p, adv) in claims {
            if p.prefix_len() == self.pod_len && cluster.contains(p) {
                let o = owner.entry(*p).or_insert(*adv);
                if *o != root && (*adv == root || *adv > *o) {
                    *o = *adv;
                }
            }
        }
        let mut out = Vec::new();
        for (p, adv) in claims {
            if *adv == root {
                continue;
            }
            let reason = if p.contains(&cluster) {
                (!self.gateways.contains(adv)).then_some(Refusal::Aggregate)
            } else if !cluster.contains(p) {
                None
            } else {
                match p.prefix_len() {
                    l if l == self.pod_len => {
                        (owner.get(p) != Some(adv)).then_some(Refusal::Contested)
                    }
                    l if l == self.host_len => {
                        let pod = Ipv6Net::new(p.addr(), self.pod_len).ok().map(|n| n.trunc());
                        let own = pod.and_then(|n| owner.get(&n));
                        (own != Some(adv)).then_some(Refusal::OutsideOwnPrefix)
                    }
                    _ => Some(Refusal::NotANodePrefix),
                }
            };
            if let Some(reason) = reason {
                out.push(Refused {
                    prefix: *p,
                    advertiser: *adv,
                    reason,
                });
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> Ipv6Net {
        s.parse().unwrap()
    }

    fn rid(n: u8) -> Ipv4Addr {
        Ipv4Addr::new(10, 0, 0, n)
    }

    fn judge(claims: &[(&str, u8)], gateways: &[u8]) -> Vec<(String, u8, Refusal)> {
        let policy = PrefixPolicy::ipv6(
            net("fd00:77::/48"),
            gateways.iter().map(|g| rid(*g)).collect(),
        );
        let claims = claims.iter().map(|(p, r)| (net(p), rid(*r))).collect();
        policy
            .judge(rid(1), &claims)
            .into_iter()
            .map(|r| (r.prefix.to_string(), r.advertiser.octets()[3], r.reason))
            .collect()
    }

    #[test]
    fn node_prefixes_pass_and_hijacks_do_not() {
        let refused = judge(
            &[
                ("fd00:77:0:1::/64", 1),
                ("fd00:77:0:1::1/128", 1),
                ("fd00:77:0:2::/64", 2),
                ("fd00:77:0:2::1/128", 2),
                ("fd00:77:0:4::/64", 4),
                ("fd00:77:0:4::1/128", 4),
                // Attack 2, by router 3: d's /128, a /80 inside d's /64,
                // fd00::/8 and ::/0.
                ("fd00:77:0:4::1/128", 3),
                ("fd00:77:0:4:8000::/80", 3),
                ("fd00::/8", 3),
                ("::/0", 3),
                // A peer's own network outside the cluster: fine.
                ("2001:db8:5::/48", 3),
            ],
            &[],
        );
        assert_eq!(
            refused,
            vec![
                ("::/0".into(), 3, Refusal::Aggregate),
                ("fd00::/8".into(), 3, Refusal::Aggregate),
                ("fd00:77:0:4::1/128".into(), 3, Refusal::OutsideOwnPrefix),
                ("fd00:77:0:4:8000::/80".into(), 3, Refusal::NotANodePrefix),
            ]
        );
    }

    #[test]
    fn gateways_may_send_default_and_aggregates() {
        let refused = judge(&[("::/0", 9), ("fd00:77::/48", 9), ("::/0", 3)], &[9]);
        assert_eq!(refused, vec![("::/0".into(), 3, Refusal::Aggregate)]);
    }

    #[test]
    fn a_contested_64_goes_to_the_highest_id_but_never_away_from_us() {
        let refused = judge(
            &[
                ("fd00:77:0:5::/64", 2),
                ("fd00:77:0:5::/64", 7),
                ("fd00:77:0:5::1/128", 2),
                ("fd00:77:0:1::/64", 1),
                ("fd00:77:0:1::/64", 9),
            ],
            &[],
        );
        assert_eq!(
            refused,
            vec![
                ("fd00:77:0:1::/64".into(), 9, Refusal::Contested),
                ("fd00:77:0:5::/64".into(), 2, Refusal::Contested),
                ("fd00:77:0:5::1/128".into(), 2, Refusal::OutsideOwnPrefix),
            ]
        );
    }

    #[test]
    fn an_ipv4_policy_judges_its_own_lengths() {
        use crate::af::ipv4_to_wire;
        let v4 = |s: &str| ipv4_to_wire(s.parse().unwrap());
        let policy = PrefixPolicy {
            pod_len: 24,
            host_len: 32,
            ..PrefixPolicy::ipv6(v4("198.18.0.0/15"), BTreeSet::new())
        };
        let claims: BTreeSet<(Ipv6Net, Ipv4Addr)> = [
            (v4("198.18.7.0/24"), rid(3)),
            (v4("198.18.7.1/32"), rid(3)),
            (v4("198.18.7.9/32"), rid(4)),
            (v4("198.18.8.0/25"), rid(4)),
            (v4("198.18.0.0/15"), rid(4)),
        ]
        .into();
        let refused: Vec<(Ipv6Net, Refusal)> = policy
            .judge(rid(1), &claims)
            .into_iter()
            .map(|r| (r.prefix, r.reason))
            .collect();
        assert_eq!(
            refused,
            vec![
                (v4("198.18.0.0/15"), Refusal::Aggregate),
                (v4("198.18.7.9/32"), Refusal::OutsideOwnPrefix),
                (v4("198.18.8.0/25"), Refusal::NotANodePrefix),
            ]
        );
    }
}
