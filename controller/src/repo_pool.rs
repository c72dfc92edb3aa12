//! The pool of repo-servers a controller talks to: endpoints from a static list or from DNS (a
//! headless Service, re-resolved), each repository sent to the same healthy repo-server by
//! consistent hashing (its Git cache stays warm), and failover to the next one when it is down.
//! Each endpoint has at most `--repo-server-max-in-flight` calls in flight; more wait (measured).

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use flotilla_proto::repo::v1 as pb;
use flotilla_sharding::ring::Ring;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use tokio::sync::Semaphore;
use tonic::transport::{Channel, ClientTlsConfig, Endpoint};

/// Largest message accepted from a repo-server.
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024 * 1024;
/// Metadata the repo-server sets on errors it answers itself (see its `grpc::ERROR_ORIGIN`).
const ERROR_ORIGIN: &str = "flotilla-error-origin";
/// Virtual nodes per repo-server on the affinity ring.
const VNODES: u32 = 64;

/// Where the repo-servers are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Discovery {
    /// Fixed `http://host:port` endpoints.
    Static(Vec<String>),
    /// `dns:///host:port`: every address the name resolves to, re-resolved periodically
    /// (a headless Service lists one address per ready pod).
    Dns { host: String, port: u16 },
}

impl std::str::FromStr for Discovery {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if let Some(rest) = s.strip_prefix("dns:///") {
            let (host, port) = rest
                .rsplit_once(':')
                .ok_or_else(|| format!("{s:?}: expected dns:///host:port"))?;
            let port = port
                .parse()
                .map_err(|_| format!("{s:?}: invalid port {port:?}"))?;
            return Ok(Self::Dns {
                host: host.to_string(),
                port,
            });
        }
        let list: Vec<String> = s
            .split(',')
            .map(str::trim)
            .filter(|e| !e.is_empty())
            .map(|e| {
                if e.contains("://") {
                    e.to_string()
                } else {
                    format!("http://{e}")
                }
            })
            .collect();
        if list.is_empty() {
            return Err("no repo-server endpoint given".into());
        }
        for e in &list {
            Endpoint::from_shared(e.clone()).map_err(|_| format!("invalid endpoint {e:?}"))?;
        }
        Ok(Self::Static(list))
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StateLabels {
    /// `up` or `down`.
    pub state: &'static str,
}

/// Pool metrics.
#[derive(Clone)]
pub struct PoolMetrics {
    pub endpoints: Family<StateLabels, Gauge>,
    pub failovers: Counter,
    /// Time a call waited for a free slot of its endpoint (`--repo-server-max-in-flight`).
    pub slot_wait: Histogram,
}

impl Default for PoolMetrics {
    fn default() -> Self {
        Self {
            endpoints: Family::default(),
            failovers: Counter::default(),
            slot_wait: Histogram::new([0.0, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 30.0]),
        }
    }
}

impl PoolMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self::default();
        registry.register(
            "flotilla_repo_server_slot_wait_seconds",
            "Time each repo-server call waited for one of its endpoint's in-flight slots (--repo-server-max-in-flight)",
            m.slot_wait.clone(),
        );
        registry.register(
            "flotilla_repo_server_endpoints",
            "Repo-server endpoints known to this controller, by state (up, down)",
            m.endpoints.clone(),
        );
        registry.register(
            "flotilla_repo_server_failovers",
            "Calls retried on another repo-server because one could not be reached",
            m.failovers.clone(),
        );
        m
    }
}

struct Member {
    client: pb::repo_server_client::RepoServerClient<Channel>,
    /// Calls in flight to this endpoint at most.
    slots: Arc<Semaphore>,
    failures: u32,
    down_until: Option<Instant>,
}

struct State {
    members: BTreeMap<String, Member>,
    ring: Ring,
    /// Slots of each endpoint (0: unbounded).
    max_in_flight: usize,
}

