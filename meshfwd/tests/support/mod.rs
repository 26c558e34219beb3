//! Shared fixtures for the `BPF_PROG_TEST_RUN` tests: a private copy of the
//! forwarding program and its maps, and a frame builder.
#![allow(dead_code, reason = "each test file uses a different subset")]

use std::net::{Ipv4Addr, Ipv6Addr};

use aya::{
    Ebpf,
    maps::lpm_trie::Key,
    programs::{SchedClassifier, TestRun as _, TestRunOptions, Xdp},
};
use dataplane::{
    maps::{FibMaps, Netfilter},
    object,
};
use meshfwd_common::{
    fib::{FibEntry, GROUP_MAX_MEMBERS, NextHop, NextHopGroup, kind, nh_flags},
    stats::Stat,
};

pub const XDP_ABORTED: u32 = 0;
pub const XDP_DROP: u32 = 1;
pub const XDP_PASS: u32 = 2;
pub const XDP_TX: u32 = 3;
pub const XDP_REDIRECT: u32 = 4;

/// The loopback device: always present, so the devmap accepts it; test
/// runs never transmit, so nothing is ever sent there.
pub const EGRESS_IFINDEX: u32 = 1;
pub const ROUTER_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
pub const UPSTREAM_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x99];
pub const MTU: u32 = 1500;
/// `TC_ACT_UNSPEC`: the TC programs' "not mine", which lets the hook's
/// next program or filter run before the kernel takes the packet.
pub const TCX_NEXT: i32 = -1;
pub const TC_ACT_REDIRECT: i32 = 7;
/// Size of `struct __sk_buff` and the offset of its `gso_size` field.
const SK_BUFF_LEN: usize = 192;
const SK_BUFF_GSO_SIZE: usize = 176;

/// The MAC of next hop `n` (distinct per next hop, so the output frame says
/// which member was chosen).
pub const fn nh_mac(n: u8) -> [u8; 6] {
    [0x02, 0xaa, 0, 0, 0, n]
}

/// A loaded, private (unpinned) forwarding program with typed maps.
pub struct Harness {
    ebpf: Ebpf,
    pub maps: FibMaps,
}

impl Harness {
    /// The programs with the netfilter check off: these tests judge the
    /// forwarding logic, and their frames belong to no flow conntrack
    /// knows (the check has tests of its own, with real entries).
    pub fn new() -> Self {
        let mut h = Self::with_netfilter_check();
        h.maps
            .set_netfilter(Netfilter::Ignore)
            .expect("turn the netfilter check off");
        h
    }

    /// The programs as shipped: the netfilter check on.
    pub fn with_netfilter_check() -> Self {
        Self::from_linked(object::linked())
    }

    /// The programs as linked on a kernel without the conntrack kfuncs
    /// (nf_conntrack a module, or not built): every lookup finds nothing.
    pub fn without_conntrack() -> Self {
        let kernel = object::KernelBtf {
            func_id: Box::new(|name| Err(format!("{name}: no such kfunc"))),
            status_offset: Err("no struct nf_conn".into()),
        };
        let linked = object::link(object::EBPF_OBJECT, &kernel);
        assert!(matches!(
            linked.conntrack,
            object::Conntrack::Unavailable(_)
        ));
        Self::from_linked(&linked)
    }

    fn from_linked(linked: &object::Linked) -> Self {
        let mut ebpf = object::load_linked(linked, None).expect("load the eBPF object");
        let maps = FibMaps::take(&mut ebpf).expect("take the maps");
        let prog: &mut Xdp = ebpf
            .program_mut(object::XDP_PROGRAM)
            .expect("program in object")
            .try_into()
            .expect("an XDP program");
        prog.load().expect("verifier accepts the program");
        let tc: &mut SchedClassifier = ebpf
            .program_mut(object::POD_PROGRAM)
            .expect("pod program in object")
            .try_into()
            .expect("a TC program");
        tc.load().expect("verifier accepts the pod program");
        let mut h = Harness { ebpf, maps };
        h.maps
            .egress
            .insert(EGRESS_IFINDEX, EGRESS_IFINDEX, None, 0)
            .expect("devmap entry");
        h
    }

