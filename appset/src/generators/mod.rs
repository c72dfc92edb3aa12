//! Generators: parameter sets from an ApplicationSet's spec and its inputs, as Argo CD's
//! ApplicationSet controller computes them (both fasttemplate and goTemplate shapes).
//!
//! The controller implements [`Inputs`] (cluster Secrets, Git directories and files) and calls
//! [`generate`]; an `Err` means "do not touch existing Applications" (Argo CD deletes nothing
//! when a generator fails). Output is bounded by [`MAX_PARAM_SETS`]; Git files by
//! [`MAX_GIT_FILE_BYTES`].

mod cluster;
mod duck;
mod git;
pub mod glob;
mod list;
mod matrix;
mod merge;
mod scm;
pub mod selector;
mod value;

use std::collections::BTreeMap;

use serde_json::{Map, Value};
use thiserror::Error;

use crate::types::{ApplicationSetGenerator, ApplicationSetSpec, UNSUPPORTED_GENERATORS};

pub use scm::{
    DEFAULT_SCM_REQUEUE_AFTER_SECONDS, PullRequest, PullRequestApi, ScmApi, ScmRepository, slug,
};
pub use value::{flatten_params, go_fmt_value, sanitize_name};

/// One parameter set: what one Application is rendered from.
pub type Params = Map<String, Value>;

/// At most this many parameter sets per generator and per ApplicationSet.
pub const MAX_PARAM_SETS: usize = 10_000;
/// A Git file read by the `git` files generator may not be larger than this.
pub const MAX_GIT_FILE_BYTES: usize = 1 << 20;
/// Argo CD's default requeue interval for the `git` generator (3 minutes).
pub const DEFAULT_GIT_REQUEUE_AFTER_SECONDS: u64 = 180;

/// A cluster as Argo CD's cluster generator sees it: an Argo CD cluster Secret
/// (`argocd.argoproj.io/secret-type: cluster`), or the implicit in-cluster destination.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClusterInfo {
    /// The Secret's `data.name` (or `in-cluster`).
    pub name: String,
    /// The Secret's `data.server` (or `https://kubernetes.default.svc`).
    pub server: String,
    /// All labels of the Secret, including `argocd.argoproj.io/secret-type`.
    pub labels: BTreeMap<String, String>,
    /// All annotations of the Secret.
    pub annotations: BTreeMap<String, String>,
    /// True for the implicit in-cluster destination that has no Secret: it has no labels,
    /// is left out whenever the cluster generator has a selector, and gets no `metadata`.
    pub implicit: bool,
}

/// Why an input could not be read. The controller maps its own failures onto these.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum InputError {
    #[error("repository {repo} not found or not accessible: {message}")]
    Repository { repo: String, message: String },
    #[error("revision {revision} of {repo} cannot be resolved: {message}")]
    Revision {
        repo: String,
        revision: String,
        message: String,
    },
    #[error("invalid glob {glob:?}: {message}")]
    Glob { glob: String, message: String },
    #[error("input unavailable: {0}")]
    Unavailable(String),
}

/// What generators read from the world; the controller implements it.
pub trait Inputs {
    /// Every cluster Argo CD knows: one per cluster Secret, plus the implicit in-cluster one
    /// (`implicit: true`) when it is enabled and has no Secret of its own. Order is kept.
    fn clusters(&self) -> Vec<ClusterInfo>;

    /// Every directory of `repo` at `revision` (paths relative to the root, no leading or
    /// trailing `/`, like Argo CD's repo-server `GetDirectories`). The generator filters them
    /// with Go's `path.Match` (see [`glob::path_match`]).
    fn git_directories(&self, repo: &str, revision: &str) -> Result<Vec<String>, InputError>;

    /// The files of `repo` at `revision` whose path matches `glob`, with their content.
    /// Argo CD's default semantics are `git ls-files -- <glob>` (a `*` also matches `/`); with
    /// its "new git file globbing" they are doublestar's. [`glob::file_glob_matches`] does both.
    fn git_files(
        &self,
        repo: &str,
        revision: &str,
        glob: &str,
    ) -> Result<Vec<(String, Vec<u8>)>, InputError>;

