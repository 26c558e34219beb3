//! Pod wiring: the veth pair, addresses, routes and neighbours that make a
//! pod reachable through the kernel (the fast path rides on top of this).
//!
//! ```text
//!   pod netns                                   host netns
//!   CNI_IFNAME  <------------ veth ------------>  km<hash>
//!   <addr6>/128                                  fe80::1/64 (NODAD)
//!   default via fe80::1                          <addr6>/128 dev km<hash>
//!   neigh fe80::1 -> host MAC (permanent)        neigh <addr6> -> pod MAC (permanent)
//!   with IPv4:
//!   <addr4>/32                                   <addr4>/32 dev km<hash> scope link
//!   169.254.1.1 dev CNI_IFNAME scope link        neigh <addr4> -> pod MAC (permanent)
//!   default via 169.254.1.1
//!   neigh 169.254.1.1 -> host MAC (permanent)
//! ```
//!
//! Every pod sees the same gateways, `fe80::1` and `169.254.1.1`, on its
//! own link; addresses are added without DAD and neighbours are static, so
//! the pod can talk the moment ADD returns and never sends ND or ARP. The
//! IPv4 gateway is an IPv4 link-local address that no interface holds:
//! the pod needs only its MAC, which the static entry gives, and it is an
//! IPv4 gateway any consumer of the CNI result understands (a default route
//! `via inet6 fe80::1` would work in the kernel too, but would put an IPv6
//! gateway in an IPv4 route of the result). The host veth needs no IPv4
//! address: the host routes to the pod's /32 and knows its MAC. The host end's name and both MACs are derived from
//! `(container id, ifname)`, so DEL and GC find them with no state at all.

use std::fs::File;
use std::io::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::AsFd;
use std::path::Path;

use nix::sched::{CloneFlags, setns};

use meshfwd_common::hash;

use crate::netlink::{Link, Netlink, NlError, VethEnd};
use crate::spec::{Code, Error, Result};

/// The pods' IPv6 gateway: the same link-local address on every host veth.
pub const GATEWAY: Ipv6Addr = Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 1);
/// The pods' IPv4 gateway: an IPv4 link-local address held by no
/// interface, reached through a static neighbour entry.
pub const GATEWAY4: Ipv4Addr = Ipv4Addr::new(169, 254, 1, 1);

/// Return the pods' gateway of `addr`'s family.
pub fn gateway_of(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V6(_) => IpAddr::V6(GATEWAY),
        IpAddr::V4(_) => IpAddr::V4(GATEWAY4),
    }
}

/// Return the default route of `addr`'s family (`::/0` or `0.0.0.0/0`).
pub fn default_route(addr: IpAddr) -> ipnet::IpNet {
    match addr {
        IpAddr::V6(_) => ipnet::IpNet::V6(ipnet::Ipv6Net::default()),
        IpAddr::V4(_) => ipnet::IpNet::V4(ipnet::Ipv4Net::default()),
    }
}

/// Return `addr` as a host route (/128 or /32).
pub fn host_net(addr: IpAddr) -> ipnet::IpNet {
    ipnet::IpNet::from(addr)
}
/// Prefix of host veth names (`km` + 12 hex digits).
pub use dataplane::tc::HOST_VETH_PREFIX;

/// Return the stable hash of an attachment: the same across releases and
/// hosts, so DEL and GC find what ADD made from the names alone.
fn attachment_hash(container_id: &str, ifname: &str) -> u64 {
    hash::fnv1a(&[container_id.as_bytes(), &[0], ifname.as_bytes()])
}

/// Return the host-side veth name of an attachment.
pub fn host_veth_name(container_id: &str, ifname: &str) -> String {
    format!(
        "{HOST_VETH_PREFIX}{:012x}",
        attachment_hash(container_id, ifname) & 0xffff_ffff_ffff
    )
}

/// Return the (host end, pod end) MACs of an attachment: locally
/// administered unicast, differing in the first octet.
pub fn macs(container_id: &str, ifname: &str) -> ([u8; 6], [u8; 6]) {
    let h = attachment_hash(container_id, ifname).to_be_bytes();
    let host = [0x02, h[1], h[2], h[3], h[4], h[5]];
    let pod = [0x0a, h[1], h[2], h[3], h[4], h[5]];
    (host, pod)
}

