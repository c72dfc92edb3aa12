//! A fake GitHub (REST v3 under `/api/v3`) and GitLab (REST v4 under `/api/v4`) API on
//! loopback (plain HTTP), answering what the ApplicationSet `scmProvider` and `pullRequest`
//! generators call, with the field names the real APIs return:
//!
//! - GitHub: `GET orgs/{org}/repos`, `repos/{o}/{r}/branches[/{b}]`,
//!   `repos/{o}/{r}/contents/{path}?ref=`, `repos/{o}/{r}/pulls?state=` (default `open`);
//!   `Authorization: Bearer <token>` required (401 `Bad credentials` otherwise).
//! - GitLab: `GET groups/{group}/projects`, `projects/{id}/repository/branches[/{b}]`,
//!   `projects/{id}/repository/tree?path=&ref=`, `projects/{id or path}/merge_requests?state=&labels=`;
//!   `PRIVATE-TOKEN: <token>` or `Authorization: Bearer <token>` required.
//!
//! Listings are paginated at [`ScmApi::page_size`] items (default 2) whatever `per_page`
//! asks, with GitHub's `Link` header and GitLab's `Link` and `X-Next-Page`/`X-Total-Pages`,
//! so that clients must follow pages.

use std::collections::{BTreeMap, BTreeSet};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use anyhow::Result;
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// What the fake serves; change it at any time through [`ScmApi::state`].
#[derive(Debug, Clone, Default)]
pub struct ScmState {
    pub github_token: String,
    pub gitlab_token: String,
    /// Items per page.
    pub page_size: usize,
    /// GitHub repositories (objects as [`github_repo`] makes them), listed per owner login.
    pub github_repos: Vec<Value>,
    /// `owner/repo` → branches (`{name, commit: {sha, url}, protected}`).
    pub github_branches: BTreeMap<String, Vec<Value>>,
    /// (`owner/repo`, ref, path) that exist.
    pub github_paths: BTreeSet<(String, String, String)>,
    /// `owner/repo` → pull requests (objects as [`github_pull`] makes them).
    pub github_pulls: BTreeMap<String, Vec<Value>>,
    /// GitLab projects (objects as [`gitlab_project`] makes them), listed per namespace path.
    pub gitlab_projects: Vec<Value>,
    /// project id → branches (`{name, commit: {id, short_id}, default}`).
    pub gitlab_branches: BTreeMap<i64, Vec<Value>>,
    /// (project id, ref) → every path in the tree (files and directories).
    pub gitlab_trees: BTreeMap<(i64, String), Vec<String>>,
    /// project id → merge requests (objects as [`gitlab_merge_request`] makes them).
    pub gitlab_merge_requests: BTreeMap<i64, Vec<Value>>,
    /// Every request served: `METHOD path?query` (never a token).
    pub requests: Vec<String>,
    /// Requests refused for their credentials.
    pub unauthorized: usize,
}

/// A running fake; stops when dropped.
pub struct ScmApi {
    pub addr: SocketAddr,
    pub state: Arc<Mutex<ScmState>>,
    task: JoinHandle<()>,
}

