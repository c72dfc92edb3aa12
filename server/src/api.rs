//! The `/api/v1` routes: Applications (list with filters and paging, get) and AppProjects,
//! the OpenAPI document that describes them, request metrics. Every route authenticates first.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use flotilla_controller::types::{AppProject, Application};
use kube::runtime::reflector::{ObjectRef, Store};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use serde_json::{Value, json};

use crate::auth::{AuthError, Authenticator, Principal};
use crate::query::ListQuery;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub route: &'static str,
    pub code: u16,
}

/// What the handlers share.
pub struct Server {
    pub apps: Store<Application>,
    pub projects: Store<AppProject>,
    pub auth: Authenticator,
    /// The RBAC policy in force (swapped when `argocd-rbac-cm` changes).
    pub rbac: std::sync::RwLock<Arc<crate::rbac::Policy>>,
    pub actions: crate::actions::Actions,
    pub requests: Family<RequestLabels, Counter>,
    /// The controller replicas (who owns which cluster, and their status routes).
    pub controllers: crate::controllers::Controllers,
    /// Repository and credential-template Secrets (never returned; listed by URL).
    pub repos: Store<k8s_openapi::api::core::v1::Secret>,
    /// The control-plane namespace (Applications, AppProjects, Argo CD's Secrets).
    pub namespace: String,
    /// The namespaces whose Applications are served (the control plane's, and those of
    /// `--application-namespaces`).
    pub scope: crate::scope::AppScope,
    /// Every app's summary in list order, kept by the watch.
    pub index: Arc<crate::query::AppIndex>,
    /// Application changes, for the streaming endpoint.
    pub changes: tokio::sync::broadcast::Sender<crate::stream::Change>,
    /// Hand-overs and reconcile rates, for the fleet view.
    pub memory: crate::fleet_memory::FleetMemory,
}

impl Server {
    pub fn register(registry: &mut Registry) -> Family<RequestLabels, Counter> {
        let requests = Family::default();
        registry.register(
            "flotilla_server_requests",
            "API requests, by route and response code",
            requests.clone(),
        );
        requests
    }
}

type Shared = State<Arc<Server>>;

pub(crate) fn error(code: StatusCode, message: impl Into<String>) -> Response {
    (
        code,
        Json(json!({"error": message.into(), "code": code.as_u16()})),
    )
        .into_response()
}

