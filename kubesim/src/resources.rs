//! The resource registry: built-in kinds with their scope and traits, CRD-defined kinds added at
//! run time, and the discovery documents (`/api`, `/apis`, `/apis/{g}/{v}`) built from them.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, LazyLock};

use serde_json::{Value, json};

/// Which status kubesim simulates for a kind (kwok-style).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Simulated {
    None,
    Deployment,
    StatefulSet,
    DaemonSet,
    ReplicaSet,
    Pod,
    Job,
    Service,
    Ingress,
    Pvc,
    /// Not stored: a create-only review answered at once (`actions.rs`).
    Review,
}

/// One served resource (group/version/plural) and what the server knows about it.
#[derive(Debug, Clone)]
pub struct ResourceType {
    pub group: String,
    /// `v1` or `group/version`.
    pub api_version: String,
    pub version: String,
    pub plural: String,
    pub singular: String,
    pub kind: String,
    pub namespaced: bool,
    pub short_names: Vec<String>,
    /// Has a `/status` subresource (the main endpoint then ignores status changes).
    pub has_status: bool,
    /// `metadata.generation` is tracked and bumped on spec changes.
    pub tracks_generation: bool,
    /// Defined by a CRD (strategic merge patch unsupported, lists atomic).
    pub custom: bool,
    pub simulated: Simulated,
    /// The `/scale` subresource, if served: where replicas and the selector live.
    pub scale: Option<ScalePaths>,
}

/// Where a scalable kind keeps what `autoscaling/v1` Scale shows (a CRD's
/// `subresources.scale`, or the built-in workloads' fixed fields).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScalePaths {
    /// JSON pointers (`/spec/replicas`), converted from the CRD's `.spec.replicas` form.
    pub spec_replicas: String,
    pub status_replicas: String,
    pub selector: ScaleSelector,
}

/// Where a Scale's `status.selector` comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScaleSelector {
    /// The built-in workloads: `spec.selector.matchLabels`, rendered `k=v,...`.
    MatchLabels,
    /// A CRD's `labelSelectorPath`: a string field holding a serialized selector.
    Path(String),
    None,
}

impl ScalePaths {
    fn builtin() -> Self {
        Self {
            spec_replicas: "/spec/replicas".into(),
            status_replicas: "/status/replicas".into(),
            selector: ScaleSelector::MatchLabels,
        }
    }

    /// From a CRD version's `subresources.scale`; `None` without the two replica paths.
    fn from_crd(scale: &Value) -> Option<Self> {
        let pointer = |k: &str| {
            scale
                .get(k)
                .and_then(Value::as_str)
                .filter(|p| p.starts_with('.'))
                .map(|p| p.replace('.', "/"))
        };
        Some(Self {
            spec_replicas: pointer("specReplicasPath")?,
            status_replicas: pointer("statusReplicasPath")?,
            selector: pointer("labelSelectorPath").map_or(ScaleSelector::None, ScaleSelector::Path),
        })
    }
}

/// Storage identity of a resource: all versions of one group/plural share objects.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct GroupResource {
    pub group: String,
    pub resource: String,
}

impl ResourceType {
    pub fn api_version(&self) -> &str {
        &self.api_version
    }

    /// `configmaps` or `deployments.apps`, as used in error messages.
    pub fn qualified(&self) -> String {
        if self.group.is_empty() {
            self.plural.clone()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }

    pub fn group_resource(&self) -> GroupResource {
        GroupResource {
            group: self.group.clone(),
            resource: self.plural.clone(),
        }
    }

    pub fn is_namespace(&self) -> bool {
        self.group.is_empty() && self.plural == "namespaces"
    }

    /// Discovery categories: the built-in workloads are in `all` (`kubectl get all`).
    pub fn categories(&self) -> Vec<&'static str> {
        let all = matches!(
            (self.group.as_str(), self.plural.as_str()),
            ("", "pods" | "services" | "replicationcontrollers")
                | (
                    "apps",
                    "deployments" | "statefulsets" | "daemonsets" | "replicasets"
                )
                | ("batch", "jobs" | "cronjobs")
        ) && !self.custom;
        if all { vec!["all"] } else { Vec::new() }
    }

