//! The on-disk allocation store.
//!
//! ```text
//! <dataDir>/<network>/
//!   lock                 flock(2)-ed for every read-modify-write
//!   last_reserved        the IPv6 address handed out last (round robin)
//!   last_reserved_ipv4   the IPv4 one
//!   fd42:1:2:3::7        one file per allocated address: who holds it (JSON)
//!   198.18.7.5           (an IPv4 address, the same way)
//! ```
//!
//! A dual-stack pod holds one address of each family under one lock; if
//! the second cannot be had, the first is given back before the lock is
//! released, so no pod is left with half its addresses.
//!
//! An address file is created with `O_EXCL` and synced before the plugin
//! reports success, so an allocation survives a crash or a reboot. A file
//! that cannot be read (torn by a crash) still counts as taken: the store
//! errs towards leaking an address until GC, never towards handing it to
//! two pods.

use std::collections::BTreeSet;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};

use crate::spec::{Code, Context as _, Error, Result};
use ipnet::IpNet;

/// How long to wait for the lock before answering "try again later".
pub const LOCK_TIMEOUT: Duration = Duration::from_secs(20);
const LOCK_POLL: Duration = Duration::from_millis(2);
const LOCK_FILE: &str = "lock";
/// The round-robin hint of each family (the IPv6 name predates IPv4).
fn last_file(prefix: &IpNet) -> &'static str {
    match prefix {
        IpNet::V6(_) => "last_reserved",
        IpNet::V4(_) => "last_reserved_ipv4",
    }
}

/// Who holds an address.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Allocation {
    #[serde(rename = "containerID")]
    pub container_id: String,
    pub ifname: String,
    #[serde(rename = "podName", default, skip_serializing_if = "Option::is_none")]
    pub pod_name: Option<String>,
    #[serde(
        rename = "podNamespace",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub pod_namespace: Option<String>,
    #[serde(rename = "podUID", default, skip_serializing_if = "Option::is_none")]
    pub pod_uid: Option<String>,
}

impl Allocation {
    /// Return whether this is the attachment `(container_id, ifname)`.
    pub fn is(&self, container_id: &str, ifname: &str) -> bool {
        self.container_id == container_id && self.ifname == ifname
    }
}

/// The store of one network.
pub struct Store {
    dir: PathBuf,
}

/// The store with its lock held; dropping it releases the lock.
pub struct Locked<'a> {
    store: &'a Store,
    _lock: Flock<File>,
}

impl Store {
    /// Open (creating) the store of network `name` under `data_dir`.
    pub fn open(data_dir: &Path, name: &str) -> Result<Self> {
        let dir = data_dir.join(name);
        fs::create_dir_all(&dir).cni(Code::Io, || {
            format!("creating the IPAM store {}", dir.display())
        })?;
        Ok(Store { dir })
    }

    /// Open the store only if it exists (DEL and GC must not create it).
    pub fn existing(data_dir: &Path, name: &str) -> Option<Self> {
        let dir = data_dir.join(name);
        dir.is_dir().then_some(Store { dir })
    }

    /// Return the store's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Take the lock, waiting at most [`LOCK_TIMEOUT`].
    pub fn lock(&self) -> Result<Locked<'_>> {
        let path = self.dir.join(LOCK_FILE);
        let mut file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .cni(Code::Io, || {
                format!("opening the IPAM lock {}", path.display())
            })?;
        let deadline = Instant::now() + LOCK_TIMEOUT;
        loop {
            match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
                Ok(lock) => {
                    return Ok(Locked {
                        store: self,
                        _lock: lock,
                    });
                }
                Err((f, nix::errno::Errno::EWOULDBLOCK)) if Instant::now() < deadline => {
                    file = f;
                    std::thread::sleep(LOCK_POLL);
                }
                Err((_, e)) => {
                    return Err(Error::new(
                        Code::TryAgainLater,
                        format!(
                            "the IPAM store {} stayed locked for {LOCK_TIMEOUT:?}",
                            self.dir.display()
                        ),
                    )
                    .details(e));
                }
            }
        }
    }
}

