//! Credentials of destination clusters that expire: `execProviderConfig` (a command's
//! ExecCredential) and `awsAuthConfig` (EKS tokens), put on every request by a tower layer.
//!
//! Each cluster client gets a [`CredentialLayer`] whose [`TokenSource`] makes a token on first
//! use, keeps it until shortly before it expires (or until the cluster answers 401), and makes
//! one new token for all requests waiting (single flight). A failure is remembered for a few
//! seconds so a broken command is not run for every request. Nothing blocks while a client is
//! built: commands and STS calls only happen when a request needs a token.
//!
//! Why not kube's own exec support: it runs the command while the client is built (blocking,
//! under the controller's cache lock), inherits the whole controller environment, has no
//! deadline, and its errors carry the command line (env included) and the command's output.

pub mod aws;
pub mod exec;
pub mod sigv4;

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use http::{HeaderValue, Request, Response, StatusCode, header::AUTHORIZATION};
use jiff::Timestamp;
use tower::BoxError;

use crate::clusters::{AwsAuthConfig, Cluster, ClusterSecretError, ExecProviderConfig};
use aws::{AwsAuth, AwsError, AwsSettings};
use exec::{ExecError, ExecSettings};

/// After a failure, requests get the same error for this long before the next attempt.
const FAILURE_BACKOFF: Duration = Duration::from_secs(5);
/// An expiring exec token is replaced this long before it expires (at most a fifth of its
/// remaining lifetime, so short-lived tokens are still used).
const EXEC_REFRESH_MARGIN: Duration = Duration::from_secs(10);

/// What the credential sources of this process share: how commands run, AWS settings and
/// cached AWS credentials.
#[derive(Debug)]
pub struct AuthEnv {
    pub exec: ExecSettings,
    pub aws: AwsAuth,
}

impl AuthEnv {
    pub fn new(exec: ExecSettings, aws: AwsSettings) -> Self {
        Self {
            exec,
            aws: AwsAuth::new(aws),
        }
    }

    /// From this process's environment.
    pub fn from_process() -> Self {
        Self::new(ExecSettings::from_process(), AwsSettings::from_env())
    }

    /// The process-wide one (made from the environment on first use).
    pub fn global() -> Arc<Self> {
        static GLOBAL: OnceLock<Arc<AuthEnv>> = OnceLock::new();
        GLOBAL
            .get_or_init(|| Arc::new(Self::from_process()))
            .clone()
    }
}

/// Why a request to a cluster has no credentials.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum CredentialError {
    #[error("credentials for cluster {cluster}: {error}")]
    Exec { cluster: String, error: ExecError },
    #[error("credentials for cluster {cluster} (awsAuthConfig): {error}")]
    Aws { cluster: String, error: AwsError },
}

#[derive(Debug, Clone)]
enum Kind {
    Exec(ExecProviderConfig),
    Aws(AwsAuthConfig),
}

impl Kind {
    fn name(&self) -> &'static str {
        match self {
            Kind::Exec(_) => "execProviderConfig",
            Kind::Aws(_) => "awsAuthConfig",
        }
    }
}

/// The token in use.
#[derive(Clone)]
struct Current {
    header: HeaderValue,
    refresh_at: Option<Instant>,
    expires_at: Option<Instant>,
}

#[derive(Default)]
struct State {
    current: Option<Current>,
    failed: Option<(Instant, CredentialError)>,
    /// How many tokens were made (for tests and logs).
    made: u64,
}

/// The token of one cluster client.
pub struct TokenSource {
    cluster: String,
    kind: Kind,
    env: Arc<AuthEnv>,
    state: tokio::sync::Mutex<State>,
}

impl std::fmt::Debug for TokenSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenSource")
            .field("cluster", &self.cluster)
            .field("kind", &self.kind.name())
            .finish_non_exhaustive()
    }
}

fn instant_at(t: Timestamp) -> Instant {
    let now = Timestamp::now();
    let ahead = Duration::try_from(t.duration_since(now)).unwrap_or(Duration::ZERO);
    Instant::now() + ahead
}

