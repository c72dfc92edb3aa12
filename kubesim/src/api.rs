//! The HTTP face of one virtual cluster: authentication, fault injection, routing of the
//! Kubernetes REST paths to store verbs, watch streaming, and the request log.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited, StreamBody, combinators::BoxBody};
use hyper::body::{Frame, Incoming};
use serde_json::{Value, json};
use tokio::sync::{broadcast, mpsc};
use tokio_stream::wrappers::ReceiverStream;

use super::Cluster;
use super::audit::{RequestRecord, unix_micros};
use super::error::{ApiError, ApiResult};
use super::faults::Injected;
use super::fields::Scope;
use super::latency::Class;
use super::resources::ResourceType;
use super::selector::{FieldSelector, LabelSelector, extra_fields};
use super::store::{DeleteOpts, Event, EventType, PatchKind, WriteCtx, parse_body};
use super::stored::Obj;
use super::typed::FieldValidation;
use super::{actions, openapi, protobuf};

pub type Body = BoxBody<Bytes, Infallible>;

/// Largest request body accepted (the real server's default is 3 MiB).
const MAX_BODY: usize = 3 * 1024 * 1024;

fn full(b: impl Into<Bytes>) -> Body {
    Full::new(b.into()).boxed()
}

fn json_response(code: StatusCode, v: &Value) -> Response<Body> {
    // Go's encoder ends every document with a newline; clients that byte-compare expect it.
    let mut body = serde_json::to_vec(v).unwrap_or_default();
    body.push(b'\n');
    Response::builder()
        .status(code)
        .header(header::CONTENT_TYPE, "application/json")
        .body(full(body))
        .unwrap_or_else(|_| Response::new(full(Bytes::new())))
}

/// A stored object answered as it is stored: its JSON, serialized once when written.
fn obj_response(code: StatusCode, obj: &Obj) -> Response<Body> {
    let json = obj.json();
    let mut body = Vec::with_capacity(json.len() + 1);
    body.extend_from_slice(json);
    body.push(b'\n');
    bytes_response(code, body)
}

fn bytes_response(code: StatusCode, body: Vec<u8>) -> Response<Body> {
    Response::builder()
        .status(code)
        .header(header::CONTENT_TYPE, "application/json")
        .body(full(body))
        .unwrap_or_else(|_| Response::new(full(Bytes::new())))
}

/// A list document: `head` (apiVersion, kind, metadata) with `items` spliced in as they are,
/// byte for byte what serializing the whole list as one value gives.
fn list_response<'a>(head: &Value, items: impl ExactSizeIterator<Item = &'a [u8]>) -> Vec<u8> {
    let mut out = serde_json::to_vec(head).unwrap_or_default();
    // `head` is a non-empty object: reopen it before its closing brace.
    if out.last() == Some(&b'}') {
        out.pop();
    }
    out.extend_from_slice(b",\"items\":[");
    for (i, item) in items.enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(item);
    }
    out.extend_from_slice(b"]}\n");
    out
}

