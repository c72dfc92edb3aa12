//! Creating, updating and deleting AppProjects, clusters and repositories over `/api/v1`, where
//! Argo CD's API allows it. Clusters and repositories become Argo CD-shaped Secrets; the
//! credentials in a request are written there and never returned.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use flotilla_controller::types::AppProject;
use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use kube::api::{DeleteParams, PostParams};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::api::{Server, count, denied, error, unauthenticated};
use crate::auth::Principal;

type Shared = State<Arc<Server>>;

/// Label of Argo CD's cluster and repository Secrets.
const SECRET_TYPE: &str = "argocd.argoproj.io/secret-type";

fn kube_error(e: kube::Error) -> Response {
    match e {
        kube::Error::Api(a) if a.code == 409 => error(StatusCode::CONFLICT, a.message),
        kube::Error::Api(a) if a.code == 404 => error(StatusCode::NOT_FOUND, a.message),
        kube::Error::Api(a) if a.code == 422 || a.code == 400 => {
            error(StatusCode::BAD_REQUEST, a.message)
        }
        e => error(StatusCode::BAD_GATEWAY, e.to_string()),
    }
}

/// A DNS-1123 subdomain, as object names must be.
fn valid_name(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= 253
        && n.split('.').all(|l| {
            !l.is_empty()
                && l.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        })
}

/// The Secret name for a cluster or repository URL: `<prefix>-<hash>`.
fn secret_name(prefix: &str, url: &str) -> String {
    // Stable across processes and versions: FNV-1a over the URL.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in url.as_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{prefix}-{h:016x}")
}

async fn authed(s: &Server, headers: &HeaderMap) -> Result<Principal, Response> {
    s.auth.authenticate(headers).await.map_err(unauthenticated)
}

fn secrets(s: &Server) -> Api<Secret> {
    Api::namespaced(s.actions.client.clone(), &s.namespace)
}

fn audit(who: &Principal, what: &str, name: &str) {
    tracing::info!(user = %who.subject, %name, "{what}");
}

/// Delete `secret` (a cluster's or a repository's) if `who` may `delete` `object` of
/// `resource`; audited as `what` `id`.
async fn delete_secret(
    s: &Server,
    who: &Principal,
    resource: &str,
    object: &str,
    secret: &Secret,
    what: &str,
    id: &str,
) -> Result<Response, Response> {
    if !s.can(who, resource, "delete", object) {
        return Err(denied());
    }
    let name = secret.metadata.name.clone().unwrap_or_default();
    secrets(s)
        .delete(&name, &DeleteParams::default())
        .await
        .map_err(kube_error)?;
    audit(who, what, id);
    Ok(Json(json!({"deleted": id})).into_response())
}

// ---- AppProjects ----

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ProjectBody {
    project: Value,
    #[serde(default)]
    upsert: bool,
}

/// `POST /api/v1/projects` `{"project": AppProject, "upsert": bool}` (Argo CD's shape).
async fn create_project(State(s): Shared, headers: HeaderMap, body: axum::body::Bytes) -> Response {
    let resp = async {
        let who = authed(&s, &headers).await?;
        let body: ProjectBody = serde_json::from_slice(&body)
            .map_err(|e| error(StatusCode::BAD_REQUEST, format!("project request: {e}")))?;
        let mut project: AppProject = serde_json::from_value(body.project)
            .map_err(|e| error(StatusCode::BAD_REQUEST, format!("project: {e}")))?;
        let name = project.metadata.name.clone().unwrap_or_default();
        if !valid_name(&name) {
            return Err(error(
                StatusCode::BAD_REQUEST,
                format!("project name {name:?} is not a valid object name"),
            ));
        }
        let exists = s
            .projects
            .state()
            .iter()
            .any(|p| p.metadata.name.as_deref() == Some(&name));
        let act = if exists { "update" } else { "create" };
        if !s.can(&who, "projects", act, &name) {
            return Err(denied());
        }
        let api: Api<AppProject> = Api::namespaced(s.actions.client.clone(), &s.namespace);
        project.metadata.namespace = Some(s.namespace.clone());
        project.metadata.resource_version = None;
        project.metadata.uid = None;
        project.metadata.managed_fields = None;
        let written = match (exists, body.upsert) {
            (false, _) => api.create(&PostParams::default(), &project).await,
            (true, true) => {
                let current = api.get(&name).await.map_err(kube_error)?;
                project.metadata.resource_version = current.metadata.resource_version;
                api.replace(&name, &PostParams::default(), &project).await
            }
            (true, false) => {
                return Err(error(
                    StatusCode::CONFLICT,
                    format!("project {name} already exists (upsert to replace it)"),
                ));
            }
        }
        .map_err(kube_error)?;
        audit(
            &who,
            if exists {
                "project replaced"
            } else {
                "project created"
            },
            &name,
        );
        Ok(Json(crate::api::trimmed(&written)).into_response())
    }
    .await;
    count(&s, "project-write", resp.unwrap_or_else(|r| r))
}

