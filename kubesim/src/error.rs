//! Kubernetes `Status` failures: the typed errors kubesim answers with, rendered with the codes,
//! reasons and message shapes a real kube-apiserver uses.

use serde_json::{Value, json};

use super::resources::ResourceType;

/// One failed API call, as a `metav1.Status` body plus its HTTP code.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{code} {reason}: {message}")]
pub struct ApiError {
    pub code: u16,
    pub reason: &'static str,
    pub message: String,
    pub details: Option<Box<Value>>,
    /// Seconds for a `Retry-After` header (429s).
    pub retry_after: Option<u32>,
}

impl ApiError {
    fn new(code: u16, reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            reason,
            message: message.into(),
            details: None,
            retry_after: None,
        }
    }

    fn with_details(mut self, details: Value) -> Self {
        self.details = Some(Box::new(details));
        self
    }

    /// `configmaps "x" not found` / `deployments.apps "x" not found`.
    pub fn not_found(rt: &ResourceType, name: &str) -> Self {
        Self::new(
            404,
            "NotFound",
            format!("{} \"{name}\" not found", rt.qualified()),
        )
        .with_details(details(rt, name))
    }

    /// A namespaced create into a namespace that does not exist.
    pub fn namespace_not_found(ns: &str) -> Self {
        Self::new(404, "NotFound", format!("namespaces \"{ns}\" not found"))
            .with_details(json!({"name": ns, "kind": "namespaces"}))
    }

    /// A path the server does not serve.
    pub fn no_route() -> Self {
        Self::new(
            404,
            "NotFound",
            "the server could not find the requested resource",
        )
        .with_details(json!({}))
    }

    pub fn already_exists(rt: &ResourceType, name: &str) -> Self {
        Self::new(
            409,
            "AlreadyExists",
            format!("{} \"{name}\" already exists", rt.qualified()),
        )
        .with_details(details(rt, name))
    }

    /// Optimistic-concurrency failure (stale `resourceVersion` or failed precondition).
    pub fn conflict(rt: &ResourceType, name: &str, why: &str) -> Self {
        Self::new(
            409,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {} \"{name}\": {why}",
                rt.qualified()
            ),
        )
        .with_details(details(rt, name))
    }

    pub fn stale(rt: &ResourceType, name: &str) -> Self {
        Self::conflict(
            rt,
            name,
            "the object has been modified; please apply your changes to the latest version and try again",
        )
    }

    /// Server-side apply conflicts: `(manager, apiVersion, field path)` triples.
    pub fn apply_conflicts(
        rt: &ResourceType,
        name: &str,
        conflicts: &[(String, String, String)],
    ) -> Self {
        let message = if let [(manager, api_version, field)] = conflicts {
            format!(
                "Apply failed with 1 conflict: conflict with \"{manager}\" using {api_version}: {field}"
            )
        } else {
            let mut m = format!("Apply failed with {} conflicts: ", conflicts.len());
            let mut last = String::new();
            for (manager, api_version, field) in conflicts {
                let head = format!("conflicts with \"{manager}\" using {api_version}:");
                if head != last {
                    m.push_str(&head);
                    last = head;
                }
                m.push_str(&format!("\n- {field}"));
            }
            m
        };
        let causes: Vec<Value> = conflicts
            .iter()
            .map(|(manager, api_version, field)| {
                json!({"reason": "FieldManagerConflict",
                       "message": format!("conflict with \"{manager}\" using {api_version}"),
                       "field": field})
            })
            .collect();
        let mut d = details(rt, name);
        d["causes"] = Value::Array(causes);
        Self::new(409, "Conflict", message).with_details(d)
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, "BadRequest", message)
    }

    /// 422: `Kind "name" is invalid: field: detail`.
    pub fn invalid(kind: &str, rt: &ResourceType, name: &str, field: &str, detail: &str) -> Self {
        let mut d = details(rt, name);
        d["kind"] = json!(kind);
        d["causes"] = json!([{"reason": "FieldValueInvalid", "message": detail, "field": field}]);
        Self::new(
            422,
            "Invalid",
            format!("{kind} \"{name}\" is invalid: {field}: {detail}"),
        )
        .with_details(d)
    }

    /// 422 for list/watch options, as `ValidateListOptions` answers
    /// (`ListOptions.meta.k8s.io "" is invalid: field: detail`).
    pub fn invalid_list_options(field: &str, detail: &str) -> Self {
        Self::new(
            422,
            "Invalid",
            format!("ListOptions.meta.k8s.io \"\" is invalid: {field}: {detail}"),
        )
        .with_details(json!({"group": "meta.k8s.io", "kind": "ListOptions",
            "causes": [{"reason": "FieldValueForbidden", "message": detail, "field": field}]}))
    }

    pub fn gone(message: impl Into<String>) -> Self {
        Self::new(410, "Expired", message)
    }

    /// A resourceVersion newer than the server's: 504 with `ResourceVersionTooLarge`.
    pub fn too_large_rv(asked: u64, current: u64) -> Self {
        let mut e = Self::new(
            504,
            "Timeout",
            format!("Too large resource version: {asked}, current: {current}"),
        );
        e.details = Some(Box::new(json!({
            "causes": [{"reason": "ResourceVersionTooLarge", "message": "Too large resource version"}],
            "retryAfterSeconds": 1
        })));
        e
    }

    /// 405 with the server's own words (e.g. creates under a terminating CRD).
    pub fn method_not_allowed_message(message: &str) -> Self {
        Self::new(405, "MethodNotAllowed", message).with_details(json!({}))
    }

    pub fn method_not_allowed(verb: &str, rt: &ResourceType) -> Self {
        Self::new(
            405,
            "MethodNotAllowed",
            format!(
                "{verb} is not supported on resources of kind \"{}\"",
                rt.qualified()
            ),
        )
    }

    /// 415 for a PATCH body type (the list a real server gives for patches).
    pub fn unsupported_media_type(content_type: &str) -> Self {
        Self::media_type(
            content_type,
            "application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml",
        )
    }

    /// 415 for a create or update body type.
    /// 429 from the eviction subresource: a PodDisruptionBudget allows no disruption now.
    pub fn disruption_budget(message: String) -> Self {
        Self::new(
            429,
            "TooManyRequests",
            "Cannot evict pod as it would violate the pod's disruption budget.",
        )
        .with_details(json!({"causes": [{"reason": "DisruptionBudget", "message": message}]}))
    }

    /// 406: the `Accept` header names only forms kubesim does not produce (protobuf).
    pub fn not_acceptable() -> Self {
        Self::new(
            406,
            "NotAcceptable",
            "only the following media types are accepted: application/json",
        )
    }

    pub fn unsupported_body_type(content_type: &str) -> Self {
        Self::media_type(
            content_type,
            "application/json, application/yaml, application/vnd.kubernetes.protobuf",
        )
    }

    fn media_type(content_type: &str, accepted: &str) -> Self {
        Self::new(
            415,
            "UnsupportedMediaType",
            format!(
                "the body of the request was in an unknown format - accepted media types include: {accepted}; got {content_type:?}"
            ),
        )
    }

    pub fn unauthorized() -> Self {
        Self::new(401, "Unauthorized", "Unauthorized")
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(403, "Forbidden", message)
    }

    pub fn too_many_requests() -> Self {
        let mut e = Self::new(
            429,
            "TooManyRequests",
            "Too many requests, please try again later.",
        );
        e.retry_after = Some(1);
        e
    }

    /// A rate-limit rejection: wait `seconds` (the `Retry-After` header and
    /// `details.retryAfterSeconds`).
    pub fn too_many_requests_after(seconds: u32) -> Self {
        let mut e = Self::too_many_requests();
        e.retry_after = Some(seconds);
        e.details = Some(Box::new(json!({"retryAfterSeconds": seconds})));
        e
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(
            500,
            "InternalError",
            format!("Internal error occurred: {}", message.into()),
        )
    }

    /// The `metav1.Status` body.
    /// Fields in the order a real server writes them (Go's `metav1.Status`): `details`
    /// before `code`.
    pub fn status_body(&self) -> Value {
        let mut s = serde_json::Map::new();
        s.insert("kind".into(), json!("Status"));
        s.insert("apiVersion".into(), json!("v1"));
        s.insert("metadata".into(), json!({}));
        s.insert("status".into(), json!("Failure"));
        s.insert("message".into(), json!(self.message));
        s.insert("reason".into(), json!(self.reason));
        if let Some(d) = &self.details {
            s.insert("details".into(), (**d).clone());
        }
        s.insert("code".into(), json!(self.code));
        Value::Object(s)
    }
}

/// `details` as a real server orders them: name, group, kind.
fn details(rt: &ResourceType, name: &str) -> Value {
    let mut d = serde_json::Map::new();
    d.insert("name".into(), json!(name));
    if !rt.group.is_empty() {
        d.insert("group".into(), json!(rt.group));
    }
    d.insert("kind".into(), json!(rt.plural));
    Value::Object(d)
}

pub type ApiResult<T> = Result<T, ApiError>;
