//! In-flight deduplication. `Coalescer`: identical concurrent requests (same key) share one
//! computation, run in its own task. `FreshRuns`: runs of one key are serialized and a caller
//! reuses a result only when its run started after the caller's freshness point.

use std::collections::HashMap;
use std::future::Future;
use std::hash::Hash;
use std::sync::{Arc, Mutex};

use futures::FutureExt;
use futures::future::{BoxFuture, Shared};

type Inflight<K, T> = Arc<Mutex<HashMap<K, Shared<BoxFuture<'static, Result<T, String>>>>>>;

/// Shares one run of a computation among concurrent callers with the same key.
pub struct Coalescer<K, T: Clone> {
    inflight: Inflight<K, T>,
}

impl<K, T: Clone> Default for Coalescer<K, T> {
    fn default() -> Self {
        Self {
            inflight: Arc::new(Mutex::new(HashMap::new())),
        }
    }
}

/// What a caller got: the value, and whether it joined a computation already running.
#[derive(Debug)]
pub struct Joined<T> {
    pub value: T,
    pub joined: bool,
}

impl<K, T> Coalescer<K, T>
where
    K: Eq + Hash + Clone + Send + 'static,
    T: Clone + Send + Sync + 'static,
{
    /// Run `work` for `key`, or join the run already in flight. `Err` only if the work panicked.
    pub async fn run<F, Fut>(&self, key: K, work: F) -> Result<Joined<T>, String>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = T> + Send + 'static,
    {
        let (shared, joined) = {
            let mut map = self
                .inflight
                .lock()
                .map_err(|_| "coalescer lock poisoned".to_string())?;
            if let Some(s) = map.get(&key) {
                (s.clone(), true)
            } else {
                let fut = work();
                let map_ref = self.inflight.clone();
                let k = key.clone();
                let task = tokio::spawn(async move {
                    let out = fut.await;
                    if let Ok(mut m) = map_ref.lock() {
                        m.remove(&k);
                    }
                    out
                });
                let shared =
                    async move { task.await.map_err(|e| format!("computation failed: {e}")) }
                        .boxed()
                        .shared();
                map.insert(key, shared.clone());
                (shared, false)
            }
        };
        let value = shared.await?;
        Ok(Joined { value, joined })
    }

    /// Keys being computed right now.
    pub fn in_flight(&self) -> usize {
        self.inflight.lock().map(|m| m.len()).unwrap_or(0)
    }
}

/// Runs per key, one at a time, where a result is shared only with callers for whom it is fresh
/// enough: the run must have *started* after their `fresh_after`. Callers arriving while a run
/// is going wait for it to end, then one of them starts the next run and the rest reuse it.
/// (A `Coalescer` would let them join a run that began before they asked, e.g. a Git fetch that
/// began before the push they want to see.)
pub struct FreshRuns<K, T: Clone> {
    slots: Mutex<HashMap<K, Slot<T>>>,
}

/// The last run of one key (when it started, what it gave), locked while a run is going.
type Slot<T> = Arc<tokio::sync::Mutex<Option<(std::time::Instant, T)>>>;

impl<K, T: Clone> Default for FreshRuns<K, T> {
    fn default() -> Self {
        Self {
            slots: Mutex::new(HashMap::new()),
        }
    }
}

/// What a `FreshRuns` caller got.
pub struct Fresh<T> {
    pub value: T,
    /// The value came from a run another caller started.
    pub reused: bool,
}

impl<K, T> FreshRuns<K, T>
where
    K: Eq + Hash + Clone,
    T: Clone,
{
    /// The result of a run that started at or after `fresh_after`: the last one, if it did,
    /// else a new run of `work`.
    pub async fn run<F, Fut>(&self, key: K, fresh_after: std::time::Instant, work: F) -> Fresh<T>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = T>,
    {
        let slot = {
            let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
            slots.entry(key).or_default().clone()
        };
        let mut last = slot.lock().await;
        if let Some((started, value)) = last.as_ref()
            && *started >= fresh_after
        {
            return Fresh {
                value: value.clone(),
                reused: true,
            };
        }
        let started = std::time::Instant::now();
        let value = work().await;
        *last = Some((started, value.clone()));
        Fresh {
            value,
            reused: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    #[tokio::test]
    async fn concurrent_identical_requests_compute_once_and_later_ones_recompute() {
        let c: Arc<Coalescer<&'static str, usize>> = Arc::new(Coalescer::default());
        let runs = Arc::new(AtomicUsize::new(0));
        let (release, wait) = tokio::sync::watch::channel(false);
        let mut handles = Vec::new();
        for _ in 0..8 {
            let c = c.clone();
            let runs = runs.clone();
            let mut wait = wait.clone();
            handles.push(tokio::spawn(async move {
                c.run("k", move || async move {
                    let _ = wait.wait_for(|v| *v).await;
                    runs.fetch_add(1, Ordering::SeqCst) + 1
                })
                .await
            }));
        }
        // Let every caller register before the work may finish.
        while c.in_flight() == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        release.send_replace(true);
        let mut joined = 0;
        for h in handles {
            let j = h.await.expect("task").expect("no panic");
            assert_eq!(j.value, 1);
            joined += usize::from(j.joined);
        }
        assert_eq!(runs.load(Ordering::SeqCst), 1);
        assert_eq!(joined, 7);
        assert_eq!(c.in_flight(), 0);
        // Once finished, the next request computes afresh.
        let again = c.run("k", || async { 42 }).await.expect("no panic");
        assert_eq!((again.value, again.joined), (42, false));
    }

    #[tokio::test]
    async fn work_finishes_for_others_when_the_first_caller_goes_away() {
        let c: Arc<Coalescer<u8, u8>> = Arc::new(Coalescer::default());
        let first = {
            let c = c.clone();
            tokio::spawn(async move {
                c.run(1, || async {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    7
                })
                .await
            })
        };
        while c.in_flight() == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        first.abort();
        let j = c.run(1, || async { 0 }).await.expect("no panic");
        assert_eq!((j.value, j.joined), (7, true));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn fresh_runs_serve_only_runs_that_started_after_the_caller_asked() {
        let runs: Arc<FreshRuns<&str, u32>> = Arc::new(FreshRuns::default());
        let count = Arc::new(std::sync::atomic::AtomicU32::new(0));
        let work = |count: Arc<std::sync::atomic::AtomicU32>| async move {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            count.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1
        };
        // One caller starts a run; ten arrive while it runs.
        let first = {
            let (runs, count) = (runs.clone(), count.clone());
            tokio::spawn(async move {
                runs.run("repo", std::time::Instant::now(), || work(count))
                    .await
                    .value
            })
        };
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        let mut late = Vec::new();
        for _ in 0..10 {
            let (runs, count) = (runs.clone(), count.clone());
            let asked = std::time::Instant::now();
            late.push(tokio::spawn(async move {
                runs.run("repo", asked, || work(count)).await
            }));
        }
        assert_eq!(first.await.expect("join"), 1);
        let mut reused = 0;
        for t in late {
            let f = t.await.expect("join");
            assert_eq!(
                f.value, 2,
                "the late callers got the run after theirs began, not the first"
            );
            reused += usize::from(f.reused);
        }
        assert_eq!(reused, 9, "one of them ran it, nine reused it");
        // A caller whose freshness point is old reuses the last run without waiting.
        let old = std::time::Instant::now() - std::time::Duration::from_secs(1);
        let f = runs.run("repo", old, || work(count.clone())).await;
        assert!(f.reused && f.value == 2);
        assert_eq!(count.load(std::sync::atomic::Ordering::SeqCst), 2);
    }
}
