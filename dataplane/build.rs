//! Build `meshfwd-ebpf` for `bpfel-unknown-none` and embed the object.
//!
//! The eBPF crate needs `core` built from source (`-Z build-std=core`), which
//! stable rustc allows with `RUSTC_BOOTSTRAP=1`, and `bpf-linker` on PATH.
//! `cargo xtask setup` installs both.

use std::path::Path;

fn main() {
    println!("cargo:rerun-if-env-changed=PATH");
    if std::env::var_os("AYA_BUILD_SKIP").is_none() && which::which("bpf-linker").is_err() {
        // One line the user can act on, instead of a linker backtrace.
        eprintln!(
            "error: bpf-linker not found on PATH (needed to build meshfwd-ebpf); run `cargo xtask setup`"
        );
        std::process::exit(1);
    }
    // The directory cargo runs this script for, read at run time: a build
    // script compiled for one checkout may be reused for another that
    // shares the target directory, and `env!` would point back at the
    // first.
    let manifest_dir = std::env::var("CARGO_MANIFEST_DIR")
        .expect("cargo sets CARGO_MANIFEST_DIR for build scripts");
    // The programs are built from meshfwd-common too (map layouts, packet
    // classification, the BFD answer): a change there must rebuild them.
    println!(
        "cargo:rerun-if-changed={}",
        Path::new(&manifest_dir).join("../meshfwd-common").display()
    );
    let root = Path::new(&manifest_dir).join("../meshfwd-ebpf");
    let root = root.to_str().expect("workspace path is UTF-8");

    #[expect(unsafe_code, reason = "std::env::set_var is unsafe in edition 2024")]
    // SAFETY: the build script is single-threaded here; nothing reads the
    // environment concurrently. aya-build reads RUSTC_BOOTSTRAP to decide on
    // `-Z build-std=core`, which the stable toolchain needs for the BPF target.
    unsafe {
        std::env::set_var("RUSTC_BOOTSTRAP", "1")
    };
    let package = aya_build::Package {
        name: "meshfwd-ebpf",
        root_dir: root,
        ..Default::default()
    };
    if let Err(err) = aya_build::build_ebpf([package], aya_build::Toolchain::Custom("stable")) {
        eprintln!("error: building meshfwd-ebpf failed: {err:#}");
        std::process::exit(1);
    }
}
