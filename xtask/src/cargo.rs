//! Running cargo and finding what it built.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, Result, bail};

/// Return the workspace root (the parent of this crate).
pub fn workspace_root() -> PathBuf {
    // `cargo run` sets the variable for the checkout it runs in; the value
    // compiled in is the fallback (it names the checkout built first when
    // several share a target directory).
    let dir = std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")));
    Path::new(&dir)
        .parent()
        .expect("xtask lives in the workspace")
        .into()
}

/// Return a `cargo` command rooted at the workspace, with the toolchain's
/// cargo bin directory on PATH (where `cargo install` put bpf-linker).
pub fn cargo() -> Command {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(workspace_root());
    cmd.env("PATH", crate::setup::path_with_cargo_bin());
    cmd
}

/// Run a command to completion, failing with its command line on error.
pub fn run(cmd: &mut Command, what: &str) -> Result<()> {
    let status = cmd
        .status()
        .with_context(|| format!("{what}: could not start {cmd:?}"))?;
    if !status.success() {
        bail!("{what} failed ({status})");
    }
    Ok(())
}
