//! The node's bpffs directory: where maps, programs and links are pinned,
//! so the data plane outlives the process that set it up.
//!
//! ```text
//! <bpffs>/<MAP>                        maps by name (`meshfwd_common::pin`)
//! <bpffs>/links/xdp-<nic>              XDP link on a mesh NIC
//! <bpffs>/links/tc-mesh-<nic>          TCX link on a mesh NIC
//! <bpffs>/links/tc-<host veth>         TCX link on a pod's host veth
//! <bpffs>/progs/<program>-<tag>        TC programs, loaded once per node
//! ```

use std::{
    collections::BTreeSet,
    fs,
    path::{Path, PathBuf},
};

use nix::{
    mount::{MsFlags, mount},
    sys::statfs::{BPF_FS_MAGIC, statfs},
};

use crate::{Error, Result};

/// Where the kernel's bpffs is mounted.
const BPFFS_ROOT: &str = "/sys/fs/bpf";

/// Make sure `dir` and its `links/` and `progs/` exist on a bpffs, mounting
/// one at /sys/fs/bpf if `dir` lies below it and it is not mounted yet.
pub fn prepare(dir: &Path) -> Result<()> {
    let root = Path::new(BPFFS_ROOT);
    if dir.starts_with(root) && statfs(root).is_ok_and(|s| s.filesystem_type() != BPF_FS_MAGIC) {
        mount(
            Some("bpf"),
            root,
            Some("bpf"),
            MsFlags::empty(),
            None::<&str>,
        )
        .map_err(Error::Mount)?;
    }
    for sub in [links_dir(dir), dir.join("progs")] {
        fs::create_dir_all(&sub).map_err(|source| Error::Io {
            what: "creating",
            path: sub.clone(),
            source,
        })?;
    }
    Ok(())
}

/// Return the directory of pinned links.
pub fn links_dir(dir: &Path) -> PathBuf {
    dir.join("links")
}

/// Return the files directly under `dir` (pinned maps).
pub fn pinned_entries(dir: &Path) -> BTreeSet<PathBuf> {
    fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.path())
                .filter(|p| p.is_file())
                .collect()
        })
        .unwrap_or_default()
}
