//! The success result of ADD (CNI spec 1.1, "Success"), also read back as
//! `prevResult` in chained use and on CHECK.
//!
//! One in-memory form (1.1.0's); [`CniResult::to_json`] writes the shape of
//! the requested version: 0.4.0 adds `ips[].version`, and only 1.1.0 carries
//! the interface and route fields that version introduced. Fields we do not
//! know are kept (`extra`) so a chain never loses what an earlier plugin
//! said.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::error::{Code, Error, Result};
use super::version::Version;

/// A network interface the chain created or configured.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Interface {
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub mac: String,
    /// 1.1.0 only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
    /// Netns path for interfaces inside the container, empty on the host.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub sandbox: String,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// An address given to an interface.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IpConfig {
    /// CIDR notation, e.g. `fd42:1:2:3::5/128`.
    pub address: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<String>,
    /// Index into `interfaces`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interface: Option<usize>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// A route the chain installed in the container.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Route {
    pub dst: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gw: Option<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// A whole result.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CniResult {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub interfaces: Vec<Interface>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ips: Vec<IpConfig>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<Route>,
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub dns: Map<String, Value>,
}

/// Route fields that exist only from 1.1.0 on.
const ROUTE_FIELDS_1_1: [&str; 5] = ["mtu", "advmss", "priority", "table", "scope"];
/// Interface fields that exist only from 1.1.0 on.
const INTERFACE_FIELDS_1_1: [&str; 3] = ["mtu", "socketPath", "pciID"];

impl CniResult {
    /// Parse a `prevResult` of any supported version (0.4.0's
    /// `ips[].version` is dropped: the address says it).
    pub fn from_value(v: &Value) -> Result<Self> {
        let mut r: CniResult = serde_json::from_value(v.clone())
            .map_err(|e| Error::new(Code::Decode, "prevResult is not a CNI result").details(e))?;
        for ip in &mut r.ips {
            ip.extra.remove("version");
        }
        // A stray cniVersion inside prevResult is not ours to keep.
        Ok(r)
    }

    /// Return the result as the JSON the runtime expects for `version`.
    pub fn to_json(&self, version: Version) -> String {
        let mut v = serde_json::to_value(self).unwrap_or(Value::Null);
        let obj = v.as_object_mut().expect("a struct serialises to an object");
        if version < Version::V1_1_0 {
            strip(obj.get_mut("interfaces"), &INTERFACE_FIELDS_1_1);
            strip(obj.get_mut("routes"), &ROUTE_FIELDS_1_1);
        }
        if version.is_legacy()
            && let Some(Value::Array(ips)) = obj.get_mut("ips")
        {
            for ip in ips.iter_mut().filter_map(Value::as_object_mut) {
                let family = match ip.get("address").and_then(Value::as_str) {
                    Some(a) if a.contains(':') => "6",
                    _ => "4",
                };
                ip.insert("version".into(), Value::from(family));
            }
        }
        let mut out = Map::new();
        out.insert("cniVersion".into(), Value::from(version.as_str()));
        out.append(obj);
        Value::Object(out).to_string()
    }

    /// Append another plugin's part of the result (chaining): its interface
    /// indices are shifted past ours.
    pub fn append(&mut self, mut other: CniResult) {
        let shift = self.interfaces.len();
        for ip in &mut other.ips {
            if let Some(i) = &mut ip.interface {
                *i += shift;
            }
        }
        self.interfaces.append(&mut other.interfaces);
        self.ips.append(&mut other.ips);
        self.routes.append(&mut other.routes);
        if self.dns.is_empty() {
            self.dns = other.dns;
        }
    }
}

fn strip(list: Option<&mut Value>, fields: &[&str]) {
    if let Some(Value::Array(items)) = list {
        for item in items.iter_mut().filter_map(Value::as_object_mut) {
            for f in fields {
                item.remove(*f);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> CniResult {
        CniResult {
            interfaces: vec![
                Interface {
                    name: "kmabc".into(),
                    mac: "02:00:00:00:00:01".into(),
                    mtu: Some(1500),
                    ..Default::default()
                },
                Interface {
                    name: "eth0".into(),
                    mac: "0a:00:00:00:00:01".into(),
                    mtu: Some(1500),
                    sandbox: "/run/netns/x".into(),
                    ..Default::default()
                },
            ],
            ips: vec![IpConfig {
                address: "fd42::5/128".into(),
                gateway: Some("fe80::1".into()),
                interface: Some(1),
                ..Default::default()
            }],
            routes: vec![Route {
                dst: "::/0".into(),
                gw: Some("fe80::1".into()),
                ..Default::default()
            }],
            dns: Map::new(),
        }
    }

    #[test]
    fn v1_1_shape() {
        assert_eq!(
            sample().to_json(Version::V1_1_0),
            r#"{"cniVersion":"1.1.0","interfaces":[{"mac":"02:00:00:00:00:01","mtu":1500,"name":"kmabc"},{"mac":"0a:00:00:00:00:01","mtu":1500,"name":"eth0","sandbox":"/run/netns/x"}],"ips":[{"address":"fd42::5/128","gateway":"fe80::1","interface":1}],"routes":[{"dst":"::/0","gw":"fe80::1"}]}"#
        );
    }

    #[test]
    fn legacy_shape() {
        let s = sample().to_json(Version::V0_4_0);
        assert!(s.starts_with(r#"{"cniVersion":"0.4.0""#), "{s}");
        assert!(s.contains(r#""version":"6""#), "{s}");
        assert!(!s.contains("mtu"), "{s}");
        let s = sample().to_json(Version::V1_0_0);
        assert!(!s.contains("mtu") && !s.contains("version\":\"6"), "{s}");
    }

    #[test]
    fn round_trip_and_chain() {
        let legacy: Value = serde_json::from_str(&sample().to_json(Version::V0_4_0)).unwrap();
        let back = CniResult::from_value(&legacy).unwrap();
        assert_eq!(back.ips, sample().ips);
        let mut prev = CniResult {
            interfaces: vec![Interface {
                name: "lo".into(),
                ..Default::default()
            }],
            ..Default::default()
        };
        prev.append(sample());
        assert_eq!(prev.interfaces.len(), 3);
        assert_eq!(prev.ips[0].interface, Some(2));
        assert_eq!(
            CniResult::from_value(&Value::from(3)).unwrap_err().code,
            Code::Decode
        );
    }
}