fn error_response(e: &ApiError) -> Response<Body> {
    let mut r = json_response(
        StatusCode::from_u16(e.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        &e.status_body(),
    );
    if let Some(s) = e.retry_after
        && let Ok(v) = header::HeaderValue::from_str(&s.to_string())
    {
        r.headers_mut().insert(header::RETRY_AFTER, v);
    }
    r
}

/// What a path names.
#[derive(Debug)]
enum Route {
    Version,
    Health,
    CoreVersions,
    GroupList,
    Group(String),
    GroupVersion(String, String),
    OpenApiV2,
    OpenApiV3,
    OpenApiV3Doc(String, String),
    Resource {
        rt: Arc<ResourceType>,
        namespace: Option<String>,
        name: Option<String>,
        sub: Option<String>,
    },
}

/// Request facts recorded in the log.
#[derive(Default)]
struct Facts {
    verb: String,
    group: String,
    resource: String,
    namespace: String,
    name: String,
    subresource: String,
    /// Items a LIST returned (its latency grows with them).
    items: usize,
}

fn route(cluster: &Cluster, path: &str) -> ApiResult<Route> {
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    match segs.as_slice() {
        ["version"] => Ok(Route::Version),
        ["healthz" | "readyz" | "livez", ..] => Ok(Route::Health),
        ["api"] => Ok(Route::CoreVersions),
        ["api", v] => Ok(Route::GroupVersion(String::new(), (*v).into())),
        ["api", v, rest @ ..] => resource_route(cluster, "", v, rest),
        ["apis"] => Ok(Route::GroupList),
        ["apis", g] => Ok(Route::Group((*g).into())),
        ["apis", g, v] => Ok(Route::GroupVersion((*g).into(), (*v).into())),
        ["apis", g, v, rest @ ..] => resource_route(cluster, g, v, rest),
        ["openapi", "v2"] => Ok(Route::OpenApiV2),
        ["openapi", "v3"] => Ok(Route::OpenApiV3),
        ["openapi", "v3", "api", v] => Ok(Route::OpenApiV3Doc(String::new(), (*v).into())),
        ["openapi", "v3", "apis", g, v] => Ok(Route::OpenApiV3Doc((*g).into(), (*v).into())),
        _ => Err(ApiError::no_route()),
    }
}

fn resource_route(
    cluster: &Cluster,
    group: &str,
    version: &str,
    rest: &[&str],
) -> ApiResult<Route> {
    let lookup = |plural: &str| {
        cluster
            .store
            .lookup(group, version, plural)
            .ok_or_else(ApiError::no_route)
    };
    let (rt, namespace, name, sub) = match rest {
        ["namespaces", ns, sub @ ("status" | "finalize")] if group.is_empty() => {
            (lookup("namespaces")?, None, Some(*ns), Some(*sub))
        }
        ["namespaces", ns, plural] => (lookup(plural)?, Some(*ns), None, None),
        ["namespaces", ns, plural, name] => (lookup(plural)?, Some(*ns), Some(*name), None),
        ["namespaces", ns, plural, name, sub] => {
            (lookup(plural)?, Some(*ns), Some(*name), Some(*sub))
        }
        [plural] => (lookup(plural)?, None, None, None),
        [plural, name] => (lookup(plural)?, None, Some(*name), None),
        [plural, name, sub] => (lookup(plural)?, None, Some(*name), Some(*sub)),
        _ => return Err(ApiError::no_route()),
    };
    // A namespaced item needs a namespace; a cluster-scoped kind must not have one.
    if (rt.namespaced && name.is_some() && namespace.is_none())
        || (!rt.namespaced && namespace.is_some())
    {
        return Err(ApiError::no_route());
    }
    if let Some(s) = sub
        && !(s == "status" && rt.has_status)
        && !(s == "finalize" && rt.is_namespace())
        && !(s == "scale" && rt.has_scale())
        && !(s == "eviction" && rt.has_eviction())
        && !(s == "token" && rt.has_token())
    {
        return Err(ApiError::no_route());
    }
    Ok(Route::Resource {
        rt,
        namespace: namespace.map(str::to_string),
        name: name.map(str::to_string),
        sub: sub.map(str::to_string),
    })
}

/// Serve one request for `cluster`.
pub async fn handle(cluster: Arc<Cluster>, req: Request<Incoming>) -> Response<Body> {
    let start = unix_micros();
    let user_agent = req
        .headers()
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let path = req.uri().path().to_string();
    let public = matches!(
        path.trim_end_matches('/'),
        "/version" | "/healthz" | "/readyz" | "/livez"
    );
    let user = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .and_then(|t| cluster.user_for_token(t.trim()));
    let probe = matches!(
        path.trim_end_matches('/'),
        "/healthz" | "/readyz" | "/livez"
    );
    let mut facts = Facts::default();
    // APF-like limits: per user (or user agent when anonymous); probes are exempt, as the
    // `probes` FlowSchema makes them on a real server.
    let limited = match &cluster.latency {
        Some(l) if !probe && (user.is_some() || public) => {
            let client = user
                .clone()
                .unwrap_or_else(|| format!("anonymous/{user_agent}"));
            l.admit(&client).err()
        }
        _ => None,
    };
    let response = match (&user, public, limited) {
        (None, false, _) => error_response(&ApiError::unauthorized()),
        (_, _, Some(retry_after)) => {
            error_response(&ApiError::too_many_requests_after(retry_after))
        }
        _ => {
            if let Some(d) = cluster.faults.latency() {
                tokio::time::sleep(d).await;
            }
            let writes = matches!(
                *req.method(),
                hyper::Method::POST
                    | hyper::Method::PUT
                    | hyper::Method::PATCH
                    | hyper::Method::DELETE
            );
            if writes && let Some(d) = cluster.faults.write_latency() {
                tokio::time::sleep(d).await;
            }
            // A write's delay comes before it takes effect (admission, etcd); a read's after
            // it is served, once the verb and the item count are known.
            if let Some(l) = &cluster.latency {
                let class = match *req.method() {
                    hyper::Method::DELETE => Some(Class::Delete),
                    hyper::Method::POST | hyper::Method::PUT | hyper::Method::PATCH => {
                        Some(Class::Write)
                    }
                    _ => None,
                };
                if let Some(d) = class.and_then(|c| l.delay(c, 0)) {
                    tokio::time::sleep(d).await;
                }
            }
            match cluster.faults.roll() {
                Injected::Error => error_response(&ApiError::internal("injected fault (kubesim)")),
                Injected::Throttle => error_response(&ApiError::too_many_requests()),
                Injected::None => {
                    let user_name = user.clone().unwrap_or_else(|| "anonymous".into());
                    let read = req.method() == hyper::Method::GET;
                    let r = match serve(&cluster, req, &user_agent, &user_name, &mut facts).await {
                        Ok(r) => r,
                        Err(e) => {
                            tracing::debug!(cluster = %cluster.name, user = %user_name, code = e.code, msg = %e.message, "request failed");
                            error_response(&e)
                        }
                    };
                    if read && let Some(l) = &cluster.latency {
                        let class = match facts.verb.as_str() {
                            "watch" => None,
                            "list" => Some(Class::List),
                            _ => Some(Class::Get),
                        };
                        if let Some(d) = class.and_then(|c| l.delay(c, facts.items)) {
                            tokio::time::sleep(d).await;
                        }
                    }
                    r
                }
            }
        }
    };
    cluster.log.record(RequestRecord {
        seq: 0,
        start_us: start,
        end_us: unix_micros(),
        user: user.unwrap_or_else(|| "anonymous".into()),
        user_agent,
        verb: if facts.verb.is_empty() {
            "discovery".into()
        } else {
            facts.verb
        },
        group: facts.group,
        resource: facts.resource,
        namespace: facts.namespace,
        name: facts.name,
        subresource: facts.subresource,
        code: response.status().as_u16(),
    });
    response
}

fn query_map(req: &Request<Incoming>) -> HashMap<String, String> {
    req.uri()
        .query()
        .map(|q| {
            url::form_urlencoded::parse(q.as_bytes())
                .into_owned()
                .collect()
        })
        .unwrap_or_default()
}

fn truthy(q: &HashMap<String, String>, k: &str) -> bool {
    q.get(k).is_some_and(|v| v == "true" || v == "1")
}

/// Add a `Warning: 299 - "..."` header per warning the write collected.
fn with_warnings(mut r: Response<Body>, ctx: &WriteCtx) -> Response<Body> {
    for w in ctx.warnings.lock().iter() {
        let text = format!("299 - \"{}\"", w.replace('"', "\\\""));
        if let Ok(v) = header::HeaderValue::from_str(&text) {
            r.headers_mut().append(header::WARNING, v);
        }
    }
    r
}

/// Who writes, whether for real, and how unknown fields are treated.
fn write_ctx(q: &HashMap<String, String>, user_agent: &str, dry: bool) -> ApiResult<WriteCtx> {
    Ok(WriteCtx {
        manager: manager_for(q, user_agent),
        dry_run: dry,
        field_validation: FieldValidation::parse(q.get("fieldValidation").map(String::as_str))?,
        warnings: Default::default(),
    })
}

fn manager_for(q: &HashMap<String, String>, user_agent: &str) -> String {
    match q.get("fieldManager") {
        Some(m) if !m.is_empty() => m.clone(),
        _ => user_agent
            .split('/')
            .next()
            .filter(|s| !s.is_empty())
            .unwrap_or("unknown")
            .to_string(),
    }
}

fn dry_run(q: &HashMap<String, String>) -> ApiResult<bool> {
    match q.get("dryRun").map(String::as_str) {
        None | Some("") => Ok(false),
        Some("All") => Ok(true),
        Some(other) => Err(ApiError::bad_request(format!(
            "Invalid dry run value: {other:?}: supported values: \"All\""
        ))),
    }
}

async fn read_body(req: Request<Incoming>) -> ApiResult<Bytes> {
    match Limited::new(req.into_body(), MAX_BODY).collect().await {
        Ok(c) => Ok(c.to_bytes()),
        Err(e) => {
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some()
            {
                let mut err = ApiError::bad_request("the request body is too large");
                err.code = 413;
                err.reason = "RequestEntityTooLarge";
                Err(err)
            } else {
                Err(ApiError::bad_request(format!("reading body: {e}")))
            }
        }
    }
}

/// What representation the `Accept` header asks for (the first one kubesim serves).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum As {
    Object,
    /// `PartialObjectMetadata(List)` (meta.k8s.io/v1): metadata only.
    Metadata,
    /// `Table` (meta.k8s.io/v1): what kubectl prints.
    Table,
    /// `APIGroupDiscoveryList` (apidiscovery.k8s.io/v2): aggregated discovery.
    Aggregated,
}

