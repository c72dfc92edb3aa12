//! The per-application routes beyond get/sync/refresh: its resources and diffs (asked of the
//! owning controller), events, history, and the terminate, rollback and delete actions; and
//! creating and updating Applications (in any namespace served, under Argo CD's
//! `sourceNamespaces` rule).

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use flotilla_controller::types::Application;
use serde_json::{Value, json};

use crate::actions::{ActionError, Propagation, RollbackRequest};
use crate::api::{Server, count, denied, error, unauthenticated};
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
    let app = crate::api::stored_app(s, ns, name)
        .ok_or_else(|| crate::api::missing_app(s, &who, ns, name))?;
    if !s.can_app(&who, act, &s.app_object(&app)) {
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

/// The Application a create or update sends: as sent (unknown fields kept) and as read; or
/// why it is not one.
fn app_body(body: &[u8]) -> Result<(Value, Application), String> {
    let v: Value = serde_json::from_slice(body).map_err(|e| format!("application: {e}"))?;
    if !v.is_object() || !v["spec"].is_object() {
        return Err("expected an Application with metadata and spec".into());
    }
    let app: Application =
        serde_json::from_value(v.clone()).map_err(|e| format!("application: {e}"))?;
    Ok((v, app))
}

/// Why app `name` in `ns` may not use `app`'s project, if it may not: the project must exist,
/// and outside the control plane list `ns` in `sourceNamespaces` (Argo CD's rule, whatever the
/// caller's RBAC).
fn project_refusal(s: &Server, name: &str, ns: &str, app: &Application) -> Option<String> {
    let project = if app.spec.project.is_empty() {
        "default"
    } else {
        &app.spec.project
    };
    let found = s
        .projects
        .get(&kube::runtime::reflector::ObjectRef::new(project).within(&s.namespace));
    s.scope
        .project_refusal(name, ns, project, found.as_deref().map(|p| &p.spec))
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateQuery {
    /// Replace the spec of an existing app that differs (Argo CD's `upsert`).
    #[serde(default)]
    upsert: bool,
}

/// `POST /api/v1/applications[?upsert=true]` with an Application: created in its
/// `metadata.namespace` (the control plane's when none) as Argo CD's API creates one. A
/// namespace not served is refused (403), as is a project the namespace may not use (400);
/// an existing app with the same spec is answered as it is, a different one only replaced
/// with `upsert`.
async fn create_app(
    State(s): Shared,
    headers: HeaderMap,
    q: Result<Query<CreateQuery>, axum::extract::rejection::QueryRejection>,
    body: axum::body::Bytes,
) -> Response {
    let resp = async {
        let who = match s.auth.authenticate(&headers).await {
            Ok(w) => w,
            Err(e) => return unauthenticated(e),
        };
        let q = match q {
            Ok(Query(q)) => q,
            Err(e) => return error(StatusCode::BAD_REQUEST, e.body_text()),
        };
        let (v, app) = match app_body(&body) {
            Ok(x) => x,
            Err(why) => return error(StatusCode::BAD_REQUEST, why),
        };
        let name = app.metadata.name.clone().unwrap_or_default();
        if name.is_empty() {
            return error(StatusCode::BAD_REQUEST, "metadata.name is required");
        }
        let ns = app
            .metadata
            .namespace
            .clone()
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| s.namespace.clone());
        if !s.scope.serves(&ns) {
            return error(
                StatusCode::FORBIDDEN,
                format!("namespace '{ns}' is not permitted"),
            );
        }
        let object = crate::rbac::AppObject::new(&s.namespace, &app.spec.project, &ns, &name);
        if !s.can_app(&who, "create", &object) {
            return denied();
        }
        if let Some(why) = project_refusal(&s, &name, &ns, &app) {
            return error(StatusCode::BAD_REQUEST, why);
        }
        if let Some(existing) = crate::api::stored_app(&s, &ns, &name) {
            if existing.spec == app.spec {
                return Json(crate::api::trimmed(&*existing)).into_response();
            }
            if !q.upsert {
                return error(
                    StatusCode::CONFLICT,
                    format!("application {ns}/{name} exists with a different spec; use upsert=true to replace it"),
                );
            }
            if !s.can_app(&who, "update", &s.app_object(&existing))
                || !s.can_app(&who, "update", &object)
            {
                return denied();
            }
            return match s.actions.update(&existing, &v, None, &who).await {
                Ok(a) => Json(crate::api::trimmed(&a)).into_response(),
                Err(e) => action_error(e),
            };
        }
        let mut metadata = json!({"name": name, "namespace": ns});
        for key in ["labels", "annotations", "finalizers"] {
            if let Some(x) = v["metadata"].get(key).filter(|x| !x.is_null()) {
                metadata[key] = x.clone();
            }
        }
        // What the client may set: no status, no operation (a sync needs its own permission).
        let obj = json!({"apiVersion": "argoproj.io/v1alpha1", "kind": "Application",
                         "metadata": metadata, "spec": v["spec"]});
        match s.actions.create(&ns, obj, &who).await {
            Ok(a) => Json(crate::api::trimmed(&a)).into_response(),
            Err(ActionError::Kube(kube::Error::Api(a))) if a.code == 409 => error(
                StatusCode::CONFLICT,
                format!("application {ns}/{name} already exists"),
            ),
            Err(e) => action_error(e),
        }
    }
    .await;
    count(&s, "create", resp)
}

/// `PUT /api/v1/applications/{ns}/{name}` with the Application: its spec (and labels and
/// annotations, when sent) replaced, under the same project rule as a create; conditional on
/// the sent `metadata.resourceVersion`, if any.
async fn update_app(
    State(s): Shared,
    headers: HeaderMap,
    Path((ns, name)): Path<(String, String)>,
    body: axum::body::Bytes,
) -> Response {
    let resp = async {
        let (who, existing) = match authorized_app(&s, &headers, &ns, &name, "update").await {
            Ok(x) => x,
            Err(r) => return r,
        };
        let (v, app) = match app_body(&body) {
            Ok(x) => x,
            Err(why) => return error(StatusCode::BAD_REQUEST, why),
        };
        let other = |given: &Option<String>, path: &str| {
            given.as_deref().is_some_and(|g| !g.is_empty() && g != path)
        };
        if other(&app.metadata.name, &name) || other(&app.metadata.namespace, &ns) {
            return error(
                StatusCode::BAD_REQUEST,
                format!("the body names another application than {ns}/{name}"),
            );
        }
        // Moving it to another project needs the right there too.
        let object = crate::rbac::AppObject::new(&s.namespace, &app.spec.project, &ns, &name);
        if !s.can_app(&who, "update", &object) {
            return denied();
        }
        if let Some(why) = project_refusal(&s, &name, &ns, &app) {
            return error(StatusCode::BAD_REQUEST, why);
        }
        let rv = app
            .metadata
            .resource_version
            .as_deref()
            .filter(|r| !r.is_empty());
        match s.actions.update(&existing, &v, rv, &who).await {
            Ok(a) => Json(crate::api::trimmed(&a)).into_response(),
            Err(e) => action_error(e),
        }
    }
    .await;
    count(&s, "update", resp)
}

/// The per-application routes.
pub fn routes() -> axum::Router<Arc<Server>> {
    use axum::routing::{get, post};
    axum::Router::new()
        .route("/api/v1/applications", post(create_app))
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
            axum::routing::delete(delete).put(update_app),
        )
}

