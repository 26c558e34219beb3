//! One raw OSPFv3 socket per interface.
//!
//! OSPFv3 runs straight on IPv6 (next header 89) and, on the mesh, only over
//! link-local addresses (RFC 5340 §2.5, A.1). The kernel tells us on which
//! interface and to which destination each packet came (`IPV6_PKTINFO`),
//! which decides whether a packet was sent to AllSPFRouters, AllDRouters or
//! to us, and the core needs both addresses for the checksum.
//!
//! The OSPF checksum (RFC 5340 A.3.1) covers an IPv6 pseudo-header. The core
//! fills it in for our link-local source and the destination, and verifies
//! it on receipt against the `src`/`dst` reported here. The socket also sets
//! `IPV6_CHECKSUM` at offset 12 (RFC 3542 §3.1), so the kernel computes the
//! same value on send and drops corrupted packets before they reach us;
//! not on an authenticating interface, where the trailer replaces the
//! checksum (RFC 7166 §4.2).
//!
//! The socket is bound to its interface (`SO_BINDTODEVICE`) so it neither
//! sees nor sends traffic of any other link, and the driver keeps one socket
//! per interface. Sends carry an `IPV6_PKTINFO` with the interface's
//! link-local address as source, since neighbours identify us by it (RFC 5340
//! §4.2.2: a neighbour's address is the source of its Hellos).

use std::io::{self, IoSlice, IoSliceMut};
use std::net::{Ipv6Addr, SocketAddrV6};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::sync::Mutex;

use nix::sys::socket::{
    ControlMessage, ControlMessageOwned, MsgFlags, SockaddrIn6, recvmsg, sendmsg, setsockopt,
    sockopt,
};
use socket2::{Domain, Protocol, Socket, Type};
use tokio::io::Interest;
use tokio::net::UdpSocket;

/// IPv6 next header value of OSPF.
pub const IPPROTO_OSPF: i32 = 89;
/// AllSPFRouters (RFC 5340 A.1).
pub const ALL_SPF_ROUTERS: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 5);
/// AllDRouters (RFC 5340 A.1).
pub const ALL_D_ROUTERS: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 6);
/// Hop limit of everything we send: OSPF packets never leave the link, and
/// 255 lets a receiver tell they did not come from further away.
const HOP_LIMIT: u32 = 255;
/// Largest datagram we accept; bigger ones are reported as truncated.
pub const MAX_PACKET: usize = 65_535;

/// Metadata of one received packet; its bytes are in the caller's buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Received {
    /// Number of bytes of OSPF payload (no IPv6 header) written to the buffer.
    pub len: usize,
    /// Source address, normally the neighbour's link-local address.
    pub src: Ipv6Addr,
    /// Destination address: ff02::5, ff02::6 or our own address.
    pub dst: Ipv6Addr,
    /// Interface the packet came in on.
    pub ifindex: u32,
}

/// A raw OSPFv3 socket bound to one interface, driven by tokio.
#[derive(Debug)]
pub struct OspfSocket {
    /// The raw socket, registered with tokio's reactor through the datagram
    /// socket type, which only needs a non-blocking fd (registering a bare fd
    /// with `AsyncFd` is `unsafe`). Only `async_io`/`try_io` with our own
    /// `recvmsg`/`sendmsg` are ever called on it, never UDP methods.
    fd: UdpSocket,
    ifindex: u32,
    ifname: String,
    link_local: Ipv6Addr,
    /// Whether we joined AllDRouters; a lock so the socket can be shared by
    /// the task that receives and the one that sends.
    all_d_routers: Mutex<bool>,
}

