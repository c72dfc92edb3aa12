//! What the API server does to an object on its way in: name and label validation, server-set
//! metadata, defaulting of common fields, Secret `stringData`, and spec-change detection.

use std::sync::atomic::{AtomicU32, Ordering};

use rand::Rng;
use serde_json::{Map, Value, json};

use super::error::{ApiError, ApiResult};
use super::resources::ResourceType;

/// RFC 3339 timestamp to the second, as `metav1.Time` serializes.
pub fn now_rfc3339() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

pub fn name_of(obj: &Value) -> &str {
    obj.pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("")
}

pub fn meta_mut(obj: &mut Value) -> &mut Map<String, Value> {
    if !obj.get("metadata").is_some_and(Value::is_object) {
        obj["metadata"] = json!({});
    }
    match obj.get_mut("metadata") {
        Some(Value::Object(m)) => m,
        _ => unreachable!("metadata was just made an object"),
    }
}

fn is_dns1123_subdomain(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|part| {
            !part.is_empty()
                && part
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
                && !part.starts_with('-')
                && !part.ends_with('-')
        })
}

fn is_dns1123_label(s: &str) -> bool {
    s.len() <= 63 && !s.contains('.') && is_dns1123_subdomain(s)
}

/// Kinds whose names must be DNS-1123 labels rather than subdomains.
fn needs_label_name(rt: &ResourceType) -> bool {
    rt.group.is_empty() && matches!(rt.plural.as_str(), "namespaces" | "services")
}

/// Validate name and labels; 422 Invalid like the real server.
pub fn validate(rt: &ResourceType, obj: &Value) -> ApiResult<()> {
    let name = name_of(obj);
    let ok = if needs_label_name(rt) {
        is_dns1123_label(name)
    } else if rt.group == "rbac.authorization.k8s.io" {
        // RBAC names are path segments: anything but '/', '%', "." and "..".
        !name.is_empty() && !name.contains(['/', '%']) && name != "." && name != ".."
    } else {
        is_dns1123_subdomain(name)
    };
    if !ok {
        let what = if needs_label_name(rt) {
            "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character"
        } else {
            "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character"
        };
        return Err(ApiError::invalid(
            &rt.kind,
            rt,
            name,
            "metadata.name",
            &format!("Invalid value: {name:?}: {what}"),
        ));
    }
    if let Some(labels) = obj.pointer("/metadata/labels") {
        let Some(labels) = labels.as_object() else {
            return Err(ApiError::bad_request(
                "metadata.labels must be a map of strings",
            ));
        };
        for (k, v) in labels {
            let value_ok = v.as_str().is_some_and(|v| {
                v.is_empty()
                    || (v.len() <= 63
                        && v.chars()
                            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
                        && v.starts_with(|c: char| c.is_ascii_alphanumeric())
                        && v.ends_with(|c: char| c.is_ascii_alphanumeric()))
            });
            if !value_ok {
                return Err(ApiError::invalid(
                    &rt.kind,
                    rt,
                    name,
                    "metadata.labels",
                    &format!(
                        "Invalid value: {v}: a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (label {k:?})"
                    ),
                ));
            }
        }
    }
    Ok(())
}

static NAME_SUFFIX_COUNTER: AtomicU32 = AtomicU32::new(0);

/// `generateName` + five random characters from the real alphabet.
pub fn generated_name(prefix: &str) -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut rng = rand::rng();
    let salt = NAME_SUFFIX_COUNTER.fetch_add(1, Ordering::Relaxed) as usize;
    let suffix: String = (0..5)
        .map(|i| {
            let idx = (rng.random_range(0..ALPHABET.len()) + salt * (i + 1)) % ALPHABET.len();
            ALPHABET[idx] as char
        })
        .collect();
    format!("{prefix}{suffix}")
}

/// Spec-ish content: everything except metadata and status (what bumps `generation`).
pub fn spec_changed(old: &Value, new: &Value) -> bool {
    let (Some(o), Some(n)) = (old.as_object(), new.as_object()) else {
        return old != new;
    };
    let keys = o.keys().chain(n.keys());
    for k in keys {
        if matches!(k.as_str(), "metadata" | "status" | "apiVersion" | "kind") {
            continue;
        }
        if o.get(k) != n.get(k) {
            return true;
        }
    }
    false
}

