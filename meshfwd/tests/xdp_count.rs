//! N frames sent across a veth are counted exactly N by the XDP program, as
//! read back from the pinned map by `meshfwd show stats --json`.
//!
//! The sending end has IPv6 disabled and no IPv4 address, so the kernel puts
//! nothing else on the wire (no ND, MLD or router solicitations): every frame
//! the receiver's XDP program sees is one of ours.

mod agent_support;

use std::{path::Path, process::Command, time::Duration};

use agent_support::{MESHFWD, meshfwd_cli};
use dataplane::stats::Stats;
use lab::{Lab, Topology, Wire};
use meshfwd::api::StatsReport;
use meshfwd_common::stats::Stat;

const FRAMES: u64 = 1000;

fn stats(node: &lab::Node) -> Stats {
    let json = meshfwd_cli(node, &["show", "stats", "--json"]);
    let report: StatsReport = serde_json::from_str(&json).expect("stats JSON");
    report.xdp.expect("the counters of the pinned map")
}

fn mac_of(node: &lab::Node, iface: &str) -> String {
    let out = node
        .run(&["ip", "-br", "link", "show", "dev", iface])
        .expect("ip link");
    out.split_whitespace()
        .nth(2)
        .expect("MAC in `ip -br link`")
        .to_string()
}

/// Send `count` identical IPv6/UDP frames out of `iface` through a packet
/// socket inside the node.
fn send_frames(node: &lab::Node, iface: &str, dst_mac: &str, src_mac: &str, count: u64) {
    let script = format!(
        r#"
import socket, struct
dst = bytes.fromhex("{dst}"); src = bytes.fromhex("{src}")
payload = b"kubermesh-xdp-count"
udp = struct.pack("!HHHH", 40000, 40001, 8 + len(payload), 0) + payload
ip6 = struct.pack("!IHBB", 6 << 28, len(udp), 17, 64)
ip6 += socket.inet_pton(socket.AF_INET6, "2001:db8::1") + socket.inet_pton(socket.AF_INET6, "2001:db8::2")
frame = dst + src + b"\x86\xdd" + ip6 + udp
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind(("{iface}", 0))
for _ in range({count}):
    s.send(frame)
"#,
        dst = dst_mac.replace(':', ""),
        src = src_mac.replace(':', ""),
    );
    node.run(&["python3", "-c", &script]).expect("send frames");
}

#[test]
fn xdp_counts_exactly_the_frames_sent() {
    let topo = Topology::new().line(&["tx", "rx"], Wire::Direct);
    let lab = Lab::build("xdpcount", &topo).expect("build lab");
    let link = lab.link("tx", "rx");
    let (tx_if, rx_if) = (link.a_if.clone(), link.b_if.clone());
    let (tx, rx) = (lab.node("tx"), lab.node("rx"));

    // Silence the sender's kernel before anything is counted.
    tx.run(&[
        "sysctl",
        "-qw",
        &format!("net.ipv6.conf.{}.disable_ipv6=1", tx_if),
    ])
    .expect("disable IPv6 on the sender");
    std::thread::sleep(Duration::from_millis(200));

    let attached = meshfwd_cli(rx, &["attach", "--iface", &rx_if, "--json"]);
    let attached: serde_json::Value = serde_json::from_str(&attached).expect("attach JSON");
    assert!(Path::new(attached["link"].as_str().expect("link path")).exists());

    let before = stats(rx);
    assert_eq!(
        before.get(Stat::Rx),
        0,
        "a fresh map starts at zero: {before:?}"
    );

    let dst = mac_of(rx, &rx_if);
    let src = mac_of(tx, &tx_if);
    send_frames(tx, &tx_if, &dst, &src, FRAMES);

    // Frames cross the veth synchronously, but allow the receiver's softirq
    // a moment; poll boundedly for the final figure.
    let mut after = stats(rx);
    for _ in 0..20 {
        if after.get(Stat::Rx) == FRAMES {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
        after = stats(rx);
    }
    assert_eq!(after.get(Stat::Rx), FRAMES, "rx counter: {after:?}");
    assert_eq!(after.get(Stat::Ipv6), FRAMES, "ipv6 counter: {after:?}");
    assert_eq!(after.get(Stat::Pass), FRAMES, "pass counter: {after:?}");
    assert_eq!(after.get(Stat::NonIpv6), 0, "{after:?}");
    assert_eq!(after.get(Stat::Malformed), 0, "{after:?}");

    // The human table carries the same figure.
    let table = meshfwd_cli(rx, &["show", "stats"]);
    assert!(
        table
            .lines()
            .any(|l| l.split_whitespace().eq(["rx", &FRAMES.to_string()])),
        "{table}"
    );

    meshfwd_cli(rx, &["detach", "--iface", &rx_if]);
    assert!(!Path::new(attached["link"].as_str().unwrap()).exists());
}

#[test]
fn attach_to_a_missing_interface_leaves_nothing_pinned() {
    let topo = Topology::new().line(&["a", "b"], Wire::Direct);
    let lab = Lab::build("xdpmissing", &topo).expect("build lab");
    let node = lab.node("a");
    let dir = node.bpffs_dir().join("fresh");
    let out = node
        .cmd(MESHFWD)
        .arg("--bpffs")
        .arg(&dir)
        .args(["attach", "--iface", "no-such-if"])
        .output()
        .expect("run meshfwd");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no-such-if"),
        "error names the interface: {err}"
    );
    assert!(
        !dir.exists(),
        "a failed attach left {} behind",
        dir.display()
    );
}

#[test]
fn help_and_version() {
    let out = Command::new(MESHFWD)
        .arg("--help")
        .output()
        .expect("run meshfwd");
    let help = String::from_utf8_lossy(&out.stdout);
    for cmd in ["attach", "detach", "show"] {
        assert!(help.contains(cmd), "--help lists {cmd}: {help}");
    }
    let out = Command::new(MESHFWD)
        .arg("version")
        .output()
        .expect("run meshfwd");
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("meshfwd "));
}
