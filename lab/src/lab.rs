//! The [`Lab`]: a built topology and the handle that removes it.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{Context, Result, bail};

use crate::cleanup::{self, Shared, State};
use crate::link::{self, Link, Switch};
use crate::node::Node;
use crate::topology::{Topology, Wire};
use crate::{exec, netns};

/// Tools the lab drives; checked up front so a missing one fails the build
/// with the package to install rather than half-way through.
const TOOLS: &[&str] = &["ip", "tc", "ethtool", "nsenter", "sysctl"];
/// Longest node name accepted (keeps interface names readable).
const NODE_NAME_MAX: usize = 32;

static LAB_COUNTER: AtomicU64 = AtomicU64::new(1);

/// A running topology of namespaces. Dropping it removes every namespace,
/// process, veth and bpffs pin it made, also while a panic unwinds.
pub struct Lab {
    shared: Arc<Shared>,
    nodes: Vec<Node>,
    links: Vec<Link>,
    cables: usize,
    switches: Vec<Switch>,
}

impl Lab {
    /// Build a topology. `tag` is a short human hint that shows up in the
    /// bpffs and work dir names; uniqueness comes from the pid and a counter.
    pub fn build(tag: &str, topo: &Topology) -> Result<Lab> {
        cleanup::install_signal_handler();
        if let Err(e) = cleanup::cleanup_stale() {
            eprintln!("kmlab: {e:#}");
        }
        for t in TOOLS {
            exec::tool(t)?;
        }
        check_topology(topo)?;
        cleanup::ensure_bpffs()?;

        let id = format!(
            "{}{}x{}",
            cleanup::NETNS_PREFIX,
            std::process::id(),
            LAB_COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let dir_name = format!(
            "{}{}-{}",
            cleanup::DIR_PREFIX,
            &id[cleanup::NETNS_PREFIX.len()..],
            sanitize_tag(tag)
        );
        let shared = Arc::new(Shared {
            id,
            bpffs: Path::new(cleanup::BPFFS_ROOT).join(&dir_name),
            work: std::env::temp_dir().join(&dir_name),
            state: std::sync::Mutex::new(State::default()),
        });
        // Registered before anything exists, so an interrupt at any point
        // finds it; and from here on an early return drops `lab`, which
        // removes whatever was made so far.
        cleanup::register(shared.clone());
        let mut lab = Lab {
            shared,
            nodes: Vec::new(),
            links: Vec::new(),
            cables: 0,
            switches: Vec::new(),
        };
        for dir in [&lab.shared.bpffs, &lab.shared.work] {
            std::fs::create_dir(dir).with_context(|| format!("create {}", dir.display()))?;
        }
        for name in &topo.nodes {
            lab.add_node(name)?;
        }
        for l in &topo.links {
            lab.add_link(&l.a, &l.b, l.wire)?;
        }
        Ok(lab)
    }

    /// Return the node called `name`.
    ///
    /// # Panics
    /// If there is no such node (a test helper: a typo should stop the test).
    pub fn node(&self, name: &str) -> &Node {
        self.find_node(name).unwrap_or_else(|| {
            let names: Vec<&str> = self.nodes.iter().map(Node::name).collect();
            panic!(
                "lab {}: no node {name:?}; nodes are {names:?}",
                self.shared.id
            )
        })
    }

    /// Return the nodes in the order they were added.
    pub fn nodes(&self) -> impl Iterator<Item = &Node> {
        self.nodes.iter()
    }

    /// Return the links in the order they were added.
    pub fn links(&self) -> &[Link] {
        &self.links
    }

    /// Return the (first) link between `a` and `b`, in either order.
    ///
    /// # Panics
    /// If there is no such link (a test helper).
    pub fn link(&self, a: &str, b: &str) -> &Link {
        self.find_link(a, b).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Cut a link loudly: both node ends lose carrier. On a cable both cable
    /// veths go down (node ends stay admin up, like a pulled cable); on a
    /// direct link `a`'s end goes down, so `b`'s end loses carrier.
    pub fn cut_loud(&self, a: &str, b: &str) -> Result<()> {
        let link = self.find_link(a, b)?;
        let r = match &link.cable {
            Some(c) => link::cable_carrier(c, false),
            None => {
                let (ns, ifname) = self.end(link, a);
                link::set_up(ns, ifname, false)
            }
        };
        r.with_context(|| format!("lab {}: loud cut of {a}-{b}", self.shared.id))
    }

    /// Cut a link silently: frames are lost on the wire while both node ends
    /// keep carrier. Needs [`Wire::Cable`]; a direct veth cannot do this
    /// because frames redirected by XDP bypass tc and netfilter.
    pub fn cut_silent(&self, a: &str, b: &str) -> Result<()> {
        let link = self.find_link(a, b)?;
        let Some(c) = &link.cable else {
            bail!(
                "lab {}: cut_silent({a}, {b}) needs a Wire::Cable link, this one is Wire::Direct \
                 (XDP-redirected frames bypass tc and netfilter, so only a cable can drop them)",
                self.shared.id
            );
        };
        link::cable_carry(c, false)
            .with_context(|| format!("lab {}: silent cut of {a}-{b}", self.shared.id))
    }

    /// Undo any cut of the link between `a` and `b`. Idempotent.
    pub fn restore(&self, a: &str, b: &str) -> Result<()> {
        let link = self.find_link(a, b)?;
        let r = match &link.cable {
            Some(c) => link::cable_carry(c, true).and_then(|()| link::cable_carrier(c, true)),
            None => {
                let ns_a = self.node(&link.a).netns();
                let ns_b = self.node(&link.b).netns();
                link::set_up(ns_a, &link.a_if, true)
                    .and_then(|()| link::set_up(ns_b, &link.b_if, true))
            }
        };
        r.with_context(|| format!("lab {}: restore of {a}-{b}", self.shared.id))
    }

    /// Add a node at run time (a new PC on the floor, not yet cabled).
    pub fn add_node(&mut self, name: &str) -> Result<()> {
        check_node_name(name)?;
        if self.find_node(name).is_some() {
            bail!("lab {}: node {name:?} exists already", self.shared.id);
        }
        let ns = format!("{}-{name}", self.shared.id);
        self.create_netns(&ns)?;
        netns::sysctl(&ns, &["net.ipv6.conf.all.forwarding=1"])
            .with_context(|| format!("enable IPv6 forwarding in node {name}"))?;
        let node = Node::new(name, &ns, self.shared.clone());
        let dir = node.bpffs_dir();
        std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
        self.nodes.push(node);
        Ok(())
    }

    /// Add a link at run time (plug a cable in) and return it.
    pub fn add_link(&mut self, a: &str, b: &str, wire: Wire) -> Result<Link> {
        let id = &self.shared.id;
        if a == b {
            bail!("lab {id}: link from {a:?} to itself");
        }
        let (Some(na), Some(nb)) = (self.find_node(a), self.find_node(b)) else {
            bail!("lab {id}: link {a:?}-{b:?} names a node that does not exist");
        };
        let a_if = link::iface_name(b, &na.ifaces());
        let b_if = link::iface_name(a, &nb.ifaces());
        let (ns_a, ns_b) = (na.netns().to_owned(), nb.netns().to_owned());
        let cable = match wire {
            Wire::Direct => {
                link::connect_direct(&ns_a, &a_if, &ns_b, &b_if)
                    .with_context(|| format!("lab {id}: direct link {a}-{b}"))?;
                None
            }
            Wire::Cable => {
                let ns_c = format!("{id}-c{}", self.cables);
                self.cables += 1;
                self.create_netns(&ns_c)?;
                link::connect_cable(&ns_a, &a_if, &ns_b, &b_if, &ns_c)
                    .with_context(|| format!("lab {}: cable {a}-{b} via {ns_c}", self.shared.id))?;
                Some(ns_c)
            }
        };
        let link = Link {
            a: a.into(),
            b: b.into(),
            a_if: a_if.clone(),
            b_if: b_if.clone(),
            wire,
            cable,
        };
        self.node_mut(a).push_iface(a_if);
        self.node_mut(b).push_iface(b_if);
        self.links.push(link.clone());
        Ok(link)
    }

    /// Add a switch called `name` and plug one new interface of each of
    /// `members` into it (named `m-<name>` in the node, like a link to a
    /// node of that name).
    pub fn add_switch(&mut self, name: &str, members: &[&str]) -> Result<Switch> {
        let id = self.shared.id.clone();
        check_node_name(name)?;
        if self.find_node(name).is_some() || self.switches.iter().any(|s| s.name == name) {
            bail!("lab {id}: switch {name:?} would share a name with a node or switch");
        }
        if members.len() < 2 {
            bail!("lab {id}: switch {name:?} needs two members at least, got {members:?}");
        }
        if let Some(m) = members.iter().find(|m| self.find_node(m).is_none()) {
            bail!("lab {id}: switch {name:?} names node {m:?}, which does not exist");
        }
        let ns_s = format!("{id}-s{}", self.switches.len());
        self.create_netns(&ns_s)?;
        link::make_switch(&ns_s).with_context(|| format!("lab {id}: switch {name}"))?;
        let mut sw = Switch {
            name: name.to_owned(),
            netns: ns_s.clone(),
            ports: Vec::new(),
        };
        for (k, m) in members.iter().enumerate() {
            let node = self.node(m);
            let n_if = link::iface_name(name, &node.ifaces());
            let ns_n = node.netns().to_owned();
            // Port names only need to be unique inside the switch.
            let port = format!("p{k}");
            link::connect_switch_port(&ns_s, &port, &ns_n, &n_if)
                .with_context(|| format!("lab {id}: plug {m} into switch {name}"))?;
            self.node_mut(m).push_iface(n_if.clone());
            sw.ports.push(((*m).to_owned(), n_if, port));
        }
        self.switches.push(sw.clone());
        Ok(sw)
    }

    /// Return the switches in the order they were added.
    pub fn switches(&self) -> &[Switch] {
        &self.switches
    }

    /// Return the lab's directory under /sys/fs/bpf (one subdir per node).
    pub fn bpffs_dir(&self) -> &Path {
        &self.shared.bpffs
    }

    /// Return the lab's temp dir for logs, sockets and configs. Removed on
    /// drop, except while panicking: then it is kept and its path printed.
    pub fn work_dir(&self) -> &Path {
        &self.shared.work
    }

    /// Return the unique stem of this lab's names, `km<pid>x<n>`.
    pub fn id(&self) -> &str {
        &self.shared.id
    }

    /// Return the prefix every namespace of this lab starts with, `km<pid>x<n>-`.
    pub fn netns_prefix(&self) -> String {
        format!("{}-", self.shared.id)
    }

    /// Return the names of all namespaces of this lab, nodes and cables.
    pub fn netns_names(&self) -> Vec<String> {
        self.shared.state().namespaces.clone()
    }

    /// Return the work dir path as an owned value (handy after the lab is gone).
    pub fn work_path(&self) -> PathBuf {
        self.shared.work.clone()
    }

    fn find_node(&self, name: &str) -> Option<&Node> {
        self.nodes.iter().find(|n| n.name() == name)
    }

    fn node_mut(&mut self, name: &str) -> &mut Node {
        let id = self.shared.id.clone();
        self.nodes
            .iter_mut()
            .find(|n| n.name() == name)
            .unwrap_or_else(|| panic!("lab {id}: node {name:?} vanished")) // checked by callers
    }

    fn find_link(&self, a: &str, b: &str) -> Result<&Link> {
        self.links.iter().find(|l| l.joins(a, b)).with_context(|| {
            let all: Vec<String> = self
                .links
                .iter()
                .map(|l| format!("{}-{}", l.a, l.b))
                .collect();
            format!(
                "lab {}: no link between {a:?} and {b:?}; links are {all:?}",
                self.shared.id
            )
        })
    }

    /// Return the namespace and interface of `who`'s end of `link`.
    fn end<'a>(&'a self, link: &'a Link, who: &str) -> (&'a str, &'a str) {
        if link.a == who {
            (self.node(&link.a).netns(), &link.a_if)
        } else {
            (self.node(&link.b).netns(), &link.b_if)
        }
    }

    /// Record a namespace for teardown, then create it.
    fn create_netns(&self, ns: &str) -> Result<()> {
        {
            let mut st = self.shared.state();
            if st.closed {
                bail!("lab {} is shut down", self.shared.id);
            }
            st.namespaces.push(ns.to_owned());
        }
        netns::create(ns)
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        self.shared.teardown(std::thread::panicking());
        cleanup::unregister(&self.shared.id);
    }
}

impl std::fmt::Debug for Lab {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lab")
            .field("id", &self.shared.id)
            .field(
                "nodes",
                &self.nodes.iter().map(Node::name).collect::<Vec<_>>(),
            )
            .field("links", &self.links)
            .finish()
    }
}

