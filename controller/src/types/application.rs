//! `Application` (argoproj.io/v1alpha1): spec, the top-level `operation` Argo CD uses for manual
//! syncs, and status, with Argo CD's field names so existing YAML applies unchanged.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::CustomResource;
use kube::core::NamespaceResourceScope;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::schema::{preserve_list, preserve_object};
use super::{GROUP, VERSION};

/// `spec` of an Application. The derive produces `ApplicationCrd`, used only for the CRD.
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "argoproj.io",
    version = "v1alpha1",
    kind = "Application",
    root = "ApplicationCrd",
    namespaced,
    shortname = "app",
    shortname = "apps",
    status = "ApplicationStatus",
    printcolumn = r#"{"name":"Sync Status","type":"string","jsonPath":".status.sync.status"}"#,
    printcolumn = r#"{"name":"Health Status","type":"string","jsonPath":".status.health.status"}"#,
    printcolumn = r#"{"name":"Revision","type":"string","jsonPath":".status.sync.revision","priority":10}"#
)]
#[serde(rename_all = "camelCase")]
pub struct ApplicationSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<ApplicationSource>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sources: Option<Vec<ApplicationSource>>,
    pub destination: ApplicationDestination,
    #[serde(default)]
    pub project: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sync_policy: Option<SyncPolicy>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "preserve_list")]
    pub ignore_differences: Option<Vec<Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision_history_limit: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "preserve_list")]
    pub info: Option<Vec<Value>>,
}

/// `spec.source` / an element of `spec.sources`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ApplicationSource {
    #[serde(rename = "repoURL")]
    pub repo_url: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_revision: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chart: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "preserve_object")]
    pub helm: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kustomize: Option<KustomizeOptions>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub directory: Option<DirectoryOptions>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "preserve_object")]
    pub plugin: Option<Value>,
    #[serde(rename = "ref", default, skip_serializing_if = "Option::is_none")]
    pub ref_: Option<String>,
}

/// `spec.source.directory`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DirectoryOptions {
    #[serde(default)]
    pub recurse: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub include: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exclude: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "preserve_object")]
    pub jsonnet: Option<Value>,
}

/// `spec.source.kustomize`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct KustomizeOptions {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name_prefix: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name_suffix: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub images: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub common_labels: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub common_annotations: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

/// `spec.destination`: a cluster by `server` URL or by `name`, and a default namespace.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ApplicationDestination {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

/// `spec.syncPolicy`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SyncPolicy {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub automated: Option<Automated>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sync_options: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "preserve_object")]
    pub retry: Option<Value>,
    /// Labels and annotations for the namespace `CreateNamespace=true` creates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "preserve_object")]
    pub managed_namespace_metadata: Option<Value>,
}

impl SyncPolicy {
    /// Whether `syncOptions` holds `Name=true`.
    pub fn option(&self, name: &str) -> bool {
        self.sync_options
            .iter()
            .flatten()
            .any(|o| o.split_once('=') == Some((name, "true")))
    }
}

/// `spec.syncPolicy.automated`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Automated {
    #[serde(default)]
    pub prune: bool,
    #[serde(default)]
    pub self_heal: bool,
    #[serde(default)]
    pub allow_empty: bool,
}

/// `status`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ApplicationStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sync: Option<SyncStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<HealthStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<Vec<ResourceStatus>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "preserve_object")]
    pub operation_state: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reconciled_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conditions: Option<Vec<ApplicationCondition>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "preserve_list")]
    pub history: Option<Vec<Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_type: Option<String>,
}

/// `status.sync`: Synced, OutOfSync or Unknown, at a revision.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SyncStatus {
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<String>,
    /// One revision per source, for multi-source Applications.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revisions: Option<Vec<String>>,
}

/// `status.health` and per-resource health: Healthy, Progressing, Degraded, Suspended, Missing,
/// Unknown.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct HealthStatus {
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// One managed object in `status.resources`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ResourceStatus {
    #[serde(default)]
    pub group: String,
    #[serde(default)]
    pub version: String,
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<HealthStatus>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub requires_pruning: bool,
}

