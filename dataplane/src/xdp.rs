//! Attaching the XDP program to mesh NICs, with the link pinned so it
//! keeps forwarding after the process that attached it exits.

use std::{
    fs,
    path::{Path, PathBuf},
};

use aya::programs::{
    Xdp, XdpMode,
    links::{FdLink, PinnedLink},
    xdp::XdpLink,
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

/// Return the object's XDP program, verified.
fn load_program(ebpf: &mut aya::Ebpf) -> Result<&mut Xdp> {
    let program: &mut Xdp = object::program(ebpf, XDP_PROGRAM)?;
    program.load().map_err(|source| Error::Verifier {
        program: XDP_PROGRAM,
        source,
    })?;
    Ok(program)
}

/// Return the error for a failure to attach to `iface`.
fn attach_error(iface: &str) -> impl Fn(Box<dyn std::error::Error + Send + Sync>) -> Error + '_ {
    move |source| Error::Attach {
        program: XDP_PROGRAM,
        iface: iface.to_owned(),
        source,
    }
}

fn load_and_attach(pin_dir: &Path, link_path: &Path, iface: &str, mode: AttachMode) -> Result<()> {
    let mut ebpf = object::load(Some(pin_dir))?;
    let program = load_program(&mut ebpf)?;
    let attach_error = attach_error(iface);
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
    pin_program(pin_dir, iface, program)
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
    let _ = fs::remove_file(program_pin(pin_dir, iface));
    Ok(())
}

/// Forget the pin of an interface that was deleted (the kernel detached
/// the program with the device); missing is fine.
pub fn forget(pin_dir: &Path, iface: &str) {
    let _ = fs::remove_file(link_pin(pin_dir, iface));
    let _ = fs::remove_file(program_pin(pin_dir, iface));
}

/// Return the pin of the program attached to `iface` by this build: its
/// name carries the object's [`object::tag`] after a `:`, which no
/// interface name contains, so a pin of another build has another name.
fn program_pin(pin_dir: &Path, iface: &str) -> PathBuf {
    pin_dir
        .join("progs")
        .join(format!("xdp-{iface}:{}", object::tag()))
}

/// Pin `program` as the one attached to `iface`, removing the pins of
/// other builds' programs there.
fn pin_program(pin_dir: &Path, iface: &str, program: &mut Xdp) -> Result<()> {
    let prefix = format!("xdp-{iface}:");
    if let Ok(rd) = fs::read_dir(pin_dir.join("progs")) {
        for e in rd.flatten() {
            if e.file_name().to_string_lossy().starts_with(&prefix) {
                let _ = fs::remove_file(e.path());
            }
        }
    }
    let path = program_pin(pin_dir, iface);
    program.pin(&path).map_err(|source| Error::Pin {
        what: format!("the XDP program of {iface}"),
        path,
        source,
    })
}

/// What [`attach_or_upgrade`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attached {
    /// Attached now.
    New,
    /// Attached already, by this build.
    Current,
    /// Attached by another build: its program was swapped for ours in
    /// place (one `bpf_link_update`, so no frame meets no program).
    Upgraded,
}

/// Attach the program to `iface`, or, if an earlier run attached it, keep
/// it when it is this build's and swap it atomically for this build's
/// when it is not (an upgrade). The maps stay as pinned: a build whose maps
/// differ fails to load against them, with the error saying which.
pub fn attach_or_upgrade(pin_dir: &Path, iface: &str, mode: AttachMode) -> Result<Attached> {
    let link_path = link_pin(pin_dir, iface);
    if !link_path.exists() {
        attach(pin_dir, iface, mode)?;
        return Ok(Attached::New);
    }
    if program_pin(pin_dir, iface).exists() {
        return Ok(Attached::Current);
    }
    let mut ebpf = object::load(Some(pin_dir))?;
    let program = load_program(&mut ebpf)?;
    let attach_error = attach_error(iface);
    let pinned = PinnedLink::from_pin(&link_path).map_err(|e| attach_error(e.into()))?;
    let link = XdpLink::try_from(FdLink::from(pinned)).map_err(|e| attach_error(e.into()))?;
    // The pin keeps the link (now running our program) once `ebpf` goes.
    program
        .attach_to_link(link)
        .map_err(|e| attach_error(e.into()))?;
    pin_program(pin_dir, iface, program)?;
    Ok(Attached::Upgraded)
}
