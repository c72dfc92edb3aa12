//! One Application's reconcile: validate against its project and the cluster registry, get
//! the desired state (rendered by the repo-server, cached), compare with the live cache, run a
//! requested or automated sync, write `status`, and decide when to look again. Errors become
//! conditions; nothing is ever pruned on a failed or empty render or an unreachable cluster.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kube::Api;
use kube::api::{Patch, PatchParams};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tracing::Instrument;

use crate::clusters::Cluster;
use crate::context::{Context, DesiredMemo, Level, QueueEvents};
use crate::hooks;
use crate::live::{CacheError, ClusterCache};
use crate::manifests::{ManifestError, wire_repo};
use crate::metrics::{AppInfoLabels, ReconcileLabels, SyncLabels};
use crate::operation::{
    AutoSync, InitiatedBy, Operation, OperationState, Phase, SyncOperation, decide_auto_sync,
};
use crate::phase_cpu::Phase as CpuPhase;
use crate::plan::{Comparison, compare_with};
use crate::project;
use crate::redact::redact_url;
use crate::repos::RepoCredsIndex;
use crate::selection::Decision;
use crate::settings::Settings;
use crate::status::{
    self, COMPARISON_ERROR, EXCLUDED_RESOURCE_WARNING, HistoryEntry, INVALID_SPEC_ERROR,
    ORPHANED_RESOURCE_WARNING, Outcome, REPEATED_RESOURCE_WARNING, SHARED_RESOURCE_WARNING,
    SYNC_ERROR,
};
use crate::sync;
use crate::syncop;
use crate::tracking::{AppKey, FIELD_MANAGER, ResourceKey, group_version, stamp};
use crate::types::Application;
use crate::types::application::{ApplicationSource, ApplicationStatus};
use crate::types::project::AppProjectSpec;

/// Argo CD's annotation that leaves an Application alone.
pub use crate::selection::SKIP_RECONCILE_ANNOTATION;
/// The annotation users (and webhooks) set to ask for a refresh: `normal` or `hard`.
pub const REFRESH_ANNOTATION: &str = "argocd.argoproj.io/refresh";
/// Argo CD's finalizer asking for cascading deletion of an app's resources (foreground), and
/// its explicit variants.
pub const RESOURCES_FINALIZER: &str = "resources-finalizer.argocd.argoproj.io";
pub const RESOURCES_FINALIZER_FOREGROUND: &str =
    "resources-finalizer.argocd.argoproj.io/foreground";
pub const RESOURCES_FINALIZER_BACKGROUND: &str =
    "resources-finalizer.argocd.argoproj.io/background";

/// Why a reconcile could not finish; the status already says so where it could be written.
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error("writing the status of {app}: {source}")]
    WriteStatus { app: String, source: kube::Error },
    #[error("updating {app}: {source}")]
    Patch { app: String, source: kube::Error },
    #[error("cluster cache for {server}: {message}")]
    Cache { server: String, message: String },
}

/// When to look at the app again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// The periodic refresh (jittered).
    Periodic,
    /// A compare after this delay (self-heal backoff), or sooner if something changes.
    After(Duration),
    /// Something failed: retry with the app's backoff.
    Backoff,
    /// Nothing to schedule (app gone, or deleted and finalized).
    Done,
    /// Another replica's app: nothing was done, nothing is counted.
    Skipped,
}

fn annotation<'a>(app: &'a Application, name: &str) -> Option<&'a str> {
    app.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(name))
        .map(String::as_str)
}

/// Whether the app lists `spec.sources` (Argo CD's HasMultipleSources): `$name/...` Helm paths
/// then name ref sources, and status, operations and history carry every source's revision.
pub fn multi_source(app: &Application) -> bool {
    app.spec.sources.as_ref().is_some_and(|s| !s.is_empty())
}

/// Every source of the app, in order: `spec.sources` (ref-only entries included), else
/// `spec.source`.
pub fn all_sources(app: &Application) -> Vec<ApplicationSource> {
    match (&app.spec.sources, &app.spec.source) {
        (Some(list), _) if !list.is_empty() => list.clone(),
        (_, Some(s)) => vec![s.clone()],
        _ => Vec::new(),
    }
}

/// A source that only names a repository others read files from (`ref` without `path` or
/// `chart`): not rendered itself.
pub fn is_ref_only(s: &ApplicationSource) -> bool {
    let empty = |v: &Option<String>| v.as_deref().unwrap_or_default().is_empty();
    !empty(&s.ref_) && empty(&s.path) && empty(&s.chart)
}

/// The sources to render (`spec.source`, or `spec.sources` without ref-only entries).
pub fn sources(app: &Application) -> Vec<ApplicationSource> {
    let multi = multi_source(app);
    all_sources(app)
        .into_iter()
        .filter(|s| !(multi && is_ref_only(s)))
        .collect()
}

/// The ref sources `src` reads files from (its Helm value files and file parameters that
/// start with `$name/`), each with the index in `all` of the source named `name`, in order of
/// first use. An unknown name, or a ref source with a chart, is an error worded as Argo CD
/// words it.
pub fn refs_read(
    src: &ApplicationSource,
    all: &[ApplicationSource],
) -> Result<Vec<(String, usize)>, String> {
    let Some(helm) = src.helm.as_ref() else {
        return Ok(Vec::new());
    };
    let paths = helm["valueFiles"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .chain(
            helm["fileParameters"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|p| p["path"].as_str()),
        );
    let defined: Vec<(&str, usize)> = all
        .iter()
        .enumerate()
        .filter_map(|(i, s)| s.ref_.as_deref().filter(|r| !r.is_empty()).map(|r| (r, i)))
        .collect();
    let mut out: Vec<(String, usize)> = Vec::new();
    for p in paths {
        let Some(rest) = p.strip_prefix('$') else {
            continue;
        };
        let name = rest.split('/').next().unwrap_or_default();
        if out.iter().any(|(n, _)| n == name) {
            continue;
        }
        let Some(&(_, i)) = defined.iter().find(|(n, _)| *n == name) else {
            if defined.is_empty() {
                return Err(format!(
                    "source referenced \"${name}\", but no source has a 'ref' field defined"
                ));
            }
            let mut known: Vec<String> = defined.iter().map(|(n, _)| format!("${n}")).collect();
            known.sort();
            known.dedup();
            return Err(format!(
                "source referenced \"${name}\", which is not one of the available sources ({})",
                known.join(", ")
            ));
        };
        if all[i].chart.as_deref().is_some_and(|c| !c.is_empty()) {
            return Err(format!(
                "source referenced \"${name}\", which has a 'chart' field defined: Helm charts are not supported for 'ref' sources"
            ));
        }
        out.push((name.to_string(), i));
    }
    Ok(out)
}

fn fingerprint(app: &Application) -> String {
    let mut h = Sha256::new();
    h.update(serde_json::to_vec(&app.spec.source).unwrap_or_default());
    h.update(serde_json::to_vec(&app.spec.sources).unwrap_or_default());
    h.update(
        app.spec
            .destination
            .namespace
            .as_deref()
            .unwrap_or_default()
            .as_bytes(),
    );
    hex::encode(h.finalize())
}

/// The app's AppProject (`default` when the spec names none).
pub(crate) fn project_name(app: &Application) -> &str {
    if app.spec.project.is_empty() {
        "default"
    } else {
        &app.spec.project
    }
}

/// The destination as the app names it: its server URL, else its cluster name.
pub(crate) fn dest_server(app: &Application) -> &str {
    let d = &app.spec.destination;
    d.server
        .as_deref()
        .filter(|s| !s.is_empty())
        .or(d.name.as_deref())
        .unwrap_or_default()
}

/// The destination namespace (Argo CD leaves unnamespaced objects to the destination's).
pub(crate) fn dest_namespace(app: &Application) -> String {
    app.spec
        .destination
        .namespace
        .clone()
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| "default".into())
}

/// Everything wrong with the spec against its project and the registry (empty = valid).
/// `control_namespace`: an Application elsewhere may use only a project whose
/// `sourceNamespaces` lists its namespace (Argo CD's rule for apps in any namespace).
fn validate(
    app: &Application,
    project: Option<&AppProjectSpec>,
    cluster: Option<&Cluster>,
    control_namespace: &str,
) -> Vec<String> {
    let mut errs: Vec<String> = app
        .unsupported
        .iter()
        .map(|f| crate::types::fields::refusal(f))
        .collect();
    if let Some(p) = project {
        errs.extend(
            crate::types::project::unsupported_fields(p)
                .into_iter()
                .map(|f| format!("the project uses {f}, which Flotilla does not support: its Applications are not synced")),
        );
    }
    if let Err(e) = crate::ignore::parse(app.spec.ignore_differences.as_deref().unwrap_or_default())
    {
        errs.extend(e);
    }
    let srcs = sources(app);
    if srcs.is_empty() {
        errs.push("spec.source (or spec.sources) is required".into());
    }
    let project_name = if app.spec.project.is_empty() {
        "default"
    } else {
        &app.spec.project
    };
    let Some(p) = project else {
        errs.push(format!(
            "application references project {project_name} which does not exist"
        ));
        return errs;
    };
    let app_ns = app
        .metadata
        .namespace
        .as_deref()
        .unwrap_or(control_namespace);
    if app_ns != control_namespace && !project::source_namespace_allowed(p, app_ns) {
        errs.push(format!(
            "application in namespace '{app_ns}' is not permitted to use project '{project_name}': the project's sourceNamespaces do not include it"
        ));
    }
    // Every source, ref-only ones included: a values repository is read like any other.
    for s in &all_sources(app) {
        if project::has_dot_segments(&s.repo_url) {
            errs.push(format!(
                "application repo {} is refused: repository URLs may not contain '.' or '..' path segments (plain or percent-encoded)",
                redact_url(&s.repo_url)
            ));
        } else if !project::source_allowed(p, &s.repo_url) {
            errs.push(format!(
                "application repo {} is not permitted in project '{project_name}'",
                redact_url(&s.repo_url)
            ));
        }
    }
    match cluster {
        None => errs.push(format!(
            "application destination {{{}, {}}} is not a known cluster",
            app.spec.destination.server.as_deref().unwrap_or(""),
            app.spec.destination.name.as_deref().unwrap_or("")
        )),
        Some(c) if !c.serves_project(project_name) => errs.push(format!(
            "application destination cluster '{}' ({}) is scoped to project '{}' and cannot be used by project '{project_name}'",
            c.name,
            c.server,
            c.project.as_deref().unwrap_or_default()
        )),
        Some(c) => {
            let ns = dest_namespace(app);
            if !project::destination_allowed(p, &c.server, &c.name, &ns) {
                errs.push(format!(
                    "application destination server '{}' and namespace '{ns}' do not match any of the allowed destinations in project '{project_name}'",
                    c.server
                ));
            }
        }
    }
    let app_options: Vec<&str> = app
        .spec
        .sync_policy
        .as_ref()
        .and_then(|p| p.sync_options.as_ref())
        .into_iter()
        .flatten()
        .map(String::as_str)
        .collect();
    errs.extend(
        crate::plan::sync_option_errors(&app_options, false)
            .into_iter()
            .map(|e| format!("spec.syncPolicy.syncOptions: {e}")),
    );
    errs
}

