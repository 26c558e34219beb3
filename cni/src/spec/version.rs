//! Spec versions this plugin speaks, and what each allows.

use super::error::{Code, Error, Result};

/// Newest spec version; used for output when the input names none.
pub const LATEST: &str = "1.1.0";

/// Every version accepted in `cniVersion`, oldest first.
pub const SUPPORTED: [&str; 3] = ["0.4.0", "1.0.0", "1.1.0"];

/// A spec version we speak.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Version {
    V0_4_0,
    V1_0_0,
    V1_1_0,
}

impl Version {
    /// Parse a `cniVersion` string; an unknown version is error code 1.
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "0.4.0" => Ok(Version::V0_4_0),
            "1.0.0" => Ok(Version::V1_0_0),
            "1.1.0" => Ok(Version::V1_1_0),
            other => Err(Error::new(
                Code::IncompatibleVersion,
                format!(
                    "unsupported cniVersion {other:?}: meshfwd-cni speaks {}",
                    SUPPORTED.join(", ")
                ),
            )),
        }
    }

    /// Return the version as written in JSON.
    pub const fn as_str(self) -> &'static str {
        match self {
            Version::V0_4_0 => "0.4.0",
            Version::V1_0_0 => "1.0.0",
            Version::V1_1_0 => "1.1.0",
        }
    }

    /// Return whether results carry 0.x fields (`ips[].version`).
    pub const fn is_legacy(self) -> bool {
        matches!(self, Version::V0_4_0)
    }

    /// Return whether STATUS and GC exist (new in 1.1.0).
    pub const fn has_status_and_gc(self) -> bool {
        matches!(self, Version::V1_1_0)
    }
}

/// The VERSION verb's answer.
pub fn version_json(requested: Option<&str>) -> String {
    let version = requested
        .and_then(|v| Version::parse(v).ok())
        .map_or(LATEST, Version::as_str);
    serde_json::json!({ "cniVersion": version, "supportedVersions": SUPPORTED }).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_order() {
        assert_eq!(Version::parse("0.4.0").unwrap(), Version::V0_4_0);
        assert!(Version::V0_4_0 < Version::V1_1_0);
        let e = Version::parse("0.3.1").unwrap_err();
        assert_eq!(e.code, Code::IncompatibleVersion);
        assert!(e.msg.contains("0.3.1"), "{}", e.msg);
        assert_eq!(Version::parse("9.9.9").unwrap_err().code.number(), 1);
    }

    #[test]
    fn version_answer() {
        assert_eq!(
            version_json(Some("1.0.0")),
            r#"{"cniVersion":"1.0.0","supportedVersions":["0.4.0","1.0.0","1.1.0"]}"#
        );
        assert!(version_json(None).starts_with(r#"{"cniVersion":"1.1.0""#));
    }
}