/// `PUT /api/v1/projects/{name}` `{"project": AppProject}`: replace its spec (and labels,
/// annotations); `metadata.resourceVersion`, when given, must be the current one.
async fn update_project(
    State(s): Shared,
    headers: HeaderMap,
    Path(name): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    let resp = async {
        let who = authed(&s, &headers).await?;
        if !s.can(&who, "projects", "update", &name) {
            return Err(denied());
        }
        let body: ProjectBody = serde_json::from_slice(&body)
            .map_err(|e| error(StatusCode::BAD_REQUEST, format!("project request: {e}")))?;
        let wanted: AppProject = serde_json::from_value(body.project)
            .map_err(|e| error(StatusCode::BAD_REQUEST, format!("project: {e}")))?;
        if wanted.metadata.name.as_deref().is_some_and(|n| n != name) {
            return Err(error(
                StatusCode::BAD_REQUEST,
                "the body names another project",
            ));
        }
        let api: Api<AppProject> = Api::namespaced(s.actions.client.clone(), &s.namespace);
        let mut current = api.get(&name).await.map_err(kube_error)?;
        if let Some(rv) = &wanted.metadata.resource_version {
            current.metadata.resource_version = Some(rv.clone());
        }
        current.spec = wanted.spec;
        if wanted.metadata.labels.is_some() {
            current.metadata.labels = wanted.metadata.labels;
        }
        if wanted.metadata.annotations.is_some() {
            current.metadata.annotations = wanted.metadata.annotations;
        }
        current.metadata.managed_fields = None;
        let written = api
            .replace(&name, &PostParams::default(), &current)
            .await
            .map_err(kube_error)?;
        audit(&who, "project updated", &name);
        Ok(Json(crate::api::trimmed(&written)).into_response())
    }
    .await;
    count(&s, "project-write", resp.unwrap_or_else(|r| r))
}

/// `DELETE /api/v1/projects/{name}`: refused while applications use it (as Argo CD).
async fn delete_project(
    State(s): Shared,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Response {
    let resp = async {
        let who = authed(&s, &headers).await?;
        if !s.can(&who, "projects", "delete", &name) {
            return Err(denied());
        }
        let users = s
            .apps
            .state()
            .iter()
            .filter(|a| {
                let p = if a.spec.project.is_empty() {
                    "default"
                } else {
                    a.spec.project.as_str()
                };
                p == name
            })
            .count();
        if users > 0 {
            return Err(error(
                StatusCode::CONFLICT,
                format!("project {name} is referenced by {users} applications"),
            ));
        }
        let api: Api<AppProject> = Api::namespaced(s.actions.client.clone(), &s.namespace);
        api.delete(&name, &DeleteParams::default())
            .await
            .map_err(kube_error)?;
        audit(&who, "project deleted", &name);
        Ok(Json(json!({"deleted": name})).into_response())
    }
    .await;
    count(&s, "project-write", resp.unwrap_or_else(|r| r))
}

// ---- Clusters ----

/// A cluster as Argo CD's API takes it (credentials go to the Secret only).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ClusterBody {
    server: String,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    config: Value,
    #[serde(default)]
    project: Option<String>,
    #[serde(default)]
    namespaces: Vec<String>,
    #[serde(default)]
    cluster_resources: bool,
    #[serde(default)]
    labels: BTreeMap<String, String>,
}

