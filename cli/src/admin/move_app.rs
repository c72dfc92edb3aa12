//! `flotilla admin move`: hands Applications between Argo CD and Flotilla running side by side
//! (controller `--argocd-side-by-side`), by Argo CD's skip-reconcile switch and a label.
//!
//! To Flotilla: `argocd.argoproj.io/skip-reconcile: "true"` (Argo CD stops) plus the label the
//! controller's `--application-selector` selects. Back: both removed. Nothing else changes: the
//! Application and the objects it deployed stay as they are (same UIDs).

use clap::{Args, ValueEnum};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::core::{DynamicObject, GroupVersionKind};
use kube::discovery::ApiResource;
use serde_json::{Value, json};

use super::{AdminError, KubeArgs};
use crate::output::{Format, render_value, table};
use flotilla_controller::selection::{MANAGED_BY_LABEL, SKIP_RECONCILE_ANNOTATION, parse_bool};

// Exit status of `move`: 0 when every app moved or already was where asked, 1 when any was
// refused or failed (each row says why), 2 on bad usage.
/// Who reconciles the apps after the move.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Side {
    Flotilla,
    Argocd,
}

#[derive(Debug, Args)]
#[command(
    after_help = "Exit status: 0 when every application moved or already was where asked; 1 when any was refused or failed (its row says why); 2 on bad usage (an empty --selector is refused: it would select every application)."
)]
pub struct MoveArgs {
    /// Application names (or --project / --selector).
    pub apps: Vec<String>,
    /// Who reconciles them afterwards.
    #[arg(long, value_enum)]
    pub to: Side,
    /// Every Application of this project.
    #[arg(long)]
    pub project: Option<String>,
    /// Every Application matching this label selector.
    #[arg(long, short = 'l')]
    pub selector: Option<String>,
    /// The Applications' namespace (default: --namespace).
    #[arg(long)]
    pub app_namespace: Option<String>,
    /// The label the controller's --application-selector selects, set on the way to Flotilla
    /// and removed on the way back (KEY=VALUE).
    #[arg(long, default_value_t = format!("{MANAGED_BY_LABEL}=flotilla"), conflicts_with = "no_label")]
    pub label: String,
    /// Set no label (the controller selects by --application-projects instead).
    #[arg(long)]
    pub no_label: bool,
    /// Move even while a sync operation is running (the side giving the app up stops in the
    /// middle of it; the other side starts from the app's state), and apps an ApplicationSet
    /// owns (its controller rewrites their labels and annotations: put the marks in its
    /// template instead).
    #[arg(long)]
    pub force: bool,
    /// Show what would change; change nothing.
    #[arg(long)]
    pub dry_run: bool,
}

fn applications(client: &kube::Client, ns: &str) -> Api<DynamicObject> {
    let ar = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("argoproj.io", "v1alpha1", "Application"),
        "applications",
    );
    Api::namespaced_with(client.clone(), ns, &ar)
}

/// Who reconciles an app now, as its marks say.
fn side_of(meta: &ObjectMeta, label: Option<(&str, &str)>) -> &'static str {
    let skip = meta
        .annotations
        .as_ref()
        .and_then(|a| a.get(SKIP_RECONCILE_ANNOTATION))
        .is_some_and(|v| parse_bool(v));
    let labelled = label.is_none_or(|(k, v)| {
        meta.labels
            .as_ref()
            .and_then(|l| l.get(k))
            .is_some_and(|x| x == v)
    });
    match (skip, labelled) {
        (true, true) => "flotilla",
        (false, false) => "argocd",
        (true, false) => "nobody (skip-reconcile, not labelled)",
        (false, true) => "argocd (labelled, awaiting hand-over)",
    }
}

/// A running or requested operation, described.
fn operation_in_flight(obj: &DynamicObject) -> Option<String> {
    if obj.data.get("operation").is_some_and(|o| !o.is_null()) {
        return Some("an operation is requested".into());
    }
    let phase = obj.data["status"]["operationState"]["phase"].as_str()?;
    matches!(phase, "Running" | "Terminating").then(|| format!("its operation is {phase}"))
}

/// The ApplicationSet that owns the app, if one does.
fn owning_set(obj: &DynamicObject) -> Option<String> {
    obj.metadata
        .owner_references
        .as_ref()?
        .iter()
        .find(|o| o.kind == "ApplicationSet")
        .map(|o| o.name.clone())
}

