//! The controller's settings with their defaults; the binary fills them from flags and
//! environment, tests build them directly.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Everything `run` needs besides the control-plane client.
#[derive(Debug, Clone)]
pub struct ControllerConfig {
    /// Namespace of Applications, AppProjects and the cluster/repository Secrets (the
    /// control-plane namespace).
    pub namespace: String,
    /// Further namespaces (globs) whose Applications are reconciled too (Argo CD's
    /// `--application-namespaces`); empty: the control-plane namespace only.
    pub application_namespaces: Vec<String>,
    /// The repo-server's gRPC endpoint (`http://host:port`).
    pub repo_server: String,
    /// Applications reconciled at once.
    pub workers: usize,
    /// Periodic full refresh (the safety net; watches and webhooks drive normal work).
    pub refresh_interval: Duration,
    /// Up to this fraction of the interval is added at random, so refreshes spread out.
    pub refresh_jitter: f64,
    /// Rendered manifest sets kept in the in-memory cache.
    pub manifest_cache_entries: usize,
    /// Deadline of one repo-server call.
    pub rpc_timeout: Duration,
    /// Sent to the repo-servers on every call.
    pub repo_server_token: Option<String>,
    /// PEM of the CA the repo-servers' certificates are verified against; `None` speaks
    /// plaintext (only with the binary's explicit `--repo-server-plaintext`).
    pub repo_server_ca: Option<Vec<u8>>,
    /// How long a new watch may take to list before a reconcile gives up (and retries).
    pub cache_sync_timeout: Duration,
    /// `status.history` entries kept (Argo CD's `revisionHistoryLimit` default).
    pub history_limit: usize,
    /// Offer `https://kubernetes.default.svc` (the control plane itself) as a destination.
    pub in_cluster: bool,
    /// Address of `/metrics`, `/healthz`, `/readyz` (and `/status` when `status_endpoint`).
    pub metrics_listen: SocketAddr,
    /// Serve `/status` (ring members, every cluster URL, owned clusters, queue depth) on the
    /// metrics address. Off by default: that port is unauthenticated.
    pub status_endpoint: bool,
    /// Token the per-resource view requires (`Authorization: Bearer`); unset: not served.
    pub status_token: Option<String>,
    /// `host:port` where the API server reaches this replica's status routes, published on
    /// its Lease. None: the bound metrics address, unless it is a wildcard (then unpublished).
    pub advertise_address: Option<String>,
    /// When set, the bound metrics address is written here as JSON.
    pub address_file: Option<PathBuf>,
    /// Address of the Git webhook receiver (`POST /api/webhook`); none = off.
    pub webhook_listen: Option<SocketAddr>,
    /// Longest retry backoff after a failed reconcile.
    pub max_backoff: Duration,
    /// How replicas share the destination clusters.
    pub sharding: ShardingSettings,
    /// Redis (Cluster) URL of the shared manifest and revision caches; none = in memory only.
    pub redis_url: Option<String>,
    /// TLS for `rediss…` URLs.
    pub redis_tls: flotilla_cache::redis::RedisTls,
    /// How long resolved revisions are kept (default: the refresh interval).
    pub revision_cache_ttl: Option<Duration>,
    /// Webhook receiver settings (`/api/webhook`).
    pub webhook: WebhookSettings,
    /// Sync operations: delay between waves, polling, timeout.
    pub operations: crate::syncop::OpConfig,
    /// Which Applications this controller takes (side by side with Argo CD: only those
    /// handed over).
    pub selection: crate::selection::AppSelection,
    /// Reconcile ApplicationSets (off side by side with Argo CD, whose controller keeps them).
    pub applicationsets: bool,
    /// Which SCM provider APIs the scmProvider and pullRequest generators may call.
    pub scm_providers: ScmProviderPolicy,
    /// Export Argo CD's metric names too, or instead of Flotilla's (`--argocd-metrics`).
    pub argocd_metrics: crate::metrics_argocd::ArgoCdMetrics,
    /// Bounds on every destination-cluster client: rate limit, deadline, retries.
    pub kube_client: KubeClientSettings,
    /// Calls in flight to one repo-server endpoint at most (0: unbounded); more wait.
    pub repo_server_max_in_flight: usize,
}

