//! The TC fast path for pods (`meshfwd-ebpf/src/tc.rs`): loading the
//! programs once per node, attaching them with TCX, and the pins that keep
//! them attached after the plugin exits.
//!
//! ```text
//! <bpffs>/progs/meshfwd_tc_pod-<tag>   pod egress program (pinned once per node)
//! <bpffs>/progs/meshfwd_tc_mesh-<tag>  mesh ingress program
//! <bpffs>/links/tc-<host veth>     TCX ingress link on a pod's host veth
//! <bpffs>/links/tc-mesh-<nic>      TCX ingress link on a mesh NIC
//! ```
//!
//! The first ADD on a node loads the agent's eBPF object with every shared
//! map pinned by name (the FIB the agent fills, the endpoint map the plugin
//! fills) and pins both programs; every later ADD only opens the pinned
//! program and attaches it, which keeps ADD fast. Mesh NICs are the ones
//! the agent attached XDP to (`links/xdp-<nic>`): traffic from the mesh for
//! a local pod is delivered by the mesh program there.
//!
//! `<tag>` is a hash of the embedded object, so an upgraded plugin loads
//! and pins its own programs instead of attaching a stale pinned one.

use std::path::{Path, PathBuf};

use aya::EbpfLoader;
use aya::programs::links::{FdLink, LinkOrder, PinnedLink};
use aya::programs::tc::{SchedClassifier, TcAttachOptions, TcAttachType};
use meshfwd_common::{endpoint, pin};
use nix::fcntl::{Flock, FlockArg};

use crate::spec::{Code, Error, Result};

/// The program on pods' host veths.
pub const POD_PROGRAM: &str = "meshfwd_tc_pod";
/// The program on mesh NICs.
pub const MESH_PROGRAM: &str = "meshfwd_tc_mesh";

fn err(what: String, e: impl std::fmt::Display) -> Error {
    Error::new(Code::Ebpf, what).details(e)
}

/// Return the pin path of a program of the embedded object.
pub fn prog_pin(bpffs: &Path, program: &str) -> PathBuf {
    bpffs
        .join("progs")
        .join(format!("{program}-{}", object_tag()))
}

/// Return a short hash (FNV-1a) of the embedded eBPF object, computed once
/// per run: the object is a quarter of a megabyte.
fn object_tag() -> &'static str {
    static TAG: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    TAG.get_or_init(|| {
        let h = meshfwd::ebpf::EBPF_OBJECT
            .iter()
            .fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
                (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
            });
        format!("{:08x}", h >> 32)
    })
}

/// Return the pin path of the TC link on a pod's host veth.
pub fn link_pin(bpffs: &Path, host_veth: &str) -> PathBuf {
    bpffs.join("links").join(format!("tc-{host_veth}"))
}

/// Return the pin path of the TC link on a mesh NIC.
pub fn mesh_link_pin(bpffs: &Path, nic: &str) -> PathBuf {
    bpffs.join("links").join(format!("tc-mesh-{nic}"))
}