/// The `Accept` header allows JSON (or names nothing).
fn accepts_json(req: &Request<Incoming>) -> bool {
    let accept = req
        .headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    accept.is_empty()
        || accept.split(',').any(|r| {
            let media = r.split(';').next().unwrap_or("").trim();
            matches!(media, "application/json" | "*/*" | "application/*")
        })
}

fn accept_as(req: &Request<Incoming>) -> As {
    let accept = req
        .headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    for range in accept.split(',') {
        let params: Vec<&str> = range.split(';').map(str::trim).collect();
        let param = |k: &str| params.iter().find_map(|p| p.strip_prefix(k));
        match (param("as="), param("g="), param("v=")) {
            (
                Some("PartialObjectMetadata" | "PartialObjectMetadataList"),
                Some("meta.k8s.io"),
                Some("v1"),
            ) => {
                return As::Metadata;
            }
            (Some("Table"), Some("meta.k8s.io"), Some("v1")) => return As::Table,
            (Some("APIGroupDiscoveryList"), Some("apidiscovery.k8s.io"), Some("v2")) => {
                return As::Aggregated;
            }
            (None, _, _)
                if params
                    .first()
                    .is_some_and(|m| *m == "application/json" || *m == "*/*") =>
            {
                return As::Object;
            }
            _ => {}
        }
    }
    As::Object
}

fn aggregated_response(doc: &Value) -> Response<Body> {
    let mut r = json_response(StatusCode::OK, doc);
    if let Ok(v) = header::HeaderValue::from_str(
        "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList",
    ) {
        r.headers_mut().insert(header::CONTENT_TYPE, v);
    }
    r
}

/// An object as `PartialObjectMetadata` (a `Table` row's object).
fn metadata_value(obj: &Value) -> Value {
    json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
           "metadata": obj.get("metadata").cloned().unwrap_or(json!({}))})
}

/// A stored object as `PartialObjectMetadata`, its `metadata` copied as stored.
fn metadata_only(obj: &Obj) -> ApiResult<Vec<u8>> {
    let meta = obj.metadata_json()?;
    let mut out = Vec::with_capacity(meta.len() + 72);
    out.extend_from_slice(
        br#"{"kind":"PartialObjectMetadata","apiVersion":"meta.k8s.io/v1","metadata":"#,
    );
    out.extend_from_slice(meta.as_bytes());
    out.push(b'}');
    Ok(out)
}

/// A value at a simple JSONPath (`.spec.replicas`) of a CRD printer column.
fn json_path<'a>(obj: &'a Value, path: &str) -> Option<&'a Value> {
    let mut cur = obj;
    for part in path
        .trim_start_matches('.')
        .split('.')
        .filter(|p| !p.is_empty())
    {
        cur = cur.get(part)?;
    }
    Some(cur)
}

/// Objects as a `Table`: Name and Age (and a custom resource's printer columns).
fn table(rt: &ResourceType, printer_columns: &[Value], items: &[&Value], meta: Value) -> Value {
    let mut columns = vec![json!({"name": "Name", "type": "string", "format": "name",
        "description": "Name must be unique within a namespace.", "priority": 0})];
    for c in printer_columns {
        columns.push(
            json!({"name": c["name"], "type": c.get("type").cloned().unwrap_or(json!("string")),
            "format": c.get("format").cloned().unwrap_or(json!("")),
            "description": c.get("description").cloned().unwrap_or(json!("")),
            "priority": c.get("priority").cloned().unwrap_or(json!(0))}),
        );
    }
    let has_age = printer_columns.iter().any(|c| c["name"] == "Age");
    if !has_age {
        columns.push(json!({"name": "Age", "type": "date", "format": "",
            "description": "CreationTimestamp is a timestamp representing the server time when this object was created.", "priority": 0}));
    }
    let rows: Vec<Value> = items
        .iter()
        .map(|o| {
            let mut cells = vec![json!(super::objects::name_of(o))];
            for c in printer_columns {
                let path = c["jsonPath"].as_str().unwrap_or("");
                cells.push(json_path(o, path).cloned().unwrap_or(Value::Null));
            }
            if !has_age {
                cells.push(
                    o.pointer("/metadata/creationTimestamp")
                        .cloned()
                        .unwrap_or(Value::Null),
                );
            }
            json!({"cells": cells, "object": metadata_value(o)})
        })
        .collect();
    let _ = rt;
    json!({"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": meta,
           "columnDefinitions": columns, "rows": rows})
}

fn content_type(req: &Request<Incoming>) -> String {
    req.headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_string()
}

fn list_kind_of(rt: &ResourceType) -> String {
    format!("{}List", rt.kind)
}

fn parse_selectors(
    rt: &ResourceType,
    q: &HashMap<String, String>,
) -> ApiResult<(LabelSelector, FieldSelector)> {
    let labels = LabelSelector::parse(q.get("labelSelector").map_or("", String::as_str))
        .map_err(|e| ApiError::bad_request(e.0))?;
    let fields = FieldSelector::parse(
        q.get("fieldSelector").map_or("", String::as_str),
        extra_fields(&rt.group, &rt.plural),
    )
    .map_err(|e| ApiError::bad_request(e.0))?;
    Ok((labels, fields))
}

