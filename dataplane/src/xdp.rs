//! Attaching the XDP program to mesh NICs, with the link pinned so it
//! keeps forwarding after the process that attached it exits.

use std::{
    fs,
    path::{Path, PathBuf},
};

use aya::programs::{
    Xdp, XdpMode,
    links::{FdLink, PinnedLink},
};

use crate::{
    Error, Result, bpffs,
    object::{self, XDP_PROGRAM},
};

/// How the XDP program is hooked into the driver.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
#[serde(rename_all = "lowercase")]
pub enum AttachMode {
    /// Native (driver) mode when the NIC supports it, else generic.
    #[default]
    Auto,
    /// Native XDP in the driver; fails on NICs without support.
    Native,
    /// Generic (skb) XDP: works everywhere, slower.
    Generic,
}

impl AttachMode {
    fn xdp_mode(self) -> XdpMode {
        match self {
            AttachMode::Auto => XdpMode::default(),
            AttachMode::Native => XdpMode::Driver,
            AttachMode::Generic => XdpMode::Skb,
        }
    }
}

/// Return the pinned path of the XDP link on `iface`.
pub fn link_pin(pin_dir: &Path, iface: &str) -> PathBuf {
    bpffs::links_dir(pin_dir).join(format!("xdp-{iface}"))
}

/// Return the NICs XDP is attached to (those with a pinned link).
pub fn attached(pin_dir: &Path) -> Vec<String> {
    fs::read_dir(bpffs::links_dir(pin_dir))
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| {
                    e.file_name()
                        .to_str()?
                        .strip_prefix("xdp-")
                        .map(str::to_owned)
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Load the program, attach it to `iface` and pin maps and link under
/// `pin_dir`. Maps already pinned there are reused, so every interface of a
/// node shares one set of maps and counters. On failure nothing new is left
/// pinned.
pub fn attach(pin_dir: &Path, iface: &str, mode: AttachMode) -> Result<PathBuf> {
    let link_path = link_pin(pin_dir, iface);
    if link_path.exists() {
        return Err(Error::AlreadyAttached {
            iface: iface.to_owned(),
            path: link_path,
        });
    }
    let before = bpffs::pinned_entries(pin_dir);
    let result =
        bpffs::prepare(pin_dir).and_then(|()| load_and_attach(pin_dir, &link_path, iface, mode));
    if result.is_err() {
        // Undo only what this call pinned: maps another interface shares stay.
        for entry in bpffs::pinned_entries(pin_dir).difference(&before) {
            let _ = fs::remove_file(entry);
        }
        // And the directories, if this call made them (only empty ones go).
        for dir in [
            bpffs::links_dir(pin_dir),
            pin_dir.join("progs"),
            pin_dir.to_owned(),
        ] {
            let _ = fs::remove_dir(dir);
        }
    }
    result.map(|()| link_path)
}

fn load_and_attach(pin_dir: &Path, link_path: &Path, iface: &str, mode: AttachMode) -> Result<()> {
    let mut ebpf = object::load(Some(pin_dir))?;
    let program: &mut Xdp = object::program(&mut ebpf, XDP_PROGRAM)?;
    program.load().map_err(|source| Error::Verifier {
        program: XDP_PROGRAM,
        source,
    })?;
    let attach_error = |source: Box<dyn std::error::Error + Send + Sync>| Error::Attach {
        program: XDP_PROGRAM,
        iface: iface.to_owned(),
        source,
    };
    let link_id = program
        .attach(iface, mode.xdp_mode())
        .map_err(|e| attach_error(e.into()))?;
    let link: FdLink = program
        .take_link(link_id)
        .map_err(|e| attach_error(e.into()))?
        .try_into()
        .map_err(|e: aya::programs::links::LinkError| attach_error(e.into()))?;
    link.pin(link_path).map_err(|source| Error::Pin {
        what: format!("the XDP link of {iface}"),
        path: link_path.to_owned(),
        source,
    })?;
    Ok(())
}

/// Detach the program from `iface` by removing its pinned link.
pub fn detach(pin_dir: &Path, iface: &str) -> Result<()> {
    let path = link_pin(pin_dir, iface);
    let link = PinnedLink::from_pin(&path).map_err(|_| Error::NotPinned {
        path: path.clone(),
        hint: "no XDP attachment of ours on this interface",
    })?;
    // Unpinning drops the last reference: the kernel detaches the program.
    link.unpin().map_err(|source| Error::Io {
        what: "removing the pinned link",
        path,
        source,
    })?;
    Ok(())
}

/// Forget the pin of an interface that was deleted (the kernel detached
/// the program with the device); missing is fine.
pub fn forget(pin_dir: &Path, iface: &str) {
    let _ = fs::remove_file(link_pin(pin_dir, iface));
}