/// The destination's capabilities when a source renders with Helm or a plugin (they see the
/// cluster's version and API versions); `None` otherwise or when discovery fails (logged).
pub(crate) async fn capabilities_for(
    ctx: &Arc<Context>,
    app: &Application,
    cluster: &Cluster,
) -> Option<Arc<crate::live::Capabilities>> {
    let needs = sources(app)
        .iter()
        .any(|s| s.helm.is_some() || s.plugin.is_some() || s.chart.is_some());
    if !needs {
        return None;
    }
    let cache = cache_for(ctx, cluster).ok()?;
    match cache.capabilities().await {
        Ok(c) => Some(c),
        Err(e) => {
            tracing::warn!(cluster = %cluster.name, error = %e, "discovery for Helm capabilities failed");
            None
        }
    }
}

/// The cluster's live cache (created on first use), its events feeding the work queue.
fn cache_for(ctx: &Arc<Context>, cluster: &Cluster) -> Result<Arc<ClusterCache>, ReconcileError> {
    let events: Arc<dyn crate::live::CacheEvents> = Arc::new(QueueEvents {
        ctx: Arc::downgrade(ctx),
    });
    ctx.caches
        .get_or_create(cluster, &ctx.control, events, &ctx.cache_metrics)
        .map_err(|message| ReconcileError::Cache {
            server: cluster.server.clone(),
            message,
        })
}

/// The app's project name (for other modules).
pub fn project_of(app: &Application) -> &str {
    project_name(app)
}

/// The app's desired state at its spec's revision (for deletion-time hooks).
pub(crate) async fn desired_for(
    ctx: &Context,
    app: &Application,
    key: &AppKey,
    level: Level,
) -> Result<DesiredMemo, ManifestError> {
    desired(ctx, app, key, level, None, None, None).await
}

/// The normalized hooks of `objects` (for deletion-time hooks).
pub(crate) async fn normalize_for(
    cache: &Arc<ClusterCache>,
    project: &crate::types::AppProject,
    app: &Application,
    key: &AppKey,
    cluster: &Cluster,
    objects: &[Value],
) -> Result<Vec<Value>, CacheError> {
    let n = normalize(
        cache,
        &project.spec,
        project_name(app),
        cluster,
        key,
        &dest_namespace(app),
        objects,
        &crate::settings::current(),
    )
    .await?;
    Ok(n.hooks)
}

/// Rendered objects made ready for a sync: namespaces filled in, each checked against the
/// project; resources stamped with tracking, hooks apart (stamped once named), `Skip` and
/// hook types Argo CD does not run dropped.
#[derive(Debug, Default)]
pub(crate) struct Normalized {
    pub(crate) resources: Vec<Value>,
    hooks: Vec<Value>,
    /// Objects the project (or Argo CD's rules) refuses: they block syncs.
    refusals: Vec<String>,
    /// Kinds the cluster does not serve (yet): the sync will say so.
    unknown_kinds: Vec<String>,
    /// Objects of kinds `argocd-cm` excludes: never applied, compared or pruned.
    excluded: Vec<String>,
}

#[allow(clippy::too_many_arguments)]
async fn normalize(
    cache: &Arc<ClusterCache>,
    project: &AppProjectSpec,
    project_name: &str,
    cluster: &Cluster,
    key: &AppKey,
    dest_ns: &str,
    rendered: &[Value],
    settings: &Settings,
) -> Result<Normalized, CacheError> {
    // Kinds defined by CRDs in the same render: their scope comes from the CRD.
    let crd_scopes: HashMap<(String, String), bool> = rendered
        .iter()
        .filter(|o| o.get("kind").and_then(Value::as_str) == Some("CustomResourceDefinition"))
        .filter_map(|o| {
            Some((
                (
                    o.pointer("/spec/group")?.as_str()?.to_string(),
                    o.pointer("/spec/names/kind")?.as_str()?.to_string(),
                ),
                o.pointer("/spec/scope").and_then(Value::as_str) != Some("Cluster"),
            ))
        })
        .collect();
    let mut out = Normalized::default();
    for obj in rendered {
        let role = hooks::role(obj);
        if matches!(role, hooks::Role::Skipped | hooks::Role::Ignored) {
            continue;
        }
        let is_hook = matches!(role, hooks::Role::Hook(_));
        let mut obj = obj.clone();
        let api_version = obj
            .get("apiVersion")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let kind = obj
            .get("kind")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let (group, _) = group_version(&api_version);
        if settings.excluded(group, &kind, &cluster.server) {
            out.excluded.push(format!(
                "{api_version} {kind} {} is excluded in the settings (resource.exclusions/inclusions)",
                obj.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default()
            ));
            continue;
        }
        let namespaced = match cache.api_info(&api_version, &kind).await {
            Ok(info) => info.namespaced,
            Err(CacheError::UnknownKind { .. }) => {
                match crd_scopes.get(&(group.to_string(), kind.clone())) {
                    Some(n) => *n,
                    None => {
                        out.unknown_kinds.push(format!(
                            "{api_version} {kind} is not served by cluster {} (yet)",
                            cluster.name
                        ));
                        obj.pointer("/metadata/namespace").is_some()
                    }
                }
            }
            Err(e) => return Err(e),
        };
        let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) else {
            continue;
        };
        let ns = if namespaced {
            let ns = meta
                .get("namespace")
                .and_then(Value::as_str)
                .filter(|n| !n.is_empty())
                .unwrap_or(dest_ns)
                .to_string();
            meta.insert("namespace".into(), Value::String(ns.clone()));
            ns
        } else {
            meta.remove("namespace");
            String::new()
        };
        let name = meta
            .get("name")
            .and_then(Value::as_str)
            .filter(|n| !n.is_empty())
            .or_else(|| meta.get("generateName").and_then(Value::as_str))
            .unwrap_or_default()
            .to_string();
        let unnamed = meta
            .get("name")
            .and_then(Value::as_str)
            .is_none_or(str::is_empty);
        if !project::kind_allowed(project, group, &kind, namespaced) {
            out.refusals.push(format!(
                "resource {}:{kind} {name} is not permitted in project {project_name}",
                group
            ));
        } else if namespaced
            && !project::destination_allowed(project, &cluster.server, &cluster.name, &ns)
        {
            out.refusals.push(format!(
                "namespace {ns} (of {kind} {name}) is not permitted in project {project_name}"
            ));
        } else if unnamed && !is_hook {
            // Argo CD creates generateName objects only as hooks; a resource needs a name to
            // be compared, applied and pruned.
            out.refusals.push(format!(
                "{kind} with metadata.generateName {name:?} and no metadata.name: generateName is supported only on hooks (argocd.argoproj.io/hook)"
            ));
        }
        if let Some(opts) = obj
            .pointer("/metadata/annotations")
            .and_then(|a| a.get(crate::plan::COMPARE_OPTIONS_ANNOTATION))
            .and_then(Value::as_str)
        {
            for e in crate::plan::compare_option_errors(opts) {
                out.refusals.push(format!("{kind} {name}: {e}"));
            }
        }
        if let Some(opts) = obj
            .pointer("/metadata/annotations")
            .and_then(|a| a.get(crate::plan::SYNC_OPTIONS_ANNOTATION))
            .and_then(Value::as_str)
        {
            let list: Vec<&str> = opts.split(',').collect();
            for e in crate::plan::sync_option_errors(&list, true) {
                out.refusals.push(format!("{kind} {name}: {e}"));
            }
        }
        if is_hook {
            out.hooks.push(obj);
        } else {
            stamp(&mut obj, key);
            out.resources.push(obj);
        }
    }
    Ok(out)
}

/// The repository of `src` on the wire, with the credentials `app`'s project may use
/// (project-scoped Secrets of other projects are never attached).
fn repo_for(
    app: &Application,
    src: &ApplicationSource,
    creds: &RepoCredsIndex,
) -> flotilla_proto::repo::v1::Repository {
    wire_repo(
        &src.repo_url,
        creds.lookup(&src.repo_url, project_name(app)),
    )
}

