//! Git with gix: a bare cache per repository URL (file://, git://, http(s):// with basic or
//! bearer credentials), revision resolution (branch, tag, SHA, HEAD) and export of a commit's
//! tree to a directory for the renderers.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

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
    #[error("writing {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl GitError {
    /// Whether the failure is about the remote (unreachable, refused, bad credentials) rather
    /// than about what was asked of it.
    pub fn is_remote(&self) -> bool {
        matches!(self, Self::Fetch { .. })
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
    /// Skip TLS certificate verification for https:// (discouraged).
    pub insecure: bool,
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
            .finish()
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

/// Where a repository's bare cache lives under `cache_root` (one directory per URL).
pub fn cache_dir(cache_root: &Path, url: &str) -> PathBuf {
    let safe: String = url
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    cache_root.join(safe)
}

/// The local ref that mirrors the remote's `HEAD` (its default branch).
const REMOTE_HEAD: &str = "refs/remotes/origin/HEAD";

/// Open the bare cache of `url`, creating it on first use.
pub fn open_cache(cache_root: &Path, url: &str) -> Result<gix::Repository, GitError> {
    let dir = cache_dir(cache_root, url);
    let open_err = |e: &dyn std::error::Error| GitError::Open {
        url: url.to_string(),
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
/// anonymous, so nothing about it is written to the cache's config. `timeout` bounds the
/// transfer (checked while data moves).
pub fn fetch(
    cache_root: &Path,
    url: &str,
    creds: &Credentials,
    timeout: Duration,
) -> Result<gix::Repository, GitError> {
    let fetch_err = |e: &dyn std::error::Error| GitError::Fetch {
        url: url.to_string(),
        message: describe(e),
    };
    let mut repo = open_cache(cache_root, url)?;
    if creds.bearer_token.is_some() || creds.insecure {
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
        cfg.commit().map_err(|e| fetch_err(&e))?;
    }
    let interrupt = Arc::new(AtomicBool::new(false));
    let _watchdog = Watchdog::start(interrupt.clone(), timeout);
    let remote = repo
        .remote_at(url)
        .map_err(|e| fetch_err(&e))?
        .with_refspecs(
            [
                "+refs/heads/*:refs/heads/*",
                "+refs/tags/*:refs/tags/*",
                "+HEAD:refs/remotes/origin/HEAD",
            ],
            gix::remote::Direction::Fetch,
        )
        .map_err(|e| fetch_err(&e))?;
    let account = match (&creds.username, &creds.password) {
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
    };
    // Never fall back to the host's credential helpers or a prompt: a server has no terminal.
    let mut connection = remote
        .connect(gix::remote::Direction::Fetch)
        .map_err(|e| fetch_err(&e))?
        .with_credentials(move |action| match action {
            gix::credentials::helper::Action::Get(ctx) => {
                Ok(account
                    .clone()
                    .map(|identity| gix::credentials::protocol::Outcome {
                        identity,
                        next: ctx.into(),
                    }))
            }
            _ => Ok(None),
        });
    if creds.insecure && url.starts_with("https://") {
        use gix::protocol::transport::client::blocking_io::http;
        if let Ok(Some(mut opts)) = repo.transport_options(url, None) {
            if let Some(o) = opts.downcast_mut::<http::Options>() {
                o.backend = Some(Arc::new(std::sync::Mutex::new(http::reqwest::Options {
                    configure_client: Some(Box::new(|b| Ok(b.danger_accept_invalid_certs(true)))),
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
                    url: url.to_string(),
                    message: format!("timed out after {timeout:?}"),
                }
            } else {
                fetch_err(&e)
            }
        })?;
    Ok(repo)
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

/// Resolve `revision` (branch, tag, full or short SHA; empty or `HEAD` = the remote's default
/// branch) to a full commit SHA.
pub fn resolve(repo: &gix::Repository, url: &str, revision: &str) -> Result<String, GitError> {
    let rev = if revision.is_empty() {
        "HEAD"
    } else {
        revision
    };
    // The bare cache's own HEAD is meaningless; HEAD means the remote's default branch.
    let candidates: Vec<String> = if rev == "HEAD" {
        vec![REMOTE_HEAD.to_string()]
    } else {
        vec![
            format!("refs/heads/{rev}"),
            format!("refs/tags/{rev}"),
            rev.to_string(),
        ]
    };
    for c in &candidates {
        if let Ok(id) = repo.rev_parse_single(c.as_str())
            && let Ok(obj) = id.object()
            && let Ok(commit) = obj.peel_to_commit()
        {
            return Ok(commit.id.to_string());
        }
    }
    Err(GitError::UnknownRevision {
        url: url.to_string(),
        revision: rev.to_string(),
    })
}

/// Write the tree of `commit` into `dest` (files, executables and symlinks; submodules skipped).
pub fn export(
    repo: &gix::Repository,
    url: &str,
    commit: &str,
    dest: &Path,
) -> Result<(), GitError> {
    let read_err = |e: &dyn std::error::Error| GitError::Read {
        url: url.to_string(),
        commit: commit.to_string(),
        message: describe(e),
    };
    let id = gix::ObjectId::from_hex(commit.as_bytes()).map_err(|e| read_err(&e))?;
    let tree = repo
        .find_commit(id)
        .map_err(|e| read_err(&e))?
        .tree()
        .map_err(|e| read_err(&e))?;
    write_tree(repo, &tree, dest, &read_err)
}

fn write_tree(
    repo: &gix::Repository,
    tree: &gix::Tree<'_>,
    dest: &Path,
    read_err: &dyn Fn(&dyn std::error::Error) -> GitError,
) -> Result<(), GitError> {
    use gix::object::tree::EntryKind;
    std::fs::create_dir_all(dest).map_err(|source| GitError::Write {
        path: dest.to_path_buf(),
        source,
    })?;
    for entry in tree.iter() {
        let entry = entry.map_err(|e| read_err(&e))?;
        let name = entry.filename().to_string();
        if name.contains('/') || name == ".." || name == "." {
            continue;
        }
        let path = dest.join(&name);
        let write_err = |source| GitError::Write {
            path: path.clone(),
            source,
        };
        match entry.mode().kind() {
            EntryKind::Tree => {
                let sub = repo
                    .find_tree(entry.oid().to_owned())
                    .map_err(|e| read_err(&e))?;
                write_tree(repo, &sub, &path, read_err)?;
            }
            EntryKind::Blob | EntryKind::BlobExecutable => {
                let blob = repo
                    .find_blob(entry.oid().to_owned())
                    .map_err(|e| read_err(&e))?;
                std::fs::write(&path, &blob.data).map_err(write_err)?;
            }
            EntryKind::Link => {
                let blob = repo
                    .find_blob(entry.oid().to_owned())
                    .map_err(|e| read_err(&e))?;
                let target = String::from_utf8_lossy(&blob.data).to_string();
                std::os::unix::fs::symlink(target, &path).map_err(write_err)?;
            }
            EntryKind::Commit => {}
        }
    }
    Ok(())
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
        let cache = tempfile::tempdir().expect("cache");
        let repo = fetch(cache.path(), &url, &Credentials::default(), T).expect("clone");
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
        let repo = fetch(cache.path(), &url, &Credentials::default(), T).expect("fetch");
        assert_eq!(resolve(&repo, &url, "main").expect("branch"), third);

        let out = tempfile::tempdir().expect("out");
        export(&repo, &url, &first, out.path()).expect("export");
        let objs = crate::render::directory::render(out.path(), "app", &Default::default())
            .expect("render");
        assert_eq!(objs[0]["metadata"]["name"], "one");
    }

    #[test]
    fn head_is_the_remotes_default_branch_and_credentials_stay_off_disk() {
        let (origin, first, second) = mk_origin();
        // A branch named after the init default of the cache must not shadow the remote HEAD.
        git(origin.path(), &["branch", "master", &first]);
        let url = format!("file://{}", origin.path().display());
        let cache = tempfile::tempdir().expect("cache");
        let creds = Credentials {
            bearer_token: Some("s3cret-token".into()),
            ..Default::default()
        };
        let repo = fetch(cache.path(), &url, &creds, T).expect("fetch");
        assert_eq!(resolve(&repo, &url, "HEAD").expect("HEAD"), second);
        assert_eq!(resolve(&repo, &url, "master").expect("master"), first);
        assert!(has_commit(&repo, &first));
        assert!(!has_commit(&repo, &"0".repeat(40)));
        let config =
            std::fs::read_to_string(cache_dir(cache.path(), &url).join("config")).expect("config");
        assert!(!config.contains("s3cret"), "{config}");
        assert!(!format!("{creds:?}").contains("s3cret"));
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
        let cache = tempfile::tempdir().expect("cache");
        let repo =
            fetch(cache.path(), &url, &Credentials::default(), T).expect("clone over git://");
        assert_eq!(resolve(&repo, &url, "main").expect("branch"), second);
        fetch(cache.path(), &url, &Credentials::default(), T).expect("fetch over git://");
    }

    #[test]
    fn unreachable_repository_is_a_clone_error() {
        let cache = tempfile::tempdir().expect("cache");
        let err = fetch(
            cache.path(),
            "file:///nonexistent/flotilla-repo",
            &Credentials::default(),
            T,
        )
        .expect_err("no repo");
        assert!(err.is_remote(), "{err}");
    }
}
