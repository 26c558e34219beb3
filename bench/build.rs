//! Build the benchmark's XDP helpers (`bench/ebpf`) for `bpfel-unknown-none`
//! and embed the object, as `dataplane/build.rs` does for the fast path
//! (which says why `RUSTC_BOOTSTRAP` and bpf-linker are needed).

fn main() {
    if std::env::var_os("AYA_BUILD_SKIP").is_none() && which::which("bpf-linker").is_err() {
        eprintln!(
            "error: bpf-linker not found on PATH (needed to build bench-ebpf); run `cargo xtask setup`"
        );
        std::process::exit(1);
    }
    let manifest_dir = std::env::var("CARGO_MANIFEST_DIR")
        .expect("cargo sets CARGO_MANIFEST_DIR for build scripts");
    let root = format!("{manifest_dir}/ebpf");
    #[expect(unsafe_code, reason = "std::env::set_var is unsafe in edition 2024")]
    // SAFETY: the build script is single-threaded here; nothing reads the
    // environment concurrently.
    unsafe {
        std::env::set_var("RUSTC_BOOTSTRAP", "1")
    };
    let package = aya_build::Package {
        name: "bench-ebpf",
        root_dir: &root,
        ..Default::default()
    };
    if let Err(err) = aya_build::build_ebpf([package], aya_build::Toolchain::Custom("stable")) {
        eprintln!("error: building bench-ebpf failed: {err:#}");
        std::process::exit(1);
    }
}