impl OspfSocket {
    /// Open the socket for `ifname` and join AllSPFRouters on it.
    ///
    /// `link_local` becomes the source of everything sent. With
    /// `kernel_checksum` the kernel fills in and checks the OSPF checksum;
    /// an authenticating interface must not have it (its packets carry a
    /// trailer the kernel would sum in, and a checksum of 0, RFC 7166
    /// §4.2). Must be called inside a tokio runtime, in the network
    /// namespace of the interface.
    pub fn open(
        ifname: &str,
        ifindex: u32,
        link_local: Ipv6Addr,
        kernel_checksum: bool,
    ) -> io::Result<Self> {
        let socket = Socket::new(Domain::IPV6, Type::RAW, Some(Protocol::from(IPPROTO_OSPF)))?;
        socket.set_nonblocking(true)?;
        socket.set_cloexec(true)?;
        socket.bind_device(Some(ifname.as_bytes()))?;
        socket.set_multicast_hops_v6(HOP_LIMIT)?;
        socket.set_unicast_hops_v6(HOP_LIMIT)?;
        socket.set_multicast_if_v6(ifindex)?;
        // Our own multicasts would otherwise come back to us on this socket.
        socket.set_multicast_loop_v6(false)?;
        setsockopt(&socket, sockopt::Ipv6RecvPacketInfo, &true)?;
        // Network control traffic: CS6, as routing daemons mark it.
        socket.set_tclass_v6(0xc0)?;
        socket.join_multicast_v6(&ALL_SPF_ROUTERS, ifindex)?;
        if kernel_checksum {
            set_ipv6_checksum(socket.as_fd(), CHECKSUM_OFFSET)?;
        }
        Ok(Self {
            fd: UdpSocket::from_std(std::net::UdpSocket::from(std::os::fd::OwnedFd::from(
                socket,
            )))?,
            ifindex,
            ifname: ifname.to_owned(),
            link_local,
            all_d_routers: Mutex::new(false),
        })
    }

    /// Return the interface index the socket is bound to.
    pub fn ifindex(&self) -> u32 {
        self.ifindex
    }

    /// Return the interface name the socket is bound to.
    pub fn ifname(&self) -> &str {
        &self.ifname
    }

    /// Return the link-local source address of sent packets.
    pub fn link_local(&self) -> Ipv6Addr {
        self.link_local
    }

    /// Join or leave AllDRouters (ff02::6).
    ///
    /// Only the DR and BDR of a broadcast link listen there (RFC 5340 A.1);
    /// the driver follows the interface state the core reports.
    pub fn set_all_d_routers(&self, member: bool) -> io::Result<()> {
        let mut joined = self
            .all_d_routers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if member == *joined {
            return Ok(());
        }
        // The membership calls are the same for any IPv6 datagram socket.
        if member {
            self.fd.join_multicast_v6(&ALL_D_ROUTERS, self.ifindex)?;
        } else {
            self.fd.leave_multicast_v6(&ALL_D_ROUTERS, self.ifindex)?;
        }
        *joined = member;
        Ok(())
    }

    /// Return whether the socket is a member of AllDRouters.
    pub fn all_d_routers(&self) -> bool {
        *self
            .all_d_routers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Wait for the next packet and write its OSPF payload into `buf`.
    ///
    /// A packet longer than `buf` is an `InvalidData` error (and is dropped);
    /// pass a buffer of [`MAX_PACKET`] bytes to never see one.
    pub async fn recv(&self, buf: &mut [u8]) -> io::Result<Received> {
        self.fd
            .async_io(Interest::READABLE, || recv_once(self.fd.as_fd(), buf))
            .await
    }

    /// Receive a packet if one is queued, without waiting.
    pub fn try_recv(&self, buf: &mut [u8]) -> io::Result<Option<Received>> {
        match self
            .fd
            .try_io(Interest::READABLE, || recv_once(self.fd.as_fd(), buf))
        {
            Ok(received) => Ok(Some(received)),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Send one OSPF packet (no IPv6 header) to `dst` on this interface.
    ///
    /// The checksum at offset 12 must already be right for our link-local
    /// source and `dst` (the core fills it in). `dst` is a multicast group or a neighbour's link-local
    /// address; the scope is always this interface.
    pub async fn send(&self, dst: Ipv6Addr, data: &[u8]) -> io::Result<()> {
        self.fd
            .async_io(Interest::WRITABLE, || {
                send_once(self.fd.as_fd(), self.ifindex, self.link_local, dst, data)
            })
            .await
    }
}

/// Receive one datagram with its `IPV6_PKTINFO`.
fn recv_once(fd: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<Received> {
    let mut cmsg = nix::cmsg_space!(libc::in6_pktinfo);
    let mut iov = [IoSliceMut::new(buf)];
    let msg = recvmsg::<SockaddrIn6>(fd.as_raw_fd(), &mut iov, Some(&mut cmsg), MsgFlags::empty())?;
    if msg.flags.contains(MsgFlags::MSG_TRUNC) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "OSPF packet longer than the receive buffer",
        ));
    }
    let src = msg
        .address
        .map(|a| a.ip())
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "packet without source"))?;
    let mut pktinfo = None;
    for c in msg.cmsgs()? {
        if let ControlMessageOwned::Ipv6PacketInfo(info) = c {
            pktinfo = Some((Ipv6Addr::from(info.ipi6_addr.s6_addr), info.ipi6_ifindex));
        }
    }
    let (dst, ifindex) = pktinfo
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "packet without IPV6_PKTINFO"))?;
    Ok(Received {
        len: msg.bytes,
        src,
        dst,
        ifindex,
    })
}

