//! `AppProject` (argoproj.io/v1alpha1): which repositories, destinations and kinds the
//! Applications of a project may use.

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::schema::preserve_list;

/// `spec` of an AppProject.
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "argoproj.io",
    version = "v1alpha1",
    kind = "AppProject",
    namespaced,
    shortname = "appproj",
    shortname = "appprojs"
)]
#[serde(rename_all = "camelCase")]
pub struct AppProjectSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Repository URLs (globs) Applications may use; `*` allows all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_repos: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destinations: Option<Vec<ProjectDestination>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "group_kinds")]
    pub cluster_resource_whitelist: Option<Vec<GroupKind>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "group_kinds")]
    pub cluster_resource_blacklist: Option<Vec<GroupKind>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "group_kinds")]
    pub namespace_resource_whitelist: Option<Vec<GroupKind>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "group_kinds")]
    pub namespace_resource_blacklist: Option<Vec<GroupKind>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "preserve_list")]
    pub roles: Option<Vec<Value>>,
    /// Report objects in the apps' namespaces that no app tracks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub orphaned_resources: Option<OrphanedResources>,
    /// Namespaces (globs) outside the control plane whose Applications may use this project.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_namespaces: Option<Vec<String>>,
    /// Fields Flotilla does not honour (`syncWindows`, `signatureKeys`, ...): kept so the
    /// Applications of the project are refused naming them.
    #[serde(
        flatten,
        default,
        skip_serializing_if = "std::collections::BTreeMap::is_empty"
    )]
    #[schemars(skip)]
    pub unsupported: std::collections::BTreeMap<String, Value>,
}

/// The AppProject CRD: as derived, with unknown `spec` fields kept by the API server so the
/// controller sees (and refuses) them.
pub fn project_crd()
-> k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition {
    use kube::CustomResourceExt;
    let mut crd = AppProject::crd();
    for v in &mut crd.spec.versions {
        if let Some(spec) = v
            .schema
            .as_mut()
            .and_then(|s| s.open_api_v3_schema.as_mut())
            .and_then(|s| s.properties.as_mut())
            .and_then(|p| p.get_mut("spec"))
        {
            spec.x_kubernetes_preserve_unknown_fields = Some(true);
        }
    }
    crd
}

/// The project fields Flotilla does not honour, for the conditions of its Applications.
/// `roles` are the API server's (JWT tokens and policies): accepted, not a controller matter.
pub fn unsupported_fields(spec: &AppProjectSpec) -> Vec<String> {
    spec.unsupported
        .iter()
        .filter(|(_, v)| !v.is_null())
        .map(|(k, _)| format!("spec.{k}"))
        .collect()
}

fn group_kinds(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({"type": "array", "items": {"type": "object", "required": ["group", "kind"],
        "properties": {"group": {"type": "string"}, "kind": {"type": "string"}}}})
}

/// A Kubernetes group and kind (`group: ""` is the core group).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct GroupKind {
    #[serde(default)]
    pub group: String,
    pub kind: String,
}

/// `spec.orphanedResources`: whether to warn, and what never counts (globs per field).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct OrphanedResources {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warn: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ignore: Option<Vec<OrphanedIgnore>>,
}

/// One `orphanedResources.ignore` entry.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct OrphanedIgnore {
    #[serde(default)]
    pub group: String,
    #[serde(default)]
    pub kind: String,
    #[serde(default)]
    pub name: String,
}

impl OrphanedIgnore {
    /// Whether the entry covers `key` (an empty field matches anything).
    pub fn matches(&self, key: &crate::tracking::ResourceKey) -> bool {
        let m = |p: &str, s: &str| p.is_empty() || crate::settings::wildcard(p, s);
        m(&self.group, &key.group) && m(&self.kind, &key.kind) && m(&self.name, &key.name)
    }
}

/// One allowed destination: server URL or cluster name (globs), and namespace (glob).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ProjectDestination {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::CustomResourceExt;

    #[test]
    fn restrictive_project_parses() {
        let p: AppProject = serde_yaml::from_str(
            r#"
apiVersion: argoproj.io/v1alpha1
kind: AppProject
metadata: {name: team-a, namespace: argocd}
spec:
  sourceRepos: ["https://github.com/my-org/*"]
  destinations: [{server: https://kubernetes.default.svc, namespace: "team-a-*"}]
  namespaceResourceWhitelist: [{group: "apps", kind: Deployment}, {group: "", kind: ConfigMap}]
"#,
        )
        .expect("parses");
        assert_eq!(p.spec.destinations.as_ref().map(Vec::len), Some(1));
        assert_eq!(
            p.spec
                .namespace_resource_whitelist
                .as_ref()
                .map(|w| w[0].kind.as_str()),
            Some("Deployment")
        );
        assert_eq!(
            AppProject::crd().metadata.name.as_deref(),
            Some("appprojects.argoproj.io")
        );
    }
}
