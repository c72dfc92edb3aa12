//! Desired-vs-live comparison for server-side apply: every field Git sets must hold the same
//! value live (server-populated and defaulted fields are ignored), and fields our field manager
//! applied before but Git no longer sets count as drift. Pure: two objects in, differences out.

use serde_json::{Map, Value};

/// Where desired and live disagree (`.spec.replicas`, `.metadata.labels.app`, ...).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Diff {
    pub differences: Vec<String>,
}

impl Diff {
    pub fn in_sync(&self) -> bool {
        self.differences.is_empty()
    }
}

/// Keys of `metadata` that Git may set and we therefore compare.
const COMPARED_METADATA: &[&str] = &["labels", "annotations"];

/// Compare `desired` (from Git) with `live`; `None` live is one difference (missing).
/// `manager` is our server-side-apply field manager.
pub fn diff(desired: &Value, live: Option<&Value>, manager: &str) -> Diff {
    let Some(live) = live else {
        return Diff {
            differences: vec!["(missing)".into()],
        };
    };
    let mut out = Vec::new();
    if let (Some(d), Some(l)) = (desired.as_object(), live.as_object()) {
        for (k, dv) in d {
            match k.as_str() {
                "apiVersion" | "kind" | "status" => {}
                "metadata" => {
                    for mk in COMPARED_METADATA {
                        if let Some(dm) = dv.get(*mk) {
                            subset(
                                dm,
                                l.get("metadata").and_then(|m| m.get(*mk)),
                                &format!(".metadata.{mk}"),
                                &mut out,
                            );
                        }
                    }
                }
                _ => subset(dv, l.get(k), &format!(".{k}"), &mut out),
            }
        }
    }
    stale_owned(desired, live, manager, &mut out);
    Diff { differences: out }
}

fn numbers_equal(a: &Value, b: &Value) -> bool {
    match (a.as_f64(), b.as_f64()) {
        (Some(x), Some(y)) => x == y,
        _ => false,
    }
}

/// `desired` must be contained in `live`: maps by key, lists element by element (same length),
/// scalars equal.
fn subset(desired: &Value, live: Option<&Value>, path: &str, out: &mut Vec<String>) {
    let Some(live) = live else {
        if !desired.is_null() {
            out.push(path.to_string());
        }
        return;
    };
    match (desired, live) {
        (Value::Object(d), Value::Object(l)) => {
            for (k, dv) in d {
                subset(dv, l.get(k), &format!("{path}.{k}"), out);
            }
        }
        (Value::Array(d), Value::Array(l)) => {
            if d.len() != l.len() {
                out.push(path.to_string());
                return;
            }
            for (i, (dv, lv)) in d.iter().zip(l).enumerate() {
                subset(dv, Some(lv), &format!("{path}[{i}]"), out);
            }
        }
        (d, l) if d == l || numbers_equal(d, l) => {}
        _ => out.push(path.to_string()),
    }
}

/// Fields our manager owns (by `managedFields`, operation Apply) that `desired` no longer sets.
fn stale_owned(desired: &Value, live: &Value, manager: &str, out: &mut Vec<String>) {
    let Some(entries) = live
        .pointer("/metadata/managedFields")
        .and_then(Value::as_array)
    else {
        return;
    };
    for e in entries {
        if e.get("manager").and_then(Value::as_str) != Some(manager)
            || e.get("operation").and_then(Value::as_str) != Some("Apply")
            || e.get("subresource").is_some()
        {
            continue;
        }
        if let Some(Value::Object(fields)) = e.get("fieldsV1") {
            walk_owned(fields, Some(desired), "", out);
        }
    }
}

fn walk_owned(
    fields: &Map<String, Value>,
    desired: Option<&Value>,
    path: &str,
    out: &mut Vec<String>,
) {
    for (k, child) in fields {
        let Some(name) = k.strip_prefix("f:") else {
            // List items (k:/v:) and markers (.) are compared through their parent list.
            continue;
        };
        let here = format!("{path}.{name}");
        let d = desired.and_then(|d| d.get(name));
        match d {
            None => out.push(here),
            Some(dv) => {
                if let Value::Object(sub) = child
                    && dv.is_object()
                {
                    walk_owned(sub, Some(dv), &here, out);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn mk_desired() -> Value {
        json!({"apiVersion": "apps/v1", "kind": "Deployment",
               "metadata": {"name": "web", "labels": {"app": "web"}},
               "spec": {"replicas": 2, "template": {"spec": {"containers": [{"name": "web", "image": "nginx:1"}]}}}})
    }

    fn mk_live() -> Value {
        // What the server returns: defaults, server metadata, status, ownership.
        json!({"apiVersion": "apps/v1", "kind": "Deployment",
               "metadata": {"name": "web", "uid": "u", "resourceVersion": "7", "generation": 1,
                            "labels": {"app": "web"},
                            "managedFields": [{"manager": "flotilla", "operation": "Apply",
                                "fieldsV1": {"f:metadata": {"f:labels": {"f:app": {}}},
                                             "f:spec": {"f:replicas": {}, "f:template": {"f:spec": {"f:containers": {}}}}}}]},
               "spec": {"replicas": 2, "revisionHistoryLimit": 10,
                        "template": {"spec": {"containers": [{"name": "web", "image": "nginx:1", "imagePullPolicy": "IfNotPresent"}],
                                              "restartPolicy": "Always"}}},
               "status": {"availableReplicas": 2}})
    }

    #[test]
    fn server_populated_fields_are_ignored() {
        assert!(diff(&mk_desired(), Some(&mk_live()), "flotilla").in_sync());
    }

    #[test]
    fn changed_values_and_list_lengths_differ() {
        let mut live = mk_live();
        live["spec"]["replicas"] = json!(5);
        assert_eq!(
            diff(&mk_desired(), Some(&live), "flotilla").differences,
            [".spec.replicas"]
        );
        let mut desired = mk_desired();
        desired["spec"]["template"]["spec"]["containers"][0]["image"] = json!("nginx:2");
        assert_eq!(
            diff(&desired, Some(&mk_live()), "flotilla").differences,
            [".spec.template.spec.containers[0].image"]
        );
        desired["spec"]["template"]["spec"]["containers"] = json!([{"name": "a"}, {"name": "b"}]);
        assert!(!diff(&desired, Some(&mk_live()), "flotilla").in_sync());
    }

    #[test]
    fn field_removed_from_git_but_still_owned_is_drift() {
        let mut desired = mk_desired();
        desired["metadata"]["labels"] = json!({});
        let d = diff(&desired, Some(&mk_live()), "flotilla");
        assert_eq!(d.differences, [".metadata.labels.app"]);
        // Another manager's field is not ours to remove.
        assert!(
            diff(&desired, Some(&mk_live()), "someone-else")
                .differences
                .is_empty()
        );
    }

    #[test]
    fn missing_live_object_is_a_difference_and_numbers_compare_by_value() {
        assert!(!diff(&mk_desired(), None, "flotilla").in_sync());
        let mut live = mk_live();
        live["spec"]["replicas"] = json!(2.0);
        assert!(diff(&mk_desired(), Some(&live), "flotilla").in_sync());
    }
}
