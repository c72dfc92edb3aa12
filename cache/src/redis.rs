//! Redis (Cluster or single node) as a `Store`, with fred. Every command has a short deadline;
//! after a failure the store is skipped for a growing pause (a circuit breaker), so a Redis
//! outage costs the fleet its cache, never an error or a stall.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use bytes::Bytes;
use fred::prelude::*;
use futures::future::BoxFuture;

use crate::metrics::{CacheMetrics, StoreLabels};
use crate::store::{Store, StoreError};

/// How to reach Redis.
#[derive(Debug, Clone)]
pub struct RedisConfig {
    /// `redis-cluster://host:port?node=host2:port2` (Cluster), `redis://host:port` (single
    /// node); credentials as `redis-cluster://user:pass@host:port`.
    pub url: String,
    /// Deadline of one command.
    pub command_timeout: Duration,
    pub connect_timeout: Duration,
    /// Longest pause before trying a failed store again.
    pub max_backoff: Duration,
}

impl RedisConfig {
    pub fn new(url: &str) -> Self {
        Self {
            url: url.to_string(),
            command_timeout: Duration::from_millis(500),
            connect_timeout: Duration::from_secs(2),
            max_backoff: Duration::from_secs(10),
        }
    }
}

#[derive(Debug, Default)]
struct Breaker {
    failures: u32,
    open_until: Option<Instant>,
}

/// A Redis-backed store.
pub struct RedisStore {
    client: Client,
    cfg: RedisConfig,
    breaker: Mutex<Breaker>,
    metrics: CacheMetrics,
}

pub(crate) const STORE: &str = "redis";

impl RedisStore {
    /// Build the client and start connecting in the background: a Redis that is down at start
    /// only means the cache is skipped until it comes up.
    pub fn connect(cfg: RedisConfig, metrics: CacheMetrics) -> Result<Self, StoreError> {
        let config = Config::from_url(&cfg.url)
            .map_err(|e| StoreError::Failed(format!("Redis URL {:?}: {e}", redact(&cfg.url))))?;
        let (cmd, connect) = (cfg.command_timeout, cfg.connect_timeout);
        let client = Builder::from_config(config)
            .with_connection_config(|c| {
                c.connection_timeout = connect;
                c.internal_command_timeout = connect;
                c.max_command_attempts = 2;
            })
            .with_performance_config(|p| {
                p.default_command_timeout = cmd;
            })
            .set_policy(ReconnectPolicy::new_exponential(0, 100, 5_000, 2))
            .build()
            .map_err(|e| StoreError::Failed(format!("Redis client: {e}")))?;
        // The connection task runs on its own (reconnecting as needed); its handle is not needed.
        drop(client.connect());
        tracing::info!(url = %redact(&cfg.url), "Redis cache configured");
        metrics
            .degraded
            .get_or_create(&StoreLabels { store: STORE })
            .set(0);
        Ok(Self {
            client,
            cfg,
            breaker: Mutex::new(Breaker::default()),
            metrics,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Breaker> {
        self.breaker.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether to skip Redis now (degraded and not yet time to try again).
    fn skipping(&self) -> bool {
        self.lock()
            .open_until
            .is_some_and(|until| Instant::now() < until)
    }

    fn failed(&self, op: &'static str, e: &str) {
        let mut b = self.lock();
        b.failures = b.failures.saturating_add(1);
        let pause = (Duration::from_millis(500) * 2u32.saturating_pow(b.failures.min(8) - 1))
            .min(self.cfg.max_backoff);
        b.open_until = Some(Instant::now() + pause);
        if b.failures == 1 {
            tracing::warn!(op, error = e, pause = ?pause, "Redis cache unavailable: running without it");
        } else {
            tracing::debug!(op, error = e, failures = b.failures, pause = ?pause, "Redis still unavailable");
        }
        self.metrics
            .degraded
            .get_or_create(&StoreLabels { store: STORE })
            .set(1);
    }

    fn succeeded(&self) {
        let mut b = self.lock();
        if b.failures > 0 {
            tracing::info!(after_failures = b.failures, "Redis cache available again");
            self.metrics
                .degraded
                .get_or_create(&StoreLabels { store: STORE })
                .set(0);
        }
        *b = Breaker::default();
    }

    async fn call<T>(
        &self,
        op: &'static str,
        fut: impl std::future::Future<Output = Result<T, Error>>,
        result_of: impl Fn(&T) -> &'static str,
    ) -> Result<T, StoreError> {
        if self.skipping() {
            self.metrics.request(STORE, op, "skipped");
            return Err(StoreError::Unavailable(
                "skipped after recent failures".into(),
            ));
        }
        let started = Instant::now();
        // fred's own deadline plus one of ours, in case a command waits for a reconnect.
        let res = tokio::time::timeout(self.cfg.command_timeout * 2, fut).await;
        self.metrics.redis_request(
            op,
            started.elapsed().as_secs_f64(),
            !matches!(res, Ok(Ok(_))),
        );
        match res {
            Ok(Ok(v)) => {
                self.succeeded();
                self.metrics.request(STORE, op, result_of(&v));
                Ok(v)
            }
            Ok(Err(e)) => {
                self.failed(op, &e.to_string());
                self.metrics.request(STORE, op, "error");
                Err(StoreError::Unavailable(e.to_string()))
            }
            Err(_) => {
                self.failed(op, "deadline exceeded");
                self.metrics.request(STORE, op, "error");
                Err(StoreError::Unavailable("deadline exceeded".into()))
            }
        }
    }
}

fn ttl_ms(ttl: Duration) -> i64 {
    i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX).max(1)
}

/// The URL without its password, for logs.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => format!("{}://***@{}", &url[..s], &url[at + 1..]),
        _ => url.to_string(),
    }
}

impl Store for RedisStore {
    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Bytes>, StoreError>> {
        Box::pin(
            self.call("get", self.client.get::<Option<Bytes>, _>(key), |v| {
                if v.is_some() { "hit" } else { "miss" }
            }),
        )
    }

