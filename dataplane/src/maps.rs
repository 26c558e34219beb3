//! Typed handles on the pinned maps: the FIB the agent's map writer fills,
//! the endpoints the CNI plugin fills, the counters everyone reads.
//! The layouts are `meshfwd_common`'s; only handles are made here.

use std::{
    net::{IpAddr, Ipv6Addr},
    path::{Path, PathBuf},
};

use aya::{
    Ebpf,
    maps::{Array, DevMapHash, HashMap, LpmTrie, Map, MapData, MapError, PerCpuArray},
};
use meshfwd_common::{
    conntrack::{NETFILTER_CHECK, NETFILTER_IGNORE, cfg},
    endpoint::{ENDPOINT_MAX_ENTRIES, Endpoint, EndpointKey},
    fib::{
        FibEntry, NextHop, NextHopGroup,
        table::{self, Head},
    },
    pin,
};

use crate::{Error, Result};

/// What to tell an operator when a map is not pinned.
const NOT_ATTACHED: &str = "is the XDP program attached? see `meshfwd attach --help`";

/// Open the map pinned at `dir/name`.
pub(crate) fn open_pinned(dir: &Path, name: &str) -> Result<MapData> {
    let path = dir.join(name);
    MapData::from_pin(&path).map_err(|_| Error::NotPinned {
        path,
        hint: NOT_ATTACHED,
    })
}

/// Typed handles on the forwarding program's maps.
pub struct FibMaps {
    /// IPv6 FIB: prefix -> group.
    pub fib_v6: LpmTrie<MapData, [u8; 16], FibEntry>,
    /// IPv4 FIB: prefix -> group.
    pub fib_v4: LpmTrie<MapData, [u8; 4], FibEntry>,
    /// Next-hop groups by id.
    pub groups: Array<MapData, NextHopGroup>,
    /// Next hops by id.
    pub next_hops: Array<MapData, NextHop>,
    /// Egress devices by ifindex.
    pub egress: DevMapHash<MapData>,
    /// Per-CPU counters.
    pub stats: PerCpuArray<MapData, u64>,
    /// FIB generation (slot 0): bump after changing FIB entries.
    pub fib_gen: Array<MapData, u32>,
    /// The compiled IPv6 lookup table (`meshfwd_common::fib::table`).
    pub table6: TableMaps,
    /// The compiled IPv4 lookup table (over IPv4-mapped addresses).
    pub table4: TableMaps,
    /// Fast-path settings (`meshfwd_common::conntrack::cfg`).
    pub settings: Array<MapData, u32>,
}

/// One compiled lookup table's maps (`meshfwd_common::fib::table`).
pub struct TableMaps {
    /// The entries of both regions.
    pub entries: Array<MapData, u32>,
    /// Slot 0: which region is live (0: none, the trie is walked).
    pub root: Array<MapData, u32>,
    /// Each region's head (shortcut past the shared groups).
    pub head: Array<MapData, Head>,
    /// Groups per region.
    pub groups: u32,
}

/// What the fast path does about the node's netfilter (see
/// `meshfwd_common::conntrack`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
#[serde(rename_all = "snake_case")]
pub enum Netfilter {
    /// Forward only flows conntrack has accepted, seen established and
    /// does not translate; the rest take the kernel path.
    #[default]
    Check,
    /// Forward without asking: for nodes where nothing filters or
    /// translates forwarded traffic.
    Ignore,
}

impl std::fmt::Display for Netfilter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Netfilter::Check => "check",
            Netfilter::Ignore => "ignore",
        })
    }
}

impl FibMaps {
    /// Open the maps pinned under `pin_dir`.
    pub fn open(pin_dir: &Path) -> Result<Self> {
        Self::build(|name| {
            Map::from_map_data(open_pinned(pin_dir, name)?)
                .map_err(Error::map(format!("map {name}")))
        })
    }

    /// Take the maps out of a freshly loaded object (see
    /// [`crate::object::load`]).
    pub fn take(ebpf: &mut Ebpf) -> Result<Self> {
        Self::build(|name| {
            ebpf.take_map(name).ok_or_else(|| Error::Map {
                what: format!("the eBPF object has no map {name}"),
                source: MapError::InvalidName { name: name.into() },
            })
        })
    }

