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

    /// The manifests under `base`, following an app-specific marker to `app_key`. An entry
    /// is used only when what it says it was rendered from (commit, source digest, app) makes
    /// exactly the key it was read under; anything else is a miss and counted as `rejected`.
    pub async fn get(&self, base: &str, app_key: &str) -> Option<Hit> {
        let found = match self.entry(base).await {
            Some(Entry::Manifests(manifests)) => self.verified(base, "", manifests).map(|m| Hit {
                manifests: m,
                app_specific: false,
            }),
            Some(Entry::AppSpecific) => match self.entry(app_key).await {
                Some(Entry::Manifests(manifests)) => {
                    let app = app_key
                        .strip_prefix(base)
                        .and_then(|r| r.strip_prefix(':'))
                        .unwrap_or_default();
                    self.verified(base, app, manifests).map(|m| Hit {
                        manifests: m,
                        app_specific: true,
                    })
                }
                _ => None,
            },
            None => None,
        };
        self.metrics.lookup("manifests", found.is_some());
        found
    }

    fn verified(&self, base: &str, app: &str, m: Manifests) -> Option<Manifests> {
        if keys::manifests(&m.commit, &m.source_digest) == base && m.app == app {
            return Some(m);
        }
        tracing::warn!(
            key = base,
            entry_commit = %m.commit,
            "cache entry does not match its key (not written by a Flotilla render of it); ignored"
        );
        self.metrics.rejected("manifests");
        None
    }

    /// Store a render under the keys its own provenance makes (`m.commit`, `m.source_digest`
    /// and, when it depends on the Application, `app` = (name, namespace)): a marker under the
    /// base key sends readers to the app key. The caller never names a key, so an entry can
    /// only ever land where it belongs. Returns the base key. Failures are logged by the store
    /// and ignored.
    pub async fn put(&self, m: &Manifests, app: (&str, &str), app_specific: bool) -> String {
        let base = keys::manifests(&m.commit, &m.source_digest);
        let mut m = m.clone();
        m.app = if app_specific {
            keys::app_part(app.0, app.1)
        } else {
            String::new()
        };
        let app_key = format!("{base}:{}", m.app);
        let bytes = match codec::encode(&Entry::Manifests(m)) {
            Ok(b) => Bytes::from(b),
            Err(e) => {
                tracing::warn!(error = %e, "encoding a cache entry");
                return base;
            }
        };
        if app_specific {
            if let Ok(marker) = codec::encode(&Entry::AppSpecific) {
                let _ = self.store.set(&base, Bytes::from(marker), self.ttl).await;
            }
            let _ = self.store.set(&app_key, bytes, self.ttl).await;
        } else {
            let _ = self.store.set(&base, bytes, self.ttl).await;
        }
        base
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
    use serde_json::{Value, json};

    fn mk_store() -> ManifestStore {
        ManifestStore::new(
            Arc::new(MemoryStore::new(100)),
            DEFAULT_TTL,
            CacheMetrics::default(),
        )
    }

    fn mk_manifests(name: &str, digest: &str) -> Manifests {
        Manifests {
            commit: "c1".into(),
            source_digest: digest.into(),
            app: String::new(),
            source_type: "Helm".into(),
            objects: vec![json!({"kind": "ConfigMap", "metadata": {"name": name}})],
        }
    }

    fn names(h: &Hit) -> &Value {
        &h.manifests.objects[0]["metadata"]["name"]
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
        assert_eq!(
            s.put(&mk_manifests("shared", "d"), ("a", "ns"), false)
                .await,
            base
        );
        let hit = s.get(&base, &b).await.expect("hit");
        assert_eq!((names(&hit), hit.app_specific), (&json!("shared"), false));

        let base2 = keys::manifests("c1", "helm");
        let (a2, b2) = (
            keys::app_manifests(&base2, "a", "ns"),
            keys::app_manifests(&base2, "b", "ns"),
        );
        s.put(&mk_manifests("a-release", "helm"), ("a", "ns"), true)
            .await;
        let hit = s.get(&base2, &a2).await.expect("hit");
        assert_eq!((names(&hit), hit.app_specific), (&json!("a-release"), true));
        assert_eq!(
            s.get(&base2, &b2).await,
            None,
            "b's release was never rendered"
        );
    }

    #[tokio::test]
    async fn an_entry_under_a_key_it_was_not_rendered_for_is_rejected() {
        // An old, client-keyed writer (or anyone writing an entry as rendered for another
        // source) puts an attacker's render under a victim's key.
        let s = mk_store();
        let victim = keys::manifests("c1", "victim");
        let evil = mk_manifests("attacker-is-admin", "attacker");
        let bytes = codec::encode(&Entry::Manifests(evil)).expect("encode");
        s.store
            .set(&victim, Bytes::from(bytes), DEFAULT_TTL)
            .await
            .expect("set");
        assert_eq!(s.get(&victim, &format!("{victim}:x")).await, None);
        // An app-specific entry for app a is not served to app b, even under b's key.
        let base = keys::manifests("c1", "helm");
        s.put(&mk_manifests("a-release", "helm"), ("a", "ns"), true)
            .await;
        let a_entry = s
            .store
            .get(&keys::app_manifests(&base, "a", "ns"))
            .await
            .expect("get")
            .expect("present");
        let b_key = keys::app_manifests(&base, "b", "ns");
        s.store
            .set(&b_key, a_entry, DEFAULT_TTL)
            .await
            .expect("set");
        assert_eq!(s.get(&base, &b_key).await, None);
        let rejected = s
            .metrics
            .lookups
            .get_or_create(&crate::metrics::LookupLabels {
                cache: "manifests",
                result: "rejected",
            })
            .get();
        assert_eq!(rejected, 2);
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
        s.put(&mk_manifests("x", "d"), ("a", "ns"), false).await;
        s.unlock(&base).await;
        let hit = waiter.await.expect("join").expect("seen");
        assert_eq!(names(&hit), &json!("x"));
        assert!(s.lock(&base, "repo-1").await, "unlocked");
    }
}
