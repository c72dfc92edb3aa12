//! Lease membership, the I/O edge of sharding: renew this replica's Lease (publishing its
//! claims), watch the group's Leases, place keys on the ring of live members, and open or close
//! keys in the `Gate` by the claim protocol (see `claims`). Fences itself when it cannot renew.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::coordination::v1::Lease;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use kube::{Api, Client};
use serde_json::json;
use tokio::sync::{mpsc, watch};
use tracing::Instrument;

use crate::claims::{Claims, LeaseView, Observed, decode_claims, encode_claims};
use crate::gate::Gate;
use crate::metrics::{DirectionLabels, ResultLabels, ShardMetrics};
use crate::ring::{Placement, Ring};

/// Label that puts a Lease in a sharding group (its value is the group name).
pub const GROUP_LABEL: &str = "flotilla.dev/shard-group";
/// Annotation holding a member's claimed key ids.
pub const CLAIMS_ANNOTATION: &str = "flotilla.dev/claims";
/// Annotation with a random id per process, to spot two processes using one identity.
pub const INCARNATION_ANNOTATION: &str = "flotilla.dev/incarnation";
/// Annotation with the `host:port` where a member serves its status routes (for the API
/// server, which routes a request about an application to the replica that owns its cluster).
pub const STATUS_ADDRESS_ANNOTATION: &str = "flotilla.dev/status-address";

/// The keys to share out: their weights, and the shard some are pinned to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeySet {
    pub weights: BTreeMap<String, u64>,
    /// Keys pinned to a shard (see [`crate::Ring::place_pinned`]).
    pub pins: BTreeMap<String, u32>,
}

/// The keys to share out.
pub type Keys = Arc<KeySet>;

/// Why membership could not run.
#[derive(Debug, thiserror::Error)]
pub enum ShardError {
    #[error("invalid sharding settings: {0}")]
    Config(String),
    #[error("creating Lease {name}: {source}")]
    CreateLease { name: String, source: kube::Error },
}

/// Settings of one replica's membership.
#[derive(Debug, Clone)]
pub struct MembershipConfig {
    /// Namespace of the Leases (the control plane's).
    pub namespace: String,
    /// Sharding group: replicas with the same group share the keys.
    pub group: String,
    /// This replica's identity (the pod name): unique among live replicas.
    pub identity: String,
    pub lease_duration: Duration,
    pub renew_interval: Duration,
    /// ε of the bounded loads.
    pub epsilon: f64,
    pub vnodes: u32,
    /// How long a release waits for in-flight writes before logging and waiting again.
    pub drain_timeout: Duration,
    /// More annotations published on the Lease (e.g. [`STATUS_ADDRESS_ANNOTATION`]).
    pub annotations: BTreeMap<String, String>,
}

impl Default for MembershipConfig {
    fn default() -> Self {
        Self {
            namespace: "argocd".into(),
            group: "flotilla-controller".into(),
            identity: "flotilla-controller-0".into(),
            lease_duration: Duration::from_secs(10),
            renew_interval: Duration::from_secs(2),
            epsilon: crate::ring::DEFAULT_EPSILON,
            vnodes: crate::ring::DEFAULT_VNODES,
            drain_timeout: Duration::from_secs(30),
            annotations: BTreeMap::new(),
        }
    }
}

impl MembershipConfig {
    pub fn validate(&self) -> Result<(), ShardError> {
        if self.identity.is_empty() {
            return Err(ShardError::Config("the identity is empty".into()));
        }
        if self.renew_interval.is_zero() || self.lease_duration < self.renew_interval * 3 {
            return Err(ShardError::Config(format!(
                "the Lease duration ({:?}) must be at least three renew intervals ({:?})",
                self.lease_duration, self.renew_interval
            )));
        }
        if !(self.epsilon.is_finite() && self.epsilon > 0.0) {
            return Err(ShardError::Config(format!(
                "epsilon must be positive, not {}",
                self.epsilon
            )));
        }
        Ok(())
    }

