//! The per-application routes beyond get/sync/refresh: its resources and diffs (asked of the
//! owning controller), events, history, and the terminate, rollback and delete actions.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use flotilla_controller::types::Application;
use serde_json::{Value, json};

use crate::actions::{ActionError, Propagation, RollbackRequest};
use crate::api::{Server, app_object, count, denied, error, unauthenticated};
use crate::auth::Principal;

type Shared = State<Arc<Server>>;

/// Authenticate, find the app and check that the caller may `act` on it.
pub(crate) async fn authorized_app(
    s: &Server,
    headers: &HeaderMap,
    ns: &str,
    name: &str,
    act: &str,
) -> Result<(Principal, Arc<Application>), Response> {
    let who = s
        .auth
        .authenticate(headers)
        .await
        .map_err(unauthenticated)?;
    let app = s
        .apps
        .get(&kube::runtime::reflector::ObjectRef::new(name).within(ns))
        .ok_or_else(|| crate::api::missing_app(s, &who, ns, name))?;
    if !s.can(&who, "applications", act, &app_object(&app)) {
        return Err(denied());
    }
    Ok((who, app))
}

/// The answer to a sync or rollback written: the operation, the app's version with it, and
/// the request id a client waits for (see `actions::REQUEST_INFO`).
pub(crate) fn operation_started(
    (op, rv): (flotilla_controller::operation::Operation, String),
) -> Response {
    let request = crate::actions::request_of(&op);
    Json(json!({"operation": op, "resourceVersion": rv, "request": request})).into_response()
}

/// The answer to a failed action.
pub(crate) fn action_error(e: ActionError) -> Response {
    match e {
        ActionError::InProgress | ActionError::NotRunning => {
            error(StatusCode::CONFLICT, e.to_string())
        }
        ActionError::Refused(m) => error(StatusCode::BAD_REQUEST, m),
        ActionError::Kube(kube::Error::Api(a)) if a.code == 409 => error(
            StatusCode::CONFLICT,
            "the application changed meanwhile; try again",
        ),
        ActionError::Kube(e) => error(StatusCode::BAD_GATEWAY, e.to_string()),
    }
}

/// The owner's answer as the API's.
fn routed(r: Result<crate::controllers::Answer, crate::controllers::RouteError>) -> Response {
    match r {
        Ok((200, body)) => Json(body).into_response(),
        // The controller's own refusals of the request pass through; its authentication
        // failures are the server's misconfiguration, not the caller's (502).
        Ok((code @ (400 | 404 | 429 | 503), body)) => error(
            StatusCode::from_u16(code).unwrap_or(StatusCode::BAD_GATEWAY),
            body["error"]
                .as_str()
                .map(str::to_string)
                .unwrap_or_else(|| format!("the owning controller answered {code}")),
        ),
        Ok((code, body)) => error(
            StatusCode::BAD_GATEWAY,
            format!(
                "the owning controller answered {code}: {}",
                body["error"].as_str().unwrap_or("no details")
            ),
        ),
        Err(e @ crate::controllers::RouteError::UnknownCluster(_)) => {
            error(StatusCode::NOT_FOUND, e.to_string())
        }
        Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    }
}

/// Largest `POST .../diff` body (local manifests), as the controllers take.
pub const LOCAL_DIFF_MAX_BYTES: usize = flotilla_controller::status_routes::LOCAL_DIFF_MAX_BYTES;

/// Local diffs this server relays at once (each holds its manifests parsed); more get 429.
static LOCAL_DIFFS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(4);

/// `POST .../diff` with `{"manifests": [...]}`: the resources compared with manifests
/// rendered elsewhere (`flotilla app diff --local`) instead of Git's. Nothing is applied.
async fn local_diff(
    State(s): Shared,
    headers: HeaderMap,
    Path((ns, name)): Path<(String, String)>,
    body: axum::body::Bytes,
) -> Response {
    let resp = async {
        let (_, app) = match authorized_app(&s, &headers, &ns, &name, "get").await {
            Ok(x) => x,
            Err(r) => return r,
        };
        let Ok(_permit) = LOCAL_DIFFS.try_acquire() else {
            return error(
                StatusCode::TOO_MANY_REQUESTS,
                "too many local diffs at once; try again",
            );
        };
        match serde_json::from_slice::<Value>(&body) {
            Ok(v) if v["manifests"].is_array() => routed(s.controllers.local_diff(&app, &v).await),
            Ok(_) => error(
                StatusCode::BAD_REQUEST,
                "expected {\"manifests\": [objects]}",
            ),
            Err(e) => error(StatusCode::BAD_REQUEST, format!("diff request: {e}")),
        }
    }
    .await;
    count(&s, "diff", resp)
}

