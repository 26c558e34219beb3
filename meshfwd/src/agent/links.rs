//! Mesh link discovery: which links of the node run OSPF, decided from
//! rtnetlink link and address events with no per-link configuration.
//!
//! A link joins the mesh when it is Ethernet-like, not excluded by a
//! pattern, administratively up, has carrier and has a usable (non
//! tentative) link-local address; it leaves the moment any of that stops
//! being true. [`LinkTracker`] is the pure state machine (netlink messages
//! in, [`MeshEvent`]s out); [`open`] and [`dump`] are the kernel side.

use crate::fib::dump::format_mac;
use std::{
    collections::BTreeMap,
    io,
    net::{IpAddr, Ipv6Addr},
};

use futures::{StreamExt as _, TryStreamExt as _};
use netlink_packet_core::{NetlinkMessage, NetlinkPayload};
use netlink_packet_route::{
    AddressFamily, RouteNetlinkMessage,
    address::{AddressAttribute, AddressFlags, AddressMessage},
    link::{InfoKind, LinkAttribute, LinkFlags, LinkInfo, LinkLayerType, LinkMessage},
};
use rtnetlink::{Handle, MulticastGroup};
use serde::{Serialize, Serializer};

/// A shell-style glob over interface names: `*` any run, `?` one byte.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern(String);

impl Pattern {
    /// Wrap a glob.
    pub fn new(glob: &str) -> Self {
        Pattern(glob.to_string())
    }

    /// Return the glob text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Return whether `name` matches.
    pub fn matches(&self, name: &str) -> bool {
        glob(self.0.as_bytes(), name.as_bytes())
    }
}

impl Serialize for Pattern {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

/// Iterative glob match with single-star backtracking (linear in practice).
fn glob(p: &[u8], s: &[u8]) -> bool {
    let (mut pi, mut si) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while si < s.len() {
        match p.get(pi) {
            Some(b'*') => {
                star = Some((pi, si));
                pi += 1;
            }
            Some(c) if *c == b'?' || *c == s[si] => {
                pi += 1;
                si += 1;
            }
            _ => match star {
                Some((sp, ss)) => {
                    pi = sp + 1;
                    si = ss + 1;
                    star = Some((sp, ss + 1));
                }
                None => return false,
            },
        }
    }
    p[pi..].iter().all(|c| *c == b'*')
}

/// What the agent knows about one link of the node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LinkSnapshot {
    pub ifindex: u32,
    pub name: String,
    /// `veth`, `dummy`, ... (`None` for a physical NIC).
    pub kind: Option<String>,
    /// ARPHRD_ETHER.
    pub ethernet: bool,
    pub loopback: bool,
    /// Enslaved to a bridge, bond or VRF.
    pub enslaved: bool,
    pub admin_up: bool,
    /// IFF_LOWER_UP: the carrier is there.
    pub carrier: bool,
    pub mtu: u32,
    #[serde(serialize_with = "ser_mac")]
    pub mac: Option<[u8; 6]>,
    /// The burnt-in MAC, when the driver reports one.
    #[serde(skip)]
    pub perm_mac: Option<[u8; 6]>,
    /// `ip link set ... alias` (the CNI plugin marks finished pod veths).
    #[serde(skip)]
    pub alias: Option<String>,
}

fn ser_mac<S: Serializer>(mac: &Option<[u8; 6]>, s: S) -> Result<S::Ok, S::Error> {
    match mac {
        Some(m) => s.collect_str(&format_mac(m)),
        None => s.serialize_none(),
    }
}

fn mac6(v: &[u8]) -> Option<[u8; 6]> {
    v.try_into().ok()
}

impl LinkSnapshot {
    /// Read a link message (`RTM_NEWLINK`).
    pub fn from_message(msg: &LinkMessage) -> Option<Self> {
        let mut s = LinkSnapshot {
            ifindex: msg.header.index,
            name: String::new(),
            kind: None,
            ethernet: msg.header.link_layer_type == LinkLayerType::Ether,
            loopback: msg.header.flags.contains(LinkFlags::Loopback),
            enslaved: false,
            admin_up: msg.header.flags.contains(LinkFlags::Up),
            carrier: msg.header.flags.contains(LinkFlags::LowerUp),
            mtu: 0,
            mac: None,
            perm_mac: None,
            alias: None,
        };
        for attr in &msg.attributes {
            match attr {
                LinkAttribute::IfName(n) => s.name = n.clone(),
                LinkAttribute::Mtu(m) => s.mtu = *m,
                LinkAttribute::Address(a) => s.mac = mac6(a),
                LinkAttribute::PermAddress(a) => s.perm_mac = mac6(a),
                LinkAttribute::IfAlias(a) => s.alias = Some(a.clone()),
                LinkAttribute::Controller(c) => s.enslaved = *c != 0,
                LinkAttribute::LinkInfo(infos) => {
                    for info in infos {
                        if let LinkInfo::Kind(k) = info {
                            s.kind = Some(kind_name(k));
                        }
                    }
                }
                _ => {}
            }
        }
        (!s.name.is_empty()).then_some(s)
    }
}

