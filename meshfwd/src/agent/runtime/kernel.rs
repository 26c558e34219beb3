//! The agent's changes to the kernel outside the eBPF maps, all through
//! rtnetlink, sysctls and one ethtool request (never by running `ip`): the
//! link and address notifications the core reads, the local device that
//! carries the node's /128, IPv6 forwarding, DAD, veth checksums, and
//! removing routes an earlier run of the agent left behind.
//!
//! Routes the agent installs carry [`ROUTE_PROTOCOL`] (the map writer's
//! [`crate::fib::RTPROT_KUBERMESH`]), so `ip -6 route show proto 198`
//! lists exactly ours and a restart can find them.

use std::{
    collections::BTreeSet,
    io,
    net::IpAddr,
    path::{Path, PathBuf},
};

use dataplane::netlink::{Address6, LinkEvent, Route6};
use futures::{StreamExt as _, TryStreamExt as _};
use ipnet::IpNet;
use netlink_packet_core::NetlinkMessage;
use netlink_packet_route::{
    RouteNetlinkMessage,
    address::{AddressAttribute, AddressFlags},
    link::LinkMessage,
    route::RouteMessage,
};
use rtnetlink::{Handle, LinkDummy, LinkUnspec, MulticastGroup};

/// A kernel request that failed, and what it was for.
#[derive(Debug, thiserror::Error)]
pub enum KernelError {
    #[error("{what}: {source}")]
    Netlink {
        what: String,
        #[source]
        source: rtnetlink::Error,
    },
    #[error("{what} {}: {source}", path.display())]
    Sysctl {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("ethtool request {cmd:#x} on {iface}: {source}")]
    Ethtool {
        iface: String,
        cmd: u32,
        #[source]
        source: io::Error,
    },
    #[error("{0:?} is not an interface name")]
    BadName(String),
    #[error("{0}")]
    Missing(String),
}

type Result<T, E = KernelError> = std::result::Result<T, E>;

fn nl(what: impl Into<String>) -> impl FnOnce(rtnetlink::Error) -> KernelError {
    let what = what.into();
    move |source| KernelError::Netlink { what, source }
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
pub async fn dump(handle: &Handle) -> Result<Vec<LinkEvent>> {
    let mut out: Vec<LinkEvent> = handle
        .link()
        .get()
        .execute()
        .map_ok(|m: LinkMessage| dataplane::netlink::Link::from_message(&m).map(LinkEvent::Link))
        .try_filter_map(|ev| async move { Ok(ev) })
        .try_collect()
        .await
        .map_err(nl("listing links"))?;
    let mut addrs = handle.address().get().execute();
    while let Some(m) = addrs.next().await {
        let m = m.map_err(nl("listing addresses"))?;
        if let Some(a) = Address6::from_message(&m) {
            out.push(LinkEvent::Addr(a));
        }
    }
    Ok(out)
}

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
pub fn veth_finish_checksums(ifname: &str) -> Result<bool> {
    const ETHTOOL_GTXCSUM: u32 = 0x16;
    const ETHTOOL_STXCSUM: u32 = 0x17;
    ethtool_set(ifname, ETHTOOL_GTXCSUM, ETHTOOL_STXCSUM, 0)
}

/// Turn GRO on for a veth mesh link; return whether it was off.
///
/// The neighbour's XDP redirects frames into this veth's peer end, and a
/// veth delivers redirected frames only when its peer runs XDP or has
/// GRO (NAPI) on; without XDP here (`--no-xdp`, or before it attaches)
/// GRO is what keeps the neighbour's fast path from dropping them. The
/// kernel ignores the setting on a link that is down, so this runs when
/// the link comes up (as `ethtool -K <if> gro on` would).
pub fn veth_take_redirects(ifname: &str) -> Result<bool> {
    const ETHTOOL_GGRO: u32 = 0x2b;
    const ETHTOOL_SGRO: u32 = 0x2c;
    ethtool_set(ifname, ETHTOOL_GGRO, ETHTOOL_SGRO, 1)
}

/// Read an `ethtool_value` setting with `get` and, unless it is `want`
/// already, write `want` with `set`; return whether it changed.
#[expect(unsafe_code, reason = "the SIOCETHTOOL ioctl has no safe wrapper")]
fn ethtool_set(ifname: &str, get: u32, set: u32, want: u32) -> Result<bool> {
    let ethtool_error = |cmd, source| KernelError::Ethtool {
        iface: ifname.to_owned(),
        cmd,
        source,
    };
    use std::os::fd::AsRawFd as _;
    const SIOCETHTOOL: libc::c_ulong = 0x8946;
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
        return Err(KernelError::BadName(ifname.to_owned()));
    }
    let sock = nix::sys::socket::socket(
        nix::sys::socket::AddressFamily::Inet6,
        nix::sys::socket::SockType::Datagram,
        nix::sys::socket::SockFlag::SOCK_CLOEXEC,
        None,
    )
    .map_err(|e| ethtool_error(0, e.into()))?;
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
            return Err(ethtool_error(cmd, io::Error::last_os_error()));
        }
        Ok(value.data)
    };
    if ethtool(get, 0)? == want {
        return Ok(false);
    }
    ethtool(set, want)?;
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
            tracing::warn!(device = name, error = %e, "no dummy device: using lo for the node address");
            let lo = link_index(handle, "lo")
                .await?
                .ok_or_else(|| KernelError::Missing("no loopback device".into()))?;
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
                .map_err(nl(format!("creating dummy device {name}")))?;
            link_index(handle, name)
                .await?
                .ok_or_else(|| KernelError::Missing(format!("{name} vanished after creation")))?
        }
    };
    handle
        .link()
        .change(LinkUnspec::new_with_index(ifindex).up().build())
        .execute()
        .await
        .map_err(nl(format!("setting {name} up")))?;
    Ok(ifindex)
}

