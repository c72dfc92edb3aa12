//! Single sign-on with an OpenID Connect provider, configured as Argo CD configures it:
//! `argocd-cm` keys `url` and `oidc.config` (`name`, `issuer`, `clientID`, `clientSecret` — a
//! literal or a `$key` reference into the Secret `argocd-secret`, or `$secret:key` into another
//! Secret labelled `app.kubernetes.io/part-of: argocd` — `cliClientID`, `requestedScopes`,
//! `allowedAudiences`, `rootCA`).
//!
//! The provider is found by discovery (`/.well-known/openid-configuration`); its signing keys
//! (JWKS) are cached, and a token signed with a key id the cache does not know makes the server
//! fetch the keys again (at most once per [`JWKS_REFETCH`]), so the provider can rotate keys.
//! An ID token is accepted when its signature (asymmetric algorithms only), `iss`, `aud`
//! (`allowedAudiences`, else `clientID` or `cliClientID`), `exp` and `nbf` (with
//! [`LEEWAY`]) hold.
//!
//! Browsers sign in with the authorization-code flow and PKCE (S256): `GET /auth/login` sends
//! them to the provider with `state`, `nonce` and the code challenge, all kept in a short-lived
//! cookie encrypted with the server's key (so any replica can finish the flow); `GET
//! /auth/callback` exchanges the code (with the verifier and the client secret), checks the ID
//! token and its nonce, sets the HttpOnly cookie `flotilla.token` and returns to a *relative*
//! `return_url`. No token, code, cookie or secret is ever logged.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use ring::aead;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::api::Server;
use crate::jwt::{b64, b64_decode};

/// The cookie holding a browser's ID token.
pub const TOKEN_COOKIE: &str = "flotilla.token";
/// The cookie holding a sign-in in progress (encrypted).
const STATE_COOKIE: &str = "flotilla.oauthstate";
/// How long a sign-in may take.
const STATE_TTL: u64 = 300;
/// Clock skew tolerated on `exp`, `nbf` and `iat`.
pub const LEEWAY: u64 = 30;
/// At most one JWKS fetch per this long (unknown key ids do not hammer the provider).
pub const JWKS_REFETCH: Duration = Duration::from_secs(10);
/// Keys older than this are fetched again on next use (removed keys stop working).
const JWKS_MAX_AGE: Duration = Duration::from_secs(15 * 60);
/// Largest discovery document, key set or token response read.
const MAX_DOCUMENT: usize = 1 << 20;
/// Browsers keep cookies up to about 4 KiB.
const MAX_COOKIE: usize = 4000;

/// The asymmetric algorithms an ID token may be signed with (never HMAC, never `none`).
const ALGORITHMS: &[Algorithm] = &[
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

/// Where the client secret comes from.
#[derive(Clone, PartialEq, Eq)]
pub enum SecretRef {
    None,
    Literal(String),
    /// `$key`: key of `argocd-secret`.
    Key(String),
    /// `$secret:key`: key of another Secret (labelled `app.kubernetes.io/part-of: argocd`).
    Other(String, String),
}

impl std::fmt::Debug for SecretRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SecretRef::None => write!(f, "none"),
            SecretRef::Literal(_) => write!(f, "literal(***)"),
            SecretRef::Key(k) => write!(f, "$argocd-secret:{k}"),
            SecretRef::Other(s, k) => write!(f, "${s}:{k}"),
        }
    }
}

impl SecretRef {
    fn parse(v: Option<String>) -> Self {
        match v {
            None => SecretRef::None,
            Some(s) if s.is_empty() => SecretRef::None,
            Some(s) => match s.strip_prefix('$') {
                Some(rest) => match rest.split_once(':') {
                    Some((secret, key)) => SecretRef::Other(secret.into(), key.into()),
                    None => SecretRef::Key(rest.into()),
                },
                None => SecretRef::Literal(s),
            },
        }
    }
}

/// `oidc.config` (plus `url`), parsed. `Debug` never shows the secret.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct OidcSettings {
    pub name: String,
    pub issuer: String,
    pub client_id: String,
    /// Resolved client secret (after `$` references).
    pub client_secret: Option<String>,
    pub cli_client_id: Option<String>,
    pub requested_scopes: Vec<String>,
    /// Accepted `aud` values (default: clientID and cliClientID).
    pub allowed_audiences: Vec<String>,
    pub root_ca: Option<String>,
    /// argocd-cm `url`: the server's external URL (the browser flow's redirect URI base).
    pub url: Option<String>,
}

impl std::fmt::Debug for OidcSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OidcSettings")
            .field("name", &self.name)
            .field("issuer", &self.issuer)
            .field("client_id", &self.client_id)
            .field("client_secret", &self.client_secret.as_ref().map(|_| "***"))
            .field("cli_client_id", &self.cli_client_id)
            .field("requested_scopes", &self.requested_scopes)
            .field("url", &self.url)
            .finish()
    }
}

impl OidcSettings {
    /// The `aud` values an ID token may carry.
    pub fn audiences(&self) -> Vec<String> {
        if !self.allowed_audiences.is_empty() {
            return self.allowed_audiences.clone();
        }
        std::iter::once(self.client_id.clone())
            .chain(self.cli_client_id.clone())
            .collect()
    }

    fn redirect_uri(&self) -> Option<String> {
        self.url
            .as_deref()
            .map(|u| format!("{}/auth/callback", u.trim_end_matches('/')))
    }