/// Render every source of the app at its resolved revision (or reuse the last render at
/// `Level::Compare`). `pins` renders a sync's revisions instead: one per source of
/// [`all_sources`] (an empty entry: the spec's). The revisions returned are one per source of
/// a multi-source app, ref-only sources included (their commits are part of the render of the
/// sources that read them), else the one source's.
#[tracing::instrument(name = "refresh", skip_all, fields(level = level.as_str()))]
pub(crate) async fn desired(
    ctx: &Context,
    app: &Application,
    key: &AppKey,
    level: Level,
    pins: Option<&[String]>,
    fresh_after: Option<Instant>,
    caps: Option<&crate::live::Capabilities>,
) -> Result<DesiredMemo, ManifestError> {
    let fp = fingerprint(app);
    if level == Level::Compare
        && pins.is_none()
        && let Some(d) = ctx.memo(key).desired.filter(|d| d.fingerprint == fp)
    {
        return Ok(d);
    }
    let creds = ctx.repo_creds.borrow().clone();
    let ns = dest_namespace(app);
    let multi = multi_source(app);
    let all = all_sources(app);
    let mut parts: Vec<Arc<Vec<Value>>> = Vec::new();
    let mut source_type = String::new();
    // 1. Every source's revision, ref-only sources included.
    let mut resolved = Vec::with_capacity(all.len());
    for (i, src) in all.iter().enumerate() {
        if let Some(problem) = creds
            .lookup(&src.repo_url, project_name(app))
            .and_then(|c| c.problem)
        {
            return Err(ManifestError::Failed(format!(
                "the credentials for repository {} are unusable: {problem}",
                crate::redact::redact_url(&src.repo_url),
            )));
        }
        if let Some(c) = creds.lookup(&src.repo_url, project_name(app))
            && !c.unsupported.is_empty()
        {
            return Err(ManifestError::Failed(format!(
                "the credentials for repository {} set {}, which Flotilla does not support yet; remove {} from the repository Secret or use username/password, bearerToken, sshPrivateKey, tlsClientCert* or a GitHub App instead",
                crate::redact::redact_url(&src.repo_url),
                c.unsupported.join(", "),
                if c.unsupported.len() == 1 {
                    "it"
                } else {
                    "them"
                },
            )));
        }
        let repo = repo_for(app, src, &creds);
        let revision = pins
            .and_then(|p| p.get(i))
            .filter(|r| !r.is_empty())
            .cloned()
            .or_else(|| src.target_revision.clone())
            .unwrap_or_default();
        let wire = crate::manifests::wire_source_for(src, caps);
        let commit = ctx
            .manifests
            .resolve(repo.clone(), &wire, &revision, fresh_after)
            .await?;
        resolved.push((repo, wire, commit));
    }
    // 2. Argo CD's UpdateRevisionForPaths: an app that declares the paths its manifests
    // depend on (manifest-generate-paths), whose spec is unchanged and whose paths did not
    // change between its last render's commit and the new one, moves to the new commit with
    // that render instead of rendering again (a monorepo commit renders only what it touched).
    if let Some(reused) = reuse_render(ctx, app, key, level, pins, &fp, &all, &resolved).await {
        return Ok(reused);
    }
    // 3. Every source but the ref-only ones rendered, with the ref sources it reads at their
    // commits.
    let mut revisions: Vec<String> = resolved.iter().map(|(_, _, c)| c.clone()).collect();
    for (i, src) in all.iter().enumerate() {
        if multi && is_ref_only(src) {
            continue;
        }
        let refs = if multi {
            let read = refs_read(src, &all).map_err(ManifestError::Failed)?;
            crate::manifests::RenderRefs {
                multiple_sources: true,
                refs: read
                    .into_iter()
                    .map(|(name, j)| flotilla_proto::repo::v1::RefSource {
                        name,
                        repo: Some(resolved[j].0.clone()),
                        commit_sha: resolved[j].2.clone(),
                    })
                    .collect(),
            }
        } else {
            crate::manifests::RenderRefs::default()
        };
        let (repo, wire, commit) = resolved[i].clone();
        let r = ctx
            .manifests
            .manifests_with(
                repo,
                wire,
                &refs,
                &key.name,
                &ns,
                &commit,
                level == Level::Hard,
            )
            .await?;
        revisions[i] = r.commit.clone();
        parts.push(r.objects.clone());
        source_type = r.source_type.clone();
    }
    if !multi {
        // The one source's revision (an app without sources has none).
        revisions.truncate(1);
    }
    // One source (the common case): share the render with the manifest cache instead of
    // holding a second deep copy per app.
    let objects = match parts.len() {
        1 => parts.swap_remove(0),
        _ => Arc::new(parts.iter().flat_map(|p| p.iter().cloned()).collect()),
    };
    let memo = DesiredMemo {
        fingerprint: fp,
        revisions,
        objects,
        source_type,
    };
    if pins.is_none() {
        ctx.update_memo(key, |m| m.desired = Some(memo.clone()));
    }
    Ok(memo)
}

/// At most this many `manifest-generate-paths` entries, of at most this length, are compared
/// to reuse a render (the repo-server refuses more).
const MAX_REUSE_PATHS: usize = 64;
const MAX_REUSE_PATH_BYTES: usize = 1024;

/// The last render of a single-source Git app carried to `resolved`'s new commit when its
/// `manifest-generate-paths` did not change (see [`desired`]); `None`: render.
#[allow(clippy::too_many_arguments)]
async fn reuse_render(
    ctx: &Context,
    app: &Application,
    key: &AppKey,
    level: Level,
    pins: Option<&[String]>,
    fp: &str,
    all: &[ApplicationSource],
    resolved: &[(
        flotilla_proto::repo::v1::Repository,
        flotilla_proto::repo::v1::ApplicationSource,
        String,
    )],
) -> Option<DesiredMemo> {
    if level == Level::Hard || pins.is_some() || multi_source(app) {
        return None;
    }
    let ([src], [(repo, wire, commit)]) = (all, resolved) else {
        return None;
    };
    if src.chart.is_some() || !wire.chart.is_empty() {
        return None;
    }
    let annotation = app
        .metadata
        .annotations
        .as_ref()?
        .get(crate::webhook::MANIFEST_PATHS_ANNOTATION)?;
    // Globs cannot be compared by tree id: those apps render.
    if annotation.contains(['*', '?', '[', '{']) {
        return None;
    }
    let dirs: Vec<String> =
        crate::webhook::manifest_dirs(annotation, src.path.as_deref().unwrap_or(""))
            .into_iter()
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
    // Bounded like the repo-server's answer to it: more paths render instead.
    if dirs.is_empty()
        || dirs.len() > MAX_REUSE_PATHS
        || dirs.iter().any(|d| d.len() > MAX_REUSE_PATH_BYTES)
    {
        return None;
    }
    let prev = ctx.memo(key).desired.filter(|d| d.fingerprint == fp)?;
    let [old] = prev.revisions.as_slice() else {
        return None;
    };
    if old == commit {
        return None;
    }
    match ctx
        .manifests
        .paths_changed(repo.clone(), old, commit, dirs)
        .await
    {
        Ok(false) => {
            ctx.manifests.count_reuse();
            let memo = DesiredMemo {
                fingerprint: fp.to_string(),
                revisions: vec![commit.clone()],
                objects: prev.objects.clone(),
                source_type: prev.source_type.clone(),
            };
            ctx.update_memo(key, |m| m.desired = Some(memo.clone()));
            tracing::debug!(app = %key, from = %old, to = %commit, "paths unchanged: render reused");
            Some(memo)
        }
        Ok(true) => None,
        Err(e) => {
            tracing::debug!(app = %key, error = %e, "UpdateRevisionForPaths failed: rendering");
            None
        }
    }
}

/// The kinds to watch for an app: what it renders plus what it had (so prunes are seen).
fn kinds_of(objects: &[Value], previous: Option<&ApplicationStatus>) -> Vec<(String, String)> {
    let mut set: BTreeSet<(String, String)> = objects
        .iter()
        .filter_map(|o| {
            Some((
                o.get("apiVersion")?.as_str()?.to_string(),
                o.get("kind")?.as_str()?.to_string(),
            ))
        })
        .collect();
    for r in previous
        .and_then(|s| s.resources.as_ref())
        .into_iter()
        .flatten()
    {
        let av = if r.group.is_empty() {
            r.version.clone()
        } else {
            format!("{}/{}", r.group, r.version)
        };
        if !r.version.is_empty() {
            set.insert((av, r.kind.clone()));
        }
    }
    // One watch per group/kind is enough whatever the version.
    let mut seen = BTreeSet::new();
    set.into_iter()
        .filter(|(av, k)| seen.insert((group_version(av).0.to_string(), k.clone())))
        .collect()
}

struct Writer<'a> {
    ctx: &'a Context,
    app: &'a Application,
    key: &'a AppKey,
}

impl Writer<'_> {
    async fn status(&self, outcome: &Outcome<'_>) -> Result<(), ReconcileError> {
        self.write_status(outcome, true).await
    }

    /// Write the status; `announce` emits the sync/health transition Events (the early write
    /// that records a new operation does not, so the final write announces them once).
    async fn write_status(
        &self,
        outcome: &Outcome<'_>,
        announce: bool,
    ) -> Result<(), ReconcileError> {
        let prev = self.app.status.as_ref();
        let st = status::build(prev, outcome, jiff::Timestamp::now());
        if let (Some(s), Some(h)) = (&st.sync, &st.health) {
            self.ctx.report(
                self.key,
                AppInfoLabels {
                    namespace: self.key.namespace.clone(),
                    name: self.key.name.clone(),
                    project: project_name(self.app).to_string(),
                    dest_server: dest_server(self.app).to_string(),
                    dest_namespace: dest_namespace(self.app),
                    sync_status: s.status.clone(),
                    health_status: h.status.clone(),
                    argocd: crate::metrics_argocd::app_extra(self.ctx, self.app),
                },
            );
        }
        if !status::changed(prev, &st) {
            return Ok(());
        }
        let was =
            |f: fn(&ApplicationStatus) -> Option<String>| prev.and_then(f).unwrap_or_default();
        let old_sync = was(|p| p.sync.as_ref().map(|s| s.status.clone()));
        let old_health = was(|p| p.health.as_ref().map(|h| h.status.clone()));
        if let Some(new) = st.sync.as_ref().map(|s| &s.status)
            && announce
            && *new != old_sync
        {
            self.ctx.events.emit(
                self.app,
                false,
                crate::events::RESOURCE_UPDATED,
                format!("Updated sync status: {old_sync} -> {new}"),
            );
        }
        if let Some(new) = st.health.as_ref().map(|h| &h.status)
            && announce
            && *new != old_health
        {
            self.ctx.events.emit(
                self.app,
                false,
                crate::events::RESOURCE_UPDATED,
                format!("Updated health status: {old_health} -> {new}"),
            );
        }
        let api: Api<Application> = Api::namespaced(self.ctx.control.clone(), &self.key.namespace);
        let patch = status::merge_patch(prev, &st);
        let written = if self.ctx.status_subresource {
            api.patch_status(
                &self.key.name,
                &PatchParams::default(),
                &Patch::Merge(patch),
            )
            .await
        } else {
            // Argo CD's CRD has no status subresource: status is part of the main resource.
            api.patch(
                &self.key.name,
                &PatchParams::default(),
                &Patch::Merge(patch),
            )
            .await
        }
        .map_err(|source| ReconcileError::WriteStatus {
            app: self.key.to_string(),
            source,
        })?;
        self.ctx.metrics.status_writes.inc();
        self.remember(written);
        Ok(())
    }

    fn remember(&self, mut written: Application) {
        written.metadata.managed_fields = None;
        self.ctx
            .update_memo(self.key, |m| m.written = Some(Arc::new(written)));
    }

    /// Clear the handled `operation` and/or refresh annotation.
    async fn acknowledge(&self, operation: bool, refresh: bool) -> Result<(), ReconcileError> {
        if !operation && !refresh {
            return Ok(());
        }
        let mut patch = json!({});
        if operation {
            patch["operation"] = Value::Null;
        }
        if refresh {
            patch["metadata"] = json!({"annotations": {REFRESH_ANNOTATION: null}});
        }
        let api: Api<Application> = Api::namespaced(self.ctx.control.clone(), &self.key.namespace);
        let written = api
            .patch(
                &self.key.name,
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await
            .map_err(|source| ReconcileError::Patch {
                app: self.key.to_string(),
                source,
            })?;
        // Until the watch delivers it, this is the freshest copy: without it, the next
        // reconcile would read our status write (operation still set) and run it again.
        self.remember(written);
        Ok(())
    }
}

