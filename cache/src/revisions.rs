//! The revision cache: a repository's branch, tag or HEAD resolved to a commit, kept briefly
//! (default: the refresh interval) so thousands of apps on one repo resolve it once, and
//! invalidated by webhooks when the ref moves.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use crate::keys;
use crate::metrics::CacheMetrics;
use crate::store::Store;

/// Resolved revisions in a (possibly shared) store.
#[derive(Clone)]
pub struct RevisionStore {
    store: Arc<dyn Store>,
    ttl: Duration,
    metrics: CacheMetrics,
}

fn is_full_sha(s: &str) -> bool {
    s.len() == 40 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

impl std::fmt::Debug for RevisionStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RevisionStore")
            .field("store", &self.store.kind())
            .field("ttl", &self.ttl)
            .finish()
    }
}

impl RevisionStore {
    pub fn new(store: Arc<dyn Store>, ttl: Duration, metrics: CacheMetrics) -> Self {
        Self {
            store,
            ttl,
            metrics,
        }
    }

    pub async fn get(&self, repo_url: &str, revision: &str) -> Option<String> {
        let found = match self.store.get(&keys::revision(repo_url, revision)).await {
            Ok(Some(b)) => std::str::from_utf8(&b)
                .ok()
                .filter(|s| is_full_sha(s))
                .map(str::to_string),
            _ => None,
        };
        self.metrics.lookup("revision", found.is_some());
        found
    }

    pub async fn put(&self, repo_url: &str, revision: &str, commit: &str) {
        // A full SHA resolves to itself: nothing to remember.
        if is_full_sha(revision) || self.ttl.is_zero() {
            return;
        }
        let _ = self
            .store
            .set(
                &keys::revision(repo_url, revision),
                Bytes::from(commit.to_string()),
                self.ttl,
            )
            .await;
    }

    /// Forget what `refs` of the repository resolved to (a push moved them).
    pub async fn invalidate(&self, repo_url: &str, refs: &[String]) {
        let keys: Vec<String> = refs.iter().map(|r| keys::revision(repo_url, r)).collect();
        let _ = self.store.del(&keys).await;
    }

    /// The revision strings an Application may use for a pushed ref: `main` is also
    /// `refs/heads/main`, and on the default branch also `HEAD` and empty.
    pub fn aliases(pushed_ref: &str, default_branch: bool) -> Vec<String> {
        let mut out = vec![pushed_ref.to_string()];
        if let Some(b) = pushed_ref.strip_prefix("refs/heads/") {
            out.push(b.to_string());
        } else if let Some(t) = pushed_ref.strip_prefix("refs/tags/") {
            out.push(t.to_string());
        }
        if default_branch {
            out.push("HEAD".into());
            out.push(String::new());
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemoryStore;

    const SHA: &str = "0123456789abcdef0123456789abcdef01234567";

    #[tokio::test]
    async fn revisions_are_cached_per_repo_and_ref_and_invalidated_by_alias() {
        let s = RevisionStore::new(
            Arc::new(MemoryStore::new(10)),
            Duration::from_secs(60),
            CacheMetrics::default(),
        );
        s.put("https://git/org/app.git", "main", SHA).await;
        s.put("https://git/org/app.git", "HEAD", SHA).await;
        assert_eq!(
            s.get("git@git:org/app", "main").await.as_deref(),
            Some(SHA),
            "same repo in another URL form"
        );
        assert_eq!(s.get("https://git/org/app.git", "dev").await, None);
        s.invalidate(
            "https://git/org/app",
            &RevisionStore::aliases("refs/heads/main", true),
        )
        .await;
        assert_eq!(s.get("https://git/org/app.git", "main").await, None);
        assert_eq!(s.get("https://git/org/app.git", "HEAD").await, None);
        // A SHA needs no cache; a zero TTL disables caching.
        s.put("https://git/org/app.git", SHA, SHA).await;
        assert_eq!(s.get("https://git/org/app.git", SHA).await, None);
    }

    #[test]
    fn aliases_of_a_push() {
        assert_eq!(
            RevisionStore::aliases("refs/heads/main", true),
            ["refs/heads/main", "main", "HEAD", ""]
        );
        assert_eq!(
            RevisionStore::aliases("refs/tags/v1", false),
            ["refs/tags/v1", "v1"]
        );
    }
}
