//! Git with gix: a bare cache per repository URL (file://, git://, http(s):// with basic or
//! bearer credentials, client certificates, CAs and proxies, ssh:// and `user@host:path` with
//! a key), revision resolution (branch, tag, SHA, HEAD, and semver constraints over the tags,
//! [`crate::git_semver`]) and export of a commit's tree to a directory for the renderers, with
//! its submodules (fetched into the same cache, credentials only to the superproject's
//! origin) and, with `enableLfs`, its Git LFS objects ([`crate::git_lfs`]).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use flotilla_core::redact::redact_url;

use crate::transport::{HttpSettings, SshCommand, TransportConfig, TransportError, is_ssh_url};

/// A Git failure, with the repository and step named.
#[derive(Debug, thiserror::Error)]
pub enum GitError {
    #[error("fetching {url}: {message}")]
    Fetch { url: String, message: String },
    #[error("opening the cache of {url}: {message}")]
    Open { url: String, message: String },
    #[error("revision {revision:?} not found in {url}")]
    UnknownRevision { url: String, revision: String },
    #[error("reading commit {commit} of {url}: {message}")]
    Read {
        url: String,
        commit: String,
        message: String,
    },
    #[error("refusing commit {commit} of {url}: {path}: {why}")]
    UnsafeTree {
        url: String,
        commit: String,
        path: String,
        why: String,
    },
    #[error("reaching {url}: {message}")]
    Transport { url: String, message: String },
    #[error("writing {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A submodule could not be fetched or lacks the commit its gitlink names.
    #[error("submodule {path} of {url}: {message}")]
    Submodule {
        url: String,
        path: String,
        message: String,
    },
    /// Git LFS objects could not be downloaded, or were refused (size, digest).
    #[error("Git LFS objects of {url}: {message}")]
    Lfs { url: String, message: String },
}

impl GitError {
    /// Whether the failure is about the remote (unreachable, refused, bad credentials) rather
    /// than about what was asked of it.
    pub fn is_remote(&self) -> bool {
        matches!(self, Self::Fetch { .. } | Self::Transport { .. })
    }
}

/// How to authenticate to a repository (from Argo CD `repository` / `repo-creds` Secrets).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Credentials {
    /// HTTP basic auth (for GitHub/GitLab tokens: any user name and the token as password).
    pub username: Option<String>,
    pub password: Option<String>,
    /// Sent as `Authorization: Bearer` (Bitbucket Server / Data Center access tokens).
    pub bearer_token: Option<String>,
    /// Skip TLS certificate verification for https://, host key checks for SSH (discouraged).
    pub insecure: bool,
    /// `sshPrivateKey` for ssh:// and scp-like URLs.
    pub ssh_private_key: Option<String>,
    /// A TLS client certificate and its key (PEM).
    pub tls_client_cert_data: Option<String>,
    pub tls_client_cert_key: Option<String>,
    /// An HTTP(S) proxy URL and the hosts that bypass it (NO_PROXY syntax).
    pub proxy: Option<String>,
    pub no_proxy: Option<String>,
    /// The repository Secret's `enableOCI`.
    pub enable_oci: bool,
    /// GitHub App credentials (installation tokens are minted from them).
    pub github_app: Option<crate::github_app::GithubAppCreds>,
    /// `enableLfs`: exports replace Git LFS pointer files with their objects
    /// ([`export_with`]).
    pub enable_lfs: bool,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field(
                "bearer_token",
                &self.bearer_token.as_ref().map(|_| "<redacted>"),
            )
            .field("insecure", &self.insecure)
            .field(
                "ssh_private_key",
                &self.ssh_private_key.as_ref().map(|_| "<redacted>"),
            )
            .field("tls_client_cert", &self.tls_client_cert_data.is_some())
            .field("proxy", &self.proxy.as_deref().map(redact_url))
            .field("no_proxy", &self.no_proxy)
            .field("enable_oci", &self.enable_oci)
            .field("github_app", &self.github_app)
            .field("enable_lfs", &self.enable_lfs)
            .finish()
    }
}

impl Credentials {
    /// A digest telling callers of one repository apart by what they authenticate with
    /// (kept in memory only: access checks, per-credential caches).
    pub fn digest(&self) -> String {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        for part in [
            &self.username,
            &self.password,
            &self.bearer_token,
            &self.ssh_private_key,
            &self.tls_client_cert_data,
            &self.tls_client_cert_key,
            &self.proxy,
            &self.no_proxy,
            &self.github_app.as_ref().map(|a| {
                format!(
                    "{}/{}/{}/{}",
                    a.app_id,
                    a.installation_id,
                    a.private_key,
                    a.enterprise_base_url.as_deref().unwrap_or_default()
                )
            }),
        ] {
            let v = part.as_deref().unwrap_or_default();
            h.update((v.len() as u64).to_le_bytes());
            h.update(v.as_bytes());
        }
        h.update([u8::from(self.enable_oci)]);
        h.update([u8::from(self.insecure)]);
        h.update([u8::from(self.enable_lfs)]);
        hex::encode(h.finalize())
    }
}

/// One line naming an error and its causes (`outer: inner: root cause`).
pub fn describe(e: &dyn std::error::Error) -> String {
    let mut parts: Vec<String> = vec![e.to_string()];
    let mut cur = e.source();
    while let Some(s) = cur {
        let text = s.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        cur = s.source();
    }
    parts.join(": ")
}

/// The bare repository caches: one directory per repository URL under a private root
/// (mode 0700), named by a salted hash of the URL, so a cache path can be neither guessed nor
/// named by a `file://` URL (Argo CD uses random paths for the same reason).
#[derive(Debug, Clone)]
pub struct GitCache {
    root: PathBuf,
    salt: String,
}

impl GitCache {
    /// Open (creating on first use) the cache root; the salt is made once and kept in it.
    pub fn open(root: &Path) -> Result<Self, GitError> {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        let setup = |source| GitError::Write {
            path: root.to_path_buf(),
            source,
        };
        std::fs::create_dir_all(root).map_err(setup)?;
        std::fs::set_permissions(root, std::fs::Permissions::from_mode(0o700)).map_err(setup)?;
        let salt_file = root.join(".salt");
        let fresh = format!(
            "{}{}",
            uuid::Uuid::new_v4().simple(),
            uuid::Uuid::new_v4().simple()
        );
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&salt_file)
        {
            Ok(mut f) => {
                use std::io::Write;
                f.write_all(fresh.as_bytes()).map_err(setup)?;
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(setup(e)),
        }
        let salt = std::fs::read_to_string(&salt_file).map_err(setup)?;
        if salt.len() < 32 {
            return Err(GitError::Write {
                path: salt_file,
                source: std::io::Error::other("cache salt is too short"),
            });
        }
        Ok(Self {
            root: root.to_path_buf(),
            salt,
        })
    }

    /// Where the bare cache of `url` lives.
    pub fn dir(&self, url: &str) -> PathBuf {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        h.update(self.salt.as_bytes());
        h.update([0]);
        h.update(url.as_bytes());
        self.root.join(hex::encode(h.finalize()))
    }
}

/// The local ref that mirrors the remote's `HEAD` (its default branch).
const REMOTE_HEAD: &str = "refs/remotes/origin/HEAD";

/// The name a repository's bare cache goes by: its URL, plus the transport settings that
/// decide whether what was fetched can be trusted (a `proxy`, `insecure`). What one caller
/// fetched through a proxy it controls, or without checking certificates, is then never
/// served to another caller of the same URL.
pub fn cache_name(url: &str, creds: &Credentials) -> String {
    if creds.proxy.is_none() && !creds.insecure {
        return url.to_string();
    }
    format!(
        "{url}\0proxy={}\0insecure={}",
        creds.proxy.as_deref().unwrap_or_default(),
        creds.insecure
    )
}

/// Open the bare cache of `url` as fetched with `creds`' transport (see [`cache_name`]),
/// creating it on first use.
pub fn open_cache_as(
    cache: &GitCache,
    url: &str,
    creds: &Credentials,
) -> Result<gix::Repository, GitError> {
    open_dir(cache.dir(&cache_name(url, creds)), url)
}

