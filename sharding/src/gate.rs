//! The ownership gate: which keys this replica may act on right now, and a `Permit` held for
//! the length of every write, so a release can wait until no write on the key is in flight.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::{Notify, watch};

#[derive(Debug, Default)]
struct KeyState {
    /// New permits may be taken.
    open: bool,
    /// Permits taken and not yet dropped.
    permits: usize,
}

#[derive(Debug, Default)]
struct State {
    /// A lone replica without sharding owns every key.
    all: bool,
    keys: HashMap<String, KeyState>,
}

/// The keys this replica holds. Cheap to clone (an `Arc`); shared by the membership task (which
/// opens and closes keys) and every writer (which takes permits).
#[derive(Debug)]
pub struct Gate {
    state: Mutex<State>,
    released: Notify,
    held_tx: watch::Sender<Arc<BTreeSet<String>>>,
}

/// Proof that the holder may write to `key` until it is dropped.
#[derive(Debug)]
pub struct Permit {
    gate: Arc<Gate>,
    key: Option<String>,
}

impl Drop for Permit {
    fn drop(&mut self) {
        let Some(key) = self.key.take() else { return };
        let mut st = self.gate.lock();
        if let Some(k) = st.keys.get_mut(&key) {
            k.permits = k.permits.saturating_sub(1);
            if k.permits == 0 && !k.open {
                st.keys.remove(&key);
                drop(st);
                self.gate.released.notify_waiters();
            }
        }
    }
}

/// Why a key could not be released cleanly.
#[derive(Debug, thiserror::Error)]
#[error("{permits} write(s) on {key} still in flight after {waited:?}")]
pub struct DrainTimeout {
    pub key: String,
    pub permits: usize,
    pub waited: Duration,
}

impl Gate {
    fn new(all: bool) -> Arc<Self> {
        let (held_tx, _) = watch::channel(Arc::new(BTreeSet::new()));
        Arc::new(Self {
            state: Mutex::new(State {
                all,
                keys: HashMap::new(),
            }),
            released: Notify::new(),
            held_tx,
        })
    }

    /// A gate that owns every key (a single replica, sharding off).
    pub fn all() -> Arc<Self> {
        Self::new(true)
    }

    /// A gate that owns nothing until membership opens keys.
    pub fn none() -> Arc<Self> {
        Self::new(false)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A poisoned lock only means a panic elsewhere; the state itself stays consistent.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn owns_all(&self) -> bool {
        self.lock().all
    }

    /// Whether new writes on `key` may start.
    pub fn holds(&self, key: &str) -> bool {
        let st = self.lock();
        st.all || st.keys.get(key).is_some_and(|k| k.open)
    }

    /// A permit to write to `key`, or `None` when this replica does not hold it.
    pub fn enter(self: &Arc<Self>, key: &str) -> Option<Permit> {
        let mut st = self.lock();
        if st.all {
            return Some(Permit {
                gate: self.clone(),
                key: None,
            });
        }
        let k = st.keys.get_mut(key).filter(|k| k.open)?;
        k.permits += 1;
        Some(Permit {
            gate: self.clone(),
            key: Some(key.to_string()),
        })
    }

    /// The keys held now (empty when the gate owns all).
    pub fn held(&self) -> Arc<BTreeSet<String>> {
        self.held_tx.borrow().clone()
    }

    /// Notified with the held set whenever it changes.
    pub fn subscribe(&self) -> watch::Receiver<Arc<BTreeSet<String>>> {
        self.held_tx.subscribe()
    }

    fn publish(&self, st: &State) {
        let held: BTreeSet<String> = st
            .keys
            .iter()
            .filter(|(_, k)| k.open)
            .map(|(key, _)| key.clone())
            .collect();
        self.held_tx.send_if_modified(|cur| {
            if **cur == held {
                false
            } else {
                *cur = Arc::new(held);
                true
            }
        });
    }

    /// Let writes on `key` start.
    pub fn open(&self, key: &str) {
        let mut st = self.lock();
        st.keys.entry(key.to_string()).or_default().open = true;
        self.publish(&st);
    }

    /// Stop new writes on `key` (those in flight go on until their permits drop).
    pub fn close(&self, key: &str) {
        let mut st = self.lock();
        if let Some(k) = st.keys.get_mut(key) {
            k.open = false;
            if k.permits == 0 {
                st.keys.remove(key);
            }
        }
        self.publish(&st);
        drop(st);
        self.released.notify_waiters();
    }

    /// Stop new writes on every key at once (fencing: the Lease could not be renewed).
    pub fn close_all(&self) {
        let mut st = self.lock();
        st.keys.retain(|_, k| {
            k.open = false;
            k.permits > 0
        });
        self.publish(&st);
    }

    /// Writes on `key` still in flight.
    pub fn in_flight(&self, key: &str) -> usize {
        self.lock().keys.get(key).map_or(0, |k| k.permits)
    }

    /// Close `key` and wait until no write on it is in flight, at most `timeout`.
    pub async fn release(&self, key: &str, timeout: Duration) -> Result<(), DrainTimeout> {
        self.close(key);
        let wait = async {
            loop {
                let notified = self.released.notified();
                if self.in_flight(key) == 0 {
                    return;
                }
                notified.await;
            }
        };
        tokio::time::timeout(timeout, wait)
            .await
            .map_err(|_| DrainTimeout {
                key: key.to_string(),
                permits: self.in_flight(key),
                waited: timeout,
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_owns_everything_and_none_owns_nothing() {
        let all = Gate::all();
        assert!(all.holds("a") && all.enter("a").is_some() && all.owns_all());
        let none = Gate::none();
        assert!(!none.holds("a") && none.enter("a").is_none());
    }

    #[test]
    fn open_and_close_publish_the_held_set() {
        let g = Gate::none();
        let rx = g.subscribe();
        g.open("a");
        g.open("b");
        assert_eq!(
            *rx.borrow().clone(),
            BTreeSet::from(["a".into(), "b".into()])
        );
        g.close("a");
        assert_eq!(*g.held(), BTreeSet::from(["b".to_string()]));
        assert!(!g.holds("a") && g.enter("a").is_none());
    }

    #[tokio::test]
    async fn release_waits_for_writes_in_flight_and_refuses_new_ones() {
        let g = Gate::none();
        g.open("k");
        let permit = g.enter("k").expect("held");
        assert_eq!(g.in_flight("k"), 1);
        let g2 = g.clone();
        let release = tokio::spawn(async move { g2.release("k", Duration::from_secs(5)).await });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!release.is_finished(), "a write is still in flight");
        assert!(g.enter("k").is_none(), "no new write after close");
        drop(permit);
        release.await.expect("join").expect("drained");
        assert_eq!(g.in_flight("k"), 0);
    }

    #[tokio::test]
    async fn release_times_out_when_a_write_hangs() {
        let g = Gate::none();
        g.open("k");
        let _stuck = g.enter("k").expect("held");
        let err = g
            .release("k", Duration::from_millis(30))
            .await
            .expect_err("timeout");
        assert_eq!(err.permits, 1);
    }

    #[test]
    fn close_all_fences_every_key() {
        let g = Gate::none();
        g.open("a");
        g.open("b");
        let p = g.enter("a");
        g.close_all();
        assert!(!g.holds("a") && !g.holds("b"));
        assert!(g.held().is_empty());
        assert_eq!(g.in_flight("a"), 1);
        drop(p);
        assert_eq!(g.in_flight("a"), 0);
    }
}
