//! The reconcile work queue: a key is queued at most once (its refresh level is the highest
//! asked), is never processed by two workers at once (re-adds while processing run after),
//! and can be scheduled for later (periodic refresh, backoff). Exports depth, wait and the age
//! of the oldest waiting key (computed at scrape time, so a stuck queue shows it).

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::hash::Hash;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use tokio::sync::Notify;
use tokio::time::Instant;

/// The queue's metrics.
#[derive(Clone)]
pub struct QueueMetrics {
    pub depth: Gauge,
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
        registry.register_collector(Box::new(m.oldest.clone()));
        m
    }
}

struct State<K, L> {
    ready: VecDeque<K>,
    /// Queued keys: level and when first queued.
    queued: HashMap<K, (L, Instant)>,
    processing: HashSet<K>,
    /// Added while processing: queued again when done.
    dirty: HashMap<K, L>,
    delayed: BTreeMap<(Instant, u64), (K, L)>,
    delayed_index: HashMap<K, (Instant, u64)>,
    seq: u64,
    shutdown: bool,
}

/// A deduplicating, delaying work queue of keys `K` with refresh levels `L`.
pub struct WorkQueue<K, L> {
    state: Mutex<State<K, L>>,
    notify: Notify,
    metrics: QueueMetrics,
}

impl<K, L> WorkQueue<K, L>
where
    K: Eq + Hash + Clone,
    L: Ord + Copy,
{
    pub fn new(metrics: QueueMetrics) -> Self {
        Self {
            state: Mutex::new(State {
                ready: VecDeque::new(),
                queued: HashMap::new(),
                processing: HashSet::new(),
                dirty: HashMap::new(),
                delayed: BTreeMap::new(),
                delayed_index: HashMap::new(),
                seq: 0,
                shutdown: false,
            }),
            notify: Notify::new(),
            metrics,
        }
    }

    fn with<R>(&self, f: impl FnOnce(&mut State<K, L>) -> R) -> R {
        let mut g = match self.state.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        let r = f(&mut g);
        self.metrics.depth.set(g.ready.len() as i64);
        self.metrics.scheduled.set(g.delayed.len() as i64);
        self.metrics.processing.set(g.processing.len() as i64);
        let head = g
            .ready
            .front()
            .and_then(|k| g.queued.get(k))
            .map(|(_, t)| *t);
        self.metrics.oldest.set(head);
        r
    }

    fn enqueue(s: &mut State<K, L>, key: K, level: L, now: Instant) -> bool {
        if s.processing.contains(&key) {
            let e = s.dirty.entry(key).or_insert(level);
            *e = (*e).max(level);
            return false;
        }
        match s.queued.get_mut(&key) {
            Some((l, _)) => {
                *l = (*l).max(level);
                false
            }
            None => {
                s.queued.insert(key.clone(), (level, now));
                s.ready.push_back(key);
                true
            }
        }
    }

    /// Queue `key` now at `level` (merged with a pending request for the same key).
    pub fn add(&self, key: K, level: L) {
        self.metrics.adds.inc();
        let woke = self.with(|s| Self::enqueue(s, key, level, Instant::now()));
        if woke {
            self.notify.notify_one();
        }
    }

    /// Queue `key` after `delay`; an earlier schedule of the same key wins.
    pub fn add_after(&self, key: K, level: L, delay: Duration) {
        if delay.is_zero() {
            return self.add(key, level);
        }
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
            s.delayed.insert(slot, (key.clone(), level));
            s.delayed_index.insert(key, slot);
        });
        // A sleeping worker may need to wake earlier now.
        self.notify.notify_one();
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
                    if let Some((key, level)) = s.delayed.remove(&slot) {
                        s.delayed_index.remove(&key);
                        Self::enqueue(s, key, level, now);
                    }
                }
                if let Some(key) = s.ready.pop_front()
                    && let Some((level, since)) = s.queued.remove(&key)
                {
                    s.processing.insert(key.clone());
                    return Ok(Ok((key, level, since)));
                }
                Ok(Err(s.delayed.first_key_value().map(|(slot, _)| slot.0)))
            });
            match next_due {
                Err(()) => return None,
                Ok(Ok((key, level, since))) => {
                    self.metrics
                        .wait_seconds
                        .observe(since.elapsed().as_secs_f64());
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
                Some(level) => Self::enqueue(s, key.clone(), level, Instant::now()),
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
        self.with(|s| s.ready.len())
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
}
