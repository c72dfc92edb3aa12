//! Git over HTTP(S) for tests: Git's own `git http-backend` (CGI) behind a small server that
//! demands credentials (Basic or Bearer), optionally over TLS with a self-signed certificate.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;

use anyhow::{Context, Result};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// What the server accepts.
#[derive(Debug, Clone)]
pub enum Auth {
    Basic { username: String, password: String },
    Bearer(String),
}

/// A running smart-HTTP Git server over the bare repositories in a directory.
pub struct GitHttpServer {
    pub addr: SocketAddr,
    pub tls: bool,
    task: JoinHandle<()>,
}

impl Drop for GitHttpServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl GitHttpServer {
    /// Serve the bare repositories under `root` (e.g. `root/apps.git`) requiring `auth`.
    pub async fn start(root: &Path, auth: Auth, tls: bool) -> Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let acceptor = if tls {
            Some(
                crate::kubesim::tls::Tls::generate(addr.ip())
                    .map_err(anyhow::Error::msg)?
                    .acceptor,
            )
        } else {
            None
        };
        let root = root.to_path_buf();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let root = root.clone();
                let auth = auth.clone();
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req| {
                        let root = root.clone();
                        let auth = auth.clone();
                        async move { Ok::<_, Infallible>(handle(&root, &auth, req).await) }
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
        Ok(Self { addr, tls, task })
    }

    /// The URL of repository `name` (e.g. `apps.git`).
    pub fn url(&self, name: &str) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}/{name}", self.addr)
    }
}

fn authorized(auth: &Auth, header: Option<&str>) -> bool {
    use base64::Engine;
    match (auth, header) {
        (Auth::Basic { username, password }, Some(h)) => h
            .strip_prefix("Basic ")
            .and_then(|b| {
                base64::engine::general_purpose::STANDARD
                    .decode(b.trim())
                    .ok()
            })
            .is_some_and(|d| d == format!("{username}:{password}").as_bytes()),
        (Auth::Bearer(token), Some(h)) => h.strip_prefix("Bearer ") == Some(token.as_str()),
        _ => false,
    }
}

fn reply(status: StatusCode, body: &str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body.to_string())));
    *r.status_mut() = status;
    if status == StatusCode::UNAUTHORIZED {
        r.headers_mut().insert(
            "WWW-Authenticate",
            hyper::header::HeaderValue::from_static("Basic realm=\"git\""),
        );
    }
    r
}

async fn handle(root: &Path, auth: &Auth, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let header = req
        .headers()
        .get("authorization")
        .and_then(|h| h.to_str().ok());
    if !authorized(auth, header) {
        return reply(StatusCode::UNAUTHORIZED, "authentication required");
    }
    match cgi(root, req).await {
        Ok(r) => r,
        Err(e) => reply(StatusCode::INTERNAL_SERVER_ERROR, &format!("{e:#}")),
    }
}

/// Run `git http-backend` for one request (CGI/1.1).
async fn cgi(root: &Path, req: Request<Incoming>) -> Result<Response<Full<Bytes>>> {
    let (parts, body) = req.into_parts();
    let body = body.collect().await?.to_bytes();
    let header = |name: &str| {
        parts
            .headers
            .get(name)
            .and_then(|h| h.to_str().ok())
            .unwrap_or("")
            .to_string()
    };
    let mut child = tokio::process::Command::new("git")
        .arg("http-backend")
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("GIT_PROJECT_ROOT", root)
        .env("GIT_HTTP_EXPORT_ALL", "1")
        .env("REQUEST_METHOD", parts.method.as_str())
        .env("PATH_INFO", parts.uri.path())
        .env("QUERY_STRING", parts.uri.query().unwrap_or(""))
        .env("CONTENT_TYPE", header("content-type"))
        .env("CONTENT_LENGTH", body.len().to_string())
        .env("HTTP_CONTENT_ENCODING", header("content-encoding"))
        .env("HTTP_GIT_PROTOCOL", header("git-protocol"))
        .env("REMOTE_USER", "test")
        .env("REMOTE_ADDR", "127.0.0.1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .context("starting git http-backend")?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(&body).await?;
    }
    let out = child.wait_with_output().await?;
    let split = out
        .stdout
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|p| (p, 4))
        .or_else(|| {
            out.stdout
                .windows(2)
                .position(|w| w == b"\n\n")
                .map(|p| (p, 2))
        })
        .context("CGI output has no header end")?;
    let head = String::from_utf8_lossy(&out.stdout[..split.0]).to_string();
    let mut resp = Response::new(Full::new(Bytes::copy_from_slice(
        &out.stdout[split.0 + split.1..],
    )));
    for line in head.lines() {
        let Some((k, v)) = line.split_once(':') else {
            continue;
        };
        let v = v.trim();
        if k.eq_ignore_ascii_case("status") {
            let code: u16 = v
                .split(' ')
                .next()
                .and_then(|c| c.parse().ok())
                .unwrap_or(200);
            *resp.status_mut() = StatusCode::from_u16(code).unwrap_or(StatusCode::OK);
        } else if let (Ok(name), Ok(value)) = (
            hyper::header::HeaderName::from_bytes(k.trim().as_bytes()),
            hyper::header::HeaderValue::from_str(v),
        ) {
            resp.headers_mut().append(name, value);
        }
    }
    Ok(resp)
}