/// Open a network namespace path. A path that does not exist means the
/// container is gone (code 3); one that is not a network namespace is a bad
/// `CNI_NETNS` (code 4).
pub fn open_netns(path: &Path) -> Result<File> {
    let f = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(Error::new(
                Code::UnknownContainer,
                format!(
                    "CNI_NETNS {} does not exist: the container is gone",
                    path.display()
                ),
            ));
        }
        Err(e) => {
            return Err(Error::new(
                Code::InvalidEnv,
                format!("CNI_NETNS {} cannot be opened", path.display()),
            )
            .details(e));
        }
    };
    // nsfs files answer NS_GET_NSTYPE; cheaper and safe to tell from the
    // filesystem magic.
    let is_nsfs = nix::sys::statfs::fstatfs(&f)
        .map(|s| s.filesystem_type().0 == NSFS_MAGIC)
        .unwrap_or(false);
    if !is_nsfs {
        return Err(Error::new(
            Code::InvalidEnv,
            format!("CNI_NETNS {} is not a network namespace", path.display()),
        ));
    }
    Ok(f)
}

/// `NSFS_MAGIC` from linux/magic.h.
const NSFS_MAGIC: i64 = 0x6e73_6673;

/// Run `f` with the calling thread inside `ns`, then come back. Failing to
/// come back would leave the plugin working in the wrong namespace, so that
/// aborts the process.
pub fn in_netns<T>(ns: &File, f: impl FnOnce() -> T) -> Result<T> {
    let home = File::open("/proc/thread-self/ns/net")
        .map_err(|e| Error::new(Code::Io, "opening the host network namespace").details(e))?;
    setns(ns.as_fd(), CloneFlags::CLONE_NEWNET).map_err(|e| {
        Error::new(Code::InvalidEnv, "entering the pod's network namespace").details(e)
    })?;
    let out = f();
    if let Err(e) = setns(home.as_fd(), CloneFlags::CLONE_NEWNET) {
        eprintln!("meshfwd-cni: cannot return to the host network namespace: {e}");
        std::process::abort();
    }
    Ok(out)
}

/// Set a per-interface IPv6 sysctl in the current namespace.
fn ipv6_conf(ifname: &str, key: &str, value: &str) -> std::io::Result<()> {
    let path = format!("/proc/sys/net/ipv6/conf/{ifname}/{key}");
    std::fs::OpenOptions::new()
        .write(true)
        .open(path)?
        .write_all(value.as_bytes())
}

/// Enable forwarding of `addr`'s family in the current (host) namespace
/// if it is off.
fn enable_forwarding(addr: IpAddr) -> std::io::Result<()> {
    let path = match addr {
        IpAddr::V6(_) => "/proc/sys/net/ipv6/conf/all/forwarding",
        IpAddr::V4(_) => "/proc/sys/net/ipv4/ip_forward",
    };
    if std::fs::read_to_string(path)?.trim() != "1" {
        std::fs::write(path, "1")?;
    }
    Ok(())
}

fn nl_err(e: NlError) -> Error {
    Error::new(Code::Netlink, e.what.clone()).details(&e.err)
}

/// What ADD built, for the result and the endpoint map.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Wired {
    /// The pod's addresses, as `on_created` allocated them (IPv6 first).
    pub addrs: Vec<IpAddr>,
    pub host_name: String,
    pub host_index: u32,
    pub host_mac: [u8; 6],
    pub pod_mac: [u8; 6],
    pub mtu: u32,
}

/// A request to wire one pod.
pub struct Plan<'a> {
    pub container_id: &'a str,
    pub ifname: &'a str,
    pub netns: &'a File,
    pub mtu: u32,
    /// `runtimeConfig.mac`, else the derived one.
    pub pod_mac: Option<[u8; 6]>,
    /// Whether the pod's traffic takes the fast path (else no one may
    /// attach to its veth).
    pub fast_path: bool,
}

/// Open a netlink socket inside `ns`.
pub fn netlink_in(ns: &File) -> Result<Netlink> {
    in_netns(ns, Netlink::open)?
        .map_err(|e| Error::new(Code::Netlink, "opening netlink in the pod's namespace").details(e))
}

/// Open a netlink socket in the host namespace.
pub fn netlink_host() -> Result<Netlink> {
    Netlink::open().map_err(|e| Error::new(Code::Netlink, "opening netlink").details(e))
}

