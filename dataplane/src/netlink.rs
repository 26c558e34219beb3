//! Reading rtnetlink messages: the one place that turns the kernel's link,
//! address and route messages into the few facts kubermesh acts on.
//!
//! The agent's link tracker, the map writer and the CNI plugin all decode
//! through here, so they agree on what a link, an address or one of our
//! routes is. Sending requests stays with each of them: the agent and the
//! writer talk to the kernel through `rtnetlink` on tokio, the plugin (a
//! short-lived process) through a blocking socket.

use std::{
    fmt,
    net::{IpAddr, Ipv6Addr},
    str::FromStr,
};

use ipnet::Ipv6Net;
use netlink_packet_core::{NetlinkMessage, NetlinkPayload};
use netlink_packet_route::{
    AddressFamily, RouteNetlinkMessage,
    address::{AddressAttribute, AddressFlags, AddressMessage, AddressScope},
    link::{LinkAttribute, LinkFlags, LinkInfo, LinkLayerType, LinkMessage},
    route::{RouteAddress, RouteAttribute, RouteMessage},
};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// An Ethernet MAC address, written `aa:bb:cc:dd:ee:ff`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Mac(pub [u8; 6]);

impl Mac {
    /// Read six bytes (a link-layer address attribute); `None` for any
    /// other length.
    pub fn from_slice(bytes: &[u8]) -> Option<Mac> {
        bytes.try_into().ok().map(Mac)
    }
}

impl fmt::Display for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b, c, d, e, g] = self.0;
        write!(f, "{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{g:02x}")
    }
}

/// Why a MAC does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a MAC address (aa:bb:cc:dd:ee:ff)")]
pub struct BadMac(String);

impl FromStr for Mac {
    type Err = BadMac;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || BadMac(s.to_owned());
        let mut out = [0u8; 6];
        let mut parts = s.split(':');
        for byte in &mut out {
            let part = parts.next().filter(|p| p.len() == 2).ok_or_else(bad)?;
            *byte = u8::from_str_radix(part, 16).map_err(|_| bad())?;
        }
        match parts.next() {
            None => Ok(Mac(out)),
            Some(_) => Err(bad()),
        }
    }
}

impl Serialize for Mac {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Mac {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

/// What kubermesh knows about one link of a node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Link {
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
    pub mtu: Option<u32>,
    pub mac: Option<Mac>,
    /// The burnt-in MAC, when the driver reports one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub perm_mac: Option<Mac>,
    /// `ip link set ... alias` (the CNI plugin marks finished pod veths).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alias: Option<String>,
}

impl Link {
    /// Read a link message (`RTM_NEWLINK`); `None` without a name, which
    /// the kernel always sends, so such a message is not a link.
    pub fn from_message(msg: &LinkMessage) -> Option<Link> {
        let flags = msg.header.flags;
        let mut link = Link {
            ifindex: msg.header.index,
            name: String::new(),
            kind: None,
            ethernet: msg.header.link_layer_type == LinkLayerType::Ether,
            loopback: flags.contains(LinkFlags::Loopback),
            enslaved: false,
            admin_up: flags.contains(LinkFlags::Up),
            carrier: flags.contains(LinkFlags::LowerUp),
            mtu: None,
            mac: None,
            perm_mac: None,
            alias: None,
        };
        for attr in &msg.attributes {
            match attr {
                LinkAttribute::IfName(n) => link.name = n.clone(),
                LinkAttribute::Mtu(m) => link.mtu = Some(*m),
                LinkAttribute::Address(a) => link.mac = Mac::from_slice(a),
                LinkAttribute::PermAddress(a) => link.perm_mac = Mac::from_slice(a),
                LinkAttribute::IfAlias(a) => link.alias = Some(a.clone()),
                LinkAttribute::Controller(c) => link.enslaved = *c != 0,
                LinkAttribute::LinkInfo(infos) => {
                    for info in infos {
                        if let LinkInfo::Kind(k) = info {
                            // Display gives the kernel's own name, also for
                            // kinds the crate does not know (`Other`).
                            link.kind = Some(k.to_string());
                        }
                    }
                }
                _ => {}
            }
        }
        (!link.name.is_empty()).then_some(link)
    }

