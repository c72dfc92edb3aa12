//! Cache metrics: requests by store, operation and result (hit, miss, ok, error, skipped),
//! their latency, and whether a store is degraded (skipped after failures).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// `memory` or `redis`.
    pub store: &'static str,
    /// `get`, `set`, `set_nx`, `del`.
    pub op: &'static str,
    /// `hit`, `miss`, `ok`, `error`, `skipped` (store degraded, not asked).
    pub result: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OpLabels {
    pub store: &'static str,
    pub op: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StoreLabels {
    pub store: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LookupLabels {
    /// `manifests` or `revision`.
    pub cache: &'static str,
    /// `hit` or `miss` (errors count as misses).
    pub result: &'static str,
}

fn latency() -> Histogram {
    Histogram::new(exponential_buckets(0.0001, 2.0, 16))
}

/// `flotilla_redis_request_total`'s labels (Argo CD's `argocd_redis_request_total`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RedisRequestLabels {
    /// The process asking: `controller` or `repo-server`.
    pub initiator: &'static str,
    pub failed: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct InitiatorLabels {
    pub initiator: &'static str,
}

/// Called with each Redis command's seconds and whether it failed, so a binary can count the
/// same requests under other names (Argo CD's `argocd_redis_request_*`).
#[derive(Clone)]
pub struct RedisObserver(pub std::sync::Arc<dyn Fn(f64, bool) + Send + Sync>);

impl std::fmt::Debug for RedisObserver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RedisObserver")
    }
}

/// Handles to the cache metrics (cheap to clone).
#[derive(Debug, Clone)]
pub struct CacheMetrics {
    pub requests: Family<RequestLabels, Counter>,
    pub seconds: Family<OpLabels, Histogram, fn() -> Histogram>,
    pub degraded: Family<StoreLabels, Gauge>,
    pub lookups: Family<LookupLabels, Counter>,
    pub redis_requests: Family<RedisRequestLabels, Counter>,
    pub redis_seconds: Family<InitiatorLabels, Histogram, fn() -> Histogram>,
    /// Which process these metrics belong to (`initiator` label of the Redis series).
    pub initiator: &'static str,
    /// Whether `flotilla_redis_request*` are kept (off when another name replaces them).
    pub flotilla_redis: bool,
    /// Also told of every Redis command.
    pub redis_observer: Option<RedisObserver>,
}

impl Default for CacheMetrics {
    fn default() -> Self {
        Self {
            requests: Family::default(),
            seconds: Family::new_with_constructor(latency),
            degraded: Family::default(),
            lookups: Family::default(),
            redis_requests: Family::default(),
            redis_seconds: Family::new_with_constructor(latency),
            initiator: "flotilla",
            flotilla_redis: true,
            redis_observer: None,
        }
    }
}

impl CacheMetrics {
    /// Register the metrics of a process named `initiator` (`controller`, `repo-server`).
    pub fn register(registry: &mut Registry, initiator: &'static str) -> Self {
        Self::register_with(registry, initiator, true, None)
    }

    /// [`Self::register`], with the `flotilla_redis_request*` series only if `flotilla_redis`,
    /// and `observer` told of every Redis command.
    pub fn register_with(
        registry: &mut Registry,
        initiator: &'static str,
        flotilla_redis: bool,
        observer: Option<RedisObserver>,
    ) -> Self {
        let m = Self {
            initiator,
            flotilla_redis,
            redis_observer: observer,
            ..Self::default()
        };
        if flotilla_redis {
            registry.register(
                "flotilla_redis_request",
                "Redis requests, by initiator and whether they failed",
                m.redis_requests.clone(),
            );
            registry.register(
                "flotilla_redis_request_duration_seconds",
                "Redis request durations, by initiator",
                m.redis_seconds.clone(),
            );
        }
        let r = registry.sub_registry_with_prefix("flotilla_cache");
        r.register(
            "requests",
            "Cache store requests by store, operation and result",
            m.requests.clone(),
        );
        r.register(
            "request_seconds",
            "Latency of cache store requests",
            m.seconds.clone(),
        );
        r.register(
            "degraded",
            "1 while a store is skipped after failures (the fleet runs without it)",
            m.degraded.clone(),
        );
        r.register(
            "lookups",
            "Cache lookups by cache (manifests, revision) and result (hit, miss; rejected: an entry that did not match its key)",
            m.lookups.clone(),
        );
        m
    }

    pub fn request(&self, store: &'static str, op: &'static str, result: &'static str) {
        self.requests
            .get_or_create(&RequestLabels { store, op, result })
            .inc();
    }

    /// One Redis command `op`: its latency (by operation, and by initiator as Argo CD counts
    /// it) and whether it failed.
    pub fn redis_request(&self, op: &'static str, seconds: f64, failed: bool) {
        self.seconds
            .get_or_create(&OpLabels {
                store: crate::redis::STORE,
                op,
            })
            .observe(seconds);
        if let Some(o) = &self.redis_observer {
            (o.0)(seconds, failed);
        }
        if !self.flotilla_redis {
            return;
        }
        let initiator = self.initiator;
        self.redis_seconds
            .get_or_create(&InitiatorLabels { initiator })
            .observe(seconds);
        self.redis_requests
            .get_or_create(&RedisRequestLabels {
                initiator,
                failed: if failed { "true" } else { "false" },
            })
            .inc();
    }

    /// A cache entry that did not match the key it was read under (counted as a miss too).
    pub fn rejected(&self, cache: &'static str) {
        self.lookups
            .get_or_create(&LookupLabels {
                cache,
                result: "rejected",
            })
            .inc();
    }

    pub fn lookup(&self, cache: &'static str, hit: bool) {
        self.lookups
            .get_or_create(&LookupLabels {
                cache,
                result: if hit { "hit" } else { "miss" },
            })
            .inc();
    }
}