/// Return the index of the link `name`, if there is one.
pub async fn link_index(handle: &Handle, name: &str) -> Result<Option<u32>> {
    let mut links = handle.link().get().match_name(name.to_string()).execute();
    match links.try_next().await {
        Ok(Some(m)) => Ok(Some(m.header.index)),
        Ok(None) => Ok(None),
        Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -libc::ENODEV => Ok(None),
        Err(e) => Err(nl(format!("looking up link {name}"))(e)),
    }
}

/// Make the addresses inside `managed` (a cluster prefix, either family)
/// on `ifindex` exactly `want` (as host addresses: /128s or /32s); every
/// other address is left alone. Return (added, removed).
pub async fn sync_addresses(
    handle: &Handle,
    ifindex: u32,
    managed: IpNet,
    want: &[IpAddr],
) -> Result<(usize, usize)> {
    let host_len = managed.max_prefix_len();
    let msgs: Vec<_> = handle
        .address()
        .get()
        .set_link_index_filter(ifindex)
        .execute()
        .try_collect()
        .await
        .map_err(nl("listing addresses"))?;
    let mut have = BTreeSet::new();
    let mut removed = 0;
    for m in msgs {
        if m.header.index != ifindex {
            continue;
        }
        // IPv4 names the node's own address IFA_LOCAL (IFA_ADDRESS is the
        // peer's on a point-to-point link); IPv6 has IFA_ADDRESS only.
        let Some(addr) = m.attributes.iter().find_map(|a| match a {
            AddressAttribute::Local(a) | AddressAttribute::Address(a) => Some(*a),
            _ => None,
        }) else {
            continue;
        };
        if !managed.contains(&addr) {
            continue;
        }
        if want.contains(&addr) && m.header.prefix_len == host_len {
            have.insert(addr);
        } else {
            handle
                .address()
                .del(m)
                .execute()
                .await
                .map_err(nl(format!("removing {addr}")))?;
            removed += 1;
        }
    }
    let mut added = 0;
    for addr in want.iter().filter(|a| !have.contains(*a)) {
        let mut req = handle.address().add(ifindex, *addr, host_len);
        if addr.is_ipv6() {
            // Our own /128 on a dummy device: no duplicate to detect, and
            // DAD would keep it tentative (unusable) for a second.
            req.message_mut()
                .attributes
                .push(AddressAttribute::Flags(AddressFlags::Nodad));
        }
        req.replace()
            .execute()
            .await
            .map_err(nl(format!("adding {addr}/{host_len}")))?;
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

/// Turn on IPv4 forwarding for a node with IPv4, with loose reverse-path
/// filtering: an IPv4 route's next hop is an IPv6 neighbour, and with ECMP
/// a flow's packets may arrive on another member than the reverse route
/// picks, which strict filtering would drop. Return the sysctls changed.
pub fn enable_ipv4_forwarding(proc_sys: &Path) -> Result<Vec<String>> {
    let mut changed = Vec::new();
    for (key, value) in [
        ("net/ipv4/ip_forward", "1"),
        ("net/ipv4/conf/all/rp_filter", "2"),
        ("net/ipv4/conf/default/rp_filter", "2"),
    ] {
        if set_sysctl(proc_sys, key, value)? {
            changed.push(key.replace('/', "."));
        }
    }
    Ok(changed)
}

/// Turn off duplicate address detection on `ifname` (`default` for links
/// created from now on). Return whether anything changed.
pub fn skip_dad(proc_sys: &Path, ifname: &str) -> Result<bool> {
    if ifname.is_empty() || ifname.contains('/') || ifname.starts_with('.') {
        return Err(KernelError::BadName(ifname.to_owned()));
    }
    set_sysctl(proc_sys, &format!("net/ipv6/conf/{ifname}/accept_dad"), "0")
}

/// Write `value` to `proc_sys/key` unless it already holds it; return
/// whether it was written.
pub fn set_sysctl(proc_sys: &Path, key: &str, value: &str) -> Result<bool> {
    let path = proc_sys.join(key);
    let current = std::fs::read_to_string(&path).map_err(|source| KernelError::Sysctl {
        what: "reading",
        path: path.clone(),
        source,
    })?;
    if current.trim() == value {
        return Ok(false);
    }
    std::fs::write(&path, value).map_err(|source| KernelError::Sysctl {
        what: "writing",
        path: path.clone(),
        source,
    })?;
    Ok(true)
}

/// Return whether a route message is one of ours.
pub fn is_ours(m: &RouteMessage) -> bool {
    Route6::from_message(m).is_some_and(|r| r.protocol == ROUTE_PROTOCOL)
}

/// Return 64 random bits from the kernel (for a router id with nothing to
/// derive it from, and the salt of a new one after a collision).
pub fn random_u64() -> u64 {
    let mut buf = [0u8; 8];
    if getrandom(&mut buf).is_err() {
        // Without getrandom, time and pid still separate two nodes.
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        return meshfwd_common::hash::stable_hash(&[
            &t.as_nanos().to_be_bytes(),
            &std::process::id().to_be_bytes(),
        ]);
    }
    u64::from_ne_bytes(buf)
}

fn getrandom(buf: &mut [u8]) -> io::Result<()> {
    use std::io::Read as _;
    std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(buf))
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
        m.header.address_family = netlink_packet_route::AddressFamily::Inet6;
        assert!(!is_ours(&m));
        m.header.protocol = ROUTE_PROTOCOL.into();
        assert!(is_ours(&m));
    }
}