/// Open the bare cache of `url` fetched directly (no proxy, certificates checked).
pub fn open_cache(cache: &GitCache, url: &str) -> Result<gix::Repository, GitError> {
    open_dir(cache.dir(url), url)
}

fn open_dir(dir: PathBuf, url: &str) -> Result<gix::Repository, GitError> {
    let open_err = |e: &dyn std::error::Error| GitError::Open {
        url: redact_url(url),
        message: describe(e),
    };
    if dir.join("HEAD").exists() {
        return gix::open(&dir).map_err(|e| open_err(&e));
    }
    // A half-created cache from an interrupted run is started afresh.
    let _ = std::fs::remove_dir_all(&dir);
    gix::init_bare(&dir).map_err(|e| open_err(&e))
}

/// Fetch every branch, every tag and the remote `HEAD` of `url` into its bare cache (created on
/// first use) and return the opened repository. Credentials stay in memory: the remote is
/// anonymous, so nothing about it is written to the cache's config (an SSH key lives in a
/// private temporary file for the length of the fetch). `timeout` bounds the transfer
/// (checked while data moves).
pub fn fetch(
    cache: &GitCache,
    url: &str,
    creds: &Credentials,
    transport: &TransportConfig,
    timeout: Duration,
) -> Result<gix::Repository, GitError> {
    fetch_refspecs(cache, url, creds, transport, timeout, &FETCH_REFSPECS)
}

/// What [`fetch`] asks for: every branch, every tag, the remote `HEAD`.
const FETCH_REFSPECS: [&str; 3] = [
    "+refs/heads/*:refs/heads/*",
    "+refs/tags/*:refs/tags/*",
    "+HEAD:refs/remotes/origin/HEAD",
];

/// [`fetch`] with other refspecs (a bare commit id fetches just that commit, for a submodule
/// whose gitlink names a commit no branch or tag reaches).
fn fetch_refspecs(
    cache: &GitCache,
    url: &str,
    creds: &Credentials,
    transport: &TransportConfig,
    timeout: Duration,
    refspecs: &[&str],
) -> Result<gix::Repository, GitError> {
    let transport_err = |e: TransportError| GitError::Transport {
        url: redact_url(url),
        message: e.0,
    };
    let ssh = if is_ssh_url(url) {
        Some(SshCommand::new(transport, creds).map_err(transport_err)?)
    } else {
        None
    };
    let http = if url.to_ascii_lowercase().starts_with("http") {
        Some(HttpSettings::for_repo(transport, url, creds).map_err(transport_err)?)
    } else {
        None
    };
    let res = fetch_into(
        cache,
        url,
        creds,
        transport,
        (ssh.as_ref(), http),
        timeout,
        refspecs,
    );
    match (res, &ssh) {
        // ssh says why it failed on its stderr (an unknown or changed host key, a refused
        // key); gix sees only a closed pipe.
        (Err(GitError::Fetch { url, message }), Some(ssh)) => Err(GitError::Fetch {
            url,
            message: match ssh.stderr_summary() {
                Some(why) => format!("{message}: ssh: {why}"),
                None => message,
            },
        }),
        (res, _) => res,
    }
}

/// [`fetch`] once the transport is set up.
fn fetch_into(
    cache: &GitCache,
    url: &str,
    creds: &Credentials,
    transport: &TransportConfig,
    (ssh, http): (Option<&SshCommand>, Option<HttpSettings>),
    timeout: Duration,
    refspecs: &[&str],
) -> Result<gix::Repository, GitError> {
    let fetch_err = |e: &dyn std::error::Error| GitError::Fetch {
        url: redact_url(url),
        message: describe(e),
    };
    let mut repo = open_cache_as(cache, url, creds)?;
    if creds.bearer_token.is_some() || creds.insecure || ssh.is_some() {
        let mut cfg = repo.config_snapshot_mut();
        if let Some(token) = &creds.bearer_token {
            cfg.set_value(
                &gix::config::tree::Http::EXTRA_HEADER,
                format!("Authorization: Bearer {token}").as_str(),
            )
            .map_err(|e| fetch_err(&e))?;
        }
        if creds.insecure {
            cfg.set_value(&gix::config::tree::Http::SSL_VERIFY, "false")
                .map_err(|e| fetch_err(&e))?;
        }
        if let Some(ssh) = ssh {
            cfg.set_value(&gix::config::tree::Core::SSH_COMMAND, ssh.command.as_str())
                .map_err(|e| fetch_err(&e))?;
            cfg.set_value(&gix::config::tree::Ssh::VARIANT, "ssh")
                .map_err(|e| fetch_err(&e))?;
        }
        cfg.commit().map_err(|e| fetch_err(&e))?;
    }
    let interrupt = Arc::new(AtomicBool::new(false));
    let _watchdog = Watchdog::start(interrupt.clone(), timeout);
    let remote = repo
        .remote_at(url)
        .map_err(|e| fetch_err(&e))?
        .with_refspecs(refspecs.iter().copied(), gix::remote::Direction::Fetch)
        .map_err(|e| fetch_err(&e))?;
    let account = match (&creds.github_app, &creds.username, &creds.password) {
        // A GitHub App: its installation token as the password of `x-access-token`.
        (Some(app), _, _) if url.to_ascii_lowercase().starts_with("https://") => {
            let token =
                app.installation_token(transport, timeout)
                    .map_err(|e| GitError::Transport {
                        url: redact_url(url),
                        message: e.to_string(),
                    })?;
            Some(gix::sec::identity::Account {
                username: "x-access-token".into(),
                password: token,
                oauth_refresh_token: None,
            })
        }
        (Some(_), _, _) => {
            return Err(GitError::Transport {
                url: redact_url(url),
                message: "GitHub App credentials work over https:// only".into(),
            });
        }
        (None, ..) => match (&creds.username, &creds.password) {
            (Some(u), Some(p)) => Some(gix::sec::identity::Account {
                username: u.clone(),
                password: p.clone(),
                oauth_refresh_token: None,
            }),
            (None, Some(p)) => Some(gix::sec::identity::Account {
                // Token-only credentials: hosts accept any user name with a token as password.
                username: "git".into(),
                password: p.clone(),
                oauth_refresh_token: None,
            }),
            _ => None,
        },
    };
    // Never fall back to the host's credential helpers or a prompt: a server has no terminal.
    let expected_origin = gix::url::parse(url.as_bytes()).ok().map(|u| origin(&u));
    let mut connection = remote
        .connect(gix::remote::Direction::Fetch)
        .map_err(|e| fetch_err(&e))?
        .with_credentials(move |action| match action {
            gix::credentials::helper::Action::Get(ctx) => {
                // Only to the repository's own origin: a redirect to another host asks again,
                // and gets nothing.
                if !asks_for_origin(&ctx, expected_origin.as_ref()) {
                    return Ok(None);
                }
                Ok(account
                    .clone()
                    .map(|identity| gix::credentials::protocol::Outcome {
                        identity,
                        next: ctx.into(),
                    }))
            }
            _ => Ok(None),
        });
    // Every HTTP fetch gets a client with a deadline (a server that accepts and stays silent
    // would otherwise hold the fetch past the watchdog, which only acts while data moves).
    if let Some(settings) = http {
        use gix::protocol::transport::client::blocking_io::http;
        if let Ok(Some(mut opts)) = repo.transport_options(url, None) {
            if let Some(o) = opts.downcast_mut::<http::Options>() {
                o.backend = Some(Arc::new(std::sync::Mutex::new(http::reqwest::Options {
                    configure_client: Some(Box::new(move |b| {
                        Ok(settings.apply_blocking(b.timeout(timeout)))
                    })),
                    configure_request: None,
                })));
            }
            connection = connection.with_transport_options(opts);
        }
    }
    connection
        .prepare_fetch(gix::progress::Discard, Default::default())
        .map_err(|e| fetch_err(&e))?
        .receive(gix::progress::Discard, &interrupt)
        .map_err(|e| {
            if interrupt.load(Ordering::Relaxed) {
                GitError::Fetch {
                    url: redact_url(url),
                    message: format!("timed out after {timeout:?}"),
                }
            } else {
                fetch_err(&e)
            }
        })?;
    Ok(repo)
}

