//! Drives a sync operation one step per reconcile, persisted in `status.operationState`: build
//! its tasks (resources, prunes, hooks), restore their state from the recorded results, let the
//! engine choose the step and the executor run it, and handle retries, terminate and the sync
//! timeout. Any replica can resume an operation another one started.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use flotilla_sharding::Permit;
use serde_json::Value;

use crate::engine::{self, Step, Task};
use crate::live::ClusterCache;
use crate::operation::{OperationState, Phase, RetryStrategy, SyncResult};
use crate::plan::{Comparison, SyncRequest, build_tasks};
use crate::status;
use crate::sync::{self, ExecOptions, HandedOver};
use crate::tracking::{AppKey, ResourceKey, stamp};
use crate::types::application::SyncPolicy;

/// Operation settings of the controller.
#[derive(Debug, Clone)]
pub struct OpConfig {
    /// Pause after a wave is applied before the next one starts (Argo CD: 2 s,
    /// `ARGOCD_SYNC_WAVE_DELAY`).
    pub wave_delay: Duration,
    /// How often a running operation is looked at while it waits (live changes wake it sooner).
    pub poll: Duration,
    /// Terminate operations running longer than this (`None`: never, Argo CD's default).
    pub timeout: Option<Duration>,
}

impl Default for OpConfig {
    fn default() -> Self {
        Self {
            wave_delay: Duration::from_secs(2),
            poll: Duration::from_secs(2),
            timeout: None,
        }
    }
}

/// Everything one step needs.
pub struct OpEnv<'a> {
    pub cache: &'a Arc<ClusterCache>,
    pub key: &'a AppKey,
    pub cmp: &'a Comparison,
    /// Normalized hook objects (namespace final, not yet stamped).
    pub hooks: &'a [Value],
    pub live: &'a BTreeMap<ResourceKey, Arc<Value>>,
    pub policy: Option<&'a SyncPolicy>,
    pub dest_ns: &'a str,
    pub managed_namespace_metadata: Option<&'a Value>,
    /// The app's `ignoreDifferences`.
    pub ignore: &'a [crate::ignore::IgnoreRule],
    pub cfg: &'a OpConfig,
    pub permit: &'a (dyn Fn() -> Option<Permit> + Send + Sync),
}

/// The operation after a step, and when to look again while it runs.
pub struct Advanced {
    pub state: OperationState,
    pub wait: Duration,
    /// A wave that is not the last one was applied: the next step waits `wait` at least.
    pub wave_applied: bool,
}

/// What a timed-out operation says when it ends (Argo CD's words).
const TIMEOUT_MESSAGE: &str = "Operation terminated, triggered by controller sync timeout";

fn now() -> jiff::Timestamp {
    jiff::Timestamp::now()
}

fn parse_time(s: &str) -> Option<jiff::Timestamp> {
    s.parse().ok()
}

/// A new operation, `Running` from now, for `op` at `revision` (pinned for its lifetime). A
/// multi-source app's operation records every source (`sources`) and its revision
/// (`revisions`, which pin them all); a single-source one its `source`.
pub fn start(
    op: crate::operation::Operation,
    revision: &str,
    revisions: Vec<String>,
    source: Option<Value>,
    sources: Option<Vec<Value>>,
) -> OperationState {
    OperationState {
        operation: op,
        phase: Phase::Running,
        message: String::new(),
        sync_result: Some(SyncResult {
            revision: revision.to_string(),
            revisions,
            resources: Vec::new(),
            source,
            sources,
        }),
        started_at: status::timestamp(now()),
        finished_at: None,
        retry_count: 0,
    }
}

/// The retry policy of an operation: its own, else the app's; automated syncs get Argo CD's
/// default of 5 attempts.
pub fn retry_policy(
    op: &crate::operation::Operation,
    policy: Option<&SyncPolicy>,
) -> RetryStrategy {
    if let Some(r) = &op.retry {
        return r.clone();
    }
    if let Some(r) = policy
        .and_then(|p| p.retry.as_ref())
        .and_then(|r| serde_json::from_value::<RetryStrategy>(r.clone()).ok())
    {
        return r;
    }
    RetryStrategy {
        limit: if op.initiated_by.automated { 5 } else { 0 },
        backoff: None,
    }
}

