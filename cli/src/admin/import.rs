//! `flotilla admin import`: reads Argo CD's configuration (`argocd-cm`, `argocd-rbac-cm`,
//! `argocd-cmd-params-cm`, `argocd-tls-certs-cm`, `argocd-ssh-known-hosts-cm`, repository,
//! repo-creds and cluster Secrets) from files or the cluster and reports, key by key and object
//! by object, what Flotilla honours, maps to its own flags, does not need or refuses — through
//! the controller's own parsers where the controller reads the setting — then restores the
//! Applications and AppProjects of the input (`backup::restore`). Secret values never appear
//! in the report.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::{Path, PathBuf};

use clap::Args;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::Api;
use kube::api::ListParams;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use flotilla_controller::clusters::{Cluster, ClusterSecretError};
use flotilla_controller::redact::{redact_text, redact_url};
use flotilla_controller::repos::RepoCreds;
use flotilla_controller::settings::Settings;
use flotilla_controller::tracking;

use super::keys::{self, Conv, KeyDoc, Source, Treatment};
use super::{AdminError, KubeArgs, backup};
use crate::output::{self, Format};

/// What the report's words mean (the long help of `import` and `settings validate`).
pub const TREATMENTS_HELP: &str = "\
TREATMENT of each key or object:
  honoured    Flotilla reads it where Argo CD has it and does what Argo CD does.
  mapped      Flotilla does the same when configured elsewhere: DETAIL names the flag or
              environment variable (→ ...).
  not needed  Flotilla has no use for it (its design covers it, or it configures something
              Flotilla does not have and nothing deployed or allowed depends on it): drop it.
  refused     Flotilla will not do what it asks.

UNSAFE (shown as `refused (unsafe)`): a refused setting or object that decides who may do
what (sign-in, RBAC, credentials) or what gets deployed where (rendering, comparison,
tracking, cluster and repository Secrets), so that Flotilla would let more through or deploy
differently (or not at all) than Argo CD: an unknown key whose effect cannot be judged, an
argocd-rbac-cm policy line that does not parse, a cluster Secret whose config cannot be used,
a repository Secret Flotilla refuses. A refusal that only leaves out a feature nobody can then
use (exec, badges, Dex, resource actions) or only makes Flotilla stricter is not unsafe.";

const IMPORT_HELP: &str = "\
Exit status: 0 nothing unsafe; 1 something unsafe (the report is printed first), the restore
was refused (--apply with unsafe findings and no --force) or a Kubernetes call failed;
2 input that cannot be read (a file that is not YAML, an object without a kind).

Applications and AppProjects in the input are restored after the report: a dry run (what
would be created or updated) unless --apply.";

#[derive(Debug, Args)]
#[command(
    after_help = "Rows marked `refused (unsafe)` change security or what gets deployed: the command exits 1. --help says what each treatment means.",
    after_long_help = format!("{TREATMENTS_HELP}\n\n{IMPORT_HELP}")
)]
pub struct ImportArgs {
    /// Read these YAML files or directories (multi-document, `List`s expanded, `-` for
    /// standard input) instead of the live objects in --namespace.
    #[arg(short = 'f', long = "filename")]
    pub files: Vec<PathBuf>,
    /// Restore the input's Applications and AppProjects (default: a dry run that only says
    /// what would change).
    #[arg(long)]
    pub apply: bool,
    /// With --apply: restore even when the report found something unsafe.
    #[arg(long, requires = "apply")]
    pub force: bool,
    /// Print every argocd-cm, argocd-cmd-params-cm and argocd-rbac-cm key Flotilla knows with
    /// its treatment (docs/argocd-config-keys.md is this table) and exit.
    #[arg(long, conflicts_with_all = ["files", "apply"])]
    pub list_keys: bool,
}

/// One row of the report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// `argocd-cm`, `repository Secret`, ...
    pub source: String,
    /// The key, or the object's name (`name/field` for a field of a Secret).
    pub key: String,
    pub treatment: Treatment,
    #[serde(rename = "unsafe")]
    pub is_unsafe: bool,
    /// The Flotilla component, flag or variable (mapped keys).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub flotilla: String,
    pub detail: String,
}

impl Finding {
    fn new(source: &str, key: &str, treatment: Treatment, detail: impl Into<String>) -> Self {
        Self {
            source: source.into(),
            key: key.into(),
            treatment,
            is_unsafe: false,
            flotilla: String::new(),
            detail: detail.into(),
        }
    }

    fn refused(source: &str, key: &str, is_unsafe: bool, detail: impl Into<String>) -> Self {
        Self {
            is_unsafe,
            ..Self::new(source, key, Treatment::Refused, detail)
        }
    }

    fn treatment_text(&self) -> String {
        if self.is_unsafe {
            format!("{} (unsafe)", self.treatment.name())
        } else {
            self.treatment.name().to_string()
        }
    }
}

/// The whole analysis of a set of objects.
#[derive(Debug, Default, Serialize)]
pub struct Report {
    pub findings: Vec<Finding>,
    /// Objects of the input this report does not cover (printed on standard error).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    /// Applications and AppProjects in the input (for the restore).
    #[serde(skip)]
    pub apps: usize,
}

impl Report {
    pub fn unsafe_count(&self) -> usize {
        self.findings.iter().filter(|f| f.is_unsafe).count()
    }

    pub fn refused_count(&self) -> usize {
        self.findings
            .iter()
            .filter(|f| f.treatment == Treatment::Refused)
            .count()
    }

    fn count(&self, t: Treatment) -> usize {
        self.findings.iter().filter(|f| f.treatment == t).count()
    }

    pub fn summary(&self) -> Value {
        json!({
            "honoured": self.count(Treatment::Honoured),
            "mapped": self.count(Treatment::Mapped),
            "notNeeded": self.count(Treatment::NotNeeded),
            "refused": self.count(Treatment::Refused),
            "unsafe": self.unsafe_count(),
        })
    }

    pub fn summary_line(&self) -> String {
        format!(
            "{} rows: {} honoured, {} mapped, {} not needed, {} refused ({} unsafe)",
            self.findings.len(),
            self.count(Treatment::Honoured),
            self.count(Treatment::Mapped),
            self.count(Treatment::NotNeeded),
            self.count(Treatment::Refused),
            self.unsafe_count()
        )
    }

