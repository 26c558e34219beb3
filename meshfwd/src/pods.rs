//! The TC fast path for pods (`meshfwd-ebpf/src/tc.rs`): loading the
//! programs once per node, attaching them with TCX, and the pins that keep
//! them attached after the process that attached them exits. Used by the
//! agent, which attaches pods' veths as they appear, and by the CNI plugin
//! when no agent does.
//!
//! ```text
//! <bpffs>/progs/meshfwd_tc_pod-<tag>   pod egress program (pinned once per node)
//! <bpffs>/progs/meshfwd_tc_mesh-<tag>  mesh ingress program
//! <bpffs>/links/tc-<host veth>     TCX ingress link on a pod's host veth
//! <bpffs>/links/tc-mesh-<nic>      TCX ingress link on a mesh NIC
//! ```
//!
//! The first attach on a node loads the agent's eBPF object with every
//! shared map pinned by name (the FIB the agent fills, the endpoint map the
//! plugin fills) and pins both programs; every later attach only opens the
//! pinned program and attaches it. Mesh NICs are the ones
//! the agent attached XDP to (`links/xdp-<nic>`): traffic from the mesh for
//! a local pod is delivered by the mesh program there.
//!
//! `<tag>` is a hash of the embedded object, so an upgraded plugin loads
//! and pins its own programs instead of attaching a stale pinned one.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, anyhow};
use aya::EbpfLoader;
use aya::programs::links::{FdLink, LinkOrder, PinnedLink};
use aya::programs::tc::{SchedClassifier, TcAttachOptions, TcAttachType};
use meshfwd_common::{endpoint, pin};
use nix::fcntl::{Flock, FlockArg};

/// Prefix of pods' host veth names (`km` + 12 hex digits), as the CNI
/// plugin names them.
pub const HOST_VETH_PREFIX: &str = "km";

/// The alias the CNI plugin gives a pod's host veth as the last step of
/// ADD: the agent attaches the fast path to marked veths only, so its
/// attach (which holds the RTNL lock through an RCU grace period) never
/// stalls an ADD still configuring the pod.
pub const POD_VETH_ALIAS: &str = "kubermesh-pod";

/// The program on pods' host veths.
pub const POD_PROGRAM: &str = "meshfwd_tc_pod";
/// The program on mesh NICs.
pub const MESH_PROGRAM: &str = "meshfwd_tc_mesh";

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
        let h = crate::ebpf::EBPF_OBJECT
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
            .with_context(|| format!("creating {}", bpffs.join(dir).display()))?;
    }
    // Parallel first ADDs on a node would each create and pin the maps, and
    // all but one pin would fail: load under an exclusive lock on the bpffs
    // directory, and look again once we hold it.
    let dir = std::fs::File::open(bpffs).with_context(|| format!("opening {}", bpffs.display()))?;
    let _lock = Flock::lock(dir, FlockArg::LockExclusive)
        .map_err(|(_, e)| anyhow!("locking {}: {e}", bpffs.display()))?;
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
        .load(crate::ebpf::EBPF_OBJECT)
        .context("loading the kubermesh eBPF object")?;
    for name in [POD_PROGRAM, MESH_PROGRAM] {
        let path = prog_pin(bpffs, name);
        let prog: &mut SchedClassifier = ebpf
            .program_mut(name)
            .with_context(|| format!("the eBPF object has no program {name}"))?
            .try_into()
            .with_context(|| format!("{name} is not a TC program"))?;
        prog.load()
            .with_context(|| format!("the verifier rejected {name}"))?;
        // Another ADD may have pinned it meanwhile: theirs is as good.
        if let Err(e) = prog.pin(&path)
            && !path.exists()
        {
            return Err(anyhow!(e).context(format!("pinning {name} at {}", path.display())));
        }
    }
    Ok(())
}

/// Attach a pinned program to `iface`'s TCX ingress and pin the link.
fn attach_pinned(bpffs: &Path, program: &str, iface: &str, link_path: &Path) -> Result<()> {
    let mut prog = SchedClassifier::from_pin(prog_pin(bpffs, program))
        .with_context(|| format!("opening the pinned {program}"))?;
    let id = prog
        .attach_with_options(
            iface,
            TcAttachType::Ingress,
            TcAttachOptions::TcxOrder(LinkOrder::default()),
        )
        .with_context(|| format!("attaching {program} to {iface} (TCX ingress)"))?;
    let link: FdLink = prog
        .take_link(id)
        .with_context(|| format!("taking the TCX link of {iface}"))?
        .try_into()
        .with_context(|| format!("the TCX link of {iface} is not a bpf_link"))?;
    let _ = std::fs::remove_file(link_path);
    link.pin(link_path)
        .with_context(|| format!("pinning the link at {}", link_path.display()))?;
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
            tracing::warn!(nic = %nic, error = %format!("{e:#}"), "mesh TC program not attached");
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
    PinnedLink::from_pin(&path).map(drop).with_context(|| {
        format!(
            "no fast-path link pinned for {host_veth} at {}",
            path.display()
        )
    })
}
