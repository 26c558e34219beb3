//! The network configuration on stdin (CNI spec 1.1, "Section 1"), with the
//! runtime's additions (`runtimeConfig`, `prevResult`, the GC list) and
//! meshfwd-cni's own fields.
//!
//! Two failure classes: bytes that are not a JSON object are code 6 (decode
//! failure); a JSON object with a missing or mistyped field is code 7
//! (invalid configuration); a field we refuse to honour is code 2.

use std::path::PathBuf;

use serde::Deserialize;
use serde_json::{Map, Value};

use super::error::{Code, Error, Result};
use super::result::CniResult;
use super::version::Version;

/// Where the node agent writes the node's state (see [`crate::node`]).
pub const DEFAULT_STATE_FILE: &str = "/run/kubermesh/node.json";
/// Where allocations are kept, one directory per network name.
pub const DEFAULT_DATA_DIR: &str = "/var/lib/kubermesh/ipam";

/// One `{containerID, ifname}` of GC's valid-attachment list.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Deserialize)]
pub struct Attachment {
    #[serde(rename = "containerID")]
    pub container_id: String,
    pub ifname: String,
}

/// The fields of the configuration as written by the runtime.
#[derive(Debug, Deserialize)]
struct Raw {
    #[serde(rename = "cniVersion")]
    cni_version: Option<String>,
    name: Option<String>,
    #[serde(rename = "type")]
    kind: Option<String>,
    #[serde(rename = "dataDir")]
    data_dir: Option<PathBuf>,
    #[serde(rename = "stateFile")]
    state_file: Option<PathBuf>,
    mtu: Option<u32>,
    #[serde(rename = "fastPath")]
    fast_path: Option<bool>,
    #[serde(rename = "ipFamilies")]
    ip_families: Option<Vec<String>>,
    ipam: Option<Map<String, Value>>,
    #[serde(rename = "runtimeConfig")]
    runtime_config: Option<Map<String, Value>>,
    #[serde(rename = "prevResult")]
    prev_result: Option<Value>,
    dns: Option<Map<String, Value>>,
    #[serde(rename = "cni.dev/valid-attachments")]
    valid_attachments: Option<Vec<Attachment>>,
    /// The name libcni also sends, after a naming slip in the 1.1 spec.
    #[serde(rename = "cni.dev/attachments")]
    attachments: Option<Vec<Attachment>>,
}

/// A checked network configuration.
#[derive(Clone, Debug, PartialEq)]
pub struct NetConf {
    pub version: Version,
    /// The network's name: also the IPAM store's subdirectory.
    pub name: String,
    /// `type` (the plugin's binary name, informational here).
    pub kind: String,
    /// IPAM store root (`dataDir`).
    pub data_dir: PathBuf,
    /// Node state file (`stateFile`).
    pub state_file: PathBuf,
    /// MTU override; default is the node's mesh MTU.
    pub mtu: Option<u32>,
    /// `fastPath` as written (default true); see [`NetConf::fast_path`]
    /// for what the pod gets.
    pub fast_path_conf: bool,
    /// `ipFamilies`: the families a pod gets. `None`: every family the
    /// node has (IPv6, and IPv4 when the agent runs it).
    pub ip_families: Option<Vec<IpFamily>>,
    pub runtime_config: Map<String, Value>,
    pub prev_result: Option<CniResult>,
    pub dns: Map<String, Value>,
    /// GC's list; `None` when the runtime sent none.
    pub valid_attachments: Option<Vec<Attachment>>,
}