async fn serve(
    cluster: &Arc<Cluster>,
    req: Request<Incoming>,
    user_agent: &str,
    user: &str,
    facts: &mut Facts,
) -> ApiResult<Response<Body>> {
    let path = req.uri().path().to_string();
    let r = route(cluster, &path)?;
    let ok = |v: &Value| Ok(json_response(StatusCode::OK, v));
    let (rt, namespace, name, sub) = match r {
        Route::Version => return ok(&cluster.version_doc()),
        Route::Health => {
            return Ok(Response::builder()
                .status(StatusCode::OK)
                .header(header::CONTENT_TYPE, "text/plain")
                .body(full("ok"))
                .unwrap_or_else(|_| Response::new(full("ok"))));
        }
        Route::CoreVersions if accept_as(&req) == As::Aggregated => {
            return Ok(aggregated_response(
                &cluster.store.registry().aggregated(true),
            ));
        }
        Route::GroupList if accept_as(&req) == As::Aggregated => {
            return Ok(aggregated_response(
                &cluster.store.registry().aggregated(false),
            ));
        }
        Route::CoreVersions => {
            return ok(&json!({"kind": "APIVersions", "versions": ["v1"],
                "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": cluster.host_port()}]}));
        }
        Route::GroupList => return ok(&cluster.store.registry().api_group_list()),
        Route::Group(g) => {
            return cluster
                .store
                .registry()
                .api_group(&g)
                .map(|d| json_response(StatusCode::OK, &d))
                .ok_or_else(ApiError::no_route);
        }
        Route::GroupVersion(g, v) => {
            return cluster
                .store
                .registry()
                .resource_list(&g, &v)
                .map(|d| json_response(StatusCode::OK, &d))
                .ok_or_else(ApiError::no_route);
        }
        Route::OpenApiV2 => {
            // client-go asks for the protobuf form first; kubesim has only JSON.
            if !accepts_json(&req) {
                return Err(ApiError::not_acceptable());
            }
            let store = &cluster.store;
            return ok(&openapi::v2(&store.registry(), &|rt| store.crd_schema(rt)));
        }
        Route::OpenApiV3 => {
            let store = &cluster.store;
            return ok(&openapi::v3_index(&store.registry(), &|rt| {
                store.crd_schema(rt)
            }));
        }
        Route::OpenApiV3Doc(g, v) => {
            if !accepts_json(&req) {
                return Err(ApiError::not_acceptable());
            }
            let store = &cluster.store;
            return openapi::v3_group_version(&store.registry(), &g, &v, &|rt| {
                store.crd_schema(rt)
            })
            .map(|d| json_response(StatusCode::OK, &d))
            .ok_or_else(ApiError::no_route);
        }
        Route::Resource {
            rt,
            namespace,
            name,
            sub,
        } => (rt, namespace, name, sub),
    };
    let q = query_map(&req);
    facts.group = rt.group.clone();
    facts.resource = rt.plural.clone();
    facts.namespace = namespace.clone().unwrap_or_default();
    // As the API server's RequestInfo does: a collection request selecting one object by
    // `metadata.name` carries that name (so RBAC `resourceNames` can allow a list or watch).
    facts.name = name.clone().unwrap_or_else(|| {
        q.get("fieldSelector")
            .and_then(|f| f.strip_prefix("metadata.name="))
            .filter(|n| !n.contains(','))
            .unwrap_or_default()
            .to_string()
    });
    facts.subresource = sub.clone().unwrap_or_default();
    let ns = namespace.clone().unwrap_or_default();
    let scope = if sub.as_deref() == Some("status") {
        Scope::Status
    } else {
        Scope::Main
    };
    let store = &cluster.store;
    let method = req.method().clone();
    let repr = accept_as(&req);
    if sub.as_deref() == Some("scale")
        && let Some(name) = &name
    {
        facts.verb = method.as_str().to_lowercase();
        return scale(store, &rt, &ns, name, req, &q).await;
    }
    if sub.as_deref() == Some("eviction")
        && let Some(name) = &name
    {
        facts.verb = "create".into();
        if method != Method::POST {
            return Err(ApiError::method_not_allowed(method.as_str(), &rt));
        }
        let eviction = request_object(req).await?;
        let opts = delete_opts_from(&q, eviction.get("deleteOptions").unwrap_or(&Value::Null))?;
        let status = actions::evict(store, &rt, &ns, name, &opts)?;
        return Ok(json_response(StatusCode::CREATED, &status));
    }
    if sub.as_deref() == Some("token")
        && let Some(name) = &name
    {
        facts.verb = "create".into();
        if method != Method::POST {
            return Err(ApiError::method_not_allowed(method.as_str(), &rt));
        }
        let body = request_object(req).await?;
        let made = super::tokens::request(cluster, &rt, &ns, name, body)?;
        return Ok(json_response(StatusCode::CREATED, &made));
    }
    if rt.kind == "TokenReview" && rt.is_review() && method == Method::POST && name.is_none() {
        facts.verb = "create".into();
        let review = request_object(req).await?;
        let answer = super::tokens::review(cluster, &rt, review)?;
        return Ok(json_response(StatusCode::CREATED, &answer));
    }
    if rt.is_review() {
        facts.verb = "create".into();
        if method != Method::POST || name.is_some() {
            return Err(ApiError::method_not_allowed(method.as_str(), &rt));
        }
        let review = request_object(req).await?;
        return Ok(json_response(
            StatusCode::CREATED,
            &actions::review(&rt, review, user)?,
        ));
    }
    match (method, name) {
        (Method::GET, None) => {
            let (labels, fields) = parse_selectors(&rt, &q)?;
            if truthy(&q, "watch") {
                facts.verb = "watch".into();
                return watch(
                    cluster,
                    rt,
                    namespace,
                    labels,
                    fields,
                    &q,
                    repr == As::Metadata,
                );
            }
            facts.verb = "list".into();
            let limit = match q.get("limit").map(|l| l.parse::<i64>()) {
                None => None,
                Some(Ok(l)) if l > 0 => Some(l as usize),
                Some(Ok(_)) => None,
                Some(Err(_)) => {
                    return Err(ApiError::bad_request(
                        "limit: Invalid value: must be an integer",
                    ));
                }
            };
            let exact = list_resource_version(&q, store.resource_version())?;
            let page = store.list(
                &rt,
                namespace.as_deref(),
                |o| labels.matches_meta(o.meta()) && fields.matches_meta(o.meta()),
                limit,
                q.get("continue").map(String::as_str),
                exact,
            )?;
            let mut meta = json!({"resourceVersion": page.rv.to_string()});
            if let Some(c) = &page.continue_token {
                meta["continue"] = json!(c);
            }
            if let Some(n) = page.remaining {
                meta["remainingItemCount"] = json!(n);
            }
            facts.items = page.items.len();
            match repr {
                As::Metadata => {
                    let items = page
                        .items
                        .iter()
                        .map(|o| metadata_only(o))
                        .collect::<ApiResult<Vec<_>>>()?;
                    let head = json!({"kind": "PartialObjectMetadataList",
                                      "apiVersion": "meta.k8s.io/v1", "metadata": meta});
                    Ok(bytes_response(
                        StatusCode::OK,
                        list_response(&head, items.iter().map(Vec::as_slice)),
                    ))
                }
                As::Table => {
                    let values = page.values()?;
                    let items: Vec<&Value> = values.iter().collect();
                    ok(&table(&rt, &store.printer_columns(&rt), &items, meta))
                }
                _ => {
                    let head = json!({"apiVersion": rt.api_version(), "kind": list_kind_of(&rt),
                                      "metadata": meta});
                    Ok(bytes_response(
                        StatusCode::OK,
                        list_response(&head, page.items.iter().map(|o| &o.json()[..])),
                    ))
                }
            }
        }
        (Method::GET, Some(name)) => {
            facts.verb = "get".into();
            let obj = store.get(&rt, &ns, &name)?;
            match repr {
                As::Metadata => {
                    let mut body = metadata_only(&obj)?;
                    body.push(b'\n');
                    Ok(bytes_response(StatusCode::OK, body))
                }
                As::Table => {
                    let value = obj.value()?;
                    let rv = value
                        .pointer("/metadata/resourceVersion")
                        .cloned()
                        .unwrap_or(Value::Null);
                    ok(&table(
                        &rt,
                        &store.printer_columns(&rt),
                        &[&value],
                        json!({"resourceVersion": rv}),
                    ))
                }
                _ => Ok(obj_response(StatusCode::OK, &obj)),
            }
        }
        (Method::POST, None) => {
            facts.verb = "create".into();
            let dry = dry_run(&q)?;
            if rt.namespaced && namespace.is_none() {
                return Err(ApiError::no_route());
            }
            let obj = request_object(req).await?;
            let ctx = write_ctx(&q, user_agent, dry)?;
            let created = store.create(&rt, &ns, obj, &ctx)?;
            facts.name = created.meta().name.to_string();
            Ok(with_warnings(
                obj_response(StatusCode::CREATED, &created),
                &ctx,
            ))
        }
        (Method::PUT, Some(name)) => {
            facts.verb = "update".into();
            let dry = dry_run(&q)?;
            let yaml = content_type(&req).contains("yaml");
            let body = read_body(req).await?;
            let obj = parse_body(&body, yaml)?;
            let ctx = write_ctx(&q, user_agent, dry)?;
            let updated = store.update(&rt, &ns, &name, obj, scope, &ctx)?;
            Ok(with_warnings(obj_response(StatusCode::OK, &updated), &ctx))
        }
        (Method::PATCH, Some(name)) => {
            facts.verb = "patch".into();
            let dry = dry_run(&q)?;
            let kind = match content_type(&req).as_str() {
                "application/json-patch+json" => PatchKind::Json,
                "application/merge-patch+json" => PatchKind::Merge,
                "application/strategic-merge-patch+json" => PatchKind::Strategic,
                "application/apply-patch+yaml" => {
                    if q.get("fieldManager").is_none_or(String::is_empty) {
                        let mut e = ApiError::bad_request(
                            "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch",
                        );
                        e.code = 422;
                        e.reason = "Invalid";
                        return Err(e);
                    }
                    PatchKind::Apply {
                        force: truthy(&q, "force"),
                    }
                }
                other => return Err(ApiError::unsupported_media_type(other)),
            };
            if q.contains_key("force") && !matches!(kind, PatchKind::Apply { .. }) {
                return Err(ApiError::bad_request(
                    "force: Forbidden: may not be specified for non-apply patch",
                ));
            }
            let body = read_body(req).await?;
            let ctx = write_ctx(&q, user_agent, dry)?;
            let (obj, created) = store.patch(&rt, &ns, &name, kind, &body, scope, &ctx)?;
            let code = if created {
                StatusCode::CREATED
            } else {
                StatusCode::OK
            };
            Ok(with_warnings(obj_response(code, &obj), &ctx))
        }
        (Method::DELETE, Some(name)) => {
            facts.verb = "delete".into();
            let opts = delete_opts(&q, req).await?;
            let deleted = store.delete(&rt, &ns, &name, &opts)?;
            if deleted.gone {
                // What a real server answers for an object removed at once.
                let mut details = serde_json::Map::new();
                details.insert("name".into(), json!(name));
                if !rt.group.is_empty() {
                    details.insert("group".into(), json!(rt.group));
                }
                details.insert("kind".into(), json!(rt.plural));
                let uid = &deleted.object.meta().uid;
                if !uid.is_empty() {
                    details.insert("uid".into(), json!(uid));
                }
                ok(
                    &json!({"kind": "Status", "apiVersion": "v1", "metadata": {},
                           "status": "Success", "details": details}),
                )
            } else {
                Ok(obj_response(StatusCode::OK, &deleted.object))
            }
        }
        (Method::DELETE, None) => {
            facts.verb = "deletecollection".into();
            let (labels, fields) = parse_selectors(&rt, &q)?;
            let opts = delete_opts(&q, req).await?;
            let deleted = store.delete_collection(
                &rt,
                namespace.as_deref(),
                |o| labels.matches_meta(o.meta()) && fields.matches_meta(o.meta()),
                &opts,
            )?;
            let head = json!({"apiVersion": rt.api_version(), "kind": list_kind_of(&rt),
                   "metadata": {"resourceVersion": store.resource_version().to_string()}});
            Ok(bytes_response(
                StatusCode::OK,
                list_response(&head, deleted.iter().map(|o| &o.json()[..])),
            ))
        }
        (m, _) => {
            facts.verb = m.as_str().to_lowercase();
            Err(ApiError::method_not_allowed(m.as_str(), &rt))
        }
    }
}