    /// The findings as a table or a JSON/YAML document (`extra` fields added to it).
    pub fn render(&self, format: Format, extra: Option<(&str, Value)>) -> String {
        match format {
            Format::Json | Format::Yaml => {
                let mut v = json!({"findings": self.findings, "summary": self.summary()});
                if let Some((k, e)) = extra {
                    v[k] = e;
                }
                output::render_value(&v, format)
            }
            Format::Table | Format::Wide if self.findings.is_empty() => {
                "no Argo CD config objects in the input".to_string()
            }
            Format::Table | Format::Wide => {
                let rows: Vec<Vec<String>> = self
                    .findings
                    .iter()
                    .map(|f| {
                        vec![
                            f.source.clone(),
                            f.key.clone(),
                            f.treatment_text(),
                            f.detail.clone(),
                        ]
                    })
                    .collect();
                format!(
                    "{}\n\n{}",
                    output::table(&["SOURCE", "KEY", "TREATMENT", "DETAIL"], &rows),
                    self.summary_line()
                )
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Reading objects

/// Every Kubernetes object in `paths`: YAML or JSON files (multi-document; `List`s expanded)
/// or directories of them (recursively, `.yaml`, `.yml`, `.json`, hidden names skipped, in
/// name order); `-` is standard input. A document that is not YAML or not an object with a
/// `kind` is an error naming the file and the document.
pub fn read_objects(paths: &[PathBuf]) -> Result<Vec<Value>, AdminError> {
    let mut files = Vec::new();
    for p in paths {
        collect_files(p, true, &mut files)?;
    }
    let mut out = Vec::new();
    for f in files {
        let (text, origin) = if f.as_os_str() == "-" {
            let mut s = String::new();
            std::io::stdin()
                .read_to_string(&mut s)
                .map_err(|e| AdminError::Io(format!("reading standard input: {e}")))?;
            (s, "standard input".to_string())
        } else {
            let s = std::fs::read_to_string(&f)
                .map_err(|e| AdminError::Io(format!("{}: {e}", f.display())))?;
            (s, f.display().to_string())
        };
        parse_documents(&text, &origin, &mut out)?;
    }
    Ok(out)
}

fn collect_files(path: &Path, explicit: bool, out: &mut Vec<PathBuf>) -> Result<(), AdminError> {
    if path.as_os_str() == "-" {
        out.push(path.to_path_buf());
        return Ok(());
    }
    let meta =
        std::fs::metadata(path).map_err(|e| AdminError::Io(format!("{}: {e}", path.display())))?;
    if meta.is_dir() {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(path)
            .map_err(|e| AdminError::Io(format!("{}: {e}", path.display())))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                !p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with('.'))
            })
            .collect();
        entries.sort();
        for e in entries {
            collect_files(&e, false, out)?;
        }
    } else if explicit
        || path
            .extension()
            .is_some_and(|x| matches!(x.to_str(), Some("yaml" | "yml" | "json")))
    {
        out.push(path.to_path_buf());
    }
    Ok(())
}

fn parse_documents(text: &str, origin: &str, out: &mut Vec<Value>) -> Result<(), AdminError> {
    for (i, doc) in serde_yaml::Deserializer::from_str(text).enumerate() {
        let at = || format!("{origin}: document {}", i + 1);
        let v = serde_yaml::Value::deserialize(doc)
            .map_err(|e| AdminError::Invalid(format!("{}: not valid YAML: {e}", at())))?;
        if v.is_null() {
            continue;
        }
        let v: Value = serde_json::to_value(v)
            .map_err(|e| AdminError::Invalid(format!("{}: not a Kubernetes object: {e}", at())))?;
        expand(v, &at(), out)?;
    }
    Ok(())
}

fn expand(v: Value, at: &str, out: &mut Vec<Value>) -> Result<(), AdminError> {
    let Some(kind) = v.get("kind").and_then(Value::as_str) else {
        return Err(AdminError::Invalid(format!(
            "{at}: not a Kubernetes object (no kind)"
        )));
    };
    let is_list = kind == "List" || (kind.ends_with("List") && v["items"].is_array());
    if !is_list {
        out.push(v);
        return Ok(());
    }
    let Value::Array(items) = v["items"].clone() else {
        return Ok(());
    };
    for (j, item) in items.into_iter().enumerate() {
        expand(item, &format!("{at} item {}", j + 1), out)?;
    }
    Ok(())
}

/// The config objects `import` reads from the cluster.
pub const CONFIG_MAPS: [&str; 5] = [
    "argocd-cm",
    "argocd-rbac-cm",
    "argocd-cmd-params-cm",
    "argocd-tls-certs-cm",
    "argocd-ssh-known-hosts-cm",
];
/// The Secret types `import` reads (label `argocd.argoproj.io/secret-type`).
pub const SECRET_TYPES: [&str; 3] = ["repository", "repo-creds", "cluster"];
const SECRET_TYPE_LABEL: &str = "argocd.argoproj.io/secret-type";

/// The live config objects in `namespace` (absent ConfigMaps named in the second list).
async fn live_objects(
    client: &kube::Client,
    namespace: &str,
) -> Result<(Vec<Value>, Vec<String>), AdminError> {
    let mut out = Vec::new();
    let mut absent = Vec::new();
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
    for name in CONFIG_MAPS {
        match cms.get_opt(name).await? {
            Some(cm) => out.push(to_value(&cm)?),
            None => absent.push(format!(
                "{namespace}/{name}: not found (Flotilla's defaults apply)"
            )),
        }
    }
    let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let selector = format!("{SECRET_TYPE_LABEL} in ({})", SECRET_TYPES.join(","));
    for s in secrets
        .list(&ListParams::default().labels(&selector))
        .await?
    {
        out.push(to_value(&s)?);
    }
    Ok((out, absent))
}

fn to_value<T: Serialize>(o: &T) -> Result<Value, AdminError> {
    serde_json::to_value(o).map_err(|e| AdminError::Invalid(e.to_string()))
}

// ---------------------------------------------------------------------------------------------
// Analysis

fn name_of(v: &Value) -> &str {
    v["metadata"]["name"].as_str().unwrap_or_default()
}

fn is_argo(v: &Value) -> bool {
    v["apiVersion"]
        .as_str()
        .is_some_and(|a| a.starts_with("argoproj.io/"))
}

/// Whether `v` is an Application or AppProject (what the restore takes).
pub fn is_restorable(v: &Value) -> bool {
    is_argo(v) && matches!(v["kind"].as_str(), Some("Application" | "AppProject"))
}

/// A ConfigMap's `data` as strings (scalars written unquoted in a file read as text).
fn string_data(v: &Value) -> BTreeMap<String, String> {
    v["data"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| {
            let s = match v {
                Value::String(s) => s.clone(),
                Value::Null => String::new(),
                other => other.to_string(),
            };
            (k.clone(), s)
        })
        .collect()
}

/// Analyse `objects`: one finding per config key and per Secret (and per field of a Secret
/// Flotilla does not use as Argo CD does).
pub fn analyse(objects: &[Value]) -> Report {
    let mut r = Report::default();
    let mut scrub = Scrubber::default();
    for o in objects {
        let kind = o["kind"].as_str().unwrap_or_default();
        let name = name_of(o);
        match kind {
            "ConfigMap" => {
                let data = string_data(o);
                match name {
                    "argocd-cm" => argocd_cm(&data, &mut r.findings),
                    "argocd-cmd-params-cm" => cmd_params(&data, &mut r.findings),
                    "argocd-rbac-cm" => rbac_cm(&data, &mut r.findings),
                    "argocd-tls-certs-cm" => tls_certs(&data, &mut r.findings),
                    "argocd-ssh-known-hosts-cm" => known_hosts(&data, &mut r.findings),
                    "argocd-gpg-keys-cm" => gpg_keys(&data, &mut r.findings),
                    _ => r
                        .notes
                        .push(format!("ConfigMap {name}: not part of this report")),
                }
            }
            "Secret" => {
                scrub.add_secret(o);
                let ty = o["metadata"]["labels"][SECRET_TYPE_LABEL]
                    .as_str()
                    .unwrap_or_default();
                match ty {
                    "repository" | "repo-creds" => repo_secret(o, ty, &mut r.findings),
                    "cluster" => cluster_secret(o, &mut r.findings),
                    _ => r.notes.push(format!(
                        "Secret {name}: not a repository, repo-creds or cluster Secret; not part of this report"
                    )),
                }
            }
            _ if is_restorable(o) => r.apps += 1,
            "ApplicationSet" if is_argo(o) => r.findings.push(Finding::refused(
                "ApplicationSet",
                name,
                false,
                "not restored by import: apply ApplicationSets with kubectl; Flotilla reconciles them (side by side with Argo CD, Argo CD's ApplicationSet controller keeps them; see README, \"ApplicationSets\", for what is supported)",
            )),
            _ => r.notes.push(format!(
                "{kind} {name}: not part of this report"
            )),
        }
    }
    for f in &mut r.findings {
        f.detail = scrub.apply(&f.detail);
        f.key = scrub.apply(&f.key);
    }
    r
}

/// Removes every Secret value of the input from report text (a last line of defence: the
/// findings are written not to quote them in the first place).
#[derive(Default)]
struct Scrubber {
    values: BTreeSet<String>,
}

/// Secret fields shown on purpose (not secret): the rest are scrubbed.
const SHOWN_FIELDS: &[&str] = &[
    "url",
    "name",
    "server",
    "project",
    "type",
    "namespaces",
    "clusterResources",
    "shard",
    "insecure",
    "enableOCI",
    "enableLfs",
];

impl Scrubber {
    fn add_secret(&mut self, o: &Value) {
        let mut add = |s: &str| {
            for piece in std::iter::once(s).chain(s.lines()) {
                let p = piece.trim();
                if p.len() >= 6 {
                    self.values.insert(p.to_string());
                }
            }
        };
        for (field, encoded) in [("data", true), ("stringData", false)] {
            for (k, v) in o[field].as_object().into_iter().flatten() {
                if SHOWN_FIELDS.contains(&k.as_str()) {
                    continue;
                }
                let Some(text) = v.as_str() else { continue };
                let text = if encoded {
                    use base64::Engine;
                    match base64::engine::general_purpose::STANDARD.decode(text.trim()) {
                        Ok(b) => String::from_utf8_lossy(&b).into_owned(),
                        Err(_) => text.to_string(),
                    }
                } else {
                    text.to_string()
                };
                add(&text);
                // A cluster `config` is JSON: its string leaves (tokens, keys) too.
                if let Ok(j) = serde_json::from_str::<Value>(&text) {
                    let mut stack = vec![j];
                    while let Some(v) = stack.pop() {
                        match v {
                            Value::String(s) => add(&s),
                            Value::Array(a) => stack.extend(a),
                            Value::Object(m) => stack.extend(m.into_iter().map(|(_, v)| v)),
                            _ => {}
                        }
                    }
                }
            }
        }
    }

