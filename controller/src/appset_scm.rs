//! The HTTP clients of the ApplicationSet `scmProvider` and `pullRequest` generators: GitHub
//! (REST v3, `Authorization: Bearer`) and GitLab (REST v4, `PRIVATE-TOKEN`, as go-gitlab sends
//! it), the calls Argo CD's providers make, with its URLs and field names.
//!
//! Tokens come from the Secret `tokenRef` names in the control-plane namespace, read (GET) at
//! generation time, and never appear in errors or logs. API URLs must be `https` unless the
//! host is loopback (tests). Every request has a 10 s timeout and no redirects; pagination
//! follows `Link: rel="next"` (and GitLab's `X-Next-Page`) on the same origin only, up to
//! [`MAX_PAGES`] pages and [`MAX_ITEMS`] items; a page is at most [`MAX_PAGE_BYTES`].

use std::sync::OnceLock;
use std::time::Duration;

use flotilla_appset::generators::{InputError, PullRequest, PullRequestApi, ScmApi, ScmRepository};
use flotilla_appset::types::SecretRef;
use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use reqwest::{StatusCode, Url};
use serde_json::Value;

use crate::context::Context;

/// Per request.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Pages followed per listing.
pub const MAX_PAGES: usize = 100;
/// Items per listing.
pub const MAX_ITEMS: usize = 10_000;
/// Bytes per page.
pub const MAX_PAGE_BYTES: usize = 4 << 20;

const GITHUB_API: &str = "https://api.github.com/";
const GITLAB_API: &str = "https://gitlab.com/";

fn unavailable(m: impl Into<String>) -> InputError {
    InputError::Unavailable(m.into())
}

fn client() -> Result<reqwest::Client, InputError> {
    static CLIENT: OnceLock<Result<reqwest::Client, String>> = OnceLock::new();
    CLIENT
        .get_or_init(|| {
            let _ = rustls::crypto::ring::default_provider().install_default();
            reqwest::Client::builder()
                .connect_timeout(Duration::from_secs(5))
                .timeout(REQUEST_TIMEOUT)
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .map_err(|e| e.without_url().to_string())
        })
        .clone()
        .map_err(unavailable)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Github,
    Gitlab,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Github => "GitHub",
            Kind::Gitlab => "GitLab",
        }
    }
}

/// The tokens read during one generation pass, by (Secret, key): a set listing N repositories
/// and checking their paths reads each token Secret once, not once per API call. Dropped with
/// the pass, so a rotated token is used from the next pass on.
#[derive(Default)]
pub struct Tokens(std::sync::Mutex<std::collections::HashMap<(String, String), String>>);

impl Tokens {
    async fn get(&self, ctx: &Context, r: Option<&SecretRef>) -> Result<String, InputError> {
        let Some(r) = r else {
            return Ok(String::new());
        };
        let key = (r.secret_name.clone(), r.key.clone());
        if let Some(t) = self.0.lock().ok().and_then(|m| m.get(&key).cloned()) {
            return Ok(t);
        }
        let t = token(ctx, Some(r)).await?;
        if let Ok(mut m) = self.0.lock() {
            m.insert(key, t.clone());
        }
        Ok(t)
    }
}

/// One provider's API: its base URL (ending in `/`) and the token (empty: anonymous).
struct Api_ {
    kind: Kind,
    base: Url,
    token: String,
}

fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d == "localhost",
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

/// go-github's `WithEnterpriseURLs` / go-gitlab's base URL rules.
fn base_url(kind: Kind, api: &str) -> Result<Url, InputError> {
    let raw = if api.is_empty() {
        match kind {
            Kind::Github => GITHUB_API,
            Kind::Gitlab => GITLAB_API,
        }
    } else {
        api
    };
    let mut url = Url::parse(raw)
        .map_err(|e| unavailable(format!("{} API URL {raw:?} is invalid: {e}", kind.name())))?;
    let secure = url.scheme() == "https" || (url.scheme() == "http" && is_loopback(&url));
    if !secure {
        return Err(unavailable(format!(
            "{} API URL {} must be https",
            kind.name(),
            crate::redact::redact_url(raw)
        )));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(unavailable(format!(
            "{} API URL must not carry credentials",
            kind.name()
        )));
    }
    url.set_query(None);
    url.set_fragment(None);
    let mut path = url.path().to_string();
    if !path.ends_with('/') {
        path.push('/');
    }
    let host = url.host_str().unwrap_or_default().to_string();
    match kind {
        Kind::Github if !api.is_empty() => {
            if !path.ends_with("/api/v3/") && !host.starts_with("api.") && !host.contains(".api.") {
                path.push_str("api/v3/");
            }
        }
        Kind::Gitlab => {
            if !path.ends_with("api/v4/") {
                path.push_str("api/v4/");
            }
        }
        Kind::Github => {}
    }
    url.set_path(&path);
    Ok(url)
}