/// One entry of `status.conditions` (ComparisonError, SyncError, InvalidSpecError, ...).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ApplicationCondition {
    #[serde(rename = "type")]
    pub type_: String,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_transition_time: Option<String>,
}

/// An Application as stored: like the derived kind plus Argo CD's top-level `operation`
/// (how a manual sync is requested), which a CRD-derived struct cannot carry.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Application {
    #[serde(default = "api_version")]
    pub api_version: String,
    #[serde(default = "kind")]
    pub kind: String,
    pub metadata: ObjectMeta,
    pub spec: ApplicationSpec,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<ApplicationStatus>,
    /// Fields of `spec` Flotilla does not honour (`spec.x.y`), found when it was read: each is
    /// refused with a condition instead of being ignored.
    #[serde(skip)]
    pub unsupported: Vec<String>,
    /// In the watch store only: the status fields a reconcile reads but the rest of the
    /// controller never does, as zstd-compressed JSON (`Application::pack`); `None`
    /// everywhere else.
    #[serde(skip)]
    pub packed: Option<Arc<[u8]>>,
}

/// The status fields `Application::pack` moves into compressed JSON: per app they are most
/// of the typed object (a `serde_json::Value` takes several times its text, and the text
/// compresses about 3:1), and only the reconcile of the app (and `explain`) reads them, on
/// the replica that owns the app.
#[derive(Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct PackedStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    resources: Option<Vec<ResourceStatus>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    operation_state: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    conditions: Option<Vec<ApplicationCondition>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    history: Option<Vec<Value>>,
}

/// zstd level of packed status: the fastest; the JSON is small and its keys repeat.
const PACK_LEVEL: i32 = 1;

impl Application {
    /// Move the status fields only a reconcile reads (resources, operationState, conditions,
    /// history) into one zstd-compressed JSON text, for the watch store of every Application in the
    /// fleet; `unpacked` restores them. Sync, health, reconciledAt and sourceType stay typed
    /// (the ApplicationSet rollout, metrics and the queue read them).
    pub fn pack(&mut self) {
        let Some(st) = self.status.as_mut() else {
            return;
        };
        let heavy = PackedStatus {
            resources: st.resources.take(),
            operation_state: st.operation_state.take(),
            conditions: st.conditions.take(),
            history: st.history.take(),
        };
        if heavy.resources.is_none()
            && heavy.operation_state.is_none()
            && heavy.conditions.is_none()
            && heavy.history.is_none()
        {
            return;
        }
        let packed = serde_json::to_vec(&heavy)
            .ok()
            .and_then(|json| zstd::bulk::compress(&json, PACK_LEVEL).ok());
        match packed {
            Some(bytes) => self.packed = Some(Arc::from(bytes)),
            // Unreachable for these types; keep the fields rather than lose them.
            None => {
                st.resources = heavy.resources;
                st.operation_state = heavy.operation_state;
                st.conditions = heavy.conditions;
                st.history = heavy.history;
            }
        }
    }

    /// The Application whole: `self` when nothing is packed, else a copy with the packed
    /// status fields parsed back.
    pub fn unpacked(self: &Arc<Self>) -> Arc<Self> {
        let Some(bytes) = self.packed.as_deref() else {
            return self.clone();
        };
        let mut app = Application::clone(self);
        app.packed = None;
        // Our own compression of our own serialization of these same types.
        let heavy: PackedStatus = zstd::stream::decode_all(bytes)
            .ok()
            .and_then(|json| serde_json::from_slice(&json).ok())
            .unwrap_or_default();
        let st = app.status.get_or_insert_with(Default::default);
        st.resources = heavy.resources;
        st.operation_state = heavy.operation_state;
        st.conditions = heavy.conditions;
        st.history = heavy.history;
        Arc::new(app)
    }
}

