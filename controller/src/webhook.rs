//! The Git webhook receiver (`POST /api/webhook`): GitHub, GitLab, Bitbucket (Cloud and
//! Server), Gitea, Gogs and Azure DevOps push events, authenticated by each provider's
//! signature, token or basic-auth account. A
//! provider without a configured secret is refused unless unauthenticated events are allowed
//! explicitly. A push forgets the cached revisions of the pushed ref and asks the matching
//! Applications for a refresh, so a change reaches clusters in seconds instead of at the next
//! poll.

use std::collections::BTreeSet;

use hmac::{Hmac, Mac};
use http::HeaderMap;
use serde_json::Value;
use sha2::Sha256;

use crate::config::WebhookSettings;

/// Who sent the event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provider {
    GitHub,
    GitLab,
    Bitbucket,
    BitbucketServer,
    Gitea,
    Gogs,
    AzureDevOps,
}

impl Provider {
    pub const ALL: [Provider; 7] = [
        Self::GitHub,
        Self::GitLab,
        Self::Bitbucket,
        Self::BitbucketServer,
        Self::Gitea,
        Self::Gogs,
        Self::AzureDevOps,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::GitHub => "github",
            Self::GitLab => "gitlab",
            Self::Bitbucket => "bitbucket",
            Self::BitbucketServer => "bitbucketserver",
            Self::Gitea => "gitea",
            Self::Gogs => "gogs",
            Self::AzureDevOps => "azuredevops",
        }
    }
}

/// What a push changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Push {
    /// Every URL form of the repository the payload names (HTTPS, SSH, web).
    pub repo_urls: Vec<String>,
    /// Full refs pushed (`refs/heads/main`, `refs/tags/v1`).
    pub refs: Vec<String>,
    /// The repository's default branch, when the payload says.
    pub default_branch: Option<String>,
    /// Files the pushed commits added, modified or removed (normalized: no `.`, `..` or
    /// surrounding slashes), when the payload lists them (GitHub, GitLab, Gitea, Gogs); `None`
    /// when unknown (Bitbucket, Azure DevOps), which matches every path.
    pub changed_files: Option<Vec<String>>,
}

/// Argo CD's annotation naming the paths (`;`-separated) an Application's manifests depend
/// on: a push that changes none of them does not refresh it.
pub const MANIFEST_PATHS_ANNOTATION: &str = "argocd.argoproj.io/manifest-generate-paths";

/// Files listed by the commits of a GitHub, GitLab, Gitea or Gogs push.
fn commit_files(v: &Value) -> Option<Vec<String>> {
    let commits = v.get("commits")?.as_array()?;
    let mut out = Vec::new();
    for c in commits {
        for k in ["added", "modified", "removed"] {
            // A commit without the lists (payloads truncate them past a size) means unknown.
            let list = c.get(k)?.as_array()?;
            out.extend(list.iter().filter_map(Value::as_str).map(normalize));
        }
    }
    if commits.is_empty() {
        return None;
    }
    Some(out)
}

/// Whether an Application with `annotation` (the value of [`MANIFEST_PATHS_ANNOTATION`]) and
/// source `path` is affected by a push that changed `files`. Relative entries are relative to
/// the source path (`.` is the path itself), absolute ones to the repository root. `files`
/// are normalized, as [`Push::changed_files`] holds them.
pub fn paths_changed(annotation: &str, source_path: &str, files: &[String]) -> bool {
    let dirs = manifest_dirs(annotation, source_path);
    if dirs.is_empty() {
        return true;
    }
    files.iter().any(|f| {
        dirs.iter().any(|d| {
            d.is_empty()
                || f.strip_prefix(d.as_str())
                    .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
        })
    })
}

/// The directories (from the repository root, normalized; `""` is the root) the annotation
/// names for an app whose source path is `source_path`.
pub fn manifest_dirs(annotation: &str, source_path: &str) -> Vec<String> {
    let base = source_path.trim_matches('/');
    annotation
        .split(';')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| {
            let joined = if let Some(abs) = p.strip_prefix('/') {
                abs.to_string()
            } else {
                format!("{base}/{p}")
            };
            normalize(&joined)
        })
        .collect()
}

