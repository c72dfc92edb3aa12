//! Which Application owns a live object: Flotilla's tracking label (so cluster caches watch
//! only what Flotilla manages) and tracking-id annotation, Argo CD's tracking marks
//! (`application.resourceTrackingMethod`: label, annotation, annotation+label) so objects Argo
//! CD deployed are recognised and adopted, and the keys used for apps and resources.

use std::sync::OnceLock;

use serde_json::Value;
use sha2::{Digest, Sha256};

/// Label on every object Flotilla applies; caches watch with an "exists" selector on it.
pub const TRACKING_LABEL: &str = "flotilla.dev/app";
/// Annotation naming the owning Application and the object's identity:
/// `<app-namespace>/<app-name>:<group>/<kind>:<namespace>/<name>` (Argo CD's tracking-id shape).
pub const TRACKING_ANNOTATION: &str = "flotilla.dev/tracking-id";
/// The server-side-apply field manager of every write the controller makes.
pub const FIELD_MANAGER: &str = "flotilla-controller";
/// Argo CD's tracking annotation: `<app>:<group>/<kind>:<namespace>/<name>`.
pub const ARGO_TRACKING_ANNOTATION: &str = "argocd.argoproj.io/tracking-id";
/// Argo CD's installation id annotation (written when `installationID` is set).
pub const ARGO_INSTALLATION_ANNOTATION: &str = "argocd.argoproj.io/installation-id";
/// Argo CD's default `application.instanceLabelKey`.
pub const DEFAULT_INSTANCE_LABEL: &str = "app.kubernetes.io/instance";

/// Argo CD's `application.resourceTrackingMethod`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Method {
    /// Flotilla's own marks only (no `argocd-cm` setting).
    #[default]
    Flotilla,
    /// The instance label holds the app's instance name.
    Label,
    /// `argocd.argoproj.io/tracking-id`.
    Annotation,
    /// The annotation decides; the label is written too (truncated to 63 characters).
    AnnotationLabel,
}

impl Method {
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s.trim() {
            "" => Self::Flotilla,
            "label" => Self::Label,
            "annotation" => Self::Annotation,
            "annotation+label" => Self::AnnotationLabel,
            _ => return None,
        })
    }
}

/// How objects are marked and recognised, from `argocd-cm`; fixed for the process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tracking {
    pub method: Method,
    /// `application.instanceLabelKey`.
    pub instance_label: String,
    /// `installationID`: objects whose installation id differs are not ours.
    pub installation_id: Option<String>,
    /// The control-plane namespace: apps there are named plainly, others `<ns>_<name>`.
    pub control_namespace: String,
}

impl Default for Tracking {
    fn default() -> Self {
        Self {
            method: Method::Flotilla,
            instance_label: DEFAULT_INSTANCE_LABEL.into(),
            installation_id: None,
            control_namespace: "argocd".into(),
        }
    }
}

static TRACKING: OnceLock<Tracking> = OnceLock::new();

/// Set the process's tracking settings (once, at start; later calls are ignored).
pub fn configure(t: Tracking) {
    let _ = TRACKING.set(t);
}

/// The process's tracking settings.
pub fn settings() -> &'static Tracking {
    TRACKING.get_or_init(Tracking::default)
}

impl Tracking {
    /// The label key the cluster caches select on: Flotilla's own, or the instance label when
    /// Argo CD's method writes it (so objects Argo CD deployed are seen too). `None`: the
    /// annotation method, where only an unselected watch sees Argo CD's objects.
    pub fn watch_label(&self) -> Option<&str> {
        match self.method {
            Method::Flotilla => Some(TRACKING_LABEL),
            Method::Label | Method::AnnotationLabel => Some(&self.instance_label),
            Method::Annotation => None,
        }
    }

    /// Argo CD's instance name of an app: its name in the control-plane namespace, else
    /// `<namespace>_<name>` (apps in any namespace).
    pub fn instance_name(&self, app: &AppKey) -> String {
        if app.namespace == self.control_namespace {
            app.name.clone()
        } else {
            format!("{}_{}", app.namespace, app.name)
        }
    }

