//! The netfilter check under `BPF_PROG_TEST_RUN`, against real conntrack
//! entries (see `meshfwd_common::conntrack` for the rules): a test run asks the conntrack table of the namespace the
//! calling thread is in, so each test makes a namespace, writes entries
//! into it with `conntrack -I` and runs frames from inside it, through
//! both XDP (transit) and the pod program.

mod support;

use lab::{Lab, Topology, netns};
use meshfwd_common::stats::Stat;
use support::{Frame, Harness, TC_ACT_REDIRECT, TCX_NEXT, XDP_PASS, XDP_REDIRECT};

const CLIENT: &str = "2001:db8:1::7";
const SERVER: &str = "2001:db8:100::42";
/// A Service's virtual address and the backend it is translated to.
const VIP: &str = "fd00:96::10";
const ACK: u8 = 0x10;
const SYN: u8 = 0x02;
const FIN: u8 = 0x01;
const RST: u8 = 0x04;

/// Routes for both ends and the VIP, via next hop 1.
fn harness(h: Harness) -> Harness {
    let mut h = h;
    h.next_hop(1);
    h.group(1, &[1]);
    for prefix in ["2001:db8:100::", "2001:db8:1::", "fd00:96::"] {
        h.route(prefix.parse().unwrap(), 48, 1);
    }
    h
}

/// A namespace of its own (removed with the lab).
fn namespace(tag: &str) -> Lab {
    Lab::build(tag, &Topology::new().node("ct")).expect("build the namespace")
}

/// Run `conntrack` in the lab's namespace.
fn conntrack(lab: &Lab, args: &[&str]) {
    let mut cmd = vec!["conntrack"];
    cmd.extend_from_slice(args);
    lab.node("ct").run(&cmd).expect("conntrack");
}

/// Insert `flow` (conntrack's selection arguments) as an established,
/// assured connection.
fn established(lab: &Lab, flow: &[&str]) {
    let state = [
        "--state",
        "ESTABLISHED",
        "-u",
        "SEEN_REPLY,ASSURED",
        "-t",
        "60",
    ];
    conntrack(lab, &[&["-I"], flow, &state[..]].concat());
}

/// A TCP segment client -> server (or back) with `flags`.
fn tcp(src: &str, dst: &str, flags: u8) -> Frame {
    let mut f = Frame::tcp(src, dst, 10);
    if src != CLIENT {
        // The reply: ports swapped.
        f.payload[..4].rotate_left(2);
    }
    f.payload[13] = flags;
    f
}

/// The verdicts of XDP and of the pod program for one frame, run inside
/// the lab's namespace.
fn verdicts(lab: &Lab, h: &Harness, f: &Frame) -> (u32, i32) {
    netns::enter(lab.node("ct").netns(), || {
        let bytes = f.bytes();
        Ok((h.run(&bytes).0, h.run_tc_pod(&bytes, 0).0))
    })
    .expect("run in the namespace")
}

const FAST: (u32, i32) = (XDP_REDIRECT, TC_ACT_REDIRECT);
const KERNEL: (u32, i32) = (XDP_PASS, TCX_NEXT);

#[test]
fn a_tcp_flow_is_fast_once_conntrack_accepted_it_and_on_its_pods_node_once_established() {
    let lab = namespace("ct-tcp");
    let h = harness(Harness::with_netfilter_check());
    let ack = tcp(CLIENT, SERVER, ACK);
    assert_eq!(verdicts(&lab, &h, &ack), KERNEL, "no entry: a new flow");
    assert_eq!(h.stat(Stat::NewFlow), 1);
    assert_eq!(h.stat(Stat::TcNewFlow), 1);

    let flow = [
        "-p", "tcp", "-s", CLIENT, "-d", SERVER, "--sport", "40000", "--dport", "80",
    ];
    // Accepted, but the handshake not seen through: not yet.
    conntrack(
        &lab,
        &[
            &["-I"],
            &flow[..],
            &["--state", "SYN_RECV", "-u", "SEEN_REPLY", "-t", "60"],
        ]
        .concat(),
    );
    // Accepted is enough for transit (XDP), which may see one direction
    // only; a pod's node (TC) waits for the handshake.
    assert_eq!(
        verdicts(&lab, &h, &ack),
        (XDP_REDIRECT, TCX_NEXT),
        "not assured"
    );
    conntrack(&lab, &[&["-D"], &flow[..]].concat());
    established(&lab, &flow);
    assert_eq!(verdicts(&lab, &h, &ack), FAST);
    assert_eq!(
        verdicts(&lab, &h, &tcp(SERVER, CLIENT, ACK)),
        FAST,
        "and the reply"
    );
    assert_eq!(h.stat(Stat::TcPodToMesh), 2);
    // Opening and closing segments always meet conntrack.
    for flags in [SYN, SYN | ACK, FIN | ACK, RST, RST | ACK] {
        assert_eq!(
            verdicts(&lab, &h, &tcp(CLIENT, SERVER, flags)),
            KERNEL,
            "flags {flags:#x}"
        );
    }
    // A flushed entry (a policy change) ends the fast path at once.
    conntrack(&lab, &[&["-D"], &flow[..]].concat());
    assert_eq!(verdicts(&lab, &h, &ack), KERNEL);
}