fn now_s() -> String {
    status::timestamp(jiff::Timestamp::now())
}

fn failed_op(op: Operation, message: String) -> OperationState {
    let now = now_s();
    OperationState {
        operation: op,
        phase: Phase::Failed,
        message,
        sync_result: None,
        started_at: now.clone(),
        finished_at: Some(now),
        retry_count: 0,
    }
}

/// Reconcile one app at `level`.
pub async fn reconcile(
    ctx: &Arc<Context>,
    key: &AppKey,
    level: Level,
) -> Result<Next, ReconcileError> {
    // Every replica queues every app whose Application changed; whose it is is decided on
    // the packed copy, and only the owner pays for parsing its status back.
    let Some(app) = ctx.app_packed(key) else {
        ctx.forget(key);
        return Ok(Next::Done);
    };
    let registry = ctx.registry.borrow().clone();
    let cluster = registry
        .resolve(
            app.spec.destination.server.as_deref(),
            app.spec.destination.name.as_deref(),
        )
        .cloned();
    // Another replica's cluster: not ours to touch. An unknown cluster: exactly one replica
    // (the ring's plain owner of the app) reports it.
    let ours = match &cluster {
        Some(c) => ctx.owns(&c.server),
        None => ctx.answers_for(key),
    };
    if !ours {
        return Ok(Next::Skipped);
    }
    // `argocd.argoproj.io/skip-reconcile: "true"` (side by side with Argo CD:
    // `flotilla.dev/skip-reconcile`): left alone entirely, as Argo CD leaves it. An app that is
    // not (or no longer) this controller's is never touched: no status, operation or finalizer.
    match ctx.cfg.selection.decide(&app) {
        Decision::Take => {}
        Decision::Paused => {
            tracing::debug!(app = %key, "skip-reconcile: not reconciled");
            return Ok(Next::Periodic);
        }
        Decision::NotSelected | Decision::AwaitingHandover | Decision::Unowned => {
            return Ok(Next::Skipped);
        }
    }
    // Just handed over by Argo CD: work it queued before the switch may still run; wait.
    // (Only side by side is a hand-over recorded; the memo is not cloned otherwise.)
    if ctx.cfg.selection.side_by_side
        && let Some(at) = ctx.memo(key).handed_over_at
    {
        let waited = at.elapsed();
        let grace = ctx.cfg.selection.handover_grace;
        if waited < grace {
            tracing::debug!(app = %key, wait_ms = (grace - waited).as_millis() as u64, "hand-over grace");
            return Ok(Next::After(grace - waited));
        }
    }
    let app = app.unpacked();
    let w = Writer {
        ctx,
        app: &app,
        key,
    };
    if app.metadata.deletion_timestamp.is_some() {
        return finalize(ctx, &w, cluster.as_ref()).await;
    }
    let refresh_ann = annotation(&app, REFRESH_ANNOTATION);
    let level = match refresh_ann {
        Some("hard") => Level::Hard,
        Some(_) => level.max(Level::Refresh),
        None => level,
    };
    let mut outcome = Outcome {
        history_limit: app
            .spec
            .revision_history_limit
            .and_then(|l| usize::try_from(l).ok())
            .unwrap_or(ctx.cfg.history_limit),
        refreshed: level >= Level::Refresh,
        ..Default::default()
    };
    let ack_refresh = refresh_ann.is_some();

    // A malformed operation is answered, not retried forever.
    let op = match app.operation.as_ref().map(Operation::from_value) {
        Some(Err(e)) => {
            outcome.operation_state = Some(failed_op(
                Operation::default(),
                format!("invalid operation: {e}"),
            ));
            w.status(&outcome).await?;
            w.acknowledge(true, ack_refresh).await?;
            return Ok(Next::Periodic);
        }
        Some(Ok(op)) => {
            let positions = op
                .sync
                .as_ref()
                .filter(|_| multi_source(&app))
                .and_then(|s| {
                    crate::operation::source_positions_problem(s, all_sources(&app).len())
                });
            if let Some(problem) = positions {
                outcome.operation_state = Some(failed_op(op, problem));
                w.status(&outcome).await?;
                w.acknowledge(true, ack_refresh).await?;
                return Ok(Next::Periodic);
            }
            Some(op)
        }
        None => None,
    };
    let (last, running) = operation_in_progress(&app, op.as_ref());
    let pending_op = running.as_ref().map(|r| r.operation.clone()).or(op.clone());
    // A rollback syncs the source(s) its history entry recorded, not the spec's.
    let app = match pending_op.as_ref().and_then(operation_sources) {
        Some(Rollback::Single(src)) => {
            let mut a = (*app).clone();
            a.spec.source = Some(*src);
            a.spec.sources = None;
            Arc::new(a)
        }
        Some(Rollback::Multi(srcs)) => {
            let mut a = (*app).clone();
            a.spec.source = None;
            a.spec.sources = Some(srcs);
            Arc::new(a)
        }
        None => app.clone(),
    };
    let fail_pending = |message: String| pending_op.clone().map(|o| failed_op(o, message));

    // 1. The spec against the registry and its project.
    let project = ctx.project(&ctx.cfg.namespace, project_name(&app));
    let invalid = validate(
        &app,
        project.as_ref().map(|p| &p.spec),
        cluster.as_ref(),
        &ctx.cfg.namespace,
    );
    let (Some(project), Some(cluster), true) = (project, cluster, invalid.is_empty()) else {
        tracing::warn!(app = %key, errors = ?invalid, "invalid application");
        outcome.conditions = invalid
            .iter()
            .map(|m| (INVALID_SPEC_ERROR.to_string(), m.clone()))
            .collect();
        outcome.operation_state = fail_pending(invalid.join("; "));
        w.status(&outcome).await?;
        w.acknowledge(app.operation.is_some(), ack_refresh).await?;
        return Ok(Next::Periodic);
    };

    // 2. Desired state: a running operation stays on the revision it started with.
    let desired_level = if pending_op.is_some() {
        level.max(Level::Refresh)
    } else {
        level
    };
    // A refresh someone asked for (annotation, webhook, sync request) needs a resolve that
    // began after the request; periodic refreshes may use the revision cache.
    let fresh_after = if ack_refresh {
        Some(ctx.memo(key).refresh_requested.unwrap_or_else(Instant::now))
    } else if op.is_some() || level == Level::Hard {
        Some(Instant::now())
    } else {
        None
    };
    let pinned = pinned_revisions(&app, running.as_ref(), op.as_ref());
    let cpu = &ctx.metrics.phase_cpu;
    let caps = cpu
        .timed(CpuPhase::Render, capabilities_for(ctx, &app, &cluster))
        .await;
    let desired = match cpu
        .timed(
            CpuPhase::Render,
            desired(
                ctx,
                &app,
                key,
                desired_level,
                pinned.as_deref(),
                fresh_after,
                caps.as_deref(),
            ),
        )
        .await
    {
        Ok(d) => d,
        Err(e) => {
            tracing::warn!(app = %key, error = %e, "could not get desired state");
            outcome.conditions = vec![(
                COMPARISON_ERROR.to_string(),
                format!("failed to load target state: {e}"),
            )];
            // A running operation waits for the render; a new one fails now.
            if running.is_none() {
                outcome.operation_state =
                    fail_pending(format!("ComparisonError: failed to load target state: {e}"));
            }
            w.status(&outcome).await?;
            w.acknowledge(app.operation.is_some() && running.is_none(), ack_refresh)
                .await?;
            return Ok(Next::Backoff);
        }
    };
    outcome.revision = desired.revisions.first().cloned();
    outcome.revisions = if multi_source(&app) {
        desired.revisions.clone()
    } else {
        Vec::new()
    };
    outcome.source_type = Some(desired.source_type.clone()).filter(|s| !s.is_empty());

    // 3. Live state, and the comparison.
    let settings = crate::settings::current();
    let ignore = ignore_rules(&app, &settings);
    let (cache, normalized) = match cpu
        .timed(
            CpuPhase::Live,
            live_state(
                ctx, &app, key, &project, &cluster, &desired, &settings, &ignore,
            ),
        )
        .await?
    {
        Ok(x) => x,
        Err(e) => {
            tracing::warn!(app = %key, error = %e, "live state unavailable");
            outcome.cluster_unreachable = matches!(e, CacheError::Unreachable { .. });
            outcome.conditions = vec![(COMPARISON_ERROR.to_string(), e.to_string())];
            // A running operation waits for the cluster; a new one fails now.
            if running.is_none() {
                outcome.operation_state = fail_pending(e.to_string());
            }
            w.status(&outcome).await?;
            w.acknowledge(app.operation.is_some() && running.is_none(), ack_refresh)
                .await?;
            return Ok(Next::Backoff);
        }
    };
    crate::postdelete::keep_finalizers(
        ctx,
        &app,
        key,
        !crate::postdelete::post_delete_hooks(&normalized.hooks).is_empty(),
    )
    .await?;
    let live = cpu.scope(CpuPhase::Live, || cache.live_for(key));
    let (mut cmp, shared, mut conditions) = cpu.scope(CpuPhase::Diff, || {
        let cmp = tracing::info_span!("diff")
            .in_scope(|| compare_with(&normalized.resources, &live, FIELD_MANAGER, &ignore));
        let shared = shared_resources(&cache, &normalized, key);
        let conditions = comparison_conditions(&normalized, &cmp, &shared);
        (cmp, shared, conditions)
    });
    if let Some(orphaned) = &project.spec.orphaned_resources {
        conditions.extend(orphan_condition(
            ctx,
            key,
            &cache,
            &project,
            orphaned,
            &dest_namespace(&app),
            &cmp,
        ));
    }

    // 4. The operation: continue the running one, start the requested one, or what auto-sync
    // decides; then advance it one step.
    let revision = outcome.revision.clone().unwrap_or_default();
    let resumed = running.is_some();
    let chosen = match running {
        Some(r) => Chosen {
            state: Some(r),
            ..Default::default()
        },
        None => choose_operation(
            &app,
            key,
            op,
            last.as_ref(),
            &cmp,
            &normalized,
            &shared,
            &revision,
            &desired,
        ),
    };
    conditions.extend(chosen.condition);
    outcome.operation_state = chosen.failed;
    let mut next = chosen.next.unwrap_or(Next::Periodic);
    let mut ack_operation = app.operation.is_some() && chosen.state.is_none();
    if let Some(st) = chosen.state {
        if !resumed {
            let started = Outcome {
                comparison: Some(&cmp),
                operation_state: Some(st.clone()),
                conditions: conditions.clone(),
                ..outcome.clone()
            };
            cpu.timed(CpuPhase::Status, w.write_status(&started, false))
                .await?;
        }
        let env = syncop::OpEnv {
            cache: &cache,
            key,
            cmp: &cmp,
            hooks: &normalized.hooks,
            live: &live,
            policy: app.spec.sync_policy.as_ref(),
            dest_ns: &dest_namespace(&app),
            managed_namespace_metadata: app
                .spec
                .sync_policy
                .as_ref()
                .and_then(|p| p.managed_namespace_metadata.as_ref()),
            cfg: &ctx.cfg.operations,
            ignore: &ignore,
            permit: &|| ctx.permit(&cluster.server),
        };
        let Some(ran) = cpu
            .timed(
                CpuPhase::Sync,
                run_operation(
                    ctx,
                    &app,
                    key,
                    &env,
                    st,
                    resumed,
                    &mut outcome,
                    &mut conditions,
                ),
            )
            .await
        else {
            // Not ours any more: record nothing; the new owner resumes the operation.
            tracing::info!(app = %key, "sync paused: the cluster moved to another replica");
            return Ok(Next::Skipped);
        };
        next = ran.next;
        ack_operation |= ran.completed && app.operation.is_some();
        if ran.wrote {
            // Our writes went through the cache: compare again for an up-to-date status.
            cmp = cpu.scope(CpuPhase::Diff, || {
                compare_with(
                    &normalized.resources,
                    &cache.live_for(key),
                    FIELD_MANAGER,
                    &ignore,
                )
            });
        }
    }
    outcome.conditions = conditions;
    cpu.timed(
        CpuPhase::Status,
        finish(&w, &outcome, &cmp, ack_operation, ack_refresh),
    )
    .await?;
    Ok(next)
}

