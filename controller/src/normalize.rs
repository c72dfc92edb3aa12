//! Diff normalization: what a real API server's defaulting and canonical forms change
//! between Git and live (quantities, int-or-string, Secret `stringData`), so it is not drift.

use std::collections::HashMap;

use base64::Engine;
use serde_json::{Map, Value};

/// Maps whose values are all resource quantities (`resources.limits`, `ResourceQuota.spec.hard`,
/// `Node.status.capacity`, `Pod.spec.overhead`, `RuntimeClass.overhead.podFixed`, a
/// LimitRange item's `max`/`min`/`default`/`defaultRequest`/`maxLimitRequestRatio`, ...).
const QUANTITY_MAPS: &[&str] = &[
    "limits",
    "requests",
    "hard",
    "capacity",
    "allocatable",
    "overhead",
    "podFixed",
    "max",
    "min",
    "default",
    "defaultRequest",
    "maxLimitRequestRatio",
];

/// Fields that are quantities wherever they appear (`emptyDir.sizeLimit`).
const QUANTITY_FIELDS: &[&str] = &["sizeLimit"];

/// Fields that are quantities under a given parent (an HPA metric's `target`).
const QUANTITY_UNDER: &[(&str, &str)] = &[("target", "value"), ("target", "averageValue")];

/// IntOrString fields (and int fields Helm charts often quote).
const INT_OR_STRING_FIELDS: &[&str] = &[
    "targetPort",
    "port",
    "containerPort",
    "maxSurge",
    "maxUnavailable",
    "minAvailable",
];

/// API groups served by kube-apiserver itself from Go types, whose `omitempty` zero values the
/// server drops (custom resources keep whatever they are given).
const BUILTIN_GROUPS: &[&str] = &[
    "",
    "admissionregistration.k8s.io",
    "apiextensions.k8s.io",
    "apiregistration.k8s.io",
    "apps",
    "autoscaling",
    "batch",
    "certificates.k8s.io",
    "coordination.k8s.io",
    "discovery.k8s.io",
    "events.k8s.io",
    "extensions",
    "flowcontrol.apiserver.k8s.io",
    "networking.k8s.io",
    "node.k8s.io",
    "policy",
    "rbac.authorization.k8s.io",
    "resource.k8s.io",
    "scheduling.k8s.io",
    "storage.k8s.io",
];

/// The annotation kubectl's client-side apply leaves, holding a full copy of the object.
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// Whether `group` is one of kube-apiserver's own (not a CRD's).
pub fn is_builtin_group(group: &str) -> bool {
    BUILTIN_GROUPS.contains(&group)
}

/// Whether the scalar under `key` (whose parent map is under `parent`) is a quantity.
pub fn is_quantity_field(key: Option<&str>, parent: Option<&str>) -> bool {
    key.is_some_and(|k| QUANTITY_FIELDS.contains(&k))
        || parent.is_some_and(|p| QUANTITY_MAPS.contains(&p))
        || matches!((parent, key), (Some(p), Some(k)) if QUANTITY_UNDER.contains(&(p, k)))
}

/// Whether the scalar under `key` is an int-or-string.
pub fn is_int_or_string_field(key: &str) -> bool {
    INT_OR_STRING_FIELDS.contains(&key)
}

pub use flotilla_core::quantity::parse as parse_quantity;

/// A JSON value as a quantity: strings by quantity syntax, numbers by value.
fn quantity_of(v: &Value) -> Option<i128> {
    match v {
        Value::String(s) => parse_quantity(s),
        Value::Number(n) => match n.as_i64() {
            Some(i) => i128::from(i).checked_mul(1_000_000_000),
            None => parse_quantity(&n.to_string()),
        },
        _ => None,
    }
}

/// Whether two quantities are equal by value: `1000m` == `1` == `1` (number), `1Gi` ==
/// `1024Mi`, `0.5` == `500m`, `1e3` == `1k`. Parses only when the values differ as written.
pub fn quantity_eq(a: &Value, b: &Value) -> bool {
    if a == b {
        return true;
    }
    match (quantity_of(a), quantity_of(b)) {
        (Some(x), Some(y)) => x == y,
        _ => false,
    }
}

/// An int-or-string's integer: a JSON integer, or a string of only decimal digits.
fn int_of(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => {
            let digits = s.strip_prefix('-').unwrap_or(s);
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            s.parse().ok()
        }
        _ => None,
    }
}

/// Whether two int-or-string values are equal: `8080` == `"8080"` (`"25%"` stays a string).
pub fn int_or_string_eq(a: &Value, b: &Value) -> bool {
    if a == b {
        return true;
    }
    match (int_of(a), int_of(b)) {
        (Some(x), Some(y)) => x == y,
        _ => false,
    }
}

