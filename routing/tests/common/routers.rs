//! Our `ospfd` and BIRD as routers of a `lab`, and what the tests ask them.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use routing::driver::Snapshot;
use routing::packet::lsa::header::LsaType;

use super::bird::{self, BirdConf, BirdFiles, LinkType};

/// Return the path of the `ospfd` example, building it first (once per
/// test process) with the same cargo, target dir and profile as the tests,
/// since `cargo test --test X` does not build examples.
pub fn ospfd_binary() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let exe = std::env::current_exe().expect("test executable path");
        // <target>/<profile>/deps/<test>-<hash>
        let profile_dir = exe
            .parent()
            .and_then(Path::parent)
            .expect("test binary in <profile>/deps");
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
        let mut cmd = Command::new(cargo);
        cmd.args(["build", "--quiet", "-p", "routing", "--example", "ospfd"])
            // The checkout being tested, read at run time (not the one
            // this binary may have been built for, with a shared target).
            .current_dir(
                std::env::var("CARGO_MANIFEST_DIR").expect("cargo test sets CARGO_MANIFEST_DIR"),
            );
        if profile_dir.file_name().is_some_and(|n| n == "release") {
            cmd.arg("--release");
        }
        if let Some(target) = profile_dir.parent() {
            cmd.env("CARGO_TARGET_DIR", target);
        }
        let status = cmd.status().expect("run cargo build --example ospfd");
        assert!(status.success(), "cargo build --example ospfd failed");
        let bin = profile_dir.join("examples/ospfd");
        assert!(bin.exists(), "{} missing after build", bin.display());
        bin
    })
}

/// Our router running in a lab node.
pub struct Ours {
    pub node: String,
    pub router_id: Ipv4Addr,
    pub state_file: PathBuf,
    pub proc: lab::ProcId,
}

impl Ours {
    /// Start `ospfd` on every mesh interface of `node` (point-to-point),
    /// announcing `stubs`.
    pub fn start(lab: &lab::Lab, node: &str, router_id: Ipv4Addr, stubs: &[&str]) -> Self {
        Self::start_on(lab, node, router_id, stubs, LinkType::PointToPoint)
    }

    /// Start `ospfd` on every mesh interface of `node` as `link` type.
    pub fn start_on(
        lab: &lab::Lab,
        node: &str,
        router_id: Ipv4Addr,
        stubs: &[&str],
        link: LinkType,
    ) -> Self {
        Self::start_with(lab, node, router_id, stubs, link, &[])
    }

    /// Start `ospfd` with extra arguments (authentication, say).
    pub fn start_with(
        lab: &lab::Lab,
        node: &str,
        router_id: Ipv4Addr,
        stubs: &[&str],
        link: LinkType,
        extra: &[String],
    ) -> Self {
        Self::start_tagged(lab, node, "ospfd", router_id, stubs, link, extra)
    }

    /// [`Ours::start_with`] under process name `tag`, with a state file of
    /// its own: for a second instance on the same node.
    pub fn start_tagged(
        lab: &lab::Lab,
        node: &str,
        tag: &str,
        router_id: Ipv4Addr,
        stubs: &[&str],
        link: LinkType,
        extra: &[String],
    ) -> Self {
        let n = lab.node(node);
        let state_file = lab.work_dir().join(format!("{node}.{tag}.json"));
        let bin = ospfd_binary().display().to_string();
        let mut args = vec![
            bin,
            "--router-id".to_owned(),
            router_id.to_string(),
            "--state-file".to_owned(),
            state_file.display().to_string(),
            "--state-interval-ms".to_owned(),
            "200".to_owned(),
        ];
        for iface in n.ifaces() {
            let iface = match link {
                LinkType::PointToPoint => iface,
                LinkType::Broadcast => format!("{iface}:broadcast"),
            };
            args.extend(["--iface".to_owned(), iface]);
        }
        for s in stubs {
            args.extend(["--stub".to_owned(), (*s).to_owned()]);
        }
        args.extend(extra.iter().cloned());
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let proc = n.spawn(tag, &args).expect("start ospfd");
        Self {
            node: node.to_owned(),
            router_id,
            state_file,
            proc,
        }
    }

    /// Return the latest snapshot the daemon wrote, if any.
    pub fn snapshot(&self) -> Option<Snapshot> {
        let text = std::fs::read(&self.state_file).ok()?;
        serde_json::from_slice(&text).ok()
    }

