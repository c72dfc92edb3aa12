//! Redis (Cluster, Sentinel or single node; AUTH and TLS for each) as a `Store`, with fred.
//! Every command has a short deadline; after a failure the store is skipped for a growing
//! pause (a circuit breaker), so a Redis outage costs the fleet its cache, never an error or a
//! stall.

use std::path::{Path, PathBuf};
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
    /// node), `redis-sentinel://host:26379?sentinelServiceName=mymaster&node=host2:26379`
    /// (Sentinel); credentials as `redis://user:pass@host:port` (`sentinelUsername` and
    /// `sentinelPassword` for the sentinels themselves); `rediss…` for TLS.
    pub url: String,
    /// TLS settings for `rediss…` URLs.
    pub tls: RedisTls,
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
            tls: RedisTls::default(),
            command_timeout: Duration::from_millis(500),
            connect_timeout: Duration::from_secs(2),
            max_backoff: Duration::from_secs(10),
        }
    }
}

/// TLS to Redis (Argo CD's `--redis-ca-certificate`, `--redis-client-certificate`,
/// `--redis-client-key`, `--redis-insecure-skip-tls-verify`), used by `rediss…` URLs.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct RedisTls {
    /// CA certificates (PEM file) Redis's certificate must chain to (default: the system's).
    #[arg(long = "redis-ca-certificate", env = "FLOTILLA_REDIS_CA_CERTIFICATE")]
    pub ca_file: Option<PathBuf>,
    /// Client certificate (PEM file) for Redis servers that ask for one.
    #[arg(
        long = "redis-client-certificate",
        env = "FLOTILLA_REDIS_CLIENT_CERTIFICATE",
        requires = "client_key"
    )]
    pub client_cert: Option<PathBuf>,
    /// The client certificate's key (PEM file).
    #[arg(
        long = "redis-client-key",
        env = "FLOTILLA_REDIS_CLIENT_KEY",
        requires = "client_cert"
    )]
    pub client_key: Option<PathBuf>,
    /// Accept any certificate from Redis (discouraged).
    #[arg(
        long = "redis-insecure-skip-tls-verify",
        env = "FLOTILLA_REDIS_INSECURE_SKIP_TLS_VERIFY"
    )]
    pub insecure: bool,
}

/// Whether the URL asks for TLS (`rediss://`, `rediss-cluster://`, `rediss-sentinel://`).
fn wants_tls(url: &str) -> bool {
    url.to_ascii_lowercase().starts_with("rediss")
}

fn read_pem(what: &str, path: &Path) -> Result<Vec<u8>, StoreError> {
    std::fs::read(path)
        .map_err(|e| StoreError::Failed(format!("Redis {what} {}: {e}", path.display())))
}

/// The rustls client for Redis: the CA file's certificates (or the system's roots), an
/// optional client certificate, and no verification at all only when asked.
fn tls_connector(tls: &RedisTls) -> Result<TlsConnector, StoreError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let bad =
        |what: &str, e: &dyn std::fmt::Display| StoreError::Failed(format!("Redis {what}: {e}"));
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| bad("TLS", &e))?;
    let builder = if tls.insecure {
        builder
            .dangerous()
            .with_custom_certificate_verifier(std::sync::Arc::new(AnyCertificate(provider)))
    } else if let Some(ca) = &tls.ca_file {
        let pem = read_pem("CA certificate", ca)?;
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(&pem) {
            roots
                .add(cert.map_err(|e| bad("CA certificate", &e))?)
                .map_err(|e| bad("CA certificate", &e))?;
        }
        if roots.is_empty() {
            return Err(StoreError::Failed(format!(
                "Redis CA certificate {}: no certificate in the file",
                ca.display()
            )));
        }
        builder.with_root_certificates(roots)
    } else {
        return match (&tls.client_cert, &tls.client_key) {
            (None, None) => TlsConnector::default_rustls().map_err(|e| bad("TLS", &e)),
            _ => Err(StoreError::Failed(
                "a Redis client certificate needs --redis-ca-certificate too".into(),
            )),
        };
    };
    let config = match (&tls.client_cert, &tls.client_key) {
        (Some(cert), Some(key)) => {
            let chain = CertificateDer::pem_slice_iter(&read_pem("client certificate", cert)?)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| bad("client certificate", &e))?;
            let key = PrivateKeyDer::from_pem_slice(&read_pem("client key", key)?)
                .map_err(|e| bad("client key", &e))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| bad("client certificate", &e))?
        }
        (None, None) => builder.with_no_client_auth(),
        _ => {
            return Err(StoreError::Failed(
                "--redis-client-certificate and --redis-client-key go together".into(),
            ));
        }
    };
    Ok(TlsConnector::from(config))
}

/// `--redis-insecure-skip-tls-verify`: every certificate is accepted (signatures are still
/// checked, so the session is at least bound to the key the server showed).
#[derive(Debug)]
struct AnyCertificate(std::sync::Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &[rustls::pki_types::CertificateDer<'_>],
        _: &rustls::pki_types::ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
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
        let mut config = Config::from_url(&cfg.url)
            .map_err(|e| StoreError::Failed(format!("Redis URL {:?}: {e}", redact(&cfg.url))))?;
        config.tls = if wants_tls(&cfg.url) {
            Some(tls_connector(&cfg.tls)?.into())
        } else {
            None
        };
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
/// The URL without its user info and without the sentinels' password (`sentinelPassword=`,
/// however its name is percent-encoded). A `?` inside the password does not start the query.
fn redact(url: &str) -> String {
    let after_auth = url.rfind('@').map(|at| at + 1).unwrap_or(0);
    let (base, query) = match url[after_auth..].find('?') {
        Some(q) => (&url[..after_auth + q], &url[after_auth + q + 1..]),
        None => (url, ""),
    };
    let base = match (base.find("://"), base.rfind('@')) {
        (Some(s), Some(at)) if at > s => format!("{}://***@{}", &base[..s], &base[at + 1..]),
        _ => base.to_string(),
    };
    if query.is_empty() {
        return base;
    }
    let query: Vec<String> = query
        .split('&')
        .map(|kv| match kv.split_once('=') {
            Some((k, _)) if percent_decoded(k).eq_ignore_ascii_case("sentinelPassword") => {
                format!("{k}=***")
            }
            _ => kv.to_string(),
        })
        .collect();
    format!("{base}?{}", query.join("&"))
}

/// `%XX` escapes decoded (invalid ones kept as they are).
fn percent_decoded(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && let Some(v) = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).to_string()
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
        for url in [
            "redis-sentinel://:pw@h:26379/0?sentinelServiceName=m&sentinelPassword=S3CRET",
            "redis-sentinel://h:26379/0?sentinelServiceName=m&sentinel%50assword=S3CRET",
            "redis://:pa?ss=S3CRET@h:6379",
        ] {
            let shown = redact(url);
            assert!(
                !shown.contains("S3CRET") && !shown.contains(":pw@"),
                "{shown}"
            );
        }
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