    /// One resource of an aggregated (`apidiscovery.k8s.io/v2`) discovery document.
    fn aggregated_entry(&self) -> Value {
        let gvk = json!({"group": self.group, "version": self.version, "kind": self.kind});
        let mut e = json!({
            "resource": self.plural,
            "responseKind": gvk,
            "scope": if self.namespaced { "Namespaced" } else { "Cluster" },
            "singularResource": self.singular,
            "verbs": self.verbs(),
        });
        if !self.short_names.is_empty() {
            e["shortNames"] = json!(self.short_names);
        }
        let categories = self.categories();
        if !categories.is_empty() {
            e["categories"] = json!(categories);
        }
        let mut subs = Vec::new();
        if self.has_status {
            subs.push(json!({"subresource": "status", "responseKind": gvk,
                             "verbs": ["get", "patch", "update"]}));
        }
        if self.has_scale() {
            subs.push(json!({"subresource": "scale",
                             "responseKind": {"group": "autoscaling", "version": "v1", "kind": "Scale"},
                             "verbs": ["get", "patch", "update"]}));
        }
        if self.has_eviction() {
            subs.push(json!({"subresource": "eviction",
                             "responseKind": {"group": "policy", "version": "v1", "kind": "Eviction"},
                             "verbs": ["create"]}));
        }
        if self.has_token() {
            subs.push(json!({"subresource": "token",
                             "responseKind": {"group": "authentication.k8s.io", "version": "v1", "kind": "TokenRequest"},
                             "verbs": ["create"]}));
        }
        if !subs.is_empty() {
            e["subresources"] = json!(subs);
        }
        e
    }

    /// Has a `/scale` subresource (`autoscaling/v1` Scale): the replicated workloads and
    /// custom resources whose CRD declares one.
    pub fn has_scale(&self) -> bool {
        self.scale.is_some()
    }

    /// A create-only review kind (access reviews), never stored.
    pub fn is_review(&self) -> bool {
        self.simulated == Simulated::Review
    }

    /// Has the `eviction` subresource: pods.
    pub fn has_eviction(&self) -> bool {
        self.group.is_empty() && self.plural == "pods" && !self.custom
    }

    /// Has the `token` subresource (TokenRequest, `tokens.rs`): serviceaccounts.
    pub fn has_token(&self) -> bool {
        self.group.is_empty() && self.plural == "serviceaccounts" && !self.custom
    }

    fn verbs(&self) -> Vec<&'static str> {
        if self.is_review() {
            vec!["create"]
        } else {
            vec![
                "create",
                "delete",
                "deletecollection",
                "get",
                "list",
                "patch",
                "update",
                "watch",
            ]
        }
    }

    pub fn is_crd(&self) -> bool {
        self.group == "apiextensions.k8s.io" && self.plural == "customresourcedefinitions"
    }

    fn discovery_entries(&self) -> Vec<Value> {
        let verbs = self.verbs();
        let mut main = json!({
            "name": self.plural,
            "singularName": self.singular,
            "namespaced": self.namespaced,
            "kind": self.kind,
            "verbs": verbs,
        });
        if !self.short_names.is_empty() {
            main["shortNames"] = json!(self.short_names);
        }
        let categories = self.categories();
        if !categories.is_empty() {
            main["categories"] = json!(categories);
        }
        let mut out = vec![main];
        if self.has_scale() {
            out.push(json!({
                "name": format!("{}/scale", self.plural),
                "singularName": "",
                "namespaced": self.namespaced,
                "group": "autoscaling",
                "version": "v1",
                "kind": "Scale",
                "verbs": ["get", "patch", "update"],
            }));
        }
        if self.has_eviction() {
            out.push(json!({
                "name": format!("{}/eviction", self.plural),
                "singularName": "",
                "namespaced": true,
                "group": "policy",
                "version": "v1",
                "kind": "Eviction",
                "verbs": ["create"],
            }));
        }
        if self.has_token() {
            out.push(json!({
                "name": format!("{}/token", self.plural),
                "singularName": "",
                "namespaced": true,
                "group": "authentication.k8s.io",
                "version": "v1",
                "kind": "TokenRequest",
                "verbs": ["create"],
            }));
        }
        if self.has_status {
            out.push(json!({
                "name": format!("{}/status", self.plural),
                "singularName": "",
                "namespaced": self.namespaced,
                "kind": self.kind,
                "verbs": ["get", "patch", "update"],
            }));
        }
        out
    }
}

