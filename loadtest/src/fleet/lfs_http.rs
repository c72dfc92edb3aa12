//! Git over HTTP(S) with a Git LFS server, for tests of submodules and `enableLfs`: Git's own
//! `git http-backend` (CGI) for the bare repositories under a directory, the LFS batch API
//! (`POST /<repo>.git/info/lfs/objects/batch`, `basic` transfer) and object downloads
//! (`GET /lfs/objects/<oid>`), optional Basic auth, optional TLS (self-signed), and a log of
//! every request with the `Authorization` header it carried, so tests can tell where
//! credentials went. Objects may be tampered with (served with other bytes) and object URLs
//! may point at another server.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::Result;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use sha2::{Digest, Sha256};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// One request the server saw.
#[derive(Debug, Clone)]
pub struct Logged {
    pub method: String,
    pub path: String,
    /// The `Authorization` header, if any.
    pub authorization: Option<String>,
}

#[derive(Default)]
struct State {
    root: PathBuf,
    /// Basic auth demanded for everything (Git and LFS), when set.
    auth: Option<(String, String)>,
    objects: Mutex<HashMap<String, Vec<u8>>>,
    /// Bytes served instead of an object's own.
    tampered: Mutex<HashMap<String, Vec<u8>>>,
    /// Where download URLs point (another server's base URL); this server when unset.
    object_base: Mutex<Option<String>>,
    log: Mutex<Vec<Logged>>,
}

/// A running Git + LFS server.
pub struct LfsGitServer {
    pub addr: SocketAddr,
    pub tls: bool,
    state: Arc<State>,
    task: JoinHandle<()>,
}

impl Drop for LfsGitServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The pointer file Git LFS commits for `content`.
pub fn pointer(content: &[u8]) -> String {
    format!(
        "version https://git-lfs.github.com/spec/v1\noid sha256:{}\nsize {}\n",
        oid(content),
        content.len()
    )
}

/// The LFS object id (SHA-256, hex) of `content`.
pub fn oid(content: &[u8]) -> String {
    hex::encode(Sha256::digest(content))
}

impl LfsGitServer {
    /// Serve the bare repositories under `root` (e.g. `root/apps.git`), demanding Basic `auth`
    /// when given, over TLS (self-signed) when `tls`.
    pub async fn start(root: &Path, auth: Option<(&str, &str)>, tls: bool) -> Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let acceptor = super::git_http::self_signed(tls, addr)?;
        let state = Arc::new(State {
            root: root.to_path_buf(),
            auth: auth.map(|(u, p)| (u.to_string(), p.to_string())),
            ..State::default()
        });
        let st = state.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let st = st.clone();
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req| {
                        let st = st.clone();
                        async move { Ok::<_, Infallible>(handle(&st, addr, tls, req).await) }
                    });
                    let builder =
                        hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                    match acceptor {
                        Some(a) => {
                            if let Ok(s) = a.accept(stream).await {
                                let _ = builder.serve_connection(TokioIo::new(s), svc).await;
                            }
                        }
                        None => {
                            let _ = builder.serve_connection(TokioIo::new(stream), svc).await;
                        }
                    }
                });
            }
        });
        Ok(Self {
            addr,
            tls,
            state,
            task,
        })
    }

    /// `http(s)://127.0.0.1:<port>`.
    pub fn base(&self) -> String {
        base(self.addr, self.tls)
    }

    /// The URL of repository `name` (e.g. `apps.git`).
    pub fn url(&self, name: &str) -> String {
        format!("{}/{name}", self.base())
    }

    /// Store an object; returns its pointer file.
    pub fn add_object(&self, content: &[u8]) -> String {
        if let Ok(mut o) = self.state.objects.lock() {
            o.insert(oid(content), content.to_vec());
        }
        pointer(content)
    }

    /// Serve `bytes` instead of `content`'s object.
    pub fn tamper(&self, content: &[u8], bytes: &[u8]) {
        if let Ok(mut t) = self.state.tampered.lock() {
            t.insert(oid(content), bytes.to_vec());
        }
    }

    /// Point download URLs at another server (`base`, e.g. [`Self::base`] of it).
    pub fn objects_at(&self, base: &str) {
        if let Ok(mut b) = self.state.object_base.lock() {
            *b = Some(base.to_string());
        }
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<Logged> {
        self.state.log.lock().map(|l| l.clone()).unwrap_or_default()
    }
}

fn base(addr: SocketAddr, tls: bool) -> String {
    format!("{}://{addr}", if tls { "https" } else { "http" })
}