const SECRET_TYPE_LABEL: &str = "argocd.argoproj.io/secret-type";
const SCM_CREDS: &str = "scm-creds";

/// The token `tokenRef` names, read from the control-plane namespace (empty without a ref).
async fn token(ctx: &Context, r: Option<&SecretRef>) -> Result<String, InputError> {
    let Some(r) = r else {
        return Ok(String::new());
    };
    let ns = &ctx.cfg.namespace;
    let secrets: Api<Secret> = Api::namespaced(ctx.control.clone(), ns);
    let secret = match secrets.get_opt(&r.secret_name).await {
        Ok(Some(s)) => s,
        Ok(None) => {
            return Err(unavailable(format!(
                "error fetching Secret token: secret {ns}/{} not found",
                r.secret_name
            )));
        }
        Err(e) => {
            return Err(unavailable(format!(
                "error fetching Secret token: reading secret {ns}/{}: {e}",
                r.secret_name
            )));
        }
    };
    // Argo CD's strict tokenRef mode, always: whoever may write an ApplicationSet may name any
    // Secret of the control-plane namespace and send it to any API host, so only Secrets
    // labelled for that purpose are read (never a cluster or repository credential).
    let labelled = secret
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(SECRET_TYPE_LABEL))
        .is_some_and(|t| t == SCM_CREDS);
    if !labelled {
        return Err(unavailable(format!(
            "secret {ns}/{} is not labelled {SECRET_TYPE_LABEL}: {SCM_CREDS}: only such Secrets are used as SCM tokens",
            r.secret_name
        )));
    }
    let value = secret
        .data
        .as_ref()
        .and_then(|d| d.get(&r.key))
        .map(|b| b.0.clone())
        .or_else(|| {
            secret
                .string_data
                .as_ref()
                .and_then(|d| d.get(&r.key))
                .map(|s| s.clone().into_bytes())
        })
        .ok_or_else(|| {
            unavailable(format!(
                "error fetching Secret token: key {:?} in secret {ns}/{} not found",
                r.key, r.secret_name
            ))
        })?;
    let t = String::from_utf8(value).map_err(|_| {
        unavailable(format!(
            "token in secret {ns}/{} is not UTF-8",
            r.secret_name
        ))
    })?;
    Ok(t.trim().to_string())
}

impl Api_ {
    async fn new(
        ctx: &Context,
        tokens: &Tokens,
        kind: Kind,
        api: &str,
        r: Option<&SecretRef>,
    ) -> Result<Self, InputError> {
        if let Some(why) = ctx.cfg.scm_providers.refusal(api) {
            return Err(unavailable(why));
        }
        Ok(Self {
            kind,
            base: base_url(kind, api)?,
            token: tokens.get(ctx, r).await?,
        })
    }

    /// `base` + path segments (each percent-encoded, `/` included) + query.
    fn url(&self, segments: &[&str], query: &[(&str, &str)]) -> Url {
        let mut u = self.base.clone();
        if let Ok(mut p) = u.path_segments_mut() {
            p.pop_if_empty();
            p.extend(segments);
        }
        if !query.is_empty() {
            u.query_pairs_mut().extend_pairs(query);
        }
        u
    }