/// The wire form of an Application (everything but what is found on reading).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ApplicationWire {
    #[serde(default = "api_version")]
    api_version: String,
    #[serde(default = "kind")]
    kind: String,
    metadata: ObjectMeta,
    spec: ApplicationSpec,
    #[serde(default)]
    operation: Option<Value>,
    #[serde(default)]
    status: Option<ApplicationStatus>,
}

impl<'de> Deserialize<'de> for Application {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = Value::deserialize(d)?;
        let unsupported = v
            .get("spec")
            .map(super::fields::unsupported)
            .unwrap_or_default();
        let w: ApplicationWire = serde_json::from_value(v).map_err(serde::de::Error::custom)?;
        Ok(Application {
            api_version: w.api_version,
            kind: w.kind,
            metadata: w.metadata,
            spec: w.spec,
            operation: w.operation,
            status: w.status,
            unsupported,
            packed: None,
        })
    }
}

fn api_version() -> String {
    format!("{GROUP}/{VERSION}")
}

fn kind() -> String {
    "Application".into()
}

impl kube::Resource for Application {
    type DynamicType = ();
    type Scope = NamespaceResourceScope;

    fn kind(_: &()) -> Cow<'_, str> {
        "Application".into()
    }
    fn group(_: &()) -> Cow<'_, str> {
        GROUP.into()
    }
    fn version(_: &()) -> Cow<'_, str> {
        VERSION.into()
    }
    fn plural(_: &()) -> Cow<'_, str> {
        "applications".into()
    }
    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }
    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

/// The Application CRD: derived from the spec and status types, plus `operation`.
pub fn application_crd() -> CustomResourceDefinition {
    use kube::CustomResourceExt;
    let mut crd = ApplicationCrd::crd();
    for v in &mut crd.spec.versions {
        if let Some(props) = v
            .schema
            .as_mut()
            .and_then(|s| s.open_api_v3_schema.as_mut())
            .and_then(|s| s.properties.as_mut())
            && let Ok(op) = serde_json::from_value(serde_json::json!(
                {"type": "object", "x-kubernetes-preserve-unknown-fields": true}
            ))
        {
            props.insert("operation".into(), op);
        }
        // Unknown spec fields must reach the controller (which refuses them by name) instead
        // of being pruned by the API server.
        if let Some(spec) = v
            .schema
            .as_mut()
            .and_then(|s| s.open_api_v3_schema.as_mut())
            .and_then(|s| s.properties.as_mut())
            .and_then(|p| p.get_mut("spec"))
        {
            preserve_unknown(spec);
        }
    }
    crd
}

fn preserve_unknown(
    s: &mut k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::JSONSchemaProps,
) {
    if let Some(props) = s.properties.as_mut() {
        s.x_kubernetes_preserve_unknown_fields = Some(true);
        for p in props.values_mut() {
            preserve_unknown(p);
        }
    }
    if let Some(k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::JSONSchemaPropsOrArray::Schema(items)) =
        s.items.as_mut()
    {
        preserve_unknown(items);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packing_keeps_every_status_field_and_unpacking_restores_them() {
        let app: Application = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "a", "namespace": "argocd", "resourceVersion": "7"},
            "spec": {"destination": {"server": "https://c", "namespace": "n"}, "project": "default"},
            "status": {
                "sync": {"status": "Synced", "revision": "abc"},
                "health": {"status": "Healthy"},
                "resources": [{"kind": "ConfigMap", "name": "cm", "version": "v1", "status": "Synced"}],
                "operationState": {"phase": "Succeeded", "syncResult": {"revision": "abc"}},
                "conditions": [{"type": "SyncError", "message": "m"}],
                "history": [{"id": 0, "revision": "abc"}],
                "reconciledAt": "2026-01-01T00:00:00Z"
            }
        }))
        .expect("app");
        let mut packed = app.clone();
        packed.pack();
        let st = packed.status.as_ref().expect("status");
        assert!(st.resources.is_none() && st.operation_state.is_none());
        assert!(st.conditions.is_none() && st.history.is_none());
        assert_eq!(st.sync.as_ref().map(|s| s.status.as_str()), Some("Synced"));
        assert_eq!(
            st.health.as_ref().map(|s| s.status.as_str()),
            Some("Healthy")
        );
        assert!(packed.packed.is_some());
        let back = Arc::new(packed).unpacked();
        assert_eq!(*back, app, "nothing lost");
        // Compressed: a status with many resources packs to less than a third of its text.
        let mut big = app.clone();
        let st = big.status.as_mut().expect("status");
        let one = st.resources.as_ref().expect("resources")[0].clone();
        st.resources = Some(
            (0..30)
                .map(|i| ResourceStatus {
                    name: format!("cm-{i}"),
                    ..one.clone()
                })
                .collect(),
        );
        let text = serde_json::to_vec(st).expect("json").len();
        big.pack();
        let packed = big.packed.as_ref().expect("packed").len();
        assert!(packed * 3 < text, "{packed} of {text}");
        // An app without those fields packs to nothing.
        let mut bare = app.clone();
        bare.status = Some(ApplicationStatus::default());
        bare.pack();
        assert!(bare.packed.is_none());
    }

    /// The Application from the issue, verbatim apart from nothing at all.
    const MY_APP: &str = r#"
