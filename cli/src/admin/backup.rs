//! `flotilla admin export` and the restore half of `import`: Applications and AppProjects (and
//! on request Argo CD's config objects) as a YAML stream for backup, and back by server-side
//! apply.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::PathBuf;

use clap::Args;
use kube::api::{ApiResource, DynamicObject, GroupVersionKind, ListParams, Patch, PatchParams};
use kube::{Api, Client};
use serde_json::{Map, Value};

use super::{AdminError, KubeArgs};

/// The field manager of restores.
pub const FIELD_MANAGER: &str = "flotilla-admin";
/// Argo CD's API group and version of Applications and AppProjects.
const ARGO_GROUP: &str = "argoproj.io";
const ARGO_VERSION: &str = "v1alpha1";
/// The ConfigMaps `--all` exports (those present).
const CONFIG_MAPS: [&str; 5] = [
    "argocd-cm",
    "argocd-rbac-cm",
    "argocd-cmd-params-cm",
    "argocd-tls-certs-cm",
    "argocd-ssh-known-hosts-cm",
];
/// Secret types `--all --include-secrets` exports (label argocd.argoproj.io/secret-type).
const SECRET_TYPES: [&str; 3] = ["repository", "repo-creds", "cluster"];
const SECRET_TYPE_LABEL: &str = "argocd.argoproj.io/secret-type";
/// Metadata a backup keeps; everything else (uid, resourceVersion, generation,
/// creationTimestamp, managedFields, ownerReferences, deletion marks) is the server's.
const KEPT_METADATA: [&str; 5] = ["name", "namespace", "labels", "annotations", "finalizers"];

/// The long help of `export` (the subcommand's one-line summary lives in `mod.rs`).
const EXPORT_HELP: &str = "\
Writes one multi-document YAML stream, cleaned for re-creation; restore it with
`flotilla admin import -f FILE` (a dry run) and `... --apply`.

Kept: apiVersion, kind, metadata name/namespace/labels/annotations/finalizers, spec (and a
ConfigMap's or Secret's data). Dropped: status; server-set metadata (uid, resourceVersion,
generation, creationTimestamp, managedFields, ownerReferences); and an Application's
`operation`: a sync requested but not yet finished is NOT exported, since restoring it would
start that sync again on the restored installation.

Documents are sorted by kind, namespace and name, and keys within them, so two exports of
the same state are byte-identical and backups diff cleanly. A summary goes to stderr.";

#[derive(Debug, Args)]
#[command(after_help = EXPORT_HELP)]
pub struct ExportArgs {
    /// Write here instead of standard output.
    #[arg(long, short = 'f')]
    pub out: Option<PathBuf>,
    /// Applications and AppProjects of every namespace, not only --namespace.
    #[arg(long)]
    pub all_namespaces: bool,
    /// Also argocd-cm, argocd-rbac-cm, argocd-cmd-params-cm, argocd-tls-certs-cm and
    /// argocd-ssh-known-hosts-cm (those present in --namespace).
    #[arg(long)]
    pub all: bool,
    /// With --all: also the repository, repo-creds and cluster Secrets. The output then holds
    /// credentials (written 0600 with --out); keep it like the Secrets themselves.
    #[arg(long, requires = "all")]
    pub include_secrets: bool,
}

/// One object a restore handled.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Restored {
    pub kind: String,
    pub namespace: String,
    pub name: String,
    /// Dry run: `create`, `update`, `unchanged`; applied: `created`, `updated`, `unchanged`.
    pub action: String,
}

/// The API resource of Argo CD kind `kind` (`Application`, `AppProject`).
pub fn resource(kind: &str) -> Option<ApiResource> {
    let plural = match kind {
        "Application" => "applications",
        "AppProject" => "appprojects",
        _ => return None,
    };
    Some(ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk(ARGO_GROUP, ARGO_VERSION, kind),
        plural,
    ))
}

