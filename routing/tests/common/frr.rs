//! FRR (zebra + ospf6d, and bfdd when asked; Debian's 8.4) as a router of
//! a `lab` node.
//!
//! Each node gets its own FRR path space (`-N <netns>`, sockets under
//! `/var/run/frr/<netns>/`), configuration files in the lab's work dir,
//! and both daemons as lab processes (in the foreground), so the lab stops
//! them with the node.

use std::fmt::Write as _;
use std::net::Ipv4Addr;
use std::path::PathBuf;

use super::bird::{LinkType, TestKey};

/// Where Debian installs the daemons.
const FRR_DIR: &str = "/usr/lib/frr";

/// What [`Frr::start_with`] adds to the configuration.
#[derive(Debug, Clone, Default)]
pub struct Extra {
    /// Lines under every mesh interface (`ipv6 ospf6 bfd`, ...).
    pub interface: Vec<String>,
    /// bfdd's configuration (its `bfd` node); `None`: no bfdd.
    pub bfdd: Option<String>,
}

/// One FRR instance.
pub struct Frr {
    pub node: String,
    pub router_id: Ipv4Addr,
    /// The path-space name (`-N`): the node's netns name.
    pub name: String,
}

impl Frr {
    /// Start zebra and ospf6d on every mesh interface of `node`
    /// (point-to-point, hello 1 s, dead 3 s), announcing `stub` as an
    /// address on the first mesh interface, authenticating with `key` (FRR
    /// 8.4 takes one key per interface).
    pub fn start(
        lab: &lab::Lab,
        node: &str,
        router_id: Ipv4Addr,
        stub: &str,
        key: Option<&TestKey>,
    ) -> Self {
        Self::start_on(lab, node, router_id, stub, key, LinkType::PointToPoint, &[])
    }

    /// Start FRR with its interfaces of network type `network` (broadcast:
    /// FRR's default, with its default priority 1) and `router` lines
    /// added under `router ospf6`.
    pub fn start_on(
        lab: &lab::Lab,
        node: &str,
        router_id: Ipv4Addr,
        stub: &str,
        key: Option<&TestKey>,
        network: LinkType,
        router: &[&str],
    ) -> Self {
        Self::launch(
            lab,
            node,
            router_id,
            stub,
            key,
            network,
            router,
            &Extra::default(),
        )
    }

    /// Start FRR point-to-point with `extra` configuration: lines under
    /// every interface, and bfdd with its configuration.
    #[allow(dead_code, reason = "each test binary uses part of the helper")]
    pub fn start_with(
        lab: &lab::Lab,
        node: &str,
        router_id: Ipv4Addr,
        stub: &str,
        extra: &Extra,
    ) -> Self {
        Self::launch(
            lab,
            node,
            router_id,
            stub,
            None,
            LinkType::PointToPoint,
            &[],
            extra,
        )
    }

