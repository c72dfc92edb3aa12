//! The reconcile work queue: a key is queued at most once (its refresh level is the highest
//! asked), is never processed by two workers at once (re-adds while processing run after),
//! and can be scheduled for later (periodic refresh, backoff). Two lanes: urgent work (a
//! workload's status changed, a user's or a webhook's refresh, a sync in progress) goes ahead
//! of bulk work (periodic refreshes, first syncs), and within a lane keys are served round
//! robin over their groups (destination clusters), so one huge cluster cannot starve the rest.
//! Exports depth (per lane), wait and the age of the oldest waiting key (computed at scrape
//! time, so a stuck queue shows it).

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::hash::Hash;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use tokio::sync::Notify;
use tokio::time::Instant;

/// The queue's metrics.
#[derive(Clone)]
pub struct QueueMetrics {
    pub depth: Gauge,
    /// Keys waiting, by lane.
    pub lane_depth: Family<LaneLabels, Gauge>,
    /// Keys handed to a worker, by lane.
    pub lane_pops: Family<LaneLabels, Counter>,
    pub scheduled: Gauge,
    pub processing: Gauge,
    pub adds: Counter,
    pub wait_seconds: Histogram,
    /// When the oldest key now waiting for a worker was queued.
    pub oldest: OldestAge,
}

/// `flotilla_queue_oldest_seconds`: how long the key at the head of the queue has waited.
#[derive(Clone, Debug, Default)]
pub struct OldestAge(Arc<Mutex<Option<Instant>>>);

impl OldestAge {
    fn set(&self, since: Option<Instant>) {
        if let Ok(mut g) = self.0.lock() {
            *g = since;
        }
    }

    /// Seconds the oldest waiting key has waited (0 when none waits).
    pub fn seconds(&self) -> f64 {
        self.0
            .lock()
            .ok()
            .and_then(|g| *g)
            .map(|t| t.elapsed().as_secs_f64())
            .unwrap_or(0.0)
    }
}

impl prometheus_client::collector::Collector for OldestAge {
    fn encode(
        &self,
        mut encoder: prometheus_client::encoding::DescriptorEncoder,
    ) -> Result<(), std::fmt::Error> {
        use prometheus_client::encoding::EncodeMetric;
        let g = prometheus_client::metrics::gauge::ConstGauge::new(self.seconds());
        let m = encoder.encode_descriptor(
            "flotilla_queue_oldest_seconds",
            "How long the application at the head of the reconcile queue has waited",
            None,
            g.metric_type(),
        )?;
        g.encode(m)
    }
}

impl Default for QueueMetrics {
    fn default() -> Self {
        Self {
            depth: Gauge::default(),
            lane_depth: Family::default(),
            lane_pops: Family::default(),
            scheduled: Gauge::default(),
            processing: Gauge::default(),
            adds: Counter::default(),
            wait_seconds: Histogram::new(exponential_buckets(0.001, 2.0, 16)),
            oldest: OldestAge::default(),
        }
    }
}

impl QueueMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self::default();
        registry.register(
            "flotilla_queue_depth",
            "Applications waiting for a reconcile worker",
            m.depth.clone(),
        );
        registry.register(
            "flotilla_queue_scheduled",
            "Applications scheduled for a later reconcile (periodic refresh, backoff)",
            m.scheduled.clone(),
        );
        registry.register(
            "flotilla_queue_processing",
            "Applications being reconciled now",
            m.processing.clone(),
        );
        registry.register(
            "flotilla_queue_adds",
            "Reconcile requests added (before deduplication)",
            m.adds.clone(),
        );
        registry.register(
            "flotilla_queue_wait_seconds",
            "Time from queueing to a worker taking the application",
            m.wait_seconds.clone(),
        );
        registry.register(
            "flotilla_queue_lane_depth",
            "Applications waiting for a reconcile worker, by lane (urgent: status changes, user and webhook refreshes, syncs in progress; bulk: periodic refreshes, first syncs)",
            m.lane_depth.clone(),
        );
        registry.register(
            "flotilla_queue_lane_pops",
            "Applications handed to a reconcile worker, by lane",
            m.lane_pops.clone(),
        );
        registry.register_collector(Box::new(m.oldest.clone()));
        m
    }
}

