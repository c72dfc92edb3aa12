//! The three classic patch types: JSON patch (RFC 6902), JSON merge patch (RFC 7386) and
//! Kubernetes strategic merge patch (lists merged by key, `$patch` directives).

use serde_json::Value;

use super::schema::{ListKind, item_key, list_kind};

/// A patch the server cannot apply.
#[derive(Debug, thiserror::Error)]
pub enum PatchError {
    #[error("the body of the request was not valid JSON: {0}")]
    Decode(#[from] serde_json::Error),
    #[error("{0}")]
    JsonPatch(#[from] json_patch::PatchError),
    #[error("strategic merge patch: {0}")]
    Strategic(String),
}

pub fn json_patch(target: &mut Value, body: &[u8]) -> Result<(), PatchError> {
    let p: json_patch::Patch = serde_json::from_slice(body)?;
    json_patch::patch(target, &p)?;
    Ok(())
}

pub fn merge_patch(target: &mut Value, body: &[u8]) -> Result<(), PatchError> {
    let p: Value = serde_json::from_slice(body)?;
    json_patch::merge(target, &p);
    Ok(())
}

pub fn strategic_merge_patch(target: &mut Value, body: &[u8]) -> Result<(), PatchError> {
    let p: Value = serde_json::from_slice(body)?;
    strategic(target, &p, "")
}

fn strategic(target: &mut Value, patch: &Value, field: &str) -> Result<(), PatchError> {
    let Value::Object(pm) = patch else {
        *target = patch.clone();
        return Ok(());
    };
    if pm.get("$patch").and_then(Value::as_str) == Some("replace") {
        let mut replaced = patch.clone();
        if let Some(m) = replaced.as_object_mut() {
            m.remove("$patch");
        }
        *target = replaced;
        return Ok(());
    }
    if !target.is_object() {
        *target = Value::Object(Default::default());
    }
    let Some(tm) = target.as_object_mut() else {
        return Err(PatchError::Strategic(format!(
            "cannot patch non-object at {field}"
        )));
    };
    for (k, pv) in pm {
        if k == "$patch" || k.starts_with("$setElementOrder/") || k == "$retainKeys" {
            continue;
        }
        if let Some(list_field) = k.strip_prefix("$deleteFromPrimitiveList/") {
            if let (Some(Value::Array(items)), Value::Array(del)) = (tm.get_mut(list_field), pv) {
                items.retain(|i| !del.contains(i));
            }
            continue;
        }
        if pv.is_null() {
            tm.remove(k);
            continue;
        }
        match (tm.get_mut(k), pv) {
            (Some(tv @ Value::Object(_)), Value::Object(_)) => strategic(tv, pv, k)?,
            (Some(Value::Array(tl)), Value::Array(pl)) => merge_list(tl, pl, k),
            (_, Value::Array(pl)) => {
                let cleaned: Vec<Value> = pl
                    .iter()
                    .filter(|i| i.get("$patch").is_none())
                    .cloned()
                    .collect();
                tm.insert(k.clone(), Value::Array(cleaned));
            }
            (Some(tv), _) if pv.is_object() => {
                *tv = Value::Null;
                strategic(tv, pv, k)?;
            }
            (None, Value::Object(_)) => {
                let mut fresh = Value::Object(Default::default());
                strategic(&mut fresh, pv, k)?;
                tm.insert(k.clone(), fresh);
            }
            _ => {
                tm.insert(k.clone(), pv.clone());
            }
        }
    }
    Ok(())
}

fn merge_list(target: &mut Vec<Value>, patch: &[Value], field: &str) {
    if patch
        .iter()
        .any(|i| i.get("$patch").and_then(Value::as_str) == Some("replace"))
    {
        *target = patch
            .iter()
            .filter(|i| i.get("$patch").is_none())
            .cloned()
            .collect();
        return;
    }
    match list_kind(false, field, patch) {
        ListKind::Map(keys) => {
            for item in patch {
                let k = item_key(item, keys);
                let pos = k.as_ref().and_then(|k| {
                    target
                        .iter()
                        .position(|t| item_key(t, keys).as_ref() == Some(k))
                });
                let delete = item.get("$patch").and_then(Value::as_str) == Some("delete");
                match (pos, delete) {
                    (Some(p), true) => {
                        target.remove(p);
                    }
                    (None, true) => {}
                    (Some(p), false) => {
                        // Errors inside list items cannot happen for object merges.
                        let _ = strategic(&mut target[p], item, field);
                    }
                    (None, false) => target.push(item.clone()),
                }
            }
        }
        ListKind::Set => {
            for item in patch {
                if !target.contains(item) {
                    target.push(item.clone());
                }
            }
        }
        ListKind::Atomic => *target = patch.to_vec(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn mk_pod() -> Value {
        json!({"spec": {"containers": [
            {"name": "a", "image": "a:1", "env": [{"name": "X", "value": "1"}]},
            {"name": "b", "image": "b:1"}]}})
    }

    #[test]
    fn strategic_merges_containers_and_env_by_name() {
        let mut pod = mk_pod();
        let p = json!({"spec": {"containers": [{"name": "a", "image": "a:2", "env": [{"name": "Y", "value": "2"}]}]}});
        strategic_merge_patch(&mut pod, p.to_string().as_bytes()).expect("patch");
        assert_eq!(pod["spec"]["containers"].as_array().expect("c").len(), 2);
        assert_eq!(pod["spec"]["containers"][0]["image"], "a:2");
        assert_eq!(
            pod["spec"]["containers"][0]["env"]
                .as_array()
                .expect("env")
                .len(),
            2
        );
    }

    #[test]
    fn strategic_delete_directive_removes_item() {
        let mut pod = mk_pod();
        let p = json!({"spec": {"containers": [{"name": "b", "$patch": "delete"}]}});
        strategic_merge_patch(&mut pod, p.to_string().as_bytes()).expect("patch");
        assert_eq!(pod["spec"]["containers"].as_array().expect("c").len(), 1);
    }

    #[test]
    fn merge_patch_replaces_lists_and_null_deletes() {
        let mut pod = mk_pod();
        let p = json!({"spec": {"containers": [{"name": "z"}]}, "metadata": null});
        merge_patch(&mut pod, p.to_string().as_bytes()).expect("patch");
        assert_eq!(pod["spec"]["containers"], json!([{"name": "z"}]));
    }

    #[test]
    fn json_patch_failure_is_an_error() {
        let mut pod = mk_pod();
        let p = json!([{"op": "test", "path": "/spec/containers/0/name", "value": "nope"}]);
        assert!(json_patch(&mut pod, p.to_string().as_bytes()).is_err());
    }
}
