//! Which Applications this controller takes: a label selector and a project list (default:
//! all), and the side-by-side mode in which Argo CD keeps every app not handed over.
//!
//! Side by side, `argocd.argoproj.io/skip-reconcile: "true"` is the hand-over: Argo CD stops
//! at it, and Flotilla starts at it (for selected apps only). An app Flotilla selects that
//! Argo CD still reconciles is left alone and counted as awaiting hand-over, so one app
//! never has two controllers. Flotilla's own pause switch is then `flotilla.dev/skip-reconcile`.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use kube::core::{Expression, Selector, SelectorExt};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::types::Application;

/// Argo CD's switch: an app carrying it is not reconciled by Argo CD.
pub const SKIP_RECONCILE_ANNOTATION: &str = "argocd.argoproj.io/skip-reconcile";
/// Flotilla's own pause switch side by side (where Argo CD's means "handed to Flotilla").
pub const FLOTILLA_SKIP_RECONCILE_ANNOTATION: &str = "flotilla.dev/skip-reconcile";
/// The label `flotilla admin move` sets by default, and the selector the guide uses.
pub const MANAGED_BY_LABEL: &str = "flotilla.dev/managed-by";

/// A label selector that cannot be parsed.
#[derive(Debug, thiserror::Error)]
#[error("label selector {selector:?}: {reason}")]
pub struct SelectorError {
    pub selector: String,
    pub reason: String,
}

/// The controller's choice of Applications.
#[derive(Debug, Clone, Default)]
pub struct AppSelection {
    /// Only apps whose labels match (none: every app).
    pub selector: Option<Selector>,
    /// The selector as given, for logs and `/status`.
    pub selector_text: String,
    /// Only apps of these projects (globs; empty: every project).
    pub projects: Vec<String>,
    /// Side by side with Argo CD: a selected app is Flotilla's only once it carries
    /// `argocd.argoproj.io/skip-reconcile: "true"`.
    pub side_by_side: bool,
    /// Side by side: how long after a hand-over is seen the app waits before its first
    /// reconcile (Argo CD checks skip-reconcile when it queues an app, so work it queued just
    /// before the move may still run).
    pub handover_grace: Duration,
}

/// Argo CD's default hand-over grace.
pub const DEFAULT_HANDOVER_GRACE: Duration = Duration::from_secs(15);

/// A boolean annotation as Argo CD reads it (Go's `strconv.ParseBool`): true for `1`, `t`,
/// `T`, `TRUE`, `true`, `True`.
pub fn parse_bool(v: &str) -> bool {
    matches!(v, "1" | "t" | "T" | "TRUE" | "true" | "True")
}

/// What the controller does with one app.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Reconcile it.
    Take,
    /// Paused by the skip-reconcile switch in force: in the store, never reconciled.
    Paused,
    /// Not selected: never seen (no status, no operation, no finalizer).
    NotSelected,
    /// Side by side: Argo CD's switch is on but this controller does not select it, so nobody
    /// reconciles it. Left alone, counted and logged.
    Unowned,
    /// Selected, but Argo CD still reconciles it (side by side, no skip-reconcile): left alone.
    AwaitingHandover,
}

fn annotation<'a>(app: &'a Application, name: &str) -> Option<&'a str> {
    app.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(name))
        .map(String::as_str)
}

impl AppSelection {
    /// Build from the flags' text: `selector` in kubectl's syntax, `projects` as globs.
    pub fn new(
        selector: Option<&str>,
        projects: Vec<String>,
        side_by_side: bool,
    ) -> Result<Self, SelectorError> {
        let text = selector.map(str::trim).unwrap_or_default().to_string();
        let selector = if text.is_empty() {
            None
        } else {
            Some(parse_selector(&text)?)
        };
        Ok(Self {
            selector,
            selector_text: text,
            projects: projects
                .into_iter()
                .map(|p| p.trim().to_string())
                .filter(|p| !p.is_empty())
                .collect(),
            side_by_side,
            handover_grace: DEFAULT_HANDOVER_GRACE,
        })
    }

    /// The same selection with another hand-over grace.
    pub fn with_handover_grace(mut self, grace: Duration) -> Self {
        self.handover_grace = grace;
        self
    }

    /// Whether the flags narrow anything (otherwise every app is selected).
    pub fn narrows(&self) -> bool {
        self.selector.is_some() || !self.projects.is_empty() || self.side_by_side
    }

