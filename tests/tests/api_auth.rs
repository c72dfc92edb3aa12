//! End to end through real processes: signing in to `flotilla-server`. A test OpenID Connect
//! provider on loopback (discovery, JWKS, authorization and token endpoints, real RS256 and
//! ES256 signatures with keys made here) feeds ID tokens; argocd-rbac-cm's policy with group
//! claims decides; the provider rotates its key; a browser signs in with the authorization code
//! flow and PKCE, driven by hand. Then AppProject role tokens issued through the API, and a
//! ServiceAccount token from kubesim's TokenRequest checked by TokenReview. No credential may
//! reach the server's log.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use base64::Engine;
use flotilla_controller::types::AppProject;
use flotilla_loadtest::fleet::{ADMIN_TOKEN, Fleet, FleetConfig, metric_value};
use flotilla_tests::e2e::NS;
use flotilla_tests::eventually;
use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};
use ring::signature::{self as sig, KeyPair};
use serde_json::{Value, json};

fn b64(b: impl AsRef<[u8]>) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

/// An HTTP/1.0 answer with its headers.
struct Answer {
    code: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn cookies(&self) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case("set-cookie"))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or(Value::Null)
    }
}

/// One HTTP/1.0 request to `addr` (host:port).
async fn call(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<Answer> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr)
        .await
        .with_context(|| format!("connecting to {addr}"))?;
    let mut req = format!(
        "{method} {path} HTTP/1.0\r\nHost: {addr}\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).await?;
    s.write_all(body).await?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await?;
    let text = String::from_utf8_lossy(&buf).to_string();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let code = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    Ok(Answer {
        code,
        headers,
        body: body.to_string(),
    })
}

async fn get_as(api: &str, path: &str, token: &str) -> Result<Answer> {
    call(
        api,
        "GET",
        path,
        &[("Authorization", &format!("Bearer {token}"))],
        b"",
    )
    .await
}

async fn post_as(api: &str, path: &str, token: &str, body: &Value) -> Result<Answer> {
    call(
        api,
        "POST",
        path,
        &[
            ("Authorization", &format!("Bearer {token}")),
            ("Content-Type", "application/json"),
        ],
        body.to_string().as_bytes(),
    )
    .await
}

