//! What the node's netfilter needs for the fast path's check (see
//! `meshfwd_common::conntrack`), set up once at start:
//!
//! - conntrack must track the node's flows: the check forwards only flows
//!   it finds there. The kernel hooks conntrack into a namespace only once
//!   some rule uses it; kube-proxy's rules do, a bare node has none. The
//!   agent adds a table of its own holding one such rule in a chain that
//!   no hook calls, so it costs no packet anything;
//! - `nf_conntrack_tcp_be_liberal`: conntrack does not see the packets the
//!   fast path carries, so its record of a connection's TCP windows goes
//!   stale, and without this it would call the closing FIN (which the fast
//!   path always leaves to the kernel) out of window: invalid, which
//!   kube-proxy drops. This is kube-proxy's own `--conntrack-tcp-be-liberal`
//!   and what the kernel's flowtable needs for the same reason.
//!
//! Neither is undone on exit: a restarted agent, or an upgrade, finds the
//! node as the last one left it and no flow changes path.

use std::{
    io::Write as _,
    path::Path,
    process::{Command, Stdio},
};

use dataplane::{maps::Netfilter, object};

use super::kernel;
use crate::api::NetfilterInfo;

/// The agent's nftables table.
pub const TABLE: &str = "kubermesh";

/// The nftables script: the table replaced whole, atomically.
fn script() -> String {
    format!(
        "table inet {TABLE}\n\
         delete table inet {TABLE}\n\
         table inet {TABLE} {{\n\
         \tcomment \"kubermesh: keeps conntrack tracking this node's flows for the fast path's check\"\n\
         \tchain conntrack {{\n\
         \t\tct state new\n\
         \t}}\n\
         }}\n"
    )
}

/// Prepare netfilter for `mode`; return what the node has, for `show`.
/// Problems are logged and reported, never fatal: without them the check
/// still never changes what netfilter decides, it only sends more to the
/// kernel.
pub fn prepare(proc_sys: &Path, mode: Netfilter) -> NetfilterInfo {
    let lookups = object::linked().conntrack.clone();
    let mut info = NetfilterInfo {
        mode,
        lookups,
        tracking: None,
        tcp_be_liberal: false,
    };
    if mode == Netfilter::Ignore {
        return info;
    }
    match kernel::set_sysctl(proc_sys, "net/netfilter/nf_conntrack_tcp_be_liberal", "1") {
        Ok(changed) => {
            if changed {
                tracing::info!("net.netfilter.nf_conntrack_tcp_be_liberal set to 1");
            }
            info.tcp_be_liberal = true;
        }
        Err(e) => tracing::warn!(error = %e, "conntrack's TCP window check stays strict"),
    }
    if let Err(e) = nft(&script()) {
        tracing::warn!(
            error = %e,
            "conntrack may not track this node's flows; without it the fast path takes none"
        );
        info.tracking = Some(e);
    }
    info
}

/// Feed `script` to `nft -f -`.
fn nft(script: &str) -> Result<(), String> {
    let mut child = Command::new("nft")
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("running nft: {e}"))?;
    child
        .stdin
        .take()
        .expect("stdin was piped")
        .write_all(script.as_bytes())
        .map_err(|e| format!("writing to nft: {e}"))?;
    let out = child
        .wait_with_output()
        .map_err(|e| format!("waiting for nft: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "nft refused the table: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_is_replaced_whole_and_hooks_nothing() {
        let s = script();
        assert!(s.starts_with("table inet kubermesh\ndelete table inet kubermesh\n"));
        assert!(!s.contains("hook"), "a base chain would cost every packet");
        assert!(s.contains("ct state new"));
    }
}
