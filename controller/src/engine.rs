//! The sync state machine, Argo CD's engine as one pure step: given the tasks of an operation
//! (resources, prunes and hooks, in order) with the state persisted in `operationState` and the
//! live objects, decide what happens now: run the next wave, wait, start `SyncFail` hooks, or
//! finish. The executor (`sync.rs`) does the writes; `reconcile` persists and requeues.

use std::collections::BTreeSet;
use std::sync::Arc;

use serde_json::Value;

use crate::health::HealthCode;
use crate::hooks::{DeletePolicy, HookType, SyncPhase};
use crate::operation::{OpPhase, ResourceResult};
use crate::tracking::ResourceKey;

/// What a task does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskKind {
    /// Apply a managed resource.
    Apply,
    /// Delete a live resource no longer in Git.
    Prune,
    /// Create (or apply) a hook and wait for it to complete.
    Hook,
}

/// How a task's object is written (from `argocd.argoproj.io/sync-options` and the app's
/// `syncOptions`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TaskOptions {
    /// `Replace=true`: update (PUT) instead of apply; create when missing.
    pub replace: bool,
    /// `Force=true`: with `Replace`, delete and create again.
    pub force: bool,
    /// `Validate=false`: the API server ignores unknown fields instead of refusing them.
    pub skip_validation: bool,
    /// `PrunePropagationPolicy`: Foreground (default), Background or Orphan.
    pub prune_propagation: String,
}

/// One unit of a sync.
#[derive(Debug, Clone)]
pub struct Task {
    pub key: ResourceKey,
    pub api_version: String,
    pub phase: SyncPhase,
    pub wave: i64,
    pub kind: TaskKind,
    /// The object to apply or create (not for prunes).
    pub object: Option<Value>,
    pub live: Option<Arc<Value>>,
    /// For hooks: the type it runs as (its phase's type).
    pub hook_type: Option<HookType>,
    pub delete_policies: BTreeSet<DeletePolicy>,
    pub options: TaskOptions,
    pub state: TaskState,
}

/// A task's progress, persisted as its `ResourceResult`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TaskState {
    /// `Synced`, `SyncFailed`, `Pruned`, `PruneSkipped`; empty while pending.
    pub status: String,
    /// Running, Succeeded, Failed, Error; `None` while pending.
    pub hook_phase: Option<OpPhase>,
    pub message: String,
}

impl Task {
    pub fn is_hook(&self) -> bool {
        self.kind == TaskKind::Hook
    }

    pub fn pending(&self) -> bool {
        self.state.hook_phase.is_none()
    }

    pub fn running(&self) -> bool {
        self.state.hook_phase == Some(OpPhase::Running)
    }

    fn completed_unsuccessfully(&self) -> bool {
        matches!(
            self.state.hook_phase,
            Some(OpPhase::Failed | OpPhase::Error)
        ) || self.state.status == "SyncFailed"
    }

    /// `group/kind/name`, as Argo CD names a resource in operation messages.
    pub fn display(&self) -> String {
        format!("{}/{}/{}", self.key.group, self.key.kind, self.key.name)
    }

    /// The persisted form.
    pub fn result(&self) -> ResourceResult {
        let (_, version) = crate::tracking::group_version(&self.api_version);
        ResourceResult {
            group: self.key.group.clone(),
            version: version.to_string(),
            kind: self.key.kind.clone(),
            namespace: self.key.namespace.clone(),
            name: self.key.name.clone(),
            status: self.state.status.clone(),
            message: self.state.message.clone(),
            sync_phase: self.phase.as_str().to_string(),
            hook_type: self.hook_type.map(|t| t.as_str().to_string()),
            hook_phase: self.state.hook_phase,
        }
    }

    /// The key a result is matched back to its task by.
    pub fn result_key(&self) -> (ResourceKey, SyncPhase) {
        (self.key.clone(), self.phase)
    }
}