    /// `text` with every Secret value that stands as a word of its own (not inside a longer
    /// word: a user name `deploy` leaves "deployed" alone) replaced by `***`.
    fn apply(&self, text: &str) -> String {
        let mut t = text.to_string();
        // Longest first, so a value containing another is removed whole.
        let mut vs: Vec<&String> = self.values.iter().collect();
        vs.sort_by_key(|v| std::cmp::Reverse(v.len()));
        let word = |c: Option<char>| c.is_some_and(|c| c.is_alphanumeric() || c == '_');
        for v in vs {
            let mut out = String::with_capacity(t.len());
            let mut rest = t.as_str();
            while let Some(i) = rest.find(v.as_str()) {
                let before = rest[..i].chars().next_back();
                let after = rest[i + v.len()..].chars().next();
                let joins_before = word(before) && word(v.chars().next());
                let joins_after = word(after) && word(v.chars().next_back());
                let whole = !(joins_before || joins_after);
                out.push_str(&rest[..i]);
                out.push_str(if whole { "***" } else { v.as_str() });
                rest = &rest[i + v.len()..];
            }
            out.push_str(rest);
            t = out;
        }
        t
    }
}

/// A finding for `key` = `value` from its table entry.
fn from_doc(source: Source, key: &str, value: &str, doc: &KeyDoc) -> Finding {
    let src = source.name();
    if doc.honoured_by_value(value) {
        return Finding::new(
            src,
            key,
            Treatment::Honoured,
            format!("{:?} is what Flotilla does: {}", value.trim(), doc.detail),
        );
    }
    if value.trim().is_empty() && matches!(doc.treatment, Treatment::Refused | Treatment::Mapped) {
        return Finding::new(
            src,
            key,
            Treatment::Honoured,
            format!("empty: the same as not set. {}", doc.detail),
        );
    }
    let mut f = Finding::new(src, key, doc.treatment, doc.detail);
    f.is_unsafe = doc.is_unsafe && doc.treatment == Treatment::Refused;
    if doc.treatment == Treatment::Mapped {
        f.flotilla = doc.flotilla.to_string();
        let value_text = match doc.conv {
            Conv::None => String::new(),
            c => match keys::convert(c, value) {
                Some(v) => format!(" {v}"),
                None => format!(" (the value {:?} does not read as one)", value.trim()),
            },
        };
        f.detail = format!("→ {}{value_text}. {}", doc.flotilla, doc.detail);
    }
    f
}

fn unknown_or(source: Source, key: &str) -> KeyDoc {
    keys::lookup(source, key)
        .copied()
        .unwrap_or_else(|| keys::unknown(source, key))
}

/// `argocd-cm`: the controller's parser (`Settings::parse`, key by key, so every refusal is
/// named on its key) for what the controller reads, the key table for the rest.
fn argocd_cm(data: &BTreeMap<String, String>, out: &mut Vec<Finding>) {
    const NOT_HONOURED: &str = "is not honoured by Flotilla";
    const ACTIONS: &str = "resource actions are not supported";
    let src = Source::ArgocdCm.name();
    let mut attributed = BTreeSet::new();
    for (key, value) in data {
        let single = BTreeMap::from([(key.clone(), value.clone())]);
        let problems = Settings::parse(&single).problems;
        attributed.extend(problems.iter().cloned());
        let named_not_honoured = problems.iter().any(|p| p.contains(NOT_HONOURED));
        let real: Vec<&String> = problems
            .iter()
            .filter(|p| !p.contains(NOT_HONOURED))
            .collect();
        let mut f = if !real.is_empty() {
            let only_actions = real.iter().all(|p| p.contains(ACTIONS));
            let text = real
                .iter()
                .map(|p| p.as_str())
                .collect::<Vec<_>>()
                .join("; ");
            if only_actions {
                Finding::refused(src, key, false, format!("flotilla-controller: {text}"))
            } else {
                Finding::refused(
                    src,
                    key,
                    true,
                    format!("flotilla-controller refuses it: {text}"),
                )
            }
        } else {
            match key.as_str() {
                "application.resourceTrackingMethod" => tracking_method(value),
                "oidc.config" => oidc_config(value, data.contains_key("url")),
                "configManagementPlugins" => plugins(value),
                _ => from_doc(
                    Source::ArgocdCm,
                    key,
                    value,
                    &unknown_or(Source::ArgocdCm, key),
                ),
            }
        };
        if named_not_honoured && f.treatment == Treatment::Honoured {
            f.detail.push_str(
                " (flotilla-controller still names the key as not honoured until it is removed)",
            );
        }
        out.push(f);
    }
    // Anything the whole map adds (keys that only together make a problem).
    for p in Settings::parse(data)
        .problems
        .into_iter()
        .filter(|p| !attributed.contains(p))
    {
        out.push(Finding::refused(
            src,
            "(settings)",
            true,
            format!("flotilla-controller refuses it: {p}"),
        ));
    }
    if !data.contains_key("application.resourceTrackingMethod") {
        out.push(Finding::new(
            src,
            "application.resourceTrackingMethod",
            Treatment::Mapped,
            "not set: Argo CD 3.x then tracks by annotation, Flotilla by its own label only, so \
             it would not adopt what Argo CD deployed: set it to the method Argo CD used \
             (annotation by default) before Flotilla takes over",
        ));
    }
}

fn tracking_method(value: &str) -> Finding {
    let src = Source::ArgocdCm.name();
    let key = "application.resourceTrackingMethod";
    match tracking::Method::parse(value) {
        Some(tracking::Method::Flotilla) => Finding::new(
            src,
            key,
            Treatment::Honoured,
            "empty: Flotilla's own tracking label only (Argo CD 3.x would track by annotation)",
        ),
        Some(_) => from_doc(
            Source::ArgocdCm,
            key,
            value,
            &unknown_or(Source::ArgocdCm, key),
        ),
        None => Finding::refused(
            src,
            key,
            true,
            format!(
                "{:?} is not one of label, annotation, annotation+label: flotilla-controller refuses to start",
                value.trim()
            ),
        ),
    }
}

/// `oidc.config` as flotilla-server reads it (issuer and clientID required, https issuer);
/// the text is never quoted (it may hold a literal client secret).
fn oidc_config(value: &str, url_set: bool) -> Finding {
    let src = Source::ArgocdCm.name();
    let key = "oidc.config";
    let off = "flotilla-server leaves SSO off (nobody signs in through it)";
    let refuse = |why: String| Finding::refused(src, key, false, format!("{why}: {off}"));
    if value.trim().is_empty() {
        return Finding::new(
            src,
            key,
            Treatment::Honoured,
            "empty: SSO is not configured",
        );
    }
    let raw: serde_yaml::Value = match serde_yaml::from_str(value) {
        Ok(v) => v,
        Err(e) => {
            let at = e
                .location()
                .map(|l| format!(" (line {}, column {})", l.line(), l.column()))
                .unwrap_or_default();
            return refuse(format!("not valid YAML{at}"));
        }
    };
    let Some(m) = raw.as_mapping() else {
        return refuse("not a mapping".into());
    };
    let text = |k: &str| {
        m.get(k)
            .and_then(serde_yaml::Value::as_str)
            .map(str::trim)
            .unwrap_or_default()
            .to_string()
    };
    let (issuer, client_id) = (text("issuer"), text("clientID"));
    if issuer.is_empty() || client_id.is_empty() {
        return refuse("issuer and clientID are required".into());
    }
    let ok_scheme = match url::Url::parse(&issuer) {
        Ok(u) => {
            u.scheme() == "https"
                || (u.scheme() == "http"
                    && match u.host() {
                        Some(url::Host::Domain(d)) => d == "localhost",
                        Some(url::Host::Ipv4(a)) => a.is_loopback(),
                        Some(url::Host::Ipv6(a)) => a.is_loopback(),
                        None => false,
                    })
        }
        Err(_) => return refuse("the issuer is not a URL".into()),
    };
    if !ok_scheme {
        return refuse("the issuer must be https (plain http only on loopback)".into());
    }
    const USED: &[&str] = &[
        "name",
        "issuer",
        "clientID",
        "clientSecret",
        "cliClientID",
        "requestedScopes",
        "allowedAudiences",
        "rootCA",
        "enablePKCEAuthentication",
    ];
    let ignored: Vec<String> = m
        .keys()
        .filter_map(serde_yaml::Value::as_str)
        .filter(|k| !USED.contains(k))
        .map(str::to_string)
        .collect();
    let mut detail = format!("SSO with issuer {}", redact_url(&issuer));
    if !ignored.is_empty() {
        detail.push_str(&format!("; not used: {}", ignored.join(", ")));
    }
    if !url_set {
        detail.push_str("; `url` is not set, so the browser sign-in cannot work (tokens still do)");
    }
    Finding::new(src, key, Treatment::Honoured, detail)
}

/// `configManagementPlugins` (Argo CD before 2.8) as `--plugin` flags.
fn plugins(value: &str) -> Finding {
    #[derive(Deserialize)]
    struct Cmd {
        #[serde(default)]
        command: Vec<String>,
        #[serde(default)]
        args: Vec<String>,
    }
    #[derive(Deserialize)]
    struct Plugin {
        name: String,
        init: Option<Cmd>,
        generate: Option<Cmd>,
    }
    let key = "configManagementPlugins";
    let doc = unknown_or(Source::ArgocdCm, key);
    let list: Vec<Plugin> = match serde_yaml::from_str(value) {
        Ok(l) => l,
        Err(_) => {
            return Finding::refused(
                Source::ArgocdCm.name(),
                key,
                true,
                "not a list of plugins (name, init, generate): cannot be mapped",
            );
        }
    };
    let quote = |w: &str| {
        if w.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,".contains(c))
        {
            w.to_string()
        } else {
            format!("'{}'", w.replace('\'', r"'\''"))
        }
    };
    let line = |c: &Cmd| {
        c.command
            .iter()
            .chain(c.args.iter())
            .map(|w| quote(w))
            .collect::<Vec<_>>()
            .join(" ")
    };
    let flags: Vec<String> = list
        .iter()
        .map(|p| {
            let cmds: Vec<String> = [p.init.as_ref(), p.generate.as_ref()]
                .into_iter()
                .flatten()
                .map(line)
                .filter(|l| !l.is_empty())
                .collect();
            format!(
                "--plugin {}",
                quote(&format!("{}={}", p.name, cmds.join(" && ")))
            )
        })
        .collect();
    let mut f = from_doc(Source::ArgocdCm, key, value, &doc);
    f.detail = format!("→ {}. {}", flags.join(" "), doc.detail);
    f
}

fn cmd_params(data: &BTreeMap<String, String>, out: &mut Vec<Finding>) {
    for (key, value) in data {
        let doc = unknown_or(Source::CmdParams, key);
        out.push(from_doc(Source::CmdParams, key, value, &doc));
    }
}

/// One `policy.csv` line as flotilla-server's `rbac::parse` reads it (p rules and g
/// bindings), or why it cannot.
fn policy_line(line: &str) -> Result<char, String> {
    let f: Vec<&str> = line.split(',').map(str::trim).collect();
    match f.first().copied() {
        Some("p") if f.len() == 5 || f.len() == 6 => {
            let eft = f.get(5).copied().unwrap_or("allow");
            if eft != "allow" && eft != "deny" {
                return Err(format!("effect {eft:?} is not allow or deny"));
            }
            Ok('p')
        }
        Some("g") if f.len() == 3 => Ok('g'),
        _ => {
            Err("not `p, subject, resource, action, object[, effect]` or `g, subject, role`".into())
        }
    }
}

fn rbac_cm(data: &BTreeMap<String, String>, out: &mut Vec<Finding>) {
    let src = Source::RbacCm.name();
    for (key, value) in data {
        match key.as_str() {
            k if k == "policy.csv" || (k.starts_with("policy.") && k.ends_with(".csv")) => {
                let (mut p, mut g, mut bad) = (0, 0, Vec::new());
                for (i, line) in value.lines().enumerate() {
                    let line = line.trim();
                    if line.is_empty() || line.starts_with('#') {
                        continue;
                    }
                    match policy_line(line) {
                        Ok('p') => p += 1,
                        Ok(_) => g += 1,
                        Err(why) => bad.push((i + 1, why)),
                    }
                }
                if bad.is_empty() {
                    out.push(Finding::new(
                        src,
                        key,
                        Treatment::Honoured,
                        format!(
                            "{p} rule(s) and {g} role binding(s) on top of role:readonly and role:admin (globs; deny wins)"
                        ),
                    ));
                } else {
                    out.push(Finding::refused(
                        src,
                        key,
                        true,
                        format!(
                            "{} line(s) do not parse: flotilla-server refuses the whole argocd-rbac-cm and keeps the previous policy (on a fresh start: the built-in roles only)",
                            bad.len()
                        ),
                    ));
                    for (n, why) in bad {
                        out.push(Finding::refused(src, &format!("{key} line {n}"), true, why));
                    }
                }
            }
            "scopes" => {
                let t = value.trim();
                let list = serde_yaml::from_str::<Vec<String>>(t);
                let f = match list {
                    _ if t.is_empty() => Finding::new(
                        src,
                        key,
                        Treatment::Honoured,
                        "empty: groups come from the `groups` claim",
                    ),
                    Ok(claims) => Finding::new(
                        src,
                        key,
                        Treatment::Honoured,
                        format!("groups come from the claims {}", claims.join(", ")),
                    ),
                    Err(_) if t == "groups" => Finding::new(
                        src,
                        key,
                        Treatment::Honoured,
                        "groups come from the `groups` claim",
                    ),
                    Err(_) => Finding::refused(
                        src,
                        key,
                        true,
                        "not a YAML list of claims: flotilla-server reads groups from the `groups` claim instead",
                    ),
                };
                out.push(f);
            }
            _ => out.push(from_doc(
                Source::RbacCm,
                key,
                value,
                &unknown_or(Source::RbacCm, key),
            )),
        }
    }
}

/// `argocd-tls-certs-cm`: one PEM bundle per server name, checked as the repo-server checks it.
fn tls_certs(data: &BTreeMap<String, String>, out: &mut Vec<Finding>) {
    let src = "argocd-tls-certs-cm";
    for (host, pem) in data {
        let safe = !host.is_empty()
            && !host.starts_with('.')
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b".-_:".contains(&b));
        let f = if !safe {
            Finding::refused(
                src,
                host,
                false,
                "not a server name: the repo-server never reads it",
            )
        } else {
            match reqwest::Certificate::from_pem_bundle(pem.as_bytes()) {
                Ok(certs) if !certs.is_empty() => Finding::new(
                    src,
                    host,
                    Treatment::Honoured,
                    format!(
                        "{} CA certificate(s) for {host}, added to the system roots (the chart mounts this ConfigMap at flotilla-repo-server --tls-certs-dir)",
                        certs.len()
                    ),
                ),
                _ => Finding::refused(
                    src,
                    host,
                    false,
                    format!("no valid PEM certificate: fetches from {host} fail (as in Argo CD)"),
                ),
            }
        };
        out.push(f);
    }
}