fn names(v: &Value) -> Vec<String> {
    v["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|i| i["name"].as_str().map(str::to_string))
        .collect()
}

/// A signing key of the test provider.
#[derive(Clone)]
enum Key {
    Rsa(Arc<sig::RsaKeyPair>),
    Ec(Arc<sig::EcdsaKeyPair>),
}

#[derive(Clone)]
struct Signer {
    kid: String,
    key: Key,
}

impl Signer {
    /// RS256 with a 2048-bit key made now (by openssl: ring does not generate RSA keys).
    fn rsa(kid: &str) -> Result<Self> {
        let out = std::process::Command::new("openssl")
            .args([
                "genpkey",
                "-algorithm",
                "RSA",
                "-pkeyopt",
                "rsa_keygen_bits:2048",
                "-outform",
                "DER",
            ])
            .output()
            .context("running openssl to make an RSA key")?;
        ensure!(
            out.status.success(),
            "openssl: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        // OpenSSL 3 writes DER keys as PKCS#1; others may write PKCS#8.
        let pair = sig::RsaKeyPair::from_der(&out.stdout)
            .or_else(|_| sig::RsaKeyPair::from_pkcs8(&out.stdout))
            .map_err(|e| anyhow::anyhow!("RSA key: {e}"))?;
        Ok(Self {
            kid: kid.into(),
            key: Key::Rsa(Arc::new(pair)),
        })
    }

    /// ES256 with a P-256 key made now.
    fn ec(kid: &str) -> Result<Self> {
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = sig::EcdsaKeyPair::generate_pkcs8(&sig::ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .map_err(|_| anyhow::anyhow!("EC key"))?;
        let pair = sig::EcdsaKeyPair::from_pkcs8(
            &sig::ECDSA_P256_SHA256_FIXED_SIGNING,
            pkcs8.as_ref(),
            &rng,
        )
        .map_err(|e| anyhow::anyhow!("EC key: {e}"))?;
        Ok(Self {
            kid: kid.into(),
            key: Key::Ec(Arc::new(pair)),
        })
    }

    fn jwk(&self) -> Value {
        match &self.key {
            Key::Rsa(k) => {
                let c = sig::RsaPublicKeyComponents::<Vec<u8>>::from(k.public());
                json!({"kty": "RSA", "use": "sig", "alg": "RS256", "kid": self.kid,
                       "n": b64(&c.n), "e": b64(&c.e)})
            }
            Key::Ec(k) => {
                let p = k.public_key().as_ref();
                json!({"kty": "EC", "use": "sig", "alg": "ES256", "crv": "P-256", "kid": self.kid,
                       "x": b64(&p[1..33]), "y": b64(&p[33..])})
            }
        }
    }

    fn sign(&self, claims: &Value) -> String {
        let rng = ring::rand::SystemRandom::new();
        let alg = match self.key {
            Key::Rsa(_) => "RS256",
            Key::Ec(_) => "ES256",
        };
        let msg = format!(
            "{}.{}",
            b64(json!({"alg": alg, "kid": self.kid, "typ": "JWT"}).to_string()),
            b64(claims.to_string())
        );
        let signature = match &self.key {
            Key::Rsa(k) => {
                let mut out = vec![0; k.public().modulus_len()];
                k.sign(&sig::RSA_PKCS1_SHA256, &rng, msg.as_bytes(), &mut out)
                    .map(|_| out)
                    .unwrap_or_default()
            }
            Key::Ec(k) => k
                .sign(&rng, msg.as_bytes())
                .map(|s| s.as_ref().to_vec())
                .unwrap_or_default(),
        };
        format!("{msg}.{}", b64(signature))
    }
}

const CLIENT_ID: &str = "flotilla";
const CLI_CLIENT_ID: &str = "flotilla-cli";
const CLIENT_SECRET: &str = "oidc-client-s3cret-value";

/// A code the provider handed out, waiting for its exchange.
struct Grant {
    /// The client that asked: the server's (confidential) or the CLI's (public, PKCE only).
    client_id: String,
    challenge: String,
    nonce: String,
    redirect_uri: String,
    sub: String,
    groups: Vec<String>,
}

/// The test provider's state.
struct Provider {
    base: String,
    /// The keys published; the first one signs.
    keys: Vec<Signer>,
    codes: HashMap<String, Grant>,
    /// Who signs in at the authorization endpoint next.
    user: (String, Vec<String>),
    key_fetches: usize,
    /// Token requests refused, and why.
    refused: Vec<String>,
    /// Every ID token issued (to check none reaches the server's log).
    issued: Vec<String>,
}

type Shared = Arc<Mutex<Provider>>;

impl Provider {
    fn id_token(
        &mut self,
        sub: &str,
        groups: &[String],
        aud: &str,
        exp_in: i64,
        nonce: Option<&str>,
    ) -> String {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or_default();
        let mut claims = json!({"iss": self.base, "sub": sub, "aud": aud, "iat": now,
                                "exp": now + exp_in, "groups": groups, "email": format!("{sub}@example.com")});
        if let Some(n) = nonce {
            claims["nonce"] = json!(n);
        }
        let t = self.keys[0].sign(&claims);
        self.issued.push(t.clone());
        t
    }
}

fn lock(s: &Shared) -> std::sync::MutexGuard<'_, Provider> {
    s.lock().unwrap_or_else(|p| p.into_inner())
}

/// Serve the provider on loopback; returns its state and base URL.
async fn start_provider(first: Signer) -> Result<Shared> {
    use axum::extract::{Query, State};
    use axum::http::{HeaderMap, StatusCode};
    use axum::response::{IntoResponse, Response};
    use axum::routing::{get, post};

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let shared: Shared = Arc::new(Mutex::new(Provider {
        base: base.clone(),
        keys: vec![first],
        codes: HashMap::new(),
        user: ("nobody".into(), Vec::new()),
        key_fetches: 0,
        refused: Vec::new(),
        issued: Vec::new(),
    }));
    async fn discovery(State(s): State<Shared>) -> Response {
        let base = lock(&s).base.clone();
        axum::Json(json!({
            "issuer": base, "authorization_endpoint": format!("{base}/authorize"),
            "token_endpoint": format!("{base}/token"), "jwks_uri": format!("{base}/keys"),
            "response_types_supported": ["code"], "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256", "ES256"],
            "code_challenge_methods_supported": ["S256"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic"],
        }))
        .into_response()
    }
    async fn keys(State(s): State<Shared>) -> Response {
        let mut p = lock(&s);
        p.key_fetches += 1;
        let keys: Vec<Value> = p.keys.iter().map(Signer::jwk).collect();
        axum::Json(json!({"keys": keys})).into_response()
    }
    async fn authorize(
        State(s): State<Shared>,
        Query(q): Query<HashMap<String, String>>,
    ) -> Response {
        let mut p = lock(&s);
        let get = |k: &str| q.get(k).cloned().unwrap_or_default();
        if get("response_type") != "code"
            || (get("client_id") != CLIENT_ID && get("client_id") != CLI_CLIENT_ID)
            || get("code_challenge_method") != "S256"
            || get("code_challenge").len() != 43
            || get("state").is_empty()
            || get("nonce").is_empty()
            || !get("scope").split(' ').any(|x| x == "openid")
        {
            return (
                StatusCode::BAD_REQUEST,
                format!("bad authorization request {q:?}"),
            )
                .into_response();
        }
        let code = b64(rand_bytes());
        let (sub, groups) = p.user.clone();
        p.codes.insert(
            code.clone(),
            Grant {
                client_id: get("client_id"),
                challenge: get("code_challenge"),
                nonce: get("nonce"),
                redirect_uri: get("redirect_uri"),
                sub,
                groups,
            },
        );
        let mut to = match url::Url::parse(&get("redirect_uri")) {
            Ok(u) => u,
            Err(_) => return StatusCode::BAD_REQUEST.into_response(),
        };
        to.query_pairs_mut()
            .append_pair("code", &code)
            .append_pair("state", &get("state"));
        (StatusCode::FOUND, [("location", to.to_string())]).into_response()
    }
    async fn token(
        State(s): State<Shared>,
        headers: HeaderMap,
        body: axum::body::Bytes,
    ) -> Response {
        let mut p = lock(&s);
        let form: HashMap<String, String> =
            url::form_urlencoded::parse(&body).into_owned().collect();
        let get = |k: &str| form.get(k).cloned().unwrap_or_default();
        let basic = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD
                .encode(format!("{CLIENT_ID}:{CLIENT_SECRET}"))
        );
        let authed =
            headers.get("authorization").and_then(|v| v.to_str().ok()) == Some(basic.as_str());
        let grant = p.codes.remove(&get("code"));
        // The CLI's client is public: no secret, the PKCE verifier proves the caller.
        let public = grant.as_ref().is_some_and(|g| g.client_id == CLI_CLIENT_ID)
            && get("client_id") == CLI_CLIENT_ID
            && headers.get("authorization").is_none();
        let why = match &grant {
            _ if !authed && !public => Some("client authentication"),
            _ if get("grant_type") != "authorization_code" => Some("grant_type"),
            None => Some("unknown or used code"),
            Some(g) if g.redirect_uri != get("redirect_uri") => Some("redirect_uri"),
            Some(g) => {
                let computed = b64(ring::digest::digest(
                    &ring::digest::SHA256,
                    get("code_verifier").as_bytes(),
                ));
                (computed != g.challenge).then_some("code_verifier does not match the challenge")
            }
        };
        if let Some(w) = why {
            p.refused.push(w.to_string());
            return (
                StatusCode::BAD_REQUEST,
                axum::Json(json!({"error": "invalid_grant", "error_description": w})),
            )
                .into_response();
        }
        let Some(g) = grant else {
            return StatusCode::BAD_REQUEST.into_response();
        };
        let id = p.id_token(&g.sub, &g.groups, &g.client_id, 600, Some(&g.nonce));
        axum::Json(json!({"access_token": b64(rand_bytes()), "token_type": "Bearer", "expires_in": 600, "id_token": id}))
            .into_response()
    }
    let app = axum::Router::new()
        .route("/.well-known/openid-configuration", get(discovery))
        .route("/keys", get(keys))
        .route("/authorize", get(authorize))
        .route("/token", post(token))
        .with_state(shared.clone());
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok(shared)
}

fn rand_bytes() -> [u8; 24] {
    let mut b = [0u8; 24];
    let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut b);
    b
}

