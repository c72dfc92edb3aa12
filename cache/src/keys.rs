//! The key scheme, in one place: every key starts with `flotilla:` and a kind, so a shared
//! Redis can be inspected (and flushed by kind) safely.

use sha2::{Digest, Sha256};

/// Prefix of every key Flotilla writes.
pub const PREFIX: &str = "flotilla";

fn short_hash(parts: &[&[u8]]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_le_bytes());
        h.update(p);
    }
    hex::encode(&h.finalize()[..16])
}

/// Rendered manifests of one source at one commit, independent of the Application.
/// `source_digest` covers everything in the source that shapes the render.
pub fn manifests(commit: &str, source_digest: &str) -> String {
    format!("{PREFIX}:m:{commit}:{source_digest}")
}

/// The part of a [`manifests`] (or [`app_manifests`]) key after its commit: the same source
/// (and app) at another commit has the same one. `None` for other keys.
pub fn manifests_source(key: &str) -> Option<&str> {
    let rest = key.strip_prefix(PREFIX)?.strip_prefix(":m:")?;
    rest.split_once(':').map(|(_commit, source)| source)
}

/// The same render for one Application (name, destination namespace): used only when a
/// renderer's output depends on them (e.g. a Helm release name).
pub fn app_manifests(base: &str, app: &str, namespace: &str) -> String {
    format!("{base}:{}", app_part(app, namespace))
}

/// The part an app-specific key adds to its base key.
pub fn app_part(app: &str, namespace: &str) -> String {
    short_hash(&[app.as_bytes(), namespace.as_bytes()])
}

/// The digest of a source as rendered: every field of the wire source except
/// `target_revision` (the commit is in the key), so apps tracking `main` and `HEAD` at one
/// commit share a render. Computed by whoever stores a render, from the request it rendered,
/// and by every reader: a client never names a cache key. Map fields encode in key order, so
/// the digest is stable everywhere.
///
/// `scope` is the project the request's credentials are scoped to (empty when global or
/// none): renders made with one project's credentials are never found by another project.
pub fn source_digest(src: &flotilla_proto::repo::v1::ApplicationSource, scope: &str) -> String {
    use prost::Message;
    let mut canonical = src.clone();
    canonical.target_revision.clear();
    let bytes = canonical.encode_to_vec();
    if scope.is_empty() {
        digest(&bytes)
    } else {
        short_hash(&[&bytes, scope.as_bytes()])
    }
}

/// The shared cache keys of a render of `src` at `commit`: (every app, this app).
pub fn for_source(
    commit: &str,
    src: &flotilla_proto::repo::v1::ApplicationSource,
    scope: &str,
    app: &str,
    namespace: &str,
) -> (String, String) {
    let base = manifests(commit, &source_digest(src, scope));
    let app_key = app_manifests(&base, app, namespace);
    (base, app_key)
}

/// The lock a repo-server holds while it renders `key`, so replicas render it once.
pub fn render_lock(key: &str) -> String {
    format!("{PREFIX}:lock:{key}")
}

/// A repository's resolved `revision` (branch, tag, HEAD).
pub fn revision(repo_url: &str, revision: &str) -> String {
    format!(
        "{PREFIX}:r:{}:{}",
        short_hash(&[normalize_repo_url(repo_url).as_bytes()]),
        short_hash(&[revision.as_bytes()])
    )
}

/// One form of a repository URL for matching: lowercase, no trailing `/` or `.git`, and SSH
/// (`git@host:org/repo`) and HTTP(S) forms of one repository made equal.
pub fn normalize_repo_url(url: &str) -> String {
    let mut u = url.trim().to_ascii_lowercase();
    for scheme in ["https://", "http://", "ssh://", "git://", "git+ssh://"] {
        if let Some(rest) = u.strip_prefix(scheme) {
            u = rest.to_string();
            break;
        }
    }
    // user@host:path (scp-like) and user@host/path
    if let Some((user_host, path)) = u.split_once(':')
        && !user_host.contains('/')
        && !path.starts_with(|c: char| c.is_ascii_digit())
    {
        u = format!("{user_host}/{path}");
    }
    if let Some((maybe_user, rest)) = u.split_once('@')
        && !maybe_user.contains('/')
    {
        u = rest.to_string();
    }
    let u = u.trim_end_matches('/');
    u.strip_suffix(".git").unwrap_or(u).to_string()
}

/// The digest of a source as a key part: a hex SHA-256 prefix of its canonical bytes.
pub fn digest(bytes: &[u8]) -> String {
    short_hash(&[bytes])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_source_part_of_a_render_key_leaves_out_the_commit() {
        let (a, b) = (manifests("c1", "d"), manifests("c2", "d"));
        assert_eq!(manifests_source(&a), Some("d"));
        assert_eq!(manifests_source(&a), manifests_source(&b));
        let app = app_manifests(&a, "web", "ns");
        assert_eq!(
            manifests_source(&app),
            manifests_source(&app_manifests(&b, "web", "ns"))
        );
        assert_ne!(manifests_source(&app), manifests_source(&a));
        assert_eq!(manifests_source(&render_lock(&a)), None);
    }

    #[test]
    fn one_repository_in_every_url_form_is_one_key() {
        let forms = [
            "https://github.com/Org/Repo.git",
            "https://github.com/org/repo",
            "https://github.com/org/repo/",
            "git@github.com:org/repo.git",
            "ssh://git@github.com/org/repo.git",
            "http://user@github.com/org/repo",
        ];
        for f in forms {
            assert_eq!(normalize_repo_url(f), "github.com/org/repo", "{f}");
            assert_eq!(revision(f, "main"), revision(forms[0], "main"));
        }
        // A port is not an scp-like path.
        assert_eq!(
            normalize_repo_url("git://127.0.0.1:9418/apps.git"),
            "127.0.0.1:9418/apps"
        );
        assert_ne!(
            revision("https://github.com/org/repo", "main"),
            revision("https://github.com/org/other", "main")
        );
        assert_ne!(revision(forms[0], "main"), revision(forms[0], "dev"));
    }

    #[test]
    fn keys_are_prefixed_and_app_keys_extend_the_base() {
        let base = manifests("abc", "d1");
        assert_eq!(base, "flotilla:m:abc:d1");
        let a = app_manifests(&base, "web", "prod");
        assert!(a.starts_with(&base) && a != base);
        assert_ne!(a, app_manifests(&base, "web", "dev"));
        assert_ne!(
            app_manifests(&base, "ab", "c"),
            app_manifests(&base, "a", "bc")
        );
        assert_eq!(render_lock(&base), "flotilla:lock:flotilla:m:abc:d1");
    }
}