struct Builtin(
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    bool,
    &'static [&'static str],
    bool,
    bool,
    Simulated,
);

/// group, version, plural, kind, namespaced, shortNames, has status, tracks generation, simulation.
#[rustfmt::skip]
const BUILTINS: &[Builtin] = &[
    Builtin("", "v1", "namespaces", "Namespace", false, &["ns"], true, false, Simulated::None),
    Builtin("", "v1", "configmaps", "ConfigMap", true, &["cm"], false, false, Simulated::None),
    Builtin("", "v1", "secrets", "Secret", true, &[], false, false, Simulated::None),
    Builtin("", "v1", "services", "Service", true, &["svc"], true, false, Simulated::Service),
    Builtin("", "v1", "serviceaccounts", "ServiceAccount", true, &["sa"], false, false, Simulated::None),
    Builtin("", "v1", "pods", "Pod", true, &["po"], true, false, Simulated::Pod),
    Builtin("", "v1", "persistentvolumeclaims", "PersistentVolumeClaim", true, &["pvc"], true, false, Simulated::Pvc),
    Builtin("", "v1", "persistentvolumes", "PersistentVolume", false, &["pv"], true, false, Simulated::None),
    Builtin("", "v1", "endpoints", "Endpoints", true, &["ep"], false, false, Simulated::None),
    Builtin("", "v1", "events", "Event", true, &["ev"], false, false, Simulated::None),
    Builtin("", "v1", "limitranges", "LimitRange", true, &["limits"], false, false, Simulated::None),
    Builtin("", "v1", "resourcequotas", "ResourceQuota", true, &["quota"], true, false, Simulated::None),
    Builtin("", "v1", "nodes", "Node", false, &["no"], true, false, Simulated::None),
    Builtin("", "v1", "replicationcontrollers", "ReplicationController", true, &["rc"], true, true, Simulated::None),
    Builtin("", "v1", "podtemplates", "PodTemplate", true, &[], false, false, Simulated::None),
    Builtin("events.k8s.io", "v1", "events", "Event", true, &[], false, false, Simulated::None),
    Builtin("discovery.k8s.io", "v1", "endpointslices", "EndpointSlice", true, &[], false, false, Simulated::None),
    Builtin("apps", "v1", "deployments", "Deployment", true, &["deploy"], true, true, Simulated::Deployment),
    Builtin("apps", "v1", "statefulsets", "StatefulSet", true, &["sts"], true, true, Simulated::StatefulSet),
    Builtin("apps", "v1", "daemonsets", "DaemonSet", true, &["ds"], true, true, Simulated::DaemonSet),
    Builtin("apps", "v1", "replicasets", "ReplicaSet", true, &["rs"], true, true, Simulated::ReplicaSet),
    Builtin("apps", "v1", "controllerrevisions", "ControllerRevision", true, &[], false, false, Simulated::None),
    Builtin("batch", "v1", "jobs", "Job", true, &[], true, true, Simulated::Job),
    Builtin("batch", "v1", "cronjobs", "CronJob", true, &["cj"], true, true, Simulated::None),
    Builtin("networking.k8s.io", "v1", "ingresses", "Ingress", true, &["ing"], true, true, Simulated::Ingress),
    Builtin("networking.k8s.io", "v1", "networkpolicies", "NetworkPolicy", true, &["netpol"], false, true, Simulated::None),
    Builtin("networking.k8s.io", "v1", "ingressclasses", "IngressClass", false, &[], false, false, Simulated::None),
    Builtin("autoscaling", "v2", "horizontalpodautoscalers", "HorizontalPodAutoscaler", true, &["hpa"], true, true, Simulated::None),
    Builtin("policy", "v1", "poddisruptionbudgets", "PodDisruptionBudget", true, &["pdb"], true, true, Simulated::None),
    Builtin("rbac.authorization.k8s.io", "v1", "roles", "Role", true, &[], false, false, Simulated::None),
    Builtin("rbac.authorization.k8s.io", "v1", "rolebindings", "RoleBinding", true, &[], false, false, Simulated::None),
    Builtin("rbac.authorization.k8s.io", "v1", "clusterroles", "ClusterRole", false, &[], false, false, Simulated::None),
    Builtin("rbac.authorization.k8s.io", "v1", "clusterrolebindings", "ClusterRoleBinding", false, &[], false, false, Simulated::None),
    Builtin("coordination.k8s.io", "v1", "leases", "Lease", true, &[], false, false, Simulated::None),
    Builtin("storage.k8s.io", "v1", "storageclasses", "StorageClass", false, &["sc"], false, false, Simulated::None),
    Builtin("scheduling.k8s.io", "v1", "priorityclasses", "PriorityClass", false, &["pc"], false, false, Simulated::None),
    Builtin("authorization.k8s.io", "v1", "selfsubjectaccessreviews", "SelfSubjectAccessReview", false, &[], false, false, Simulated::Review),
    Builtin("authorization.k8s.io", "v1", "selfsubjectrulesreviews", "SelfSubjectRulesReview", false, &[], false, false, Simulated::Review),
    Builtin("authentication.k8s.io", "v1", "selfsubjectreviews", "SelfSubjectReview", false, &[], false, false, Simulated::Review),
    Builtin("authentication.k8s.io", "v1", "tokenreviews", "TokenReview", false, &[], false, false, Simulated::Review),
    Builtin("apiregistration.k8s.io", "v1", "apiservices", "APIService", false, &[], true, false, Simulated::None),
    Builtin("apiextensions.k8s.io", "v1", "customresourcedefinitions", "CustomResourceDefinition", false, &["crd", "crds"], true, true, Simulated::None),
];