    /// One GET: the status, the parsed body (unless 2xx: the error's `message` as a string)
    /// and the next page's URL (same origin only).
    async fn get(&self, url: &Url) -> Result<(StatusCode, Value, Option<Url>), InputError> {
        let what = format!("{} API GET {}", self.kind.name(), url.path());
        let mut req = client()?.get(url.clone()).header("User-Agent", "flotilla");
        req = match self.kind {
            Kind::Github => req.header("Accept", "application/vnd.github.v3+json"),
            Kind::Gitlab => req.header("Accept", "application/json"),
        };
        if !self.token.is_empty() {
            req = match self.kind {
                Kind::Github => req.header("Authorization", format!("Bearer {}", self.token)),
                Kind::Gitlab => req.header("PRIVATE-TOKEN", self.token.as_str()),
            };
        }
        let mut resp = req
            .send()
            .await
            .map_err(|e| unavailable(format!("{what}: {}", e.without_url())))?;
        let status = resp.status();
        let next = next_page(resp.headers(), url);
        let mut body = Vec::new();
        while let Some(chunk) = resp
            .chunk()
            .await
            .map_err(|e| unavailable(format!("{what}: {}", e.without_url())))?
        {
            if body.len() + chunk.len() > MAX_PAGE_BYTES {
                return Err(unavailable(format!(
                    "{what}: response larger than {MAX_PAGE_BYTES} bytes"
                )));
            }
            body.extend_from_slice(&chunk);
        }
        if !status.is_success() {
            let message = serde_json::from_slice::<Value>(&body)
                .ok()
                .and_then(|v| {
                    v.get("message")
                        .map(|m| m.as_str().map_or_else(|| m.to_string(), str::to_string))
                })
                .unwrap_or_default();
            let message: String = message.chars().take(200).collect();
            return Ok((status, Value::String(message), None));
        }
        let v = serde_json::from_slice(&body)
            .map_err(|e| unavailable(format!("{what}: invalid JSON: {e}")))?;
        let next = next.filter(|n| n.origin() == self.base.origin());
        Ok((status, v, next))
    }

    fn status_error(&self, url: &Url, status: StatusCode, v: &Value) -> InputError {
        let message = v.as_str().filter(|m| !m.is_empty());
        unavailable(format!(
            "{} API GET {}: {status}{}",
            self.kind.name(),
            url.path(),
            message.map(|m| format!(": {m}")).unwrap_or_default()
        ))
    }

    /// Every item of a paginated listing (bounded).
    async fn list(&self, first: Url) -> Result<Vec<Value>, InputError> {
        self.list_or_empty(first, false).await
    }

    /// As `list`; with `empty_on_404` a 404 on the first page is an empty listing.
    async fn list_or_empty(
        &self,
        first: Url,
        empty_on_404: bool,
    ) -> Result<Vec<Value>, InputError> {
        let mut out = Vec::new();
        let mut url = Some(first);
        let mut pages = 0;
        while let Some(u) = url.take() {
            pages += 1;
            if pages > MAX_PAGES {
                return Err(unavailable(format!(
                    "{} API GET {}: more than {MAX_PAGES} pages",
                    self.kind.name(),
                    u.path()
                )));
            }
            let (status, v, next) = self.get(&u).await?;
            if status == StatusCode::NOT_FOUND && empty_on_404 && pages == 1 {
                return Ok(Vec::new());
            }
            if !status.is_success() {
                return Err(self.status_error(&u, status, &v));
            }
            let Value::Array(items) = v else {
                return Err(unavailable(format!(
                    "{} API GET {}: expected a JSON array",
                    self.kind.name(),
                    u.path()
                )));
            };
            out.extend(items);
            if out.len() > MAX_ITEMS {
                return Err(unavailable(format!(
                    "{} API GET {}: more than {MAX_ITEMS} items",
                    self.kind.name(),
                    u.path()
                )));
            }
            url = next;
        }
        Ok(out)
    }
}