/// Restore each task's state from the results of earlier passes (this replica's or another's).
pub fn hydrate(tasks: &mut [Task], results: &[ResourceResult]) {
    for r in results {
        let key = ResourceKey {
            group: r.group.clone(),
            kind: r.kind.clone(),
            namespace: r.namespace.clone(),
            name: r.name.clone(),
        };
        let phase = SyncPhase::parse(&r.sync_phase).unwrap_or(SyncPhase::Sync);
        if let Some(t) = tasks.iter_mut().find(|t| t.key == key && t.phase == phase) {
            t.state = TaskState {
                status: r.status.clone(),
                hook_phase: r.hook_phase,
                message: r.message.clone(),
            };
        }
    }
}

/// Whether the sync has more than one step: several (phase, wave) pairs, or any hook. Only
/// then do applied resources wait for health (a one-wave sync without hooks succeeds as soon
/// as it is applied, as in Argo CD).
pub fn multi_step(tasks: &[Task]) -> bool {
    let steps: BTreeSet<(SyncPhase, i64)> = tasks
        .iter()
        .filter(|t| t.phase != SyncPhase::SyncFail)
        .map(|t| (t.phase, t.wave))
        .collect();
    steps.len() > 1
        || tasks
            .iter()
            .any(|t| t.is_hook() && t.phase != SyncPhase::SyncFail)
}

/// A hook's progress from its live object: Job and Pod by their status (Argo CD's health),
/// kinds without a health check are done once created.
fn hook_progress(t: &Task) -> (OpPhase, String) {
    let Some(live) = t.live.as_deref() else {
        return (
            OpPhase::Failed,
            format!(
                "Resource {} is missing, it might have been deleted",
                t.display()
            ),
        );
    };
    let Some(h) = crate::settings::health(&t.key.group, &t.key.kind, live) else {
        return (OpPhase::Succeeded, format!("{} created", t.key.name));
    };
    match h.code {
        HealthCode::Healthy => (OpPhase::Succeeded, h.message),
        HealthCode::Progressing | HealthCode::Suspended => (OpPhase::Running, h.message),
        _ => (OpPhase::Failed, h.message),
    }
}

/// Update running tasks from their live objects: hooks complete or fail; in a multi-step sync
/// applied resources succeed once Healthy (or without a health check) and fail when Degraded.
pub fn refresh(tasks: &mut [Task]) {
    let multi = multi_step(tasks);
    for t in tasks.iter_mut().filter(|t| t.running()) {
        match t.kind {
            TaskKind::Hook => {
                let (phase, message) = hook_progress(t);
                t.state.hook_phase = Some(phase);
                if !message.is_empty() {
                    t.state.message = message;
                }
            }
            TaskKind::Apply if multi => {
                let Some(live) = t.live.as_deref() else {
                    t.state.hook_phase = Some(OpPhase::Failed);
                    t.state.message = format!(
                        "Resource {} is missing, it might have been deleted",
                        t.display()
                    );
                    continue;
                };
                let Some(h) = crate::settings::health(&t.key.group, &t.key.kind, live) else {
                    t.state.hook_phase = Some(OpPhase::Succeeded);
                    continue;
                };
                match h.code {
                    HealthCode::Healthy => t.state.hook_phase = Some(OpPhase::Succeeded),
                    HealthCode::Degraded => {
                        t.state.hook_phase = Some(OpPhase::Failed);
                        t.state.message = h.message;
                    }
                    _ => {}
                }
            }
            TaskKind::Apply | TaskKind::Prune => {}
        }
    }
}

/// What to do now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Run these tasks (indices), one wave; `last` when no pending task comes after them.
    Run { tasks: Vec<usize>, last: bool },
    /// Wait for running tasks (or deletions); the message says for what.
    Wait { message: String },
    /// The sync failed: run these `SyncFail` hooks, then wait for them.
    StartSyncFail { hooks: Vec<usize>, message: String },
    /// The operation is over: delete these hooks (by their delete policy) and record `phase`.
    Finish {
        phase: OpPhase,
        message: String,
        delete_hooks: Vec<usize>,
    },
}

