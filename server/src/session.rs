//! Signing in with a username and password, as Argo CD's UI does: the local admin (its
//! bootstrapped token as password, or `admin.password` in `argocd-secret`) and the local
//! accounts of `argocd-cm` (`accounts.<name>: login`, bcrypt `accounts.<name>.password` in
//! `argocd-secret`). A success sets the `flotilla.token` cookie to a session JWT (HS256 with
//! the server key, `iss: argocd`, `sub: <name>`); `can-i` answers what the caller may do.
//! Every attempt counts as a failure until it succeeds (5 per username per 5 minutes, parallel
//! guesses included); every refusal costs one bcrypt, whether or not the account exists; bcrypt
//! checks run 4 at a time. Signing out revokes the session for every replica (its id is
//! recorded in `argocd-secret` until it expires).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
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
/// Usernames whose failures are remembered. When that many are inside their window, new
/// usernames are refused until some expire (a flood of made-up names must not push a locked
/// account out and so unlock it).
const FAILURES_KEPT: usize = 10_000;
/// bcrypt checks at once (each costs tens of milliseconds of CPU), and how long a sign-in
/// waits for one before it is told to try again.
const BCRYPT_CONCURRENCY: usize = 4;
const BCRYPT_WAIT: Duration = Duration::from_secs(2);
/// The bcrypt cost of the stand-in hash checked when there is no account (Argo CD's cost).
const DUMMY_COST: u32 = 10;
/// The `argocd-secret` key prefix recording a revoked session: `session.revoked.<jti>: <exp>`.
pub const REVOKED_PREFIX: &str = "session.revoked.";
/// Revocations kept at most (about 70 bytes each: `argocd-secret` stays far below a Secret's
/// 1 MiB however often users sign out); beyond it the soonest to expire are dropped first.
const MAX_REVOKED: usize = 5_000;

/// Seconds since the epoch.
fn now_secs() -> i64 {
    i64::try_from(crate::oidc::now()).unwrap_or(i64::MAX)
}
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
    /// Revoked session ids and when each expires.
    pub revoked: BTreeMap<String, i64>,
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
            .filter(|(k, _)| {
                k.starts_with("accounts.")
                    || k.starts_with("admin.")
                    || k.starts_with(REVOKED_PREFIX)
            })
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
        let revoked = secret
            .iter()
            .filter_map(|(k, v)| {
                Some((
                    k.strip_prefix(REVOKED_PREFIX)?.to_string(),
                    v.trim().parse().ok()?,
                ))
            })
            .collect();
        Self {
            accounts,
            admin,
            session,
            revoked,
        }
    }

    /// The account `name` as far as signing in goes (`None`: no such account or it may not
    /// sign in now). `admin_token_on`: the local admin's token is accepted.
    fn may_sign_in(&self, name: &str, admin_token_on: bool) -> Option<&Account> {
        if name == "admin" {
            let a = &self.admin;
            return (admin_token_on || self.admin_password_on()).then_some(a);
        }
        self.accounts.get(name).filter(|a| a.enabled && a.login)
    }

    /// Whether Argo CD's `admin.password` may sign in (`admin.enabled` is not false).
    fn admin_password_on(&self) -> bool {
        self.admin.enabled && self.admin.password_hash.is_some()
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
    /// For an admin signed in with the local admin's token: a fingerprint of that token, so
    /// rotating the token ends the session.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    atk: Option<String>,
}

/// The fingerprint of the local admin's token kept in its sessions (not the token).
fn fingerprint(token: &str) -> String {
    hex::encode(&ring::digest::digest(&ring::digest::SHA256, token.as_bytes()).as_ref()[..16])
}

/// Sign a session for `name`, valid `ttl` from `now` (`admin_token`: the local admin's
/// token it signed in with).
pub fn sign(
    key: &[u8],
    name: &str,
    now: i64,
    ttl: Duration,
    admin_token: Option<&str>,
) -> Result<String, String> {
    crate::jwt::install();
    let claims = Claims {
        iss: crate::project_tokens::ISSUER.into(),
        sub: name.into(),
        iat: now,
        nbf: now,
        exp: now.saturating_add(i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX)),
        jti: uuid::Uuid::new_v4().to_string(),
        atk: admin_token.map(fingerprint),
    };
    let k = EncodingKey::from_secret(key).map_err(|e| e.to_string())?;
    jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &k).map_err(|e| e.to_string())
}

