//! Render slots shared fairly between repositories: a bounded number of renders run at once,
//! and a freed slot goes to the waiting repository with the fewest renders running, so one
//! tenant's slow or hostile renders cannot starve the others (and a lone monorepo still uses
//! every slot).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

/// The slots; cheap to clone.
#[derive(Clone)]
pub struct FairSlots {
    inner: Arc<Mutex<State>>,
}

struct State {
    capacity: usize,
    running: usize,
    per_key: HashMap<String, usize>,
    /// Waiters per key, in arrival order.
    waiting: HashMap<String, VecDeque<oneshot::Sender<Slot>>>,
    /// Keys with waiters, in the order they first waited (ties go to the earliest).
    order: VecDeque<String>,
}

/// A held slot; dropping it frees the slot for the next fair waiter.
pub struct Slot {
    key: String,
    slots: Option<FairSlots>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Some(s) = self.slots.take() {
            s.release(&self.key);
        }
    }
}

impl FairSlots {
    pub fn new(capacity: usize) -> Self {
        Self {
            inner: Arc::new(Mutex::new(State {
                capacity: capacity.max(1),
                running: 0,
                per_key: HashMap::new(),
                waiting: HashMap::new(),
                order: VecDeque::new(),
            })),
        }
    }

    /// Wait for a slot for `key` (a repository). Cancel-safe: a slot granted to a caller that
    /// has gone is freed again.
    pub async fn acquire(&self, key: &str) -> Slot {
        let rx = {
            let Ok(mut st) = self.inner.lock() else {
                return self.unaccounted(key);
            };
            if st.running < st.capacity && st.order.is_empty() {
                st.running += 1;
                *st.per_key.entry(key.to_string()).or_default() += 1;
                return Slot {
                    key: key.to_string(),
                    slots: Some(self.clone()),
                };
            }
            let (tx, rx) = oneshot::channel();
            let q = st.waiting.entry(key.to_string()).or_default();
            q.push_back(tx);
            if q.len() == 1 {
                st.order.push_back(key.to_string());
            }
            rx
        };
        match rx.await {
            Ok(slot) => slot,
            Err(_) => self.unaccounted(key),
        }
    }

    /// A slot that frees nothing (only when the lock is poisoned: never block a render).
    fn unaccounted(&self, key: &str) -> Slot {
        Slot {
            key: key.to_string(),
            slots: None,
        }
    }

    /// Renders running, renders waiting for a slot, and slots in all.
    pub fn load(&self) -> (usize, usize, usize) {
        self.inner
            .lock()
            .map(|st| {
                let waiting = st
                    .waiting
                    .values()
                    .flatten()
                    .filter(|tx| !tx.is_closed())
                    .count();
                (st.running, waiting, st.capacity)
            })
            .unwrap_or((0, 0, 0))
    }

    /// Renders running now for `key`.
    pub fn running(&self, key: &str) -> usize {
        self.inner
            .lock()
            .map(|st| st.per_key.get(key).copied().unwrap_or(0))
            .unwrap_or(0)
    }

    fn release(&self, key: &str) {
        let Ok(mut st) = self.inner.lock() else {
            return;
        };
        st.running = st.running.saturating_sub(1);
        if let Some(n) = st.per_key.get_mut(key) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                st.per_key.remove(key);
            }
        }
        // Grant freed capacity to the waiting key with the fewest running renders.
        while st.running < st.capacity {
            let Some(pos) = (0..st.order.len())
                .min_by_key(|&i| st.per_key.get(&st.order[i]).copied().unwrap_or(0))
            else {
                break;
            };
            let Some(next) = st.order.remove(pos) else {
                break;
            };
            let Some(mut q) = st.waiting.remove(&next) else {
                continue;
            };
            while let Some(tx) = q.pop_front() {
                if tx.is_closed() {
                    continue;
                }
                st.running += 1;
                *st.per_key.entry(next.clone()).or_default() += 1;
                let slot = Slot {
                    key: next.clone(),
                    slots: Some(self.clone()),
                };
                match tx.send(slot) {
                    Ok(()) => break,
                    // The waiter left between the check and the send: take the grant back
                    // by hand (dropping the slot here would re-enter this lock).
                    Err(mut slot) => {
                        slot.slots = None;
                        st.running -= 1;
                        if let Some(n) = st.per_key.get_mut(&next) {
                            *n -= 1;
                        }
                    }
                }
            }
            if !q.is_empty() {
                st.waiting.insert(next.clone(), q);
                st.order.push_back(next);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn a_repository_holding_every_slot_cannot_starve_another() {
        let slots = FairSlots::new(2);
        let a1 = slots.acquire("evil").await;
        let a2 = slots.acquire("evil").await;
        // More of evil's renders queue first, then one of another tenant's.
        let mut evil = Vec::new();
        for _ in 0..3 {
            let s = slots.clone();
            evil.push(tokio::spawn(async move { s.acquire("evil").await }));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        let s = slots.clone();
        let good = tokio::spawn(async move { s.acquire("good").await });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(slots.load(), (2, 4, 2), "running, waiting, slots");
        drop(a1);
        // The freed slot goes to the tenant with nothing running, not to the queue's head.
        let g = tokio::time::timeout(Duration::from_secs(5), good)
            .await
            .expect("good got a slot")
            .expect("join");
        assert_eq!((slots.running("good"), slots.running("evil")), (1, 1));
        drop(g);
        drop(a2);
        for t in evil {
            drop(t.await.expect("join"));
        }
        assert_eq!(slots.running("evil"), 0);
    }

    #[tokio::test]
    async fn a_waiter_that_gives_up_does_not_leak_its_slot() {
        let slots = FairSlots::new(1);
        let held = slots.acquire("a").await;
        let s = slots.clone();
        let gone = tokio::spawn(async move { s.acquire("b").await });
        tokio::time::sleep(Duration::from_millis(20)).await;
        gone.abort();
        let _ = gone.await;
        drop(held);
        let again = tokio::time::timeout(Duration::from_secs(5), slots.acquire("c"))
            .await
            .expect("slot is free");
        assert_eq!(slots.running("c"), 1);
        drop(again);
    }
}
