//! Submodules, the pure part: `.gitmodules` read from a commit's tree (paths checked like tree
//! entry names), submodule URLs resolved against the superproject's URL as Git does (`./x`,
//! `../x`), the URL policy a submodule must pass (the top-level schemes, `file://` only from a
//! `file://` superproject and only when file URLs are allowed, no option look-alikes, no
//! dot-segments), and origins (scheme, host, port): credentials go only to a submodule on the
//! superproject's own origin. The fetching and writing is in [`crate::git`].

use crate::git::Credentials;
use flotilla_core::redact::has_dot_segments;

/// Largest `.gitmodules` read.
pub const MAX_GITMODULES_BYTES: usize = 256 * 1024;
/// Most submodules one `.gitmodules` may declare.
pub const MAX_MODULES: usize = 1000;

/// One `[submodule "name"]` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Module {
    pub name: String,
    /// Relative to the repository's root, `/`-separated, checked.
    pub path: String,
    /// As written (absolute or relative to the superproject).
    pub url: Option<String>,
}

/// Parse `.gitmodules`. Any declared path that could leave the tree (absolute, `..`, `.git`,
/// empty components) refuses the whole file, as `git fsck` would; later sections win over
/// earlier ones of the same name. `update` (which may name a command) is never read.
pub fn parse_gitmodules(bytes: &[u8]) -> Result<Vec<Module>, String> {
    if bytes.len() > MAX_GITMODULES_BYTES {
        return Err(format!("larger than {MAX_GITMODULES_BYTES} bytes"));
    }
    let file = gix::config::File::from_bytes_no_includes(
        bytes,
        gix::config::file::Metadata::api(),
        Default::default(),
    )
    .map_err(|e| format!("does not parse: {e}"))?;
    let mut out: Vec<Module> = Vec::new();
    for section in file.sections_by_name("submodule").into_iter().flatten() {
        let Some(name) = section.header().subsection_name() else {
            continue;
        };
        let name = String::from_utf8_lossy(name).to_string();
        let at = match out.iter().position(|m| m.name == name) {
            Some(i) => i,
            None => {
                if out.len() >= MAX_MODULES {
                    return Err(format!("declares more than {MAX_MODULES} submodules"));
                }
                out.push(Module {
                    name: name.clone(),
                    path: String::new(),
                    url: None,
                });
                out.len() - 1
            }
        };
        if let Some(path) = section.value("path") {
            let path = std::str::from_utf8(&path)
                .map_err(|_| format!("submodule {name:?}: path is not UTF-8"))?;
            out[at].path = checked_path(path)
                .map_err(|why| format!("submodule {name:?}: path {path:?} {why}"))?;
        }
        if let Some(url) = section.value("url") {
            out[at].url = Some(String::from_utf8_lossy(&url).to_string());
        }
    }
    Ok(out)
}

/// A submodule path, normalized (no trailing `/`), if every component is a name a tree may
/// hold.
fn checked_path(path: &str) -> Result<String, &'static str> {
    let trimmed = path.trim_end_matches('/');
    if trimmed.is_empty() {
        return Err("is empty");
    }
    if trimmed.starts_with('/') {
        return Err("is absolute");
    }
    for c in trimmed.split('/') {
        if c.is_empty() {
            return Err("has an empty component");
        }
        if c == "." || c == ".." {
            return Err("leaves the tree (a dot-segment)");
        }
        if c.eq_ignore_ascii_case(".git") {
            return Err("names a .git directory");
        }
        if c.contains(['\\', '\0']) {
            return Err("holds a backslash or NUL");
        }
    }
    Ok(trimmed.to_string())
}

/// Resolve a submodule URL written relative to the superproject (`./x`, `../x`) as Git does:
/// the superproject's URL is the directory each `../` climbs out of. Climbing past the URL's
/// path (into its host) is refused; anything not starting with `./` or `../` is returned as is.
pub fn resolve_url(super_url: &str, sub: &str) -> Result<String, String> {
    if !(sub.starts_with("./") || sub.starts_with("../")) {
        return Ok(sub.to_string());
    }
    let base = super_url
        .split(['?', '#'])
        .next()
        .unwrap_or(super_url)
        .trim_end_matches('/');
    // (prefix, separator after it, path components)
    let (prefix, sep, path) = if let Some(i) = base.find("://") {
        let after = &base[i + 3..];
        match after.find('/') {
            Some(j) => (&base[..i + 3 + j], "/", &after[j + 1..]),
            None => (base, "/", ""),
        }
    } else if crate::transport::scp_like(base).is_some() {
        let (host, path) = base.split_once(':').unwrap_or((base, ""));
        (&base[..host.len() + 1], "", path)
    } else {
        return Err(format!(
            "is relative, and the superproject's URL {:?} is not one it can be resolved against",
            flotilla_core::redact::redact_url(super_url)
        ));
    };
    let mut parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
    let mut rest = sub;
    loop {
        if let Some(r) = rest.strip_prefix("./") {
            rest = r;
        } else if let Some(r) = rest.strip_prefix("../") {
            if parts.pop().is_none() {
                return Err("climbs out of the superproject's host".into());
            }
            rest = r;
        } else {
            break;
        }
    }
    let rest = rest.trim_start_matches('/');
    if rest.is_empty() {
        return Err("names no repository".into());
    }
    parts.push(rest);
    Ok(format!("{prefix}{sep}{}", parts.join("/")))
}

