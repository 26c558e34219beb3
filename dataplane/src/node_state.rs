//! The node state file: what the CNI plugin needs to know about this node,
//! written by the agent whenever it changes. One type for both sides, so
//! the contract cannot drift.
//!
//! ```json
//! {"router_id": "10.0.0.1", "pod_prefix": "fd42:1:2:3::/64",
//!  "node_address": "fd42:1:2:3::1", "mtu": 1500, "bpffs": "/sys/fs/bpf/kubermesh",
//!  "pod_attach": "agent",
//!  "ipv4": {"pod_prefix": "198.18.7.0/24", "node_address": "198.18.7.1"}}
//! ```
//!
//! `ipv4` is there only on a node with IPv4 (`[ipv4]` in the agent's
//! configuration).
//!
//! The pod prefix feeds IPAM, the MTU sizes both veth ends, `bpffs` is
//! where the pinned maps and programs live, and `pod_attach` says who
//! attaches the TC fast path to a new pod's veth: the agent (which runs the
//! XDP fast path and attaches as veths appear, so ADD need not wait for it)
//! or the plugin itself.
//!
//! The file is replaced atomically (a temporary file in the same directory,
//! then `rename`), so the plugin never reads half of it. Reading checks the
//! values are usable, so a broken file is refused by name, not half used.

use std::{
    io::{self, Write as _},
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    path::{Path, PathBuf},
};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use serde::{Deserialize, Serialize};

/// Where the agent writes the file, and the plugin reads it, by default.
pub const DEFAULT_PATH: &str = "/run/kubermesh/node.json";

/// The MTUs a node may hand to pods (IPv6 needs 1280).
pub const MTU_RANGE: std::ops::RangeInclusive<u32> = 1280..=65535;

/// Who attaches the TC fast path to pods' veths.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PodAttach {
    /// The agent does, when it sees the veth the plugin marked finished.
    Agent,
    /// The plugin does it during ADD (the agent runs without XDP).
    #[default]
    // Written as "" by agents before this type existed.
    #[serde(alias = "")]
    Plugin,
}

/// The content of the node state file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeState {
    pub router_id: Ipv4Addr,
    pub pod_prefix: Ipv6Net,
    pub node_address: Ipv6Addr,
    pub mtu: u32,
    pub bpffs: PathBuf,
    #[serde(default)]
    pub pod_attach: PodAttach,
    /// The node's IPv4 prefixes; `None` on an IPv6-only node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipv4: Option<Ipv4Prefixes>,
}

/// A node's IPv4 pod prefix and its own address inside it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ipv4Prefixes {
    pub pod_prefix: Ipv4Net,
    pub node_address: Ipv4Addr,
}

/// Why the state file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// No file: the agent has not started (or not published) yet.
    #[error("node state file {} does not exist yet: is the meshfwd agent running?", path.display())]
    Missing { path: PathBuf },
    #[error("reading node state file {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("node state file {} is invalid: {reason}", path.display())]
    Invalid { path: PathBuf, reason: String },
    #[error("writing node state file {}: {source}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

impl NodeState {
    /// The node's pod prefixes: IPv6, then IPv4 when it runs IPv4.
    pub fn pod_prefixes(&self) -> Vec<IpNet> {
        let mut out = vec![IpNet::V6(self.pod_prefix)];
        out.extend(self.ipv4.map(|v4| IpNet::V4(v4.pod_prefix)));
        out
    }

    /// The node's own addresses (which no pod may get), in the same order.
    pub fn node_addresses(&self) -> Vec<IpAddr> {
        let mut out = vec![IpAddr::V6(self.node_address)];
        out.extend(self.ipv4.map(|v4| IpAddr::V4(v4.node_address)));
        out
    }

    /// Check the values are usable; return the first problem.
    pub fn validate(&self) -> Result<(), String> {
        if self.pod_prefix.prefix_len() > 126 {
            return Err(format!(
                "pod prefix {} is too small to hold pods",
                self.pod_prefix
            ));
        }
        if self.pod_prefix.trunc() != self.pod_prefix {
            return Err(format!("pod prefix {} has host bits set", self.pod_prefix));
        }
        if !self.pod_prefix.contains(&self.node_address) {
            return Err(format!(
                "node address {} is outside the pod prefix {}",
                self.node_address, self.pod_prefix
            ));
        }
        if let Some(v4) = self.ipv4 {
            if v4.pod_prefix.prefix_len() > 30 || v4.pod_prefix.trunc() != v4.pod_prefix {
                return Err(format!(
                    "IPv4 pod prefix {} cannot hold pods",
                    v4.pod_prefix
                ));
            }
            if !v4.pod_prefix.contains(&v4.node_address) {
                return Err(format!(
                    "IPv4 node address {} is outside the IPv4 pod prefix {}",
                    v4.node_address, v4.pod_prefix
                ));
            }
        }
        if !MTU_RANGE.contains(&self.mtu) {
            return Err(format!("mtu {} is outside 1280..=65535", self.mtu));
        }
        if self.bpffs.as_os_str().is_empty() {
            return Err("bpffs is empty".into());
        }
        Ok(())
    }