/// The OpenAPI paths of these routes.
pub fn openapi_paths() -> Value {
    let p = json!([{"name": "namespace", "in": "path", "required": true, "schema": {"type": "string"}},
                   {"name": "name", "in": "path", "required": true, "schema": {"type": "string"}}]);
    let err = json!({"description": "error", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}});
    let ok = json!({"description": "OK", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Object"}}}});
    let app = json!({"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Object"}}}});
    json!({
        "/api/v1/applications": {"post": {
            "summary": "Create an application in its metadata.namespace (the control plane's when none; another only when the server serves it, and its project's sourceNamespaces list it); upsert replaces a differing spec",
            "parameters": [{"name": "upsert", "in": "query", "required": false, "schema": {"type": "boolean"}}],
            "requestBody": {"required": true, "content": app["content"]},
            "responses": {"200": ok, "400": err, "401": err, "403": err, "409": err}}},
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
        "/api/v1/applications/{namespace}/{name}": {"put": {
            "summary": "Replace the application's spec (and labels and annotations, when sent); conditional on metadata.resourceVersion when sent",
            "parameters": p, "requestBody": {"required": true, "content": app["content"]},
            "responses": {"200": ok, "400": err, "401": err, "403": err, "404": err, "409": err}},
          "delete": {
            "summary": "Delete the application; cascade (default true) deletes its resources first",
            "parameters": [p[0], p[1],
                {"name": "cascade", "in": "query", "required": false, "schema": {"type": "boolean"}},
                {"name": "propagationPolicy", "in": "query", "required": false, "schema": {"type": "string", "enum": ["foreground", "background"]}}],
            "responses": {"200": ok, "401": err, "403": err, "404": err, "409": err}}},
    })
}
