//! Kubernetes Services over the fast path: three nodes in a line
//! (a - b - c) with real agents (the netfilter check on, as shipped), pods
//! wired by `meshfwd-cni`, and on every node the rules kube-proxy writes
//! (`lab::kube_proxy`), in its nftables mode and in its iptables mode.
//!
//! Each case passes with the fast path on, and the counters show which
//! path the packets took: a Service flow is translated on the client's
//! node, so it takes the kernel path there in both directions; on the
//! backend's node (where it is a plain pod-to-pod flow) and on transit
//! nodes its established packets take the fast path.
//!
//! One lab per proxy mode runs every case in turn; the DNS, policy and
//! `fastPath: false` cases run in the nftables lab. A dual-stack lab runs
//! the ClusterIP cases over IPv4, through kube-proxy's IPv4 rules.

mod agent_support;

use std::{
    collections::BTreeSet,
    io::{BufRead as _, BufReader, Read as _, Write as _},
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream, UdpSocket},
    path::PathBuf,
    time::Duration,
};

use agent_support::{Answers as _, mesh, wait_until};
use lab::{
    Topology, Wire,
    agents::AgentMesh,
    kube_proxy::{KubeProxy, Mode, Protocol, Service},
    netns,
    pods::{Pod, built_bin},
};
use meshfwd_common::stats::Stat;
use serde_json::json;

const CONVERGE: Duration = Duration::from_secs(60);
const IO: Duration = Duration::from_secs(5);
/// Bytes echoed per TCP exchange: enough segments to count.
const BULK: usize = 256 * 1024;
const SERVICE_CIDR: &str = "fd00:96::/108";
const WEB_PORT: u16 = 8080;
const UDP_PORT: u16 = 8053;
const DNS_PORT: u16 = 5353;
const NODE_PORT: u16 = 30080;

fn vip(last: u16) -> Ipv6Addr {
    Ipv6Addr::new(0xfd00, 0x96, 0, 0, 0, 0, 0, last)
}

/// The lab: agents, pods, the Services.
struct Cluster {
    m: AgentMesh,
    cni: PathBuf,
    mode: Mode,
    kp: KubeProxy,
    pods: Vec<Pod>,
}

impl Cluster {
    fn build(tag: &str, mode: Mode) -> Cluster {
        let cni = built_bin(None, "MESHFWD_CNI_BIN", "cni", "meshfwd-cni")
            .expect("the meshfwd-cni binary");
        let mut m = mesh(tag, &Topology::new().line(&["a", "b", "c"], Wire::Direct));
        m.start_all().expect("start the agents");
        m.wait_full_reachability(&["a", "b", "c"], CONVERGE);
        let cluster_cidr = m.node("a").expect("a answers").cluster_prefix.to_string();
        let mut c = Cluster {
            m,
            cni,
            mode,
            kp: KubeProxy {
                cluster_cidr,
                service_cidr: SERVICE_CIDR.into(),
                services: Vec::new(),
            },
            pods: Vec::new(),
        };
        // Clients on every node, a web backend on every node.
        for (node, pods) in [
            ("a", ["ca", "wa"]),
            ("b", ["cb", "wb"]),
            ("c", ["cc", "wc"]),
        ] {
            for pod in pods {
                c.add_pod(node, pod, json!({}));
            }
        }
        for w in ["wa", "wb", "wc"] {
            c.serve(w);
        }
        let addr = |p: &str| c.pod(p).addr;
        let (wa, wb, wc) = (addr("wa"), addr("wb"), addr("wc"));
        let tcp = |name: &str, ip: Ipv6Addr, eps: Vec<Ipv6Addr>| Service {
            name: format!("default/{name}:http"),
            cluster_ip: ip.into(),
            protocol: Protocol::Tcp,
            port: 80,
            node_port: None,
            target_port: WEB_PORT,
            endpoints: eps.into_iter().map(Into::into).collect(),
        };
        c.kp.services = vec![
            tcp("web-a", vip(0xa), vec![wa]),
            tcp("web-b", vip(0xb), vec![wb]),
            tcp("web-c", vip(0xc), vec![wc]),
            Service {
                node_port: Some(NODE_PORT),
                ..tcp("web-all", vip(0x100), vec![wa, wb, wc])
            },
            tcp("web-move", vip(0x200), vec![wb]),
            Service {
                name: "default/dns-like:dns".into(),
                protocol: Protocol::Udp,
                port: 53,
                target_port: UDP_PORT,
                ..tcp("", vip(0xc), vec![wc])
            },
        ];
        c.sync();
        for client in ["ca", "cb", "cc"] {
            for w in [wa, wb, wc] {
                c.m.lab
                    .node(client)
                    .wait_ping6(w, None, CONVERGE)
                    .unwrap_or_else(|e| panic!("{client} cannot reach {w}: {e:#}"));
            }
        }
        c
    }

