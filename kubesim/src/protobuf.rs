//! Protobuf request bodies (`application/vnd.kubernetes.protobuf`), as client-go's typed
//! clients send them: `kubectl create configmap|secret|namespace|serviceaccount`, `auth
//! can-i`, `auth whoami` and `drain` (evictions). Decoded with k8s-pb into the JSON form.
//!
//! Only kinds whose every field is converted here are accepted; any other protobuf body is a
//! 415 (a deliberate difference, see KUBESIM.md), never a partly decoded object.

use std::collections::BTreeMap;

use base64::Engine;
use k8s_pb::api::{authentication::v1 as authn, authorization::v1 as authz, core::v1 as core};
use k8s_pb::apimachinery::pkg::apis::meta::v1 as meta;
use k8s_pb::apimachinery::pkg::runtime::Unknown;
use prost::Message;
use serde_json::{Map, Value, json};

use super::error::{ApiError, ApiResult};

/// The media type.
pub const MEDIA_TYPE: &str = "application/vnd.kubernetes.protobuf";

/// Every protobuf body starts with these four bytes, then a `runtime.Unknown`.
const MAGIC: &[u8] = b"k8s\0";

/// Decode a protobuf body into the object's JSON form.
pub fn decode(body: &[u8]) -> ApiResult<Value> {
    let rest = body
        .strip_prefix(MAGIC)
        .ok_or_else(|| ApiError::bad_request("protobuf body without the k8s envelope prefix"))?;
    let unknown = Unknown::decode(rest)
        .map_err(|e| ApiError::bad_request(format!("protobuf envelope: {e}")))?;
    if unknown
        .content_encoding
        .as_deref()
        .is_some_and(|e| !e.is_empty())
    {
        return Err(ApiError::bad_request(
            "protobuf body with a content encoding",
        ));
    }
    let tm = unknown.type_meta.unwrap_or_default();
    let api_version = tm.api_version.unwrap_or_default();
    let kind = tm.kind.unwrap_or_default();
    let raw = unknown.raw.unwrap_or_default();
    let bad = |e: prost::DecodeError| ApiError::bad_request(format!("{kind}: {e}"));
    let mut obj = match (api_version.as_str(), kind.as_str()) {
        ("v1", "ConfigMap") => config_map(core::ConfigMap::decode(&*raw).map_err(bad)?)?,
        ("v1", "Secret") => secret(core::Secret::decode(&*raw).map_err(bad)?)?,
        ("v1", "Namespace") => namespace(core::Namespace::decode(&*raw).map_err(bad)?)?,
        ("v1", "ServiceAccount") => {
            service_account(core::ServiceAccount::decode(&*raw).map_err(bad)?)?
        }
        ("authorization.k8s.io/v1", "SelfSubjectAccessReview") => {
            access_review(authz::SelfSubjectAccessReview::decode(&*raw).map_err(bad)?)?
        }
        ("authorization.k8s.io/v1", "SelfSubjectRulesReview") => {
            let r = authz::SelfSubjectRulesReview::decode(&*raw).map_err(bad)?;
            let ns = r.spec.and_then(|s| s.namespace);
            json!({"metadata": object_meta(r.metadata)?, "spec": {"namespace": ns}})
        }
        ("authentication.k8s.io/v1", "SelfSubjectReview") => {
            let r = authn::SelfSubjectReview::decode(&*raw).map_err(bad)?;
            json!({"metadata": object_meta(r.metadata)?})
        }
        ("policy/v1", "Eviction") => {
            let e = k8s_pb::api::policy::v1::Eviction::decode(&*raw).map_err(bad)?;
            json!({"metadata": object_meta(e.metadata)?,
                   "deleteOptions": e.delete_options.map(delete_options)})
        }
        _ => {
            return Err(ApiError::unsupported_body_type(&format!(
                "{MEDIA_TYPE} ({api_version} {kind}: kubesim decodes protobuf only for ConfigMap, Secret, Namespace, ServiceAccount, Eviction and the access reviews; send JSON)"
            )));
        }
    };
    obj["apiVersion"] = json!(api_version);
    obj["kind"] = json!(kind);
    Ok(obj)
}

