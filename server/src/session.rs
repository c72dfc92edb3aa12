//! Signing in with a username and password, as Argo CD's UI does: the local admin (its
//! bootstrapped token as password, or `admin.password` in `argocd-secret`) and the local
//! accounts of `argocd-cm` (`accounts.<name>: login`, bcrypt `accounts.<name>.password` in
//! `argocd-secret`). A success sets the `flotilla.token` cookie to a session JWT (HS256 with
//! the server key, `iss: argocd`, `sub: <name>`); `can-i` answers what the caller may do.
//! Failures are limited per username (5 per 5 minutes) and bcrypt checks run 4 at a time.

use std::collections::BTreeMap;
use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::api::{Server, count, error, unauthenticated};
use crate::auth::{AuthError, Principal};

/// How long a session lasts unless `argocd-cm` `users.session.duration` says otherwise
/// (Argo CD's default).
pub const DEFAULT_SESSION: Duration = Duration::from_secs(24 * 3600);
/// Failed sign-ins of one username allowed per [`FAILURE_WINDOW`] (Argo CD's defaults).
const MAX_FAILURES: u32 = 5;
const FAILURE_WINDOW: Duration = Duration::from_secs(300);
/// Usernames whose failures are remembered (the least recently failed are forgotten first).
const FAILURES_KEPT: usize = 10_000;
/// bcrypt checks at once (each costs tens of milliseconds of CPU).
const BCRYPT_CONCURRENCY: usize = 4;
/// Longest username or password read.
const MAX_FIELD: usize = 256;

/// One local account of `argocd-cm`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Account {
    /// `login` is among its capabilities (`apiKey` alone cannot sign in here).
    pub login: bool,
    pub enabled: bool,
    /// bcrypt hash from `argocd-secret` `accounts.<name>.password`.
    pub password_hash: Option<String>,
    /// `accounts.<name>.passwordMtime`: sessions issued before it are void.
    pub password_mtime: Option<i64>,
}

/// The local accounts and session settings, read from `argocd-cm` and `argocd-secret`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Accounts {
    pub accounts: BTreeMap<String, Account>,
    /// `admin.enabled` (default true) and `admin.password` (bcrypt) / `admin.passwordMtime`.
    pub admin: Account,
    pub session: Option<Duration>,
}

fn mtime(v: Option<&String>) -> Option<i64> {
    // Argo CD writes RFC 3339.
    v.and_then(|t| t.trim().parse::<jiff::Timestamp>().ok())
        .map(|t| t.as_second())
}

/// Parse a Go duration as `users.session.duration` writes it (`24h`, `90m`, `1h30m`, `3600s`).
pub fn parse_duration(text: &str) -> Option<Duration> {
    let mut total = 0u64;
    let mut number = String::new();
    for c in text.trim().chars() {
        if c.is_ascii_digit() {
            number.push(c);
            continue;
        }
        let n: u64 = number.parse().ok()?;
        number.clear();
        total = total.checked_add(n.checked_mul(match c {
            'h' => 3600,
            'm' => 60,
            's' => 1,
            _ => return None,
        })?)?;
    }
    (number.is_empty() && total > 0).then(|| Duration::from_secs(total))
}