#[derive(Deserialize, Default)]
struct UpsertQuery {
    #[serde(default)]
    upsert: bool,
}

/// The object of a cluster for RBAC: its URL, or `<project>/<URL>` when project-scoped.
fn cluster_object(server: &str, project: Option<&str>) -> String {
    match project {
        Some(p) if !p.is_empty() => format!("{p}/{server}"),
        _ => server.to_string(),
    }
}

/// The cluster Secret for `c`, or why `c` is refused (a 400).
fn cluster_secret(s: &Server, c: &ClusterBody) -> Result<Secret, String> {
    let server = c.server.trim_end_matches('/');
    if flotilla_controller::clusters::url_host(server).is_none() || !server.starts_with("https://")
    {
        return Err(format!("server {server:?} is not an https:// URL"));
    }
    if !c.config.is_object() && !c.config.is_null() {
        return Err("config must be an object".into());
    }
    // The config must read as the controllers read it.
    let config = if c.config.is_null() {
        json!({})
    } else {
        c.config.clone()
    };
    // Unknown fields and unusable values are refused here as the controllers would.
    flotilla_controller::clusters::ClusterConfig::parse(&config.to_string())
        .map_err(|e| format!("config: {e}"))?;
    let mut data = BTreeMap::from([
        ("server".to_string(), server.to_string()),
        (
            "name".to_string(),
            c.name.clone().unwrap_or_else(|| server.to_string()),
        ),
        ("config".to_string(), config.to_string()),
    ]);
    if let Some(p) = c.project.as_ref().filter(|p| !p.is_empty()) {
        data.insert("project".into(), p.clone());
    }
    if !c.namespaces.is_empty() {
        data.insert("namespaces".into(), c.namespaces.join(","));
        data.insert("clusterResources".into(), c.cluster_resources.to_string());
    }
    let mut labels = c.labels.clone();
    labels.insert(SECRET_TYPE.into(), "cluster".into());
    serde_json::from_value(json!({
        "metadata": {"name": secret_name("cluster", server), "namespace": s.namespace, "labels": labels},
        "type": "Opaque",
        "stringData": data,
    }))
    .map_err(|e| e.to_string())
}

/// `POST /api/v1/clusters[?upsert=true]` with a cluster; `PUT /api/v1/clusters/{server}`.
async fn write_cluster(
    s: &Server,
    headers: &HeaderMap,
    body: &[u8],
    upsert: bool,
    path_server: Option<&str>,
) -> Result<Response, Response> {
    let who = authed(s, headers).await?;
    let c: ClusterBody = serde_json::from_slice(body)
        .map_err(|e| error(StatusCode::BAD_REQUEST, format!("cluster: {e}")))?;
    if path_server.is_some_and(|p| p.trim_end_matches('/') != c.server.trim_end_matches('/')) {
        return Err(error(
            StatusCode::BAD_REQUEST,
            "the body names another server",
        ));
    }
    let secret = cluster_secret(s, &c).map_err(|e| error(StatusCode::BAD_REQUEST, e))?;
    let name = secret.metadata.name.clone().unwrap_or_default();
    let api = secrets(s);
    let current = api.get_opt(&name).await.map_err(kube_error)?;
    let act = if current.is_some() {
        "update"
    } else {
        "create"
    };
    if !s.can(
        &who,
        "clusters",
        act,
        &cluster_object(&c.server, c.project.as_deref()),
    ) {
        return Err(denied());
    }
    // Replacing a Secret needs the right to it as it is now, too: a project role must not
    // take over a global cluster (or another project's) by naming its server.
    if let Some(cur) = &current {
        let theirs = flotilla_controller::clusters::Cluster::from_secret(cur)
            .ok()
            .and_then(|c| c.project);
        if !s.can(
            &who,
            "clusters",
            "update",
            &cluster_object(&c.server, theirs.as_deref()),
        ) {
            return Err(denied());
        }
    }
    // Settings that run code in the controller or send its cloud identity somewhere are
    // an operator's: they need the right to write clusters outside any project, which a
    // project role never has (a project admin minting a token must not get a shell).
    let privileged: Vec<&str> = ["execProviderConfig", "awsAuthConfig", "proxyUrl"]
        .into_iter()
        .filter(|k| c.config.get(k).is_some_and(|v| !v.is_null()))
        .collect();
    if !privileged.is_empty() && !s.can(&who, "clusters", act, &cluster_object(&c.server, None)) {
        return Err(error(
            StatusCode::FORBIDDEN,
            format!(
                "{} may be set only by someone allowed to write clusters outside any project",
                privileged.join(", ")
            ),
        ));
    }
    match current {
        None => {
            api.create(&PostParams::default(), &secret)
                .await
                .map_err(kube_error)?;
        }
        Some(_) if !upsert => {
            return Err(error(
                StatusCode::CONFLICT,
                format!("cluster {} already exists (upsert to replace it)", c.server),
            ));
        }
        Some(cur) => {
            let mut next = secret;
            next.metadata.resource_version = cur.metadata.resource_version;
            api.replace(&name, &PostParams::default(), &next)
                .await
                .map_err(kube_error)?;
        }
    }
    audit(
        &who,
        if act == "create" {
            "cluster added"
        } else {
            "cluster replaced"
        },
        &c.server,
    );
    Ok(Json(
        json!({"server": c.server.trim_end_matches('/'), "name": c.name, "secret": name,
        "project": c.project}),
    )
    .into_response())
}

