//! The `CNI_*` environment variables (CNI spec 1.1, "Parameters") and the
//! `CNI_ARGS` key/value list.
//!
//! Each verb needs a different subset; a missing or malformed one is error
//! code 4 naming the variable. Parsing is pure (the environment comes in as
//! a lookup function) so every rule is unit-tested.

use std::path::PathBuf;

use super::error::{Code, Error, Result};

/// The verb in `CNI_COMMAND`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Command {
    Add,
    Del,
    Check,
    Status,
    Gc,
    Version,
}

impl Command {
    fn parse(s: &str) -> Result<Self> {
        Ok(match s {
            "ADD" => Command::Add,
            "DEL" => Command::Del,
            "CHECK" => Command::Check,
            "STATUS" => Command::Status,
            "GC" => Command::Gc,
            "VERSION" => Command::Version,
            other => {
                return Err(Error::new(
                    Code::InvalidEnv,
                    format!(
                        "CNI_COMMAND {other:?} is not one of ADD, DEL, CHECK, STATUS, GC, VERSION"
                    ),
                ));
            }
        })
    }

    /// Return whether the verb works on one attachment (container + ifname).
    pub const fn is_attachment(self) -> bool {
        matches!(self, Command::Add | Command::Del | Command::Check)
    }
}

/// Kubernetes' keys in `CNI_ARGS`, as kubelet and the CRI runtimes set them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CniArgs {
    pub k8s_pod_name: Option<String>,
    pub k8s_pod_namespace: Option<String>,
    pub k8s_pod_uid: Option<String>,
    pub k8s_pod_infra_container_id: Option<String>,
}

impl CniArgs {
    /// Parse `K1=V1;K2=V2`. Unknown keys are an error unless
    /// `IgnoreUnknown` is true (libcni's convention; kubelet always sets it).
    pub fn parse(s: &str) -> Result<Self> {
        let mut args = CniArgs::default();
        let mut unknown = Vec::new();
        let mut ignore_unknown = false;
        for pair in s.split(';').filter(|p| !p.is_empty()) {
            let Some((key, value)) = pair.split_once('=') else {
                return Err(Error::new(
                    Code::InvalidEnv,
                    format!("CNI_ARGS: {pair:?} is not KEY=VALUE"),
                ));
            };
            let value = value.to_owned();
            match key {
                "IgnoreUnknown" => {
                    ignore_unknown = match value.to_ascii_lowercase().as_str() {
                        "1" | "true" => true,
                        "0" | "false" => false,
                        _ => {
                            return Err(Error::new(
                                Code::InvalidEnv,
                                format!("CNI_ARGS: IgnoreUnknown={value:?} is not a boolean"),
                            ));
                        }
                    }
                }
                "K8S_POD_NAME" => args.k8s_pod_name = Some(value),
                "K8S_POD_NAMESPACE" => args.k8s_pod_namespace = Some(value),
                "K8S_POD_UID" => args.k8s_pod_uid = Some(value),
                "K8S_POD_INFRA_CONTAINER_ID" => args.k8s_pod_infra_container_id = Some(value),
                other => unknown.push(other.to_owned()),
            }
        }
        if !unknown.is_empty() && !ignore_unknown {
            return Err(Error::new(
                Code::InvalidEnv,
                format!("CNI_ARGS: unknown keys {unknown:?} (set IgnoreUnknown=1 to allow them)"),
            ));
        }
        Ok(args)
    }
}

/// The environment of one invocation, checked for the verb.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Env {
    pub command: Command,
    /// `CNI_CONTAINERID` (attachment verbs).
    pub container_id: String,
    /// `CNI_NETNS`; `None` when unset or empty (allowed for DEL only).
    pub netns: Option<PathBuf>,
    /// `CNI_IFNAME` (attachment verbs).
    pub ifname: String,
    pub args: CniArgs,
    /// `CNI_PATH`, split on ':'. Kept for completeness: the plugin delegates
    /// nothing, so it never searches it.
    pub path: Vec<PathBuf>,
}

impl Env {
    /// Read and check the variables `CNI_COMMAND` needs.
    pub fn parse(get: impl Fn(&str) -> Option<String>) -> Result<Self> {
        let command = match get("CNI_COMMAND") {
            Some(c) => Command::parse(&c)?,
            None => return Err(Error::new(Code::InvalidEnv, "CNI_COMMAND is not set")),
        };
        let non_empty = |name: &str| get(name).filter(|v| !v.is_empty());
        let mut env = Env {
            command,
            container_id: String::new(),
            netns: None,
            ifname: String::new(),
            args: CniArgs::parse(&get("CNI_ARGS").unwrap_or_default())?,
            path: get("CNI_PATH")
                .map(|p| {
                    p.split(':')
                        .filter(|s| !s.is_empty())
                        .map(PathBuf::from)
                        .collect()
                })
                .unwrap_or_default(),
        };
        if !command.is_attachment() {
            return Ok(env);
        }
        env.container_id = non_empty("CNI_CONTAINERID").ok_or_else(|| {
            Error::new(
                Code::InvalidEnv,
                "CNI_CONTAINERID is not set (required for ADD, DEL, CHECK)",
            )
        })?;
        check_container_id(&env.container_id)?;
        env.ifname = non_empty("CNI_IFNAME").ok_or_else(|| {
            Error::new(
                Code::InvalidEnv,
                "CNI_IFNAME is not set (required for ADD, DEL, CHECK)",
            )
        })?;
        check_ifname(&env.ifname)?;
        env.netns = non_empty("CNI_NETNS").map(PathBuf::from);
        if env.netns.is_none() && command != Command::Del {
            return Err(Error::new(
                Code::InvalidEnv,
                "CNI_NETNS is not set (required for ADD and CHECK)",
            ));
        }
        if let Some(netns) = &env.netns
            && !netns.is_absolute()
        {
            return Err(Error::new(
                Code::InvalidEnv,
                format!("CNI_NETNS {} is not an absolute path", netns.display()),
            ));
        }
        Ok(env)
    }
}

