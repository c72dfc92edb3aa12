//! Bounds on every destination-cluster client: a token bucket per cluster (client-go's QPS and
//! burst), a deadline on each non-watch request, and at most N retries of a throttled
//! idempotent request, waiting what `Retry-After` asks (capped) or an exponential backoff.
//! `TokenBucket` and `RetryPolicy` are pure; `Bounded` and `Deadline` are the tower layers.
//!
//! Layer order (outermost first): `Bounded` (rate limit, then retry) → `CountRequests` →
//! `Deadline` → credentials → kube's own stack with its built-in retry turned off (kube 5's
//! default retries 429/503/504 up to 15 times for up to 1000 s each, writes included). So each
//! attempt takes a token and is counted once, and the deadline is per attempt, excluding
//! the wait for a token (measured apart, `flotilla_kube_client_throttled_seconds`).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use http::{HeaderMap, Method, Request, Response};
use kube::client::Body;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::config::KubeClientSettings;
use crate::live::requests::is_watch;

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// client-go's token bucket: `burst` tokens, refilled at `qps` per second. A token taken from
/// an empty bucket is a reservation: callers wait in the order they asked, `1/qps` apart.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    qps: f64,
    burst: f64,
    /// Negative while callers wait for tokens not yet refilled.
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket, or `None` when `qps` is 0, negative or not finite (unlimited).
    pub fn new(qps: f64, burst: u32, now: Instant) -> Option<Self> {
        if !(qps > 0.0 && qps.is_finite()) {
            return None;
        }
        let burst = f64::from(burst.max(1));
        Some(Self {
            qps,
            burst,
            tokens: burst,
            last: now,
        })
    }

    /// Take a token at `now`: how long the caller must wait before sending (zero: at once).
    pub fn reserve(&mut self, now: Instant) -> Duration {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = self.last.max(now);
        self.tokens = (self.tokens + elapsed * self.qps).min(self.burst) - 1.0;
        if self.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-self.tokens / self.qps)
        }
    }

    /// Give back a token reserved but never used (its caller went away while waiting).
    pub fn cancel(&mut self) {
        self.tokens = (self.tokens + 1.0).min(self.burst);
    }
}

/// Why a request was retried (`flotilla_kube_client_retries_total{reason}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RetryReason {
    /// 429 TooManyRequests (API Priority and Fairness, or a proxy).
    TooManyRequests,
    /// 503 with a Retry-After (an API server shutting down or overloaded).
    Unavailable,
}

impl RetryReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::TooManyRequests => "too_many_requests",
            Self::Unavailable => "service_unavailable",
        }
    }
}

/// When a throttled request is sent again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Retries after the first attempt; then the last answer is returned.
    pub max_retries: u32,
    /// Longest `Retry-After` honoured (a longer one waits this long).
    pub max_retry_after: Duration,
    /// The first backoff without `Retry-After`; doubled per retry up to `max_backoff`.
    pub base_backoff: Duration,
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_retries: 3,
            max_retry_after: Duration::from_secs(10),
            base_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(2),
        }
    }
}

/// `Retry-After` in seconds (the HTTP-date form is not used by Kubernetes: backoff instead).
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    value.trim().parse::<u64>().ok().map(Duration::from_secs)
}

/// Whether a request may be sent twice: reads (GET and HEAD, not watches: kube's watcher
/// re-establishes those with its own backoff) and server-side apply, which converges on the
/// same object however often it is applied. Other writes (create, update, merge and JSON
/// patches, delete) are not retried here: the reconcile's own backoff retries them after
/// re-reading the state.
pub fn retryable(method: &Method, headers: &HeaderMap, query: Option<&str>) -> bool {
    match *method {
        Method::GET | Method::HEAD => !is_watch(query),
        Method::PATCH => headers
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|ct| ct.starts_with("application/apply-patch")),
        _ => false,
    }
}

impl RetryPolicy {
    /// The policy with `max_retries` from the settings.
    pub fn with_max_retries(max_retries: u32) -> Self {
        Self {
            max_retries,
            ..Self::default()
        }
    }