fn request(env: &OpEnv<'_>, st: &OperationState) -> SyncRequest {
    let op = &st.operation;
    let sync_op = op.sync.clone().unwrap_or_default();
    let app_opts: Vec<String> = env
        .policy
        .and_then(|p| p.sync_options.clone())
        .unwrap_or_default();
    let op_opts = sync_op.sync_options.clone().unwrap_or_default();
    // The operation's options override the app's of the same name.
    let value = |name: &str| -> Option<String> {
        op_opts
            .iter()
            .chain(app_opts.iter())
            .find_map(|o| o.split_once('=').filter(|(k, _)| *k == name))
            .map(|(_, v)| v.trim().to_string())
    };
    let is = |name: &str, v: &str| value(name).is_some_and(|x| x.eq_ignore_ascii_case(v));
    let strategy_force = sync_op
        .sync_strategy
        .as_ref()
        .and_then(|s| s.get("apply").or_else(|| s.get("hook")))
        .and_then(|s| s.get("force"))
        .and_then(Value::as_bool)
        .unwrap_or(false);
    SyncRequest {
        prune: sync_op.prune,
        out_of_sync_only: is("ApplyOutOfSyncOnly", "true"),
        only: sync_op
            .resources
            .iter()
            .flatten()
            .map(|r| {
                (
                    r.group.clone(),
                    r.kind.clone(),
                    r.name.clone(),
                    r.namespace.clone(),
                )
            })
            .collect(),
        skip_hooks: op.selective() || op.apply_strategy(),
        prune_last: is("PruneLast", "true"),
        ignore: env.ignore.to_vec(),
        respect_ignore_differences: is("RespectIgnoreDifferences", "true"),
        no_prune: is("Prune", "false"),
        replace: is("Replace", "true"),
        force: strategy_force || is("Force", "true"),
        skip_validation: is("Validate", "false"),
        prune_propagation: value("PrunePropagationPolicy").unwrap_or_default(),
        recorded: st
            .sync_result
            .iter()
            .flat_map(|r| r.resources.iter())
            .filter(|r| r.sync_phase.is_empty() || r.sync_phase == "Sync")
            .map(|r| {
                (
                    ResourceKey {
                        group: r.group.clone(),
                        kind: r.kind.clone(),
                        namespace: r.namespace.clone(),
                        name: r.name.clone(),
                    },
                    r.status.clone(),
                )
            })
            .collect(),
        revision: st.revision().unwrap_or_default().to_string(),
        started_unix: parse_time(&st.started_at)
            .map(|t| t.as_second())
            .unwrap_or_default(),
    }
}

/// Whether the operation or the app asks for `CreateNamespace=true`.
pub fn wants_namespace(st: &OperationState, policy: Option<&SyncPolicy>) -> bool {
    st.operation.has_option("CreateNamespace")
        || policy.is_some_and(|p| p.option("CreateNamespace"))
}

fn record(st: &mut OperationState, tasks: &[Task]) {
    let results = tasks
        .iter()
        .filter(|t| !t.pending())
        .map(Task::result)
        .collect();
    st.sync_result
        .get_or_insert_with(Default::default)
        .resources = results;
}

fn finish(st: &mut OperationState, phase: Phase, message: String) {
    st.phase = phase;
    st.message = message;
    st.finished_at = Some(status::timestamp(now()));
}