/// The served version of a built-in kind.
pub fn builtin_version(group: &str, kind: &str) -> Option<&'static str> {
    BUILTINS
        .iter()
        .find(|b| b.0 == group && b.3 == kind)
        .map(|b| b.1)
}

static BUILTIN_TYPES: LazyLock<Vec<Arc<ResourceType>>> = LazyLock::new(|| {
    BUILTINS
        .iter()
        .map(|b| {
            Arc::new(ResourceType {
                group: b.0.into(),
                api_version: api_version(b.0, b.1),
                version: b.1.into(),
                plural: b.2.into(),
                singular: b.3.to_lowercase(),
                kind: b.3.into(),
                namespaced: b.4,
                short_names: b.5.iter().map(|s| s.to_string()).collect(),
                has_status: b.6,
                tracks_generation: b.7,
                custom: false,
                simulated: b.8,
                scale: matches!(
                    (b.0, b.2),
                    ("apps", "deployments" | "statefulsets" | "replicasets")
                        | ("", "replicationcontrollers")
                )
                .then(ScalePaths::builtin),
            })
        })
        .collect()
});

type GvrKey = (String, String, String);

/// The kinds one virtual cluster serves: built-ins plus its CRDs.
#[derive(Debug, Clone)]
pub struct Registry {
    by_gvr: HashMap<GvrKey, Arc<ResourceType>>,
    /// CRD name → the resource types it defines (one per served version).
    crds: HashMap<String, Vec<Arc<ResourceType>>>,
}

