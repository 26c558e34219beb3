//! Mesh link discovery: which links of the node run OSPF, decided from
//! rtnetlink link and address events with no per-link configuration.
//!
//! A link joins the mesh when it is Ethernet-like, not excluded by a
//! pattern, administratively up, has carrier and has a usable (non
//! tentative) link-local address; it leaves the moment any of that stops
//! being true. [`LinkTracker`] is the pure state machine: decoded netlink
//! events ([`LinkEvent`]) in, [`MeshEvent`]s out.

use std::{collections::BTreeMap, fmt, net::Ipv6Addr, str::FromStr};

use dataplane::netlink::Mac;
pub use dataplane::netlink::{Link, LinkEvent};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A shell-style glob over interface names (`*`, `?`, `[...]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern(glob::Pattern);

impl Pattern {
    /// Return the glob text.
    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }

    /// Return whether `name` matches.
    pub fn matches(&self, name: &str) -> bool {
        self.0.matches(name)
    }
}

impl FromStr for Pattern {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.is_empty() {
            return Err("an empty pattern matches nothing".into());
        }
        glob::Pattern::new(s)
            .map(Pattern)
            .map_err(|e| format!("{s:?} is not a glob: {e}"))
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Pattern {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Pattern {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

/// Kinds of Ethernet-like devices that are never a cable to a neighbour.
const NOT_MESH_KINDS: &[&str] = &[
    "dummy",
    "bridge",
    "vxlan",
    "geneve",
    "ifb",
    "macvlan",
    "macvtap",
    "ipvlan",
    "ipvtap",
    "gretap",
    "ip6gretap",
    "vrf",
    "netkit",
    "nlmon",
    "bareudp",
    "erspan",
    "ip6erspan",
];

/// Which links may join the mesh.
#[derive(Debug, Clone)]
pub struct LinkFilter {
    pub include: Vec<Pattern>,
    pub exclude: Vec<Pattern>,
}

impl LinkFilter {
    /// Return why `link` may not join the mesh, or `None` if it may.
    pub fn refuses(&self, link: &Link) -> Option<&'static str> {
        if link.loopback {
            return Some("loopback");
        }
        if !link.ethernet {
            return Some("not Ethernet");
        }
        if link
            .kind
            .as_deref()
            .is_some_and(|k| NOT_MESH_KINDS.contains(&k))
        {
            return Some("virtual device kind");
        }
        if link.enslaved {
            return Some("enslaved");
        }
        if !self.include.iter().any(|p| p.matches(&link.name)) {
            return Some("not included");
        }
        if self.exclude.iter().any(|p| p.matches(&link.name)) {
            return Some("excluded");
        }
        None
    }
}

/// A link running OSPF.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MeshLink {
    pub ifindex: u32,
    pub name: String,
    pub link_local: Ipv6Addr,
    pub mtu: u32,
    pub mac: Option<Mac>,
    /// A veth: its sends need finished checksums (see the runtime's
    /// kernel module).
    pub veth: bool,
}

/// Why a link left the mesh.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DownReason {
    /// The carrier went away: the cable or the neighbour's NIC is gone.
    CarrierLost,
    /// Someone set the link down.
    AdminDown,
    /// The device was deleted.
    Removed,
    /// Its link-local address went away.
    NoLinkLocal,
    /// The filter refuses it now (renamed, enslaved).
    Refused,
}

/// A change of the mesh link set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MeshEvent {
    /// Start (or reconfigure) OSPF on this link.
    Up(MeshLink),
    /// Stop OSPF on this link.
    Down {
        ifindex: u32,
        name: String,
        reason: DownReason,
    },
}

#[derive(Debug, Clone)]
struct Tracked {
    link: Link,
    /// Usable link-local addresses (tentative ones are left out).
    link_locals: Vec<Ipv6Addr>,
    /// The link as OSPF runs on it, when it does.
    mesh: Option<MeshLink>,
}

/// One link as the tracker sees it.
#[derive(Debug, Clone)]
pub struct LinkStatus {
    pub link: Link,
    pub link_local: Option<Ipv6Addr>,
    pub mesh: bool,
    /// Why the link is not in the mesh.
    pub reason: Option<&'static str>,
}

/// The pure link state machine.
#[derive(Debug)]
pub struct LinkTracker {
    filter: LinkFilter,
    links: BTreeMap<u32, Tracked>,
    /// Addresses seen before their link (dump order, races).
    early_addrs: BTreeMap<u32, Vec<Ipv6Addr>>,
}

impl LinkTracker {
    /// Track links through `filter`.
    pub fn new(filter: LinkFilter) -> Self {
        LinkTracker {
            filter,
            links: BTreeMap::new(),
            early_addrs: BTreeMap::new(),
        }
    }

    /// Apply one netlink event; return the mesh change it causes.
    pub fn apply(&mut self, ev: LinkEvent) -> Option<MeshEvent> {
        match ev {
            LinkEvent::Link(link) => {
                let ifindex = link.ifindex;
                let early = self.early_addrs.remove(&ifindex).unwrap_or_default();
                let t = self.links.entry(ifindex).or_insert_with(|| Tracked {
                    link: link.clone(),
                    link_locals: early,
                    mesh: None,
                });
                t.link = link;
                self.reevaluate(ifindex)
            }
            LinkEvent::LinkGone(ifindex) => {
                self.early_addrs.remove(&ifindex);
                let t = self.links.remove(&ifindex)?;
                t.mesh.map(|m| MeshEvent::Down {
                    ifindex,
                    name: m.name,
                    reason: DownReason::Removed,
                })
            }
            LinkEvent::Addr(a) => {
                let (ifindex, addr, usable) = (a.ifindex, a.addr, a.usable);
                if !addr.is_unicast_link_local() {
                    return None;
                }
                let list = match self.links.get_mut(&ifindex) {
                    Some(t) => &mut t.link_locals,
                    None => self.early_addrs.entry(ifindex).or_default(),
                };
                list.retain(|a| *a != addr);
                if usable {
                    list.push(addr);
                }
                self.reevaluate(ifindex)
            }
            LinkEvent::AddrGone { ifindex, addr } => {
                if let Some(t) = self.links.get_mut(&ifindex) {
                    t.link_locals.retain(|a| *a != addr);
                } else if let Some(l) = self.early_addrs.get_mut(&ifindex) {
                    l.retain(|a| *a != addr);
                }
                self.reevaluate(ifindex)
            }
        }
    }

    fn reevaluate(&mut self, ifindex: u32) -> Option<MeshEvent> {
        let t = self.links.get_mut(&ifindex)?;
        let refused = self.filter.refuses(&t.link);
        // Keep the link-local OSPF already uses while it stays valid.
        let ll = t
            .mesh
            .as_ref()
            .map(|m| m.link_local)
            .filter(|a| t.link_locals.contains(a))
            .or_else(|| t.link_locals.first().copied());
        let want = match (refused, t.link.admin_up, t.link.carrier, ll) {
            (None, true, true, Some(link_local)) => Ok(MeshLink {
                ifindex,
                name: t.link.name.clone(),
                link_local,
                mtu: t.link.mtu.unwrap_or(1500),
                mac: t.link.mac,
                veth: t.link.is_veth(),
            }),
            (Some(_), ..) => Err(DownReason::Refused),
            (None, false, ..) => Err(DownReason::AdminDown),
            (None, true, false, _) => Err(DownReason::CarrierLost),
            (None, true, true, None) => Err(DownReason::NoLinkLocal),
        };
        match (want, &t.mesh) {
            (Ok(new), Some(old)) if *old == new => None,
            (Ok(new), _) => {
                t.mesh = Some(new.clone());
                Some(MeshEvent::Up(new))
            }
            (Err(reason), Some(old)) => {
                let name = old.name.clone();
                t.mesh = None;
                Some(MeshEvent::Down {
                    ifindex,
                    name,
                    reason,
                })
            }
            (Err(_), None) => None,
        }
    }

    /// Return whether the link may join the mesh once it is up (the filter
    /// admits it).
    pub fn is_candidate(&self, ifindex: u32) -> bool {
        self.links
            .get(&ifindex)
            .is_some_and(|t| self.filter.refuses(&t.link).is_none())
    }

    /// Return the links running OSPF.
    pub fn mesh_links(&self) -> impl Iterator<Item = &MeshLink> {
        self.links.values().filter_map(|t| t.mesh.as_ref())
    }

    /// Return the mesh link with this index.
    pub fn mesh_link(&self, ifindex: u32) -> Option<&MeshLink> {
        self.links.get(&ifindex).and_then(|t| t.mesh.as_ref())
    }

    /// Return a link by index, mesh or not.
    pub fn link(&self, ifindex: u32) -> Option<&Link> {
        self.links.get(&ifindex).map(|t| &t.link)
    }

    /// Return every link, mesh or not.
    pub fn all(&self) -> impl Iterator<Item = &Link> {
        self.links.values().map(|t| &t.link)
    }

    /// Return every link with whether it is in the mesh, and why not.
    pub fn status(&self) -> Vec<LinkStatus> {
        self.links
            .values()
            .map(|t| {
                let reason = if t.mesh.is_some() {
                    None
                } else {
                    Some(self.filter.refuses(&t.link).unwrap_or(if !t.link.admin_up {
                        "admin down"
                    } else if !t.link.carrier {
                        "no carrier"
                    } else {
                        "no link-local address"
                    }))
                };
                LinkStatus {
                    link: t.link.clone(),
                    link_local: t
                        .mesh
                        .as_ref()
                        .map(|m| m.link_local)
                        .or_else(|| t.link_locals.first().copied()),
                    mesh: t.mesh.is_some(),
                    reason,
                }
            })
            .collect()
    }

    /// Return (name, MAC) of every link with a MAC, burnt-in MAC first, in
    /// ifindex order (for the router id fallback).
    pub fn macs(&self) -> Vec<(String, [u8; 6])> {
        self.links
            .values()
            .filter(|t| !t.link.loopback)
            .filter_map(|t| {
                t.link
                    .perm_mac
                    .or(t.link.mac)
                    .map(|m| (t.link.name.clone(), m.0))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::core::testing::{addr, ll, veth as link};

    fn tracker() -> LinkTracker {
        LinkTracker::new(LinkFilter {
            include: vec!["*".parse().unwrap()],
            exclude: ["lo", "km*", "docker*"]
                .iter()
                .map(|p| p.parse().unwrap())
                .collect(),
        })
    }

    #[test]
    fn globs() {
        let m = |p: &str, s: &str| p.parse::<Pattern>().unwrap().matches(s);
        assert!(m("*", ""));
        assert!(m("*", "eth0"));
        assert!(m("eth*", "eth0"));
        assert!(!m("eth*", "xeth0"));
        assert!(m("e?h0", "eth0"));
        assert!(m("*-*", "m-n3"));
        assert!(!m("*-*", "mn3"));
        assert!(m("km*", "km0123456789ab"));
        assert!(m("a*b*c", "axxbyybzc"));
        assert!(!m("a*b*c", "axxbyybz"));
        assert!(!m("lo", "lo0"));
    }

    #[test]
    fn link_joins_when_carrier_and_link_local_are_there() {
        let mut t = tracker();
        let mut l = link(3, "m-b");
        l.carrier = false;
        assert_eq!(t.apply(LinkEvent::Link(l.clone())), None);
        assert_eq!(t.apply(addr(3, ll(1), false)), None);
        assert_eq!(t.apply(addr(3, ll(1), true)), None);
        l.carrier = true;
        let up = t.apply(LinkEvent::Link(l.clone())).unwrap();
        assert_eq!(
            up,
            MeshEvent::Up(MeshLink {
                ifindex: 3,
                name: "m-b".into(),
                link_local: ll(1),
                mtu: 1500,
                mac: l.mac,
                veth: true,
            })
        );
        // The same state again changes nothing.
        assert_eq!(t.apply(LinkEvent::Link(l.clone())), None);
        assert_eq!(t.mesh_links().count(), 1);
    }

    #[test]
    fn carrier_loss_admin_down_and_removal_leave_the_mesh() {
        let mut t = tracker();
        let l = link(3, "m-b");
        t.apply(addr(3, ll(1), true)); // before the link: kept
        assert!(matches!(
            t.apply(LinkEvent::Link(l.clone())),
            Some(MeshEvent::Up(_))
        ));
        let down = |reason| {
            Some(MeshEvent::Down {
                ifindex: 3,
                name: "m-b".into(),
                reason,
            })
        };
        assert_eq!(
            t.apply(LinkEvent::Link(Link {
                carrier: false,
                ..l.clone()
            })),
            down(DownReason::CarrierLost)
        );
        assert!(matches!(
            t.apply(LinkEvent::Link(l.clone())),
            Some(MeshEvent::Up(_))
        ));
        assert_eq!(
            t.apply(LinkEvent::Link(Link {
                admin_up: false,
                ..l.clone()
            })),
            down(DownReason::AdminDown)
        );
        assert!(matches!(
            t.apply(LinkEvent::Link(l.clone())),
            Some(MeshEvent::Up(_))
        ));
        assert_eq!(
            t.apply(LinkEvent::AddrGone {
                ifindex: 3,
                addr: ll(1)
            }),
            down(DownReason::NoLinkLocal)
        );
        assert!(matches!(
            t.apply(addr(3, ll(2), true)),
            Some(MeshEvent::Up(_))
        ));
        assert_eq!(t.apply(LinkEvent::LinkGone(3)), down(DownReason::Removed));
        assert_eq!(t.mesh_links().count(), 0);
    }

    #[test]
    fn excluded_and_virtual_links_never_join() {
        let mut t = tracker();
        for (i, (name, kind)) in [
            ("lo", None),
            ("km0a1b2c3d4e5f", Some("veth")),
            ("kubermesh0", Some("dummy")),
            ("br0", Some("bridge")),
        ]
        .into_iter()
        .enumerate()
        {
            let ifindex = i as u32 + 10;
            let mut l = link(ifindex, name);
            l.kind = kind.map(String::from);
            l.loopback = name == "lo";
            assert_eq!(t.apply(LinkEvent::Link(l)), None, "{name}");
            assert_eq!(t.apply(addr(ifindex, ll(9), true)), None, "{name}");
        }
        let mut eth = link(20, "eth0");
        eth.kind = None;
        eth.ethernet = false;
        assert_eq!(t.apply(LinkEvent::Link(eth)), None);
        let reasons: Vec<_> = t.status().iter().map(|s| s.reason.unwrap()).collect();
        assert_eq!(
            reasons,
            vec![
                "loopback",
                "excluded",
                "virtual device kind",
                "virtual device kind",
                "not Ethernet"
            ]
        );
    }

    #[test]
    fn renamed_into_an_excluded_name_leaves() {
        let mut t = tracker();
        t.apply(LinkEvent::Link(link(3, "eth1")));
        assert!(matches!(
            t.apply(addr(3, ll(1), true)),
            Some(MeshEvent::Up(_))
        ));
        let gone = t.apply(LinkEvent::Link(link(3, "docker0"))).unwrap();
        assert!(matches!(
            gone,
            MeshEvent::Down {
                reason: DownReason::Refused,
                ..
            }
        ));
    }

    #[test]
    fn mtu_change_reconfigures() {
        let mut t = tracker();
        t.apply(LinkEvent::Link(link(3, "eth1")));
        t.apply(addr(3, ll(1), true));
        let ev = t
            .apply(LinkEvent::Link(Link {
                mtu: Some(9000),
                ..link(3, "eth1")
            }))
            .unwrap();
        assert!(matches!(ev, MeshEvent::Up(MeshLink { mtu: 9000, .. })));
    }
}