    /// Packets and LSAs dropped for `reason` so far.
    pub fn drops(&self, reason: routing::DropReason) -> u64 {
        self.snapshot()
            .and_then(|s| s.state.drops.get(&reason).copied())
            .unwrap_or(0)
    }

    /// Return whether the neighbour `router_id` is Full.
    pub fn is_full_with(&self, router_id: Ipv4Addr) -> bool {
        self.snapshot().is_some_and(|s| {
            s.state
                .neighbors
                .iter()
                .any(|n| n.router_id == router_id && n.state == routing::neighbor::nsm::State::Full)
        })
    }

    /// Return the LSDB as (type, id, router, seq) keys, MaxAge ones left out.
    pub fn lsdb(&self) -> Option<BTreeSet<LsaKey>> {
        let s = self.snapshot()?;
        Some(
            s.state
                .lsdb
                .iter()
                .filter(|l| l.age < 3600)
                .map(|l| LsaKey {
                    ls_type: l.ls_type,
                    ls_id: l.ls_id,
                    adv_router: l.adv_router,
                    seq: l.seq,
                })
                .collect(),
        )
    }

    /// Return the routes as prefix -> (cost, {(interface name, next hop)}).
    pub fn routes(&self) -> Option<Routes> {
        let s = self.snapshot()?;
        let names: BTreeMap<u32, String> = s
            .state
            .interfaces
            .iter()
            .map(|i| (i.ifindex, i.name.clone()))
            .collect();
        Some(
            s.rib
                .routes
                .iter()
                .map(|(prefix, route)| {
                    let hops = route
                        .nexthops
                        .iter()
                        .map(|h| {
                            let name = names
                                .get(&h.ifindex)
                                .cloned()
                                .unwrap_or_else(|| format!("ifindex {}", h.ifindex));
                            (name, h.addr)
                        })
                        .collect();
                    (prefix.to_string(), (route.cost, hops))
                })
                .collect(),
        )
    }

    /// Return a one-screen description for failure messages.
    pub fn describe(&self) -> String {
        match self.snapshot() {
            None => format!("{} ({}): no state file yet", self.node, self.router_id),
            Some(s) => {
                let nbrs: Vec<String> = s
                    .state
                    .neighbors
                    .iter()
                    .map(|n| format!("{}@{}={:?}", n.router_id, n.interface, n.state))
                    .collect();
                format!(
                    "{} ({}): neighbours {nbrs:?}\n  routes {:?}\n  lsdb {:?}",
                    self.node,
                    self.router_id,
                    self.routes().unwrap_or_default(),
                    self.lsdb().unwrap_or_default()
                )
            }
        }
    }
}

/// Next hops as both kinds of router report them: interface name and
/// neighbour link-local address.
pub type Hops = BTreeSet<(String, Ipv6Addr)>;
/// prefix -> (cost, next hops).
pub type Routes = BTreeMap<String, (u32, Hops)>;

/// An LSA instance, comparable across BIRD and us.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct LsaKey {
    pub ls_type: LsaType,
    pub ls_id: Ipv4Addr,
    pub adv_router: Ipv4Addr,
    pub seq: u32,
}

/// BIRD running in a lab node.
pub struct Bird {
    pub node: String,
    pub router_id: Ipv4Addr,
    pub files: BirdFiles,
    pub proc: lab::ProcId,
}

impl Bird {
    /// Start BIRD with OSPFv3 (point-to-point) on every mesh interface of
    /// `node`, announcing `stubs` as stub networks.
    pub fn start(lab: &lab::Lab, node: &str, router_id: Ipv4Addr, stubs: &[&str]) -> Self {
        Self::start_on(lab, node, router_id, stubs, LinkType::PointToPoint)
    }

    /// Start BIRD on every mesh interface of `node` as `link` type.
    pub fn start_on(
        lab: &lab::Lab,
        node: &str,
        router_id: Ipv4Addr,
        stubs: &[&str],
        link: LinkType,
    ) -> Self {
        Self::start_with_keys(lab, node, router_id, stubs, link, &[])
    }