/// `argocd-ssh-known-hosts-cm`: `ssh_known_hosts`, a known_hosts file.
fn known_hosts(data: &BTreeMap<String, String>, out: &mut Vec<Finding>) {
    const KEY_TYPES: &[&str] = &[
        "ssh-rsa",
        "ssh-dss",
        "ssh-ed25519",
        "ecdsa-sha2-nistp256",
        "ecdsa-sha2-nistp384",
        "ecdsa-sha2-nistp521",
        "sk-ssh-ed25519@openssh.com",
        "sk-ecdsa-sha2-nistp256@openssh.com",
    ];
    let src = "argocd-ssh-known-hosts-cm";
    for (key, value) in data {
        if key != "ssh_known_hosts" {
            out.push(Finding::new(
                src,
                key,
                Treatment::NotNeeded,
                "Argo CD and Flotilla read ssh_known_hosts only",
            ));
            continue;
        }
        let (mut good, mut bad) = (0, Vec::new());
        for (i, line) in value.lines().enumerate() {
            let t = line.trim();
            if t.is_empty() || t.starts_with('#') {
                continue;
            }
            let mut f: Vec<&str> = t.split_whitespace().collect();
            if f.first().is_some_and(|m| m.starts_with('@')) {
                f.remove(0);
            }
            if f.len() >= 3 && KEY_TYPES.contains(&f[1]) {
                good += 1;
            } else {
                bad.push(i + 1);
            }
        }
        out.push(Finding::new(
            src,
            key,
            Treatment::Honoured,
            format!(
                "{good} host key(s); the chart mounts it at flotilla-repo-server --ssh-known-hosts (checked unless a repository is insecure)"
            ),
        ));
        for n in bad {
            out.push(Finding::refused(
                src,
                &format!("ssh_known_hosts line {n}"),
                false,
                "not a known_hosts entry: ssh ignores it (connections to that host fail)",
            ));
        }
    }
}