    fn set<'a>(
        &'a self,
        key: &'a str,
        value: Bytes,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            self.call(
                "set",
                self.client.set::<(), _, _>(
                    key,
                    value,
                    Some(Expiration::PX(ttl_ms(ttl))),
                    None,
                    false,
                ),
                |_| "ok",
            )
            .await
        })
    }

    fn set_nx<'a>(
        &'a self,
        key: &'a str,
        value: Bytes,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        Box::pin(async move {
            let set: Option<String> = self
                .call(
                    "set_nx",
                    self.client.set::<Option<String>, _, _>(
                        key,
                        value,
                        Some(Expiration::PX(ttl_ms(ttl))),
                        Some(SetOptions::NX),
                        false,
                    ),
                    |_| "ok",
                )
                .await?;
            Ok(set.is_some())
        })
    }

    fn del<'a>(&'a self, keys: &'a [String]) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            // One DEL per key: keys of one call may live in different cluster slots.
            for k in keys {
                self.call("del", self.client.del::<i64, _>(k.as_str()), |_| "ok")
                    .await?;
            }
            Ok(())
        })
    }

    fn kind(&self) -> &'static str {
        STORE
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_redacted_from_logged_urls() {
        assert_eq!(
            redact("redis-cluster://user:secret@10.0.0.1:6379?node=10.0.0.2:6379"),
            "redis-cluster://***@10.0.0.1:6379?node=10.0.0.2:6379"
        );
        assert_eq!(redact("redis://10.0.0.1:6379"), "redis://10.0.0.1:6379");
    }

    #[tokio::test]
    async fn an_unreachable_redis_is_skipped_quickly_after_the_first_failure() {
        // Nothing listens on this port.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("port")
            .port();
        let mut cfg = RedisConfig::new(&format!("redis://127.0.0.1:{port}"));
        cfg.command_timeout = Duration::from_millis(100);
        let metrics = CacheMetrics::default();
        let s = RedisStore::connect(cfg, metrics.clone()).expect("client");
        let first = s.get("k").await;
        assert!(
            matches!(first, Err(StoreError::Unavailable(_))),
            "{first:?}"
        );
        let t = Instant::now();
        for _ in 0..100 {
            assert!(s.get("k").await.is_err());
        }
        // 100 lookups at a 100 ms deadline each would take 10 s; skipped, they take ~nothing.
        assert!(t.elapsed() < Duration::from_secs(2), "skipped, not waited");
        assert_eq!(
            metrics
                .degraded
                .get_or_create(&StoreLabels { store: STORE })
                .get(),
            1
        );
        assert!(
            metrics
                .requests
                .get_or_create(&crate::metrics::RequestLabels {
                    store: STORE,
                    op: "get",
                    result: "skipped"
                })
                .get()
                >= 100
        );
    }
}