/// Fail with code 4 if the pod already has an interface called `ifname`.
pub fn ensure_ifname_free(pod: &mut Netlink, ifname: &str, netns: &Path) -> Result<()> {
    if pod.link_by_name(ifname).map_err(nl_err)?.is_some() {
        return Err(Error::new(
            Code::InvalidEnv,
            format!(
                "CNI_IFNAME {ifname} already exists in network namespace {}",
                netns.display()
            ),
        ));
    }
    Ok(())
}

/// Build the veth pair, then ask `on_created` (given the host end's name)
/// for the pod's addresses, then configure both ends. On failure, including
/// one from `on_created`, the pair is deleted again, so nothing is left
/// half-made.
pub fn wire(
    host: &mut Netlink,
    pod: &mut Netlink,
    plan: &Plan,
    on_created: impl FnOnce(&str) -> Result<Vec<IpAddr>>,
) -> Result<Wired> {
    let host_name = host_veth_name(plan.container_id, plan.ifname);
    let (host_mac, derived_pod_mac) = macs(plan.container_id, plan.ifname);
    let pod_mac = plan.pod_mac.unwrap_or(derived_pod_mac);
    // A host end left by an ADD that crashed half-way: ours to replace.
    host.del_link_by_name(&host_name).map_err(nl_err)?;
    host.add_veth(
        &VethEnd {
            name: &host_name,
            mac: host_mac,
            mtu: plan.mtu,
        },
        &VethEnd {
            name: plan.ifname,
            mac: pod_mac,
            mtu: plan.mtu,
        },
        plan.netns.as_fd(),
    )
    .map_err(|e| {
        if e.errno() == Some(libc::EEXIST) {
            Error::new(
                Code::InvalidEnv,
                format!("CNI_IFNAME {} already exists in the pod", plan.ifname),
            )
        } else {
            nl_err(e)
        }
    })?;
    let built = on_created(&host_name)
        .and_then(|addrs| configure(host, pod, plan, addrs, &host_name, host_mac, pod_mac));
    if built.is_err() {
        let _ = host.del_link_by_name(&host_name);
    }
    built
}

fn configure(
    host: &mut Netlink,
    pod: &mut Netlink,
    plan: &Plan,
    addrs: Vec<IpAddr>,
    host_name: &str,
    host_mac: [u8; 6],
    pod_mac: [u8; 6],
) -> Result<Wired> {
    let missing = |what: &str| {
        Error::new(
            Code::Netlink,
            format!("{what} vanished right after creation"),
        )
    };
    let host_link = host
        .link_by_name(host_name)
        .map_err(nl_err)?
        .ok_or_else(|| missing(host_name))?;
    let pod_link = pod
        .link_by_name(plan.ifname)
        .map_err(nl_err)?
        .ok_or_else(|| missing(plan.ifname))?;
    let (pod_if, host_if) = (pod_link.ifindex, host_link.ifindex);

    // Pod end: no DAD, the addresses, up, the gateways' MAC and routes.
    in_netns(plan.netns, || ipv6_conf(plan.ifname, "accept_dad", "0"))?.map_err(|e| {
        Error::new(
            Code::Io,
            format!("disabling DAD on {} in the pod", plan.ifname),
        )
        .details(e)
    })?;
    for &addr in &addrs {
        pod.add_addr(pod_if, addr, host_net(addr).prefix_len())
            .map_err(nl_err)?;
    }
    pod.set_up(pod_if).map_err(nl_err)?;
    for &addr in &addrs {
        let gw = gateway_of(addr);
        pod.add_neigh(pod_if, gw, host_mac).map_err(nl_err)?;
        if gw.is_ipv4() {
            // The gateway is on no subnet of the pod's: a link route makes
            // it reachable on the veth.
            pod.add_route(host_net(gw), None, pod_if).map_err(nl_err)?;
        }
        pod.add_route(default_route(gw), Some(gw), pod_if)
            .map_err(nl_err)?;
    }

    // Host end: no DAD, the IPv6 gateway address, up, the pod's MAC, the
    // host routes.
    ipv6_conf(host_name, "accept_dad", "0")
        .map_err(|e| Error::new(Code::Io, format!("disabling DAD on {host_name}")).details(e))?;
    for &addr in &addrs {
        enable_forwarding(addr).map_err(|e| {
            Error::new(
                Code::Io,
                format!(
                    "enabling {} forwarding",
                    if addr.is_ipv4() { "IPv4" } else { "IPv6" }
                ),
            )
            .details(e)
        })?;
    }
    host.add_addr(host_if, IpAddr::V6(GATEWAY), 64)
        .map_err(nl_err)?;
    host.set_up(host_if).map_err(nl_err)?;
    for &addr in &addrs {
        host.add_neigh(host_if, addr, pod_mac).map_err(nl_err)?;
        host.add_route(host_net(addr), None, host_if)
            .map_err(nl_err)?;
    }
    // Last: the mark that tells the agent this veth is finished (announced
    // to it because the link is up by now) and wants the fast path. A pod
    // without it gets no mark, so the agent leaves its veth alone.
    if plan.fast_path {
        host.set_alias(host_if, dataplane::tc::POD_VETH_ALIAS)
            .map_err(nl_err)?;
    }

    Ok(Wired {
        addrs,
        host_name: host_name.to_owned(),
        host_index: host_if,
        host_mac,
        pod_mac,
        mtu: plan.mtu,
    })
}