/// `a/./b/../c` → `a/c`, without leading or trailing slashes.
fn normalize(p: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    for part in p.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            x => out.push(x),
        }
    }
    out.join("/")
}

/// Why a webhook was refused.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum WebhookError {
    #[error(
        "unknown webhook: no GitHub, GitLab, Bitbucket, Gitea, Gogs or Azure DevOps event header"
    )]
    UnknownProvider,
    #[error("{0} webhook: signature or token missing or wrong")]
    Unauthorized(&'static str),
    #[error(
        "{provider} webhook: no secret is configured for this provider, so its events cannot be authenticated (set {flag}, or accept unsigned events with --webhook-allow-unauthenticated)"
    )]
    NotConfigured {
        provider: &'static str,
        flag: &'static str,
    },
    #[error("{provider} webhook: invalid payload: {message}")]
    Invalid {
        provider: &'static str,
        message: String,
    },
}

fn header<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

/// The provider, from its event header. Gitea also sends Gogs' and GitHub's headers, and Gogs
/// GitHub's, so the most specific is checked first. Azure DevOps service hooks carry
/// `X-VSS-ActivityId` (Argo CD's test too).
pub fn provider(h: &HeaderMap) -> Option<Provider> {
    if h.contains_key("x-gitea-event") {
        Some(Provider::Gitea)
    } else if h.contains_key("x-gogs-event") {
        Some(Provider::Gogs)
    } else if h.contains_key("x-vss-activityid") {
        Some(Provider::AzureDevOps)
    } else if h.contains_key("x-github-event") {
        Some(Provider::GitHub)
    } else if h.contains_key("x-gitlab-event") {
        Some(Provider::GitLab)
    } else if h.contains_key("x-event-key") {
        if h.contains_key("x-hook-uuid") {
            Some(Provider::Bitbucket)
        } else {
            Some(Provider::BitbucketServer)
        }
    } else {
        None
    }
}

/// Constant-time equality (no early exit on the first differing byte).
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn hmac_ok(secret: &str, body: &[u8], hex_sig: &str) -> bool {
    let Ok(sig) = hex::decode(hex_sig.trim()) else {
        return false;
    };
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.as_bytes()) else {
        return false;
    };
    mac.update(body);
    mac.verify_slice(&sig).is_ok()
}

/// The configured secret of provider `p` (empty counts as none) and the flag that sets it.
/// Azure DevOps authenticates with a basic-auth account; its secret is the password, and it
/// counts as configured only with a user name too.
fn secret_of(p: Provider, s: &WebhookSettings) -> (Option<&str>, &'static str) {
    let (secret, flag) = match p {
        Provider::GitHub => (&s.github_secret, "--webhook-github-secret"),
        Provider::Gitea => (&s.gitea_secret, "--webhook-gitea-secret"),
        Provider::Gogs => (&s.gogs_secret, "--webhook-gogs-secret"),
        Provider::AzureDevOps => {
            let flag = "--webhook-azuredevops-username and --webhook-azuredevops-password";
            if s.azuredevops_username
                .as_deref()
                .unwrap_or_default()
                .is_empty()
            {
                return (None, flag);
            }
            (&s.azuredevops_password, flag)
        }
        Provider::GitLab => (&s.gitlab_secret, "--webhook-gitlab-secret"),
        Provider::Bitbucket => (&s.bitbucket_uuid, "--webhook-bitbucket-uuid"),
        Provider::BitbucketServer => (
            &s.bitbucket_server_secret,
            "--webhook-bitbucket-server-secret",
        ),
    };
    (secret.as_deref().filter(|v| !v.is_empty()), flag)
}

/// Whether provider `p` has a secret configured (its events can be authenticated).
pub fn configured(p: Provider, s: &WebhookSettings) -> bool {
    secret_of(p, s).0.is_some()
}

