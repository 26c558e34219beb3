//! SPF benchmark: full shortest-path and route computation of the `routing`
//! crate on generated meshes of 1,000 and 10,000 routers (average degree 4,
//! one stub prefix each, all links cost 10), as router 0 sees them.
//!
//! Run: `cargo bench -p bench --bench spf`; results in `bench/results/spf.md`.

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use routing::sim::{mesh_lsdb, router_id};
use routing::spf::compute;

fn spf(c: &mut Criterion) {
    let mut group = c.benchmark_group("spf");
    for n in [1_000usize, 10_000] {
        let lsdb = mesh_lsdb(n, 4, 1);
        let rib = compute(&lsdb, router_id(0), 16, &|_, _| None);
        assert_eq!(
            rib.routes.len(),
            n - 1,
            "every other router's prefix is routed"
        );
        group.bench_with_input(
            BenchmarkId::new("full_spf_and_routes", n),
            &lsdb,
            |b, lsdb| b.iter(|| compute(black_box(lsdb), router_id(0), 16, &|_, _| None)),
        );
    }
    group.finish();
}

criterion_group!(benches, spf);
criterion_main!(benches);