/// `Link: <…>; rel="next"`, else GitLab's `X-Next-Page` on the current URL.
fn next_page(h: &reqwest::header::HeaderMap, current: &Url) -> Option<Url> {
    for link in h.get_all("link") {
        let Ok(link) = link.to_str() else { continue };
        for part in link.split(',') {
            let mut pieces = part.split(';');
            let target = pieces.next()?.trim();
            if pieces.any(|p| p.trim().replace(' ', "") == "rel=\"next\"") {
                let target = target.trim_start_matches('<').trim_end_matches('>');
                return Url::parse(target).ok();
            }
        }
    }
    let page = h.get("x-next-page")?.to_str().ok()?.trim().to_string();
    if page.is_empty() {
        return None;
    }
    let mut u = current.clone();
    let pairs: Vec<(String, String)> = current
        .query_pairs()
        .filter(|(k, _)| k != "page")
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    u.query_pairs_mut()
        .clear()
        .extend_pairs(pairs)
        .append_pair("page", &page);
    Some(u)
}

fn s(v: &Value, p: &str) -> String {
    v.pointer(p)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(|x| x.as_str().map(str::to_string))
        .collect()
}

async fn scm_api(ctx: &Context, tokens: &Tokens, api: ScmApi<'_>) -> Result<Api_, InputError> {
    match api {
        ScmApi::Github(g) => {
            Api_::new(ctx, tokens, Kind::Github, &g.api, g.token_ref.as_ref()).await
        }
        ScmApi::Gitlab(g) => {
            Api_::new(ctx, tokens, Kind::Gitlab, &g.api, g.token_ref.as_ref()).await
        }
    }
}

/// Argo CD's `ListRepos` of the GitHub / GitLab providers.
pub async fn repositories(
    ctx: &Context,
    tokens: &Tokens,
    api: ScmApi<'_>,
    clone_protocol: &str,
) -> Result<Vec<ScmRepository>, InputError> {
    let client = scm_api(ctx, tokens, api).await?;
    let ssh = match clone_protocol {
        "" | "ssh" => true,
        "https" => false,
        other => return Err(unavailable(format!("unknown clone protocol {other:?}"))),
    };
    let (items, gitlab) = match api {
        ScmApi::Github(g) => (
            client
                .list(client.url(&["orgs", &g.organization, "repos"], &[("per_page", "100")]))
                .await
                .map_err(|e| {
                    prefix(
                        e,
                        &format!("error listing repositories for {}", g.organization),
                    )
                })?,
            false,
        ),
        ScmApi::Gitlab(g) => {
            let mut q = vec![
                (
                    "include_subgroups",
                    if g.include_subgroups { "true" } else { "false" },
                ),
                ("per_page", "100"),
                (
                    "with_shared",
                    if g.include_shared_projects.unwrap_or(true) {
                        "true"
                    } else {
                        "false"
                    },
                ),
            ];
            if !g.topic.is_empty() {
                q.push(("topic", g.topic.as_str()));
            }
            (
                client
                    .list(client.url(&["groups", &g.group, "projects"], &q))
                    .await
                    .map_err(|e| prefix(e, &format!("error listing projects for {}", g.group)))?,
                true,
            )
        }
    };
    Ok(items
        .iter()
        .map(|r| {
            if gitlab {
                let topics = strings(&r["topics"]);
                ScmRepository {
                    organization: s(r, "/namespace/full_path"),
                    repository: s(r, "/path"),
                    url: s(
                        r,
                        if ssh {
                            "/ssh_url_to_repo"
                        } else {
                            "/http_url_to_repo"
                        },
                    ),
                    branch: s(r, "/default_branch"),
                    sha: String::new(),
                    labels: if topics.is_empty() {
                        strings(&r["tag_list"])
                    } else {
                        topics
                    },
                    repository_id: r["id"].as_i64().unwrap_or_default(),
                }
            } else {
                ScmRepository {
                    organization: s(r, "/owner/login"),
                    repository: s(r, "/name"),
                    url: s(r, if ssh { "/ssh_url" } else { "/clone_url" }),
                    branch: s(r, "/default_branch"),
                    sha: String::new(),
                    labels: strings(&r["topics"]),
                    repository_id: r["id"].as_i64().unwrap_or_default(),
                }
            }
        })
        .collect())
}

fn prefix(e: InputError, p: &str) -> InputError {
    match e {
        InputError::Unavailable(m) => InputError::Unavailable(format!("{p}: {m}")),
        other => other,
    }
}