impl Accounts {
    /// Read the accounts from `argocd-cm` data `cm` and `argocd-secret` data `secret`.
    pub fn parse(cm: &BTreeMap<String, String>, secret: &BTreeMap<String, Vec<u8>>) -> Self {
        let secret: BTreeMap<&str, String> = secret
            .iter()
            .filter(|(k, _)| k.starts_with("accounts.") || k.starts_with("admin."))
            .map(|(k, v)| (k.as_str(), String::from_utf8_lossy(v).into_owned()))
            .collect();
        let mut accounts = BTreeMap::new();
        for (key, value) in cm {
            let Some(name) = key.strip_prefix("accounts.") else {
                continue;
            };
            if name.contains('.') || name.is_empty() || name == "admin" {
                continue;
            }
            let caps: Vec<&str> = value.split(',').map(str::trim).collect();
            accounts.insert(
                name.to_string(),
                Account {
                    login: caps.contains(&"login"),
                    enabled: cm
                        .get(&format!("accounts.{name}.enabled"))
                        .is_none_or(|v| v.trim() != "false"),
                    password_hash: secret
                        .get(format!("accounts.{name}.password").as_str())
                        .filter(|h| !h.is_empty())
                        .cloned(),
                    password_mtime: mtime(
                        secret.get(format!("accounts.{name}.passwordMtime").as_str()),
                    ),
                },
            );
        }
        let admin = Account {
            login: true,
            enabled: cm.get("admin.enabled").is_none_or(|v| v.trim() != "false"),
            password_hash: secret
                .get("admin.password")
                .filter(|h| !h.is_empty())
                .cloned(),
            password_mtime: mtime(secret.get("admin.passwordMtime")),
        };
        let session = cm
            .get("users.session.duration")
            .and_then(|d| parse_duration(d));
        Self {
            accounts,
            admin,
            session,
        }
    }

    /// The account `name` as far as signing in goes (`None`: no such account or it may not
    /// sign in now). `admin_token_on`: the local admin's token is accepted.
    fn may_sign_in(&self, name: &str, admin_token_on: bool) -> Option<&Account> {
        if name == "admin" {
            let a = &self.admin;
            return (admin_token_on || (a.enabled && a.password_hash.is_some())).then_some(a);
        }
        self.accounts.get(name).filter(|a| a.enabled && a.login)
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    iss: String,
    sub: String,
    iat: i64,
    nbf: i64,
    exp: i64,
    jti: String,
}

/// Sign a session for `name`, valid `ttl` from `now`.
pub fn sign(key: &[u8], name: &str, now: i64, ttl: Duration) -> Result<String, String> {
    crate::jwt::install();
    let claims = Claims {
        iss: crate::project_tokens::ISSUER.into(),
        sub: name.into(),
        iat: now,
        nbf: now,
        exp: now.saturating_add(i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX)),
        jti: uuid::Uuid::new_v4().to_string(),
    };
    let k = EncodingKey::from_secret(key).map_err(|e| e.to_string())?;
    jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &k).map_err(|e| e.to_string())
}

/// Check a session token: signature, issuer, expiry, and that its account may still sign in
/// and has not changed its password since.
pub fn verify(
    key: &[u8],
    token: &str,
    accounts: &Accounts,
    admin_token_on: bool,
) -> Result<Principal, AuthError> {
    crate::jwt::install();
    let k = DecodingKey::from_secret(key).map_err(|_| AuthError::Invalid)?;
    let mut v = Validation::new(Algorithm::HS256);
    v.set_issuer(&[crate::project_tokens::ISSUER]);
    v.set_required_spec_claims(&["iss", "sub", "exp"]);
    v.validate_aud = false;
    v.validate_nbf = true;
    v.leeway = crate::oidc::LEEWAY;
    let claims = jsonwebtoken::decode::<Claims>(token, &k, &v)
        .map_err(|_| AuthError::Invalid)?
        .claims;
    let account = accounts
        .may_sign_in(&claims.sub, admin_token_on)
        .ok_or(AuthError::Invalid)?;
    if account.password_mtime.is_some_and(|m| claims.iat < m) {
        return Err(AuthError::Invalid);
    }
    Ok(Principal {
        subject: claims.sub,
        groups: Vec::new(),
    })
}

/// Failed sign-ins per username.
pub struct Failures {
    seen: Mutex<lru::LruCache<String, (u32, Instant)>>,
    bcrypt: tokio::sync::Semaphore,
}

impl Default for Failures {
    fn default() -> Self {
        Self {
            seen: Mutex::new(lru::LruCache::new(
                NonZeroUsize::new(FAILURES_KEPT).unwrap_or(NonZeroUsize::MIN),
            )),
            bcrypt: tokio::sync::Semaphore::new(BCRYPT_CONCURRENCY),
        }
    }
}

