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
/// socket inside the node, `pps` a second (0: as fast as it goes).
fn send_frames(node: &lab::Node, iface: &str, dst_mac: &str, src_mac: &str, count: u64, pps: u64) {
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
import time
start = time.monotonic()
for i in range({count}):
    s.send(frame)
    if {pps} and i % 10 == 9:
        time.sleep(max(0.0, start + (i + 1) / {pps} - time.monotonic()))
"#,
        dst = dst_mac.replace(':', ""),
        src = src_mac.replace(':', ""),
    );
    node.run(&["python3", "-c", &script]).expect("send frames");
}

/// A `tx` - `rx` pair whose sender's kernel is silenced (IPv6 off on its
/// end), so every frame `rx` sees is one the test sent; returns the lab and
/// the two interface names.
fn silent_pair(tag: &str) -> (Lab, String, String) {
    let topo = Topology::new().line(&["tx", "rx"], Wire::Direct);
    let lab = Lab::build(tag, &topo).expect("build lab");
    let link = lab.link("tx", "rx");
    let (tx_if, rx_if) = (link.a_if.clone(), link.b_if.clone());
    lab.node("tx")
        .run(&[
            "sysctl",
            "-qw",
            &format!("net.ipv6.conf.{tx_if}.disable_ipv6=1"),
        ])
        .expect("disable IPv6 on the sender");
    std::thread::sleep(Duration::from_millis(200));
    (lab, tx_if, rx_if)
}

#[test]
fn xdp_counts_exactly_the_frames_sent() {
    let (lab, tx_if, rx_if) = silent_pair("xdpcount");
    let (tx, rx) = (lab.node("tx"), lab.node("rx"));

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
    send_frames(tx, &tx_if, &dst, &src, FRAMES, 0);

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

#[test]
fn show_stats_interval_prints_the_offered_rate() {
    // 1,000 frames a second for 6 s; three 1 s samples taken inside that
    // window must each say about 1,000 a second, by counter and by
    // interface.
    const PPS: u64 = 1_000;
    let (lab, tx_if, rx_if) = silent_pair("xdprate");
    let (tx, rx) = (lab.node("tx"), lab.node("rx"));
    meshfwd_cli(rx, &["attach", "--iface", &rx_if]);
    let (dst, src) = (mac_of(rx, &rx_if), mac_of(tx, &tx_if));
    std::thread::scope(|s| {
        let sender = s.spawn(|| send_frames(tx, &tx_if, &dst, &src, 6 * PPS, PPS));
        std::thread::sleep(Duration::from_millis(1_500));
        let out = meshfwd_cli(
            rx,
            &["show", "stats", "--interval", "1", "--count", "3", "--json"],
        );
        sender.join().expect("sender");
        let samples: Vec<meshfwd::api::RateSample> = out
            .lines()
            .map(|l| serde_json::from_str(l).expect("a JSON line per sample"))
            .collect();
        assert_eq!(samples.len(), 3, "{out}");
        for s in &samples {
            let rx_rate = s.xdp.get("rx").copied().unwrap_or(0.0);
            let pass = s.xdp.get("pass").copied().unwrap_or(0.0);
            let link = s.interfaces.get(&rx_if).map_or(0.0, |r| r.rx_pps);
            for (what, v) in [("rx", rx_rate), ("pass", pass), (rx_if.as_str(), link)] {
                assert!(
                    (0.85 * PPS as f64..1.15 * PPS as f64).contains(&v),
                    "{what} at {v:.0}/s, offered {PPS}/s: {s:?}"
                );
            }
        }
    });
    // The human form says the same.
    let table = meshfwd_cli(rx, &["show", "stats", "--interval", "0.5", "--count", "1"]);
    assert!(table.starts_with("t=0.5s"), "{table}");
    meshfwd_cli(rx, &["detach", "--iface", &rx_if]);
}