/// Argo CD's `GetBranches`: the default branch only unless `allBranches`; a missing default
/// branch (an empty repository) gives none.
pub async fn branches(
    ctx: &Context,
    tokens: &Tokens,
    api: ScmApi<'_>,
    repo: &ScmRepository,
) -> Result<Vec<ScmRepository>, InputError> {
    let client = scm_api(ctx, tokens, api).await?;
    let id = repo.repository_id.to_string();
    let (all, base): (bool, Vec<&str>) = match api {
        ScmApi::Github(g) => (
            g.all_branches,
            vec!["repos", &repo.organization, &repo.repository, "branches"],
        ),
        ScmApi::Gitlab(g) => (
            g.all_branches,
            vec!["projects", &id, "repository", "branches"],
        ),
    };
    let sha_ptr = match api {
        ScmApi::Github(_) => "/commit/sha",
        ScmApi::Gitlab(_) => "/commit/id",
    };
    let ctx_err = |e| {
        prefix(
            e,
            &format!(
                "error listing branches for {}/{}",
                repo.organization, repo.repository
            ),
        )
    };
    let items = if all {
        // GitLab: a 404 is an empty listing (Argo CD); GitHub: an error.
        let url = client.url(&base, &[("per_page", "100")]);
        client
            .list_or_empty(url, matches!(api, ScmApi::Gitlab(_)))
            .await
            .map_err(ctx_err)?
    } else {
        let mut segs = base.clone();
        segs.push(&repo.branch);
        let url = client.url(&segs, &[]);
        match client.get(&url).await.map_err(ctx_err)? {
            (StatusCode::NOT_FOUND, _, _) => Vec::new(),
            (st, v, _) if st.is_success() => vec![v],
            (st, v, _) => return Err(ctx_err(client.status_error(&url, st, &v))),
        }
    };
    Ok(items
        .iter()
        .map(|b| ScmRepository {
            branch: s(b, "/name"),
            sha: s(b, sha_ptr),
            ..repo.clone()
        })
        .collect())
}

/// Argo CD's `RepoHasPath`: GitHub's contents endpoint (404: no); GitLab lists the parent
/// directory's tree and looks for the path.
pub async fn repo_has_path(
    ctx: &Context,
    tokens: &Tokens,
    api: ScmApi<'_>,
    repo: &ScmRepository,
    path: &str,
) -> Result<bool, InputError> {
    let client = scm_api(ctx, tokens, api).await?;
    match api {
        ScmApi::Github(_) => {
            let mut segs = vec![
                "repos",
                repo.organization.as_str(),
                repo.repository.as_str(),
                "contents",
            ];
            segs.extend(path.split('/').filter(|p| !p.is_empty()));
            let url = client.url(&segs, &[("ref", repo.branch.as_str())]);
            match client.get(&url).await? {
                (StatusCode::NOT_FOUND, _, _) => Ok(false),
                (st, _, _) if st.is_success() => Ok(true),
                (st, v, _) => Err(client.status_error(&url, st, &v)),
            }
        }
        ScmApi::Gitlab(_) => {
            let dir = match path.rfind('/') {
                Some(i) => &path[..i],
                None => ".",
            };
            let id = repo.repository_id.to_string();
            let url = client.url(
                &["projects", &id, "repository", "tree"],
                &[("path", dir), ("ref", repo.branch.as_str())],
            );
            let items = client.list(url).await?;
            Ok(items.iter().any(|n| n["path"].as_str() == Some(path)))
        }
    }
}

