//! Endpoints that act instead of storing: the access reviews `kubectl auth can-i` and
//! `kubectl auth whoami` create, and pod eviction (what `kubectl drain` posts) under budgets.

use serde_json::{Value, json};

use super::error::{ApiError, ApiResult};
use super::resources::ResourceType;
use super::selector::object_selector_matches;
use super::store::{DeleteOpts, Store};

/// Answer a `SelfSubjectAccessReview`, `SelfSubjectRulesReview` or `SelfSubjectReview`.
/// kubesim authorizes every authenticated request (no RBAC), and says so: every access is
/// allowed and the rules are `*`.
pub fn review(rt: &ResourceType, mut body: Value, user: &str) -> ApiResult<Value> {
    if !body.is_object() {
        return Err(ApiError::bad_request(format!(
            "{} in version {:?} cannot be handled: the body is not an object",
            rt.kind, rt.version
        )));
    }
    body["apiVersion"] = json!(rt.api_version());
    body["kind"] = json!(rt.kind);
    if body.get("metadata").is_none_or(Value::is_null) {
        body["metadata"] = json!({});
    }
    body["metadata"]["creationTimestamp"] = Value::Null;
    body["status"] = match rt.kind.as_str() {
        "SelfSubjectAccessReview" => {
            let spec = body.get("spec").cloned().unwrap_or(Value::Null);
            if spec.get("resourceAttributes").is_none()
                && spec.get("nonResourceAttributes").is_none()
            {
                return Err(ApiError::invalid(
                    &rt.kind,
                    rt,
                    "",
                    "spec.resourceAttributes",
                    "Invalid value: \"null\": exactly one of nonResourceAttributes or resourceAttributes must be specified",
                ));
            }
            json!({"allowed": true, "reason": "kubesim allows every authenticated request"})
        }
        "SelfSubjectRulesReview" => json!({
            "resourceRules": [{"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]}],
            "nonResourceRules": [{"verbs": ["*"], "nonResourceURLs": ["*"]}],
            "incomplete": false,
        }),
        _ => json!({"userInfo": {
            "username": user,
            "groups": ["system:masters", "system:authenticated"],
        }}),
    };
    Ok(body)
}

/// Evict pod `ns/name` (`policy/v1` Eviction): refused with 429 when a PodDisruptionBudget
/// selecting it allows no disruption, else the pod is deleted with the eviction's
/// `deleteOptions`. The budget is computed from the pods as the disruption controller would
/// (healthy = Ready and not terminating), so no PDB status controller is needed.
pub fn evict(
    store: &Store,
    pods: &std::sync::Arc<ResourceType>,
    ns: &str,
    name: &str,
    opts: &DeleteOpts,
) -> ApiResult<Value> {
    let pod = store.get_value(pods, ns, name)?;
    let labels = pod
        .pointer("/metadata/labels")
        .cloned()
        .unwrap_or(json!({}));
    if let Some(pdbs) = store.lookup("policy", "v1", "poddisruptionbudgets") {
        let budgets = store
            .list(&pdbs, Some(ns), |_| true, None, None, None)?
            .values()?;
        let matching: Vec<&Value> = budgets
            .iter()
            .filter(|p| {
                p.pointer("/spec/selector")
                    .is_some_and(|s| object_selector_matches(s, &labels))
            })
            .collect();
        if matching.len() > 1 {
            return Err(ApiError::internal(
                "This pod has more than one PodDisruptionBudget, which the eviction subresource does not support.",
            ));
        }
        if let Some(pdb) = matching.first() {
            check_budget(store, pods, ns, pdb, &pod)?;
        }
    }
    if !opts.dry_run {
        store.delete(pods, ns, name, opts)?;
    }
    Ok(json!({"kind": "Status", "apiVersion": "v1", "metadata": {},
              "status": "Success", "code": 201}))
}

fn is_healthy(pod: &Value) -> bool {
    pod.pointer("/metadata/deletionTimestamp").is_none()
        && pod
            .pointer("/status/conditions")
            .and_then(Value::as_array)
            .is_some_and(|cs| {
                cs.iter()
                    .any(|c| c["type"] == "Ready" && c["status"] == "True")
            })
}

fn check_budget(
    store: &Store,
    pods: &ResourceType,
    ns: &str,
    pdb: &Value,
    pod: &Value,
) -> ApiResult<()> {
    let selector = pdb.pointer("/spec/selector").cloned().unwrap_or(json!({}));
    let all = store
        .list(pods, Some(ns), |_| true, None, None, None)?
        .values()?;
    let selected: Vec<&Value> = all
        .iter()
        .filter(|p| {
            let labels = p.pointer("/metadata/labels").cloned().unwrap_or(json!({}));
            object_selector_matches(&selector, &labels)
        })
        .collect();
    let expected = selected.len() as i64;
    let healthy = selected.iter().filter(|p| is_healthy(p)).count() as i64;
    // An absolute number, or a percentage of the selected pods rounded up (as the
    // disruption controller rounds both fields).
    let amount = |v: &Value| -> Option<i64> {
        match v {
            Value::Number(n) => n.as_i64(),
            Value::String(s) => {
                let pct: i64 = s.strip_suffix('%')?.parse().ok()?;
                Some((pct * expected + 99) / 100)
            }
            _ => None,
        }
    };
    let desired = if let Some(min) = pdb.pointer("/spec/minAvailable").and_then(amount) {
        min
    } else if let Some(max) = pdb.pointer("/spec/maxUnavailable").and_then(amount) {
        (expected - max).max(0)
    } else {
        return Ok(());
    };
    let allowed = healthy - desired;
    // An unhealthy pod may go while the budget holds (`unhealthyPodEvictionPolicy:
    // IfHealthyBudget`, the default); a healthy one needs a disruption to spare.
    let ok = if is_healthy(pod) {
        allowed > 0
    } else {
        allowed >= 0
    };
    if ok {
        return Ok(());
    }
    let pdb_name = pdb
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("");
    Err(ApiError::disruption_budget(format!(
        "The disruption budget {pdb_name} needs {desired} healthy pods and has {healthy} currently"
    )))
}