    fn app_of_instance(&self, instance: &str) -> AppKey {
        match instance.split_once('_') {
            Some((ns, name)) if !ns.is_empty() && !name.is_empty() => AppKey::new(ns, name),
            _ => AppKey::new(self.control_namespace.clone(), instance),
        }
    }

    /// Argo CD's tracking-id of `key` owned by `app`. A cluster-scoped object's id carries an
    /// empty namespace (Argo CD writes the destination's; both pass its copy check).
    pub fn argo_tracking_id(&self, app: &AppKey, key: &ResourceKey) -> String {
        format!(
            "{}:{}/{}:{}/{}",
            self.instance_name(app),
            key.group,
            key.kind,
            key.namespace,
            key.name
        )
    }

    /// The app Argo CD's marks on `obj` name as its owner, under the configured method.
    fn argo_owner(&self, obj: &Value) -> Option<AppKey> {
        // Argo CD manages only objects without owner references: a Pod inheriting the
        // instance label from its Deployment's template is not the app's.
        if obj
            .pointer("/metadata/ownerReferences")
            .and_then(Value::as_array)
            .is_some_and(|r| !r.is_empty())
        {
            return None;
        }
        let ann = |k: &str| {
            obj.pointer("/metadata/annotations")
                .and_then(|a| a.get(k))
                .and_then(Value::as_str)
        };
        match self.method {
            Method::Flotilla => None,
            Method::Label => obj
                .pointer("/metadata/labels")
                .and_then(|l| l.get(&self.instance_label))
                .and_then(Value::as_str)
                .filter(|v| !v.is_empty())
                .map(|v| self.app_of_instance(v)),
            Method::Annotation | Method::AnnotationLabel => {
                if let Some(id) = &self.installation_id
                    && ann(ARGO_INSTALLATION_ANNOTATION) != Some(id.as_str())
                {
                    return None;
                }
                let id = ann(ARGO_TRACKING_ANNOTATION)?;
                let mut parts = id.splitn(3, ':');
                let (app, gk, nn) = (parts.next()?, parts.next()?, parts.next()?);
                let (group, kind) = gk.split_once('/')?;
                let (namespace, name) = nn.split_once('/')?;
                let me = ResourceKey::of(obj)?;
                // Argo CD's copy check: the id must name the object itself (a cluster-scoped
                // object's id may carry the app's destination namespace).
                let same = me.group == group
                    && me.kind == kind
                    && me.name == name
                    && (me.namespace == namespace || me.namespace.is_empty());
                same.then(|| self.app_of_instance(app))
            }
        }
    }
}

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

/// The Application that owns `obj`: Flotilla's tracking-id when it matches the object itself
/// (an annotation copied onto another object does not make it ours), else Argo CD's marks
/// under the configured tracking method.
pub fn owner(obj: &Value) -> Option<AppKey> {
    owner_with(settings(), obj)
}

pub fn owner_with(t: &Tracking, obj: &Value) -> Option<AppKey> {
    let flotilla = obj
        .pointer("/metadata/annotations")
        .and_then(|a| a.get(TRACKING_ANNOTATION))
        .and_then(Value::as_str)
        .and_then(parse_tracking_id)
        .filter(|(_, key)| ResourceKey::of(obj).as_ref() == Some(key))
        .map(|(app, _)| app);
    flotilla.or_else(|| t.argo_owner(obj))
}

/// Argo CD's label value: at most 63 characters, ending in an alphanumeric.
fn argo_label_value(v: &str) -> String {
    let mut s: String = v.chars().take(63).collect();
    while s.chars().last().is_some_and(|c| !c.is_ascii_alphanumeric()) {
        s.pop();
    }
    s
}

