//! The route table in the kernel FIB, under our own protocol id, so the
//! host's own traffic, ICMP errors for punted packets and `ip route` agree
//! with the fast path. ECMP routes are one multipath route
//! (`RTA_MULTIPATH`), replaced atomically (`NLM_F_REPLACE`), so the kernel
//! is make-before-break too. IPv4 routes go via the same IPv6 neighbours
//! (`RTA_VIA`, `ip route ... via inet6 fe80::...`, Linux 5.2 and later).

use std::{
    collections::{BTreeMap, BTreeSet},
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
};

use super::{Doing as _, FibError, Result};
use futures::TryStreamExt as _;
use netlink_packet_route::{
    AddressFamily,
    route::{RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol},
};
use rtnetlink::{Handle, RouteMessageBuilder, RouteNextHopBuilder};

use dataplane::netlink::Route6;
use ipnet::{IpNet, Ipv4Net};

use super::{NextHopKey, RTPROT_KUBERMESH};

/// The kernel routes this writer owns: prefix -> next hops.
pub type KernelRoutes = BTreeMap<IpNet, BTreeSet<NextHopKey>>;

/// Our route for `prefix` via `hops`; IPv4 prefixes get `RTA_VIA` (the
/// builder turns an IPv6 gateway of an IPv4 route into one).
fn message(prefix: IpNet, hops: &BTreeSet<NextHopKey>) -> Result<RouteMessage> {
    let bad = |e| FibError::Kernel(format!("bad route {prefix}: {e:?}"));
    let mut b = key_builder(prefix)?;
    if hops.len() == 1 {
        let hop = hops.first().expect("one hop");
        b = b.output_interface(hop.ifindex);
        if !hop.is_on_link() {
            b = b.gateway(IpAddr::V6(hop.via)).map_err(bad)?;
        }
    } else {
        let mut nhs = Vec::with_capacity(hops.len());
        for hop in hops {
            let nh = match prefix {
                IpNet::V6(_) => RouteNextHopBuilder::new_ipv6(),
                IpNet::V4(_) => RouteNextHopBuilder::new_ipv4(),
            };
            let mut nh = nh.interface(hop.ifindex);
            if !hop.is_on_link() {
                nh = nh.via(IpAddr::V6(hop.via)).map_err(bad)?;
            }
            nhs.push(nh.build());
        }
        b = b.multipath(nhs);
    }
    Ok(b.build())
}

/// A builder holding our route's identity (prefix, protocol, table).
fn key_builder(prefix: IpNet) -> Result<RouteMessageBuilder<IpAddr>> {
    Ok(RouteMessageBuilder::<IpAddr>::new()
        .destination_prefix(prefix.network(), prefix.prefix_len())
        .map_err(|e| FibError::Kernel(format!("bad route {prefix}: {e:?}")))?
        .protocol(RouteProtocol::from(RTPROT_KUBERMESH))
        .table_id(u32::from(RouteHeader::RT_TABLE_MAIN)))
}

/// Install or replace the route for `prefix`.
pub async fn replace(handle: &Handle, prefix: IpNet, hops: &BTreeSet<NextHopKey>) -> Result<()> {
    let msg = message(prefix, hops)?;
    handle
        .route()
        .add(msg)
        .replace()
        .execute()
        .await
        .doing(|| format!("installing kernel route {prefix}"))
}

/// Remove our route for `prefix`.
pub async fn remove(handle: &Handle, prefix: IpNet) -> Result<()> {
    let msg = key_builder(prefix)?.build();
    match handle.route().del(msg).execute().await {
        Ok(()) => Ok(()),
        // Already gone (an operator or a link deletion removed it).
        Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -libc::ESRCH => Ok(()),
        Err(e) => Err(e).doing(|| format!("removing kernel route {prefix}")),
    }
}

/// Remove our routes in the kernel that `keep` does not hold (an earlier
/// run's); return how many.
pub async fn prune(handle: &Handle, keep: &KernelRoutes) -> Result<usize> {
    let mut removed = 0;
    for prefix in dump_ours(handle).await? {
        if !keep.contains_key(&prefix) {
            remove(handle, prefix).await?;
            removed += 1;
        }
    }
    Ok(removed)
}

/// Return the prefixes of our routes now in the kernel (a restarted agent
/// removes the ones it no longer wants).
pub async fn dump_ours(handle: &Handle) -> Result<BTreeSet<IpNet>> {
    let mut out = BTreeSet::new();
    let queries = [
        RouteMessageBuilder::<Ipv6Addr>::new().build(),
        RouteMessageBuilder::<Ipv4Addr>::new().build(),
    ];
    for query in queries {
        let mut stream = handle.route().get(query).execute();
        while let Some(msg) = stream
            .try_next()
            .await
            .doing(|| "dumping kernel routes".into())?
        {
            if u8::from(msg.header.protocol) != RTPROT_KUBERMESH {
                continue;
            }
            if let Some(route) = Route6::from_message(&msg) {
                out.insert(IpNet::V6(route.dst));
            } else if let Some(dst) = ipv4_destination(&msg) {
                out.insert(IpNet::V4(dst));
            }
        }
    }
    Ok(out)
}

/// The destination of an IPv4 route message.
fn ipv4_destination(msg: &RouteMessage) -> Option<Ipv4Net> {
    if msg.header.address_family != AddressFamily::Inet {
        return None;
    }
    let dst = msg
        .attributes
        .iter()
        .find_map(|a| match a {
            RouteAttribute::Destination(RouteAddress::Inet(a)) => Some(*a),
            _ => None,
        })
        .unwrap_or(Ipv4Addr::UNSPECIFIED);
    Some(
        Ipv4Net::new(dst, msg.header.destination_prefix_length)
            .ok()?
            .trunc(),
    )
}

/// Bring the kernel from `installed` to `desired`: replace what changed,
/// then remove what went away. Return how many routes were written.
pub async fn sync(
    handle: &Handle,
    installed: &mut KernelRoutes,
    desired: &KernelRoutes,
) -> Result<usize> {
    let mut writes = 0;
    for (prefix, hops) in desired {
        if hops.is_empty() || installed.get(prefix) == Some(hops) {
            continue;
        }
        replace(handle, *prefix, hops).await?;
        installed.insert(*prefix, hops.clone());
        writes += 1;
    }
    let gone: Vec<IpNet> = installed
        .keys()
        .filter(|p| desired.get(*p).is_none_or(|h| h.is_empty()))
        .copied()
        .collect();
    for prefix in gone {
        remove(handle, prefix).await?;
        installed.remove(&prefix);
        writes += 1;
    }
    Ok(writes)
}