    /// The repositories of an `scmProvider`'s organization or group, each on its default
    /// branch (no `sha` yet), `url` by `clone_protocol` (`""`/`ssh` or `https`), as Argo CD's
    /// provider `ListRepos`.
    fn scm_repositories(
        &self,
        api: ScmApi<'_>,
        clone_protocol: &str,
    ) -> Result<Vec<ScmRepository>, InputError> {
        let _ = (api, clone_protocol);
        Err(InputError::Unavailable(
            "SCM provider APIs are not available".into(),
        ))
    }

    /// One entry per branch of `repo` (only its default branch unless `allBranches`), with
    /// `branch` and `sha` set; an empty repository has none (Argo CD's `GetBranches`).
    fn scm_branches(
        &self,
        api: ScmApi<'_>,
        repo: &ScmRepository,
    ) -> Result<Vec<ScmRepository>, InputError> {
        let _ = (api, repo);
        Err(InputError::Unavailable(
            "SCM provider APIs are not available".into(),
        ))
    }

    /// Whether `path` (no trailing `/`) exists on `repo`'s `branch` (Argo CD's `RepoHasPath`).
    fn scm_repo_has_path(
        &self,
        api: ScmApi<'_>,
        repo: &ScmRepository,
        path: &str,
    ) -> Result<bool, InputError> {
        let _ = (api, repo, path);
        Err(InputError::Unavailable(
            "SCM provider APIs are not available".into(),
        ))
    }

    /// The pull (merge) requests of a `pullRequest` generator's repository, after the
    /// provider's own `labels` / state selection.
    fn pull_requests(&self, api: PullRequestApi<'_>) -> Result<Vec<PullRequest>, InputError> {
        let _ = api;
        Err(InputError::Unavailable(
            "pull request APIs are not available".into(),
        ))
    }

    /// The `data` of a ConfigMap of the control-plane namespace (a clusterDecisionResource
    /// generator's `configMapRef`).
    fn config_map(&self, name: &str) -> Result<BTreeMap<String, String>, InputError> {
        let _ = name;
        Err(InputError::Unavailable(
            "ConfigMaps are not available".into(),
        ))
    }

    /// The objects (whole, as JSON) of `resource` (a plural, e.g. `placementdecisions`) in
    /// `group`/`version` of the control-plane namespace.
    fn resources(
        &self,
        group: &str,
        version: &str,
        resource: &str,
    ) -> Result<Vec<Value>, InputError> {
        let _ = (group, version, resource);
        Err(InputError::Unavailable(
            "cluster decision resources are not available".into(),
        ))
    }
}

/// A generator failed; the controller must then change nothing.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum GeneratorError {
    #[error("{path}: generator names no generator kind")]
    Empty { path: String },
    #[error("{path}: generator names more than one kind ({kinds})")]
    MoreThanOneKind { path: String, kinds: String },
    #[error("{path}: the {kind} generator is not supported by Flotilla yet")]
    Unsupported { path: String, kind: String },
    #[error("{path}: {kind} generators may only be nested one level deep")]
    TooDeep { path: String, kind: String },
    #[error("{path}: {reason}")]
    Invalid { path: String, reason: String },
    #[error("{path}: {source}")]
    Input {
        path: String,
        #[source]
        source: InputError,
    },
    #[error("{path}: git file {file} is {size} bytes, more than the limit of {limit}")]
    FileTooLarge {
        path: String,
        file: String,
        size: usize,
        limit: usize,
    },
    #[error("{path}: unable to process file {file:?}: {reason}")]
    File {
        path: String,
        file: String,
        reason: String,
    },
    #[error("{path}: more than {limit} parameter sets")]
    TooManyParamSets { path: String, limit: usize },
    #[error("{path}: invalid selector: {reason}")]
    Selector { path: String, reason: String },
    #[error("{path}: interpolation failed: {reason}")]
    Interpolation { path: String, reason: String },
}

/// The template settings generators need (values and matrix interpolation).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Options {
    pub go_template: bool,
    pub go_template_options: Vec<String>,
    pub apply_nested_selectors: bool,
}

impl Options {
    /// Read from a spec.
    pub fn from_spec(spec: &ApplicationSetSpec) -> Self {
        Self {
            go_template: spec.go_template,
            go_template_options: spec.go_template_options.clone(),
            apply_nested_selectors: spec.apply_nested_selectors,
        }
    }
}