/// Check the event's signature or token against the configured secret. A provider with no
/// secret configured is refused (fail closed) unless `allow_unauthenticated` is set, which
/// accepts its events unsigned, as Argo CD does.
pub fn verify(
    p: Provider,
    h: &HeaderMap,
    body: &[u8],
    s: &WebhookSettings,
) -> Result<(), WebhookError> {
    let (secret, flag) = secret_of(p, s);
    let Some(secret) = secret else {
        return if s.allow_unauthenticated {
            Ok(())
        } else {
            Err(WebhookError::NotConfigured {
                provider: p.as_str(),
                flag,
            })
        };
    };
    let ok = match p {
        Provider::GitHub => header(h, "x-hub-signature-256")
            .and_then(|v| v.strip_prefix("sha256="))
            .is_some_and(|sig| hmac_ok(secret, body, sig)),
        Provider::Gitea => {
            header(h, "x-gitea-signature").is_some_and(|sig| hmac_ok(secret, body, sig))
        }
        Provider::Gogs => {
            header(h, "x-gogs-signature").is_some_and(|sig| hmac_ok(secret, body, sig))
        }
        Provider::AzureDevOps => basic_auth_ok(
            h,
            s.azuredevops_username.as_deref().unwrap_or_default(),
            secret,
        ),
        Provider::GitLab => {
            header(h, "x-gitlab-token").is_some_and(|t| ct_eq(t.as_bytes(), secret.as_bytes()))
        }
        Provider::Bitbucket => {
            header(h, "x-hook-uuid").is_some_and(|t| ct_eq(t.as_bytes(), secret.as_bytes()))
        }
        Provider::BitbucketServer => header(h, "x-hub-signature")
            .and_then(|v| v.strip_prefix("sha256="))
            .is_some_and(|sig| hmac_ok(secret, body, sig)),
    };
    if ok {
        Ok(())
    } else {
        Err(WebhookError::Unauthorized(p.as_str()))
    }
}

/// Whether the request's `Authorization: Basic` names exactly this account (both parts
/// compared in constant time, so neither leaks by timing).
fn basic_auth_ok(h: &HeaderMap, username: &str, password: &str) -> bool {
    use base64::Engine;
    let Some(encoded) = header(h, "authorization").and_then(|v| {
        v.strip_prefix("Basic ")
            .or_else(|| v.strip_prefix("basic "))
            .map(str::trim)
    }) else {
        return false;
    };
    let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(encoded) else {
        return false;
    };
    let Some(colon) = decoded.iter().position(|&b| b == b':') else {
        return false;
    };
    let (user, pass) = (&decoded[..colon], &decoded[colon + 1..]);
    // Both are compared whatever the first one gave, so timing tells nothing about either.
    let user_ok = ct_eq(user, username.as_bytes());
    let pass_ok = ct_eq(pass, password.as_bytes());
    user_ok & pass_ok
}