    fn build(mut get: impl FnMut(&'static str) -> Result<Map>) -> Result<Self> {
        fn typed<T: TryFrom<Map, Error = MapError>>(name: &str, map: Map) -> Result<T> {
            T::try_from(map).map_err(Error::map(format!("map {name}")))
        }
        Ok(FibMaps {
            fib_v6: typed(pin::FIB_V6, get(pin::FIB_V6)?)?,
            fib_v4: typed(pin::FIB_V4, get(pin::FIB_V4)?)?,
            groups: typed(pin::NH_GROUPS, get(pin::NH_GROUPS)?)?,
            next_hops: typed(pin::NEXT_HOPS, get(pin::NEXT_HOPS)?)?,
            egress: typed(pin::EGRESS_DEVS, get(pin::EGRESS_DEVS)?)?,
            stats: typed(pin::STATS, get(pin::STATS)?)?,
            fib_gen: typed(pin::FIB_GEN, get(pin::FIB_GEN)?)?,
            table6: TableMaps {
                entries: typed(pin::FIB6_TABLE, get(pin::FIB6_TABLE)?)?,
                root: typed(pin::FIB6_TABLE_ROOT, get(pin::FIB6_TABLE_ROOT)?)?,
                head: typed(pin::FIB6_TABLE_HEAD, get(pin::FIB6_TABLE_HEAD)?)?,
                groups: table::GROUPS,
            },
            table4: TableMaps {
                entries: typed(pin::FIB4_TABLE, get(pin::FIB4_TABLE)?)?,
                root: typed(pin::FIB4_TABLE_ROOT, get(pin::FIB4_TABLE_ROOT)?)?,
                head: typed(pin::FIB4_TABLE_HEAD, get(pin::FIB4_TABLE_HEAD)?)?,
                groups: table::GROUPS4,
            },
            settings: typed(pin::FASTPATH_CFG, get(pin::FASTPATH_CFG)?)?,
        })
    }

    /// Tell the programs what to do about netfilter (takes effect with the
    /// next packet).
    pub fn set_netfilter(&mut self, netfilter: Netfilter) -> Result<()> {
        let value = match netfilter {
            Netfilter::Check => NETFILTER_CHECK,
            Netfilter::Ignore => NETFILTER_IGNORE,
        };
        self.settings
            .set(cfg::NETFILTER, value, 0)
            .map_err(Error::map("writing the netfilter setting"))
    }

    /// What the programs do about netfilter now.
    pub fn netfilter(&self) -> Result<Netfilter> {
        let value = self
            .settings
            .get(&cfg::NETFILTER, 0)
            .map_err(Error::map("reading the netfilter setting"))?;
        Ok(match value {
            NETFILTER_IGNORE => Netfilter::Ignore,
            _ => Netfilter::Check,
        })
    }

    /// Invalidate every CPU's destination cache (call after FIB changes).
    pub fn bump_generation(&mut self) -> Result<()> {
        let g = self
            .fib_gen
            .get(&0, 0)
            .map_err(Error::map("reading the FIB generation"))?;
        self.fib_gen
            .set(0, g.wrapping_add(1), 0)
            .map_err(Error::map("bumping the FIB generation"))
    }
}

/// Open the pinned per-CPU statistics map.
pub fn open_stats(pin_dir: &Path) -> Result<PerCpuArray<MapData, u64>> {
    let data = open_pinned(pin_dir, pin::STATS)?;
    PerCpuArray::try_from(Map::PerCpuArray(data)).map_err(Error::map("map MESH_STATS"))
}

/// The pinned endpoint map: pod address -> host veth and MACs, read by
/// the TC fast path.
pub struct Endpoints {
    map: HashMap<MapData, EndpointKey, Endpoint>,
    path: PathBuf,
}

impl Endpoints {
    /// Return the map's pin path under `bpffs`.
    pub fn pin_path(bpffs: &Path) -> PathBuf {
        bpffs.join(meshfwd_common::endpoint::PIN)
    }

    /// Open the pinned map, or `None` if nothing is pinned (DEL, GC, CHECK:
    /// never create what they would only empty).
    pub fn open(bpffs: &Path) -> Result<Option<Self>> {
        let path = Self::pin_path(bpffs);
        if !path.exists() {
            return Ok(None);
        }
        let data = open_pinned(bpffs, meshfwd_common::endpoint::PIN)?;
        Self::wrap(data, path).map(Some)
    }

    /// Open the pinned map, creating and pinning it if absent (a pod added
    /// before any agent loaded the object). The map is made from the same
    /// key, value and capacity the program declares (`meshfwd_common`), so
    /// the agent's loader later reuses the pin. Two plugins racing to
    /// create it both end up with the one that got pinned.
    pub fn open_or_create(bpffs: &Path) -> Result<Self> {
        if let Some(m) = Self::open(bpffs)? {
            return Ok(m);
        }
        let path = Self::pin_path(bpffs);
        std::fs::create_dir_all(bpffs).map_err(|source| Error::Io {
            what: "creating the bpffs directory",
            path: bpffs.to_owned(),
            source,
        })?;
        let map = HashMap::<MapData, EndpointKey, Endpoint>::create(ENDPOINT_MAX_ENTRIES, 0)
            .map_err(Error::map("creating the endpoint map"))?;
        match map.pin(&path) {
            // Pinned by us, or lost the race to another plugin: either way
            // the pinned map is the one to use.
            Ok(()) => {}
            Err(_) if path.exists() => {}
            Err(source) => {
                return Err(Error::Pin {
                    what: "the endpoint map".into(),
                    path,
                    source,
                });
            }
        }
        Self::open(bpffs)?.ok_or(Error::NotPinned {
            path,
            hint: "the endpoint map vanished right after it was pinned",
        })
    }

