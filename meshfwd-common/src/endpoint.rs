//! Local pod endpoints: the map the CNI plugin fills on ADD (and empties on
//! DEL) and the TC fast path reads to deliver traffic to a pod.
//!
//! ```text
//! ENDPOINTS (hash)  pod IPv6 address -> Endpoint { host veth ifindex, MACs }
//! ```
//!
//! A packet for an address found here is handed straight into the pod
//! (`bpf_redirect_peer` on the host end of its veth) instead of climbing
//! the host's stack; a packet for any other address takes the FIB.

/// Name the map is pinned under, below the node's bpffs directory.
pub const PIN: &str = "ENDPOINTS";

/// Capacity of the endpoint map (pods on one node).
pub const ENDPOINT_MAX_ENTRIES: u32 = 4_096;

/// Key of the endpoint map: the pod's IPv6 address in network byte order.
pub type EndpointKey = [u8; 16];

/// Value of the endpoint map.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Endpoint {
    /// Index of the host-side veth of the pod.
    pub ifindex: u32,
    /// Reserved for flags; 0.
    pub flags: u32,
    /// MAC of the host-side veth (the source of frames into the pod).
    pub host_mac: [u8; 6],
    /// MAC of the pod's interface (the destination of frames into the pod).
    pub pod_mac: [u8; 6],
}

#[cfg(feature = "user")]
#[expect(unsafe_code, reason = "aya::Pod is an unsafe marker trait")]
// SAFETY: `Endpoint` is `#[repr(C)]`, made only of integers and byte arrays
// with no implicit padding (checked by the size assert below), so every bit
// pattern is valid and no byte is uninitialised.
unsafe impl aya::Pod for Endpoint {}

const _: () = assert!(size_of::<Endpoint>() == 20);
