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

/// A built-in kind's typed form (k8s-openapi): decoding for validation, schema for OpenAPI.
#[derive(Clone, Copy)]
pub struct Typed {
    roundtrip: fn(&ResourceType, &Value) -> ApiResult<Value>,
    /// Adds the kind's schema (and everything it refers to) to the generator; returns the
    /// `$ref` to it.
    pub schema: fn(&mut schemars::SchemaGenerator) -> schemars::Schema,
}

fn typed_of<T>() -> Typed
where
    T: DeserializeOwned + Serialize + schemars::JsonSchema,
{
    Typed {
        roundtrip: roundtrip::<T>,
        schema: |g| g.subschema_for::<T>(),
    }
}

/// The typed form of a built-in kind, `None` for custom resources and the rare kinds kubesim
/// stores untyped.
pub fn typed(group: &str, kind: &str) -> Option<Typed> {
    use k8s_openapi::api::{
        apps::v1 as apps, autoscaling::v2 as autoscaling, batch::v1 as batch,
        coordination::v1 as coordination, core::v1 as core, networking::v1 as networking,
        policy::v1 as policy, rbac::v1 as rbac, scheduling::v1 as scheduling,
        storage::v1 as storage,
    };
    Some(match (group, kind) {
        ("", "Namespace") => typed_of::<core::Namespace>(),
        ("", "ConfigMap") => typed_of::<core::ConfigMap>(),
        ("", "Secret") => typed_of::<core::Secret>(),
        ("", "Service") => typed_of::<core::Service>(),
        ("", "ServiceAccount") => typed_of::<core::ServiceAccount>(),
        ("", "Pod") => typed_of::<core::Pod>(),
        ("", "PersistentVolumeClaim") => typed_of::<core::PersistentVolumeClaim>(),
        ("", "PersistentVolume") => typed_of::<core::PersistentVolume>(),
        ("", "Endpoints") => typed_of::<core::Endpoints>(),
        ("", "Event") => typed_of::<core::Event>(),
        ("", "LimitRange") => typed_of::<core::LimitRange>(),
        ("", "ResourceQuota") => typed_of::<core::ResourceQuota>(),
        ("", "Node") => typed_of::<core::Node>(),
        ("", "ReplicationController") => typed_of::<core::ReplicationController>(),
        ("", "PodTemplate") => typed_of::<core::PodTemplate>(),
        ("events.k8s.io", "Event") => typed_of::<k8s_openapi::api::events::v1::Event>(),
        ("discovery.k8s.io", "EndpointSlice") => {
            typed_of::<k8s_openapi::api::discovery::v1::EndpointSlice>()
        }
        ("apps", "Deployment") => typed_of::<apps::Deployment>(),
        ("apps", "StatefulSet") => typed_of::<apps::StatefulSet>(),
        ("apps", "DaemonSet") => typed_of::<apps::DaemonSet>(),
        ("apps", "ReplicaSet") => typed_of::<apps::ReplicaSet>(),
        ("apps", "ControllerRevision") => typed_of::<apps::ControllerRevision>(),
        ("batch", "Job") => typed_of::<batch::Job>(),
        ("batch", "CronJob") => typed_of::<batch::CronJob>(),
        ("networking.k8s.io", "Ingress") => typed_of::<networking::Ingress>(),
        ("networking.k8s.io", "NetworkPolicy") => typed_of::<networking::NetworkPolicy>(),
        ("networking.k8s.io", "IngressClass") => typed_of::<networking::IngressClass>(),
        ("autoscaling", "HorizontalPodAutoscaler") => {
            typed_of::<autoscaling::HorizontalPodAutoscaler>()
        }
        ("policy", "PodDisruptionBudget") => typed_of::<policy::PodDisruptionBudget>(),
        ("rbac.authorization.k8s.io", "Role") => typed_of::<rbac::Role>(),
        ("rbac.authorization.k8s.io", "RoleBinding") => typed_of::<rbac::RoleBinding>(),
        ("rbac.authorization.k8s.io", "ClusterRole") => typed_of::<rbac::ClusterRole>(),
        ("rbac.authorization.k8s.io", "ClusterRoleBinding") => {
            typed_of::<rbac::ClusterRoleBinding>()
        }
        ("coordination.k8s.io", "Lease") => typed_of::<coordination::Lease>(),
        ("storage.k8s.io", "StorageClass") => typed_of::<storage::StorageClass>(),
        ("scheduling.k8s.io", "PriorityClass") => typed_of::<scheduling::PriorityClass>(),
        ("apiextensions.k8s.io", "CustomResourceDefinition") => typed_of::<
            k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
        >(),
        _ => return None,
    })
}

/// Check `obj` against the schema of its built-in kind and drop its unknown fields (returned,
/// for warnings); kinds without a typed schema here (custom resources, rare kinds) pass
/// unchanged.
pub fn check(rt: &ResourceType, obj: &mut Value, mode: FieldValidation) -> ApiResult<Vec<String>> {
    if rt.custom {
        return Ok(Vec::new());
    }
    // Events, Nodes, ControllerRevisions and CRDs are written by kubesim itself or checked
    // elsewhere (CRDs by `Registry::crd_types`); only their schema is published.
    if matches!(
        (rt.group.as_str(), rt.kind.as_str()),
        ("", "Event" | "Node")
            | ("apps", "ControllerRevision")
            | ("apiextensions.k8s.io", "CustomResourceDefinition")
    ) {
        return Ok(Vec::new());
    }
    let Some(t) = typed(&rt.group, &rt.kind) else {
        return Ok(Vec::new());
    };
    let known = (t.roundtrip)(rt, obj)?;
    required(rt, obj)?;
    let mut unknown = Vec::new();
    prune(obj, &known, &mut String::new(), &mut unknown);
    refuse_unknown(mode, &unknown)?;
    super::quantities::canonicalize(rt, obj)?;
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
/// `path` is where `obj` is (`a.b[0]`), grown and shrunk in place as the walk goes.
fn prune(obj: &mut Value, known: &Value, path: &mut String, unknown: &mut Vec<String>) {
    match (obj, known) {
        (Value::Object(m), Value::Object(k)) => {
            let mut drop = Vec::new();
            for (key, v) in m.iter_mut() {
                let len = path.len();
                if len > 0 {
                    path.push('.');
                }
                path.push_str(key);
                match k.get(key) {
                    Some(kv) => prune(v, kv, path, unknown),
                    None if v.is_null() => {}
                    None => {
                        unknown.push(path.clone());
                        drop.push(key.clone());
                    }
                }
                path.truncate(len);
            }
            for key in drop {
                m.remove(&key);
            }
        }
        (Value::Array(items), Value::Array(k)) if items.len() == k.len() => {
            for (i, (v, kv)) in items.iter_mut().zip(k).enumerate() {
                let len = path.len();
                path.push_str(&format!("[{i}]"));
                prune(v, kv, path, unknown);
                path.truncate(len);
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
