//! The six verbs: what each does to the node, in the order that leaves
//! nothing half-made when a step fails.
//!
//! ADD validates everything it can before touching the system (netns,
//! interface name, node state, the families and requested addresses), then
//! creates the veth, allocates (an address of each family, all or none),
//! wires and registers the endpoints, undoing the earlier steps if a later
//! one fails. The fast path is attached by the agent once ADD
//! has marked the veth finished, or by ADD itself on a node whose agent
//! does not (see `fastpath`). DEL, CHECK and GC find everything from the
//! store and the attachment's derived names, so they need no cache.

use std::collections::HashSet;
use std::net::IpAddr;
use std::path::PathBuf;

use dataplane::maps::Endpoints;
use ipnet::IpNet;
use meshfwd_common::endpoint::Endpoint;

use crate::fastpath;
use crate::ipam::{self, Allocation, Store};
use crate::node::{self, NodeState, PodAttach};
use crate::spec::result::{Interface, IpConfig, Route};
use crate::spec::{CniResult, Code, Env, Error, IpFamily, NetConf, Result};
use crate::wiring::{self, Plan, default_route, gateway_of, host_net};

/// Return the node's pod prefixes for the families a pod gets: those of
/// `ipFamilies`, else every family the node has. Asking for IPv4 on a node
/// whose agent runs IPv6 only is an error that says so.
fn pod_prefixes(conf: &NetConf, node: &NodeState) -> Result<Vec<IpNet>> {
    let Some(families) = &conf.ip_families else {
        return Ok(node.pod_prefixes());
    };
    let v6 = IpNet::V6(node.pod_prefix);
    let v4 = node.ipv4.map(|v4| IpNet::V4(v4.pod_prefix));
    families
        .iter()
        .map(|family| match family {
            IpFamily::IPv6 => Ok(v6),
            IpFamily::IPv4 => v4.ok_or_else(|| {
                Error::new(
                    Code::InvalidConfig,
                    format!(
                        "ipFamilies asks for IPv4, but node {} has no IPv4 pod prefix (its agent \
                         runs IPv6 only): start the agent with [ipv4] cluster_prefix or \
                         --ipv4-cluster-prefix, or remove IPv4 from ipFamilies",
                        node.router_id
                    ),
                )
            }),
        })
        .collect()
}

/// Return the addresses `runtimeConfig.ips` asks for (the `ips`
/// capability): at most one per family the pod gets. Anything else is an
/// error that names it, never silently dropped.
fn requested_addrs(conf: &NetConf, prefixes: &[IpNet]) -> Result<Vec<IpAddr>> {
    let mut out: Vec<IpAddr> = Vec::new();
    for entry in conf.requested_ips()? {
        let bare = entry.split_once('/').map_or(entry.as_str(), |(a, _)| a);
        let a = bare.parse::<IpAddr>().map_err(|_| {
            Error::new(
                Code::InvalidConfig,
                format!("runtimeConfig.ips: {entry:?} is not an address"),
            )
        })?;
        let family = if a.is_ipv4() { "IPv4" } else { "IPv6" };
        if !prefixes.iter().any(|p| p.addr().is_ipv4() == a.is_ipv4()) {
            return Err(Error::new(
                Code::UnsupportedField,
                format!("runtimeConfig.ips: {entry} is {family}, and this pod gets no {family}"),
            ));
        }
        if let Some(first) = out.iter().find(|o| o.is_ipv4() == a.is_ipv4()) {
            return Err(Error::new(
                Code::UnsupportedField,
                format!(
                    "runtimeConfig.ips: cannot honour {entry} as well as {first}: a kubermesh pod \
                     has one {family} address"
                ),
            ));
        }
        out.push(a);
    }
    Ok(out)
}

