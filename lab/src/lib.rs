//! Network-namespace lab: a declarative topology turned into Linux network
//! namespaces joined by veth pairs, for kubermesh's tests, demo and
//! benchmarks.
//!
//! ```no_run
//! use lab::{Lab, Topology, Wire};
//!
//! let lab = Lab::build("doc", &Topology::partial_mesh(6, 1, Wire::Cable))?;
//! let l = lab.links()[0].clone();
//! let peer = lab.node(&l.b).link_local(&l.b_if)?;
//! lab.node(&l.a).wait_ping6(peer, Some(&l.a_if), std::time::Duration::from_secs(5))?;
//! lab.cut_silent(&l.a, &l.b)?; // frames lost, carrier stays
//! lab.restore(&l.a, &l.b)?;
//! # Ok::<(), anyhow::Error>(())
//! ```
//!
//! How it fits together:
//! - [`topology`]: what to build (plain data, random partial meshes);
//! - [`netns`]: namespaces, entered with `nsenter --net` so bpffs stays
//!   visible;
//! - [`link`]: veth pairs and "cables", the namespaces in the middle of a
//!   link that make loud and silent cuts possible below XDP, and switches
//!   (a bridge in a namespace) for multi-access segments;
//! - [`process`]: long-lived processes in their own process groups;
//! - [`agents`]: a mesh of real `meshfwd agent` processes, one per node;
//! - [`kube_proxy`]: the Service rules kube-proxy writes, for a node;
//! - [`pods`]: pods wired by a CNI plugin, and finding the binaries;
//! - [`iperf`]: a TCP stream between two nodes, to cut paths under;
//! - [`cleanup`]: teardown on drop, panic and Ctrl-C, and removal of what
//!   dead test processes left behind.
//!
//! Every name carries the pid and a per-process counter
//! (`km<pid>x<n>-<node>`), so tests run in parallel and leftovers can be
//! told apart from live labs. Tests must run as root.

pub mod agents;
pub mod cleanup;
pub mod exec;
pub mod iperf;
pub mod kube_proxy;
mod lab;
pub mod link;
pub mod netns;
mod node;
pub mod pods;
pub mod process;
pub mod topology;

pub use cleanup::{cleanup_all, cleanup_stale};
pub use lab::Lab;
pub use link::{Link, Switch};
pub use node::{LINK_LOCAL_WAIT, Node};
pub use process::ProcId;
pub use topology::{LinkSpec, Topology, Wire};