impl Failures {
    fn locked(&self, name: &str) -> bool {
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        match seen.get(name) {
            Some((n, since)) if since.elapsed() < FAILURE_WINDOW => *n >= MAX_FAILURES,
            Some(_) => {
                seen.pop(name);
                false
            }
            None => false,
        }
    }

    fn failed(&self, name: &str) {
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        let entry = seen.get_or_insert_mut(name.to_string(), || (0, Instant::now()));
        if entry.1.elapsed() >= FAILURE_WINDOW {
            *entry = (0, Instant::now());
        }
        entry.0 += 1;
    }

    fn succeeded(&self, name: &str) {
        self.seen
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .pop(name);
    }
}

#[derive(Deserialize)]
pub struct Credentials {
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
}

fn session_cookie(value: &str, max_age: u64, secure: bool) -> String {
    format!(
        "{}={value}; Path=/; Max-Age={max_age}; HttpOnly; SameSite=Strict{}",
        crate::oidc::TOKEN_COOKIE,
        if secure { "; Secure" } else { "" }
    )
}

/// Whether the browser reached this server over HTTPS (directly or through a proxy that says
/// so), so the cookie must be `Secure`.
fn over_https(headers: &HeaderMap) -> bool {
    headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("https"))
}

fn with_cookie(mut resp: Response, cookie: &str) -> Response {
    if let Ok(v) = HeaderValue::from_str(cookie) {
        resp.headers_mut().append(header::SET_COOKIE, v);
    }
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

/// Whether `password` is the password of `account` (`admin_token`: the local admin's token,
/// also accepted as the admin's password while it is on).
async fn password_matches(
    failures: &Failures,
    account: &Account,
    password: &str,
    admin_token: Option<&str>,
) -> bool {
    if let Some(t) = admin_token
        && flotilla_controller::webhook::ct_eq(password.as_bytes(), t.as_bytes())
    {
        return true;
    }
    let Some(hash) = account.password_hash.clone() else {
        return false;
    };
    let Ok(_permit) = failures.bcrypt.acquire().await else {
        return false;
    };
    let password = password.to_string();
    tokio::task::spawn_blocking(move || bcrypt::verify(password, &hash).unwrap_or(false))
        .await
        .unwrap_or(false)
}

/// `POST /api/v1/session`: sign in with a username and password; sets the session cookie.
async fn create(
    State(s): State<Arc<Server>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let resp = async {
        // Not a form: a page elsewhere cannot sign a browser in as someone else (login CSRF).
        let json = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| {
                v.trim_start()
                    .to_ascii_lowercase()
                    .starts_with("application/json")
            });
        if !json {
            return error(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "send the credentials as application/json",
            );
        }
        let Ok(c) = serde_json::from_slice::<Credentials>(&body) else {
            return error(
                StatusCode::BAD_REQUEST,
                "expected {\"username\", \"password\"}",
            );
        };
        if c.username.is_empty() || c.username.len() > MAX_FIELD || c.password.len() > MAX_FIELD {
            return error(StatusCode::UNAUTHORIZED, "invalid username or password");
        }
        let failures = s.auth.failures();
        if failures.locked(&c.username) {
            s.auth.counted("password", "locked");
            return error(
                StatusCode::TOO_MANY_REQUESTS,
                "too many failed sign-ins for this user; try again in a few minutes",
            );
        }
        let Some(key) = s.auth.server_key() else {
            return error(
                StatusCode::SERVICE_UNAVAILABLE,
                "the server key is not known yet; try again",
            );
        };
        let accounts = s.auth.accounts();
        let admin_token = (c.username == "admin")
            .then(|| s.auth.local_admin_token())
            .flatten();
        let ok = match accounts.may_sign_in(&c.username, admin_token.is_some()) {
            Some(a) => password_matches(failures, a, &c.password, admin_token.as_deref()).await,
            None => false,
        };
        if !ok {
            failures.failed(&c.username);
            s.auth.counted("password", "invalid");
            tracing::info!(user = %c.username, "sign-in refused");
            return error(StatusCode::UNAUTHORIZED, "invalid username or password");
        }
        failures.succeeded(&c.username);
        let ttl = accounts.session.unwrap_or(DEFAULT_SESSION);
        let now = i64::try_from(crate::oidc::now()).unwrap_or(i64::MAX);
        match sign(&key, &c.username, now, ttl) {
            Err(e) => error(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("signing the session: {e}"),
            ),
            Ok(token) => {
                s.auth.counted("password", "ok");
                tracing::info!(user = %c.username, "signed in");
                with_cookie(
                    Json(json!({"username": c.username})).into_response(),
                    &session_cookie(&token, ttl.as_secs(), over_https(&headers)),
                )
            }
        }
    }
    .await;
    count(&s, "session_create", resp)
}