impl Default for Registry {
    fn default() -> Self {
        let mut by_gvr = HashMap::new();
        for rt in BUILTIN_TYPES.iter() {
            by_gvr.insert(
                (rt.group.clone(), rt.version.clone(), rt.plural.clone()),
                rt.clone(),
            );
        }
        Self {
            by_gvr,
            crds: HashMap::new(),
        }
    }
}

/// Why a CRD could not be registered.
#[derive(Debug, thiserror::Error)]
pub enum CrdError {
    #[error("spec.{0}: Required value")]
    Missing(&'static str),
    #[error("metadata.name: Invalid value: {0:?}: must be spec.names.plural+\".\"+spec.group")]
    BadName(String),
}

impl Registry {
    pub fn lookup(&self, group: &str, version: &str, plural: &str) -> Option<Arc<ResourceType>> {
        self.by_gvr
            .get(&(group.to_string(), version.to_string(), plural.to_string()))
            .cloned()
    }

    /// The preferred type for a stored group/resource (used for owner lookups and cleanup).
    pub fn by_group_resource(&self, gr: &GroupResource) -> Option<Arc<ResourceType>> {
        self.by_gvr
            .values()
            .filter(|rt| rt.group == gr.group && rt.plural == gr.resource)
            .min_by(|a, b| a.version.cmp(&b.version))
            .cloned()
    }

    /// Parse a CRD object into the resource types it serves (does not register them).
    pub fn crd_types(crd: &Value) -> Result<Vec<Arc<ResourceType>>, CrdError> {
        let spec = crd.get("spec").ok_or(CrdError::Missing("spec"))?;
        let group = spec
            .get("group")
            .and_then(Value::as_str)
            .ok_or(CrdError::Missing("group"))?;
        let names = spec.get("names").ok_or(CrdError::Missing("names"))?;
        let plural = names
            .get("plural")
            .and_then(Value::as_str)
            .ok_or(CrdError::Missing("names.plural"))?;
        let kind = names
            .get("kind")
            .and_then(Value::as_str)
            .ok_or(CrdError::Missing("names.kind"))?;
        let name = crd
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or("");
        if name != format!("{plural}.{group}") {
            return Err(CrdError::BadName(name.to_string()));
        }
        let singular = names
            .get("singular")
            .and_then(Value::as_str)
            .map(str::to_string)
            .unwrap_or_else(|| kind.to_lowercase());
        let short_names: Vec<String> = names
            .get("shortNames")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        let namespaced = spec.get("scope").and_then(Value::as_str) != Some("Cluster");
        let versions = spec
            .get("versions")
            .and_then(Value::as_array)
            .ok_or(CrdError::Missing("versions"))?;
        let mut out = Vec::new();
        for v in versions {
            if v.get("served").and_then(Value::as_bool) == Some(false) {
                continue;
            }
            let Some(version) = v.get("name").and_then(Value::as_str) else {
                return Err(CrdError::Missing("versions[].name"));
            };
            out.push(Arc::new(ResourceType {
                group: group.into(),
                api_version: api_version(group, version),
                version: version.into(),
                plural: plural.into(),
                singular: singular.clone(),
                kind: kind.into(),
                namespaced,
                short_names: short_names.clone(),
                has_status: v.pointer("/subresources/status").is_some(),
                tracks_generation: true,
                custom: true,
                simulated: Simulated::None,
                scale: v
                    .pointer("/subresources/scale")
                    .and_then(ScalePaths::from_crd),
            }));
        }
        Ok(out)
    }

    /// Register (or re-register) the kinds a CRD defines.
    pub fn register_crd(&mut self, crd_name: &str, types: Vec<Arc<ResourceType>>) {
        self.unregister_crd(crd_name);
        for rt in &types {
            self.by_gvr.insert(
                (rt.group.clone(), rt.version.clone(), rt.plural.clone()),
                rt.clone(),
            );
        }
        self.crds.insert(crd_name.to_string(), types);
    }

