//! The kernel's neighbour table and links, over rtnetlink: where next hops'
//! MACs, egress MACs and MTUs come from.
//!
//! The fast path never resolves a neighbour itself: a next hop without a
//! MAC is passed to the kernel (which resolves it while forwarding), and
//! the writer asks for resolution with an `NTF_USE` request. Either way the
//! answer arrives as a neighbour event, which fills in the MAC.

use std::{
    collections::HashMap,
    net::{IpAddr, Ipv6Addr},
};

use dataplane::netlink::{Address6, Link};
use futures::{StreamExt as _, TryStreamExt as _, channel::mpsc::UnboundedReceiver};
use netlink_packet_core::NetlinkMessage;
use netlink_packet_route::{
    AddressFamily, RouteNetlinkMessage,
    link::LinkMessage,
    neighbour::{
        NeighbourAddress, NeighbourAttribute, NeighbourFlags, NeighbourMessage, NeighbourState,
    },
};
use netlink_sys::SocketAddr;
use rtnetlink::{Handle, MulticastGroup};

use super::{Doing as _, NextHopKey, Result};

/// What the fast path needs of an egress interface.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LinkInfo {
    /// The interface's own MAC (the source MAC of forwarded frames).
    pub mac: [u8; 6],
    /// Its MTU.
    pub mtu: u32,
    /// Administratively up with carrier.
    pub running: bool,
}

/// A change in the neighbour table that matters to next hops.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NeighbourUpdate {
    /// The neighbour has a usable MAC.
    Resolved { key: NextHopKey, mac: [u8; 6] },
    /// The neighbour's MAC is unknown or no longer trusted.
    Unresolved { key: NextHopKey },
}

impl NeighbourUpdate {
    /// Return the neighbour it is about.
    pub fn key(&self) -> NextHopKey {
        match self {
            NeighbourUpdate::Resolved { key, .. } | NeighbourUpdate::Unresolved { key } => *key,
        }
    }
}

/// Open a fresh rtnetlink connection on the current tokio runtime.
pub fn connect() -> Result<Handle> {
    let (conn, handle, _) =
        rtnetlink::new_connection().doing(|| "opening an rtnetlink socket".into())?;
    tokio::spawn(conn);
    Ok(handle)
}

/// Subscribe to neighbour and link events (subscribe before dumping, so
/// nothing falls between the dump and the first event).
pub fn subscribe() -> Result<UnboundedReceiver<(NetlinkMessage<RouteNetlinkMessage>, SocketAddr)>> {
    let (conn, _handle, messages) =
        rtnetlink::new_multicast_connection(&[MulticastGroup::Neigh, MulticastGroup::Link])
            .doing(|| "subscribing to rtnetlink neighbour and link events".into())?;
    tokio::spawn(conn);
    Ok(messages)
}

/// Read a neighbour message (new or deleted) as a next-hop update.
pub fn parse_neighbour(msg: &NeighbourMessage, deleted: bool) -> Option<NeighbourUpdate> {
    if msg.header.family != AddressFamily::Inet6 {
        return None;
    }
    let mut via = None;
    let mut lladdr = None;
    for attr in &msg.attributes {
        match attr {
            NeighbourAttribute::Destination(NeighbourAddress::Inet6(a)) => via = Some(*a),
            NeighbourAttribute::LinkLayerAddress(l) if l.len() == 6 => {
                lladdr = Some([l[0], l[1], l[2], l[3], l[4], l[5]]);
            }
            _ => {}
        }
    }
    let key = NextHopKey {
        ifindex: msg.header.ifindex,
        via: via?,
    };
    let usable = matches!(
        msg.header.state,
        NeighbourState::Reachable
            | NeighbourState::Stale
            | NeighbourState::Delay
            | NeighbourState::Probe
            | NeighbourState::Permanent
            | NeighbourState::Noarp
    );
    Some(match (deleted, usable, lladdr) {
        (false, true, Some(mac)) => NeighbourUpdate::Resolved { key, mac },
        _ => NeighbourUpdate::Unresolved { key },
    })
}