/// The result of one top-level generator.
#[derive(Debug, Clone, PartialEq)]
pub struct GeneratorOutput {
    /// Index in `spec.generators`.
    pub index: usize,
    /// The parameter sets, after the generator's `selector`.
    pub params: Vec<Params>,
    /// The Application template for these sets: the generator's own `template` with the
    /// gaps filled from `spec.template` (Argo CD's `mergo.Merge(generatorTemplate, specTemplate)`).
    pub template: Value,
    /// When this generator wants to run again (`None`: only on events).
    pub requeue_after_seconds: Option<u64>,
}

/// Runs every generator of `spec`, as Argo CD's controller does before rendering.
pub fn generate(
    spec: &ApplicationSetSpec,
    inputs: &dyn Inputs,
) -> Result<Vec<GeneratorOutput>, GeneratorError> {
    let opts = Options::from_spec(spec);
    let mut out = Vec::with_capacity(spec.generators.len());
    let mut total = 0usize;
    for (index, g) in spec.generators.iter().enumerate() {
        let path = format!("generators[{index}]");
        let params = generate_one(g, &opts, inputs, &path)?;
        total += params.len();
        if total > MAX_PARAM_SETS {
            return Err(GeneratorError::TooManyParamSets {
                path,
                limit: MAX_PARAM_SETS,
            });
        }
        out.push(GeneratorOutput {
            index,
            params,
            template: merged_template(g, &spec.template),
            requeue_after_seconds: requeue_after_seconds(g),
        });
    }
    Ok(out)
}

/// Runs one top-level generator (with its `selector`); `path` names it in errors.
pub fn generate_one(
    generator: &ApplicationSetGenerator,
    opts: &Options,
    inputs: &dyn Inputs,
    path: &str,
) -> Result<Vec<Params>, GeneratorError> {
    run(generator, opts, inputs, path, 0, None)
}

/// The smallest requeue interval over all generators of `spec` (`None`: none asks for one).
pub fn spec_requeue_after_seconds(spec: &ApplicationSetSpec) -> Option<u64> {
    spec.generators
        .iter()
        .filter_map(requeue_after_seconds)
        .min()
}

/// Argo CD's `GetRequeueAfter` for one generator: `git` → `requeueAfterSeconds` or 180 s;
/// `scmProvider`, `pullRequest` → `requeueAfterSeconds` or 30 minutes;
/// `clusterDecisionResource` → `requeueAfterSeconds` or 3 minutes;
/// `list`, `clusters` → none (cluster Secret events requeue); `matrix`/`merge` → the smallest
/// of their children. Unsupported kinds report their `requeueAfterSeconds` when set.
pub fn requeue_after_seconds(g: &ApplicationSetGenerator) -> Option<u64> {
    let mut best: Option<u64> = None;
    let mut take = |v: Option<u64>| {
        if let Some(v) = v {
            best = Some(best.map_or(v, |b| b.min(v)));
        }
    };
    if let Some(git) = &g.git {
        take(Some(
            git.requeue_after_seconds
                .map_or(DEFAULT_GIT_REQUEUE_AFTER_SECONDS, |s| {
                    u64::try_from(s).unwrap_or(0)
                }),
        ));
    }
    let secs = |s: Option<i64>| {
        Some(s.map_or(DEFAULT_SCM_REQUEUE_AFTER_SECONDS, |s| {
            u64::try_from(s).unwrap_or(0)
        }))
    };
    if let Some(s) = &g.scm_provider {
        take(secs(s.requeue_after_seconds));
    }
    if let Some(p) = &g.pull_request {
        take(secs(p.requeue_after_seconds));
    }
    if let Some(d) = &g.cluster_decision_resource {
        take(Some(
            d.requeue_after_seconds
                .map_or(DEFAULT_GIT_REQUEUE_AFTER_SECONDS, |s| {
                    u64::try_from(s).unwrap_or(0)
                }),
        ));
    }
    if let Some(p) = &g.plugin {
        take(p.get("requeueAfterSeconds").and_then(Value::as_u64));
    }
    if let Some(m) = &g.matrix {
        for c in &m.generators {
            take(requeue_after_seconds(c));
        }
    }
    if let Some(m) = &g.merge {
        for c in &m.generators {
            take(requeue_after_seconds(c));
        }
    }
    best
}

