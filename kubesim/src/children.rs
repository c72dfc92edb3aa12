//! What the workload controllers create: a Deployment owns one ReplicaSet per pod template
//! (`<name>-<pod-template-hash>`, older ones scaled to zero) owning its Pods; StatefulSets,
//! DaemonSets and Jobs own their Pods. Resource trees and rollout history look like a real
//! cluster's. Pure builders plus the sync steps the simulator calls; optional per cluster.

use std::sync::Arc;

use serde_json::{Value, json};

use super::objects::name_of;
use super::resources::ResourceType;
use super::store::{DeleteOpts, Store, WriteCtx};
use super::stored::Obj;

/// The alphabet Kubernetes uses for generated name suffixes (no vowels, no look-alikes).
const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

/// A stable suffix of `len` characters for `seed` (FNV-1a, then the safe alphabet).
fn suffix(seed: &str, len: usize) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in seed.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    (0..len)
        .map(|_| {
            let c = ALPHABET[(h % ALPHABET.len() as u64) as usize];
            h /= ALPHABET.len() as u64;
            if h == 0 {
                h = 0x9e37_79b9_7f4a_7c15;
            }
            char::from(c)
        })
        .collect()
}

/// The `pod-template-hash` of a Deployment's pod template.
pub fn template_hash(deploy: &Value) -> String {
    let template = deploy
        .pointer("/spec/template")
        .map(Value::to_string)
        .unwrap_or_default();
    suffix(&template, 10)
}

/// The name of the ReplicaSet a Deployment's current template runs in.
pub fn replica_set_name(deploy: &Value) -> String {
    format!("{}-{}", name_of(deploy), template_hash(deploy))
}

fn owner_ref(api_version: &str, kind: &str, owner: &Value) -> Value {
    json!({"apiVersion": api_version, "kind": kind, "name": name_of(owner),
           "uid": owner.pointer("/metadata/uid").cloned().unwrap_or(Value::Null),
           "controller": true, "blockOwnerDeletion": true})
}

/// The ReplicaSet for `deploy`'s current template.
pub fn replica_set_for(deploy: &Value) -> Value {
    let hash = template_hash(deploy);
    let mut template = deploy
        .pointer("/spec/template")
        .cloned()
        .unwrap_or(json!({}));
    template["metadata"]["labels"]["pod-template-hash"] = json!(hash);
    let mut selector = deploy
        .pointer("/spec/selector")
        .cloned()
        .unwrap_or(json!({}));
    selector["matchLabels"]["pod-template-hash"] = json!(hash);
    let revision = deploy
        .pointer("/metadata/generation")
        .and_then(Value::as_i64)
        .unwrap_or(1);
    json!({
        "apiVersion": "apps/v1", "kind": "ReplicaSet",
        "metadata": {
            "name": replica_set_name(deploy),
            "namespace": deploy.pointer("/metadata/namespace").cloned().unwrap_or(json!("default")),
            "labels": template["metadata"]["labels"].clone(),
            "annotations": {"deployment.kubernetes.io/revision": revision.to_string()},
            "ownerReferences": [owner_ref("apps/v1", "Deployment", deploy)],
        },
        "spec": {
            "replicas": deploy.pointer("/spec/replicas").and_then(Value::as_i64).unwrap_or(1),
            "selector": selector,
            "template": template,
        },
    })
}

/// Pod `index` of `rs`, scheduled on one of `nodes` nodes.
pub fn pod_for(rs: &Value, index: usize, nodes: i64) -> Value {
    let rs_name = name_of(rs);
    let template = rs.pointer("/spec/template").cloned().unwrap_or(json!({}));
    let mut spec = template.get("spec").cloned().unwrap_or(json!({}));
    let node = index as i64 % nodes.max(1);
    spec["nodeName"] = json!(format!("kubesim-node-{node}"));
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {
            "name": format!("{rs_name}-{}", suffix(&format!("{rs_name}/{index}"), 5)),
            "namespace": rs.pointer("/metadata/namespace").cloned().unwrap_or(json!("default")),
            "labels": template.pointer("/metadata/labels").cloned().unwrap_or(json!({})),
            "ownerReferences": [owner_ref("apps/v1", "ReplicaSet", rs)],
        },
        "spec": spec,
    })
}

fn owned_by(obj: &Obj, uid: &str) -> bool {
    obj.meta().owners.iter().any(|o| &**o == uid)
}

/// The items of a list of `rt` in `ns` owned by `uid`, parsed (none on failure).
fn owned(store: &Store, rt: &ResourceType, ns: &str, uid: &str) -> Vec<Value> {
    store
        .list(rt, Some(ns), |o| owned_by(o, uid), None, None, None)
        .and_then(|p| p.values())
        .unwrap_or_default()
}

fn ctx() -> WriteCtx {
    WriteCtx {
        manager: "kube-controller-manager".into(),
        dry_run: false,
        field_validation: Default::default(),
        warnings: Default::default(),
    }
}