fn app_yaml(fleet: &Fleet, name: &str, project: &str) -> String {
    format!(
        "apiVersion: argoproj.io/v1alpha1\nkind: Application\nmetadata: {{name: {name}, namespace: {NS}}}\nspec:\n  project: {project}\n  source: {{repoURL: {url}, targetRevision: main, path: cm}}\n  destination: {{name: cluster-001, namespace: {name}}}\n",
        url = fleet.git.url()
    )
}

fn project_yaml(name: &str, roles: &str) -> String {
    format!(
        "apiVersion: argoproj.io/v1alpha1\nkind: AppProject\nmetadata: {{name: {name}, namespace: {NS}}}\nspec:\n  sourceRepos: ['*']\n  destinations: [{{server: '*', namespace: '*'}}]\n  roles: {roles}\n"
    )
}

async fn fleet() -> Result<Fleet> {
    Fleet::start(FleetConfig {
        clusters: 1,
        controllers: 0,
        env: vec![("RUST_LOG".into(), "info,flotilla_server=debug".into())],
        ..FleetConfig::default()
    })
    .await
}

/// Wait until `path` answers `code` for `token`.
async fn until_code(api: &str, path: &str, token: &str, code: u16, what: &str) -> Result<Answer> {
    eventually(what, Duration::from_secs(30), || async {
        let a = get_as(api, path, token).await?;
        if a.code == code {
            Ok(Some(a))
        } else {
            bail!("{path}: {} {}", a.code, a.body)
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sso_with_group_rbac_key_rotation_and_the_browser_flow() -> Result<()> {
    let fleet = fleet().await?;
    for (p, app) in [("team-a", "a1"), ("team-a", "a-frozen"), ("team-b", "b1")] {
        fleet.apply(&project_yaml(p, "[]")).await?;
        fleet.apply(&app_yaml(&fleet, app, p)).await?;
    }
    let provider = start_provider(Signer::rsa("rsa-1")?).await?;
    let issuer = lock(&provider).base.clone();
    let (server, api) = fleet.start_server().await?;

    // SSO as Argo CD is configured: argocd-cm oidc.config, the secret in argocd-secret.
    fleet
        .apply(&format!(
            "apiVersion: v1\nkind: Secret\nmetadata: {{name: argocd-secret, namespace: {NS}}}\ndata: {{oidc.clientSecret: {}}}\n",
            base64::engine::general_purpose::STANDARD.encode(CLIENT_SECRET)
        ))
        .await?;
    fleet
        .apply(&format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: argocd-cm, namespace: {NS}}}\ndata:\n  url: http://{api}\n  oidc.config: |\n    name: Test IdP\n    issuer: {issuer}\n    clientID: {CLIENT_ID}\n    clientSecret: $oidc.clientSecret\n    cliClientID: {CLI_CLIENT_ID}\n    requestedScopes: [openid, profile, email, groups]\n"
        ))
        .await?;
    fleet
        .apply(&format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: argocd-rbac-cm, namespace: {NS}}}\ndata:\n  scopes: '[groups, email]'\n  policy.csv: |\n    p, role:team-a-dev, applications, *, team-a/*, allow\n    p, role:team-a-dev, applications, sync, team-a/a-frozen, deny\n    g, team-a-devs, role:team-a-dev\n    g, auditors, role:readonly\n    p, carol@example.com, applications, get, team-b/b1, allow\n"
        ))
        .await?;
    let config = eventually("SSO ready", Duration::from_secs(30), || async {
        let a = call(&api, "GET", "/api/v1/auth/config", &[], b"").await?;
        Ok((a.json()["ready"] == true).then(|| a.json()))
    })
    .await?;
    ensure!(
        config["issuer"] == issuer.as_str()
            && config["cliClientID"] == CLI_CLIENT_ID
            && config["loginPath"] == "/auth/login"
            && !config.to_string().contains(CLIENT_SECRET),
        "{config}"
    );

    // The RBAC matrix: group claims (and the email scope) against policy.csv.
    let token = |sub: &str, groups: &[&str]| {
        let groups: Vec<String> = groups.iter().map(|g| g.to_string()).collect();
        lock(&provider).id_token(sub, &groups, CLI_CLIENT_ID, 300, None)
    };
    let alice = token("alice", &["team-a-devs"]);
    let bob = token("bob", &["auditors"]);
    let carol = token("carol", &[]);
    let dave = token("dave", &["strangers"]);
    until_code(
        &api,
        &format!("/api/v1/applications/{NS}/a1"),
        &alice,
        200,
        "alice's policy",
    )
    .await?;
    let app = |n: &str| format!("/api/v1/applications/{NS}/{n}");
    let sync = |n: &str| format!("/api/v1/applications/{NS}/{n}/sync");
    for (who, tok, path, want) in [
        ("alice", &alice, app("a1"), 200),
        ("alice", &alice, app("b1"), 403),
        ("bob", &bob, app("a1"), 200),
        ("bob", &bob, app("b1"), 200),
        ("carol", &carol, app("a1"), 403),
        ("carol (by email)", &carol, app("b1"), 200),
        ("dave", &dave, app("a1"), 403),
    ] {
        let a = get_as(&api, &path, tok).await?;
        ensure!(a.code == want, "{who} GET {path}: {} {}", a.code, a.body);
    }
    for (who, tok, path, want) in [
        ("alice", &alice, sync("a1"), 200),
        ("alice (explicit deny)", &alice, sync("a-frozen"), 403),
        ("bob (read-only)", &bob, sync("b1"), 403),
    ] {
        let a = post_as(&api, &path, tok, &json!({})).await?;
        ensure!(a.code == want, "{who} POST {path}: {} {}", a.code, a.body);
    }
    // Writing projects, clusters and repositories needs those resources' create: neither a
    // read-only user nor an applications-only role gets it.
    for (who, tok) in [("alice", &alice), ("bob", &bob)] {
        for (path, body) in [
            (
                "/api/v1/projects",
                json!({"project": {"metadata": {"name": "sneaky"}, "spec": {}}}),
            ),
            (
                "/api/v1/clusters",
                json!({"server": "https://10.9.9.9:6443", "config": {"bearerToken": "x"}}),
            ),
            (
                "/api/v1/repositories",
                json!({"repo": "https://git.example.com/x.git"}),
            ),
        ] {
            let a = post_as(&api, path, tok, &body).await?;
            ensure!(a.code == 403, "{who} POST {path}: {} {}", a.code, a.body);
        }
    }
    for (tok, want) in [
        (&alice, vec!["a-frozen", "a1"]),
        (&bob, vec!["a-frozen", "a1", "b1"]),
        (&dave, vec![]),
    ] {
        let list = get_as(&api, "/api/v1/applications", tok).await?;
        ensure!(
            list.code == 200 && names(&list.json()) == want,
            "{}",
            list.body
        );
    }
    // Not for us, expired, forged: 401.
    let wrong_aud =
        lock(&provider).id_token("alice", &["team-a-devs".into()], "another-app", 300, None);
    let expired =
        lock(&provider).id_token("alice", &["team-a-devs".into()], CLI_CLIENT_ID, -300, None);
    let mut forged = alice.clone();
    forged.replace_range(forged.len() - 4.., "AAAA");
    for (what, tok) in [
        ("wrong audience", &wrong_aud),
        ("expired", &expired),
        ("forged", &forged),
    ] {
        let a = get_as(&api, &app("a1"), tok).await?;
        ensure!(a.code == 401, "{what}: {} {}", a.code, a.body);
    }

    // Key rotation: the provider now signs with a new ES256 key and drops the RSA one. A token
    // with the new kid makes the server fetch the keys again (rate-limited), then passes.
    let fetches_before = lock(&provider).key_fetches;
    lock(&provider).keys = vec![Signer::ec("ec-2")?];
    let rotated = token("alice", &["team-a-devs"]);
    until_code(
        &api,
        &app("a1"),
        &rotated,
        200,
        "a token of the rotated key",
    )
    .await?;
    let fetches = lock(&provider).key_fetches - fetches_before;
    ensure!(
        (1..=3).contains(&fetches),
        "{fetches} key fetches for one rotation"
    );
    let old = get_as(&api, &app("a1"), &alice).await?;
    ensure!(old.code == 401, "the retired key still works: {}", old.code);

    // The browser: authorization code with PKCE, each redirect followed by hand.
    let bad = call(
        &api,
        "GET",
        "/auth/login?return_url=https%3A%2F%2Fevil.example%2F",
        &[],
        b"",
    )
    .await?;
    ensure!(bad.code == 400, "open redirect: {} {}", bad.code, bad.body);
    lock(&provider).user = ("erin".into(), vec!["team-a-devs".into()]);
    let login = call(
        &api,
        "GET",
        "/auth/login?return_url=%2Fapplications%3Fproject%3Dteam-a",
        &[],
        b"",
    )
    .await?;
    ensure!(login.code == 303, "login: {} {}", login.code, login.body);
    let to = url::Url::parse(login.header("location").context("login redirect")?)?;
    ensure!(
        to.as_str().starts_with(&format!("{issuer}/authorize?")),
        "{to}"
    );
    let q: HashMap<String, String> = to.query_pairs().into_owned().collect();
    ensure!(
        q["redirect_uri"] == format!("http://{api}/auth/callback")
            && q["code_challenge_method"] == "S256"
            && q["scope"] == "openid profile email groups",
        "{q:?}"
    );
    let state_cookie = login
        .cookies()
        .into_iter()
        .find(|c| c.starts_with("flotilla.oauthstate="))
        .context("state cookie")?
        .to_string();
    ensure!(
        state_cookie.contains("HttpOnly") && state_cookie.contains("SameSite=Lax"),
        "{state_cookie}"
    );
    let state_cookie = state_cookie
        .split(';')
        .next()
        .unwrap_or_default()
        .to_string();
    let issuer_addr = issuer.trim_start_matches("http://");
    let authz = call(
        issuer_addr,
        "GET",
        &format!("{}?{}", to.path(), to.query().unwrap_or_default()),
        &[],
        b"",
    )
    .await?;
    ensure!(
        authz.code == 302,
        "authorize: {} {}",
        authz.code,
        authz.body
    );
    let back = url::Url::parse(authz.header("location").context("provider redirect")?)?;
    let callback_path = format!("{}?{}", back.path(), back.query().unwrap_or_default());
    // A callback without the state cookie, or with another state: refused.
    let no_cookie = call(&api, "GET", &callback_path, &[], b"").await?;
    ensure!(
        no_cookie.code == 400,
        "callback without state cookie: {}",
        no_cookie.code
    );
    let cb = call(
        &api,
        "GET",
        &callback_path,
        &[("Cookie", &state_cookie)],
        b"",
    )
    .await?;
    ensure!(cb.code == 303, "callback: {} {}", cb.code, cb.body);
    ensure!(
        cb.header("location") == Some("/applications?project=team-a"),
        "{:?}",
        cb.header("location")
    );
    let session = cb
        .cookies()
        .into_iter()
        .find(|c| c.starts_with("flotilla.token="))
        .context("token cookie")?
        .to_string();
    ensure!(
        session.contains("HttpOnly")
            && session.contains("SameSite=Lax")
            && !session.contains("Secure"),
        "{session}"
    );
    let session = session.split(';').next().unwrap_or_default().to_string();
    let mine = call(
        &api,
        "GET",
        "/api/v1/applications",
        &[("Cookie", &session)],
        b"",
    )
    .await?;
    ensure!(
        mine.code == 200 && names(&mine.json()) == ["a-frozen", "a1"],
        "{} {}",
        mine.code,
        mine.body
    );
    // The cookie is not honoured for a cross-site request.
    let cross = call(
        &api,
        "GET",
        "/api/v1/applications",
        &[("Cookie", &session), ("Sec-Fetch-Site", "cross-site")],
        b"",
    )
    .await?;
    ensure!(cross.code == 401, "cross-site cookie: {}", cross.code);
    // A write by cookie needs a JSON content type (a same-site page cannot send one without
    // a CORS preflight); the same write with it goes through.
    let refresh = format!("/api/v1/applications/{NS}/a1/refresh");
    for (content_type, want) in [("text/plain", 403), ("application/json", 200)] {
        let a = call(
            &api,
            "POST",
            &refresh,
            &[("Cookie", &session), ("Content-Type", content_type)],
            b"{}",
        )
        .await?;
        ensure!(
            a.code == want,
            "cookie POST as {content_type}: {} {}",
            a.code,
            a.body
        );
    }
    // The code is single use: replaying the callback fails at the provider.
    let replay = call(
        &api,
        "GET",
        &callback_path,
        &[("Cookie", &state_cookie)],
        b"",
    )
    .await?;
    ensure!(
        replay.code == 401,
        "replayed code: {} {}",
        replay.code,
        replay.body
    );
    let refused = lock(&provider).refused.clone();
    ensure!(
        refused == ["unknown or used code"],
        "token endpoint refusals: {refused:?}"
    );

    // The CLI signs in the same way (`flotilla login --sso`): it prints the provider's URL, the
    // "browser" follows it, the provider redirects to the CLI's loopback listener.
    lock(&provider).user = ("alice".into(), vec!["team-a-devs".into()]);
    let cli_config = fleet.dir.path().join("sso-cli.json");
    let mut login =
        tokio::process::Command::new(flotilla_loadtest::fleet::process::binary("flotilla")?)
            .args([
                "login",
                &format!("http://{api}"),
                "--sso",
                "--sso-port",
                "0",
            ])
            .env("FLOTILLA_CONFIG", &cli_config)
            .env("PATH", "/nonexistent") // no xdg-open: the test is the browser
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()?;
    let stdout = login.stdout.take().context("login's stdout")?;
    let mut lines = tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(stdout));
    let authorize_url = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(line) = lines.next_line().await? {
            if line.starts_with("http") {
                return Ok::<_, anyhow::Error>(line);
            }
        }
        anyhow::bail!("login printed no URL")
    })
    .await
    .context("waiting for the login URL")??;
    let authorize_url = url::Url::parse(&authorize_url)?;
    ensure!(
        authorize_url
            .query_pairs()
            .any(|(k, v)| k == "client_id" && v == CLI_CLIENT_ID)
            && authorize_url
                .query_pairs()
                .any(|(k, v)| k == "code_challenge_method" && v == "S256"),
        "{authorize_url}"
    );
    let at_provider = call(
        &format!(
            "{}:{}",
            authorize_url.host_str().unwrap_or_default(),
            authorize_url.port().unwrap_or(80)
        ),
        "GET",
        &format!(
            "{}?{}",
            authorize_url.path(),
            authorize_url.query().unwrap_or_default()
        ),
        &[],
        b"",
    )
    .await?;
    let back_to_cli = url::Url::parse(
        at_provider
            .header("location")
            .context("redirect to the CLI")?,
    )?;
    let answer = call(
        &format!("127.0.0.1:{}", back_to_cli.port().unwrap_or(0)),
        "GET",
        &format!(
            "{}?{}",
            back_to_cli.path(),
            back_to_cli.query().unwrap_or_default()
        ),
        &[],
        b"",
    )
    .await?;
    ensure!(
        answer.code == 200,
        "the CLI's callback: {} {}",
        answer.code,
        answer.body
    );
    let status = tokio::time::timeout(Duration::from_secs(30), login.wait()).await??;
    let mut err = String::new();
    if let Some(mut e) = login.stderr.take() {
        let _ = tokio::io::AsyncReadExt::read_to_string(&mut e, &mut err).await;
    }
    ensure!(status.success(), "flotilla login --sso: {status}: {err}");
    let listed = std::process::Command::new(flotilla_loadtest::fleet::process::binary("flotilla")?)
        .args(["app", "list", "-o", "json"])
        .env("FLOTILLA_CONFIG", &cli_config)
        .output()?;
    let listed: Value = serde_json::from_slice(&listed.stdout)?;
    let listed_names: Vec<&str> = listed
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|a| a["name"].as_str())
        .collect();
    ensure!(
        listed_names == ["a-frozen", "a1"],
        "as alice from the CLI: {listed}"
    );

    // Counted, and no credential in the log.
    let metrics = call(&api, "GET", "/metrics", &[], b"").await?.body;
    let count = |m: &str, r: &str| {
        metric_value(
            &metrics,
            "flotilla_server_authentications_total",
            &[("method", m), ("result", r)],
        )
    };
    ensure!(
        count("oidc", "ok") >= 10.0 && count("oidc", "invalid") >= 3.0,
        "{metrics}"
    );
    let log = server.tail(100_000);
    let mut secrets: Vec<String> = lock(&provider).issued.clone();
    secrets.push(CLIENT_SECRET.into());
    secrets.push(
        back.query_pairs()
            .find(|(k, _)| k == "code")
            .map(|(_, v)| v.to_string())
            .unwrap_or_default(),
    );
    for s in secrets.iter().filter(|s| s.len() > 8) {
        let sig = s.rsplit('.').next().unwrap_or(s);
        ensure!(!log.contains(sig), "a credential reached the server's log");
    }
    ensure!(log.contains("SSO configured"), "{log}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn project_role_tokens_and_service_account_tokens() -> Result<()> {
    let fleet = fleet().await?;
    fleet
        .apply(&project_yaml(
            "team-a",
            "[{name: ci, policies: ['p, proj:team-a:ci, applications, get, team-a/*, allow', 'p, proj:team-a:ci, applications, get, team-b/*, allow']}]",
        ))
        .await?;
    fleet.apply(&project_yaml("team-b", "[]")).await?;
    fleet.apply(&app_yaml(&fleet, "a1", "team-a")).await?;
    fleet.apply(&app_yaml(&fleet, "b1", "team-b")).await?;
    fleet
        .apply(&format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: argocd-rbac-cm, namespace: {NS}}}\ndata:\n  policy.csv: |\n    g, system:serviceaccounts:{NS}, role:readonly\n"
        ))
        .await?;
    let (server, api) = fleet
        .start_server_with(&["--token-review-cache-seconds".into(), "2".into()])
        .await?;
    let app = |n: &str| format!("/api/v1/applications/{NS}/{n}");

    // A project role token, issued through the API by the admin.
    let issue = "/api/v1/projects/team-a/roles/ci/token";
    let made = post_as(
        &api,
        issue,
        ADMIN_TOKEN,
        &json!({"expiresIn": 3600, "id": "build-1"}),
    )
    .await?;
    ensure!(made.code == 200, "issue: {} {}", made.code, made.body);
    let proj_token = made.json()["token"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let iat = made.json()["iat"].as_i64().unwrap_or_default();
    let projects: Api<AppProject> = Api::namespaced(fleet.control().clone(), NS);
    let roles = projects.get("team-a").await?.spec.roles.unwrap_or_default();
    ensure!(
        roles[0]["jwtTokens"] == json!([{"iat": iat, "exp": iat + 3600, "id": "build-1"}]),
        "{roles:?}"
    );
    let a1 = until_code(&api, &app("a1"), &proj_token, 200, "the project token").await?;
    ensure!(a1.json()["metadata"]["name"] == "a1", "{}", a1.body);
    let b1 = get_as(&api, &app("b1"), &proj_token).await?;
    ensure!(
        b1.code == 403,
        "outside its project (the policy reaching team-b is dropped): {}",
        b1.code
    );
    let list = get_as(&api, "/api/v1/applications", &proj_token).await?;
    ensure!(names(&list.json()) == ["a1"], "{}", list.body);
    let s = post_as(
        &api,
        &format!("{}/sync", app("a1")),
        &proj_token,
        &json!({}),
    )
    .await?;
    ensure!(s.code == 403, "the role may only get: {}", s.code);
    let again = post_as(&api, issue, &proj_token, &json!({})).await?;
    ensure!(
        again.code == 403,
        "a project token issuing tokens: {}",
        again.code
    );
    let dup = post_as(&api, issue, ADMIN_TOKEN, &json!({"id": "build-1"})).await?;
    ensure!(dup.code == 409, "a reused id: {} {}", dup.code, dup.body);
    let nosuch = post_as(
        &api,
        "/api/v1/projects/team-a/roles/nope/token",
        ADMIN_TOKEN,
        &json!({}),
    )
    .await?;
    ensure!(nosuch.code == 404, "no such role: {}", nosuch.code);

    // Revoked by removing its jwtTokens entry.
    projects
        .patch(
            "team-a",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"roles": [{"name": "ci", "policies": ["p, proj:team-a:ci, applications, get, team-a/*, allow"], "jwtTokens": []}]}})),
        )
        .await?;
    until_code(
        &api,
        &app("a1"),
        &proj_token,
        401,
        "the revoked project token",
    )
    .await?;
    // ...and through the API.
    let second = post_as(&api, issue, ADMIN_TOKEN, &json!({})).await?;
    let second_token = second.json()["token"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let second_iat = second.json()["iat"].as_i64().unwrap_or_default();
    until_code(
        &api,
        &app("a1"),
        &second_token,
        200,
        "the second project token",
    )
    .await?;
    let del = call(
        &api,
        "DELETE",
        &format!("{issue}/{second_iat}"),
        &[("Authorization", &format!("Bearer {ADMIN_TOKEN}"))],
        b"",
    )
    .await?;
    ensure!(del.code == 200, "revoke: {} {}", del.code, del.body);
    until_code(
        &api,
        &app("a1"),
        &second_token,
        401,
        "the token revoked through the API",
    )
    .await?;

    // A ServiceAccount token from kubesim's TokenRequest, checked with TokenReview: the
    // ServiceAccounts of the namespace are read-only here.
    fleet
        .apply(&format!(
            "apiVersion: v1\nkind: ServiceAccount\nmetadata: {{name: deployer, namespace: {NS}}}\n"
        ))
        .await?;
    let sas: Api<k8s_openapi::api::core::v1::ServiceAccount> =
        Api::namespaced(fleet.control().clone(), NS);
    let req: k8s_openapi::api::authentication::v1::TokenRequest =
        serde_json::from_value(json!({"spec": {"audiences": [], "expirationSeconds": 3600}}))?;
    let sa_token = sas
        .create_token_request("deployer", &PostParams::default(), &req)
        .await?
        .status
        .context("TokenRequest status")?
        .token
        .context("TokenRequest token")?;
    let got = get_as(&api, &app("b1"), &sa_token).await?;
    ensure!(
        got.code == 200,
        "ServiceAccount token: {} {}",
        got.code,
        got.body
    );
    let s = post_as(&api, &format!("{}/sync", app("b1")), &sa_token, &json!({})).await?;
    ensure!(s.code == 403, "read-only: {}", s.code);
    let junk = get_as(&api, &app("b1"), "not-a-token-anyone-issued").await?;
    ensure!(junk.code == 401, "junk: {}", junk.code);
    sas.delete("deployer", &Default::default()).await?;
    until_code(
        &api,
        &app("b1"),
        &sa_token,
        401,
        "the deleted ServiceAccount's token",
    )
    .await?;

    let metrics = call(&api, "GET", "/metrics", &[], b"").await?.body;
    let count = |m: &str, r: &str| {
        metric_value(
            &metrics,
            "flotilla_server_authentications_total",
            &[("method", m), ("result", r)],
        )
    };
    ensure!(
        count("project", "ok") >= 4.0
            && count("project", "invalid") >= 2.0
            && count("serviceaccount", "ok") >= 2.0
            && count("serviceaccount", "invalid") >= 2.0
            && count("admin", "ok") >= 4.0,
        "{metrics}"
    );
    let log = server.tail(100_000);
    for t in [&proj_token, &second_token, &sa_token] {
        let sig = t.rsplit('.').next().unwrap_or(t);
        ensure!(!log.contains(sig), "a token reached the server's log");
    }
    ensure!(
        log.contains("project role token issued"),
        "audit line missing"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_project_role_cannot_run_code_in_the_controller_or_take_over_a_global_cluster()
-> Result<()> {
    let fleet = fleet().await?;
    fleet
        .apply(&project_yaml(
            "team-a",
            "[{name: ops, policies: ['p, proj:team-a:ops, clusters, *, team-a/*, allow', 'p, proj:team-a:ops, repositories, *, team-a/*, allow']}]",
        ))
        .await?;
    let (_server, api) = fleet.start_server_with(&[]).await?;
    let made = post_as(
        &api,
        "/api/v1/projects/team-a/roles/ops/token",
        ADMIN_TOKEN,
        &json!({"id": "ops-1"}),
    )
    .await?;
    ensure!(made.code == 200, "issue: {} {}", made.code, made.body);
    let ops = made.json()["token"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    until_code(&api, "/api/v1/clusters", &ops, 200, "the project token").await?;

    // The attack: a project-scoped cluster whose credentials come from a command.
    let exec = json!({"server": "https://attacker.example:6443", "project": "team-a",
        "config": {"execProviderConfig": {"command": "/bin/sh", "args": ["-c", "id"], "apiVersion": "client.authentication.k8s.io/v1beta1"}}});
    let r = post_as(&api, "/api/v1/clusters", &ops, &exec).await?;
    ensure!(
        r.code == 403 && r.body.contains("execProviderConfig"),
        "{} {}",
        r.code,
        r.body
    );
    let aws = json!({"server": "https://attacker.example:6443", "project": "team-a",
        "config": {"awsAuthConfig": {"clusterName": "prod"}}});
    ensure!(post_as(&api, "/api/v1/clusters", &ops, &aws).await?.code == 403);
    // The operator may.
    let r = post_as(&api, "/api/v1/clusters", ADMIN_TOKEN, &exec).await?;
    ensure!(r.code == 200, "admin: {} {}", r.code, r.body);
    // A plain project-scoped cluster is the project's to add.
    let own = json!({"server": "https://team-a.example:6443", "project": "team-a",
        "config": {"bearerToken": "t"}});
    let r = post_as(&api, "/api/v1/clusters", &ops, &own).await?;
    ensure!(r.code == 200, "own: {} {}", r.code, r.body);

    // Taking over a global cluster (or repository) by naming it in an upsert: refused.
    let global = json!({"server": "https://shared.example:6443", "config": {"bearerToken": "g"}});
    ensure!(
        post_as(&api, "/api/v1/clusters", ADMIN_TOKEN, &global)
            .await?
            .code
            == 200
    );
    let steal = json!({"server": "https://shared.example:6443", "project": "team-a",
        "config": {"bearerToken": "mine"}});
    let r = post_as(&api, "/api/v1/clusters?upsert=true", &ops, &steal).await?;
    ensure!(
        r.code == 403,
        "global cluster replaced: {} {}",
        r.code,
        r.body
    );
    let repo = json!({"repo": "https://git.example/shared.git", "username": "u", "password": "p"});
    ensure!(
        post_as(&api, "/api/v1/repositories", ADMIN_TOKEN, &repo)
            .await?
            .code
            == 200
    );
    let steal =
        json!({"repo": "https://git.example/shared.git", "project": "team-a", "password": "x"});
    let r = post_as(&api, "/api/v1/repositories?upsert=true", &ops, &steal).await?;
    ensure!(
        r.code == 403,
        "global repository replaced: {} {}",
        r.code,
        r.body
    );
    Ok(())
}
