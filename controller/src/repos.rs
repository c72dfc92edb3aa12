//! Repository credentials from Argo CD Secrets: `secret-type: repository` (one repository,
//! matched by URL) and `secret-type: repo-creds` (a URL prefix, longest match wins).
//! Pure: Secrets in, the credentials for a URL out.

use k8s_openapi::api::core::v1::Secret;

/// Label value of a repository Secret.
pub const REPOSITORY: &str = "repository";
/// Label value of a credential-template Secret.
pub const REPO_CREDS: &str = "repo-creds";

/// How to authenticate to one repository (or a URL prefix).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct RepoCreds {
    pub url: String,
    pub username: Option<String>,
    pub password: Option<String>,
    pub bearer_token: Option<String>,
    pub insecure: bool,
}

impl std::fmt::Debug for RepoCreds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RepoCreds")
            .field("url", &self.url)
            .field("username", &self.username)
            .field("has_password", &self.password.is_some())
            .field("has_bearer_token", &self.bearer_token.is_some())
            .field("insecure", &self.insecure)
            .finish()
    }
}

fn text(s: &Secret, key: &str) -> Option<String> {
    s.data
        .as_ref()
        .and_then(|d| d.get(key))
        .and_then(|b| String::from_utf8(b.0.clone()).ok())
        .or_else(|| s.string_data.as_ref().and_then(|d| d.get(key)).cloned())
        .filter(|v| !v.is_empty())
}

fn normal(url: &str) -> String {
    url.trim_end_matches('/')
        .trim_end_matches(".git")
        .to_lowercase()
}

impl RepoCreds {
    /// Parse a repository or repo-creds Secret; `None` without a `url`.
    pub fn from_secret(s: &Secret) -> Option<Self> {
        Some(Self {
            url: text(s, "url")?,
            username: text(s, "username"),
            password: text(s, "password"),
            bearer_token: text(s, "bearerToken"),
            insecure: text(s, "insecure").is_some_and(|v| v == "true"),
        })
    }
}

/// All known credentials.
#[derive(Debug, Clone, Default)]
pub struct RepoCredsIndex {
    repositories: Vec<RepoCreds>,
    templates: Vec<RepoCreds>,
}

impl RepoCredsIndex {
    /// Build from Secrets labelled `argocd.argoproj.io/secret-type`.
    pub fn from_secrets<'a>(secrets: impl IntoIterator<Item = &'a Secret>) -> Self {
        let mut idx = Self::default();
        for s in secrets {
            let ty = s
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get("argocd.argoproj.io/secret-type"))
                .map(String::as_str);
            match (ty, RepoCreds::from_secret(s)) {
                (Some(REPOSITORY), Some(c)) => idx.repositories.push(c),
                (Some(REPO_CREDS), Some(c)) => idx.templates.push(c),
                _ => {}
            }
        }
        idx
    }

    /// Credentials for `url`: an exact repository Secret first, else the longest repo-creds
    /// prefix.
    pub fn lookup(&self, url: &str) -> Option<&RepoCreds> {
        let n = normal(url);
        self.repositories
            .iter()
            .find(|c| normal(&c.url) == n)
            .or_else(|| {
                self.templates
                    .iter()
                    .filter(|c| n.starts_with(&normal(&c.url)))
                    .max_by_key(|c| c.url.len())
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::ByteString;

    fn mk_secret(ty: &str, fields: &[(&str, &str)]) -> Secret {
        let mut s = Secret::default();
        s.metadata.labels =
            Some([("argocd.argoproj.io/secret-type".to_string(), ty.to_string())].into());
        s.data = Some(
            fields
                .iter()
                .map(|(k, v)| (k.to_string(), ByteString(v.as_bytes().to_vec())))
                .collect(),
        );
        s
    }

    #[test]
    fn exact_repository_wins_then_longest_prefix() {
        let exact = mk_secret(
            REPOSITORY,
            &[
                ("url", "https://git.example/org/app.git"),
                ("password", "exact"),
            ],
        );
        let org = mk_secret(
            REPO_CREDS,
            &[("url", "https://git.example/org"), ("password", "org")],
        );
        let host = mk_secret(
            REPO_CREDS,
            &[("url", "https://git.example"), ("bearerToken", "host")],
        );
        let idx = RepoCredsIndex::from_secrets([&exact, &org, &host]);
        let pw = |u: &str| {
            idx.lookup(u)
                .and_then(|c| c.password.clone().or(c.bearer_token.clone()))
        };
        assert_eq!(pw("https://git.example/org/app").as_deref(), Some("exact"));
        assert_eq!(
            pw("https://git.example/org/other.git").as_deref(),
            Some("org")
        );
        assert_eq!(pw("https://git.example/else/x").as_deref(), Some("host"));
        assert_eq!(pw("https://elsewhere/x"), None);
        assert!(
            !format!("{:?}", idx).contains("exact\""),
            "secrets are not printed"
        );
    }

    #[test]
    fn secrets_without_url_or_type_are_ignored() {
        let no_url = mk_secret(REPOSITORY, &[("password", "x")]);
        let cluster = mk_secret("cluster", &[("url", "https://x")]);
        let idx = RepoCredsIndex::from_secrets([&no_url, &cluster]);
        assert!(idx.lookup("https://x").is_none());
    }
}