fn waiting_message(tasks: &[Task], idx: &[usize]) -> String {
    let hooks = idx.iter().any(|&i| tasks[i].is_hook());
    let deleting = idx
        .iter()
        .all(|&i| tasks[i].kind == TaskKind::Prune || tasks[i].state.status.is_empty());
    let reason = match (hooks, deleting) {
        (true, _) => "completion of hook",
        (false, true) => "deletion of",
        (false, false) => "healthy state of",
    };
    let first = tasks[idx[0]].display();
    if idx.len() > 1 {
        let what = if hooks { "hooks" } else { "resources" };
        format!(
            "waiting for {reason} {first} and {} more {what}",
            idx.len() - 1
        )
    } else {
        format!("waiting for {reason} {first}")
    }
}

fn failure_reasons(tasks: &[Task]) -> String {
    let msgs: BTreeSet<&str> = tasks
        .iter()
        .filter(|t| t.state.status == "SyncFailed" && !t.state.message.is_empty())
        .map(|t| t.state.message.as_str())
        .collect();
    if msgs.is_empty() {
        String::new()
    } else {
        format!(
            ", reason: {}",
            msgs.into_iter().collect::<Vec<_>>().join(",")
        )
    }
}

fn hooks_to_delete(tasks: &[Task], policy: DeletePolicy) -> Vec<usize> {
    tasks
        .iter()
        .enumerate()
        .filter(|(_, t)| {
            t.is_hook() && t.live.is_some() && !t.running() && t.delete_policies.contains(&policy)
        })
        .map(|(i, _)| i)
        .collect()
}

/// Decide the next step of an operation whose tasks were refreshed (`refresh`).
pub fn step(tasks: &[Task]) -> Step {
    let multi = multi_step(tasks);
    // 1. Anything still running holds the sync.
    let running: Vec<usize> = tasks
        .iter()
        .enumerate()
        .filter(|(_, t)| t.running() && (multi || t.is_hook()))
        .filter(|(_, t)| t.kind != TaskKind::Prune)
        .map(|(i, _)| i)
        .collect();
    if !running.is_empty() {
        return Step::Wait {
            message: waiting_message(tasks, &running),
        };
    }
    // 2. Pruned objects still being deleted hold it too.
    let deleting: Vec<usize> = tasks
        .iter()
        .enumerate()
        .filter(|(_, t)| {
            t.kind == TaskKind::Prune
                && t.state.status == "Pruned"
                && t.live
                    .as_deref()
                    .is_some_and(|l| l.pointer("/metadata/deletionTimestamp").is_some())
        })
        .map(|(i, _)| i)
        .collect();
    if !deleting.is_empty() {
        return Step::Wait {
            message: waiting_message(tasks, &deleting),
        };
    }
    // 3. A failed task fails the sync, after the SyncFail hooks.
    let (sync_fail, main): (Vec<usize>, Vec<usize>) =
        (0..tasks.len()).partition(|&i| tasks[i].phase == SyncPhase::SyncFail);
    if main.iter().any(|&i| tasks[i].completed_unsuccessfully()) {
        let base = if main.iter().any(|&i| tasks[i].state.status == "SyncFailed") {
            format!(
                "one or more objects failed to apply{}",
                failure_reasons(tasks)
            )
        } else {
            "one or more synchronization tasks completed unsuccessfully".to_string()
        };
        let not_started: Vec<usize> = sync_fail
            .iter()
            .copied()
            .filter(|&i| tasks[i].pending())
            .collect();
        if !not_started.is_empty() && not_started.len() == sync_fail.len() {
            return Step::StartSyncFail {
                hooks: not_started,
                message: base,
            };
        }
        let message = if sync_fail
            .iter()
            .any(|&i| tasks[i].completed_unsuccessfully())
        {
            format!("{base}\none or more SyncFail hooks failed")
        } else {
            base
        };
        return Step::Finish {
            phase: OpPhase::Failed,
            message,
            delete_hooks: hooks_to_delete(tasks, DeletePolicy::HookFailed),
        };
    }
    // 4. The next (phase, wave) with pending tasks, or done.
    let pending: Vec<usize> = main
        .iter()
        .copied()
        .filter(|&i| tasks[i].pending())
        .collect();
    let Some(&first) = pending.first() else {
        return Step::Finish {
            phase: OpPhase::Succeeded,
            message: "successfully synced (all tasks run)".into(),
            delete_hooks: hooks_to_delete(tasks, DeletePolicy::HookSucceeded),
        };
    };
    let at = (tasks[first].phase, tasks[first].wave);
    let now: Vec<usize> = pending
        .iter()
        .copied()
        .filter(|&i| (tasks[i].phase, tasks[i].wave) == at)
        .collect();
    let last = now.len() == pending.len();
    Step::Run { tasks: now, last }
}

