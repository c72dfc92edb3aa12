//! The `argoproj.io/v1alpha1` ApplicationSet spec and status with Argo CD's field names, plus
//! `unsupported`, which names every present field Flotilla does not honour (yet).
//!
//! Unknown fields are never dropped: every struct keeps them in `extra` so that a round trip
//! preserves them and `unsupported` can report them. The Application `template` (and each
//! generator's override `template`) stays JSON: the template engine works on JSON.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

fn is_false(b: &bool) -> bool {
    !*b
}

fn is_null(v: &Value) -> bool {
    v.is_null()
}

/// An ApplicationSet object (`apiVersion`, `kind`, `metadata` kept as JSON).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ApplicationSet {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub metadata: Map<String, Value>,
    #[serde(default)]
    pub spec: ApplicationSetSpec,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<ApplicationSetStatus>,
}

/// `spec` of an ApplicationSet.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ApplicationSetSpec {
    #[serde(default, skip_serializing_if = "is_false")]
    pub go_template: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub go_template_options: Vec<String>,
    #[serde(default)]
    pub generators: Vec<ApplicationSetGenerator>,
    /// `metadata` + `spec` of the Applications to generate, as JSON.
    #[serde(default, skip_serializing_if = "is_null")]
    pub template: Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template_patch: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sync_policy: Option<ApplicationSetSyncPolicy>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strategy: Option<ApplicationSetStrategy>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preserved_fields: Option<ApplicationPreservedFields>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ignore_application_differences: Vec<ApplicationSetResourceIgnoreDifferences>,
    #[serde(default, skip_serializing_if = "is_false")]
    pub apply_nested_selectors: bool,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `spec.syncPolicy`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ApplicationSetSyncPolicy {
    #[serde(default, skip_serializing_if = "is_false")]
    pub preserve_resources_on_deletion: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub applications_sync: Option<ApplicationsSyncPolicy>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `spec.syncPolicy.applicationsSync`; absent means `sync`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ApplicationsSyncPolicy {
    #[serde(rename = "create-only")]
    CreateOnly,
    #[serde(rename = "create-update")]
    CreateUpdate,
    #[serde(rename = "create-delete")]
    CreateDelete,
    #[serde(rename = "sync")]
    Sync,
}

impl ApplicationsSyncPolicy {
    /// Whether existing Applications may be updated (Argo CD's `AllowUpdate`).
    pub fn allow_update(self) -> bool {
        matches!(self, Self::CreateUpdate | Self::Sync)
    }

    /// Whether Applications no longer generated may be deleted (Argo CD's `AllowDelete`).
    pub fn allow_delete(self) -> bool {
        matches!(self, Self::CreateDelete | Self::Sync)
    }
}

/// `spec.strategy` (Progressive Syncs).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ApplicationSetStrategy {
    /// `RollingSync` (or empty / `AllAtOnce`).
    #[serde(default, rename = "type", skip_serializing_if = "String::is_empty")]
    pub type_: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rolling_sync: Option<ApplicationSetRolloutStrategy>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// The value of `spec.strategy.type` that enables rolling syncs.
pub const STRATEGY_ROLLING_SYNC: &str = "RollingSync";

/// `spec.strategy.rollingSync`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ApplicationSetRolloutStrategy {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub steps: Vec<ApplicationSetRolloutStep>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// One step of `spec.strategy.rollingSync.steps`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ApplicationSetRolloutStep {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub match_expressions: Vec<ApplicationMatchExpression>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_update: Option<IntOrString>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// Kubernetes `intstr.IntOrString`: `maxUpdate: 2` or `maxUpdate: "25%"`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum IntOrString {
    Int(i64),
    String(String),
}

/// A `matchExpressions` entry of a rolling-sync step (over Application labels).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ApplicationMatchExpression {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub key: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub operator: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<String>,
}

/// `spec.preservedFields`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ApplicationPreservedFields {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub annotations: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub labels: Vec<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// An entry of `spec.ignoreApplicationDifferences`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ApplicationSetResourceIgnoreDifferences {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    #[serde(
        default,
        rename = "jsonPointers",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub json_pointers: Vec<String>,
    #[serde(
        default,
        rename = "jqPathExpressions",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub jq_path_expressions: Vec<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// One generator. Argo CD has three Go types for the three nesting levels (top-level,