async fn create_cluster(
    State(s): Shared,
    headers: HeaderMap,
    Query(q): Query<UpsertQuery>,
    body: axum::body::Bytes,
) -> Response {
    let upsert = q.upsert;
    let resp = write_cluster(&s, &headers, &body, upsert, None).await;
    count(&s, "cluster-write", resp.unwrap_or_else(|r| r))
}

async fn update_cluster(
    State(s): Shared,
    headers: HeaderMap,
    Path(server): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    let resp = write_cluster(&s, &headers, &body, true, Some(&server)).await;
    count(&s, "cluster-write", resp.unwrap_or_else(|r| r))
}

/// `DELETE /api/v1/clusters/{server}`: its Secret (the controllers stop managing it; nothing
/// on the cluster is deleted).
async fn delete_cluster(
    State(s): Shared,
    headers: HeaderMap,
    Path(server): Path<String>,
) -> Response {
    let resp = async {
        let who = authed(&s, &headers).await?;
        let server = server.trim_end_matches('/').to_string();
        let secret = s
            .controllers
            .clusters
            .state()
            .iter()
            .find(|x| {
                flotilla_controller::clusters::Cluster::from_secret(x)
                    .is_ok_and(|c| c.server == server)
            })
            .cloned()
            .ok_or_else(|| error(StatusCode::NOT_FOUND, format!("no cluster {server}")))?;
        let project = flotilla_controller::clusters::Cluster::from_secret(&secret)
            .ok()
            .and_then(|c| c.project);
        let object = cluster_object(&server, project.as_deref());
        delete_secret(
            &s,
            &who,
            "clusters",
            &object,
            &secret,
            "cluster removed",
            &server,
        )
        .await
    }
    .await;
    count(&s, "cluster-write", resp.unwrap_or_else(|r| r))
}

// ---- Repositories ----

/// A repository as Argo CD's API takes it.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RepoBody {
    repo: String,
    #[serde(default)]
    r#type: Option<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    project: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    bearer_token: Option<String>,
    #[serde(default)]
    insecure: bool,
    #[serde(default)]
    ssh_private_key: Option<String>,
    #[serde(default)]
    tls_client_cert_data: Option<String>,
    #[serde(default)]
    tls_client_cert_key: Option<String>,
    #[serde(default)]
    proxy: Option<String>,
    #[serde(default)]
    no_proxy: Option<String>,
}

fn repo_object(url: &str, project: Option<&str>) -> String {
    cluster_object(url, project)
}