    /// Backoff before retry number `retries + 1` when the server named no delay.
    pub fn backoff(&self, retries: u32) -> Duration {
        self.base_backoff
            .saturating_mul(1u32 << retries.min(16))
            .min(self.max_backoff)
    }

    /// After `retries` retries, an answer with `status` and `retry_after`: how long to wait
    /// before sending again and why, or `None` to return the answer as it is.
    pub fn next(
        &self,
        retries: u32,
        status: u16,
        retry_after: Option<&str>,
    ) -> Option<(Duration, RetryReason)> {
        if retries >= self.max_retries {
            return None;
        }
        let after = retry_after.and_then(parse_retry_after);
        let reason = match (status, after) {
            (429, _) => RetryReason::TooManyRequests,
            (503, Some(_)) => RetryReason::Unavailable,
            _ => return None,
        };
        let wait = after.map_or_else(|| self.backoff(retries), |d| d.min(self.max_retry_after));
        Some((wait, reason))
    }
}

/// `flotilla_kube_client_retries_total`'s labels.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RetryLabels {
    pub reason: &'static str,
}

/// Metrics of the client bounds; no cluster label (a fleet has thousands): the request
/// counter `flotilla_app_k8s_request_total{server,response_code}` tells which cluster answers
/// 429.
#[derive(Clone)]
pub struct ClientLimitMetrics {
    pub throttled: Histogram,
    pub retries: Family<RetryLabels, Counter>,
    pub timeouts: Counter,
}

impl Default for ClientLimitMetrics {
    fn default() -> Self {
        Self {
            throttled: Histogram::new([0.0, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0]),
            retries: Family::default(),
            timeouts: Counter::default(),
        }
    }
}

impl ClientLimitMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self::default();
        registry.register(
            "flotilla_kube_client_throttled_seconds",
            "Time each request to a destination cluster waited for its client-side rate limit (--kube-client-qps, --kube-client-burst)",
            m.throttled.clone(),
        );
        registry.register(
            "flotilla_kube_client_retries",
            "Requests to destination clusters sent again after a 429, or a 503 with Retry-After, by reason",
            m.retries.clone(),
        );
        registry.register(
            "flotilla_kube_client_timeouts",
            "Requests to destination clusters that passed --kube-request-timeout-seconds",
            m.timeouts.clone(),
        );
        m
    }
}

/// The settings and metrics every cluster client shares; each client gets its own bucket.
#[derive(Clone)]
pub struct ClientLimits {
    pub settings: KubeClientSettings,
    pub metrics: ClientLimitMetrics,
}

impl Default for ClientLimits {
    fn default() -> Self {
        Self::new(KubeClientSettings::default(), ClientLimitMetrics::default())
    }
}

impl ClientLimits {
    pub fn new(settings: KubeClientSettings, metrics: ClientLimitMetrics) -> Self {
        Self { settings, metrics }
    }

    /// Rate limit and retry for one cluster's client (a fresh, full bucket).
    pub fn bounded(&self) -> BoundedLayer {
        BoundedLayer {
            bucket: TokenBucket::new(
                self.settings.qps,
                self.settings.burst,
                tokio::time::Instant::now().into_std(),
            )
            .map(|b| Arc::new(parking_lot::Mutex::new(b))),
            retry: RetryPolicy::with_max_retries(self.settings.max_retries),
            metrics: self.metrics.clone(),
        }
    }

    /// The per-attempt deadline of non-watch requests.
    pub fn deadline(&self) -> DeadlineLayer {
        DeadlineLayer {
            timeout: self.settings.request_timeout.filter(|d| !d.is_zero()),
            metrics: self.metrics.clone(),
        }
    }
}

/// Rate limit, then retry: the outermost layer of a cluster client.
#[derive(Clone)]
pub struct BoundedLayer {
    bucket: Option<Arc<parking_lot::Mutex<TokenBucket>>>,
    retry: RetryPolicy,
    metrics: ClientLimitMetrics,
}

impl<S> tower::Layer<S> for BoundedLayer {
    type Service = Bounded<S>;
    fn layer(&self, inner: S) -> Bounded<S> {
        Bounded {
            inner: Arc::new(tokio::sync::Mutex::new(inner)),
            layer: self.clone(),
        }
    }
}