    /// What to do with `app`.
    pub fn decide(&self, app: &Application) -> Decision {
        let argo_skip = annotation(app, SKIP_RECONCILE_ANNOTATION).is_some_and(parse_bool);
        let not_selected = if self.side_by_side && argo_skip {
            Decision::Unowned
        } else {
            Decision::NotSelected
        };
        let empty = BTreeMap::new();
        let labels = app.metadata.labels.as_ref().unwrap_or(&empty);
        if self.selector.as_ref().is_some_and(|s| !s.matches(labels)) {
            return not_selected;
        }
        if !self.projects.is_empty() {
            let project = if app.spec.project.is_empty() {
                "default"
            } else {
                app.spec.project.as_str()
            };
            if !self
                .projects
                .iter()
                .any(|g| crate::project::glob_match(g, project))
            {
                return not_selected;
            }
        }
        if self.side_by_side {
            if !argo_skip {
                return Decision::AwaitingHandover;
            }
            if annotation(app, FLOTILLA_SKIP_RECONCILE_ANNOTATION).is_some_and(parse_bool) {
                return Decision::Paused;
            }
            return Decision::Take;
        }
        if argo_skip {
            Decision::Paused
        } else {
            Decision::Take
        }
    }
}

/// Parse a label selector in kubectl's syntax: `k=v`, `k==v`, `k!=v`, `k in (a,b)`,
/// `k notin (a,b)`, `k`, `!k`, joined by commas.
pub fn parse_selector(text: &str) -> Result<Selector, SelectorError> {
    let fail = |reason: String| SelectorError {
        selector: text.to_string(),
        reason,
    };
    let mut exprs = Vec::new();
    for term in split_terms(text).map_err(&fail)? {
        let term = term.trim();
        if term.is_empty() {
            return Err(fail("empty requirement".into()));
        }
        let expr = if let Some(key) = term.strip_prefix('!') {
            Expression::DoesNotExist(valid_key(key.trim()).map_err(&fail)?)
        } else if let Some((k, v)) = term.split_once("!=") {
            Expression::NotEqual(
                valid_key(k.trim()).map_err(&fail)?,
                valid_value(v.trim()).map_err(&fail)?,
            )
        } else if let Some((k, v)) = term.split_once("==").or_else(|| term.split_once('=')) {
            Expression::Equal(
                valid_key(k.trim()).map_err(&fail)?,
                valid_value(v.trim()).map_err(&fail)?,
            )
        } else if let Some((k, set)) = set_term(term, " notin ") {
            Expression::NotIn(valid_key(k).map_err(&fail)?, set.map_err(&fail)?)
        } else if let Some((k, set)) = set_term(term, " in ") {
            Expression::In(valid_key(k).map_err(&fail)?, set.map_err(&fail)?)
        } else {
            Expression::Exists(valid_key(term).map_err(&fail)?)
        };
        exprs.push(expr);
    }
    Ok(exprs.into_iter().collect())
}

/// Split at commas outside parentheses.
fn split_terms(text: &str) -> Result<Vec<&str>, String> {
    let mut out = Vec::new();
    let (mut depth, mut start) = (0i32, 0usize);
    for (i, c) in text.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => {
                depth -= 1;
                if depth < 0 {
                    return Err("unbalanced ')'".into());
                }
            }
            ',' if depth == 0 => {
                out.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    if depth != 0 {
        return Err("unbalanced '('".into());
    }
    out.push(&text[start..]);
    Ok(out)
}

type ValueSet = std::collections::BTreeSet<String>;

fn set_term<'a>(term: &'a str, op: &str) -> Option<(&'a str, Result<ValueSet, String>)> {
    let (k, rest) = term.split_once(op)?;
    let rest = rest.trim();
    let inner = rest
        .strip_prefix('(')
        .and_then(|r| r.strip_suffix(')'))
        .ok_or_else(|| format!("{op:?} needs a (value,…) list"));
    let set = inner.and_then(|inner| {
        inner
            .split(',')
            .map(|v| valid_value(v.trim()))
            .collect::<Result<ValueSet, String>>()
    });
    Some((k.trim(), set))
}

fn valid_key(k: &str) -> Result<String, String> {
    let (prefix, name) = match k.rsplit_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, k),
    };
    if let Some(p) = prefix
        && (p.is_empty()
            || p.len() > 253
            || !p
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.'))
    {
        return Err(format!("{k:?} has an invalid prefix"));
    }
    if name.is_empty() || name.len() > 63 || !label_chars(name) {
        return Err(format!("{k:?} is not a label key"));
    }
    Ok(k.to_string())
}