/// Maps of user keys the server omits when empty (`labels: {}` comes back absent), and structs
/// whose empty value sets nothing (`resources: {}`, `securityContext: {}`). Other `{}` are
/// choices the server keeps (`emptyDir: {}` selects a volume source).
const STRING_MAPS: &[&str] = &[
    "resources",
    "securityContext",
    "labels",
    "annotations",
    "data",
    "binaryData",
    "stringData",
    "matchLabels",
    "nodeSelector",
    "parameters",
    "limits",
    "requests",
    "hard",
];

/// Optional (pointer) fields of built-in kinds: a zero value set in Git is kept by the server,
/// so its absence live is a real change (someone removed `allowPrivilegeEscalation: false`).
const POINTER_FIELDS: &[&str] = &[
    "allowPrivilegeEscalation",
    "privileged",
    "readOnlyRootFilesystem",
    "runAsNonRoot",
    "runAsUser",
    "runAsGroup",
    "fsGroup",
    "automountServiceAccountToken",
    "enableServiceLinks",
    "shareProcessNamespace",
    "hostUsers",
    "setHostnameAsFQDN",
    "suspend",
    "immutable",
    "optional",
    "allowVolumeExpansion",
    "storageClassName",
    "replicas",
    "terminationGracePeriodSeconds",
    "activeDeadlineSeconds",
    "backoffLimit",
    "completions",
    "parallelism",
    "ttlSecondsAfterFinished",
    "progressDeadlineSeconds",
    "revisionHistoryLimit",
    "successfulJobsHistoryLimit",
    "failedJobsHistoryLimit",
    "startingDeadlineSeconds",
    "minAvailable",
    "maxUnavailable",
    "defaultMode",
    "mode",
];

/// Whether `desired` (under field `key`), which live does not have at all, is equivalent to
/// being absent: `null`; `[]` (an empty list and no list mean the same); `{}` for maps of user
/// keys; and, for built-in API groups (`builtin_group`), the zero values `""`, `false`, `0` of
/// non-optional fields, which the server drops as `omitempty`.
pub fn absent_equivalent(desired: &Value, key: Option<&str>, builtin_group: bool) -> bool {
    match desired {
        Value::Null => true,
        Value::Array(a) => a.is_empty(),
        Value::Object(m) => m.is_empty() && key.is_some_and(|k| STRING_MAPS.contains(&k)),
        _ if !builtin_group || key.is_some_and(|k| POINTER_FIELDS.contains(&k)) => false,
        Value::String(s) => s.is_empty(),
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_f64() == Some(0.0),
    }
}

fn is_secret(obj: &Value) -> bool {
    obj.get("kind").and_then(Value::as_str) == Some("Secret")
        && obj.get("apiVersion").and_then(Value::as_str) == Some("v1")
}

/// A `stringData` value as the text the server encodes (it only accepts strings; numbers and
/// booleans as their JSON text).
fn plain_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// Moves a Secret's `stringData` into `data` (base64, `stringData` wins on a shared key), as
/// the API server stores it. Returns whether anything moved.
fn merge_string_data(obj: &mut Value) -> bool {
    let Some(Value::Object(strings)) = obj.as_object_mut().and_then(|o| o.remove("stringData"))
    else {
        return false;
    };
    let Some(o) = obj.as_object_mut() else {
        return false;
    };
    let data = o.entry("data").or_insert_with(|| Value::Object(Map::new()));
    if !data.is_object() {
        *data = Value::Object(Map::new());
    }
    if let Some(data) = data.as_object_mut() {
        for (k, v) in strings {
            let encoded = base64::engine::general_purpose::STANDARD.encode(plain_text(&v));
            data.insert(k, Value::String(encoded));
        }
    }
    true
}

/// For a Secret that sets `stringData`, the object as the server stores it: `stringData` merged
/// into `data` (base64) and removed. `None` when there is nothing to merge.
pub fn secret_string_data(obj: &Value) -> Option<Value> {
    if !is_secret(obj) || !obj.get("stringData").is_some_and(Value::is_object) {
        return None;
    }
    let mut merged = obj.clone();
    merge_string_data(&mut merged).then_some(merged)
}