impl Drop for ScmApi {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A GitHub repository as `GET /orgs/{org}/repos` returns it (the fields Argo CD reads and
/// the usual neighbours).
pub fn github_repo(
    owner: &str,
    name: &str,
    id: i64,
    default_branch: &str,
    topics: &[&str],
) -> Value {
    json!({
        "id": id, "node_id": format!("R_{id}"), "name": name, "full_name": format!("{owner}/{name}"),
        "private": false,
        "owner": {"login": owner, "id": 1000, "type": "Organization"},
        "html_url": format!("https://github.com/{owner}/{name}"),
        "url": format!("https://api.github.com/repos/{owner}/{name}"),
        "git_url": format!("git://github.com/{owner}/{name}.git"),
        "ssh_url": format!("git@github.com:{owner}/{name}.git"),
        "clone_url": format!("https://github.com/{owner}/{name}.git"),
        "default_branch": default_branch, "topics": topics, "archived": false, "fork": false,
        "visibility": "public"
    })
}

/// A GitHub branch (`GET /repos/{o}/{r}/branches`).
pub fn github_branch(name: &str, sha: &str) -> Value {
    json!({"name": name, "commit": {"sha": sha, "url": format!("https://api.github.com/commits/{sha}")},
           "protected": false})
}

/// An open GitHub pull request (`GET /repos/{o}/{r}/pulls`).
#[allow(clippy::too_many_arguments)]
pub fn github_pull(
    owner: &str,
    repo: &str,
    number: i64,
    title: &str,
    head: &str,
    head_sha: &str,
    base: &str,
    user: &str,
    labels: &[&str],
) -> Value {
    json!({
        "id": 50_000 + number, "number": number, "state": "open", "locked": false, "title": title,
        "user": {"login": user, "id": 2000, "type": "User"},
        "labels": labels.iter().enumerate().map(|(i, l)| json!({"id": i, "name": l, "color": "ededed"})).collect::<Vec<_>>(),
        "html_url": format!("https://github.com/{owner}/{repo}/pull/{number}"),
        "head": {"label": format!("{owner}:{head}"), "ref": head, "sha": head_sha,
                 "repo": {"name": repo, "full_name": format!("{owner}/{repo}")}},
        "base": {"label": format!("{owner}:{base}"), "ref": base, "sha": "0".repeat(40),
                 "repo": {"name": repo, "full_name": format!("{owner}/{repo}")}},
        "draft": false
    })
}

/// A GitLab project (`GET /groups/{group}/projects`).
pub fn gitlab_project(
    namespace: &str,
    path: &str,
    id: i64,
    default_branch: &str,
    topics: &[&str],
) -> Value {
    let base = namespace.rsplit('/').next().unwrap_or(namespace);
    json!({
        "id": id, "name": path, "path": path, "path_with_namespace": format!("{namespace}/{path}"),
        "name_with_namespace": format!("{namespace} / {path}"),
        "namespace": {"id": 300, "name": base, "path": base, "kind": "group", "full_path": namespace},
        "default_branch": default_branch,
        "ssh_url_to_repo": format!("git@gitlab.com:{namespace}/{path}.git"),
        "http_url_to_repo": format!("https://gitlab.com/{namespace}/{path}.git"),
        "web_url": format!("https://gitlab.com/{namespace}/{path}"),
        "topics": topics, "tag_list": topics, "visibility": "private", "archived": false
    })
}

/// A GitLab branch (`GET /projects/{id}/repository/branches`).
pub fn gitlab_branch(name: &str, sha: &str, default: bool) -> Value {
    json!({"name": name, "merged": false, "protected": default, "default": default,
           "commit": {"id": sha, "short_id": &sha[..sha.len().min(8)], "title": "commit"}})
}

/// A GitLab merge request (`GET /projects/{id}/merge_requests`), state `opened`.
#[allow(clippy::too_many_arguments)]
pub fn gitlab_merge_request(
    project_id: i64,
    iid: i64,
    title: &str,
    source: &str,
    sha: &str,
    target: &str,
    author: &str,
    labels: &[&str],
) -> Value {
    json!({
        "id": 90_000 + iid, "iid": iid, "project_id": project_id, "title": title, "state": "opened",
        "source_branch": source, "target_branch": target, "sha": sha,
        "author": {"id": 3000, "username": author, "name": author, "state": "active"},
        "labels": labels, "draft": false, "web_url": format!("https://gitlab.com/-/merge_requests/{iid}")
    })
}

fn reply(status: StatusCode, body: &Value, headers: &[(String, String)]) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body.to_string())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    for (k, v) in headers {
        if let (Ok(k), Ok(v)) = (
            hyper::header::HeaderName::from_bytes(k.as_bytes()),
            hyper::header::HeaderValue::from_str(v),
        ) {
            r.headers_mut().insert(k, v);
        }
    }
    r
}

fn not_found() -> Response<Full<Bytes>> {
    reply(StatusCode::NOT_FOUND, &json!({"message": "Not Found"}), &[])
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        if b[i] == b'%'
            && i + 2 < b.len()
            && let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2]))
        {
            out.push((h * 16 + l) as u8);
            i += 3;
            continue;
        }
        out.push(if b[i] == b'+' { b' ' } else { b[i] });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// One page of `items` with the pagination headers of `kind`.
fn page(
    items: Vec<Value>,
    size: usize,
    base: &str,
    path: &str,
    query: &BTreeMap<String, String>,
    gitlab: bool,
) -> Response<Full<Bytes>> {
    let size = size.max(1);
    let n: usize = query
        .get("page")
        .and_then(|p| p.parse().ok())
        .unwrap_or(1)
        .max(1);
    let total_pages = items.len().div_ceil(size).max(1);
    let chunk: Vec<Value> = items
        .iter()
        .skip((n - 1) * size)
        .take(size)
        .cloned()
        .collect();
    let link = |p: usize| {
        let mut q = query.clone();
        q.insert("page".into(), p.to_string());
        let qs: Vec<String> = q.iter().map(|(k, v)| format!("{k}={v}")).collect();
        format!("<{base}{path}?{}>", qs.join("&"))
    };
    let mut links = Vec::new();
    if n < total_pages {
        links.push(format!("{}; rel=\"next\"", link(n + 1)));
    }
    links.push(format!("{}; rel=\"first\"", link(1)));
    links.push(format!("{}; rel=\"last\"", link(total_pages)));
    let mut headers = vec![("link".to_string(), links.join(", "))];
    if gitlab {
        headers.push(("x-page".into(), n.to_string()));
        headers.push(("x-per-page".into(), size.to_string()));
        headers.push(("x-total".into(), items.len().to_string()));
        headers.push(("x-total-pages".into(), total_pages.to_string()));
        headers.push((
            "x-next-page".into(),
            if n < total_pages {
                (n + 1).to_string()
            } else {
                String::new()
            },
        ));
    }
    reply(StatusCode::OK, &Value::Array(chunk), &headers)
}

