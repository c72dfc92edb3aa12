//! Schema checks of built-in kinds, as a real API server decodes them: a body is decoded into
//! the kind's typed struct (k8s-openapi), so wrong types are 400, missing required fields 422,
//! and unknown fields are dropped (`fieldValidation=Ignore|Warn`, the default) or refused
//! (`Strict`).

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::error::{ApiError, ApiResult};
use super::objects::name_of;
use super::resources::ResourceType;

/// The `fieldValidation` query parameter.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum FieldValidation {
    Ignore,
    #[default]
    Warn,
    Strict,
}

impl FieldValidation {
    /// Parse the query value (case as the API documents it); unknown values are 400.
    pub fn parse(v: Option<&str>) -> ApiResult<Self> {
        match v {
            None | Some("") | Some("Warn") => Ok(Self::Warn),
            Some("Ignore") => Ok(Self::Ignore),
            Some("Strict") => Ok(Self::Strict),
            Some(other) => Err(ApiError::bad_request(format!(
                "fieldValidation: Unsupported value: {other:?}: supported values: \"Ignore\", \"Strict\", \"Warn\""
            ))),
        }
    }
}

/// Check `obj` against the schema of its built-in kind and drop its unknown fields (returned,
/// for warnings); kinds without a typed schema here (custom resources, rare kinds) pass
/// unchanged.
pub fn check(rt: &ResourceType, obj: &mut Value, mode: FieldValidation) -> ApiResult<Vec<String>> {
    use k8s_openapi::api::{
        apps::v1 as apps, autoscaling::v2 as autoscaling, batch::v1 as batch,
        coordination::v1 as coordination, core::v1 as core, networking::v1 as networking,
        policy::v1 as policy, rbac::v1 as rbac, scheduling::v1 as scheduling,
        storage::v1 as storage,
    };
    let known = match (rt.group.as_str(), rt.kind.as_str()) {
        ("", "Namespace") => roundtrip::<core::Namespace>(rt, obj)?,
        ("", "ConfigMap") => roundtrip::<core::ConfigMap>(rt, obj)?,
        ("", "Secret") => roundtrip::<core::Secret>(rt, obj)?,
        ("", "Service") => roundtrip::<core::Service>(rt, obj)?,
        ("", "ServiceAccount") => roundtrip::<core::ServiceAccount>(rt, obj)?,
        ("", "Pod") => roundtrip::<core::Pod>(rt, obj)?,
        ("", "PersistentVolumeClaim") => roundtrip::<core::PersistentVolumeClaim>(rt, obj)?,
        ("", "PersistentVolume") => roundtrip::<core::PersistentVolume>(rt, obj)?,
        ("", "Endpoints") => roundtrip::<core::Endpoints>(rt, obj)?,
        ("", "LimitRange") => roundtrip::<core::LimitRange>(rt, obj)?,
        ("", "ResourceQuota") => roundtrip::<core::ResourceQuota>(rt, obj)?,
        ("", "ReplicationController") => roundtrip::<core::ReplicationController>(rt, obj)?,
        ("", "PodTemplate") => roundtrip::<core::PodTemplate>(rt, obj)?,
        ("events.k8s.io", "Event") => roundtrip::<k8s_openapi::api::events::v1::Event>(rt, obj)?,
        ("discovery.k8s.io", "EndpointSlice") => {
            roundtrip::<k8s_openapi::api::discovery::v1::EndpointSlice>(rt, obj)?
        }
        ("apps", "Deployment") => roundtrip::<apps::Deployment>(rt, obj)?,
        ("apps", "StatefulSet") => roundtrip::<apps::StatefulSet>(rt, obj)?,
        ("apps", "DaemonSet") => roundtrip::<apps::DaemonSet>(rt, obj)?,
        ("apps", "ReplicaSet") => roundtrip::<apps::ReplicaSet>(rt, obj)?,
        ("batch", "Job") => roundtrip::<batch::Job>(rt, obj)?,
        ("batch", "CronJob") => roundtrip::<batch::CronJob>(rt, obj)?,
        ("networking.k8s.io", "Ingress") => roundtrip::<networking::Ingress>(rt, obj)?,
        ("networking.k8s.io", "NetworkPolicy") => roundtrip::<networking::NetworkPolicy>(rt, obj)?,
        ("networking.k8s.io", "IngressClass") => roundtrip::<networking::IngressClass>(rt, obj)?,
        ("autoscaling", "HorizontalPodAutoscaler") => {
            roundtrip::<autoscaling::HorizontalPodAutoscaler>(rt, obj)?
        }
        ("policy", "PodDisruptionBudget") => roundtrip::<policy::PodDisruptionBudget>(rt, obj)?,
        ("rbac.authorization.k8s.io", "Role") => roundtrip::<rbac::Role>(rt, obj)?,
        ("rbac.authorization.k8s.io", "RoleBinding") => roundtrip::<rbac::RoleBinding>(rt, obj)?,
        ("rbac.authorization.k8s.io", "ClusterRole") => roundtrip::<rbac::ClusterRole>(rt, obj)?,
        ("rbac.authorization.k8s.io", "ClusterRoleBinding") => {
            roundtrip::<rbac::ClusterRoleBinding>(rt, obj)?
        }
        ("coordination.k8s.io", "Lease") => roundtrip::<coordination::Lease>(rt, obj)?,
        ("storage.k8s.io", "StorageClass") => roundtrip::<storage::StorageClass>(rt, obj)?,
        ("scheduling.k8s.io", "PriorityClass") => roundtrip::<scheduling::PriorityClass>(rt, obj)?,
        _ => return Ok(Vec::new()),
    };
    required(rt, obj)?;
    let mut unknown = Vec::new();
    prune(obj, &known, "", &mut unknown);
    refuse_unknown(mode, &unknown)?;
    Ok(unknown)
}