    /// This replica's Lease: `<group>-<identity>`, cut to a valid object name.
    pub fn lease_name(&self) -> String {
        let mut name: String = format!("{}-{}", self.group, self.identity)
            .to_ascii_lowercase()
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                    c
                } else {
                    '-'
                }
            })
            .collect();
        name.truncate(253);
        name.trim_matches(|c| c == '-' || c == '.').to_string()
    }

    /// Stop acting when the last successful renewal started this long ago: two renew intervals
    /// before anyone else may think the Lease expired, leaving that much for writes in flight.
    pub fn fence_after(&self) -> Duration {
        self.lease_duration
            .saturating_sub(self.renew_interval * 2)
            .max(self.renew_interval)
    }

    fn tick(&self) -> Duration {
        (self.renew_interval / 4).clamp(Duration::from_millis(50), Duration::from_secs(1))
    }
}

/// What this replica knows about the ring, for status pages, metrics and single-owner tasks.
#[derive(Debug, Clone, Default)]
pub struct ShardStatus {
    pub identity: String,
    /// Live members, sorted (this replica included unless fenced).
    pub members: Vec<String>,
    pub ring: Option<Arc<Ring>>,
    /// Keys the ring gives this replica.
    pub target: BTreeSet<String>,
    pub held: BTreeSet<String>,
    pub pending: BTreeSet<String>,
    pub releasing: BTreeSet<String>,
    pub fenced: bool,
}

impl ShardStatus {
    /// Whether this replica is the plain consistent-hash owner of `key` (for work that is not
    /// tied to a cluster, e.g. reporting an Application whose cluster is unknown).
    pub fn is_primary(&self, key: &str) -> bool {
        self.ring
            .as_ref()
            .and_then(|r| r.primary(key))
            .is_some_and(|m| m == self.identity)
    }
}

fn view_of(lease: &Lease, default_duration: Duration) -> Option<LeaseView> {
    let name = lease.metadata.name.clone()?;
    let spec = lease.spec.as_ref();
    Some(LeaseView {
        holder: spec
            .and_then(|s| s.holder_identity.clone())
            .unwrap_or_else(|| name.clone()),
        name,
        resource_version: lease.metadata.resource_version.clone().unwrap_or_default(),
        duration: spec
            .and_then(|s| s.lease_duration_seconds)
            .and_then(|d| u64::try_from(d).ok())
            .map(Duration::from_secs)
            .unwrap_or(default_duration),
        claims: lease
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(CLAIMS_ANNOTATION))
            .map(|v| decode_claims(v))
            .unwrap_or_default(),
    })
}

fn now_micro() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%S%.6fZ")
        .to_string()
}

struct Member {
    cfg: MembershipConfig,
    api: Api<Lease>,
    gate: Arc<Gate>,
    metrics: ShardMetrics,
    status: watch::Sender<Arc<ShardStatus>>,
    incarnation: String,
    observed: Observed,
    claims: Claims,
    /// The claims value last written successfully, and when that write started.
    published: Option<String>,
    last_renewal: Option<Instant>,
    next_renewal: Instant,
    last_confirm: Option<Instant>,
    fenced: bool,
    ring: Option<(BTreeSet<String>, Arc<Ring>)>,
    placement_input: Option<(Vec<String>, Keys)>,
    placement: Placement,
    released_tx: mpsc::UnboundedSender<(String, Instant)>,
}

impl Member {
    fn call_timeout(&self) -> Duration {
        self.cfg.renew_interval.max(Duration::from_secs(1))
    }

