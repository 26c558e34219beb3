//! The kubermesh data plane as user space drives it: the eBPF object built
//! from `meshfwd-ebpf`, loading it with the node's maps pinned, typed
//! handles on those maps, XDP and TC attachment, reading rtnetlink, and the
//! node state file that ties the agent to the CNI plugin.
//!
//! Both the agent (`meshfwd`) and the plugin (`cni`) stand on this crate;
//! it has no async runtime and knows nothing of routing, so the plugin
//! stays a small synchronous binary.
//!
//! - [`object`]: the embedded object, its kfunc calls linked, loading it
//!   with pins;
//! - [`btf`]: struct member offsets from the kernel's BTF;
//! - [`bpffs`]: the pin directory's layout;
//! - [`maps`]: the FIB, endpoint and counter maps, typed;
//! - [`xdp`] and [`tc`]: attaching the programs, links pinned;
//! - [`stats`]: the counters summed over CPUs;
//! - [`netlink`]: links, addresses and routes decoded from rtnetlink;
//! - [`node_state`]: the agent-to-plugin contract.

pub mod bpffs;
pub mod btf;
mod error;
pub mod maps;
pub mod netlink;
pub mod node_state;
pub mod object;
pub mod stats;
pub mod tc;
pub mod trace;
pub mod xdp;

pub use error::{Error, Result};