/// `lane` label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LaneLabels {
    pub lane: &'static str,
}

/// Which line a queued key waits in. `Urgent` sorts first: merging two requests keeps the
/// more urgent lane.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Lane {
    Urgent,
    Bulk,
}

impl Lane {
    pub fn as_str(self) -> &'static str {
        match self {
            Lane::Urgent => "urgent",
            Lane::Bulk => "bulk",
        }
    }
}

/// Urgent keys served in a row before one bulk key gets a turn (when both wait), so bulk
/// work is slowed by a storm of urgent work, never stopped.
const URGENT_BURST: u32 = 8;

/// The group of keys whose grouper has none (or before one is set).
const NO_GROUP: &str = "";

/// One lane: keys per group in arrival order, the groups served round robin. Entries may be
/// stale (the key was promoted to the other lane, or taken already): `queued` is the truth.
struct Line<K> {
    groups: HashMap<Arc<str>, VecDeque<K>>,
    turn: VecDeque<Arc<str>>,
}

impl<K: Eq + Hash + Clone> Line<K> {
    fn new() -> Self {
        Self {
            groups: HashMap::new(),
            turn: VecDeque::new(),
        }
    }

    fn push(&mut self, group: Arc<str>, key: K) {
        let q = self.groups.entry(group.clone()).or_default();
        if q.is_empty() {
            self.turn.push_back(group);
        }
        q.push_back(key);
    }

    /// The next key `live` accepts, its group's turn then passing to the next group.
    fn pop(&mut self, mut live: impl FnMut(&K) -> bool) -> Option<K> {
        while let Some(group) = self.turn.pop_front() {
            let Some(q) = self.groups.get_mut(&group) else {
                continue;
            };
            let mut found = None;
            while let Some(k) = q.pop_front() {
                if live(&k) {
                    found = Some(k);
                    break;
                }
            }
            if q.is_empty() {
                self.groups.remove(&group);
            } else {
                self.turn.push_back(group);
            }
            if found.is_some() {
                return found;
            }
        }
        None
    }

    /// The key at the head of the group whose turn is next (for the oldest-age metric).
    fn head(&self) -> Option<&K> {
        self.turn
            .front()
            .and_then(|g| self.groups.get(g))
            .and_then(|q| q.front())
    }
}

/// A queued key: its level, lane and group, and when it was first queued.
struct Queued<L> {
    level: L,
    lane: Lane,
    group: Arc<str>,
    since: Instant,
}

/// A scheduled request: key, level, lane and group.
type Delayed<K, L> = (K, L, Lane, Arc<str>);

/// Maps a key to its group (an app's destination cluster).
type Grouper<K> = Box<dyn Fn(&K) -> Arc<str> + Send + Sync>;

struct State<K, L> {
    urgent: Line<K>,
    bulk: Line<K>,
    queued: HashMap<K, Queued<L>>,
    /// Keys waiting per lane (`queued`, counted).
    waiting: [usize; 2],
    /// Urgent keys served since the last bulk one.
    streak: u32,
    processing: HashSet<K>,
    /// Added while processing: queued again when done.
    dirty: HashMap<K, (L, Lane, Arc<str>)>,
    delayed: BTreeMap<(Instant, u64), Delayed<K, L>>,
    delayed_index: HashMap<K, (Instant, u64)>,
    seq: u64,
    shutdown: bool,
}

/// A deduplicating, delaying work queue of keys `K` with refresh levels `L`.
pub struct WorkQueue<K, L> {
    state: Mutex<State<K, L>>,
    notify: Notify,
    metrics: QueueMetrics,
    /// The per-lane series of `metrics` (by `Lane as usize`), looked up once: updated on
    /// every queue operation.
    lane_depth: [Gauge; 2],
    lane_pops: [Counter; 2],
    grouper: RwLock<Option<Grouper<K>>>,
}