    /// Add a pod and wait until its node's agent has attached the fast
    /// path to it (unless it has none).
    fn add_pod(&mut self, node: &str, pod: &str, extra: serde_json::Value) -> Pod {
        let p = self
            .m
            .add_pod(node, pod, &self.cni, &extra)
            .unwrap_or_else(|e| panic!("pod {pod} on {node}: {e:#}"));
        if extra["fastPath"] != json!(false) {
            wait_until(&format!("the fast path on {pod}"), CONVERGE, || {
                self.ingress_programs(node, &p.host_veth) == [dataplane::object::POD_PROGRAM]
            });
        }
        self.pods.push(p.clone());
        p
    }

    /// The programs on `veth`'s TCX ingress in `node`, as the kernel lists
    /// them.
    fn ingress_programs(&self, node: &str, veth: &str) -> Vec<String> {
        netns::enter(self.m.lab.node(node).netns(), || {
            Ok(dataplane::tc::ingress_programs(veth)?)
        })
        .unwrap_or_else(|e| panic!("querying {veth}'s TCX ingress: {e:#}"))
    }

    fn pod(&self, name: &str) -> &Pod {
        self.pods
            .iter()
            .find(|p| p.name == name)
            .unwrap_or_else(|| panic!("no pod {name}"))
    }

    /// Start `pod`'s servers: TCP on [`WEB_PORT`] says the pod's name,
    /// then echoes; UDP on [`UDP_PORT`] answers each datagram with the
    /// name.
    fn serve(&self, pod: &str) {
        let n = self.m.lab.node(pod);
        n.spawn(
            "web",
            &[
                "socat",
                &format!("TCP6-LISTEN:{WEB_PORT},reuseaddr,fork"),
                &format!("SYSTEM:echo {pod}; exec cat"),
            ],
        )
        .expect("TCP server");
        n.spawn(
            "udp",
            &[
                "socat",
                &format!("UDP6-RECVFROM:{UDP_PORT},reuseaddr,fork"),
                // Read the query first: a reply written before the query
                // is read can race with socat writing it to us.
                &format!("SYSTEM:read q; echo {pod}"),
            ],
        )
        .expect("UDP server");
    }

    /// A kube-proxy sync on every node.
    fn sync(&self) {
        for n in ["a", "b", "c"] {
            self.kp
                .install(&self.m.lab, n, self.mode)
                .unwrap_or_else(|e| panic!("kube-proxy rules on {n}: {e:#}"));
        }
    }

    fn counter(&self, node: &str, stat: Stat) -> u64 {
        self.m.xdp_counter(node, stat)
    }

    /// Open a TCP connection from `from`'s namespace (a pod or a node).
    fn connect(&self, from: &str, to: impl Into<IpAddr>, port: u16) -> std::io::Result<TcpStream> {
        let ns = self.m.lab.node(from).netns().to_string();
        let to = SocketAddr::new(to.into(), port);
        netns::enter(&ns, || Ok(TcpStream::connect_timeout(&to, IO))).expect("enter the namespace")
    }
}

/// Read the server's name line, then echo [`BULK`] bytes through it;
/// return the name.
fn exchange(conn: TcpStream) -> String {
    conn.set_read_timeout(Some(IO)).unwrap();
    conn.set_write_timeout(Some(IO)).unwrap();
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    let mut name = String::new();
    reader.read_line(&mut name).expect("the server's name");
    echo(&mut reader, &conn);
    name.trim().to_owned()
}

/// Send [`BULK`] bytes and read them back.
fn echo(reader: &mut BufReader<TcpStream>, conn: &TcpStream) {
    let data: Vec<u8> = (0..BULK).map(|i| (i % 251) as u8).collect();
    let mut writer = conn.try_clone().unwrap();
    let sender = std::thread::spawn(move || writer.write_all(&data).map(|_| data));
    let mut back = vec![0u8; BULK];
    reader.read_exact(&mut back).expect("the echo");
    let sent = sender.join().unwrap().expect("sending");
    assert!(back == sent, "the echo differs from what was sent");
}