apiVersion: argoproj.io/v1alpha1
kind: Application
metadata: {name: my-app, namespace: argocd}
spec:
  project: default
  source: {repoURL: https://github.com/my-org/my-app.git, targetRevision: main, path: k8s/overlays/dev}
  destination: {server: https://kubernetes.default.svc, namespace: my-app-dev}
  syncPolicy:
    automated: {prune: true, selfHeal: true}
    syncOptions: [CreateNamespace=true]
"#;

    #[test]
    fn argo_cd_example_parses_with_every_field() {
        let app: Application = serde_yaml::from_str(MY_APP).expect("parses");
        let src = app.spec.source.as_ref().expect("source");
        assert_eq!(src.repo_url, "https://github.com/my-org/my-app.git");
        assert_eq!(src.target_revision.as_deref(), Some("main"));
        assert_eq!(src.path.as_deref(), Some("k8s/overlays/dev"));
        assert_eq!(
            app.spec.destination.server.as_deref(),
            Some("https://kubernetes.default.svc")
        );
        let policy = app.spec.sync_policy.as_ref().expect("policy");
        let auto = policy.automated.as_ref().expect("automated");
        assert!(auto.prune && auto.self_heal && !auto.allow_empty);
        assert!(policy.option("CreateNamespace"));
        assert!(!policy.option("ServerSideApply"));
    }

    #[test]
    fn operation_round_trips_and_status_uses_argo_names() {
        let mut v: Value = serde_yaml::from_str(MY_APP).expect("yaml");
        v["operation"] = serde_json::json!({"sync": {"revision": "HEAD", "prune": true}});
        v["status"] = serde_json::json!({"sync": {"status": "Synced", "revision": "abc"},
            "health": {"status": "Healthy"}, "reconciledAt": "2026-01-01T00:00:00Z",
            "operationState": {"phase": "Succeeded"}});
        let app: Application = serde_json::from_value(v.clone()).expect("parses");
        assert!(app.operation.is_some());
        let back = serde_json::to_value(&app).expect("serializes");
        assert_eq!(back["operation"], v["operation"]);
        assert_eq!(back["status"]["reconciledAt"], "2026-01-01T00:00:00Z");
        assert_eq!(back["status"]["operationState"]["phase"], "Succeeded");
    }

    #[test]
    fn crd_is_argo_cds_and_keeps_operation() {
        let crd = application_crd();
        assert_eq!(
            crd.metadata.name.as_deref(),
            Some("applications.argoproj.io")
        );
        assert_eq!(crd.spec.names.kind, "Application");
        let schema = serde_json::to_value(&crd.spec.versions[0].schema).expect("schema");
        let props = &schema["openAPIV3Schema"]["properties"];
        assert!(props.get("operation").is_some(), "{props}");
        assert!(props["spec"]["properties"].get("syncPolicy").is_some());
        assert!(
            crd.spec.versions[0].subresources.is_some(),
            "status subresource"
        );
    }
}
