//! Loading, attaching and pinning the XDP program, and opening its pinned
//! maps again from a later process.
//!
//! Layout under the pin directory (default `/sys/fs/bpf/kubermesh`):
//! maps by name (`MESH_STATS`, ...) and `links/xdp-<ifname>` for each
//! attachment. Because both maps and links are pinned, the data plane keeps
//! running after the loading process exits, and a later `meshfwd` finds it.

use std::{
    collections::BTreeSet,
    fs,
    path::{Path, PathBuf},
};

use anyhow::{Context as _, Result, bail};
use aya::{
    Ebpf, EbpfLoader,
    maps::{Array, DevMapHash, LpmTrie, Map, MapData, PerCpuArray},
    programs::{
        Xdp, XdpMode,
        links::{FdLink, PinnedLink},
    },
};
use meshfwd_common::{
    fib::{FibEntry, NextHop, NextHopGroup, table::Head},
    pin,
};
use nix::{
    mount::{MsFlags, mount},
    sys::statfs::{BPF_FS_MAGIC, statfs},
};

/// The eBPF object built by `build.rs` from `meshfwd-ebpf`.
pub static EBPF_OBJECT: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/meshfwd-ebpf"));

/// The benchmark helper programs (`meshfwd-ebpf`'s `meshfwd-bench` bin):
/// load generator, sink, pass-all and the MAC-rewrite ceiling.
pub static BENCH_OBJECT: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/meshfwd-bench"));

/// Name of the XDP entry point in `meshfwd-ebpf`.
pub const XDP_PROGRAM: &str = "meshfwd_xdp";

/// How the XDP program is hooked into the driver.
#[derive(Clone, Copy, Debug, Default, clap::ValueEnum)]
pub enum AttachMode {
    /// Native (driver) mode when the NIC supports it, else generic.
    #[default]
    Auto,
    /// Native XDP in the driver; fails on NICs without support.
    Native,
    /// Generic (skb) XDP: works everywhere, slower.
    Generic,
}

impl AttachMode {
    fn xdp_mode(self) -> XdpMode {
        match self {
            AttachMode::Auto => XdpMode::default(),
            AttachMode::Native => XdpMode::Driver,
            AttachMode::Generic => XdpMode::Skb,
        }
    }
}

/// Return the pinned path of the XDP link on `iface`.
pub fn link_pin(pin_dir: &Path, iface: &str) -> PathBuf {
    pin_dir.join("links").join(format!("xdp-{iface}"))
}

/// Load the program, attach it to `iface` and pin maps and link under
/// `pin_dir`. Maps already pinned there are reused, so every interface of a
/// node shares one set of maps and counters. On failure nothing new is left
/// pinned.
pub fn attach(pin_dir: &Path, iface: &str, mode: AttachMode) -> Result<PathBuf> {
    ensure_bpffs(pin_dir)?;
    let link_path = link_pin(pin_dir, iface);
    if link_path.exists() {
        bail!(
            "XDP is already attached to {iface} (pinned at {}); run `meshfwd detach --iface {iface}` first",
            link_path.display()
        );
    }
    let before = pinned_entries(pin_dir);
    let result = load_and_attach(pin_dir, &link_path, iface, mode);
    if result.is_err() {
        // Undo only what this call pinned: maps another interface shares stay.
        for entry in pinned_entries(pin_dir).difference(&before) {
            let _ = fs::remove_file(entry);
        }
        let _ = fs::remove_dir(pin_dir.join("links"));
        let _ = fs::remove_dir(pin_dir);
    }
    result.map(|()| link_path)
}

fn load_and_attach(pin_dir: &Path, link_path: &Path, iface: &str, mode: AttachMode) -> Result<()> {
    fs::create_dir_all(pin_dir.join("links"))
        .with_context(|| format!("creating {}", pin_dir.display()))?;
    let mut ebpf = load(Some(pin_dir))?;
    let program: &mut Xdp = ebpf
        .program_mut(XDP_PROGRAM)
        .context("the eBPF object has no XDP program")?
        .try_into()?;
    program
        .load()
        .context("the verifier rejected the XDP program")?;
    let link_id = program
        .attach(iface, mode.xdp_mode())
        .with_context(|| format!("attaching XDP to {iface}"))?;
    let link = program.take_link(link_id)?;
    let link: FdLink = link
        .try_into()
        .context("the kernel has no bpf_link support for XDP")?;
    link.pin(link_path)
        .with_context(|| format!("pinning the link at {}", link_path.display()))?;
    Ok(())
}

/// Return the files directly under `dir` (pinned maps).
fn pinned_entries(dir: &Path) -> BTreeSet<PathBuf> {
    fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.path())
                .filter(|p| p.is_file())
                .collect()
        })
        .unwrap_or_default()
}

