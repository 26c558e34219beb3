//! Read the FIB back out of the pinned maps, as the fast path sees it: the
//! one view behind `meshfwd show fib` (through the agent) and `meshfwd fib
//! show` (straight from bpffs).

use super::Result;
use dataplane::netlink::Mac;
use meshfwd_common::fib::{kind, nh_flags};
use serde::{Deserialize, Serialize};

use dataplane::maps::FibMaps;
use ipnet::{IpNet, Ipv4Net, Ipv6Net};

/// One FIB entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FibRow {
    pub prefix: IpNet,
    pub kind: FibKind,
    pub group: u32,
    pub next_hops: Vec<FibHop>,
}

/// What the fast path does with a destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FibKind {
    /// Forward through the entry's next-hop group.
    Forward,
    /// An address of this node: the kernel takes it.
    Local,
    /// On a shared segment: the kernel forwards it.
    OnLink,
}

/// One member of a FIB entry's next-hop group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FibHop {
    pub id: u32,
    pub ifindex: u32,
    pub iface: Option<String>,
    /// `None` until the neighbour's MAC is resolved.
    pub dst_mac: Option<Mac>,
    pub mtu: u32,
    pub alive: bool,
}

/// Return every FIB entry of both families with its group's members,
/// sorted by prefix (IPv4 first); `ifname` names interfaces where the
/// caller can.
pub fn rows(maps: &FibMaps, ifname: impl Fn(u32) -> Option<String>) -> Result<Vec<FibRow>> {
    // Every key was written by the map writer; a length over the family's
    // cannot be there, and is skipped rather than trusted.
    let mut entries = Vec::new();
    for key in maps.fib_v6.keys() {
        let key = key?;
        let entry = maps.fib_v6.get(&key, 0)?;
        if let Ok(p) = Ipv6Net::new(key.data().into(), key.prefix_len() as u8) {
            entries.push((IpNet::V6(p), entry));
        }
    }
    for key in maps.fib_v4.keys() {
        let key = key?;
        let entry = maps.fib_v4.get(&key, 0)?;
        if let Ok(p) = Ipv4Net::new(key.data().into(), key.prefix_len() as u8) {
            entries.push((IpNet::V4(p), entry));
        }
    }
    let mut rows = Vec::new();
    for (prefix, entry) in entries {
        let mut next_hops = Vec::new();
        if entry.kind == kind::FORWARD {
            let g = maps.groups.get(&entry.group, 0)?;
            for id in g.members.iter().take(g.len as usize) {
                let nh = maps.next_hops.get(id, 0)?;
                next_hops.push(FibHop {
                    id: *id,
                    ifindex: nh.ifindex,
                    iface: ifname(nh.ifindex),
                    dst_mac: (nh.flags & nh_flags::MAC_VALID != 0).then_some(Mac(nh.dst_mac)),
                    mtu: nh.mtu,
                    alive: nh.flags & nh_flags::ALIVE != 0,
                });
            }
        }
        let kind = match entry.kind {
            kind::LOCAL => FibKind::Local,
            kind::ON_LINK => FibKind::OnLink,
            _ => FibKind::Forward,
        };
        rows.push(FibRow {
            prefix,
            kind,
            group: entry.group,
            next_hops,
        });
    }
    rows.sort_by_key(|r| r.prefix);
    Ok(rows)
}
