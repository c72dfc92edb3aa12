//! Repository credentials from Argo CD Secrets: `secret-type: repository` (one repository,
//! matched by URL) and `secret-type: repo-creds` (a URL prefix ending on a `/` boundary,
//! longest match wins). A Secret with a `project` key serves only Applications of that
//! project (and is preferred for them); one without serves every project, as in Argo CD.
//! Pure: Secrets in, the credentials for a URL and project out.

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
    /// The AppProject this credential is scoped to (`project` key); `None`: every project.
    pub project: Option<String>,
    /// `sshPrivateKey`: for ssh:// and `git@host:path` URLs.
    pub ssh_private_key: Option<String>,
    /// `tlsClientCertData` / `tlsClientCertKey`: a client certificate for https://.
    pub tls_client_cert_data: Option<String>,
    pub tls_client_cert_key: Option<String>,
    /// `proxy` and `noProxy`.
    pub proxy: Option<String>,
    pub no_proxy: Option<String>,
    /// `type` (`git`, `helm`): informational (a source with `chart` is Helm whatever it
    /// says), kept for reports; and `enableOCI`.
    pub repo_type: Option<String>,
    pub enable_oci: bool,
    /// `enableLfs`.
    pub enable_lfs: bool,
    /// `githubAppID`, `githubAppInstallationID`, `githubAppPrivateKey`,
    /// `githubAppEnterpriseBaseUrl`.
    pub github_app: Option<GithubApp>,
    /// Keys of Argo CD's repository Secrets this Secret sets that Flotilla does not honour
    /// (yet): an Application using it gets a ComparisonError naming them instead of a fetch
    /// that quietly goes without.
    pub unsupported: Vec<&'static str>,
    /// Why the Secret is unusable as written (half a GitHub App, say), if it is.
    pub problem: Option<&'static str>,
}

/// GitHub App credentials of a repository Secret.
#[derive(Clone, PartialEq, Eq)]
pub struct GithubApp {
    pub app_id: i64,
    pub installation_id: i64,
    pub private_key: String,
    pub enterprise_base_url: Option<String>,
}

impl std::fmt::Debug for GithubApp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GithubApp")
            .field("app_id", &self.app_id)
            .field("installation_id", &self.installation_id)
            .field("enterprise_base_url", &self.enterprise_base_url)
            .finish()
    }
}

/// Argo CD repository-Secret keys that change how a repository is reached and that Flotilla
/// does not honour yet. A Secret setting any of them is refused, never half-used.
pub const UNSUPPORTED_KEYS: [&str; 3] = [
    "gcpServiceAccountKey",
    "useAzureWorkloadIdentity",
    "forceHttpBasicAuth",
];

/// The GitHub App of a Secret: all of ID, installation ID and key, or a reason it is unusable.
fn github_app(s: &Secret) -> Result<Option<GithubApp>, &'static str> {
    let id = text(s, "githubAppID");
    let installation = text(s, "githubAppInstallationID");
    let key = text(s, "githubAppPrivateKey");
    if id.is_none() && installation.is_none() && key.is_none() {
        return Ok(None);
    }
    let (Some(id), Some(installation), Some(key)) = (id, installation, key) else {
        return Err("githubAppID, githubAppInstallationID and githubAppPrivateKey go together");
    };
    let (Ok(app_id), Ok(installation_id)) = (id.trim().parse(), installation.trim().parse()) else {
        return Err("githubAppID and githubAppInstallationID must be numbers");
    };
    Ok(Some(GithubApp {
        app_id,
        installation_id,
        private_key: key,
        enterprise_base_url: text(s, "githubAppEnterpriseBaseUrl"),
    }))
}

