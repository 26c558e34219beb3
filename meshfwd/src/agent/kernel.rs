//! The agent's changes to the kernel outside the eBPF maps, all through
//! rtnetlink (never by running `ip`): the local device that carries the
//! node's /128, IPv6 forwarding, and removing routes an earlier run of the
//! agent left behind.
//!
//! Routes the agent installs carry [`ROUTE_PROTOCOL`] (the map writer's
//! [`crate::fib::RTPROT_KUBERMESH`]), so `ip -6 route show proto 198`
//! lists exactly ours and a restart can find them.

use std::{
    collections::BTreeSet,
    net::{IpAddr, Ipv6Addr},
    path::Path,
};

use anyhow::{Context as _, Result};
use futures::TryStreamExt as _;
use netlink_packet_route::{
    AddressFamily,
    address::{AddressAttribute, AddressFlags},
    route::RouteMessage,
};
use rtnetlink::{Handle, LinkDummy, LinkUnspec, RouteMessageBuilder};

use ipnet::Ipv6Net;

/// Make a veth mesh link finish TCP/UDP checksums when it sends, as a NIC
/// does on the wire; return whether anything had to change.
///
/// A veth with transmit checksum offload on (its default) hands frames to
/// its peer with the checksum still to be filled in. Once the neighbour's
/// XDP program redirects such a frame that note is gone and the next
/// receiver drops it as corrupt: pings cross the mesh while every TCP
/// connection through a transit node hangs. Turning the offload off is
/// what `ethtool -K <if> tx off` does (it also turns off TSO, which needs
/// it); a veth has no hardware, so the stack did the work anyway.
#[expect(unsafe_code, reason = "the SIOCETHTOOL ioctl has no safe wrapper")]
pub fn veth_finish_checksums(ifname: &str) -> Result<bool> {
    use std::os::fd::AsRawFd as _;
    const SIOCETHTOOL: libc::c_ulong = 0x8946;
    const ETHTOOL_GTXCSUM: u32 = 0x16;
    const ETHTOOL_STXCSUM: u32 = 0x17;
    /// `struct ethtool_value`.
    #[repr(C)]
    struct EthtoolValue {
        cmd: u32,
        data: u32,
    }
    /// `struct ifreq` with the `ifr_data` member of its union.
    #[repr(C)]
    struct IfReq {
        name: [libc::c_char; libc::IFNAMSIZ],
        data: *mut EthtoolValue,
        _rest: [u8; 16],
    }
    let bytes = ifname.as_bytes();
    if bytes.is_empty() || bytes.len() >= libc::IFNAMSIZ || bytes.contains(&0) {
        anyhow::bail!("{ifname:?} is not an interface name");
    }
    let sock = nix::sys::socket::socket(
        nix::sys::socket::AddressFamily::Inet6,
        nix::sys::socket::SockType::Datagram,
        nix::sys::socket::SockFlag::SOCK_CLOEXEC,
        None,
    )
    .context("opening a socket for ethtool requests")?;
    let ethtool = |cmd: u32, data: u32| -> Result<u32> {
        let mut value = EthtoolValue { cmd, data };
        let mut req = IfReq {
            name: [0; libc::IFNAMSIZ],
            data: &mut value,
            _rest: [0; 16],
        };
        for (d, s) in req.name.iter_mut().zip(bytes) {
            *d = *s as libc::c_char;
        }
        // SAFETY: SIOCETHTOOL reads the NUL-terminated name and the
        // `ethtool_value` that `req.data` points to; both live on this
        // stack frame for the whole call, and the kernel writes back only
        // into `value`.
        let r = unsafe { libc::ioctl(sock.as_raw_fd(), SIOCETHTOOL as _, &mut req) };
        if r < 0 {
            return Err(std::io::Error::last_os_error())
                .with_context(|| format!("ethtool request {cmd:#x} on {ifname}"));
        }
        Ok(value.data)
    };
    if ethtool(ETHTOOL_GTXCSUM, 0)? == 0 {
        return Ok(false);
    }
    ethtool(ETHTOOL_STXCSUM, 0)?;
    Ok(true)
}

