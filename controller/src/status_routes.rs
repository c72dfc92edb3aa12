//! The routes the API server calls on the replica that owns an app's cluster: the app's
//! resources and tree, a diff against local manifests, and this replica's own status. Every
//! request must be signed for this replica's published address and every answer is signed
//! back (`flotilla_core::status_auth`), so the shared secret never travels.

use std::sync::{Arc, OnceLock, Weak};

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use flotilla_core::status_auth::{
    RESPONSE_SIGNATURE_HEADER, SIGNATURE_HEADER, TIME_HEADER, sign_response, verify_request,
};
use serde_json::{Value, json};

use crate::context::Context;
use crate::tracking::AppKey;

/// Largest `POST .../diff` body (local manifests).
pub const LOCAL_DIFF_MAX_BYTES: usize = 8 * 1024 * 1024;
/// Local diffs computed at once; more are refused with 429 (each holds its manifests parsed).
pub const LOCAL_DIFFS_AT_ONCE: usize = 2;

/// What the routes share.
pub struct StatusRoutes {
    pub ctx: Weak<Context>,
    pub secret: String,
    /// The address this replica publishes on its Lease (requests are signed for it); set once
    /// the listener is bound.
    pub address: OnceLock<String>,
    local_diffs: tokio::sync::Semaphore,
}

impl StatusRoutes {
    pub fn new(ctx: Weak<Context>, secret: String) -> Arc<Self> {
        Arc::new(Self {
            ctx,
            secret,
            address: OnceLock::new(),
            local_diffs: tokio::sync::Semaphore::new(LOCAL_DIFFS_AT_ONCE),
        })
    }

    /// The request's signature when it is valid for this replica.
    fn verify(
        &self,
        method: &Method,
        uri: &Uri,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Result<String, (StatusCode, String)> {
        let header = |n: &str| headers.get(n).and_then(|v| v.to_str().ok());
        let Some(address) = self.address.get() else {
            return Err((
                StatusCode::SERVICE_UNAVAILABLE,
                "no published address".into(),
            ));
        };
        let path = uri.path_and_query().map_or(uri.path(), |p| p.as_str());
        match verify_request(
            &self.secret,
            flotilla_core::status_auth::now(),
            header(TIME_HEADER),
            header(SIGNATURE_HEADER),
            method.as_str(),
            address,
            path,
            body,
        ) {
            Ok(()) => Ok(header(SIGNATURE_HEADER).unwrap_or_default().to_string()),
            Err(e) => {
                tracing::debug!(error = %e, %path, "status request refused");
                Err((StatusCode::UNAUTHORIZED, e.to_string()))
            }
        }
    }

    /// `value` as the answer to the request signed `request_signature`, signed back.
    fn signed(&self, request_signature: &str, status: StatusCode, value: &Value) -> Response {
        let body = serde_json::to_vec(value).unwrap_or_default();
        let sig = sign_response(&self.secret, request_signature, status.as_u16(), &body);
        let mut resp = (status, [("content-type", "application/json")], body).into_response();
        if let Ok(v) = HeaderValue::from_str(&sig) {
            resp.headers_mut().insert(RESPONSE_SIGNATURE_HEADER, v);
        }
        resp
    }
}

/// What this replica is doing: identity, ring members, owned and pending clusters, queue depth,
/// repo-servers and render-cache hits.
pub fn replica_status(ctx: Option<&Arc<Context>>) -> Value {
    let Some(ctx) = ctx else {
        return json!({"stopping": true});
    };
    let shard = ctx.shard.borrow().clone();
    let (memory, shared, miss) = ctx.manifests.cache_counts();
    json!({
        "identity": shard.identity,
        "applications": ctx.apps.state().len(),
        "clusters": ctx.registry.borrow().clusters().map(|c| c.server.clone()).collect::<Vec<_>>(),
        // Cluster Secrets that could not be used, and why (no credentials in the messages).
        "clusterSecretErrors": ctx.registry.borrow().errors.iter().map(|e| e.to_string()).collect::<Vec<_>>(),
        "cachedClusters": ctx.caches.servers(),
        "ownsAll": ctx.gate.owns_all(),
        "members": shard.members,
        "ownedClusters": *ctx.gate.held(),
        "pendingClusters": shard.pending,
        "releasingClusters": shard.releasing,
        "fenced": shard.fenced,
        "ownedApplications": ctx.metrics.owned_apps.get(),
        "queueDepth": ctx.queue.len(),
        "queueOldestSeconds": ctx.queue.oldest_seconds(),
        "reconcilesTotal": ctx.metrics.reconciles_done.get(),
        "repoServers": ctx.manifests.pool().endpoints().into_iter()
            .map(|(endpoint, up)| json!({"endpoint": endpoint, "up": up}))
            .collect::<Vec<_>>(),
        "repoServerCallsInFlight": ctx.manifests.rpc_in_flight(),
        "manifestCache": {"hitsMemory": memory, "hitsShared": shared, "misses": miss,
            "hitRatio": (memory + shared) as f64 / ((memory + shared + miss).max(1) as f64)},
    })
}

type Shared = State<Arc<StatusRoutes>>;

/// `GET /status/replica`.
async fn replica(State(r): Shared, method: Method, uri: Uri, headers: HeaderMap) -> Response {
    match r.verify(&method, &uri, &headers, b"") {
        Err(refused) => refused.into_response(),
        Ok(sig) => {
            let ctx = r.ctx.upgrade();
            let mut status = replica_status(ctx.as_ref());
            if let Some(ctx) = ctx {
                with_repo_loads(&mut status, &ctx.manifests.pool().loads().await);
            }
            r.signed(&sig, StatusCode::OK, &status)
        }
    }
}

/// Add each repo-server's renders running/waiting and slots to `status.repoServers`.
fn with_repo_loads(
    status: &mut Value,
    loads: &std::collections::BTreeMap<String, (u32, u32, u32)>,
) {
    for e in status["repoServers"].as_array_mut().into_iter().flatten() {
        if let Some((running, waiting, slots)) = e["endpoint"].as_str().and_then(|k| loads.get(k)) {
            e["rendersRunning"] = (*running).into();
            e["rendersWaiting"] = (*waiting).into();
            e["renderSlots"] = (*slots).into();
        }
    }
}

/// `GET /status/applications/{namespace}/{name}/resources`.
async fn resources(
    State(r): Shared,
    Path((namespace, name)): Path<(String, String)>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    match r.verify(&method, &uri, &headers, b"") {
        Err(refused) => refused.into_response(),
        Ok(sig) => explained(&r, &sig, AppKey::new(namespace, name), None).await,
    }
}

/// Body of `POST .../diff`: objects rendered elsewhere, to compare instead of the source's.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct LocalDiff {
    manifests: Vec<Value>,
}