fn gpg_keys(data: &BTreeMap<String, String>, out: &mut Vec<Finding>) {
    for key in data.keys() {
        out.push(Finding::refused(
            "argocd-gpg-keys-cm",
            key,
            false,
            "Flotilla verifies no commit signatures: an AppProject with signatureKeys is refused by the controller",
        ));
    }
}

/// The data fields of a Secret (`data` and `stringData`).
fn secret_fields(s: &Secret) -> BTreeSet<String> {
    s.data
        .iter()
        .flat_map(|d| d.keys())
        .chain(s.string_data.iter().flat_map(|d| d.keys()))
        .cloned()
        .collect()
}

fn secret_text(s: &Secret, key: &str) -> Option<String> {
    s.data
        .as_ref()
        .and_then(|d| d.get(key))
        .map(|b| String::from_utf8_lossy(&b.0).into_owned())
        .or_else(|| s.string_data.as_ref().and_then(|d| d.get(key)).cloned())
}

fn parse_secret(o: &Value, src: &str, out: &mut Vec<Finding>) -> Option<Secret> {
    match serde_json::from_value::<Secret>(o.clone()) {
        Ok(s) => Some(s),
        Err(_) => {
            out.push(Finding::refused(
                src,
                name_of(o),
                true,
                "not a readable Secret (data values must be base64): Flotilla would not use it",
            ));
            None
        }
    }
}

/// The fields Argo CD's repository Secrets have that `RepoCreds::from_secret` reads.
const REPO_READ: &[&str] = &[
    "url",
    "name",
    "type",
    "project",
    "username",
    "password",
    "bearerToken",
    "sshPrivateKey",
    "insecure",
    "enableLfs",
    "enableOCI",
    "tlsClientCertData",
    "tlsClientCertKey",
    "githubAppID",
    "githubAppInstallationID",
    "githubAppPrivateKey",
    "githubAppEnterpriseBaseUrl",
    "proxy",
    "noProxy",
];

/// A repository or repo-creds Secret through the controller's `RepoCreds::from_secret`.
fn repo_secret(o: &Value, ty: &str, out: &mut Vec<Finding>) {
    let src = format!("{ty} Secret");
    let Some(s) = parse_secret(o, &src, out) else {
        return;
    };
    let name = name_of(o).to_string();
    let f = match RepoCreds::from_secret(&s) {
        None if secret_text(&s, "url").is_none_or(|u| u.is_empty()) => Finding::refused(
            &src,
            &name,
            false,
            "no url: Argo CD and Flotilla both ignore it",
        ),
        None => Finding::refused(
            &src,
            &name,
            true,
            "project is not UTF-8: flotilla-controller ignores the Secret (never read as global)",
        ),
        Some(c) if c.problem.is_some() => Finding::refused(
            &src,
            &name,
            true,
            format!(
                "{}: flotilla-controller refuses it (apps using it get a ComparisonError)",
                c.problem.unwrap_or_default()
            ),
        ),
        Some(c) if !c.unsupported.is_empty() => Finding::refused(
            &src,
            &name,
            true,
            format!(
                "sets {}, which Flotilla does not honour yet: flotilla-controller refuses the Secret rather than fetch without it (apps using it get a ComparisonError)",
                c.unsupported.join(", ")
            ),
        ),
        Some(c) => Finding::new(&src, &name, Treatment::Honoured, describe_repo(&c, ty)),
    };
    out.push(f);
    for field in secret_fields(&s) {
        if REPO_READ.contains(&field.as_str())
            || flotilla_controller::repos::UNSUPPORTED_KEYS.contains(&field.as_str())
        {
            continue;
        }
        let at = format!("{name}/{field}");
        let on = secret_text(&s, &field).is_some_and(|v| v.trim() == "true");
        let f = match field.as_str() {
            "insecureIgnoreHostKey" if !on => continue,
            "insecureIgnoreHostKey" => Finding::refused(
                &src,
                &at,
                false,
                "host keys are checked unless the repository is `insecure`: ssh fails where Argo CD connected",
            ),
            "insecureOCIForceHttp" if !on => continue,
            "insecureOCIForceHttp" => Finding::refused(
                &src,
                &at,
                false,
                "OCI registries are reached over https only",
            ),
            "depth" | "enablePartialClone" | "sparsePaths" => Finding::new(
                &src,
                &at,
                Treatment::NotNeeded,
                "one bare cache per repository, fetched as needed and exported per commit: shallow, partial and sparse clones are only optimisations",
            ),
            _ => Finding::refused(
                &src,
                &at,
                true,
                "not a field of Argo CD's repository Secret: Flotilla ignores it",
            ),
        };
        out.push(f);
    }
}

fn describe_repo(c: &RepoCreds, ty: &str) -> String {
    let mut auth = Vec::new();
    if c.github_app.is_some() {
        auth.push("GitHub App");
    }
    if c.ssh_private_key.is_some() {
        auth.push("SSH key");
    }
    if c.bearer_token.is_some() {
        auth.push("bearer token");
    }
    if c.password.is_some() || c.username.is_some() {
        auth.push("username/password");
    }
    if c.tls_client_cert_data.is_some() {
        auth.push("TLS client certificate");
    }
    let mut d = format!(
        "{} {}; {}; auth: {}",
        if ty == "repo-creds" {
            "credentials for URLs under"
        } else {
            "repository"
        },
        redact_url(&c.url),
        match &c.project {
            Some(p) => format!("project {p} only"),
            None => "every project".into(),
        },
        if auth.is_empty() {
            "none".to_string()
        } else {
            auth.join(", ")
        }
    );
    if let Some(t) = &c.repo_type {
        d.push_str(&format!("; type {t}"));
    }
    if c.enable_oci {
        d.push_str("; OCI");
    }
    if c.enable_lfs {
        d.push_str("; Git LFS");
    }
    if c.proxy.is_some() {
        d.push_str("; through a proxy");
    }
    if c.insecure {
        d.push_str("; insecure: TLS certificates and SSH host keys are not checked");
    }
    d
}