/// Send one datagram from `src` out of `ifindex`.
fn send_once(
    fd: BorrowedFd<'_>,
    ifindex: u32,
    src: Ipv6Addr,
    dst: Ipv6Addr,
    data: &[u8],
) -> io::Result<()> {
    let addr = SockaddrIn6::from(SocketAddrV6::new(dst, 0, 0, scope_id(dst, ifindex)));
    let info = libc::in6_pktinfo {
        ipi6_addr: libc::in6_addr {
            s6_addr: src.octets(),
        },
        ipi6_ifindex: ifindex,
    };
    let iov = [IoSlice::new(data)];
    let cmsgs = [ControlMessage::Ipv6PacketInfo(&info)];
    let sent = sendmsg(fd.as_raw_fd(), &iov, &cmsgs, MsgFlags::empty(), Some(&addr))?;
    if sent != data.len() {
        return Err(io::Error::new(
            io::ErrorKind::WriteZero,
            "raw socket sent a partial OSPF packet",
        ));
    }
    Ok(())
}

/// Return the scope id to send to `dst`: the interface for link-scoped
/// addresses, none for anything else (which the mesh does not use).
fn scope_id(dst: Ipv6Addr, ifindex: u32) -> u32 {
    let link_scoped = dst.is_unicast_link_local()
        || (dst.is_multicast() && matches!(dst.segments()[0] & 0x000f, 1 | 2));
    if link_scoped { ifindex } else { 0 }
}

/// Return the index and first link-local address of interface `ifname`.
///
/// Reads the addresses of the current network namespace; `None` as address
/// when the interface has no link-local address (yet).
pub fn interface_info(ifname: &str) -> io::Result<(u32, Option<Ipv6Addr>)> {
    let ifindex = nix::net::if_::if_nametoindex(ifname)?;
    let mut link_local = None;
    for ifa in nix::ifaddrs::getifaddrs()? {
        if ifa.interface_name != ifname {
            continue;
        }
        let Some(addr) = ifa.address.as_ref().and_then(|a| a.as_sockaddr_in6()) else {
            continue;
        };
        if addr.ip().is_unicast_link_local() {
            link_local = Some(addr.ip());
            break;
        }
    }
    Ok((ifindex, link_local))
}

/// Offset of the checksum field in the OSPFv3 header (RFC 5340 A.3.1).
const CHECKSUM_OFFSET: libc::c_int = 12;

/// `IPV6_CHECKSUM` from Linux `<linux/in6.h>`; the libc crate lacks it there.
const IPV6_CHECKSUM: libc::c_int = 7;

/// Have the kernel fill in and verify the checksum at `offset` (RFC 3542
/// §3.1). No safe wrapper in socket2, nix or rustix exposes this option.
#[expect(unsafe_code, reason = "setsockopt(IPV6_CHECKSUM) has no safe wrapper")]
fn set_ipv6_checksum(fd: BorrowedFd<'_>, offset: libc::c_int) -> io::Result<()> {
    // SAFETY: `fd` is an open socket borrowed for the call; the option value
    // points at a live `c_int` and the length passed is exactly its size.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::IPPROTO_IPV6,
            IPV6_CHECKSUM,
            (&raw const offset).cast::<libc::c_void>(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scope_of_link_scoped_destinations() {
        assert_eq!(scope_id(ALL_SPF_ROUTERS, 7), 7);
        assert_eq!(scope_id(ALL_D_ROUTERS, 7), 7);
        assert_eq!(scope_id("fe80::1".parse().unwrap(), 7), 7);
        assert_eq!(scope_id("2001:db8::1".parse().unwrap(), 7), 0);
        assert_eq!(scope_id("ff05::5".parse().unwrap(), 7), 0);
    }

    #[test]
    fn loopback_has_no_link_local() {
        let (ifindex, link_local) = interface_info("lo").expect("lo exists");
        assert!(ifindex > 0);
        assert_eq!(link_local, None);
    }
}