    fn secure(&self) -> bool {
        self.url
            .as_deref()
            .is_some_and(|u| u.starts_with("https://"))
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawOidc {
    #[serde(default)]
    name: String,
    #[serde(default)]
    issuer: String,
    #[serde(default, rename = "clientID")]
    client_id: String,
    #[serde(default)]
    client_secret: Option<String>,
    #[serde(default, rename = "cliClientID")]
    cli_client_id: Option<String>,
    #[serde(default)]
    requested_scopes: Option<Vec<String>>,
    #[serde(default)]
    allowed_audiences: Option<Vec<String>>,
    #[serde(default, rename = "rootCA")]
    root_ca: Option<String>,
    #[serde(default, rename = "enablePKCEAuthentication")]
    _enable_pkce: Option<Value>,
    #[serde(flatten)]
    other: BTreeMap<String, Value>,
}

/// `oidc.config` as written: settings whose secret is still a reference, and the keys that
/// are accepted but not honoured (to log).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parsed {
    pub settings: OidcSettings,
    pub secret: SecretRef,
    pub ignored: Vec<String>,
}

/// Parse argocd-cm's `oidc.config` (and `url`). `Ok(None)` when SSO is not configured.
pub fn parse_config(cm: &BTreeMap<String, String>) -> Result<Option<Parsed>, String> {
    let Some(text) = cm.get("oidc.config").filter(|t| !t.trim().is_empty()) else {
        return Ok(None);
    };
    let raw: RawOidc =
        serde_yaml::from_str(text).map_err(|e| format!("argocd-cm oidc.config: {e}"))?;
    if raw.issuer.trim().is_empty() || raw.client_id.trim().is_empty() {
        return Err("argocd-cm oidc.config: issuer and clientID are required".into());
    }
    let issuer = raw.issuer.trim().to_string();
    let url = url::Url::parse(&issuer).map_err(|e| format!("oidc.config issuer: {e}"))?;
    let loopback = match url.host() {
        Some(url::Host::Ipv4(a)) => a.is_loopback(),
        Some(url::Host::Ipv6(a)) => a.is_loopback(),
        Some(url::Host::Domain(d)) => d == "localhost",
        None => false,
    };
    if url.scheme() != "https" && !(url.scheme() == "http" && loopback) {
        return Err(format!(
            "oidc.config issuer {issuer}: must be https (plain http only on loopback)"
        ));
    }
    let mut scopes = raw
        .requested_scopes
        .unwrap_or_else(|| vec!["openid".into(), "profile".into(), "email".into()]);
    if !scopes.iter().any(|s| s == "openid") {
        scopes.insert(0, "openid".into());
    }
    let site = cm
        .get("url")
        .map(|u| u.trim().trim_end_matches('/').to_string())
        .filter(|u| !u.is_empty());
    Ok(Some(Parsed {
        settings: OidcSettings {
            name: if raw.name.is_empty() {
                "SSO".into()
            } else {
                raw.name
            },
            issuer,
            client_id: raw.client_id,
            client_secret: None,
            cli_client_id: raw.cli_client_id.filter(|c| !c.is_empty()),
            requested_scopes: scopes,
            allowed_audiences: raw.allowed_audiences.unwrap_or_default(),
            root_ca: raw.root_ca.filter(|c| !c.trim().is_empty()),
            url: site,
        },
        secret: SecretRef::parse(raw.client_secret),
        ignored: raw.other.into_keys().collect(),
    }))
}

/// The provider's discovery document (what Flotilla uses of it).
#[derive(Debug, Clone, Deserialize)]
pub struct Discovery {
    pub issuer: String,
    pub authorization_endpoint: String,
    pub token_endpoint: String,
    pub jwks_uri: String,
    #[serde(default)]
    pub token_endpoint_auth_methods_supported: Vec<String>,
}

struct Key {
    kid: Option<String>,
    alg: Option<Algorithm>,
    /// Which JWT algorithms this key can check.
    fits: Vec<Algorithm>,
    key: DecodingKey,
}

struct Jwks {
    keys: Vec<Arc<Key>>,
    fetched: Instant,
}

/// Why an ID token was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// The token is not valid (the reason names no part of it).
    #[error("invalid ID token: {0}")]
    Invalid(String),
    /// The provider could not be reached to check it.
    #[error("identity provider unavailable: {0}")]
    Unavailable(String),
}

/// A discovered provider: its documents, a client, the cached keys.
pub struct Provider {
    pub settings: OidcSettings,
    pub doc: Discovery,
    http: reqwest::Client,
    jwks: RwLock<Jwks>,
    /// When the keys were last fetched (or tried); the lock makes fetches single-flight.
    last_fetch: tokio::sync::Mutex<Option<Instant>>,
}

fn describe(e: reqwest::Error) -> String {
    flotilla_core::redact::redact_text(&e.without_url().to_string())
}