impl NetConf {
    /// Parse stdin. `cniVersion`, `name` and `type` are required.
    pub fn parse(bytes: &[u8]) -> Result<Self> {
        let value: Value = serde_json::from_slice(bytes).map_err(|e| {
            Error::new(
                Code::Decode,
                "the network configuration on stdin is not valid JSON",
            )
            .details(e)
        })?;
        if !value.is_object() {
            return Err(Error::new(
                Code::Decode,
                "the network configuration on stdin is not a JSON object",
            ));
        }
        let raw: Raw = serde_json::from_value(value).map_err(|e| {
            Error::new(
                Code::InvalidConfig,
                format!("invalid network configuration: {e}"),
            )
        })?;
        let version = Version::parse(raw.cni_version.as_deref().ok_or_else(|| {
            Error::new(
                Code::InvalidConfig,
                "invalid network configuration: cniVersion is missing",
            )
        })?)?;
        let name = raw.name.ok_or_else(|| {
            Error::new(
                Code::InvalidConfig,
                "invalid network configuration: name is missing",
            )
        })?;
        check_network_name(&name)?;
        let kind = raw.kind.ok_or_else(|| {
            Error::new(
                Code::InvalidConfig,
                "invalid network configuration: type is missing",
            )
        })?;
        if let Some(ipam) = &raw.ipam
            && !ipam.is_empty()
        {
            let kind = ipam.get("type").and_then(Value::as_str).unwrap_or("");
            return Err(Error::new(
                Code::UnsupportedField,
                format!(
                    "unsupported field ipam (type {kind:?}): meshfwd-cni allocates addresses \
                     itself from the node's pod prefix; remove the ipam section"
                ),
            ));
        }
        if raw.mtu.is_some_and(|m| !(1280..=65535).contains(&m)) {
            return Err(Error::new(
                Code::InvalidConfig,
                format!(
                    "invalid network configuration: mtu {} is outside 1280..=65535",
                    raw.mtu.unwrap_or(0)
                ),
            ));
        }
        let ip_families = raw.ip_families.as_deref().map(parse_families).transpose()?;
        let prev_result = raw
            .prev_result
            .as_ref()
            .map(CniResult::from_value)
            .transpose()?;
        Ok(NetConf {
            version,
            name,
            kind,
            data_dir: raw
                .data_dir
                .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR)),
            state_file: raw
                .state_file
                .unwrap_or_else(|| PathBuf::from(DEFAULT_STATE_FILE)),
            mtu: raw.mtu,
            fast_path_conf: raw.fast_path.unwrap_or(true),
            ip_families,
            runtime_config: raw.runtime_config.unwrap_or_default(),
            prev_result,
            dns: raw.dns.unwrap_or_default(),
            valid_attachments: raw.valid_attachments.or(raw.attachments),
        })
    }

    /// Whether the pod's traffic takes the TC fast path: `fastPath` is not
    /// false and the pod is not shaped by the `bandwidth` plugin (its
    /// `runtimeConfig.bandwidth`). The fast path hands packets to and from
    /// the pod past the host veth's qdiscs, where that plugin shapes (a
    /// root qdisc for traffic to the pod, an ifb for traffic from it), so a
    /// shaped pod's traffic must take the kernel path.
    pub fn fast_path(&self) -> bool {
        self.fast_path_conf && !self.shaped()
    }

    /// Whether `runtimeConfig.bandwidth` asks for any shaping.
    pub fn shaped(&self) -> bool {
        match self.runtime("bandwidth") {
            Some(Value::Object(limits)) => {
                limits.values().any(|v| v.as_u64().is_some_and(|n| n > 0))
            }
            _ => false,
        }
    }

    /// Look a `runtimeConfig` key up case-insensitively: runtimes send
    /// `ips`, `IPs`, `mac`, `MAC` and so on.
    pub fn runtime(&self, key: &str) -> Option<&Value> {
        self.runtime_config
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v)
    }

    /// Return the addresses asked for in `runtimeConfig.ips` (the `ips`
    /// capability), as written (CIDR or bare address).
    pub fn requested_ips(&self) -> Result<Vec<String>> {
        match self.runtime("ips") {
            None | Some(Value::Null) => Ok(Vec::new()),
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| {
                    v.as_str().map(str::to_owned).ok_or_else(|| {
                        Error::new(
                            Code::InvalidConfig,
                            "runtimeConfig.ips must be a list of strings",
                        )
                    })
                })
                .collect(),
            Some(_) => Err(Error::new(
                Code::InvalidConfig,
                "runtimeConfig.ips must be a list of strings",
            )),
        }
    }

    /// Return the MAC asked for in `runtimeConfig.mac`, if any.
    pub fn requested_mac(&self) -> Result<Option<[u8; 6]>> {
        match self.runtime("mac") {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => parse_mac(s).map(Some).ok_or_else(|| {
                Error::new(
                    Code::InvalidConfig,
                    format!("runtimeConfig.mac {s:?} is not a unicast MAC"),
                )
            }),
            Some(_) => Err(Error::new(
                Code::InvalidConfig,
                "runtimeConfig.mac must be a string",
            )),
        }
    }
}

/// An address family a pod can be given.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum IpFamily {
    IPv6,
    IPv4,
}

impl std::fmt::Display for IpFamily {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            IpFamily::IPv6 => "IPv6",
            IpFamily::IPv4 => "IPv4",
        })
    }
}

/// Parse `ipFamilies` (Kubernetes' spelling, `"IPv6"` and `"IPv4"`, in any
/// case): IPv6 must be there, since the mesh and the pods' gateway are
/// IPv6; IPv4 is optional; nothing may repeat. IPv6 comes first.
fn parse_families(names: &[String]) -> Result<Vec<IpFamily>> {
    let bad = |why: String| {
        Error::new(
            Code::InvalidConfig,
            format!("invalid network configuration: ipFamilies {names:?}: {why}"),
        )
    };
    let mut out = Vec::new();
    for name in names {
        let family = if name.eq_ignore_ascii_case("ipv6") {
            IpFamily::IPv6
        } else if name.eq_ignore_ascii_case("ipv4") {
            IpFamily::IPv4
        } else {
            return Err(bad(format!("{name:?} is not \"IPv6\" or \"IPv4\"")));
        };
        if out.contains(&family) {
            return Err(bad(format!("{family} is listed twice")));
        }
        out.push(family);
    }
    if !out.contains(&IpFamily::IPv6) {
        return Err(bad(
            "IPv6 is missing: kubermesh pods always have IPv6 (add \"IPv4\" beside it for \
             dual-stack)"
                .into(),
        ));
    }
    out.sort();
    Ok(out)
}

