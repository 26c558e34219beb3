//! The TC fast path for pods (`meshfwd-ebpf/src/tc.rs`): loading the
//! programs once per node, attaching them with TCX, and the pins that keep
//! them attached after the process that attached them exits. Used by the
//! agent, which attaches pods' veths as they appear, and by the CNI plugin
//! when no agent does.
//!
//! The first attach on a node loads the object with every map pinned by
//! name (the FIB the agent fills, the endpoint map the plugin fills) and
//! pins both programs under `progs/` with the object's tag; every later
//! attach only opens the pinned program and attaches it. Mesh NICs are the
//! ones the agent attached XDP to: traffic from the mesh for a local pod is
//! delivered by the mesh program there.

use std::{
    fs::File,
    path::{Path, PathBuf},
};

use aya::programs::{
    ProgramInfo,
    links::{FdLink, LinkOrder, PinnedLink},
    tc::{SchedClassifier, SchedClassifierLink, TcAttachOptions, TcAttachType},
};
use nix::fcntl::{Flock, FlockArg};

use crate::{
    Error, Result, bpffs,
    object::{self, MESH_PROGRAM, POD_PROGRAM},
    xdp,
};

/// Prefix of pods' host veth names (`km` + 12 hex digits), as the CNI
/// plugin names them.
pub const HOST_VETH_PREFIX: &str = "km";

/// The alias the CNI plugin gives a pod's host veth as the last step of
/// ADD: the agent attaches the fast path to marked veths only, so its
/// attach (which holds the RTNL lock through an RCU grace period) never
/// stalls an ADD still configuring the pod.
pub const POD_VETH_ALIAS: &str = "kubermesh-pod";

/// Return the pin path of a program of the embedded object.
pub fn prog_pin(bpffs: &Path, program: &str) -> PathBuf {
    bpffs
        .join("progs")
        .join(format!("{program}-{}", object::tag()))
}

/// Return the pin path of the TC link on a pod's host veth.
pub fn link_pin(bpffs: &Path, host_veth: &str) -> PathBuf {
    bpffs::links_dir(bpffs).join(format!("tc-{host_veth}"))
}

/// Return the pin path of the TC link on a mesh NIC.
pub fn mesh_link_pin(bpffs: &Path, nic: &str) -> PathBuf {
    bpffs::links_dir(bpffs).join(format!("tc-mesh-{nic}"))
}

fn programs_pinned(bpffs: &Path) -> bool {
    [POD_PROGRAM, MESH_PROGRAM]
        .iter()
        .all(|p| prog_pin(bpffs, p).exists())
}

/// Load and pin both programs unless they are pinned already.
fn ensure_programs(bpffs: &Path) -> Result<()> {
    if programs_pinned(bpffs) {
        return Ok(());
    }
    bpffs::prepare(bpffs)?;
    // Parallel first ADDs on a node would each create and pin the maps, and
    // all but one pin would fail: load under an exclusive lock on the bpffs
    // directory, and look again once we hold it.
    let io = |what| {
        move |source| Error::Io {
            what,
            path: bpffs.to_owned(),
            source,
        }
    };
    let dir = File::open(bpffs).map_err(io("opening"))?;
    let _lock = Flock::lock(dir, FlockArg::LockExclusive)
        .map_err(|(_, e)| io("locking")(std::io::Error::from(e)))?;
    if programs_pinned(bpffs) {
        return Ok(());
    }
    let mut ebpf = object::load(Some(bpffs))?;
    for program in [POD_PROGRAM, MESH_PROGRAM] {
        let path = prog_pin(bpffs, program);
        let prog: &mut SchedClassifier = object::program(&mut ebpf, program)?;
        prog.load()
            .map_err(|source| Error::Verifier { program, source })?;
        // Another process may have pinned it meanwhile: theirs is as good.
        if let Err(source) = prog.pin(&path)
            && !path.exists()
        {
            return Err(Error::Pin {
                what: program.into(),
                path,
                source,
            });
        }
    }
    Ok(())
}

/// Attach a pinned program to `iface`'s TCX ingress and pin the link.
fn attach_pinned(bpffs: &Path, program: &'static str, iface: &str, link_path: &Path) -> Result<()> {
    let attach_error = |source: Box<dyn std::error::Error + Send + Sync>| Error::Attach {
        program,
        iface: iface.to_owned(),
        source,
    };
    let mut prog =
        SchedClassifier::from_pin(prog_pin(bpffs, program)).map_err(|e| attach_error(e.into()))?;
    let id = prog
        .attach_with_options(
            iface,
            TcAttachType::Ingress,
            TcAttachOptions::TcxOrder(LinkOrder::default()),
        )
        .map_err(|e| attach_error(e.into()))?;
    let link: FdLink = prog
        .take_link(id)
        .map_err(|e| attach_error(e.into()))?
        .try_into()
        .map_err(|e: aya::programs::links::LinkError| attach_error(e.into()))?;
    let _ = std::fs::remove_file(link_path);
    link.pin(link_path).map_err(|source| Error::Pin {
        what: format!("the TCX link of {iface}"),
        path: link_path.to_owned(),
        source,
    })?;
    Ok(())
}