/// Advance `st` by one step. Returns `Err(HandedOver)` when the cluster moved to another
/// replica mid-step: nothing is recorded, the new owner resumes.
pub async fn advance(env: &OpEnv<'_>, mut st: OperationState) -> Result<Advanced, HandedOver> {
    let cfg = env.cfg;
    if st.phase.completed() {
        return Ok(Advanced {
            state: st,
            wait: cfg.poll,
            wave_applied: false,
        });
    }
    let retry = retry_policy(&st.operation, env.policy);
    // A scheduled retry: wait for its time, then start the attempt afresh.
    if st.phase == Phase::Running
        && let Some(failed_at) = st.finished_at.as_deref().and_then(parse_time)
    {
        let delay = retry
            .delay(st.retry_count)
            .unwrap_or(Duration::from_secs(5));
        let at = failed_at
            .checked_add(jiff::SignedDuration::try_from(delay).unwrap_or_default())
            .unwrap_or(failed_at);
        let left = now().duration_until(at);
        if left.is_positive() {
            return Ok(Advanced {
                state: st,
                wait: Duration::try_from(left).unwrap_or(cfg.poll),
                wave_applied: false,
            });
        }
        st.finished_at = None;
        if let Some(r) = st.sync_result.as_mut() {
            r.resources.clear();
        }
    }
    // The sync timeout turns a running operation into a terminating one.
    let mut timed_out = false;
    if let (Some(limit), Some(started)) = (cfg.timeout, parse_time(&st.started_at))
        && st.phase == Phase::Running
        && now().duration_since(started) > jiff::SignedDuration::try_from(limit).unwrap_or_default()
    {
        st.phase = Phase::Terminating;
        timed_out = true;
    }
    let req = request(env, &st);
    let mut tasks = build_tasks(env.cmp, env.hooks, env.live, &req);
    for t in tasks.iter_mut().filter(|t| t.is_hook()) {
        if let Some(o) = t.object.as_mut() {
            stamp(o, env.key);
        }
    }
    let results = st
        .sync_result
        .as_ref()
        .map(|r| r.resources.clone())
        .unwrap_or_default();
    let fresh = results.is_empty();
    engine::hydrate(&mut tasks, &results);
    let dry_run = st.operation.dry_run();
    let exec = ExecOptions {
        dry_run,
        operation: format!("{}/{}", st.started_at, st.retry_count),
        dry_run_namespace: (dry_run && wants_namespace(&st, env.policy))
            .then(|| env.dest_ns.to_string()),
    };

    if st.phase == Phase::Terminating {
        engine::refresh(&mut tasks);
        let running_hooks = engine::terminate(&mut tasks);
        sync::delete_hooks(env.cache, &mut tasks, &running_hooks, env.permit).await?;
        record(&mut st, &tasks);
        let message = if timed_out || st.message.contains("timeout") {
            TIMEOUT_MESSAGE
        } else {
            "Operation terminated"
        };
        finish(&mut st, Phase::Failed, message.into());
        return Ok(Advanced {
            state: st,
            wait: cfg.poll,
            wave_applied: false,
        });
    }

    if fresh
        && wants_namespace(&st, env.policy)
        && let Err(m) = sync::create_namespace(
            env.cache,
            env.dest_ns,
            env.managed_namespace_metadata,
            exec.dry_run,
            env.permit,
        )
        .await?
    {
        finish(&mut st, Phase::Failed, m);
        return Ok(after_finish(st, &retry, cfg));
    }

    // A step may run a wave and then find the operation already done; a few rounds at most.
    for _ in 0..4 {
        engine::refresh(&mut tasks);
        match engine::step(&tasks) {
            Step::Run {
                tasks: now_idx,
                last,
            } => {
                sync::run_wave(env.cache, &mut tasks, &now_idx, &exec, env.permit).await?;
                st.phase = Phase::Running;
                st.message = "one or more tasks are running".into();
                record(&mut st, &tasks);
                if !last && !exec.dry_run {
                    return Ok(Advanced {
                        state: st,
                        wait: cfg.wave_delay,
                        wave_applied: true,
                    });
                }
            }
            Step::Wait { message } => {
                st.phase = Phase::Running;
                st.message = message;
                record(&mut st, &tasks);
                return Ok(Advanced {
                    state: st,
                    wait: cfg.poll,
                    wave_applied: false,
                });
            }
            Step::StartSyncFail { hooks, message } => {
                sync::run_wave(env.cache, &mut tasks, &hooks, &exec, env.permit).await?;
                st.message = message;
                record(&mut st, &tasks);
            }
            Step::Finish {
                phase,
                message,
                delete_hooks,
            } => {
                if !exec.dry_run {
                    sync::delete_hooks(env.cache, &mut tasks, &delete_hooks, env.permit).await?;
                }
                record(&mut st, &tasks);
                finish(&mut st, phase, message);
                return Ok(after_finish(st, &retry, cfg));
            }
        }
    }
    Ok(Advanced {
        state: st,
        wait: cfg.poll,
        wave_applied: false,
    })
}

