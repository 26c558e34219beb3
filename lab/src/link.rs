//! Links between nodes: veth pairs, cables, and cutting them.
//!
//! A [`Wire::Direct`] link is one veth pair, one end in each node. A
//! [`Wire::Cable`] link puts a third namespace in the middle:
//!
//! ```text
//!   node a            cable namespace                node b
//!  [m-b] <--veth--> [ca] ==tc mirred==> [cb] <--veth--> [m-a]
//!                        <==tc mirred==
//! ```
//!
//! The cable copies every frame from one of its veths to the other with a
//! tc ingress filter (`u32` match-all + `mirred egress redirect`). That is
//! below anything the nodes run, XDP included: a frame that node a's XDP
//! program redirects into `m-b` arrives at `ca` like any other. So:
//!
//! - a **silent cut** adds a higher-priority filter on both cable ingresses
//!   that drops everything (a one-instruction classic BPF program in
//!   direct-action mode returning `TC_ACT_SHOT`): frames are lost on the
//!   wire while both node ends keep carrier (`LOWER_UP`);
//! - a **loud cut** sets both cable veths down, so both node ends lose
//!   carrier (`NO-CARRIER`) while staying administratively up, like a
//!   pulled cable.
//!
//! A [`Switch`] is a Linux bridge in a namespace of its own, one veth port
//! per member node: a cheap unmanaged switch on the nodes' mesh ports. It
//! floods multicast (snooping off, as most unmanaged switches do), so every
//! member hears every Hello, and learns MACs for unicast.
//!
//! ```text
//!   node a [m-sw] <--veth--> [p-a] \
//!   node b [m-sw] <--veth--> [p-b] -- br0   (switch namespace)
//!   node c [m-sw] <--veth--> [p-c] /
//! ```
//!
//! The cable's and the switch's own IPv6 is disabled so it never speaks on the wire (no DAD,
//! router solicitations or MLD reports) and frames it does not carry die in
//! its stack. Every veth end has GRO on: frames XDP redirects into a veth
//! are delivered only if the peer has an XDP program or GRO (NAPI) enabled.
//!
//! Every node end also fills in TCP and UDP checksums itself when it
//! sends, as a NIC does on the wire. A veth with transmit offload on hands
//! frames over with the checksum still to be filled in; once an XDP
//! program redirects such a frame that note is gone, and the receiver
//! drops it as corrupt. Pings would pass (ICMPv6 is checksummed in
//! software) while every TCP connection across a transit node hung.

use anyhow::{Context, Result};

use crate::exec::host;
use crate::netns;
use crate::topology::Wire;

/// Name of the cable's veth that faces [`Link::a`].
pub const CABLE_A_IF: &str = "ca";
/// Name of the cable's veth that faces [`Link::b`].
pub const CABLE_B_IF: &str = "cb";

/// Priority of the filters that carry frames across a cable.
const CARRY_PRIO: &str = "2";
/// Priority of the filters that drop frames during a silent cut; lower
/// number, so they run first.
const DROP_PRIO: &str = "1";
/// Classic BPF program `ret #2`: with `da` (direct action) the return value
/// is the verdict, and 2 is `TC_ACT_SHOT`. Used because this kernel has
/// neither `gact` (`action drop`) nor `matchall`.
const DROP_ALL_CBPF: &str = "1,6 0 0 2,";

/// Largest interface name Linux accepts (`IFNAMSIZ` - 1).
pub const IFNAME_MAX: usize = 15;

/// A link as built: which interface of which node it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    /// First node.
    pub a: String,
    /// Second node.
    pub b: String,
    /// Interface inside node `a` (named after `b`, e.g. `m-n3`).
    pub a_if: String,
    /// Interface inside node `b`.
    pub b_if: String,
    pub wire: Wire,
    /// Namespace of the cable for [`Wire::Cable`] links; its veths are
    /// [`CABLE_A_IF`] and [`CABLE_B_IF`].
    pub cable: Option<String>,
}

impl Link {
    /// Return whether this link joins `x` and `y` (in either order).
    pub fn joins(&self, x: &str, y: &str) -> bool {
        (self.a == x && self.b == y) || (self.a == y && self.b == x)
    }
}