/// `GET .../resources`: each managed resource's sync, health and normalized diff, from the
/// controller replica that owns the app's cluster.
async fn resources(
    State(s): Shared,
    headers: HeaderMap,
    Path((ns, name)): Path<(String, String)>,
) -> Response {
    let resp = match authorized_app(&s, &headers, &ns, &name, "get").await {
        Err(r) => r,
        Ok((_, app)) => routed(s.controllers.resources(&app).await),
    };
    count(&s, "resources", resp)
}

/// `GET .../events`: the Events recorded about the app (syncs, refreshes, who did what).
async fn events(
    State(s): Shared,
    headers: HeaderMap,
    Path((ns, name)): Path<(String, String)>,
) -> Response {
    let resp = match authorized_app(&s, &headers, &ns, &name, "get").await {
        Err(r) => r,
        Ok((_, app)) => match s.actions.events(&app).await {
            Ok(items) => Json(json!({"items": items})).into_response(),
            Err(e) => action_error(e),
        },
    };
    count(&s, "events", resp)
}

/// `GET .../history`: the deployments (`status.history`, newest last) and the current or
/// last operation.
async fn history(
    State(s): Shared,
    headers: HeaderMap,
    Path((ns, name)): Path<(String, String)>,
) -> Response {
    let resp = match authorized_app(&s, &headers, &ns, &name, "get").await {
        Err(r) => r,
        Ok((_, app)) => {
            let status = app.status.as_ref();
            Json(json!({
                "history": status.and_then(|s| s.history.clone()).unwrap_or_default(),
                "operationState": status.and_then(|s| s.operation_state.clone()),
            }))
            .into_response()
        }
    };
    count(&s, "history", resp)
}

/// `POST .../terminate`: stop the running operation.
async fn terminate(
    State(s): Shared,
    headers: HeaderMap,
    Path((ns, name)): Path<(String, String)>,
) -> Response {
    let resp = match authorized_app(&s, &headers, &ns, &name, "sync").await {
        Err(r) => r,
        Ok((who, app)) => match s.actions.terminate(&app, &who).await {
            Ok(()) => Json(json!({"terminating": true})).into_response(),
            Err(e) => action_error(e),
        },
    };
    count(&s, "terminate", resp)
}