async fn create_repository(
    State(s): Shared,
    headers: HeaderMap,
    Query(q): Query<UpsertQuery>,
    body: axum::body::Bytes,
) -> Response {
    let upsert = q.upsert;
    let resp = async {
        let who = authed(&s, &headers).await?;
        let r: RepoBody = serde_json::from_slice(&body)
            .map_err(|e| error(StatusCode::BAD_REQUEST, format!("repository: {e}")))?;
        let url = r.repo.trim().to_string();
        let parsed = url::Url::parse(&url).ok();
        let scp_like = url.contains('@') && url.contains(':') && !url.contains("://");
        if !(parsed.as_ref().is_some_and(|u| matches!(u.scheme(), "https" | "http" | "git" | "ssh" | "oci")) || scp_like) {
            return Err(error(StatusCode::BAD_REQUEST, format!("repo {url:?} is not a repository URL")));
        }
        if parsed.as_ref().is_some_and(|u| !u.username().is_empty() || u.password().is_some()) {
            return Err(error(StatusCode::BAD_REQUEST, "put credentials in username/password, not in the URL"));
        }
        let typ = r.r#type.clone().unwrap_or_else(|| "git".into());
        if typ != "git" && typ != "helm" {
            return Err(error(StatusCode::BAD_REQUEST, format!("type {typ:?} is not git or helm")));
        }
        let name = secret_name("repo", &url);
        let api = secrets(&s);
        let current = api.get_opt(&name).await.map_err(kube_error)?;
        let act = if current.is_some() { "update" } else { "create" };
        if !s.can(&who, "repositories", act, &repo_object(&url, r.project.as_deref())) {
            return Err(denied());
        }
        // Replacing needs the right to the Secret as it is now (another project's, or a
        // global one, is not a project role's to overwrite).
        if let Some(cur) = &current {
            let theirs = cur
                .data
                .as_ref()
                .and_then(|d| d.get("project"))
                .map(|b| String::from_utf8_lossy(&b.0).to_string())
                .filter(|p| !p.is_empty());
            if !s.can(&who, "repositories", "update", &repo_object(&url, theirs.as_deref())) {
                return Err(denied());
            }
        }
        let mut data = BTreeMap::from([("url".to_string(), url.clone()), ("type".to_string(), typ)]);
        for (k, v) in [
            ("name", &r.name),
            ("project", &r.project),
            ("username", &r.username),
            ("password", &r.password),
            ("bearerToken", &r.bearer_token),
            ("sshPrivateKey", &r.ssh_private_key),
            ("tlsClientCertData", &r.tls_client_cert_data),
            ("tlsClientCertKey", &r.tls_client_cert_key),
            ("proxy", &r.proxy),
            ("noProxy", &r.no_proxy),
        ] {
            if let Some(v) = v.as_ref().filter(|v| !v.is_empty()) {
                data.insert(k.to_string(), v.clone());
            }
        }
        if r.insecure {
            data.insert("insecure".into(), "true".into());
        }
        let mut secret: Secret = serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": s.namespace, "labels": {SECRET_TYPE: "repository"}},
            "type": "Opaque",
            "stringData": data,
        }))
        .map_err(|e| error(StatusCode::BAD_REQUEST, e.to_string()))?;
        match current {
            None => {
                api.create(&PostParams::default(), &secret).await.map_err(kube_error)?;
            }
            Some(_) if !upsert => {
                return Err(error(
                    StatusCode::CONFLICT,
                    format!("repository {url} already exists (upsert to replace it)"),
                ));
            }
            Some(cur) => {
                secret.metadata.resource_version = cur.metadata.resource_version;
                api.replace(&name, &PostParams::default(), &secret)
                    .await
                    .map_err(kube_error)?;
            }
        }
        audit(&who, if act == "create" { "repository added" } else { "repository replaced" }, &url);
        Ok(Json(json!({"repo": url, "secret": name, "project": r.project,
            "hasPassword": r.password.is_some(), "hasBearerToken": r.bearer_token.is_some(),
            "hasSshPrivateKey": r.ssh_private_key.is_some(),
            "hasTlsClientCert": r.tls_client_cert_data.is_some()}))
        .into_response())
    }
    .await;
    count(&s, "repository-write", resp.unwrap_or_else(|r| r))
}