/// The (`repoURL`, `revision`) of every `git` generator of the set, nested ones included: a
/// push to one of them is a reason to regenerate now (Argo CD's ApplicationSet webhook).
pub fn git_sources(spec: &ApplicationSetSpec) -> Vec<(String, String)> {
    fn walk(g: &ApplicationSetGenerator, out: &mut Vec<(String, String)>) {
        if let Some(git) = &g.git {
            out.push((git.repo_url.clone(), git.revision.clone()));
        }
        for m in [
            g.matrix.as_ref().map(|m| &m.generators),
            g.merge.as_ref().map(|m| &m.generators),
        ]
        .into_iter()
        .flatten()
        {
            for c in m {
                walk(c, out);
            }
        }
    }
    let mut out = Vec::new();
    for g in &spec.generators {
        walk(g, &mut out);
    }
    out
}

/// The generator's override `template` with missing parts taken from `base` (`spec.template`).
pub fn merged_template(g: &ApplicationSetGenerator, base: &Value) -> Value {
    let own = g
        .list
        .as_ref()
        .and_then(|x| x.template.as_ref())
        .or_else(|| g.clusters.as_ref().and_then(|x| x.template.as_ref()))
        .or_else(|| g.git.as_ref().and_then(|x| x.template.as_ref()))
        .or_else(|| {
            g.cluster_decision_resource
                .as_ref()
                .and_then(|x| x.template.as_ref())
        })
        .or_else(|| g.scm_provider.as_ref().and_then(|x| x.template.as_ref()))
        .or_else(|| g.pull_request.as_ref().and_then(|x| x.template.as_ref()))
        .or_else(|| g.matrix.as_ref().and_then(|x| x.template.as_ref()))
        .or_else(|| g.merge.as_ref().and_then(|x| x.template.as_ref()));
    match own {
        Some(own) => crate::template::merge_template(base, own),
        None => base.clone(),
    }
}

/// Argo CD's `Transform` for one generator at `depth` (0 = top level), with the matrix's
/// previous parameters to interpolate into its spec.
pub(crate) fn run(
    g: &ApplicationSetGenerator,
    opts: &Options,
    inputs: &dyn Inputs,
    path: &str,
    depth: usize,
    interp: Option<&Params>,
) -> Result<Vec<Params>, GeneratorError> {
    let kinds = g.kinds();
    let kind = match kinds.as_slice() {
        [] => {
            return Err(GeneratorError::Empty {
                path: path.to_string(),
            });
        }
        [k] => *k,
        more => {
            return Err(GeneratorError::MoreThanOneKind {
                path: path.to_string(),
                kinds: more.join(", "),
            });
        }
    };
    if UNSUPPORTED_GENERATORS.contains(&kind) {
        return Err(GeneratorError::Unsupported {
            path: path.to_string(),
            kind: kind.to_string(),
        });
    }
    refuse_extra(&g.extra, path)?;
    // The selector is parsed before anything runs, as Argo CD does.
    let sel = g
        .selector
        .as_ref()
        .map(|s| selector::Selector::parse(s, false))
        .transpose()
        .map_err(|reason| GeneratorError::Selector {
            path: path.to_string(),
            reason,
        })?;

    let interpolated;
    let g = match interp {
        Some(p) if !p.is_empty() => {
            interpolated = matrix::interpolate_generator(g, p, opts, path)?;
            &interpolated
        }
        _ => g,
    };
    let kpath = format!("{path}.{kind}");
    // `kind` names a field that is set; its absence after interpolation is still an error.
    let empty = || GeneratorError::Empty {
        path: kpath.clone(),
    };
    let params = match kind {
        "list" => list::generate(g.list.as_ref().ok_or_else(empty)?, opts, &kpath)?,
        "clusters" => {
            cluster::generate(g.clusters.as_ref().ok_or_else(empty)?, opts, inputs, &kpath)?
        }
        "git" => git::generate(g.git.as_ref().ok_or_else(empty)?, opts, inputs, &kpath)?,
        "clusterDecisionResource" => {
            let d = g.cluster_decision_resource.as_ref().ok_or_else(empty)?;
            duck::generate(d, opts, inputs, &kpath)?
        }
        "scmProvider" => {
            let s = g.scm_provider.as_ref().ok_or_else(empty)?;
            scm::generate_scm(s, opts, inputs, &kpath)?
        }
        "pullRequest" => {
            let pr = g.pull_request.as_ref().ok_or_else(empty)?;
            scm::generate_pull_requests(pr, opts, inputs, &kpath)?
        }
        "matrix" => {
            let m = g.matrix.as_deref().ok_or_else(empty)?;
            matrix::generate(m, opts, inputs, &kpath, depth)?
        }
        "merge" => {
            let m = g.merge.as_deref().ok_or_else(empty)?;
            merge::generate(m, opts, inputs, &kpath, depth)?
        }
        other => {
            return Err(GeneratorError::Unsupported {
                path: path.to_string(),
                kind: other.to_string(),
            });
        }
    };
    let params = match sel {
        Some(sel) => params
            .into_iter()
            .filter(|p| sel.matches(&flatten_params(p)))
            .collect::<Vec<_>>(),
        None => params,
    };
    check_bound(params.len(), path)?;
    Ok(params)
}

