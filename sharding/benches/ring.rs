//! Assignment cost: build the ring of 50 replicas and place 10,000 clusters with bounded loads
//! (what every replica computes on each membership or cluster-set change).

use std::collections::BTreeMap;
use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use flotilla_sharding::ring::{DEFAULT_EPSILON, DEFAULT_VNODES, Ring, quantize_weight};

fn members(n: usize) -> Vec<String> {
    (0..n)
        .map(|i| format!("flotilla-controller-7d9f6c5b8-{i:05}"))
        .collect()
}

fn keys(k: usize, weighted: bool) -> BTreeMap<String, u64> {
    (0..k)
        .map(|i| {
            let w = if weighted {
                quantize_weight((i % 97) as u64 + 1)
            } else {
                1
            };
            (format!("https://cluster-{i:05}.example.internal:6443"), w)
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let m = members(50);
    let unit = keys(10_000, false);
    let weighted = keys(10_000, true);
    c.bench_function("ring build, 50 replicas", |b| {
        b.iter(|| Ring::new(black_box(m.iter().cloned()), DEFAULT_VNODES))
    });
    let ring = Ring::new(m.iter().cloned(), DEFAULT_VNODES);
    c.bench_function("place 10k clusters on 50 replicas", |b| {
        b.iter(|| ring.place(black_box(&unit), DEFAULT_EPSILON))
    });
    c.bench_function("place 10k weighted clusters on 50 replicas", |b| {
        b.iter(|| ring.place(black_box(&weighted), DEFAULT_EPSILON))
    });
    c.bench_function("build + place + own keys (one replica's full step)", |b| {
        b.iter(|| {
            let r = Ring::new(m.iter().cloned(), DEFAULT_VNODES);
            r.place(&unit, DEFAULT_EPSILON).keys_of(&m[7])
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
