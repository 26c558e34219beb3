//! OSPFv3 control plane (RFC 5340) for the kubermesh partial mesh.
//!
//! The mesh learns its topology with OSPFv3 over IPv6 link-local addresses.
//! This crate is a *sans-IO* core: [`Instance::handle`] takes an [`Input`]
//! (an interface event, a received packet, a timer, new stub prefixes) at a
//! caller-supplied [`Time`] and returns [`Output`]s (packets to send, timers
//! to arm, RIB changes). The same code runs in the deterministic simulator
//! ([`sim`]) and, behind the `driver` feature, in the tokio daemon.
//!
//! Data flow: `packet` (wire codec) -> `interface`/`neighbor` (state
//! machines) -> `flood` -> `lsdb` -> `spf` -> `route` (RIB and its diff).
//!
//! Checksums: the core fills in the OSPF checksum of every packet it emits
//! (the IPv6 pseudo-header uses the interface's link-local address as source),
//! so simulated links work; a kernel with `IPV6_CHECKSUM` recomputes the same
//! value. On receipt a nonzero checksum is verified against `src`/`dst`; a
//! zero checksum is accepted unverified (the kernel has already checked it
//! when `IPV6_CHECKSUM` is set).
//!
//! Routes: the RIB holds routes to prefixes advertised by other routers;
//! this router's own stub prefixes are not in it.
// The protocol core is safe Rust; the one `unsafe` is a socket option in
// `driver::socket` that no safe wrapper exposes.
#![deny(unsafe_code)]

pub mod af;
pub mod bfd;
pub mod error;
pub mod events;
pub mod flood;
pub mod gr;
pub mod instance;
pub mod interface;
pub mod lsdb;
pub mod neighbor;
mod originate;
pub mod ownership;
pub mod packet;
pub mod route;
pub mod sim;
pub mod spf;
pub mod state;

pub use af::AddressFamily;
pub use error::{DropReason, ParseError};
pub use events::{Input, Output, Time, TimerId};
pub use instance::{Instance, InstanceConfig};
pub use interface::{InterfaceConfig, InterfaceKind};
pub use ipnet::Ipv6Net;
pub use route::{NextHop, Rib, RibDiff, Route};
pub use spf::SpfBackoffConfig;
pub use state::InstanceState;
#[cfg(feature = "driver")]
pub mod driver;