fn reply(status: StatusCode, content_type: &str, body: Vec<u8>) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    if let Ok(v) = hyper::header::HeaderValue::from_str(content_type) {
        r.headers_mut().insert("Content-Type", v);
    }
    if status == StatusCode::UNAUTHORIZED {
        r.headers_mut().insert(
            "WWW-Authenticate",
            hyper::header::HeaderValue::from_static("Basic realm=\"git\""),
        );
    }
    r
}

fn authorized(st: &State, header: Option<&str>) -> bool {
    use base64::Engine;
    let Some((user, pass)) = &st.auth else {
        return true;
    };
    header
        .and_then(|h| h.strip_prefix("Basic "))
        .and_then(|b| {
            base64::engine::general_purpose::STANDARD
                .decode(b.trim())
                .ok()
        })
        .is_some_and(|d| d == format!("{user}:{pass}").as_bytes())
}

async fn handle(
    st: &State,
    addr: SocketAddr,
    tls: bool,
    req: Request<Incoming>,
) -> Response<Full<Bytes>> {
    let authorization = req
        .headers()
        .get("authorization")
        .and_then(|h| h.to_str().ok())
        .map(str::to_string);
    let path = req.uri().path().to_string();
    if let Ok(mut l) = st.log.lock() {
        l.push(Logged {
            method: req.method().to_string(),
            path: path.clone(),
            authorization: authorization.clone(),
        });
    }
    if !authorized(st, authorization.as_deref()) {
        return reply(
            StatusCode::UNAUTHORIZED,
            "application/vnd.git-lfs+json",
            br#"{"message":"credentials needed"}"#.to_vec(),
        );
    }
    if path.ends_with("/info/lfs/objects/batch") {
        let body = match req.into_body().collect().await {
            Ok(b) => b.to_bytes(),
            Err(e) => {
                return reply(StatusCode::BAD_REQUEST, "text/plain", e.to_string().into());
            }
        };
        return batch(st, &base(addr, tls), &body);
    }
    if let Some(oid) = path.strip_prefix("/lfs/objects/") {
        let tampered = st.tampered.lock().ok().and_then(|t| t.get(oid).cloned());
        let own = st.objects.lock().ok().and_then(|o| o.get(oid).cloned());
        return match tampered.or(own) {
            Some(bytes) => reply(StatusCode::OK, "application/octet-stream", bytes),
            None => reply(
                StatusCode::NOT_FOUND,
                "text/plain",
                b"no such object".to_vec(),
            ),
        };
    }
    match super::git_http::cgi(&st.root, req).await {
        Ok(r) => r,
        Err(e) => reply(
            StatusCode::INTERNAL_SERVER_ERROR,
            "text/plain",
            format!("{e:#}").into(),
        ),
    }
}

/// The batch API: a download action for each object this server (or the object server) has.
fn batch(st: &State, own_base: &str, body: &[u8]) -> Response<Full<Bytes>> {
    let Ok(asked) = serde_json::from_slice::<serde_json::Value>(body) else {
        return reply(StatusCode::BAD_REQUEST, "text/plain", b"bad json".to_vec());
    };
    let href_base = st
        .object_base
        .lock()
        .ok()
        .and_then(|b| b.clone())
        .unwrap_or_else(|| own_base.to_string());
    let known: Vec<String> = st
        .objects
        .lock()
        .map(|o| o.keys().cloned().collect())
        .unwrap_or_default();
    let objects: Vec<serde_json::Value> = asked["objects"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .map(|o| {
            let oid = o["oid"].as_str().unwrap_or_default();
            let size = o["size"].as_u64().unwrap_or_default();
            // The object server may be another one: then it holds the bytes, not us.
            if known.iter().any(|k| k == oid) || href_base != own_base {
                serde_json::json!({
                    "oid": oid,
                    "size": size,
                    "authenticated": true,
                    "actions": {"download": {
                        "href": format!("{href_base}/lfs/objects/{oid}"),
                        "header": {"X-Lfs-Test": "1"},
                        "expires_in": 3600,
                    }},
                })
            } else {
                serde_json::json!({
                    "oid": oid,
                    "size": size,
                    "error": {"code": 404, "message": "Object does not exist"},
                })
            }
        })
        .collect();
    let answer =
        serde_json::json!({"transfer": "basic", "objects": objects, "hash_algo": "sha256"});
    reply(
        StatusCode::OK,
        "application/vnd.git-lfs+json",
        answer.to_string().into(),
    )
}