/// Every object of `api` matching `lp`, a page of 500 at a time.
pub async fn list_all(
    api: &Api<DynamicObject>,
    lp: &ListParams,
) -> Result<Vec<DynamicObject>, kube::Error> {
    let mut out = Vec::new();
    let mut lp = lp.clone().limit(500);
    loop {
        let page = api.list(&lp).await?;
        out.extend(page.items);
        match page.metadata.continue_.filter(|c| !c.is_empty()) {
            Some(c) => lp = lp.continue_token(&c),
            None => return Ok(out),
        }
    }
}

/// `v` with every object's keys sorted, recursively.
fn sorted(v: &Value) -> Value {
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            Value::Object(
                keys.into_iter()
                    .map(|k| (k.clone(), sorted(&m[k])))
                    .collect(),
            )
        }
        Value::Array(a) => Value::Array(a.iter().map(sorted).collect()),
        other => other.clone(),
    }
}

/// An object cleaned for re-creation: apiVersion, kind, the kept metadata (namespace
/// `default_ns` when it has none and the kind is namespaced), then every other top-level field
/// but `status` and `operation`, keys sorted.
fn clean(obj: &Value, api_version: &str, kind: &str, default_ns: Option<&str>) -> Value {
    let mut out = Map::new();
    out.insert("apiVersion".into(), Value::from(api_version));
    out.insert("kind".into(), Value::from(kind));
    let meta = &obj["metadata"];
    let mut m = Map::new();
    for k in KEPT_METADATA {
        match &meta[k] {
            Value::Null => {}
            Value::Object(o) if o.is_empty() => {}
            Value::Array(a) if a.is_empty() => {}
            v => {
                m.insert(k.to_string(), sorted(v));
            }
        }
    }
    if let Some(ns) = default_ns
        && m.get("namespace")
            .and_then(Value::as_str)
            .is_none_or(str::is_empty)
    {
        m.insert("namespace".into(), Value::from(ns));
    }
    // name, namespace first; then the rest in KEPT_METADATA order.
    let mut ordered = Map::new();
    for k in KEPT_METADATA {
        if let Some(v) = m.remove(k) {
            ordered.insert(k.to_string(), v);
        }
    }
    out.insert("metadata".into(), Value::Object(ordered));
    if let Some(o) = obj.as_object() {
        let mut rest: Vec<&String> = o
            .keys()
            .filter(|k| {
                !matches!(
                    k.as_str(),
                    "apiVersion" | "kind" | "metadata" | "status" | "operation"
                )
            })
            .collect();
        // spec first, then alphabetical.
        rest.sort_by_key(|k| (k.as_str() != "spec", k.as_str()));
        for k in rest {
            out.insert(k.clone(), sorted(&o[k]));
        }
    }
    Value::Object(out)
}

