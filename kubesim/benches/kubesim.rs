//! Criterion benchmarks of kubesim's store: get, server-side apply, labelled list, and the field
//! ownership computation, on a cluster loaded with 1,000 objects.

use std::hint::black_box;
use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use kubesim::fields::Scope;
use kubesim::resources::ResourceType;
use kubesim::store::{PatchKind, Store, WriteCtx};
use serde_json::json;

fn loaded_store() -> (Store, Arc<ResourceType>, Arc<ResourceType>) {
    let store = Store::new(10_000, 1024);
    let ctx = WriteCtx {
        manager: "bench".into(),
        dry_run: false,
        field_validation: Default::default(),
        warnings: Default::default(),
    };
    let ns = store.lookup("", "v1", "namespaces").expect("namespaces");
    store
        .create(&ns, "", json!({"metadata": {"name": "default"}}), &ctx)
        .expect("namespace");
    let cm = store.lookup("", "v1", "configmaps").expect("configmaps");
    for i in 0..1000 {
        store
            .create(
                &cm,
                "default",
                json!({"metadata": {"name": format!("cm-{i}"), "labels": {"app": format!("a{}", i % 10)}}, "data": {"k": "v"}}),
                &ctx,
            )
            .expect("seed");
    }
    let deploy = store
        .lookup("apps", "v1", "deployments")
        .expect("deployments");
    (store, cm, deploy)
}

fn bench(c: &mut Criterion) {
    let (store, cm, deploy) = loaded_store();
    c.bench_function("store_get", |b| {
        b.iter(|| black_box(store.get(&cm, "default", "cm-500").expect("get")))
    });
    c.bench_function("store_list_label_selector_1000", |b| {
        b.iter(|| {
            let page = store
                .list(
                    &cm,
                    Some("default"),
                    |o| o.pointer("/metadata/labels/app").and_then(|v| v.as_str()) == Some("a3"),
                    None,
                    None,
                    None,
                )
                .expect("list");
            black_box(page.items.len())
        })
    });
    let ctx = WriteCtx {
        manager: "flotilla".into(),
        dry_run: false,
        field_validation: Default::default(),
        warnings: Default::default(),
    };
    let mut n = 0u64;
    c.bench_function("store_ssa_deployment_change", |b| {
        b.iter(|| {
            n += 1;
            let body = json!({"apiVersion": "apps/v1", "kind": "Deployment",
                "metadata": {"name": "web", "labels": {"app": "web"}},
                "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
                    "template": {"metadata": {"labels": {"app": "web"}},
                        "spec": {"containers": [{"name": "web", "image": format!("nginx:{n}"),
                            "ports": [{"containerPort": 80}], "env": [{"name": "A", "value": "1"}]}]}}}});
            let bytes = serde_json::to_vec(&body).expect("json");
            black_box(
                store
                    .patch(
                        &deploy,
                        "default",
                        "web",
                        PatchKind::Apply { force: true },
                        &bytes,
                        Scope::Main,
                        &ctx,
                    )
                    .expect("apply"),
            )
        })
    });
    c.bench_function("store_ssa_noop", |b| {
        let body = json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "cm-1"}, "data": {"k": "v"}});
        let bytes = serde_json::to_vec(&body).expect("json");
        b.iter(|| {
            black_box(
                store
                    .patch(
                        &cm,
                        "default",
                        "cm-1",
                        PatchKind::Apply { force: true },
                        &bytes,
                        Scope::Main,
                        &ctx,
                    )
                    .expect("apply"),
            )
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