    /// Parse and check the JSON form.
    pub fn parse(bytes: &[u8]) -> Result<Self, String> {
        let state: NodeState = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
        state.validate()?;
        Ok(state)
    }

    /// Read and check the file.
    pub fn read(path: &Path) -> Result<Self, StateError> {
        let bytes = std::fs::read(path).map_err(|source| match source.kind() {
            io::ErrorKind::NotFound => StateError::Missing {
                path: path.to_owned(),
            },
            _ => StateError::Read {
                path: path.to_owned(),
                source,
            },
        })?;
        Self::parse(&bytes).map_err(|reason| StateError::Invalid {
            path: path.to_owned(),
            reason,
        })
    }

    /// Write the file atomically (mode 0644: the plugin may run unprivileged
    /// for CHECK); create its directory if needed.
    pub fn write(&self, path: &Path) -> Result<(), StateError> {
        let fail = |source| StateError::Write {
            path: path.to_owned(),
            source,
        };
        let dir = path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir).map_err(fail)?;
        let name = path
            .file_name()
            .ok_or_else(|| fail(io::Error::other("the path has no file name")))?;
        let tmp = dir.join(format!(
            ".{}.{}.tmp",
            name.to_string_lossy(),
            std::process::id()
        ));
        let result = (|| -> io::Result<()> {
            let mut f = std::fs::File::create(&tmp)?;
            serde_json::to_writer_pretty(&mut f, self)?;
            f.write_all(b"\n")?;
            f.sync_all()?;
            std::fs::rename(&tmp, path)
        })();
        if result.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        result.map_err(fail)
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
            pod_attach: PodAttach::Agent,
            ipv4: None,
        }
    }

    #[test]
    fn json_is_the_documented_contract() {
        let v: serde_json::Value = serde_json::to_value(state()).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"router_id": "10.0.0.1", "pod_prefix": "fd42:1:2:3::/64",
                "node_address": "fd42:1:2:3::1", "mtu": 1500, "bpffs": "/sys/fs/bpf/kubermesh",
                "pod_attach": "agent"})
        );
        let back = NodeState::parse(v.to_string().as_bytes()).unwrap();
        assert_eq!(back, state());
    }

    #[test]
    fn who_attaches_pods() {
        let without = br#"{"router_id": "10.0.0.1", "pod_prefix": "fd42::/64",
            "node_address": "fd42::1", "mtu": 1500, "bpffs": "/sys/fs/bpf/x"}"#;
        assert_eq!(
            NodeState::parse(without).unwrap().pod_attach,
            PodAttach::Plugin
        );
        for (text, want) in [
            ("agent", PodAttach::Agent),
            ("plugin", PodAttach::Plugin),
            ("", PodAttach::Plugin),
        ] {
            let mut v = serde_json::to_value(state()).unwrap();
            v["pod_attach"] = text.into();
            assert_eq!(
                NodeState::parse(v.to_string().as_bytes())
                    .unwrap()
                    .pod_attach,
                want,
                "{text:?}"
            );
        }
    }

    #[test]
    fn bad_files_are_refused_by_what_is_wrong() {
        let reason = |patch: serde_json::Value| {
            let mut v = serde_json::to_value(state()).unwrap();
            for (k, x) in patch.as_object().unwrap() {
                v[k] = x.clone();
            }
            NodeState::parse(v.to_string().as_bytes()).unwrap_err()
        };
        assert!(reason(serde_json::json!({"pod_prefix": "fd42::/127"})).contains("too small"));
        assert!(
            reason(serde_json::json!({"pod_prefix": "nope"})).contains("pod_prefix")
                || reason(serde_json::json!({"pod_prefix": "nope"})).contains("invalid")
        );
        assert!(reason(serde_json::json!({"node_address": "fd43::1"})).contains("outside"));
        assert!(reason(serde_json::json!({"mtu": 1000})).contains("mtu"));
        assert!(reason(serde_json::json!({"router_id": "x"})).contains("invalid"));
        let mut v = serde_json::to_value(state()).unwrap();
        v.as_object_mut().unwrap().remove("node_address");
        assert!(
            NodeState::parse(v.to_string().as_bytes())
                .unwrap_err()
                .contains("node_address")
        );
        assert!(matches!(
            NodeState::read(Path::new("/nonexistent/kubermesh/node.json")),
            Err(StateError::Missing { .. })
        ));
    }

    #[test]
    fn write_replaces_atomically_and_reads_back() {
        let dir = std::env::temp_dir().join(format!("dataplane-state-{}", std::process::id()));
        let path = dir.join("sub/node.json");
        let mut s = state();
        s.write(&path).unwrap();
        assert_eq!(NodeState::read(&path).unwrap(), s);
        s.pod_prefix = "fd42:1:2:4::/64".parse().unwrap();
        s.node_address = "fd42:1:2:4::1".parse().unwrap();
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