/// Ask `vip`:53 over UDP `n` times from one socket of pod `from`; return
/// the names that answered.
fn udp_exchange(c: &Cluster, from: &str, vip: impl Into<IpAddr>, n: usize) -> Vec<String> {
    let vip: IpAddr = vip.into();
    let ns = c.m.lab.node(from).netns().to_string();
    let any = if vip.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" };
    let sock = netns::enter(&ns, || Ok(UdpSocket::bind(any)?)).expect("UDP socket");
    sock.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let mut names = Vec::new();
    for i in 0..n {
        sock.send_to(format!("query {i}\n").as_bytes(), (vip, 53))
            .expect("send");
        let mut buf = [0u8; 64];
        let (len, src) = sock
            .recv_from(&mut buf)
            .unwrap_or_else(|e| panic!("no answer from the Service to query {i}: {e}"));
        assert_eq!(src.ip(), vip, "the answer comes from the VIP");
        names.push(String::from_utf8_lossy(&buf[..len]).trim().to_owned());
    }
    names
}

/// Counters of `node` before and after `f`.
fn delta(c: &Cluster, node: &str, stats: &[Stat], f: impl FnOnce()) -> Vec<u64> {
    let before: Vec<u64> = stats.iter().map(|s| c.counter(node, *s)).collect();
    f();
    stats
        .iter()
        .zip(before)
        .map(|(s, b)| c.counter(node, *s) - b)
        .collect()
}

/// Packets of one [`exchange`] that must have taken a path, each way. The
/// counters count skbs, and GRO merges a bulk flow's segments into skbs of
/// up to 64 KiB, so [`BULK`] is at least four of them.
const FAST_MIN: u64 = (BULK / 65536) as u64;
/// Most packets of one TCP connection that take the kernel path on its
/// backend's node: the handshake (conntrack sees it through) and the
/// FINs, RSTs and their ACKs.
const KERNEL_MAX: u64 = 8;

fn cluster_ip_cases(c: &Cluster) {
    // Backend on the next node: plain pod-to-pod on b, fast there.
    let mut name = String::new();
    let on_b = delta(
        c,
        "b",
        &[Stat::TcMeshToPod, Stat::TcPodToMesh, Stat::TcNewFlow],
        || {
            let d = delta(c, "a", &[Stat::TcTranslated], || {
                name = exchange(c.connect("ca", vip(0xb), 80).expect("connect to web-b"));
            });
            assert!(
                d[0] >= FAST_MIN,
                "a un-NATs the replies in the kernel: {d:?}"
            );
        },
    );
    assert_eq!(name, "wb");
    assert!(
        on_b[..2].iter().all(|n| *n >= FAST_MIN) && on_b[2] <= KERNEL_MAX,
        "b's TC programs carried the established flow both ways, the kernel its first \
         and last packets: {on_b:?}"
    );

    // Backend behind a transit hop: b forwards it in XDP.
    let on_b = delta(c, "b", &[Stat::Redirect], || {
        let on_c = delta(c, "c", &[Stat::TcMeshToPod, Stat::TcPodToMesh], || {
            name = exchange(c.connect("ca", vip(0xc), 80).expect("connect to web-c"));
        });
        assert!(on_c.iter().all(|n| *n >= FAST_MIN), "c: {on_c:?}");
    });
    assert_eq!(name, "wc");
    assert!(
        on_b[0] >= 2 * FAST_MIN,
        "b's XDP carried the transit: {on_b:?}"
    );

    // Backend on the client's own node: translated both ways, so all of
    // it goes through the kernel.
    let on_a = delta(c, "a", &[Stat::TcTranslated, Stat::TcPodToPod], || {
        name = exchange(c.connect("ca", vip(0xa), 80).expect("connect to web-a"));
    });
    assert_eq!(name, "wa");
    assert!(on_a[0] >= FAST_MIN, "the replies met conntrack: {on_a:?}");
    assert_eq!(
        on_a[1], 0,
        "nothing of a translated flow skipped the kernel"
    );

    // UDP through a ClusterIP, the way DNS goes: answers come back from
    // the VIP (un-NATed), and after the first exchange c carries them.
    let on_c = delta(c, "c", &[Stat::TcMeshToPod, Stat::TcPodToMesh], || {
        let names = udp_exchange(c, "ca", vip(0xc), 20);
        assert!(names.iter().all(|n| n == "wc"), "{names:?}");
    });
    assert!(
        on_c.iter().all(|n| *n >= 15),
        "c carried the UDP flow: {on_c:?}"
    );
}