fn push_urls(v: &Value, fields: &[&str]) -> Vec<String> {
    fields
        .iter()
        .filter_map(|f| v.pointer(f).and_then(Value::as_str))
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

/// The push in an event; `None` for events that are not pushes (pings, merge requests).
pub fn parse(p: Provider, h: &HeaderMap, body: &[u8]) -> Result<Option<Push>, WebhookError> {
    let invalid = |message: String| WebhookError::Invalid {
        provider: p.as_str(),
        message,
    };
    let v: Value = serde_json::from_slice(body).map_err(|e| invalid(e.to_string()))?;
    let event = match p {
        Provider::GitHub => header(h, "x-github-event"),
        Provider::Gitea => header(h, "x-gitea-event"),
        Provider::Gogs => header(h, "x-gogs-event"),
        Provider::GitLab => header(h, "x-gitlab-event"),
        Provider::Bitbucket | Provider::BitbucketServer => header(h, "x-event-key"),
        // Azure DevOps names the event in the body.
        Provider::AzureDevOps => v.get("eventType").and_then(Value::as_str),
    }
    .unwrap_or_default();
    let push = match p {
        Provider::GitHub | Provider::Gitea | Provider::Gogs => {
            if event != "push" {
                return Ok(None);
            }
            Push {
                repo_urls: push_urls(
                    &v,
                    &[
                        "/repository/html_url",
                        "/repository/clone_url",
                        "/repository/ssh_url",
                        "/repository/git_url",
                    ],
                ),
                refs: push_urls(&v, &["/ref"]),
                default_branch: v
                    .pointer("/repository/default_branch")
                    .and_then(Value::as_str)
                    .map(str::to_string),
                changed_files: commit_files(&v),
            }
        }
        Provider::GitLab => {
            if event != "Push Hook" && event != "Tag Push Hook" {
                return Ok(None);
            }
            Push {
                repo_urls: push_urls(
                    &v,
                    &[
                        "/project/web_url",
                        "/project/git_http_url",
                        "/project/git_ssh_url",
                        "/repository/git_http_url",
                    ],
                ),
                refs: push_urls(&v, &["/ref"]),
                default_branch: v
                    .pointer("/project/default_branch")
                    .and_then(Value::as_str)
                    .map(str::to_string),
                changed_files: commit_files(&v),
            }
        }
        Provider::Bitbucket => {
            if event != "repo:push" {
                return Ok(None);
            }
            let mut urls = push_urls(&v, &["/repository/links/html/href"]);
            if let Some(full) = v.pointer("/repository/full_name").and_then(Value::as_str) {
                urls.push(format!("https://bitbucket.org/{full}"));
                urls.push(format!("git@bitbucket.org:{full}.git"));
            }
            let refs = v
                .pointer("/push/changes")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|c| {
                    let new = c.get("new")?;
                    let name = new.get("name")?.as_str()?;
                    Some(match new.get("type").and_then(Value::as_str) {
                        Some("tag") => format!("refs/tags/{name}"),
                        _ => format!("refs/heads/{name}"),
                    })
                })
                .collect();
            Push {
                repo_urls: urls,
                refs,
                default_branch: None,
                changed_files: None,
            }
        }
        Provider::BitbucketServer => {
            if event != "repo:refs_changed" {
                return Ok(None);
            }
            let urls = v
                .pointer("/repository/links/clone")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|l| l.get("href").and_then(Value::as_str).map(str::to_string))
                .collect();
            let refs = v
                .pointer("/changes")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|c| {
                    c.pointer("/ref/id")
                        .and_then(Value::as_str)
                        .map(str::to_string)
                })
                .collect();
            Push {
                repo_urls: urls,
                refs,
                default_branch: None,
                changed_files: None,
            }
        }
        Provider::AzureDevOps => {
            if event != "git.push" {
                return Ok(None);
            }
            let urls = push_urls(
                &v,
                &[
                    "/resource/repository/remoteUrl",
                    "/resource/repository/sshUrl",
                    "/resource/repository/webUrl",
                ],
            )
            .into_iter()
            .map(|u| without_user(&u))
            .collect();
            let refs = v
                .pointer("/resource/refUpdates")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|u| u.get("name").and_then(Value::as_str).map(str::to_string))
                .collect();
            Push {
                repo_urls: urls,
                refs,
                default_branch: v
                    .pointer("/resource/repository/defaultBranch")
                    .and_then(Value::as_str)
                    .map(|b| b.strip_prefix("refs/heads/").unwrap_or(b).to_string()),
                // Azure DevOps does not list changed files: every path counts as changed.
                changed_files: None,
            }
        }
    };
    if push.repo_urls.is_empty() {
        return Err(invalid("no repository URL in the payload".into()));
    }
    Ok(Some(push))
}

/// `https://org@dev.azure.com/org/p/_git/r` → `https://dev.azure.com/org/p/_git/r`: Azure
/// DevOps puts the organisation as a user name into its HTTPS remote URLs, which an
/// Application's `repoURL` usually leaves out.
fn without_user(url: &str) -> String {
    if let Some((scheme, rest)) = url.split_once("://") {
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        if let Some((_, host)) = authority.rsplit_once('@') {
            return format!("{scheme}://{host}/{path}");
        }
    }
    url.to_string()
}

/// The revision strings an Application can use that this push moved: each pushed ref in its
/// full and short forms, plus `HEAD` and empty when the default branch was pushed (or the
/// default is unknown).
pub fn moved_revisions(push: &Push) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for r in &push.refs {
        let branch = r.strip_prefix("refs/heads/");
        let default = match (&push.default_branch, branch) {
            (Some(d), Some(b)) => d == b,
            (None, Some(_)) => true,
            _ => false,
        };
        out.extend(flotilla_cache::RevisionStore::aliases(r, default));
    }
    out
}