/// The app's `ignoreDifferences` rules (refused ones are reported by `validate`), then the
/// system-level ones of `argocd-cm`.
pub(crate) fn ignore_rules(
    app: &Application,
    settings: &Settings,
) -> Vec<crate::ignore::IgnoreRule> {
    let mut rules =
        crate::ignore::parse(app.spec.ignore_differences.as_deref().unwrap_or_default())
            .unwrap_or_default();
    rules.extend_from_slice(settings.ignore_rules());
    rules
}

/// What a rollback syncs instead of the spec's sources.
enum Rollback {
    Single(Box<ApplicationSource>),
    Multi(Vec<ApplicationSource>),
}

/// The source(s) an operation asks to sync instead of the spec's (a rollback): a multi-source
/// history entry's `sources`, else its `source`.
fn operation_sources(op: &Operation) -> Option<Rollback> {
    let sync = op.sync.as_ref()?;
    if let Some(srcs) = sync.sources.as_ref().filter(|s| !s.is_empty()) {
        return srcs
            .iter()
            .map(|s| serde_json::from_value(s.clone()).ok())
            .collect::<Option<Vec<_>>>()
            .map(Rollback::Multi);
    }
    serde_json::from_value(sync.source.clone()?)
        .ok()
        .map(|s| Rollback::Single(Box::new(s)))
}

/// The app's last operation state, and the operation in progress (any replica may have
/// started it). A manual operation whose `operation` was removed is to be terminated.
fn operation_in_progress(
    app: &Application,
    op: Option<&Operation>,
) -> (Option<OperationState>, Option<OperationState>) {
    let last = app
        .status
        .as_ref()
        .and_then(|s| s.operation_state.as_ref())
        .and_then(OperationState::from_value);
    let mut running = last.clone().filter(|l| !l.phase.completed());
    if let Some(r) = running.as_mut()
        && r.phase == Phase::Running
        && !r.operation.initiated_by.automated
        && op.is_none()
    {
        r.phase = Phase::Terminating;
    }
    (last, running)
}

/// The revisions to render when they are not the spec's, one per source of [`all_sources`]
/// (empty: the spec's): those a running operation started with, else those an operation asks
/// for (a multi-source sync's `revisions`, for every source in order or, with
/// `sourcePositions`, for the sources at those 1-based positions).
fn pinned_revisions(
    app: &Application,
    running: Option<&OperationState>,
    op: Option<&Operation>,
) -> Option<Vec<String>> {
    if !multi_source(app) {
        return pinned_revision(app, running, op).map(|r| vec![r]);
    }
    let n = all_sources(app).len();
    if let Some(r) = running
        .and_then(|r| r.sync_result.as_ref())
        .filter(|r| r.revisions.len() == n)
    {
        return Some(r.revisions.clone());
    }
    let sync = op.and_then(|o| o.sync.as_ref())?;
    let revisions = sync.revisions.clone().unwrap_or_default();
    let mut pins = vec![String::new(); n];
    match sync.source_positions.as_deref().filter(|p| !p.is_empty()) {
        Some(positions) => {
            for (p, rev) in positions.iter().zip(revisions) {
                if let Some(slot) = usize::try_from(*p)
                    .ok()
                    .and_then(|p| p.checked_sub(1))
                    .and_then(|i| pins.get_mut(i))
                {
                    *slot = rev;
                }
            }
        }
        None => {
            for (slot, rev) in pins.iter_mut().zip(revisions) {
                *slot = rev;
            }
        }
    }
    pins.iter().any(|p| !p.is_empty()).then_some(pins)
}

/// The revision to render when it is not the spec's: the one a running operation started
/// with, else the one an operation asks for (single-source apps).
fn pinned_revision(
    app: &Application,
    running: Option<&OperationState>,
    op: Option<&Operation>,
) -> Option<String> {
    running
        .and_then(|r| r.revision().map(str::to_string))
        .or_else(|| {
            op.and_then(|o| o.sync.as_ref())
                .and_then(|s| s.revision.clone())
        })
        .filter(|r| !r.is_empty())
        .filter(|r| {
            let srcs = sources(app);
            srcs.len() == 1 && srcs[0].target_revision.as_deref().unwrap_or("HEAD") != *r
        })
}

/// The cluster's cache, and the desired objects normalized against it (watches started).
/// The outer error is the controller's own; the inner one a cluster problem to report.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn live_state(
    ctx: &Arc<Context>,
    app: &Application,
    key: &AppKey,
    project: &crate::types::AppProject,
    cluster: &Cluster,
    desired: &DesiredMemo,
    settings: &Settings,
    ignore: &[crate::ignore::IgnoreRule],
) -> Result<Result<(Arc<ClusterCache>, Normalized), CacheError>, ReconcileError> {
    let cache = cache_for(ctx, cluster)?;
    // Field managers the rules name: kept from now on, and kinds listed before they were
    // are listed again (their cached objects lack those managers' managedFields).
    if ignore.iter().any(|r| !r.managers.is_empty()) {
        crate::ignore::keep_managers(ignore);
        cache.relist_for_managers(ignore);
    }
    let ready = async {
        cache.reachability()?;
        let normalized = normalize(
            &cache,
            &project.spec,
            project_name(app),
            cluster,
            key,
            &dest_namespace(app),
            &desired.objects,
            settings,
        )
        .await?;
        let mut all = normalized.resources.clone();
        all.extend(normalized.hooks.iter().cloned());
        let mut kinds = kinds_of(&all, app.status.as_ref());
        kinds.retain(|(api_version, kind)| {
            !settings.excluded(group_version(api_version).0, kind, &cluster.server)
        });
        cache
            .ensure_watched(&kinds, ctx.cfg.cache_sync_timeout)
            .await?;
        Ok::<_, CacheError>(normalized)
    }
    .await;
    Ok(ready.map(|n| (cache, n)))
}