/// Why an app may not move now (without `--force`).
fn refusal(obj: &DynamicObject) -> Option<String> {
    if let Some(why) = operation_in_flight(obj) {
        return Some(format!("{why} (wait for it, or --force)"));
    }
    owning_set(obj).map(|set| {
        format!("ApplicationSet {set} owns it and would undo the move: put the marks in its template (or --force)")
    })
}

/// The merge patch that moves an app to `to`.
fn patch_for(to: Side, label: Option<(&str, &str)>) -> Value {
    let (ann, lab) = match to {
        Side::Flotilla => (json!("true"), label.map(|(_, v)| json!(v))),
        Side::Argocd => (Value::Null, label.map(|_| Value::Null)),
    };
    let mut meta = json!({"annotations": {SKIP_RECONCILE_ANNOTATION: ann}});
    if let (Some((k, _)), Some(v)) = (label, lab) {
        meta["labels"] = json!({ k: v });
    }
    json!({ "metadata": meta })
}

pub async fn run(args: MoveArgs, kube: &KubeArgs, format: Format) -> Result<u8, AdminError> {
    let label = if args.no_label {
        None
    } else {
        Some(
            args.label
                .split_once('=')
                .filter(|(k, _)| !k.trim().is_empty())
                .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
                .ok_or_else(|| {
                    AdminError::Invalid(format!("--label {:?}: want KEY=VALUE", args.label))
                })?,
        )
    };
    let label_ref = label.as_ref().map(|(k, v)| (k.as_str(), v.as_str()));
    if args.apps.is_empty() && args.project.is_none() && args.selector.is_none() {
        return Err(AdminError::Invalid(
            "name the applications, or give --project or --selector".into(),
        ));
    }
    // An empty selector selects every app: an unset variable must not move a whole namespace.
    if args
        .selector
        .as_deref()
        .is_some_and(|s| s.trim().is_empty())
    {
        return Err(AdminError::Invalid(
            "--selector is empty (it would select every application)".into(),
        ));
    }
    if let Some(s) = &args.selector {
        flotilla_controller::selection::parse_selector(s)
            .map_err(|e| AdminError::Invalid(e.to_string()))?;
    }
    let client = kube.client().await?;
    let ns = args.app_namespace.as_deref().unwrap_or(&kube.namespace);
    let api = applications(&client, ns);
    let mut targets: Vec<DynamicObject> = Vec::new();
    for name in &args.apps {
        match api.get_opt(name).await? {
            Some(o) => targets.push(o),
            None => {
                return Err(AdminError::Invalid(format!(
                    "application {ns}/{name} not found"
                )));
            }
        }
    }
    if args.project.is_some() || args.selector.is_some() {
        let mut lp = ListParams::default();
        if let Some(s) = &args.selector {
            lp = lp.labels(s);
        }
        for o in api.list(&lp).await? {
            let project = o.data["spec"]["project"].as_str().unwrap_or("default");
            let project = if project.is_empty() {
                "default"
            } else {
                project
            };
            if args.project.as_deref().is_some_and(|p| p != project) {
                continue;
            }
            if !targets.iter().any(|t| t.metadata.name == o.metadata.name) {
                targets.push(o);
            }
        }
    }
    let to_name = match args.to {
        Side::Flotilla => "flotilla",
        Side::Argocd => "argocd",
    };
    let mut rows = Vec::new();
    let mut refused = 0;
    for listed in &targets {
        let name = listed.metadata.name.clone().unwrap_or_default();
        let mut from = side_of(&listed.metadata, label_ref);
        // Each app is read again just before its patch, and the patch carries the version read:
        // an operation started (or anything changed) since the list is noticed, not overwritten.
        let mut result = String::new();
        for _attempt in 0..3 {
            let obj = match api.get_opt(&name).await {
                Ok(Some(o)) => o,
                Ok(None) => {
                    result = "error: not found (deleted meanwhile)".into();
                    break;
                }
                Err(e) => {
                    result = format!("error: {e}");
                    break;
                }
            };
            from = side_of(&obj.metadata, label_ref);
            if from == to_name {
                result = "unchanged".into();
                break;
            }
            if let (Some(why), false) = (refusal(&obj), args.force) {
                result = format!("refused: {why}");
                break;
            }
            if args.dry_run {
                result = "would move".into();
                break;
            }
            let mut patch = patch_for(args.to, label_ref);
            patch["metadata"]["resourceVersion"] = json!(obj.metadata.resource_version);
            match api
                .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                Ok(_) => {
                    result = "moved".into();
                    break;
                }
                Err(kube::Error::Api(s)) if s.code == 409 => {
                    result = "error: it kept changing while being moved (409); try again".into();
                }
                Err(e) => {
                    result = format!("error: {e}");
                    break;
                }
            }
        }
        if result.starts_with("refused") || result.starts_with("error") {
            refused += 1;
        }
        rows.push(
            json!({"namespace": ns, "name": name, "from": from, "to": to_name, "result": result}),
        );
    }
    match format {
        Format::Json | Format::Yaml => println!("{}", render_value(&Value::Array(rows), format)),
        Format::Table | Format::Wide => {
            let cells: Vec<Vec<String>> = rows
                .iter()
                .map(|r| {
                    ["name", "from", "to", "result"]
                        .iter()
                        .map(|k| r[*k].as_str().unwrap_or_default().to_string())
                        .collect()
                })
                .collect();
            println!(
                "{}",
                table(&["APPLICATION", "FROM", "TO", "RESULT"], &cells)
            );
        }
    }
    Ok(if refused > 0 { 1 } else { 0 })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(labels: &[(&str, &str)], annotations: &[(&str, &str)]) -> ObjectMeta {
        let map = |kv: &[(&str, &str)]| {
            Some(
                kv.iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            )
        };
        ObjectMeta {
            labels: map(labels),
            annotations: map(annotations),
            ..Default::default()
        }
    }

    #[test]
    fn marks_say_who_reconciles() {
        let l = Some((MANAGED_BY_LABEL, "flotilla"));
        let skip = [(SKIP_RECONCILE_ANNOTATION, "true")];
        let lab = [(MANAGED_BY_LABEL, "flotilla")];
        assert_eq!(side_of(&meta(&[], &[]), l), "argocd");
        assert_eq!(side_of(&meta(&lab, &skip), l), "flotilla");
        assert!(side_of(&meta(&lab, &[]), l).contains("awaiting"));
        assert_eq!(side_of(&meta(&[], &skip), None), "flotilla");
    }

    #[test]
    fn running_operations_and_application_sets_refuse_a_move() {
        let mk = |v: Value| -> DynamicObject { serde_json::from_value(v).expect("object") };
        let base = json!({"apiVersion": "argoproj.io/v1alpha1", "kind": "Application",
                          "metadata": {"name": "a"}});
        assert!(refusal(&mk(base.clone())).is_none());
        let mut running = base.clone();
        running["status"] = json!({"operationState": {"phase": "Running"}});
        assert!(refusal(&mk(running)).is_some_and(|w| w.contains("Running")));
        let mut requested = base.clone();
        requested["operation"] = json!({"sync": {}});
        assert!(refusal(&mk(requested)).is_some_and(|w| w.contains("requested")));
        let mut done = base.clone();
        done["status"] = json!({"operationState": {"phase": "Succeeded"}});
        assert!(refusal(&mk(done)).is_none());
        let mut owned = base;
        owned["metadata"]["ownerReferences"] = json!([{"apiVersion": "argoproj.io/v1alpha1",
            "kind": "ApplicationSet", "name": "fleet", "uid": "u"}]);
        assert!(refusal(&mk(owned)).is_some_and(|w| w.contains("ApplicationSet fleet")));
    }

    #[test]
    fn patches_set_and_clear_both_marks() {
        let l = Some(("team", "x"));
        let to = patch_for(Side::Flotilla, l);
        assert_eq!(
            to["metadata"]["annotations"][SKIP_RECONCILE_ANNOTATION],
            "true"
        );
        assert_eq!(to["metadata"]["labels"]["team"], "x");
        let back = patch_for(Side::Argocd, l);
        assert!(back["metadata"]["annotations"][SKIP_RECONCILE_ANNOTATION].is_null());
        assert!(
            back["metadata"]["labels"]
                .as_object()
                .is_some_and(|m| m["team"].is_null())
        );
        assert!(
            patch_for(Side::Argocd, None)["metadata"]
                .get("labels")
                .is_none()
        );
    }
}