/// ADD: wire a pod and return its result (merged into `prevResult`).
pub fn add(env: &Env, conf: &NetConf) -> Result<CniResult> {
    let node = node::read(&conf.state_file)?;
    let agent_attaches = node.pod_attach == PodAttach::Agent;
    let netns_path = env
        .netns
        .clone()
        .expect("Env::parse requires CNI_NETNS for ADD");
    let ns = wiring::open_netns(&netns_path)?;
    let mut pod = wiring::netlink_in(&ns)?;
    wiring::ensure_ifname_free(&mut pod, &env.ifname, &netns_path)?;
    let prefixes = pod_prefixes(conf, &node)?;
    let requested = requested_addrs(conf, &prefixes)?;
    let pod_mac = conf.requested_mac()?;
    let mtu = conf.mtu.unwrap_or(node.mtu);
    let fast_path = conf.fast_path();
    let mut endpoints = if fast_path {
        Some(Endpoints::open_or_create(&node.bpffs)?)
    } else {
        None
    };
    let mut host = wiring::netlink_host()?;

    let holder = Allocation {
        container_id: env.container_id.clone(),
        ifname: env.ifname.clone(),
        pod_name: env.args.k8s_pod_name.clone(),
        pod_namespace: env.args.k8s_pod_namespace.clone(),
        pod_uid: env.args.k8s_pod_uid.clone(),
    };
    let store = Store::open(&conf.data_dir, &conf.name)?;
    let reserved = node.node_addresses();
    let release = |store: &Store, addrs: &[IpAddr]| {
        if let Ok(l) = store.lock() {
            for a in addrs {
                let _ = l.release(*a);
            }
        }
    };

    let plan = Plan {
        container_id: &env.container_id,
        ifname: &env.ifname,
        netns: &ns,
        mtu,
        pod_mac,
        fast_path,
    };
    // Attaching with TCX waits out an RCU grace period, the longest step of
    // an ADD. The agent does it when it can (it sees the veth appear);
    // else it runs here, on a second thread from the moment the veth
    // exists, while the address is allocated and both ends are configured.
    let mut allocated = Vec::new();
    let (wired, attached) = std::thread::scope(|s| {
        let mut attaching = None;
        let wired = wiring::wire(&mut host, &mut pod, &plan, |host_name| {
            if fast_path && !agent_attaches {
                let (bpffs, name) = (&node.bpffs, host_name.to_owned());
                attaching = Some(s.spawn(move || fastpath::attach(bpffs, &name)));
            }
            let addrs = store
                .lock()?
                .allocate_all(&prefixes, &holder, &requested, &reserved)?;
            allocated.clone_from(&addrs);
            Ok(addrs)
        });
        let attached = attaching.map(|t| {
            t.join().unwrap_or_else(|_| {
                Err(Error::new(
                    Code::Ebpf,
                    "the fast-path attach thread panicked",
                ))
            })
        });
        (wired, attached)
    });
    let wired = match wired {
        Ok(w) => w,
        Err(e) => {
            // The veth is gone with its TCX link; only the pin is left.
            fastpath::detach(
                &node.bpffs,
                &wiring::host_veth_name(&env.container_id, &env.ifname),
            );
            release(&store, &allocated);
            return Err(e);
        }
    };
    let addrs = wired.addrs.clone();
    let registered = (|| {
        attached.transpose()?;
        if let Some(eps) = &mut endpoints {
            let ep = Endpoint {
                ifindex: wired.host_index,
                flags: 0,
                host_mac: wired.host_mac,
                pod_mac: wired.pod_mac,
            };
            for &addr in &addrs {
                eps.insert(addr, ep)?;
            }
        }
        Ok(())
    })();
    if let Err(e) = registered {
        if let Some(eps) = &mut endpoints {
            for &addr in &addrs {
                let _ = eps.remove(addr);
            }
        }
        fastpath::detach(&node.bpffs, &wired.host_name);
        let _ = wiring::unwire(&mut host, &env.container_id, &env.ifname);
        release(&store, &addrs);
        return Err(e);
    }

    let ours = CniResult {
        interfaces: vec![
            Interface {
                name: wired.host_name.clone(),
                mac: dataplane::netlink::Mac(wired.host_mac).to_string(),
                mtu: Some(wired.mtu),
                ..Default::default()
            },
            Interface {
                name: env.ifname.clone(),
                mac: dataplane::netlink::Mac(wired.pod_mac).to_string(),
                mtu: Some(wired.mtu),
                sandbox: netns_path.display().to_string(),
                ..Default::default()
            },
        ],
        ips: addrs
            .iter()
            .map(|&addr| IpConfig {
                address: host_net(addr).to_string(),
                gateway: Some(gateway_of(addr).to_string()),
                interface: Some(1),
                ..Default::default()
            })
            .collect(),
        routes: addrs
            .iter()
            .map(|&addr| Route {
                dst: default_route(addr).to_string(),
                gw: Some(gateway_of(addr).to_string()),
                ..Default::default()
            })
            .collect(),
        dns: conf.dns.clone(),
    };
    Ok(match conf.prev_result.clone() {
        Some(mut prev) => {
            prev.append(ours);
            prev
        }
        None => ours,
    })
}