/// nested, terminal); here one recursive type, the depth limit is enforced when generating.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ApplicationSetGenerator {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub list: Option<ListGenerator>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clusters: Option<ClusterGenerator>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub git: Option<GitGenerator>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scm_provider: Option<ScmProviderGenerator>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_decision_resource: Option<DuckTypeGenerator>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pull_request: Option<PullRequestGenerator>,
    /// Not supported yet: kept as JSON.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plugin: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub matrix: Option<Box<MatrixGenerator>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub merge: Option<Box<MergeGenerator>>,
    /// Post-filter over the generated parameters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<LabelSelector>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// Generator kinds Flotilla does not implement in this slice.
pub const UNSUPPORTED_GENERATORS: [&str; 1] = ["plugin"];

impl ApplicationSetGenerator {
    /// The Argo CD names of the generator kinds set on this entry (normally exactly one).
    pub fn kinds(&self) -> Vec<&'static str> {
        let mut out = Vec::new();
        if self.list.is_some() {
            out.push("list");
        }
        if self.clusters.is_some() {
            out.push("clusters");
        }
        if self.git.is_some() {
            out.push("git");
        }
        if self.scm_provider.is_some() {
            out.push("scmProvider");
        }
        if self.cluster_decision_resource.is_some() {
            out.push("clusterDecisionResource");
        }
        if self.pull_request.is_some() {
            out.push("pullRequest");
        }
        if self.matrix.is_some() {
            out.push("matrix");
        }
        if self.merge.is_some() {
            out.push("merge");
        }
        if self.plugin.is_some() {
            out.push("plugin");
        }
        out
    }
}

