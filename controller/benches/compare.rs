//! The comparison one reconcile runs for one app (a Deployment and two ConfigMaps, as the load
//! test renders them, against live objects shaped like an API server's answers): the cost the
//! normalizing diff and the settings-driven health add per reconcile.

use std::collections::BTreeMap;
use std::hint::black_box;
use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use flotilla_controller::plan::compare_with;
use flotilla_controller::tracking::{FIELD_MANAGER, ResourceKey};
use serde_json::{Value, json};

fn desired(cpu: &str, memory: &str) -> Vec<Value> {
    let mut out = vec![json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "app-1", "labels": {"flotilla.dev/app": "app-1"},
                     "annotations": {"flotilla.dev/tracking-id": "argocd/app-1:apps/Deployment:app-1/web"}},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}},
                              "spec": {"containers": [{"name": "web", "image": "registry.example/web:1.0",
                                  "ports": [{"containerPort": 8080}],
                                  "resources": {"limits": {"cpu": cpu, "memory": memory},
                                                "requests": {"cpu": "100m", "memory": "64Mi"}}}]}}}})];
    for i in 0..2 {
        out.push(json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": format!("settings-{i}"), "namespace": "app-1",
                         "labels": {"flotilla.dev/app": "app-1"},
                         "annotations": {"flotilla.dev/tracking-id": format!("argocd/app-1:/ConfigMap:app-1/settings-{i}")}},
            "data": {"color": "blue", "size": "3", "mode": "fast"}}));
    }
    out
}

/// What the server returns for `d`: defaults, server metadata, managedFields, status, and
/// quantities in canonical form.
fn live_of(d: &Value) -> Value {
    let mut l = d.clone();
    let m = &mut l["metadata"];
    m["uid"] = json!("0b1c2d3e-0000-4000-8000-000000000001");
    m["resourceVersion"] = json!("12345");
    m["creationTimestamp"] = json!("2026-11-30T00:00:00Z");
    m["managedFields"] = json!([{"manager": FIELD_MANAGER, "operation": "Apply", "apiVersion": "v1",
        "time": "2026-11-30T00:00:00Z", "fieldsType": "FieldsV1",
        "fieldsV1": {"f:metadata": {"f:labels": {"f:flotilla.dev/app": {}}}}}]);
    if d["kind"] == "Deployment" {
        m["generation"] = json!(1);
        let c = &mut l["spec"]["template"]["spec"]["containers"][0];
        c["resources"]["limits"] = json!({"cpu": "1", "memory": "1Gi"});
        c["imagePullPolicy"] = json!("IfNotPresent");
        c["terminationMessagePath"] = json!("/dev/termination-log");
        l["spec"]["strategy"] = json!({"type": "RollingUpdate",
            "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}});
        l["spec"]["revisionHistoryLimit"] = json!(10);
        l["status"] = json!({"observedGeneration": 1, "replicas": 1, "updatedReplicas": 1,
            "readyReplicas": 1, "availableReplicas": 1,
            "conditions": [{"type": "Available", "status": "True"}]});
    }
    l
}

fn bench(c: &mut Criterion) {
    // Git in the server's canonical form, then in forms the server rewrites (`1000m`, `1024Mi`).
    for (name, cpu, memory) in [
        (
            "compare one app (Deployment + 2 ConfigMaps, in sync)",
            "1",
            "1Gi",
        ),
        (
            "compare one app, non-canonical quantities in Git",
            "1000m",
            "1024Mi",
        ),
    ] {
        let want = desired(cpu, memory);
        let live: BTreeMap<ResourceKey, Arc<Value>> = want
            .iter()
            .filter_map(|d| Some((ResourceKey::of(d)?, Arc::new(live_of(d)))))
            .collect();
        let cmp = compare_with(&want, &live, FIELD_MANAGER, &[]);
        if cmp.resources.iter().any(|r| !r.differences.is_empty()) {
            eprintln!(
                "{name}: not in sync for this diff, skipped: {:?}",
                cmp.resources
                    .iter()
                    .map(|r| &r.differences)
                    .collect::<Vec<_>>()
            );
            continue;
        }
        c.bench_function(name, |b| {
            b.iter(|| compare_with(black_box(&want), black_box(&live), FIELD_MANAGER, &[]))
        });
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