async fn delete_opts(q: &HashMap<String, String>, req: Request<Incoming>) -> ApiResult<DeleteOpts> {
    let body = read_body(req).await?;
    let v = if body.is_empty() {
        Value::Null
    } else {
        parse_body(&body, false)?
    };
    delete_opts_from(q, &v)
}

/// `DeleteOptions` from the query and a body (`Value::Null` when there is none).
/// A create body in any of the media types a real server takes: JSON, YAML or (for the kinds
/// `protobuf.rs` converts) protobuf.
async fn request_object(req: Request<Incoming>) -> ApiResult<Value> {
    let ct = content_type(&req);
    let kind = match ct.as_str() {
        "application/json" | "" | "*/*" => 0,
        "application/yaml" | "application/x-yaml" => 1,
        protobuf::MEDIA_TYPE => 2,
        other => return Err(ApiError::unsupported_body_type(other)),
    };
    let body = read_body(req).await?;
    if kind == 2 {
        protobuf::decode(&body)
    } else {
        parse_body(&body, kind == 1)
    }
}

pub(crate) fn delete_opts_from(q: &HashMap<String, String>, v: &Value) -> ApiResult<DeleteOpts> {
    let mut opts = DeleteOpts {
        propagation: q.get("propagationPolicy").cloned(),
        dry_run: dry_run(q)?,
        ..Default::default()
    };
    if let Some(p) = v.get("propagationPolicy").and_then(Value::as_str) {
        opts.propagation = Some(p.to_string());
    }
    if v.get("orphanDependents").and_then(Value::as_bool) == Some(true) {
        opts.propagation = Some("Orphan".into());
    }
    opts.precondition_uid = v
        .pointer("/preconditions/uid")
        .and_then(Value::as_str)
        .map(str::to_string);
    opts.precondition_rv = v
        .pointer("/preconditions/resourceVersion")
        .and_then(Value::as_str)
        .map(str::to_string);
    if v.get("dryRun")
        .and_then(Value::as_array)
        .is_some_and(|a| a.iter().any(|x| x == "All"))
    {
        opts.dry_run = true;
    }
    if let Some(p) = &opts.propagation
        && !matches!(p.as_str(), "Orphan" | "Background" | "Foreground")
    {
        return Err(ApiError::bad_request(format!(
            "propagationPolicy: Unsupported value: {p:?}: supported values: \"Foreground\", \"Background\", \"Orphan\""
        )));
    }
    Ok(opts)
}