    /// Start BIRD authenticating with `keys` (none: no authentication).
    pub fn start_with_keys(
        lab: &lab::Lab,
        node: &str,
        router_id: Ipv4Addr,
        stubs: &[&str],
        link: LinkType,
        keys: &[bird::TestKey],
    ) -> Self {
        let n = lab.node(node);
        let conf = BirdConf {
            router_id,
            interfaces: n.ifaces().into_iter().map(|i| (i, link)).collect(),
            stubnets: stubs.iter().map(|s| (*s).to_owned()).collect(),
            externals: Vec::new(),
            keys: keys.to_vec(),
            ipv4: false,
        };
        Self::start_conf(lab, node, &conf)
    }

    /// Start BIRD on `node` with `conf`.
    pub fn start_conf(lab: &lab::Lab, node: &str, conf: &BirdConf) -> Self {
        let n = lab.node(node);
        let router_id = conf.router_id;
        let files = BirdFiles::new(lab.work_dir(), node);
        files.write_conf(conf);
        let args = files.bird_args();
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let proc = n.spawn("bird", &args).expect("start BIRD");
        Self {
            node: node.to_owned(),
            router_id,
            files,
            proc,
        }
    }

    /// Run a `birdc` command; `None` while BIRD is not answering yet.
    pub fn birdc(&self, lab: &lab::Lab, command: &str) -> Option<String> {
        let args = self.files.birdc_args(command);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        lab.node(&self.node).run(&args).ok()
    }

    /// Return whether the neighbour `router_id` is Full.
    pub fn is_full_with(&self, lab: &lab::Lab, router_id: Ipv4Addr) -> bool {
        self.neighbor_state(lab, router_id)
            .is_some_and(|s| s.starts_with("Full"))
    }

    /// Return BIRD's state of neighbour `router_id`, e.g. "Full/DR".
    pub fn neighbor_state(&self, lab: &lab::Lab, router_id: Ipv4Addr) -> Option<String> {
        let out = self.birdc(lab, "show ospf neighbors")?;
        bird::parse_neighbors(&out)
            .into_iter()
            .find(|n| n.router_id == router_id)
            .map(|n| n.state)
    }

    /// Return the LSDB as (type, id, router, seq) keys, MaxAge ones left out.
    pub fn lsdb(&self, lab: &lab::Lab) -> Option<BTreeSet<LsaKey>> {
        let out = self.birdc(lab, "show ospf lsadb")?;
        Some(
            bird::parse_lsadb(&out)
                .into_iter()
                .map(|k| LsaKey {
                    ls_type: LsaType(k.ls_type),
                    ls_id: Ipv4Addr::from(k.ls_id),
                    adv_router: k.adv_router,
                    seq: k.seq,
                })
                .collect(),
        )
    }

    /// Return the OSPF routes as prefix -> (metric, next hops).
    pub fn routes(&self, lab: &lab::Lab) -> Option<Routes> {
        let out = self.birdc(lab, "show route protocol ospf1")?;
        Some(
            bird::parse_routes(&out)
                .into_iter()
                .map(|(prefix, r)| {
                    let hops = r
                        .nexthops
                        .into_iter()
                        .filter_map(|(addr, iface)| match addr {
                            std::net::IpAddr::V6(a) => Some((iface, a)),
                            std::net::IpAddr::V4(_) => None,
                        })
                        .collect();
                    (prefix, (r.metric.unwrap_or(u32::MAX), hops))
                })
                .collect(),
        )
    }

    /// Return a one-screen description for failure messages.
    pub fn describe(&self, lab: &lab::Lab) -> String {
        format!(
            "{} (BIRD {}):\n{}\n{}",
            self.node,
            self.router_id,
            self.birdc(lab, "show ospf neighbors").unwrap_or_default(),
            self.birdc(lab, "show route").unwrap_or_default()
        )
    }
}

/// Wait until our LSDB and BIRD's hold the same LSA instances at the same
/// sequence numbers. Compared until equal, since an LSA may be on its way
/// while the two are read.
pub fn wait_identical_lsdbs(ours: &Ours, bird: &Bird, lab: &lab::Lab, limit: std::time::Duration) {
    super::wait_until(
        "identical LSDBs",
        limit,
        || {
            let (o, b) = (ours.lsdb()?, bird.lsdb(lab)?);
            (o == b && !o.is_empty()).then_some(())
        },
        || {
            format!(
                "ours {:#?}\nBIRD {:#?}",
                ours.lsdb().unwrap_or_default(),
                bird.lsdb(lab).unwrap_or_default()
            )
        },
    );
}