/// An endpoint's semaphore of `max` slots (0: as many as a semaphore holds).
fn slots(max: usize) -> Arc<Semaphore> {
    Arc::new(Semaphore::new(if max == 0 {
        Semaphore::MAX_PERMITS
    } else {
        max
    }))
}

/// The default of `--repo-server-max-in-flight`.
pub const DEFAULT_MAX_IN_FLIGHT: usize = 64;

type Target = (
    String,
    pb::repo_server_client::RepoServerClient<Channel>,
    Arc<Semaphore>,
);

/// Why a call failed after trying the pool.
#[derive(Debug)]
pub struct PoolError {
    pub status: tonic::Status,
    /// No repo-server could be reached at all.
    pub unreachable: bool,
}

/// The repo-server pool (cheap to clone).
#[derive(Clone)]
pub struct RepoPool {
    state: Arc<Mutex<State>>,
    timeout: Duration,
    metrics: PoolMetrics,
    /// `authorization: Bearer <token>` on every call.
    auth: Option<tonic::metadata::MetadataValue<tonic::metadata::Ascii>>,
    /// TLS to every repo-server (None: plaintext).
    tls: Option<ClientTlsConfig>,
}

fn channel(
    endpoint: &str,
    timeout: Duration,
    tls: Option<&ClientTlsConfig>,
) -> Option<pb::repo_server_client::RepoServerClient<Channel>> {
    let uri = match tls {
        Some(_) => match endpoint.strip_prefix("http://") {
            Some(rest) => format!("https://{rest}"),
            None => endpoint.to_string(),
        },
        None => endpoint.to_string(),
    };
    let mut ep = Endpoint::from_shared(uri)
        .ok()?
        .connect_timeout(Duration::from_secs(3))
        .timeout(timeout);
    if let Some(t) = tls {
        ep = match ep.tls_config(t.clone()) {
            Ok(ep) => ep,
            Err(e) => {
                tracing::warn!(%endpoint, error = %e, "repo-server TLS configuration");
                return None;
            }
        };
    }
    Some(
        pb::repo_server_client::RepoServerClient::new(ep.connect_lazy())
            .max_decoding_message_size(MAX_MESSAGE_BYTES),
    )
}

/// The repo-server was not reached (connection refused, reset, unknown host): worth trying
/// another. An error the repo-server answered itself carries its origin metadata.
fn not_reached(s: &tonic::Status) -> bool {
    matches!(s.code(), tonic::Code::Unavailable | tonic::Code::Unknown)
        && s.metadata().get(ERROR_ORIGIN).is_none()
}

impl RepoPool {
    /// Send `token` on every call (the repo-servers' shared token).
    pub fn with_token(mut self, token: Option<String>) -> Self {
        self.auth = token.and_then(|t| format!("Bearer {t}").parse().ok());
        self
    }

    /// A request carrying the trace context and the token.
    pub fn request<T>(&self, msg: T) -> tonic::Request<T> {
        let mut req = flotilla_core::telemetry::traced_request(msg);
        if let Some(v) = &self.auth {
            req.metadata_mut().insert("authorization", v.clone());
        }
        req
    }

    /// A pool over `discovery` in plaintext; DNS names are resolved in the background (call
    /// from a runtime).
    pub fn new(discovery: Discovery, timeout: Duration, metrics: PoolMetrics) -> Self {
        Self::with_tls(discovery, timeout, metrics, None)
    }