/// Fill in the defaults the real server adds, so diffs see server-populated fields.
pub fn apply_defaults(rt: &ResourceType, obj: &mut Value) {
    if rt.custom {
        return;
    }
    match (rt.group.as_str(), rt.plural.as_str()) {
        ("", "secrets") => {
            if let Some(Value::Object(sd)) =
                obj.as_object_mut().and_then(|m| m.remove("stringData"))
            {
                use base64::Engine;
                let data = obj
                    .as_object_mut()
                    .map(|m| m.entry("data").or_insert_with(|| json!({})));
                if let Some(Value::Object(data)) = data {
                    for (k, v) in sd {
                        let s = v.as_str().map_or_else(|| v.to_string(), str::to_string);
                        data.insert(
                            k,
                            json!(base64::engine::general_purpose::STANDARD.encode(s)),
                        );
                    }
                }
            }
            if obj.get("type").is_none() {
                obj["type"] = json!("Opaque");
            }
        }
        ("", "services") => default_service(obj),
        ("", "pods") => {
            if let Some(spec) = obj.get_mut("spec") {
                default_pod_spec(spec);
            }
        }
        ("", "namespaces") => {
            let name = name_of(obj).to_string();
            let labels = meta_mut(obj).entry("labels").or_insert_with(|| json!({}));
            if let Some(l) = labels.as_object_mut() {
                l.insert("kubernetes.io/metadata.name".into(), json!(name));
            }
            if obj.pointer("/spec/finalizers").is_none() {
                obj["spec"] = json!({"finalizers": ["kubernetes"]});
            }
        }
        ("apps", "deployments") => {
            default_replicas(obj);
            let spec = &mut obj["spec"];
            set_default(spec, "revisionHistoryLimit", json!(10));
            set_default(spec, "progressDeadlineSeconds", json!(600));
            set_default(
                spec,
                "strategy",
                json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}}),
            );
            default_template(spec);
        }
        ("apps", "statefulsets") => {
            default_replicas(obj);
            let spec = &mut obj["spec"];
            set_default(spec, "revisionHistoryLimit", json!(10));
            set_default(spec, "podManagementPolicy", json!("OrderedReady"));
            set_default(
                spec,
                "updateStrategy",
                json!({"type": "RollingUpdate", "rollingUpdate": {"partition": 0}}),
            );
            default_template(spec);
        }
        ("apps", "daemonsets") => {
            let spec = &mut obj["spec"];
            set_default(spec, "revisionHistoryLimit", json!(10));
            set_default(
                spec,
                "updateStrategy",
                json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 0, "maxUnavailable": 1}}),
            );
            default_template(spec);
        }
        ("apps", "replicasets") => {
            default_replicas(obj);
            default_template(&mut obj["spec"]);
        }
        ("batch", "jobs") => {
            let spec = &mut obj["spec"];
            set_default(spec, "backoffLimit", json!(6));
            set_default(spec, "completions", json!(1));
            set_default(spec, "parallelism", json!(1));
            set_default(spec, "completionMode", json!("NonIndexed"));
            set_default(spec, "suspend", json!(false));
            if let Some(tspec) = spec.pointer_mut("/template/spec") {
                default_pod_spec(tspec);
            }
        }
        _ => {}
    }
}

fn set_default(target: &mut Value, key: &str, value: Value) {
    if let Some(m) = target.as_object_mut() {
        m.entry(key).or_insert(value);
    }
}

fn default_replicas(obj: &mut Value) {
    if !obj.get("spec").is_some_and(Value::is_object) {
        obj["spec"] = json!({});
    }
    set_default(&mut obj["spec"], "replicas", json!(1));
}

fn default_template(spec: &mut Value) {
    if let Some(tspec) = spec.pointer_mut("/template/spec") {
        default_pod_spec(tspec);
    }
}

fn default_pod_spec(spec: &mut Value) {
    if !spec.is_object() {
        return;
    }
    set_default(spec, "restartPolicy", json!("Always"));
    set_default(spec, "terminationGracePeriodSeconds", json!(30));
    set_default(spec, "dnsPolicy", json!("ClusterFirst"));
    set_default(spec, "securityContext", json!({}));
    set_default(spec, "schedulerName", json!("default-scheduler"));
    for list in ["containers", "initContainers"] {
        if let Some(Value::Array(cs)) = spec.get_mut(list) {
            for c in cs {
                let latest = c
                    .get("image")
                    .and_then(Value::as_str)
                    .is_some_and(|i| !i.contains(':') || i.ends_with(":latest"));
                set_default(
                    c,
                    "imagePullPolicy",
                    json!(if latest { "Always" } else { "IfNotPresent" }),
                );
                set_default(c, "terminationMessagePath", json!("/dev/termination-log"));
                set_default(c, "terminationMessagePolicy", json!("File"));
                set_default(c, "resources", json!({}));
                if let Some(Value::Array(ports)) = c.get_mut("ports") {
                    for p in ports {
                        set_default(p, "protocol", json!("TCP"));
                    }
                }
            }
        }
    }
}