/// Objects in the app's destination namespace that no app tracks (Argo CD's orphaned
/// resources): counted in a gauge, and with `warn` reported as `OrphanedResourceWarning`.
/// Nothing until the cluster's orphan index has listed every kind once.
fn orphan_condition(
    ctx: &Context,
    key: &AppKey,
    cache: &Arc<ClusterCache>,
    project: &crate::types::AppProject,
    policy: &crate::types::project::OrphanedResources,
    namespace: &str,
    cmp: &Comparison,
) -> Option<(String, String)> {
    let candidates = cache.orphans().candidates(namespace)?;
    let settings = crate::settings::current();
    let ours: BTreeSet<&ResourceKey> = cmp.resources.iter().map(|r| &r.key).collect();
    let n = candidates
        .iter()
        .filter(|k| {
            !ours.contains(k)
                && !crate::live::orphans::known_exception(k)
                && !settings.excluded(&k.group, &k.kind, &cache.server)
                && !policy.ignore.iter().flatten().any(|i| i.matches(k))
                && crate::project::kind_allowed(&project.spec, &k.group, &k.kind, true)
        })
        .count();
    let proj = project.metadata.name.as_deref().unwrap_or("default");
    crate::metrics_argocd::set_orphaned(ctx, key, proj, n);
    (policy.warn == Some(true) && n > 0).then(|| {
        (
            ORPHANED_RESOURCE_WARNING.to_string(),
            format!("Application has {n} orphaned resources"),
        )
    })
}

/// Desired objects another app owns (Argo CD's SharedResourceWarning).
fn shared_resources(cache: &ClusterCache, normalized: &Normalized, key: &AppKey) -> Vec<String> {
    normalized
        .resources
        .iter()
        .filter_map(|o| {
            let k = ResourceKey::of(o)?;
            let other = cache.owner_of(&k).filter(|other| other != key)?;
            Some(format!(
                "{}/{} is part of applications {key} and {other}",
                k.kind, k.name
            ))
        })
        .collect()
}

/// The conditions a comparison raises: refused objects, repeated ones, unserved kinds,
/// shared ones.
fn comparison_conditions(
    normalized: &Normalized,
    cmp: &Comparison,
    shared: &[String],
) -> Vec<(String, String)> {
    let of = |t: &str, ms: &[String]| -> Vec<(String, String)> {
        ms.iter().map(|m| (t.to_string(), m.clone())).collect()
    };
    [
        of(INVALID_SPEC_ERROR, &normalized.refusals),
        of(REPEATED_RESOURCE_WARNING, &cmp.warnings),
        of(COMPARISON_ERROR, &normalized.unknown_kinds),
        of(SHARED_RESOURCE_WARNING, shared),
        of(EXCLUDED_RESOURCE_WARNING, &normalized.excluded),
    ]
    .concat()
}

/// What to do when no operation runs: start the requested one (or refuse it), or what
/// auto-sync decides.
#[derive(Default)]
struct Chosen {
    state: Option<OperationState>,
    /// A requested operation refused outright.
    failed: Option<OperationState>,
    next: Option<Next>,
    condition: Option<(String, String)>,
}

#[allow(clippy::too_many_arguments)]
fn choose_operation(
    app: &Application,
    key: &AppKey,
    op: Option<Operation>,
    last: Option<&OperationState>,
    cmp: &Comparison,
    normalized: &Normalized,
    shared: &[String],
    revision: &str,
    desired: &DesiredMemo,
) -> Chosen {
    let policy = app.spec.sync_policy.as_ref();
    let refusals = &normalized.refusals;
    let multi = multi_source(app);
    let start = |op: Operation| {
        if multi {
            syncop::start(
                op,
                revision,
                desired.revisions.clone(),
                None,
                Some(
                    all_sources(app)
                        .iter()
                        .filter_map(|s| serde_json::to_value(s).ok())
                        .collect(),
                ),
            )
        } else {
            syncop::start(
                op,
                revision,
                Vec::new(),
                sources(app)
                    .first()
                    .and_then(|s| serde_json::to_value(s).ok()),
                None,
            )
        }
    };
    // What auto-sync compares with the last sync: every source's revision of a multi-source
    // app (a new values commit is a new revision), else the revision.
    let revision_key = if multi {
        crate::operation::revision_key(&desired.revisions)
    } else {
        revision.to_string()
    };
    if let Some(op) = op {
        let allow_empty = policy
            .and_then(|p| p.automated.as_ref())
            .is_some_and(|a| a.allow_empty);
        let refused = if !refusals.is_empty() {
            Some(refusals.join("; "))
        } else if !shared.is_empty()
            && (op.has_option("FailOnSharedResource")
                || policy.is_some_and(|p| p.option("FailOnSharedResource")))
        {
            Some(format!("Shared resource found: {}", shared.join("; ")))
        } else if cmp.desired_count() == 0 && cmp.live_count() > 0 && !allow_empty {
            Some("refusing to sync: Git renders no objects and the sync would delete every resource of the application (set syncPolicy.automated.allowEmpty to allow it)".into())
        } else {
            None
        };
        return match refused {
            Some(m) => Chosen {
                failed: Some(failed_op(op, m)),
                ..Default::default()
            },
            None => Chosen {
                state: Some(start(op)),
                ..Default::default()
            },
        };
    }
    if !refusals.is_empty() {
        return Chosen::default();
    }
    let since_last = last
        .and_then(|l| l.finished_at.as_deref())
        .and_then(|f| status::seconds_since(f, jiff::Timestamp::now()));
    match decide_auto_sync(policy, cmp, &revision_key, last, since_last) {
        AutoSync::Sync { prune } => Chosen {
            state: Some(start(Operation {
                sync: Some(SyncOperation {
                    revision: (!multi).then(|| revision.to_string()),
                    revisions: multi.then(|| desired.revisions.clone()),
                    prune,
                    sync_options: policy.and_then(|p| p.sync_options.clone()),
                    ..Default::default()
                }),
                initiated_by: InitiatedBy {
                    username: None,
                    automated: true,
                },
                retry: None,
                info: Vec::new(),
            })),
            ..Default::default()
        },
        AutoSync::WaitSeconds(s) => Chosen {
            next: Some(Next::After(Duration::from_secs(s.max(1)))),
            ..Default::default()
        },
        AutoSync::Refuse { reason, condition } => {
            if !condition {
                tracing::debug!(app = %key, %reason, "auto-sync skipped");
            }
            Chosen {
                condition: condition.then(|| (SYNC_ERROR.to_string(), reason)),
                ..Default::default()
            }
        }
        AutoSync::Nothing => Chosen::default(),
    }
}

/// What one step of an operation did.
struct Ran {
    next: Next,
    completed: bool,
    /// The step wrote to the cluster (the comparison is stale).
    wrote: bool,
}

/// Advance the operation `st` one step (unless the pause between waves still runs), with its
/// events, metrics and history; `None` when the cluster moved to another replica mid-step.
#[allow(clippy::too_many_arguments)]
async fn run_operation(
    ctx: &Arc<Context>,
    app: &Application,
    key: &AppKey,
    env: &syncop::OpEnv<'_>,
    st: OperationState,
    resumed: bool,
    outcome: &mut Outcome<'_>,
    conditions: &mut Vec<(String, String)>,
) -> Option<Ran> {
    // Between two waves: the pause after the earlier one is not over yet.
    if let Some(left) = ctx
        .memo(key)
        .next_wave_at
        .and_then(|t| t.checked_duration_since(Instant::now()))
        .filter(|_| st.phase == Phase::Running)
    {
        outcome.operation_state = Some(st);
        return Some(Ran {
            next: Next::After(left),
            completed: false,
            wrote: false,
        });
    }
    let revision = st.revision().unwrap_or_default().to_string();
    if !resumed {
        let note = if st.operation.initiated_by.automated {
            format!("Initiated automated sync to '{revision}'")
        } else if st.operation.selective() {
            format!("initiated partial sync to {revision}")
        } else {
            format!("initiated sync to {revision}")
        };
        ctx.events
            .emit(app, false, crate::events::OPERATION_STARTED, note);
    }
    let t0 = Instant::now();
    let advanced = syncop::advance(env, st)
        .instrument(tracing::info_span!("apply"))
        .await
        .ok()?;
    let st = advanced.state;
    ctx.update_memo(key, |m| {
        m.next_wave_at = advanced
            .wave_applied
            .then(|| Instant::now() + advanced.wait)
    });
    let completed = st.phase.completed();
    let next = if !completed {
        Next::After(advanced.wait)
    } else {
        record_finished(ctx, app, key, &st, outcome, conditions);
        let what = if st.operation.selective() {
            "Partial sync operation"
        } else {
            "Sync operation"
        };
        let (warning, note) = if st.phase == Phase::Succeeded {
            (false, format!("{what} to {revision} succeeded"))
        } else {
            (true, format!("{what} to {revision} failed: {}", st.message))
        };
        ctx.events
            .emit(app, warning, crate::events::OPERATION_COMPLETED, note);
        tracing::info!(app = %key, %revision, phase = st.phase.as_str(), message = %st.message,
            automated = st.operation.initiated_by.automated,
            ms = t0.elapsed().as_millis() as u64, "sync finished");
        if st.phase == Phase::Succeeded {
            Next::Periodic
        } else {
            Next::Backoff
        }
    };
    outcome.operation_state = Some(st);
    Some(Ran {
        next,
        completed,
        wrote: true,
    })
}

/// A finished operation: metrics, the history entry of a successful full sync, and the
/// condition of a failed automated one.
fn record_finished(
    ctx: &Context,
    app: &Application,
    key: &AppKey,
    st: &OperationState,
    outcome: &mut Outcome<'_>,
    conditions: &mut Vec<(String, String)>,
) {
    let automated = st.operation.initiated_by.automated;
    let phase = st.phase.as_str();
    ctx.metrics
        .syncs
        .get_or_create(&SyncLabels {
            phase,
            trigger: if automated { "automated" } else { "manual" },
        })
        .inc();
    crate::metrics_argocd::count_sync(ctx, app, key, st);
    let revision = st.revision().unwrap_or_default().to_string();
    if st.phase == Phase::Succeeded && !st.operation.dry_run() && !st.operation.selective() {
        let result = st.sync_result.as_ref();
        outcome.history = Some(HistoryEntry {
            revision: revision.clone(),
            source: result.and_then(|r| r.source.clone()),
            revisions: result.map(|r| r.revisions.clone()).unwrap_or_default(),
            sources: result.and_then(|r| r.sources.clone()),
            deployed_at: now_s(),
            deploy_started_at: st.started_at.clone(),
            initiated_by: serde_json::to_value(&st.operation.initiated_by).unwrap_or(Value::Null),
        });
    }
    if st.phase != Phase::Succeeded && automated {
        conditions.push((
            SYNC_ERROR.to_string(),
            format!("Failed sync attempt to {revision}: {}", st.message),
        ));
    }
}