/// The fields of Argo CD's cluster Secrets (all read by `Cluster::from_secret`).
const CLUSTER_FIELDS: &[&str] = &[
    "name",
    "server",
    "config",
    "project",
    "namespaces",
    "clusterResources",
    "shard",
];

/// A cluster Secret through the controller's `Cluster::from_secret` (unknown config fields
/// and unusable values refused by name).
fn cluster_secret(o: &Value, out: &mut Vec<Finding>) {
    let src = "cluster Secret";
    let Some(s) = parse_secret(o, src, out) else {
        return;
    };
    let name = name_of(o).to_string();
    let f = match Cluster::from_secret(&s) {
        Ok(c) => Finding::new(src, &name, Treatment::Honoured, describe_cluster(&c)),
        Err(e) => {
            let why = match &e {
                // serde's message may quote a value: say where instead.
                ClusterSecretError::BadConfig { .. } => {
                    let text = secret_text(&s, "config").unwrap_or_default();
                    match serde_json::from_str::<Value>(&text) {
                        Err(j) => format!(
                            "config is not valid JSON (line {}, column {})",
                            j.line(),
                            j.column()
                        ),
                        Ok(v) if !v.is_object() => "config is not a JSON object".into(),
                        Ok(_) => "a config field has the wrong type".into(),
                    }
                }
                other => redact_text(&other.to_string()),
            };
            Finding::refused(
                src,
                &name,
                true,
                format!(
                    "{why}: flotilla-controller leaves the cluster out, so apps aimed at it get an error instead of a sync"
                ),
            )
        }
    };
    out.push(f);
    for field in secret_fields(&s) {
        if !CLUSTER_FIELDS.contains(&field.as_str()) {
            out.push(Finding::refused(
                src,
                &format!("{name}/{field}"),
                true,
                "not a field of Argo CD's cluster Secret: Flotilla ignores it",
            ));
        }
    }
}

fn describe_cluster(c: &Cluster) -> String {
    let cfg = &c.config;
    let auth = if let Some(e) = &cfg.exec_provider_config {
        format!("exec provider {}", e.command)
    } else if cfg.aws_auth_config.is_some() {
        "EKS (awsAuthConfig)".into()
    } else if cfg.bearer_token.is_some() {
        "bearer token".into()
    } else if cfg.username.is_some() || cfg.password.is_some() {
        "username/password".into()
    } else if cfg.tls_client_config.cert_data.is_some() {
        "TLS client certificate".into()
    } else {
        "none".into()
    };
    let mut d = format!(
        "server {}{}; auth: {auth}",
        redact_url(&c.server),
        if c.name != c.server {
            format!(" (name {})", c.name)
        } else {
            String::new()
        }
    );
    if let Some(p) = &c.project {
        d.push_str(&format!("; project {p} only"));
    }
    if !c.namespaces.is_empty() {
        d.push_str(&format!(
            "; namespaces {}{}",
            c.namespaces.join(","),
            if c.cluster_resources {
                " and cluster-scoped resources"
            } else {
                " only"
            }
        ));
    }
    if let Some(n) = c.shard {
        d.push_str(&format!("; pinned to controller shard {n}"));
    }
    if cfg.tls_client_config.insecure {
        d.push_str("; insecure: the API server's certificate is not checked");
    }
    if cfg.proxy_url.is_some() {
        d.push_str("; through a proxy");
    }
    d
}

// ---------------------------------------------------------------------------------------------
// The command

/// The key table as `--list-keys` prints it.
pub fn list_keys(format: Format) -> String {
    match format {
        Format::Json | Format::Yaml => output::render_value(
            &serde_json::to_value(keys::KEYS).unwrap_or_default(),
            format,
        ),
        Format::Table | Format::Wide => {
            let rows: Vec<Vec<String>> = keys::KEYS
                .iter()
                .map(|k| {
                    let detail = if k.flotilla.is_empty() {
                        k.detail.to_string()
                    } else if k.treatment == Treatment::Mapped {
                        format!("→ {}. {}", k.flotilla, k.detail)
                    } else {
                        format!("{}: {}", k.flotilla, k.detail)
                    };
                    vec![
                        k.source.name().to_string(),
                        k.key.to_string(),
                        k.treatment_text(),
                        detail,
                    ]
                })
                .collect();
            output::table(&["SOURCE", "KEY", "TREATMENT", "DETAIL"], &rows)
        }
    }
}

fn restore_rows(rows: &[backup::Restored]) -> String {
    let rows: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            vec![
                r.kind.clone(),
                r.namespace.clone(),
                r.name.clone(),
                r.action.clone(),
            ]
        })
        .collect();
    output::table(&["KIND", "NAMESPACE", "NAME", "ACTION"], &rows)
}