/// Return every resolved IPv6 neighbour.
pub async fn dump_neighbours(handle: &Handle) -> Result<HashMap<NextHopKey, [u8; 6]>> {
    let mut out = HashMap::new();
    let mut stream = handle
        .neighbours()
        .get()
        .set_address_family(AddressFamily::Inet6)
        .execute();
    while let Some(msg) = stream
        .try_next()
        .await
        .doing(|| "dumping the neighbour table".into())?
    {
        if let Some(NeighbourUpdate::Resolved { key, mac }) = parse_neighbour(&msg, false) {
            out.insert(key, mac);
        }
    }
    Ok(out)
}

/// Ask the kernel to resolve `key` now (an `NTF_USE` neighbour request,
/// creating the entry if needed); the answer comes as an event.
pub async fn resolve(handle: &Handle, key: NextHopKey) -> Result<()> {
    let mut req = handle
        .neighbours()
        .add(key.ifindex, IpAddr::V6(key.via))
        .replace();
    req.message_mut().header.state = NeighbourState::None;
    req.message_mut().header.flags = NeighbourFlags::Use;
    req.execute()
        .await
        .doing(|| format!("asking the kernel to resolve {key}"))
}

/// Read a link message as [`LinkInfo`].
pub fn parse_link(msg: &LinkMessage) -> Option<(u32, LinkInfo)> {
    let link = Link::from_message(msg)?;
    Some((
        link.ifindex,
        LinkInfo {
            mac: link.mac?.0,
            mtu: link.mtu?,
            running: link.is_running(),
        },
    ))
}

/// Return the MAC and MTU of `ifindex`.
pub async fn link_info(handle: &Handle, ifindex: u32) -> Result<LinkInfo> {
    let mut stream = handle.link().get().match_index(ifindex).execute();
    let msg = stream
        .try_next()
        .await
        .doing(|| format!("reading link {ifindex}"))?
        .doing(|| format!("no link with ifindex {ifindex}"))?;
    parse_link(&msg)
        .map(|(_, info)| info)
        .doing(|| format!("link {ifindex} has no MAC or MTU"))
}

/// Return the ifindex of the interface called `name`.
pub async fn ifindex(handle: &Handle, name: &str) -> Result<u32> {
    let mut stream = handle.link().get().match_name(name.to_string()).execute();
    let msg = stream
        .try_next()
        .await
        .doing(|| format!("no interface named {name}"))?
        .doing(|| format!("no interface named {name}"))?;
    Ok(msg.header.index)
}

/// Return this node's IPv6 addresses wider than link scope (they belong in
/// the FIB as local entries).
pub async fn local_addresses(handle: &Handle) -> Result<Vec<Ipv6Addr>> {
    let mut out = Vec::new();
    let mut stream = handle.address().get().execute();
    while let Some(msg) = stream.next().await {
        let msg = msg.doing(|| "dumping addresses".into())?;
        if let Some(a) = Address6::from_message(&msg).filter(|a| a.global) {
            out.push(a.addr);
        }
    }
    out.sort();
    out.dedup();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(state: NeighbourState, mac: Option<[u8; 6]>) -> NeighbourMessage {
        let mut m = NeighbourMessage::default();
        m.header.family = AddressFamily::Inet6;
        m.header.ifindex = 7;
        m.header.state = state;
        m.attributes
            .push(NeighbourAttribute::Destination(NeighbourAddress::Inet6(
                "fe80::1".parse().unwrap(),
            )));
        if let Some(mac) = mac {
            m.attributes
                .push(NeighbourAttribute::LinkLayerAddress(mac.to_vec()));
        }
        m
    }

    #[test]
    fn usable_states_with_a_mac_resolve() {
        let key = NextHopKey {
            ifindex: 7,
            via: "fe80::1".parse().unwrap(),
        };
        let mac = [2, 0, 0, 0, 0, 1];
        for state in [
            NeighbourState::Reachable,
            NeighbourState::Stale,
            NeighbourState::Permanent,
        ] {
            assert_eq!(
                parse_neighbour(&msg(state, Some(mac)), false),
                Some(NeighbourUpdate::Resolved { key, mac })
            );
        }
        for state in [NeighbourState::Incomplete, NeighbourState::Failed] {
            assert_eq!(
                parse_neighbour(&msg(state, None), false),
                Some(NeighbourUpdate::Unresolved { key })
            );
        }
        assert_eq!(
            parse_neighbour(&msg(NeighbourState::Reachable, Some(mac)), true),
            Some(NeighbourUpdate::Unresolved { key })
        );
    }
}