/// `DELETE /api/v1/session`: sign out (the cookie is cleared).
async fn delete(State(s): State<Arc<Server>>, headers: HeaderMap) -> Response {
    let resp = with_cookie(
        Json(json!({})).into_response(),
        &session_cookie("", 0, over_https(&headers)),
    );
    count(&s, "session_delete", resp)
}

/// `GET /api/v1/session/userinfo`: who the browser is signed in as (never 401).
async fn userinfo(State(s): State<Arc<Server>>, headers: HeaderMap) -> Response {
    let body = match s.auth.authenticate(&headers).await {
        Ok(p) if !p.subject.is_empty() => {
            json!({"loggedIn": true, "username": p.subject, "groups": p.groups})
        }
        _ => json!({"loggedIn": false}),
    };
    count(&s, "session_userinfo", Json(body).into_response())
}

/// `GET /api/v1/account/can-i/{resource}/{action}/{object}`: Argo CD's question, for a UI
/// deciding which buttons to show (the API still checks every call).
async fn can_i(
    State(s): State<Arc<Server>>,
    headers: HeaderMap,
    Path((resource, action, object)): Path<(String, String, String)>,
) -> Response {
    let resp = match s.auth.authenticate(&headers).await {
        Err(e) => unauthenticated(e),
        Ok(who) => {
            let yes = s.can(&who, &resource, &action, &object);
            Json(json!({"value": if yes { "yes" } else { "no" }})).into_response()
        }
    };
    count(&s, "can_i", resp)
}

pub fn routes() -> axum::Router<Arc<Server>> {
    use axum::routing::{get, post};
    axum::Router::new()
        .route("/api/v1/session", post(create).delete(delete))
        .route("/api/v1/session/userinfo", get(userinfo))
        .route(
            "/api/v1/account/can-i/{resource}/{action}/{*object}",
            get(can_i),
        )
}

