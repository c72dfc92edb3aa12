//! Clusters, repositories and the fleet itself over `/api/v1`. Credentials are never returned:
//! a cluster shows how it authenticates, a repository whether it has a password, not what.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use flotilla_controller::clusters::{Cluster, Registry};
use flotilla_controller::repos::RepoCreds;
use k8s_openapi::api::core::v1::Secret;
use serde_json::{Value, json};

use crate::api::{Server, count, denied, error, unauthenticated};
use crate::auth::Principal;

type Shared = State<Arc<Server>>;

/// How a cluster authenticates, by name only.
fn auth_method(c: &Cluster) -> &'static str {
    let cfg = &c.config;
    if c.secret.is_none() {
        "in-cluster"
    } else if cfg.bearer_token.is_some() {
        "bearerToken"
    } else if cfg.tls_client_config.cert_data.is_some() {
        "tlsClientCertificate"
    } else if cfg.username.is_some() {
        "basic"
    } else {
        "none"
    }
}

/// Whether `who` may see cluster `c` (its URL, or `<project>/<URL>` when project-scoped).
fn may_see_cluster(s: &Server, who: &Principal, c: &Cluster) -> bool {
    s.can(who, "clusters", "get", &c.server)
        || c.project
            .as_deref()
            .is_some_and(|p| s.can(who, "clusters", "get", &format!("{p}/{}", c.server)))
}

pub(crate) fn registry(s: &Server) -> Registry {
    let in_cluster = s
        .controllers
        .in_cluster
        .then(flotilla_controller::clusters::Cluster::in_cluster);
    let secrets = s.controllers.clusters.state();
    Registry::from_secrets(secrets.iter().map(|s| s.as_ref()), in_cluster)
}

/// What the API shows of one cluster.
fn cluster_view(s: &Server, c: &Cluster, apps: usize, owners: &BTreeMap<String, String>) -> Value {
    let labels = c.secret.as_deref().and_then(|name| {
        s.controllers
            .clusters
            .state()
            .iter()
            .find(|x| x.metadata.name.as_deref() == Some(name))
            .and_then(|x| x.metadata.labels.clone())
    });
    json!({
        "name": c.name,
        "server": c.server,
        "project": c.project,
        "secret": c.secret,
        "labels": labels.unwrap_or_default(),
        "auth": auth_method(c),
        "insecure": c.config.tls_client_config.insecure,
        "applications": apps,
        "owner": owners.get(&c.server),
    })
}

/// Applications per destination cluster URL, counting only those `who` may see.
fn apps_per_cluster(s: &Server, who: &Principal, reg: &Registry) -> BTreeMap<String, usize> {
    let policy = s.policy();
    let visible = crate::rbac::app_visibility(&policy, &s.namespace, &who.subject, &who.groups);
    let mut out = BTreeMap::new();
    s.index.each(|a| {
        let (server, name) = (Some(a.dest_server.as_str()), Some(a.dest_name.as_str()));
        if let Some(c) = reg.resolve(server, name)
            && visible(a)
        {
            *out.entry(c.server.clone()).or_default() += 1;
        }
    });
    out
}

/// Cluster URL → the live replica claiming it.
fn owners(s: &Server, reg: &Registry) -> BTreeMap<String, String> {
    reg.clusters()
        .filter_map(|c| {
            let owner = s.controllers.owners_of(&c.server).into_iter().next()?;
            Some((c.server.clone(), owner.0))
        })
        .collect()
}

async fn list_clusters(State(s): Shared, headers: HeaderMap) -> Response {
    let resp = match s.auth.authenticate(&headers).await {
        Err(e) => unauthenticated(e),
        Ok(who) => {
            let reg = registry(&s);
            let counts = apps_per_cluster(&s, &who, &reg);
            let owners = owners(&s, &reg);
            let items: Vec<Value> = reg
                .clusters()
                .filter(|c| may_see_cluster(&s, &who, c))
                .map(|c| cluster_view(&s, c, counts.get(&c.server).copied().unwrap_or(0), &owners))
                .collect();
            // Broken cluster Secrets name Secrets and servers: only for who may see every cluster.
            let errors: Vec<String> = if s.can(&who, "clusters", "get", "*") {
                reg.errors.iter().map(ToString::to_string).collect()
            } else {
                Vec::new()
            };
            Json(json!({"items": items, "errors": errors})).into_response()
        }
    };
    count(&s, "clusters", resp)
}

/// `GET /api/v1/clusters/{server}`: the server URL percent-encoded, or the cluster's name.
async fn get_cluster(State(s): Shared, headers: HeaderMap, Path(id): Path<String>) -> Response {
    let resp = match s.auth.authenticate(&headers).await {
        Err(e) => unauthenticated(e),
        Ok(who) => {
            let reg = registry(&s);
            let found = reg
                .resolve(Some(&id), None)
                .or_else(|| reg.resolve(None, Some(&id)));
            match found {
                Some(c) if may_see_cluster(&s, &who, c) => {
                    let counts = apps_per_cluster(&s, &who, &reg);
                    let owners = owners(&s, &reg);
                    Json(cluster_view(
                        &s,
                        c,
                        counts.get(&c.server).copied().unwrap_or(0),
                        &owners,
                    ))
                    .into_response()
                }
                Some(_) => denied(),
                None => error(StatusCode::NOT_FOUND, format!("no cluster {id}")),
            }
        }
    };
    count(&s, "cluster", resp)
}