/// The routing protocol number on every kernel route of ours.
pub const ROUTE_PROTOCOL: u8 = crate::fib::RTPROT_KUBERMESH;

/// Return the index of the device `name`, creating it as a dummy device if
/// it does not exist, and set it up. A kernel without dummy devices gets
/// the address on `lo` instead.
pub async fn ensure_local_device(handle: &Handle, name: &str) -> Result<(u32, String)> {
    match ensure_dummy(handle, name).await {
        Ok(i) => Ok((i, name.to_string())),
        Err(e) => {
            tracing::warn!(device = name, error = %format!("{e:#}"), "no dummy device: using lo for the node address");
            let lo = link_index(handle, "lo")
                .await?
                .context("no loopback device")?;
            Ok((lo, "lo".to_string()))
        }
    }
}

async fn ensure_dummy(handle: &Handle, name: &str) -> Result<u32> {
    let ifindex = match link_index(handle, name).await? {
        Some(i) => i,
        None => {
            handle
                .link()
                .add(LinkDummy::new(name).build())
                .execute()
                .await
                .with_context(|| format!("creating dummy device {name}"))?;
            link_index(handle, name)
                .await?
                .with_context(|| format!("{name} vanished after creation"))?
        }
    };
    handle
        .link()
        .change(LinkUnspec::new_with_index(ifindex).up().build())
        .execute()
        .await
        .with_context(|| format!("setting {name} up"))?;
    Ok(ifindex)
}

/// Return the index of the link `name`, if there is one.
pub async fn link_index(handle: &Handle, name: &str) -> Result<Option<u32>> {
    let mut links = handle.link().get().match_name(name.to_string()).execute();
    match links.try_next().await {
        Ok(Some(m)) => Ok(Some(m.header.index)),
        Ok(None) => Ok(None),
        Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -libc::ENODEV => Ok(None),
        Err(e) => Err(e).with_context(|| format!("looking up link {name}")),
    }
}

/// Make the addresses inside `managed` (the cluster prefix) on `ifindex`
/// exactly `want` (as /128s); every other address is left alone. Return
/// (added, removed).
pub async fn sync_addresses(
    handle: &Handle,
    ifindex: u32,
    managed: Ipv6Net,
    want: &[Ipv6Addr],
) -> Result<(usize, usize)> {
    let msgs: Vec<_> = handle
        .address()
        .get()
        .set_link_index_filter(ifindex)
        .execute()
        .try_collect()
        .await
        .context("listing addresses")?;
    let mut have = BTreeSet::new();
    let mut removed = 0;
    for m in msgs {
        if m.header.family != AddressFamily::Inet6 || m.header.index != ifindex {
            continue;
        }
        let Some(addr) = m.attributes.iter().find_map(|a| match a {
            AddressAttribute::Address(IpAddr::V6(a)) => Some(*a),
            _ => None,
        }) else {
            continue;
        };
        if !managed.contains(&addr) {
            continue;
        }
        if want.contains(&addr) && m.header.prefix_len == 128 {
            have.insert(addr);
        } else {
            handle
                .address()
                .del(m)
                .execute()
                .await
                .with_context(|| format!("removing {addr}"))?;
            removed += 1;
        }
    }
    let mut added = 0;
    for addr in want.iter().filter(|a| !have.contains(*a)) {
        let mut req = handle.address().add(ifindex, IpAddr::V6(*addr), 128);
        // Our own /128 on a dummy device: no duplicate to detect, and DAD
        // would keep it tentative (unusable) for a second.
        req.message_mut()
            .attributes
            .push(AddressAttribute::Flags(AddressFlags::Nodad));
        req.replace()
            .execute()
            .await
            .with_context(|| format!("adding {addr}/128"))?;
        added += 1;
    }
    Ok((added, removed))
}