#[test]
fn a_udp_flow_is_fast_once_accepted_and_on_its_pods_node_once_replied() {
    let lab = namespace("ct-udp");
    let h = harness(Harness::with_netfilter_check());
    let f = Frame::udp(CLIENT, SERVER, 40000, 53);
    let flow = [
        "-p", "udp", "-s", CLIENT, "-d", SERVER, "--sport", "40000", "--dport", "53",
    ];
    conntrack(&lab, &[&["-I"], &flow[..], &["-t", "60"]].concat());
    assert_eq!(
        verdicts(&lab, &h, &f),
        (XDP_REDIRECT, TCX_NEXT),
        "unreplied"
    );
    conntrack(&lab, &[&["-D"], &flow[..]].concat());
    conntrack(
        &lab,
        &[&["-I"], &flow[..], &["-u", "SEEN_REPLY", "-t", "60"]].concat(),
    );
    assert_eq!(verdicts(&lab, &h, &f), FAST);
    assert_eq!(
        verdicts(&lab, &h, &Frame::udp(SERVER, CLIENT, 53, 40000)),
        FAST
    );
    // Another port pair is another flow.
    assert_eq!(
        verdicts(&lab, &h, &Frame::udp(CLIENT, SERVER, 40001, 53)),
        KERNEL
    );
}

#[test]
fn a_translated_flow_takes_the_kernel_path_both_ways() {
    let lab = namespace("ct-nat");
    let h = harness(Harness::with_netfilter_check());
    // kube-proxy's DNAT: the client asks VIP:80, the backend SERVER:8080
    // answers. A NAT binding made by the kernel (ctnetlink's, here), so
    // the entry carries IPS_DST_NAT as a real DNAT's does.
    conntrack(
        &lab,
        &[
            "-I",
            "-p",
            "tcp",
            "-s",
            CLIENT,
            "-d",
            VIP,
            "--sport",
            "40000",
            "--dport",
            "80",
            "--dst-nat",
            &format!("[{SERVER}]:8080"),
            "--state",
            "ESTABLISHED",
            "-u",
            "SEEN_REPLY,ASSURED",
            "-t",
            "60",
        ],
    );
    let request = tcp(CLIENT, VIP, ACK);
    assert_eq!(verdicts(&lab, &h, &request), KERNEL);
    let mut reply = tcp(SERVER, CLIENT, ACK);
    reply.payload[..2].copy_from_slice(&8080u16.to_be_bytes());
    assert_eq!(
        verdicts(&lab, &h, &reply),
        KERNEL,
        "the reply must be un-NATed"
    );
    assert_eq!(h.stat(Stat::Translated), 2);
    assert_eq!(h.stat(Stat::TcTranslated), 2);
}

#[test]
fn protocols_conntrack_cannot_be_asked_about_take_the_kernel_path() {
    let lab = namespace("ct-icmp");
    let h = harness(Harness::with_netfilter_check());
    assert_eq!(
        verdicts(&lab, &h, &Frame::icmp6(CLIENT, SERVER, 128)),
        KERNEL
    );
    assert_eq!(h.stat(Stat::Untracked), 1);
    assert_eq!(h.stat(Stat::TcUntracked), 1);
}

#[test]
fn with_the_check_off_nothing_is_asked() {
    let lab = namespace("ct-off");
    let mut h = harness(Harness::with_netfilter_check());
    h.maps
        .set_netfilter(dataplane::maps::Netfilter::Ignore)
        .expect("turn the check off");
    assert_eq!(verdicts(&lab, &h, &tcp(CLIENT, SERVER, ACK)), FAST);
    assert_eq!(verdicts(&lab, &h, &Frame::icmp6(CLIENT, SERVER, 128)), FAST);
}