    /// Remove a CRD's kinds; returns the storage key its objects lived under.
    pub fn unregister_crd(&mut self, crd_name: &str) -> Option<GroupResource> {
        let types = self.crds.remove(crd_name)?;
        let gr = types.first().map(|t| t.group_resource());
        for rt in types {
            self.by_gvr
                .remove(&(rt.group.clone(), rt.version.clone(), rt.plural.clone()));
        }
        gr
    }

    /// group → versions → types, sorted, for discovery.
    fn grouped(&self) -> BTreeMap<String, BTreeMap<String, Vec<Arc<ResourceType>>>> {
        let mut out: BTreeMap<String, BTreeMap<String, Vec<Arc<ResourceType>>>> = BTreeMap::new();
        for rt in self.by_gvr.values() {
            out.entry(rt.group.clone())
                .or_default()
                .entry(rt.version.clone())
                .or_default()
                .push(rt.clone());
        }
        for versions in out.values_mut() {
            for types in versions.values_mut() {
                types.sort_by(|a, b| a.plural.cmp(&b.plural));
            }
        }
        out
    }

    /// Every served group-version with its types, in (group, version) order.
    pub fn group_versions(&self) -> Vec<(String, String, Vec<Arc<ResourceType>>)> {
        self.grouped()
            .into_iter()
            .flat_map(|(g, versions)| {
                versions
                    .into_iter()
                    .map(move |(v, types)| (g.clone(), v, types))
            })
            .collect()
    }

    /// `/apis`: every non-core group.
    pub fn api_group_list(&self) -> Value {
        let groups: Vec<Value> = self
            .grouped()
            .into_iter()
            .filter(|(g, _)| !g.is_empty())
            .map(|(g, versions)| group_doc(&g, versions.keys()))
            .collect();
        json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
    }

    /// Aggregated discovery (`apidiscovery.k8s.io/v2` `APIGroupDiscoveryList`): the core group
    /// for `/api` (`core`), every other group for `/apis`; versions in preference order.
    pub fn aggregated(&self, core: bool) -> Value {
        let items: Vec<Value> = self
            .grouped()
            .into_iter()
            .filter(|(g, _)| g.is_empty() == core)
            .map(|(g, versions)| {
                let mut vs: Vec<(String, Vec<Arc<ResourceType>>)> = versions.into_iter().collect();
                vs.sort_by_key(|(v, _)| std::cmp::Reverse(version_priority(v)));
                let versions: Vec<Value> = vs
                    .into_iter()
                    .map(|(v, types)| {
                        let resources: Vec<Value> =
                            types.iter().map(|t| t.aggregated_entry()).collect();
                        json!({"version": v, "resources": resources, "freshness": "Current"})
                    })
                    .collect();
                json!({"metadata": {"name": g}, "versions": versions})
            })
            .collect();
        json!({"kind": "APIGroupDiscoveryList", "apiVersion": "apidiscovery.k8s.io/v2",
               "metadata": {}, "items": items})
    }

    /// `/apis/{group}`.
    pub fn api_group(&self, group: &str) -> Option<Value> {
        let grouped = self.grouped();
        let versions = grouped.get(group)?;
        let mut doc = group_doc(group, versions.keys());
        doc["kind"] = json!("APIGroup");
        doc["apiVersion"] = json!("v1");
        Some(doc)
    }

    /// `/api/v1` or `/apis/{group}/{version}`.
    pub fn resource_list(&self, group: &str, version: &str) -> Option<Value> {
        let grouped = self.grouped();
        let types = grouped.get(group)?.get(version)?;
        let gv = if group.is_empty() {
            version.to_string()
        } else {
            format!("{group}/{version}")
        };
        let resources: Vec<Value> = types.iter().flat_map(|t| t.discovery_entries()).collect();
        Some(json!({
            "kind": "APIResourceList",
            "apiVersion": "v1",
            "groupVersion": gv,
            "resources": resources,
        }))
    }
}

fn api_version(group: &str, version: &str) -> String {
    if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    }
}

