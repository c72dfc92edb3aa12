//! A fake GitHub API for tests (over TLS from a `TestCa`):
//! `POST /api/v3/app/installations/{id}/access_tokens` checks the app JWT as GitHub does (RS256 with the app's public key, issuer, at most ten minutes) and
//! issues installation tokens with a chosen lifetime.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use base64::Engine;
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// An RSA key pair for a test GitHub App, made with `openssl`.
pub struct AppKey {
    /// PKCS#1 PEM (`BEGIN RSA PRIVATE KEY`), as GitHub hands app keys out.
    pub private_pem: String,
    /// PKCS#1 DER of the public key.
    pub public_der: Vec<u8>,
}

impl AppKey {
    pub fn generate() -> Result<Self> {
        let dir = tempfile::tempdir()?;
        let key = dir.path().join("app.pem");
        let run = |args: &[&str]| -> Result<Vec<u8>> {
            let out = std::process::Command::new("openssl")
                .args(args)
                .output()
                .context("running openssl")?;
            if !out.status.success() {
                bail!("openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
            }
            Ok(out.stdout)
        };
        let key_path = key.display().to_string();
        run(&["genrsa", "-traditional", "-out", &key_path, "2048"])?;
        let public = String::from_utf8(run(&["rsa", "-in", &key_path, "-RSAPublicKey_out"])?)?;
        let body: String = public.lines().filter(|l| !l.starts_with("-----")).collect();
        Ok(Self {
            private_pem: std::fs::read_to_string(&key)?,
            public_der: base64::engine::general_purpose::STANDARD.decode(body)?,
        })
    }
}

/// A running fake API; stops when dropped.
pub struct GithubApi {
    pub addr: SocketAddr,
    /// Every token issued, in order (give it to the Git server's `Auth::InstallationTokens`).
    pub issued: Arc<Mutex<Vec<String>>>,
    /// Requests refused, with the reason.
    pub refused: Arc<Mutex<Vec<String>>>,
    task: JoinHandle<()>,
}

impl Drop for GithubApi {
    fn drop(&mut self) {
        self.task.abort();
    }
}

struct App {
    id: i64,
    installation: i64,
    public_der: Vec<u8>,
    token_ttl: Duration,
}

/// Why a JWT is refused, if it is.
fn check_jwt(app: &App, jwt: &str) -> Option<String> {
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let parts: Vec<&str> = jwt.split('.').collect();
    let [header, claims, sig] = parts.as_slice() else {
        return Some("not a JWT".into());
    };
    let header: serde_json::Value = b64
        .decode(header)
        .ok()
        .and_then(|h| serde_json::from_slice(&h).ok())?;
    if header["alg"] != "RS256" {
        return Some(format!("alg {}", header["alg"]));
    }
    let Ok(sig) = b64.decode(sig) else {
        return Some("signature is not base64url".into());
    };
    let key = ring::signature::UnparsedPublicKey::new(
        &ring::signature::RSA_PKCS1_2048_8192_SHA256,
        &app.public_der,
    );
    if key
        .verify(format!("{}.{}", parts[0], parts[1]).as_bytes(), &sig)
        .is_err()
    {
        return Some("bad signature".into());
    }
    let claims: serde_json::Value = b64
        .decode(claims)
        .ok()
        .and_then(|c| serde_json::from_slice(&c).ok())?;
    let now = jiff::Timestamp::now().as_second();
    let (Some(iat), Some(exp)) = (claims["iat"].as_i64(), claims["exp"].as_i64()) else {
        return Some("iat/exp missing".into());
    };
    if claims["iss"].as_str() != Some(app.id.to_string().as_str())
        && claims["iss"].as_i64() != Some(app.id)
    {
        return Some(format!("iss {}", claims["iss"]));
    }
    if iat > now + 60 || exp <= now || exp - iat > 600 {
        return Some(format!("times iat={iat} exp={exp} now={now}"));
    }
    None
}

fn reply(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r
}

impl GithubApi {
    /// Serve app `app_id` with installation `installation_id` whose key is `key`; tokens live
    /// `token_ttl`.
    pub async fn start(
        app_id: i64,
        installation_id: i64,
        key: &AppKey,
        token_ttl: Duration,
        ca: &super::git_http::TestCa,
    ) -> Result<Self> {
        let acceptor = super::git_http::ca_acceptor(&super::git_http::CaTls {
            server: ca,
            clients: None,
        })?;
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let app = Arc::new(App {
            id: app_id,
            installation: installation_id,
            public_der: key.public_der.clone(),
            token_ttl,
        });
        let issued = Arc::new(Mutex::new(Vec::new()));
        let refused = Arc::new(Mutex::new(Vec::new()));
        let (iss, refs) = (issued.clone(), refused.clone());
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (app, iss, refs) = (app.clone(), iss.clone(), refs.clone());
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let Ok(stream) = acceptor.accept(stream).await else {
                        return;
                    };
                    let svc = service_fn(move |req: Request<Incoming>| {
                        let (app, iss, refs) = (app.clone(), iss.clone(), refs.clone());
                        async move {
                            let want = format!(
                                "/api/v3/app/installations/{}/access_tokens",
                                app.installation
                            );
                            if req.method() != hyper::Method::POST || req.uri().path() != want {
                                return Ok::<_, Infallible>(reply(
                                    StatusCode::NOT_FOUND,
                                    r#"{"message":"Not Found"}"#.into(),
                                ));
                            }
                            let jwt = req
                                .headers()
                                .get("authorization")
                                .and_then(|h| h.to_str().ok())
                                .and_then(|h| h.strip_prefix("Bearer "))
                                .unwrap_or_default();
                            if let Some(why) = check_jwt(&app, jwt) {
                                if let Ok(mut r) = refs.lock() {
                                    r.push(why);
                                }
                                return Ok(reply(
                                    StatusCode::UNAUTHORIZED,
                                    r#"{"message":"A JSON web token could not be decoded"}"#.into(),
                                ));
                            }
                            let token = format!("ghs_{}", uuid::Uuid::new_v4().simple());
                            let expires = jiff::Timestamp::now()
                                + jiff::SignedDuration::try_from(app.token_ttl).unwrap_or_default();
                            if let Ok(mut i) = iss.lock() {
                                i.push(token.clone());
                            }
                            Ok(reply(
                                StatusCode::CREATED,
                                serde_json::json!({"token": token, "expires_at": expires.to_string()})
                                    .to_string(),
                            ))
                        }
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Ok(Self {
            addr,
            issued,
            refused,
            task,
        })
    }

    /// The Enterprise API base URL (`https://127.0.0.1:port/api/v3`).
    pub fn base_url(&self) -> String {
        format!("https://{}/api/v3", self.addr)
    }

    pub fn issued_count(&self) -> usize {
        self.issued.lock().map(|i| i.len()).unwrap_or(0)
    }
}