/// Load and pin both programs unless they are pinned already.
fn ensure_programs(bpffs: &Path) -> Result<()> {
    if [POD_PROGRAM, MESH_PROGRAM]
        .iter()
        .all(|p| prog_pin(bpffs, p).exists())
    {
        return Ok(());
    }
    for dir in ["progs", "links"] {
        std::fs::create_dir_all(bpffs.join(dir))
            .map_err(|e| err(format!("creating {}", bpffs.join(dir).display()), e))?;
    }
    // Parallel first ADDs on a node would each create and pin the maps, and
    // all but one pin would fail: load under an exclusive lock on the bpffs
    // directory, and look again once we hold it.
    let dir =
        std::fs::File::open(bpffs).map_err(|e| err(format!("opening {}", bpffs.display()), e))?;
    let _lock = Flock::lock(dir, FlockArg::LockExclusive)
        .map_err(|(_, e)| err(format!("locking {}", bpffs.display()), e))?;
    if [POD_PROGRAM, MESH_PROGRAM]
        .iter()
        .all(|p| prog_pin(bpffs, p).exists())
    {
        return Ok(());
    }
    let names: Vec<&str> = pin::FORWARDING_MAPS
        .iter()
        .copied()
        .chain([endpoint::PIN])
        .collect();
    let paths: Vec<PathBuf> = names.iter().map(|n| bpffs.join(n)).collect();
    let mut loader = EbpfLoader::new();
    for (name, path) in names.iter().zip(&paths) {
        loader.map_pin_path(name, path.as_path());
    }
    let mut ebpf = loader
        .load(meshfwd::ebpf::EBPF_OBJECT)
        .map_err(|e| err("loading the kubermesh eBPF object".into(), e))?;
    for name in [POD_PROGRAM, MESH_PROGRAM] {
        let path = prog_pin(bpffs, name);
        let prog: &mut SchedClassifier = ebpf
            .program_mut(name)
            .ok_or_else(|| {
                Error::new(Code::Ebpf, format!("the eBPF object has no program {name}"))
            })?
            .try_into()
            .map_err(|e| err(format!("{name} is not a TC program"), e))?;
        prog.load()
            .map_err(|e| err(format!("the verifier rejected {name}"), e))?;
        // Another ADD may have pinned it meanwhile: theirs is as good.
        if let Err(e) = prog.pin(&path)
            && !path.exists()
        {
            return Err(err(format!("pinning {name} at {}", path.display()), e));
        }
    }
    Ok(())
}

/// Attach a pinned program to `iface`'s TCX ingress and pin the link.
fn attach_pinned(bpffs: &Path, program: &str, iface: &str, link_path: &Path) -> Result<()> {
    let mut prog = SchedClassifier::from_pin(prog_pin(bpffs, program))
        .map_err(|e| err(format!("opening the pinned {program}"), e))?;
    let id = prog
        .attach_with_options(
            iface,
            TcAttachType::Ingress,
            TcAttachOptions::TcxOrder(LinkOrder::default()),
        )
        .map_err(|e| err(format!("attaching {program} to {iface} (TCX ingress)"), e))?;
    let link: FdLink = prog
        .take_link(id)
        .map_err(|e| err(format!("taking the TCX link of {iface}"), e))?
        .try_into()
        .map_err(|e| err(format!("the TCX link of {iface} is not a bpf_link"), e))?;
    let _ = std::fs::remove_file(link_path);
    link.pin(link_path)
        .map_err(|e| err(format!("pinning the link at {}", link_path.display()), e))?;
    Ok(())
}

/// Attach the pod program to a pod's host veth, and the mesh program to
/// every mesh NIC that lacks it.
pub fn attach(bpffs: &Path, host_veth: &str) -> Result<()> {
    ensure_programs(bpffs)?;
    attach_pinned(bpffs, POD_PROGRAM, host_veth, &link_pin(bpffs, host_veth))?;
    for nic in mesh_nics(bpffs) {
        let link = mesh_link_pin(bpffs, &nic);
        if PinnedLink::from_pin(&link).is_err()
            && let Err(e) = attach_pinned(bpffs, MESH_PROGRAM, &nic, &link)
        {
            // Mesh delivery falls back to the kernel; the pod still works.
            eprintln!("meshfwd-cni: {e}");
        }
    }
    Ok(())
}

/// Return the NICs the agent attached XDP to (`links/xdp-<nic>`).
fn mesh_nics(bpffs: &Path) -> Vec<String> {
    std::fs::read_dir(bpffs.join("links"))
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| {
                    e.file_name()
                        .to_str()?
                        .strip_prefix("xdp-")
                        .map(str::to_owned)
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Detach the pod program from a host veth by removing its link pin;
/// missing is fine (the veth's deletion already detached it).
pub fn detach(bpffs: &Path, host_veth: &str) {
    let _ = std::fs::remove_file(link_pin(bpffs, host_veth));
}

/// Check the pod program is attached to `host_veth`.
pub fn check(bpffs: &Path, host_veth: &str) -> Result<()> {
    let path = link_pin(bpffs, host_veth);
    PinnedLink::from_pin(&path).map(drop).map_err(|e| {
        Error::new(
            Code::CheckFailed,
            format!(
                "no fast-path link pinned for {host_veth} at {}",
                path.display()
            ),
        )
        .details(e)
    })
}