async fn read_limited(mut resp: reqwest::Response) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(describe)? {
        if out.len() + chunk.len() > MAX_DOCUMENT {
            return Err(format!("response larger than {MAX_DOCUMENT} bytes"));
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

async fn get_json(http: &reqwest::Client, url: &str) -> Result<Value, String> {
    let shown = flotilla_core::redact::redact_url(url);
    let resp = http
        .get(url)
        .header(header::ACCEPT, "application/json")
        .send()
        .await
        .map_err(|e| format!("{shown}: {}", describe(e)))?;
    let status = resp.status();
    let body = read_limited(resp)
        .await
        .map_err(|e| format!("{shown}: {e}"))?;
    if !status.is_success() {
        return Err(format!("{shown}: HTTP {status}"));
    }
    serde_json::from_slice(&body).map_err(|e| format!("{shown}: {e}"))
}

/// The usable signature keys of a JWK Set (encryption and symmetric keys skipped).
fn parse_jwks(doc: &Value) -> Vec<Arc<Key>> {
    let s = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
    let mut out = Vec::new();
    for k in doc["keys"].as_array().into_iter().flatten() {
        if s(k, "use").is_some_and(|u| u != "sig") {
            continue;
        }
        let alg = s(k, "alg").and_then(|a| a.parse::<Algorithm>().ok());
        let parsed = match (s(k, "kty").as_deref(), s(k, "crv").as_deref()) {
            (Some("RSA"), _) => match (s(k, "n"), s(k, "e")) {
                (Some(n), Some(e)) => DecodingKey::from_rsa_components(&n, &e)
                    .ok()
                    .map(|key| (key, ALGORITHMS[..6].to_vec())),
                _ => None,
            },
            (Some("EC"), Some(crv @ ("P-256" | "P-384"))) => match (s(k, "x"), s(k, "y")) {
                (Some(x), Some(y)) => DecodingKey::from_ec_components(&x, &y).ok().map(|key| {
                    let fit = if crv == "P-256" {
                        Algorithm::ES256
                    } else {
                        Algorithm::ES384
                    };
                    (key, vec![fit])
                }),
                _ => None,
            },
            (Some("OKP"), Some("Ed25519")) => s(k, "x")
                .and_then(|x| DecodingKey::from_ed_components(&x).ok())
                .map(|key| (key, vec![Algorithm::EdDSA])),
            _ => None,
        };
        if let Some((key, fits)) = parsed {
            if alg.is_some_and(|a| !fits.contains(&a)) {
                continue;
            }
            out.push(Arc::new(Key {
                kid: s(k, "kid"),
                alg,
                fits,
                key,
            }));
        }
    }
    out
}

impl Provider {
    /// Discover the provider of `settings` and fetch its keys.
    pub async fn discover(settings: OidcSettings) -> Result<Self, String> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut b = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .redirect(reqwest::redirect::Policy::limited(3));
        if let Some(ca) = &settings.root_ca {
            let cert = reqwest::Certificate::from_pem(ca.as_bytes())
                .map_err(|e| format!("oidc.config rootCA: {}", describe(e)))?;
            b = b.add_root_certificate(cert);
        }
        let http = b.build().map_err(describe)?;
        let issuer = settings.issuer.trim_end_matches('/');
        let doc: Discovery = serde_json::from_value(
            get_json(&http, &format!("{issuer}/.well-known/openid-configuration")).await?,
        )
        .map_err(|e| format!("discovery document of {issuer}: {e}"))?;
        if doc.issuer.trim_end_matches('/') != issuer {
            return Err(format!(
                "discovery document of {issuer} names another issuer ({})",
                doc.issuer
            ));
        }
        let keys = parse_jwks(&get_json(&http, &doc.jwks_uri).await?);
        if keys.is_empty() {
            return Err(format!("{} has no usable signing key", doc.jwks_uri));
        }
        Ok(Self {
            settings,
            doc,
            http,
            jwks: RwLock::new(Jwks {
                keys,
                fetched: Instant::now(),
            }),
            last_fetch: tokio::sync::Mutex::new(Some(Instant::now())),
        })
    }

    fn keys(&self) -> (Vec<Arc<Key>>, Instant) {
        match self.jwks.read() {
            Ok(j) => (j.keys.clone(), j.fetched),
            Err(p) => {
                let j = p.into_inner();
                (j.keys.clone(), j.fetched)
            }
        }
    }

    /// Fetch the keys again unless that was tried less than [`JWKS_REFETCH`] ago (then
    /// `Ok(false)`). One fetch at a time; callers that waited see its result.
    async fn refetch(&self) -> Result<bool, String> {
        let mut last = self.last_fetch.lock().await;
        if last.is_some_and(|t| t.elapsed() < JWKS_REFETCH) {
            return Ok(false);
        }
        *last = Some(Instant::now());
        let keys = parse_jwks(&get_json(&self.http, &self.doc.jwks_uri).await?);
        if keys.is_empty() {
            return Err(format!("{} has no usable signing key", self.doc.jwks_uri));
        }
        tracing::info!(issuer = %self.doc.issuer, keys = keys.len(), "identity provider keys fetched");
        if let Ok(mut j) = self.jwks.write() {
            *j = Jwks {
                keys,
                fetched: Instant::now(),
            };
        }
        Ok(true)
    }

    fn candidates(keys: &[Arc<Key>], kid: Option<&str>, alg: Algorithm) -> Vec<Arc<Key>> {
        keys.iter()
            .filter(|k| kid.is_none() || k.kid.as_deref() == kid)
            .filter(|k| k.fits.contains(&alg) && k.alg.is_none_or(|a| a == alg))
            .cloned()
            .collect()
    }

    /// Verify an ID token: signature by one of the provider's keys, `iss`, `aud`, `exp`,
    /// `nbf`; returns its claims.
    pub async fn verify(&self, token: &str) -> Result<Value, VerifyError> {
        crate::jwt::install();
        let invalid = |m: &str| VerifyError::Invalid(m.to_string());
        let header = jsonwebtoken::decode_header(token).map_err(|_| invalid("malformed"))?;
        if !ALGORITHMS.contains(&header.alg) {
            return Err(invalid("algorithm not accepted"));
        }
        let kid = header.kid.as_deref();
        let (keys, fetched) = self.keys();
        let mut found = Self::candidates(&keys, kid, header.alg);
        if found.is_empty() || fetched.elapsed() > JWKS_MAX_AGE {
            match self.refetch().await {
                Ok(_) => found = Self::candidates(&self.keys().0, kid, header.alg),
                Err(e) if found.is_empty() => {
                    tracing::warn!(issuer = %self.doc.issuer, error = %e, "fetching the identity provider's keys");
                    return Err(VerifyError::Unavailable(e));
                }
                Err(e) => {
                    tracing::warn!(issuer = %self.doc.issuer, error = %e, "refreshing the identity provider's keys; the cached ones stay")
                }
            }
        }
        if found.is_empty() {
            return Err(invalid("signed with an unknown key"));
        }
        let mut v = Validation::new(header.alg);
        v.set_issuer(&[self.doc.issuer.as_str()]);
        v.set_audience(&self.settings.audiences());
        v.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        v.validate_nbf = true;
        v.leeway = LEEWAY;
        let mut last = invalid("bad signature");
        for k in found.iter().take(8) {
            match jsonwebtoken::decode::<Value>(token, &k.key, &v) {
                Ok(data) => return Ok(data.claims),
                Err(e) => {
                    use jsonwebtoken::errors::ErrorKind as K;
                    last = invalid(match e.kind() {
                        K::ExpiredSignature => "expired",
                        K::ImmatureSignature => "not valid yet",
                        K::InvalidIssuer => "wrong issuer",
                        K::InvalidAudience => "wrong audience",
                        K::MissingRequiredClaim(_) => "a required claim is missing",
                        K::InvalidSignature => "bad signature",
                        _ => "invalid",
                    });
                    if !matches!(e.kind(), K::InvalidSignature | K::InvalidKeyFormat) {
                        break;
                    }
                }
            }
        }
        Err(last)
    }
}

/// What the SSO configuration is now (swapped whole when argocd-cm or argocd-secret change).
#[derive(Clone, Default)]
pub struct SsoState {
    /// argocd-cm has a non-empty `oidc.config` (even one that does not work).
    pub configured: bool,
    pub settings: Option<Arc<OidcSettings>>,
    /// The discovered provider, once discovery succeeded.
    pub provider: Option<Arc<Provider>>,
    /// argocd-cm `users.anonymous.enabled`.
    pub anonymous: bool,
    /// argocd-cm has been read at least once.
    pub loaded: bool,
}

/// The SSO state shared by every request.
#[derive(Default)]
pub struct Sso {
    state: RwLock<SsoState>,
}

impl Sso {
    pub fn get(&self) -> SsoState {
        match self.state.read() {
            Ok(s) => s.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    pub fn set(&self, s: SsoState) {
        match self.state.write() {
            Ok(mut slot) => *slot = s,
            Err(p) => *p.into_inner() = s,
        }
    }
}

/// PKCE: a random verifier and its S256 challenge.
pub fn pkce() -> (String, String) {
    let verifier = b64(rand::random::<[u8; 32]>());
    let challenge = pkce_challenge(&verifier);
    (verifier, challenge)
}

/// `BASE64URL(SHA256(verifier))` (RFC 7636 S256).
pub fn pkce_challenge(verifier: &str) -> String {
    b64(ring::digest::digest(
        &ring::digest::SHA256,
        verifier.as_bytes(),
    ))
}

/// `return_url` when it is a path on this server (never another origin: no scheme, no `//`,
/// no backslash, no control character), else `None`. Empty means `/`.
pub fn safe_return_url(u: &str) -> Option<&str> {
    if u.is_empty() {
        return Some("/");
    }
    let ok = u.len() <= 2048
        && u.starts_with('/')
        && !u.starts_with("//")
        && !u.contains('\\')
        && !u.chars().any(|c| c.is_control() || c == ' ');
    ok.then_some(u)
}

/// A sign-in in progress, kept in the encrypted state cookie.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, Deserialize)]
pub struct LoginState {
    pub state: String,
    pub nonce: String,
    pub verifier: String,
    pub return_url: String,
    pub expires: u64,
}

fn state_key(server_key: &[u8]) -> aead::LessSafeKey {
    let k = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, server_key);
    let derived = ring::hmac::sign(&k, b"flotilla oauth state v1");
    let unbound = aead::UnboundKey::new(&aead::CHACHA20_POLY1305, derived.as_ref())
        .expect("a 32-byte key is a ChaCha20-Poly1305 key");
    aead::LessSafeKey::new(unbound)
}

/// Encrypt a login state for the cookie (ChaCha20-Poly1305 under a key derived from the
/// server's key).
pub fn seal_state(server_key: &[u8], s: &LoginState) -> String {
    let key = state_key(server_key);
    let nonce_bytes: [u8; 12] = rand::random();
    let mut data = serde_json::to_vec(s).unwrap_or_default();
    let nonce = aead::Nonce::assume_unique_for_key(nonce_bytes);
    if key
        .seal_in_place_append_tag(nonce, aead::Aad::from(STATE_COOKIE.as_bytes()), &mut data)
        .is_err()
    {
        return String::new();
    }
    let mut out = nonce_bytes.to_vec();
    out.extend_from_slice(&data);
    b64(out)
}

/// Decrypt and check a login state cookie (`None` if forged, garbled or expired).
pub fn open_state(server_key: &[u8], sealed: &str, now: u64) -> Option<LoginState> {
    let raw = b64_decode(sealed)?;
    if raw.len() < 12 + 16 {
        return None;
    }
    let (n, rest) = raw.split_at(12);
    let nonce = aead::Nonce::try_assume_unique_for_key(n).ok()?;
    let mut data = rest.to_vec();
    let plain = state_key(server_key)
        .open_in_place(nonce, aead::Aad::from(STATE_COOKIE.as_bytes()), &mut data)
        .ok()?;
    let s: LoginState = serde_json::from_slice(plain).ok()?;
    (s.expires >= now).then_some(s)
}

/// The value of cookie `name` in `headers`.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim_matches('"'))
        .filter(|v| !v.is_empty())
}

/// An HttpOnly cookie (`same_site`: `Lax` for the SSO flow, whose callback arrives from the
/// provider's site; `Strict` for password sessions).
pub(crate) fn cookie_header(
    name: &str,
    value: &str,
    path: &str,
    max_age: u64,
    secure: bool,
    same_site: &str,
) -> String {
    format!(
        "{name}={value}; Path={path}; Max-Age={max_age}; HttpOnly; SameSite={same_site}{}",
        if secure { "; Secure" } else { "" }
    )
}

fn set_cookie(name: &str, value: &str, path: &str, max_age: u64, secure: bool) -> String {
    cookie_header(name, value, path, max_age, secure, "Lax")
}

pub fn now() -> u64 {
    jsonwebtoken::get_current_timestamp()
}

fn text(code: StatusCode, message: &str) -> Response {
    (
        code,
        axum::Json(json!({"error": message, "code": code.as_u16()})),
    )
        .into_response()
}

fn redirect(location: &str, cookies: &[String]) -> Response {
    let mut r = StatusCode::SEE_OTHER.into_response();
    if let Ok(v) = HeaderValue::from_str(location) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    with_cookies(r, cookies)
}

/// `resp` setting `cookies`, never cached.
pub(crate) fn with_cookies(mut resp: Response, cookies: &[String]) -> Response {
    for c in cookies {
        if let Ok(v) = HeaderValue::from_str(c) {
            resp.headers_mut().append(header::SET_COOKIE, v);
        }
    }
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

fn count(s: &Server, route: &'static str, resp: Response) -> Response {
    s.requests
        .get_or_create(&crate::api::RequestLabels {
            route,
            code: resp.status().as_u16(),
        })
        .inc();
    resp
}

#[derive(Debug, Default, Deserialize)]
pub struct LoginQuery {
    #[serde(default)]
    return_url: String,
}

/// `GET /auth/login?return_url=/path`: start the browser flow.
pub async fn login(
    State(s): State<Arc<Server>>,
    q: Result<Query<LoginQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let resp = (|| {
        let Ok(Query(q)) = q else {
            return text(StatusCode::BAD_REQUEST, "bad query");
        };
        let Some(return_url) = safe_return_url(&q.return_url) else {
            return text(
                StatusCode::BAD_REQUEST,
                "return_url must be a path on this server",
            );
        };
        let sso = s.auth.sso().get();
        let Some(p) = sso.provider else {
            return if sso.configured {
                text(StatusCode::SERVICE_UNAVAILABLE, "SSO is not ready")
            } else {
                text(StatusCode::NOT_FOUND, "SSO is not configured")
            };
        };
        let Some(redirect_uri) = p.settings.redirect_uri() else {
            return text(
                StatusCode::SERVICE_UNAVAILABLE,
                "argocd-cm url is not set: the browser flow needs the server's external URL",
            );
        };
        let Some(key) = s.auth.server_key() else {
            return text(
                StatusCode::SERVICE_UNAVAILABLE,
                "the server key is not loaded yet",
            );
        };
        let (verifier, challenge) = pkce();
        let st = LoginState {
            state: b64(rand::random::<[u8; 16]>()),
            nonce: b64(rand::random::<[u8; 16]>()),
            verifier,
            return_url: return_url.to_string(),
            expires: now() + STATE_TTL,
        };
        let Ok(mut to) = url::Url::parse(&p.doc.authorization_endpoint) else {
            return text(
                StatusCode::BAD_GATEWAY,
                "the provider's authorization endpoint is not a URL",
            );
        };
        to.query_pairs_mut()
            .append_pair("response_type", "code")
            .append_pair("client_id", &p.settings.client_id)
            .append_pair("redirect_uri", &redirect_uri)
            .append_pair("scope", &p.settings.requested_scopes.join(" "))
            .append_pair("state", &st.state)
            .append_pair("nonce", &st.nonce)
            .append_pair("code_challenge", &challenge)
            .append_pair("code_challenge_method", "S256");
        let cookie = set_cookie(
            STATE_COOKIE,
            &seal_state(&key, &st),
            "/auth/callback",
            STATE_TTL,
            p.settings.secure(),
        );
        redirect(to.as_str(), &[cookie])
    })();
    count(&s, "auth_login", resp)
}

#[derive(Debug, Default, Deserialize)]
pub struct CallbackQuery {
    #[serde(default)]
    code: String,
    #[serde(default)]
    state: String,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    error_description: Option<String>,
}

/// Exchange `code` at the token endpoint; the ID token it returns.
async fn exchange(
    p: &Provider,
    code: &str,
    verifier: &str,
) -> Result<String, (StatusCode, String)> {
    let redirect_uri = p.settings.redirect_uri().unwrap_or_default();
    let methods = &p.doc.token_endpoint_auth_methods_supported;
    let mut req = p
        .http
        .post(&p.doc.token_endpoint)
        .header(header::ACCEPT, "application/json");
    let body = {
        let mut form = url::form_urlencoded::Serializer::new(String::new());
        form.append_pair("grant_type", "authorization_code")
            .append_pair("code", code)
            .append_pair("redirect_uri", &redirect_uri)
            .append_pair("code_verifier", verifier);
        match &p.settings.client_secret {
            // client_secret_basic (the default), unless the provider only takes _post.
            Some(secret)
                if methods.is_empty() || methods.iter().any(|m| m == "client_secret_basic") =>
            {
                let enc = |s: &str| {
                    url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>()
                };
                req = req.basic_auth(enc(&p.settings.client_id), Some(enc(secret)));
            }
            Some(secret) => {
                form.append_pair("client_id", &p.settings.client_id)
                    .append_pair("client_secret", secret);
            }
            None => {
                form.append_pair("client_id", &p.settings.client_id);
            }
        }
        form.finish()
    };
    let resp = req
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .map_err(|e| {
            (
                StatusCode::BAD_GATEWAY,
                format!("token endpoint: {}", describe(e)),
            )
        })?;
    let status = resp.status();
    let body = read_limited(resp)
        .await
        .map_err(|e| (StatusCode::BAD_GATEWAY, format!("token endpoint: {e}")))?;
    let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    if !status.is_success() {
        // Only the OAuth error code: never the body (it may echo what was sent).
        let err = v["error"]
            .as_str()
            .unwrap_or("unknown")
            .chars()
            .take(64)
            .collect::<String>();
        return Err((
            StatusCode::UNAUTHORIZED,
            format!("the provider refused the code (HTTP {status}, {err})"),
        ));
    }
    v["id_token"].as_str().map(str::to_string).ok_or((
        StatusCode::BAD_GATEWAY,
        "the provider returned no ID token".into(),
    ))
}

/// `GET /auth/callback?code=&state=`: finish the browser flow.
pub async fn callback(
    State(s): State<Arc<Server>>,
    headers: HeaderMap,
    q: Result<Query<CallbackQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let resp = async {
        let Ok(Query(q)) = q else {
            return text(StatusCode::BAD_REQUEST, "bad query");
        };
        let sso = s.auth.sso().get();
        let Some(p) = sso.provider else {
            return text(StatusCode::SERVICE_UNAVAILABLE, "SSO is not ready");
        };
        let (Some(key), Some(sealed)) = (s.auth.server_key(), cookie(&headers, STATE_COOKIE))
        else {
            return text(StatusCode::BAD_REQUEST, "no sign-in in progress");
        };
        let Some(st) = open_state(&key, sealed, now()) else {
            return text(StatusCode::BAD_REQUEST, "the sign-in expired; start again");
        };
        if !flotilla_controller::webhook::ct_eq(st.state.as_bytes(), q.state.as_bytes()) {
            return text(StatusCode::BAD_REQUEST, "state mismatch");
        }
        if let Some(e) = q.error {
            let e: String = e
                .chars()
                .filter(|c| c.is_ascii_graphic())
                .take(64)
                .collect();
            let d: String = q
                .error_description
                .unwrap_or_default()
                .chars()
                .filter(|c| !c.is_control())
                .take(200)
                .collect();
            tracing::info!(error = %e, "sign-in refused by the identity provider");
            return text(
                StatusCode::UNAUTHORIZED,
                &format!("sign-in refused: {e} {d}"),
            );
        }
        if q.code.is_empty() {
            return text(StatusCode::BAD_REQUEST, "no code");
        }
        let id_token = match exchange(&p, &q.code, &st.verifier).await {
            Ok(t) => t,
            Err((code, m)) => {
                tracing::warn!(error = %m, "sign-in: code exchange failed");
                return text(code, &m);
            }
        };
        let claims = match p.verify(&id_token).await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "sign-in: the ID token was refused");
                s.auth.counted("oidc", "invalid");
                return text(StatusCode::UNAUTHORIZED, &e.to_string());
            }
        };
        if claims["aud"] != p.settings.client_id
            && !claims["aud"]
                .as_array()
                .is_some_and(|a| a.iter().any(|x| *x == p.settings.client_id))
        {
            return text(
                StatusCode::UNAUTHORIZED,
                "the ID token is not for this client",
            );
        }
        if !claims["nonce"]
            .as_str()
            .is_some_and(|n| flotilla_controller::webhook::ct_eq(n.as_bytes(), st.nonce.as_bytes()))
        {
            s.auth.counted("oidc", "invalid");
            return text(StatusCode::UNAUTHORIZED, "nonce mismatch");
        }
        if id_token.len() > MAX_COOKIE {
            return text(
                StatusCode::BAD_GATEWAY,
                "the ID token is too large for a cookie; ask for fewer claims",
            );
        }
        let max_age = claims["exp"].as_u64().unwrap_or(0).saturating_sub(now());
        tracing::info!(
            subject = %claims["sub"].as_str().unwrap_or_default(),
            "signed in through SSO"
        );
        s.auth.counted("oidc", "ok");
        let secure = p.settings.secure();
        redirect(
            &st.return_url,
            &[
                set_cookie(TOKEN_COOKIE, &id_token, "/", max_age, secure),
                set_cookie(STATE_COOKIE, "", "/auth/callback", 0, secure),
            ],
        )
    }
    .await;
    count(&s, "auth_callback", resp)
}