fn sort_key(v: &Value) -> (String, String, String) {
    let s = |p: &str| {
        v.pointer(p)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    (s("/kind"), s("/metadata/namespace"), s("/metadata/name"))
}

/// The cleaned objects to export, in backup order.
async fn collect(args: &ExportArgs, client: &Client, ns: &str) -> Result<Vec<Value>, AdminError> {
    let mut docs = Vec::new();
    for kind in ["AppProject", "Application"] {
        let ar = resource(kind).ok_or_else(|| AdminError::Invalid(kind.into()))?;
        let api: Api<DynamicObject> = if args.all_namespaces {
            Api::all_with(client.clone(), &ar)
        } else {
            Api::namespaced_with(client.clone(), ns, &ar)
        };
        let items = list_all(&api, &ListParams::default())
            .await
            .map_err(|e| match &e {
                kube::Error::Api(s) if s.code == 404 => AdminError::Kube(format!(
                    "listing {kind}s: {e} (is the {kind} CRD installed?)"
                )),
                _ => AdminError::Kube(format!("listing {kind}s: {e}")),
            })?;
        for o in items {
            let v = serde_json::to_value(&o).map_err(|e| AdminError::Io(e.to_string()))?;
            docs.push(clean(&v, &ar.api_version, kind, Some(ns)));
        }
    }
    if args.all {
        let cms: Api<DynamicObject> = Api::namespaced_with(
            client.clone(),
            ns,
            &ApiResource::erase::<k8s_openapi::api::core::v1::ConfigMap>(&()),
        );
        for name in CONFIG_MAPS {
            if let Some(o) = cms
                .get_opt(name)
                .await
                .map_err(|e| AdminError::Kube(format!("reading ConfigMap {name}: {e}")))?
            {
                let v = serde_json::to_value(&o).map_err(|e| AdminError::Io(e.to_string()))?;
                docs.push(clean(&v, "v1", "ConfigMap", Some(ns)));
            }
        }
        if args.include_secrets {
            let secrets: Api<DynamicObject> = Api::namespaced_with(
                client.clone(),
                ns,
                &ApiResource::erase::<k8s_openapi::api::core::v1::Secret>(&()),
            );
            for t in SECRET_TYPES {
                let lp = ListParams::default().labels(&format!("{SECRET_TYPE_LABEL}={t}"));
                for o in list_all(&secrets, &lp)
                    .await
                    .map_err(|e| AdminError::Kube(format!("listing {t} Secrets: {e}")))?
                {
                    let v = serde_json::to_value(&o).map_err(|e| AdminError::Io(e.to_string()))?;
                    docs.push(clean(&v, "v1", "Secret", Some(ns)));
                }
            }
        }
    }
    docs.sort_by_key(sort_key);
    Ok(docs)
}

/// Documents as one YAML stream (`---` between documents).
fn to_yaml(docs: &[Value]) -> Result<String, AdminError> {
    let mut out = String::new();
    for d in docs {
        out.push_str("---\n");
        out.push_str(&serde_yaml::to_string(d).map_err(|e| AdminError::Io(e.to_string()))?);
    }
    Ok(out)
}

/// `flotilla admin export`.
pub async fn export(args: ExportArgs, kube: &KubeArgs) -> Result<u8, AdminError> {
    let client = kube.client().await?;
    let docs = collect(&args, &client, &kube.namespace).await?;
    let text = to_yaml(&docs)?;
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for d in &docs {
        *counts.entry(d["kind"].as_str().unwrap_or("?")).or_default() += 1;
    }
    let summary = counts
        .iter()
        .map(|(k, n)| format!("{n} {k}{}", if *n == 1 { "" } else { "s" }))
        .collect::<Vec<_>>()
        .join(", ");
    match &args.out {
        Some(path) => {
            let mut opts = std::fs::OpenOptions::new();
            opts.write(true).create(true).truncate(true);
            #[cfg(unix)]
            if args.include_secrets {
                use std::os::unix::fs::OpenOptionsExt;
                opts.mode(0o600);
            }
            let fail = |e: std::io::Error| AdminError::Io(format!("{}: {e}", path.display()));
            let mut f = opts.open(path).map_err(fail)?;
            #[cfg(unix)]
            if args.include_secrets {
                // An existing file keeps its mode on open: narrow it.
                use std::os::unix::fs::PermissionsExt;
                f.set_permissions(std::fs::Permissions::from_mode(0o600))
                    .map_err(fail)?;
            }
            f.write_all(text.as_bytes()).map_err(fail)?;
            f.sync_all().map_err(fail)?;
            eprintln!(
                "exported {} to {}",
                if summary.is_empty() {
                    "nothing"
                } else {
                    &summary
                },
                path.display()
            );
        }
        None => {
            let mut out = std::io::stdout().lock();
            out.write_all(text.as_bytes())
                .and_then(|()| out.flush())
                .map_err(|e| AdminError::Io(format!("standard output: {e}")))?;
            eprintln!(
                "exported {}",
                if summary.is_empty() {
                    "nothing"
                } else {
                    &summary
                }
            );
        }
    }
    if args.include_secrets {
        eprintln!(
            "warning: the export holds credentials (repository, repo-creds and cluster Secrets): store it like the Secrets themselves"
        );
    } else if args.all {
        eprintln!(
            "note: repository, repo-creds and cluster Secrets are not exported without --include-secrets"
        );
    }
    Ok(0)
}

/// Whether `live` already has everything `want` sets. Objects: each of `want`'s keys (an
/// empty or null value also matches a missing one, as the server drops those); arrays: the same
/// length, element by element; scalars: equal. Fields only `live` has (defaults, other
/// managers' fields) do not count: server-side apply would keep them too.
fn covers(live: &Value, want: &Value) -> bool {
    let empty = |v: &Value| match v {
        Value::Null => true,
        Value::Object(o) => o.is_empty(),
        Value::Array(a) => a.is_empty(),
        _ => false,
    };
    match (live, want) {
        (_, Value::Object(w)) if w.is_empty() => empty(live),
        (_, Value::Array(w)) if w.is_empty() => empty(live),
        (Value::Object(l), Value::Object(w)) => w.iter().all(|(k, wv)| match l.get(k) {
            Some(lv) => covers(lv, wv),
            None => empty(wv),
        }),
        (Value::Array(l), Value::Array(w)) => {
            l.len() == w.len() && l.iter().zip(w).all(|(a, b)| covers(a, b))
        }
        (l, Value::Null) => empty(l),
        (l, w) => l == w,
    }
}

/// Whether the live object already matches the cleaned desired one: labels, annotations and
/// finalizers present (finalizers as a set), every other field covered.
fn unchanged(live: &Value, want: &Value) -> bool {
    let lm = &live["metadata"];
    let wm = &want["metadata"];
    let finalizers = |v: &Value| -> BTreeSet<String> {
        v.as_array()
            .into_iter()
            .flatten()
            .filter_map(|f| f.as_str().map(str::to_string))
            .collect()
    };
    covers(&lm["labels"], &wm["labels"])
        && covers(&lm["annotations"], &wm["annotations"])
        && finalizers(&wm["finalizers"]).is_subset(&finalizers(&lm["finalizers"]))
        && want.as_object().is_some_and(|w| {
            w.iter()
                .filter(|(k, _)| !matches!(k.as_str(), "apiVersion" | "kind" | "metadata"))
                .all(|(k, wv)| match live.get(k) {
                    Some(lv) => covers(lv, wv),
                    None => covers(&Value::Null, wv),
                })
        })
}

/// Applications and AppProjects among `objects` (a `List` is expanded), cleaned, AppProjects
/// first, then by namespace and name. Other kinds are skipped.
fn restorable(namespace: &str, objects: &[Value]) -> Result<Vec<(ApiResource, Value)>, AdminError> {
    fn flatten<'a>(objects: &'a [Value], out: &mut Vec<&'a Value>) {
        for o in objects {
            match (o["kind"].as_str(), o["items"].as_array()) {
                (Some(k), Some(items)) if k == "List" || k.ends_with("List") => flatten(items, out),
                _ => out.push(o),
            }
        }
    }
    let mut all = Vec::new();
    flatten(objects, &mut all);
    let mut out: Vec<(u8, String, String, ApiResource, Value)> = Vec::new();
    let mut seen = BTreeSet::new();
    for o in all {
        let api_version = o["apiVersion"].as_str().unwrap_or_default();
        let kind = o["kind"].as_str().unwrap_or_default();
        let group = api_version.split_once('/').map(|(g, _)| g).unwrap_or("");
        if group != ARGO_GROUP {
            continue;
        }
        let Some(ar) = resource(kind) else {
            continue;
        };
        let rank = u8::from(kind != "AppProject");
        if api_version != ar.api_version {
            return Err(AdminError::Invalid(format!(
                "{kind} with apiVersion {api_version}: only {} can be restored",
                ar.api_version
            )));
        }
        let name = o["metadata"]["name"].as_str().unwrap_or_default();
        if name.is_empty() {
            return Err(AdminError::Invalid(format!(
                "a {kind} without metadata.name"
            )));
        }
        let v = clean(o, &ar.api_version, kind, Some(namespace));
        let ns = v["metadata"]["namespace"]
            .as_str()
            .unwrap_or(namespace)
            .to_string();
        if !seen.insert((kind.to_string(), ns.clone(), name.to_string())) {
            return Err(AdminError::Invalid(format!(
                "{kind} {ns}/{name} is given twice"
            )));
        }
        out.push((rank, ns, name.to_string(), ar, v));
    }
    out.sort_by(|a, b| (a.0, &a.1, &a.2).cmp(&(b.0, &b.1, &b.2)));
    Ok(out.into_iter().map(|(_, _, _, ar, v)| (ar, v)).collect())
}