/// Refuses fields these types do not know (e.g. `clusters.flatList`): generating without them
/// would silently give other parameters than Argo CD.
pub(crate) fn refuse_extra(extra: &Map<String, Value>, path: &str) -> Result<(), GeneratorError> {
    if extra.is_empty() {
        return Ok(());
    }
    let keys: Vec<&str> = extra.keys().map(String::as_str).collect();
    Err(GeneratorError::Invalid {
        path: path.to_string(),
        reason: format!("unsupported field(s): {}", keys.join(", ")),
    })
}

pub(crate) fn check_bound(n: usize, path: &str) -> Result<(), GeneratorError> {
    if n > MAX_PARAM_SETS {
        return Err(GeneratorError::TooManyParamSets {
            path: path.to_string(),
            limit: MAX_PARAM_SETS,
        });
    }
    Ok(())
}

/// Argo CD's `appendTemplatedValues`: each `values` entry rendered against the parameters
/// gathered so far (not against other values), added as `values.<k>` (flat) or `values: {k}`.
pub(crate) fn append_values(
    values: &BTreeMap<String, String>,
    params: &mut Params,
    opts: &Options,
    path: &str,
) -> Result<(), GeneratorError> {
    if values.is_empty() {
        return Ok(());
    }
    let mut rendered = Map::new();
    for (k, v) in values {
        let r = matrix::render_string(v, params, opts.go_template, &opts.go_template_options)
            .map_err(|reason| GeneratorError::Interpolation {
                path: format!("{path}.values.{k}"),
                reason,
            })?;
        rendered.insert(k.clone(), Value::String(r));
    }
    if opts.go_template {
        params.insert("values".into(), Value::Object(rendered));
    } else {
        for (k, v) in rendered {
            params.insert(format!("values.{k}"), v);
        }
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod testing;

#[cfg(test)]
mod tests {
    use super::testing::{FakeInputs, obj};
    use super::*;
    use serde_json::json;

    fn spec(v: Value) -> ApplicationSetSpec {
        serde_json::from_value(v).unwrap_or_default()
    }

    #[test]
    fn generate_merges_templates_and_reports_requeue() -> Result<(), GeneratorError> {
        let s = spec(json!({
            "generators": [
                {"list": {"elements": [{"cluster": "a"}],
                          "template": {"metadata": {"name": "override-{{cluster}}"}, "spec": {"project": ""}}}},
                {"git": {"repoURL": "r", "revision": "HEAD", "directories": [{"path": "*"}],
                         "requeueAfterSeconds": 30}},
                {"matrix": {"generators": [
                    {"list": {"elements": [{"a": "1"}]}},
                    {"git": {"repoURL": "r", "revision": "HEAD", "directories": [{"path": "*"}]}}
                ]}}
            ],
            "template": {"metadata": {"name": "{{cluster}}", "labels": {"x": "y"}},
                         "spec": {"project": "default"}}
        }));
        let inputs = FakeInputs {
            dirs: vec!["apps".into()],
            ..Default::default()
        };
        let out = generate(&s, &inputs)?;
        assert_eq!(out.len(), 3);
        assert_eq!(out[0].params, vec![obj(json!({"cluster": "a"}))]);
        assert_eq!(
            out[0].template,
            json!({"metadata": {"name": "override-{{cluster}}", "labels": {"x": "y"}},
                                            "spec": {"project": "default"}})
        );
        assert_eq!(out[1].template, s.template);
        assert_eq!(out[0].requeue_after_seconds, None);
        assert_eq!(out[1].requeue_after_seconds, Some(30));
        assert_eq!(
            out[2].requeue_after_seconds,
            Some(DEFAULT_GIT_REQUEUE_AFTER_SECONDS)
        );
        assert_eq!(
            out[2].params,
            vec![obj(
                json!({"a": "1", "path": "apps", "path.basename": "apps",
            "path.basenameNormalized": "apps", "path[0]": "apps"})
            )]
        );
        assert_eq!(spec_requeue_after_seconds(&s), Some(30));
        Ok(())
    }

    #[test]
    fn refusals() {
        let inputs = FakeInputs::default();
        for (v, want) in [
            (json!({"generators": [{}]}), "Empty"),
            (
                json!({"generators": [{"list": {"elements": []}, "clusters": {}}]}),
                "MoreThanOneKind",
            ),
            (
                json!({"generators": [{"scmProvider": {"gitea": {"owner": "o"}}}]}),
                "Invalid",
            ),
            (
                json!({"generators": [{"pullRequest": {"azuredevops": {}}}]}),
                "Invalid",
            ),
            (json!({"generators": [{"pullRequest": {}}]}), "Invalid"),
            (
                json!({"generators": [{"clusterDecisionResource": {}}]}),
                "Invalid",
            ),
            (json!({"generators": [{"plugin": {}}]}), "Unsupported"),
            (
                json!({"generators": [{"list": {"elements": []}, "futureKind": {}}]}),
                "Invalid",
            ),
            (
                json!({"generators": [{"list": {"elements": []},
                     "selector": {"matchExpressions": [{"key": "a", "operator": "In"}]}}]}),
                "Selector",
            ),
        ] {
            let got = generate(&spec(v.clone()), &inputs);
            let name = match &got {
                Err(GeneratorError::Empty { .. }) => "Empty",
                Err(GeneratorError::MoreThanOneKind { .. }) => "MoreThanOneKind",
                Err(GeneratorError::Unsupported { .. }) => "Unsupported",
                Err(GeneratorError::Invalid { .. }) => "Invalid",
                Err(GeneratorError::Selector { .. }) => "Selector",
                _ => "other",
            };
            assert_eq!(name, want, "{v}: {got:?}");
        }
    }

    #[test]
    fn git_sources_include_nested_generators() {
        let s = spec(json!({"generators": [
            {"git": {"repoURL": "https://a", "revision": "main", "directories": [{"path": "*"}]}},
            {"list": {"elements": []}},
            {"matrix": {"generators": [
                {"clusters": {}},
                {"git": {"repoURL": "https://b", "revision": "", "files": [{"path": "x"}]}}]}}]}));
        assert_eq!(
            git_sources(&s),
            [
                ("https://a".to_string(), "main".to_string()),
                ("https://b".into(), String::new())
            ]
        );
    }

    #[test]
    fn total_bound_across_generators() {
        let half = vec![json!({"a": "b"}); MAX_PARAM_SETS / 2 + 1];
        let s = spec(
            json!({"generators": [{"list": {"elements": half}}, {"list": {"elements": half}}]}),
        );
        assert!(matches!(
            generate(&s, &FakeInputs::default()),
            Err(GeneratorError::TooManyParamSets { .. })
        ));
    }

    #[test]
    fn post_filter_selector_on_nested_go_params() -> Result<(), GeneratorError> {
        // Argo CD flattens goTemplate params before matching the generator selector.
        let s = spec(
            json!({"goTemplate": true, "generators": [{"list": {"elements": [
            {"env": {"name": "prod"}, "n": 1}, {"env": {"name": "dev"}, "n": 2}
        ]}, "selector": {"matchLabels": {"env.name": "prod"}}}]}),
        );
        let out = generate(&s, &FakeInputs::default())?;
        assert_eq!(
            out[0].params,
            vec![obj(json!({"env": {"name": "prod"}, "n": 1}))]
        );
        Ok(())
    }
}
