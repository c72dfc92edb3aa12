//! Progressive sync of an ApplicationSet (`strategy.type: RollingSync`), pure: which of the
//! set's Applications to sync now, step by step, gated on health, at most `maxUpdate` at once.
//!
//! An Application belongs to the first step whose `matchExpressions` (In / NotIn over its
//! labels) it matches; one that matches none is outside the rollout (synced by hand, as in
//! Argo CD). A step starts only when every Application of the steps before it is Synced and
//! Healthy with no operation running: a Degraded or stuck Application holds the rollout there,
//! which is the point. Within a step, OutOfSync Applications are synced in name order while
//! fewer than `maxUpdate` are progressing.

use std::collections::BTreeMap;

use flotilla_appset::types::{ApplicationMatchExpression, ApplicationSetRolloutStep, IntOrString};
use serde::Serialize;

/// What the planner needs of one Application.
#[derive(Debug, Clone, Default)]
pub struct AppState {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    /// `status.sync.status == Synced`.
    pub synced: bool,
    /// `status.health.status == Healthy`.
    pub healthy: bool,
    /// An operation is requested or running.
    pub operating: bool,
}

/// One entry of `status.applicationStatus`, as Argo CD reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AppRollout {
    pub application: String,
    /// `Waiting` (a later step), `Pending` (this step, waiting for a slot), `Progressing`
    /// (syncing or not healthy yet) or `Healthy`.
    pub status: &'static str,
    pub message: String,
    /// 1-based, as a string (Argo CD's field).
    pub step: String,
}

/// The decision for one pass.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// Applications to sync now.
    pub sync: Vec<String>,
    pub statuses: Vec<AppRollout>,
    /// Every step is Synced and Healthy.
    pub done: bool,
}

/// A step's `matchExpressions` refused before planning (unknown operator).
pub fn invalid_expressions(steps: &[ApplicationSetRolloutStep]) -> Vec<String> {
    let mut out = Vec::new();
    for (i, s) in steps.iter().enumerate() {
        for e in &s.match_expressions {
            if !matches!(e.operator.as_str(), "In" | "NotIn") {
                out.push(format!(
                    "spec.strategy.rollingSync.steps[{i}]: operator {:?} (only In and NotIn)",
                    e.operator
                ));
            }
        }
        if !s.extra.is_empty() {
            out.push(format!(
                "spec.strategy.rollingSync.steps[{i}]: unknown fields {:?}",
                s.extra.keys().collect::<Vec<_>>()
            ));
        }
    }
    out
}

fn matches(e: &ApplicationMatchExpression, labels: &BTreeMap<String, String>) -> bool {
    let v = labels.get(&e.key);
    match e.operator.as_str() {
        "In" => v.is_some_and(|v| e.values.contains(v)),
        "NotIn" => v.is_none_or(|v| !e.values.contains(v)),
        _ => false,
    }
}

/// The step an app belongs to: the first whose expressions all match.
fn step_of(
    steps: &[ApplicationSetRolloutStep],
    labels: &BTreeMap<String, String>,
) -> Option<usize> {
    steps
        .iter()
        .position(|s| s.match_expressions.iter().all(|e| matches(e, labels)))
}

/// How many of `members` may progress at once: an integer, or a percentage rounded down;
/// at least 1 (a step that may update nothing would never finish). Absent: all.
pub fn max_update(v: Option<&IntOrString>, members: usize) -> usize {
    let n = match v {
        None => members,
        Some(IntOrString::Int(i)) => usize::try_from(*i).unwrap_or(0),
        Some(IntOrString::String(s)) => {
            let pct = s
                .trim()
                .strip_suffix('%')
                .and_then(|p| p.trim().parse::<f64>().ok())
                .unwrap_or(100.0)
                .clamp(0.0, 100.0);
            (pct / 100.0 * members as f64).floor() as usize
        }
    };
    n.max(1)
}