/// `GET /auth/logout`: forget the browser's token.
pub async fn logout(State(s): State<Arc<Server>>) -> Response {
    let secure = s.auth.sso().get().settings.is_some_and(|x| x.secure());
    let resp = redirect("/", &[set_cookie(TOKEN_COOKIE, "", "/", 0, secure)]);
    count(&s, "auth_logout", resp)
}

/// `GET /api/v1/auth/config` (no authentication): how to sign in. Nothing secret.
pub async fn auth_config(State(s): State<Arc<Server>>) -> Response {
    let sso = s.auth.sso().get();
    let body = match &sso.settings {
        Some(c) => json!({
            "sso": true, "ready": sso.provider.is_some(), "name": c.name, "issuer": c.issuer,
            "clientID": c.client_id, "cliClientID": c.cli_client_id.as_deref().unwrap_or(&c.client_id),
            "scopes": c.requested_scopes, "url": c.url,
            "loginPath": "/auth/login", "localAdmin": s.auth.local_admin_enabled(),
        }),
        None => {
            json!({"sso": false, "configured": sso.configured, "localAdmin": s.auth.local_admin_enabled()})
        }
    };
    count(&s, "auth_config", axum::Json(body).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pkce_s256_is_rfc_7636() {
        // RFC 7636 appendix B.
        assert_eq!(
            pkce_challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
        let (v, c) = pkce();
        assert!(v.len() >= 43 && pkce_challenge(&v) == c);
    }

    #[test]
    fn only_local_paths_are_return_urls() {
        for ok in ["", "/", "/applications?x=1", "/a/b#c"] {
            assert!(safe_return_url(ok).is_some(), "{ok}");
        }
        for bad in [
            "https://evil.example",
            "//evil.example",
            "/\\evil.example",
            "\\\\evil",
            "javascript:alert(1)",
            "evil.example",
            "/\tx",
            "/ x",
        ] {
            assert!(safe_return_url(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn state_cookies_are_sealed_and_expire() {
        let st = LoginState {
            state: "s".into(),
            nonce: "n".into(),
            verifier: "v".into(),
            return_url: "/".into(),
            expires: 1000,
        };
        let sealed = seal_state(b"key", &st);
        assert!(!sealed.contains("\"v\""));
        assert_eq!(open_state(b"key", &sealed, 999), Some(st.clone()));
        assert_eq!(open_state(b"key", &sealed, 1001), None, "expired");
        assert_eq!(open_state(b"other", &sealed, 999), None, "another key");
        let mut raw = b64_decode(&sealed).expect("b64");
        let last = raw.len() - 1;
        raw[last] ^= 1;
        assert_eq!(open_state(b"key", &b64(raw), 999), None, "tampered");
    }

    #[test]
    fn config_is_parsed_as_argo_cd_writes_it() {
        let cm: BTreeMap<String, String> = [
            ("url".to_string(), "https://cd.example.com/".to_string()),
            (
                "oidc.config".to_string(),
                "name: Okta\nissuer: https://idp.example.com\nclientID: flotilla\nclientSecret: $oidc.okta.clientSecret\ncliClientID: flotilla-cli\nrequestedScopes: [openid, groups]\nrequestedIDTokenClaims: {groups: {essential: true}}\n".to_string(),
            ),
        ]
        .into();
        let p = parse_config(&cm).expect("parses").expect("configured");
        assert_eq!(p.settings.name, "Okta");
        assert_eq!(p.secret, SecretRef::Key("oidc.okta.clientSecret".into()));
        assert_eq!(p.settings.audiences(), ["flotilla", "flotilla-cli"]);
        assert_eq!(
            p.settings.redirect_uri().as_deref(),
            Some("https://cd.example.com/auth/callback")
        );
        assert_eq!(p.ignored, ["requestedIDTokenClaims"]);
        assert!(p.settings.secure());
        assert!(!format!("{:?}", SecretRef::Literal("hunter2".into())).contains("hunter2"));
        let mut http = cm.clone();
        http.insert(
            "oidc.config".into(),
            "issuer: http://idp.example.com\nclientID: x".into(),
        );
        assert!(parse_config(&http).is_err(), "plain http off loopback");
        http.insert(
            "oidc.config".into(),
            "issuer: http://127.0.0.1:5556\nclientID: x\nclientSecret: $dex:secret".into(),
        );
        let p = parse_config(&http).expect("loopback").expect("configured");
        assert_eq!(p.secret, SecretRef::Other("dex".into(), "secret".into()));
        assert_eq!(p.settings.requested_scopes, ["openid", "profile", "email"]);
        assert_eq!(parse_config(&BTreeMap::new()), Ok(None));
    }

    /// A provider for `https://idp.example` with one ES256 key (kid `k1`), no network.
    fn provider() -> (Provider, Vec<u8>) {
        use ring::signature::{self as sig, KeyPair};
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = sig::EcdsaKeyPair::generate_pkcs8(&sig::ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .expect("generate");
        let pair = sig::EcdsaKeyPair::from_pkcs8(
            &sig::ECDSA_P256_SHA256_FIXED_SIGNING,
            pkcs8.as_ref(),
            &rng,
        )
        .expect("key");
        let pk = pair.public_key().as_ref();
        let jwks = json!({"keys": [{"kty": "EC", "crv": "P-256", "kid": "k1", "alg": "ES256",
                                    "x": b64(&pk[1..33]), "y": b64(&pk[33..])}]});
        let settings = OidcSettings {
            issuer: "https://idp.example".into(),
            client_id: "flotilla".into(),
            cli_client_id: Some("flotilla-cli".into()),
            ..Default::default()
        };
        let doc = Discovery {
            issuer: "https://idp.example".into(),
            authorization_endpoint: "https://idp.example/auth".into(),
            token_endpoint: "https://idp.example/token".into(),
            // Nothing listens here: a refetch fails at once.
            jwks_uri: "http://127.0.0.1:9/keys".into(),
            token_endpoint_auth_methods_supported: Vec::new(),
        };
        let p = Provider {
            settings,
            doc,
            http: {
                let _ = rustls::crypto::ring::default_provider().install_default();
                reqwest::Client::new()
            },
            jwks: RwLock::new(Jwks {
                keys: parse_jwks(&jwks),
                fetched: Instant::now(),
            }),
            last_fetch: tokio::sync::Mutex::new(Some(Instant::now())),
        };
        (p, pkcs8.as_ref().to_vec())
    }

    fn sign_es256(pkcs8: &[u8], header: &Value, claims: &Value) -> String {
        use ring::signature as sig;
        let rng = ring::rand::SystemRandom::new();
        let key = sig::EcdsaKeyPair::from_pkcs8(&sig::ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8, &rng)
            .expect("key");
        let m = format!("{}.{}", b64(header.to_string()), b64(claims.to_string()));
        let s = key.sign(&rng, m.as_bytes()).expect("sign");
        format!("{m}.{}", b64(s.as_ref()))
    }

    #[tokio::test]
    async fn id_tokens_are_checked_for_issuer_audience_time_and_algorithm() {
        let (p, key) = provider();
        let h = json!({"alg": "ES256", "kid": "k1"});
        let t = now();
        let good = json!({"iss": "https://idp.example", "aud": "flotilla", "sub": "alice",
                          "exp": t + 300, "iat": t, "groups": ["devs"]});
        let claims = p.verify(&sign_es256(&key, &h, &good)).await.expect("valid");
        assert_eq!(claims["sub"], "alice");
        // The CLI's client ID is an audience too (a list is fine).
        let mut cli = good.clone();
        cli["aud"] = json!(["flotilla-cli", "other"]);
        assert!(p.verify(&sign_es256(&key, &h, &cli)).await.is_ok());
        let refused = |what: &str, v: Value| {
            let mut c = good.clone();
            c[what] = v;
            c
        };
        for (why, c) in [
            ("expired", refused("exp", json!(t - 120))),
            ("not valid yet", refused("nbf", json!(t + 120))),
            (
                "wrong issuer",
                refused("iss", json!("https://evil.example")),
            ),
            ("wrong audience", refused("aud", json!("someone-else"))),
        ] {
            assert_eq!(
                p.verify(&sign_es256(&key, &h, &c)).await,
                Err(VerifyError::Invalid(why.into())),
                "{why}"
            );
        }
        // Within the leeway: accepted.
        assert!(
            p.verify(&sign_es256(&key, &h, &refused("exp", json!(t - 5))))
                .await
                .is_ok()
        );
        // A token the key did not sign.
        let (_, other) = provider();
        assert!(matches!(
            p.verify(&sign_es256(&other, &h, &good)).await,
            Err(VerifyError::Invalid(_))
        ));
        // alg none, and HS256 "signed" with the public key: refused before any key is used.
        let none = format!(
            "{}.{}.",
            b64(r#"{"alg":"none","kid":"k1"}"#),
            b64(good.to_string())
        );
        assert!(matches!(
            p.verify(&none).await,
            Err(VerifyError::Invalid(_))
        ));
        let pk = p.keys().0[0]
            .key
            .try_get_as_bytes()
            .expect("bytes")
            .to_vec();
        let m = format!(
            "{}.{}",
            b64(r#"{"alg":"HS256","kid":"k1"}"#),
            b64(good.to_string())
        );
        let mac = ring::hmac::sign(
            &ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &pk),
            m.as_bytes(),
        );
        let hs = format!("{m}.{}", b64(mac.as_ref()));
        assert_eq!(
            p.verify(&hs).await,
            Err(VerifyError::Invalid("algorithm not accepted".into()))
        );
        // An unknown key id: the keys are fetched again (here the provider is down: 503).
        let unknown = sign_es256(&key, &json!({"alg": "ES256", "kid": "k2"}), &good);
        *p.last_fetch.lock().await = None;
        assert!(matches!(
            p.verify(&unknown).await,
            Err(VerifyError::Unavailable(_))
        ));
        // ...and not again within the refetch interval: then simply unknown.
        assert_eq!(
            p.verify(&unknown).await,
            Err(VerifyError::Invalid("signed with an unknown key".into()))
        );
    }

    #[test]
    fn jwks_keep_only_signature_keys() {
        let doc = json!({"keys": [
            {"kty": "oct", "k": "c2VjcmV0", "kid": "hmac"},
            {"kty": "EC", "crv": "P-256", "kid": "enc", "use": "enc", "x": "AA", "y": "AA"},
            {"kty": "RSA", "kid": "r1", "n": "sXchDaQebHnPiGvyDOAT4saGEUetSyo9MKLOoWFsueri23bOdgWp4Dy1WlUzewbgBHod5pcM9H95GQRV3JDXboIRROSBigeC5yjU1hGzHHyXss8UDprecbAYxknTcQkhslANGRUZmdTOQ5qTRsLAt6BTYuyvVRdhS8exSZEy_c4gs_7svlJJQ4H9_NxsiIoLwAEk7-Q3UXERGYw_75IDrGA84-lA_-Ct4eTlXHBIY2EaV7t7LjJaynVJCpkv4LKjTTAumiGUIuQhrNhZLuF_RJLqHpM2kgWFLU7-VTdL1VbC2tejvcI2BlMkEpk1BzBZI0KQB0GaDWFLN-aEAw3vRw", "e": "AQAB", "alg": "RS256"},
            {"kty": "RSA", "kid": "r2", "n": "sXchDaQebHnPiGvyDOAT4saGEUetSyo9MKLOoWFsueri23bOdgWp4Dy1WlUzewbgBHod5pcM9H95GQRV3JDXboIRROSBigeC5yjU1hGzHHyXss8UDprecbAYxknTcQkhslANGRUZmdTOQ5qTRsLAt6BTYuyvVRdhS8exSZEy_c4gs_7svlJJQ4H9_NxsiIoLwAEk7-Q3UXERGYw_75IDrGA84-lA_-Ct4eTlXHBIY2EaV7t7LjJaynVJCpkv4LKjTTAumiGUIuQhrNhZLuF_RJLqHpM2kgWFLU7-VTdL1VbC2tejvcI2BlMkEpk1BzBZI0KQB0GaDWFLN-aEAw3vRw", "e": "AQAB", "alg": "HS256"},
        ]});
        let keys = parse_jwks(&doc);
        assert_eq!(keys.len(), 1);
        assert_eq!(keys[0].kid.as_deref(), Some("r1"));
        assert!(Provider::candidates(&keys, Some("r1"), Algorithm::RS256).len() == 1);
        assert!(Provider::candidates(&keys, Some("r1"), Algorithm::PS256).is_empty());
        assert!(Provider::candidates(&keys, Some("zz"), Algorithm::RS256).is_empty());
        assert!(Provider::candidates(&keys, None, Algorithm::ES256).is_empty());
    }
}