    /// Return whether frames can leave through the link now (up, with
    /// carrier).
    pub fn is_running(&self) -> bool {
        self.admin_up && self.carrier
    }

    /// Return whether the link is a veth.
    pub fn is_veth(&self) -> bool {
        self.kind.as_deref() == Some("veth")
    }
}

/// One IPv6 address of a link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Address6 {
    pub ifindex: u32,
    pub addr: Ipv6Addr,
    pub prefix_len: u8,
    /// Neither tentative nor failed duplicate address detection.
    pub usable: bool,
    /// Scope universe: wider than the link or the host.
    pub global: bool,
}

impl Address6 {
    /// Read an address message; `None` for other families.
    pub fn from_message(msg: &AddressMessage) -> Option<Address6> {
        if msg.header.family != AddressFamily::Inet6 {
            return None;
        }
        let mut addr = None;
        // The header has the low 8 bits of the flags, IFA_FLAGS all 32.
        let mut flags = u32::from(msg.header.flags.bits());
        for attr in &msg.attributes {
            match attr {
                AddressAttribute::Address(IpAddr::V6(a)) => addr = Some(*a),
                AddressAttribute::Flags(f) => flags |= f.bits(),
                _ => {}
            }
        }
        let bad = AddressFlags::Tentative.bits() | AddressFlags::Dadfailed.bits();
        Some(Address6 {
            ifindex: msg.header.index,
            addr: addr?,
            prefix_len: msg.header.prefix_len,
            usable: flags & bad == 0,
            global: msg.header.scope == AddressScope::Universe,
        })
    }
}

/// One IPv6 route of the kernel's FIB, as far as kubermesh looks at it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route6 {
    pub dst: Ipv6Net,
    pub table: u32,
    /// `proto` (who installed it).
    pub protocol: u8,
    pub gateway: Option<Ipv6Addr>,
    pub oif: Option<u32>,
}

impl Route6 {
    /// Read a route message; `None` for other families.
    pub fn from_message(msg: &RouteMessage) -> Option<Route6> {
        if msg.header.address_family != AddressFamily::Inet6 {
            return None;
        }
        let mut dst = Ipv6Addr::UNSPECIFIED;
        let mut table = u32::from(msg.header.table);
        let (mut gateway, mut oif) = (None, None);
        for attr in &msg.attributes {
            match attr {
                RouteAttribute::Destination(RouteAddress::Inet6(a)) => dst = *a,
                RouteAttribute::Gateway(RouteAddress::Inet6(a)) => gateway = Some(*a),
                RouteAttribute::Oif(i) => oif = Some(*i),
                // Tables above 255 only travel in the attribute.
                RouteAttribute::Table(t) => table = *t,
                _ => {}
            }
        }
        Some(Route6 {
            dst: Ipv6Net::new(dst, msg.header.destination_prefix_length)
                .ok()?
                .trunc(),
            table,
            protocol: u8::from(msg.header.protocol),
            gateway,
            oif,
        })
    }
}

/// A link or address notification, as the agent's link tracker takes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkEvent {
    Link(Link),
    LinkGone(u32),
    /// An IPv6 address appeared or changed.
    Addr(Address6),
    AddrGone {
        ifindex: u32,
        addr: Ipv6Addr,
    },
}

impl LinkEvent {
    /// Read a multicast notification (or a dump entry).
    pub fn from_netlink(msg: &NetlinkMessage<RouteNetlinkMessage>) -> Option<LinkEvent> {
        let NetlinkPayload::InnerMessage(inner) = &msg.payload else {
            return None;
        };
        LinkEvent::from_route_message(inner)
    }

