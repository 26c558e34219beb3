//! kubermesh benchmarks: the harnesses under `src/bin` (forwarding,
//! recovery, restart, pods, agent_idle, and the lab demo), the criterion benchmark
//! under `benches`, and what they share: [`agents`] (meshes of real agents)
//! and the forwarding benchmark's XDP helpers (`ebpf/`).

pub mod agents;
/// PNG plots of the forwarding benchmark's per-round rates.
pub mod plot;
/// UDP probe flows and the holes in them.
pub mod probe;

/// The forwarding benchmark's XDP helpers (`bench/ebpf`, built by
/// `build.rs`): the reflector (generator and sink in one), pass-all, the
/// MAC-rewrite ceiling.
pub static BENCH_OBJECT: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/bench-ebpf"));

/// Where harnesses write their results: `$KUBERMESH_RESULTS_DIR` (set by
/// `cargo xtask bench` to the checkout's `bench/results`), else the
/// `bench/results` of the checkout this binary was built from. The
/// variable matters when one target directory serves several checkouts.
pub fn results_dir() -> std::path::PathBuf {
    std::env::var_os("KUBERMESH_RESULTS_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("results"))
}
