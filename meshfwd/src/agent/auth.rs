//! OSPF authentication for the agent (RFC 7166): the key file, checked
//! before anything is touched, and the boot count the sequence numbers
//! start from.
//!
//! A node needs its key before it can reach the API server (the mesh is
//! how it gets there), so the key comes from a file placed on the node:
//!
//! ```toml
//! # /etc/kubermesh/ospf-keys.toml, mode 0600 (or 0400), owned by root
//! [[key]]
//! id = 1                          # the SA ID, 1-65535; BIRD takes up to 255
//! algorithm = "hmac-sha-256"      # hmac-sha-1 | -256 | -384 | -512
//! secret = "..."                  # at most L-2 bytes (30 for SHA-256): see below
//! send_until = "2027-01-01T00:00:00Z"   # RFC 3339; every bound optional
//! accept_until = "2027-01-02T00:00:00Z"
//!
//! [[key]]
//! id = 2
//! secret = "..."
//! send_from = "2027-01-01T00:00:00Z"
//! accept_from = "2026-12-31T00:00:00Z"
//! ```
//!
//! A rollover is two keys whose accept windows overlap: every node accepts
//! the new key before any sends with it, and the old one until every node
//! has moved on. The newest key valid for sending signs.
//!
//! Secrets longer than the digest length minus two bytes are hashed
//! differently by BIRD (RFC 2104) and FRR, so they are refused.

use std::{
    io::Write as _,
    os::unix::fs::PermissionsExt as _,
    path::{Path, PathBuf},
};

use routing::packet::auth::{Algorithm, CpidOrder, Key, KeyChain};
use serde::{Deserialize, Serialize};

/// Where a node's key file is looked for.
pub const DEFAULT_KEY_FILE: &str = "/etc/kubermesh/ospf-keys.toml";
/// Where the boot count is kept.
pub const DEFAULT_BOOT_COUNT_FILE: &str = "/var/lib/kubermesh/ospf-boot-count";

/// The `[ospf.auth]` section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// The key file; `None`: no authentication.
    pub key_file: Option<PathBuf>,
    /// The file the boot count (the sequence numbers' high word) is kept
    /// in across restarts.
    pub boot_count_file: PathBuf,
    /// The protocol id's byte order when signing: `legacy` for neighbours
    /// running FRR before 9.1 (see `routing::packet::auth`).
    pub cpid: CpidOrder,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            key_file: None,
            boot_count_file: DEFAULT_BOOT_COUNT_FILE.into(),
            cpid: CpidOrder::Rfc,
        }
    }
}

/// A key as the file writes it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileKey {
    id: u16,
    #[serde(default = "sha256")]
    algorithm: Algorithm,
    secret: String,
    send_from: Option<String>,
    send_until: Option<String>,
    accept_from: Option<String>,
    accept_until: Option<String>,
}

fn sha256() -> Algorithm {
    Algorithm::HmacSha256
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyFile {
    key: Vec<FileKey>,
}

/// Why the key file cannot be used; the message names the file and the
/// problem.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyFileError {
    #[error("{path}: {reason}")]
    Bad { path: String, reason: String },
}

fn bad(path: &Path, reason: impl std::fmt::Display) -> KeyFileError {
    KeyFileError::Bad {
        path: path.display().to_string(),
        reason: reason.to_string(),
    }
}

/// Read and check the key file: owned by us (root), readable by no one
/// else, at least one key, distinct ids, every secret usable, every time
/// an RFC 3339 time.
pub fn load_keys(path: &Path, cpid: CpidOrder) -> Result<KeyChain, KeyFileError> {
    let meta = std::fs::metadata(path).map_err(|e| bad(path, e))?;
    let mode = meta.permissions().mode();
    if mode & 0o077 != 0 {
        return Err(bad(
            path,
            format!(
                "mode {:04o} lets others read the key; chmod 600 it",
                mode & 0o7777
            ),
        ));
    }
    let uid = nix::unistd::Uid::effective().as_raw();
    if std::os::unix::fs::MetadataExt::uid(&meta) != uid {
        return Err(bad(
            path,
            format!(
                "owned by uid {}, not by us (uid {uid})",
                std::os::unix::fs::MetadataExt::uid(&meta)
            ),
        ));
    }
    let text = std::fs::read_to_string(path).map_err(|e| bad(path, e))?;
    parse_keys(&text, cpid).map_err(|reason| bad(path, reason))
}