fn spread_case(c: &Cluster) {
    let mut seen = BTreeSet::new();
    for _ in 0..30 {
        let conn = c.connect("cb", vip(0x100), 80).expect("connect to web-all");
        conn.set_read_timeout(Some(IO)).unwrap();
        let mut name = String::new();
        BufReader::new(conn)
            .read_line(&mut name)
            .expect("the server's name");
        seen.insert(name.trim().to_owned());
    }
    assert_eq!(
        seen,
        BTreeSet::from(["wa".into(), "wb".into(), "wc".into()]),
        "30 connections spread over the three backends"
    );
}

fn backends_change_case(c: &mut Cluster) {
    let conn = c
        .connect("ca", vip(0x200), 80)
        .expect("connect to web-move");
    conn.set_read_timeout(Some(IO)).unwrap();
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    let mut name = String::new();
    reader.read_line(&mut name).unwrap();
    assert_eq!(name.trim(), "wb");
    echo(&mut reader, &conn);
    // The Service's endpoint moves from wb to wc; the open connection
    // keeps its translation, new ones get the new endpoint.
    let wc = c.pod("wc").addr;
    let svc =
        c.kp.services
            .iter_mut()
            .find(|s| s.cluster_ip == vip(0x200))
            .unwrap();
    svc.endpoints = vec![wc.into()];
    c.sync();
    echo(&mut reader, &conn);
    let name = exchange(
        c.connect("ca", vip(0x200), 80)
            .expect("connect after the move"),
    );
    assert_eq!(name, "wc");
    echo(&mut reader, &conn);
}

fn node_port_case(c: &Cluster) {
    let b = c.m.node_address("b");
    // From a's host and from a pod on a, to b's NodePort.
    for from in ["a", "ca"] {
        for _ in 0..3 {
            let name = exchange(
                c.connect(from, b, NODE_PORT)
                    .unwrap_or_else(|e| panic!("{from} -> [{b}]:{NODE_PORT}: {e}")),
            );
            assert!(["wa", "wb", "wc"].contains(&name.as_str()), "{name}");
        }
    }
}

fn every_case(mode: Mode, tag: &str) -> Cluster {
    let mut c = Cluster::build(tag, mode);
    cluster_ip_cases(&c);
    spread_case(&c);
    backends_change_case(&mut c);
    node_port_case(&c);
    c
}

#[test]
fn services_through_kube_proxys_iptables_rules() {
    every_case(Mode::Iptables, "svc-ipt");
}

#[test]
fn services_dns_and_policies_through_kube_proxys_nftables_rules() {
    let mut c = every_case(Mode::Nftables, "svc-nft");
    dns_case(&mut c);
    policy_case(&c);
    slow_pod_case(&mut c);
}

/// A real DNS server (dnsmasq) in a pod on c behind a ClusterIP, asked by
/// pods on every node with `dig`, over UDP and TCP.
fn dns_case(c: &mut Cluster) {
    let dns = c.add_pod("c", "dns", json!({}));
    c.m.lab
        .node("dns")
        .spawn(
            "dnsmasq",
            &[
                "dnsmasq",
                "--keep-in-foreground",
                "--no-resolv",
                "--no-hosts",
                "--user=root",
                "--pid-file=",
                &format!("--port={DNS_PORT}"),
                &format!("--listen-address={}", dns.addr),
                "--bind-interfaces",
                &format!("--host-record=web.default.svc.cluster.local,{}", vip(0x100)),
            ],
        )
        .expect("dnsmasq");
    for protocol in [Protocol::Udp, Protocol::Tcp] {
        c.kp.services.push(Service {
            name: "kube-system/kube-dns:dns".into(),
            cluster_ip: vip(0x53).into(),
            protocol,
            port: 53,
            node_port: None,
            target_port: DNS_PORT,
            endpoints: vec![dns.addr.into()],
        });
    }
    c.sync();
    for client in ["ca", "cb", "cc"] {
        for transport in ["+notcp", "+tcp"] {
            let mut answer = String::new();
            wait_until(
                &format!("{client} resolving through the DNS Service ({transport})"),
                Duration::from_secs(10),
                || {
                    answer =
                        c.m.lab
                            .node(client)
                            .run(&[
                                "dig",
                                &format!("@{}", vip(0x53)),
                                transport,
                                "+short",
                                "+time=1",
                                "+tries=1",
                                "AAAA",
                                "web.default.svc.cluster.local",
                            ])
                            .unwrap_or_default();
                    answer.trim() == vip(0x100).to_string()
                },
            );
        }
    }
}