async fn finish(
    w: &Writer<'_>,
    outcome: &Outcome<'_>,
    cmp: &Comparison,
    ack_operation: bool,
    ack_refresh: bool,
) -> Result<(), ReconcileError> {
    let o = Outcome {
        comparison: Some(cmp),
        ..outcome.clone()
    };
    w.status(&o).await?;
    w.acknowledge(ack_operation, ack_refresh).await
}

/// Deletion: with Argo CD's resources finalizer, delete the app's resources first (never
/// when the cluster cannot be reached), then release the Application.
async fn finalize(
    ctx: &Arc<Context>,
    w: &Writer<'_>,
    cluster: Option<&Cluster>,
) -> Result<Next, ReconcileError> {
    let app = w.app;
    let key = w.key;
    let cascade: Vec<&String> = app
        .metadata
        .finalizers
        .iter()
        .flatten()
        .filter(|f| {
            [
                RESOURCES_FINALIZER,
                RESOURCES_FINALIZER_FOREGROUND,
                RESOURCES_FINALIZER_BACKGROUND,
            ]
            .contains(&f.as_str())
        })
        .collect();
    if cascade.is_empty() {
        // The resources are gone: the PostDelete hooks' turn (when the app has them).
        match cluster {
            Some(cluster) => {
                let cache = cache_for(ctx, cluster)?;
                let hooks = crate::postdelete::render_hooks(ctx, app, key, cluster, &cache).await;
                if let Some(next) =
                    crate::postdelete::finalize(ctx, app, key, cluster, &cache, hooks).await?
                {
                    return Ok(next);
                }
            }
            // No destination to run them on: Argo CD drops the finalizers.
            None => crate::postdelete::keep_finalizers(ctx, app, key, false).await?,
        }
        ctx.forget(key);
        return Ok(Next::Done);
    }
    // Background only for the `/background` variant; Foreground otherwise (Argo CD).
    let propagation = if cascade
        .iter()
        .any(|f| f.as_str() == RESOURCES_FINALIZER_BACKGROUND)
    {
        "background"
    } else {
        "foreground"
    };
    let release = || async {
        let finalizers: Vec<String> = app
            .metadata
            .finalizers
            .iter()
            .flatten()
            .filter(|f| !cascade.contains(f))
            .cloned()
            .collect();
        let api: Api<Application> = Api::namespaced(ctx.control.clone(), &key.namespace);
        api.patch(
            &key.name,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"finalizers": finalizers, "resourceVersion": app.metadata.resource_version}})),
        )
        .await
        .map_err(|source| ReconcileError::Patch {
            app: key.to_string(),
            source,
        })
    };
    let Some(cluster) = cluster else {
        let outcome = Outcome {
            conditions: vec![(
                "DeletionError".into(),
                "the destination cluster is unknown; its resources cannot be deleted (remove the finalizer to orphan them)".into(),
            )],
            ..Default::default()
        };
        w.status(&outcome).await?;
        return Ok(Next::Backoff);
    };
    // A cluster scoped to another project is never written to, deletions included.
    if !cluster.serves_project(project_name(app)) {
        let outcome = Outcome {
            conditions: vec![(
                "DeletionError".into(),
                format!(
                    "the destination cluster '{}' is scoped to project '{}'; resources of project '{}' cannot be deleted there (remove the finalizer to orphan them)",
                    cluster.name,
                    cluster.project.as_deref().unwrap_or_default(),
                    project_name(app)
                ),
            )],
            ..Default::default()
        };
        w.status(&outcome).await?;
        return Ok(Next::Backoff);
    }
    let cache = cache_for(ctx, cluster)?;
    let kinds = kinds_of(&[], app.status.as_ref());
    if let Err(e) = cache
        .ensure_watched(&kinds, ctx.cfg.cache_sync_timeout)
        .await
    {
        let outcome = Outcome {
            conditions: vec![("DeletionError".into(), e.to_string())],
            cluster_unreachable: matches!(e, CacheError::Unreachable { .. }),
            ..Default::default()
        };
        w.status(&outcome).await?;
        return Ok(Next::Backoff);
    }
    // Argo CD leaves CRDs, `Delete=false` and `helm.sh/resource-policy: keep` objects behind
    // (`Prune=false` does not protect from the app's deletion, as in Argo CD); the rest goes,
    // highest sync wave first, each wave once the previous one is gone.
    let keep = |obj: &Value| {
        obj.get("kind").and_then(Value::as_str) == Some("CustomResourceDefinition")
            || crate::plan::has_sync_option(obj, "Delete", "false")
            || obj
                .pointer("/metadata/annotations")
                .and_then(|a| a.get("helm.sh/resource-policy"))
                .and_then(Value::as_str)
                == Some("keep")
    };
    let live = cache.live_for(key);
    let doomed: Vec<(&ResourceKey, &Arc<Value>)> = live.iter().filter(|(_, o)| !keep(o)).collect();
    if doomed.is_empty() {
        release().await?;
        tracing::info!(app = %key, kept = live.len(), "resources deleted; finalizer removed");
        let post_delete = app.metadata.finalizers.iter().flatten().any(|f| {
            f == crate::postdelete::POST_DELETE_FINALIZER
                || f == crate::postdelete::POST_DELETE_CLEANUP_FINALIZER
        });
        if post_delete {
            // The PostDelete hooks come next.
            return Ok(Next::After(Duration::ZERO));
        }
        ctx.forget(key);
        return Ok(Next::Done);
    }
    if doomed
        .iter()
        .any(|(_, o)| o.pointer("/metadata/deletionTimestamp").is_some())
    {
        return Ok(Next::After(Duration::from_secs(1)));
    }
    let top = doomed
        .iter()
        .map(|(_, o)| crate::hooks::wave(o))
        .max()
        .unwrap_or(0);
    let batch: Vec<(ResourceKey, String)> = doomed
        .iter()
        .filter(|(_, o)| crate::hooks::wave(o) == top)
        .map(|(k, o)| {
            (
                (*k).clone(),
                o.get("apiVersion")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string(),
            )
        })
        .collect();
    let server = cluster.server.clone();
    let ctx2 = ctx.clone();
    match sync::delete_all(&cache, &batch, propagation, &move || ctx2.permit(&server)).await {
        Ok(failed) => {
            tracing::info!(app = %key, wave = top, deleted = batch.len() - failed, failed, "deleting application resources");
        }
        Err(sync::HandedOver) => return Ok(Next::Skipped),
    }
    Ok(Next::After(Duration::from_secs(1)))
}

/// Keys of resources an app had, from its status (used by deletion and tests).
pub fn status_resource_keys(st: &ApplicationStatus) -> Vec<ResourceKey> {
    st.resources
        .iter()
        .flatten()
        .map(|r| ResourceKey {
            group: r.group.clone(),
            kind: r.kind.clone(),
            namespace: r.namespace.clone().unwrap_or_default(),
            name: r.name.clone(),
        })
        .collect()
}