impl Server {
    pub(crate) fn policy(&self) -> Arc<crate::rbac::Policy> {
        match self.rbac.read() {
            Ok(p) => p.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    /// Whether `who` may `act` on `res` `obj` (Argo CD's RBAC).
    pub fn can(&self, who: &Principal, res: &str, act: &str, obj: &str) -> bool {
        self.policy().can(&who.subject, &who.groups, res, act, obj)
    }

    /// Whether `who` may `act` on the application whose RBAC object is `obj`.
    pub fn can_app(&self, who: &Principal, act: &str, obj: &crate::rbac::AppObject) -> bool {
        self.policy()
            .can_object(&who.subject, &who.groups, "applications", act, obj)
    }

    /// Argo CD's RBAC object of `app` (see [`crate::rbac::AppObject`]).
    pub fn app_object(&self, app: &Application) -> crate::rbac::AppObject {
        crate::rbac::AppObject::of(&self.namespace, app)
    }
}

/// The answer about an app that does not exist (or lives in a namespace this server does not
/// serve): 404 only to a caller who could see an app of that name in that namespace in every
/// project; anyone else gets the 403 a hidden app gets, so names of other teams' apps cannot be
/// probed.
pub(crate) fn missing_app(s: &Server, who: &Principal, ns: &str, name: &str) -> Response {
    let anywhere = crate::rbac::AppObject::new(&s.namespace, "*", ns, name);
    if s.can_app(who, "get", &anywhere) {
        error(StatusCode::NOT_FOUND, format!("no application {ns}/{name}"))
    } else {
        denied()
    }
}

/// The app `ns`/`name` from the store; never looked up in a namespace this server does not
/// serve.
pub(crate) fn stored_app(s: &Server, ns: &str, name: &str) -> Option<Arc<Application>> {
    if !s.scope.serves(ns) {
        return None;
    }
    s.apps.get(&ObjectRef::new(name).within(ns))
}

pub(crate) fn denied() -> Response {
    error(StatusCode::FORBIDDEN, "permission denied")
}

/// The answer to a call whose caller could not be authenticated.
pub(crate) fn unauthenticated(e: AuthError) -> Response {
    match e {
        AuthError::Missing | AuthError::Invalid => error(StatusCode::UNAUTHORIZED, e.to_string()),
        AuthError::Unavailable => error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    }
}

/// Authenticate, run `f` for the caller, count the answer.
async fn answer(
    s: &Server,
    route: &'static str,
    headers: &HeaderMap,
    f: impl FnOnce(&Principal) -> Response,
) -> Response {
    let resp = match s.auth.authenticate(headers).await {
        Ok(who) => f(&who),
        Err(e) => unauthenticated(e),
    };
    count(s, route, resp)
}

/// Drop what clients never need (and what would double the payload).
pub(crate) fn trimmed<K: serde::Serialize>(obj: &K) -> Value {
    let mut v = serde_json::to_value(obj).unwrap_or(Value::Null);
    if let Some(m) = v.pointer_mut("/metadata").and_then(Value::as_object_mut) {
        m.remove("managedFields");
        if let Some(a) = m.get_mut("annotations").and_then(Value::as_object_mut) {
            a.remove("kubectl.kubernetes.io/last-applied-configuration");
        }
    }
    v
}

async fn list_apps(
    State(s): Shared,
    headers: HeaderMap,
    q: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    answer(&s, "applications", &headers, |who| {
        let q = match q {
            Ok(Query(q)) => q,
            Err(e) => return error(StatusCode::BAD_REQUEST, e.body_text()),
        };
        // Only what the caller may get is listed (and counted). One policy for the whole
        // request; a project whose answer cannot depend on the app's name is asked once.
        let policy = s.policy();
        let visible = crate::rbac::AppVisibility::new(&policy, &who.subject, &who.groups)
            .control_namespace(&s.namespace);
        match s.index.page(&q, &visible) {
            Ok(p) => Json(p).into_response(),
            Err(e) => error(StatusCode::BAD_REQUEST, e.to_string()),
        }
    })
    .await
}

async fn get_app(
    State(s): Shared,
    headers: HeaderMap,
    Path((ns, name)): Path<(String, String)>,
) -> Response {
    answer(&s, "application", &headers, |who| {
        match stored_app(&s, &ns, &name) {
            Some(a) if !s.can_app(who, "get", &s.app_object(&a)) => denied(),
            Some(a) => Json(trimmed(&*a)).into_response(),
            None => missing_app(&s, who, &ns, &name),
        }
    })
    .await
}

async fn list_projects(State(s): Shared, headers: HeaderMap) -> Response {
    answer(&s, "projects", &headers, |who| {
        let mut items: Vec<Value> = s
            .projects
            .state()
            .iter()
            .filter(|p| {
                s.can(
                    who,
                    "projects",
                    "get",
                    p.metadata.name.as_deref().unwrap_or_default(),
                )
            })
            .map(|p| trimmed(&**p))
            .collect();
        items.sort_by(|a, b| {
            a["metadata"]["name"]
                .as_str()
                .cmp(&b["metadata"]["name"].as_str())
        });
        Json(json!({"items": items})).into_response()
    })
    .await
}

async fn get_project(State(s): Shared, headers: HeaderMap, Path(name): Path<String>) -> Response {
    answer(&s, "project", &headers, |who| {
        match s
            .projects
            .state()
            .iter()
            .find(|p| p.metadata.name.as_deref() == Some(&name))
        {
            Some(_) if !s.can(who, "projects", "get", &name) => denied(),
            Some(p) => Json(trimmed(&**p)).into_response(),
            None if s.can(who, "projects", "get", "*") => {
                error(StatusCode::NOT_FOUND, format!("no project {name}"))
            }
            None => denied(),
        }
    })
    .await
}

pub(crate) fn count(s: &Server, route: &'static str, resp: Response) -> Response {
    s.requests
        .get_or_create(&RequestLabels {
            route,
            code: resp.status().as_u16(),
        })
        .inc();
    resp
}

/// Body of a sync: JSON, or nothing for a plain sync.
fn sync_request(body: &[u8]) -> Result<crate::actions::SyncRequest, String> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Default::default());
    }
    serde_json::from_slice(body).map_err(|e| format!("sync request: {e}"))
}

