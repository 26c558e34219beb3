//! The node state the agent publishes (`dataplane::node_state`), read with
//! its errors in the CNI's terms: no file yet is code 11 (try again later,
//! the agent has not started), which is also what STATUS reports on; an
//! unreadable or invalid file is code 5.

use std::path::Path;

use dataplane::node_state::StateError;
pub use dataplane::node_state::{NodeState, PodAttach};

use crate::spec::{Code, Error, Result};

/// Read and check the node state file.
pub fn read(path: &Path) -> Result<NodeState> {
    NodeState::read(path).map_err(|e| {
        let code = match e {
            StateError::Missing { .. } => Code::TryAgainLater,
            _ => Code::Io,
        };
        Error::new(code, e.to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_is_try_again_and_broken_is_io() {
        let e = read(Path::new("/nonexistent/kubermesh/node.json")).unwrap_err();
        assert_eq!(e.code, Code::TryAgainLater);
        let dir = std::env::temp_dir().join(format!("cni-node-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("node.json");
        std::fs::write(&path, br#"{"pod_prefix": "fd42::/64"}"#).unwrap();
        let e = read(&path).unwrap_err();
        assert_eq!(e.code, Code::Io);
        assert!(e.msg.contains("invalid"), "{}", e.msg);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