static CLUSTER_IP_COUNTER: AtomicU32 = AtomicU32::new(1);

fn default_service(obj: &mut Value) {
    if !obj.get("spec").is_some_and(Value::is_object) {
        obj["spec"] = json!({});
    }
    let spec = &mut obj["spec"];
    set_default(spec, "type", json!("ClusterIP"));
    set_default(spec, "sessionAffinity", json!("None"));
    set_default(spec, "ipFamilies", json!(["IPv4"]));
    set_default(spec, "ipFamilyPolicy", json!("SingleStack"));
    set_default(spec, "internalTrafficPolicy", json!("Cluster"));
    if spec.get("clusterIP").is_none() {
        // A made-up address string from the service range; kubesim routes no traffic to it.
        let n = CLUSTER_IP_COUNTER.fetch_add(1, Ordering::Relaxed);
        let ip = format!("10.96.{}.{}", (n / 250) % 250, n % 250 + 1);
        spec["clusterIP"] = json!(ip);
        spec["clusterIPs"] = json!([ip]);
    }
    if let Some(Value::Array(ports)) = spec.get_mut("ports") {
        for p in ports {
            set_default(p, "protocol", json!("TCP"));
            if p.get("targetPort").is_none()
                && let Some(port) = p.get("port").cloned()
            {
                p["targetPort"] = port;
            }
        }
    }
}

/// The kind's `status` at creation, before any controller writes one.
pub fn initial_status(rt: &ResourceType) -> Option<Value> {
    match (rt.group.as_str(), rt.plural.as_str()) {
        ("", "namespaces") => Some(json!({"phase": "Active"})),
        ("", "pods") => Some(json!({"phase": "Pending", "qosClass": "BestEffort"})),
        ("", "persistentvolumeclaims") => Some(json!({"phase": "Pending"})),
        ("", "services") => Some(json!({"loadBalancer": {}})),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::Registry;

    fn rt(group: &str, plural: &str) -> std::sync::Arc<ResourceType> {
        let v = if group == "autoscaling" { "v2" } else { "v1" };
        Registry::default()
            .lookup(group, v, plural)
            .expect("builtin")
    }

    #[test]
    fn names_are_validated_by_kind() {
        let cm = rt("", "configmaps");
        assert!(validate(&cm, &json!({"metadata": {"name": "a.b-c"}})).is_ok());
        let err = validate(&cm, &json!({"metadata": {"name": "Bad_Name"}})).expect_err("invalid");
        assert_eq!(err.code, 422);
        let ns = rt("", "namespaces");
        assert!(validate(&ns, &json!({"metadata": {"name": "a.b"}})).is_err());
    }

    #[test]
    fn secret_string_data_becomes_base64_data() {
        let mut s = json!({"metadata": {"name": "s"}, "stringData": {"k": "v"}});
        apply_defaults(&rt("", "secrets"), &mut s);
        assert_eq!(s["data"]["k"], "dg==");
        assert!(s.get("stringData").is_none());
        assert_eq!(s["type"], "Opaque");
    }

    #[test]
    fn deployment_defaults_are_idempotent() {
        let mut d = json!({"metadata": {"name": "d"}, "spec": {"template": {"spec": {"containers": [{"name": "c", "image": "nginx:1", "ports": [{"containerPort": 80}]}]}}}});
        let deploy = rt("apps", "deployments");
        apply_defaults(&deploy, &mut d);
        let once = d.clone();
        apply_defaults(&deploy, &mut d);
        assert_eq!(once, d);
        assert_eq!(d["spec"]["replicas"], 1);
        assert_eq!(
            d["spec"]["template"]["spec"]["containers"][0]["ports"][0]["protocol"],
            "TCP"
        );
    }

    #[test]
    fn generation_ignores_metadata_and_status() {
        let a = json!({"metadata": {"labels": {"a": "1"}}, "spec": {"x": 1}, "status": {"y": 1}});
        let mut b = a.clone();
        b["metadata"]["labels"]["a"] = json!("2");
        b["status"]["y"] = json!(2);
        assert!(!spec_changed(&a, &b));
        b["spec"]["x"] = json!(2);
        assert!(spec_changed(&a, &b));
    }
}