/// `POST /status/applications/{namespace}/{name}/diff`: the resources against local manifests
/// (`flotilla app diff --local`). Compared only, never applied; at most
/// [`LOCAL_DIFFS_AT_ONCE`] at a time.
async fn local_diff(
    State(r): Shared,
    Path((namespace, name)): Path<(String, String)>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let sig = match r.verify(&method, &uri, &headers, &body) {
        Ok(s) => s,
        Err(refused) => return refused.into_response(),
    };
    let Ok(_permit) = r.local_diffs.try_acquire() else {
        return r.signed(
            &sig,
            StatusCode::TOO_MANY_REQUESTS,
            &json!({"error": "too many local diffs at once on this controller; try again"}),
        );
    };
    let local: LocalDiff = match serde_json::from_slice(&body) {
        Ok(l) => l,
        Err(e) => {
            return r.signed(
                &sig,
                StatusCode::BAD_REQUEST,
                &json!({"error": format!("diff request: {e}")}),
            );
        }
    };
    drop(body);
    explained(
        &r,
        &sig,
        AppKey::new(namespace, name),
        Some(local.manifests),
    )
    .await
}

async fn explained(
    r: &StatusRoutes,
    sig: &str,
    key: AppKey,
    local: Option<Vec<Value>>,
) -> Response {
    let Some(ctx) = r.ctx.upgrade() else {
        return r.signed(
            sig,
            StatusCode::SERVICE_UNAVAILABLE,
            &json!({"error": "stopping"}),
        );
    };
    match crate::explain::resources_against(&ctx, &key, local).await {
        Ok(explained) => r.signed(
            sig,
            StatusCode::OK,
            &serde_json::to_value(explained).unwrap_or(Value::Null),
        ),
        Err(e) => {
            let code = match e {
                crate::explain::ExplainError::NotFound(_) => StatusCode::NOT_FOUND,
                crate::explain::ExplainError::NotOwned(_) => StatusCode::MISDIRECTED_REQUEST,
                crate::explain::ExplainError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
                crate::explain::ExplainError::Invalid(_) => StatusCode::BAD_REQUEST,
            };
            r.signed(sig, code, &json!({"error": e.to_string()}))
        }
    }
}

/// The routes, sharing `routes`.
pub fn router(routes: Arc<StatusRoutes>) -> axum::Router {
    axum::Router::new()
        .route(
            "/status/applications/{namespace}/{name}/resources",
            axum::routing::get(resources),
        )
        .route(
            "/status/applications/{namespace}/{name}/diff",
            axum::routing::post(local_diff)
                .layer(axum::extract::DefaultBodyLimit::max(LOCAL_DIFF_MAX_BYTES)),
        )
        .route("/status/replica", axum::routing::get(replica))
        .with_state(routes)
}