/// A URL's scheme and host (with the port when it is not the scheme's default), as gix's
/// credential requests name them.
fn origin(u: &gix::Url) -> (String, String) {
    let mut host = u.host().unwrap_or_default().to_string();
    if let Some(port) = u
        .port
        .filter(|p| u.scheme.default_port().is_none_or(|d| *p != d))
    {
        host.push_str(&format!(":{port}"));
    }
    (u.scheme.as_str().to_string(), host)
}

/// Whether a credential request is for `expected` (the repository's own origin).
fn asks_for_origin(
    ctx: &gix::credentials::protocol::Context,
    expected: Option<&(String, String)>,
) -> bool {
    let asked = ctx
        .url
        .as_ref()
        .and_then(|u| gix::url::parse(AsRef::<[u8]>::as_ref(u)).ok())
        .map(|u| origin(&u))
        .or_else(|| Some((ctx.protocol.clone()?, ctx.host.clone()?)));
    asked.is_some() && asked.as_ref() == expected
}

/// Sets the interrupt flag when `timeout` passes, unless dropped first.
struct Watchdog {
    done: Arc<(std::sync::Mutex<bool>, std::sync::Condvar)>,
}

impl Watchdog {
    fn start(flag: Arc<AtomicBool>, timeout: Duration) -> Self {
        let done = Arc::new((std::sync::Mutex::new(false), std::sync::Condvar::new()));
        let d = done.clone();
        std::thread::spawn(move || {
            let (lock, cv) = &*d;
            let Ok(guard) = lock.lock() else { return };
            if let Ok((guard, res)) = cv.wait_timeout_while(guard, timeout, |done| !*done)
                && res.timed_out()
                && !*guard
            {
                flag.store(true, Ordering::Relaxed);
            }
        });
        Self { done }
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        let (lock, cv) = &*self.done;
        if let Ok(mut g) = lock.lock() {
            *g = true;
        }
        cv.notify_all();
    }
}

/// Whether `revision` is a full hexadecimal commit SHA.
pub fn is_full_sha(revision: &str) -> bool {
    revision.len() == 40 && revision.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Whether the cache of `url` already holds `commit` (so a render needs no fetch).
pub fn has_commit(repo: &gix::Repository, commit: &str) -> bool {
    gix::ObjectId::from_hex(commit.as_bytes())
        .ok()
        .and_then(|id| repo.find_commit(id).ok())
        .is_some()
}

/// Resolve `revision` to a full commit SHA: empty or `HEAD` is the remote's default branch;
/// then, in this order, a branch, a tag (annotated tags peeled to their commit), a full or
/// short SHA, a semver constraint over the tags (`>=1.0.0 <2.0.0`, `1.2.*`, `^1.2`, `~1.2.0`,
/// `*`: the highest matching tag, with or without a leading `v`, see [`crate::git_semver`]),
/// and anything else `git rev-parse` reads. A name that exists wins over a constraint (a
/// branch called `1.2` is that branch).
pub fn resolve(repo: &gix::Repository, url: &str, revision: &str) -> Result<String, GitError> {
    let rev = if revision.is_empty() {
        "HEAD"
    } else {
        revision
    };
    let unknown = || GitError::UnknownRevision {
        url: redact_url(url),
        revision: rev.to_string(),
    };
    // The bare cache's own HEAD is meaningless; HEAD means the remote's default branch.
    if rev == "HEAD" {
        return peel_to_commit(repo, REMOTE_HEAD).ok_or_else(unknown);
    }
    for c in [format!("refs/heads/{rev}"), format!("refs/tags/{rev}")] {
        if let Some(id) = peel_to_commit(repo, &c) {
            return Ok(id);
        }
    }
    let hex = (4..=40).contains(&rev.len()) && rev.bytes().all(|b| b.is_ascii_hexdigit());
    if hex && let Some(id) = peel_to_commit(repo, rev) {
        return Ok(id);
    }
    if let Some(constraint) = crate::git_semver::Constraint::parse(rev) {
        return resolve_constraint(repo, url, rev, &constraint);
    }
    peel_to_commit(repo, rev).ok_or_else(unknown)
}

/// The commit `spec` names (`git rev-parse <spec>^{commit}`), if any.
fn peel_to_commit(repo: &gix::Repository, spec: &str) -> Option<String> {
    let id = repo.rev_parse_single(spec).ok()?;
    let commit = id.object().ok()?.peel_to_commit().ok()?;
    Some(commit.id.to_string())
}

/// The commit of the highest tag matching `constraint` (one that peels to a commit).
fn resolve_constraint(
    repo: &gix::Repository,
    url: &str,
    rev: &str,
    constraint: &crate::git_semver::Constraint,
) -> Result<String, GitError> {
    let read_err = |e: &dyn std::error::Error| GitError::Read {
        url: redact_url(url),
        commit: rev.to_string(),
        message: format!("listing tags: {}", describe(e)),
    };
    let refs = repo.references().map_err(|e| read_err(&e))?;
    let mut tags: Vec<String> = Vec::new();
    // A reference that does not parse is skipped like a tag that is no version.
    for r in refs.tags().map_err(|e| read_err(&e))?.flatten() {
        let name = r.name().shorten().to_string();
        if crate::git_semver::parse_version(&name).is_some() {
            tags.push(name);
        }
    }
    tags.sort();
    let ranked = constraint.ranked(tags.iter().map(|t| (t.as_str(), t.as_str())));
    for tag in ranked {
        if let Some(id) = peel_to_commit(repo, &format!("refs/tags/{tag}")) {
            tracing::debug!(repo = %redact_url(url), constraint = rev, tag, commit = %id, "semver revision resolved");
            return Ok(id);
        }
    }
    Err(GitError::UnknownRevision {
        url: redact_url(url),
        revision: format!("{rev} (a semver constraint no tag matches)"),
    })
}

/// Write the tree of `commit` into `dest` (files, executables and symlinks; a submodule is
/// left an empty directory, as a checkout without `git submodule update` leaves it), refusing
/// a hostile tree (see [`write_tree`] and [`check_links`]) before anything renders from it.
/// [`export_with`] also checks submodules out and fetches LFS objects.
pub fn export(
    repo: &gix::Repository,
    url: &str,
    commit: &str,
    dest: &Path,
) -> Result<(), GitError> {
    export_within(repo, url, commit, dest, MAX_EXPORT_ENTRIES)
}

/// [`export`] with another entry limit.
pub fn export_within(
    repo: &gix::Repository,
    url: &str,
    commit: &str,
    dest: &Path,
    max_entries: usize,
) -> Result<(), GitError> {
    let opts = ExportOptions {
        submodules: false,
        max_entries,
        ..ExportOptions::default()
    };
    let mut ex = Exporter::new(dest, &opts, None, false);
    ex.export(repo, url, &Credentials::default(), commit, Path::new(""), 0)?;
    ex.finish(url, commit)
}

/// How [`export_with`] treats submodules and LFS objects, and its bounds.
#[derive(Debug, Clone)]
pub struct ExportOptions {
    /// Check submodules out, recursively (Argo CD's default; off with
    /// `ARGOCD_GIT_MODULES_ENABLED=false`). Off: each is an empty directory.
    pub submodules: bool,
    /// Deepest nesting of submodules in submodules.
    pub max_submodule_depth: usize,
    /// Whether a `file://` submodule may be fetched (only ever from a `file://` superproject).
    pub allow_file_urls: bool,
    /// Bounds each submodule fetch.
    pub fetch_timeout: Duration,
    /// Most submodules (all levels together) one export fetches.
    pub max_submodules: usize,
    /// Longest a whole export may take, fetches and downloads included.
    pub max_time: Duration,
    /// Most entries the whole export (submodules included) may hold.
    pub max_entries: usize,
    /// Bounds on LFS downloads (per repository of the export).
    pub lfs: crate::git_lfs::LfsLimits,
}

impl Default for ExportOptions {
    fn default() -> Self {
        Self {
            submodules: true,
            max_submodule_depth: 5,
            allow_file_urls: false,
            fetch_timeout: Duration::from_secs(90),
            max_submodules: 100,
            max_time: Duration::from_secs(600),
            max_entries: MAX_EXPORT_ENTRIES,
            lfs: crate::git_lfs::LfsLimits::default(),
        }
    }
}

/// The repository an export comes from, and what further fetches (submodules, LFS objects)
/// need: the cache to fetch submodules into, the caller's credentials, the transport settings.
#[derive(Debug, Clone, Copy)]
pub struct Remote<'a> {
    pub cache: &'a GitCache,
    pub url: &'a str,
    pub creds: &'a Credentials,
    pub transport: &'a TransportConfig,
}

