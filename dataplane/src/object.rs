//! The eBPF object built from `meshfwd-ebpf` (see `build.rs`) and loading
//! it with the node's maps pinned by name.
//!
//! Every process of a node that loads the object (the agent for XDP, the
//! agent or the CNI plugin for the TC programs) passes the same pin paths,
//! so they all share one set of maps: the FIB the agent writes, the
//! endpoints the plugin writes, the counters both read.

use std::{path::Path, sync::OnceLock};

use aya::{Ebpf, EbpfLoader};
use meshfwd_common::{hash, pin};

use crate::{Error, Result};

/// The object built by `build.rs` from `meshfwd-ebpf`.
pub static EBPF_OBJECT: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/meshfwd-ebpf"));

/// The XDP program on mesh NICs.
pub const XDP_PROGRAM: &str = "meshfwd_xdp";
/// The TC program on pods' host veths.
pub const POD_PROGRAM: &str = "meshfwd_tc_pod";
/// The TC program on mesh NICs (delivery into local pods).
pub const MESH_PROGRAM: &str = "meshfwd_tc_mesh";

/// Load the object into the kernel (programs not yet verified).
///
/// With `pin_dir`, every map is pinned there by name, and maps already
/// pinned there are reused, so all interfaces of a node and later processes
/// share one set of tables. Without it the maps are private to the returned
/// [`Ebpf`] (tests).
pub fn load(pin_dir: Option<&Path>) -> Result<Ebpf> {
    let mut loader = EbpfLoader::new();
    let paths: Vec<_> = pin_dir
        .map(|dir| pin::ALL.iter().map(|n| (*n, dir.join(n))).collect())
        .unwrap_or_default();
    for (name, path) in &paths {
        loader.map_pin_path(name, path.as_path());
    }
    loader.load(EBPF_OBJECT).map_err(Error::Load)
}

/// Return a short tag of the object (FNV-1a of its bytes), computed once
/// per process: pinned programs carry it in their name, so an upgraded
/// binary loads and pins its own programs instead of attaching stale ones.
pub fn tag() -> &'static str {
    static TAG: OnceLock<String> = OnceLock::new();
    TAG.get_or_init(|| format!("{:08x}", hash::fnv1a(&[EBPF_OBJECT]) >> 32))
}