    /// Write next hop `id` (MAC `nh_mac(id)`, alive, resolved).
    pub fn next_hop(&mut self, id: u32) {
        self.set_next_hop(
            id,
            NextHop {
                ifindex: EGRESS_IFINDEX,
                mtu: MTU,
                dst_mac: nh_mac(id as u8),
                src_mac: ROUTER_MAC,
                flags: nh_flags::ALIVE | nh_flags::MAC_VALID,
            },
        );
    }

    pub fn set_next_hop(&mut self, id: u32, nh: NextHop) {
        self.maps.next_hops.set(id, nh, 0).expect("write next hop");
    }

    pub fn get_next_hop(&self, id: u32) -> NextHop {
        self.maps.next_hops.get(&id, 0).expect("read next hop")
    }

    /// Flip one next hop's alive flag: a single map write.
    pub fn set_alive(&mut self, id: u32, alive: bool) {
        let mut nh = self.get_next_hop(id);
        if alive {
            nh.flags |= nh_flags::ALIVE;
        } else {
            nh.flags &= !nh_flags::ALIVE;
        }
        self.set_next_hop(id, nh);
    }

    pub fn group(&mut self, id: u32, members: &[u32]) {
        let mut g = NextHopGroup {
            len: members.len() as u32,
            members: [0; GROUP_MAX_MEMBERS],
        };
        g.members[..members.len()].copy_from_slice(members);
        self.maps.groups.set(id, g, 0).expect("write group");
    }

    pub fn route(&mut self, prefix: Ipv6Addr, len: u32, group: u32) {
        let key = Key::new(len, prefix.octets());
        self.maps
            .fib_v6
            .insert(
                &key,
                FibEntry {
                    kind: kind::FORWARD,
                    group,
                },
                0,
            )
            .expect("write route");
    }

    pub fn local(&mut self, addr: Ipv6Addr) {
        let key = Key::new(128, addr.octets());
        self.maps
            .fib_v6
            .insert(
                &key,
                FibEntry {
                    kind: kind::LOCAL,
                    group: 0,
                },
                0,
            )
            .expect("local");
    }

    pub fn route4(&mut self, prefix: Ipv4Addr, len: u32, group: u32) {
        self.fib4(
            prefix,
            len,
            FibEntry {
                kind: kind::FORWARD,
                group,
            },
        );
    }

    pub fn local4(&mut self, addr: Ipv4Addr) {
        self.fib4(
            addr,
            32,
            FibEntry {
                kind: kind::LOCAL,
                group: 0,
            },
        );
    }

    fn fib4(&mut self, prefix: Ipv4Addr, len: u32, entry: FibEntry) {
        let key = Key::new(len, prefix.octets());
        self.maps
            .fib_v4
            .insert(&key, entry, 0)
            .expect("write IPv4 route");
        // Entries are cached per destination by FIB generation, as the
        // writer bumps it.
        let generation = self.maps.fib_gen.get(&0, 0).unwrap_or(0);
        self.maps
            .fib_gen
            .set(0, generation.wrapping_add(1), 0)
            .expect("bump the FIB generation");
    }

    /// Run one frame through the program: the verdict and the frame out.
    pub fn run(&self, frame: &[u8]) -> (u32, Vec<u8>) {
        let prog: &Xdp = self
            .ebpf
            .program(object::XDP_PROGRAM)
            .expect("program")
            .try_into()
            .expect("XDP program");
        // A marker fill shows any byte the kernel did not write.
        let mut out = vec![0xEEu8; frame.len() + 256];
        let opts = TestRunOptions {
            data_in: Some(frame),
            data_out: Some(&mut out),
            ..Default::default()
        };
        let res = prog.test_run(opts).expect("BPF_PROG_TEST_RUN");
        out.truncate(res.data_size_out as usize);
        (res.return_value, out)
    }