/// Plan one pass of the rollout over `apps`.
pub fn plan(steps: &[ApplicationSetRolloutStep], apps: &[AppState]) -> Plan {
    let mut by_step: Vec<Vec<&AppState>> = vec![Vec::new(); steps.len()];
    for a in apps {
        if let Some(i) = step_of(steps, &a.labels) {
            by_step[i].push(a);
        }
    }
    let mut plan = Plan::default();
    let mut current: Option<usize> = None;
    for (i, members) in by_step.iter_mut().enumerate() {
        members.sort_by(|a, b| a.name.cmp(&b.name));
        let step = (i + 1).to_string();
        let entry = |a: &AppState, status, message: &str| AppRollout {
            application: a.name.clone(),
            status,
            message: message.to_string(),
            step: step.clone(),
        };
        if current.is_some() {
            for a in members.iter() {
                plan.statuses.push(entry(
                    a,
                    "Waiting",
                    "Application is waiting for the steps before it",
                ));
            }
            continue;
        }
        let done = |a: &AppState| a.synced && a.healthy && !a.operating;
        if members.iter().all(|a| done(a)) {
            for a in members.iter() {
                plan.statuses
                    .push(entry(a, "Healthy", "Application resource became Healthy"));
            }
            continue;
        }
        current = Some(i);
        let progressing = members
            .iter()
            .filter(|a| a.operating || (a.synced && !a.healthy))
            .count();
        let mut slots =
            max_update(steps[i].max_update.as_ref(), members.len()).saturating_sub(progressing);
        for a in members.iter() {
            let e = if done(a) {
                entry(a, "Healthy", "Application resource became Healthy")
            } else if a.operating || a.synced {
                entry(a, "Progressing", "Application resource became Progressing")
            } else if slots > 0 {
                slots -= 1;
                plan.sync.push(a.name.clone());
                entry(
                    a,
                    "Progressing",
                    "Application resource is being synced by the rollout",
                )
            } else {
                entry(a, "Pending", "Application is waiting for a maxUpdate slot")
            };
            plan.statuses.push(e);
        }
    }
    plan.done = current.is_none();
    plan
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(key: &str, values: &[&str], max: Option<IntOrString>) -> ApplicationSetRolloutStep {
        ApplicationSetRolloutStep {
            match_expressions: vec![ApplicationMatchExpression {
                key: key.into(),
                operator: "In".into(),
                values: values.iter().map(|v| v.to_string()).collect(),
            }],
            max_update: max,
            extra: Default::default(),
        }
    }

    fn app(name: &str, env: &str, synced: bool, healthy: bool, operating: bool) -> AppState {
        AppState {
            name: name.into(),
            labels: [("env".to_string(), env.to_string())].into(),
            synced,
            healthy,
            operating,
        }
    }

    fn status_of<'a>(p: &'a Plan, name: &str) -> &'a str {
        p.statuses
            .iter()
            .find(|s| s.application == name)
            .map(|s| s.status)
            .unwrap_or("absent")
    }

    #[test]
    fn steps_run_in_order_and_wait_for_health() {
        let steps = [step("env", &["dev"], None), step("env", &["prod"], None)];
        let fresh = [
            app("dev-1", "dev", false, false, false),
            app("prod-1", "prod", false, false, false),
        ];
        let p = plan(&steps, &fresh);
        assert_eq!(p.sync, vec!["dev-1"]);
        assert_eq!(status_of(&p, "prod-1"), "Waiting");
        assert!(!p.done);
        // dev synced but not healthy yet: prod still waits.
        let p = plan(
            &steps,
            &[
                app("dev-1", "dev", true, false, false),
                app("prod-1", "prod", false, false, false),
            ],
        );
        assert!(p.sync.is_empty());
        assert_eq!(status_of(&p, "dev-1"), "Progressing");
        assert_eq!(status_of(&p, "prod-1"), "Waiting");
        // dev healthy: prod's turn.
        let p = plan(
            &steps,
            &[
                app("dev-1", "dev", true, true, false),
                app("prod-1", "prod", false, false, false),
            ],
        );
        assert_eq!(p.sync, vec!["prod-1"]);
        assert_eq!(status_of(&p, "dev-1"), "Healthy");
        let p = plan(
            &steps,
            &[
                app("dev-1", "dev", true, true, false),
                app("prod-1", "prod", true, true, false),
            ],
        );
        assert!(p.done && p.sync.is_empty());
    }

    #[test]
    fn max_update_limits_a_step_and_unmatched_apps_are_outside() {
        let steps = [step(
            "env",
            &["prod"],
            Some(IntOrString::String("50%".into())),
        )];
        let apps: Vec<AppState> = (1..=4)
            .map(|i| app(&format!("p{i}"), "prod", false, false, false))
            .chain([app("lab", "lab", false, false, false)])
            .collect();
        let p = plan(&steps, &apps);
        assert_eq!(p.sync, vec!["p1", "p2"]);
        assert_eq!(status_of(&p, "p3"), "Pending");
        assert_eq!(status_of(&p, "lab"), "absent", "not in any step");
        // Two progressing: no slot left.
        let mut apps = apps;
        apps[0].operating = true;
        apps[1].synced = true;
        let p = plan(&steps, &apps);
        assert!(p.sync.is_empty(), "{:?}", p.sync);
        assert_eq!(max_update(Some(&IntOrString::String("10%".into())), 4), 1);
        assert_eq!(max_update(Some(&IntOrString::Int(0)), 4), 1);
        assert_eq!(max_update(Some(&IntOrString::Int(3)), 4), 3);
        assert_eq!(max_update(None, 7), 7);
    }

    #[test]
    fn a_degraded_app_holds_the_rollout_and_bad_operators_are_refused() {
        let steps = [step("env", &["dev"], None), step("env", &["prod"], None)];
        let p = plan(
            &steps,
            &[
                app("dev-1", "dev", true, false, false),
                app("prod-1", "prod", false, false, false),
            ],
        );
        assert!(p.sync.is_empty() && !p.done);
        let mut bad = step("env", &["x"], None);
        bad.match_expressions[0].operator = "Exists".into();
        assert_eq!(invalid_expressions(&[bad]).len(), 1);
    }
}
