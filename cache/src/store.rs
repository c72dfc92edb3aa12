//! The byte store behind the caches: the `Store` trait and the bounded in-memory LRU with
//! per-entry TTL (the embedded default). Redis Cluster is the other implementation.

use std::num::NonZeroUsize;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::future::BoxFuture;
use lru::LruCache;

/// Why a store operation did not happen. Callers treat every error as a miss.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum StoreError {
    /// The store is (or was just found) unreachable; it is skipped for a while.
    #[error("cache unavailable: {0}")]
    Unavailable(String),
    #[error("cache error: {0}")]
    Failed(String),
}

/// A key-value store of bytes with expiry.
pub trait Store: Send + Sync {
    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Bytes>, StoreError>>;
    fn set<'a>(
        &'a self,
        key: &'a str,
        value: Bytes,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<(), StoreError>>;
    /// Set only when absent; true when set (a lock taken).
    fn set_nx<'a>(
        &'a self,
        key: &'a str,
        value: Bytes,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<bool, StoreError>>;
    fn del<'a>(&'a self, keys: &'a [String]) -> BoxFuture<'a, Result<(), StoreError>>;
    /// `memory` or `redis`, for logs and metrics.
    fn kind(&self) -> &'static str;
}

struct Slot {
    value: Bytes,
    expires: Instant,
}

/// A bounded LRU of entries with expiry, for one process.
pub struct MemoryStore {
    entries: Mutex<LruCache<String, Slot>>,
}

impl MemoryStore {
    pub fn new(capacity: usize) -> Self {
        Self {
            entries: Mutex::new(LruCache::new(
                NonZeroUsize::new(capacity.max(1)).unwrap_or(NonZeroUsize::MIN),
            )),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LruCache<String, Slot>> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn get_now(&self, key: &str) -> Option<Bytes> {
        let mut e = self.lock();
        match e.get(key) {
            Some(s) if s.expires > Instant::now() => Some(s.value.clone()),
            Some(_) => {
                e.pop(key);
                None
            }
            None => None,
        }
    }
}

impl Store for MemoryStore {
    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Bytes>, StoreError>> {
        let v = self.get_now(key);
        Box::pin(async move { Ok(v) })
    }

    fn set<'a>(
        &'a self,
        key: &'a str,
        value: Bytes,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        self.lock().put(
            key.to_string(),
            Slot {
                value,
                expires: Instant::now() + ttl,
            },
        );
        Box::pin(async { Ok(()) })
    }

    fn set_nx<'a>(
        &'a self,
        key: &'a str,
        value: Bytes,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        let taken = if self.get_now(key).is_some() {
            false
        } else {
            self.lock().put(
                key.to_string(),
                Slot {
                    value,
                    expires: Instant::now() + ttl,
                },
            );
            true
        };
        Box::pin(async move { Ok(taken) })
    }

    fn del<'a>(&'a self, keys: &'a [String]) -> BoxFuture<'a, Result<(), StoreError>> {
        let mut e = self.lock();
        for k in keys {
            e.pop(k);
        }
        Box::pin(async { Ok(()) })
    }

    fn kind(&self) -> &'static str {
        "memory"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn memory_store_is_a_bounded_lru_with_expiry() {
        let s = MemoryStore::new(2);
        let hour = Duration::from_secs(3600);
        s.set("a", Bytes::from("1"), hour).await.expect("set");
        s.set("b", Bytes::from("2"), hour).await.expect("set");
        assert_eq!(s.get("a").await.expect("get"), Some(Bytes::from("1")));
        s.set("c", Bytes::from("3"), hour).await.expect("set");
        assert_eq!(s.get("b").await.expect("get"), None, "LRU evicted");
        s.set("short", Bytes::from("x"), Duration::from_millis(20))
            .await
            .expect("set");
        tokio::time::sleep(Duration::from_millis(40)).await;
        assert_eq!(s.get("short").await.expect("get"), None, "expired");
        assert!(s.set_nx("lock", Bytes::new(), hour).await.expect("nx"));
        assert!(!s.set_nx("lock", Bytes::new(), hour).await.expect("nx"));
        s.del(&["lock".to_string()]).await.expect("del");
        assert!(s.set_nx("lock", Bytes::new(), hour).await.expect("nx"));
    }
}