    /// Run one frame through the pod program (TC ingress on a pod's host
    /// veth) as an skb whose `gso_size` is given (0: not GSO): the verdict
    /// and the frame out.
    pub fn run_tc_pod(&self, frame: &[u8], gso_size: u32) -> (i32, Vec<u8>) {
        let prog: &SchedClassifier = self
            .ebpf
            .program(object::POD_PROGRAM)
            .expect("program")
            .try_into()
            .expect("TC program");
        // A `struct __sk_buff` (192 bytes); test runs accept a few of its
        // fields, `gso_size` (offset 176) among them.
        let mut ctx = [0u8; SK_BUFF_LEN];
        ctx[SK_BUFF_GSO_SIZE..SK_BUFF_GSO_SIZE + 4].copy_from_slice(&gso_size.to_ne_bytes());
        let mut out = vec![0xEEu8; frame.len() + 256];
        let opts = TestRunOptions {
            data_in: Some(frame),
            data_out: Some(&mut out),
            ctx_in: Some(&ctx),
            ..Default::default()
        };
        let res = prog.test_run(opts).expect("BPF_PROG_TEST_RUN");
        out.truncate(res.data_size_out as usize);
        (res.return_value as i32, out)
    }

    /// Sum one counter over CPUs.
    pub fn stat(&self, stat: Stat) -> u64 {
        self.maps
            .stats
            .get(&(stat as u32), 0)
            .expect("stats")
            .iter()
            .sum()
    }
}

/// An IPv6 packet description for [`Frame::bytes`].
#[derive(Clone, Debug)]
pub struct Frame {
    pub src: Ipv6Addr,
    pub dst: Ipv6Addr,
    pub next_header: u8,
    pub hop_limit: u8,
    pub flow_label: u32,
    /// Everything after the fixed IPv6 header.
    pub payload: Vec<u8>,
}

impl Frame {
    /// A UDP packet from `src` to `dst` with the given ports and 18 bytes of data.
    pub fn udp(src: &str, dst: &str, sport: u16, dport: u16) -> Self {
        let data = b"kubermesh-fastpath";
        let mut payload = Vec::new();
        payload.extend_from_slice(&sport.to_be_bytes());
        payload.extend_from_slice(&dport.to_be_bytes());
        payload.extend_from_slice(&((8 + data.len()) as u16).to_be_bytes());
        payload.extend_from_slice(&[0x12, 0x34]); // checksum: not checked by a router
        payload.extend_from_slice(data);
        Frame {
            src: src.parse().expect("src"),
            dst: dst.parse().expect("dst"),
            next_header: 17,
            hop_limit: 64,
            flow_label: 0x12345,
            payload,
        }
    }

    /// An ICMPv6 message of `icmp_type` (code 0, 8 bytes of body).
    pub fn icmp6(src: &str, dst: &str, icmp_type: u8) -> Self {
        let mut f = Frame::udp(src, dst, 0, 0);
        f.next_header = 58;
        f.payload = vec![icmp_type, 0, 0, 0, 0, 0, 0, 0];
        f
    }

    /// A TCP segment from `src` to `dst` with a 32-byte header (the
    /// timestamp option's size) and `data` bytes of payload.
    pub fn tcp(src: &str, dst: &str, data: usize) -> Self {
        let mut f = Frame::udp(src, dst, 40000, 80);
        f.next_header = 6;
        let mut h = vec![0u8; 32];
        h[..4].copy_from_slice(&f.payload[..4]);
        h[12] = (32 / 4) << 4; // data offset, in 32-bit words
        h[13] = 0x10; // ACK
        h.resize(32 + data, 0x5a);
        f.payload = h;
        f
    }

    /// The Ethernet frame: upstream -> router MAC, then IPv6.
    pub fn bytes(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(54 + self.payload.len());
        b.extend_from_slice(&ROUTER_MAC);
        b.extend_from_slice(&UPSTREAM_MAC);
        b.extend_from_slice(&[0x86, 0xdd]);
        let vtc_flow: u32 = (6 << 28) | (self.flow_label & 0xF_FFFF);
        b.extend_from_slice(&vtc_flow.to_be_bytes());
        b.extend_from_slice(&(self.payload.len() as u16).to_be_bytes());
        b.push(self.next_header);
        b.push(self.hop_limit);
        b.extend_from_slice(&self.src.octets());
        b.extend_from_slice(&self.dst.octets());
        b.extend_from_slice(&self.payload);
        b
    }
}

/// The frame a correct router sends for `input` via next hop MAC `dst_mac`:
/// new MACs, hop limit one less, every other byte the same.
pub fn forwarded(input: &[u8], dst_mac: [u8; 6]) -> Vec<u8> {
    let mut want = input.to_vec();
    want[..6].copy_from_slice(&dst_mac);
    want[6..12].copy_from_slice(&ROUTER_MAC);
    want[21] -= 1;
    want
}

