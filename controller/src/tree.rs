//! The resource tree the API shows below an app's managed workloads: the objects the cluster
//! made for them (Deployment → ReplicaSet → Pod, StatefulSet/DaemonSet/Job → Pod, CronJob →
//! Job → Pod), listed from the cluster on request, bounded, never cached or compared.

use std::collections::BTreeSet;
use std::time::Duration;

use kube::api::{ApiResource, DynamicObject, GroupVersionKind, ListParams};
use kube::{Api, Client};
use serde::Serialize;
use serde_json::Value;

use crate::explain::HealthView;

/// Children listed per parent at most (a parent with more is reported as truncated).
pub const MAX_CHILDREN: u32 = 500;
/// Nodes in one tree at most.
pub const MAX_NODES: usize = 2000;
/// List calls one tree may make (each workload and each ReplicaSet or Job costs one).
pub const MAX_LISTS: usize = 64;
/// Trees built at once on one controller: the lists go to the destination clusters under the
/// controller's identity, beside its syncs; a view asked while these are busy comes without
/// children (and says so).
static BUILDING: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(4);
/// Deadline of one list call.
const LIST_TIMEOUT: Duration = Duration::from_secs(5);

/// One object the cluster made for a managed one.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ChildNode {
    pub group: String,
    pub version: String,
    pub kind: String,
    pub namespace: String,
    pub name: String,
    pub uid: String,
    /// The owner's uid (a managed resource's or another child's).
    pub parent_uid: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub health: Option<HealthView>,
    /// Pod phase, ReplicaSet replicas ...: one short line.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub info: String,
}

/// The kinds a workload kind owns: (group, version, kind, plural).
fn child_kinds(
    group: &str,
    kind: &str,
) -> &'static [(&'static str, &'static str, &'static str, &'static str)] {
    match (group, kind) {
        ("apps", "Deployment") => &[("apps", "v1", "ReplicaSet", "replicasets")],
        ("apps", "ReplicaSet" | "StatefulSet" | "DaemonSet") | ("batch", "Job") => {
            &[("", "v1", "Pod", "pods")]
        }
        ("batch", "CronJob") => &[("batch", "v1", "Job", "jobs")],
        _ => &[],
    }
}

/// `spec.selector.matchLabels` as a label selector string (narrows the list; ownership is
/// still checked by uid).
fn selector_of(obj: &Value) -> Option<String> {
    let m = obj.pointer("/spec/selector/matchLabels")?.as_object()?;
    let parts: Vec<String> = m
        .iter()
        .filter_map(|(k, v)| Some(format!("{k}={}", v.as_str()?)))
        .collect();
    (!parts.is_empty()).then(|| parts.join(","))
}

fn owned_by(obj: &Value, uid: &str) -> bool {
    obj.pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)
        .is_some_and(|refs| refs.iter().any(|r| r["uid"] == uid))
}

fn info(kind: &str, obj: &Value) -> String {
    let int = |p: &str| obj.pointer(p).and_then(Value::as_i64).unwrap_or(0);
    match kind {
        "Pod" => obj
            .pointer("/status/phase")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string(),
        "ReplicaSet" => format!(
            "{}/{} ready",
            int("/status/readyReplicas"),
            int("/spec/replicas")
        ),
        "Job" => format!("{} succeeded", int("/status/succeeded")),
        _ => String::new(),
    }
}

/// The objects the cluster made for `roots` (live managed objects), and whether the tree is
/// incomplete (a limit was reached, a list failed, or too many trees are being built).
pub struct Children {
    pub nodes: Vec<ChildNode>,
    pub truncated: bool,
}