/// `DELETE /api/v1/repositories/{repo}` (the URL percent-encoded).
async fn delete_repository(
    State(s): Shared,
    headers: HeaderMap,
    Path(url): Path<String>,
) -> Response {
    let resp = async {
        let who = authed(&s, &headers).await?;
        let secret = s
            .repos
            .state()
            .iter()
            .find(|x| {
                flotilla_controller::repos::RepoCreds::from_secret(x).is_some_and(|r| r.url == url)
                    && x.metadata
                        .labels
                        .as_ref()
                        .and_then(|l| l.get(SECRET_TYPE))
                        .map(String::as_str)
                        == Some("repository")
            })
            .cloned()
            .ok_or_else(|| error(StatusCode::NOT_FOUND, format!("no repository {url}")))?;
        let project =
            flotilla_controller::repos::RepoCreds::from_secret(&secret).and_then(|r| r.project);
        let object = repo_object(&url, project.as_deref());
        delete_secret(
            &s,
            &who,
            "repositories",
            &object,
            &secret,
            "repository removed",
            &url,
        )
        .await
    }
    .await;
    count(&s, "repository-write", resp.unwrap_or_else(|r| r))
}

pub fn routes() -> axum::Router<Arc<Server>> {
    use axum::routing::{delete, post, put};
    axum::Router::new()
        .route("/api/v1/projects", post(create_project))
        .route(
            "/api/v1/projects/{name}",
            put(update_project).delete(delete_project),
        )
        .route("/api/v1/clusters", post(create_cluster))
        .route(
            "/api/v1/clusters/{server}",
            put(update_cluster).delete(delete_cluster),
        )
        .route("/api/v1/repositories", post(create_repository))
        .route("/api/v1/repositories/{repo}", delete(delete_repository))
}

pub fn openapi_paths() -> Value {
    let err = json!({"description": "error", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}});
    let ok = json!({"description": "OK", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Object"}}}});
    let obj = |required: &[&str]| json!({"required": true, "content": {"application/json": {"schema": {"type": "object", "required": required}}}});
    let path = |n: &str| json!([{"name": n, "in": "path", "required": true, "schema": {"type": "string"}}]);
    let upsert = json!([{"name": "upsert", "in": "query", "required": false, "schema": {"type": "boolean"}}]);
    let codes = json!({"200": ok, "400": err, "401": err, "403": err, "404": err, "409": err});
    json!({
        "/api/v1/projects": {"post": {"summary": "Create an AppProject ({project, upsert})", "requestBody": obj(&["project"]), "responses": codes}},
        "/api/v1/projects/{name}": {
            "put": {"summary": "Replace an AppProject's spec, labels and annotations ({project})", "parameters": path("name"), "requestBody": obj(&["project"]), "responses": codes},
            "delete": {"summary": "Delete an AppProject (refused while applications use it)", "parameters": path("name"), "responses": codes}},
        "/api/v1/clusters": {"post": {"summary": "Add a cluster ({server, name, config, project, namespaces, clusterResources, labels}); written to an Argo CD cluster Secret, credentials never returned", "parameters": upsert, "requestBody": obj(&["server"]), "responses": codes}},
        "/api/v1/clusters/{server}": {
            "put": {"summary": "Replace a cluster", "parameters": path("server"), "requestBody": obj(&["server"]), "responses": codes},
            "delete": {"summary": "Remove a cluster's Secret (nothing on the cluster is deleted)", "parameters": path("server"), "responses": codes}},
        "/api/v1/repositories": {"post": {"summary": "Add a repository ({repo, type, name, project, username, password, bearerToken, insecure}); credentials never returned", "parameters": upsert, "requestBody": obj(&["repo"]), "responses": codes}},
        "/api/v1/repositories/{repo}": {"delete": {"summary": "Remove a repository's Secret", "parameters": path("repo"), "responses": codes}},
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_objects() {
        assert!(valid_name("team-a") && valid_name("a.b"));
        assert!(!valid_name("Team") && !valid_name("-a") && !valid_name("") && !valid_name("a/b"));
        let a = secret_name("cluster", "https://a.example.com");
        assert_eq!(a, secret_name("cluster", "https://a.example.com"), "stable");
        assert_ne!(a, secret_name("cluster", "https://b.example.com"));
        assert!(valid_name(&a));
        assert_eq!(
            cluster_object("https://k", Some("team-a")),
            "team-a/https://k"
        );
        assert_eq!(cluster_object("https://k", None), "https://k");
    }
}