/// An IPv4 packet description for [`Frame4::bytes`].
#[derive(Clone, Debug)]
pub struct Frame4 {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub protocol: u8,
    pub ttl: u8,
    /// Flags and fragment offset (host order).
    pub frag: u16,
    pub id: u16,
    /// IP options (a multiple of 4 bytes), between header and payload.
    pub options: Vec<u8>,
    pub payload: Vec<u8>,
}

impl Frame4 {
    /// A UDP datagram with the given ports and 18 bytes of data, DF set.
    pub fn udp(src: &str, dst: &str, sport: u16, dport: u16) -> Self {
        let v6 = Frame::udp("2001:db8::1", "2001:db8::2", sport, dport);
        Frame4 {
            src: src.parse().expect("src"),
            dst: dst.parse().expect("dst"),
            protocol: 17,
            ttl: 64,
            frag: 0x4000,
            id: 0x1c46,
            options: Vec::new(),
            payload: v6.payload,
        }
    }

    /// A TCP segment (ACK, 20-byte header) with `data` bytes of payload.
    pub fn tcp(src: &str, dst: &str, data: usize) -> Self {
        let mut f = Frame4::udp(src, dst, 40000, 80);
        f.protocol = 6;
        let mut h = vec![0u8; 20];
        h[..4].copy_from_slice(&f.payload[..4]);
        h[12] = (20 / 4) << 4;
        h[13] = 0x10;
        h.resize(20 + data, 0x5a);
        f.payload = h;
        f
    }

    /// The Ethernet frame: upstream -> router MAC, then IPv4 with a
    /// correct header checksum.
    pub fn bytes(&self) -> Vec<u8> {
        let ihl = 5 + self.options.len() / 4;
        let total = 4 * ihl + self.payload.len();
        let mut ip = Vec::with_capacity(total);
        ip.push(0x40 | ihl as u8);
        ip.push(0);
        ip.extend_from_slice(&(total as u16).to_be_bytes());
        ip.extend_from_slice(&self.id.to_be_bytes());
        ip.extend_from_slice(&self.frag.to_be_bytes());
        ip.push(self.ttl);
        ip.push(self.protocol);
        ip.extend_from_slice(&[0, 0]);
        ip.extend_from_slice(&self.src.octets());
        ip.extend_from_slice(&self.dst.octets());
        ip.extend_from_slice(&self.options);
        let c = ipv4_header_checksum(&ip[..4 * ihl]);
        ip[10..12].copy_from_slice(&c.to_be_bytes());
        ip.extend_from_slice(&self.payload);
        let mut b = Vec::with_capacity(14 + ip.len());
        b.extend_from_slice(&ROUTER_MAC);
        b.extend_from_slice(&UPSTREAM_MAC);
        b.extend_from_slice(&[0x08, 0x00]);
        b.extend_from_slice(&ip);
        b
    }
}

/// The IPv4 header checksum of `header` computed from scratch (RFC 791),
/// its checksum field taken as zero: the tests' independent reference.
pub fn ipv4_header_checksum(header: &[u8]) -> u16 {
    let mut sum: u64 = 0;
    for (i, pair) in header.chunks(2).enumerate() {
        if i != 5 {
            sum += u64::from(u16::from_be_bytes([pair[0], *pair.get(1).unwrap_or(&0)]));
        }
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// The frame a correct IPv4 router sends for `input` via next hop MAC
/// `dst_mac`: new MACs, TTL one less, the header checksum recomputed from
/// scratch, every other byte the same.
pub fn forwarded4(input: &[u8], dst_mac: [u8; 6]) -> Vec<u8> {
    let mut want = input.to_vec();
    want[..6].copy_from_slice(&dst_mac);
    want[6..12].copy_from_slice(&ROUTER_MAC);
    want[14 + 8] -= 1;
    let ihl = usize::from(want[14] & 0xf) * 4;
    let c = ipv4_header_checksum(&want[14..14 + ihl]);
    want[14 + 10..14 + 12].copy_from_slice(&c.to_be_bytes());
    want
}