pub async fn run(args: ImportArgs, kube: &KubeArgs, format: Format) -> Result<u8, AdminError> {
    if args.list_keys {
        println!("{}", list_keys(format));
        return Ok(0);
    }
    let (objects, mut client, absent) = if args.files.is_empty() {
        let client = kube.client().await?;
        let (objects, absent) = live_objects(&client, &kube.namespace).await?;
        (objects, Some(client), absent)
    } else {
        (read_objects(&args.files)?, None, Vec::new())
    };
    let mut report = analyse(&objects);
    report.notes.extend(absent);
    if objects.is_empty() {
        for n in &report.notes {
            eprintln!("note: {n}");
        }
        return Err(AdminError::Invalid(if args.files.is_empty() {
            format!(
                "nothing to import: no Argo CD ConfigMaps or labelled Secrets in namespace {}",
                kube.namespace
            )
        } else {
            "nothing to import: the input holds no objects".into()
        }));
    }
    let unsafe_count = report.unsafe_count();
    // The restore of the input's Applications and AppProjects.
    let mut restored: Option<Result<Vec<backup::Restored>, AdminError>> = None;
    let mut withheld = false;
    if report.apps > 0 {
        if args.apply && unsafe_count > 0 && !args.force {
            withheld = true;
        } else {
            let c = match client.take() {
                Some(c) => Ok(c),
                None => kube.client().await,
            };
            restored = Some(match c {
                Ok(c) => backup::restore(&c, &kube.namespace, &objects, args.apply).await,
                Err(e) => Err(e),
            });
        }
    }
    let mode = if args.apply { "applied" } else { "dry run" };
    let rows = restored.as_ref().and_then(|r| r.as_ref().ok());
    match format {
        Format::Json | Format::Yaml => {
            let extra = rows.map(|r| {
                (
                    "restore",
                    json!({"applied": args.apply, "objects": serde_json::to_value(r).unwrap_or_default()}),
                )
            });
            println!("{}", report.render(format, extra).trim_end());
        }
        Format::Table | Format::Wide => {
            println!("{}", report.render(format, None));
            if let Some(r) = rows {
                println!("\nRestore ({mode}):");
                if r.is_empty() {
                    println!("nothing to restore");
                } else {
                    println!("{}", restore_rows(r));
                }
            }
        }
    }
    for n in &report.notes {
        eprintln!("note: {n}");
    }
    if let Some(Err(e)) = restored {
        return Err(e);
    }
    if withheld {
        return Err(AdminError::Unsafe(format!(
            "{unsafe_count} unsafe finding(s): the {} Applications/AppProjects were not restored (fix them, or restore anyway with --force)",
            report.apps
        )));
    }
    if unsafe_count > 0 {
        return Err(AdminError::Unsafe(format!(
            "{unsafe_count} unsafe finding(s): refused settings that change security or what gets deployed (see `refused (unsafe)` above)"
        )));
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;

    fn b64(s: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(s)
    }

    fn cm(name: &str, data: Value) -> Value {
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": data})
    }

    fn secret(name: &str, ty: &str, data: Value) -> Value {
        json!({"apiVersion": "v1", "kind": "Secret",
               "metadata": {"name": name, "labels": {SECRET_TYPE_LABEL: ty}},
               "stringData": data})
    }

    fn find<'a>(r: &'a Report, source: &str, key: &str) -> &'a Finding {
        r.findings
            .iter()
            .find(|f| f.source == source && f.key == key)
            .unwrap_or_else(|| panic!("no row {source} {key}: {:#?}", r.findings))
    }

    #[test]
    fn argocd_cm_rows_use_the_controllers_parser_and_the_table() {
        let r = analyse(&[cm(
            "argocd-cm",
            json!({
                "url": "https://cd.example.com",
                "application.resourceTrackingMethod": "annotation",
                "resource.exclusions": "- apiGroups: ['x.io']\n",
                "resource.customizations.ignoreDifferences.apps_Deployment": "jsonPointers: [spec]",
                "resource.customizations.actions.apps_Deployment": "discovery.lua: x",
                "timeout.reconciliation": "2m",
                "exec.enabled": "false",
                "statusbadge.enabled": "true",
                "kustomize.buildOptions": "--enable-helm",
                "application.sync.impersonation.enabled": "false",
                "frobnicate": "1",
            }),
        )]);
        let row = |k| find(&r, "argocd-cm", k);
        assert_eq!(row("url").treatment, Treatment::Honoured);
        assert_eq!(
            row("application.resourceTrackingMethod").treatment,
            Treatment::Honoured
        );
        assert_eq!(row("resource.exclusions").treatment, Treatment::Honoured);
        // A JSON pointer without its leading slash: the controller's own refusal, named.
        let bad = row("resource.customizations.ignoreDifferences.apps_Deployment");
        assert!(bad.is_unsafe && bad.detail.contains("flotilla-controller refuses it"));
        let actions = row("resource.customizations.actions.apps_Deployment");
        assert!(actions.treatment == Treatment::Refused && !actions.is_unsafe);
        let t = row("timeout.reconciliation");
        assert_eq!(t.treatment, Treatment::Mapped);
        assert!(
            t.detail.starts_with(
                "→ flotilla-controller --refresh-seconds (FLOTILLA_REFRESH_SECONDS) 120."
            ),
            "{}",
            t.detail
        );
        assert_eq!(row("exec.enabled").treatment, Treatment::Honoured);
        let badge = row("statusbadge.enabled");
        assert!(badge.treatment == Treatment::Refused && !badge.is_unsafe);
        assert!(row("kustomize.buildOptions").is_unsafe);
        let imp = row("application.sync.impersonation.enabled");
        assert_eq!(imp.treatment, Treatment::Honoured);
        assert!(
            !imp.detail.contains("still names the key"),
            "{}",
            imp.detail
        );
        assert!(row("frobnicate").is_unsafe);
        assert_eq!(r.unsafe_count(), 3);
    }

    #[test]
    fn tracking_method_absent_or_wrong() {
        let r = analyse(&[cm("argocd-cm", json!({"url": "https://x"}))]);
        let t = find(&r, "argocd-cm", "application.resourceTrackingMethod");
        assert!(t.treatment == Treatment::Mapped && t.detail.starts_with("not set"));
        let r = analyse(&[cm(
            "argocd-cm",
            json!({"application.resourceTrackingMethod": "labels"}),
        )]);
        assert!(find(&r, "argocd-cm", "application.resourceTrackingMethod").is_unsafe);
    }

    #[test]
    fn oidc_config_is_checked_without_quoting_it() {
        let ok = oidc_config(
            "issuer: https://idp.example.com\nclientID: flotilla\nclientSecret: hunter2hunter2\nrequestedIDTokenClaims: {groups: {essential: true}}\n",
            true,
        );
        assert_eq!(ok.treatment, Treatment::Honoured);
        assert!(ok.detail.contains("not used: requestedIDTokenClaims"));
        assert!(!ok.detail.contains("hunter2"));
        let http = oidc_config("issuer: http://idp.example.com\nclientID: x\n", true);
        assert!(http.treatment == Treatment::Refused && http.detail.contains("https"));
        let broken = oidc_config("issuer: [hunter2hunter2\n", true);
        assert!(broken.detail.contains("not valid YAML") && !broken.detail.contains("hunter2"));
        let no_url = oidc_config("issuer: https://idp\nclientID: x\n", false);
        assert!(no_url.detail.contains("`url` is not set"));
    }

    #[test]
    fn cmd_params_map_to_flags_with_converted_values() {
        let r = analyse(&[cm(
            "argocd-cmd-params-cm",
            json!({
                "reposerver.parallelism.limit": "8",
                "controller.sync.wave.delay.seconds": "3",
                "controller.sharding.algorithm": "round-robin",
                "server.insecure": "true",
                "server.disable.auth": "true",
                "notificationscontroller.brand.new": "x",
                "controller.brand.new": "x",
                "redis.server": "",
            }),
        )]);
        let row = |k| find(&r, "argocd-cmd-params-cm", k);
        let p = row("reposerver.parallelism.limit");
        assert_eq!(p.treatment, Treatment::Mapped);
        assert_eq!(
            p.flotilla,
            "flotilla-repo-server --parallelism (FLOTILLA_REPO_PARALLELISM)"
        );
        assert!(
            p.detail.contains("(FLOTILLA_REPO_PARALLELISM) 8."),
            "{}",
            p.detail
        );
        assert!(
            row("controller.sync.wave.delay.seconds")
                .detail
                .contains(") 3000.")
        );
        assert_eq!(
            row("controller.sharding.algorithm").treatment,
            Treatment::NotNeeded
        );
        assert_eq!(row("server.insecure").treatment, Treatment::Honoured);
        let auth = row("server.disable.auth");
        assert!(auth.treatment == Treatment::Refused && !auth.is_unsafe);
        assert_eq!(
            row("notificationscontroller.brand.new").treatment,
            Treatment::NotNeeded
        );
        assert!(row("controller.brand.new").is_unsafe);
        assert_eq!(row("redis.server").treatment, Treatment::Honoured, "empty");
    }

    #[test]
    fn rbac_lines_that_do_not_parse_are_unsafe_each() {
        let r = analyse(&[cm(
            "argocd-rbac-cm",
            json!({
                "policy.csv": "# comment\np, role:x, applications, get, */*, allow\ng, team, role:x\np, a, b, c\n",
                "policy.default": "role:readonly",
                "policy.overlay.csv": "p, role:y, applications, sync, */*, deny",
                "scopes": "[groups, email]",
                "policy.matchMode": "glob",
            }),
        )]);
        let row = |k| find(&r, "argocd-rbac-cm", k);
        assert!(row("policy.csv").is_unsafe);
        let line = row("policy.csv line 4");
        assert!(line.is_unsafe && line.detail.starts_with("not `p, subject"));
        assert_eq!(row("policy.default").treatment, Treatment::Honoured);
        let overlay = row("policy.overlay.csv");
        assert!(
            overlay.treatment == Treatment::Honoured && !overlay.is_unsafe,
            "overlays are read like policy.csv: {overlay:?}"
        );
        assert!(row("scopes").detail.contains("groups, email"));
        assert_eq!(row("policy.matchMode").treatment, Treatment::Honoured);
        let ok = analyse(&[cm(
            "argocd-rbac-cm",
            json!({"policy.csv": "p, role:x, applications, get, */*, allow\ng, team, role:x", "scopes": "email"}),
        )]);
        assert_eq!(
            find(&ok, "argocd-rbac-cm", "policy.csv").detail,
            "1 rule(s) and 1 role binding(s) on top of role:readonly and role:admin (globs; deny wins)"
        );
        assert!(find(&ok, "argocd-rbac-cm", "scopes").is_unsafe);
    }

    #[test]
    fn secrets_are_judged_by_the_controllers_parsers_and_never_quoted() {
        let token = "tok-8d1f0c2e9a7b";
        let password = "pw-3b9e1a7c5d";
        let objects = vec![
            secret(
                "repo-ok",
                "repository",
                json!({"url": "https://user:inline-pass-99@git.example.com/a.git", "username": "u", "password": password, "depth": "1"}),
            ),
            secret(
                "repo-gcp",
                "repository",
                json!({"url": "https://source.developers.google.com/p/x", "gcpServiceAccountKey": "{\"k\": \"gcp-key-123456\"}"}),
            ),
            secret(
                "creds",
                "repo-creds",
                json!({"url": "https://git.example.com/org", "githubAppID": "1"}),
            ),
            secret(
                "prod",
                "cluster",
                json!({"name": "prod", "server": "https://prod.example.com", "shard": "2",
                       "config": format!("{{\"bearerToken\": \"{token}\", \"tlsClientConfig\": {{\"insecure\": false}}}}")}),
            ),
            secret(
                "odd",
                "cluster",
                json!({"server": "https://odd.example.com",
                       "config": format!("{{\"bearerToken\": \"{token}\", \"frobnicate\": true}}"),
                       "extra": "x"}),
            ),
            secret(
                "typed",
                "cluster",
                json!({"server": "https://t.example.com", "config": format!("{{\"tlsClientConfig\": \"{token}\"}}")}),
            ),
        ];
        let r = analyse(&objects);
        let ok = find(&r, "repository Secret", "repo-ok");
        assert_eq!(ok.treatment, Treatment::Honoured);
        assert!(
            ok.detail.contains("https://***@git.example.com/a.git"),
            "{}",
            ok.detail
        );
        assert_eq!(
            find(&r, "repository Secret", "repo-ok/depth").treatment,
            Treatment::NotNeeded
        );
        let gcp = find(&r, "repository Secret", "repo-gcp");
        assert!(gcp.is_unsafe && gcp.detail.contains("gcpServiceAccountKey"));
        let half = find(&r, "repo-creds Secret", "creds");
        assert!(half.is_unsafe && half.detail.contains("go together"));
        let prod = find(&r, "cluster Secret", "prod");
        assert_eq!(prod.treatment, Treatment::Honoured);
        assert!(prod.detail.contains("pinned to controller shard 2"));
        let odd = find(&r, "cluster Secret", "odd");
        assert!(
            odd.is_unsafe && odd.detail.contains("\"frobnicate\""),
            "{}",
            odd.detail
        );
        assert!(find(&r, "cluster Secret", "odd/extra").is_unsafe);
        let typed = find(&r, "cluster Secret", "typed");
        assert!(
            typed.is_unsafe && typed.detail.contains("wrong type"),
            "{}",
            typed.detail
        );
        for format in [Format::Table, Format::Json, Format::Yaml] {
            let text = r.render(format, None);
            for secret in [token, password, "inline-pass-99", "gcp-key-123456"] {
                assert!(
                    !text.contains(secret),
                    "{secret} shown in {format:?}:\n{text}"
                );
            }
        }
    }

    #[test]
    fn scrubber_removes_secret_values_from_any_text() {
        let mut s = Scrubber::default();
        s.add_secret(
            &json!({"data": {"password": b64("s3cr3t-value"), "url": b64("https://h/x")}}),
        );
        assert_eq!(
            s.apply("a s3cr3t-value b https://h/x"),
            "a *** b https://h/x"
        );
        s.add_secret(&json!({"stringData": {"username": "deploy"}}));
        assert_eq!(s.apply("deployed by deploy."), "deployed by ***.");
        assert_eq!(s.apply("xs3cr3t-value"), "xs3cr3t-value", "inside a word");
    }

    #[test]
    fn tls_certs_and_known_hosts() {
        let r = analyse(&[
            cm(
                "argocd-tls-certs-cm",
                json!({"git.example.com": "not a pem", "../etc": "x"}),
            ),
            cm(
                "argocd-ssh-known-hosts-cm",
                json!({"ssh_known_hosts": "# c\ngithub.com ssh-ed25519 AAAAC3Nza\n@cert-authority *.example.com ssh-rsa AAAAB3\nnonsense\n"}),
            ),
        ]);
        let pem = find(&r, "argocd-tls-certs-cm", "git.example.com");
        assert!(pem.treatment == Treatment::Refused && !pem.is_unsafe);
        assert!(
            find(&r, "argocd-tls-certs-cm", "../etc")
                .detail
                .contains("not a server name")
        );
        let kh = find(&r, "argocd-ssh-known-hosts-cm", "ssh_known_hosts");
        assert!(kh.detail.starts_with("2 host key(s)"), "{}", kh.detail);
        assert!(!find(&r, "argocd-ssh-known-hosts-cm", "ssh_known_hosts line 4").is_unsafe);
    }

    #[test]
    fn reading_files_expands_lists_and_names_bad_documents() {
        let dir = std::env::temp_dir().join(format!("flotilla-import-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("sub")).expect("dir");
        std::fs::write(
            dir.join("a.yaml"),
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: argocd-cm}\n---\n---\napiVersion: v1\nkind: List\nitems:\n- {apiVersion: v1, kind: ConfigMap, metadata: {name: argocd-rbac-cm}}\n",
        )
        .expect("a");
        std::fs::write(
            dir.join("sub/b.yml"),
            "apiVersion: v1\nkind: Secret\nmetadata: {name: s}\n",
        )
        .expect("b");
        std::fs::write(dir.join("notes.txt"), "ignored").expect("c");
        std::fs::write(dir.join(".hidden.yaml"), "kind: [").expect("d");
        let objs = read_objects(std::slice::from_ref(&dir)).expect("read");
        let names: Vec<&str> = objs.iter().map(name_of).collect();
        assert_eq!(names, ["argocd-cm", "argocd-rbac-cm", "s"]);
        std::fs::write(
            dir.join("c.yaml"),
            "kind: ConfigMap\nmetadata:\n  name: x\n data: 1\n",
        )
        .expect("bad");
        let e = read_objects(std::slice::from_ref(&dir)).expect_err("bad yaml");
        assert!(
            matches!(&e, AdminError::Invalid(m) if m.contains("c.yaml: document 1: not valid YAML") && m.contains("line")),
            "{e}"
        );
        std::fs::write(dir.join("c.yaml"), "just: a map\n").expect("nokind");
        let e = read_objects(std::slice::from_ref(&dir)).expect_err("no kind");
        assert!(e.to_string().contains("no kind"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn other_objects_are_noted_and_apps_counted() {
        let r = analyse(&[
            json!({"apiVersion": "argoproj.io/v1alpha1", "kind": "Application", "metadata": {"name": "a"}}),
            json!({"apiVersion": "argoproj.io/v1alpha1", "kind": "AppProject", "metadata": {"name": "p"}}),
            json!({"apiVersion": "argoproj.io/v1alpha1", "kind": "ApplicationSet", "metadata": {"name": "s"}}),
            json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"}}),
        ]);
        assert_eq!(r.apps, 2);
        assert_eq!(r.findings.len(), 1);
        assert_eq!(r.notes, ["Deployment d: not part of this report"]);
    }

    #[test]
    fn plugins_become_flags() {
        let f = plugins(
            "- name: kasane\n  init:\n    command: [kasane, update]\n  generate:\n    command: [sh, -c]\n    args: [\"kasane show\"]\n",
        );
        assert_eq!(f.treatment, Treatment::Mapped);
        assert!(
            f.detail
                .starts_with("→ --plugin 'kasane=kasane update && sh -c '\\''kasane show'\\'''"),
            "{}",
            f.detail
        );
    }
}