    /// Write our Lease: renewal time plus the claims. Creates it when missing.
    async fn renew(&mut self, claims: &str) -> bool {
        let name = self.cfg.lease_name();
        let started = Instant::now();
        let duration = i32::try_from(self.cfg.lease_duration.as_secs()).unwrap_or(i32::MAX);
        let mut annotations = serde_json::Map::new();
        for (k, v) in &self.cfg.annotations {
            annotations.insert(k.clone(), json!(v));
        }
        annotations.insert(CLAIMS_ANNOTATION.into(), json!(claims));
        annotations.insert(INCARNATION_ANNOTATION.into(), json!(self.incarnation));
        let patch = json!({
            "metadata": {
                "labels": {GROUP_LABEL: self.cfg.group},
                "annotations": annotations,
            },
            "spec": {
                "holderIdentity": self.cfg.identity,
                "leaseDurationSeconds": duration,
                "renewTime": now_micro(),
            }
        });
        let res = tokio::time::timeout(
            self.call_timeout(),
            self.api
                .patch(&name, &PatchParams::default(), &Patch::Merge(&patch)),
        )
        .await;
        let ok = match res {
            Ok(Ok(_)) => true,
            Ok(Err(kube::Error::Api(s))) if s.code == 404 => {
                // Gone (deleted by someone, or never created): create it again.
                let mut lease: Lease = match serde_json::from_value(patch) {
                    Ok(l) => l,
                    Err(e) => {
                        tracing::error!(error = %e, "building the Lease");
                        return false;
                    }
                };
                lease.metadata.name = Some(name.clone());
                if let Some(spec) = lease.spec.as_mut() {
                    spec.acquire_time = spec.renew_time.clone();
                }
                match tokio::time::timeout(
                    self.call_timeout(),
                    self.api.create(&PostParams::default(), &lease),
                )
                .await
                {
                    Ok(Ok(_)) => true,
                    Ok(Err(e)) => {
                        tracing::warn!(lease = %name, error = %e, "creating the Lease failed");
                        false
                    }
                    Err(_) => {
                        tracing::warn!(lease = %name, "creating the Lease timed out");
                        false
                    }
                }
            }
            Ok(Err(e)) => {
                tracing::warn!(lease = %name, error = %e, "renewing the Lease failed");
                false
            }
            Err(_) => {
                tracing::warn!(lease = %name, timeout = ?self.call_timeout(), "renewing the Lease timed out");
                false
            }
        };
        self.metrics
            .renewals
            .get_or_create(&ResultLabels {
                result: if ok { "ok" } else { "error" }.into(),
            })
            .inc();
        if ok {
            self.published = Some(claims.to_string());
            self.last_renewal = Some(started);
            if self.fenced {
                tracing::info!("Lease renewed again; rejoining the ring");
                self.fenced = false;
            }
        }
        ok
    }

