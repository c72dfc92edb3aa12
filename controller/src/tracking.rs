//! Which Application owns a live object: the tracking label (so cluster caches watch only what
//! Flotilla manages), the tracking-id annotation (exact owner and identity), and the keys used
//! for apps and resources everywhere in the controller.

use serde_json::Value;
use sha2::{Digest, Sha256};

/// Label on every object Flotilla applies; caches watch with an "exists" selector on it.
pub const TRACKING_LABEL: &str = "flotilla.dev/app";
/// Annotation naming the owning Application and the object's identity:
/// `<app-namespace>/<app-name>:<group>/<kind>:<namespace>/<name>` (Argo CD's tracking-id shape).
pub const TRACKING_ANNOTATION: &str = "flotilla.dev/tracking-id";
/// The server-side-apply field manager of every write the controller makes.
pub const FIELD_MANAGER: &str = "flotilla-controller";

/// An Application, by namespace and name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AppKey {
    pub namespace: String,
    pub name: String,
}

impl AppKey {
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            namespace: namespace.into(),
            name: name.into(),
        }
    }
}

impl std::fmt::Display for AppKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// A Kubernetes object's identity independent of API version: group, kind, namespace (empty
/// for cluster-scoped objects) and name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ResourceKey {
    pub group: String,
    pub kind: String,
    pub namespace: String,
    pub name: String,
}

impl std::fmt::Display for ResourceKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let gk = if self.group.is_empty() {
            self.kind.clone()
        } else {
            format!("{}/{}", self.group, self.kind)
        };
        if self.namespace.is_empty() {
            write!(f, "{gk} {}", self.name)
        } else {
            write!(f, "{gk} {}/{}", self.namespace, self.name)
        }
    }
}

/// Split `apiVersion` into group and version (`v1` is the core group).
pub fn group_version(api_version: &str) -> (&str, &str) {
    match api_version.split_once('/') {
        Some((g, v)) => (g, v),
        None => ("", api_version),
    }
}

impl ResourceKey {
    /// The key of an object as it stands (namespace as written in it).
    pub fn of(obj: &Value) -> Option<Self> {
        let (group, _) = group_version(obj.get("apiVersion")?.as_str()?);
        Some(Self {
            group: group.to_string(),
            kind: obj.get("kind")?.as_str()?.to_string(),
            namespace: obj
                .pointer("/metadata/namespace")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string(),
            name: obj.pointer("/metadata/name")?.as_str()?.to_string(),
        })
    }
}

/// A label value (≤ 63 characters of `[A-Za-z0-9._-]`, alphanumeric at both ends) standing
/// for `app`. Long or unusual names get a digest suffix; the annotation stays exact.
pub fn label_value(app: &AppKey) -> String {
    let ok = |s: &str| {
        !s.is_empty()
            && s.len() <= 63
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
            && s.as_bytes()[0].is_ascii_alphanumeric()
            && s.as_bytes()[s.len() - 1].is_ascii_alphanumeric()
    };
    if ok(&app.name) {
        return app.name.clone();
    }
    let digest = hex::encode(&Sha256::digest(app.to_string().as_bytes())[..6]);
    let head: String = app
        .name
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
        .take(63 - 13)
        .collect();
    let head = head.trim_matches('-');
    if head.is_empty() {
        format!("x-{digest}")
    } else {
        format!("{head}-{digest}")
    }
}

/// The tracking-id annotation value of `key` owned by `app`.
pub fn tracking_id(app: &AppKey, key: &ResourceKey) -> String {
    format!(
        "{}/{}:{}/{}:{}/{}",
        app.namespace, app.name, key.group, key.kind, key.namespace, key.name
    )
}

/// Parse a tracking-id back into its app and resource key.
pub fn parse_tracking_id(id: &str) -> Option<(AppKey, ResourceKey)> {
    let mut parts = id.splitn(3, ':');
    let (app, gk, nn) = (parts.next()?, parts.next()?, parts.next()?);
    let (app_ns, app_name) = app.split_once('/')?;
    let (group, kind) = gk.split_once('/')?;
    let (namespace, name) = nn.split_once('/')?;
    if app_name.is_empty() || kind.is_empty() || name.is_empty() {
        return None;
    }
    Some((
        AppKey::new(app_ns, app_name),
        ResourceKey {
            group: group.into(),
            kind: kind.into(),
            namespace: namespace.into(),
            name: name.into(),
        },
    ))
}

/// The Application that owns `obj`, if its tracking-id matches the object itself (an
/// annotation copied onto another object does not make it ours).
pub fn owner(obj: &Value) -> Option<AppKey> {
    let id = obj
        .pointer("/metadata/annotations")
        .and_then(|a| a.get(TRACKING_ANNOTATION))
        .and_then(Value::as_str)?;
    let (app, key) = parse_tracking_id(id)?;
    (ResourceKey::of(obj)? == key).then_some(app)
}

/// Put the tracking label and annotation on a desired object (whose namespace is final).
pub fn stamp(obj: &mut Value, app: &AppKey) {
    let Some(key) = ResourceKey::of(obj) else {
        return;
    };
    let id = tracking_id(app, &key);
    let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) else {
        return;
    };
    for (field, k, v) in [
        ("labels", TRACKING_LABEL, label_value(app)),
        ("annotations", TRACKING_ANNOTATION, id),
    ] {
        let entry = meta
            .entry(field)
            .or_insert_with(|| Value::Object(Default::default()));
        if !entry.is_object() {
            *entry = Value::Object(Default::default());
        }
        if let Some(m) = entry.as_object_mut() {
            m.insert(k.to_string(), Value::String(v));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn mk_cm(ns: &str, name: &str) -> Value {
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": ns}})
    }

    #[test]
    fn stamped_object_is_owned_by_its_app_and_round_trips() {
        let app = AppKey::new("argocd", "my-app");
        let mut cm = mk_cm("dev", "settings");
        stamp(&mut cm, &app);
        assert_eq!(cm["metadata"]["labels"][TRACKING_LABEL], "my-app");
        assert_eq!(
            cm["metadata"]["annotations"][TRACKING_ANNOTATION],
            "argocd/my-app:/ConfigMap:dev/settings"
        );
        assert_eq!(owner(&cm), Some(app.clone()));
        let (a, k) = parse_tracking_id("argocd/my-app:apps/Deployment:dev/web").expect("parses");
        assert_eq!(a, app);
        assert_eq!(k.to_string(), "apps/Deployment dev/web");
    }

    #[test]
    fn a_copied_annotation_does_not_make_an_object_ours() {
        let app = AppKey::new("argocd", "my-app");
        let mut cm = mk_cm("dev", "settings");
        stamp(&mut cm, &app);
        cm["metadata"]["name"] = json!("copy");
        assert_eq!(owner(&cm), None);
        assert_eq!(owner(&mk_cm("dev", "plain")), None);
        assert_eq!(parse_tracking_id("garbage"), None);
    }

    #[test]
    fn label_values_are_always_valid() {
        let long = AppKey::new("argocd", "a".repeat(80));
        let odd = AppKey::new("argocd", "-weird_name-");
        for app in [long, odd, AppKey::new("x", "ok-name")] {
            let v = label_value(&app);
            assert!(v.len() <= 63, "{v}");
            assert!(
                v.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric()),
                "{v}"
            );
            assert!(
                v.bytes().last().is_some_and(|b| b.is_ascii_alphanumeric()),
                "{v}"
            );
        }
        // Different apps with the same long prefix get different values.
        assert_ne!(
            label_value(&AppKey::new("a", "x".repeat(70))),
            label_value(&AppKey::new("b", "x".repeat(70)))
        );
    }
}