/// A finished operation: a failure with attempts left is scheduled again (`Running`, with the
/// failure time in `finishedAt`, as Argo CD records it).
fn after_finish(mut st: OperationState, retry: &RetryStrategy, cfg: &OpConfig) -> Advanced {
    if matches!(st.phase, Phase::Failed | Phase::Error) && retry.allows(st.retry_count) {
        match retry.delay(st.retry_count) {
            Ok(delay) => {
                st.retry_count += 1;
                let at = now()
                    .checked_add(jiff::SignedDuration::try_from(delay).unwrap_or_default())
                    .unwrap_or_else(|_| now());
                st.message = format!(
                    "{}. Retrying attempt #{} at {}.",
                    st.message.trim_end_matches('.'),
                    st.retry_count,
                    at.strftime("%-I:%M%p")
                );
                st.phase = Phase::Running;
                return Advanced {
                    state: st,
                    wait: delay,
                    wave_applied: false,
                };
            }
            Err(e) => {
                st.message = format!("{} (failed to retry: {e})", st.message);
            }
        }
    } else if st.retry_count > 0 && st.phase != Phase::Succeeded {
        st.message = format!(
            "{} (retried {} times).",
            st.message.trim_end_matches('.'),
            st.retry_count
        );
    }
    Advanced {
        state: st,
        wait: cfg.poll,
        wave_applied: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::operation::{Backoff, InitiatedBy, Operation};

    #[test]
    fn retry_policy_comes_from_the_operation_the_app_or_the_automated_default() {
        let manual = Operation::default();
        assert_eq!(retry_policy(&manual, None).limit, 0);
        let auto = Operation {
            initiated_by: InitiatedBy {
                automated: true,
                username: None,
            },
            ..Default::default()
        };
        assert_eq!(retry_policy(&auto, None).limit, 5);
        let own = Operation {
            retry: Some(RetryStrategy {
                limit: 2,
                backoff: None,
            }),
            ..Default::default()
        };
        assert_eq!(retry_policy(&own, None).limit, 2);
    }

    #[test]
    fn retries_back_off_and_stop_at_the_limit() {
        let r = RetryStrategy {
            limit: 3,
            backoff: Some(Backoff {
                duration: Some("1s".into()),
                factor: Some(2),
                max_duration: Some("3s".into()),
            }),
        };
        assert_eq!(r.delay(0), Ok(Duration::from_secs(1)));
        assert_eq!(r.delay(1), Ok(Duration::from_secs(2)));
        assert_eq!(r.delay(5), Ok(Duration::from_secs(3)));
        let cfg = OpConfig::default();
        let mut st = OperationState {
            phase: Phase::Failed,
            message: "one or more objects failed to apply".into(),
            ..Default::default()
        };
        for attempt in 1..=3 {
            let a = after_finish(st.clone(), &r, &cfg);
            assert_eq!(a.state.phase, Phase::Running);
            assert_eq!(a.state.retry_count, attempt);
            assert!(
                a.state
                    .message
                    .contains(&format!("Retrying attempt #{attempt} at")),
                "{}",
                a.state.message
            );
            st = a.state;
            st.phase = Phase::Failed;
            st.message = "one or more objects failed to apply".into();
        }
        let last = after_finish(st, &r, &cfg);
        assert_eq!(last.state.phase, Phase::Failed);
        assert!(
            last.state.message.ends_with("(retried 3 times)."),
            "{}",
            last.state.message
        );
    }
}