/// [`export`], and then what Argo CD's checkout adds: each submodule's gitlinked commit (its
/// repository fetched into the same cache, URLs relative to the superproject resolved and
/// held to the URL policy, credentials only to the superproject's origin) written at its
/// path, recursively; and with `creds.enable_lfs`, LFS pointer files replaced by their
/// objects. One budget (entries, bytes, time) covers the whole tree.
pub fn export_with(
    repo: &gix::Repository,
    remote: &Remote<'_>,
    commit: &str,
    dest: &Path,
    opts: &ExportOptions,
) -> Result<(), GitError> {
    let mut ex = Exporter::new(
        dest,
        opts,
        Some((remote.cache, remote.transport)),
        remote.creds.enable_lfs,
    );
    ex.export(repo, remote.url, remote.creds, commit, Path::new(""), 0)?;
    ex.finish(remote.url, commit)
}

/// Most entries (files, directories, links) one exported commit may hold: a "git bomb" (one
/// subtree referenced many times) expands a few kilobytes into billions of files.
pub const MAX_EXPORT_ENTRIES: usize = 500_000;
/// Most bytes of file content one exported commit may hold.
pub const MAX_EXPORT_BYTES: u64 = 2 * 1024 * 1024 * 1024;
/// Longest one export may spend writing (time spent fetching submodules and LFS objects is
/// bounded by [`ExportOptions::max_time`]).
pub const MAX_EXPORT_TIME: Duration = Duration::from_secs(120);

/// What an export has used so far, and the symlinks it wrote (relative path, target).
struct Budget {
    links: Vec<(PathBuf, String)>,
    max_entries: usize,
    entries: usize,
    bytes: u64,
    deadline: std::time::Instant,
    /// Gitlinks met by the last [`write_tree`] (path from the export's root, commit).
    gitlinks: Vec<(PathBuf, gix::ObjectId)>,
    /// Collect LFS pointer files into `pointers`.
    lfs: bool,
    pointers: Vec<(PathBuf, crate::git_lfs::Pointer)>,
}

/// One export: the destination root, the options, and (for submodules) the cache and
/// transport to fetch with.
struct Exporter<'a> {
    root: &'a Path,
    opts: &'a ExportOptions,
    fetcher: Option<(&'a GitCache, &'a TransportConfig)>,
    budget: Budget,
    /// Submodules fetched so far.
    submodules: usize,
    /// When the whole export must be done (`opts.max_time`).
    hard_deadline: std::time::Instant,
}

impl<'a> Exporter<'a> {
    fn new(
        root: &'a Path,
        opts: &'a ExportOptions,
        fetcher: Option<(&'a GitCache, &'a TransportConfig)>,
        lfs: bool,
    ) -> Self {
        let now = std::time::Instant::now();
        Self {
            root,
            opts,
            fetcher,
            submodules: 0,
            hard_deadline: now.checked_add(opts.max_time).unwrap_or(now),
            budget: Budget {
                links: Vec::new(),
                max_entries: opts.max_entries,
                entries: 0,
                bytes: 0,
                deadline: now + MAX_EXPORT_TIME,
                gitlinks: Vec::new(),
                lfs: lfs && fetcher.is_some(),
                pointers: Vec::new(),
            },
        }
    }

    /// `want`, or less when the export's own deadline is nearer; an error when it passed.
    fn time_left(&self, want: Duration, url: &str) -> Result<Duration, GitError> {
        let left = self
            .hard_deadline
            .saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            return Err(GitError::Fetch {
                url: redact_url(url),
                message: format!(
                    "the export took longer than {:?} (submodules and LFS objects included)",
                    self.opts.max_time
                ),
            });
        }
        Ok(want.min(left))
    }

    /// Every symlink of the whole tree (submodules included) checked at last.
    fn finish(self, url: &str, commit: &str) -> Result<(), GitError> {
        check_links(self.root, &self.budget.links).map_err(|(path, why)| GitError::UnsafeTree {
            url: redact_url(url),
            commit: commit.to_string(),
            path: path.display().to_string(),
            why,
        })
    }

    /// Write `commit` of `repo` (at `url`, read with `creds`) at `rel` under the root, then its
    /// LFS objects and submodules.
    fn export(
        &mut self,
        repo: &gix::Repository,
        url: &str,
        creds: &Credentials,
        commit: &str,
        rel: &Path,
        depth: usize,
    ) -> Result<(), GitError> {
        let read_err = |e: &dyn std::error::Error| GitError::Read {
            url: redact_url(url),
            commit: commit.to_string(),
            message: describe(e),
        };
        let unsafe_err = |path: &Path, why: &str| GitError::UnsafeTree {
            url: redact_url(url),
            commit: commit.to_string(),
            path: path.display().to_string(),
            why: why.to_string(),
        };
        let id = gix::ObjectId::from_hex(commit.as_bytes()).map_err(|e| read_err(&e))?;
        let tree = repo
            .find_commit(id)
            .map_err(|e| read_err(&e))?
            .tree()
            .map_err(|e| read_err(&e))?;
        write_tree(
            repo,
            &tree,
            &self.root.join(rel),
            rel,
            &mut self.budget,
            &read_err,
            &unsafe_err,
        )?;
        let gitlinks = std::mem::take(&mut self.budget.gitlinks);
        let pointers = std::mem::take(&mut self.budget.pointers);
        if let (false, Some((_, transport))) = (pointers.is_empty(), self.fetcher) {
            self.lfs(url, creds, transport, &pointers)?;
        }
        if gitlinks.is_empty() {
            return Ok(());
        }
        let fetcher = match self.fetcher {
            Some(f) if self.opts.submodules => f,
            _ => {
                for (path, _) in &gitlinks {
                    let path = self.root.join(path);
                    std::fs::create_dir(&path)
                        .map_err(|source| GitError::Write { path, source })?;
                }
                return Ok(());
            }
        };
        if depth >= self.opts.max_submodule_depth {
            return Err(unsafe_err(
                &gitlinks[0].0,
                &format!(
                    "submodules nest deeper than {} levels",
                    self.opts.max_submodule_depth
                ),
            ));
        }
        let gitmodules_path = rel.join(".gitmodules");
        let modules =
            read_gitmodules(repo, &tree).map_err(|why| unsafe_err(&gitmodules_path, &why))?;
        for (path, oid) in gitlinks {
            let inner = path.strip_prefix(rel).unwrap_or(&path).to_string_lossy();
            let sub_err = |message: String| GitError::Submodule {
                url: redact_url(url),
                path: path.display().to_string(),
                message,
            };
            let Some(module) = modules.iter().rev().find(|m| m.path == inner) else {
                return Err(sub_err(format!(
                    "no URL for this submodule path in {}",
                    gitmodules_path.display()
                )));
            };
            let Some(raw_url) = module.url.as_deref() else {
                return Err(sub_err(format!(
                    "submodule {:?} has no url in {}",
                    module.name,
                    gitmodules_path.display()
                )));
            };
            let refuse = |why: String| {
                unsafe_err(
                    &path,
                    &format!("submodule URL {:?} {why}", redact_url(raw_url)),
                )
            };
            let sub_url = crate::git_submodule::resolve_url(url, raw_url).map_err(refuse)?;
            crate::git_submodule::check_url(&sub_url, url, self.opts.allow_file_urls)
                .map_err(|why| refuse(format!("(as {}) {why}", redact_url(&sub_url))))?;
            let same = crate::git_submodule::same_origin(url, &sub_url);
            self.submodules += 1;
            if self.submodules > self.opts.max_submodules {
                return Err(unsafe_err(
                    &path,
                    &format!("more than {} submodules to fetch", self.opts.max_submodules),
                ));
            }
            let timeout = self.time_left(self.opts.fetch_timeout, &sub_url)?;
            let sub_creds = if same {
                creds.clone()
            } else {
                crate::git_submodule::anonymous(creds)
            };
            let started = std::time::Instant::now();
            let sub_repo = fetch_submodule(fetcher, &sub_url, &sub_creds, timeout)
                .map_err(|e| {
                    sub_err(if same {
                        describe(&e)
                    } else {
                        format!(
                            "{} (on another host than the superproject, so fetched without its credentials)",
                            describe(&e)
                        )
                    })
                })?;
            let commit_hex = oid.to_string();
            if !has_commit(&sub_repo, &commit_hex) {
                // A commit no branch or tag reaches: ask for it by id (servers that allow it).
                let by_id = fetch_refspecs(
                    fetcher.0,
                    &sub_url,
                    &sub_creds,
                    fetcher.1,
                    self.time_left(self.opts.fetch_timeout, &sub_url)?,
                    &[commit_hex.as_str()],
                );
                if let Err(e) = by_id {
                    tracing::debug!(submodule = %redact_url(&sub_url), error = %e, "fetch by commit id failed");
                }
            }
            let sub_repo = open_cache_as(fetcher.0, &sub_url, &sub_creds)?;
            if !has_commit(&sub_repo, &commit_hex) {
                return Err(sub_err(format!(
                    "{} has no commit {commit_hex} (the gitlink's)",
                    redact_url(&sub_url)
                )));
            }
            self.budget.deadline += started.elapsed();
            tracing::debug!(
                repo = %redact_url(url),
                submodule = %redact_url(&sub_url),
                path = %path.display(),
                commit = %commit_hex,
                credentials = same,
                "submodule fetched"
            );
            self.export(
                &sub_repo,
                &sub_url,
                &sub_creds,
                &commit_hex,
                &path,
                depth + 1,
            )?;
        }
        Ok(())
    }

    /// Replace this repository's LFS pointer files with their objects.
    fn lfs(
        &mut self,
        url: &str,
        creds: &Credentials,
        transport: &TransportConfig,
        pointers: &[(PathBuf, crate::git_lfs::Pointer)],
    ) -> Result<(), GitError> {
        let started = std::time::Instant::now();
        let src = crate::git_lfs::LfsSource {
            url,
            creds,
            transport,
        };
        let left = MAX_EXPORT_BYTES.saturating_sub(self.budget.bytes);
        let limits = crate::git_lfs::LfsLimits {
            timeout: self.time_left(self.opts.lfs.timeout, url)?,
            ..self.opts.lfs.clone()
        };
        let written =
            crate::git_lfs::smudge(&src, &limits, self.root, pointers, left).map_err(|e| {
                GitError::Lfs {
                    url: redact_url(url),
                    message: e.to_string(),
                }
            })?;
        self.budget.bytes += written;
        self.budget.deadline += started.elapsed();
        Ok(())
    }
}