/// Masks Secret values for display, as Argo CD's `HideSecretData`: `stringData` is merged into
/// `data`, then each `data` value becomes `+` characters, per key the same mask for the same
/// value on both sides and a longer one (8, 12, 16, ...) for each different value, so a diff
/// still shows which keys differ. Drops kubectl's last-applied annotation, a plain-text copy.
pub fn mask_secrets(desired: Option<&mut Value>, live: Option<&mut Value>) {
    let mut objs: Vec<&mut Value> = desired
        .into_iter()
        .chain(live)
        .filter(|o| is_secret(o))
        .collect();
    for obj in objs.iter_mut() {
        merge_string_data(obj);
        if let Some(Value::Object(annotations)) = obj.pointer_mut("/metadata/annotations") {
            annotations.remove(LAST_APPLIED);
        }
    }
    let mut masks: HashMap<String, HashMap<String, String>> = HashMap::new();
    for obj in objs {
        let Some(Value::Object(data)) = obj.get_mut("data") else {
            continue;
        };
        for (key, value) in data.iter_mut() {
            let per_key = masks.entry(key.clone()).or_default();
            let next = 8 + 4 * per_key.len();
            let mask = per_key
                .entry(plain_text(value))
                .or_insert_with(|| "+".repeat(next));
            *value = Value::String(mask.clone());
        }
    }
}

fn to_yaml(v: &Value) -> String {
    serde_yaml::to_string(v).unwrap_or_else(|_| v.to_string())
}