/// Bounds on each destination cluster's client (`crate::client_limits`), as client-go's
/// (Argo CD's `ARGOCD_K8S_CLIENT_QPS` / `ARGOCD_K8S_CLIENT_BURST`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct KubeClientSettings {
    /// Requests per second per cluster, sustained; 0 or less: unlimited.
    pub qps: f64,
    /// Requests a cluster's client may send at once before `qps` paces it.
    pub burst: u32,
    /// Deadline of one non-watch request (until its response headers); `None`: none.
    pub request_timeout: Option<Duration>,
    /// Retries of a throttled (429, or 503 with Retry-After) idempotent request.
    pub max_retries: u32,
}

impl Default for KubeClientSettings {
    fn default() -> Self {
        Self {
            qps: 50.0,
            burst: 100,
            request_timeout: Some(Duration::from_secs(60)),
            max_retries: 3,
        }
    }
}

/// Shared secrets of the webhook receiver, by Git provider. A provider without a secret is
/// refused unless `allow_unauthenticated` is set.
#[derive(Debug, Clone, Default)]
pub struct WebhookSettings {
    pub github_secret: Option<String>,
    pub gitlab_secret: Option<String>,
    /// Bitbucket Cloud: the webhook's UUID (`X-Hook-UUID`).
    pub bitbucket_uuid: Option<String>,
    /// Bitbucket Server / Data Center: HMAC secret (`X-Hub-Signature`).
    pub bitbucket_server_secret: Option<String>,
    pub gitea_secret: Option<String>,
    /// Gogs: HMAC secret (`X-Gogs-Signature`).
    pub gogs_secret: Option<String>,
    /// Azure DevOps: the basic-auth account its service hook sends (Argo CD's
    /// `webhook.azuredevops.username` / `.password`).
    pub azuredevops_username: Option<String>,
    pub azuredevops_password: Option<String>,
    /// Accept unsigned events from providers without a secret (Argo CD's behaviour). Off: they
    /// are refused with 401.
    pub allow_unauthenticated: bool,
    /// Largest request body accepted.
    pub max_body_bytes: usize,
}

/// What a cluster weighs when replicas share clusters out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Balance {
    /// Every cluster counts one: replicas get about as many clusters each.
    Clusters,
    /// A cluster weighs its number of Applications (in steps of about 1.5×): replicas get
    /// about as much work each.
    #[default]
    Applications,
}

impl std::str::FromStr for Balance {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "clusters" => Ok(Self::Clusters),
            "applications" | "apps" => Ok(Self::Applications),
            other => Err(format!(
                "unknown balance {other:?} (use clusters or applications)"
            )),
        }
    }
}

/// Sharding of destination clusters between controller replicas (Lease membership).
#[derive(Debug, Clone)]
pub struct ShardingSettings {
    /// Off: this replica owns every cluster (only safe with exactly one replica).
    pub enabled: bool,
    /// This replica's identity (the pod name), unique among replicas.
    pub identity: String,
    /// Replicas in one group share the clusters (the Lease label value and name prefix).
    pub group: String,
    pub lease_duration: Duration,
    pub renew_interval: Duration,
    /// ε of the bounded loads: no replica holds more than ⌈(1+ε)·average⌉.
    pub epsilon: f64,
    pub vnodes: u32,
    pub balance: Balance,
}

impl Default for ShardingSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            identity: "flotilla-controller-0".into(),
            group: "flotilla-controller".into(),
            lease_duration: Duration::from_secs(10),
            renew_interval: Duration::from_secs(2),
            epsilon: flotilla_sharding::ring::DEFAULT_EPSILON,
            vnodes: flotilla_sharding::ring::DEFAULT_VNODES,
            balance: Balance::default(),
        }
    }
}

impl Default for ControllerConfig {
    fn default() -> Self {
        Self {
            namespace: "argocd".into(),
            application_namespaces: Vec::new(),
            repo_server: "http://127.0.0.1:8081".into(),
            workers: 16,
            refresh_interval: Duration::from_secs(180),
            refresh_jitter: 0.2,
            manifest_cache_entries: 4096,
            rpc_timeout: Duration::from_secs(120),
            repo_server_token: None,
            repo_server_ca: None,
            cache_sync_timeout: Duration::from_secs(30),
            history_limit: 10,
            in_cluster: true,
            metrics_listen: SocketAddr::from(([0, 0, 0, 0], 8082)),
            status_endpoint: false,
            status_token: None,
            advertise_address: None,
            address_file: None,
            webhook_listen: None,
            max_backoff: Duration::from_secs(300),
            sharding: ShardingSettings::default(),
            redis_url: None,
            redis_tls: Default::default(),
            revision_cache_ttl: None,
            webhook: WebhookSettings {
                max_body_bytes: 1024 * 1024,
                ..Default::default()
            },
            operations: Default::default(),
            selection: Default::default(),
            applicationsets: true,
            scm_providers: Default::default(),
            argocd_metrics: Default::default(),
            kube_client: KubeClientSettings::default(),
            repo_server_max_in_flight: 64,
        }
    }
}