/// Load the forwarding object into the kernel (programs not yet verified).
///
/// With `pin_dir`, every map is pinned there by name, and maps already
/// pinned there are reused, so all interfaces of a node and later processes
/// share one set of tables. Without it the maps are private to the returned
/// [`Ebpf`] (tests).
pub fn load(pin_dir: Option<&Path>) -> Result<Ebpf> {
    let mut loader = EbpfLoader::new();
    let paths: Vec<(&str, PathBuf)> = match pin_dir {
        Some(dir) => pin::FORWARDING_MAPS
            .iter()
            .map(|name| (*name, dir.join(name)))
            .collect(),
        None => Vec::new(),
    };
    for (name, path) in &paths {
        loader.map_pin_path(name, path.as_path());
    }
    loader
        .load(EBPF_OBJECT)
        .context("loading the eBPF object into the kernel")
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
    /// The compiled lookup table ([`crate::fib::table`]).
    pub table: Array<MapData, u32>,
    /// Slot 0: which region of `table` is live (0: none).
    pub table_root: Array<MapData, u32>,
    /// Each region's head (shortcut past the shared groups).
    pub table_head: Array<MapData, Head>,
}

impl FibMaps {
    /// Invalidate every CPU's destination cache (call after FIB changes).
    pub fn bump_generation(&mut self) -> Result<()> {
        let g = self.fib_gen.get(&0, 0)?;
        self.fib_gen.set(0, g.wrapping_add(1), 0)?;
        Ok(())
    }
}

impl FibMaps {
    /// Open the maps pinned under `pin_dir` by an earlier [`attach`].
    pub fn open(pin_dir: &Path) -> Result<Self> {
        let open = |name: &str| -> Result<MapData> {
            let path = pin_dir.join(name);
            MapData::from_pin(&path).with_context(|| {
                format!(
                    "no map pinned at {} (is the XDP program attached? see `meshfwd attach --help`)",
                    path.display()
                )
            })
        };
        Ok(FibMaps {
            fib_v6: LpmTrie::try_from(Map::LpmTrie(open(pin::FIB_V6)?))?,
            fib_v4: LpmTrie::try_from(Map::LpmTrie(open(pin::FIB_V4)?))?,
            groups: Array::try_from(Map::Array(open(pin::NH_GROUPS)?))?,
            next_hops: Array::try_from(Map::Array(open(pin::NEXT_HOPS)?))?,
            egress: DevMapHash::try_from(Map::DevMapHash(open(pin::EGRESS_DEVS)?))?,
            stats: PerCpuArray::try_from(Map::PerCpuArray(open(pin::STATS)?))?,
            fib_gen: Array::try_from(Map::Array(open(pin::FIB_GEN)?))?,
            table: Array::try_from(Map::Array(open(pin::FIB6_TABLE)?))?,
            table_root: Array::try_from(Map::Array(open(pin::FIB6_TABLE_ROOT)?))?,
            table_head: Array::try_from(Map::Array(open(pin::FIB6_TABLE_HEAD)?))?,
        })
    }

    /// Take the maps out of a freshly loaded object (see [`load`]).
    pub fn take(ebpf: &mut Ebpf) -> Result<Self> {
        let mut take = |name: &str| -> Result<Map> {
            ebpf.take_map(name)
                .with_context(|| format!("the eBPF object has no map {name}"))
        };
        Ok(FibMaps {
            fib_v6: LpmTrie::try_from(take(pin::FIB_V6)?)?,
            fib_v4: LpmTrie::try_from(take(pin::FIB_V4)?)?,
            groups: Array::try_from(take(pin::NH_GROUPS)?)?,
            next_hops: Array::try_from(take(pin::NEXT_HOPS)?)?,
            egress: DevMapHash::try_from(take(pin::EGRESS_DEVS)?)?,
            stats: PerCpuArray::try_from(take(pin::STATS)?)?,
            fib_gen: Array::try_from(take(pin::FIB_GEN)?)?,
            table: Array::try_from(take(pin::FIB6_TABLE)?)?,
            table_root: Array::try_from(take(pin::FIB6_TABLE_ROOT)?)?,
            table_head: Array::try_from(take(pin::FIB6_TABLE_HEAD)?)?,
        })
    }
}

/// Detach the program from `iface` by removing its pinned link.
pub fn detach(pin_dir: &Path, iface: &str) -> Result<()> {
    let link_path = link_pin(pin_dir, iface);
    let link = PinnedLink::from_pin(&link_path).with_context(|| {
        format!(
            "no XDP attachment of ours on {iface} (nothing pinned at {})",
            link_path.display()
        )
    })?;
    // Unpinning drops the last reference: the kernel detaches the program.
    link.unpin().context("removing the pinned link")?;
    Ok(())
}

/// Open the pinned per-CPU statistics map.
pub fn open_stats(pin_dir: &Path) -> Result<PerCpuArray<MapData, u64>> {
    let path = pin_dir.join(pin::STATS);
    let data = MapData::from_pin(&path).with_context(|| {
        format!(
            "no statistics map pinned at {} (is the XDP program attached? see `meshfwd attach --help`)",
            path.display()
        )
    })?;
    let map = Map::PerCpuArray(data);
    Ok(PerCpuArray::try_from(map)?)
}

/// Make sure `dir` lies on a mounted bpffs, mounting /sys/fs/bpf if needed.
fn ensure_bpffs(dir: &Path) -> Result<()> {
    let root = Path::new("/sys/fs/bpf");
    let fs_type = statfs(root)
        .with_context(|| format!("statfs {}", root.display()))?
        .filesystem_type();
    if dir.starts_with(root) && fs_type != BPF_FS_MAGIC {
        mount(
            Some("bpf"),
            root,
            Some("bpf"),
            MsFlags::empty(),
            None::<&str>,
        )
        .context("/sys/fs/bpf is not a bpffs and mounting one there failed")?;
    }
    Ok(())
}