/// What the API shows of one repository or credential template Secret.
fn repo_view(secret: &Secret, r: &RepoCreds) -> Value {
    let labels = secret.metadata.labels.clone().unwrap_or_default();
    let kind = labels
        .get("argocd.argoproj.io/secret-type")
        .cloned()
        .unwrap_or_default();
    let typ = secret
        .data
        .as_ref()
        .and_then(|d| d.get("type"))
        .and_then(|b| String::from_utf8(b.0.clone()).ok())
        .unwrap_or_else(|| "git".into());
    json!({
        "url": flotilla_controller::redact::redact_url(&r.url),
        "name": secret.metadata.name,
        "secretType": kind,
        "type": typ,
        "project": r.project,
        "username": r.username,
        "hasPassword": r.password.is_some(),
        "hasBearerToken": r.bearer_token.is_some(),
        "insecure": r.insecure,
    })
}

async fn list_repositories(State(s): Shared, headers: HeaderMap) -> Response {
    let resp = match s.auth.authenticate(&headers).await {
        Err(e) => unauthenticated(e),
        Ok(who) => {
            let mut items: Vec<Value> = s
                .repos
                .state()
                .iter()
                .filter_map(|sec| Some((sec.clone(), RepoCreds::from_secret(sec)?)))
                .filter(|(_, r)| {
                    s.can(&who, "repositories", "get", &r.url)
                        || r.project.as_deref().is_some_and(|p| {
                            s.can(&who, "repositories", "get", &format!("{p}/{}", r.url))
                        })
                })
                .map(|(sec, r)| repo_view(&sec, &r))
                .collect();
            items.sort_by(|a, b| a["url"].as_str().cmp(&b["url"].as_str()));
            Json(json!({"items": items})).into_response()
        }
    };
    count(&s, "repositories", resp)
}

/// `GET /api/v1/fleet`: each controller replica (identity, Lease liveness, clusters owned,
/// applications, queue depth) as it reports itself. Operators' view: needs `clusters, get`
/// on every cluster (`*`), as role:readonly has.
async fn fleet(State(s): Shared, headers: HeaderMap) -> Response {
    let resp = match s.auth.authenticate(&headers).await {
        Err(e) => unauthenticated(e),
        Ok(who) if !s.can(&who, "clusters", "get", "*") => denied(),
        Ok(_) => {
            let mut replicas = s.controllers.fleet().await;
            let now = std::time::Instant::now();
            for r in &mut replicas {
                if let (Some(id), Some(total)) = (
                    r["identity"].as_str().map(str::to_string),
                    r["status"]["reconcilesTotal"].as_u64(),
                ) {
                    r["reconcilesPerSecond"] = s.memory.rate(&id, total, now).into();
                }
            }
            let reg = registry(&s);
            let owners = owners(&s, &reg);
            let unowned: Vec<&str> = reg
                .clusters()
                .filter(|c| !owners.contains_key(&c.server))
                .map(|c| c.server.as_str())
                .collect();
            // Across the replicas that answered: the render cache and the repo-servers.
            let (mut hits, mut misses) = (0u64, 0u64);
            let mut repo_servers: BTreeMap<String, Value> = BTreeMap::new();
            for r in &replicas {
                let c = &r["status"]["manifestCache"];
                hits +=
                    c["hitsMemory"].as_u64().unwrap_or(0) + c["hitsShared"].as_u64().unwrap_or(0);
                misses += c["misses"].as_u64().unwrap_or(0);
                for e in r["status"]["repoServers"].as_array().into_iter().flatten() {
                    if let Some(endpoint) = e["endpoint"].as_str() {
                        // Up if any replica reaches it; the load as last answered.
                        let seen = repo_servers
                            .entry(endpoint.to_string())
                            .or_insert_with(|| json!({"endpoint": endpoint, "up": false}));
                        if e["up"] == true {
                            seen["up"] = true.into();
                        }
                        for k in ["rendersRunning", "rendersWaiting", "renderSlots"] {
                            if e[k].is_u64() {
                                seen[k] = e[k].clone();
                            }
                        }
                    }
                }
            }
            Json(json!({
                "replicas": replicas,
                "manifestCacheHitRatio": (hits + misses > 0).then(|| hits as f64 / (hits + misses) as f64),
                "repoServers": repo_servers.into_values().collect::<Vec<_>>(),
                "handovers": s.memory.handovers(),
                "applications": s.apps.state().len(),
                "clusters": reg.len(),
                "unownedClusters": unowned,
            }))
            .into_response()
        }
    };
    count(&s, "fleet", resp)
}

pub fn routes() -> axum::Router<Arc<Server>> {
    use axum::routing::get;
    axum::Router::new()
        .route("/api/v1/clusters", get(list_clusters))
        .route("/api/v1/clusters/{server}", get(get_cluster))
        .route("/api/v1/repositories", get(list_repositories))
        .route("/api/v1/fleet", get(fleet))
}

pub fn openapi_paths() -> Value {
    let err = json!({"description": "error", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}});
    let ok = json!({"description": "OK", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Object"}}}});
    json!({
        "/api/v1/clusters": {"get": {"summary": "Destination clusters (no credentials): name, server, project, labels, auth method, owning replica, application count",
            "responses": {"200": ok, "401": err}}},
        "/api/v1/clusters/{server}": {"get": {"summary": "One cluster, by percent-encoded server URL or by name",
            "parameters": [{"name": "server", "in": "path", "required": true, "schema": {"type": "string"}}],
            "responses": {"200": ok, "401": err, "403": err, "404": err}}},
        "/api/v1/repositories": {"get": {"summary": "Repository and credential-template Secrets (no passwords, tokens or keys)",
            "responses": {"200": ok, "401": err}}},
        "/api/v1/fleet": {"get": {"summary": "Controller replicas: Lease liveness, owned clusters, applications, queue depth",
            "responses": {"200": ok, "401": err, "403": err}}},
    })
}
