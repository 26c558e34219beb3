//! A small synchronous rtnetlink client: exactly the link, address, route
//! and neighbour operations pod wiring needs.
//!
//! Synchronous on purpose: the plugin is a short-lived process that makes a
//! dozen requests in sequence, so a blocking socket with one request in
//! flight is the fastest and simplest shape (no runtime to start). A socket
//! belongs to the network namespace it was opened in, so one [`Netlink`]
//! opened inside the pod's namespace and one on the host let the wiring
//! talk to both without switching namespaces per request.

use std::io;
use std::net::{IpAddr, Ipv6Addr};

use ipnet::IpNet;
use std::os::fd::{AsRawFd, BorrowedFd};

use netlink_packet_core::{
    NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL, NLM_F_REQUEST, NetlinkMessage, NetlinkPayload,
};
use netlink_packet_route::{
    AddressFamily, RouteNetlinkMessage,
    address::{AddressAttribute, AddressFlags, AddressMessage, AddressScope},
    link::{InfoData, InfoKind, InfoVeth, LinkAttribute, LinkFlags, LinkInfo, LinkMessage},
    neighbour::{NeighbourAddress, NeighbourAttribute, NeighbourMessage, NeighbourState},
    route::{RouteAddress, RouteAttribute, RouteMessage, RouteProtocol, RouteScope, RouteType},
};
use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_ROUTE};

pub use dataplane::netlink::Link;

/// The main routing table.
const RT_TABLE_MAIN: u8 = 254;
/// `proto` of the routes meshfwd-cni installs, so `ip -6 route` shows who
/// made them (`ip route ... proto 0x6b`; "k" for kubermesh pods).
pub const RTPROT_KUBERMESH_POD: u8 = 0x6b;
/// Receive buffer: large enough for a dump datagram of many links.
const RECV_BUF: usize = 64 * 1024;
/// Upper bound on datagrams read for one request, so a confused kernel
/// conversation cannot spin forever.
const MAX_DATAGRAMS: usize = 10_000;

/// A kernel refusal or a socket failure.
#[derive(Debug)]
pub struct NlError {
    /// What was being done, e.g. "adding veth km1234 / eth0".
    pub what: String,
    pub err: io::Error,
}

impl NlError {
    /// Return the errno of a kernel refusal.
    pub fn errno(&self) -> Option<i32> {
        self.err.raw_os_error()
    }
}

impl std::fmt::Display for NlError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.what, self.err)
    }
}

impl std::error::Error for NlError {}

type NlResult<T> = Result<T, NlError>;

/// One end of a veth pair to create.
#[derive(Clone, Debug)]
pub struct VethEnd<'a> {
    pub name: &'a str,
    pub mac: [u8; 6],
    pub mtu: u32,
}

/// An rtnetlink socket in the namespace it was opened in.
pub struct Netlink {
    sock: Socket,
    seq: u32,
    buf: Vec<u8>,
}

impl Netlink {
    /// Open a socket in the calling thread's current network namespace.
    pub fn open() -> io::Result<Self> {
        let mut sock = Socket::new(NETLINK_ROUTE)?;
        sock.bind_auto()?;
        sock.connect(&SocketAddr::new(0, 0))?;
        // Extended acks give the kernel's reason strings in errors; harmless
        // if unsupported.
        let _ = sock.set_ext_ack(true);
        Ok(Netlink {
            sock,
            seq: 0,
            buf: vec![0; RECV_BUF],
        })
    }

    /// Send one request and collect the replies until its ACK (or the end of
    /// a dump).
    fn request(
        &mut self,
        what: impl FnOnce() -> String,
        msg: RouteNetlinkMessage,
        flags: u16,
    ) -> NlResult<Vec<RouteNetlinkMessage>> {
        self.seq = self.seq.wrapping_add(1);
        let seq = self.seq;
        let mut req = NetlinkMessage::from(msg);
        req.header.flags = NLM_F_REQUEST | flags;
        req.header.sequence_number = seq;
        req.finalize();
        let mut out = vec![0u8; req.buffer_len()];
        req.serialize(&mut out);
        let fail = |err: io::Error, what: String| NlError { what, err };
        if let Err(e) = self.sock.send(&out, 0) {
            return Err(fail(e, what()));
        }
        let dump = flags & NLM_F_DUMP == NLM_F_DUMP;
        let mut replies = Vec::new();
        for _ in 0..MAX_DATAGRAMS {
            let n = match self.sock.recv(&mut &mut self.buf[..], 0) {
                Ok(n) => n,
                Err(e) => return Err(fail(e, what())),
            };
            let mut off = 0;
            while off < n {
                let msg =
                    match NetlinkMessage::<RouteNetlinkMessage>::deserialize(&self.buf[off..n]) {
                        Ok(m) => m,
                        Err(e) => {
                            return Err(fail(
                                io::Error::new(io::ErrorKind::InvalidData, e.to_string()),
                                what(),
                            ));
                        }
                    };
                let len = msg.header.length as usize;
                if len == 0 {
                    break;
                }
                off += (len + 3) & !3;
                if msg.header.sequence_number != seq {
                    continue; // a late reply to an earlier request
                }
                match msg.payload {
                    NetlinkPayload::Error(e) if e.code.is_some() => {
                        return Err(fail(e.to_io(), what()));
                    }
                    NetlinkPayload::Error(_) if !dump => return Ok(replies),
                    NetlinkPayload::Done(_) => return Ok(replies),
                    NetlinkPayload::InnerMessage(m) => replies.push(m),
                    _ => {}
                }
            }
        }
        Err(fail(
            io::Error::other("no end of reply after many datagrams"),
            what(),
        ))
    }