/// Delete an attachment's veth pair (both ends go with the host end, and
/// the kernel drops its routes and neighbours). Returns whether it existed.
pub fn unwire(host: &mut Netlink, container_id: &str, ifname: &str) -> Result<bool> {
    host.del_link_by_name(&host_veth_name(container_id, ifname))
        .map_err(nl_err)
}

/// Compare the live wiring of a pod with what ADD makes; return the first
/// difference as a CHECK failure (code 101).
pub fn check(
    host: &mut Netlink,
    pod: &mut Netlink,
    container_id: &str,
    ifname: &str,
    addrs: &[IpAddr],
) -> Result<Link> {
    let fail = |m: String| Error::new(Code::CheckFailed, m);
    let host_name = host_veth_name(container_id, ifname);
    let host_link = host
        .link_by_name(&host_name)
        .map_err(nl_err)?
        .ok_or_else(|| fail(format!("host veth {host_name} is missing")))?;
    if !host_link.admin_up {
        return Err(fail(format!("host veth {host_name} is down")));
    }
    let pod_link = pod
        .link_by_name(ifname)
        .map_err(nl_err)?
        .ok_or_else(|| fail(format!("interface {ifname} is missing in the pod")))?;
    if !pod_link.admin_up {
        return Err(fail(format!("interface {ifname} is down in the pod")));
    }
    let pod_addrs = pod.addrs(pod_link.ifindex).map_err(nl_err)?;
    let pod_routes = pod.routes().map_err(nl_err)?;
    let pod_neigh = pod.permanent_neighbours(pod_link.ifindex).map_err(nl_err)?;
    let host_routes = host.routes().map_err(nl_err)?;
    for &addr in addrs {
        let net = host_net(addr);
        if !pod_addrs.contains(&(addr, net.prefix_len())) {
            return Err(fail(format!(
                "{ifname} in the pod lacks {net} (has {pod_addrs:?})"
            )));
        }
        let gw = gateway_of(addr);
        if !pod_routes.iter().any(|r| {
            r.dst.prefix_len() == 0 && r.gateway == Some(gw) && r.oif == Some(pod_link.ifindex)
        }) {
            return Err(fail(format!(
                "the pod has no default route via {gw} dev {ifname}"
            )));
        }
        if !pod_neigh
            .iter()
            .any(|(a, mac)| *a == gw && host_link.mac.is_some_and(|m| m.0[..] == mac[..]))
        {
            return Err(fail(format!(
                "the pod has no permanent neighbour {gw} with the host veth's MAC"
            )));
        }
        if !host_routes
            .iter()
            .any(|r| r.dst == net && r.oif == Some(host_link.ifindex))
        {
            return Err(fail(format!("the host has no route {net} dev {host_name}")));
        }
    }
    Ok(host_link)
}

#[cfg(test)]
mod tests {
    use dataplane::netlink::Mac;

    use super::*;

    #[test]
    fn names_and_macs_are_stable() {
        // Pinned: DEL and GC after an upgrade recompute these names.
        let n = host_veth_name("abc", "eth0");
        assert_eq!(n, "km4ae81be81b20");
        assert_eq!(n, host_veth_name("abc", "eth0"));
        assert_ne!(n, host_veth_name("abc", "eth1"));
        assert_ne!(host_veth_name("ab", "ceth0"), host_veth_name("abc", "eth0"));
        let (h, p) = macs("abc", "eth0");
        assert_eq!((h[0], p[0]), (0x02, 0x0a));
        assert_eq!(Mac(h).to_string(), "02:0c:4a:e8:1b:e8");
    }
}