fn valid_value(v: &str) -> Result<String, String> {
    if v.len() > 63 || (!v.is_empty() && !label_chars(v)) {
        return Err(format!("{v:?} is not a label value"));
    }
    Ok(v.to_string())
}

fn label_chars(s: &str) -> bool {
    let ends = |c: char| c.is_ascii_alphanumeric();
    s.chars().next().is_some_and(ends)
        && s.chars().last().is_some_and(ends)
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// `flotilla_app_selection{state}`'s label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SelectionLabels {
    pub state: &'static str,
}

/// Applications in the watched namespaces that this controller leaves alone, by why.
#[derive(Clone, Default)]
pub struct SelectionMetrics {
    pub apps: Family<SelectionLabels, Gauge>,
}

impl SelectionMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self::default();
        registry.register(
            "flotilla_app_selection",
            "Applications this controller leaves alone: not_selected (outside --application-selector/--application-projects), awaiting_handover (selected, but Argo CD still reconciles them: no skip-reconcile) and unowned (side by side: skip-reconcile on but not selected, so nobody reconciles them)",
            m.apps.clone(),
        );
        m
    }
}

/// Tracks the apps the watch turned away, for the gauge and for one log line per change.
pub struct Tracker {
    selection: AppSelection,
    left: HashMap<(String, String), Decision>,
    metrics: SelectionMetrics,
}

impl Tracker {
    pub fn new(selection: AppSelection, metrics: SelectionMetrics) -> Self {
        Self {
            selection,
            left: HashMap::new(),
            metrics,
        }
    }

    /// Decide for an app the watch delivered: `None` keeps it out of the store; `Some(true)`
    /// lets it in as just handed over (it was left alone a moment ago), `Some(false)` as usual.
    pub fn admit(&mut self, app: &Application) -> Option<bool> {
        let key = (
            app.metadata.namespace.clone().unwrap_or_default(),
            app.metadata.name.clone().unwrap_or_default(),
        );
        let decision = self.selection.decide(app);
        let before = self.left.get(&key).copied();
        match decision {
            Decision::Take | Decision::Paused => {
                let handed = self.left.remove(&key).inspect(|was| {
                    self.gauge(*was).dec();
                    tracing::info!(app = %format!("{}/{}", key.0, key.1), grace_s = self.selection.handover_grace.as_secs(), "application handed to this controller");
                });
                Some(handed.is_some() && self.selection.side_by_side)
            }
            Decision::NotSelected | Decision::AwaitingHandover | Decision::Unowned => {
                if before != Some(decision) {
                    if let Some(was) = before {
                        self.gauge(was).dec();
                    }
                    self.gauge(decision).inc();
                    self.left.insert(key.clone(), decision);
                    let app = format!("{}/{}", key.0, key.1);
                    match decision {
                        Decision::AwaitingHandover => {
                            tracing::info!(%app, "selected, but Argo CD still reconciles it (no argocd.argoproj.io/skip-reconcile: \"true\"): left alone until it is handed over")
                        }
                        Decision::Unowned => {
                            tracing::warn!(%app, "argocd.argoproj.io/skip-reconcile is on but this controller does not select it: neither Argo CD nor Flotilla reconciles it")
                        }
                        _ => {
                            tracing::info!(%app, "not selected (--application-selector/--application-projects): left alone")
                        }
                    }
                }
                None
            }
        }
    }

    /// The app is gone from the API server.
    pub fn deleted(&mut self, app: &Application) {
        let key = (
            app.metadata.namespace.clone().unwrap_or_default(),
            app.metadata.name.clone().unwrap_or_default(),
        );
        if let Some(was) = self.left.remove(&key) {
            self.gauge(was).dec();
        }
    }

    /// A relist starts: what it does not deliver again is gone.
    pub fn relist(&mut self) {
        for (_, was) in self.left.drain() {
            self.metrics
                .apps
                .get_or_create(&SelectionLabels {
                    state: state_label(was),
                })
                .dec();
        }
    }

    fn gauge(&self, d: Decision) -> Gauge {
        self.metrics
            .apps
            .get_or_create(&SelectionLabels {
                state: state_label(d),
            })
            .clone()
    }
}