/// The rate-limiting, retrying service. The inner service sits behind a lock taken only to
/// get ready and start a call (never while the answer is awaited), so one request can be
/// sent several times from its own future.
pub struct Bounded<S> {
    inner: Arc<tokio::sync::Mutex<S>>,
    layer: BoundedLayer,
}

impl<S> Clone for Bounded<S> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            layer: self.layer.clone(),
        }
    }
}

/// Returns a reserved token to the bucket unless disarmed (the wait completed).
struct Reservation<'a>(Option<&'a parking_lot::Mutex<TokenBucket>>);

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        if let Some(b) = self.0 {
            b.lock().cancel();
        }
    }
}

impl BoundedLayer {
    /// Wait for a token (at once while the bucket has one).
    async fn throttle(&self) {
        let Some(bucket) = &self.bucket else {
            return;
        };
        let now = tokio::time::Instant::now();
        let wait = bucket.lock().reserve(now.into_std());
        self.metrics.throttled.observe(wait.as_secs_f64());
        if !wait.is_zero() {
            let mut guard = Reservation(Some(bucket));
            tokio::time::sleep_until(now + wait).await;
            guard.0 = None;
        }
    }
}

/// A copy of `req` for another attempt (its body is in memory: kube sends no streams).
fn clone_request(req: &Request<Body>) -> Option<Request<Body>> {
    let mut copy = Request::new(req.body().try_clone()?);
    *copy.method_mut() = req.method().clone();
    *copy.uri_mut() = req.uri().clone();
    *copy.version_mut() = req.version();
    *copy.headers_mut() = req.headers().clone();
    *copy.extensions_mut() = req.extensions().clone();
    Some(copy)
}

impl<S, R> tower::Service<Request<Body>> for Bounded<S>
where
    S: tower::Service<Request<Body>, Response = Response<R>> + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    R: Send + 'static,
{
    type Response = Response<R>;
    type Error = BoxError;
    type Future = BoxFuture<Result<Response<R>, BoxError>>;

    /// Readiness is awaited per attempt, inside the call's future.
    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        let this = self.clone();
        Box::pin(async move {
            let retryable = retryable(req.method(), req.headers(), req.uri().query());
            let mut req = req;
            let mut retries = 0;
            loop {
                this.layer.throttle().await;
                let spare = (retryable && retries < this.layer.retry.max_retries)
                    .then(|| clone_request(&req))
                    .flatten();
                let sent = {
                    let mut svc = this.inner.lock().await;
                    std::future::poll_fn(|cx| svc.poll_ready(cx))
                        .await
                        .map_err(Into::into)?;
                    svc.call(req)
                };
                let res = sent.await.map_err(Into::into)?;
                let Some(next) = spare else {
                    return Ok(res);
                };
                let retry_after = res
                    .headers()
                    .get(http::header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok());
                let Some((wait, reason)) =
                    this.layer
                        .retry
                        .next(retries, res.status().as_u16(), retry_after)
                else {
                    return Ok(res);
                };
                this.layer
                    .metrics
                    .retries
                    .get_or_create(&RetryLabels {
                        reason: reason.as_str(),
                    })
                    .inc();
                tracing::debug!(uri = %next.uri().path(), status = res.status().as_u16(),
                    ?wait, retry = retries + 1, "retrying a throttled request");
                drop(res);
                tokio::time::sleep(wait).await;
                retries += 1;
                req = next;
            }
        })
    }
}

/// A request passed its deadline (`--kube-request-timeout-seconds`).
#[derive(Debug, thiserror::Error)]
#[error("request timed out after {0:?} (--kube-request-timeout-seconds)")]
pub struct RequestTimeout(pub Duration);

/// The deadline of each non-watch attempt.
#[derive(Clone)]
pub struct DeadlineLayer {
    timeout: Option<Duration>,
    metrics: ClientLimitMetrics,
}

impl<S> tower::Layer<S> for DeadlineLayer {
    type Service = Deadline<S>;
    fn layer(&self, inner: S) -> Deadline<S> {
        Deadline {
            inner,
            layer: self.clone(),
        }
    }
}