fn kind_name(k: &InfoKind) -> String {
    match k {
        InfoKind::Other(s) => s.clone(),
        k => k.to_string(),
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
    pub fn refuses(&self, link: &LinkSnapshot) -> Option<&'static str> {
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
    #[serde(serialize_with = "ser_mac")]
    pub mac: Option<[u8; 6]>,
}

/// Why a link left the mesh.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
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
    link: LinkSnapshot,
    /// Usable link-local addresses (tentative ones are left out).
    link_locals: Vec<Ipv6Addr>,
    /// The link as OSPF runs on it, when it does.
    mesh: Option<MeshLink>,
}

/// One row of `meshfwd show interfaces`.
#[derive(Debug, Clone, Serialize)]
pub struct LinkStatus {
    #[serde(flatten)]
    pub link: LinkSnapshot,
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
    pub fn apply(&mut self, ev: NlEvent) -> Option<MeshEvent> {
        match ev {
            NlEvent::Link(link) => {
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
            NlEvent::LinkGone(ifindex) => {
                self.early_addrs.remove(&ifindex);
                let t = self.links.remove(&ifindex)?;
                t.mesh.map(|m| MeshEvent::Down {
                    ifindex,
                    name: m.name,
                    reason: DownReason::Removed,
                })
            }
            NlEvent::Addr {
                ifindex,
                addr,
                usable,
            } => {
                if !is_link_local(addr) {
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
            NlEvent::AddrGone { ifindex, addr } => {
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
                mtu: t.link.mtu,
                mac: t.link.mac,
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
    pub fn link(&self, ifindex: u32) -> Option<&LinkSnapshot> {
        self.links.get(&ifindex).map(|t| &t.link)
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
                    .map(|m| (t.link.name.clone(), m))
            })
            .collect()
    }
}

fn is_link_local(a: Ipv6Addr) -> bool {
    a.segments()[0] & 0xffc0 == 0xfe80
}

/// A netlink notification or dump entry the tracker understands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NlEvent {
    Link(LinkSnapshot),
    LinkGone(u32),
    /// An IPv6 address; `usable` is false while tentative or after DAD failed.
    Addr {
        ifindex: u32,
        addr: Ipv6Addr,
        usable: bool,
    },
    AddrGone {
        ifindex: u32,
        addr: Ipv6Addr,
    },
}

impl NlEvent {
    /// Read a multicast notification.
    pub fn from_netlink(msg: NetlinkMessage<RouteNetlinkMessage>) -> Option<Self> {
        let NetlinkPayload::InnerMessage(inner) = msg.payload else {
            return None;
        };
        match inner {
            RouteNetlinkMessage::NewLink(m) => LinkSnapshot::from_message(&m).map(NlEvent::Link),
            RouteNetlinkMessage::DelLink(m) => Some(NlEvent::LinkGone(m.header.index)),
            RouteNetlinkMessage::NewAddress(m) => addr_event(&m, true),
            RouteNetlinkMessage::DelAddress(m) => addr_event(&m, false),
            _ => None,
        }
    }
}

fn addr_event(m: &AddressMessage, new: bool) -> Option<NlEvent> {
    if m.header.family != AddressFamily::Inet6 {
        return None;
    }
    let mut addr = None;
    // The header has the low 8 bits of the flags, IFA_FLAGS all 32.
    let mut flags = u32::from(m.header.flags.bits());
    for attr in &m.attributes {
        match attr {
            AddressAttribute::Address(IpAddr::V6(a)) => addr = Some(*a),
            AddressAttribute::Flags(f) => flags |= f.bits(),
            _ => {}
        }
    }
    let addr = addr?;
    let ifindex = m.header.index;
    if !new {
        return Some(NlEvent::AddrGone { ifindex, addr });
    }
    let bad = AddressFlags::Tentative.bits() | AddressFlags::Dadfailed.bits();
    Some(NlEvent::Addr {
        ifindex,
        addr,
        usable: flags & bad == 0,
    })
}

/// Messages of the link/address notification socket.
pub type Notifications = futures::channel::mpsc::UnboundedReceiver<(
    NetlinkMessage<RouteNetlinkMessage>,
    netlink_sys::SocketAddr,
)>;

/// Open an rtnetlink connection subscribed to link and IPv6 address
/// changes; the connection task is spawned on the current runtime.
pub fn open() -> io::Result<(Handle, Notifications)> {
    let (conn, handle, messages) =
        rtnetlink::new_multicast_connection(&[MulticastGroup::Link, MulticastGroup::Ipv6Ifaddr])?;
    tokio::spawn(conn);
    Ok((handle, messages))
}

/// Dump every link and IPv6 address as events (after subscribing, so
/// nothing is missed between the dump and the notifications).
pub async fn dump(handle: &Handle) -> Result<Vec<NlEvent>, rtnetlink::Error> {
    let mut out: Vec<NlEvent> = handle
        .link()
        .get()
        .execute()
        .try_filter_map(|m| async move { Ok(LinkSnapshot::from_message(&m).map(NlEvent::Link)) })
        .try_collect()
        .await?;
    let mut addrs = handle.address().get().execute();
    while let Some(m) = addrs.next().await {
        if let Some(ev) = addr_event(&m?, true) {
            out.push(ev);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link(ifindex: u32, name: &str) -> LinkSnapshot {
        LinkSnapshot {
            ifindex,
            name: name.into(),
            kind: Some("veth".into()),
            ethernet: true,
            loopback: false,
            enslaved: false,
            admin_up: true,
            carrier: true,
            mtu: 1500,
            mac: Some([2, 0, 0, 0, 0, ifindex as u8]),
            perm_mac: None,
            alias: None,
        }
    }

    fn ll(n: u16) -> Ipv6Addr {
        Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, n)
    }

    fn tracker() -> LinkTracker {
        LinkTracker::new(LinkFilter {
            include: vec![Pattern::new("*")],
            exclude: ["lo", "km*", "docker*"]
                .iter()
                .map(|p| Pattern::new(p))
                .collect(),
        })
    }

    #[test]
    fn globs() {
        let m = |p: &str, s: &str| Pattern::new(p).matches(s);
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
        assert_eq!(t.apply(NlEvent::Link(l.clone())), None);
        assert_eq!(
            t.apply(NlEvent::Addr {
                ifindex: 3,
                addr: ll(1),
                usable: false
            }),
            None
        );
        assert_eq!(
            t.apply(NlEvent::Addr {
                ifindex: 3,
                addr: ll(1),
                usable: true
            }),
            None
        );
        l.carrier = true;
        let up = t.apply(NlEvent::Link(l.clone())).unwrap();
        assert_eq!(
            up,
            MeshEvent::Up(MeshLink {
                ifindex: 3,
                name: "m-b".into(),
                link_local: ll(1),
                mtu: 1500,
                mac: l.mac
            })
        );
        // The same state again changes nothing.
        assert_eq!(t.apply(NlEvent::Link(l.clone())), None);
        assert_eq!(t.mesh_links().count(), 1);
    }

    #[test]
    fn carrier_loss_admin_down_and_removal_leave_the_mesh() {
        let mut t = tracker();
        let l = link(3, "m-b");
        t.apply(NlEvent::Addr {
            ifindex: 3,
            addr: ll(1),
            usable: true,
        }); // before the link: kept
        assert!(matches!(
            t.apply(NlEvent::Link(l.clone())),
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
            t.apply(NlEvent::Link(LinkSnapshot {
                carrier: false,
                ..l.clone()
            })),
            down(DownReason::CarrierLost)
        );
        assert!(matches!(
            t.apply(NlEvent::Link(l.clone())),
            Some(MeshEvent::Up(_))
        ));
        assert_eq!(
            t.apply(NlEvent::Link(LinkSnapshot {
                admin_up: false,
                ..l.clone()
            })),
            down(DownReason::AdminDown)
        );
        assert!(matches!(
            t.apply(NlEvent::Link(l.clone())),
            Some(MeshEvent::Up(_))
        ));
        assert_eq!(
            t.apply(NlEvent::AddrGone {
                ifindex: 3,
                addr: ll(1)
            }),
            down(DownReason::NoLinkLocal)
        );
        assert!(matches!(
            t.apply(NlEvent::Addr {
                ifindex: 3,
                addr: ll(2),
                usable: true
            }),
            Some(MeshEvent::Up(_))
        ));
        assert_eq!(t.apply(NlEvent::LinkGone(3)), down(DownReason::Removed));
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
            assert_eq!(t.apply(NlEvent::Link(l)), None, "{name}");
            assert_eq!(
                t.apply(NlEvent::Addr {
                    ifindex,
                    addr: ll(9),
                    usable: true
                }),
                None,
                "{name}"
            );
        }
        let mut eth = link(20, "eth0");
        eth.kind = None;
        eth.ethernet = false;
        assert_eq!(t.apply(NlEvent::Link(eth)), None);
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
        t.apply(NlEvent::Link(link(3, "eth1")));
        assert!(matches!(
            t.apply(NlEvent::Addr {
                ifindex: 3,
                addr: ll(1),
                usable: true
            }),
            Some(MeshEvent::Up(_))
        ));
        let gone = t.apply(NlEvent::Link(link(3, "docker0"))).unwrap();
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
        t.apply(NlEvent::Link(link(3, "eth1")));
        t.apply(NlEvent::Addr {
            ifindex: 3,
            addr: ll(1),
            usable: true,
        });
        let ev = t
            .apply(NlEvent::Link(LinkSnapshot {
                mtu: 9000,
                ..link(3, "eth1")
            }))
            .unwrap();
        assert!(matches!(ev, MeshEvent::Up(MeshLink { mtu: 9000, .. })));
    }
}