    fn wrap(data: MapData, path: PathBuf) -> Result<Self> {
        let map = HashMap::try_from(Map::HashMap(data)).map_err(Error::map(format!(
            "{} is not the endpoint map",
            path.display()
        )))?;
        Ok(Endpoints { map, path })
    }

    /// Register a pod address. An IPv4 address is keyed by its
    /// IPv4-mapped form, the one key type the TC programs look up for both
    /// families.
    pub fn insert(&mut self, addr: IpAddr, ep: Endpoint) -> Result<()> {
        self.map
            .insert(endpoint_key(addr), ep, 0)
            .map_err(Error::map(format!(
                "adding {addr} to {}",
                self.path.display()
            )))
    }

    /// Forget a pod address; a missing entry is not an error.
    pub fn remove(&mut self, addr: IpAddr) -> Result<()> {
        match self.map.remove(&endpoint_key(addr)) {
            Ok(()) | Err(MapError::KeyNotFound) => Ok(()),
            Err(MapError::SyscallError(e)) if e.io_error.raw_os_error() == Some(libc::ENOENT) => {
                Ok(())
            }
            Err(e) => Err(Error::map(format!(
                "removing {addr} from {}",
                self.path.display()
            ))(e)),
        }
    }

    /// Return a pod address's entry.
    pub fn get(&self, addr: IpAddr) -> Option<Endpoint> {
        self.map.get(&endpoint_key(addr), 0).ok()
    }

    /// Return every registered address (IPv4-mapped keys as IPv4).
    pub fn addrs(&self) -> Vec<IpAddr> {
        self.map
            .keys()
            .filter_map(|k| k.ok())
            .map(|k| Ipv6Addr::from(k).to_canonical())
            .collect()
    }
}

/// Return the endpoint map's key for a pod address.
pub fn endpoint_key(addr: IpAddr) -> EndpointKey {
    match addr {
        IpAddr::V6(a) => a.octets(),
        IpAddr::V4(a) => a.to_ipv6_mapped().octets(),
    }
}

/// The pinned BFD maps the XDP program answers from while the agent is
/// away (`meshfwd_common::bfd`): the sessions and the heartbeat.
pub struct BfdMaps {
    sessions: HashMap<MapData, u32, meshfwd_common::bfd::ReflectSession>,
    heartbeat: Array<MapData, u64>,
}

impl BfdMaps {
    /// Open the pinned maps (the XDP object loaded with pins creates them).
    pub fn open(pin_dir: &Path) -> Result<Self> {
        let sessions = HashMap::try_from(Map::HashMap(open_pinned(pin_dir, pin::BFD_SESSIONS)?))
            .map_err(Error::map("map BFD_SESSIONS"))?;
        let heartbeat = Array::try_from(Map::Array(open_pinned(pin_dir, pin::BFD_HEARTBEAT)?))
            .map_err(Error::map("map BFD_HEARTBEAT"))?;
        Ok(BfdMaps {
            sessions,
            heartbeat,
        })
    }

    /// Beat: the BFD thread is alive at `now_ns` (CLOCK_MONOTONIC, the
    /// clock of `bpf_ktime_get_ns`).
    pub fn beat(&mut self, now_ns: u64) -> Result<()> {
        self.heartbeat
            .set(0, now_ns, 0)
            .map_err(Error::map("map BFD_HEARTBEAT"))
    }

    /// Keep Up session `local_disc` for the program to answer.
    pub fn put(&mut self, local_disc: u32, s: &meshfwd_common::bfd::ReflectSession) -> Result<()> {
        self.sessions
            .insert(local_disc, s, 0)
            .map_err(Error::map("map BFD_SESSIONS"))
    }

    /// Forget session `local_disc` (missing is fine).
    pub fn remove(&mut self, local_disc: u32) {
        let _ = self.sessions.remove(&local_disc);
    }

    /// Every session kept, by local discriminator: what an earlier run
    /// left for this one to adopt.
    pub fn sessions(&self) -> Vec<(u32, meshfwd_common::bfd::ReflectSession)> {
        self.sessions.iter().flatten().collect()
    }
}