/// What one watch stream passes on.
struct WatchFilter {
    gr: super::resources::GroupResource,
    namespace: Option<String>,
    labels: LabelSelector,
    fields: FieldSelector,
    /// Send objects as `PartialObjectMetadata`.
    metadata_only: bool,
}

impl WatchFilter {
    /// The event's object as this watch sends it.
    fn payload(&self, ev: &super::store::Event) -> Bytes {
        if self.metadata_only {
            Bytes::from(metadata_only(&ev.object).unwrap_or_default())
        } else {
            ev.object_json().clone()
        }
    }

    fn matches(&self, obj: &Obj) -> bool {
        self.labels.matches_meta(obj.meta()) && self.fields.matches_meta(obj.meta())
    }

    /// The event type this watcher sees, if any (selector transitions become ADDED/DELETED).
    fn view(&self, ev: &Event) -> Option<EventType> {
        if ev.gr != self.gr {
            return None;
        }
        if let Some(ns) = &self.namespace
            && ev.namespace() != ns
        {
            return None;
        }
        let now = self.matches(&ev.object);
        match ev.kind {
            EventType::Modified => {
                let before = ev.prev.as_ref().is_some_and(|p| self.matches(p));
                match (before, now) {
                    (true, true) => Some(EventType::Modified),
                    (false, true) => Some(EventType::Added),
                    (true, false) => Some(EventType::Deleted),
                    (false, false) => None,
                }
            }
            k => now.then_some(k),
        }
    }
}

fn event_line(kind: &str, object: &[u8]) -> Bytes {
    let mut out = Vec::with_capacity(object.len() + 32);
    out.extend_from_slice(b"{\"type\":\"");
    out.extend_from_slice(kind.as_bytes());
    out.extend_from_slice(b"\",\"object\":");
    out.extend_from_slice(object);
    out.extend_from_slice(b"}\n");
    Bytes::from(out)
}

/// The `autoscaling/v1` Scale of a replicated workload.
fn scale_of(rt: &ResourceType, obj: &Value) -> Value {
    use super::resources::ScaleSelector;
    let Some(paths) = &rt.scale else {
        return Value::Null;
    };
    let selector = match &paths.selector {
        ScaleSelector::MatchLabels => obj
            .pointer("/spec/selector/matchLabels")
            .and_then(Value::as_object)
            .map(|m| {
                let mut parts: Vec<String> = m
                    .iter()
                    .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
                    .collect();
                parts.sort();
                parts.join(",")
            })
            .unwrap_or_default(),
        ScaleSelector::Path(p) => obj
            .pointer(p)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string(),
        ScaleSelector::None => String::new(),
    };
    // A built-in workload defaults to one replica; a custom resource shows what it has.
    let default_spec = if rt.custom { 0 } else { 1 };
    let meta = obj.get("metadata").cloned().unwrap_or(json!({}));
    let pick = |k: &str| meta.get(k).cloned().unwrap_or(Value::Null);
    json!({"kind": "Scale", "apiVersion": "autoscaling/v1",
           "metadata": {"name": pick("name"), "namespace": pick("namespace"), "uid": pick("uid"),
                        "resourceVersion": pick("resourceVersion"),
                        "creationTimestamp": pick("creationTimestamp")},
           "spec": {"replicas": obj.pointer(&paths.spec_replicas).cloned().unwrap_or(json!(default_spec))},
           "status": {"replicas": obj.pointer(&paths.status_replicas).cloned().unwrap_or(json!(0)),
                      "selector": selector}})
}

/// A merge patch setting the value at a JSON pointer (`/spec/replicas` → `{"spec":{"replicas":n}}`).
fn merge_patch_at(pointer: &str, value: Value) -> Value {
    pointer
        .split('/')
        .filter(|s| !s.is_empty())
        .rev()
        .fold(value, |inner, key| json!({ key: inner }))
}

