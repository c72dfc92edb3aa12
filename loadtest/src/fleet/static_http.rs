//! A static file server for tests: serves a directory over HTTP (e.g. a Helm chart repository
//! with `index.yaml` and chart archives), optionally behind Basic auth.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Result;
use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// A running file server; stops when dropped.
pub struct StaticHttp {
    pub addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Drop for StaticHttp {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn reply(status: StatusCode, body: Vec<u8>) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r
}

fn serve_file(
    root: &Path,
    basic: Option<&str>,
    req: &Request<hyper::body::Incoming>,
) -> Response<Full<Bytes>> {
    if let Some(expected) = basic {
        let got = req
            .headers()
            .get("authorization")
            .and_then(|h| h.to_str().ok())
            .unwrap_or_default();
        if got != expected {
            return reply(
                StatusCode::UNAUTHORIZED,
                b"authentication required".to_vec(),
            );
        }
    }
    let rel = req.uri().path().trim_start_matches('/');
    if rel.split('/').any(|c| c == "..") {
        return reply(StatusCode::FORBIDDEN, Vec::new());
    }
    match std::fs::read(root.join(rel)) {
        Ok(b) => reply(StatusCode::OK, b),
        Err(_) => reply(StatusCode::NOT_FOUND, b"not found".to_vec()),
    }
}

impl StaticHttp {
    /// Serve `root`; with `basic = Some((user, pass))` every request must carry those.
    pub async fn start(root: &Path, basic: Option<(&str, &str)>) -> Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let root: PathBuf = root.to_path_buf();
        let basic = basic.map(|(u, p)| {
            use base64::Engine;
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"))
            )
        });
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let root = root.clone();
                let basic = basic.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req| {
                        let r = serve_file(&root, basic.as_deref(), &req);
                        async move { Ok::<_, Infallible>(r) }
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Ok(Self { addr, task })
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}