    /// Return the link called `name`, or `None` if there is none.
    pub fn link_by_name(&mut self, name: &str) -> NlResult<Option<Link>> {
        let mut msg = LinkMessage::default();
        msg.attributes.push(LinkAttribute::IfName(name.to_owned()));
        self.get_link(msg, || format!("looking up link {name}"))
    }

    /// Return the link with `index`, or `None` if there is none.
    pub fn link_by_index(&mut self, index: u32) -> NlResult<Option<Link>> {
        let mut msg = LinkMessage::default();
        msg.header.index = index;
        self.get_link(msg, || format!("looking up link #{index}"))
    }

    fn get_link(
        &mut self,
        msg: LinkMessage,
        what: impl FnOnce() -> String,
    ) -> NlResult<Option<Link>> {
        match self.request(what, RouteNetlinkMessage::GetLink(msg), NLM_F_ACK) {
            Ok(replies) => Ok(replies.into_iter().find_map(|m| match m {
                RouteNetlinkMessage::NewLink(l) => Link::from_message(&l),
                _ => None,
            })),
            Err(e) if e.errno() == Some(libc::ENODEV) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Return every link in the namespace.
    pub fn links(&mut self) -> NlResult<Vec<Link>> {
        let replies = self.request(
            || "listing links".into(),
            RouteNetlinkMessage::GetLink(LinkMessage::default()),
            NLM_F_DUMP,
        )?;
        Ok(replies
            .into_iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewLink(l) => Link::from_message(&l),
                _ => None,
            })
            .collect())
    }

