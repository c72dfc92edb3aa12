//! Who is calling. A credential (`Authorization: Bearer <token>`, or the browser's
//! `flotilla.token` cookie) is, in this order:
//! - the local admin's token (bootstrapped into the Secret `flotilla-initial-admin-secret`; a
//!   bootstrapped admin is off while SSO is configured, one given with `--admin-token` stays);
//! - an AppProject role token (`iss: argocd`, `sub: proj:...`; `project_tokens.rs`);
//! - an ID token of the SSO provider configured in `argocd-cm` `oidc.config` (`oidc.rs`),
//!   whose groups are the claims `argocd-rbac-cm` `scopes` names (default `groups`);
//! - anything else goes to the control plane's TokenReview (ServiceAccount tokens), when
//!   `--service-account-tokens` is on; answers are cached by the token's SHA-256.
//!
//! Deny by default: no credential is 401 (unless `users.anonymous.enabled`), a bad one 401, one
//! that cannot be checked now (provider or TokenReview unreachable) 503. No credential is ever
//! logged or put in an error message.

use std::collections::BTreeMap;
use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use flotilla_controller::types::AppProject;
use futures::{Stream, StreamExt};
use http::HeaderMap;
use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec};
use k8s_openapi::api::core::v1::Secret;
use kube::api::PostParams;
use kube::runtime::reflector::Store;
use kube::{Api, Client};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use serde_json::Value;

use crate::oidc::{self, OidcSettings, Provider, SecretRef, Sso, SsoState};

/// The Secret holding the local admin's token (key `token`).
pub const ADMIN_SECRET: &str = "flotilla-initial-admin-secret";
/// Argo CD's settings Secret: `server.secretkey` (the key project tokens and sign-in state are
/// signed with) and what `oidc.config` references with `$key`.
pub const SETTINGS_SECRET: &str = "argocd-secret";
/// The key of [`SETTINGS_SECRET`] holding the server's signing key.
pub const SERVER_KEY: &str = "server.secretkey";

/// How long a refusal by TokenReview is reused at most.
const REVIEW_NEGATIVE_TTL: Duration = Duration::from_secs(10);
/// TokenReview answers kept.
const REVIEW_CACHE: usize = 10_000;
/// TokenReviews in flight at once (random tokens must not flood the control plane).
const REVIEW_CONCURRENCY: usize = 16;

/// Flags of the ways to sign in (beyond the local admin's).
#[derive(Debug, Clone, clap::Args)]
pub struct AuthArgs {
    /// Accept Kubernetes ServiceAccount tokens (any token the control plane's TokenReview
    /// accepts), for automation. The server's ServiceAccount needs `create` on `tokenreviews`.
    #[arg(
        long,
        default_value_t = true,
        action = clap::ArgAction::Set,
        env = "FLOTILLA_SERVICE_ACCOUNT_TOKENS"
    )]
    pub service_account_tokens: bool,
    /// Audiences TokenReview checks ServiceAccount tokens for (comma-separated; default: the
    /// control plane's own).
    #[arg(
        long = "service-account-token-audiences",
        env = "FLOTILLA_SERVICE_ACCOUNT_TOKEN_AUDIENCES",
        value_delimiter = ','
    )]
    pub service_account_token_audiences: Vec<String>,
    /// How long a TokenReview answer is reused, in seconds (never past the token's `exp`; a
    /// deleted ServiceAccount's token works at most this long). At most 60.
    #[arg(
        long,
        default_value_t = 60,
        value_parser = clap::value_parser!(u64).range(0..=60),
        env = "FLOTILLA_TOKEN_REVIEW_CACHE_SECONDS"
    )]
    pub token_review_cache_seconds: u64,
}

impl Default for AuthArgs {
    fn default() -> Self {
        Self {
            service_account_tokens: true,
            service_account_token_audiences: Vec::new(),
            token_review_cache_seconds: 60,
        }
    }
}

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub subject: String,
    /// Groups the caller belongs to (from its identity provider), for RBAC.
    pub groups: Vec<String>,
}

/// Why a call is refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AuthError {
    #[error("no bearer token")]
    Missing,
    #[error("the token is not valid")]
    Invalid,
    /// The credential could not be checked now (identity provider or TokenReview unreachable).
    #[error("the token cannot be checked now; try again")]
    Unavailable,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AuthLabels {
    pub method: &'static str,
    pub result: &'static str,
}

struct Cached {
    until: Instant,
    who: Option<Principal>,
}

/// ServiceAccount (and other control-plane) tokens, checked by TokenReview.
struct TokenReviews {
    client: Client,
    audiences: Vec<String>,
    ttl: Duration,
    cache: Mutex<lru::LruCache<[u8; 32], Cached>>,
    permits: tokio::sync::Semaphore,
}