    /// Read the inner message of a notification.
    pub fn from_route_message(msg: &RouteNetlinkMessage) -> Option<LinkEvent> {
        match msg {
            RouteNetlinkMessage::NewLink(m) => Link::from_message(m).map(LinkEvent::Link),
            RouteNetlinkMessage::DelLink(m) => Some(LinkEvent::LinkGone(m.header.index)),
            RouteNetlinkMessage::NewAddress(m) => Address6::from_message(m).map(LinkEvent::Addr),
            RouteNetlinkMessage::DelAddress(m) => {
                Address6::from_message(m).map(|a| LinkEvent::AddrGone {
                    ifindex: a.ifindex,
                    addr: a.addr,
                })
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use netlink_packet_route::link::InfoKind;

    use super::*;

    fn link_message(kind: Option<InfoKind>) -> LinkMessage {
        let mut m = LinkMessage::default();
        m.header.index = 7;
        m.header.link_layer_type = LinkLayerType::Ether;
        m.header.flags = LinkFlags::Up | LinkFlags::LowerUp;
        m.attributes = vec![
            LinkAttribute::IfName("eth1".into()),
            LinkAttribute::Mtu(9000),
            LinkAttribute::Address(vec![2, 0, 0, 0, 0, 7]),
            LinkAttribute::Controller(0),
        ];
        if let Some(k) = kind {
            m.attributes
                .push(LinkAttribute::LinkInfo(vec![LinkInfo::Kind(k)]));
        }
        m
    }

    #[test]
    fn links_decode_with_every_fact_the_consumers_use() {
        let l = Link::from_message(&link_message(Some(InfoKind::Veth))).unwrap();
        assert_eq!(l.ifindex, 7);
        assert_eq!(l.name, "eth1");
        assert_eq!(l.kind.as_deref(), Some("veth"));
        assert!(l.is_veth() && l.is_running() && l.ethernet && !l.enslaved);
        assert_eq!(l.mtu, Some(9000));
        assert_eq!(l.mac, Some(Mac([2, 0, 0, 0, 0, 7])));
        // A kind the crate does not know keeps the kernel's name.
        let other = Link::from_message(&link_message(Some(InfoKind::Other("netkit".into()))));
        assert_eq!(other.unwrap().kind.as_deref(), Some("netkit"));
        // A physical NIC has no kind.
        assert_eq!(Link::from_message(&link_message(None)).unwrap().kind, None);
        // No name: not a link.
        let mut nameless = link_message(None);
        nameless.attributes.remove(0);
        assert_eq!(Link::from_message(&nameless), None);
    }

    #[test]
    fn tentative_addresses_are_not_usable() {
        let mut m = AddressMessage::default();
        m.header.family = AddressFamily::Inet6;
        m.header.index = 3;
        m.header.prefix_len = 64;
        m.attributes = vec![
            AddressAttribute::Address("fe80::1".parse().unwrap()),
            AddressAttribute::Flags(AddressFlags::Tentative),
        ];
        let a = Address6::from_message(&m).unwrap();
        assert_eq!(
            (a.ifindex, a.prefix_len, a.usable, a.global),
            (3, 64, false, true)
        );
        m.header.scope = AddressScope::Link;
        assert!(!Address6::from_message(&m).unwrap().global);
        m.attributes[1] = AddressAttribute::Flags(AddressFlags::Permanent);
        assert!(Address6::from_message(&m).unwrap().usable);
        m.header.family = AddressFamily::Inet;
        assert_eq!(Address6::from_message(&m), None);
    }

    #[test]
    fn routes_decode_with_host_bits_cleared() {
        let mut m = RouteMessage::default();
        m.header.address_family = AddressFamily::Inet6;
        m.header.destination_prefix_length = 48;
        m.header.table = 254;
        m.attributes = vec![
            RouteAttribute::Destination(RouteAddress::Inet6("fd00:1:2:3::".parse().unwrap())),
            RouteAttribute::Oif(4),
        ];
        let r = Route6::from_message(&m).unwrap();
        assert_eq!(r.dst.to_string(), "fd00:1:2::/48");
        assert_eq!((r.table, r.oif, r.gateway), (254, Some(4), None));
    }

    #[test]
    fn macs_print_and_parse() {
        let m: Mac = "02:aa:00:0b:cc:ff".parse().unwrap();
        assert_eq!(m, Mac([0x02, 0xaa, 0, 0x0b, 0xcc, 0xff]));
        assert_eq!(m.to_string(), "02:aa:00:0b:cc:ff");
        for bad in [
            "",
            "02:aa:00:0b:cc",
            "02:aa:00:0b:cc:ff:00",
            "2:aa:00:0b:cc:ff",
            "zz:aa:00:0b:cc:ff",
        ] {
            assert!(bad.parse::<Mac>().is_err(), "{bad:?}");
        }
        assert_eq!(serde_json::to_string(&m).unwrap(), "\"02:aa:00:0b:cc:ff\"");
    }
}