/// Whether a source (`repoURL`, `targetRevision`) is moved by the push.
pub fn matches(push: &Push, moved: &BTreeSet<String>, repo_url: &str, revision: &str) -> bool {
    let want = flotilla_cache::keys::normalize_repo_url(repo_url);
    push.repo_urls
        .iter()
        .any(|u| flotilla_cache::keys::normalize_repo_url(u) == want)
        && moved.contains(revision)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn manifest_generate_paths_match_like_argo_cd() {
        let files = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let changed = files(&["apps/web/deploy.yaml", "shared/values.yaml"]);
        assert!(paths_changed(".", "apps/web", &changed));
        assert!(!paths_changed(".", "apps/api", &changed));
        assert!(
            paths_changed(".;/shared", "apps/api", &changed),
            "absolute from the root"
        );
        assert!(
            paths_changed("../web", "apps/api", &changed),
            "relative to the path"
        );
        assert!(
            !paths_changed(".", "apps/we", &changed),
            "whole components only"
        );
        assert!(
            paths_changed("", "apps/api", &changed),
            "empty annotation: everything"
        );
        assert!(
            !paths_changed(".", "apps/web", &[]),
            "a push changing nothing"
        );
    }

    #[test]
    fn push_file_lists_are_read_and_unknown_when_missing() {
        let with = json!({"commits": [{"added": ["a"], "modified": ["b/c"], "removed": []}]});
        assert_eq!(
            commit_files(&with),
            Some(vec!["a".to_string(), "b/c".to_string()])
        );
        let without = json!({"commits": [{"id": "x"}]});
        assert_eq!(commit_files(&without), None, "truncated lists: unknown");
        assert_eq!(commit_files(&json!({})), None);
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().expect("header value"));
        }
        h
    }

    fn sign(secret: &str, body: &[u8]) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("key");
        mac.update(body);
        hex::encode(mac.finalize().into_bytes())
    }

    fn settings() -> WebhookSettings {
        WebhookSettings {
            github_secret: Some("gh".into()),
            gitlab_secret: Some("gl".into()),
            bitbucket_uuid: Some("{uuid}".into()),
            bitbucket_server_secret: Some("bbs".into()),
            gitea_secret: Some("gt".into()),
            gogs_secret: Some("gg".into()),
            azuredevops_username: Some("ado".into()),
            azuredevops_password: Some("ado-pass".into()),
            allow_unauthenticated: false,
            max_body_bytes: 1 << 20,
        }
    }

    fn basic(user: &str, pass: &str) -> String {
        use base64::Engine;
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"))
        )
    }

    /// A Gogs push as Gogs 0.13 sends it (go-gogs-client's PushPayload).
    const GOGS_PUSH: &str = r#"{"ref":"refs/heads/main","before":"0000000000000000000000000000000000000000","after":"1b6a1a2b3c","compare_url":"","commits":[{"id":"1b6a1a2b3c","message":"m","added":["apps/web/new.yaml"],"removed":[],"modified":["apps/web/deploy.yaml"]}],"repository":{"id":1,"name":"app","full_name":"org/app","html_url":"https://gogs.corp/org/app","ssh_url":"git@gogs.corp:org/app.git","clone_url":"https://gogs.corp/org/app.git","default_branch":"main"}}"#;

    /// An Azure DevOps `git.push` service-hook event (trimmed from Microsoft's sample).
    const AZURE_PUSH: &str = r#"{"subscriptionId":"00000000-0000-0000-0000-000000000000","notificationId":3,"id":"03c164c2-8912-4d5e-8009-3707d5f83734","eventType":"git.push","publisherId":"tfs","resource":{"commits":[{"commitId":"33b55f7cb7e7e245323987634f960cf4a6e6bc74","comment":"Fixed bug in web.config file"}],"refUpdates":[{"name":"refs/heads/main","oldObjectId":"aad331d8d3b131fa9ae03cf5e53965b51942618a","newObjectId":"33b55f7cb7e7e245323987634f960cf4a6e6bc74"}],"repository":{"id":"278d5cd2-584d-4b63-824a-2ba458937249","name":"Fabrikam-Fiber-Git","url":"https://dev.azure.com/fabrikam/_apis/git/repositories/278d5cd2-584d-4b63-824a-2ba458937249","defaultBranch":"refs/heads/main","remoteUrl":"https://fabrikam@dev.azure.com/fabrikam/Fabrikam-Fiber-Git/_git/Fabrikam-Fiber-Git","sshUrl":"git@ssh.dev.azure.com:v3/fabrikam/Fabrikam-Fiber-Git/Fabrikam-Fiber-Git"},"pushId":14},"resourceVersion":"1.0"}"#;

    #[test]
    fn gogs_pushes_are_signed_and_list_their_files() {
        let body = GOGS_PUSH.as_bytes();
        // Gogs also sends GitHub's event header; its own wins.
        let good = headers(&[
            ("x-gogs-event", "push"),
            ("x-github-event", "push"),
            ("x-gogs-signature", &sign("gg", body)),
        ]);
        let p = provider(&good).expect("provider");
        assert_eq!(p, Provider::Gogs);
        assert_eq!(verify(p, &good, body, &settings()), Ok(()));
        for bad in [
            headers(&[
                ("x-gogs-event", "push"),
                ("x-gogs-signature", &sign("x", body)),
            ]),
            headers(&[("x-gogs-event", "push")]),
            // GitHub's signature header does not stand in for Gogs'.
            headers(&[
                ("x-gogs-event", "push"),
                (
                    "x-hub-signature-256",
                    &format!("sha256={}", sign("gg", body)),
                ),
            ]),
        ] {
            assert_eq!(
                verify(p, &bad, body, &settings()),
                Err(WebhookError::Unauthorized("gogs"))
            );
        }
        assert!(matches!(
            verify(p, &good, body, &WebhookSettings::default()),
            Err(WebhookError::NotConfigured {
                flag: "--webhook-gogs-secret",
                ..
            })
        ));
        let push = parse(p, &good, body).expect("ok").expect("push");
        let moved = moved_revisions(&push);
        assert!(matches(&push, &moved, "git@gogs.corp:org/app.git", "HEAD"));
        assert!(matches(&push, &moved, "https://gogs.corp/org/app", "main"));
        let files = push.changed_files.expect("listed");
        assert!(paths_changed(".", "apps/web", &files));
        assert!(!paths_changed(".", "apps/api", &files));
        assert_eq!(
            parse(p, &headers(&[("x-gogs-event", "create")]), body),
            Ok(None)
        );
    }

    #[test]
    fn azure_devops_pushes_need_the_basic_auth_account() {
        let body = AZURE_PUSH.as_bytes();
        let with = |auth: &str| {
            headers(&[
                ("x-vss-activityid", "0f4b4d5b-5b2a-4d33-8c4c-b1c1f9e6f0a1"),
                ("authorization", auth),
            ])
        };
        let good = with(&basic("ado", "ado-pass"));
        let p = provider(&good).expect("provider");
        assert_eq!(p, Provider::AzureDevOps);
        assert_eq!(verify(p, &good, body, &settings()), Ok(()));
        for bad in [
            basic("ado", "wrong"),
            basic("other", "ado-pass"),
            basic("ado", "ado-pass-and-more"),
            basic("", ""),
            "Basic !!!".to_string(),
            "Bearer ado-pass".to_string(),
        ] {
            assert_eq!(
                verify(p, &with(&bad), body, &settings()),
                Err(WebhookError::Unauthorized("azuredevops")),
                "{bad}"
            );
        }
        // A password without a user name is not a configured account: fail closed.
        let half = WebhookSettings {
            azuredevops_password: Some("ado-pass".into()),
            ..WebhookSettings::default()
        };
        assert!(matches!(
            verify(p, &good, body, &half),
            Err(WebhookError::NotConfigured {
                provider: "azuredevops",
                ..
            })
        ));
        let push = parse(p, &good, body).expect("ok").expect("push");
        assert_eq!(push.refs, ["refs/heads/main"]);
        assert_eq!(push.default_branch.as_deref(), Some("main"));
        assert_eq!(push.changed_files, None, "Azure DevOps lists no files");
        let moved = moved_revisions(&push);
        // The organisation in the remote URL's user part is dropped for matching.
        for url in [
            "https://dev.azure.com/fabrikam/Fabrikam-Fiber-Git/_git/Fabrikam-Fiber-Git",
            "git@ssh.dev.azure.com:v3/fabrikam/Fabrikam-Fiber-Git/Fabrikam-Fiber-Git",
        ] {
            assert!(matches(&push, &moved, url, "HEAD"), "{url}");
        }
        let other = AZURE_PUSH.replace("git.push", "git.pullrequest.created");
        assert_eq!(parse(p, &good, other.as_bytes()), Ok(None));
    }

    #[test]
    fn a_provider_without_a_secret_is_refused_unless_explicitly_allowed() {
        let gl =
            json!({"ref": "refs/heads/main", "project": {"web_url": "https://gitlab.com/g/app"}})
                .to_string();
        // The attack: only GitHub's secret is set, and an unsigned GitLab push comes in.
        let only_github = WebhookSettings {
            github_secret: Some("gh".into()),
            ..WebhookSettings::default()
        };
        let h = headers(&[("x-gitlab-event", "Push Hook")]);
        let p = provider(&h).expect("gitlab");
        let refused = verify(p, &h, gl.as_bytes(), &only_github);
        assert_eq!(
            refused,
            Err(WebhookError::NotConfigured {
                provider: "gitlab",
                flag: "--webhook-gitlab-secret"
            })
        );
        let msg = refused.map_err(|e| e.to_string()).expect_err("refused");
        assert!(
            msg.contains("no secret is configured")
                && msg.contains("--webhook-allow-unauthenticated"),
            "{msg}"
        );
        // An empty secret is no secret.
        let empty = WebhookSettings {
            gitlab_secret: Some(String::new()),
            ..WebhookSettings::default()
        };
        assert!(verify(p, &h, gl.as_bytes(), &empty).is_err());
        // Every provider fails closed by default.
        for (name, value) in [
            ("x-github-event", "push"),
            ("x-gitea-event", "push"),
            ("x-gitlab-event", "Push Hook"),
        ] {
            let h = headers(&[(name, value)]);
            let p = provider(&h).expect("provider");
            assert!(matches!(
                verify(p, &h, b"{}", &WebhookSettings::default()),
                Err(WebhookError::NotConfigured { .. })
            ));
        }
        for h in [
            headers(&[("x-event-key", "repo:push"), ("x-hook-uuid", "{any}")]),
            headers(&[("x-event-key", "repo:refs_changed")]),
        ] {
            let p = provider(&h).expect("bitbucket");
            assert!(matches!(
                verify(p, &h, b"{}", &WebhookSettings::default()),
                Err(WebhookError::NotConfigured { .. })
            ));
        }
        // The operator's explicit opt-in accepts unsigned events of providers without a
        // secret, and still checks those that have one.
        let allow = WebhookSettings {
            allow_unauthenticated: true,
            ..only_github
        };
        assert_eq!(verify(p, &h, gl.as_bytes(), &allow), Ok(()));
        let gh = headers(&[("x-github-event", "push")]);
        assert_eq!(
            verify(Provider::GitHub, &gh, b"{}", &allow),
            Err(WebhookError::Unauthorized("github"))
        );
    }

    const GITHUB_PUSH: &str = r#"{"ref":"refs/heads/main","repository":{"html_url":"https://github.com/org/app","clone_url":"https://github.com/org/app.git","ssh_url":"git@github.com:org/app.git","default_branch":"main"}}"#;

    #[test]
    fn github_push_is_verified_and_parsed() {
        let body = GITHUB_PUSH.as_bytes();
        let good = headers(&[
            ("x-github-event", "push"),
            (
                "x-hub-signature-256",
                &format!("sha256={}", sign("gh", body)),
            ),
        ]);
        let p = provider(&good).expect("provider");
        assert_eq!(p, Provider::GitHub);
        assert_eq!(verify(p, &good, body, &settings()), Ok(()));
        let push = parse(p, &good, body).expect("valid").expect("a push");
        assert_eq!(push.refs, ["refs/heads/main"]);
        let moved = moved_revisions(&push);
        for rev in ["main", "refs/heads/main", "HEAD", ""] {
            assert!(
                matches(&push, &moved, "git@github.com:org/app", rev),
                "{rev}"
            );
        }
        assert!(!matches(&push, &moved, "https://github.com/org/app", "dev"));
        assert!(!matches(
            &push,
            &moved,
            "https://github.com/org/other",
            "main"
        ));
        // A wrong signature, a signature with another secret, or none at all: refused.
        for bad in [
            headers(&[
                ("x-github-event", "push"),
                ("x-hub-signature-256", "sha256=00"),
            ]),
            headers(&[
                ("x-github-event", "push"),
                (
                    "x-hub-signature-256",
                    &format!("sha256={}", sign("other", body)),
                ),
            ]),
            headers(&[("x-github-event", "push")]),
        ] {
            assert_eq!(
                verify(p, &bad, body, &settings()),
                Err(WebhookError::Unauthorized("github"))
            );
        }
        // No secret configured: refused unless explicitly allowed (see below).
        assert!(
            verify(
                p,
                &headers(&[("x-github-event", "push")]),
                body,
                &WebhookSettings::default()
            )
            .is_err()
        );
        // Not a push: nothing to do.
        assert_eq!(
            parse(p, &headers(&[("x-github-event", "ping")]), body),
            Ok(None)
        );
    }

    #[test]
    fn gitlab_bitbucket_and_gitea_pushes() {
        let gl = json!({"ref": "refs/heads/dev", "project": {"web_url": "https://gitlab.com/g/app", "git_http_url": "https://gitlab.com/g/app.git", "default_branch": "main"}}).to_string();
        let h = headers(&[("x-gitlab-event", "Push Hook"), ("x-gitlab-token", "gl")]);
        let p = provider(&h).expect("gitlab");
        assert_eq!(verify(p, &h, gl.as_bytes(), &settings()), Ok(()));
        let push = parse(p, &h, gl.as_bytes()).expect("ok").expect("push");
        let moved = moved_revisions(&push);
        assert!(matches(
            &push,
            &moved,
            "https://gitlab.com/g/app.git",
            "dev"
        ));
        assert!(
            !matches(&push, &moved, "https://gitlab.com/g/app.git", "HEAD"),
            "dev is not the default"
        );
        assert!(
            verify(
                p,
                &headers(&[("x-gitlab-event", "Push Hook"), ("x-gitlab-token", "x")]),
                gl.as_bytes(),
                &settings()
            )
            .is_err()
        );

        let bb = json!({"repository": {"full_name": "team/app", "links": {"html": {"href": "https://bitbucket.org/team/app"}}},
            "push": {"changes": [{"new": {"type": "tag", "name": "v2"}}]}}).to_string();
        let h = headers(&[("x-event-key", "repo:push"), ("x-hook-uuid", "{uuid}")]);
        let p = provider(&h).expect("bitbucket");
        assert_eq!(p, Provider::Bitbucket);
        assert_eq!(verify(p, &h, bb.as_bytes(), &settings()), Ok(()));
        let push = parse(p, &h, bb.as_bytes()).expect("ok").expect("push");
        assert!(matches(
            &push,
            &moved_revisions(&push),
            "git@bitbucket.org:team/app.git",
            "v2"
        ));

        let bbs = json!({"repository": {"links": {"clone": [{"href": "https://bb.corp/scm/t/app.git", "name": "http"}]}},
            "changes": [{"ref": {"id": "refs/heads/main"}}]}).to_string();
        let h = headers(&[
            ("x-event-key", "repo:refs_changed"),
            (
                "x-hub-signature",
                &format!("sha256={}", sign("bbs", bbs.as_bytes())),
            ),
        ]);
        let p = provider(&h).expect("bitbucket server");
        assert_eq!(p, Provider::BitbucketServer);
        assert_eq!(verify(p, &h, bbs.as_bytes(), &settings()), Ok(()));
        assert!(parse(p, &h, bbs.as_bytes()).expect("ok").is_some());

        let h = headers(&[
            ("x-gitea-event", "push"),
            ("x-github-event", "push"),
            ("x-gitea-signature", &sign("gt", GITHUB_PUSH.as_bytes())),
        ]);
        let p = provider(&h).expect("gitea");
        assert_eq!(p, Provider::Gitea);
        assert_eq!(verify(p, &h, GITHUB_PUSH.as_bytes(), &settings()), Ok(()));
        assert!(provider(&HeaderMap::new()).is_none());
        assert!(matches!(
            parse(p, &h, b"not json"),
            Err(WebhookError::Invalid { .. })
        ));
    }
}