impl TokenReviews {
    fn new(client: Client, audiences: Vec<String>, ttl: Duration) -> Self {
        Self {
            client,
            audiences,
            ttl,
            cache: Mutex::new(lru::LruCache::new(
                NonZeroUsize::new(REVIEW_CACHE).unwrap_or(NonZeroUsize::MIN),
            )),
            permits: tokio::sync::Semaphore::new(REVIEW_CONCURRENCY),
        }
    }

    fn cached(&self, key: &[u8; 32]) -> Option<Option<Principal>> {
        let mut c = self.cache.lock().ok()?;
        match c.get(key) {
            Some(e) if e.until > Instant::now() => Some(e.who.clone()),
            Some(_) => {
                c.pop(key);
                None
            }
            None => None,
        }
    }

    async fn review(&self, token: &str) -> Result<Principal, AuthError> {
        let key: [u8; 32] = ring::digest::digest(&ring::digest::SHA256, token.as_bytes())
            .as_ref()
            .try_into()
            .unwrap_or([0; 32]);
        if let Some(hit) = self.cached(&key) {
            return hit.ok_or(AuthError::Invalid);
        }
        // A flood of made-up tokens waits at most this long, then gets 503: it never queues
        // without bound in front of real ServiceAccount logins.
        let _permit = tokio::time::timeout(REVIEW_QUEUE_WAIT, self.permits.acquire())
            .await
            .map_err(|_| AuthError::Unavailable)?
            .map_err(|_| AuthError::Unavailable)?;
        if let Some(hit) = self.cached(&key) {
            return hit.ok_or(AuthError::Invalid);
        }
        let review = TokenReview {
            spec: TokenReviewSpec {
                token: token.to_string(),
                audiences: (!self.audiences.is_empty()).then(|| self.audiences.clone()),
            },
            ..Default::default()
        };
        let api: Api<TokenReview> = Api::all(self.client.clone());
        let answer = match api.create(&PostParams::default(), &review).await {
            Ok(a) => a,
            Err(e) => {
                // The error is the API server's (it never echoes the token).
                tracing::warn!(error = %e, "TokenReview failed; ServiceAccount tokens cannot be checked");
                return Err(AuthError::Unavailable);
            }
        };
        let status = answer.status.unwrap_or_default();
        let who = match (status.authenticated, status.user) {
            (Some(true), Some(u)) if u.username.as_deref().is_some_and(|n| !n.is_empty()) => {
                external(
                    u.username.as_deref().unwrap_or_default(),
                    u.groups.unwrap_or_default(),
                )
                .ok()
            }
            _ => None,
        };
        let mut ttl = if who.is_some() {
            self.ttl
        } else {
            REVIEW_NEGATIVE_TTL.min(self.ttl)
        };
        if let Some(exp) = crate::jwt::peek_claims(token).and_then(|c| c["exp"].as_u64()) {
            ttl = ttl.min(Duration::from_secs(exp.saturating_sub(oidc::now())));
        }
        if let Ok(mut c) = self.cache.lock() {
            c.put(
                key,
                Cached {
                    until: Instant::now() + ttl,
                    who: who.clone(),
                },
            );
        }
        who.ok_or(AuthError::Invalid)
    }
}

/// Whether a name is one the policy reserves: the local admin, roles, project roles.
fn reserved(name: &str) -> bool {
    name == "admin" || name.starts_with("role:") || name.starts_with("proj:")
}

/// A caller vouched for by an identity provider or the control plane. It may not take a name
/// the policy reserves (an IdP user called `admin`, a group called `role:admin` or
/// `proj:team-b:ci` would otherwise be them): such a subject is refused, such groups dropped.
fn external(subject: &str, groups: Vec<String>) -> Result<Principal, AuthError> {
    if subject.is_empty() || reserved(subject) {
        tracing::warn!(%subject, "a signed-in subject with a reserved name is refused");
        return Err(AuthError::Invalid);
    }
    let (kept, dropped): (Vec<String>, Vec<String>) =
        groups.into_iter().partition(|g| !reserved(g));
    if !dropped.is_empty() {
        tracing::warn!(%subject, groups = ?dropped, "groups with reserved names ignored");
    }
    Ok(Principal {
        subject: subject.to_string(),
        groups: kept,
    })
}

/// How long a TokenReview waits for one of the permits before answering 503.
const REVIEW_QUEUE_WAIT: Duration = Duration::from_secs(2);

struct Inner {
    admin_token: Option<String>,
    /// Given on the command line: stays on with SSO.
    admin_explicit: bool,
    namespace: String,
    sso: Sso,
    server_key: RwLock<Option<Arc<Vec<u8>>>>,
    projects: Option<Store<AppProject>>,
    reviews: Option<TokenReviews>,
    /// Claims that name groups (`argocd-rbac-cm` `scopes`).
    scopes: RwLock<Vec<String>>,
    metrics: Family<AuthLabels, Counter>,
    /// Local accounts and session settings (`argocd-cm`, `argocd-secret`).
    accounts: RwLock<Arc<crate::session::Accounts>>,
    failures: crate::session::Failures,
}