/// Record a reconcile's outcome in metrics and return when (and at which level) to look again.
pub fn schedule(
    ctx: &Context,
    key: &AppKey,
    level: Level,
    res: &Result<Next, ReconcileError>,
    took: Duration,
) -> Option<(Duration, Level)> {
    if matches!(res, Ok(Next::Skipped)) {
        return None;
    }
    ctx.metrics.reconcile_seconds.observe(took.as_secs_f64());
    crate::metrics_argocd::observe_reconcile(ctx, key, took.as_secs_f64());
    let result = match res {
        Ok(Next::Backoff) | Err(_) => "error",
        Ok(_) => "ok",
    };
    ctx.metrics
        .reconciles
        .get_or_create(&ReconcileLabels {
            level: level.as_str(),
            result,
        })
        .inc();
    ctx.metrics.reconciles_done.inc();
    match res {
        Ok(Next::Done | Next::Skipped) => None,
        Ok(Next::Periodic) => {
            ctx.update_memo(key, |m| m.failures = 0);
            Some((
                ctx.cfg.jittered_refresh(rand::random::<f64>()),
                Level::Refresh,
            ))
        }
        Ok(Next::After(d)) => {
            ctx.update_memo(key, |m| m.failures = 0);
            Some((*d, Level::Compare))
        }
        Ok(Next::Backoff) | Err(_) => {
            if let Err(e) = res {
                tracing::warn!(app = %key, error = %e, "reconcile failed");
            }
            let mut failures = 0;
            ctx.update_memo(key, |m| {
                failures = m.failures;
                m.failures = m.failures.saturating_add(1);
            });
            Some((ctx.cfg.backoff(failures), Level::Refresh))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::project::default_project;

    fn mk_app(yaml: &str) -> Application {
        serde_yaml::from_str(yaml).expect("app")
    }

    /// The control-plane namespace of these tests.
    const NS: &str = "argocd";

    #[test]
    fn an_app_outside_the_control_plane_needs_a_project_listing_its_namespace() {
        let team = mk_app(&APP.replace("namespace: argocd}", "namespace: team-a}"));
        let errs = validate(&team, Some(&default_project()), Some(&in_cluster()), NS);
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert!(
            errs[0].contains("not permitted to use project 'default'"),
            "{errs:?}"
        );
        let mut p = default_project();
        p.source_namespaces = Some(vec!["team-*".into()]);
        assert!(validate(&team, Some(&p), Some(&in_cluster()), NS).is_empty());
        let other = mk_app(&APP.replace("namespace: argocd}", "namespace: payments}"));
        assert!(!validate(&other, Some(&p), Some(&in_cluster()), NS).is_empty());
        // The control-plane namespace never needs listing.
        assert!(
            validate(
                &mk_app(APP),
                Some(&default_project()),
                Some(&in_cluster()),
                NS
            )
            .is_empty()
        );
    }

    const APP: &str = r#"
metadata: {name: web, namespace: argocd}
spec:
  project: default
  source: {repoURL: https://github.com/my-org/web.git, targetRevision: main, path: k8s}
  destination: {server: https://kubernetes.default.svc, namespace: web}
"#;

    fn in_cluster() -> Cluster {
        Cluster::in_cluster()
    }

    #[test]
    fn fields_flotilla_does_not_honour_are_refused_by_name() {
        let app = mk_app(&APP.replace(
            "path: k8s}",
            "path: k8s, kustomize: {patches: [{path: p.yaml}]}}",
        ));
        let errs = validate(&app, Some(&default_project()), Some(&in_cluster()), NS);
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert!(
            errs[0].starts_with("spec.source.kustomize.patches "),
            "{errs:?}"
        );
        let mut p = default_project();
        p.unsupported
            .insert("syncWindows".into(), json!([{"kind": "deny"}]));
        let errs = validate(&mk_app(APP), Some(&p), Some(&in_cluster()), NS);
        assert!(errs[0].contains("spec.syncWindows"), "{errs:?}");
    }

    #[test]
    fn a_valid_app_has_no_errors() {
        assert!(
            validate(
                &mk_app(APP),
                Some(&default_project()),
                Some(&in_cluster()),
                NS
            )
            .is_empty()
        );
    }

    #[test]
    fn missing_project_unknown_cluster_and_refused_repo_are_reported() {
        let app = mk_app(APP);
        let errs = validate(&app, None, Some(&in_cluster()), NS);
        assert!(errs[0].contains("does not exist"), "{errs:?}");
        let errs = validate(&app, Some(&default_project()), None, NS);
        assert!(errs[0].contains("not a known cluster"), "{errs:?}");
        let mut p = default_project();
        p.source_repos = Some(vec!["https://github.com/other/*".into()]);
        let errs = validate(&app, Some(&p), Some(&in_cluster()), NS);
        assert!(errs[0].contains("not permitted"), "{errs:?}");
    }

    #[test]
    fn dot_segment_repo_urls_are_refused_with_a_clear_redacted_message() {
        let mut p = default_project();
        p.source_repos = Some(vec!["https://github.com/my-org/*".into()]);
        for url in [
            "https://github.com/my-org/../evil/repo",
            "https://user:TOKEN@github.com/my-org/%2e%2e/evil/repo",
        ] {
            let app = mk_app(&APP.replace("https://github.com/my-org/web.git", url));
            let errs = validate(&app, Some(&p), Some(&in_cluster()), NS);
            assert_eq!(errs.len(), 1, "{errs:?}");
            assert!(errs[0].contains("'.' or '..' path segments"), "{errs:?}");
            assert!(!errs[0].contains("TOKEN"), "{errs:?}");
            // Refused even by a project allowing every repository.
            assert!(!validate(&app, Some(&default_project()), Some(&in_cluster()), NS).is_empty());
        }
        let app = mk_app(&APP.replace(
            "https://github.com/my-org/web.git",
            "https://user:TOKEN@github.com/other/web.git",
        ));
        let errs = validate(&app, Some(&p), Some(&in_cluster()), NS);
        assert!(
            errs[0].contains("https://***@github.com/other/web.git"),
            "{errs:?}"
        );
    }

    #[test]
    fn a_project_scoped_cluster_is_refused_to_other_projects() {
        let scoped = Cluster {
            name: "team-a-prod".into(),
            server: "https://team-a:6443".into(),
            project: Some("team-a".into()),
            ..in_cluster()
        };
        let other = mk_app(APP); // project: default
        let errs = validate(&other, Some(&default_project()), Some(&scoped), NS);
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert!(
            errs[0].contains("cluster 'team-a-prod'")
                && errs[0].contains("scoped to project 'team-a'"),
            "{errs:?}"
        );
        let own = mk_app(&APP.replace("project: default", "project: team-a"));
        assert!(validate(&own, Some(&default_project()), Some(&scoped), NS).is_empty());
    }

    #[test]
    fn repository_credentials_follow_the_application_project() {
        use k8s_openapi::ByteString;
        let mut secret = k8s_openapi::api::core::v1::Secret::default();
        secret.metadata.labels = Some(
            [(
                "argocd.argoproj.io/secret-type".to_string(),
                crate::repos::REPOSITORY.to_string(),
            )]
            .into(),
        );
        secret.data = Some(
            [
                ("url", "https://github.com/my-org/web.git"),
                ("password", "team-a-only"),
                ("project", "team-a"),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), ByteString(v.as_bytes().to_vec())))
            .collect(),
        );
        let creds = RepoCredsIndex::from_secrets([&secret]);
        let other = mk_app(APP);
        let own = mk_app(&APP.replace("project: default", "project: team-a"));
        assert_eq!(repo_for(&other, &sources(&other)[0], &creds).password, "");
        assert_eq!(
            repo_for(&own, &sources(&own)[0], &creds).password,
            "team-a-only"
        );
    }

    #[test]
    fn multi_source_skips_ref_only_sources() {
        let app = mk_app(
            r#"
metadata: {name: web, namespace: argocd}
spec:
  sources:
  - {repoURL: https://a, path: x}
  - {repoURL: https://values, ref: values}
  destination: {server: https://kubernetes.default.svc}
"#,
        );
        let s = sources(&app);
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].repo_url, "https://a");
        assert_eq!(dest_namespace(&app), "default");
    }

    const MULTI: &str = r#"
metadata: {name: web, namespace: argocd}
spec:
  sources:
  - repoURL: https://charts.example
    chart: web
    targetRevision: 1.0.0
    helm:
      valueFiles: [$values/envs/prod.yaml, values.yaml, $values/envs/extra.yaml]
      fileParameters: [{name: tls, path: $certs/tls.pem}]
  - {repoURL: https://git.example/values, targetRevision: main, ref: values}
  - {repoURL: https://git.example/certs, targetRevision: v2, ref: certs, path: manifests}
  destination: {server: https://kubernetes.default.svc}
"#;

    #[test]
    fn ref_sources_are_found_by_name_and_unknown_ones_named() {
        let app = mk_app(MULTI);
        let all = all_sources(&app);
        assert_eq!(all.len(), 3);
        assert!(multi_source(&app));
        assert!(is_ref_only(&all[1]) && !is_ref_only(&all[2]));
        // A ref source with a path is rendered too.
        assert_eq!(sources(&app).len(), 2);
        assert_eq!(
            refs_read(&all[0], &all),
            Ok(vec![("values".to_string(), 1), ("certs".to_string(), 2)])
        );
        assert_eq!(refs_read(&all[2], &all), Ok(Vec::new()));
        let mut unknown = all[0].clone();
        unknown.helm = Some(json!({"valueFiles": ["$vals/prod.yaml"]}));
        assert_eq!(
            refs_read(&unknown, &all),
            Err(
                "source referenced \"$vals\", which is not one of the available sources ($certs, $values)"
                    .to_string()
            )
        );
        assert!(
            refs_read(&unknown, &all[..1])
                .is_err_and(|e| e.contains("but no source has a 'ref' field defined"))
        );
        let mut chart_ref = all.clone();
        chart_ref[1].chart = Some("values".into());
        assert!(refs_read(&all[0], &chart_ref).is_err_and(|e| e.contains("'chart' field defined")));
        // A ref-only source's repository is checked against the project like any other.
        let mut project = default_project();
        project.source_repos = Some(vec![
            "https://charts.example".into(),
            "https://git.example/certs".into(),
        ]);
        let errs = validate(&app, Some(&project), Some(&in_cluster()), NS);
        assert!(
            errs.iter()
                .any(|e| e.contains("https://git.example/values") && e.contains("not permitted")),
            "{errs:?}"
        );
    }

    #[test]
    fn a_multi_source_sync_pins_the_sources_it_names() {
        let app = mk_app(MULTI);
        let op = |v: Value| Operation::from_value(&json!({ "sync": v })).expect("operation");
        // Source 1 at an older version, the others at the spec's revisions.
        let pins = pinned_revisions(
            &app,
            None,
            Some(&op(json!({"revisions": ["0.9.0"], "sourcePositions": [1]}))),
        );
        assert_eq!(
            pins,
            Some(vec!["0.9.0".to_string(), String::new(), String::new()])
        );
        let pins = pinned_revisions(
            &app,
            None,
            Some(&op(
                json!({"revisions": ["", "abc"], "sourcePositions": [1, 2]}),
            )),
        );
        assert_eq!(pins, Some(vec![String::new(), "abc".into(), String::new()]));
        // A rollback's full list.
        let pins = pinned_revisions(
            &app,
            None,
            Some(&op(json!({"revisions": ["0.9.0", "abc", "def"]}))),
        );
        assert_eq!(pins, Some(vec!["0.9.0".into(), "abc".into(), "def".into()]));
        assert_eq!(pinned_revisions(&app, None, Some(&op(json!({})))), None);
        // A running operation stays on every revision it started with.
        let running = syncop::start(
            op(json!({})),
            "c",
            vec!["c".into(), "v".into(), "w".into()],
            None,
            None,
        );
        assert_eq!(
            pinned_revisions(&app, Some(&running), None),
            Some(vec!["c".into(), "v".into(), "w".into()])
        );
    }

    #[test]
    fn watched_kinds_include_previous_resources_once_per_group_kind() {
        let objs = vec![
            json!({"apiVersion": "apps/v1", "kind": "Deployment"}),
            json!({"apiVersion": "v1", "kind": "ConfigMap"}),
        ];
        let st: ApplicationStatus = serde_json::from_value(json!({"resources": [
            {"group": "", "version": "v1", "kind": "Service", "name": "s"},
            {"group": "apps", "version": "v1", "kind": "Deployment", "name": "d"}]}))
        .expect("status");
        let kinds = kinds_of(&objs, Some(&st));
        assert_eq!(
            kinds,
            [
                ("apps/v1".to_string(), "Deployment".to_string()),
                ("v1".into(), "ConfigMap".into()),
                ("v1".into(), "Service".into())
            ]
        );
    }
}