/// Parse `aa:bb:cc:dd:ee:ff`; multicast MACs are refused.
pub fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let mut mac = [0u8; 6];
    let mut parts = s.split(':');
    for b in &mut mac {
        let p = parts.next()?;
        if p.len() != 2 {
            return None;
        }
        *b = u8::from_str_radix(p, 16).ok()?;
    }
    (parts.next().is_none() && mac[0] & 1 == 0).then_some(mac)
}

/// Check the network name as the spec words it (it names a directory here).
fn check_network_name(name: &str) -> Result<()> {
    let mut chars = name.chars();
    let ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
    if !ok {
        return Err(Error::new(
            Code::InvalidConfig,
            format!(
                "invalid network configuration: name {name:?} must start with a letter or digit \
                 and contain only letters, digits, '_', '.' and '-'"
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<NetConf> {
        NetConf::parse(s.as_bytes())
    }

    #[test]
    fn minimal() {
        let c = parse(r#"{"cniVersion":"1.1.0","name":"kubermesh","type":"meshfwd-cni"}"#).unwrap();
        assert_eq!(c.version, Version::V1_1_0);
        assert_eq!(c.data_dir, PathBuf::from(DEFAULT_DATA_DIR));
        assert!(c.fast_path());
    }

    #[test]
    fn error_classes() {
        assert_eq!(parse("{not json").unwrap_err().code, Code::Decode);
        assert_eq!(parse("[1]").unwrap_err().code, Code::Decode);
        assert_eq!(
            parse(r#"{"name":"n","type":"t"}"#).unwrap_err().code,
            Code::InvalidConfig
        );
        assert_eq!(
            parse(r#"{"cniVersion":"0.2.0","name":"n","type":"t"}"#)
                .unwrap_err()
                .code,
            Code::IncompatibleVersion
        );
        assert_eq!(
            parse(r#"{"cniVersion":"1.0.0","name":"n","type":"t","mtu":"big"}"#)
                .unwrap_err()
                .code,
            Code::InvalidConfig
        );
        let e =
            parse(r#"{"cniVersion":"1.0.0","name":"n","type":"t","ipam":{"type":"host-local"}}"#)
                .unwrap_err();
        assert_eq!(e.code, Code::UnsupportedField);
        assert!(e.msg.contains("ipam"));
        assert_eq!(
            parse(r#"{"cniVersion":"1.0.0","name":"../x","type":"t"}"#)
                .unwrap_err()
                .code,
            Code::InvalidConfig
        );
    }

    #[test]
    fn runtime_config_any_case() {
        let c = parse(
            r#"{"cniVersion":"1.0.0","name":"n","type":"t",
                "runtimeConfig":{"IPs":["fd42::9/128"],"MAC":"02:11:22:33:44:55"}}"#,
        )
        .unwrap();
        assert_eq!(c.requested_ips().unwrap(), ["fd42::9/128"]);
        assert_eq!(
            c.requested_mac().unwrap(),
            Some([2, 0x11, 0x22, 0x33, 0x44, 0x55])
        );
        assert!(parse_mac("01:00:00:00:00:00").is_none());
    }

    #[test]
    fn ip_families() {
        let c = parse(r#"{"cniVersion":"1.0.0","name":"n","type":"t"}"#).unwrap();
        assert_eq!(c.ip_families, None);
        let c =
            parse(r#"{"cniVersion":"1.0.0","name":"n","type":"t","ipFamilies":["ipv4","IPv6"]}"#)
                .unwrap();
        assert_eq!(c.ip_families, Some(vec![IpFamily::IPv6, IpFamily::IPv4]));
        for (bad, says) in [
            (r#"["IPv4"]"#, "IPv6 is missing"),
            (r#"["IPv6","IPv6"]"#, "listed twice"),
            (r#"["IPv6","IPX"]"#, "\"IPX\" is not"),
            (r#"[]"#, "IPv6 is missing"),
        ] {
            let e = parse(&format!(
                r#"{{"cniVersion":"1.0.0","name":"n","type":"t","ipFamilies":{bad}}}"#
            ))
            .unwrap_err();
            assert_eq!(e.code, Code::InvalidConfig, "{bad}");
            assert!(
                e.msg.contains("ipFamilies") && e.msg.contains(says),
                "{bad}: {}",
                e.msg
            );
        }
        let e = parse(r#"{"cniVersion":"1.0.0","name":"n","type":"t","ipFamilies":"IPv6"}"#)
            .unwrap_err();
        assert_eq!(e.code, Code::InvalidConfig);
    }

    #[test]
    fn gc_list_under_both_names() {
        let c = parse(
            r#"{"cniVersion":"1.1.0","name":"n","type":"t",
                "cni.dev/attachments":[{"containerID":"a","ifname":"eth0"}]}"#,
        )
        .unwrap();
        assert_eq!(c.valid_attachments.unwrap()[0].container_id, "a");
    }
}
