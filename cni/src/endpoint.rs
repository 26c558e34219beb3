//! The pinned endpoint map (`meshfwd_common::endpoint`): pod address ->
//! host veth and MACs, read by the TC fast path.
//!
//! The agent normally creates it when it loads the data plane; if a pod is
//! added before that (or on a node running without the agent's eBPF), the
//! plugin creates the map with the very same definition and pins it, and
//! the agent's loader later reuses the pin by name.

use std::net::Ipv6Addr;
use std::path::{Path, PathBuf};

use aya::maps::{HashMap, Map, MapData};
use meshfwd_common::endpoint::{ENDPOINT_MAX_ENTRIES, Endpoint, EndpointKey, PIN};

use crate::spec::{Code, Error, Result};

/// `BPF_MAP_TYPE_HASH`.
const BPF_MAP_TYPE_HASH: u32 = 1;

/// The open endpoint map.
pub struct Endpoints {
    map: HashMap<MapData, EndpointKey, Endpoint>,
    path: PathBuf,
}

fn ebpf_err(what: String, e: impl std::fmt::Display) -> Error {
    Error::new(Code::Ebpf, what).details(e)
}

impl Endpoints {
    /// Return the map's pin path under `bpffs`.
    pub fn pin_path(bpffs: &Path) -> PathBuf {
        bpffs.join(PIN)
    }

    /// Open the pinned map, or `None` if nothing is pinned (DEL, GC, CHECK:
    /// never create what they would only empty).
    pub fn open(bpffs: &Path) -> Result<Option<Self>> {
        let path = Self::pin_path(bpffs);
        if !path.exists() {
            return Ok(None);
        }
        let data = MapData::from_pin(&path)
            .map_err(|e| ebpf_err(format!("opening the endpoint map {}", path.display()), e))?;
        Self::wrap(data, path).map(Some)
    }

    /// Open the pinned map, creating and pinning it if absent (ADD). Two
    /// plugins racing to create it both end up with the one that got pinned.
    pub fn open_or_create(bpffs: &Path) -> Result<Self> {
        if let Some(m) = Self::open(bpffs)? {
            return Ok(m);
        }
        let path = Self::pin_path(bpffs);
        std::fs::create_dir_all(bpffs).map_err(|e| {
            ebpf_err(
                format!("creating the bpffs directory {}", bpffs.display()),
                e,
            )
        })?;
        let def = aya_obj::maps::bpf_map_def {
            map_type: BPF_MAP_TYPE_HASH,
            key_size: size_of::<EndpointKey>() as u32,
            value_size: size_of::<Endpoint>() as u32,
            max_entries: ENDPOINT_MAX_ENTRIES,
            ..Default::default()
        };
        let obj = aya_obj::Map::Legacy(aya_obj::maps::LegacyMap {
            def,
            inner_def: None,
            section_index: 0,
            section_kind: aya_obj::EbpfSectionKind::Maps,
            symbol_index: None,
            data: Vec::new(),
        });
        let data = MapData::create(obj, PIN, None)
            .map_err(|e| ebpf_err("creating the endpoint map".into(), e))?;
        match data.pin(&path) {
            Ok(()) => Self::wrap(data, path),
            // Lost the race: use the winner's map.
            Err(_) if path.exists() => Self::open(bpffs)?
                .ok_or_else(|| Error::new(Code::Ebpf, format!("{} vanished", path.display()))),
            Err(e) => Err(ebpf_err(
                format!(
                    "pinning the endpoint map at {} (is {} on a bpffs?)",
                    path.display(),
                    bpffs.display()
                ),
                e,
            )),
        }
    }

    fn wrap(data: MapData, path: PathBuf) -> Result<Self> {
        let map = HashMap::try_from(Map::HashMap(data))
            .map_err(|e| ebpf_err(format!("{} is not the endpoint map", path.display()), e))?;
        Ok(Endpoints { map, path })
    }

    /// Register a pod.
    pub fn insert(&mut self, addr: Ipv6Addr, ep: Endpoint) -> Result<()> {
        self.map
            .insert(addr.octets(), ep, 0)
            .map_err(|e| ebpf_err(format!("adding {addr} to {}", self.path.display()), e))
    }

    /// Forget a pod; a missing entry is not an error.
    pub fn remove(&mut self, addr: Ipv6Addr) -> Result<()> {
        match self.map.remove(&addr.octets()) {
            Ok(()) => Ok(()),
            Err(aya::maps::MapError::KeyNotFound) => Ok(()),
            Err(aya::maps::MapError::SyscallError(e))
                if e.io_error.raw_os_error() == Some(libc::ENOENT) =>
            {
                Ok(())
            }
            Err(e) => Err(ebpf_err(
                format!("removing {addr} from {}", self.path.display()),
                e,
            )),
        }
    }

    /// Return a pod's entry.
    pub fn get(&self, addr: Ipv6Addr) -> Option<Endpoint> {
        self.map.get(&addr.octets(), 0).ok()
    }

    /// Return every registered address.
    pub fn addrs(&self) -> Vec<Ipv6Addr> {
        self.map
            .keys()
            .filter_map(|k| k.ok())
            .map(Ipv6Addr::from)
            .collect()
    }
}
