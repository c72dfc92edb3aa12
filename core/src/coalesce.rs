//! In-flight deduplication: identical concurrent requests (same key) share one computation.
//! The work runs in its own task, so it completes for the others even if the first caller goes.

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
}