/// Turn on IPv6 forwarding (the kernel's copy of the routes must forward
/// what XDP hands it), and make the kernel skip next hops on links without
/// carrier, so the node's own traffic leaves a pulled cable's ECMP member
/// at once, as the fast path does. Return the sysctls that were changed.
pub fn enable_forwarding(proc_sys: &Path) -> Result<Vec<String>> {
    let mut changed = Vec::new();
    for key in [
        "net/ipv6/conf/all/forwarding",
        "net/ipv6/conf/default/forwarding",
        "net/ipv6/conf/all/ignore_routes_with_linkdown",
        "net/ipv6/conf/default/ignore_routes_with_linkdown",
    ] {
        if set_sysctl(proc_sys, key, "1")? {
            changed.push(key.replace('/', "."));
        }
    }
    Ok(changed)
}

/// Turn off duplicate address detection on `ifname` (`default` for links
/// created from now on). Return whether anything changed.
pub fn skip_dad(proc_sys: &Path, ifname: &str) -> Result<bool> {
    if ifname.is_empty() || ifname.contains('/') || ifname.starts_with('.') {
        anyhow::bail!("bad interface name {ifname:?}");
    }
    set_sysctl(proc_sys, &format!("net/ipv6/conf/{ifname}/accept_dad"), "0")
}

/// Write `value` to `proc_sys/key` unless it already holds it; return
/// whether it was written.
pub fn set_sysctl(proc_sys: &Path, key: &str, value: &str) -> Result<bool> {
    let path = proc_sys.join(key);
    let current =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    if current.trim() == value {
        return Ok(false);
    }
    std::fs::write(&path, value)
        .with_context(|| format!("writing {value} to {}", path.display()))?;
    Ok(true)
}

/// Return whether a route message is one of ours.
pub fn is_ours(m: &RouteMessage) -> bool {
    u8::from(m.header.protocol) == ROUTE_PROTOCOL
}

/// Delete every IPv6 route with our protocol number (left by an earlier
/// run); return how many.
pub async fn remove_stale_routes(handle: &Handle) -> Result<usize> {
    let routes: Vec<RouteMessage> = handle
        .route()
        .get(RouteMessageBuilder::<Ipv6Addr>::new().build())
        .execute()
        .try_collect()
        .await
        .context("listing IPv6 routes")?;
    let mut removed = 0;
    for m in routes.into_iter().filter(is_ours) {
        match handle.route().del(m).execute().await {
            Ok(()) => removed += 1,
            // Gone already (its device went away meanwhile).
            Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -libc::ESRCH => {}
            Err(e) => return Err(e).context("removing a stale route"),
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sysctl_is_written_only_when_different() {
        let dir = std::env::temp_dir().join(format!("meshfwd-sysctl-{}", std::process::id()));
        let key = "net/ipv6/conf/all/forwarding";
        std::fs::create_dir_all(dir.join("net/ipv6/conf/all")).unwrap();
        std::fs::create_dir_all(dir.join("net/ipv6/conf/default")).unwrap();
        std::fs::write(dir.join(key), "0\n").unwrap();
        std::fs::write(dir.join("net/ipv6/conf/default/forwarding"), "1\n").unwrap();
        for d in ["all", "default"] {
            std::fs::write(
                dir.join(format!("net/ipv6/conf/{d}/ignore_routes_with_linkdown")),
                "1\n",
            )
            .unwrap();
        }
        assert_eq!(
            enable_forwarding(&dir).unwrap(),
            vec!["net.ipv6.conf.all.forwarding".to_string()]
        );
        assert_eq!(std::fs::read_to_string(dir.join(key)).unwrap(), "1");
        assert!(enable_forwarding(&dir).unwrap().is_empty());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn route_protocol_is_ours() {
        let mut m = RouteMessage::default();
        assert!(!is_ours(&m));
        m.header.protocol = ROUTE_PROTOCOL.into();
        assert!(is_ours(&m));
    }
}