/// Refuse a submodule URL the repo-server must not fetch (the reason), as the top-level URL
/// policy does: only https://, http://, git://, ssh:// and `user@host:path`; `file://` only when
/// file URLs are allowed *and* the superproject is itself a `file://` repository (Git's own
/// `protocol.file.allow=user`); no whitespace or control characters, dot-segments, or host,
/// user or path starting with `-` (read as an option by ssh or git).
pub fn check_url(url: &str, super_url: &str, allow_file_urls: bool) -> Result<(), String> {
    if url.is_empty() {
        return Err("is empty".into());
    }
    if url.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err("holds whitespace or control characters".into());
    }
    let lower = url.to_ascii_lowercase();
    if lower.starts_with("file://") {
        if !allow_file_urls {
            return Err(
                "is a file:// URL, and file:// repositories are disabled (--allow-file-repos)"
                    .into(),
            );
        }
        if !super_url.to_ascii_lowercase().starts_with("file://") {
            return Err("is a file:// URL in a repository that is not itself file://".into());
        }
    } else if let Some(path) = scp_path(url) {
        if path.starts_with('-') {
            return Err("has a path starting with '-'".into());
        }
    } else if !["https://", "http://", "git://", "ssh://"]
        .iter()
        .any(|s| lower.starts_with(s))
    {
        return Err(
            "is not https://, http://, git://, ssh:// or user@host:path (nor a relative ./ or ../ URL)"
                .into(),
        );
    }
    if has_dot_segments(url) {
        return Err("holds a dot-segment (/./ or /../)".into());
    }
    if url.contains("://") {
        let parsed = reqwest::Url::parse(url).map_err(|e| format!("does not parse: {e}"))?;
        if parsed.host_str().is_some_and(|h| h.starts_with('-')) {
            return Err("has a host starting with '-'".into());
        }
        if parsed.username().starts_with('-') {
            return Err("has a user starting with '-'".into());
        }
        if parsed.path().trim_start_matches('/').starts_with('-') {
            return Err("has a path starting with '-'".into());
        }
    }
    Ok(())
}

/// The path of an scp-like URL (`user@host:path`), if it is one.
fn scp_path(url: &str) -> Option<&str> {
    crate::transport::scp_like(url)?;
    url.split_once(':').map(|(_, p)| p)
}

/// Scheme, host and port of a repository URL (`user@host:path` is ssh on port 22); `None`
/// when it does not parse.
pub fn origin(url: &str) -> Option<(String, String, u16)> {
    if let Some((_, host)) = crate::transport::scp_like(url) {
        return Some(("ssh".into(), host.to_ascii_lowercase(), 22));
    }
    let parsed = reqwest::Url::parse(url).ok()?;
    let scheme = parsed.scheme().to_ascii_lowercase();
    let port = parsed.port_or_known_default().or(match scheme.as_str() {
        "git" => Some(9418),
        "ssh" => Some(22),
        _ => None,
    });
    Some((
        scheme,
        parsed.host_str().unwrap_or_default().to_ascii_lowercase(),
        port.unwrap_or(0),
    ))
}

/// Whether `a` and `b` share scheme, host and port (so `a`'s credentials may go to `b`).
pub fn same_origin(a: &str, b: &str) -> bool {
    matches!((origin(a), origin(b)), (Some(x), Some(y)) if x == y)
}