/// Attach the pod program to a pod's host veth, and the mesh program to
/// every mesh NIC that lacks it.
pub fn attach(bpffs: &Path, host_veth: &str) -> Result<()> {
    ensure_programs(bpffs)?;
    attach_pinned(bpffs, POD_PROGRAM, host_veth, &link_pin(bpffs, host_veth))?;
    for nic in xdp::attached(bpffs) {
        let link = mesh_link_pin(bpffs, &nic);
        if PinnedLink::from_pin(&link).is_err()
            && let Err(e) = attach_pinned(bpffs, MESH_PROGRAM, &nic, &link)
        {
            // Mesh delivery falls back to the kernel; the pod still works.
            tracing::warn!(nic = %nic, error = %e, "mesh TC program not attached");
        }
    }
    Ok(())
}

/// Detach the pod program from a host veth by removing its link pin;
/// missing is fine (the veth's deletion already detached it).
pub fn detach(bpffs: &Path, host_veth: &str) {
    let _ = std::fs::remove_file(link_pin(bpffs, host_veth));
}

/// Swap this build's programs into every pinned TCX link that runs
/// another build's (an upgrade), each with one `bpf_link_update`, so no
/// packet meets no program; then drop the other builds' program pins so
/// the kernel frees their programs. Return how many links were swapped.
/// Links of pods whose veth is gone are left for their DEL to remove.
pub fn upgrade(bpffs: &Path) -> Result<usize> {
    let links: Vec<(String, PathBuf)> = std::fs::read_dir(bpffs::links_dir(bpffs))
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| {
                    let name = e.file_name().to_str()?.strip_prefix("tc-")?.to_owned();
                    Some((name, e.path()))
                })
                .collect()
        })
        .unwrap_or_default();
    if links.is_empty() {
        return Ok(0);
    }
    ensure_programs(bpffs)?;
    let mut swapped = 0;
    for (name, link_path) in links {
        let (program, iface) = match name.strip_prefix("mesh-") {
            Some(nic) => (MESH_PROGRAM, nic.to_owned()),
            None => (POD_PROGRAM, name),
        };
        let attach_error = |source: Box<dyn std::error::Error + Send + Sync>| Error::Attach {
            program,
            iface: iface.clone(),
            source,
        };
        let ours = ProgramInfo::from_pin(prog_pin(bpffs, program))
            .map_err(|e| attach_error(e.into()))?
            .id();
        let link =
            FdLink::from(PinnedLink::from_pin(&link_path).map_err(|e| attach_error(e.into()))?);
        let running = link
            .info()
            .map_err(|e| attach_error(e.into()))?
            .program_id();
        if running == ours {
            continue;
        }
        let link = SchedClassifierLink::try_from(link).map_err(|e| attach_error(e.into()))?;
        let mut prog = SchedClassifier::from_pin(prog_pin(bpffs, program))
            .map_err(|e| attach_error(e.into()))?;
        // The pin keeps the link, now running our program, once `prog` goes.
        prog.attach_to_link(link)
            .map_err(|e| attach_error(e.into()))?;
        swapped += 1;
    }
    let ours: Vec<PathBuf> = [POD_PROGRAM, MESH_PROGRAM]
        .iter()
        .map(|p| prog_pin(bpffs, p))
        .collect();
    if let Ok(rd) = std::fs::read_dir(bpffs.join("progs")) {
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let tc = [POD_PROGRAM, MESH_PROGRAM]
                .iter()
                .any(|p| name.starts_with(&format!("{p}-")));
            if tc && !ours.contains(&e.path()) {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
    Ok(swapped)
}

/// The programs on `iface`'s TCX ingress, in order (in the calling
/// thread's network namespace).
fn ingress(iface: &str) -> Result<Vec<ProgramInfo>> {
    SchedClassifier::query_tcx(iface, TcAttachType::Ingress)
        .map(|(_, programs)| programs)
        .map_err(|source| Error::Program {
            program: "TCX ingress query",
            source,
        })
}

/// Return the ids of the programs on `iface`'s TCX ingress.
pub fn ingress_program_ids(iface: &str) -> Result<Vec<u32>> {
    Ok(ingress(iface)?.iter().map(ProgramInfo::id).collect())
}

/// Return the names of the programs on `iface`'s TCX ingress, as the
/// kernel lists them.
pub fn ingress_programs(iface: &str) -> Result<Vec<String>> {
    Ok(ingress(iface)?
        .iter()
        .map(|p| p.name_as_str().unwrap_or("?").to_owned())
        .collect())
}

/// Check the pod program is attached to `host_veth`.
pub fn check(bpffs: &Path, host_veth: &str) -> Result<()> {
    let path = link_pin(bpffs, host_veth);
    PinnedLink::from_pin(&path)
        .map(drop)
        .map_err(|_| Error::NotPinned {
            path,
            hint: "no fast-path link for this pod veth",
        })
}
