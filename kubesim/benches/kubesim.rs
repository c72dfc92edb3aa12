//! Criterion benchmarks of kubesim's store: get, server-side apply, labelled list, status
//! writes and the field ownership computation, on a cluster loaded with 1,000 objects; the
//! `_response` cases include producing the JSON the HTTP layer answers with.

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

/// What a GET answers with: the object's JSON (stored serialized) and a newline.
fn get_response(store: &Store, rt: &ResourceType, name: &str) -> usize {
    let obj = store.get(rt, "default", name).expect("get");
    let mut body = Vec::with_capacity(obj.json().len() + 1);
    body.extend_from_slice(obj.json());
    body.push(b'\n');
    body.len()
}

/// What a labelled LIST answers with: the items' JSON in a list.
fn list_response(store: &Store, rt: &ResourceType) -> usize {
    let page = store
        .list(
            rt,
            Some("default"),
            |o| o.meta().label("app") == Some("a3"),
            None,
            None,
            None,
        )
        .expect("list");
    // As `api.rs` answers: the list's head serialized, the items' stored JSON spliced in.
    let mut out = serde_json::to_vec(&json!({"apiVersion": "v1", "kind": "ConfigMapList",
        "metadata": {"resourceVersion": page.rv.to_string()}}))
    .expect("json");
    out.pop();
    out.extend_from_slice(b",\"items\":[");
    for (i, o) in page.items.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(o.json());
    }
    out.extend_from_slice(b"]}\n");
    out.len()
}

fn bench(c: &mut Criterion) {
    let (store, cm, deploy) = loaded_store();
    c.bench_function("store_get", |b| {
        b.iter(|| black_box(store.get(&cm, "default", "cm-500").expect("get")))
    });
    c.bench_function("store_get_response", |b| {
        b.iter(|| black_box(get_response(&store, &cm, "cm-500")))
    });
    c.bench_function("store_list_response_label_selector_1000", |b| {
        b.iter(|| black_box(list_response(&store, &cm)))
    });
    c.bench_function("store_list_label_selector_1000", |b| {
        b.iter(|| {
            let page = store
                .list(
                    &cm,
                    Some("default"),
                    |o| o.meta().label("app") == Some("a3"),
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
    let mut s = 0u64;
    c.bench_function("store_status_merge_patch", |b| {
        b.iter(|| {
            s += 1;
            let body = json!({"status": {"observedGeneration": 1, "replicas": 2,
                "conditions": [{"type": "Available", "status": "True",
                    "reason": "MinimumReplicasAvailable", "message": format!("ready {s}")}]}});
            let bytes = serde_json::to_vec(&body).expect("json");
            black_box(
                store
                    .patch(
                        &deploy,
                        "default",
                        "web",
                        PatchKind::Merge,
                        &bytes,
                        Scope::Status,
                        &ctx,
                    )
                    .expect("status"),
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
