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

/// Whether `src` reads files through ref sources: a Helm value file or file parameter path
/// that starts with `$` (`$values/envs/prod.yaml`), which in an Application with `spec.sources`
/// names a ref source.
pub fn reads_refs(src: &flotilla_proto::repo::v1::ApplicationSource) -> bool {
    use flotilla_proto::repo::v1::application_source::Kind;
    match &src.kind {
        Some(Kind::Helm(h)) => h
            .value_files
            .iter()
            .map(String::as_str)
            .chain(h.file_parameters.iter().map(|p| p.path.as_str()))
            .any(|p| p.starts_with('$')),
        _ => false,
    }
}

/// The digest of a render of `src` in an Application with `spec.sources`
/// (`multiple_sources`) that reads files from the ref sources `refs`, each at its commit.
/// A render that reads no ref source has its plain [`source_digest`] (shared with the same
/// source anywhere); one that does also covers every ref source's name, repository, credential
/// scope and commit, so renders with different ref commits never share a cache entry (the
/// commit in the key is only the source's own).
pub fn render_digest(
    src: &flotilla_proto::repo::v1::ApplicationSource,
    scope: &str,
    multiple_sources: bool,
    refs: &[flotilla_proto::repo::v1::RefSource],
) -> String {
    let base = source_digest(src, scope);
    if refs.is_empty() && !(multiple_sources && reads_refs(src)) {
        return base;
    }
    let mut parts: Vec<&[u8]> = vec![base.as_bytes(), b"refs"];
    for r in refs {
        let (url, ref_scope) = r
            .repo
            .as_ref()
            .map(|p| (p.url.as_str(), p.credential_scope.as_str()))
            .unwrap_or_default();
        parts.extend([
            r.name.as_bytes(),
            url.as_bytes(),
            ref_scope.as_bytes(),
            r.commit_sha.as_bytes(),
        ]);
    }
    short_hash(&parts)
}

/// The shared cache keys of a render of `src` at `commit` that reads ref sources (see
/// [`render_digest`]): (every app, this app).
pub fn for_render(
    commit: &str,
    src: &flotilla_proto::repo::v1::ApplicationSource,
    scope: &str,
    multiple_sources: bool,
    refs: &[flotilla_proto::repo::v1::RefSource],
    app: &str,
    namespace: &str,
) -> (String, String) {
    let base = manifests(commit, &render_digest(src, scope, multiple_sources, refs));
    let app_key = app_manifests(&base, app, namespace);
    (base, app_key)
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
    for scheme in [
        "https://",
        "http://",
        "ssh://",
        "git://",
        "git+ssh://",
        "oci://",
    ] {
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
    fn renders_reading_ref_sources_are_keyed_by_every_ref_commit() {
        use flotilla_proto::repo::v1 as pb;
        let src = |value_file: &str| pb::ApplicationSource {
            repo_url: "https://charts/x".into(),
            chart: "web".into(),
            kind: Some(pb::application_source::Kind::Helm(pb::HelmSource {
                value_files: vec![value_file.into()],
                ..Default::default()
            })),
            ..Default::default()
        };
        let r = |commit: &str, scope: &str| pb::RefSource {
            name: "values".into(),
            repo: Some(pb::Repository {
                url: "https://git/values".into(),
                credential_scope: scope.into(),
                password: commit.repeat(2),
                ..Default::default()
            }),
            commit_sha: commit.into(),
        };
        let plain = src("values.yaml");
        // Nothing read from a ref: the plain digest, shared with single-source apps.
        assert_eq!(
            render_digest(&plain, "", true, &[]),
            source_digest(&plain, "")
        );
        let refd = src("$values/prod.yaml");
        assert_eq!(
            render_digest(&refd, "", false, &[]),
            source_digest(&refd, ""),
            "a `$` path in a single-source app is a plain path"
        );
        let a = for_render("c1", &refd, "", true, &[r("v1", "")], "app", "ns");
        let b = for_render("c1", &refd, "", true, &[r("v2", "")], "app", "ns");
        assert_ne!(a, b, "another ref commit is another render");
        assert_ne!(manifests_source(&a.0), manifests_source(&b.0));
        assert_ne!(
            a,
            for_render("c1", &refd, "", true, &[r("v1", "p")], "app", "ns"),
            "another credential scope is another render"
        );
        assert_ne!(a, for_source("c1", &refd, "", "app", "ns"));
        assert_ne!(a.0, for_render("c1", &refd, "", true, &[], "app", "ns").0);
        // Credentials are not part of a key.
        let mut same = r("v1", "");
        if let Some(repo) = same.repo.as_mut() {
            repo.password = "other".into();
        }
        assert_eq!(a, for_render("c1", &refd, "", true, &[same], "app", "ns"));
        assert_eq!(render_digest(&refd, "", true, &[r("v1", "")]).len(), 32);
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