/// Argo CD's `applicationsetcontroller.enable.scm.providers` and
/// `applicationsetcontroller.allowed.scm.providers`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScmProviderPolicy {
    /// False: the scmProvider and pullRequest generators are refused.
    pub enabled: bool,
    /// When not empty, a generator's custom `api` URL must be one of these (the public
    /// github.com / gitlab.com APIs, used when `api` is empty, are always allowed, as in Argo CD).
    pub allowed: Vec<String>,
}

impl Default for ScmProviderPolicy {
    fn default() -> Self {
        Self {
            enabled: true,
            allowed: Vec::new(),
        }
    }
}

impl ScmProviderPolicy {
    /// Why a generator with this `api` URL may not run, if it may not.
    pub fn refusal(&self, api: &str) -> Option<String> {
        if !self.enabled {
            return Some("SCM providers are disabled (--no-scm-providers)".into());
        }
        let norm = |u: &str| u.trim().trim_end_matches('/').to_string();
        if api.is_empty()
            || self.allowed.is_empty()
            || self.allowed.iter().any(|a| norm(a) == norm(api))
        {
            return None;
        }
        Some(format!(
            "SCM provider {} is not allowed (--allowed-scm-providers: {})",
            crate::redact::redact_url(api),
            self.allowed.join(", ")
        ))
    }
}

impl ControllerConfig {
    /// Whether Applications in `namespace` are this controller's: the control-plane namespace,
    /// or one matching `application_namespaces`.
    pub fn watches_app_namespace(&self, namespace: &str) -> bool {
        namespace == self.namespace
            || self
                .application_namespaces
                .iter()
                .any(|g| crate::project::glob_match(g, namespace))
    }

    /// The refresh delay with jitter drawn from `unit` (0.0..1.0).
    pub fn jittered_refresh(&self, unit: f64) -> Duration {
        self.refresh_interval
            .mul_f64(1.0 + self.refresh_jitter.clamp(0.0, 1.0) * unit.clamp(0.0, 1.0))
    }

    /// The User-Agent of every request this replica makes, so API server audit logs (and
    /// kubesim's request log) tell replicas apart.
    pub fn user_agent(&self) -> String {
        format!(
            "flotilla-controller/{} ({})",
            env!("CARGO_PKG_VERSION"),
            self.sharding.identity
        )
    }

    /// Backoff after `failures` consecutive failed reconciles: 2 s doubling, capped.
    pub fn backoff(&self, failures: u32) -> Duration {
        Duration::from_secs(2)
            .saturating_mul(1u32 << failures.min(16))
            .min(self.max_backoff)
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn scm_provider_policy_as_argo_cd() {
        let open = ScmProviderPolicy::default();
        assert_eq!(open.refusal("https://ghe.example.com"), None);
        let list = ScmProviderPolicy {
            enabled: true,
            allowed: vec!["https://ghe.example.com/".into()],
        };
        assert_eq!(list.refusal(""), None, "the public API is always allowed");
        assert_eq!(list.refusal("https://ghe.example.com"), None);
        let why = list.refusal("https://evil.example.com").expect("refused");
        assert!(why.contains("not allowed"), "{why}");
        let off = ScmProviderPolicy {
            enabled: false,
            allowed: Vec::new(),
        };
        assert!(off.refusal("").is_some());
    }
    use super::*;

    #[test]
    fn jitter_and_backoff_stay_in_bounds() {
        let c = ControllerConfig::default();
        assert_eq!(c.jittered_refresh(0.0), Duration::from_secs(180));
        assert_eq!(c.jittered_refresh(1.0), Duration::from_secs(216));
        assert_eq!(c.backoff(0), Duration::from_secs(2));
        assert_eq!(c.backoff(3), Duration::from_secs(16));
        assert_eq!(c.backoff(30), Duration::from_secs(300));
    }
}