/// The children of `roots`, breadth first, within [`MAX_NODES`], [`MAX_LISTS`] list calls
/// and [`MAX_CHILDREN`] per parent. A list that fails or times out leaves that branch out.
pub async fn children(client: &Client, roots: &[Value]) -> Children {
    let Ok(_permit) = BUILDING.try_acquire() else {
        return Children {
            nodes: Vec::new(),
            truncated: !roots.iter().all(|r| {
                let av = r["apiVersion"].as_str().unwrap_or_default();
                let group = av.split_once('/').map_or("", |(g, _)| g);
                child_kinds(group, r["kind"].as_str().unwrap_or_default()).is_empty()
            }),
        };
    };
    let mut out: Vec<ChildNode> = Vec::new();
    let mut truncated = false;
    let mut lists = 0usize;
    let mut frontier: Vec<Value> = roots.to_vec();
    let mut seen: BTreeSet<String> = BTreeSet::new();
    while !frontier.is_empty() && out.len() < MAX_NODES {
        let mut next = Vec::new();
        for parent in frontier {
            let group_version = parent["apiVersion"].as_str().unwrap_or_default();
            let group = group_version.split_once('/').map_or("", |(g, _)| g);
            let kind = parent["kind"].as_str().unwrap_or_default();
            let (Some(ns), Some(uid)) = (
                parent
                    .pointer("/metadata/namespace")
                    .and_then(Value::as_str),
                parent.pointer("/metadata/uid").and_then(Value::as_str),
            ) else {
                continue;
            };
            for (g, v, k, plural) in child_kinds(group, kind) {
                if lists >= MAX_LISTS {
                    truncated = true;
                    continue;
                }
                lists += 1;
                let ar = ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(g, v, k), plural);
                let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &ar);
                let mut lp = ListParams::default().limit(MAX_CHILDREN);
                if let Some(sel) = selector_of(&parent) {
                    lp = lp.labels(&sel);
                }
                let list = match tokio::time::timeout(LIST_TIMEOUT, api.list(&lp)).await {
                    Ok(Ok(l)) => l,
                    Ok(Err(e)) => {
                        tracing::debug!(error = %e, kind = k, "listing children for the resource tree");
                        continue;
                    }
                    Err(_) => {
                        tracing::debug!(
                            kind = k,
                            "listing children for the resource tree timed out"
                        );
                        continue;
                    }
                };
                for item in list.items {
                    let obj = match serde_json::to_value(&item) {
                        Ok(mut o) => {
                            o["apiVersion"] = Value::from(ar.api_version.clone());
                            o["kind"] = Value::from(*k);
                            o
                        }
                        Err(_) => continue,
                    };
                    let child_uid = item.metadata.uid.clone().unwrap_or_default();
                    if !owned_by(&obj, uid) || !seen.insert(child_uid.clone()) {
                        continue;
                    }
                    let h = crate::health::assess(g, k, Some(&obj));
                    out.push(ChildNode {
                        group: g.to_string(),
                        version: v.to_string(),
                        kind: k.to_string(),
                        namespace: ns.to_string(),
                        name: item.metadata.name.clone().unwrap_or_default(),
                        uid: child_uid,
                        parent_uid: uid.to_string(),
                        health: Some(HealthView {
                            status: h.code.as_str(),
                            message: h.message.clone(),
                        }),
                        info: info(k, &obj),
                    });
                    if out.len() >= MAX_NODES {
                        return Children {
                            nodes: out,
                            truncated: true,
                        };
                    }
                    next.push(obj);
                }
            }
        }
        frontier = next;
    }
    Children {
        nodes: out,
        truncated,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn workloads_name_their_child_kinds_and_selectors() {
        assert_eq!(child_kinds("apps", "Deployment")[0].2, "ReplicaSet");
        assert_eq!(child_kinds("apps", "ReplicaSet")[0].2, "Pod");
        assert_eq!(child_kinds("batch", "CronJob")[0].2, "Job");
        assert!(child_kinds("", "ConfigMap").is_empty());
        let d = json!({"spec": {"selector": {"matchLabels": {"app": "web", "tier": "front"}}}});
        assert_eq!(selector_of(&d).as_deref(), Some("app=web,tier=front"));
        assert_eq!(selector_of(&json!({})), None);
        let pod = json!({"metadata": {"ownerReferences": [{"uid": "u1"}]}, "status": {"phase": "Running"}});
        assert!(owned_by(&pod, "u1") && !owned_by(&pod, "u2"));
        assert_eq!(info("Pod", &pod), "Running");
    }
}
