//! flotilla-cache: the caches controllers and repo-servers share: rendered manifests keyed by
//! (commit, source) and resolved revisions keyed by (repository, ref), compressed, in memory or
//! in Redis Cluster, where an outage degrades to "no cache" and never to an error or a stall.
//! Must not know how manifests are rendered or applied: it stores opaque, versioned entries.
#![forbid(unsafe_code)]

pub mod codec;
pub mod keys;
pub mod manifests;
pub mod metrics;
pub mod redis;
pub mod revisions;
pub mod store;

pub use codec::{Entry, Manifests};
pub use manifests::{Hit, ManifestStore};
pub use metrics::CacheMetrics;
pub use revisions::RevisionStore;
pub use store::{MemoryStore, Store, StoreError};