async fn sync_app(
    State(s): Shared,
    headers: HeaderMap,
    Path((ns, name)): Path<(String, String)>,
    body: axum::body::Bytes,
) -> Response {
    let resp = async {
        let (who, app) =
            match crate::app_api::authorized_app(&s, &headers, &ns, &name, "sync").await {
                Ok(x) => x,
                Err(r) => return r,
            };
        let req = match sync_request(&body) {
            Ok(r) => r,
            Err(e) => return error(StatusCode::BAD_REQUEST, e),
        };
        match s.actions.sync(&app, &req, &who).await {
            Ok(started) => crate::app_api::operation_started(started),
            Err(e) => crate::app_api::action_error(e),
        }
    }
    .await;
    count(&s, "sync", resp)
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RefreshQuery {
    #[serde(default)]
    hard: bool,
}

async fn refresh_app(
    State(s): Shared,
    headers: HeaderMap,
    Path((ns, name)): Path<(String, String)>,
    q: Result<Query<RefreshQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let resp = async {
        if let Err(e) = s.auth.authenticate(&headers).await {
            return unauthenticated(e);
        }
        let q = match q {
            Ok(Query(q)) => q,
            Err(e) => return error(StatusCode::BAD_REQUEST, e.body_text()),
        };
        let (who, app) = match crate::app_api::authorized_app(&s, &headers, &ns, &name, "get").await
        {
            Ok(x) => x,
            Err(r) => return r,
        };
        match s.actions.refresh(&app, q.hard, &who).await {
            Ok(()) => {
                Json(json!({"refresh": if q.hard { "hard" } else { "normal" }})).into_response()
            }
            Err(e) => crate::app_api::action_error(e),
        }
    }
    .await;
    count(&s, "refresh", resp)
}

/// The API's routes (state included).
pub fn router(server: Arc<Server>) -> Router {
    Router::new()
        .route("/api/v1/applications", get(list_apps))
        .route("/api/v1/applications/{namespace}/{name}", get(get_app))
        .route(
            "/api/v1/applications/{namespace}/{name}/sync",
            post(sync_app),
        )
        .route(
            "/api/v1/applications/{namespace}/{name}/refresh",
            post(refresh_app),
        )
        .route("/api/v1/projects", get(list_projects))
        .route("/api/v1/projects/{name}", get(get_project))
        .route("/api/v1/openapi.json", get(|| async { Json(openapi()) }))
        .merge(crate::app_api::routes())
        .merge(crate::fleet_api::routes())
        .merge(crate::config_api::routes())
        .merge(crate::stream::routes())
        .merge(crate::auth::routes())
        .merge(crate::session::routes())
        .fallback(crate::ui::serve)
        .layer(axum::middleware::from_fn(cookie_writes_need_json))
        .with_state(server)
}

/// A write authenticated only by the browser's cookie must say `Content-Type:
/// application/json`: a page on another origin (even a sibling subdomain, which SameSite=Lax
/// lets through) cannot send that without a CORS preflight, which this server never grants.
/// The header `X-Requested-With: flotilla` (which the UI sends) is accepted instead, for the
/// same reason. Token-authenticated clients (`Authorization`) are not affected.
async fn cookie_writes_need_json(
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    use axum::http::Method;
    let writes = !matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    let headers = req.headers();
    // As `authenticate` decides: the cookie counts whenever there is no bearer token.
    let by_cookie = crate::auth::bearer(headers).is_none()
        && crate::oidc::cookie(headers, crate::oidc::TOKEN_COOKIE).is_some();
    let json = is_json(headers);
    let ui = headers
        .get("x-requested-with")
        .is_some_and(|v| v.as_bytes() == b"flotilla");
    if writes && by_cookie && !json && !ui {
        return error(
            StatusCode::FORBIDDEN,
            "a write signed in by cookie needs Content-Type: application/json or X-Requested-With: flotilla",
        );
    }
    next.run(req).await
}

/// Whether the request's body is declared `application/json` (parameters aside).
pub(crate) fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(';')
                .next()
                .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/json"))
        })
}

/// The OpenAPI 3 document of `/api/v1` (public, like any API description).
pub fn openapi() -> Value {
    let mut doc = base_openapi();
    for more in [
        crate::app_api::openapi_paths(),
        crate::fleet_api::openapi_paths(),
        crate::config_api::openapi_paths(),
        crate::stream::openapi_paths(),
        crate::auth::openapi_paths(),
        crate::session::openapi_paths(),
    ] {
        for (path, ops) in more.as_object().into_iter().flatten() {
            let slot = &mut doc["paths"][path];
            if !slot.is_object() {
                *slot = json!({});
            }
            for (method, op) in ops.as_object().into_iter().flatten() {
                slot[method] = op.clone();
            }
        }
    }
    doc
}

