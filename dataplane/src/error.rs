//! What can go wrong between kubermesh and the kernel's BPF side, said so
//! an operator can act on it: each error names the object and the path or
//! interface involved, and carries the kernel's or aya's own reason.

use std::{io, path::PathBuf};

/// A failed data-plane operation.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file-system step on the bpffs directory failed.
    #[error("{what} {}: {source}", path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// `/sys/fs/bpf` is not a bpffs and mounting one there failed.
    #[error("/sys/fs/bpf is not a bpffs and mounting one there failed: {0}")]
    Mount(#[source] nix::Error),
    /// The kernel refused the object (map creation, relocation, BTF).
    #[error("loading the kubermesh eBPF object: {0}")]
    Load(#[source] aya::EbpfError),
    /// A map pinned by an earlier build has another layout than this
    /// build's: reusing it would misread it, and replacing it would empty
    /// the tables under live traffic.
    #[error(
        "the pinned map {map} at {} has another layout than this build's ({pinned}; this build needs {wanted}): it was made by a build whose maps differ and is left as it is. Drain the node, remove {} and start again",
        path.display(),
        path.parent().map_or_else(|| path.display().to_string(), |d| d.display().to_string())
    )]
    MapLayout {
        map: &'static str,
        path: std::path::PathBuf,
        pinned: String,
        wanted: String,
    },
    /// The embedded object does not parse (a build problem).
    #[error("the embedded eBPF object does not parse: {0}")]
    Object(String),
    /// A program is missing from the object or is of another type.
    #[error("the eBPF object has no usable program {program}: {source}")]
    Program {
        program: &'static str,
        #[source]
        source: aya::programs::ProgramError,
    },
    /// The verifier rejected a program.
    #[error("the verifier rejected {program}: {source}")]
    Verifier {
        program: &'static str,
        #[source]
        source: aya::programs::ProgramError,
    },
    /// Attaching a program to an interface failed.
    #[error("attaching {program} to {iface}: {source}")]
    Attach {
        program: &'static str,
        iface: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// Pinning a program, map or link failed.
    #[error("pinning {what} at {}: {source}", path.display())]
    Pin {
        what: String,
        path: PathBuf,
        #[source]
        source: aya::pin::PinError,
    },
    /// Nothing of ours is pinned where it should be.
    #[error("nothing pinned at {} ({hint})", path.display())]
    NotPinned { path: PathBuf, hint: &'static str },
    /// XDP is attached already (by an earlier run or by hand).
    #[error("XDP is already attached to {iface} (pinned at {}); run `meshfwd detach --iface {iface}` first", path.display())]
    AlreadyAttached { iface: String, path: PathBuf },
    /// A map operation failed.
    #[error("{what}: {source}")]
    Map {
        what: String,
        #[source]
        source: aya::maps::MapError,
    },
}

/// The data plane's result.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Wrap a map error with what was being done.
    pub fn map(what: impl Into<String>) -> impl FnOnce(aya::maps::MapError) -> Error {
        let what = what.into();
        move |source| Error::Map { what, source }
    }
}