/// Bring the ReplicaSets and Pods of Deployment `ns/name` in line with it: its current
/// template's ReplicaSet at `spec.replicas` with that many Pods, older ones at zero.
pub fn sync_deployment(store: &Arc<Store>, ns: &str, name: &str, nodes: i64) {
    let (Some(deploy_rt), Some(rs_rt), Some(pod_rt)) = (
        store.lookup("apps", "v1", "deployments"),
        store.lookup("apps", "v1", "replicasets"),
        store.lookup("", "v1", "pods"),
    ) else {
        return;
    };
    let Ok(deploy) = store.get_value(&deploy_rt, ns, name) else {
        return;
    };
    if deploy.pointer("/metadata/deletionTimestamp").is_some() {
        return;
    }
    let Some(uid) = deploy.pointer("/metadata/uid").and_then(Value::as_str) else {
        return;
    };
    let want = replica_set_for(&deploy);
    let current = name_of(&want).to_string();
    let replicas = want["spec"]["replicas"].as_i64().unwrap_or(1).max(0) as usize;
    let owned = owned(store, &rs_rt, ns, uid);
    for rs in &owned {
        let rs_name = name_of(rs).to_string();
        let target = if rs_name == current { replicas } else { 0 };
        if rs["spec"]["replicas"].as_u64() != Some(target as u64) {
            let patch = json!({"spec": {"replicas": target}});
            let _ = store.patch(
                &rs_rt,
                ns,
                &rs_name,
                super::store::PatchKind::Merge,
                patch.to_string().as_bytes(),
                super::fields::Scope::Main,
                &ctx(),
            );
        }
    }
    if !owned.iter().any(|r| name_of(r) == current)
        && store.create(&rs_rt, ns, want, &ctx()).is_err()
    {
        return;
    }
    // Pods: each ReplicaSet of this Deployment runs exactly its replicas.
    for set in self::owned(store, &rs_rt, ns, uid) {
        let Some(set_uid) = set.pointer("/metadata/uid").and_then(Value::as_str) else {
            continue;
        };
        let target = if name_of(&set) == current {
            replicas
        } else {
            0
        };
        let pods = self::owned(store, &pod_rt, ns, set_uid);
        let have: std::collections::BTreeSet<String> =
            pods.iter().map(|p| name_of(p).to_string()).collect();
        let wanted: Vec<Value> = (0..target).map(|i| pod_for(&set, i, nodes)).collect();
        let wanted_names: std::collections::BTreeSet<String> =
            wanted.iter().map(|p| name_of(p).to_string()).collect();
        for p in wanted {
            if !have.contains(name_of(&p)) {
                let _ = store.create(&pod_rt, ns, p, &ctx());
            }
        }
        for extra in have.difference(&wanted_names) {
            let _ = store.delete(&pod_rt, ns, extra, &DeleteOpts::default());
        }
    }
}

/// A pod of `owner` (a StatefulSet, DaemonSet or Job) from its pod template.
fn owned_pod(
    owner: &Value,
    owner_api: &str,
    owner_kind: &str,
    name: String,
    extra_labels: Value,
    node: i64,
) -> Value {
    let template = owner
        .pointer("/spec/template")
        .cloned()
        .unwrap_or(json!({}));
    let mut spec = template.get("spec").cloned().unwrap_or(json!({}));
    spec["nodeName"] = json!(format!("kubesim-node-{node}"));
    let mut labels = template
        .pointer("/metadata/labels")
        .cloned()
        .unwrap_or(json!({}));
    if let (Some(l), Some(extra)) = (labels.as_object_mut(), extra_labels.as_object()) {
        for (k, v) in extra {
            l.insert(k.clone(), v.clone());
        }
    }
    let mut pod = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": owner.pointer("/metadata/namespace").cloned().unwrap_or(json!("default")),
            "labels": labels,
            "ownerReferences": [owner_ref(owner_api, owner_kind, owner)],
        },
        "spec": spec,
    });
    // The simulated behaviour of the owner (progressing, degraded, ...) is its pods'.
    if let Some(a) = owner
        .pointer("/metadata/annotations")
        .and_then(|a| a.get(super::simulate::BEHAVIOR_ANNOTATION))
    {
        pod["metadata"]["annotations"] = json!({super::simulate::BEHAVIOR_ANNOTATION: a});
    }
    pod
}