/// Validate a whole topology before anything is created.
fn check_topology(topo: &Topology) -> Result<()> {
    let mut seen = std::collections::BTreeSet::new();
    for n in &topo.nodes {
        check_node_name(n)?;
        if !seen.insert(n.as_str()) {
            bail!("topology names node {n:?} twice");
        }
    }
    for l in &topo.links {
        for end in [&l.a, &l.b] {
            if !seen.contains(end.as_str()) {
                bail!("topology link {}-{} names unknown node {end:?}", l.a, l.b);
            }
        }
        if l.a == l.b {
            bail!("topology link from {:?} to itself", l.a);
        }
    }
    Ok(())
}

/// Node names become part of namespace, interface and file names.
fn check_node_name(name: &str) -> Result<()> {
    let charset_ok = name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    let starts_ok = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric());
    if !(charset_ok && starts_ok && name.len() <= NODE_NAME_MAX) {
        bail!(
            "bad node name {name:?}: use 1-{NODE_NAME_MAX} of [A-Za-z0-9_-], starting with a letter or digit"
        );
    }
    // Cable namespaces are `<lab>-c<k>`; a node of that name would clash.
    if name
        .strip_prefix('c')
        .is_some_and(|k| !k.is_empty() && k.chars().all(|c| c.is_ascii_digit()))
    {
        bail!("node name {name:?} is reserved for cables (c<number>)");
    }
    Ok(())
}

fn sanitize_tag(tag: &str) -> String {
    let t: String = tag
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .take(24)
        .collect();
    if t.is_empty() { "lab".into() } else { t }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_names() {
        for ok in ["n0", "a", "router-1", "R_2", "c", "cx1", "0"] {
            assert!(check_node_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", "-a", "a b", "a/b", "c0", "c12", &"x".repeat(33)] {
            assert!(check_node_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn topology_errors() {
        let dup = Topology::new().node("a").node("a");
        assert!(
            check_topology(&dup)
                .unwrap_err()
                .to_string()
                .contains("twice")
        );
        let unknown = Topology::new().node("a").link("a", "b", Wire::Direct);
        assert!(
            check_topology(&unknown)
                .unwrap_err()
                .to_string()
                .contains("unknown node")
        );
        let selfl = Topology::new().node("a").link("a", "a", Wire::Direct);
        assert!(check_topology(&selfl).is_err());
    }

    #[test]
    fn tags() {
        assert_eq!(sanitize_tag("mesh 6/x"), "mesh_6_x");
        assert_eq!(sanitize_tag(""), "lab");
        assert_eq!(sanitize_tag(&"y".repeat(40)).len(), 24);
    }
}