fn strip_nulls(v: Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.into_iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k, strip_nulls(v)))
                .collect(),
        ),
        other => other,
    }
}

fn string_map(m: BTreeMap<String, String>) -> Option<Value> {
    (!m.is_empty()).then(|| json!(m))
}

fn bytes_map(m: BTreeMap<String, Vec<u8>>) -> Option<Value> {
    let b64 = base64::engine::general_purpose::STANDARD;
    (!m.is_empty()).then(|| {
        Value::Object(
            m.into_iter()
                .map(|(k, v)| (k, json!(b64.encode(v))))
                .collect::<Map<String, Value>>(),
        )
    })
}

/// `ObjectMeta`: the fields a client may set. Server-owned ones a client would only echo
/// (`managedFields` aside, which kubesim cannot take from protobuf) are refused if set.
fn object_meta(m: Option<meta::ObjectMeta>) -> ApiResult<Value> {
    let m = m.unwrap_or_default();
    if !m.managed_fields.is_empty() {
        return Err(ApiError::unsupported_body_type(&format!(
            "{MEDIA_TYPE} (metadata.managedFields in protobuf; send JSON)"
        )));
    }
    let owners: Vec<Value> = m
        .owner_references
        .into_iter()
        .map(|o| {
            strip_nulls(json!({"apiVersion": o.api_version, "kind": o.kind, "name": o.name,
                "uid": o.uid, "controller": o.controller, "blockOwnerDeletion": o.block_owner_deletion}))
        })
        .collect();
    Ok(strip_nulls(json!({
        "name": m.name,
        "generateName": m.generate_name,
        "namespace": m.namespace,
        "uid": m.uid,
        "resourceVersion": m.resource_version,
        "labels": string_map(m.labels),
        "annotations": string_map(m.annotations),
        "ownerReferences": (!owners.is_empty()).then_some(owners),
        "finalizers": (!m.finalizers.is_empty()).then_some(m.finalizers),
    })))
}

fn config_map(c: core::ConfigMap) -> ApiResult<Value> {
    Ok(strip_nulls(json!({
        "metadata": object_meta(c.metadata)?,
        "data": string_map(c.data),
        "binaryData": bytes_map(c.binary_data),
        "immutable": c.immutable,
    })))
}

fn secret(s: core::Secret) -> ApiResult<Value> {
    Ok(strip_nulls(json!({
        "metadata": object_meta(s.metadata)?,
        "data": bytes_map(s.data),
        "stringData": string_map(s.string_data),
        "type": s.r#type,
        "immutable": s.immutable,
    })))
}

fn namespace(n: core::Namespace) -> ApiResult<Value> {
    let finalizers = n.spec.map(|s| s.finalizers).unwrap_or_default();
    Ok(strip_nulls(json!({
        "metadata": object_meta(n.metadata)?,
        "spec": (!finalizers.is_empty()).then(|| json!({"finalizers": finalizers})),
    })))
}

fn service_account(sa: core::ServiceAccount) -> ApiResult<Value> {
    let secrets: Vec<Value> = sa
        .secrets
        .into_iter()
        .map(|r| {
            strip_nulls(
                json!({"kind": r.kind, "namespace": r.namespace, "name": r.name,
                "uid": r.uid, "apiVersion": r.api_version, "resourceVersion": r.resource_version,
                "fieldPath": r.field_path}),
            )
        })
        .collect();
    let pulls: Vec<Value> = sa
        .image_pull_secrets
        .into_iter()
        .map(|r| strip_nulls(json!({"name": r.name})))
        .collect();
    Ok(strip_nulls(json!({
        "metadata": object_meta(sa.metadata)?,
        "secrets": (!secrets.is_empty()).then_some(secrets),
        "imagePullSecrets": (!pulls.is_empty()).then_some(pulls),
        "automountServiceAccountToken": sa.automount_service_account_token,
    })))
}

