//! The node's state as the agent publishes it: the contract between
//! `meshfwd agent` (writer) and the plugin (reader).
//!
//! ```json
//! {"router_id": "10.0.0.1", "pod_prefix": "fd42:1:2:3::/64",
//!  "node_address": "fd42:1:2:3::1", "mtu": 1500, "bpffs": "/sys/fs/bpf/kubermesh",
//!  "pod_attach": "agent"}
//! ```
//!
//! The pod prefix feeds IPAM, the MTU sizes both veth ends, `bpffs` is
//! where the pinned maps and programs live, and `pod_attach: "agent"` says
//! the agent attaches the fast path to new pod veths (without it, ADD
//! does).

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::ipam::Prefix6;
use crate::spec::{Code, Error, Result};

/// The node state file's content.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeState {
    pub router_id: String,
    pub pod_prefix: Prefix6,
    pub node_address: Option<std::net::Ipv6Addr>,
    pub mtu: u32,
    pub bpffs: PathBuf,
    /// The agent attaches the TC fast path to pods' veths.
    pub agent_attaches_pods: bool,
}

#[derive(Deserialize)]
struct Raw {
    #[serde(default)]
    router_id: String,
    pod_prefix: String,
    node_address: Option<std::net::Ipv6Addr>,
    mtu: Option<u32>,
    bpffs: Option<PathBuf>,
    pod_attach: Option<String>,
}

impl NodeState {
    /// Read the state file. Missing means the agent has not started yet:
    /// code 11 (try again later), which is also what STATUS reports on.
    pub fn read(path: &Path) -> Result<Self> {
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::new(
                    Code::TryAgainLater,
                    format!(
                        "node state file {} does not exist yet: is the meshfwd agent running?",
                        path.display()
                    ),
                ));
            }
            Err(e) => {
                return Err(Error::new(
                    Code::Io,
                    format!("reading node state file {}", path.display()),
                )
                .details(e));
            }
        };
        Self::parse(&bytes).map_err(|e| {
            Error::new(
                Code::Io,
                format!("node state file {} is invalid", path.display()),
            )
            .details(e)
        })
    }

    /// Parse the JSON form.
    pub fn parse(bytes: &[u8]) -> std::result::Result<Self, String> {
        let raw: Raw = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
        let pod_prefix: Prefix6 = raw.pod_prefix.parse()?;
        if pod_prefix.len > 126 {
            return Err(format!("pod prefix {pod_prefix} is too small to hold pods"));
        }
        let mtu = raw.mtu.unwrap_or(1500);
        if !(1280..=65535).contains(&mtu) {
            return Err(format!("mtu {mtu} is outside 1280..=65535"));
        }
        Ok(NodeState {
            router_id: raw.router_id,
            pod_prefix,
            node_address: raw.node_address,
            mtu,
            bpffs: raw
                .bpffs
                .unwrap_or_else(|| PathBuf::from(meshfwd_common::pin::DEFAULT_DIR)),
            agent_attaches_pods: raw.pod_attach.as_deref() == Some("agent"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contract_example() {
        let s = NodeState::parse(
            br#"{"router_id": "10.0.0.1", "pod_prefix": "fd42:1:2:3::/64",
                 "node_address": "fd42:1:2:3::1", "mtu": 1500, "bpffs": "/sys/fs/bpf/kubermesh"}"#,
        )
        .unwrap();
        assert_eq!(s.pod_prefix.to_string(), "fd42:1:2:3::/64");
        assert_eq!(s.mtu, 1500);
        assert_eq!(s.bpffs, PathBuf::from("/sys/fs/bpf/kubermesh"));
        assert!(!s.agent_attaches_pods);
        let s = NodeState::parse(br#"{"pod_prefix": "fd42::/64", "pod_attach": "agent"}"#).unwrap();
        assert!(s.agent_attaches_pods);
        assert!(NodeState::parse(br#"{"pod_prefix": "fd42::/127"}"#).is_err());
        assert!(NodeState::parse(br#"{"pod_prefix": "nope"}"#).is_err());
    }

    #[test]
    fn missing_is_try_again() {
        let e = NodeState::read(Path::new("/nonexistent/kubermesh/node.json")).unwrap_err();
        assert_eq!(e.code, Code::TryAgainLater);
    }
}
