//! The Git webhook receiver (`POST /api/webhook`): GitHub, GitLab, Bitbucket (Cloud and
//! Server) and Gitea push events, authenticated by each provider's signature or token. A
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
}

impl Provider {
    pub const ALL: [Provider; 5] = [
        Self::GitHub,
        Self::GitLab,
        Self::Bitbucket,
        Self::BitbucketServer,
        Self::Gitea,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::GitHub => "github",
            Self::GitLab => "gitlab",
            Self::Bitbucket => "bitbucket",
            Self::BitbucketServer => "bitbucketserver",
            Self::Gitea => "gitea",
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
    /// surrounding slashes), when the payload lists them (GitHub, GitLab, Gitea); `None` when
    /// unknown (Bitbucket), which matches every path.
    pub changed_files: Option<Vec<String>>,
}

/// Argo CD's annotation naming the paths (`;`-separated) an Application's manifests depend
/// on: a push that changes none of them does not refresh it.
pub const MANIFEST_PATHS_ANNOTATION: &str = "argocd.argoproj.io/manifest-generate-paths";

/// Files listed by the commits of a GitHub, GitLab or Gitea push.
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
    let base = source_path.trim_matches('/');
    let dirs: Vec<String> = annotation
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
        .collect();
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
    #[error("unknown webhook: no GitHub, GitLab, Bitbucket or Gitea event header")]
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

/// The provider, from its event header (Gitea also sends GitHub's, so it is checked first).
pub fn provider(h: &HeaderMap) -> Option<Provider> {
    if h.contains_key("x-gitea-event") {
        Some(Provider::Gitea)
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
fn secret_of(p: Provider, s: &WebhookSettings) -> (Option<&str>, &'static str) {
    let (secret, flag) = match p {
        Provider::GitHub => (&s.github_secret, "--webhook-github-secret"),
        Provider::Gitea => (&s.gitea_secret, "--webhook-gitea-secret"),
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
        Provider::GitLab => header(h, "x-gitlab-event"),
        Provider::Bitbucket | Provider::BitbucketServer => header(h, "x-event-key"),
    }
    .unwrap_or_default();
    let push = match p {
        Provider::GitHub | Provider::Gitea => {
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
    };
    if push.repo_urls.is_empty() {
        return Err(invalid("no repository URL in the payload".into()));
    }
    Ok(Some(push))
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
            allow_unauthenticated: false,
            max_body_bytes: 1 << 20,
        }
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