impl TokenSource {
    /// The `Authorization` value to send now.
    pub async fn header(&self) -> Result<HeaderValue, CredentialError> {
        let mut st = self.state.lock().await;
        let now = Instant::now();
        if let Some(c) = &st.current
            && c.refresh_at.is_none_or(|t| now < t)
        {
            return Ok(c.header.clone());
        }
        if let Some((at, e)) = &st.failed
            && now.duration_since(*at) < FAILURE_BACKOFF
        {
            return match &st.current {
                Some(c) if c.expires_at.is_none_or(|t| now < t) => Ok(c.header.clone()),
                _ => Err(e.clone()),
            };
        }
        match self.fetch().await {
            Ok(c) => {
                st.made += 1;
                tracing::info!(
                    cluster = %self.cluster,
                    source = self.kind.name(),
                    tokens_made = st.made,
                    "new cluster credentials"
                );
                st.current = Some(c.clone());
                st.failed = None;
                Ok(c.header)
            }
            Err(e) => {
                tracing::warn!(cluster = %self.cluster, source = self.kind.name(), error = %e, "getting cluster credentials failed");
                st.failed = Some((Instant::now(), e.clone()));
                match &st.current {
                    // The old token has not expired yet: keep using it until it has.
                    Some(c) if c.expires_at.is_some_and(|t| Instant::now() < t) => {
                        Ok(c.header.clone())
                    }
                    _ => {
                        st.current = None;
                        Err(e)
                    }
                }
            }
        }
    }

    /// The cluster refused `used` (401): make a new token for the next request.
    pub async fn invalidate(&self, used: &HeaderValue) {
        let mut st = self.state.lock().await;
        if st.current.as_ref().is_some_and(|c| c.header == used) {
            tracing::info!(cluster = %self.cluster, source = self.kind.name(), "the cluster refused the token; a new one will be made");
            st.current = None;
            st.failed = None;
        }
    }

    /// How many tokens this source made so far.
    pub async fn tokens_made(&self) -> u64 {
        self.state.lock().await.made
    }

    async fn fetch(&self) -> Result<Current, CredentialError> {
        match &self.kind {
            Kind::Exec(cfg) => {
                let err = |error| CredentialError::Exec {
                    cluster: self.cluster.clone(),
                    error,
                };
                let t = exec::run(cfg, &self.env.exec).await.map_err(err)?;
                let header = bearer(&t.token).ok_or_else(|| {
                    err(ExecError::Output {
                        command: cfg.command.clone(),
                        reason: "status.token is not a valid HTTP header value".into(),
                    })
                })?;
                let (refresh_at, expires_at) = match t.expires {
                    None => (None, None),
                    Some(e) => {
                        let expires = instant_at(e);
                        let left = expires.saturating_duration_since(Instant::now());
                        let margin = EXEC_REFRESH_MARGIN.min(left / 5);
                        (Some(expires - margin), Some(expires))
                    }
                };
                Ok(Current {
                    header,
                    refresh_at,
                    expires_at,
                })
            }
            Kind::Aws(cfg) => {
                let err = |error| CredentialError::Aws {
                    cluster: self.cluster.clone(),
                    error,
                };
                let role = cfg.role_arn.as_deref().filter(|r| !r.is_empty());
                let t = self
                    .env
                    .aws
                    .token(&cfg.cluster_name, role)
                    .await
                    .map_err(err)?;
                let header = bearer(&t.token).ok_or_else(|| {
                    err(AwsError::BadAnswer {
                        action: "GetCallerIdentity",
                        endpoint: String::new(),
                        reason: "the token is not a valid header value".into(),
                    })
                })?;
                Ok(Current {
                    header,
                    refresh_at: Some(instant_at(t.refresh_at)),
                    expires_at: Some(instant_at(t.expires_at)),
                })
            }
        }
    }
}

fn bearer(token: &str) -> Option<HeaderValue> {
    let mut v = HeaderValue::from_str(&format!("Bearer {token}")).ok()?;
    v.set_sensitive(true);
    Some(v)
}

/// A tower layer putting a cluster's expiring credentials on each request (a no-op for
/// clusters with static credentials, which kube's own config carries).
#[derive(Debug, Clone, Default)]
pub struct CredentialLayer {
    source: Option<Arc<TokenSource>>,
}

impl CredentialLayer {
    /// For `cluster`, with the process-wide [`AuthEnv`].
    pub fn for_cluster(cluster: &Cluster) -> Self {
        Self::for_cluster_with(cluster, AuthEnv::global())
    }