fn group_doc<'a>(group: &str, versions: impl Iterator<Item = &'a String>) -> Value {
    let mut vs: Vec<&String> = versions.collect();
    // Kubernetes orders versions by preference: GA before beta before alpha, newest first.
    vs.sort_by_key(|v| std::cmp::Reverse(version_priority(v)));
    let entries: Vec<Value> = vs
        .iter()
        .map(|v| json!({"groupVersion": format!("{group}/{v}"), "version": v}))
        .collect();
    let preferred = entries.first().cloned().unwrap_or(Value::Null);
    json!({"name": group, "versions": entries, "preferredVersion": preferred})
}

fn version_priority(v: &str) -> (u8, u32, u32) {
    let rest = v.strip_prefix('v').unwrap_or(v);
    let (major, tail) = rest
        .find(|c: char| !c.is_ascii_digit())
        .map_or((rest, ""), |i| rest.split_at(i));
    let major: u32 = major.parse().unwrap_or(0);
    let (stability, minor) = if let Some(m) = tail.strip_prefix("beta") {
        (1, m.parse().unwrap_or(0))
    } else if let Some(m) = tail.strip_prefix("alpha") {
        (0, m.parse().unwrap_or(0))
    } else {
        (2, 0)
    };
    (stability, major, minor)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mk_crd(name: &str, group: &str, plural: &str) -> Value {
        json!({"metadata": {"name": name}, "spec": {"group": group, "scope": "Namespaced",
            "names": {"plural": plural, "kind": "Widget"},
            "versions": [{"name": "v1", "served": true, "storage": true, "subresources": {"status": {}}},
                         {"name": "v1beta1", "served": true, "storage": false}]}})
    }

    #[test]
    fn builtins_have_real_scope() {
        let r = Registry::default();
        assert!(
            !r.lookup("", "v1", "namespaces")
                .expect("namespaces")
                .namespaced
        );
        assert!(
            r.lookup("apps", "v1", "deployments")
                .expect("deploy")
                .namespaced
        );
        assert!(
            !r.lookup("rbac.authorization.k8s.io", "v1", "clusterroles")
                .expect("cr")
                .namespaced
        );
        assert!(r.lookup("apps", "v1", "widgets").is_none());
    }

    #[test]
    fn crd_registration_serves_each_version_and_shows_in_discovery() {
        let mut r = Registry::default();
        let types = Registry::crd_types(&mk_crd("widgets.example.com", "example.com", "widgets"))
            .expect("valid crd");
        assert_eq!(types.len(), 2);
        r.register_crd("widgets.example.com", types);
        assert!(
            r.lookup("example.com", "v1", "widgets")
                .expect("v1")
                .has_status
        );
        let group = r.api_group("example.com").expect("group");
        assert_eq!(group["preferredVersion"]["version"], "v1");
        assert!(
            r.api_group_list()["groups"]
                .as_array()
                .expect("arr")
                .iter()
                .any(|g| g["name"] == "example.com")
        );
        r.unregister_crd("widgets.example.com");
        assert!(r.lookup("example.com", "v1", "widgets").is_none());
    }

    #[test]
    fn crd_name_must_match_plural_and_group() {
        assert!(matches!(
            Registry::crd_types(&mk_crd("wrong.example.com", "example.com", "widgets")),
            Err(CrdError::BadName(_))
        ));
    }

    #[test]
    fn version_preference_orders_ga_then_beta_then_alpha() {
        let mut v = ["v1alpha1", "v2", "v1beta2", "v1"];
        v.sort_by_key(|v| std::cmp::Reverse(version_priority(v)));
        assert_eq!(v, ["v2", "v1", "v1beta2", "v1alpha1"]);
    }
}