/// The open pull requests (GitHub, filtered to those carrying every `labels` entry) or the
/// merge requests in `pullRequestState` with `labels` (GitLab).
pub async fn pull_requests(
    ctx: &Context,
    tokens: &Tokens,
    api: PullRequestApi<'_>,
) -> Result<Vec<PullRequest>, InputError> {
    match api {
        PullRequestApi::Github(g) => {
            let client = Api_::new(ctx, tokens, Kind::Github, &g.api, g.token_ref.as_ref()).await?;
            let url = client.url(
                &["repos", &g.owner, &g.repo, "pulls"],
                &[("per_page", "100")],
            );
            let items = client
                .list(url)
                .await
                .map_err(|e| prefix(e, "error listing pull requests"))?;
            Ok(items
                .iter()
                .filter_map(|p| {
                    let labels: Vec<String> = p["labels"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|l| l["name"].as_str().map(str::to_string))
                        .collect();
                    if !g.labels.iter().all(|want| labels.contains(want)) {
                        return None;
                    }
                    Some(PullRequest {
                        number: p["number"].as_i64().unwrap_or_default(),
                        title: s(p, "/title"),
                        branch: s(p, "/head/ref"),
                        target_branch: s(p, "/base/ref"),
                        head_sha: s(p, "/head/sha"),
                        author: s(p, "/user/login"),
                        labels,
                    })
                })
                .collect())
        }
        PullRequestApi::Gitlab(g) => {
            let client = Api_::new(ctx, tokens, Kind::Gitlab, &g.api, g.token_ref.as_ref()).await?;
            let labels = g.labels.join(",");
            let mut q = vec![("per_page", "100")];
            if !labels.is_empty() {
                q.push(("labels", labels.as_str()));
            }
            if !g.pull_request_state.is_empty() {
                q.push(("state", g.pull_request_state.as_str()));
            }
            let url = client.url(&["projects", &g.project, "merge_requests"], &q);
            let items = client
                .list(url)
                .await
                .map_err(|e| prefix(e, "error listing merge requests"))?;
            Ok(items
                .iter()
                .map(|m| PullRequest {
                    number: m["iid"].as_i64().unwrap_or_default(),
                    title: s(m, "/title"),
                    branch: s(m, "/source_branch"),
                    target_branch: s(m, "/target_branch"),
                    head_sha: s(m, "/sha"),
                    author: s(m, "/author/username"),
                    labels: strings(&m["labels"]),
                })
                .collect())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_urls_as_go_github_and_go_gitlab() -> Result<(), InputError> {
        assert_eq!(
            base_url(Kind::Github, "")?.as_str(),
            "https://api.github.com/"
        );
        assert_eq!(
            base_url(Kind::Github, "https://ghe.example.com")?.as_str(),
            "https://ghe.example.com/api/v3/"
        );
        assert_eq!(
            base_url(Kind::Github, "https://ghe.example.com/api/v3")?.as_str(),
            "https://ghe.example.com/api/v3/"
        );
        assert_eq!(
            base_url(Kind::Gitlab, "")?.as_str(),
            "https://gitlab.com/api/v4/"
        );
        assert_eq!(
            base_url(Kind::Gitlab, "http://127.0.0.1:8080/")?.as_str(),
            "http://127.0.0.1:8080/api/v4/"
        );
        assert!(base_url(Kind::Gitlab, "http://gitlab.example.com").is_err());
        assert!(base_url(Kind::Github, "https://u:p@ghe.example.com").is_err());
        Ok(())
    }

    #[test]
    fn urls_escape_segments_and_pages_follow_links() -> Result<(), InputError> {
        let api = Api_ {
            kind: Kind::Gitlab,
            base: base_url(Kind::Gitlab, "http://127.0.0.1:1")?,
            token: String::new(),
        };
        let u = api.url(
            &["projects", "grp/sub", "merge_requests"],
            &[("per_page", "100")],
        );
        assert_eq!(
            u.as_str(),
            "http://127.0.0.1:1/api/v4/projects/grp%2Fsub/merge_requests?per_page=100"
        );
        let mut h = reqwest::header::HeaderMap::new();
        h.insert("x-next-page", "2".parse().map_err(|_| unavailable("h"))?);
        assert_eq!(
            next_page(&h, &u).map(|u| u.to_string()),
            Some(
                "http://127.0.0.1:1/api/v4/projects/grp%2Fsub/merge_requests?per_page=100&page=2"
                    .into()
            )
        );
        let mut h = reqwest::header::HeaderMap::new();
        h.insert(
            "link",
            "<http://127.0.0.1:1/x?page=3>; rel=\"next\", <http://127.0.0.1:1/x?page=9>; rel=\"last\""
                .parse()
                .map_err(|_| unavailable("h"))?,
        );
        assert_eq!(
            next_page(&h, &u).map(|u| u.to_string()),
            Some("http://127.0.0.1:1/x?page=3".into())
        );
        Ok(())
    }
}