/// Put the tracking marks on a desired object (whose namespace is final): Flotilla's label
/// and annotation, and Argo CD's under the configured method.
pub fn stamp(obj: &mut Value, app: &AppKey) {
    stamp_with(settings(), obj, app)
}

pub fn stamp_with(t: &Tracking, obj: &mut Value, app: &AppKey) {
    let Some(key) = ResourceKey::of(obj) else {
        return;
    };
    let id = tracking_id(app, &key);
    let mut marks = vec![
        ("labels", TRACKING_LABEL.to_string(), label_value(app)),
        ("annotations", TRACKING_ANNOTATION.to_string(), id),
    ];
    let instance = t.instance_name(app);
    if matches!(t.method, Method::Label | Method::AnnotationLabel) {
        marks.push((
            "labels",
            t.instance_label.clone(),
            argo_label_value(&instance),
        ));
    }
    if matches!(t.method, Method::Annotation | Method::AnnotationLabel) {
        marks.push((
            "annotations",
            ARGO_TRACKING_ANNOTATION.to_string(),
            t.argo_tracking_id(app, &key),
        ));
        if let Some(id) = &t.installation_id {
            marks.push((
                "annotations",
                ARGO_INSTALLATION_ANNOTATION.to_string(),
                id.clone(),
            ));
        }
    }
    let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) else {
        return;
    };
    for (field, k, v) in marks {
        let entry = meta
            .entry(field)
            .or_insert_with(|| Value::Object(Default::default()));
        if !entry.is_object() {
            *entry = Value::Object(Default::default());
        }
        if let Some(m) = entry.as_object_mut() {
            m.insert(k, Value::String(v));
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

    fn argo(method: Method) -> Tracking {
        Tracking {
            method,
            ..Default::default()
        }
    }

    #[test]
    fn argo_cd_marks_are_written_and_recognised_per_method() {
        let app = AppKey::new("argocd", "guestbook");
        let mut cm = mk_cm("dev", "settings");
        stamp_with(&argo(Method::AnnotationLabel), &mut cm, &app);
        assert_eq!(
            cm["metadata"]["annotations"][ARGO_TRACKING_ANNOTATION],
            "guestbook:/ConfigMap:dev/settings"
        );
        assert_eq!(
            cm["metadata"]["labels"][DEFAULT_INSTANCE_LABEL],
            "guestbook"
        );
        // What Argo CD wrote, without Flotilla's marks: recognised only under its method.
        let argo_annotated = json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "dev",
                         "annotations": {ARGO_TRACKING_ANNOTATION: "guestbook:apps/Deployment:dev/web"}}});
        assert_eq!(
            owner_with(&argo(Method::Annotation), &argo_annotated),
            Some(app.clone())
        );
        assert_eq!(owner_with(&argo(Method::Flotilla), &argo_annotated), None);
        // A copy (a Pod that inherited the annotation) is not the app's.
        let mut copy = argo_annotated.clone();
        copy["kind"] = json!("ReplicaSet");
        assert_eq!(owner_with(&argo(Method::Annotation), &copy), None);
        let labelled = json!({"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "s", "namespace": "dev",
                         "labels": {DEFAULT_INSTANCE_LABEL: "team-a_web"}}});
        assert_eq!(
            owner_with(&argo(Method::Label), &labelled),
            Some(AppKey::new("team-a", "web"))
        );
        // A Pod that inherited the label from its Deployment's template is not the app's.
        let mut owned_pod = labelled.clone();
        owned_pod["metadata"]["ownerReferences"] =
            json!([{"kind": "ReplicaSet", "name": "x", "uid": "u"}]);
        assert_eq!(owner_with(&argo(Method::Label), &owned_pod), None);
        let mut installed = argo(Method::Annotation);
        installed.installation_id = Some("prod".into());
        assert_eq!(owner_with(&installed, &argo_annotated), None);
        assert_eq!(installed.watch_label(), None);
        assert_eq!(
            argo(Method::Label).watch_label(),
            Some(DEFAULT_INSTANCE_LABEL)
        );
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