/// `POST .../rollback` with `{"id": N}`: sync history entry N again.
async fn rollback(
    State(s): Shared,
    headers: HeaderMap,
    Path((ns, name)): Path<(String, String)>,
    body: axum::body::Bytes,
) -> Response {
    let resp = async {
        let (who, app) = match authorized_app(&s, &headers, &ns, &name, "sync").await {
            Ok(x) => x,
            Err(r) => return r,
        };
        let req: RollbackRequest = match serde_json::from_slice(&body) {
            Ok(r) => r,
            Err(e) => return error(StatusCode::BAD_REQUEST, format!("rollback request: {e}")),
        };
        match s.actions.rollback(&app, &req, &who).await {
            Ok(started) => operation_started(started),
            Err(e) => action_error(e),
        }
    }
    .await;
    count(&s, "rollback", resp)
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct DeleteQuery {
    /// Delete the app's resources too (default true, as Argo CD).
    cascade: Option<bool>,
    propagation_policy: Option<Propagation>,
}

/// `DELETE /api/v1/applications/{ns}/{name}?cascade=&propagationPolicy=`.
async fn delete(
    State(s): Shared,
    headers: HeaderMap,
    Path((ns, name)): Path<(String, String)>,
    q: Result<Query<DeleteQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let resp = async {
        let (who, app) = match authorized_app(&s, &headers, &ns, &name, "delete").await {
            Ok(x) => x,
            Err(r) => return r,
        };
        let q = match q {
            Ok(Query(q)) => q,
            Err(e) => return error(StatusCode::BAD_REQUEST, e.body_text()),
        };
        let cascade = q.cascade.unwrap_or(true);
        let propagation = q.propagation_policy.unwrap_or_default();
        match s.actions.delete(&app, cascade, propagation, &who).await {
            Ok(()) => Json(json!({"deleted": true, "cascade": cascade})).into_response(),
            Err(e) => action_error(e),
        }
    }
    .await;
    count(&s, "delete", resp)
}

/// The per-application routes.
pub fn routes() -> axum::Router<Arc<Server>> {
    use axum::routing::{get, post};
    axum::Router::new()
        .route(
            "/api/v1/applications/{namespace}/{name}/resources",
            get(resources),
        )
        .route(
            "/api/v1/applications/{namespace}/{name}/diff",
            post(local_diff).layer(axum::extract::DefaultBodyLimit::max(LOCAL_DIFF_MAX_BYTES)),
        )
        .route(
            "/api/v1/applications/{namespace}/{name}/events",
            get(events),
        )
        .route(
            "/api/v1/applications/{namespace}/{name}/history",
            get(history),
        )
        .route(
            "/api/v1/applications/{namespace}/{name}/terminate",
            post(terminate),
        )
        .route(
            "/api/v1/applications/{namespace}/{name}/rollback",
            post(rollback),
        )
        .route(
            "/api/v1/applications/{namespace}/{name}",
            axum::routing::delete(delete),
        )
}

/// The OpenAPI paths of these routes.
pub fn openapi_paths() -> Value {
    let p = json!([{"name": "namespace", "in": "path", "required": true, "schema": {"type": "string"}},
                   {"name": "name", "in": "path", "required": true, "schema": {"type": "string"}}]);
    let err = json!({"description": "error", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}});
    let ok = json!({"description": "OK", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Object"}}}});
    json!({
        "/api/v1/applications/{namespace}/{name}/resources": {"get": {
            "summary": "Each managed resource's sync, health and normalized desired-vs-live diff (Secret values masked), from the controller that owns the app's cluster",
            "parameters": p, "responses": {"200": ok, "401": err, "403": err, "404": err, "503": err}}},
        "/api/v1/applications/{namespace}/{name}/diff": {"post": {
            "summary": "The resources compared with manifests rendered elsewhere (flotilla app diff --local); nothing is applied",
            "parameters": p, "requestBody": {"required": true, "content": {"application/json": {"schema": {"type": "object", "required": ["manifests"],
                "properties": {"manifests": {"type": "array", "items": {"type": "object"}}}}}}},
            "responses": {"200": ok, "400": err, "401": err, "403": err, "404": err, "503": err}}},
        "/api/v1/applications/{namespace}/{name}/events": {"get": {
            "summary": "Events about the application", "parameters": p,
            "responses": {"200": ok, "401": err, "403": err, "404": err}}},
        "/api/v1/applications/{namespace}/{name}/history": {"get": {
            "summary": "Deployment history (status.history) and the current or last operation", "parameters": p,
            "responses": {"200": ok, "401": err, "403": err, "404": err}}},
        "/api/v1/applications/{namespace}/{name}/terminate": {"post": {
            "summary": "Terminate the running operation", "parameters": p,
            "responses": {"200": ok, "401": err, "403": err, "404": err, "409": err}}},
        "/api/v1/applications/{namespace}/{name}/rollback": {"post": {
            "summary": "Roll back to a history entry (refused while auto-sync is on)", "parameters": p,
            "requestBody": {"required": true, "content": {"application/json": {"schema": {"type": "object", "required": ["id"], "properties": {
                "id": {"type": "integer"}, "prune": {"type": "boolean"}, "dryRun": {"type": "boolean"}}}}}},
            "responses": {"200": ok, "400": err, "401": err, "403": err, "404": err, "409": err}}},
        "/api/v1/applications/{namespace}/{name}": {"delete": {
            "summary": "Delete the application; cascade (default true) deletes its resources first",
            "parameters": [p[0], p[1],
                {"name": "cascade", "in": "query", "required": false, "schema": {"type": "boolean"}},
                {"name": "propagationPolicy", "in": "query", "required": false, "schema": {"type": "string", "enum": ["foreground", "background"]}}],
            "responses": {"200": ok, "401": err, "403": err, "404": err, "409": err}}},
    })
}