/// Restore the Applications and AppProjects among `objects` (other kinds are ignored): by
/// server-side apply with field manager `flotilla-admin` (forced), AppProjects before
/// Applications; an object without a namespace goes to `namespace`. `status` and `operation`
/// are never restored, nor server-set metadata. Each object is compared with the live one
/// first: one that already has every field is left alone (`unchanged`). With `apply` false
/// nothing is written at all (only reads): the actions say what would happen (`create`,
/// `update`, `unchanged`); applied they are `created`, `updated`, `unchanged`.
pub async fn restore(
    client: &kube::Client,
    namespace: &str,
    objects: &[serde_json::Value],
    apply: bool,
) -> Result<Vec<Restored>, AdminError> {
    let todo = restorable(namespace, objects)?;
    if todo.is_empty() {
        return Ok(Vec::new());
    }
    // The CRDs must be there; otherwise every object would look absent.
    let group = format!("{ARGO_GROUP}/{ARGO_VERSION}");
    let served: BTreeSet<String> = match client.list_api_group_resources(&group).await {
        Ok(l) => l.resources.into_iter().map(|r| r.name).collect(),
        Err(kube::Error::Api(s)) if s.code == 404 => BTreeSet::new(),
        Err(e) => return Err(AdminError::Kube(format!("discovering {group}: {e}"))),
    };
    let mut out = Vec::new();
    for (ar, want) in todo {
        if !served.contains(&ar.plural) {
            return Err(AdminError::Kube(format!(
                "{group} {} is not served: install the Application and AppProject CRDs first",
                ar.plural
            )));
        }
        let kind = ar.kind.clone();
        let name = want["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let ns = want["metadata"]["namespace"]
            .as_str()
            .unwrap_or(namespace)
            .to_string();
        let what = format!("{kind} {ns}/{name}");
        let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), &ns, &ar);
        let live = api
            .get_opt(&name)
            .await
            .map_err(|e| AdminError::Kube(format!("reading {what}: {e}")))?
            .map(|o| serde_json::to_value(&o))
            .transpose()
            .map_err(|e| AdminError::Io(e.to_string()))?;
        if let Some(l) = &live
            && !l["metadata"]["deletionTimestamp"].is_null()
        {
            return Err(AdminError::Kube(format!(
                "{what} is being deleted (finalizers {}): restore again once it is gone",
                l["metadata"]["finalizers"]
            )));
        }
        let action = match &live {
            Some(l) if unchanged(l, &want) => "unchanged",
            Some(_) => "update",
            None => "create",
        };
        let action = if apply && action != "unchanged" {
            api.patch(
                &name,
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(&want),
            )
            .await
            .map_err(|e| AdminError::Kube(format!("applying {what}: {e}")))?;
            if action == "create" {
                "created"
            } else {
                "updated"
            }
        } else {
            action
        };
        out.push(Restored {
            kind,
            namespace: ns,
            name,
            action: action.to_string(),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn live_app() -> Value {
        json!({
            "apiVersion": "argoproj.io/v1alpha1", "kind": "Application",
            "metadata": {"name": "web", "namespace": "argocd", "uid": "u-1", "resourceVersion": "7",
                "generation": 3, "creationTimestamp": "2026-01-01T00:00:00Z",
                "managedFields": [{"manager": "kubectl"}],
                "ownerReferences": [{"kind": "ApplicationSet", "name": "set", "uid": "u-0"}],
                "labels": {"team": "a", "env": "prod"}, "annotations": {"note": "x"},
                "finalizers": ["resources-finalizer.argocd.argoproj.io"]},
            "spec": {"project": "default", "destination": {"server": "https://k", "namespace": "web"},
                "source": {"repoURL": "https://git/x", "path": "web", "targetRevision": "main"}},
            "operation": {"sync": {"revision": "abc"}},
            "status": {"sync": {"status": "Synced"}}
        })
    }

    #[test]
    fn export_keeps_what_recreates_the_object_in_a_fixed_order() {
        let c = clean(
            &live_app(),
            "argoproj.io/v1alpha1",
            "Application",
            Some("other"),
        );
        assert!(c.get("status").is_none() && c.get("operation").is_none());
        let keys: Vec<&String> = c.as_object().expect("obj").keys().collect();
        assert_eq!(keys, ["apiVersion", "kind", "metadata", "spec"]);
        let meta: Vec<&String> = c["metadata"].as_object().expect("meta").keys().collect();
        assert_eq!(
            meta,
            ["name", "namespace", "labels", "annotations", "finalizers"]
        );
        assert_eq!(
            c["metadata"]["namespace"], "argocd",
            "its own namespace kept"
        );
        let labels: Vec<&String> = c["metadata"]["labels"]
            .as_object()
            .expect("l")
            .keys()
            .collect();
        assert_eq!(labels, ["env", "team"]);
        let src: Vec<&String> = c["spec"]["source"].as_object().expect("s").keys().collect();
        assert_eq!(src, ["path", "repoURL", "targetRevision"]);
        let yaml = to_yaml(&[c.clone(), c]).expect("yaml");
        assert!(yaml.starts_with("---\napiVersion: argoproj.io/v1alpha1\nkind: Application\n"));
        assert_eq!(yaml.matches("---\n").count(), 2);
    }

    #[test]
    fn restore_order_defaults_and_skips() {
        let objs = vec![
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "argocd-cm"}}),
            json!({"apiVersion": "app.k8s.io/v1beta1", "kind": "Application", "metadata": {"name": "other"}}),
            json!({"apiVersion": "argoproj.io/v1alpha1", "kind": "Application", "metadata": {"name": "b"}, "spec": {}}),
            json!({"apiVersion": "v1", "kind": "List", "items": [
                {"apiVersion": "argoproj.io/v1alpha1", "kind": "Application", "metadata": {"name": "a", "namespace": "z"}, "status": {}},
                {"apiVersion": "argoproj.io/v1alpha1", "kind": "AppProject", "metadata": {"name": "p"}}]}),
        ];
        let r = restorable("argocd", &objs).expect("ok");
        let got: Vec<(String, String, String)> = r.iter().map(|(_, v)| sort_key(v)).collect();
        assert_eq!(
            got,
            vec![
                ("AppProject".into(), "argocd".into(), "p".into()),
                ("Application".into(), "argocd".into(), "b".into()),
                ("Application".into(), "z".into(), "a".into()),
            ]
        );
        assert!(r[2].1.get("status").is_none());
        let twice = vec![objs[2].clone(), objs[2].clone()];
        assert!(matches!(
            restorable("argocd", &twice),
            Err(AdminError::Invalid(_))
        ));
        let wrong = vec![
            json!({"apiVersion": "argoproj.io/v1beta9", "kind": "AppProject", "metadata": {"name": "p"}}),
        ];
        assert!(matches!(
            restorable("argocd", &wrong),
            Err(AdminError::Invalid(_))
        ));
    }

    #[test]
    fn unchanged_ignores_server_additions_but_not_differences() {
        let want = clean(&live_app(), "argoproj.io/v1alpha1", "Application", None);
        let mut live = live_app();
        live["spec"]["source"]["directory"] = json!({"recurse": false});
        live["metadata"]["labels"]["added"] = json!("later");
        assert!(unchanged(&live, &want));
        let mut empty = want.clone();
        empty["spec"]["syncPolicy"] = json!({});
        assert!(
            unchanged(&live, &empty),
            "an empty object matches a missing one"
        );
        let mut changed = live.clone();
        changed["spec"]["source"]["targetRevision"] = json!("v2");
        assert!(!unchanged(&changed, &want));
        let mut no_fin = live.clone();
        no_fin["metadata"]["finalizers"] = json!([]);
        assert!(!unchanged(&no_fin, &want));
        let mut no_label = live;
        no_label["metadata"]["labels"] = json!({"team": "a"});
        assert!(!unchanged(&no_label, &want));
    }
}