/// The claims of a session token whose signature, issuer and expiry hold.
fn decode(key: &[u8], token: &str) -> Result<Claims, AuthError> {
    crate::jwt::install();
    let k = DecodingKey::from_secret(key).map_err(|_| AuthError::Invalid)?;
    let mut v = Validation::new(Algorithm::HS256);
    v.set_issuer(&[crate::project_tokens::ISSUER]);
    v.set_required_spec_claims(&["iss", "sub", "exp"]);
    v.validate_aud = false;
    v.validate_nbf = true;
    v.leeway = crate::oidc::LEEWAY;
    Ok(jsonwebtoken::decode::<Claims>(token, &k, &v)
        .map_err(|_| AuthError::Invalid)?
        .claims)
}

/// Check a session token: signature, issuer, expiry, not revoked, and that its account may
/// still sign in the way it did (the admin's token unchanged, or no password change since).
pub fn verify(
    key: &[u8],
    token: &str,
    accounts: &Accounts,
    admin_token: Option<&str>,
) -> Result<Principal, AuthError> {
    let claims = decode(key, token)?;
    if accounts.revoked.contains_key(&claims.jti) {
        return Err(AuthError::Invalid);
    }
    let ok = match (&claims.atk, claims.sub.as_str()) {
        (Some(fp), "admin") => admin_token.is_some_and(|t| fingerprint(t) == *fp),
        (Some(_), _) => false,
        (None, "admin") => {
            accounts.admin_password_on()
                && accounts
                    .admin
                    .password_mtime
                    .is_none_or(|m| claims.iat >= m)
        }
        (None, name) => accounts
            .may_sign_in(name, false)
            .is_some_and(|a| a.password_mtime.is_none_or(|m| claims.iat >= m)),
    };
    if !ok {
        return Err(AuthError::Invalid);
    }
    Ok(Principal {
        subject: claims.sub,
        groups: Vec::new(),
    })
}

/// Sign-in attempts per username: each counts as a failure until it succeeds.
pub struct Failures {
    seen: Mutex<HashMap<String, (u32, Instant)>>,
    bcrypt: tokio::sync::Semaphore,
}

impl Default for Failures {
    fn default() -> Self {
        Self {
            seen: Mutex::new(HashMap::new()),
            bcrypt: tokio::sync::Semaphore::new(BCRYPT_CONCURRENCY),
        }
    }
}

/// Why an attempt may not be made now.
#[derive(Debug, PartialEq, Eq)]
pub enum Refused {
    /// This username failed too often.
    Locked,
    /// Too many usernames are failing at once.
    Flooded,
}

impl Failures {
    /// Count an attempt for `name` (as a failure until [`Self::succeeded`]), unless it is
    /// locked out.
    pub fn attempt(&self, name: &str) -> Result<(), Refused> {
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((n, since)) = seen.get_mut(name) {
            if since.elapsed() >= FAILURE_WINDOW {
                *n = 0;
                *since = Instant::now();
            }
            if *n >= MAX_FAILURES {
                return Err(Refused::Locked);
            }
            *n += 1;
            return Ok(());
        }
        if seen.len() >= FAILURES_KEPT {
            seen.retain(|_, (_, since)| since.elapsed() < FAILURE_WINDOW);
            if seen.len() >= FAILURES_KEPT {
                return Err(Refused::Flooded);
            }
        }
        seen.insert(name.to_string(), (1, Instant::now()));
        Ok(())
    }

    /// The attempt succeeded: the username's failures are forgotten.
    pub fn succeeded(&self, name: &str) {
        self.seen
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(name);
    }
}

/// A bcrypt hash checked when there is no account or no password, so a refusal takes as long
/// whether or not the username exists.
fn dummy_hash() -> &'static str {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DUMMY.get_or_init(|| {
        let secret = uuid::Uuid::new_v4().to_string();
        bcrypt::hash(secret, DUMMY_COST).unwrap_or_default()
    })
}

#[derive(Deserialize)]
pub struct Credentials {
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
}