/// Pick the interface name inside a node for its link to `peer`: `m-<peer>`
/// so `ip link` reads like the topology, shortened to fit, with a suffix
/// when the node already has a link of that name (parallel links).
pub(crate) fn iface_name(peer: &str, taken: &[String]) -> String {
    let base: String = format!("m-{peer}").chars().take(IFNAME_MAX).collect();
    if !taken.contains(&base) {
        return base;
    }
    (2..)
        .map(|k| {
            let suffix = format!("-{k}");
            let stem: String = base.chars().take(IFNAME_MAX - suffix.len()).collect();
            stem + &suffix
        })
        .find(|name| !taken.contains(name))
        .unwrap_or(base) // unreachable: the range is unbounded and `taken` finite
}

/// Bring up one veth end with GRO on and checksums computed on send. GRO
/// goes on after the link is up: on a veth that is down the kernel takes
/// the setting but does not start the NAPI that lets the peer redirect XDP
/// frames into it.
fn bring_up(ns: &str, ifname: &str) -> Result<()> {
    set_up(ns, ifname, true)?;
    netns::run_in(ns, &["ethtool", "-K", ifname, "gro", "on", "tx", "off"])?;
    Ok(())
}

/// Set an interface administratively up or down.
pub(crate) fn set_up(ns: &str, ifname: &str, up: bool) -> Result<()> {
    let state = if up { "up" } else { "down" };
    host(&["ip", "-n", ns, "link", "set", "dev", ifname, state]).map(drop)
}

/// Create a veth pair with each end directly in its namespace, so nothing
/// ever appears in the host namespace.
fn veth(ns1: &str, if1: &str, ns2: &str, if2: &str) -> Result<()> {
    // `name` keeps `ip` from reading a short name such as `a` as a keyword.
    host(&[
        "ip", "link", "add", "name", if1, "netns", ns1, "type", "veth", "peer", "name", if2,
        "netns", ns2,
    ])
    .map(drop)
}

/// A veth whose second end (in a cable namespace) gets ifindex `index`.
///
/// The kernel hands a device's carrier changes to userspace through
/// linkwatch, which passes at most one batch a second unless the change
/// is urgent, and a veth's counts as urgent only when its ifindex differs
/// from its peer's. Node ends are numbered from 2 in every namespace, so
/// without this a cable end would often share its node end's number, and
/// a node would learn of a cable plugged in up to a second late: a delay
/// a NIC on an otherwise quiet machine does not have.
fn veth_to_cable(ns1: &str, if1: &str, ns_c: &str, if_c: &str, index: u32) -> Result<()> {
    let index = index.to_string();
    // `ip` takes an index for the first end only.
    host(&[
        "ip", "link", "add", "name", if_c, "index", &index, "netns", ns_c, "type", "veth", "peer",
        "name", if1, "netns", ns1,
    ])
    .map(drop)
}

/// Join two nodes with one veth pair.
pub(crate) fn connect_direct(ns_a: &str, a_if: &str, ns_b: &str, b_if: &str) -> Result<()> {
    veth(ns_a, a_if, ns_b, b_if)?;
    bring_up(ns_a, a_if)?;
    bring_up(ns_b, b_if)
}

/// Make `ns_c` (already created) a cable and join two nodes through it.
pub(crate) fn connect_cable(
    ns_a: &str,
    a_if: &str,
    ns_b: &str,
    b_if: &str,
    ns_c: &str,
) -> Result<()> {
    // Before the veths exist, so they never get an address at all.
    netns::sysctl(
        ns_c,
        &[
            "net.ipv6.conf.all.disable_ipv6=1",
            "net.ipv6.conf.default.disable_ipv6=1",
        ],
    )?;
    veth_to_cable(ns_a, a_if, ns_c, CABLE_A_IF, 1001)?;
    veth_to_cable(ns_b, b_if, ns_c, CABLE_B_IF, 1002)?;
    for (from, to) in [(CABLE_A_IF, CABLE_B_IF), (CABLE_B_IF, CABLE_A_IF)] {
        host(&["tc", "-n", ns_c, "qdisc", "add", "dev", from, "clsact"])?;
        #[rustfmt::skip]
        host(&[
            "tc", "-n", ns_c, "filter", "add", "dev", from, "ingress", "prio", CARRY_PRIO,
            "protocol", "all", "u32", "match", "u32", "0", "0",
            "action", "mirred", "egress", "redirect", "dev", to,
        ])?;
    }
    bring_up(ns_c, CABLE_A_IF)?;
    bring_up(ns_c, CABLE_B_IF)?;
    bring_up(ns_a, a_if)?;
    bring_up(ns_b, b_if)
}

/// Name of the bridge inside a switch namespace.
pub const SWITCH_BRIDGE: &str = "br0";