/// Checks credentials (cheap to clone).
#[derive(Clone)]
pub struct Authenticator {
    inner: Arc<Inner>,
}

impl Default for Authenticator {
    fn default() -> Self {
        Self::new(None)
    }
}

pub(crate) fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty())
}

/// The caller's credential: the bearer token, else the browser's cookie.
pub(crate) fn credential(headers: &HeaderMap) -> Option<&str> {
    bearer(headers).or_else(|| cookie_token(headers))
}

/// The browser's token cookie, unless the request comes from another site.
fn cookie_token(headers: &HeaderMap) -> Option<&str> {
    let cross_site = headers
        .get("sec-fetch-site")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("cross-site"));
    if cross_site {
        return None;
    }
    oidc::cookie(headers, oidc::TOKEN_COOKIE)
}

/// The values of the claims named by `scopes` (a string or a list of strings each).
pub fn groups_from(claims: &Value, scopes: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for scope in scopes {
        match claims.get(scope) {
            Some(Value::String(s)) => out.push(s.clone()),
            Some(Value::Array(a)) => {
                out.extend(a.iter().filter_map(Value::as_str).map(str::to_string))
            }
            _ => {}
        }
    }
    out.sort();
    out.dedup();
    out
}

/// argocd-rbac-cm `scopes` (`[groups, email]`); `[groups]` when absent or unreadable.
pub fn parse_scopes(text: Option<&str>) -> Vec<String> {
    let default = vec!["groups".to_string()];
    match text.map(str::trim).filter(|t| !t.is_empty()) {
        None => default,
        Some(t) => match serde_yaml::from_str::<Vec<String>>(t) {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!(error = %e, "argocd-rbac-cm scopes is not a list; using [groups]");
                default
            }
        },
    }
}

impl Authenticator {
    /// Only the local admin (given explicitly); for tests and as the base of [`Self::start`].
    pub fn new(admin_token: Option<String>) -> Self {
        Self::build(
            admin_token,
            true,
            String::new(),
            None,
            None,
            Family::default(),
        )
    }