/// A NetworkPolicy-style rule in b's forward chain between two pods, the
/// way policy controllers write them: established flows accepted first,
/// then new connections from `ca` to `wb`'s port dropped. A new connection
/// is blocked with the fast path on, as without it; one made before the
/// rule goes on (it is established, for the kernel too) and stays fast.
/// Once its conntrack entry is flushed (as controllers do when a policy
/// starts to deny), its next packet is new to conntrack and meets the
/// rule.
fn policy_case(c: &Cluster) {
    let (ca, wb) = (c.pod("ca").addr, c.pod("wb").addr);
    let conn = c
        .connect("ca", wb, WEB_PORT)
        .expect("connect before the rule");
    conn.set_read_timeout(Some(IO)).unwrap();
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    let mut name = String::new();
    reader.read_line(&mut name).unwrap();
    echo(&mut reader, &conn);
    let b = c.m.lab.node("b");
    b.run(&["nft", "add", "table", "inet", "netpol"]).unwrap();
    b.run(&[
        "nft",
        "add chain inet netpol forward { type filter hook forward priority 0; policy accept; }",
    ])
    .unwrap();
    for rule in [
        "ct state established,related accept".to_owned(),
        format!("ip6 saddr {ca} ip6 daddr {wb} tcp dport {WEB_PORT} counter drop"),
    ] {
        b.run(&["nft", &format!("add rule inet netpol forward {rule}")])
            .unwrap();
    }
    assert!(
        c.connect("ca", wb, WEB_PORT).is_err(),
        "a new connection is dropped"
    );
    let fast = delta(c, "b", &[Stat::TcMeshToPod], || echo(&mut reader, &conn));
    assert!(
        fast[0] >= FAST_MIN,
        "the established flow stayed fast: {fast:?}"
    );
    // Let the last ACKs land: a packet from wb after the flush would make
    // the flow established again, for the kernel as for the fast path.
    std::thread::sleep(Duration::from_millis(300));
    b.run(&[
        "conntrack",
        "-D",
        "-p",
        "tcp",
        "-s",
        &ca.to_string(),
        "-d",
        &wb.to_string(),
    ])
    .unwrap();
    let mut writer = conn.try_clone().unwrap();
    writer.write_all(b"after the flush").unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let mut buf = [0u8; 16];
    assert!(
        reader.read(&mut buf).is_err(),
        "after the flush the flow meets the rule"
    );
    let dropped = b.run(&["nft", "list", "table", "inet", "netpol"]).unwrap();
    assert!(
        !dropped.contains("packets 0 "),
        "the rule dropped: {dropped}"
    );
    b.run(&["nft", "delete", "table", "inet", "netpol"])
        .unwrap();
}

/// `fastPath: false`: no program on the pod's veth, and none of the TC
/// programs' counters moves for its traffic.
fn slow_pod_case(c: &mut Cluster) {
    let slow = c.add_pod("a", "slow", json!({"fastPath": false}));
    let wb = c.pod("wb").addr;
    c.m.lab
        .node("slow")
        .wait_ping6(wb, None, CONVERGE)
        .expect("the slow pod reaches wb");
    let tc = [
        Stat::TcPodToMesh,
        Stat::TcPodToPod,
        Stat::TcMeshToPod,
        Stat::TcUntracked,
        Stat::TcNewFlow,
        Stat::TcTranslated,
    ];
    let on_a = delta(c, "a", &tc, || {
        let name = exchange(c.connect("slow", wb, WEB_PORT).expect("connect"));
        assert_eq!(name, "wb");
    });
    assert!(on_a.iter().all(|n| *n == 0), "a's TC programs: {on_a:?}");
    // The agent had the time it needs to attach (the exchange), and did
    // not.
    assert_eq!(
        c.ingress_programs("a", &slow.host_veth),
        Vec::<String>::new(),
        "no program on {}",
        slow.host_veth
    );
}