fn route(st: &mut ScmState, base: &str, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    let raw_path = req.uri().path().to_string();
    let query: BTreeMap<String, String> = req
        .uri()
        .query()
        .unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect();
    st.requests.push(format!(
        "{} {}{}",
        req.method(),
        raw_path,
        req.uri()
            .query()
            .map(|q| format!("?{q}"))
            .unwrap_or_default()
    ));
    if req.method() != hyper::Method::GET {
        return not_found();
    }
    let header = |n: &str| {
        req.headers()
            .get(n)
            .and_then(|h| h.to_str().ok())
            .unwrap_or_default()
            .to_string()
    };
    let segs: Vec<String> = raw_path
        .trim_start_matches('/')
        .split('/')
        .map(percent_decode)
        .collect();
    let segs: Vec<&str> = segs.iter().map(String::as_str).collect();
    let size = if st.page_size == 0 { 2 } else { st.page_size };
    match segs.as_slice() {
        ["api", "v3", rest @ ..] => {
            if header("authorization") != format!("Bearer {}", st.github_token) {
                st.unauthorized += 1;
                return reply(
                    StatusCode::UNAUTHORIZED,
                    &json!({"message": "Bad credentials",
                            "documentation_url": "https://docs.github.com/rest", "status": "401"}),
                    &[],
                );
            }
            match rest {
                ["orgs", org, "repos"] => {
                    let items = st
                        .github_repos
                        .iter()
                        .filter(|r| r["owner"]["login"] == *org)
                        .cloned()
                        .collect();
                    page(items, size, base, &raw_path, &query, false)
                }
                ["repos", o, r, "branches"] => match st.github_branches.get(&format!("{o}/{r}")) {
                    Some(b) => page(b.clone(), size, base, &raw_path, &query, false),
                    None => not_found(),
                },
                ["repos", o, r, "branches", b] => st
                    .github_branches
                    .get(&format!("{o}/{r}"))
                    .and_then(|bs| bs.iter().find(|x| x["name"] == *b))
                    .map_or_else(not_found, |b| reply(StatusCode::OK, b, &[])),
                ["repos", o, r, "contents", path @ ..] => {
                    let key = (
                        format!("{o}/{r}"),
                        query.get("ref").cloned().unwrap_or_default(),
                        path.join("/"),
                    );
                    if st.github_paths.contains(&key) {
                        reply(
                            StatusCode::OK,
                            &json!({"type": "file", "name": path.last(), "path": key.2}),
                            &[],
                        )
                    } else {
                        not_found()
                    }
                }
                ["repos", o, r, "pulls"] => {
                    let state = query.get("state").map_or("open", String::as_str);
                    match st.github_pulls.get(&format!("{o}/{r}")) {
                        Some(p) => {
                            let items = p
                                .iter()
                                .filter(|p| state == "all" || p["state"] == state)
                                .cloned()
                                .collect();
                            page(items, size, base, &raw_path, &query, false)
                        }
                        None => not_found(),
                    }
                }
                _ => not_found(),
            }
        }
        ["api", "v4", rest @ ..] => {
            let ok = header("private-token") == st.gitlab_token
                || header("authorization") == format!("Bearer {}", st.gitlab_token);
            if !ok {
                st.unauthorized += 1;
                return reply(
                    StatusCode::UNAUTHORIZED,
                    &json!({"message": "401 Unauthorized"}),
                    &[],
                );
            }
            let project = |p: &str| -> Option<i64> {
                p.parse().ok().or_else(|| {
                    st.gitlab_projects
                        .iter()
                        .find(|x| x["path_with_namespace"] == p)
                        .and_then(|x| x["id"].as_i64())
                })
            };
            match rest {
                ["groups", g, "projects"] => {
                    let subgroups = query.get("include_subgroups").is_some_and(|v| v == "true");
                    let items = st
                        .gitlab_projects
                        .iter()
                        .filter(|p| {
                            let ns = p["namespace"]["full_path"].as_str().unwrap_or_default();
                            ns == *g || (subgroups && ns.starts_with(&format!("{g}/")))
                        })
                        .cloned()
                        .collect();
                    page(items, size, base, &raw_path, &query, true)
                }
                ["projects", p, "repository", "branches"] => {
                    match project(p).and_then(|id| st.gitlab_branches.get(&id)) {
                        Some(b) => page(b.clone(), size, base, &raw_path, &query, true),
                        None => reply(
                            StatusCode::NOT_FOUND,
                            &json!({"message": "404 Project Not Found"}),
                            &[],
                        ),
                    }
                }
                ["projects", p, "repository", "branches", b] => project(p)
                    .and_then(|id| st.gitlab_branches.get(&id))
                    .and_then(|bs| bs.iter().find(|x| x["name"] == *b))
                    .map_or_else(
                        || {
                            reply(
                                StatusCode::NOT_FOUND,
                                &json!({"message": "404 Branch Not Found"}),
                                &[],
                            )
                        },
                        |b| reply(StatusCode::OK, b, &[]),
                    ),
                ["projects", p, "repository", "tree"] => {
                    let r#ref = query.get("ref").cloned().unwrap_or_default();
                    let dir = query.get("path").cloned().unwrap_or_default();
                    let dir = if dir == "." { String::new() } else { dir };
                    let Some(paths) = project(p).and_then(|id| st.gitlab_trees.get(&(id, r#ref)))
                    else {
                        return reply(
                            StatusCode::NOT_FOUND,
                            &json!({"message": "404 Tree Not Found"}),
                            &[],
                        );
                    };
                    let items = paths
                        .iter()
                        .filter(|x| {
                            let parent = x.rsplit_once('/').map_or("", |(d, _)| d);
                            parent == dir
                        })
                        .map(|x| {
                            json!({"id": "0".repeat(40), "name": x.rsplit('/').next(),
                                   "type": "blob", "path": x, "mode": "100644"})
                        })
                        .collect();
                    page(items, size, base, &raw_path, &query, true)
                }
                ["projects", p, "merge_requests"] => {
                    let state = query.get("state").cloned().unwrap_or_else(|| "all".into());
                    let want: Vec<String> = query
                        .get("labels")
                        .map(|l| {
                            l.split(',')
                                .filter(|x| !x.is_empty())
                                .map(str::to_string)
                                .collect()
                        })
                        .unwrap_or_default();
                    match project(p).and_then(|id| st.gitlab_merge_requests.get(&id)) {
                        Some(mrs) => {
                            let items = mrs
                                .iter()
                                .filter(|m| state == "all" || m["state"] == state.as_str())
                                .filter(|m| {
                                    want.iter().all(|w| {
                                        m["labels"]
                                            .as_array()
                                            .is_some_and(|l| l.iter().any(|x| x == w))
                                    })
                                })
                                .cloned()
                                .collect();
                            page(items, size, base, &raw_path, &query, true)
                        }
                        None => reply(
                            StatusCode::NOT_FOUND,
                            &json!({"message": "404 Project Not Found"}),
                            &[],
                        ),
                    }
                }
                _ => not_found(),
            }
        }
        _ => not_found(),
    }
}

impl ScmApi {
    /// Serve `state` on a free loopback port.
    pub async fn start(state: ScmState) -> Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(Mutex::new(state));
        let shared = state.clone();
        let base = format!("http://{addr}");
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (shared, base) = (shared.clone(), base.clone());
                tokio::spawn(async move {
                    let svc = service_fn(move |req: Request<Incoming>| {
                        let (shared, base) = (shared.clone(), base.clone());
                        async move {
                            let resp = match shared.lock() {
                                Ok(mut st) => route(&mut st, &base, &req),
                                Err(_) => reply(
                                    StatusCode::INTERNAL_SERVER_ERROR,
                                    &json!({"message": "poisoned"}),
                                    &[],
                                ),
                            };
                            Ok::<_, Infallible>(resp)
                        }
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Ok(Self { addr, state, task })
    }

    /// The base URL to put in a generator's `api` (`http://127.0.0.1:port`): GitHub's
    /// clients add `/api/v3`, GitLab's `/api/v4`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Change what is served.
    pub fn update(&self, f: impl FnOnce(&mut ScmState)) {
        if let Ok(mut st) = self.state.lock() {
            f(&mut st);
        }
    }

    /// The requests served so far whose path contains `needle`.
    pub fn requests_matching(&self, needle: &str) -> Vec<String> {
        self.state
            .lock()
            .map(|s| {
                s.requests
                    .iter()
                    .filter(|r| r.contains(needle))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    }
}