    /// For `cluster`, with `env`. `awsAuthConfig` wins over `execProviderConfig`, and either
    /// over `bearerToken` / `username` / `password`, as in Argo CD.
    pub fn for_cluster_with(cluster: &Cluster, env: Arc<AuthEnv>) -> Self {
        let c = &cluster.config;
        let kind = match (&c.aws_auth_config, &c.exec_provider_config) {
            (Some(aws), exec) => {
                if exec.is_some() {
                    tracing::warn!(cluster = %cluster.name, "the cluster Secret sets awsAuthConfig and execProviderConfig: awsAuthConfig is used, as in Argo CD");
                }
                Kind::Aws(aws.clone())
            }
            (None, Some(exec)) => Kind::Exec(exec.clone()),
            (None, None) => return Self::default(),
        };
        if c.bearer_token.as_deref().is_some_and(|t| !t.is_empty())
            || c.username.as_deref().is_some_and(|u| !u.is_empty())
        {
            tracing::warn!(cluster = %cluster.name, source = kind.name(), "the cluster Secret also sets bearerToken or username/password: they are not used, as in Argo CD");
        }
        Self {
            source: Some(Arc::new(TokenSource {
                cluster: cluster.name.clone(),
                kind,
                env,
                state: tokio::sync::Mutex::new(State::default()),
            })),
        }
    }

    /// The token source, when the cluster has expiring credentials.
    pub fn source(&self) -> Option<&Arc<TokenSource>> {
        self.source.as_ref()
    }
}

impl<S> tower::Layer<S> for CredentialLayer {
    type Service = WithCredentials<S>;

    fn layer(&self, inner: S) -> WithCredentials<S> {
        match &self.source {
            None => WithCredentials::Plain(inner),
            Some(source) => WithCredentials::Dynamic {
                inner: Arc::new(tokio::sync::Mutex::new(inner)),
                source: source.clone(),
            },
        }
    }
}

/// The service of [`CredentialLayer`].
pub enum WithCredentials<S> {
    Plain(S),
    /// The inner service is shared behind a lock because the token is awaited before it is
    /// called (kube's stack is not `Clone`); the lock is held only to dispatch, not while the
    /// response is awaited.
    Dynamic {
        inner: Arc<tokio::sync::Mutex<S>>,
        source: Arc<TokenSource>,
    },
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S, B, R> tower::Service<Request<B>> for WithCredentials<S>
where
    S: tower::Service<Request<B>, Response = Response<R>> + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: Send + 'static,
    R: Send + 'static,
{
    type Response = Response<R>;
    type Error = BoxError;
    type Future = BoxFuture<Result<Response<R>, BoxError>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        match self {
            WithCredentials::Plain(s) => s.poll_ready(cx).map_err(Into::into),
            // Readiness of the inner service is awaited in `call`, under its lock.
            WithCredentials::Dynamic { .. } => Poll::Ready(Ok(())),
        }
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        match self {
            WithCredentials::Plain(s) => {
                let fut = s.call(req);
                Box::pin(async move { fut.await.map_err(Into::into) })
            }
            WithCredentials::Dynamic { inner, source } => {
                let inner = inner.clone();
                let source = source.clone();
                Box::pin(async move {
                    let value = source.header().await.map_err(|e| Box::new(e) as BoxError)?;
                    req.headers_mut().insert(AUTHORIZATION, value.clone());
                    let fut = {
                        let mut svc = inner.lock().await;
                        std::future::poll_fn(|cx| svc.poll_ready(cx))
                            .await
                            .map_err(Into::into)?;
                        svc.call(req)
                    };
                    let resp = fut.await.map_err(Into::into)?;
                    if resp.status() == StatusCode::UNAUTHORIZED {
                        source.invalidate(&value).await;
                    }
                    Ok(resp)
                })
            }
        }
    }
}

/// Why no client could be built for a cluster.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error(transparent)]
    Config(#[from] ClusterSecretError),
    #[error("client for {server}: {message}")]
    Kube { server: String, message: String },
}

/// A client for `cluster` with its credentials (expiring ones from `env`). The controller
/// builds its own (timeouts, user agent, request metrics) the same way.
pub fn client(cluster: &Cluster, env: Arc<AuthEnv>) -> Result<kube::Client, ClientError> {
    let cfg = cluster.kube_config()?;
    Ok(kube::client::ClientBuilder::try_from(cfg)
        .map_err(|e| ClientError::Kube {
            server: cluster.server.clone(),
            message: e.to_string(),
        })?
        .with_layer(&CredentialLayer::for_cluster_with(cluster, env))
        .build())
}
