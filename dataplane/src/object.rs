//! The eBPF object built from `meshfwd-ebpf` (see `build.rs`) and loading
//! it with the node's maps pinned by name.
//!
//! Every process of a node that loads the object (the agent for XDP, the
//! agent or the CNI plugin for the TC programs) passes the same pin paths,
//! so they all share one set of maps: the FIB the agent writes, the
//! endpoints the plugin writes, the counters both read.
//!
//! Before loading, the object's calls to the conntrack kfuncs are linked
//! against the running kernel ([`link`]): aya 0.14 knows no kfunc calls,
//! so `meshfwd-ebpf` declares them as plain externs, the linker leaves a
//! relocation at each call, and this module turns each into a kfunc call
//! with the kernel's BTF id, the way libbpf does for C programs.

use std::{path::Path, sync::OnceLock};

use aya::{Ebpf, EbpfLoader};
use aya_obj::btf::{Btf, BtfKind};
use meshfwd_common::{
    conntrack::{KFUNCS, STATUS_OFFSET_GLOBAL},
    hash, pin,
};
use object::{Object as _, ObjectSection as _, ObjectSymbol as _, RelocationTarget};
use serde::{Deserialize, Serialize};

use crate::{Error, Result, btf};

/// The object built by `build.rs` from `meshfwd-ebpf`.
pub static EBPF_OBJECT: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/meshfwd-ebpf"));

/// The XDP program on mesh NICs.
pub const XDP_PROGRAM: &str = "meshfwd_xdp";
/// The TC program on pods' host veths.
pub const POD_PROGRAM: &str = "meshfwd_tc_pod";
/// The TC program on mesh NICs (delivery into local pods).
pub const MESH_PROGRAM: &str = "meshfwd_tc_mesh";
/// The tracepoint program on `xdp:xdp_devmap_xmit` (frames a flush dropped).
pub const DEVMAP_XMIT_PROGRAM: &str = "meshfwd_devmap_xmit";
/// The tracepoint program on `xdp:xdp_redirect_err` (redirects refused).
pub const REDIRECT_ERR_PROGRAM: &str = "meshfwd_redirect_err";

/// Load the object into the kernel (programs not yet verified).
///
/// With `pin_dir`, every map is pinned there by name, and maps already
/// pinned there are reused, so all interfaces of a node and later processes
/// share one set of tables. Without it the maps are private to the returned
/// [`Ebpf`] (tests).
pub fn load(pin_dir: Option<&Path>) -> Result<Ebpf> {
    load_linked(linked(), pin_dir)
}

/// Return the program `name` of a loaded object as a `P` (`Xdp`,
/// `SchedClassifier`, `TracePoint`), not yet verified.
pub fn program<'a, P>(ebpf: &'a mut Ebpf, name: &'static str) -> Result<&'a mut P>
where
    &'a mut P: TryFrom<&'a mut aya::programs::Program, Error = aya::programs::ProgramError>,
{
    let program_error = |source| crate::Error::Program {
        program: name,
        source,
    };
    ebpf.program_mut(name)
        .ok_or(aya::programs::ProgramError::UnexpectedProgramType)
        .map_err(program_error)?
        .try_into()
        .map_err(program_error)
}

/// Load a linked object (as [`load`]).
pub fn load_linked(linked: &Linked, pin_dir: Option<&Path>) -> Result<Ebpf> {
    let mut loader = EbpfLoader::new();
    loader.override_global(STATUS_OFFSET_GLOBAL, &linked.status_offset, true);
    let paths: Vec<_> = pin_dir
        .map(|dir| pin::ALL.iter().map(|n| (*n, dir.join(n))).collect())
        .unwrap_or_default();
    check_pinned_layouts(linked.bytes(), &paths)?;
    for (name, path) in &paths {
        loader.map_pin_path(name, path.as_path());
    }
    loader.load(linked.bytes()).map_err(Error::Load)
}

/// `BPF_F_RDONLY_PROG` (`include/uapi/linux/bpf.h`).
const BPF_F_RDONLY_PROG: u32 = 1 << 7;

/// A map's layout as the kernel keeps it.
#[derive(Debug, PartialEq, Eq)]
struct Layout {
    map_type: u32,
    key_size: u32,
    value_size: u32,
    max_entries: u32,
    flags: u32,
}

impl std::fmt::Display for Layout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "type {}, key {} bytes, value {} bytes, {} entries, flags {:#x}",
            self.map_type, self.key_size, self.value_size, self.max_entries, self.flags
        )
    }
}