impl<K, L> WorkQueue<K, L>
where
    K: Eq + Hash + Clone,
    L: Ord + Copy,
{
    pub fn new(metrics: QueueMetrics) -> Self {
        Self {
            state: Mutex::new(State {
                urgent: Line::new(),
                bulk: Line::new(),
                queued: HashMap::new(),
                waiting: [0, 0],
                streak: 0,
                processing: HashSet::new(),
                dirty: HashMap::new(),
                delayed: BTreeMap::new(),
                delayed_index: HashMap::new(),
                seq: 0,
                shutdown: false,
            }),
            notify: Notify::new(),
            lane_depth: [Lane::Urgent, Lane::Bulk].map(|l| {
                metrics
                    .lane_depth
                    .get_or_create(&LaneLabels { lane: l.as_str() })
                    .clone()
            }),
            lane_pops: [Lane::Urgent, Lane::Bulk].map(|l| {
                metrics
                    .lane_pops
                    .get_or_create(&LaneLabels { lane: l.as_str() })
                    .clone()
            }),
            metrics,
            grouper: RwLock::new(None),
        }
    }

    /// How keys are grouped for fairness (an app's destination cluster). Called when a key
    /// is added, outside the queue's lock.
    pub fn set_grouper(&self, f: impl Fn(&K) -> Arc<str> + Send + Sync + 'static) {
        if let Ok(mut g) = self.grouper.write() {
            *g = Some(Box::new(f));
        }
    }

    fn group_of(&self, key: &K) -> Arc<str> {
        match self.grouper.read() {
            Ok(g) => g.as_ref().map_or_else(|| Arc::from(NO_GROUP), |f| f(key)),
            Err(_) => Arc::from(NO_GROUP),
        }
    }

    fn with<R>(&self, f: impl FnOnce(&mut State<K, L>) -> R) -> R {
        let mut g = match self.state.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        let r = f(&mut g);
        self.metrics.depth.set(g.queued.len() as i64);
        for (gauge, waiting) in self.lane_depth.iter().zip(g.waiting) {
            gauge.set(waiting as i64);
        }
        self.metrics.scheduled.set(g.delayed.len() as i64);
        self.metrics.processing.set(g.processing.len() as i64);
        let since = |k: Option<&K>| k.and_then(|k| g.queued.get(k)).map(|q| q.since);
        let head = match (since(g.urgent.head()), since(g.bulk.head())) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        self.metrics.oldest.set(head);
        r
    }

    fn enqueue(
        s: &mut State<K, L>,
        key: K,
        level: L,
        lane: Lane,
        group: Arc<str>,
        now: Instant,
    ) -> bool {
        if s.processing.contains(&key) {
            let e = s.dirty.entry(key).or_insert((level, lane, group));
            e.0 = e.0.max(level);
            e.1 = e.1.min(lane);
            return false;
        }
        match s.queued.get_mut(&key) {
            Some(q) => {
                q.level = q.level.max(level);
                if lane < q.lane {
                    // Promoted: the entry in the bulk line goes stale.
                    s.waiting[q.lane as usize] -= 1;
                    s.waiting[lane as usize] += 1;
                    q.lane = lane;
                    let g = q.group.clone();
                    s.urgent.push(g, key);
                    return true;
                }
                false
            }
            None => {
                s.queued.insert(
                    key.clone(),
                    Queued {
                        level,
                        lane,
                        group: group.clone(),
                        since: now,
                    },
                );
                s.waiting[lane as usize] += 1;
                match lane {
                    Lane::Urgent => s.urgent.push(group, key),
                    Lane::Bulk => s.bulk.push(group, key),
                }
                true
            }
        }
    }

    /// Queue `key` now at `level` in the bulk lane (merged with a pending request for the same
    /// key).
    pub fn add(&self, key: K, level: L) {
        self.add_in(key, level, Lane::Bulk);
    }

    /// Queue `key` now at `level` in the urgent lane.
    pub fn add_urgent(&self, key: K, level: L) {
        self.add_in(key, level, Lane::Urgent);
    }

    /// Queue `key` now at `level` in `lane`.
    pub fn add_in(&self, key: K, level: L, lane: Lane) {
        self.metrics.adds.inc();
        let group = self.group_of(&key);
        let woke = self.with(|s| Self::enqueue(s, key, level, lane, group, Instant::now()));
        if woke {
            self.notify.notify_one();
        }
    }

    /// Queue `key` after `delay` in the bulk lane; an earlier schedule of the same key wins.
    pub fn add_after(&self, key: K, level: L, delay: Duration) {
        self.add_after_in(key, level, Lane::Bulk, delay);
    }

    /// Queue `key` after `delay` in `lane`; an earlier schedule of the same key wins.
    pub fn add_after_in(&self, key: K, level: L, lane: Lane, delay: Duration) {
        if delay.is_zero() {
            return self.add_in(key, level, lane);
        }
        let group = self.group_of(&key);
        let at = Instant::now() + delay;
        self.with(|s| {
            if let Some(existing) = s.delayed_index.get(&key).copied() {
                if existing.0 <= at {
                    return;
                }
                s.delayed.remove(&existing);
            }
            s.seq += 1;
            let slot = (at, s.seq);
            s.delayed.insert(slot, (key.clone(), level, lane, group));
            s.delayed_index.insert(key, slot);
        });
        // A sleeping worker may need to wake earlier now.
        self.notify.notify_one();
    }

    /// The next key to hand out: urgent first, but a bulk key after [`URGENT_BURST`] urgent
    /// ones when both wait.
    fn next(s: &mut State<K, L>) -> Option<(K, Queued<L>)> {
        let bulk_turn = s.waiting[Lane::Bulk as usize] > 0
            && (s.waiting[Lane::Urgent as usize] == 0 || s.streak >= URGENT_BURST);
        let order = if bulk_turn {
            [Lane::Bulk, Lane::Urgent]
        } else {
            [Lane::Urgent, Lane::Bulk]
        };
        for lane in order {
            let queued = &s.queued;
            let live = |k: &K| queued.get(k).is_some_and(|q| q.lane == lane);
            let key = match lane {
                Lane::Urgent => s.urgent.pop(live),
                Lane::Bulk => s.bulk.pop(live),
            };
            if let Some(key) = key
                && let Some(q) = s.queued.remove(&key)
            {
                s.waiting[lane as usize] -= 1;
                s.streak = if lane == Lane::Urgent {
                    s.streak + 1
                } else {
                    0
                };
                return Some((key, q));
            }
        }
        None
    }

    /// Take the next key (waiting as needed); `None` once shut down.
    pub async fn pop(&self) -> Option<(K, L)> {
        loop {
            let notified = self.notify.notified();
            let next_due = self.with(|s| {
                if s.shutdown {
                    return Err(());
                }
                let now = Instant::now();
                while let Some((&slot, _)) = s.delayed.first_key_value() {
                    if slot.0 > now {
                        break;
                    }
                    if let Some((key, level, lane, group)) = s.delayed.remove(&slot) {
                        s.delayed_index.remove(&key);
                        Self::enqueue(s, key, level, lane, group, now);
                    }
                }
                if let Some((key, q)) = Self::next(s) {
                    s.processing.insert(key.clone());
                    return Ok(Ok((key, q.level, q.lane, q.since)));
                }
                Ok(Err(s.delayed.first_key_value().map(|(slot, _)| slot.0)))
            });
            match next_due {
                Err(()) => return None,
                Ok(Ok((key, level, lane, since))) => {
                    self.metrics
                        .wait_seconds
                        .observe(since.elapsed().as_secs_f64());
                    self.lane_pops[lane as usize].inc();
                    // Others may be ready too.
                    self.notify.notify_one();
                    return Some((key, level));
                }
                Ok(Err(Some(at))) => {
                    tokio::select! {
                        _ = notified => {},
                        _ = tokio::time::sleep_until(at) => {},
                    }
                }
                Ok(Err(None)) => notified.await,
            }
        }
    }

    /// Mark `key` finished; a request that arrived meanwhile is queued now.
    pub fn done(&self, key: &K) {
        let woke = self.with(|s| {
            s.processing.remove(key);
            match s.dirty.remove(key) {
                Some((level, lane, group)) => {
                    Self::enqueue(s, key.clone(), level, lane, group, Instant::now())
                }
                None => false,
            }
        });
        if woke {
            self.notify.notify_one();
        }
    }

    /// Drop a scheduled (not yet due) request of `key`, e.g. when its app is deleted.
    pub fn forget(&self, key: &K) {
        self.with(|s| {
            if let Some(slot) = s.delayed_index.remove(key) {
                s.delayed.remove(&slot);
            }
        });
    }

    /// Stop: every `pop` returns `None`.
    pub fn shutdown(&self) {
        self.with(|s| s.shutdown = true);
        self.notify.notify_waiters();
    }

    /// Keys queued and ready now.
    pub fn len(&self) -> usize {
        self.with(|s| s.queued.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Seconds the oldest key waiting for a worker has waited (0 when none waits).
    pub fn oldest_seconds(&self) -> f64 {
        self.metrics.oldest.seconds()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mk_queue() -> WorkQueue<&'static str, u8> {
        WorkQueue::new(QueueMetrics::default())
    }

    #[tokio::test]
    async fn a_key_is_queued_once_with_the_highest_level() {
        let q = mk_queue();
        q.add("a", 0);
        q.add("b", 0);
        q.add("a", 2);
        q.add("a", 1);
        assert_eq!(q.len(), 2);
        assert_eq!(q.pop().await, Some(("a", 2)));
        assert_eq!(q.pop().await, Some(("b", 0)));
        assert!(q.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn the_oldest_waiting_key_ages_until_a_worker_takes_it() {
        let q = mk_queue();
        let mut registry = Registry::default();
        let m = QueueMetrics::register(&mut registry);
        let q2: WorkQueue<&'static str, u8> = WorkQueue::new(m.clone());
        assert_eq!(q.metrics.oldest.seconds(), 0.0);
        q2.add("a", 0);
        tokio::time::advance(Duration::from_secs(5)).await;
        q2.add("b", 0);
        tokio::time::advance(Duration::from_secs(2)).await;
        assert_eq!(m.oldest.seconds(), 7.0, "measured at read time");
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).expect("encode");
        assert!(text.contains("flotilla_queue_oldest_seconds 7"), "{text}");
        assert_eq!(q2.pop().await, Some(("a", 0)));
        assert_eq!(m.oldest.seconds(), 2.0, "b is the head now");
        assert_eq!(q2.pop().await, Some(("b", 0)));
        assert_eq!(m.oldest.seconds(), 0.0);
    }

    #[tokio::test]
    async fn adds_while_processing_run_after_done_not_in_parallel() {
        let q = mk_queue();
        q.add("a", 0);
        assert_eq!(q.pop().await, Some(("a", 0)));
        q.add("a", 1);
        assert!(q.is_empty(), "not handed out while processing");
        q.done(&"a");
        assert_eq!(q.pop().await, Some(("a", 1)));
        q.done(&"a");
        assert!(q.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn delayed_keys_arrive_when_due_and_the_earliest_schedule_wins() {
        let q = mk_queue();
        q.add_after("a", 0, Duration::from_secs(10));
        q.add_after("a", 1, Duration::from_secs(30));
        q.add_after("b", 0, Duration::from_secs(20));
        let start = Instant::now();
        assert_eq!(q.pop().await, Some(("a", 0)));
        assert_eq!(start.elapsed().as_secs(), 10);
        assert_eq!(q.pop().await, Some(("b", 0)));
        assert_eq!(start.elapsed().as_secs(), 20);
        q.add_after("c", 0, Duration::from_secs(50));
        q.add_after("c", 0, Duration::from_secs(5));
        assert_eq!(q.pop().await, Some(("c", 0)));
        assert_eq!(start.elapsed().as_secs(), 25);
    }

    #[tokio::test(start_paused = true)]
    async fn forget_drops_a_schedule_and_shutdown_ends_pop() {
        let q = std::sync::Arc::new(mk_queue());
        q.add_after("a", 0, Duration::from_secs(1));
        q.forget(&"a");
        let q2 = q.clone();
        let waiter = tokio::spawn(async move { q2.pop().await });
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert!(!waiter.is_finished(), "forgotten key never arrives");
        q.shutdown();
        assert_eq!(waiter.await.expect("task"), None);
    }

    #[tokio::test]
    async fn urgent_keys_go_first_and_a_bulk_key_is_promoted_once() {
        let q = mk_queue();
        q.add("periodic-1", 0);
        q.add("periodic-2", 0);
        q.add_urgent("status", 0);
        q.add_urgent("periodic-2", 1);
        assert_eq!(q.len(), 3, "a promotion does not queue a key twice");
        assert_eq!(q.pop().await, Some(("status", 0)));
        assert_eq!(q.pop().await, Some(("periodic-2", 1)));
        assert_eq!(q.pop().await, Some(("periodic-1", 0)));
        assert!(q.is_empty());
        // A stale bulk entry of a promoted key is never handed out again.
        q.done(&"periodic-2");
        assert!(q.is_empty());
    }

    #[tokio::test]
    async fn a_storm_of_urgent_work_slows_bulk_work_but_never_stops_it() {
        let q: WorkQueue<u32, u8> = WorkQueue::new(QueueMetrics::default());
        q.add(1000, 0);
        for k in 0..20 {
            q.add_urgent(k, 0);
        }
        let mut order = Vec::new();
        for _ in 0..21 {
            let (k, _) = q.pop().await.expect("key");
            order.push(k);
        }
        let at = order.iter().position(|k| *k == 1000).expect("bulk served");
        assert_eq!(at, URGENT_BURST as usize, "{order:?}");
    }

    #[tokio::test]
    async fn groups_take_turns_so_one_big_cluster_cannot_starve_the_rest() {
        let q: WorkQueue<String, u8> = WorkQueue::new(QueueMetrics::default());
        q.set_grouper(|k: &String| Arc::from(k.split('/').next().unwrap_or_default()));
        for i in 0..100 {
            q.add(format!("big/{i}"), 0);
        }
        q.add("small/a".to_string(), 0);
        q.add("small/b".to_string(), 0);
        let mut first = Vec::new();
        for _ in 0..4 {
            first.push(q.pop().await.expect("key").0);
        }
        assert_eq!(first, ["big/0", "small/a", "big/1", "small/b"]);
        assert_eq!(q.len(), 98);
    }

    #[tokio::test]
    async fn a_request_while_processing_keeps_the_more_urgent_lane() {
        let q = mk_queue();
        q.add("a", 0);
        q.add("b", 0);
        assert_eq!(q.pop().await, Some(("a", 0)));
        q.add("a", 0);
        q.add_urgent("a", 0);
        q.done(&"a");
        assert_eq!(q.pop().await, Some(("a", 0)), "urgent again, ahead of b");
        assert_eq!(q.pop().await, Some(("b", 0)));
    }

    #[tokio::test]
    async fn lane_depths_are_exported() {
        let mut registry = Registry::default();
        let m = QueueMetrics::register(&mut registry);
        let q: WorkQueue<&'static str, u8> = WorkQueue::new(m);
        q.add("a", 0);
        q.add_urgent("b", 0);
        q.add_urgent("c", 0);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).expect("encode");
        assert!(
            text.contains("flotilla_queue_lane_depth{lane=\"urgent\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("flotilla_queue_lane_depth{lane=\"bulk\"} 1"),
            "{text}"
        );
        assert!(text.contains("flotilla_queue_depth 3"), "{text}");
    }
}