    #[allow(
        clippy::too_many_arguments,
        reason = "one private constructor behind two"
    )]
    fn launch(
        lab: &lab::Lab,
        node: &str,
        router_id: Ipv4Addr,
        stub: &str,
        key: Option<&TestKey>,
        network: LinkType,
        router: &[&str],
        extra: &Extra,
    ) -> Self {
        let n = lab.node(node);
        let name = n.netns().to_owned();
        let dir = lab.work_dir().join(format!("frr-{node}"));
        std::fs::create_dir_all(&dir).expect("FRR dir");
        // The daemons run as frr: their sockets, pid files and logs go to
        // a run directory of theirs (removed on drop).
        let run = PathBuf::from(format!("/var/run/frr/{name}"));
        std::fs::create_dir_all(&run).expect("FRR run dir");
        let frr = nix::unistd::User::from_name("frr")
            .ok()
            .flatten()
            .expect("the frr user (apt-get install frr)");
        std::os::unix::fs::chown(&run, Some(frr.uid.as_raw()), Some(frr.gid.as_raw()))
            .expect("chown the FRR run dir");
        let ifaces = n.ifaces();
        // The stub prefix lives on the first mesh link: ospf6d announces
        // an interface's global prefixes.
        let first = ifaces.first().expect("a mesh interface");
        let addr = stub.replace("::/", "::1/");
        n.run(&["ip", "-6", "addr", "add", &addr, "dev", first])
            .expect("stub address");
        let mut ospf = String::new();
        let _ = writeln!(ospf, "frr defaults traditional");
        let _ = writeln!(ospf, "hostname {node}");
        let _ = writeln!(ospf, "log file {}", run.join("ospf6d.log").display());
        for iface in &ifaces {
            let _ = writeln!(ospf, "interface {iface}");
            let _ = writeln!(ospf, " ipv6 ospf6 area 0.0.0.0");
            if network == LinkType::PointToPoint {
                let _ = writeln!(ospf, " ipv6 ospf6 network point-to-point");
            }
            let _ = writeln!(ospf, " ipv6 ospf6 hello-interval 1");
            let _ = writeln!(ospf, " ipv6 ospf6 dead-interval 3");
            let _ = writeln!(ospf, " ipv6 ospf6 retransmit-interval 2");
            if let Some(k) = key {
                let _ = writeln!(
                    ospf,
                    " ipv6 ospf6 authentication key-id {} hash-algo hmac-sha-256 key {}",
                    k.id, k.secret
                );
            }
            for line in &extra.interface {
                let _ = writeln!(ospf, " {line}");
            }
        }
        let _ = writeln!(ospf, "router ospf6");
        let _ = writeln!(ospf, " ospf6 router-id {router_id}");
        for line in router {
            let _ = writeln!(ospf, " {line}");
        }
        let conf = |daemon: &str, text: &str| -> PathBuf {
            let p = dir.join(format!("{daemon}.conf"));
            std::fs::write(&p, text).expect("FRR conf");
            p
        };
        let zebra_conf = conf("zebra", &format!("hostname {node}\n"));
        let ospf_conf = conf("ospf6d", &ospf);
        let mut daemons = vec![("zebra", zebra_conf)];
        if let Some(bfd) = &extra.bfdd {
            let text = format!(
                "frr defaults traditional\nhostname {node}\nlog file {}\nlog timestamp precision 6\n{bfd}",
                run.join("bfdd.log").display()
            );
            daemons.push(("bfdd", conf("bfdd", &text)));
        }
        daemons.push(("ospf6d", ospf_conf));
        for (daemon, file) in &daemons {
            let bin = format!("{FRR_DIR}/{daemon}");
            let pid = run.join(format!("{daemon}.pid"));
            let args = [
                bin.as_str(),
                "-u",
                "frr",
                "-g",
                "frr",
                "-N",
                &name,
                "-f",
                &file.to_string_lossy(),
                "-i",
                &pid.to_string_lossy(),
            ];
            n.spawn(daemon, &args).expect("start an FRR daemon");
            if *daemon == "zebra" {
                // ospf6d and bfdd connect to zebra's socket at start.
                std::thread::sleep(std::time::Duration::from_millis(500));
            }
        }
        Frr {
            node: node.to_owned(),
            router_id,
            name,
        }
    }

    /// Run a `vtysh` command; `None` while the daemons do not answer.
    pub fn vtysh(&self, lab: &lab::Lab, command: &str) -> Option<String> {
        lab.node(&self.node)
            .run(&["vtysh", "-N", &self.name, "-c", command])
            .ok()
    }

    /// Whether ospf6d has `router_id` as a Full neighbour.
    pub fn is_full_with(&self, lab: &lab::Lab, router_id: Ipv4Addr) -> bool {
        self.vtysh(lab, "show ipv6 ospf6 neighbor")
            .is_some_and(|out| {
                out.lines().any(|l| {
                    let mut w = l.split_whitespace();
                    w.next() == Some(&router_id.to_string()) && l.contains("Full/")
                })
            })
    }

    /// Whether zebra has a route to `prefix` (learnt by OSPF).
    pub fn has_route(&self, lab: &lab::Lab, prefix: &str) -> bool {
        self.vtysh(lab, &format!("show ipv6 route {prefix}"))
            .is_some_and(|out| out.contains("ospf6"))
    }

    /// What FRR says, for failure messages.
    pub fn describe(&self, lab: &lab::Lab) -> String {
        format!(
            "FRR {}:\n{}\n{}",
            self.router_id,
            self.vtysh(lab, "show ipv6 ospf6 neighbor")
                .unwrap_or_default(),
            self.vtysh(lab, "show ipv6 ospf6 interface")
                .unwrap_or_default()
        )
    }
}

impl Drop for Frr {
    fn drop(&mut self) {
        // The lab stops the daemons; their socket directory is ours, and
        // ospf6d leaves its state beside it whatever its path space.
        let _ = std::fs::remove_dir_all(format!("/var/run/frr/{}", self.name));
        for file in ["ospf6d-at-seq-no.dat", "ospf6d-gr.json"] {
            let _ = std::fs::remove_file(format!("/var/run/frr/{file}"));
        }
    }
}