/// Refuse maps pinned by a build whose layout differs: aya reuses a
/// pinned map by name without comparing, and a program would then read
/// entries of another shape (or fail the verifier far from the cause).
fn check_pinned_layouts(bytes: &[u8], paths: &[(&'static str, std::path::PathBuf)]) -> Result<()> {
    if paths.iter().all(|(_, p)| !p.exists()) {
        return Ok(());
    }
    let obj = aya_obj::Object::parse(bytes).map_err(|e| Error::Object(e.to_string()))?;
    for (name, path) in paths {
        let (Some(map), Ok(info)) = (obj.maps.get(*name), aya::maps::MapInfo::from_pin(path))
        else {
            // Not pinned yet (or not a map of this build): the loader
            // creates it.
            continue;
        };
        let wanted = Layout {
            map_type: map.map_type(),
            key_size: map.key_size(),
            value_size: map.value_size(),
            max_entries: map.max_entries(),
            flags: map.map_flags(),
        };
        let pinned = Layout {
            map_type: info.map_type().map_or(u32::MAX, |t| t as u32),
            key_size: info.key_size(),
            value_size: info.value_size(),
            max_entries: info.max_entries(),
            // aya makes maps programs only read (devmaps) read-only for
            // programs, a flag the object does not carry.
            flags: info.map_flags() & !BPF_F_RDONLY_PROG,
        };
        if pinned != wanted {
            return Err(Error::MapLayout {
                map: name,
                path: path.clone(),
                pinned: pinned.to_string(),
                wanted: wanted.to_string(),
            });
        }
    }
    Ok(())
}

/// Whether the programs can ask conntrack, as the loader found the
/// running kernel.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "state", content = "reason")]
pub enum Conntrack {
    /// The lookups are linked: the netfilter check runs.
    Linked,
    /// They could not be: each lookup finds nothing, so while the check is
    /// on every TCP and UDP packet takes the kernel path.
    Unavailable(String),
}

/// The object with its kfunc calls linked for the running kernel.
pub struct Linked {
    /// The patched object, in words: the ELF parser wants it 8-aligned.
    words: Vec<u64>,
    len: usize,
    status_offset: u32,
    /// What became of the conntrack lookups.
    pub conntrack: Conntrack,
}

impl Linked {
    /// The object's bytes.
    pub fn bytes(&self) -> &[u8] {
        &bytemuck::cast_slice(&self.words)[..self.len]
    }
}

/// Return [`EBPF_OBJECT`] linked for the running kernel, once per process.
pub fn linked() -> &'static Linked {
    static LINKED: OnceLock<Linked> = OnceLock::new();
    LINKED.get_or_init(|| {
        let kernel = KernelBtf::running();
        let linked = link(EBPF_OBJECT, &kernel);
        if let Conntrack::Unavailable(reason) = &linked.conntrack {
            tracing::warn!(
                %reason,
                "conntrack lookups unavailable: with the netfilter check on, TCP and UDP take the kernel path"
            );
        }
        linked
    })
}

/// Find a kernel function's BTF id, or say why there is none.
pub type FuncIds = Box<dyn Fn(&str) -> Result<u32, String> + Send + Sync>;

/// What linking asks of the kernel's BTF.
pub struct KernelBtf {
    /// The BTF id of a kernel function, or why there is none.
    pub func_id: FuncIds,
    /// The byte offset of `status` in `struct nf_conn`, or why unknown.
    pub status_offset: Result<u32, String>,
}

impl KernelBtf {
    /// The running kernel's BTF ([`btf::VMLINUX`]).
    pub fn running() -> Self {
        let funcs = Btf::from_sys_fs().map_err(|e| format!("reading {}: {e}", btf::VMLINUX));
        let status_offset = std::fs::read(btf::VMLINUX)
            .map_err(|e| format!("reading {}: {e}", btf::VMLINUX))
            .and_then(|raw| {
                btf::member_offset(&raw, "nf_conn", "status").map_err(|e| e.to_string())
            });
        KernelBtf {
            func_id: Box::new(move |name| match &funcs {
                Ok(btf) => btf.id_by_type_name_kind(name, BtfKind::Func).map_err(|_| {
                    // Built as a module, nf_conntrack's kfuncs live in the
                    // module's BTF, which a call can only name through the
                    // load's fd_array; aya 0.14 passes none.
                    format!(
                        "{name} is not in the kernel's own BTF (nf_conntrack is a module or absent)"
                    )
                }),
                Err(e) => Err(e.clone()),
            }),
            status_offset,
        }
    }
}

/// `BPF_JMP | BPF_CALL`.
const OP_CALL: u8 = 0x85;
/// `BPF_ALU64 | BPF_MOV | BPF_K`: `r0 = 0` stands in for a call that cannot
/// be linked (a lookup that finds nothing).
const OP_MOV64_IMM: u8 = 0xb7;
/// `src_reg` of a call to a kernel function named by its BTF id.
const PSEUDO_KFUNC_CALL: u8 = 2;

/// Link `object`'s calls to the conntrack kfuncs for `kernel`: each
/// becomes a kfunc call with the kernel's BTF id, or, if any kfunc or the
/// `status` offset is missing, `r0 = 0` (the lookups find nothing).
pub fn link(object: &[u8], kernel: &KernelBtf) -> Linked {
    let mut bytes = object.to_vec();
    let calls = kfunc_calls(object);
    let resolved: std::result::Result<Vec<(usize, u32)>, String> = calls.and_then(|calls| {
        calls
            .into_iter()
            .map(|(at, name)| {
                if object.get(at) != Some(&OP_CALL) {
                    return Err(format!("the relocation for {name} is not at a call"));
                }
                (kernel.func_id)(name).map(|id| (at, id))
            })
            .collect()
    });
    let status_offset = kernel.status_offset.clone();
    let (conntrack, status_offset) = match (resolved, status_offset) {
        (Ok(calls), Ok(offset)) => {
            for (at, id) in calls {
                bytes[at + 1] = (bytes[at + 1] & 0x0f) | (PSEUDO_KFUNC_CALL << 4);
                bytes[at + 4..at + 8].copy_from_slice(&id.to_le_bytes());
            }
            (Conntrack::Linked, offset)
        }
        (Err(reason), _) | (Ok(_), Err(reason)) => {
            // Every call site, whichever failed: an object half linked
            // would not load.
            for (at, _) in kfunc_calls(object).unwrap_or_default() {
                if bytes.get(at) == Some(&OP_CALL) {
                    bytes[at..at + 8].copy_from_slice(&[OP_MOV64_IMM, 0, 0, 0, 0, 0, 0, 0]);
                }
            }
            (Conntrack::Unavailable(reason), 0)
        }
    };
    let len = bytes.len();
    let mut words = vec![0u64; len.div_ceil(8)];
    bytemuck::cast_slice_mut::<u64, u8>(&mut words)[..len].copy_from_slice(&bytes);
    Linked {
        words,
        len,
        status_offset,
        conntrack,
    }
}

/// Every call to a conntrack kfunc in `object`: the file offset of the
/// call instruction and the kfunc's name.
fn kfunc_calls(object: &[u8]) -> std::result::Result<Vec<(usize, &'static str)>, String> {
    let file = object::File::parse(object).map_err(|e| format!("parsing the object: {e}"))?;
    let mut calls = Vec::new();
    for section in file.sections() {
        let Some((base, _)) = section.file_range() else {
            continue;
        };
        for (offset, reloc) in section.relocations() {
            let RelocationTarget::Symbol(index) = reloc.target() else {
                continue;
            };
            let Ok(symbol) = file.symbol_by_index(index) else {
                continue;
            };
            let name = symbol.name().unwrap_or_default();
            if let Some(kfunc) = KFUNCS.iter().find(|k| **k == name)
                && symbol.is_undefined()
            {
                calls.push(((base + offset) as usize, *kfunc));
            }
        }
    }
    Ok(calls)
}

/// Return a short tag of the object (FNV-1a of its bytes), computed once
/// per process: pinned programs carry it in their name, so an upgraded
/// binary loads and pins its own programs instead of attaching stale ones.
pub fn tag() -> &'static str {
    static TAG: OnceLock<String> = OnceLock::new();
    TAG.get_or_init(|| format!("{:08x}", hash::fnv1a(&[EBPF_OBJECT]) >> 32))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_conntrack_call_is_linked_on_this_kernel() {
        let calls = kfunc_calls(EBPF_OBJECT).expect("parse the object");
        for kfunc in KFUNCS {
            assert!(
                calls.iter().any(|(_, name)| *name == kfunc),
                "no call to {kfunc}"
            );
        }
        let linked = link(EBPF_OBJECT, &KernelBtf::running());
        assert_eq!(linked.conntrack, Conntrack::Linked);
        let bytes = linked.bytes();
        assert_eq!(bytes.len(), EBPF_OBJECT.len());
        for (at, name) in calls {
            assert_eq!(bytes[at], OP_CALL, "{name}");
            assert_eq!(bytes[at + 1] >> 4, PSEUDO_KFUNC_CALL, "{name}");
            assert_ne!(&bytes[at + 4..at + 8], &[0; 4], "{name} has no BTF id");
        }
    }

    #[test]
    fn without_the_kfuncs_each_call_becomes_a_lookup_that_finds_nothing() {
        let kernel = KernelBtf {
            func_id: Box::new(|name| Err(format!("no {name}"))),
            status_offset: Ok(128),
        };
        let linked = link(EBPF_OBJECT, &kernel);
        assert_eq!(
            linked.conntrack,
            Conntrack::Unavailable("no bpf_skb_ct_lookup".into())
        );
        for (at, _) in kfunc_calls(EBPF_OBJECT).expect("parse") {
            assert_eq!(
                &linked.bytes()[at..at + 8],
                &[OP_MOV64_IMM, 0, 0, 0, 0, 0, 0, 0]
            );
        }
    }
}