/// ClusterIPs over IPv4: agents with `--ipv4-cluster-prefix`, dual-stack
/// pods, and kube-proxy's IPv4 proxier (table `ip kube-proxy`) on every
/// node. A client on a reaches a backend on c through b: a un-NATs the
/// replies in the kernel, b forwards in XDP, c's TC programs carry it; UDP
/// answers come back from the VIP.
#[test]
fn ipv4_services_through_kube_proxys_nftables_rules() {
    let cni =
        built_bin(None, "MESHFWD_CNI_BIN", "cni", "meshfwd-cni").expect("the meshfwd-cni binary");
    let mut m = mesh(
        "svc-ipv4",
        &Topology::new().line(&["a", "b", "c"], Wire::Direct),
    );
    for n in ["a", "b", "c"] {
        m.start(n, &["--ipv4-cluster-prefix", "198.18.0.0/16"])
            .expect("start the agents");
    }
    m.wait_full_reachability(&["a", "b", "c"], CONVERGE);
    let mut c = Cluster {
        m,
        cni,
        mode: Mode::Nftables,
        kp: KubeProxy {
            cluster_cidr: "198.18.0.0/16".into(),
            service_cidr: "198.19.96.0/24".into(),
            services: Vec::new(),
        },
        pods: Vec::new(),
    };
    c.add_pod("a", "ca", json!({}));
    c.add_pod("c", "wc", json!({}));
    // socat's TCP6/UDP6 listeners take IPv4 too (bindv6only is off).
    c.serve("wc");
    let wc = c.pod("wc").addr4.expect("wc got IPv4");
    let vip = Ipv4Addr::new(198, 19, 96, 12);
    let web = Service {
        name: "default/web-c:http".into(),
        cluster_ip: vip.into(),
        protocol: Protocol::Tcp,
        port: 80,
        node_port: None,
        target_port: WEB_PORT,
        endpoints: vec![wc.into()],
    };
    c.kp.services = vec![
        Service {
            name: "default/dns-like:dns".into(),
            protocol: Protocol::Udp,
            port: 53,
            target_port: UDP_PORT,
            ..web.clone()
        },
        web,
    ];
    c.sync();
    c.m.lab
        .node("ca")
        .wait_ping(wc.into(), CONVERGE)
        .unwrap_or_else(|e| panic!("ca cannot reach {wc}: {e:#}"));

    let mut name = String::new();
    let on_b = delta(&c, "b", &[Stat::Redirect, Stat::Ipv4], || {
        let on_c = delta(&c, "c", &[Stat::TcMeshToPod, Stat::TcPodToMesh], || {
            let on_a = delta(&c, "a", &[Stat::TcTranslated], || {
                name = exchange(c.connect("ca", vip, 80).expect("connect to web-c"));
            });
            assert!(
                on_a[0] >= FAST_MIN,
                "a un-NATs the replies in the kernel: {on_a:?}"
            );
        });
        assert!(on_c.iter().all(|n| *n >= FAST_MIN), "c: {on_c:?}");
    });
    assert_eq!(name, "wc");
    assert!(
        on_b[0] >= 2 * FAST_MIN && on_b[1] >= 2 * FAST_MIN,
        "b's XDP carried the IPv4 transit: {on_b:?}"
    );
    let on_c = delta(&c, "c", &[Stat::TcMeshToPod, Stat::TcPodToMesh], || {
        let names = udp_exchange(&c, "ca", vip, 20);
        assert!(names.iter().all(|n| n == "wc"), "{names:?}");
    });
    assert!(
        on_c.iter().all(|n| *n >= 15),
        "c carried the UDP flow: {on_c:?}"
    );
    // The rules are the IPv4 proxier's, in their own table.
    let table =
        c.m.lab
            .node("a")
            .run(&["nft", "list", "table", "ip", "kube-proxy"])
            .expect("the IPv4 table");
    assert!(
        table.contains(&format!("dnat to {wc}:{WEB_PORT}")),
        "{table}"
    );
}
