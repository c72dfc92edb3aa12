//! The manifest cache over a `Store`: rendered manifests under a (commit, source) key, or a
//! marker sending readers to a per-Application key when the render depends on the app; plus
//! the short render lock that makes repo-server replicas render one key once.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::codec::{self, Entry, Manifests};
use crate::keys;
use crate::metrics::CacheMetrics;
use crate::store::Store;

/// Default time rendered manifests are kept (they are immutable: keyed by commit).
pub const DEFAULT_TTL: Duration = Duration::from_secs(24 * 3600);
/// How long a render lock lives if its holder dies.
pub const LOCK_TTL: Duration = Duration::from_secs(30);

/// A cache hit, and whether it came from an app-specific entry.
#[derive(Debug, Clone, PartialEq)]
pub struct Hit {
    pub manifests: Manifests,
    pub app_specific: bool,
}

/// Rendered manifests in a shared store.
#[derive(Clone)]
pub struct ManifestStore {
    store: Arc<dyn Store>,
    ttl: Duration,
    metrics: CacheMetrics,
}

impl std::fmt::Debug for ManifestStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ManifestStore")
            .field("store", &self.store.kind())
            .field("ttl", &self.ttl)
            .finish()
    }
}

impl ManifestStore {
    pub fn new(store: Arc<dyn Store>, ttl: Duration, metrics: CacheMetrics) -> Self {
        Self {
            store,
            ttl,
            metrics,
        }
    }

    pub fn kind(&self) -> &'static str {
        self.store.kind()
    }

    async fn entry(&self, key: &str) -> Option<Entry> {
        let bytes = self.store.get(key).await.ok()??;
        match codec::decode(&bytes) {
            Ok(e) => Some(e),
            Err(e) => {
                tracing::warn!(key, error = %e, "unreadable cache entry; treating it as a miss");
                None
            }
        }
    }

    /// The manifests under `base`, following an app-specific marker to `app_key`.
    pub async fn get(&self, base: &str, app_key: &str) -> Option<Hit> {
        let found = match self.entry(base).await {
            Some(Entry::Manifests(manifests)) => Some(Hit {
                manifests,
                app_specific: false,
            }),
            Some(Entry::AppSpecific) => match self.entry(app_key).await {
                Some(Entry::Manifests(manifests)) => Some(Hit {
                    manifests,
                    app_specific: true,
                }),
                _ => None,
            },
            None => None,
        };
        self.metrics.lookup("manifests", found.is_some());
        found
    }

    /// Store a render: under `base`, or (when it depends on the Application) a marker under
    /// `base` and the manifests under `app_key`. Failures are logged by the store and ignored.
    pub async fn put(&self, base: &str, app_key: &str, m: &Manifests, app_specific: bool) {
        let entry = Entry::Manifests(m.clone());
        let bytes = match codec::encode(&entry) {
            Ok(b) => Bytes::from(b),
            Err(e) => {
                tracing::warn!(error = %e, "encoding a cache entry");
                return;
            }
        };
        if app_specific {
            if let Ok(marker) = codec::encode(&Entry::AppSpecific) {
                let _ = self.store.set(base, Bytes::from(marker), self.ttl).await;
            }
            let _ = self.store.set(app_key, bytes, self.ttl).await;
        } else {
            let _ = self.store.set(base, bytes, self.ttl).await;
        }
    }

    /// Take the render lock of `base`. True when this caller should render: it got the lock,
    /// or the store cannot tell (rendering twice beats not rendering).
    pub async fn lock(&self, base: &str, holder: &str) -> bool {
        self.store
            .set_nx(
                &keys::render_lock(base),
                Bytes::from(holder.to_string()),
                LOCK_TTL,
            )
            .await
            .unwrap_or(true)
    }

    pub async fn unlock(&self, base: &str) {
        let _ = self.store.del(&[keys::render_lock(base)]).await;
    }

    /// Wait (polling) for another replica's render of `base` to appear, at most `timeout`.
    pub async fn wait_for(
        &self,
        base: &str,
        app_key: &str,
        timeout: Duration,
        poll: Duration,
    ) -> Option<Hit> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(m) = self.get(base, app_key).await {
                return Some(m);
            }
            if Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(poll).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemoryStore;
    use serde_json::json;

    fn mk_store() -> ManifestStore {
        ManifestStore::new(
            Arc::new(MemoryStore::new(100)),
            DEFAULT_TTL,
            CacheMetrics::default(),
        )
    }

    fn mk_manifests(name: &str) -> Manifests {
        Manifests {
            commit: "c1".into(),
            source_type: "Helm".into(),
            objects: vec![json!({"kind": "ConfigMap", "metadata": {"name": name}})],
        }
    }

    #[tokio::test]
    async fn shared_renders_serve_every_app_and_app_specific_ones_only_their_app() {
        let s = mk_store();
        let base = keys::manifests("c1", "d");
        let (a, b) = (
            keys::app_manifests(&base, "a", "ns"),
            keys::app_manifests(&base, "b", "ns"),
        );
        assert_eq!(s.get(&base, &a).await, None);
        s.put(&base, &a, &mk_manifests("shared"), false).await;
        let hit = s.get(&base, &b).await.expect("hit");
        assert_eq!(
            (hit.manifests, hit.app_specific),
            (mk_manifests("shared"), false)
        );

        let base2 = keys::manifests("c1", "helm");
        let (a2, b2) = (
            keys::app_manifests(&base2, "a", "ns"),
            keys::app_manifests(&base2, "b", "ns"),
        );
        s.put(&base2, &a2, &mk_manifests("a-release"), true).await;
        let hit = s.get(&base2, &a2).await.expect("hit");
        assert_eq!(
            (hit.manifests, hit.app_specific),
            (mk_manifests("a-release"), true)
        );
        assert_eq!(
            s.get(&base2, &b2).await,
            None,
            "b's release was never rendered"
        );
    }

    #[tokio::test]
    async fn the_render_lock_is_taken_once_and_waiters_see_the_render() {
        let s = mk_store();
        let base = keys::manifests("c1", "d");
        let app = keys::app_manifests(&base, "a", "ns");
        assert!(s.lock(&base, "repo-0").await);
        assert!(!s.lock(&base, "repo-1").await);
        let waiter = {
            let s = s.clone();
            let (base, app) = (base.clone(), app.clone());
            tokio::spawn(async move {
                s.wait_for(
                    &base,
                    &app,
                    Duration::from_secs(5),
                    Duration::from_millis(10),
                )
                .await
            })
        };
        s.put(&base, &app, &mk_manifests("x"), false).await;
        s.unlock(&base).await;
        let hit = waiter.await.expect("join").expect("seen");
        assert_eq!(hit.manifests, mk_manifests("x"));
        assert!(s.lock(&base, "repo-1").await, "unlocked");
    }
}