/// The deadline service: a watch (`watch=true`) is exempt, being long-running by design
/// (kube's watcher asks the server to end it with `timeoutSeconds`).
#[derive(Clone)]
pub struct Deadline<S> {
    inner: S,
    layer: DeadlineLayer,
}

impl<S, B, R> tower::Service<Request<B>> for Deadline<S>
where
    S: tower::Service<Request<B>, Response = Response<R>>,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
{
    type Response = Response<R>;
    type Error = BoxError;
    type Future = BoxFuture<Result<Response<R>, BoxError>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let timeout = self.layer.timeout.filter(|_| !is_watch(req.uri().query()));
        let fut = self.inner.call(req);
        let timeouts = self.layer.metrics.timeouts.clone();
        Box::pin(async move {
            match timeout {
                None => fut.await.map_err(Into::into),
                Some(d) => match tokio::time::timeout(d, fut).await {
                    Ok(res) => res.map_err(Into::into),
                    Err(_) => {
                        timeouts.inc();
                        Err(Box::new(RequestTimeout(d)) as BoxError)
                    }
                },
            }
        })
    }
}

/// A histogram's observation count and sum, read back through the text encoding.
#[cfg(test)]
pub(crate) fn count_and_sum(h: &Histogram) -> (u64, f64) {
    let mut r = Registry::default();
    r.register("h", "h", h.clone());
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &r).expect("encode");
    let value = |suffix: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("h_{suffix} ")))
            .map(|v| v.trim().to_string())
            .unwrap_or_default()
    };
    (
        value("count").parse().unwrap_or(0),
        value("sum").parse().unwrap_or(0.0),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: f64) -> Duration {
        Duration::from_secs_f64(s)
    }

    #[test]
    fn a_bucket_lets_a_burst_through_then_paces_at_qps() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(5.0, 5, t0).expect("limited");
        for _ in 0..5 {
            assert_eq!(b.reserve(t0), Duration::ZERO);
        }
        // Callers queue up, 200 ms apart.
        let waits: Vec<Duration> = (0..10).map(|_| b.reserve(t0)).collect();
        for (i, w) in waits.iter().enumerate() {
            let want = 0.2 * (i + 1) as f64;
            assert!((w.as_secs_f64() - want).abs() < 1e-6, "{i}: {w:?}");
        }
        // After the last waiter's turn the bucket refills, up to the burst only.
        let later = t0 + secs(2.0) + secs(100.0);
        for _ in 0..5 {
            assert_eq!(b.reserve(later), Duration::ZERO);
        }
        assert!(b.reserve(later) > Duration::ZERO);
    }

    #[test]
    fn a_bucket_refills_between_requests_and_returns_cancelled_tokens() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(10.0, 1, t0).expect("limited");
        assert_eq!(b.reserve(t0), Duration::ZERO);
        assert!((b.reserve(t0).as_secs_f64() - 0.1).abs() < 1e-6);
        b.cancel();
        assert!((b.reserve(t0).as_secs_f64() - 0.1).abs() < 1e-6);
        assert_eq!(b.reserve(t0 + secs(0.3)), Duration::ZERO);
    }

    #[test]
    fn zero_or_negative_qps_is_unlimited_and_zero_burst_is_one() {
        let t0 = Instant::now();
        assert!(TokenBucket::new(0.0, 100, t0).is_none());
        assert!(TokenBucket::new(-1.0, 100, t0).is_none());
        assert!(TokenBucket::new(f64::NAN, 100, t0).is_none());
        let mut b = TokenBucket::new(1.0, 0, t0).expect("limited");
        assert_eq!(b.reserve(t0), Duration::ZERO);
        assert!(b.reserve(t0) > Duration::ZERO);
    }

    #[test]
    fn retries_honour_retry_after_capped_and_back_off_without_it() {
        let p = RetryPolicy::default();
        assert_eq!(
            p.next(0, 429, Some("1")),
            Some((Duration::from_secs(1), RetryReason::TooManyRequests))
        );
        assert_eq!(
            p.next(0, 429, Some("3600")),
            Some((Duration::from_secs(10), RetryReason::TooManyRequests)),
            "capped"
        );
        let backoffs: Vec<Duration> = (0..3)
            .map(|r| p.next(r, 429, None).expect("retried").0)
            .collect();
        assert_eq!(
            backoffs,
            [100, 200, 400].map(Duration::from_millis).to_vec(),
            "exponential"
        );
        assert_eq!(p.backoff(10), Duration::from_secs(2), "capped");
        assert_eq!(
            p.next(0, 429, Some("Wed, 21 Oct 2015 07:28:00 GMT")),
            Some((Duration::from_millis(100), RetryReason::TooManyRequests)),
            "a date: backoff"
        );
    }

    #[test]
    fn retries_are_bounded_and_only_for_throttling() {
        let p = RetryPolicy::default();
        assert_eq!(p.next(3, 429, Some("1")), None, "at most three retries");
        assert_eq!(
            p.next(2, 503, Some("2")),
            Some((Duration::from_secs(2), RetryReason::Unavailable))
        );
        assert_eq!(p.next(0, 503, None), None, "503 without Retry-After");
        for code in [200, 404, 409, 500, 504] {
            assert_eq!(p.next(0, code, Some("1")), None, "{code}");
        }
        assert_eq!(RetryPolicy::with_max_retries(0).next(0, 429, None), None);
    }

    #[test]
    fn only_reads_and_server_side_apply_are_retried() {
        let none = HeaderMap::new();
        let mut apply = HeaderMap::new();
        apply.insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/apply-patch+yaml"),
        );
        let mut merge = HeaderMap::new();
        merge.insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/merge-patch+json"),
        );
        assert!(retryable(&Method::GET, &none, None));
        assert!(retryable(&Method::GET, &none, Some("labelSelector=a")));
        assert!(!retryable(
            &Method::GET,
            &none,
            Some("watch=true&resourceVersion=1")
        ));
        assert!(retryable(
            &Method::PATCH,
            &apply,
            Some("fieldManager=flotilla")
        ));
        assert!(!retryable(&Method::PATCH, &merge, None));
        assert!(!retryable(&Method::POST, &none, None));
        assert!(!retryable(&Method::PUT, &none, None));
        assert!(!retryable(&Method::DELETE, &none, None));
    }

    /// A status code and the Retry-After sent with it.
    type Answer = (u16, Option<&'static str>);

    /// A service answering from a script of status codes, counting calls.
    #[derive(Clone)]
    struct Script {
        codes: Arc<parking_lot::Mutex<Vec<Answer>>>,
        calls: Arc<std::sync::atomic::AtomicU32>,
        hang: bool,
    }

    impl tower::Service<Request<Body>> for Script {
        type Response = Response<()>;
        type Error = BoxError;
        type Future = BoxFuture<Result<Response<()>, BoxError>>;
        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
            Poll::Ready(Ok(()))
        }
        fn call(&mut self, _req: Request<Body>) -> Self::Future {
            self.calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let next = {
                let mut c = self.codes.lock();
                if c.len() > 1 { c.remove(0) } else { c[0] }
            };
            let hang = self.hang;
            Box::pin(async move {
                if hang {
                    std::future::pending::<()>().await;
                }
                let mut r = Response::new(());
                *r.status_mut() = http::StatusCode::from_u16(next.0).expect("code");
                if let Some(v) = next.1 {
                    r.headers_mut()
                        .insert(http::header::RETRY_AFTER, http::HeaderValue::from_static(v));
                }
                Ok(r)
            })
        }
    }

    fn mk_script(codes: &[Answer], hang: bool) -> Script {
        Script {
            codes: Arc::new(parking_lot::Mutex::new(codes.to_vec())),
            calls: Arc::default(),
            hang,
        }
    }

    fn mk_get(query: &str) -> Request<Body> {
        let mut r = Request::new(Body::empty());
        *r.uri_mut() = format!("/api/v1/configmaps?{query}").parse().expect("uri");
        r
    }

    fn mk_limits(qps: f64, burst: u32) -> ClientLimits {
        ClientLimits::new(
            KubeClientSettings {
                qps,
                burst,
                request_timeout: Some(Duration::from_secs(5)),
                max_retries: 3,
            },
            ClientLimitMetrics::default(),
        )
    }

    async fn send<S>(svc: &mut S, req: Request<Body>) -> Result<Response<()>, BoxError>
    where
        S: tower::Service<Request<Body>, Response = Response<()>, Error = BoxError>,
    {
        std::future::poll_fn(|cx| svc.poll_ready(cx)).await?;
        svc.call(req).await
    }

    #[tokio::test(start_paused = true)]
    async fn a_throttled_read_is_retried_after_retry_after_then_succeeds() {
        let limits = mk_limits(0.0, 0);
        let script = mk_script(&[(429, Some("1")), (429, Some("1")), (200, None)], false);
        let mut svc = tower::Layer::layer(&limits.bounded(), script.clone());
        let t0 = tokio::time::Instant::now();
        let res = send(&mut svc, mk_get("limit=1")).await.expect("answer");
        assert_eq!(res.status(), 200);
        assert!(t0.elapsed() >= Duration::from_secs(2), "{:?}", t0.elapsed());
        assert_eq!(script.calls.load(std::sync::atomic::Ordering::SeqCst), 3);
        let retried = limits
            .metrics
            .retries
            .get_or_create(&RetryLabels {
                reason: "too_many_requests",
            })
            .get();
        assert_eq!(retried, 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_permanent_429_is_returned_after_one_plus_three_attempts() {
        let limits = mk_limits(0.0, 0);
        let script = mk_script(&[(429, None)], false);
        let mut svc = tower::Layer::layer(&limits.bounded(), script.clone());
        let res = send(&mut svc, mk_get("")).await.expect("answer");
        assert_eq!(res.status(), 429);
        assert_eq!(script.calls.load(std::sync::atomic::Ordering::SeqCst), 4);
        // Watches and plain writes are never sent twice.
        let script = mk_script(&[(429, Some("1"))], false);
        let mut svc = tower::Layer::layer(&limits.bounded(), script.clone());
        let res = send(&mut svc, mk_get("watch=true")).await.expect("answer");
        assert_eq!(res.status(), 429);
        let mut post = mk_get("");
        *post.method_mut() = Method::POST;
        send(&mut svc, post).await.expect("answer");
        assert_eq!(script.calls.load(std::sync::atomic::Ordering::SeqCst), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn requests_beyond_the_burst_wait_their_turn() {
        let limits = mk_limits(5.0, 5);
        let script = mk_script(&[(200, None)], false);
        let svc = tower::Layer::layer(&limits.bounded(), script.clone());
        let t0 = tokio::time::Instant::now();
        let all = (0..15).map(|_| {
            let mut svc = svc.clone();
            async move { send(&mut svc, mk_get("")).await }
        });
        for r in futures::future::join_all(all).await {
            assert_eq!(r.expect("answer").status(), 200);
        }
        assert!(t0.elapsed() >= Duration::from_secs(2), "{:?}", t0.elapsed());
        assert_eq!(
            count_and_sum(&limits.metrics.throttled).0,
            15,
            "every request measured"
        );
        // 10 waited 0.2 s … 2.0 s: 11 s in all.
        assert!(count_and_sum(&limits.metrics.throttled).1 >= 10.9);
    }

    #[tokio::test(start_paused = true)]
    async fn a_hung_read_times_out_but_a_watch_does_not() {
        let limits = mk_limits(0.0, 0);
        let script = mk_script(&[(200, None)], true);
        let mut svc = tower::Layer::layer(&limits.deadline(), script.clone());
        let t0 = tokio::time::Instant::now();
        let err = send(&mut svc, mk_get("")).await.expect_err("timed out");
        assert!(err.to_string().contains("timed out"), "{err}");
        assert!(t0.elapsed() >= Duration::from_secs(5));
        assert_eq!(limits.metrics.timeouts.get(), 1);
        let watch = tokio::time::timeout(
            Duration::from_secs(3600),
            send(&mut svc, mk_get("watch=true")),
        )
        .await;
        assert!(watch.is_err(), "a watch has no deadline");
    }
}