/// With `fieldValidation=Strict`, unknown (pruned) fields are a 400 naming each of them.
pub fn refuse_unknown(mode: FieldValidation, unknown: &[String]) -> ApiResult<()> {
    if mode == FieldValidation::Strict && !unknown.is_empty() {
        let list: Vec<String> = unknown
            .iter()
            .map(|p| format!("unknown field \"{p}\""))
            .collect();
        return Err(ApiError::bad_request(format!(
            "strict decoding error: {}",
            list.join(", ")
        )));
    }
    Ok(())
}

/// The required fields the typed structs cannot tell (k8s-openapi defaults a missing struct):
/// workloads need a selector matching their template's labels and containers with a name and
/// an image; pods and jobs need containers.
fn required(rt: &ResourceType, obj: &Value) -> ApiResult<()> {
    let missing = |field: &str| {
        Err(ApiError::invalid(
            &rt.kind,
            rt,
            name_of(obj),
            field,
            "Required value",
        ))
    };
    let (pod_spec, pod_path) = match (rt.group.as_str(), rt.kind.as_str()) {
        ("apps", "Deployment" | "StatefulSet" | "DaemonSet" | "ReplicaSet") => {
            let selector = obj.pointer("/spec/selector");
            let empty = selector.is_none_or(|s| {
                s.get("matchLabels")
                    .is_none_or(|m| m.as_object().is_none_or(|m| m.is_empty()))
                    && s.get("matchExpressions")
                        .is_none_or(|m| m.as_array().is_none_or(|m| m.is_empty()))
            });
            if empty {
                return missing("spec.selector");
            }
            if obj.pointer("/spec/template").is_none() {
                return missing("spec.template");
            }
            let labels = obj.pointer("/spec/template/metadata/labels");
            if let Some(want) = obj
                .pointer("/spec/selector/matchLabels")
                .and_then(Value::as_object)
            {
                let matches = want
                    .iter()
                    .all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v));
                if !matches {
                    return Err(ApiError::invalid(
                        &rt.kind,
                        rt,
                        name_of(obj),
                        "spec.template.metadata.labels",
                        "Invalid value: selector does not match template labels",
                    ));
                }
            }
            (obj.pointer("/spec/template/spec"), "spec.template.spec")
        }
        ("batch", "Job") => (obj.pointer("/spec/template/spec"), "spec.template.spec"),
        ("", "Pod") => (obj.get("spec"), "spec"),
        _ => return Ok(()),
    };
    let containers = pod_spec
        .and_then(|s| s.get("containers"))
        .and_then(Value::as_array);
    match containers {
        None => return missing(&format!("{pod_path}.containers")),
        Some(c) if c.is_empty() => return missing(&format!("{pod_path}.containers")),
        Some(c) => {
            for (i, ctr) in c.iter().enumerate() {
                for f in ["name", "image"] {
                    if ctr.get(f).and_then(Value::as_str).is_none_or(str::is_empty) {
                        return missing(&format!("{pod_path}.containers[{i}].{f}"));
                    }
                }
            }
        }
    }
    Ok(())
}

