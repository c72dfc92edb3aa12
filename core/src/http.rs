//! The operational HTTP endpoint every binary serves: `/metrics` (Prometheus text from a
//! `prometheus-client` registry), `/healthz`, `/readyz`, plus routes a binary adds.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// Why the endpoint could not start.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("binding {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("serving: {0}")]
    Serve(std::io::Error),
}

/// Shared readiness flag: `/readyz` answers 200 once set.
#[derive(Debug, Clone)]
pub struct Ready(Arc<watch::Sender<bool>>);

impl Default for Ready {
    fn default() -> Self {
        Self(Arc::new(watch::channel(false).0))
    }
}

impl Ready {
    pub fn set(&self, ready: bool) {
        self.0.send_replace(ready);
    }
    pub fn get(&self) -> bool {
        *self.0.borrow()
    }
}

/// The Prometheus text exposition of `registry`.
pub fn encode(registry: &Registry) -> String {
    let mut out = String::new();
    // Writing into a String cannot fail.
    let _ = prometheus_client::encoding::text::encode(&mut out, registry);
    out
}

/// `/metrics`, `/healthz` and `/readyz`; merge a binary's own routes into it.
pub fn router(registry: Arc<Registry>, ready: Ready) -> Router {
    Router::new()
        .route(
            "/metrics",
            get(move || {
                let registry = registry.clone();
                async move {
                    (
                        [(
                            header::CONTENT_TYPE,
                            "application/openmetrics-text; version=1.0.0; charset=utf-8",
                        )],
                        encode(&registry),
                    )
                }
            }),
        )
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/readyz",
            get(move || {
                let ready = ready.clone();
                async move {
                    if ready.get() {
                        (StatusCode::OK, "ready").into_response()
                    } else {
                        (StatusCode::SERVICE_UNAVAILABLE, "not ready").into_response()
                    }
                }
            }),
        )
}

/// Bind `addr` and serve `router` in a background task; returns the bound address.
pub async fn serve(addr: SocketAddr, router: Router) -> Result<SocketAddr, HttpError> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| HttpError::Bind { addr, source })?;
    let bound = listener
        .local_addr()
        .map_err(|source| HttpError::Bind { addr, source })?;
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, router).await {
            tracing::error!(error = %e, "metrics endpoint stopped");
        }
    });
    Ok(bound)
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::metrics::counter::Counter;

    /// A plain HTTP/1.0 GET over a socket: status code and body.
    async fn get_text(addr: SocketAddr, path: &str) -> (u16, String) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
        s.write_all(format!("GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").as_bytes())
            .await
            .expect("write");
        let mut buf = String::new();
        s.read_to_string(&mut buf).await.expect("read");
        let status = buf
            .split(' ')
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        let body = buf.split_once("\r\n\r\n").map(|x| x.1).unwrap_or("");
        (status, body.to_string())
    }

    #[tokio::test]
    async fn serves_metrics_health_and_readiness() {
        let mut registry = Registry::default();
        let c = Counter::<u64>::default();
        registry.register("flotilla_test_things", "Things counted", c.clone());
        c.inc_by(3);
        let ready = Ready::default();
        let addr = serve(
            "127.0.0.1:0".parse().expect("addr"),
            router(Arc::new(registry), ready.clone()),
        )
        .await
        .expect("serves");
        let (status, body) = get_text(addr, "/metrics").await;
        assert_eq!(status, 200);
        assert!(body.contains("flotilla_test_things_total 3"), "{body}");
        assert_eq!(get_text(addr, "/healthz").await.0, 200);
        assert_eq!(get_text(addr, "/readyz").await.0, 503);
        ready.set(true);
        assert_eq!(get_text(addr, "/readyz").await.0, 200);
    }
}
