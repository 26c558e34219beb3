//! What a planned restart leaves for the next agent (RFC 3623 §2.1: the
//! end of the grace period survives the restart): a small JSON file beside
//! the node state file, written on the way out, read and removed at start.
//! Interface ids need no record (they are the kernel's ifindexes, which a
//! process restart keeps), nor do LSA ids (the node's prefixes share one
//! Intra-Area-Prefix-LSA, id 0).

use std::{
    path::{Path, PathBuf},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use routing::packet::lsa::grace::RestartReason;
use serde::{Deserialize, Serialize};

/// The record of a planned restart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct GraceRecord {
    /// When the neighbours stop helping (Unix time, milliseconds).
    pub deadline_unix_ms: u64,
}

/// Where the record lives: beside the state file, named after it
/// (`node.json` -> `node.graceful-restart.json`).
pub fn record_path(state_file: &Path) -> PathBuf {
    state_file.with_extension("graceful-restart.json")
}

fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Record that a restart with `period` seconds of grace starts now.
pub fn write(path: &Path, period: u32) -> std::io::Result<()> {
    let rec = GraceRecord {
        deadline_unix_ms: unix_ms(SystemTime::now()) + u64::from(period) * 1000,
    };
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, serde_json::to_vec(&rec)?)?;
    std::fs::rename(&tmp, path)
}

/// How this start restarts, given whether an earlier run left routes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// A fresh start: nothing to restore.
    Fresh,
    /// A restart with this many seconds of grace, and the reason the
    /// Grace-LSAs give: a software restart when the earlier run stopped on
    /// purpose (it left a record), unknown after a crash.
    Graceful(u32, RestartReason),
    /// A planned restart whose grace period ran out while we were gone:
    /// the neighbours have routed around us already.
    Late,
}

/// Read and remove the record, and decide how this start restarts: a
/// planned restart has what is left of its period, an unplanned one (an
/// earlier run's routes, no record) the whole `period`.
pub fn take(path: &Path, earlier_run: bool, period: u32) -> Start {
    let record: Option<GraceRecord> = std::fs::read(path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok());
    let _ = std::fs::remove_file(path);
    decide(record, earlier_run, period, unix_ms(SystemTime::now()))
}

fn decide(record: Option<GraceRecord>, earlier_run: bool, period: u32, now_ms: u64) -> Start {
    if !earlier_run {
        return Start::Fresh;
    }
    match record {
        None => Start::Graceful(period, RestartReason::Unknown),
        Some(r) if r.deadline_unix_ms <= now_ms => Start::Late,
        Some(r) => {
            let left = Duration::from_millis(r.deadline_unix_ms - now_ms);
            Start::Graceful(
                u32::try_from(left.as_secs().max(1))
                    .unwrap_or(period)
                    .min(period),
                RestartReason::SoftwareRestart,
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_planned_restart_keeps_what_is_left_of_its_period() {
        let rec = |deadline| {
            Some(GraceRecord {
                deadline_unix_ms: deadline,
            })
        };
        assert_eq!(decide(None, false, 60, 0), Start::Fresh);
        assert_eq!(decide(rec(10_000), false, 60, 0), Start::Fresh);
        let (crash, planned) = (RestartReason::Unknown, RestartReason::SoftwareRestart);
        assert_eq!(decide(None, true, 60, 5_000), Start::Graceful(60, crash));
        assert_eq!(
            decide(rec(50_000), true, 60, 5_000),
            Start::Graceful(45, planned)
        );
        assert_eq!(decide(rec(5_000), true, 60, 5_000), Start::Late);
        assert_eq!(
            decide(rec(5_500), true, 60, 5_000),
            Start::Graceful(1, planned)
        );
    }

    #[test]
    fn the_record_is_read_once() {
        let dir = std::env::temp_dir().join(format!("meshfwd-gr-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = record_path(&dir.join("node.json"));
        write(&path, 30).unwrap();
        assert!(matches!(
            take(&path, true, 60),
            Start::Graceful(29..=30, RestartReason::SoftwareRestart)
        ));
        assert!(!path.exists());
        assert_eq!(
            take(&path, true, 60),
            Start::Graceful(60, RestartReason::Unknown),
            "no record: unplanned"
        );
        std::fs::write(&path, b"{garbage").unwrap();
        assert_eq!(
            take(&path, true, 60),
            Start::Graceful(60, RestartReason::Unknown),
            "a bad record counts as none"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