/// Decode `obj` as `T` and encode it again: what the kind knows of `obj`.
fn roundtrip<T: DeserializeOwned + Serialize>(rt: &ResourceType, obj: &Value) -> ApiResult<Value> {
    let typed: T = match serde_path_to_error::deserialize(obj) {
        Ok(t) => t,
        Err(e) => {
            let path = e.path().to_string();
            let inner = e.into_inner().to_string();
            if let Some(field) = inner
                .strip_prefix("missing field `")
                .and_then(|r| r.split('`').next())
            {
                let at = if path == "." || path.is_empty() {
                    field.to_string()
                } else {
                    format!("{path}.{field}")
                };
                return Err(ApiError::invalid(
                    &rt.kind,
                    rt,
                    name_of(obj),
                    &at,
                    "Required value",
                ));
            }
            return Err(ApiError::bad_request(format!(
                "{kind} in version \"{v}\" cannot be handled as a {kind}: {path}: {inner}",
                kind = rt.kind,
                v = rt.version
            )));
        }
    };
    serde_json::to_value(&typed).map_err(|e| ApiError::internal(e.to_string()))
}

/// Remove from `obj` every field `known` lacks (nulls aside), collecting their paths.
fn prune(obj: &mut Value, known: &Value, path: &str, unknown: &mut Vec<String>) {
    match (obj, known) {
        (Value::Object(m), Value::Object(k)) => {
            let mut drop = Vec::new();
            for (key, v) in m.iter_mut() {
                let here = if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                };
                match k.get(key) {
                    Some(kv) => prune(v, kv, &here, unknown),
                    None if v.is_null() => {}
                    None => {
                        unknown.push(here);
                        drop.push(key.clone());
                    }
                }
            }
            for key in drop {
                m.remove(&key);
            }
        }
        (Value::Array(items), Value::Array(k)) if items.len() == k.len() => {
            for (i, (v, kv)) in items.iter_mut().zip(k).enumerate() {
                prune(v, kv, &format!("{path}[{i}]"), unknown);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rt(kind: &str) -> std::sync::Arc<ResourceType> {
        let (group, plural) = match kind {
            "ConfigMap" => ("", "configmaps"),
            _ => ("apps", "deployments"),
        };
        super::super::resources::Registry::default()
            .lookup(group, "v1", plural)
            .expect("built-in kind")
    }

    #[test]
    fn unknown_fields_are_dropped_or_refused_and_types_checked() {
        let cm = rt("ConfigMap");
        let mut obj = json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "a", "bogus": 1}, "data": {"k": "v"}, "extra": true});
        check(&cm, &mut obj, FieldValidation::Warn).expect("warn drops");
        assert_eq!(
            obj,
            json!({"apiVersion": "v1", "kind": "ConfigMap",
                   "metadata": {"name": "a"}, "data": {"k": "v"}})
        );
        let mut obj = json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "a"}, "extra": true});
        let e = check(&cm, &mut obj, FieldValidation::Strict).expect_err("strict");
        assert_eq!(e.code, 400);
        assert!(
            e.message.contains("unknown field \"extra\""),
            "{}",
            e.message
        );
        let mut obj = json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "a"}, "data": {"k": 3}});
        let e = check(&cm, &mut obj, FieldValidation::Warn).expect_err("integer data");
        assert_eq!(e.code, 400, "{}", e.message);
        let d = rt("Deployment");
        let mut obj = json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "a"}, "spec": {"replicas": 1}});
        let e = check(&d, &mut obj, FieldValidation::Warn).expect_err("no selector");
        assert_eq!(e.code, 422, "{}", e.message);
        assert!(e.message.contains("spec.selector"), "{}", e.message);
    }
}