/// `.gitmodules` of `tree` (its root), parsed and checked; empty when there is none.
fn read_gitmodules(
    repo: &gix::Repository,
    tree: &gix::Tree<'_>,
) -> Result<Vec<crate::git_submodule::Module>, String> {
    use gix::object::tree::EntryKind;
    let mut found = None;
    for entry in tree.iter() {
        let entry = entry.map_err(|e| describe(&e))?;
        if entry.filename() == ".gitmodules" {
            found = Some((entry.mode().kind(), entry.oid().to_owned()));
        }
    }
    let Some((kind, oid)) = found else {
        return Ok(Vec::new());
    };
    if !matches!(kind, EntryKind::Blob | EntryKind::BlobExecutable) {
        // Git refuses a .gitmodules that is a symlink (CVE-2018-11235's sibling).
        return Err("is not a regular file".into());
    }
    let header = repo.find_header(oid).map_err(|e| describe(&e))?;
    if header.size() > crate::git_submodule::MAX_GITMODULES_BYTES as u64 {
        return Err(format!(
            "larger than {} bytes",
            crate::git_submodule::MAX_GITMODULES_BYTES
        ));
    }
    let blob = repo.find_blob(oid).map_err(|e| describe(&e))?;
    crate::git_submodule::parse_gitmodules(&blob.data)
}

/// One fetch at a time per submodule cache within this process (two exports sharing a
/// submodule would otherwise race on its refs); the top-level fetches have their own lock in
/// the backend, so a lost race with one of those is retried once.
fn fetch_submodule(
    (cache, transport): (&GitCache, &TransportConfig),
    url: &str,
    creds: &Credentials,
    timeout: Duration,
) -> Result<gix::Repository, GitError> {
    use std::collections::HashMap;
    use std::sync::{LazyLock, Mutex};
    static LOCKS: LazyLock<Mutex<HashMap<PathBuf, Arc<Mutex<()>>>>> =
        LazyLock::new(Default::default);
    let lock = LOCKS
        .lock()
        .map(|mut m| {
            m.entry(cache.dir(&cache_name(url, creds)))
                .or_default()
                .clone()
        })
        .unwrap_or_default();
    let _one_at_a_time = lock.lock();
    match fetch(cache, url, creds, transport, timeout) {
        Err(e) if describe(&e).contains("lock") => {
            std::thread::sleep(Duration::from_millis(300));
            fetch(cache, url, creds, transport, timeout)
        }
        res => res,
    }
}

/// Write `tree` into the new directory `dest` (which must not exist). Safe against hostile
/// trees: every entry name is checked (no `/`, `.`, `..`, `.git`, duplicates or non-UTF-8),
/// directories are created with `create_dir` and files with `create_new` (`O_EXCL`), so
/// nothing is ever written through an existing path or a symlink. Symlinks are created as
/// stored and collected in `budget.links` for [`check_links`].
fn write_tree(
    repo: &gix::Repository,
    tree: &gix::Tree<'_>,
    dest: &Path,
    rel: &Path,
    budget: &mut Budget,
    read_err: &dyn Fn(&dyn std::error::Error) -> GitError,
    unsafe_err: &dyn Fn(&Path, &str) -> GitError,
) -> Result<(), GitError> {
    use gix::object::tree::EntryKind;
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::create_dir(dest).map_err(|source| GitError::Write {
        path: dest.to_path_buf(),
        source,
    })?;
    let mut seen = std::collections::HashSet::new();
    for entry in tree.iter() {
        let entry = entry.map_err(|e| read_err(&e))?;
        budget.entries += 1;
        if budget.entries > budget.max_entries || std::time::Instant::now() > budget.deadline {
            return Err(unsafe_err(
                rel,
                &format!(
                    "the tree is too large to export (more than {} entries or {MAX_EXPORT_TIME:?})",
                    budget.max_entries
                ),
            ));
        }
        let raw: &[u8] = entry.filename().as_ref();
        let shown = rel.join(String::from_utf8_lossy(raw).as_ref());
        let name =
            std::str::from_utf8(raw).map_err(|_| unsafe_err(&shown, "entry name is not UTF-8"))?;
        if let Some(why) = unsafe_entry_name(name) {
            return Err(unsafe_err(&shown, why));
        }
        if !seen.insert(name.to_string()) {
            return Err(unsafe_err(&shown, "the tree holds this name twice"));
        }
        let path = dest.join(name);
        let rel_path = rel.join(name);
        let write_err = |source| GitError::Write {
            path: path.clone(),
            source,
        };
        match entry.mode().kind() {
            EntryKind::Tree => {
                let sub = repo
                    .find_tree(entry.oid().to_owned())
                    .map_err(|e| read_err(&e))?;
                write_tree(repo, &sub, &path, &rel_path, budget, read_err, unsafe_err)?;
            }
            kind @ (EntryKind::Blob | EntryKind::BlobExecutable) => {
                let blob = repo
                    .find_blob(entry.oid().to_owned())
                    .map_err(|e| read_err(&e))?;
                budget.bytes += blob.data.len() as u64;
                if budget.bytes > MAX_EXPORT_BYTES {
                    return Err(unsafe_err(
                        &rel_path,
                        &format!("the tree holds more than {MAX_EXPORT_BYTES} bytes"),
                    ));
                }
                let mode = if kind == EntryKind::BlobExecutable {
                    0o755
                } else {
                    0o644
                };
                // create_new is O_CREAT|O_EXCL: it fails on any existing path, a symlink included.
                let mut f = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(mode)
                    .open(&path)
                    .map_err(write_err)?;
                f.write_all(&blob.data).map_err(write_err)?;
                if budget.lfs
                    && blob.data.len() <= crate::git_lfs::MAX_POINTER_BYTES
                    && let Some(p) = crate::git_lfs::parse_pointer(&blob.data)
                {
                    budget.pointers.push((rel_path, p));
                }
            }
            EntryKind::Link => {
                let blob = repo
                    .find_blob(entry.oid().to_owned())
                    .map_err(|e| read_err(&e))?;
                let target = std::str::from_utf8(&blob.data)
                    .map_err(|_| unsafe_err(&rel_path, "symlink target is not UTF-8"))?
                    .to_string();
                std::os::unix::fs::symlink(&target, &path).map_err(write_err)?;
                budget.links.push((rel_path, target));
            }
            EntryKind::Commit => {
                // A submodule: its directory is made by the caller (checked out or empty).
                budget.gitlinks.push((rel_path, entry.oid().to_owned()));
            }
        }
    }
    Ok(())
}