/// `/scale`: GET the Scale; PUT one, or PATCH it (JSON, merge, strategic), to set replicas.
async fn scale(
    store: &Arc<super::store::Store>,
    rt: &Arc<ResourceType>,
    ns: &str,
    name: &str,
    req: Request<Incoming>,
    q: &HashMap<String, String>,
) -> ApiResult<Response<Body>> {
    let method = req.method().clone();
    let obj = store.get_value(rt, ns, name)?;
    let current = scale_of(rt, &obj);
    let wanted = match method {
        Method::GET => return Ok(json_response(StatusCode::OK, &current)),
        Method::PUT => {
            let body = read_body(req).await?;
            let v: Value = serde_json::from_slice(&body)
                .map_err(|e| ApiError::bad_request(format!("Scale: {e}")))?;
            v
        }
        Method::PATCH => {
            let ct = content_type(&req);
            let body = read_body(req).await?;
            let mut target = current.clone();
            match ct.as_str() {
                "application/json-patch+json" => super::patch::json_patch(&mut target, &body),
                "application/merge-patch+json" => super::patch::merge_patch(&mut target, &body),
                "application/strategic-merge-patch+json" => {
                    super::patch::strategic_merge_patch(&mut target, &body)
                }
                other => return Err(ApiError::unsupported_media_type(other)),
            }
            .map_err(|e| ApiError::bad_request(e.to_string()))?;
            target
        }
        m => return Err(ApiError::method_not_allowed(m.as_str(), rt)),
    };
    let Some(replicas) = wanted.pointer("/spec/replicas").and_then(Value::as_i64) else {
        return Err(ApiError::invalid(
            "Scale",
            rt,
            name,
            "spec.replicas",
            "Required value",
        ));
    };
    if replicas < 0 {
        return Err(ApiError::invalid(
            "Scale",
            rt,
            name,
            "spec.replicas",
            &format!("Invalid value: {replicas}: must be greater than or equal to 0"),
        ));
    }
    let ctx = WriteCtx {
        manager: manager_for(q, "kubectl"),
        dry_run: dry_run(q)?,
        field_validation: FieldValidation::Warn,
        warnings: Default::default(),
    };
    let spec_path = rt
        .scale
        .as_ref()
        .map_or("/spec/replicas", |p| p.spec_replicas.as_str());
    let patch = merge_patch_at(spec_path, json!(replicas));
    let (updated, _) = store.patch(
        rt,
        ns,
        name,
        super::store::PatchKind::Merge,
        patch.to_string().as_bytes(),
        Scope::Main,
        &ctx,
    )?;
    Ok(json_response(
        StatusCode::OK,
        &scale_of(rt, &updated.value()?),
    ))
}

/// Check a list's `resourceVersion` / `resourceVersionMatch` as a real server does; returns
/// the resourceVersion whose exact snapshot is asked for (`Exact`), if any.
fn list_resource_version(q: &HashMap<String, String>, current: u64) -> ApiResult<Option<u64>> {
    let rv = q.get("resourceVersion").filter(|s| !s.is_empty());
    let rvm = q.get("resourceVersionMatch").filter(|s| !s.is_empty());
    let has_continue = q.get("continue").is_some_and(|c| !c.is_empty());
    if has_continue && rv.is_some_and(|r| r != "0") {
        return Err(ApiError::invalid_list_options(
            "continue",
            "Forbidden: specifying resource version is not allowed when using continue",
        ));
    }
    let parsed = match rv {
        None => None,
        Some(s) => Some(s.parse::<u64>().map_err(|_| {
            ApiError::bad_request(format!(
                "resourceVersion: Invalid value: {s:?}: must be a numeric value"
            ))
        })?),
    };
    match (rvm.map(String::as_str), parsed) {
        (Some(_), None) => Err(ApiError::invalid_list_options(
            "resourceVersionMatch",
            "Forbidden: resourceVersionMatch is forbidden unless resourceVersion is provided",
        )),
        (Some(m), _) if m != "Exact" && m != "NotOlderThan" => Err(ApiError::invalid_list_options(
            "resourceVersionMatch",
            &format!("Unsupported value: {m:?}: supported values: \"Exact\", \"NotOlderThan\""),
        )),
        (Some("Exact"), Some(0)) => Err(ApiError::invalid_list_options(
            "resourceVersionMatch",
            "Forbidden: resourceVersionMatch \"exact\" is forbidden for resourceVersion \"0\"",
        )),
        (_, Some(r)) if r > current => Err(ApiError::too_large_rv(r, current)),
        (Some("Exact"), Some(r)) => Ok(Some(r)),
        _ => Ok(None),
    }
}

fn watch(
    cluster: &Arc<Cluster>,
    rt: Arc<ResourceType>,
    namespace: Option<String>,
    labels: LabelSelector,
    fields: FieldSelector,
    q: &HashMap<String, String>,
    metadata_only_events: bool,
) -> ApiResult<Response<Body>> {
    let from = match q.get("resourceVersion").map(String::as_str) {
        None | Some("") | Some("0") => None,
        Some(s) => Some(s.parse::<u64>().map_err(|_| {
            ApiError::bad_request(format!(
                "resourceVersion: Invalid value: {s:?}: must be a numeric value"
            ))
        })?),
    };
    if let Some(r) = from {
        let current = cluster.store.resource_version();
        if r > current {
            return Err(ApiError::too_large_rv(r, current));
        }
    }
    let timeout = q
        .get("timeoutSeconds")
        .and_then(|t| t.parse::<u64>().ok())
        .map_or(cluster.settings.watch_timeout, Duration::from_secs);
    let bookmarks = truthy(q, "allowWatchBookmarks");
    let initial_end_marker = truthy(q, "sendInitialEvents");
    if initial_end_marker {
        if q.get("resourceVersionMatch").map(String::as_str) != Some("NotOlderThan") {
            return Err(ApiError::invalid_list_options(
                "resourceVersionMatch",
                "Forbidden: sendInitialEvents requires setting resourceVersionMatch to NotOlderThan",
            ));
        }
        if !bookmarks {
            return Err(ApiError::invalid_list_options(
                "allowWatchBookmarks",
                "Forbidden: sendInitialEvents requires setting allowWatchBookmarks to true",
            ));
        }
    }
    let filter = WatchFilter {
        gr: rt.group_resource(),
        namespace,
        labels,
        fields,
        metadata_only: metadata_only_events,
    };
    let (tx, rx) = mpsc::channel::<Result<Frame<Bytes>, Infallible>>(256);
    let body = StreamBody::new(ReceiverStream::new(rx)).boxed();
    let response = Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/json")
        .body(body)
        .map_err(|e| ApiError::internal(e.to_string()))?;
    match cluster
        .store
        .watch_start(&filter.gr, filter.namespace.as_deref(), from)
    {
        Ok(start) => {
            let cluster = cluster.clone();
            tokio::spawn(async move {
                stream_watch(
                    cluster,
                    rt,
                    filter,
                    start,
                    timeout,
                    bookmarks,
                    initial_end_marker,
                    tx,
                )
                .await;
            });
        }
        Err(e) => {
            // Like the real server: 200, then one ERROR event carrying the Status.
            let status = serde_json::to_vec(&e.status_body()).unwrap_or_default();
            let line = event_line("ERROR", &status);
            tokio::spawn(async move {
                let _ = tx.send(Ok(Frame::data(line))).await;
            });
        }
    }
    cluster
        .watches_opened
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    Ok(response)
}