    /// The other live members' claims, by a fresh (linearizable) list of the Leases.
    async fn others_claims(&self, now: Instant) -> Option<BTreeSet<String>> {
        let lp = ListParams::default().labels(&format!("{GROUP_LABEL}={}", self.cfg.group));
        let list = match tokio::time::timeout(self.call_timeout(), self.api.list(&lp)).await {
            Ok(Ok(l)) => l,
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "listing Leases to check claims");
                return None;
            }
            Err(_) => {
                tracing::warn!("listing Leases to check claims timed out");
                return None;
            }
        };
        let me = self.cfg.lease_name();
        let mut out = BTreeSet::new();
        for lease in &list.items {
            let Some(v) = view_of(lease, self.cfg.lease_duration) else {
                continue;
            };
            if v.name == me || !self.observed.is_live(&v.name, &v.resource_version, now) {
                continue;
            }
            out.extend(v.claims);
        }
        Some(out)
    }

    fn apply_event(&mut self, ev: Event<Lease>, init: &mut BTreeSet<String>) {
        let now = Instant::now();
        let me = self.cfg.lease_name();
        match ev {
            Event::Apply(l) | Event::InitApply(l) => {
                if let Some(v) = view_of(&l, self.cfg.lease_duration) {
                    init.insert(v.name.clone());
                    if v.name == me {
                        let theirs = l
                            .metadata
                            .annotations
                            .as_ref()
                            .and_then(|a| a.get(INCARNATION_ANNOTATION));
                        if theirs.is_some_and(|t| *t != self.incarnation)
                            && self.published.is_some()
                        {
                            tracing::error!(identity = %self.cfg.identity, "another process renews this replica's Lease: two replicas share one identity");
                        }
                        return;
                    }
                    self.observed.apply(v, now);
                }
            }
            Event::Delete(l) => {
                if let Some(name) = l.metadata.name {
                    self.observed.remove(&name);
                }
            }
            Event::Init => init.clear(),
            Event::InitDone => self.observed.retain(init),
        }
    }

    fn members(&self, now: Instant) -> BTreeSet<String> {
        let mut m = self.observed.live_members(now, &self.cfg.lease_name());
        if !self.fenced && self.published.is_some() {
            m.insert(self.cfg.identity.clone());
        }
        m
    }

    fn placement(&mut self, members: &BTreeSet<String>, keys: &Keys) -> &Placement {
        let ring = match &self.ring {
            Some((m, r)) if m == members => r.clone(),
            _ => {
                let r = Arc::new(Ring::new(members.iter().cloned(), self.cfg.vnodes));
                self.ring = Some((members.clone(), r.clone()));
                r
            }
        };
        let input = (ring.members().to_vec(), keys.clone());
        let same = self
            .placement_input
            .as_ref()
            .is_some_and(|(m, k)| *m == input.0 && (Arc::ptr_eq(k, &input.1) || **k == *input.1));
        if !same {
            self.placement = ring.place_pinned(&keys.weights, &keys.pins, self.cfg.epsilon);
            self.placement_input = Some(input);
        }
        &self.placement
    }

    fn start_release(&self, key: String) {
        let gate = self.gate.clone();
        let tx = self.released_tx.clone();
        let timeout = self.cfg.drain_timeout;
        let started = Instant::now();
        tokio::spawn(
            async move {
                loop {
                    match gate.release(&key, timeout).await {
                        Ok(()) => break,
                        Err(e) => tracing::error!(error = %e, "still waiting to release"),
                    }
                }
                let _ = tx.send((key, started));
            }
            .in_current_span(),
        );
    }

    /// One pass: fence if needed, steer the claims to the ring's target, publish, confirm.
    async fn step(&mut self, keys: &Keys, dirty: bool) {
        let now = Instant::now();
        let fence_due = self
            .last_renewal
            .is_some_and(|t| now.saturating_duration_since(t) > self.cfg.fence_after());
        if fence_due && !self.fenced {
            let held = self.claims.fence();
            self.gate.close_all();
            self.fenced = true;
            self.metrics.fenced.inc();
            tracing::error!(
                dropped = held.len(),
                after = ?self.cfg.fence_after(),
                "could not renew the Lease in time: stopped acting on every cluster"
            );
        }
        let members = self.members(now);
        let me = self.cfg.identity.clone();
        let target = if self.fenced || self.published.is_none() {
            BTreeSet::new()
        } else {
            self.placement(&members, keys).keys_of(&me)
        };
        let moves = self.claims.steer(&target, now);
        for k in moves.release {
            tracing::info!(key = %k, "releasing: another member owns it now");
            self.start_release(k);
        }
        // Publish the claims (and renew) when they changed or the renewal is due.
        let want = encode_claims(&self.claims.published());
        let changed = self.published.as_deref() != Some(want.as_str());
        if changed || now >= self.next_renewal {
            if self.renew(&want).await {
                self.next_renewal = Instant::now() + self.cfg.renew_interval;
            } else {
                // Retry soon, not at the next full interval.
                self.next_renewal = Instant::now() + self.cfg.tick();
            }
        }
        // Check pending keys once our claims for them are published.
        let published_all = self.published.as_deref() == Some(want.as_str());
        let confirm_due = self
            .last_confirm
            .is_none_or(|t| now.saturating_duration_since(t) >= self.cfg.renew_interval / 2);
        if !self.fenced
            && !self.claims.pending.is_empty()
            && published_all
            && (dirty || changed || confirm_due)
        {
            self.last_confirm = Some(now);
            if let Some(others) = self.others_claims(Instant::now()).await {
                let (won, blocked) = self.claims.confirm(&others, Instant::now());
                for (k, waited) in won {
                    self.gate.open(&k);
                    self.metrics
                        .handovers
                        .get_or_create(&DirectionLabels {
                            direction: "acquired".into(),
                        })
                        .inc();
                    self.metrics.handover_seconds.observe(waited.as_secs_f64());
                    tracing::info!(key = %k, waited_ms = waited.as_millis() as u64, "acquired");
                }
                if blocked > 0 {
                    self.metrics.conflicts.inc_by(blocked as u64);
                }
            }
        }
        self.report(members, target);
    }

    fn report(&self, members: BTreeSet<String>, target: BTreeSet<String>) {
        self.metrics.members.set(members.len() as i64);
        self.metrics.owned.set(self.claims.held.len() as i64);
        self.metrics.pending.set(self.claims.pending.len() as i64);
        let st = ShardStatus {
            identity: self.cfg.identity.clone(),
            members: members.into_iter().collect(),
            ring: self.ring.as_ref().map(|(_, r)| r.clone()),
            target,
            held: self.claims.held.clone(),
            pending: self.claims.pending.keys().cloned().collect(),
            releasing: self.claims.releasing.clone(),
            fenced: self.fenced,
        };
        self.status.send_if_modified(|cur| {
            let same = cur.members == st.members
                && cur.held == st.held
                && cur.pending == st.pending
                && cur.releasing == st.releasing
                && cur.target == st.target
                && cur.fenced == st.fenced;
            if !same {
                *cur = Arc::new(st);
            }
            !same
        });
    }

    /// Release everything (waiting for writes to drain, bounded) and delete the Lease, so the
    /// successors take over at once instead of after the Lease expires.
    async fn leave(&mut self) {
        let held: Vec<String> = self.claims.held.iter().cloned().collect();
        tracing::info!(keys = held.len(), "leaving the ring: releasing every key");
        for k in &held {
            if let Err(e) = self.gate.release(k, self.cfg.drain_timeout).await {
                tracing::warn!(error = %e, "write still in flight at shutdown");
            }
        }
        let name = self.cfg.lease_name();
        match tokio::time::timeout(
            self.call_timeout(),
            self.api.delete(&name, &DeleteParams::default()),
        )
        .await
        {
            Ok(Ok(_)) => tracing::info!(lease = %name, "Lease deleted; successors take over now"),
            Ok(Err(e)) => tracing::warn!(lease = %name, error = %e, "deleting the Lease failed"),
            Err(_) => tracing::warn!(lease = %name, "deleting the Lease timed out"),
        }
    }
}