    /// A pool over `discovery` speaking TLS with `tls` (verified against its CA; for a DNS
    /// name, against that name rather than the resolved addresses), or plaintext with `None`.
    pub fn with_tls(
        discovery: Discovery,
        timeout: Duration,
        metrics: PoolMetrics,
        tls: Option<ClientTlsConfig>,
    ) -> Self {
        let tls = match (&discovery, tls) {
            (Discovery::Dns { host, .. }, Some(t)) => Some(t.domain_name(host.clone())),
            (_, t) => t,
        };
        let pool = Self {
            state: Arc::new(Mutex::new(State {
                members: BTreeMap::new(),
                ring: Ring::new(Vec::<String>::new(), VNODES),
                max_in_flight: DEFAULT_MAX_IN_FLIGHT,
            })),
            timeout,
            metrics,
            auth: None,
            tls,
        };
        match discovery {
            Discovery::Static(list) => pool.set_endpoints(list),
            Discovery::Dns { host, port } => {
                let p = pool.clone();
                tokio::spawn(async move { p.follow_dns(host, port).await });
            }
        }
        pool
    }

    /// At most `max` calls in flight per endpoint (0: unbounded); endpoints known now get
    /// fresh slots, so set this before calls start.
    pub fn with_max_in_flight(self, max: usize) -> Self {
        let mut st = self.lock();
        st.max_in_flight = max;
        for m in st.members.values_mut() {
            m.slots = slots(max);
        }
        drop(st);
        self
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Replace the endpoint set (existing members keep their connection and health).
    pub fn set_endpoints(&self, endpoints: Vec<String>) {
        let mut st = self.lock();
        let mut next = BTreeMap::new();
        for e in endpoints {
            if let Some(m) = st.members.remove(&e) {
                next.insert(e, m);
            } else if let Some(client) = channel(&e, self.timeout, self.tls.as_ref()) {
                tracing::info!(endpoint = %e, "repo-server added");
                next.insert(
                    e,
                    Member {
                        client,
                        slots: slots(st.max_in_flight),
                        failures: 0,
                        down_until: None,
                    },
                );
            }
        }
        for e in st.members.keys() {
            tracing::info!(endpoint = %e, "repo-server removed");
        }
        st.ring = Ring::new(next.keys().cloned(), VNODES);
        st.members = next;
        drop(st);
        self.report();
    }

    async fn follow_dns(&self, host: String, port: u16) {
        let mut last: Vec<String> = Vec::new();
        loop {
            match tokio::net::lookup_host((host.as_str(), port)).await {
                Ok(addrs) => {
                    let mut eps: Vec<String> = addrs.map(|a| format!("http://{a}")).collect();
                    eps.sort();
                    eps.dedup();
                    if eps != last {
                        tracing::info!(%host, endpoints = eps.len(), "repo-server endpoints from DNS");
                        self.set_endpoints(eps.clone());
                        last = eps;
                    }
                }
                Err(e) => tracing::warn!(%host, error = %e, "resolving repo-servers"),
            }
            tokio::time::sleep(Duration::from_secs(10)).await;
        }
    }

    fn report(&self) {
        let st = self.lock();
        let now = Instant::now();
        let down = st
            .members
            .values()
            .filter(|m| m.down_until.is_some_and(|t| t > now))
            .count();
        self.metrics
            .endpoints
            .get_or_create(&StateLabels { state: "up" })
            .set((st.members.len() - down) as i64);
        self.metrics
            .endpoints
            .get_or_create(&StateLabels { state: "down" })
            .set(down as i64);
    }

    /// The endpoints to try for `repo_url`, healthy ones in affinity order first.
    fn order(&self, repo_url: &str) -> Vec<Target> {
        let st = self.lock();
        let now = Instant::now();
        let key = flotilla_cache::keys::normalize_repo_url(repo_url);
        let (mut up, mut down): (Vec<_>, Vec<_>) = st
            .ring
            .candidates(&key)
            .into_iter()
            .filter_map(|e| st.members.get(e).map(|m| (e.to_string(), m)))
            .partition(|(_, m)| m.down_until.is_none_or(|t| t <= now));
        up.append(&mut down);
        up.into_iter()
            .map(|(e, m)| (e, m.client.clone(), m.slots.clone()))
            .collect()
    }

    fn mark(&self, endpoint: &str, ok: bool) {
        let mut st = self.lock();
        if let Some(m) = st.members.get_mut(endpoint) {
            if ok {
                if m.failures > 0 {
                    tracing::info!(%endpoint, "repo-server reachable again");
                }
                m.failures = 0;
                m.down_until = None;
            } else {
                m.failures = m.failures.saturating_add(1);
                let pause = (Duration::from_secs(1) * 2u32.saturating_pow(m.failures.min(5) - 1))
                    .min(Duration::from_secs(30));
                m.down_until = Some(Instant::now() + pause);
                tracing::warn!(%endpoint, ?pause, "repo-server unreachable; trying another");
            }
        }
        drop(st);
        self.report();
    }

    /// Run `call` on the repo-server for `repo_url`, failing over to the next ones while a
    /// repo-server cannot be reached.
    pub async fn call<T, F, Fut>(&self, repo_url: &str, call: F) -> Result<T, PoolError>
    where
        F: Fn(pb::repo_server_client::RepoServerClient<Channel>) -> Fut,
        Fut: Future<Output = Result<T, tonic::Status>>,
    {
        let order = self.order(repo_url);
        if order.is_empty() {
            return Err(PoolError {
                status: tonic::Status::unavailable("no repo-server endpoints are known"),
                unreachable: true,
            });
        }
        let mut last = None;
        for (i, (endpoint, client, slots)) in order.into_iter().enumerate() {
            if i > 0 {
                self.metrics.failovers.inc();
            }
            // The slot is held for this endpoint's call only, not across the failover.
            let waited = tokio::time::Instant::now();
            let Ok(slot) = slots.acquire_owned().await else {
                continue;
            };
            self.metrics
                .slot_wait
                .observe(waited.elapsed().as_secs_f64());
            let answer = call(client).await;
            drop(slot);
            match answer {
                Ok(v) => {
                    self.mark(&endpoint, true);
                    return Ok(v);
                }
                Err(s) if not_reached(&s) => {
                    self.mark(&endpoint, false);
                    last = Some(s);
                }
                Err(s) => {
                    self.mark(&endpoint, true);
                    return Err(PoolError {
                        status: s,
                        unreachable: false,
                    });
                }
            }
        }
        Err(PoolError {
            status: last.unwrap_or_else(|| tonic::Status::unavailable("no repo-server reachable")),
            unreachable: true,
        })
    }

    /// Each reachable repo-server's load (renders running, waiting, slots), asked concurrently
    /// with a one-second deadline; one that does not answer is left out.
    pub async fn loads(&self) -> BTreeMap<String, (u32, u32, u32)> {
        let members: Vec<(String, pb::repo_server_client::RepoServerClient<Channel>)> = self
            .lock()
            .members
            .iter()
            .map(|(e, m)| (e.clone(), m.client.clone()))
            .collect();
        let asks = members
            .into_iter()
            .map(|(endpoint, mut client)| async move {
                let ask = client.get_load(self.request(pb::GetLoadRequest {}));
                match tokio::time::timeout(Duration::from_secs(1), ask).await {
                    Ok(Ok(r)) => {
                        let l = r.into_inner();
                        Some((
                            endpoint,
                            (l.renders_running, l.renders_waiting, l.render_slots),
                        ))
                    }
                    _ => None,
                }
            });
        futures::future::join_all(asks)
            .await
            .into_iter()
            .flatten()
            .collect()
    }

    /// Endpoints and whether each is up (for `/status`).
    pub fn endpoints(&self) -> Vec<(String, bool)> {
        let st = self.lock();
        let now = Instant::now();
        st.members
            .iter()
            .map(|(e, m)| (e.clone(), m.down_until.is_none_or(|t| t <= now)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn discovery_parses_lists_and_dns() {
        assert_eq!(
            "http://a:8081, b:8081".parse::<Discovery>(),
            Ok(Discovery::Static(vec![
                "http://a:8081".into(),
                "http://b:8081".into()
            ]))
        );
        assert_eq!(
            "dns:///flotilla-repo-server.argocd.svc:8081".parse::<Discovery>(),
            Ok(Discovery::Dns {
                host: "flotilla-repo-server.argocd.svc".into(),
                port: 8081
            })
        );
        assert!("".parse::<Discovery>().is_err());
        assert!("dns:///nohost".parse::<Discovery>().is_err());
    }

    #[tokio::test]
    async fn a_repository_sticks_to_one_endpoint_and_fails_over_when_it_is_down() {
        let eps: Vec<String> = (0..3).map(|i| format!("http://10.0.0.{i}:8081")).collect();
        let pool = RepoPool::new(
            Discovery::Static(eps.clone()),
            Duration::from_secs(1),
            PoolMetrics::default(),
        );
        let first = |repo: &str| pool.order(repo)[0].0.clone();
        let home = first("https://git/org/a.git");
        assert_eq!(first("git@git:org/a"), home, "same repo, other URL form");
        // Different repositories spread over the pool.
        let homes: std::collections::BTreeSet<String> = (0..30)
            .map(|i| first(&format!("https://git/org/r{i}")))
            .collect();
        assert_eq!(homes.len(), 3);
        pool.mark(&home, false);
        assert_ne!(
            first("https://git/org/a.git"),
            home,
            "down: the next one first"
        );
        assert_eq!(
            pool.order("https://git/org/a.git")
                .last()
                .map(|e| e.0.clone()),
            Some(home.clone())
        );
        pool.mark(&home, true);
        assert_eq!(
            first("https://git/org/a.git"),
            home,
            "back: affinity restored"
        );
        assert_eq!(
            pool.metrics
                .endpoints
                .get_or_create(&StateLabels { state: "up" })
                .get(),
            3
        );
    }

    #[tokio::test(start_paused = true)]
    async fn calls_beyond_max_in_flight_wait_for_a_slot_of_their_endpoint() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let pool = RepoPool::new(
            Discovery::Static(vec!["http://10.0.0.1:8081".into()]),
            Duration::from_secs(1),
            PoolMetrics::default(),
        )
        .with_max_in_flight(2);
        let running = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let calls = (0..6).map(|_| {
            let (pool, running, most) = (pool.clone(), running.clone(), most.clone());
            async move {
                pool.call("https://git/org/a.git", |_client| {
                    let (running, most) = (running.clone(), most.clone());
                    async move {
                        let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                        most.fetch_max(now, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        running.fetch_sub(1, Ordering::SeqCst);
                        Ok::<_, tonic::Status>(())
                    }
                })
                .await
                .map_err(|e| e.status)
            }
        });
        let t0 = tokio::time::Instant::now();
        for r in futures::future::join_all(calls).await {
            r.expect("answered");
        }
        assert_eq!(
            most.load(Ordering::SeqCst),
            2,
            "never more than two at once"
        );
        assert!(
            t0.elapsed() >= Duration::from_secs(3),
            "three rounds of two"
        );
        assert_eq!(
            crate::client_limits::count_and_sum(&pool.metrics.slot_wait).0,
            6
        );
        assert!(
            crate::client_limits::count_and_sum(&pool.metrics.slot_wait).1 >= 6.0,
            "2 waited 1 s, 2 waited 2 s"
        );
    }

    #[test]
    fn only_unreached_servers_cause_failover() {
        assert!(not_reached(&tonic::Status::unavailable(
            "tcp connect error"
        )));
        let mut md = tonic::metadata::MetadataMap::new();
        md.insert(
            ERROR_ORIGIN,
            tonic::metadata::MetadataValue::from_static("repo-server"),
        );
        assert!(!not_reached(&tonic::Status::with_metadata(
            tonic::Code::Unavailable,
            "git server down",
            md
        )));
        assert!(!not_reached(&tonic::Status::not_found("no such path")));
    }
}