/// `list` generator.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListGenerator {
    #[serde(default)]
    pub elements: Vec<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub elements_yaml: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<Value>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `clusters` generator.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterGenerator {
    /// Over the labels of the Argo CD cluster Secrets.
    #[serde(default, skip_serializing_if = "LabelSelector::is_empty")]
    pub selector: LabelSelector,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<Value>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub values: BTreeMap<String, String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `clusterDecisionResource` generator (Argo CD's duck type generator): the clusters named in
/// the `status` list of resources whose group/version/resource a ConfigMap names.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DuckTypeGenerator {
    /// A ConfigMap of the control-plane namespace with `apiVersion`, `kind` (the resource's
    /// plural, as Argo CD reads it), `matchKey` and optionally `statusListKey` (`clusters`).
    #[serde(default)]
    pub config_map_ref: String,
    /// One resource by name, or several by `labelSelector` (exactly one of the two).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    #[serde(default, skip_serializing_if = "LabelSelector::is_empty")]
    pub label_selector: LabelSelector,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requeue_after_seconds: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<Value>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub values: BTreeMap<String, String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `git` generator (directories or files).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GitGenerator {
    #[serde(default, rename = "repoURL")]
    pub repo_url: String,
    #[serde(default)]
    pub revision: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub directories: Vec<GitDirectoryGeneratorItem>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<GitFileGeneratorItem>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requeue_after_seconds: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<Value>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub path_param_prefix: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub values: BTreeMap<String, String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// An entry of `git.directories`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GitDirectoryGeneratorItem {
    #[serde(default)]
    pub path: String,
    #[serde(default, skip_serializing_if = "is_false")]
    pub exclude: bool,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// An entry of `git.files`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GitFileGeneratorItem {
    #[serde(default)]
    pub path: String,
    #[serde(default, skip_serializing_if = "is_false")]
    pub exclude: bool,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// A reference to a key of a Secret in the ApplicationSet's namespace (`tokenRef`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SecretRef {
    #[serde(default)]
    pub secret_name: String,
    #[serde(default)]
    pub key: String,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `scmProvider` generator. Only the `github` and `gitlab` providers are supported; the others
/// (`gitea`, `bitbucket`, `bitbucketServer`, `azureDevOps`, `awsCodeCommit`) stay in `extra`
/// and are refused by name.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ScmProviderGenerator {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub github: Option<ScmProviderGeneratorGithub>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gitlab: Option<ScmProviderGeneratorGitlab>,
    /// `ssh` (the default, also when empty) or `https`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub clone_protocol: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub filters: Vec<ScmProviderGeneratorFilter>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requeue_after_seconds: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<Value>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub values: BTreeMap<String, String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `scmProvider.github` (`appSecretName`, GitHub App auth, is refused: it lands in `extra`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ScmProviderGeneratorGithub {
    #[serde(default)]
    pub organization: String,
    /// GitHub Enterprise API base URL (default `https://api.github.com`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub api: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_ref: Option<SecretRef>,
    #[serde(default, skip_serializing_if = "is_false")]
    pub all_branches: bool,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `scmProvider.gitlab` (`insecure` and `caRef` are refused: they land in `extra`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ScmProviderGeneratorGitlab {
    #[serde(default)]
    pub group: String,
    /// Self-hosted GitLab base URL (default `https://gitlab.com`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub api: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_ref: Option<SecretRef>,
    #[serde(default, skip_serializing_if = "is_false")]
    pub include_subgroups: bool,
    #[serde(default, skip_serializing_if = "is_false")]
    pub all_branches: bool,
    /// Absent means `true` (Argo CD's `WillIncludeSharedProjects`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub include_shared_projects: Option<bool>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub topic: String,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// An entry of `scmProvider.filters`: all its conditions must hold; a repository is kept when
/// any filter matches.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ScmProviderGeneratorFilter {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repository_match: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paths_exist: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paths_do_not_exist: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label_match: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub branch_match: Option<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `pullRequest` generator. Only `github` and `gitlab` are supported; the other providers
/// (`gitea`, `bitbucket`, `bitbucketServer`, `azuredevops`) stay in `extra` and are refused.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PullRequestGenerator {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub github: Option<PullRequestGeneratorGithub>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gitlab: Option<PullRequestGeneratorGitlab>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub filters: Vec<PullRequestGeneratorFilter>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requeue_after_seconds: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<Value>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub values: BTreeMap<String, String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `pullRequest.github` (`appSecretName` is refused: it lands in `extra`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PullRequestGeneratorGithub {
    #[serde(default)]
    pub owner: String,
    #[serde(default)]
    pub repo: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub api: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_ref: Option<SecretRef>,
    /// Only pull requests carrying all these labels.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub labels: Vec<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `pullRequest.gitlab` (`insecure` and `caRef` are refused: they land in `extra`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PullRequestGeneratorGitlab {
    /// The project ID or its path (`group/project`).
    #[serde(default)]
    pub project: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub api: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_ref: Option<SecretRef>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub labels: Vec<String>,
    /// GitLab's `state` (`opened`, `closed`, `merged`, `locked`; empty: all).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub pull_request_state: String,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// An entry of `pullRequest.filters` (a pull request is kept when any filter matches).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PullRequestGeneratorFilter {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub branch_match: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_branch_match: Option<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `matrix` generator: the cartesian product of two child generators.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MatrixGenerator {
    #[serde(default)]
    pub generators: Vec<ApplicationSetGenerator>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<Value>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `merge` generator: the base generator's sets, overridden by later generators' sets that
/// share the values of `mergeKeys`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MergeGenerator {
    #[serde(default)]
    pub generators: Vec<ApplicationSetGenerator>,
    #[serde(default)]
    pub merge_keys: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<Value>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// Kubernetes `metav1.LabelSelector`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LabelSelector {
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub match_labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub match_expressions: Vec<LabelSelectorRequirement>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl LabelSelector {
    /// No `matchLabels` and no `matchExpressions`.
    pub fn is_empty(&self) -> bool {
        self.match_labels.is_empty() && self.match_expressions.is_empty() && self.extra.is_empty()
    }
}

/// Kubernetes `metav1.LabelSelectorRequirement`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LabelSelectorRequirement {
    #[serde(default)]
    pub key: String,
    #[serde(default)]
    pub operator: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<String>,
}

/// `status` of an ApplicationSet.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ApplicationSetStatus {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<ApplicationSetCondition>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub application_status: Vec<ApplicationSetApplicationStatus>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resources: Vec<ResourceStatus>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// Argo CD's ApplicationSet condition types.
pub const CONDITION_ERROR_OCCURRED: &str = "ErrorOccurred";
pub const CONDITION_PARAMETERS_GENERATED: &str = "ParametersGenerated";
pub const CONDITION_RESOURCES_UP_TO_DATE: &str = "ResourcesUpToDate";
/// Argo CD names the rolling-sync condition `RolloutProgressing` (the strategy type is
/// `RollingSync`).
pub const CONDITION_ROLLOUT_PROGRESSING: &str = "RolloutProgressing";

/// Argo CD's condition reasons.
pub const REASON_ERROR_OCCURRED: &str = "ErrorOccurred";
pub const REASON_APPLICATION_SET_UP_TO_DATE: &str = "ApplicationSetUpToDate";
pub const REASON_PARAMETERS_GENERATED: &str = "ParametersGenerated";
pub const REASON_APPLICATION_GENERATED: &str = "ApplicationGeneratedSuccessfully";
pub const REASON_UPDATE_APPLICATION_ERROR: &str = "UpdateApplicationError";
pub const REASON_APPLICATION_PARAMS_GENERATION_ERROR: &str = "ApplicationGenerationFromParamsError";
pub const REASON_RENDER_TEMPLATE_PARAMS_ERROR: &str = "RenderTemplateParamsError";
pub const REASON_CREATE_APPLICATION_ERROR: &str = "CreateApplicationError";
pub const REASON_DELETE_APPLICATION_ERROR: &str = "DeleteApplicationError";
pub const REASON_REFRESH_APPLICATION_ERROR: &str = "RefreshApplicationError";
pub const REASON_APPLICATION_VALIDATION_ERROR: &str = "ApplicationValidationError";
pub const REASON_APPLICATION_SET_MODIFIED: &str = "ApplicationSetModified";
pub const REASON_APPLICATION_SET_ROLLOUT_COMPLETE: &str = "ApplicationSetRolloutComplete";
pub const REASON_SYNC_APPLICATION_ERROR: &str = "SyncApplicationError";

/// An entry of `status.conditions`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ApplicationSetCondition {
    /// One of the `CONDITION_*` constants.
    #[serde(rename = "type")]
    pub type_: String,
    #[serde(default)]
    pub message: String,
    /// RFC 3339.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_transition_time: Option<String>,
    /// `True`, `False` or `Unknown`.
    #[serde(default)]
    pub status: String,
    #[serde(default)]
    pub reason: String,
}

/// An entry of `status.applicationStatus` (rolling sync progress per Application).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ApplicationSetApplicationStatus {
    pub application: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_transition_time: Option<String>,
    #[serde(default)]
    pub message: String,
    /// `Waiting`, `Pending`, `Progressing` or `Healthy`.
    #[serde(default)]
    pub status: String,
    #[serde(default)]
    pub step: String,
    #[serde(default)]
    pub target_revisions: Vec<String>,
}

/// An entry of `status.resources` (the Applications the set manages), Argo CD's
/// `ResourceStatus`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResourceStatus {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub group: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub version: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub namespace: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<Value>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// Names (as JSON paths under `spec`) every field present in `spec` that Flotilla does not
/// honour: the `clusterDecisionResource` and `plugin` generators, the `scmProvider` and
/// `pullRequest` providers other than GitHub and GitLab (and their GitHub App, CA and
/// `insecure` options), and every field unknown to these types. Empty means everything is honoured.
/// The Application `template` is not inspected (the template engine owns it).
pub fn unsupported(spec: &ApplicationSetSpec) -> Vec<String> {
    let mut out = Vec::new();
    extra_fields(&mut out, "spec", &spec.extra);
    for (i, g) in spec.generators.iter().enumerate() {
        generator_unsupported(&mut out, &format!("spec.generators[{i}]"), g);
    }
    if let Some(p) = &spec.sync_policy {
        extra_fields(&mut out, "spec.syncPolicy", &p.extra);
    }
    if let Some(s) = &spec.strategy {
        extra_fields(&mut out, "spec.strategy", &s.extra);
        if let Some(r) = &s.rolling_sync {
            extra_fields(&mut out, "spec.strategy.rollingSync", &r.extra);
            for (i, step) in r.steps.iter().enumerate() {
                extra_fields(
                    &mut out,
                    &format!("spec.strategy.rollingSync.steps[{i}]"),
                    &step.extra,
                );
            }
        }
    }
    if let Some(p) = &spec.preserved_fields {
        extra_fields(&mut out, "spec.preservedFields", &p.extra);
    }
    for (i, d) in spec.ignore_application_differences.iter().enumerate() {
        extra_fields(
            &mut out,
            &format!("spec.ignoreApplicationDifferences[{i}]"),
            &d.extra,
        );
    }
    out
}

fn extra_fields(out: &mut Vec<String>, path: &str, extra: &Map<String, Value>) {
    for k in extra.keys() {
        out.push(format!("{path}.{k}"));
    }
}

fn selector_unsupported(out: &mut Vec<String>, path: &str, s: &LabelSelector) {
    extra_fields(out, path, &s.extra);
}

fn token_ref_unsupported(out: &mut Vec<String>, path: &str, r: &Option<SecretRef>) {
    if let Some(r) = r {
        extra_fields(out, path, &r.extra);
    }
}

fn generator_unsupported(out: &mut Vec<String>, path: &str, g: &ApplicationSetGenerator) {
    extra_fields(out, path, &g.extra);
    for kind in g.kinds() {
        if UNSUPPORTED_GENERATORS.contains(&kind) {
            out.push(format!("{path}.{kind}"));
        }
    }
    if let Some(s) = &g.selector {
        selector_unsupported(out, &format!("{path}.selector"), s);
    }
    if let Some(l) = &g.list {
        extra_fields(out, &format!("{path}.list"), &l.extra);
    }
    if let Some(c) = &g.clusters {
        extra_fields(out, &format!("{path}.clusters"), &c.extra);
        selector_unsupported(out, &format!("{path}.clusters.selector"), &c.selector);
    }
    if let Some(d) = &g.cluster_decision_resource {
        let p = format!("{path}.clusterDecisionResource");
        extra_fields(out, &p, &d.extra);
        selector_unsupported(out, &format!("{p}.labelSelector"), &d.label_selector);
    }
    if let Some(git) = &g.git {
        extra_fields(out, &format!("{path}.git"), &git.extra);
        for (i, d) in git.directories.iter().enumerate() {
            extra_fields(out, &format!("{path}.git.directories[{i}]"), &d.extra);
        }
        for (i, f) in git.files.iter().enumerate() {
            extra_fields(out, &format!("{path}.git.files[{i}]"), &f.extra);
        }
    }
    if let Some(s) = &g.scm_provider {
        let p = format!("{path}.scmProvider");
        extra_fields(out, &p, &s.extra);
        if let Some(gh) = &s.github {
            extra_fields(out, &format!("{p}.github"), &gh.extra);
            token_ref_unsupported(out, &format!("{p}.github.tokenRef"), &gh.token_ref);
        }
        if let Some(gl) = &s.gitlab {
            extra_fields(out, &format!("{p}.gitlab"), &gl.extra);
            token_ref_unsupported(out, &format!("{p}.gitlab.tokenRef"), &gl.token_ref);
        }
        for (i, f) in s.filters.iter().enumerate() {
            extra_fields(out, &format!("{p}.filters[{i}]"), &f.extra);
        }
    }
    if let Some(pr) = &g.pull_request {
        let p = format!("{path}.pullRequest");
        extra_fields(out, &p, &pr.extra);
        if let Some(gh) = &pr.github {
            extra_fields(out, &format!("{p}.github"), &gh.extra);
            token_ref_unsupported(out, &format!("{p}.github.tokenRef"), &gh.token_ref);
        }
        if let Some(gl) = &pr.gitlab {
            extra_fields(out, &format!("{p}.gitlab"), &gl.extra);
            token_ref_unsupported(out, &format!("{p}.gitlab.tokenRef"), &gl.token_ref);
        }
        for (i, f) in pr.filters.iter().enumerate() {
            extra_fields(out, &format!("{p}.filters[{i}]"), &f.extra);
        }
    }
    if let Some(m) = &g.matrix {
        extra_fields(out, &format!("{path}.matrix"), &m.extra);
        for (i, c) in m.generators.iter().enumerate() {
            generator_unsupported(out, &format!("{path}.matrix.generators[{i}]"), c);
        }
    }
    if let Some(m) = &g.merge {
        extra_fields(out, &format!("{path}.merge"), &m.extra);
        for (i, c) in m.generators.iter().enumerate() {
            generator_unsupported(out, &format!("{path}.merge.generators[{i}]"), c);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn round_trip_keeps_unknown_fields_and_reports_them() -> Result<(), serde_json::Error> {
        let v = json!({
            "apiVersion": "argoproj.io/v1alpha1",
            "kind": "ApplicationSet",
            "metadata": {"name": "guestbook"},
            "spec": {
                "goTemplate": true,
                "goTemplateOptions": ["missingkey=error"],
                "generators": [
                    {"list": {"elements": [{"cluster": "a"}], "flatList": true}},
                    {"scmProvider": {"github": {"organization": "o", "appSecretName": "app"},
                                     "gitea": {"owner": "o"}}},
                    {"matrix": {"generators": [
                        {"git": {"repoURL": "u", "revision": "HEAD",
                                 "directories": [{"path": "a/*"}, {"path": "a/x", "exclude": true}]}},
                        {"clusters": {"selector": {"matchLabels": {"env": "prod"}}, "flatList": true}}
                    ]}},
                    {"pullRequest": {"bitbucketServer": {"project": "p"},
                                     "filters": [{"titleMatch": "x"}]},
                     "selector": {"matchLabels": {"a": "b"}}},
                    {"plugin": {"configMapRef": {"name": "p"}}}
                ],
                "template": {"metadata": {"name": "{{.cluster}}"}, "spec": {"project": "default"}},
                "templatePatch": "spec: {}",
                "syncPolicy": {"preserveResourcesOnDeletion": true, "applicationsSync": "create-update"},
                "strategy": {"type": "RollingSync", "rollingSync": {"steps": [
                    {"matchExpressions": [{"key": "env", "operator": "In", "values": ["dev"]}], "maxUpdate": "25%"},
                    {"maxUpdate": 2}
                ]}, "deletionOrder": "Reverse"},
                "preservedFields": {"annotations": ["a"], "labels": ["b"]},
                "ignoreApplicationDifferences": [{"jsonPointers": ["/spec/source/targetRevision"]}],
                "applyNestedSelectors": true,
                "futureField": 1
            },
            "status": {
                "conditions": [{"type": "ErrorOccurred", "status": "False", "message": "", "reason": "ApplicationSetUpToDate"}],
                "applicationStatus": [{"application": "a", "message": "m", "status": "Healthy", "step": "1", "targetRevisions": ["abc"]}],
                "resources": [{"group": "argoproj.io", "version": "v1alpha1", "kind": "Application", "name": "a", "status": "Synced", "health": {"status": "Healthy"}}]
            }
        });
        let set: ApplicationSet = serde_json::from_value(v.clone())?;
        assert_eq!(serde_json::to_value(&set)?, v);
        let spec = &set.spec;
        assert!(spec.go_template);
        assert_eq!(
            spec.sync_policy.as_ref().and_then(|p| p.applications_sync),
            Some(ApplicationsSyncPolicy::CreateUpdate)
        );
        let steps = spec
            .strategy
            .as_ref()
            .and_then(|s| s.rolling_sync.as_ref())
            .map(|r| r.steps.clone());
        let steps = steps.unwrap_or_default();
        assert_eq!(steps[0].max_update, Some(IntOrString::String("25%".into())));
        assert_eq!(steps[1].max_update, Some(IntOrString::Int(2)));
        assert_eq!(
            unsupported(spec),
            vec![
                "spec.futureField",
                "spec.generators[0].list.flatList",
                "spec.generators[1].scmProvider.gitea",
                "spec.generators[1].scmProvider.github.appSecretName",
                "spec.generators[2].matrix.generators[1].clusters.flatList",
                "spec.generators[3].pullRequest.bitbucketServer",
                "spec.generators[3].pullRequest.filters[0].titleMatch",
                "spec.generators[4].plugin",
                "spec.strategy.deletionOrder",
            ]
        );
        Ok(())
    }

    #[test]
    fn sync_policy_permissions() {
        assert!(
            ApplicationsSyncPolicy::Sync.allow_update()
                && ApplicationsSyncPolicy::Sync.allow_delete()
        );
        assert!(!ApplicationsSyncPolicy::CreateOnly.allow_update());
        assert!(!ApplicationsSyncPolicy::CreateOnly.allow_delete());
        assert!(ApplicationsSyncPolicy::CreateDelete.allow_delete());
        assert!(!ApplicationsSyncPolicy::CreateUpdate.allow_delete());
    }
}