impl std::fmt::Debug for RepoCreds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RepoCreds")
            .field("url", &crate::redact::redact_url(&self.url))
            .field("username", &self.username)
            .field("has_password", &self.password.is_some())
            .field("has_bearer_token", &self.bearer_token.is_some())
            .field("insecure", &self.insecure)
            .field("project", &self.project)
            .field("has_ssh_private_key", &self.ssh_private_key.is_some())
            .field("has_tls_client_cert", &self.tls_client_cert_data.is_some())
            .field(
                "proxy",
                &self.proxy.as_deref().map(crate::redact::redact_url),
            )
            .field("no_proxy", &self.no_proxy)
            .field("unsupported", &self.unsupported)
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
    /// Parse a repository or repo-creds Secret; `None` without a `url`, or with a `project`
    /// that is not UTF-8 (never read as global).
    pub fn from_secret(s: &Secret) -> Option<Self> {
        let unreadable_project = s
            .data
            .as_ref()
            .and_then(|d| d.get("project"))
            .is_some_and(|b| std::str::from_utf8(&b.0).is_err());
        if unreadable_project {
            return None;
        }
        let app = github_app(s);
        Some(Self {
            url: text(s, "url")?,
            username: text(s, "username"),
            password: text(s, "password"),
            bearer_token: text(s, "bearerToken"),
            insecure: text(s, "insecure").is_some_and(|v| v == "true"),
            project: text(s, "project"),
            ssh_private_key: text(s, "sshPrivateKey"),
            tls_client_cert_data: text(s, "tlsClientCertData"),
            tls_client_cert_key: text(s, "tlsClientCertKey"),
            proxy: text(s, "proxy"),
            no_proxy: text(s, "noProxy"),
            repo_type: text(s, "type"),
            enable_oci: text(s, "enableOCI").is_some_and(|v| v == "true"),
            enable_lfs: text(s, "enableLfs").is_some_and(|v| v == "true"),
            github_app: app.clone().unwrap_or_default(),
            unsupported: UNSUPPORTED_KEYS
                .into_iter()
                // `false` is how Argo CD's CLI writes an option left off.
                .filter(|k| text(s, k).is_some_and(|v| v != "false"))
                .collect(),
            problem: app.err(),
        })
    }
}