fn access_review(r: authz::SelfSubjectAccessReview) -> ApiResult<Value> {
    let spec = r.spec.unwrap_or_default();
    let requirements = |reqs: Vec<(Option<String>, Option<String>, Vec<String>)>| -> Option<Value> {
        (!reqs.is_empty()).then(|| {
            json!(
                reqs.into_iter()
                    .map(|(k, op, vs)| strip_nulls(json!({"key": k, "operator": op, "values": vs})))
                    .collect::<Vec<_>>()
            )
        })
    };
    let resource = spec.resource_attributes.map(|a| {
        let fields = a.field_selector.map(|f| {
            strip_nulls(
                json!({"rawSelector": f.raw_selector, "requirements": requirements(
                f.requirements.into_iter().map(|q| (q.key, q.operator, q.values)).collect())}),
            )
        });
        let labels = a.label_selector.map(|l| {
            strip_nulls(
                json!({"rawSelector": l.raw_selector, "requirements": requirements(
                l.requirements.into_iter().map(|q| (q.key, q.operator, q.values)).collect())}),
            )
        });
        strip_nulls(
            json!({"namespace": a.namespace, "verb": a.verb, "group": a.group,
            "version": a.version, "resource": a.resource, "subresource": a.subresource,
            "name": a.name, "fieldSelector": fields, "labelSelector": labels}),
        )
    });
    let non_resource = spec
        .non_resource_attributes
        .map(|a| strip_nulls(json!({"path": a.path, "verb": a.verb})));
    Ok(json!({
        "metadata": object_meta(r.metadata)?,
        "spec": strip_nulls(json!({"resourceAttributes": resource,
                                   "nonResourceAttributes": non_resource})),
    }))
}

fn delete_options(d: meta::DeleteOptions) -> Value {
    let pre = d
        .preconditions
        .map(|p| strip_nulls(json!({"uid": p.uid, "resourceVersion": p.resource_version})));
    strip_nulls(json!({
        "gracePeriodSeconds": d.grace_period_seconds,
        "preconditions": pre,
        "orphanDependents": d.orphan_dependents,
        "propagationPolicy": d.propagation_policy,
        "dryRun": (!d.dry_run.is_empty()).then_some(d.dry_run),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn envelope(api_version: &str, kind: &str, raw: Vec<u8>) -> Vec<u8> {
        let u = Unknown {
            type_meta: Some(k8s_pb::apimachinery::pkg::runtime::TypeMeta {
                api_version: Some(api_version.into()),
                kind: Some(kind.into()),
            }),
            raw: Some(raw),
            content_encoding: Some(String::new()),
            content_type: Some(String::new()),
        };
        let mut out = MAGIC.to_vec();
        out.extend(u.encode_to_vec());
        out
    }

    #[test]
    fn a_secret_decodes_to_its_json_form() {
        let s = core::Secret {
            metadata: Some(meta::ObjectMeta {
                name: Some("db".into()),
                labels: [("a".to_string(), "b".to_string())].into(),
                ..Default::default()
            }),
            data: [("pw".to_string(), b"hunter2".to_vec())].into(),
            r#type: Some("Opaque".into()),
            ..Default::default()
        };
        let v = decode(&envelope("v1", "Secret", s.encode_to_vec())).expect("decodes");
        assert_eq!(
            v,
            json!({"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
                   "metadata": {"name": "db", "labels": {"a": "b"}},
                   "data": {"pw": "aHVudGVyMg=="}})
        );
    }

    #[test]
    fn kinds_not_converted_whole_are_refused() {
        let err = decode(&envelope("apps/v1", "Deployment", Vec::new())).expect_err("refused");
        assert_eq!(err.code, 415);
        assert!(decode(b"{\"kind\":\"Secret\"}").is_err());
    }
}