/// The OpenAPI paths of [`routes`].
pub fn openapi_paths() -> Value {
    let path = |name: &str| json!({"name": name, "in": "path", "required": true, "schema": {"type": "string"}});
    json!({
        "/api/v1/session": {
            "post": {
                "summary": "Sign in with a username and password (the local admin, or an argocd-cm local account with the login capability); sets the HttpOnly cookie flotilla.token to a session token. 5 failures per user per 5 minutes, then 429.",
                "security": [],
                "requestBody": {"required": true, "content": {"application/json": {"schema": {"type": "object", "required": ["username", "password"],
                    "properties": {"username": {"type": "string"}, "password": {"type": "string"}}}}}},
                "responses": {"200": {"description": "{username}"}, "401": {"description": "invalid username or password"},
                              "429": {"description": "too many failures"}, "503": {"description": "server key not known yet"}}},
            "delete": {"summary": "Sign out: clear the session cookie", "security": [], "responses": {"200": {"description": "OK"}}}},
        "/api/v1/session/userinfo": {"get": {
            "summary": "Who the caller is: {loggedIn, username, groups} (loggedIn false instead of 401)",
            "security": [], "responses": {"200": {"description": "OK"}}}},
        "/api/v1/account/can-i/{resource}/{action}/{object}": {"get": {
            "summary": "Whether the caller may do action on resource object under the RBAC policy ({value: yes|no}); the object may contain slashes (project/app)",
            "parameters": [path("resource"), path("action"), path("object")],
            "responses": {"200": {"description": "{value}"}, "401": {"description": "unauthenticated"}}}},
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn bytes(pairs: &[(&str, &str)]) -> BTreeMap<String, Vec<u8>> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
            .collect()
    }

    #[test]
    fn accounts_are_read_as_argo_cd_writes_them() {
        let cm = map(&[
            ("accounts.alice", "apiKey, login"),
            ("accounts.bot", "apiKey"),
            ("accounts.carol", "login"),
            ("accounts.carol.enabled", "false"),
            ("admin.enabled", "false"),
            ("users.session.duration", "1h30m"),
        ]);
        let secret = bytes(&[
            ("accounts.alice.password", "$2a$10$hash"),
            ("accounts.alice.passwordMtime", "2026-01-02T03:04:05Z"),
        ]);
        let a = Accounts::parse(&cm, &secret);
        assert_eq!(a.session, Some(Duration::from_secs(5400)));
        assert!(a.accounts["alice"].login && a.accounts["alice"].enabled);
        assert_eq!(a.accounts["alice"].password_mtime, Some(1_767_323_045));
        assert!(a.may_sign_in("alice", false).is_some());
        assert!(a.may_sign_in("bot", false).is_none(), "apiKey only");
        assert!(a.may_sign_in("carol", false).is_none(), "disabled");
        assert!(a.may_sign_in("nobody", false).is_none());
        assert!(
            a.may_sign_in("admin", false).is_none(),
            "admin disabled, no token"
        );
        assert!(
            a.may_sign_in("admin", true).is_some(),
            "the admin token stays on"
        );
    }

    #[test]
    fn go_durations() {
        assert_eq!(parse_duration("24h"), Some(Duration::from_secs(86400)));
        assert_eq!(parse_duration("90s"), Some(Duration::from_secs(90)));
        assert_eq!(parse_duration("h"), None);
        assert_eq!(parse_duration("10"), None);
        assert_eq!(parse_duration("0s"), None);
    }

    #[test]
    fn sessions_are_signed_checked_and_voided_by_a_password_change() {
        let key = b"server key";
        let cm = map(&[("accounts.alice", "login")]);
        let mut secret = bytes(&[("accounts.alice.password", "$2a$10$x")]);
        let accounts = Accounts::parse(&cm, &secret);
        let now = i64::try_from(crate::oidc::now()).expect("now");
        let t = sign(key, "alice", now, DEFAULT_SESSION).expect("sign");
        assert_eq!(
            verify(key, &t, &accounts, false).map(|p| p.subject),
            Ok("alice".to_string())
        );
        assert_eq!(
            verify(b"another key", &t, &accounts, false),
            Err(AuthError::Invalid)
        );
        let expired = sign(key, "alice", now - 100_000, DEFAULT_SESSION).expect("sign");
        assert_eq!(
            verify(key, &expired, &accounts, false),
            Err(AuthError::Invalid)
        );
        secret.insert(
            "accounts.alice.passwordMtime".into(),
            jiff::Timestamp::from_second(now + 10)
                .expect("ts")
                .to_string()
                .into_bytes(),
        );
        let changed = Accounts::parse(&cm, &secret);
        assert_eq!(
            verify(key, &t, &changed, false),
            Err(AuthError::Invalid),
            "issued before the password changed"
        );
        let gone = Accounts::parse(&BTreeMap::new(), &secret);
        assert_eq!(verify(key, &t, &gone, false), Err(AuthError::Invalid));
    }

    #[test]
    fn failures_lock_a_username_only() {
        let f = Failures::default();
        for _ in 0..MAX_FAILURES {
            assert!(!f.locked("alice"));
            f.failed("alice");
        }
        assert!(f.locked("alice"));
        assert!(!f.locked("bob"));
        f.succeeded("alice");
        assert!(!f.locked("alice"));
    }
}
