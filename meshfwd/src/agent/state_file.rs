//! The node state file: what the CNI plugin needs to know about this node,
//! written by the agent whenever it changes.
//!
//! ```json
//! {"router_id": "10.0.0.1", "pod_prefix": "fd42:1:2:3::/64",
//!  "node_address": "fd42:1:2:3::1", "mtu": 1500, "bpffs": "/sys/fs/bpf/kubermesh",
//!  "pod_attach": "agent"}
//! ```
//!
//! `pod_attach` tells the plugin the agent attaches the TC fast path to
//! pods' veths as they appear, so ADD need not wait for it.
//!
//! The file is replaced atomically (a temporary file in the same directory,
//! then `rename`), so the plugin never reads half of it.

use std::{
    io::Write as _,
    net::{Ipv4Addr, Ipv6Addr},
    path::{Path, PathBuf},
};

use anyhow::{Context as _, Result};
use serde::{Deserialize, Serialize};

use super::prefixes::Ipv6Net;

/// The content of the node state file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeState {
    pub router_id: Ipv4Addr,
    pub pod_prefix: Ipv6Net,
    pub node_address: Ipv6Addr,
    pub mtu: u32,
    pub bpffs: PathBuf,
    /// Who attaches the TC program to pods' veths: `"agent"`.
    #[serde(default)]
    pub pod_attach: String,
}

impl NodeState {
    /// Write the file atomically (mode 0644: the plugin may run unprivileged
    /// for CHECK); create its directory if needed.
    pub fn write(&self, path: &Path) -> Result<()> {
        let dir = path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let name = path
            .file_name()
            .with_context(|| format!("{} has no file name", path.display()))?;
        let tmp = dir.join(format!(
            ".{}.{}.tmp",
            name.to_string_lossy(),
            std::process::id()
        ));
        let result = (|| -> Result<()> {
            let mut f = std::fs::File::create(&tmp)
                .with_context(|| format!("creating {}", tmp.display()))?;
            serde_json::to_writer_pretty(&mut f, self)?;
            f.write_all(b"\n")?;
            f.sync_all()?;
            std::fs::rename(&tmp, path).with_context(|| format!("renaming to {}", path.display()))
        })();
        if result.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        result
    }

    /// Read the file back (tests, the CLI).
    pub fn read(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        serde_json::from_slice(&bytes).with_context(|| format!("parsing {}", path.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state() -> NodeState {
        NodeState {
            router_id: Ipv4Addr::new(10, 0, 0, 1),
            pod_prefix: "fd42:1:2:3::/64".parse().unwrap(),
            node_address: "fd42:1:2:3::1".parse().unwrap(),
            mtu: 1500,
            bpffs: "/sys/fs/bpf/kubermesh".into(),
            pod_attach: "agent".into(),
        }
    }

    #[test]
    fn json_matches_the_cni_contract() {
        let v: serde_json::Value = serde_json::to_value(state()).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"router_id": "10.0.0.1", "pod_prefix": "fd42:1:2:3::/64",
                "node_address": "fd42:1:2:3::1", "mtu": 1500, "bpffs": "/sys/fs/bpf/kubermesh",
                "pod_attach": "agent"})
        );
    }

    #[test]
    fn write_replaces_atomically_and_reads_back() {
        let dir = std::env::temp_dir().join(format!("meshfwd-state-{}", std::process::id()));
        let path = dir.join("sub/node.json");
        let mut s = state();
        s.write(&path).unwrap();
        assert_eq!(NodeState::read(&path).unwrap(), s);
        s.pod_prefix = "fd42:1:2:4::/64".parse().unwrap();
        s.write(&path).unwrap();
        assert_eq!(NodeState::read(&path).unwrap(), s);
        let left: Vec<_> = std::fs::read_dir(dir.join("sub"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(
            left,
            vec![std::ffi::OsString::from("node.json")],
            "no temporary file is left"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
