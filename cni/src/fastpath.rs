//! The TC fast path for pods, as the plugin uses it: `dataplane::tc` with
//! its errors in the CNI's terms.
//!
//! When the node's agent attaches pods' veths itself (the state file says
//! `"pod_attach": "agent"`), ADD leaves the attach to it: the TCX attach
//! waits out an RCU grace period holding the RTNL lock. ADD marks the host
//! veth with [`dataplane::tc::POD_VETH_ALIAS`] as its last netlink step;
//! the agent attaches on seeing the mark, and the pod works through the
//! kernel's routes for the few milliseconds until it is done.

use std::path::Path;

pub use dataplane::tc::{POD_VETH_ALIAS, link_pin};

use crate::spec::{Code, Error, Result};

/// Attach the pod program to a pod's host veth, and the mesh program to
/// every mesh NIC that lacks it.
pub fn attach(bpffs: &Path, host_veth: &str) -> Result<()> {
    dataplane::tc::attach(bpffs, host_veth).map_err(|e| {
        Error::new(
            Code::Ebpf,
            format!("attaching the fast path to {host_veth}: {e}"),
        )
    })
}

/// Detach the pod program from a host veth; missing is fine.
pub fn detach(bpffs: &Path, host_veth: &str) {
    dataplane::tc::detach(bpffs, host_veth);
}

/// Check the pod program is attached to `host_veth`.
pub fn check(bpffs: &Path, host_veth: &str) -> Result<()> {
    dataplane::tc::check(bpffs, host_veth).map_err(|e| {
        Error::new(
            Code::CheckFailed,
            format!("the fast path is not attached to {host_veth}"),
        )
        .details(e)
    })
}