/// Return the bpffs directory: the node's if the state file is readable,
/// else the default (DEL and GC must work after the agent is gone).
fn bpffs_of(conf: &NetConf) -> PathBuf {
    node::read(&conf.state_file)
        .map(|n| n.bpffs)
        .unwrap_or_else(|_| PathBuf::from(meshfwd_common::pin::DEFAULT_DIR))
}

/// Remove everything of one attachment except its store record.
fn teardown(
    host: &mut crate::netlink::Netlink,
    bpffs: &std::path::Path,
    holder: &Allocation,
    addrs: &[IpAddr],
) -> Result<()> {
    fastpath::detach(
        bpffs,
        &wiring::host_veth_name(&holder.container_id, &holder.ifname),
    );
    wiring::unwire(host, &holder.container_id, &holder.ifname)?;
    if !addrs.is_empty()
        && let Some(mut eps) = Endpoints::open(bpffs)?
    {
        for &addr in addrs {
            eps.remove(addr)?;
        }
    }
    Ok(())
}

/// DEL: undo ADD. Succeeds when the netns, the veth or the allocation is
/// already gone, so it can be repeated (runtimes do).
pub fn del(env: &Env, conf: &NetConf) -> Result<()> {
    let bpffs = bpffs_of(conf);
    let mut host = wiring::netlink_host()?;
    let holder = Allocation {
        container_id: env.container_id.clone(),
        ifname: env.ifname.clone(),
        ..Default::default()
    };
    let Some(store) = Store::existing(&conf.data_dir, &conf.name) else {
        return teardown(&mut host, &bpffs, &holder, &[]);
    };
    let locked = store.lock()?;
    let addrs = locked.find(&env.container_id, &env.ifname)?;
    teardown(&mut host, &bpffs, &holder, &addrs)?;
    for addr in addrs {
        locked.release(addr)?;
    }
    Ok(())
}