/// Why a tree entry name is refused (as `git fsck` and checkout would refuse it), if it is.
pub(crate) fn unsafe_entry_name(name: &str) -> Option<&'static str> {
    if name.is_empty() {
        Some("empty entry name")
    } else if name.contains('/') || name.contains('\\') || name.contains('\0') {
        Some("entry name holds a path separator")
    } else if name == "." || name == ".." {
        Some("entry name is a dot-segment")
    } else if name.eq_ignore_ascii_case(".git") {
        Some("entry named .git")
    } else {
        None
    }
}

/// Most symlinks followed while resolving one link target (the kernel's own limit is 40).
const MAX_LINK_HOPS: usize = 40;

/// Refuse a tree holding a symlink that leaves the repository, points at a directory that
/// contains it (a loop for any walker), or cannot be resolved in a bounded number of hops.
/// Every link is resolved component by component inside `root`, following the tree's other
/// links, as the kernel would (Argo CD's `CheckOutOfBoundsSymlinks`, stricter).
pub fn check_links(root: &Path, links: &[(PathBuf, String)]) -> Result<(), (PathBuf, String)> {
    for (link, target) in links {
        let dir: Vec<String> = link
            .parent()
            .map(|p| {
                p.components()
                    .map(|c| c.as_os_str().to_string_lossy().to_string())
                    .collect()
            })
            .unwrap_or_default();
        if let Some(why) = link_problem(root, &dir, target) {
            return Err((link.clone(), format!("symlink to {target:?} {why}")));
        }
    }
    // Each link stays inside; together, links to directories may still form a cycle
    // (`a/l -> ../b`, `b/l -> ../a`) that a walker following them never leaves.
    let any_dir_link = links.iter().any(|(l, _)| root.join(l).is_dir());
    if any_dir_link {
        let root_real = root
            .canonicalize()
            .map_err(|e| (PathBuf::new(), e.to_string()))?;
        let mut color = std::collections::HashMap::new();
        if let Some(link) = find_cycle(&root_real, &root_real, &mut color, 0) {
            return Err((link, "symlinks to directories form a loop".to_string()));
        }
    }
    Ok(())
}

/// Depth-first search over real directories, with tree entries and links to directories as
/// edges: the link (relative to `root`) that reaches a directory still on the current path,
/// if any. `color`: false while on the path, true once fully explored.
fn find_cycle(
    root: &Path,
    dir: &Path,
    color: &mut std::collections::HashMap<PathBuf, bool>,
    depth: usize,
) -> Option<PathBuf> {
    color.insert(dir.to_path_buf(), false);
    let entries = std::fs::read_dir(dir).ok()?;
    for e in entries.flatten() {
        let Ok(ty) = e.file_type() else { continue };
        let next = if ty.is_dir() {
            e.path()
        } else if ty.is_symlink() {
            match e.path().canonicalize() {
                Ok(t) if t.is_dir() => t,
                _ => continue,
            }
        } else {
            continue;
        };
        let shown = || {
            e.path()
                .strip_prefix(root)
                .unwrap_or(&e.path())
                .to_path_buf()
        };
        match color.get(&next) {
            Some(false) => return Some(shown()),
            Some(true) => {}
            None if depth > 1024 => return Some(shown()),
            None => {
                if let Some(l) = find_cycle(root, &next, color, depth + 1) {
                    return Some(l);
                }
            }
        }
    }
    color.insert(dir.to_path_buf(), true);
    None
}