    /// Create a veth pair: `host` in this socket's namespace, `peer` moved
    /// straight into the namespace `peer_netns` at creation, so it never
    /// appears on the host. Fails with EEXIST if either name is taken.
    pub fn add_veth(
        &mut self,
        host: &VethEnd,
        peer: &VethEnd,
        peer_netns: BorrowedFd,
    ) -> NlResult<()> {
        let mut peer_msg = LinkMessage::default();
        peer_msg.attributes = vec![
            LinkAttribute::IfName(peer.name.to_owned()),
            LinkAttribute::Address(peer.mac.to_vec()),
            LinkAttribute::Mtu(peer.mtu),
            LinkAttribute::NetNsFd(peer_netns.as_raw_fd()),
        ];
        let mut msg = LinkMessage::default();
        msg.attributes = vec![
            LinkAttribute::IfName(host.name.to_owned()),
            LinkAttribute::Address(host.mac.to_vec()),
            LinkAttribute::Mtu(host.mtu),
            LinkAttribute::LinkInfo(vec![
                LinkInfo::Kind(InfoKind::Veth),
                LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(peer_msg))),
            ]),
        ];
        self.request(
            || format!("creating veth {} (host) / {} (pod)", host.name, peer.name),
            RouteNetlinkMessage::NewLink(msg),
            NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL,
        )
        .map(drop)
    }

    /// Delete a link by name; returns false if it did not exist.
    pub fn del_link_by_name(&mut self, name: &str) -> NlResult<bool> {
        let mut msg = LinkMessage::default();
        msg.attributes.push(LinkAttribute::IfName(name.to_owned()));
        match self.request(
            || format!("deleting link {name}"),
            RouteNetlinkMessage::DelLink(msg),
            NLM_F_ACK,
        ) {
            Ok(_) => Ok(true),
            Err(e) if e.errno() == Some(libc::ENODEV) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Set a link administratively up.
    pub fn set_up(&mut self, index: u32) -> NlResult<()> {
        let mut msg = LinkMessage::default();
        msg.header.index = index;
        msg.header.flags = LinkFlags::Up;
        msg.header.change_mask = LinkFlags::Up;
        self.request(
            || format!("setting link #{index} up"),
            RouteNetlinkMessage::SetLink(msg),
            NLM_F_ACK,
        )
        .map(drop)
    }

    /// Set a link's alias (`ip link set ... alias`).
    pub fn set_alias(&mut self, index: u32, alias: &str) -> NlResult<()> {
        let mut msg = LinkMessage::default();
        msg.header.index = index;
        msg.attributes = vec![LinkAttribute::IfAlias(alias.to_owned())];
        self.request(
            || format!("setting the alias of link #{index}"),
            RouteNetlinkMessage::SetLink(msg),
            NLM_F_ACK,
        )
        .map(drop)
    }

    /// Add an address without duplicate address detection (IPv6), so it
    /// is usable at once.
    pub fn add_addr(&mut self, index: u32, addr: IpAddr, len: u8) -> NlResult<()> {
        let mut msg = AddressMessage::default();
        msg.header.family = family(addr);
        msg.header.prefix_len = len;
        msg.header.index = index;
        msg.header.scope = match addr {
            IpAddr::V6(a) if a.is_unicast_link_local() => AddressScope::Link,
            _ => AddressScope::Universe,
        };
        msg.attributes = vec![AddressAttribute::Address(addr)];
        match addr {
            IpAddr::V6(_) => msg
                .attributes
                .push(AddressAttribute::Flags(AddressFlags::Nodad)),
            // IPv4 needs IFA_LOCAL too: without it the kernel takes the
            // address as a peer's and the node has none.
            IpAddr::V4(_) => msg.attributes.push(AddressAttribute::Local(addr)),
        }
        self.request(
            || format!("adding {addr}/{len} to link #{index}"),
            RouteNetlinkMessage::NewAddress(msg),
            NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL,
        )
        .map(drop)
    }

    /// Return the addresses (address, prefix length) of a link, both
    /// families.
    pub fn addrs(&mut self, index: u32) -> NlResult<Vec<(IpAddr, u8)>> {
        let mut msg = AddressMessage::default();
        msg.header.family = AddressFamily::Unspec;
        let replies = self.request(
            || format!("listing addresses of link #{index}"),
            RouteNetlinkMessage::GetAddress(msg),
            NLM_F_DUMP,
        )?;
        Ok(replies
            .into_iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewAddress(a) if a.header.index == index => {
                    a.attributes.iter().find_map(|attr| match attr {
                        AddressAttribute::Address(addr) => Some((*addr, a.header.prefix_len)),
                        _ => None,
                    })
                }
                _ => None,
            })
            .collect())
    }

    /// Add a route `dst` out of link `oif`, via `gw` if given. An IPv4
    /// route with no gateway is scope link, as `ip route` makes it, so it
    /// can serve as a gateway's route.
    pub fn add_route(&mut self, dst: IpNet, gw: Option<IpAddr>, oif: u32) -> NlResult<()> {
        let mut msg = RouteMessage::default();
        msg.header.address_family = family(dst.addr());
        msg.header.destination_prefix_length = dst.prefix_len();
        msg.header.table = RT_TABLE_MAIN;
        msg.header.protocol = RouteProtocol::Other(RTPROT_KUBERMESH_POD);
        msg.header.scope = match (dst, gw) {
            (IpNet::V4(_), None) => RouteScope::Link,
            _ => RouteScope::Universe,
        };
        msg.header.kind = RouteType::Unicast;
        if dst.prefix_len() > 0 {
            msg.attributes
                .push(RouteAttribute::Destination(route_address(dst.addr())));
        }
        if let Some(gw) = gw {
            msg.attributes
                .push(RouteAttribute::Gateway(route_address(gw)));
        }
        msg.attributes.push(RouteAttribute::Oif(oif));
        self.request(
            || format!("adding route {dst} dev #{oif}"),
            RouteNetlinkMessage::NewRoute(msg),
            NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL,
        )
        .map(drop)
    }

    /// Return the routes of the main table, both families.
    pub fn routes(&mut self) -> NlResult<Vec<Route>> {
        let mut out = Vec::new();
        for af in [AddressFamily::Inet6, AddressFamily::Inet] {
            let mut msg = RouteMessage::default();
            msg.header.address_family = af;
            let replies = self.request(
                || format!("listing {af:?} routes"),
                RouteNetlinkMessage::GetRoute(msg),
                NLM_F_DUMP,
            )?;
            out.extend(replies.into_iter().filter_map(|m| match m {
                RouteNetlinkMessage::NewRoute(r) => Route::from_message(&r),
                _ => None,
            }));
        }
        Ok(out)
    }

    /// Return the permanent neighbour entries of link `index`, both
    /// families.
    pub fn permanent_neighbours(&mut self, index: u32) -> NlResult<Vec<(IpAddr, Vec<u8>)>> {
        let mut msg = NeighbourMessage::default();
        msg.header.family = AddressFamily::Unspec;
        let replies = self.request(
            || format!("listing neighbours of link #{index}"),
            RouteNetlinkMessage::GetNeighbour(msg),
            NLM_F_DUMP,
        )?;
        Ok(replies
            .into_iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewNeighbour(n)
                    if n.header.ifindex == index && n.header.state == NeighbourState::Permanent =>
                {
                    let mut addr = None;
                    let mut mac = Vec::new();
                    for attr in &n.attributes {
                        match attr {
                            NeighbourAttribute::Destination(NeighbourAddress::Inet6(a)) => {
                                addr = Some(IpAddr::V6(*a));
                            }
                            NeighbourAttribute::Destination(NeighbourAddress::Inet(a)) => {
                                addr = Some(IpAddr::V4(*a));
                            }
                            NeighbourAttribute::LinkLayerAddress(m) => mac.clone_from(m),
                            _ => {}
                        }
                    }
                    addr.map(|a| (a, mac))
                }
                _ => None,
            })
            .collect())
    }

    /// Add a permanent neighbour entry, so neither side waits for ND or ARP.
    pub fn add_neigh(&mut self, index: u32, addr: IpAddr, mac: [u8; 6]) -> NlResult<()> {
        let mut msg = NeighbourMessage::default();
        msg.header.family = family(addr);
        msg.header.ifindex = index;
        msg.header.state = NeighbourState::Permanent;
        let dst = match addr {
            IpAddr::V6(a) => NeighbourAddress::Inet6(a),
            IpAddr::V4(a) => NeighbourAddress::Inet(a),
        };
        msg.attributes = vec![
            NeighbourAttribute::Destination(dst),
            NeighbourAttribute::LinkLayerAddress(mac.to_vec()),
        ];
        self.request(
            || format!("adding neighbour {addr} on link #{index}"),
            RouteNetlinkMessage::NewNeighbour(msg),
            NLM_F_ACK | NLM_F_CREATE | netlink_packet_core::NLM_F_REPLACE,
        )
        .map(drop)
    }
}

