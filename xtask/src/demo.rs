//! `cargo xtask demo`: a lab mesh in network namespaces with the XDP program
//! on every mesh interface, counting the real traffic that crosses it.

use std::{path::Path, time::Duration};

use anyhow::{Context as _, Result, bail};
use lab::{Lab, Topology, Wire};

use crate::cargo::build_bin;

#[derive(Debug, clap::Args)]
pub struct Options {
    /// Number of nodes in the generated partial mesh (degree 2-5).
    #[arg(long, default_value_t = 6)]
    nodes: usize,
    /// Seed of the generated mesh (same seed, same topology).
    #[arg(long, default_value_t = 7)]
    seed: u64,
    /// Pings per link and direction.
    #[arg(long, default_value_t = 5)]
    pings: u32,
    /// Keep the lab running until Ctrl-C instead of tearing it down.
    #[arg(long)]
    keep: bool,
}

/// Build the lab, attach XDP everywhere, send traffic, show the counters.
pub fn run(opts: &Options) -> Result<()> {
    if !(3..=64).contains(&opts.nodes) {
        bail!("--nodes must be between 3 and 64 (got {})", opts.nodes);
    }
    if opts.pings == 0 || opts.pings > 1000 {
        bail!("--pings must be between 1 and 1000 (got {})", opts.pings);
    }
    progress("building meshfwd");
    let meshfwd = build_bin("meshfwd", "meshfwd", false)?;

    let topo = Topology::partial_mesh(opts.nodes, opts.seed, Wire::Cable);
    progress(&format!(
        "building a partial mesh of {} nodes and {} links in network namespaces",
        topo.nodes.len(),
        topo.links.len()
    ));
    let lab = Lab::build("demo", &topo)?;

    progress("attaching the XDP program to every mesh interface");
    let mut attachments = 0;
    for node in lab.nodes() {
        for iface in node.ifaces() {
            meshfwd_cmd(node, &meshfwd, &["attach", "--iface", &iface])?;
            attachments += 1;
        }
    }

    progress(&format!(
        "pinging each neighbour's link-local address, {} times per direction",
        opts.pings
    ));
    let mut sent = 0;
    for link in lab.links() {
        for (from, from_if, to, to_if) in [
            (&link.a, &link.a_if, &link.b, &link.b_if),
            (&link.b, &link.b_if, &link.a, &link.a_if),
        ] {
            let target = lab.node(to).link_local(to_if)?;
            let count = opts.pings.to_string();
            let dest = format!("{target}%{from_if}");
            lab.node(from)
                .run(&[
                    "ping", "-6", "-q", "-c", &count, "-i", "0.05", "-W", "2", &dest,
                ])
                .with_context(|| format!("{from} could not reach {to} over {from_if}"))?;
            println!("    {from:>4} -> {to:<4} over {from_if:<10} {count} replies");
            sent += opts.pings;
        }
    }

    progress("XDP counters per node, read from the pinned maps with `meshfwd show stats --json`");
    println!(
        "    {:<6} {:>8} {:>8} {:>10} {:>8}",
        "node", "rx", "ipv6", "non-ipv6", "pass"
    );
    let mut total = 0;
    for node in lab.nodes() {
        let json = meshfwd_cmd(node, &meshfwd, &["show", "stats", "--json"])?;
        let stats: serde_json::Value = serde_json::from_str(&json).context("parsing stats JSON")?;
        let c = &stats["counters"];
        let get = |k: &str| c[k].as_u64().unwrap_or(0);
        println!(
            "    {:<6} {:>8} {:>8} {:>10} {:>8}",
            node.name(),
            get("rx"),
            get("ipv6"),
            get("non_ipv6"),
            get("pass")
        );
        total += get("rx");
    }
    if total < u64::from(sent) * 2 {
        bail!(
            "the XDP program counted {total} frames, fewer than the {sent} echo requests and replies sent"
        );
    }
    println!(
        "summary: {} nodes, {} links, XDP on {attachments} interfaces; {sent} pings answered; \
         XDP counted {total} frames (echo requests and replies plus neighbour discovery)",
        topo.nodes.len(),
        topo.links.len()
    );

    if opts.keep {
        println!(
            "lab kept running; inspect it with `ip netns list`. Press Ctrl-C to tear it down."
        );
        loop {
            std::thread::sleep(Duration::from_secs(3600));
        }
    }
    progress("tearing the lab down");
    drop(lab);
    Ok(())
}

fn meshfwd_cmd(node: &lab::Node, meshfwd: &Path, args: &[&str]) -> Result<String> {
    let bpffs = node.bpffs_dir();
    let out = node
        .cmd(meshfwd.to_str().context("meshfwd path is not UTF-8")?)
        .arg("--bpffs")
        .arg(&bpffs)
        .args(args)
        .output()
        .context("running meshfwd")?;
    if !out.status.success() {
        bail!(
            "`meshfwd {}` on {} failed: {}",
            args.join(" "),
            node.name(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn progress(what: &str) {
    println!("==> {what}");
}
