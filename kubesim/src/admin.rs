//! kubesim's admin HTTP API for out-of-process harnesses: clusters and credentials, request
//! logs, counters and writers' summaries, faults, cutting watches, client identities.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use parking_lot::RwLock;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::watch;

use super::Cluster;
use super::faults::FaultSpec;

/// What the admin API serves.
pub struct AdminState {
    pub clusters: Vec<Arc<Cluster>>,
    pub tokens: Arc<RwLock<HashMap<String, String>>>,
    pub kubeconfig: String,
}

fn respond(code: StatusCode, body: Value) -> Response<Full<Bytes>> {
    Response::builder()
        .status(code)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap_or_else(|_| Response::new(Full::new(Bytes::new())))
}

async fn handle(state: Arc<AdminState>, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let query: HashMap<String, String> = req
        .uri()
        .query()
        .map(|q| {
            url::form_urlencoded::parse(q.as_bytes())
                .into_owned()
                .collect()
        })
        .unwrap_or_default();
    let body = match Limited::new(req.into_body(), 1 << 20).collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => return respond(StatusCode::BAD_REQUEST, json!({"error": e.to_string()})),
    };
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let find = |name: &str| state.clusters.iter().find(|c| c.name == name).cloned();
    match (method, segs.as_slice()) {
        (Method::GET, ["clusters"]) => {
            let list: Vec<Value> = state
                .clusters
                .iter()
                .map(|c| json!({"name": c.name, "server": c.url(), "token": c.token}))
                .collect();
            respond(StatusCode::OK, json!(list))
        }
        (Method::GET, ["kubeconfig"]) => Response::builder()
            .header(header::CONTENT_TYPE, "application/yaml")
            .body(Full::new(Bytes::from(state.kubeconfig.clone())))
            .unwrap_or_else(|_| Response::new(Full::new(Bytes::new()))),
        (Method::GET, ["stats"]) => {
            let list: Vec<Value> = state.clusters.iter().map(|c| c.stats()).collect();
            respond(StatusCode::OK, json!(list))
        }
        (Method::GET, ["writers"]) => {
            let list: Vec<Value> = state
                .clusters
                .iter()
                .map(|c| json!({"cluster": c.name, "writers": c.log.writers()}))
                .collect();
            respond(StatusCode::OK, json!(list))
        }
        (Method::POST, ["tokens"]) => {
            let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            match (
                v.get("token").and_then(Value::as_str),
                v.get("user").and_then(Value::as_str),
            ) {
                (Some(t), Some(u)) => {
                    state.tokens.write().insert(t.into(), u.into());
                    respond(StatusCode::OK, json!({"ok": true}))
                }
                _ => respond(
                    StatusCode::BAD_REQUEST,
                    json!({"error": "body must be {\"token\": ..., \"user\": ...}"}),
                ),
            }
        }
        (m, ["clusters", name, rest @ ..]) => {
            let Some(c) = find(name) else {
                return respond(
                    StatusCode::NOT_FOUND,
                    json!({"error": format!("no cluster {name}")}),
                );
            };
            match (m, rest) {
                (Method::GET, ["requests"]) => {
                    let since = query.get("since").and_then(|s| s.parse().ok()).unwrap_or(0);
                    respond(StatusCode::OK, json!(c.log.since(since)))
                }
                (Method::GET, ["writers"]) => respond(StatusCode::OK, json!(c.log.writers())),
                (Method::GET, ["counters"]) => {
                    let list: Vec<Value> = c
                        .log
                        .counters()
                        .into_iter()
                        .map(|((user, verb), n)| json!({"user": user, "verb": verb, "count": n}))
                        .collect();
                    respond(StatusCode::OK, json!(list))
                }
                (Method::GET, ["faults"]) => respond(StatusCode::OK, json!(c.faults.get())),
                (Method::PUT, ["faults"]) => match serde_json::from_slice::<FaultSpec>(&body) {
                    Ok(spec) => {
                        c.faults.set(&spec);
                        tracing::info!(cluster = %c.name, ?spec, "faults set");
                        respond(StatusCode::OK, json!(c.faults.get()))
                    }
                    Err(e) => respond(StatusCode::BAD_REQUEST, json!({"error": e.to_string()})),
                },
                (Method::POST, ["cut-watches"]) => {
                    c.faults.cut();
                    respond(StatusCode::OK, json!({"ok": true}))
                }
                (Method::GET, []) => respond(StatusCode::OK, c.stats()),
                _ => respond(
                    StatusCode::NOT_FOUND,
                    json!({"error": "no such admin route"}),
                ),
            }
        }
        _ => respond(
            StatusCode::NOT_FOUND,
            json!({"error": "no such admin route"}),
        ),
    }
}

/// Serve the admin API until shutdown.
pub async fn serve(
    state: Arc<AdminState>,
    listener: TcpListener,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let state = state.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req| {
                        let s = state.clone();
                        async move { Ok::<_, Infallible>(handle(s, req).await) }
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
            _ = shutdown.changed() => return,
        }
    }
}