/// A switch as built: which node interface hangs on which port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Switch {
    pub name: String,
    /// The switch's namespace.
    pub netns: String,
    /// (member node, its interface, the switch port).
    pub ports: Vec<(String, String, String)>,
}

impl Switch {
    /// Return the interface of `node` on this switch.
    pub fn iface_of(&self, node: &str) -> Option<&str> {
        self.ports
            .iter()
            .find(|(n, _, _)| n == node)
            .map(|(_, i, _)| i.as_str())
    }
}

/// Make `ns_s` (already created) a switch: a bridge that floods multicast,
/// and no IPv6 of its own.
pub(crate) fn make_switch(ns_s: &str) -> Result<()> {
    netns::sysctl(
        ns_s,
        &[
            "net.ipv6.conf.all.disable_ipv6=1",
            "net.ipv6.conf.default.disable_ipv6=1",
        ],
    )?;
    #[rustfmt::skip]
    host(&[
        "ip", "-n", ns_s, "link", "add", "name", SWITCH_BRIDGE, "type", "bridge",
        "mcast_snooping", "0", "stp_state", "0",
    ])?;
    set_up(ns_s, SWITCH_BRIDGE, true)
}

/// Plug a node's interface into a switch port.
pub(crate) fn connect_switch_port(ns_s: &str, port: &str, ns_n: &str, n_if: &str) -> Result<()> {
    veth(ns_n, n_if, ns_s, port)?;
    host(&[
        "ip",
        "-n",
        ns_s,
        "link",
        "set",
        "dev",
        port,
        "master",
        SWITCH_BRIDGE,
    ])?;
    bring_up(ns_s, port)?;
    bring_up(ns_n, n_if)
}

/// Start or stop a cable carrying frames, leaving carrier alone.
pub(crate) fn cable_carry(ns_c: &str, carry: bool) -> Result<()> {
    for dev in [CABLE_A_IF, CABLE_B_IF] {
        let present = !host(&[
            "tc", "-n", ns_c, "filter", "show", "dev", dev, "ingress", "prio", DROP_PRIO,
        ])?
        .trim()
        .is_empty();
        if carry && present {
            host(&[
                "tc", "-n", ns_c, "filter", "del", "dev", dev, "ingress", "prio", DROP_PRIO,
            ])?;
        } else if !carry && !present {
            #[rustfmt::skip]
            host(&[
                "tc", "-n", ns_c, "filter", "add", "dev", dev, "ingress", "prio", DROP_PRIO,
                "protocol", "all", "bpf", "da", "bytecode", DROP_ALL_CBPF,
            ])
            .with_context(|| format!("silent cut of cable {ns_c}"))?;
        }
    }
    Ok(())
}

/// Set both veths of a cable up or down (carrier of both node ends follows).
///
/// One `ip -batch` run changes both, microseconds apart, as pulling a real
/// cable drops carrier at both ends at once. Two `ip` runs were a few
/// milliseconds apart, and in between one node kept carrier while its
/// frames died in the cable: a loud cut measured 5 ms of loss or 0.7 ms
/// depending on which way round the link was declared.
pub(crate) fn cable_carrier(ns_c: &str, up: bool) -> Result<()> {
    let state = if up { "up" } else { "down" };
    let batch = std::env::temp_dir().join(format!("km-{ns_c}-{}.ipbatch", std::process::id()));
    std::fs::write(
        &batch,
        format!("link set dev {CABLE_A_IF} {state}\nlink set dev {CABLE_B_IF} {state}\n"),
    )
    .with_context(|| format!("writing {}", batch.display()))?;
    let done = host(&["ip", "-n", ns_c, "-batch", &batch.to_string_lossy()]);
    let _ = std::fs::remove_file(&batch);
    done.map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iface_names() {
        assert_eq!(iface_name("n3", &[]), "m-n3");
        assert_eq!(iface_name("n3", &["m-n3".into()]), "m-n3-2");
        assert_eq!(
            iface_name("n3", &["m-n3".into(), "m-n3-2".into()]),
            "m-n3-3"
        );
        let long = iface_name("a-very-long-node-name", &[]);
        assert_eq!(long, "m-a-very-long-n");
        assert_eq!(long.len(), IFNAME_MAX);
        let again = iface_name("a-very-long-node-name", &[long]);
        assert_eq!(again, "m-a-very-long-2");
        assert!(again.len() <= IFNAME_MAX);
    }
}