fn family(a: IpAddr) -> AddressFamily {
    match a {
        IpAddr::V4(_) => AddressFamily::Inet,
        IpAddr::V6(_) => AddressFamily::Inet6,
    }
}

fn route_address(a: IpAddr) -> RouteAddress {
    match a {
        IpAddr::V4(a) => RouteAddress::Inet(a),
        IpAddr::V6(a) => RouteAddress::Inet6(a),
    }
}

/// One route of the main table, either family, as far as pod wiring looks
/// at it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Route {
    pub dst: IpNet,
    pub gateway: Option<IpAddr>,
    pub oif: Option<u32>,
}

impl Route {
    /// Read a main-table route message; `None` for other tables.
    fn from_message(msg: &RouteMessage) -> Option<Route> {
        let mut table = u32::from(msg.header.table);
        let (mut dst, mut gateway, mut oif) = (None, None, None);
        for attr in &msg.attributes {
            match attr {
                RouteAttribute::Destination(RouteAddress::Inet6(a)) => dst = Some(IpAddr::V6(*a)),
                RouteAttribute::Destination(RouteAddress::Inet(a)) => dst = Some(IpAddr::V4(*a)),
                RouteAttribute::Gateway(RouteAddress::Inet6(a)) => gateway = Some(IpAddr::V6(*a)),
                RouteAttribute::Gateway(RouteAddress::Inet(a)) => gateway = Some(IpAddr::V4(*a)),
                RouteAttribute::Oif(i) => oif = Some(*i),
                RouteAttribute::Table(t) => table = *t,
                _ => {}
            }
        }
        if table != u32::from(RT_TABLE_MAIN) {
            return None;
        }
        let dst = match (dst, msg.header.address_family) {
            (Some(a), _) => a,
            (None, AddressFamily::Inet) => IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
            (None, AddressFamily::Inet6) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
            (None, _) => return None,
        };
        let dst = IpNet::new(dst, msg.header.destination_prefix_length).ok()?;
        Some(Route { dst, gateway, oif })
    }
}
