//! Live state of destination clusters: a `LiveStore` per cluster (pure index of the objects
//! Flotilla manages) fed by a `ClusterCache` (per-kind watches selected by the tracking
//! label, discovery, reachability), and the `Caches` registry of them.

pub mod cache;
pub mod metrics;
pub mod orphans;
pub mod requests;
pub mod store;

pub use cache::{ApiInfo, CacheError, CacheEvents, Capabilities, ClusterCache};
pub use store::LiveStore;