#[allow(clippy::too_many_arguments)]
async fn stream_watch(
    cluster: Arc<Cluster>,
    rt: Arc<ResourceType>,
    filter: WatchFilter,
    start: super::store::WatchStart,
    timeout: Duration,
    bookmarks: bool,
    initial_end_marker: bool,
    tx: mpsc::Sender<Result<Frame<Bytes>, Infallible>>,
) {
    let open = &cluster.watches_open;
    open.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let _guard = scopeguard(open);
    let mut last_rv = start.start_rv;
    let mut rx = start.rx;
    let mut cut = cluster.faults.subscribe();
    let mut out = WatchOut::new(&cluster, tx.clone());
    let bookmark = |rv: u64, initial_end: bool| {
        let mut meta = json!({"resourceVersion": rv.to_string()});
        if initial_end {
            meta["annotations"] = json!({"k8s.io/initial-events-end": "true"});
        }
        let obj = json!({"kind": rt.kind, "apiVersion": rt.api_version(), "metadata": meta});
        event_line("BOOKMARK", &serde_json::to_vec(&obj).unwrap_or_default())
    };
    for ev in &start.backlog {
        last_rv = last_rv.max(ev.rv);
        if let Some(kind) = filter.view(ev)
            && !out
                .send(event_line(kind.as_str(), &filter.payload(ev)))
                .await
        {
            return;
        }
    }
    if initial_end_marker && !out.send(bookmark(last_rv, true)).await {
        return;
    }
    let deadline = tokio::time::Instant::now() + timeout;
    let mut tick = tokio::time::interval(cluster.settings.bookmark_interval);
    tick.tick().await;
    loop {
        tokio::select! {
            ev = rx.recv() => match ev {
                Ok(ev) => {
                    if ev.rv <= last_rv { continue; }
                    last_rv = ev.rv;
                    if let Some(kind) = filter.view(&ev)
                        && !out.send(event_line(kind.as_str(), &filter.payload(&ev))).await {
                        return;
                    }
                }
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    match cluster.store.resume(last_rv) {
                        Some(resumed) => {
                            rx = resumed.rx;
                            for ev in resumed.backlog {
                                last_rv = last_rv.max(ev.rv);
                                if let Some(kind) = filter.view(&ev)
                                    && !out.send(event_line(kind.as_str(), &filter.payload(&ev))).await {
                                    return;
                                }
                            }
                        }
                        None => {
                            let e = ApiError::gone(format!("too old resource version: {last_rv}"));
                            let _ = out.send(event_line("ERROR", &serde_json::to_vec(&e.status_body()).unwrap_or_default())).await;
                            return;
                        }
                    }
                }
                Err(broadcast::error::RecvError::Closed) => return,
            },
            _ = tick.tick(), if bookmarks => {
                if !out.send(bookmark(last_rv, false)).await { return; }
            }
            _ = tokio::time::sleep_until(deadline) => {
                if bookmarks { let _ = out.send(bookmark(last_rv, false)).await; }
                return;
            }
            _ = cut.changed() => return,
            _ = tx.closed() => return,
        }
    }
}

/// Where a watch's lines go: straight to the client, or (with a latency profile that delays
/// watch events) through a task that releases each line at its due time. Due times never go
/// backwards, so order is kept, and events are pipelined: a burst is not serialised by the
/// delay.
enum WatchOut {
    Direct(mpsc::Sender<Result<Frame<Bytes>, Infallible>>),
    Delayed {
        cluster: Arc<Cluster>,
        tx: mpsc::Sender<(tokio::time::Instant, Bytes)>,
        due: tokio::time::Instant,
    },
}

impl WatchOut {
    fn new(cluster: &Arc<Cluster>, tx: mpsc::Sender<Result<Frame<Bytes>, Infallible>>) -> Self {
        if !cluster
            .latency
            .as_ref()
            .is_some_and(|l| l.delays_watch_events())
        {
            return Self::Direct(tx);
        }
        let (dtx, mut drx) = mpsc::channel::<(tokio::time::Instant, Bytes)>(1024);
        tokio::spawn(async move {
            while let Some((due, line)) = drx.recv().await {
                tokio::time::sleep_until(due).await;
                if tx.send(Ok(Frame::data(line))).await.is_err() {
                    return;
                }
            }
        });
        Self::Delayed {
            cluster: cluster.clone(),
            tx: dtx,
            due: tokio::time::Instant::now(),
        }
    }

    /// Queue one line; false once the client is gone.
    async fn send(&mut self, line: Bytes) -> bool {
        match self {
            Self::Direct(tx) => tx.send(Ok(Frame::data(line))).await.is_ok(),
            Self::Delayed { cluster, tx, due } => {
                let delay = cluster
                    .latency
                    .as_ref()
                    .and_then(|l| l.delay(Class::Watch, 0))
                    .unwrap_or_default();
                *due = (*due).max(tokio::time::Instant::now() + delay);
                tx.send((*due, line)).await.is_ok()
            }
        }
    }
}

struct OpenGuard<'a>(&'a std::sync::atomic::AtomicU64);

impl Drop for OpenGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

fn scopeguard(c: &std::sync::atomic::AtomicU64) -> OpenGuard<'_> {
    OpenGuard(c)
}