fn base_openapi() -> Value {
    let q = |name: &str, what: &str| json!({"name": name, "in": "query", "required": false, "description": what, "schema": {"type": "string"}});
    let err = json!({"description": "error", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}});
    let ok = |schema: &str| json!({"description": "OK", "content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{schema}")}}}});
    json!({
        "openapi": "3.0.3",
        "info": {"title": "Flotilla API", "version": "v1",
                 "description": "Applications and AppProjects of a Flotilla fleet. Every call but this document needs `Authorization: Bearer <token>`."},
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "Error": {"type": "object", "properties": {"error": {"type": "string"}, "code": {"type": "integer"}}},
                "AppSummary": {"type": "object", "properties": {
                    "namespace": {"type": "string"}, "name": {"type": "string"}, "project": {"type": "string"},
                    "repoUrl": {"type": "string"}, "path": {"type": "string"}, "targetRevision": {"type": "string"},
                    "destServer": {"type": "string"}, "destName": {"type": "string"}, "destNamespace": {"type": "string"},
                    "sync": {"type": "string"}, "health": {"type": "string"}, "revision": {"type": "string"},
                    "operationPhase": {"type": "string"}, "labels": {"type": "object", "additionalProperties": {"type": "string"}}}},
                "AppPage": {"type": "object", "properties": {
                    "items": {"type": "array", "items": {"$ref": "#/components/schemas/AppSummary"}},
                    "metadata": {"type": "object", "properties": {"total": {"type": "integer"}, "continue": {"type": "string"}}}}},
                "Object": {"type": "object", "description": "The Kubernetes object (managedFields removed)", "additionalProperties": true},
                "SyncRequest": {"type": "object", "properties": {
                    "revision": {"type": "string"}, "prune": {"type": "boolean"}, "dryRun": {"type": "boolean"},
                    "revisions": {"type": "array", "items": {"type": "string"}, "description": "multi-source: a revision per source in sourcePositions (or in spec order)"},
                    "sourcePositions": {"type": "array", "items": {"type": "integer"}, "description": "multi-source: 1-based positions in spec.sources"},
                    "syncOptions": {"type": "array", "items": {"type": "string"}},
                    "resources": {"type": "array", "items": {"type": "object", "properties": {
                        "group": {"type": "string"}, "kind": {"type": "string"}, "name": {"type": "string"}, "namespace": {"type": "string"}}}}}},
                "ObjectList": {"type": "object", "properties": {"items": {"type": "array", "items": {"$ref": "#/components/schemas/Object"}}}}
            }
        },
        "security": [{"bearer": []}],
        "paths": {
            "/api/v1/applications": {"get": {
                "summary": "List applications, filtered, sorted by namespace and name, in pages",
                "parameters": [q("project", "project names, comma-separated"), q("cluster", "destination server URL or cluster name"),
                    q("namespace", "destination namespace"), q("selector", "labels: k=v, k!=v, k; comma-separated"),
                    q("sync", "sync statuses, comma-separated"), q("health", "health statuses, comma-separated"),
                    q("search", "substring of the name"), q("limit", "page size (default 500, at most 5000)"),
                    q("continue", "cursor from the previous page"),
                    q("offset", "skip this many matching apps (random access for a virtualised list)")],
                "responses": {"200": ok("AppPage"), "400": err, "401": err}}},
            "/api/v1/applications/{namespace}/{name}": {"get": {
                "summary": "One application",
                "parameters": [{"name": "namespace", "in": "path", "required": true, "schema": {"type": "string"}},
                               {"name": "name", "in": "path", "required": true, "schema": {"type": "string"}}],
                "responses": {"200": ok("Object"), "401": err, "404": err}}},
            "/api/v1/applications/{namespace}/{name}/sync": {"post": {
                "summary": "Request a sync (written as the Application's operation; the owning controller runs it)",
                "parameters": [{"name": "namespace", "in": "path", "required": true, "schema": {"type": "string"}},
                               {"name": "name", "in": "path", "required": true, "schema": {"type": "string"}}],
                "requestBody": {"required": false, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/SyncRequest"}}}},
                "responses": {"200": ok("Object"), "400": err, "401": err, "404": err, "409": err}}},
            "/api/v1/applications/{namespace}/{name}/refresh": {"post": {
                "summary": "Request a refresh (hard: render again)",
                "parameters": [{"name": "namespace", "in": "path", "required": true, "schema": {"type": "string"}},
                               {"name": "name", "in": "path", "required": true, "schema": {"type": "string"}},
                               {"name": "hard", "in": "query", "required": false, "schema": {"type": "boolean"}}],
                "responses": {"200": ok("Object"), "400": err, "401": err, "404": err}}},
            "/api/v1/projects": {"get": {"summary": "AppProjects", "responses": {"200": ok("ObjectList"), "401": err}}},
            "/api/v1/projects/{name}": {"get": {"summary": "One AppProject",
                "parameters": [{"name": "name", "in": "path", "required": true, "schema": {"type": "string"}}],
                "responses": {"200": ok("Object"), "401": err, "404": err}}},
            "/api/v1/openapi.json": {"get": {"summary": "This document", "security": [], "responses": {"200": {"description": "OK"}}}}
        }
    })
}