/// What a repository on another origin is fetched with: no credentials, only the settings
/// that are not secrets (`insecure`, the proxy, `enableLfs`).
pub fn anonymous(creds: &Credentials) -> Credentials {
    Credentials {
        insecure: creds.insecure,
        proxy: creds.proxy.clone(),
        no_proxy: creds.no_proxy.clone(),
        enable_lfs: creds.enable_lfs,
        ..Credentials::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_urls_resolve_against_the_superproject() {
        for (base, sub, want) in [
            (
                "https://git.example.com/org/app.git",
                "../lib.git",
                Ok("https://git.example.com/org/lib.git"),
            ),
            (
                "https://git.example.com/org/app.git/",
                "./nested",
                Ok("https://git.example.com/org/app.git/nested"),
            ),
            (
                "https://git.example.com/org/app.git",
                "../../other/lib.git",
                Ok("https://git.example.com/other/lib.git"),
            ),
            (
                "git@github.com:org/app.git",
                "../lib.git",
                Ok("git@github.com:org/lib.git"),
            ),
            (
                "git://127.0.0.1:9418/app.git",
                "../lib.git",
                Ok("git://127.0.0.1:9418/lib.git"),
            ),
            (
                "file:///srv/git/app.git",
                "../lib.git",
                Ok("file:///srv/git/lib.git"),
            ),
            (
                "https://host/lib.git",
                "https://elsewhere/x.git",
                Ok("https://elsewhere/x.git"),
            ),
            ("https://host/app.git", "../../etc/passwd", Err(())),
            ("git@github.com:app.git", "../../x", Err(())),
            ("https://host/app.git", "../", Err(())),
        ] {
            assert_eq!(
                resolve_url(base, sub).map_err(|_| ()),
                want.map(str::to_string),
                "{base} + {sub}"
            );
        }
    }

    #[test]
    fn the_url_policy_matches_the_top_level_one() {
        let sup = "https://git.example.com/org/app.git";
        for ok in [
            "https://git.example.com/org/lib.git",
            "git://host/lib.git",
            "ssh://git@host/lib.git",
            "git@host:org/lib.git",
        ] {
            assert_eq!(check_url(ok, sup, false), Ok(()), "{ok}");
        }
        for bad in [
            "file:///etc",
            "ext::sh -c touch% /tmp/pwned",
            "ext::true",
            "fd::17",
            "/etc/passwd",
            "../x",
            "https://-oProxyCommand=x/lib.git",
            "ssh://-oProxyCommand=touch%20x/lib.git",
            "ssh://host/-upload-pack=x",
            "git@host:-x",
            "https://host/a/../b.git",
            "https://host/a b.git",
            "",
        ] {
            assert!(check_url(bad, sup, false).is_err(), "{bad} refused");
        }
        // file:// only from a file:// superproject, and only when allowed.
        assert!(check_url("file:///srv/lib.git", sup, true).is_err());
        assert!(check_url("file:///srv/lib.git", "file:///srv/app.git", false).is_err());
        assert_eq!(
            check_url("file:///srv/lib.git", "file:///srv/app.git", true),
            Ok(())
        );
    }

    #[test]
    fn origins() {
        assert!(same_origin(
            "https://h.example/a.git",
            "https://H.example:443/b.git"
        ));
        assert!(!same_origin(
            "https://h.example/a.git",
            "http://h.example/a.git"
        ));
        assert!(!same_origin(
            "https://h.example/a.git",
            "https://h.example:8443/a.git"
        ));
        assert!(!same_origin(
            "https://h.example/a.git",
            "https://evil.example/a.git"
        ));
        assert!(same_origin(
            "git@h.example:a.git",
            "ssh://git@h.example/b.git"
        ));
        assert!(same_origin(
            "git://127.0.0.1/a.git",
            "git://127.0.0.1:9418/b.git"
        ));
        assert!(!same_origin("not a url", "not a url"));
    }

    #[test]
    fn gitmodules_paths_that_leave_the_tree_are_refused() {
        let ok = parse_gitmodules(
            b"[submodule \"lib\"]\n\tpath = vendor/lib/\n\turl = ../lib.git\n[submodule \"lib\"]\n\turl = ../lib2.git\n",
        )
        .expect("parses");
        assert_eq!(
            ok,
            vec![Module {
                name: "lib".into(),
                path: "vendor/lib".into(),
                url: Some("../lib2.git".into()),
            }]
        );
        for bad in [
            "../../outside",
            "/etc",
            "a/../../b",
            ".git/hooks",
            "a//b",
            ".",
        ] {
            let text = format!("[submodule \"x\"]\n\tpath = {bad}\n\turl = ../x.git\n");
            assert!(parse_gitmodules(text.as_bytes()).is_err(), "{bad}");
        }
        assert!(parse_gitmodules(b"[submodule \"x\"\n").is_err());
    }
}
