//! Cost of the cache codec on a realistic render (50 objects): encode (JSON + zstd) and decode.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use flotilla_cache::codec::{Entry, Manifests, decode, encode};
use serde_json::json;

fn bench(c: &mut Criterion) {
    let m = Entry::Manifests(Manifests {
        commit: "0123456789abcdef0123456789abcdef01234567".into(),
        source_digest: "d".into(),
        app: String::new(),
        source_type: "Kustomize".into(),
        objects: (0..50)
            .map(|i| json!({"apiVersion": "apps/v1", "kind": "Deployment",
                "metadata": {"name": format!("web-{i}"), "namespace": "prod", "labels": {"app": "web", "tier": "frontend"}},
                "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}},
                    "template": {"metadata": {"labels": {"app": "web"}},
                        "spec": {"containers": [{"name": "web", "image": "nginx:1.27", "ports": [{"containerPort": 80}]}]}}}}))
            .collect(),
    });
    let bytes = encode(&m).expect("encode");
    c.bench_function("encode 50 Deployments", |b| {
        b.iter(|| encode(black_box(&m)))
    });
    c.bench_function("decode 50 Deployments", |b| {
        b.iter(|| decode(black_box(&bytes)))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