#[test]
fn without_conntrack_in_the_kernel_the_check_sends_everything_to_the_kernel() {
    let lab = namespace("ct-none");
    let mut h = harness(Harness::without_conntrack());
    let udp = Frame::udp(CLIENT, SERVER, 40000, 53);
    assert_eq!(verdicts(&lab, &h, &udp), KERNEL);
    assert_eq!(h.stat(Stat::NewFlow), 1);
    // The operator's way out: a node where netfilter does nothing.
    h.maps
        .set_netfilter(dataplane::maps::Netfilter::Ignore)
        .expect("turn the check off");
    assert_eq!(verdicts(&lab, &h, &udp), FAST);
}

/// IPv4 through XDP: the same rules, asked with the IPv4 tuple.
#[test]
fn ipv4_flows_are_checked_like_ipv6_ones() {
    use support::Frame4;
    const CLIENT4: &str = "198.18.1.7";
    const SERVER4: &str = "198.18.100.42";
    const VIP4: &str = "198.19.96.10";
    let lab = namespace("ct-ipv4");
    let mut h = Harness::with_netfilter_check();
    h.next_hop(1);
    h.group(1, &[1]);
    for prefix in ["198.18.100.0", "198.18.1.0", "198.19.96.0"] {
        h.route4(prefix.parse().unwrap(), 24, 1);
    }
    let xdp = |f: &Frame4| {
        netns::enter(lab.node("ct").netns(), || Ok(h.run(&f.bytes()).0))
            .expect("run in the namespace")
    };
    let tc = |f: &Frame4| {
        netns::enter(lab.node("ct").netns(), || Ok(h.run_tc_pod(&f.bytes(), 0).0))
            .expect("run in the namespace")
    };
    let ack = |src: &str, dst: &str| {
        let mut f = Frame4::tcp(src, dst, 10);
        f.payload[13] = ACK;
        f
    };
    assert_eq!(xdp(&ack(CLIENT4, SERVER4)), XDP_PASS, "no entry");
    assert_eq!(
        tc(&ack(CLIENT4, SERVER4)),
        TCX_NEXT,
        "no entry (pod program)"
    );
    assert_eq!(h.stat(Stat::NewFlow), 1);
    assert_eq!(h.stat(Stat::TcNewFlow), 1);
    let flow = [
        "-p", "tcp", "-s", CLIENT4, "-d", SERVER4, "--sport", "40000", "--dport", "80",
    ];
    established(&lab, &flow);
    assert_eq!(xdp(&ack(CLIENT4, SERVER4)), XDP_REDIRECT);
    assert_eq!(tc(&ack(CLIENT4, SERVER4)), TC_ACT_REDIRECT);
    let mut syn = ack(CLIENT4, SERVER4);
    syn.payload[13] = SYN;
    assert_eq!(xdp(&syn), XDP_PASS, "a SYN meets conntrack");
    // Another port pair is another flow.
    let mut other = ack(CLIENT4, SERVER4);
    other.payload[..2].copy_from_slice(&40001u16.to_be_bytes());
    assert_eq!(xdp(&other), XDP_PASS);
    // kube-proxy's DNAT of an IPv4 Service.
    conntrack(
        &lab,
        &[
            "-I",
            "-p",
            "tcp",
            "-s",
            CLIENT4,
            "-d",
            VIP4,
            "--sport",
            "40000",
            "--dport",
            "80",
            "--dst-nat",
            &format!("{SERVER4}:8080"),
            "--state",
            "ESTABLISHED",
            "-u",
            "SEEN_REPLY,ASSURED",
            "-t",
            "60",
        ],
    );
    assert_eq!(xdp(&ack(CLIENT4, VIP4)), XDP_PASS);
    assert_eq!(tc(&ack(CLIENT4, VIP4)), TCX_NEXT);
    assert_eq!(h.stat(Stat::Translated), 1);
    assert_eq!(h.stat(Stat::TcTranslated), 1);
    // ICMP cannot be asked about.
    let mut icmp = Frame4::udp(CLIENT4, SERVER4, 0, 0);
    icmp.protocol = 1;
    assert_eq!(xdp(&icmp), XDP_PASS);
    assert_eq!(h.stat(Stat::Untracked), 1);
}