fn session_cookie(value: &str, max_age: u64, secure: bool) -> String {
    crate::oidc::cookie_header(
        crate::oidc::TOKEN_COOKIE,
        value,
        "/",
        max_age,
        secure,
        "Strict",
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

/// Whether `password` signs `name` in: the local admin's token (while it is on), or the
/// account's bcrypt password. Every refusal costs one bcrypt (against a stand-in hash when
/// there is no account), so its timing does not say whether the account exists. `None`: no
/// bcrypt slot came free in time.
async fn password_matches(
    failures: &Failures,
    accounts: &Accounts,
    name: &str,
    password: &str,
    admin_token: Option<&str>,
) -> Option<bool> {
    if name == "admin"
        && let Some(t) = admin_token
        && flotilla_controller::webhook::ct_eq(password.as_bytes(), t.as_bytes())
    {
        return Some(true);
    }
    let hash = match accounts.may_sign_in(name, false) {
        Some(a) if name != "admin" || accounts.admin_password_on() => a.password_hash.clone(),
        _ => None,
    };
    let real = hash.is_some();
    let hash = hash.unwrap_or_else(|| dummy_hash().to_string());
    let _permit = tokio::time::timeout(BCRYPT_WAIT, failures.bcrypt.acquire())
        .await
        .ok()?
        .ok()?;
    let password = password.to_string();
    let matched =
        tokio::task::spawn_blocking(move || bcrypt::verify(password, &hash).unwrap_or(false))
            .await
            .unwrap_or(false);
    Some(real && matched)
}

/// `POST /api/v1/session`: sign in with a username and password; sets the session cookie.
async fn create(
    State(s): State<Arc<Server>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let resp = async {
        // Not a form: a page elsewhere cannot sign a browser in as someone else (login CSRF).
        if !crate::api::is_json(&headers) {
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
        let Some(key) = s.auth.server_key() else {
            return error(
                StatusCode::SERVICE_UNAVAILABLE,
                "the server key is not known yet; try again",
            );
        };
        let failures = s.auth.failures();
        match failures.attempt(&c.username) {
            Ok(()) => {}
            Err(Refused::Locked) => {
                s.auth.counted("password", "locked");
                return error(
                    StatusCode::TOO_MANY_REQUESTS,
                    "too many failed sign-ins for this user; try again in a few minutes",
                );
            }
            Err(Refused::Flooded) => {
                s.auth.counted("password", "locked");
                tracing::warn!("sign-in failures from too many usernames at once; refusing new ones until some expire");
                return error(
                    StatusCode::TOO_MANY_REQUESTS,
                    "too many failed sign-ins; try again in a few minutes",
                );
            }
        }
        let accounts = s.auth.accounts();
        let admin_token = s.auth.local_admin_token();
        let ok = match password_matches(
            failures,
            &accounts,
            &c.username,
            &c.password,
            admin_token.as_deref(),
        )
        .await
        {
            Some(ok) => ok,
            None => {
                return error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "too many sign-ins at once; try again",
                );
            }
        };
        if !ok {
            s.auth.counted("password", "invalid");
            tracing::info!(user = %c.username, "sign-in refused");
            return error(StatusCode::UNAUTHORIZED, "invalid username or password");
        }
        failures.succeeded(&c.username);
        let ttl = accounts.session.unwrap_or(DEFAULT_SESSION);
        let now = now_secs();
        // Signed in with the admin's token (not Argo CD's admin.password): the session ends
        // when the token changes.
        let by_token = admin_token
            .as_deref()
            .filter(|t| c.username == "admin" && flotilla_controller::webhook::ct_eq(c.password.as_bytes(), t.as_bytes()));
        match sign(&key, &c.username, now, ttl, by_token) {
            Err(e) => error(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("signing the session: {e}"),
            ),
            Ok(token) => {
                s.auth.counted("password", "ok");
                tracing::info!(user = %c.username, "signed in");
                crate::oidc::with_cookies(
                    Json(json!({"username": c.username})).into_response(),
                    &[session_cookie(&token, ttl.as_secs(), over_https(&headers))],
                )
            }
        }
    }
    .await;
    count(&s, "session_create", resp)
}

/// `DELETE /api/v1/session`: sign out. The cookie is cleared and the session revoked for
/// every replica (recorded in `argocd-secret` until it would have expired).
async fn delete(State(s): State<Arc<Server>>, headers: HeaderMap) -> Response {
    let claims = crate::auth::credential(&headers)
        .zip(s.auth.server_key())
        .and_then(|(token, key)| decode(&key, token).ok());
    if let Some(c) = claims {
        s.auth.revoke(&c.jti, c.exp);
        if let Err(e) = record_revocation(&s, &c.jti, c.exp).await {
            tracing::warn!(error = %e, secret = crate::auth::SETTINGS_SECRET, "recording a revoked session failed; other replicas accept it until it expires");
        }
    }
    let resp = crate::oidc::with_cookies(
        Json(json!({})).into_response(),
        &[session_cookie("", 0, over_https(&headers))],
    );
    count(&s, "session_delete", resp)
}

/// The `argocd-secret` data patch recording `jti` (valid until `exp`) as revoked: expired
/// records removed, and the soonest to expire beyond [`MAX_REVOKED`].
fn revocation_patch(
    revoked: &BTreeMap<String, i64>,
    jti: &str,
    exp: i64,
    now: i64,
) -> serde_json::Map<String, Value> {
    use base64::Engine;
    let mut live: Vec<(i64, &str)> = revoked
        .iter()
        .filter(|(id, until)| **until >= now && id.as_str() != jti)
        .map(|(id, until)| (*until, id.as_str()))
        .collect();
    live.sort_unstable();
    let over = (live.len() + 1).saturating_sub(MAX_REVOKED);
    let dropped = live[..over].iter().map(|(_, id)| *id);
    let expired = revoked
        .iter()
        .filter(|(_, until)| **until < now)
        .map(|(id, _)| id.as_str());
    let mut data = serde_json::Map::new();
    for old in expired.chain(dropped) {
        data.insert(format!("{REVOKED_PREFIX}{old}"), Value::Null);
    }
    data.insert(
        format!("{REVOKED_PREFIX}{jti}"),
        base64::engine::general_purpose::STANDARD
            .encode(exp.to_string())
            .into(),
    );
    data
}

/// Record `jti` as revoked in `argocd-secret`, which every replica watches.
async fn record_revocation(s: &Server, jti: &str, exp: i64) -> Result<(), kube::Error> {
    let data = revocation_patch(&s.auth.accounts().revoked, jti, exp, now_secs());
    let secrets: kube::Api<k8s_openapi::api::core::v1::Secret> =
        kube::Api::namespaced(s.actions.client.clone(), &s.namespace);
    secrets
        .patch(
            crate::auth::SETTINGS_SECRET,
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(json!({"data": data})),
        )
        .await
        .map(|_| ())
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
            // An application's object in either of Argo CD's forms (`<project>/<name>`, or
            // `<project>/<namespace>/<name>`) is asked about as the API checks that app.
            let yes = if resource == "applications" {
                s.can_app(
                    &who,
                    &action,
                    &crate::rbac::AppObject::parse(&s.namespace, &object),
                )
            } else {
                s.can(&who, &resource, &action, &object)
            };
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

    fn now() -> i64 {
        now_secs()
    }

    #[test]
    fn revocations_drop_the_expired_and_stay_bounded() {
        let mut revoked: BTreeMap<String, i64> = (0..MAX_REVOKED)
            .map(|i| (format!("r{i}"), 1_000 + i as i64))
            .collect();
        revoked.insert("old".into(), 10);
        let patch = revocation_patch(&revoked, "new", 5_000_000, 100);
        assert!(patch[&format!("{REVOKED_PREFIX}old")].is_null(), "expired");
        assert!(
            patch[&format!("{REVOKED_PREFIX}r0")].is_null(),
            "soonest to expire, over the cap"
        );
        assert!(!patch.contains_key(&format!("{REVOKED_PREFIX}r1")));
        assert_eq!(patch[&format!("{REVOKED_PREFIX}new")], "NTAwMDAwMA==");
        assert_eq!(patch.len(), 3);
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
            ("admin.password", "$2a$10$admin"),
            ("session.revoked.abc", "1767323045"),
        ]);
        let a = Accounts::parse(&cm, &secret);
        assert_eq!(a.session, Some(Duration::from_secs(5400)));
        assert!(a.accounts["alice"].login && a.accounts["alice"].enabled);
        assert_eq!(a.accounts["alice"].password_mtime, Some(1_767_323_045));
        assert_eq!(a.revoked.get("abc"), Some(&1_767_323_045));
        assert!(a.may_sign_in("alice", false).is_some());
        assert!(a.may_sign_in("bot", false).is_none(), "apiKey only");
        assert!(a.may_sign_in("carol", false).is_none(), "disabled");
        assert!(a.may_sign_in("nobody", false).is_none());
        assert!(
            a.may_sign_in("admin", false).is_none(),
            "admin.enabled false: admin.password is off"
        );
        assert!(!a.admin_password_on());
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
    fn sessions_are_signed_checked_revoked_and_voided_by_a_password_change() {
        let key = b"server key";
        let cm = map(&[("accounts.alice", "login")]);
        let mut secret = bytes(&[("accounts.alice.password", "$2a$10$x")]);
        let accounts = Accounts::parse(&cm, &secret);
        let t = sign(key, "alice", now(), DEFAULT_SESSION, None).expect("sign");
        assert_eq!(
            verify(key, &t, &accounts, None).map(|p| p.subject),
            Ok("alice".to_string())
        );
        assert_eq!(
            verify(b"another key", &t, &accounts, None),
            Err(AuthError::Invalid)
        );
        let expired = sign(key, "alice", now() - 100_000, DEFAULT_SESSION, None).expect("sign");
        assert_eq!(
            verify(key, &expired, &accounts, None),
            Err(AuthError::Invalid)
        );
        // Revoked (signed out): refused.
        let jti = decode(key, &t).expect("claims").jti;
        let mut revoked = accounts.clone();
        revoked.revoked.insert(jti, now() + 100);
        assert_eq!(verify(key, &t, &revoked, None), Err(AuthError::Invalid));
        secret.insert(
            "accounts.alice.passwordMtime".into(),
            jiff::Timestamp::from_second(now() + 10)
                .expect("ts")
                .to_string()
                .into_bytes(),
        );
        let changed = Accounts::parse(&cm, &secret);
        assert_eq!(
            verify(key, &t, &changed, None),
            Err(AuthError::Invalid),
            "issued before the password changed"
        );
        let gone = Accounts::parse(&BTreeMap::new(), &secret);
        assert_eq!(verify(key, &t, &gone, None), Err(AuthError::Invalid));
    }

    #[test]
    fn an_admin_session_from_the_token_ends_when_the_token_changes() {
        let key = b"server key";
        let none = Accounts::default();
        let t = sign(key, "admin", now(), DEFAULT_SESSION, Some("token-1")).expect("sign");
        assert!(verify(key, &t, &none, Some("token-1")).is_ok());
        assert_eq!(
            verify(key, &t, &none, Some("token-2")),
            Err(AuthError::Invalid)
        );
        assert_eq!(
            verify(key, &t, &none, None),
            Err(AuthError::Invalid),
            "admin off"
        );
        // A session from admin.password needs admin.password on, whatever the token.
        let p = sign(key, "admin", now(), DEFAULT_SESSION, None).expect("sign");
        assert_eq!(
            verify(key, &p, &none, Some("token-1")),
            Err(AuthError::Invalid)
        );
        let with_password =
            Accounts::parse(&BTreeMap::new(), &bytes(&[("admin.password", "$2a$10$x")]));
        assert!(verify(key, &p, &with_password, None).is_ok());
        // A token fingerprint on another account's session is forged.
        let odd = sign(key, "alice", now(), DEFAULT_SESSION, Some("token-1")).expect("sign");
        let alice = Accounts::parse(&map(&[("accounts.alice", "login")]), &BTreeMap::new());
        assert_eq!(
            verify(key, &odd, &alice, Some("token-1")),
            Err(AuthError::Invalid)
        );
    }

    #[test]
    fn every_attempt_counts_until_it_succeeds() {
        let f = Failures::default();
        // Parallel guesses: only MAX_FAILURES get to be checked at all.
        let allowed = (0..20).filter(|_| f.attempt("alice").is_ok()).count();
        assert_eq!(allowed, MAX_FAILURES as usize);
        assert_eq!(f.attempt("alice"), Err(Refused::Locked));
        assert!(f.attempt("bob").is_ok(), "another user is not locked");
        f.succeeded("alice");
        assert!(f.attempt("alice").is_ok());
    }

    #[test]
    fn a_flood_of_made_up_names_does_not_unlock_an_account() {
        let f = Failures::default();
        for _ in 0..MAX_FAILURES {
            assert!(f.attempt("carol").is_ok());
        }
        for i in 0..FAILURES_KEPT + 5 {
            let _ = f.attempt(&format!("junk{i}"));
        }
        assert_eq!(f.attempt("carol"), Err(Refused::Locked));
        assert_eq!(f.attempt("yet-another"), Err(Refused::Flooded));
    }

    #[tokio::test]
    async fn a_refusal_costs_a_bcrypt_whether_or_not_the_account_exists() {
        let hash = bcrypt::hash("right", 4).expect("hash");
        let accounts = Accounts::parse(
            &map(&[("accounts.alice", "login")]),
            &bytes(&[("accounts.alice.password", hash.as_str())]),
        );
        let f = Failures::default();
        let check = |name: &'static str, pw: &'static str| {
            let (f, accounts) = (&f, &accounts);
            async move { password_matches(f, accounts, name, pw, Some("admin-token")).await }
        };
        assert_eq!(check("alice", "right").await, Some(true));
        assert_eq!(check("alice", "wrong").await, Some(false));
        assert_eq!(check("admin", "admin-token").await, Some(true));
        assert_eq!(check("alice", "admin-token").await, Some(false));
        // An unknown user runs the stand-in hash (cost 10): at least as slow as a real check.
        let t = std::time::Instant::now();
        assert_eq!(check("nobody", "right").await, Some(false));
        let unknown = t.elapsed();
        let t = std::time::Instant::now();
        let _ = bcrypt::verify("x", dummy_hash());
        assert!(
            unknown * 2 >= t.elapsed(),
            "{unknown:?} for an unknown user vs {:?} for one bcrypt",
            t.elapsed()
        );
    }
}