/// Parse the key file's text.
pub fn parse_keys(text: &str, cpid: CpidOrder) -> Result<KeyChain, String> {
    let file: KeyFile = toml::from_str(text).map_err(|e| e.message().trim().to_owned())?;
    if file.key.is_empty() {
        return Err("no [[key]]".into());
    }
    let mut keys = Vec::new();
    for (i, k) in file.key.into_iter().enumerate() {
        let at = |field: &str| format!("key[{i}].{field}");
        if k.id == 0 {
            return Err(format!("{}: 0 is not an SA ID", at("id")));
        }
        if keys.iter().any(|o: &Key| o.id == k.id) {
            return Err(format!("{}: {} appears twice", at("id"), k.id));
        }
        let max = k.algorithm.digest_len() - 2;
        if k.secret.is_empty() || k.secret.len() > max {
            return Err(format!(
                "{}: {} bytes; {:?} takes 1 to {max} (longer ones are hashed differently by BIRD and FRR)",
                at("secret"),
                k.secret.len(),
                k.algorithm
            ));
        }
        let time = |field: &str, v: &Option<String>| -> Result<Option<u64>, String> {
            v.as_deref()
                .map(|s| {
                    humantime::parse_rfc3339(s)
                        .map_err(|e| format!("{}: {s:?}: {e}", at(field)))?
                        .duration_since(std::time::UNIX_EPOCH)
                        .map(|d| d.as_secs())
                        .map_err(|_| format!("{}: before 1970", at(field)))
                })
                .transpose()
        };
        keys.push(Key {
            id: k.id,
            algorithm: k.algorithm,
            secret: k.secret.into_bytes(),
            send_from: time("send_from", &k.send_from)?,
            send_until: time("send_until", &k.send_until)?,
            accept_from: time("accept_from", &k.accept_from)?,
            accept_until: time("accept_until", &k.accept_until)?,
        });
    }
    Ok(KeyChain {
        keys,
        send_cpid: cpid,
    })
}

/// Read the boot count, add one and write it back (atomically, synced):
/// the high word of this run's sequence numbers, above every earlier run's.
pub fn next_boot_count(path: &Path) -> std::io::Result<u32> {
    let last = match std::fs::read_to_string(path) {
        Ok(text) => text.trim().parse::<u32>().map_err(|e| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("{}: {e}", path.display()),
            )
        })?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
        Err(e) => return Err(e),
    };
    let next = last.checked_add(1).ok_or_else(|| {
        std::io::Error::other(format!(
            "{}: the boot count is exhausted; change the keys and remove the file",
            path.display()
        ))
    })?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::File::create(&tmp)?;
    writeln!(f, "{next}")?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)?;
    Ok(next)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rollover_file_parses_into_a_chain() {
        let chain = parse_keys(
            r#"
            [[key]]
            id = 1
            secret = "old-secret"
            send_until = "2027-01-01T00:00:00Z"
            accept_until = "2027-01-02T00:00:00Z"
            [[key]]
            id = 2
            algorithm = "hmac-sha-512"
            secret = "new-secret"
            send_from = "2027-01-01T00:00:00Z"
            "#,
            CpidOrder::Legacy,
        )
        .unwrap();
        assert_eq!(chain.keys.len(), 2);
        assert_eq!(chain.keys[0].algorithm, Algorithm::HmacSha256);
        assert_eq!(chain.keys[0].send_until, Some(1_798_761_600));
        assert_eq!(chain.keys[1].send_from, Some(1_798_761_600));
        assert_eq!(chain.send_cpid, CpidOrder::Legacy);
        assert_eq!(chain.send_key(1_798_761_599).map(|k| k.id), Some(1));
        assert_eq!(chain.send_key(1_798_761_600).map(|k| k.id), Some(2));
    }

    #[test]
    fn bad_files_say_what_is_wrong() {
        for (text, says) in [
            ("", "key"),
            ("[[key]]\nid = 1\n", "secret"),
            ("[[key]]\nid = 0\nsecret = \"s\"\n", "key[0].id: 0"),
            (
                "[[key]]\nid = 1\nsecret = \"a\"\n[[key]]\nid = 1\nsecret = \"b\"\n",
                "key[1].id: 1 appears twice",
            ),
            (
                "[[key]]\nid = 1\nsecret = \"0123456789012345678901234567890\"\n",
                "key[0].secret: 31 bytes",
            ),
            (
                "[[key]]\nid = 1\nsecret = \"s\"\nsend_from = \"tomorrow\"\n",
                "key[0].send_from",
            ),
            (
                "[[key]]\nid = 1\nsecret = \"s\"\nalgorithm = \"md5\"\n",
                "md5",
            ),
            (
                "[[key]]\nid = 1\nsecret = \"s\"\ncolor = \"red\"\n",
                "color",
            ),
        ] {
            let e = parse_keys(text, CpidOrder::Rfc).unwrap_err();
            assert!(e.contains(says), "{text:?}: {e}");
        }
    }

    #[test]
    fn the_key_file_must_be_ours_alone() {
        let dir = std::env::temp_dir().join(format!("meshfwd-keys-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("keys.toml");
        std::fs::write(&path, "[[key]]\nid = 1\nsecret = \"s\"\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = load_keys(&path, CpidOrder::Rfc).unwrap_err().to_string();
        assert!(e.contains("mode 0644") && e.contains("keys.toml"), "{e}");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(load_keys(&path, CpidOrder::Rfc).is_ok());
        let missing = load_keys(&dir.join("none.toml"), CpidOrder::Rfc).unwrap_err();
        assert!(missing.to_string().contains("none.toml"), "{missing}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_boot_count_rises_across_runs() {
        let dir = std::env::temp_dir().join(format!("meshfwd-boot-{}", std::process::id()));
        let path = dir.join("count");
        assert_eq!(next_boot_count(&path).unwrap(), 1);
        assert_eq!(next_boot_count(&path).unwrap(), 2);
        std::fs::write(&path, "garbage").unwrap();
        assert!(next_boot_count(&path).is_err(), "never silently restarted");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