/// Check a container id as the spec words it: an alphanumeric first
/// character, then alphanumerics, `_`, `.` or `-`.
fn check_container_id(id: &str) -> Result<()> {
    let mut chars = id.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric());
    if !first_ok || !chars.all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c)) {
        return Err(Error::new(
            Code::InvalidEnv,
            format!(
                "CNI_CONTAINERID {id:?} is invalid: it must start with a letter or digit and \
                 contain only letters, digits, '_', '.' and '-'"
            ),
        ));
    }
    Ok(())
}

/// Check an interface name the way the kernel does (`dev_valid_name`).
fn check_ifname(name: &str) -> Result<()> {
    let bad = name.len() > 15
        || name == "."
        || name == ".."
        || name
            .chars()
            .any(|c| c == '/' || c == ':' || c.is_whitespace() || c.is_control());
    if bad {
        return Err(Error::new(
            Code::InvalidEnv,
            format!(
                "CNI_IFNAME {name:?} is not a valid interface name (1-15 characters, no '/', ':' \
                 or whitespace)"
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> Result<Env> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Env::parse(|k| map.get(k).cloned())
    }

    const ADD: [(&str, &str); 5] = [
        ("CNI_COMMAND", "ADD"),
        ("CNI_CONTAINERID", "abc123"),
        ("CNI_NETNS", "/run/netns/x"),
        ("CNI_IFNAME", "eth0"),
        ("CNI_PATH", "/opt/cni/bin:/usr/lib/cni"),
    ];

    #[test]
    fn add_ok() {
        let e = env(&ADD).unwrap();
        assert_eq!(e.command, Command::Add);
        assert_eq!(
            e.netns.as_deref(),
            Some(std::path::Path::new("/run/netns/x"))
        );
        assert_eq!(e.path.len(), 2);
    }

    #[test]
    fn missing_and_bad_vars_name_the_variable() {
        let e = env(&[]).unwrap_err();
        assert_eq!(
            (e.code, e.msg.contains("CNI_COMMAND")),
            (Code::InvalidEnv, true)
        );
        let e = env(&[("CNI_COMMAND", "FROB")]).unwrap_err();
        assert!(e.msg.contains("FROB"), "{}", e.msg);
        for drop in ["CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME"] {
            let v: Vec<_> = ADD.iter().copied().filter(|(k, _)| *k != drop).collect();
            let e = env(&v).unwrap_err();
            assert_eq!(e.code, Code::InvalidEnv);
            assert!(e.msg.contains(drop), "{}", e.msg);
        }
        let mut v = ADD.to_vec();
        v[3] = ("CNI_IFNAME", "much-too-long-ifname");
        assert!(env(&v).unwrap_err().msg.contains("CNI_IFNAME"));
        v[3] = ("CNI_IFNAME", "eth0");
        v[1] = ("CNI_CONTAINERID", "-bad");
        assert!(env(&v).unwrap_err().msg.contains("CNI_CONTAINERID"));
        v[1] = ("CNI_CONTAINERID", "ok");
        v[2] = ("CNI_NETNS", "relative/path");
        assert!(env(&v).unwrap_err().msg.contains("CNI_NETNS"));
    }

    #[test]
    fn del_without_netns() {
        let e = env(&[
            ("CNI_COMMAND", "DEL"),
            ("CNI_CONTAINERID", "abc"),
            ("CNI_NETNS", ""),
            ("CNI_IFNAME", "eth0"),
        ])
        .unwrap();
        assert_eq!(e.netns, None);
    }

    #[test]
    fn status_needs_only_the_command() {
        assert_eq!(
            env(&[("CNI_COMMAND", "STATUS")]).unwrap().command,
            Command::Status
        );
        assert_eq!(env(&[("CNI_COMMAND", "GC")]).unwrap().command, Command::Gc);
    }

    #[test]
    fn cni_args() {
        let a = CniArgs::parse(
            "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web-0;\
             K8S_POD_INFRA_CONTAINER_ID=abc;K8S_POD_UID=u-1;FOO=bar",
        )
        .unwrap();
        assert_eq!(a.k8s_pod_name.as_deref(), Some("web-0"));
        assert_eq!(a.k8s_pod_namespace.as_deref(), Some("default"));
        assert_eq!(a.k8s_pod_uid.as_deref(), Some("u-1"));
        assert_eq!(CniArgs::parse("").unwrap(), CniArgs::default());
        let e = CniArgs::parse("FOO=bar").unwrap_err();
        assert!(e.msg.contains("FOO"), "{}", e.msg);
        assert_eq!(
            CniArgs::parse("K8S_POD_NAME").unwrap_err().code,
            Code::InvalidEnv
        );
        assert!(CniArgs::parse("IgnoreUnknown=maybe").is_err());
    }
}