/// A unified text diff of the two objects as YAML, live as the old side (`--- live`) and
/// desired as the new one (`+++ desired`); empty when they render the same.
pub fn unified_diff(desired: &Value, live: &Value) -> String {
    let (old, new) = (to_yaml(live), to_yaml(desired));
    similar::TextDiff::from_lines(&old, &new)
        .unified_diff()
        .header("live", "desired")
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const NANO: i128 = 1_000_000_000;

    #[test]
    fn quantities_parse_exactly() {
        assert_eq!(parse_quantity("1"), Some(NANO));
        assert_eq!(parse_quantity("1000m"), Some(NANO));
        assert_eq!(parse_quantity("0.5"), Some(NANO / 2));
        assert_eq!(parse_quantity(".5"), Some(NANO / 2));
        assert_eq!(parse_quantity("1.5Gi"), Some(3 * (1 << 29) * NANO));
        assert_eq!(parse_quantity("1e3"), Some(1000 * NANO));
        assert_eq!(parse_quantity("1E-3"), Some(NANO / 1000));
        assert_eq!(parse_quantity("-2k"), Some(-2000 * NANO));
        assert_eq!(parse_quantity("8Ei"), Some((8i128 << 60) * NANO));
        assert_eq!(parse_quantity("100n"), Some(100));
        // Below a billionth rounds up, as the API server's canonical form does.
        assert_eq!(parse_quantity("0.1n"), Some(1));
        for bad in [
            "",
            "m",
            "1.2.3",
            "1Ki2",
            "1e",
            "1x",
            "one",
            "1 Gi",
            "1e9999999",
        ] {
            assert_eq!(parse_quantity(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn quantities_compare_by_value() {
        let eq = |a: Value, b: Value| quantity_eq(&a, &b);
        assert!(eq(json!("1000m"), json!("1")));
        assert!(eq(json!("1Gi"), json!("1024Mi")));
        assert!(eq(json!("0.5"), json!("500m")));
        assert!(eq(json!("1e3"), json!("1k")));
        assert!(eq(json!(1), json!("1")));
        assert!(eq(json!(0.25), json!("250m")));
        assert!(eq(json!(1073741824), json!("1Gi")));
        assert!(!eq(json!("1G"), json!("1Gi")));
        assert!(!eq(json!("100m"), json!("1")));
        assert!(!eq(json!("abc"), json!("abd")));
        assert!(eq(json!("abc"), json!("abc")));
    }

    #[test]
    fn quantity_fields_are_recognised_by_name() {
        assert!(is_quantity_field(Some("cpu"), Some("limits")));
        assert!(is_quantity_field(Some("requests.memory"), Some("hard")));
        assert!(is_quantity_field(Some("sizeLimit"), Some("emptyDir")));
        assert!(is_quantity_field(Some("storage"), Some("capacity")));
        assert!(is_quantity_field(Some("memory"), Some("defaultRequest")));
        assert!(is_quantity_field(Some("averageValue"), Some("target")));
        assert!(!is_quantity_field(Some("image"), Some("containers")));
        // A ConfigMap's data is text, whatever its keys are called.
        assert!(!is_quantity_field(Some("storage"), Some("data")));
        assert!(!is_quantity_field(Some("value"), Some("env")));
        assert!(!is_quantity_field(None, None));
    }

    #[test]
    fn int_or_string_compares_integers_across_forms() {
        assert!(int_or_string_eq(&json!(8080), &json!("8080")));
        assert!(int_or_string_eq(&json!("http"), &json!("http")));
        assert!(!int_or_string_eq(&json!(25), &json!("25%")));
        assert!(!int_or_string_eq(&json!(8080), &json!("8081")));
        assert!(!int_or_string_eq(&json!("+80"), &json!(80)));
        assert!(is_int_or_string_field("targetPort") && !is_int_or_string_field("replicas"));
    }

    #[test]
    fn absent_equivalents_depend_on_the_field_and_the_api_group() {
        for (v, key) in [
            (json!(null), "x"),
            (json!([]), "args"),
            (json!({}), "labels"),
            (json!({}), "annotations"),
        ] {
            assert!(absent_equivalent(&v, Some(key), false), "{key}: {v}");
        }
        // A struct's `{}` is a choice the server keeps (`emptyDir: {}`).
        assert!(!absent_equivalent(&json!({}), Some("emptyDir"), true));
        assert!(!absent_equivalent(
            &json!({"medium": ""}),
            Some("emptyDir"),
            true
        ));
        for (v, key) in [
            (json!(""), "subPath"),
            (json!(false), "hostNetwork"),
            (json!(0), "minReadySeconds"),
        ] {
            assert!(absent_equivalent(&v, Some(key), true), "{key}: {v}");
            assert!(
                !absent_equivalent(&v, Some(key), false),
                "CRDs keep zero values: {key}"
            );
        }
        // Optional fields keep their zero values: their absence live is a change.
        for (v, key) in [
            (json!(false), "allowPrivilegeEscalation"),
            (json!(false), "automountServiceAccountToken"),
            (json!(0), "runAsUser"),
            (json!(0), "replicas"),
            (json!(""), "storageClassName"),
        ] {
            assert!(!absent_equivalent(&v, Some(key), true), "{key}: {v}");
        }
        for v in [json!("x"), json!(true), json!(1), json!([0])] {
            assert!(!absent_equivalent(&v, Some("x"), true), "{v}");
        }
    }

    #[test]
    fn secret_string_data_is_stored_as_base64_data() {
        let desired = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "db"},
                             "data": {"user": "YWRtaW4="}, "stringData": {"password": "s3cret", "user": "root"}});
        let merged = secret_string_data(&desired).expect("a Secret with stringData");
        assert_eq!(
            merged,
            json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "db"},
                   "data": {"user": "cm9vdA==", "password": "czNjcmV0"}})
        );
        let plain = json!({"apiVersion": "v1", "kind": "Secret", "data": {"a": "Yg=="}});
        assert_eq!(secret_string_data(&plain), None);
        let config_map = json!({"apiVersion": "v1", "kind": "ConfigMap", "stringData": {"a": "b"}});
        assert_eq!(secret_string_data(&config_map), None);
    }

    #[test]
    fn masks_keep_equal_values_equal_and_different_ones_distinct() {
        let mut desired = json!({"apiVersion": "v1", "kind": "Secret",
                                 "data": {"same": "YQ==", "changed": "Yg=="}, "stringData": {"token": "t"}});
        let mut live = json!({"apiVersion": "v1", "kind": "Secret",
                              "metadata": {"annotations": {LAST_APPLIED: "{\"data\":{\"same\":\"YQ==\"}}", "team": "a"}},
                              "data": {"same": "YQ==", "changed": "Yw==", "token": "dA==", "extra": "eA=="}});
        mask_secrets(Some(&mut desired), Some(&mut live));
        let eight = "++++++++";
        let twelve = "++++++++++++";
        assert_eq!(
            desired["data"],
            json!({"same": eight, "changed": eight, "token": eight})
        );
        assert!(desired.get("stringData").is_none());
        assert_eq!(
            live["data"],
            json!({"same": eight, "changed": twelve, "token": eight, "extra": eight})
        );
        assert_eq!(live["metadata"]["annotations"], json!({"team": "a"}));
        let mut config_map = json!({"apiVersion": "v1", "kind": "ConfigMap", "data": {"a": "b"}});
        mask_secrets(None, Some(&mut config_map));
        assert_eq!(config_map["data"]["a"], "b");
    }

    #[test]
    fn unified_diff_shows_live_as_old_and_desired_as_new() {
        let live = json!({"spec": {"replicas": 2, "image": "nginx:1"}});
        let desired = json!({"spec": {"replicas": 3, "image": "nginx:1"}});
        let text = unified_diff(&desired, &live);
        assert!(text.starts_with("--- live\n+++ desired\n"), "{text}");
        assert!(
            text.contains("-  replicas: 2\n") && text.contains("+  replicas: 3\n"),
            "{text}"
        );
        assert_eq!(unified_diff(&live, &live), "");
    }
}