impl Locked<'_> {
    /// Return every allocation (unreadable files as holder `None`).
    pub fn list(&self) -> Result<Vec<(IpAddr, Option<Allocation>)>> {
        let dir = &self.store.dir;
        let entries = fs::read_dir(dir).cni(Code::Io, || format!("listing {}", dir.display()))?;
        let mut out = Vec::new();
        for entry in entries.flatten() {
            let Some(addr) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<IpAddr>().ok())
            else {
                continue;
            };
            let holder = fs::read(entry.path())
                .ok()
                .and_then(|b| serde_json::from_slice(&b).ok());
            out.push((addr, holder));
        }
        out.sort_by_key(|(a, _)| *a);
        Ok(out)
    }

    /// Return the addresses taken.
    pub fn used(&self) -> Result<BTreeSet<IpAddr>> {
        Ok(self.list()?.into_iter().map(|(a, _)| a).collect())
    }

    /// Return the addresses held by attachment `(container_id, ifname)`,
    /// IPv6 first.
    pub fn find(&self, container_id: &str, ifname: &str) -> Result<Vec<IpAddr>> {
        let mut found: Vec<IpAddr> = self
            .list()?
            .into_iter()
            .filter(|(_, h)| h.as_ref().is_some_and(|h| h.is(container_id, ifname)))
            .map(|(a, _)| a)
            .collect();
        found.sort_by_key(|a| (a.is_ipv4(), *a));
        Ok(found)
    }

    /// Allocate one address from each of `prefixes` for `holder` (see
    /// [`Locked::allocate`]), taking each from `requested` when it names
    /// one of that family. All or nothing: on an error, every address this
    /// call recorded is released again.
    pub fn allocate_all(
        &self,
        prefixes: &[IpNet],
        holder: &Allocation,
        requested: &[IpAddr],
        reserved: &[IpAddr],
    ) -> Result<Vec<IpAddr>> {
        let held = self.find(&holder.container_id, &holder.ifname)?;
        let mut got = Vec::with_capacity(prefixes.len());
        for prefix in prefixes {
            let want = requested
                .iter()
                .copied()
                .find(|r| r.is_ipv4() == matches!(prefix, IpNet::V4(_)));
            match self.allocate(prefix, holder, want, reserved) {
                Ok(a) => got.push(a),
                Err(e) => {
                    for a in got.iter().filter(|a| !held.contains(a)) {
                        let _ = self.release(*a);
                    }
                    return Err(e);
                }
            }
        }
        Ok(got)
    }

    /// Allocate for `holder`: its existing address if it already has one
    /// (a retried ADD), else `requested`, else the next free address that
    /// is not in `reserved` (the node's own address). Exhaustion is code
    /// 100 and writes nothing.
    pub fn allocate(
        &self,
        prefix: &IpNet,
        holder: &Allocation,
        requested: Option<IpAddr>,
        reserved: &[IpAddr],
    ) -> Result<IpAddr> {
        let list = self.list()?;
        if let Some((a, _)) = list.iter().find(|(a, h)| {
            prefix.contains(a)
                && h.as_ref()
                    .is_some_and(|h| h.is(&holder.container_id, &holder.ifname))
        }) {
            return Ok(*a);
        }
        let mut used: BTreeSet<IpAddr> = list.iter().map(|(a, _)| *a).collect();
        used.extend(reserved.iter().filter(|a| prefix.contains(*a)));
        let addr = match requested {
            Some(r) => {
                super::check_requested(prefix, r).map_err(|why| {
                    Error::new(Code::InvalidConfig, format!("runtimeConfig.ips: {why}"))
                })?;
                if used.contains(&r) {
                    return Err(Error::new(
                        Code::InvalidConfig,
                        format!(
                            "runtimeConfig.ips: {r} is already in use (another pod or the node)"
                        ),
                    ));
                }
                r
            }
            None => {
                let last = fs::read_to_string(self.store.dir.join(last_file(prefix)))
                    .ok()
                    .and_then(|s| s.trim().parse().ok());
                let in_prefix = list.iter().filter(|(a, _)| prefix.contains(a)).count();
                super::pick(prefix, &used, last).ok_or_else(|| {
                    Error::new(
                        Code::PoolExhausted,
                        format!(
                            "no free address in pod prefix {prefix}: all {} addresses are allocated \
                             ({in_prefix} pods); delete pods or give the node a larger prefix",
                            super::capacity(prefix)
                        ),
                    )
                })?
            }
        };
        self.write(addr, holder)?;
        // Round-robin hint only: losing it just restarts the scan.
        let _ = fs::write(self.store.dir.join(last_file(prefix)), addr.to_string());
        Ok(addr)
    }

    fn write(&self, addr: IpAddr, holder: &Allocation) -> Result<()> {
        let path = self.store.dir.join(addr.to_string());
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .cni(Code::Io, || {
                format!("recording allocation {}", path.display())
            })?;
        let body = serde_json::to_vec(holder).unwrap_or_default();
        let written = f.write_all(&body).and_then(|()| f.sync_all());
        if let Err(e) = written {
            // A torn record still reserves the address; remove it since we
            // are about to report failure and nobody holds it.
            let _ = fs::remove_file(&path);
            return Err(
                Error::new(Code::Io, format!("recording allocation {}", path.display())).details(e),
            );
        }
        Ok(())
    }

    /// Release an address; releasing a free one is not an error.
    pub fn release(&self, addr: IpAddr) -> Result<()> {
        let path = self.store.dir.join(addr.to_string());
        match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::new(Code::Io, format!("releasing {}", path.display())).details(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("km-ipam-unit-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        d
    }

    fn holder(cid: &str) -> Allocation {
        Allocation {
            container_id: cid.into(),
            ifname: "eth0".into(),
            ..Default::default()
        }
    }

    #[test]
    fn allocate_release_exhaust() {
        let d = tmp("basic");
        let store = Store::open(&d, "net").unwrap();
        let prefix: IpNet = "fd00:9::/126".parse().unwrap();
        let l = store.lock().unwrap();
        let a = l.allocate(&prefix, &holder("a"), None, &[]).unwrap();
        let b = l.allocate(&prefix, &holder("b"), None, &[]).unwrap();
        assert_eq!(
            (a.to_string().as_str(), b.to_string().as_str()),
            ("fd00:9::2", "fd00:9::3")
        );
        // Retried ADD: same address.
        assert_eq!(l.allocate(&prefix, &holder("a"), None, &[]).unwrap(), a);
        let e = l.allocate(&prefix, &holder("c"), None, &[]).unwrap_err();
        assert_eq!(e.code, Code::PoolExhausted);
        assert_eq!(l.used().unwrap().len(), 2);
        assert_eq!(l.find("b", "eth0").unwrap(), [b]);
        l.release(b).unwrap();
        l.release(b).unwrap();
        assert!(l.find("b", "eth0").unwrap().is_empty());
        let c = l.allocate(&prefix, &holder("c"), None, &[]).unwrap();
        assert_eq!(c, b);
        drop(l);
        // A torn record keeps its address taken.
        fs::write(store.dir().join("fd00:9::2"), b"{garbage").unwrap();
        let l = store.lock().unwrap();
        assert_eq!(
            l.allocate(&prefix, &holder("d"), None, &[])
                .unwrap_err()
                .code,
            Code::PoolExhausted
        );
        drop(l);
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn requested_address() {
        let d = tmp("req");
        let store = Store::open(&d, "net").unwrap();
        let prefix: IpNet = "fd00:9::/64".parse().unwrap();
        let l = store.lock().unwrap();
        let want: IpAddr = "fd00:9::99".parse().unwrap();
        assert_eq!(
            l.allocate(&prefix, &holder("a"), Some(want), &[]).unwrap(),
            want
        );
        assert_eq!(
            l.allocate(&prefix, &holder("b"), Some(want), &[])
                .unwrap_err()
                .code,
            Code::InvalidConfig
        );
        let outside: IpAddr = "fd00:8::9".parse().unwrap();
        assert_eq!(
            l.allocate(&prefix, &holder("c"), Some(outside), &[])
                .unwrap_err()
                .code,
            Code::InvalidConfig
        );
        // The node's own address is never handed out.
        let node_addr: IpAddr = "fd00:9::2".parse().unwrap();
        let next = l
            .allocate(&prefix, &holder("d"), None, &[node_addr])
            .unwrap();
        assert_ne!(next, node_addr);
        drop(l);
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn dual_stack_is_all_or_nothing() {
        let d = tmp("dual");
        let store = Store::open(&d, "net").unwrap();
        let v6: IpNet = "fd00:9::/64".parse().unwrap();
        let v4: IpNet = "198.18.7.0/30".parse().unwrap();
        let l = store.lock().unwrap();
        let both = [v6, v4];
        let a = l.allocate_all(&both, &holder("a"), &[], &[]).unwrap();
        assert_eq!(
            a,
            [
                "fd00:9::2".parse::<IpAddr>().unwrap(),
                "198.18.7.2".parse().unwrap()
            ]
        );
        // Retried ADD: the same pair, nothing more recorded.
        assert_eq!(l.allocate_all(&both, &holder("a"), &[], &[]).unwrap(), a);
        assert_eq!(l.used().unwrap().len(), 2);
        // The IPv4 /30 has one pod address: the next pod gets neither.
        let e = l.allocate_all(&both, &holder("b"), &[], &[]).unwrap_err();
        assert_eq!(e.code, Code::PoolExhausted);
        assert!(e.msg.contains("198.18.7.0/30"), "{}", e.msg);
        assert_eq!(l.used().unwrap().len(), 2);
        assert!(l.find("b", "eth0").unwrap().is_empty());
        // A request picks its family's prefix.
        let want: IpAddr = "fd00:9::77".parse().unwrap();
        let c = l.allocate_all(&[v6], &holder("c"), &[want], &[]).unwrap();
        assert_eq!(c, [want]);
        assert_eq!(l.find("a", "eth0").unwrap(), a);
        drop(l);
        fs::remove_dir_all(&d).unwrap();
    }
}