/// CHECK: verify the attachment is still as ADD left it.
pub fn check(env: &Env, conf: &NetConf) -> Result<()> {
    let fail = |m: String| Error::new(Code::CheckFailed, m);
    let prev = conf.prev_result.as_ref().ok_or_else(|| {
        Error::new(
            Code::InvalidConfig,
            "CHECK needs prevResult (the result of ADD) in the configuration",
        )
    })?;
    let node = node::read(&conf.state_file)?;
    let netns_path = env
        .netns
        .clone()
        .expect("Env::parse requires CNI_NETNS for CHECK");
    let ns = wiring::open_netns(&netns_path)?;
    let addrs = Store::existing(&conf.data_dir, &conf.name)
        .map(|s| s.lock()?.find(&env.container_id, &env.ifname))
        .transpose()?
        .unwrap_or_default();
    if addrs.is_empty() {
        return Err(fail(format!(
            "no address is allocated to {}/{}",
            env.container_id, env.ifname
        )));
    }
    for &addr in &addrs {
        let want = host_net(addr).to_string();
        let listed = prev.ips.iter().any(|ip| {
            ip.address == want
                && ip
                    .interface
                    .and_then(|i| prev.interfaces.get(i))
                    .is_none_or(|i| i.name == env.ifname)
        });
        if !listed {
            return Err(fail(format!(
                "prevResult does not list {want} on {}",
                env.ifname
            )));
        }
    }
    let mut pod = wiring::netlink_in(&ns)?;
    let mut host = wiring::netlink_host()?;
    let host_link = wiring::check(&mut host, &mut pod, &env.container_id, &env.ifname, &addrs)?;
    if conf.fast_path() {
        let eps = Endpoints::open(&node.bpffs)?.ok_or_else(|| {
            fail(format!(
                "no endpoint map is pinned under {}",
                node.bpffs.display()
            ))
        })?;
        for &addr in &addrs {
            match eps.get(addr) {
                Some(ep) if ep.ifindex == host_link.ifindex => {}
                Some(ep) => {
                    return Err(fail(format!(
                        "endpoint {addr} points at ifindex {}, not {} ({})",
                        ep.ifindex, host_link.ifindex, host_link.name
                    )));
                }
                None => {
                    return Err(fail(format!(
                        "endpoint {addr} is missing from the endpoint map"
                    )));
                }
            }
        }
        // The agent attaches a few milliseconds after ADD: give it a moment
        // before calling a missing link a failure.
        let patience = if node.pod_attach == PodAttach::Agent {
            std::time::Duration::from_secs(2)
        } else {
            std::time::Duration::ZERO
        };
        let by = std::time::Instant::now() + patience;
        while let Err(e) = fastpath::check(&node.bpffs, &host_link.name) {
            if std::time::Instant::now() >= by {
                return Err(e);
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
    Ok(())
}

/// GC: release every allocation (and its veth, endpoint, fast-path link)
/// whose attachment is not in `cni.dev/valid-attachments`.
pub fn gc(conf: &NetConf) -> Result<()> {
    let valid: HashSet<(String, String)> = conf
        .valid_attachments
        .as_ref()
        .ok_or_else(|| {
            Error::new(
                Code::InvalidConfig,
                "GC needs cni.dev/valid-attachments in the configuration",
            )
        })?
        .iter()
        .map(|a| (a.container_id.clone(), a.ifname.clone()))
        .collect();
    let Some(store) = Store::existing(&conf.data_dir, &conf.name) else {
        return Ok(());
    };
    let bpffs = bpffs_of(conf);
    let mut host = wiring::netlink_host()?;
    let locked = store.lock()?;
    let list = locked.list()?;
    for (addr, holder) in &list {
        let keep = holder
            .as_ref()
            .is_some_and(|h| valid.contains(&(h.container_id.clone(), h.ifname.clone())));
        if keep {
            continue;
        }
        if let Some(h) = holder {
            // A dual-stack attachment's other address comes round in its
            // turn: tearing down twice is harmless.
            teardown(&mut host, &bpffs, h, &[*addr])?;
        } else if let Some(mut eps) = Endpoints::open(&bpffs)? {
            eps.remove(*addr)?;
        }
        locked.release(*addr)?;
    }
    // Endpoint entries in our prefixes with no allocation behind them (a
    // store wiped by hand, a crash between steps) point at nothing.
    if let Ok(node) = node::read(&conf.state_file)
        && let Some(mut eps) = Endpoints::open(&bpffs)?
    {
        let held = locked.used()?;
        let ours = node.pod_prefixes();
        for a in eps.addrs() {
            if ours.iter().any(|p| p.contains(&a)) && !held.contains(&a) {
                eps.remove(a)?;
            }
        }
    }
    Ok(())
}

/// STATUS: can the plugin set up new pods right now?
pub fn status(conf: &NetConf) -> Result<()> {
    let node = node::read(&conf.state_file).map_err(|e| {
        Error::new(
            Code::NotAvailable,
            format!("plugin not available: {}", e.msg),
        )
        .details(e.details)
    })?;
    let prefixes = pod_prefixes(conf, &node).map_err(|e| {
        Error::new(
            Code::NotAvailable,
            format!("plugin not available: {}", e.msg),
        )
    })?;
    let Some(store) = Store::existing(&conf.data_dir, &conf.name) else {
        return Ok(());
    };
    let held = store.lock()?.used()?;
    for prefix in &prefixes {
        let family = |a: &IpAddr| a.is_ipv4() == prefix.addr().is_ipv4();
        let outside: Vec<_> = held
            .iter()
            .filter(|a| family(a) && !prefix.contains(*a))
            .collect();
        if !outside.is_empty() {
            return Err(Error::new(
                Code::LimitedConnectivity,
                format!(
                    "the node's pod prefix moved to {prefix}; {} pods still hold addresses outside it (first: {})",
                    outside.len(),
                    outside[0]
                ),
            ));
        }
        let inside = held.iter().filter(|a| family(a)).count();
        if inside as u128 >= ipam::capacity(prefix) {
            return Err(Error::new(
                Code::NotAvailable,
                format!("plugin not available: pod prefix {prefix} is full ({inside} pods)"),
            ));
        }
    }
    Ok(())
}