/// Run membership until `shutdown` resolves, then release everything and delete the Lease.
pub async fn run(
    client: Client,
    cfg: MembershipConfig,
    mut keys: watch::Receiver<Keys>,
    gate: Arc<Gate>,
    status: watch::Sender<Arc<ShardStatus>>,
    metrics: ShardMetrics,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), ShardError> {
    cfg.validate()?;
    let api: Api<Lease> = Api::namespaced(client, &cfg.namespace);
    let span = tracing::info_span!("membership", identity = %cfg.identity, group = %cfg.group);
    let (released_tx, mut released_rx) = mpsc::unbounded_channel();
    let mut m = Member {
        api: api.clone(),
        gate,
        metrics,
        status,
        incarnation: uuid::Uuid::new_v4().to_string(),
        observed: Observed::default(),
        claims: Claims::default(),
        published: None,
        last_renewal: None,
        next_renewal: Instant::now(),
        last_confirm: None,
        fenced: false,
        ring: None,
        placement_input: None,
        placement: Placement::default(),
        released_tx,
        cfg,
    };
    async move {
        tracing::info!(lease = %m.cfg.lease_name(), duration = ?m.cfg.lease_duration,
            renew = ?m.cfg.renew_interval, "joining the ring");
        let selector = format!("{GROUP_LABEL}={}", m.cfg.group);
        let mut leases = watcher::watcher(api, watcher::Config::default().labels(&selector))
            .default_backoff()
            .boxed();
        let mut tick = tokio::time::interval(m.cfg.tick());
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut init = BTreeSet::new();
        tokio::pin!(shutdown);
        loop {
            let mut dirty = false;
            tokio::select! {
                biased;
                _ = &mut shutdown => break,
                ev = leases.next() => match ev {
                    Some(Ok(ev)) => { m.apply_event(ev, &mut init); dirty = true; }
                    Some(Err(e)) => tracing::warn!(error = %e, "watching Leases"),
                    None => tracing::error!("the Lease watch ended"),
                },
                Ok(()) = keys.changed() => { dirty = true; }
                Some((k, started)) = released_rx.recv() => {
                    m.claims.released(&k);
                    m.metrics.handovers.get_or_create(&DirectionLabels { direction: "released".into() }).inc();
                    m.metrics.release_seconds.observe(started.elapsed().as_secs_f64());
                    tracing::info!(key = %k, "released");
                    dirty = true;
                }
                _ = tick.tick() => {}
            }
            let current = keys.borrow().clone();
            m.step(&current, dirty).await;
        }
        m.leave().await;
        Ok(())
    }
    .instrument(span)
    .await
}