    fn build(
        admin_token: Option<String>,
        admin_explicit: bool,
        namespace: String,
        projects: Option<Store<AppProject>>,
        reviews: Option<TokenReviews>,
        metrics: Family<AuthLabels, Counter>,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                admin_token: admin_token.filter(|t| !t.is_empty()),
                admin_explicit,
                namespace,
                sso: Sso::default(),
                server_key: RwLock::new(None),
                projects,
                reviews,
                scopes: RwLock::new(vec!["groups".into()]),
                metrics,
                accounts: RwLock::default(),
                failures: Default::default(),
            }),
        }
    }

    /// Every way to sign in: the local admin (`admin_explicit`: given on the command line, so
    /// it stays on with SSO), project tokens (the server key is bootstrapped into
    /// `argocd-secret`), SSO from `argocd-cm` (watched), TokenReview per `args`.
    pub async fn start(
        admin_token: Option<String>,
        admin_explicit: bool,
        args: &AuthArgs,
        client: Client,
        namespace: &str,
        projects: Store<AppProject>,
        registry: &mut Registry,
    ) -> Self {
        let metrics = Family::<AuthLabels, Counter>::default();
        registry.register(
            "flotilla_server_authentications",
            "Credentials checked, by method (admin, oidc, project, serviceaccount) and result (ok, invalid, error)",
            metrics.clone(),
        );
        let reviews = args.service_account_tokens.then(|| {
            TokenReviews::new(
                client.clone(),
                args.service_account_token_audiences.clone(),
                Duration::from_secs(args.token_review_cache_seconds),
            )
        });
        let auth = Self::build(
            admin_token,
            admin_explicit,
            namespace.to_string(),
            Some(projects),
            reviews,
            metrics,
        );
        match bootstrap_server_key(&client, namespace).await {
            Ok(k) => auth.set_server_key(k),
            Err(e) => tracing::error!(
                error = %e,
                secret = SETTINGS_SECRET,
                "bootstrapping the server key failed; project tokens and the browser sign-in wait for it"
            ),
        }
        tokio::spawn(watch_settings(auth.clone(), client, namespace.to_string()));
        auth
    }

    pub fn sso(&self) -> &Sso {
        &self.inner.sso
    }

    pub fn namespace(&self) -> &str {
        &self.inner.namespace
    }

    /// The server's signing key (`argocd-secret` `server.secretkey`), once known.
    pub fn server_key(&self) -> Option<Arc<Vec<u8>>> {
        match self.inner.server_key.read() {
            Ok(k) => k.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    pub fn set_server_key(&self, key: Vec<u8>) {
        if key.is_empty() {
            return;
        }
        if let Ok(mut slot) = self.inner.server_key.write()
            && slot.as_deref() != Some(&key)
        {
            if slot.is_some() {
                tracing::info!(secret = SETTINGS_SECRET, "server key changed");
            }
            *slot = Some(Arc::new(key));
        }
    }

    /// The claims naming groups (`argocd-rbac-cm` `scopes`).
    pub fn set_scopes(&self, scopes: Vec<String>) {
        if let Ok(mut s) = self.inner.scopes.write() {
            *s = scopes;
        }
    }

    fn scopes(&self) -> Vec<String> {
        self.inner
            .scopes
            .read()
            .map(|s| s.clone())
            .unwrap_or_default()
    }

    /// Whether the local admin can sign in now: given on the command line, or bootstrapped and
    /// SSO not configured (once argocd-cm has been read).
    pub fn local_admin_enabled(&self) -> bool {
        let i = &self.inner;
        i.admin_token.is_some()
            && (i.admin_explicit || {
                let sso = i.sso.get();
                sso.loaded && !sso.configured
            })
    }

    /// The local accounts as last read.
    pub fn accounts(&self) -> Arc<crate::session::Accounts> {
        match self.inner.accounts.read() {
            Ok(a) => a.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    pub fn set_accounts(&self, accounts: crate::session::Accounts) {
        if let Ok(mut slot) = self.inner.accounts.write()
            && **slot != accounts
        {
            *slot = Arc::new(accounts);
        }
    }

    /// Revoke session `jti` (valid until `exp`) here at once; the record in `argocd-secret`
    /// tells the other replicas.
    pub fn revoke(&self, jti: &str, exp: i64) {
        if let Ok(mut slot) = self.inner.accounts.write() {
            let mut a = (**slot).clone();
            a.revoked.insert(jti.to_string(), exp);
            *slot = Arc::new(a);
        }
    }

    /// Failed password sign-ins, per username.
    pub fn failures(&self) -> &crate::session::Failures {
        &self.inner.failures
    }

    /// The local admin's token while the local admin can sign in with it.
    pub fn local_admin_token(&self) -> Option<String> {
        self.local_admin_enabled()
            .then(|| self.inner.admin_token.clone())
            .flatten()
    }

    /// Count one check in `flotilla_server_authentications`.
    pub fn counted(&self, method: &'static str, result: &'static str) {
        self.inner
            .metrics
            .get_or_create(&AuthLabels { method, result })
            .inc();
    }

    fn outcome(
        &self,
        method: &'static str,
        r: Result<Principal, AuthError>,
    ) -> Result<Principal, AuthError> {
        self.counted(
            method,
            match &r {
                Ok(_) => "ok",
                Err(AuthError::Unavailable) => "error",
                Err(_) => "invalid",
            },
        );
        r
    }

    /// The caller behind `headers`' bearer token (or token cookie).
    pub async fn authenticate(&self, headers: &HeaderMap) -> Result<Principal, AuthError> {
        let from_header = bearer(headers);
        let Some(token) = from_header.or_else(|| cookie_token(headers)) else {
            if self.inner.sso.get().anonymous {
                return Ok(Principal {
                    subject: String::new(),
                    groups: Vec::new(),
                });
            }
            return Err(AuthError::Missing);
        };
        let via_cookie = from_header.is_none();
        if !via_cookie
            && self.local_admin_enabled()
            && let Some(admin) = &self.inner.admin_token
            && flotilla_controller::webhook::ct_eq(token.as_bytes(), admin.as_bytes())
        {
            return self.outcome(
                "admin",
                Ok(Principal {
                    subject: "admin".into(),
                    groups: Vec::new(),
                }),
            );
        }
        if let Some(claims) = crate::jwt::peek_claims(token) {
            let iss = claims["iss"].as_str().unwrap_or_default();
            let sub = claims["sub"].as_str().unwrap_or_default();
            if !via_cookie && iss == crate::project_tokens::ISSUER && sub.starts_with("proj:") {
                return self.outcome("project", self.project_token(token));
            }
            if iss == crate::project_tokens::ISSUER && !sub.starts_with("proj:") {
                let r = match self.server_key() {
                    None => Err(AuthError::Unavailable),
                    Some(key) => crate::session::verify(
                        &key,
                        token,
                        &self.accounts(),
                        self.local_admin_token().as_deref(),
                    ),
                };
                return self.outcome("session", r);
            }
            let sso = self.inner.sso.get();
            if let Some(settings) = &sso.settings
                && !iss.is_empty()
                && iss.trim_end_matches('/') == settings.issuer.trim_end_matches('/')
            {
                let r = match &sso.provider {
                    None => Err(AuthError::Unavailable),
                    Some(p) => match p.verify(token).await {
                        Ok(c) => external(
                            c["sub"].as_str().unwrap_or_default(),
                            groups_from(&c, &self.scopes()),
                        ),
                        Err(oidc::VerifyError::Unavailable(_)) => Err(AuthError::Unavailable),
                        Err(e @ oidc::VerifyError::Invalid(_)) => {
                            tracing::debug!(error = %e, "ID token refused");
                            Err(AuthError::Invalid)
                        }
                    },
                };
                return self.outcome("oidc", r);
            }
        }
        if via_cookie {
            return self.outcome("oidc", Err(AuthError::Invalid));
        }
        match &self.inner.reviews {
            // Kubernetes ServiceAccount tokens are JWTs: anything else is not worth a review.
            Some(r) if crate::jwt::peek_claims(token).is_some() => {
                let answer = r.review(token).await;
                self.outcome("serviceaccount", answer)
            }
            Some(_) => self.outcome("serviceaccount", Err(AuthError::Invalid)),
            None => self.outcome("unknown", Err(AuthError::Invalid)),
        }
    }

    fn project_token(&self, token: &str) -> Result<Principal, AuthError> {
        let key = self.server_key().ok_or(AuthError::Unavailable)?;
        let Some(store) = &self.inner.projects else {
            return Err(AuthError::Invalid);
        };
        crate::project_tokens::verify(&key, token, |name| {
            crate::project_tokens::project_in(store, &self.inner.namespace, name)
        })
    }
}

/// The routes of signing in (the browser flow, how to sign in) and of project role tokens.
pub fn routes() -> axum::Router<Arc<crate::api::Server>> {
    use axum::routing::{delete, get, post};
    axum::Router::new()
        .route("/auth/login", get(oidc::login))
        .route("/auth/callback", get(oidc::callback))
        .route("/auth/logout", get(oidc::logout))
        .route("/api/v1/auth/config", get(oidc::auth_config))
        .route(
            "/api/v1/projects/{project}/roles/{role}/token",
            post(crate::project_tokens::create),
        )
        .route(
            "/api/v1/projects/{project}/roles/{role}/token/{iat}",
            delete(crate::project_tokens::delete),
        )
}

/// The OpenAPI paths of [`routes`] under `/api/v1`.
pub fn openapi_paths() -> Value {
    let path = |name: &str| serde_json::json!({"name": name, "in": "path", "required": true, "schema": {"type": "string"}});
    serde_json::json!({
        "/api/v1/auth/config": {"get": {
            "summary": "How to sign in (no authentication): whether SSO is configured, its issuer, client IDs and scopes, the browser login path (/auth/login?return_url=), whether the local admin is on. Nothing secret.",
            "security": [], "responses": {"200": {"description": "OK"}}}},
        "/api/v1/projects/{project}/roles/{role}/token": {"post": {
            "summary": "Issue a project role token (HS256 JWT, iss argocd, sub proj:<project>:<role>) and record it in the role's jwtTokens; needs projects/update on the project",
            "parameters": [path("project"), path("role")],
            "requestBody": {"required": false, "content": {"application/json": {"schema": {"type": "object", "properties": {
                "expiresIn": {"type": "integer", "description": "seconds; 0 or absent: never expires"},
                "id": {"type": "string", "description": "the token id (jti); default a random UUID"}}}}}},
            "responses": {"200": {"description": "{token, iat, exp, id}"}, "401": {"description": "unauthenticated"},
                          "403": {"description": "permission denied"}, "404": {"description": "no such project or role"}, "409": {"description": "id already used"}}}},
        "/api/v1/projects/{project}/roles/{role}/token/{iat}": {"delete": {
            "summary": "Revoke a project role token: remove its jwtTokens record (optionally only the one with ?id=)",
            "parameters": [path("project"), path("role"), {"name": "iat", "in": "path", "required": true, "schema": {"type": "integer"}},
                           {"name": "id", "in": "query", "required": false, "schema": {"type": "string"}}],
            "responses": {"200": {"description": "{removed}"}, "401": {"description": "unauthenticated"},
                          "403": {"description": "permission denied"}, "404": {"description": "no such token"}}}}
    })
}

/// The local admin's token: from [`ADMIN_SECRET`] in `namespace`, created with a random token
/// when missing (the token is never logged; read it from the Secret).
pub async fn bootstrap_admin_token(client: &Client, namespace: &str) -> anyhow::Result<String> {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let read = |s: &Secret| {
        s.data
            .as_ref()
            .and_then(|d| d.get("token"))
            .and_then(|t| String::from_utf8(t.0.clone()).ok())
            .filter(|t| !t.is_empty())
    };
    if let Some(s) = secrets.get_opt(ADMIN_SECRET).await?
        && let Some(t) = read(&s)
    {
        return Ok(t);
    }
    let token = hex::encode(rand::random::<[u8; 32]>());
    let secret: Secret = serde_json::from_value(serde_json::json!({
        "metadata": {"name": ADMIN_SECRET, "labels": {"app.kubernetes.io/part-of": "flotilla"}},
        "stringData": {"token": token}}))?;
    match secrets.create(&PostParams::default(), &secret).await {
        Ok(_) => Ok(token),
        // Another replica created it first: use theirs.
        Err(kube::Error::Api(e)) if e.code == 409 => secrets
            .get(ADMIN_SECRET)
            .await
            .ok()
            .as_ref()
            .and_then(read)
            .ok_or_else(|| anyhow::anyhow!("{ADMIN_SECRET} exists without a token")),
        Err(e) => Err(e.into()),
    }
}

/// The server's signing key from `argocd-secret` `server.secretkey`, created (32 random bytes,
/// as Argo CD makes it) when the Secret or the key is missing. Replicas racing settle on the
/// first write (conflicts re-read).
pub async fn bootstrap_server_key(client: &Client, namespace: &str) -> anyhow::Result<Vec<u8>> {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let key_of = |s: &Secret| {
        s.data
            .as_ref()
            .and_then(|d| d.get(SERVER_KEY))
            .map(|k| k.0.clone())
            .filter(|k| !k.is_empty())
    };
    for _ in 0..5 {
        let fresh = rand::random::<[u8; 32]>().to_vec();
        let result = match secrets.get_opt(SETTINGS_SECRET).await? {
            Some(s) if key_of(&s).is_some() => return Ok(key_of(&s).unwrap_or_default()),
            Some(mut s) => {
                s.data
                    .get_or_insert_with(Default::default)
                    .insert(SERVER_KEY.into(), k8s_openapi::ByteString(fresh.clone()));
                s.metadata.managed_fields = None;
                secrets
                    .replace(SETTINGS_SECRET, &PostParams::default(), &s)
                    .await
                    .map(|_| ())
            }
            None => {
                let mut s: Secret = serde_json::from_value(serde_json::json!({
                    "metadata": {"name": SETTINGS_SECRET, "labels": {
                        "app.kubernetes.io/name": SETTINGS_SECRET,
                        "app.kubernetes.io/part-of": "argocd"}}}))?;
                s.data = Some(
                    [(
                        SERVER_KEY.to_string(),
                        k8s_openapi::ByteString(fresh.clone()),
                    )]
                    .into(),
                );
                secrets.create(&PostParams::default(), &s).await.map(|_| ())
            }
        };
        match result {
            Ok(()) => {
                tracing::info!(
                    secret = SETTINGS_SECRET,
                    key = SERVER_KEY,
                    "server key created"
                );
                return Ok(fresh);
            }
            Err(kube::Error::Api(e)) if e.code == 409 => continue,
            Err(e) => return Err(e.into()),
        }
    }
    anyhow::bail!("{SETTINGS_SECRET} kept changing while adding {SERVER_KEY}")
}

/// Secret `name`'s data each time it changes (empty when it is deleted).
fn secret_stream(
    client: Client,
    namespace: &str,
    name: &str,
) -> impl Stream<Item = BTreeMap<String, Vec<u8>>> + Send + 'static {
    flotilla_controller::config_map::named_stream(
        Api::<Secret>::namespaced(client, namespace),
        name,
        |s: Secret| {
            s.data
                .unwrap_or_default()
                .into_iter()
                .map(|(k, v)| (k, v.0))
                .collect()
        },
    )
}

/// The client secret `r` stands for (`$key` in argocd-secret, `$secret:key` in a Secret
/// labelled `app.kubernetes.io/part-of: argocd`, as Argo CD requires).
async fn resolve_secret(
    client: &Client,
    namespace: &str,
    settings: &BTreeMap<String, Vec<u8>>,
    r: &SecretRef,
) -> Result<Option<String>, String> {
    let text = |b: &[u8]| {
        String::from_utf8(b.to_vec())
            .ok()
            .map(|s| s.trim().to_string())
    };
    match r {
        SecretRef::None => Ok(None),
        SecretRef::Literal(s) => Ok(Some(s.clone())),
        SecretRef::Key(k) => settings
            .get(k)
            .and_then(|v| text(v))
            .map(Some)
            .ok_or_else(|| format!("clientSecret: {SETTINGS_SECRET} has no key {k}")),
        SecretRef::Other(name, k) => {
            let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
            let s = api
                .get_opt(name)
                .await
                .map_err(|e| format!("clientSecret: reading Secret {name}: {e}"))?
                .ok_or_else(|| format!("clientSecret: no Secret {name}"))?;
            let labelled = s
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get("app.kubernetes.io/part-of"))
                .is_some_and(|v| v == "argocd");
            if !labelled {
                return Err(format!(
                    "clientSecret: Secret {name} is not labelled app.kubernetes.io/part-of: argocd"
                ));
            }
            s.data
                .as_ref()
                .and_then(|d| d.get(k))
                .and_then(|v| text(&v.0))
                .map(Some)
                .ok_or_else(|| format!("clientSecret: Secret {name} has no key {k}"))
        }
    }
}

/// Keep SSO (argocd-cm `url`, `oidc.config`, `users.anonymous.enabled`) and the server key
/// (argocd-secret) in force: changes apply at once; a provider that cannot be discovered is
/// tried again every 10 s (its tokens get 503 meanwhile).
async fn watch_settings(auth: Authenticator, client: Client, namespace: String) {
    let mut cm_stream =
        flotilla_controller::config_map::data_stream(client.clone(), &namespace, "argocd-cm")
            .boxed();
    let mut secret_stream = secret_stream(client.clone(), &namespace, SETTINGS_SECRET).boxed();
    let (mut cm, mut secret) = (None::<BTreeMap<String, String>>, None);
    let mut retry = tokio::time::interval(Duration::from_secs(10));
    retry.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // What the current provider (or the last failure) was built from, and what was logged.
    let mut built: Option<OidcSettings> = None;
    let mut logged = String::new();
    loop {
        let changed = tokio::select! {
            Some(d) = cm_stream.next() => { cm = Some(d); true }
            Some(d) = secret_stream.next() => { secret = Some(d); true }
            _ = retry.tick() => false,
        };
        // argocd-cm decides; argocd-secret may come later (or not be readable): its keys are
        // then missing until it does.
        let Some(cm) = &cm else {
            continue;
        };
        let no_secret = BTreeMap::new();
        let secret = secret.as_ref().unwrap_or(&no_secret);
        if changed && let Some(k) = secret.get(SERVER_KEY) {
            auth.set_server_key(k.clone());
        }
        if changed {
            auth.set_accounts(crate::session::Accounts::parse(cm, secret));
        }
        let current = auth.sso().get();
        if !changed && (current.provider.is_some() || current.settings.is_none()) {
            continue;
        }
        let anonymous = cm
            .get("users.anonymous.enabled")
            .is_some_and(|v| v.trim() == "true");
        // A digest, not the text: oidc.config may hold a literal client secret.
        let note = hex::encode(ring::digest::digest(
            &ring::digest::SHA256,
            format!("{:?}{:?}", cm.get("oidc.config"), cm.get("url")).as_bytes(),
        ));
        let fresh_log = note != logged;
        logged = note;
        if fresh_log && cm.get("dex.config").is_some_and(|d| !d.trim().is_empty()) {
            tracing::warn!(
                "argocd-cm dex.config is not supported: Flotilla has no bundled Dex; configure oidc.config with your provider (or a Dex you run)"
            );
        }
        let parsed = match oidc::parse_config(cm) {
            Ok(p) => p,
            Err(e) => {
                if fresh_log {
                    tracing::error!(error = %e, "SSO configuration refused; SSO is off (the bootstrapped local admin stays off)");
                }
                built = None;
                auth.sso().set(SsoState {
                    configured: true,
                    anonymous,
                    loaded: true,
                    ..Default::default()
                });
                continue;
            }
        };
        let Some(parsed) = parsed else {
            if current.configured || !current.loaded || current.anonymous != anonymous {
                if current.configured {
                    tracing::info!("SSO is not configured");
                }
                auth.sso().set(SsoState {
                    anonymous,
                    loaded: true,
                    ..Default::default()
                });
            }
            built = None;
            continue;
        };
        if fresh_log && !parsed.ignored.is_empty() {
            tracing::warn!(keys = ?parsed.ignored, "oidc.config keys not honoured by Flotilla");
        }
        let mut settings = parsed.settings.clone();
        match resolve_secret(&client, &namespace, secret, &parsed.secret).await {
            Ok(s) => settings.client_secret = s,
            Err(e) => {
                if fresh_log || changed {
                    tracing::warn!(error = %e, "SSO: no client secret; the browser sign-in will fail, bearer ID tokens still work");
                }
            }
        }
        if let Some(p) = &current.provider
            && p.settings == settings
        {
            if current.anonymous != anonymous {
                auth.sso().set(SsoState {
                    anonymous,
                    ..current
                });
            }
            continue;
        }
        if !changed && built.as_ref() == Some(&settings) && current.provider.is_some() {
            continue;
        }
        let discovered = tokio::time::timeout(
            Duration::from_secs(20),
            Provider::discover(settings.clone()),
        )
        .await
        .unwrap_or_else(|_| Err("discovery timed out".into()));
        built = Some(settings.clone());
        match discovered {
            Ok(p) => {
                tracing::info!(name = %settings.name, issuer = %settings.issuer, "SSO configured");
                auth.sso().set(SsoState {
                    configured: true,
                    settings: Some(Arc::new(settings)),
                    provider: Some(Arc::new(p)),
                    anonymous,
                    loaded: true,
                });
            }
            Err(e) => {
                tracing::warn!(issuer = %settings.issuer, error = %e, "SSO: provider discovery failed; retrying in 10 s");
                auth.sso().set(SsoState {
                    configured: true,
                    settings: Some(Arc::new(settings)),
                    provider: None,
                    anonymous,
                    loaded: true,
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bearer(t: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            http::header::AUTHORIZATION,
            http::HeaderValue::from_str(&format!("Bearer {t}")).expect("header"),
        );
        h
    }

    #[tokio::test]
    async fn only_the_admin_token_passes() {
        let a = Authenticator::new(Some("s3cret".into()));
        assert_eq!(
            a.authenticate(&bearer("s3cret")).await.map(|p| p.subject),
            Ok("admin".into())
        );
        assert_eq!(
            a.authenticate(&bearer("s3cre")).await,
            Err(AuthError::Invalid)
        );
        assert_eq!(
            a.authenticate(&HeaderMap::new()).await,
            Err(AuthError::Missing)
        );
        // No admin configured: nothing passes.
        assert_eq!(
            Authenticator::new(None).authenticate(&bearer("")).await,
            Err(AuthError::Missing)
        );
        assert_eq!(
            Authenticator::new(Some(String::new()))
                .authenticate(&bearer("x"))
                .await,
            Err(AuthError::Invalid)
        );
    }

    #[tokio::test]
    async fn a_bootstrapped_admin_is_off_with_sso() {
        let a = Authenticator::build(
            Some("boot".into()),
            false,
            String::new(),
            None,
            None,
            Family::default(),
        );
        // Before argocd-cm is read: off (SSO may be configured).
        assert_eq!(
            a.authenticate(&bearer("boot")).await,
            Err(AuthError::Invalid)
        );
        a.sso().set(SsoState {
            loaded: true,
            ..Default::default()
        });
        assert!(a.authenticate(&bearer("boot")).await.is_ok());
        a.sso().set(SsoState {
            loaded: true,
            configured: true,
            ..Default::default()
        });
        assert_eq!(
            a.authenticate(&bearer("boot")).await,
            Err(AuthError::Invalid)
        );
        // Anonymous access, when enabled, is a caller with no name and no groups.
        a.sso().set(SsoState {
            loaded: true,
            anonymous: true,
            ..Default::default()
        });
        assert_eq!(
            a.authenticate(&HeaderMap::new()).await.map(|p| p.subject),
            Ok(String::new())
        );
    }

    #[tokio::test]
    async fn an_unreachable_token_review_is_unavailable_not_invalid() {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let cfg = kube::Config::new("http://127.0.0.1:9".parse().expect("url"));
        let client = Client::try_from(cfg).expect("client");
        let a = Authenticator::build(
            Some("admin-token".into()),
            true,
            String::new(),
            None,
            Some(TokenReviews::new(
                client,
                Vec::new(),
                Duration::from_secs(60),
            )),
            Family::default(),
        );
        // ServiceAccount tokens are JWTs: one that cannot be reviewed now is a 503, not 401.
        let sa_token = "eyJhbGciOiJSUzI1NiJ9.eyJpc3MiOiJrdWJlcm5ldGVzIiwic3ViIjoic2EifQ.c2ln";
        assert_eq!(
            a.authenticate(&bearer(sa_token)).await,
            Err(AuthError::Unavailable)
        );
        // Anything else is not sent for review at all.
        assert_eq!(
            a.authenticate(&bearer("some-service-account-token")).await,
            Err(AuthError::Invalid)
        );
        assert_eq!(
            a.inner
                .metrics
                .get_or_create(&AuthLabels {
                    method: "serviceaccount",
                    result: "error"
                })
                .get(),
            1
        );
    }

    #[test]
    fn group_claims_follow_scopes() {
        let claims = serde_json::json!({"groups": ["b", "a"], "email": "x@example.com", "n": 1});
        assert_eq!(groups_from(&claims, &["groups".into()]), ["a", "b"]);
        assert_eq!(
            groups_from(&claims, &parse_scopes(Some("[groups, email, n, missing]"))),
            ["a", "b", "x@example.com"]
        );
        assert_eq!(parse_scopes(None), ["groups"]);
        assert_eq!(parse_scopes(Some("not: [a list")), ["groups"]);
    }

    #[test]
    fn cookies_from_other_sites_are_ignored() {
        let mut h = HeaderMap::new();
        h.insert(
            http::header::COOKIE,
            http::HeaderValue::from_static("a=b; flotilla.token=tok"),
        );
        assert_eq!(cookie_token(&h), Some("tok"));
        h.insert(
            "sec-fetch-site",
            http::HeaderValue::from_static("cross-site"),
        );
        assert_eq!(cookie_token(&h), None);
    }

    #[test]
    fn outside_identities_cannot_take_reserved_names() {
        assert_eq!(external("admin", vec![]), Err(AuthError::Invalid));
        assert_eq!(external("proj:team-b:ci", vec![]), Err(AuthError::Invalid));
        assert_eq!(external("", vec![]), Err(AuthError::Invalid));
        let p = external(
            "alice",
            vec![
                "devs".into(),
                "role:admin".into(),
                "proj:b:ci".into(),
                "admin".into(),
            ],
        )
        .expect("alice");
        assert_eq!(p.subject, "alice");
        assert_eq!(p.groups, vec!["devs".to_string()]);
    }
}