/// Terminate: running hooks are deleted (returned), running tasks marked terminated.
pub fn terminate(tasks: &mut [Task]) -> Vec<usize> {
    let mut delete = Vec::new();
    for (i, t) in tasks.iter_mut().enumerate() {
        if t.running() {
            if t.is_hook() && t.live.is_some() {
                delete.push(i);
            }
            t.state.hook_phase = Some(OpPhase::Failed);
            t.state.message = "Terminated".into();
        }
    }
    delete
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn task(kind: TaskKind, name: &str, phase: SyncPhase, wave: i64) -> Task {
        let (group, k) = match kind {
            TaskKind::Hook => ("batch", "Job"),
            _ => ("apps", "Deployment"),
        };
        Task {
            key: ResourceKey {
                group: group.into(),
                kind: k.into(),
                namespace: "ns".into(),
                name: name.into(),
            },
            api_version: format!("{group}/v1"),
            phase,
            wave,
            kind,
            object: Some(json!({})),
            live: None,
            hook_type: (kind == TaskKind::Hook).then_some(match phase {
                SyncPhase::PreSync => HookType::PreSync,
                SyncPhase::PostSync => HookType::PostSync,
                SyncPhase::SyncFail => HookType::SyncFail,
                SyncPhase::Sync => HookType::Sync,
            }),
            delete_policies: [DeletePolicy::BeforeHookCreation].into(),
            options: TaskOptions::default(),
            state: TaskState::default(),
        }
    }

    fn applied(t: &mut Task, live: Value) {
        t.state = TaskState {
            status: "Synced".into(),
            hook_phase: Some(OpPhase::Running),
            message: String::new(),
        };
        t.live = Some(Arc::new(live));
    }

    fn deployment(ready: bool) -> Value {
        let available = if ready { 1 } else { 0 };
        json!({"metadata": {"generation": 1}, "spec": {"replicas": 1},
               "status": {"observedGeneration": 1, "replicas": 1, "updatedReplicas": 1,
                          "availableReplicas": available, "readyReplicas": available}})
    }

    fn job(done: &str) -> Value {
        json!({"status": {"conditions": [{"type": done, "status": "True"}]}})
    }

    #[test]
    fn waves_run_in_order_and_wait_for_health() {
        let mut tasks = vec![
            task(TaskKind::Apply, "db", SyncPhase::Sync, 0),
            task(TaskKind::Apply, "web", SyncPhase::Sync, 1),
        ];
        assert_eq!(
            step(&tasks),
            Step::Run {
                tasks: vec![0],
                last: false
            }
        );
        applied(&mut tasks[0], deployment(false));
        refresh(&mut tasks);
        assert_eq!(
            step(&tasks),
            Step::Wait {
                message: "waiting for healthy state of apps/Deployment/db".into()
            }
        );
        tasks[0].live = Some(Arc::new(deployment(true)));
        refresh(&mut tasks);
        assert_eq!(
            step(&tasks),
            Step::Run {
                tasks: vec![1],
                last: true
            }
        );
    }

    #[test]
    fn an_applied_resource_that_vanished_fails_the_wave() {
        let mut tasks = vec![
            task(TaskKind::Apply, "db", SyncPhase::Sync, 0),
            task(TaskKind::Apply, "web", SyncPhase::Sync, 1),
        ];
        applied(&mut tasks[0], deployment(false));
        tasks[0].live = None;
        refresh(&mut tasks);
        assert_eq!(
            tasks[0].state.message,
            "Resource apps/Deployment/db is missing, it might have been deleted"
        );
        assert!(matches!(
            step(&tasks),
            Step::Finish {
                phase: OpPhase::Failed,
                ..
            }
        ));
    }

    #[test]
    fn a_one_wave_sync_without_hooks_succeeds_when_applied() {
        let mut tasks = vec![task(TaskKind::Apply, "web", SyncPhase::Sync, 0)];
        applied(&mut tasks[0], deployment(false));
        refresh(&mut tasks);
        assert!(matches!(
            step(&tasks),
            Step::Finish {
                phase: OpPhase::Succeeded,
                ..
            }
        ));
    }

    #[test]
    fn hooks_gate_phases_and_a_failed_hook_runs_sync_fail_hooks() {
        let mut tasks = vec![
            task(TaskKind::Hook, "migrate", SyncPhase::PreSync, 0),
            task(TaskKind::Apply, "web", SyncPhase::Sync, 0),
            task(TaskKind::Hook, "cleanup", SyncPhase::SyncFail, 0),
        ];
        assert_eq!(
            step(&tasks),
            Step::Run {
                tasks: vec![0],
                last: false
            }
        );
        applied(&mut tasks[0], job("Complete"));
        tasks[0].live = Some(Arc::new(json!({"status": {}})));
        refresh(&mut tasks);
        assert_eq!(
            step(&tasks),
            Step::Wait {
                message: "waiting for completion of hook batch/Job/migrate".into()
            }
        );
        tasks[0].live = Some(Arc::new(job("Failed")));
        refresh(&mut tasks);
        assert_eq!(
            step(&tasks),
            Step::StartSyncFail {
                hooks: vec![2],
                message: "one or more synchronization tasks completed unsuccessfully".into()
            }
        );
        applied(&mut tasks[2], job("Complete"));
        refresh(&mut tasks);
        match step(&tasks) {
            Step::Finish { phase, message, .. } => {
                assert_eq!(phase, OpPhase::Failed);
                assert_eq!(
                    message,
                    "one or more synchronization tasks completed unsuccessfully"
                );
            }
            other => panic!("{other:?}"),
        }
        // The Sync-phase resource was never applied.
        assert!(tasks[1].pending());
    }

    #[test]
    fn succeeded_hooks_are_deleted_by_their_policy() {
        let mut tasks = vec![task(TaskKind::Hook, "smoke", SyncPhase::PostSync, 0)];
        tasks[0].delete_policies = [DeletePolicy::HookSucceeded].into();
        applied(&mut tasks[0], job("Complete"));
        refresh(&mut tasks);
        assert_eq!(
            step(&tasks),
            Step::Finish {
                phase: OpPhase::Succeeded,
                message: "successfully synced (all tasks run)".into(),
                delete_hooks: vec![0]
            }
        );
    }

    #[test]
    fn results_restore_progress_and_terminate_stops_running_hooks() {
        let mut tasks = vec![
            task(TaskKind::Hook, "migrate", SyncPhase::PreSync, 0),
            task(TaskKind::Apply, "web", SyncPhase::Sync, 0),
        ];
        let mut done = tasks[0].clone();
        applied(&mut done, job("Complete"));
        hydrate(&mut tasks, &[done.result()]);
        assert!(tasks[0].running());
        assert!(tasks[1].pending());
        tasks[0].live = Some(Arc::new(json!({"status": {}})));
        let deleted = terminate(&mut tasks);
        assert_eq!(deleted, vec![0]);
        assert_eq!(tasks[0].state.message, "Terminated");
    }
}
