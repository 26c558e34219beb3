//! The error a plugin prints on stdout when a verb fails (CNI spec 1.1,
//! "Error"), with the spec's well-known codes and the plugin's own.

use serde::Serialize;

/// An error code: 1-99 are the spec's, 100 and up the plugin's own.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Code {
    /// 1: the `cniVersion` is not one this plugin speaks.
    IncompatibleVersion,
    /// 2: a field of the network configuration is not supported.
    UnsupportedField,
    /// 3: the container (its network namespace) is unknown or gone; the
    /// runtime need not clean anything up.
    UnknownContainer,
    /// 4: a `CNI_*` environment variable is missing or invalid.
    InvalidEnv,
    /// 5: reading or writing a file failed.
    Io,
    /// 6: the configuration (or `prevResult`) is not valid JSON of the
    /// expected shape.
    Decode,
    /// 7: the network configuration is well-formed but invalid.
    InvalidConfig,
    /// 11: a transient condition; the runtime should retry later.
    TryAgainLater,
    /// 50 (STATUS): the plugin cannot set up new containers.
    NotAvailable,
    /// 51 (STATUS): not available, and existing containers may have
    /// limited connectivity.
    LimitedConnectivity,
    /// 100: the node's pod prefix has no free address.
    PoolExhausted,
    /// 101: CHECK found the container's network differing from what ADD
    /// made.
    CheckFailed,
    /// 102: the kernel refused a network change (netlink).
    Netlink,
    /// 103: the pinned eBPF objects could not be opened or updated.
    Ebpf,
}

impl Code {
    /// Return the number printed in the error JSON.
    pub const fn number(self) -> u32 {
        match self {
            Code::IncompatibleVersion => 1,
            Code::UnsupportedField => 2,
            Code::UnknownContainer => 3,
            Code::InvalidEnv => 4,
            Code::Io => 5,
            Code::Decode => 6,
            Code::InvalidConfig => 7,
            Code::TryAgainLater => 11,
            Code::NotAvailable => 50,
            Code::LimitedConnectivity => 51,
            Code::PoolExhausted => 100,
            Code::CheckFailed => 101,
            Code::Netlink => 102,
            Code::Ebpf => 103,
        }
    }
}

/// A failed verb: what the runtime reads back from stdout.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Error {
    pub code: Code,
    /// Short description of the error.
    pub msg: String,
    /// Longer description (the cause chain), may be empty.
    pub details: String,
}

/// Result of a verb.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Return an error with a message and no details.
    pub fn new(code: Code, msg: impl Into<String>) -> Self {
        Error {
            code,
            msg: msg.into(),
            details: String::new(),
        }
    }

    /// Add details (usually the underlying OS or kernel error).
    pub fn details(mut self, details: impl std::fmt::Display) -> Self {
        self.details = details.to_string();
        self
    }

    /// Return the spec's JSON form, stamped with `cni_version`.
    pub fn to_json(&self, cni_version: &str) -> String {
        #[derive(Serialize)]
        struct Wire<'a> {
            #[serde(rename = "cniVersion")]
            cni_version: &'a str,
            code: u32,
            msg: &'a str,
            #[serde(skip_serializing_if = "str::is_empty")]
            details: &'a str,
        }
        let wire = Wire {
            cni_version,
            code: self.code.number(),
            msg: &self.msg,
            details: &self.details,
        };
        serde_json::to_string(&wire).unwrap_or_else(|_| {
            format!(
                r#"{{"cniVersion":"{cni_version}","code":{},"msg":"error"}}"#,
                self.code.number()
            )
        })
    }
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} (code {})", self.msg, self.code.number())?;
        if !self.details.is_empty() {
            write!(f, ": {}", self.details)?;
        }
        Ok(())
    }
}

impl std::error::Error for Error {}

/// A failure in the pinned maps or programs (code 103).
impl From<dataplane::Error> for Error {
    fn from(e: dataplane::Error) -> Self {
        Error::new(Code::Ebpf, e.to_string())
    }
}

/// Attach a code and message to any error, keeping it as the details.
pub trait Context<T> {
    /// Turn an error into a CNI error with `code` and `msg`.
    fn cni(self, code: Code, msg: impl FnOnce() -> String) -> Result<T>;
}

impl<T, E: std::fmt::Display> Context<T> for std::result::Result<T, E> {
    fn cni(self, code: Code, msg: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|e| Error::new(code, msg()).details(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_shape() {
        let e = Error::new(Code::InvalidEnv, "CNI_IFNAME is missing");
        assert_eq!(
            e.to_json("1.1.0"),
            r#"{"cniVersion":"1.1.0","code":4,"msg":"CNI_IFNAME is missing"}"#
        );
        let e = Error::new(Code::Io, "x").details("No such file");
        assert_eq!(
            e.to_json("0.4.0"),
            r#"{"cniVersion":"0.4.0","code":5,"msg":"x","details":"No such file"}"#
        );
    }
}