/// Whether the normalized `url` lies under the normalized template `prefix`: equal, or
/// continuing with `/` after it (so `https://git.example.com` never matches
/// `https://git.example.com.attacker.net/x`, nor `http://h:80` `http://h:8080/x`). An SCP-like
/// prefix ending in `:` (`git@host:`) is its own boundary.
fn under_prefix(url: &str, prefix: &str) -> bool {
    match url.strip_prefix(prefix) {
        Some(rest) => {
            rest.is_empty()
                || rest.starts_with('/')
                || (prefix.ends_with(':') && !prefix.contains("://"))
        }
        None => false,
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

    /// Credentials for `url` for an Application of `project`: an exact repository Secret
    /// first, else the longest repo-creds prefix. At each step a Secret scoped to `project` is
    /// preferred to a global one; Secrets scoped to other projects are never used.
    pub fn lookup(&self, url: &str, project: &str) -> Option<&RepoCreds> {
        let n = normal(url);
        let repository = |scope: Option<&str>| {
            self.repositories
                .iter()
                .find(|c| c.project.as_deref() == scope && normal(&c.url) == n)
        };
        let template = |scope: Option<&str>| {
            self.templates
                .iter()
                .filter(|c| c.project.as_deref() == scope && under_prefix(&n, &normal(&c.url)))
                .max_by_key(|c| c.url.len())
        };
        repository(Some(project))
            .or_else(|| repository(None))
            .or_else(|| template(Some(project)))
            .or_else(|| template(None))
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
            idx.lookup(u, "default")
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
        assert!(idx.lookup("https://x", "default").is_none());
    }

    fn mk_pw(idx: &RepoCredsIndex, url: &str, project: &str) -> Option<String> {
        idx.lookup(url, project).and_then(|c| c.password.clone())
    }

    #[test]
    fn repo_creds_prefix_stops_at_a_path_boundary() {
        let host = mk_secret(
            REPO_CREDS,
            &[("url", "https://git.example.com/"), ("password", "host")],
        );
        let bare = mk_secret(
            REPO_CREDS,
            &[("url", "https://bare.example.com"), ("password", "bare")],
        );
        let port = mk_secret(
            REPO_CREDS,
            &[("url", "http://127.0.0.1:80/"), ("password", "port")],
        );
        let org = mk_secret(
            REPO_CREDS,
            &[("url", "https://git.example.com/org"), ("password", "org")],
        );
        let scp = mk_secret(
            REPO_CREDS,
            &[("url", "git@ssh.example.com:"), ("password", "scp")],
        );
        let idx = RepoCredsIndex::from_secrets([&host, &bare, &port, &org, &scp]);
        // Lookalike hosts, ports and path components get nothing.
        for url in [
            "https://git.example.com.attacker.net/x",
            "https://bare.example.com.attacker.net/x",
            "https://bare.example.comx",
            "http://127.0.0.1:8080/org/repo",
        ] {
            assert_eq!(mk_pw(&idx, url, "default"), None, "{url}");
        }
        assert_eq!(
            mk_pw(&idx, "https://git.example.com/org-evil/x", "default").as_deref(),
            Some("host"),
            "org-evil is not under /org"
        );
        // Under the prefix (or equal to it): the longest prefix still wins.
        assert_eq!(
            mk_pw(&idx, "https://git.example.com/a/b", "default").as_deref(),
            Some("host")
        );
        assert_eq!(
            mk_pw(&idx, "https://git.example.com/org/x.git", "default").as_deref(),
            Some("org")
        );
        assert_eq!(
            mk_pw(&idx, "https://git.example.com/org", "default").as_deref(),
            Some("org")
        );
        assert_eq!(
            mk_pw(&idx, "https://bare.example.com/x", "default").as_deref(),
            Some("bare")
        );
        assert_eq!(
            mk_pw(&idx, "http://127.0.0.1:80/x", "default").as_deref(),
            Some("port")
        );
        assert_eq!(
            mk_pw(&idx, "git@ssh.example.com:org/x.git", "default").as_deref(),
            Some("scp")
        );
    }

    #[test]
    fn project_scoped_credentials_serve_only_their_project_and_win_there() {
        let scoped_repo = mk_secret(
            REPOSITORY,
            &[
                ("url", "https://git.example/team-a/private.git"),
                ("password", "a-repo"),
                ("project", "team-a"),
            ],
        );
        let scoped_tpl = mk_secret(
            REPO_CREDS,
            &[
                ("url", "https://git.example/team-a"),
                ("password", "a-tpl"),
                ("project", "team-a"),
            ],
        );
        let global_tpl = mk_secret(
            REPO_CREDS,
            &[
                ("url", "https://git.example/team-a/shared"),
                ("password", "global"),
            ],
        );
        let empty_project = mk_secret(
            REPOSITORY,
            &[
                ("url", "https://git.example/open"),
                ("password", "open"),
                ("project", ""),
            ],
        );
        let idx =
            RepoCredsIndex::from_secrets([&scoped_repo, &scoped_tpl, &global_tpl, &empty_project]);
        let private = "https://git.example/team-a/private";
        assert_eq!(mk_pw(&idx, private, "team-a").as_deref(), Some("a-repo"));
        assert_eq!(
            mk_pw(&idx, private, "team-b"),
            None,
            "another project's credentials are never attached"
        );
        assert_eq!(mk_pw(&idx, private, "default"), None);
        // For team-a, its own template beats a longer global one; others get the global one.
        let shared = "https://git.example/team-a/shared/x";
        assert_eq!(mk_pw(&idx, shared, "team-a").as_deref(), Some("a-tpl"));
        assert_eq!(mk_pw(&idx, shared, "team-b").as_deref(), Some("global"));
        // An empty `project` is global.
        assert_eq!(
            mk_pw(&idx, "https://git.example/open", "team-b").as_deref(),
            Some("open")
        );
    }

    #[test]
    fn github_app_fields_are_read_whole_or_refused() {
        let full = mk_secret(
            REPOSITORY,
            &[
                ("url", "https://github.com/org/app"),
                ("githubAppID", "123"),
                ("githubAppInstallationID", " 456 "),
                ("githubAppPrivateKey", "-----BEGIN RSA PRIVATE KEY-----"),
                ("githubAppEnterpriseBaseUrl", "https://ghe.corp/api/v3"),
                ("type", "git"),
            ],
        );
        let c = RepoCreds::from_secret(&full).expect("parsed");
        let app = c.github_app.clone().expect("app");
        assert_eq!((app.app_id, app.installation_id), (123, 456));
        assert_eq!(
            app.enterprise_base_url.as_deref(),
            Some("https://ghe.corp/api/v3")
        );
        assert_eq!(c.problem, None);
        assert!(!format!("{c:?}").contains("BEGIN"), "no key in Debug");
        let half = mk_secret(
            REPOSITORY,
            &[
                ("url", "https://github.com/org/app"),
                ("githubAppID", "123"),
            ],
        );
        let c = RepoCreds::from_secret(&half).expect("parsed");
        assert!(c.github_app.is_none());
        assert!(c.problem.is_some_and(|p| p.contains("go together")));
        let nan = mk_secret(
            REPOSITORY,
            &[
                ("url", "https://github.com/org/app"),
                ("githubAppID", "abc"),
                ("githubAppInstallationID", "1"),
                ("githubAppPrivateKey", "k"),
            ],
        );
        assert!(
            RepoCreds::from_secret(&nan)
                .expect("parsed")
                .problem
                .is_some()
        );
        let oci = mk_secret(
            REPOSITORY,
            &[
                ("url", "registry.corp/charts"),
                ("type", "helm"),
                ("enableOCI", "true"),
            ],
        );
        let c = RepoCreds::from_secret(&oci).expect("parsed");
        assert!(c.enable_oci && c.repo_type.as_deref() == Some("helm"));
    }
}