/// The pods a StatefulSet, DaemonSet or Job runs: `<name>-<ordinal>`, one per node, or the
/// Job's `completions` (its pods finish: Succeeded, or Failed when the Job fails).
pub fn pods_for(kind: &str, owner: &Value, nodes: i64) -> Vec<Value> {
    let name = name_of(owner);
    let uid = owner
        .pointer("/metadata/uid")
        .cloned()
        .unwrap_or(Value::Null);
    match kind {
        "StatefulSet" => {
            let replicas = owner
                .pointer("/spec/replicas")
                .and_then(Value::as_i64)
                .unwrap_or(1)
                .max(0);
            let revision = format!("{name}-{}", template_hash(owner));
            (0..replicas)
                .map(|i| {
                    let pod_name = format!("{name}-{i}");
                    let mut p = owned_pod(
                        owner,
                        "apps/v1",
                        "StatefulSet",
                        pod_name.clone(),
                        json!({"statefulset.kubernetes.io/pod-name": pod_name,
                               "apps.kubernetes.io/pod-index": i.to_string(),
                               "controller-revision-hash": revision}),
                        i % nodes.max(1),
                    );
                    p["spec"]["hostname"] = json!(pod_name);
                    if let Some(svc) = owner.pointer("/spec/serviceName") {
                        p["spec"]["subdomain"] = svc.clone();
                    }
                    p
                })
                .collect()
        }
        "DaemonSet" => (0..nodes.max(1))
            .map(|n| {
                owned_pod(
                    owner,
                    "apps/v1",
                    "DaemonSet",
                    format!("{name}-{}", suffix(&format!("{name}/node/{n}"), 5)),
                    json!({"controller-revision-hash": template_hash(owner),
                           "pod-template-generation": owner.pointer("/metadata/generation").cloned().unwrap_or(json!(1)).to_string()}),
                    n,
                )
            })
            .collect(),
        "Job" => {
            let completions = owner
                .pointer("/spec/completions")
                .and_then(Value::as_i64)
                .unwrap_or(1)
                .clamp(0, 100);
            (0..completions)
                .map(|i| {
                    owned_pod(
                        owner,
                        "batch/v1",
                        "Job",
                        format!("{name}-{}", suffix(&format!("{name}/{uid}/{i}"), 5)),
                        json!({"batch.kubernetes.io/job-name": name, "job-name": name,
                               "batch.kubernetes.io/controller-uid": uid,
                               "controller-uid": uid}),
                        i % nodes.max(1),
                    )
                })
                .collect()
        }
        _ => Vec::new(),
    }
}

/// Bring the pods of StatefulSet/DaemonSet/Job `ns/name` in line with it.
pub fn sync_pod_owner(
    store: &Arc<Store>,
    rt: &super::resources::ResourceType,
    ns: &str,
    name: &str,
    nodes: i64,
) {
    let Some(pod_rt) = store.lookup("", "v1", "pods") else {
        return;
    };
    let Ok(owner) = store.get(rt, ns, name) else {
        return;
    };
    if owner.meta().deleting {
        return;
    }
    let Ok(owner_value) = owner.value() else {
        return;
    };
    let uid = &*owner.meta().uid;
    let wanted = pods_for(&rt.kind, &owner_value, nodes);
    let have: std::collections::BTreeSet<String> = store
        .list(&pod_rt, Some(ns), |o| owned_by(o, uid), None, None, None)
        .map(|p| p.items.iter().map(|p| p.meta().name.to_string()).collect())
        .unwrap_or_default();
    let wanted_names: std::collections::BTreeSet<String> =
        wanted.iter().map(|p| name_of(p).to_string()).collect();
    for p in wanted {
        if !have.contains(name_of(&p)) {
            let _ = store.create(&pod_rt, ns, p, &ctx());
        }
    }
    for extra in have.difference(&wanted_names) {
        let _ = store.delete(&pod_rt, ns, extra, &DeleteOpts::default());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mk_deploy(image: &str) -> Value {
        json!({"apiVersion": "apps/v1", "kind": "Deployment",
               "metadata": {"name": "web", "namespace": "prod", "uid": "u-1", "generation": 2},
               "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}},
                        "template": {"metadata": {"labels": {"app": "web"}},
                                     "spec": {"containers": [{"name": "c", "image": image}]}}}})
    }

    #[test]
    fn a_template_change_names_a_new_replica_set_whose_pods_it_owns() {
        let (a, b) = (mk_deploy("nginx:1"), mk_deploy("nginx:2"));
        assert_eq!(replica_set_name(&a), replica_set_name(&a.clone()));
        assert_ne!(replica_set_name(&a), replica_set_name(&b));
        let rs = replica_set_for(&a);
        assert_eq!(rs["metadata"]["ownerReferences"][0]["uid"], "u-1");
        let hash = template_hash(&a);
        assert_eq!(
            rs["spec"]["selector"]["matchLabels"]["pod-template-hash"],
            hash
        );
        assert_eq!(
            rs["metadata"]["annotations"]["deployment.kubernetes.io/revision"],
            "2"
        );
        let pod = pod_for(&rs, 1, 3);
        assert!(name_of(&pod).starts_with(&format!("{}-", name_of(&rs))));
        assert_eq!(pod["spec"]["nodeName"], "kubesim-node-1");
        assert_eq!(pod["metadata"]["labels"]["pod-template-hash"], hash);
        assert_ne!(name_of(&pod_for(&rs, 0, 3)), name_of(&pod));
    }
}