/// What is wrong with a link in directory `dir` (components under `root`) to `target`.
fn link_problem(root: &Path, dir: &[String], target: &str) -> Option<&'static str> {
    use std::collections::VecDeque;
    const LEAVES: &str = "leaves the repository";
    if target.starts_with('/') {
        return Some(LEAVES);
    }
    let mut stack: Vec<String> = dir.to_vec();
    let mut pending: VecDeque<String> = target.split('/').map(str::to_string).collect();
    let mut hops = 0;
    while let Some(c) = pending.pop_front() {
        match c.as_str() {
            "" | "." => {}
            ".." => {
                if stack.pop().is_none() {
                    return Some(LEAVES);
                }
            }
            name => {
                stack.push(name.to_string());
                let here: PathBuf = stack.iter().collect();
                let Ok(meta) = std::fs::symlink_metadata(root.join(&here)) else {
                    continue;
                };
                if meta.file_type().is_symlink() {
                    hops += 1;
                    if hops > MAX_LINK_HOPS {
                        return Some("does not resolve (a symlink loop)");
                    }
                    let Ok(next) = std::fs::read_link(root.join(&here)) else {
                        return Some("cannot be read");
                    };
                    let next = next.to_string_lossy().to_string();
                    if next.starts_with('/') {
                        return Some(LEAVES);
                    }
                    stack.pop();
                    for part in next.split('/').rev() {
                        pending.push_front(part.to_string());
                    }
                }
            }
        }
    }
    if dir.starts_with(&stack) {
        return Some("points at a directory that contains it (a loop)");
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    const T: Duration = Duration::from_secs(30);

    fn git(dir: &Path, args: &[&str]) -> String {
        let out = Command::new("git")
            .args([
                "-c",
                "user.name=t",
                "-c",
                "user.email=t@example.invalid",
                "-c",
                "init.defaultBranch=main",
            ])
            .args(args)
            .current_dir(dir)
            .output()
            .expect("git runs");
        assert!(
            out.status.success(),
            "git {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    fn mk_origin() -> (tempfile::TempDir, String, String) {
        let dir = tempfile::tempdir().expect("tempdir");
        git(dir.path(), &["init", "-q"]);
        std::fs::create_dir_all(dir.path().join("app")).expect("mkdir");
        std::fs::write(
            dir.path().join("app/cm.yaml"),
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: one}\n",
        )
        .expect("write");
        git(dir.path(), &["add", "."]);
        git(dir.path(), &["commit", "-qm", "one"]);
        git(dir.path(), &["tag", "v1"]);
        let first = git(dir.path(), &["rev-parse", "HEAD"]);
        std::fs::write(
            dir.path().join("app/cm.yaml"),
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: two}\n",
        )
        .expect("write");
        git(dir.path(), &["commit", "-qam", "two"]);
        let second = git(dir.path(), &["rev-parse", "HEAD"]);
        (dir, first, second)
    }

    #[test]
    fn clone_resolve_fetch_and_export() {
        let (origin, first, second) = mk_origin();
        let url = format!("file://{}", origin.path().display());
        let cache_tmp = tempfile::tempdir().expect("cache");
        let cache = GitCache::open(cache_tmp.path()).expect("cache");
        let repo = fetch(
            &cache,
            &url,
            &Credentials::default(),
            &TransportConfig::default(),
            T,
        )
        .expect("clone");
        assert_eq!(resolve(&repo, &url, "main").expect("branch"), second);
        assert_eq!(resolve(&repo, &url, "").expect("HEAD"), second);
        assert_eq!(resolve(&repo, &url, "v1").expect("tag"), first);
        assert_eq!(
            resolve(&repo, &url, &first[..10]).expect("short sha"),
            first
        );
        assert!(matches!(
            resolve(&repo, &url, "nope"),
            Err(GitError::UnknownRevision { .. })
        ));

        // A new commit upstream arrives with the next fetch.
        std::fs::write(
            origin.path().join("app/cm.yaml"),
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: three}\n",
        )
        .expect("write");
        git(origin.path(), &["commit", "-qam", "three"]);
        let third = git(origin.path(), &["rev-parse", "HEAD"]);
        let repo = fetch(
            &cache,
            &url,
            &Credentials::default(),
            &TransportConfig::default(),
            T,
        )
        .expect("fetch");
        assert_eq!(resolve(&repo, &url, "main").expect("branch"), third);

        let out_tmp = tempfile::tempdir().expect("out");
        let out = out_tmp.path().join("tree");
        export(&repo, &url, &first, &out).expect("export");
        let objs =
            crate::render::directory::render(&out, "app", &Default::default()).expect("render");
        assert_eq!(objs[0]["metadata"]["name"], "one");
    }

    #[test]
    fn head_is_the_remotes_default_branch_and_credentials_stay_off_disk() {
        let (origin, first, second) = mk_origin();
        // A branch named after the init default of the cache must not shadow the remote HEAD.
        git(origin.path(), &["branch", "master", &first]);
        let url = format!("file://{}", origin.path().display());
        let cache_tmp = tempfile::tempdir().expect("cache");
        let cache = GitCache::open(cache_tmp.path()).expect("cache");
        let creds = Credentials {
            bearer_token: Some("s3cret-token".into()),
            ..Default::default()
        };
        let repo = fetch(&cache, &url, &creds, &TransportConfig::default(), T).expect("fetch");
        assert_eq!(resolve(&repo, &url, "HEAD").expect("HEAD"), second);
        assert_eq!(resolve(&repo, &url, "master").expect("master"), first);
        assert!(has_commit(&repo, &first));
        assert!(!has_commit(&repo, &"0".repeat(40)));
        let config = std::fs::read_to_string(cache.dir(&url).join("config")).expect("config");
        assert!(!config.contains("s3cret"), "{config}");
        assert!(!format!("{creds:?}").contains("s3cret"));
    }

    /// Write a raw tree object (entries as given, duplicates and all, as an attacker's
    /// `git hash-object -t tree --literally` would) and return its id.
    fn raw_tree(dir: &Path, entries: &[(&str, &str, &str)]) -> String {
        let mut body = Vec::new();
        for (mode, name, id) in entries {
            body.extend_from_slice(format!("{mode} {name}\0").as_bytes());
            body.extend(hex::decode(id).expect("hex id"));
        }
        let f = dir.join(".raw-tree");
        std::fs::write(&f, body).expect("write");
        git(
            dir,
            &[
                "hash-object",
                "-t",
                "tree",
                "--literally",
                "-w",
                f.to_str().expect("utf8"),
            ],
        )
    }

    fn blob(dir: &Path, content: &str) -> String {
        let f = dir.join(".raw-blob");
        std::fs::write(&f, content).expect("write");
        git(dir, &["hash-object", "-w", f.to_str().expect("utf8")])
    }

    /// A repository whose `main` is a commit of the raw tree `entries`; its file:// URL.
    fn hostile_repo(build: impl Fn(&Path) -> String) -> (tempfile::TempDir, String, String) {
        let dir = tempfile::tempdir().expect("tempdir");
        git(dir.path(), &["init", "-q"]);
        let tree = build(dir.path());
        let commit = git(dir.path(), &["commit-tree", &tree, "-m", "evil"]);
        git(dir.path(), &["update-ref", "refs/heads/main", &commit]);
        let url = format!("file://{}", dir.path().display());
        (dir, url, commit)
    }

    fn export_of(url: &str, commit: &str) -> (tempfile::TempDir, Result<PathBuf, GitError>) {
        let cache_tmp = tempfile::tempdir().expect("cache");
        let cache = GitCache::open(cache_tmp.path()).expect("cache");
        let repo = fetch(
            &cache,
            url,
            &Credentials::default(),
            &TransportConfig::default(),
            T,
        )
        .expect("fetch");
        let out = cache_tmp.path().join("export");
        let res = export(&repo, url, commit, &out).map(|()| out);
        (cache_tmp, res)
    }

    #[test]
    fn a_tree_that_writes_through_its_own_symlink_is_refused_and_nothing_escapes() {
        let outside = tempfile::tempdir().expect("outside");
        let target_file = outside.path().join("pwned");
        let target_dir = outside.path().join("dir");
        std::fs::create_dir(&target_dir).expect("mkdir");
        for (first, second) in [("120000", "100644"), ("120000", "40000")] {
            let (_origin, url, commit) = hostile_repo(|d| {
                let payload = blob(d, "written by flotilla-repo-server export\n");
                let (link, second_id) = if second == "40000" {
                    let inner = raw_tree(d, &[("100644", "f.txt", &payload)]);
                    (blob(d, target_dir.to_str().expect("utf8")), inner)
                } else {
                    (blob(d, target_file.to_str().expect("utf8")), payload)
                };
                raw_tree(d, &[(first, "x", &link), (second, "x", &second_id)])
            });
            let (_c, res) = export_of(&url, &commit);
            let err = res.expect_err("duplicate entry refused");
            assert!(matches!(err, GitError::UnsafeTree { .. }), "{err}");
            assert!(err.to_string().contains("twice"), "{err}");
        }
        assert!(!target_file.exists(), "nothing written through the link");
        assert!(
            !target_dir.join("f.txt").exists(),
            "nothing written through the link"
        );
    }

    #[test]
    fn a_git_bomb_is_refused_before_it_fills_the_disk() {
        // Ten levels of one subtree referenced ten times: 10^10 files from a few kilobytes.
        let (_origin, url, commit) = hostile_repo(|d| {
            let b = blob(d, "x");
            let mut t = raw_tree(
                d,
                &(0..10)
                    .map(|i| ("100644", format!("f{i}"), b.clone()))
                    .collect::<Vec<_>>()
                    .iter()
                    .map(|(m, n, id)| (*m, n.as_str(), id.as_str()))
                    .collect::<Vec<_>>(),
            );
            for _ in 0..9 {
                let names: Vec<String> = (0..10).map(|i| format!("d{i}")).collect();
                let entries: Vec<(&str, &str, &str)> = names
                    .iter()
                    .map(|n| ("40000", n.as_str(), t.as_str()))
                    .collect();
                t = raw_tree(d, &entries);
            }
            t
        });
        let started = std::time::Instant::now();
        let cache_tmp = tempfile::tempdir().expect("cache");
        let cache = GitCache::open(cache_tmp.path()).expect("cache");
        let repo = fetch(
            &cache,
            &url,
            &Credentials::default(),
            &TransportConfig::default(),
            T,
        )
        .expect("fetch");
        let res = export_within(&repo, &url, &commit, &cache_tmp.path().join("x"), 20_000);
        let err = res.expect_err("bomb refused");
        assert!(err.to_string().contains("too large"), "{err}");
        assert!(started.elapsed() < Duration::from_secs(120));
    }

    #[test]
    fn unsafe_entry_names_are_refused() {
        for name in [".git", ".GIT", ".."] {
            let (_origin, url, commit) = hostile_repo(|d| {
                let b = blob(d, "x");
                raw_tree(d, &[("100644", name, &b)])
            });
            let (_c, res) = export_of(&url, &commit);
            let err = res.expect_err(name);
            assert!(matches!(err, GitError::UnsafeTree { .. }), "{name}: {err}");
        }
    }

    #[test]
    fn symlinks_out_of_the_repository_or_into_a_loop_refuse_the_whole_commit() {
        for target in [
            "/proc/self/environ",
            "../../../../../../etc/passwd",
            "..",
            ".",
            "loop",
        ] {
            let (_origin, url, commit) = hostile_repo(|d| {
                let link = blob(d, target);
                let cm = blob(d, "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n");
                let files = raw_tree(d, &[("120000", "loop", &link)]);
                let chart = raw_tree(d, &[("100644", "cm.yaml", &cm), ("40000", "files", &files)]);
                raw_tree(d, &[("40000", "chart", &chart)])
            });
            let (_c, res) = export_of(&url, &commit);
            let err = res.expect_err(target);
            assert!(
                matches!(err, GitError::UnsafeTree { .. }),
                "{target}: {err}"
            );
            assert!(err.to_string().contains("chart/files/loop"), "{err}");
        }
        // A link that stays inside is fine, and so is one to a sibling directory.
        let (_origin, url, commit) = hostile_repo(|d| {
            let cm = blob(d, "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n");
            let (l1, l2) = (blob(d, "../common/cm.yaml"), blob(d, "../common"));
            let common = raw_tree(d, &[("100644", "cm.yaml", &cm)]);
            let app = raw_tree(d, &[("120000", "cm.yaml", &l1), ("120000", "shared", &l2)]);
            raw_tree(d, &[("40000", "app", &app), ("40000", "common", &common)])
        });
        let (_c, res) = export_of(&url, &commit);
        res.expect("links inside the repository are kept");
    }

    #[test]
    fn links_that_loop_through_each_other_refuse_the_commit() {
        // a/l -> ../b and b/l -> ../a: each stays inside, together they loop forever.
        let (_origin, url, commit) = hostile_repo(|d| {
            let (to_a, to_b) = (blob(d, "../a"), blob(d, "../b"));
            let cm = blob(d, "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n");
            let a = raw_tree(d, &[("100644", "cm.yaml", &cm), ("120000", "l", &to_b)]);
            let b = raw_tree(d, &[("120000", "l", &to_a)]);
            raw_tree(d, &[("40000", "a", &a), ("40000", "b", &b)])
        });
        let (_c, res) = export_of(&url, &commit);
        let err = res.expect_err("loop refused");
        assert!(err.to_string().contains("form a loop"), "{err}");
        // A diamond (two links to one directory) is no loop.
        let (_origin, url, commit) = hostile_repo(|d| {
            let to_c = blob(d, "../c");
            let cm = blob(d, "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n");
            let a = raw_tree(d, &[("120000", "l", &to_c)]);
            let b = raw_tree(d, &[("120000", "l", &to_c)]);
            let c = raw_tree(d, &[("100644", "cm.yaml", &cm)]);
            raw_tree(
                d,
                &[("40000", "a", &a), ("40000", "b", &b), ("40000", "c", &c)],
            )
        });
        let (_c, res) = export_of(&url, &commit);
        res.expect("a diamond is fine");
    }

    #[test]
    fn a_link_resolved_through_another_link_is_checked_as_the_kernel_resolves_it() {
        // `d -> .` then `x -> d/../escaped`: lexically inside, really the parent of the root.
        let root = tempfile::tempdir().expect("root");
        std::os::unix::fs::symlink(".", root.path().join("d")).expect("link");
        std::os::unix::fs::symlink("d/../escaped", root.path().join("x")).expect("link");
        let links = vec![(PathBuf::from("x"), "d/../escaped".to_string())];
        let (path, why) = check_links(root.path(), &links).expect_err("escapes");
        assert_eq!(path, PathBuf::from("x"));
        assert!(why.contains("leaves the repository"), "{why}");
    }

    /// Kills the `git daemon` when the test ends, pass or fail.
    struct Daemon(std::process::Child);
    impl Drop for Daemon {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    #[test]
    fn clones_over_git_protocol_from_git_daemon() {
        let (origin, _, second) = mk_origin();
        let base = origin.path().parent().expect("parent").to_path_buf();
        let name = origin
            .path()
            .file_name()
            .expect("name")
            .to_string_lossy()
            .to_string();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        // `git-daemon` itself: the `git daemon` wrapper would leave it running when killed.
        let exec_path = Command::new("git")
            .arg("--exec-path")
            .output()
            .expect("git --exec-path");
        let daemon_bin = std::path::Path::new(String::from_utf8_lossy(&exec_path.stdout).trim())
            .join("git-daemon");
        let _daemon = Daemon(
            Command::new(daemon_bin)
                .args(["--export-all", "--reuseaddr", "--listen=127.0.0.1"])
                .arg(format!("--port={port}"))
                .arg(format!("--base-path={}", base.display()))
                .arg(&base)
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .expect("git daemon starts"),
        );
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "git daemon did not listen"
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        let url = format!("git://127.0.0.1:{port}/{name}");
        let cache_tmp = tempfile::tempdir().expect("cache");
        let cache = GitCache::open(cache_tmp.path()).expect("cache");
        let repo = fetch(
            &cache,
            &url,
            &Credentials::default(),
            &TransportConfig::default(),
            T,
        )
        .expect("clone over git://");
        assert_eq!(resolve(&repo, &url, "main").expect("branch"), second);
        fetch(
            &cache,
            &url,
            &Credentials::default(),
            &TransportConfig::default(),
            T,
        )
        .expect("fetch over git://");
    }

    #[test]
    fn credentials_answer_only_their_repositorys_origin() {
        let expected = gix::url::parse("https://git.example.com/org/repo.git".as_bytes())
            .map(|u| origin(&u))
            .ok();
        let ctx = |url: &str| gix::credentials::protocol::Context {
            url: Some(url.into()),
            ..Default::default()
        };
        assert!(asks_for_origin(
            &ctx("https://git.example.com/org/repo.git"),
            expected.as_ref()
        ));
        assert!(asks_for_origin(
            &ctx("https://git.example.com:443/other"),
            expected.as_ref()
        ));
        for elsewhere in [
            "https://attacker.example/org/repo.git",
            "https://git.example.com:8443/org/repo.git",
            "http://git.example.com/org/repo.git",
            "https://git.example.com.attacker.example/x",
        ] {
            assert!(
                !asks_for_origin(&ctx(elsewhere), expected.as_ref()),
                "{elsewhere}"
            );
        }
        let by_parts = gix::credentials::protocol::Context {
            protocol: Some("https".into()),
            host: Some("git.example.com".into()),
            ..Default::default()
        };
        assert!(asks_for_origin(&by_parts, expected.as_ref()));
        assert!(
            !asks_for_origin(&Default::default(), expected.as_ref()),
            "an unnamed request"
        );
    }

    #[test]
    fn a_proxied_or_insecure_fetch_has_its_own_cache() {
        let direct = Credentials::default();
        let proxied = Credentials {
            proxy: Some("http://proxy:3128".into()),
            ..Credentials::default()
        };
        let insecure = Credentials {
            insecure: true,
            ..Credentials::default()
        };
        let url = "https://git.example.com/org/repo.git";
        assert_eq!(cache_name(url, &direct), url);
        assert_ne!(cache_name(url, &proxied), url);
        assert_ne!(cache_name(url, &insecure), url);
        assert_ne!(cache_name(url, &proxied), cache_name(url, &insecure));
    }

    #[test]
    fn unreachable_repository_is_a_clone_error() {
        let cache_tmp = tempfile::tempdir().expect("cache");
        let cache = GitCache::open(cache_tmp.path()).expect("cache");
        let err = fetch(
            &cache,
            "file:///nonexistent/flotilla-repo",
            &Credentials::default(),
            &TransportConfig::default(),
            T,
        )
        .expect_err("no repo");
        assert!(err.is_remote(), "{err}");
    }
}