fn state_label(d: Decision) -> &'static str {
    match d {
        Decision::AwaitingHandover => "awaiting_handover",
        Decision::Unowned => "unowned",
        _ => "not_selected",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app(labels: &[(&str, &str)], annotations: &[(&str, &str)], project: &str) -> Application {
        let mut a: Application = serde_json::from_value(serde_json::json!({
            "apiVersion": "argoproj.io/v1alpha1", "kind": "Application",
            "metadata": {"name": "a", "namespace": "argocd"},
            "spec": {"project": project, "destination": {}, "source": {"repoURL": "x"}}
        }))
        .expect("app");
        a.metadata.labels = Some(
            labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        );
        a.metadata.annotations = Some(
            annotations
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        );
        a
    }

    #[test]
    fn selectors_parse_like_kubectl() {
        let s = parse_selector("team=a, tier!=db,env in (prod, stage),!legacy,owner").expect("ok");
        let labels = |kv: &[(&str, &str)]| -> BTreeMap<String, String> {
            kv.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        assert!(s.matches(&labels(&[("team", "a"), ("env", "prod"), ("owner", "x")])));
        assert!(!s.matches(&labels(&[("team", "a"), ("env", "dev"), ("owner", "x")])));
        assert!(!s.matches(&labels(&[
            ("team", "a"),
            ("env", "prod"),
            ("owner", "x"),
            ("legacy", "")
        ])));
        assert!(!s.matches(&labels(&[
            ("team", "a"),
            ("tier", "db"),
            ("env", "prod"),
            ("owner", "x")
        ])));
        let ni = parse_selector("flotilla.dev/managed-by==flotilla,env notin (dev)").expect("ok");
        assert!(ni.matches(&labels(&[("flotilla.dev/managed-by", "flotilla")])));
        assert!(!ni.matches(&labels(&[
            ("flotilla.dev/managed-by", "flotilla"),
            ("env", "dev")
        ])));
        for bad in [
            "",
            "a=b,",
            "env in prod",
            "env in (prod",
            "Bad Key=x",
            "k=-x",
            "/k=v",
        ] {
            assert!(parse_selector(bad).is_err(), "{bad:?} refused");
        }
    }

    #[test]
    fn the_default_takes_everything_but_skip_reconcile() {
        let all = AppSelection::default();
        assert!(!all.narrows());
        assert_eq!(all.decide(&app(&[], &[], "")), Decision::Take);
        assert_eq!(
            all.decide(&app(&[], &[(SKIP_RECONCILE_ANNOTATION, "true")], "")),
            Decision::Paused
        );
    }

    #[test]
    fn selectors_and_projects_narrow() {
        let sel = AppSelection::new(Some("team=a"), vec!["web-*".into()], false).expect("ok");
        assert_eq!(
            sel.decide(&app(&[("team", "a")], &[], "web-1")),
            Decision::Take
        );
        assert_eq!(
            sel.decide(&app(&[("team", "b")], &[], "web-1")),
            Decision::NotSelected
        );
        assert_eq!(
            sel.decide(&app(&[("team", "a")], &[], "")),
            Decision::NotSelected
        );
        let default_project = AppSelection::new(None, vec!["default".into()], false).expect("ok");
        assert_eq!(default_project.decide(&app(&[], &[], "")), Decision::Take);
    }

    #[test]
    fn side_by_side_takes_only_what_argo_cd_let_go() {
        let s =
            AppSelection::new(Some("flotilla.dev/managed-by=flotilla"), vec![], true).expect("ok");
        let mine = [(MANAGED_BY_LABEL, "flotilla")];
        let skip = [(SKIP_RECONCILE_ANNOTATION, "true")];
        assert_eq!(s.decide(&app(&[], &skip, "")), Decision::Unowned);
        assert_eq!(s.decide(&app(&[], &[], "")), Decision::NotSelected);
        for yes in ["1", "t", "T", "TRUE", "True"] {
            assert_eq!(
                s.decide(&app(&mine, &[(SKIP_RECONCILE_ANNOTATION, yes)], "")),
                Decision::Take,
                "Argo CD reads {yes:?} as true"
            );
        }
        assert_eq!(
            s.decide(&app(&mine, &[(SKIP_RECONCILE_ANNOTATION, "yes")], "")),
            Decision::AwaitingHandover,
            "not a Go boolean: Argo CD still reconciles it"
        );
        assert_eq!(s.decide(&app(&mine, &[], "")), Decision::AwaitingHandover);
        assert_eq!(
            s.decide(&app(&mine, &[(SKIP_RECONCILE_ANNOTATION, "false")], "")),
            Decision::AwaitingHandover
        );
        assert_eq!(s.decide(&app(&mine, &skip, "")), Decision::Take);
        assert_eq!(
            s.decide(&app(
                &mine,
                &[
                    (SKIP_RECONCILE_ANNOTATION, "true"),
                    (FLOTILLA_SKIP_RECONCILE_ANNOTATION, "true")
                ],
                ""
            )),
            Decision::Paused
        );
    }
}
