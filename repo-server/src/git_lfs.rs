//! Git LFS for `enableLfs` repositories: pointer files in an exported tree are replaced with
//! their objects, fetched with the LFS batch API (`POST <repo>.git/info/lfs/objects/batch`,
//! `basic` transfer, then a GET of each object's `actions.download.href` with its headers) over
//! the repository's own HTTP settings (CAs, client certificate, proxy). The repository's
//! credentials go only to its own origin (scheme, host, port); an object URL elsewhere gets
//! just the headers the batch answer gave for it. Every object is bounded (per object, in
//! total, in count, in time) and checked against its pointer's size and SHA-256 before it
//! replaces the pointer. LFS over ssh:// (`git-lfs-authenticate`) and a repository's
//! `.lfsconfig` (`lfs.url`) are not supported: objects come from the repository's own URL.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use crate::git::Credentials;
use crate::transport::{HttpSettings, TransportConfig};
use flotilla_core::redact::redact_url;

/// The pointer's first line (and the pre-1.0 one Git LFS still reads).
const VERSIONS: [&str; 2] = [
    "version https://git-lfs.github.com/spec/v1",
    "version https://hawser.github.com/spec/v1",
];
/// Largest blob read as a pointer (Git LFS's own limit).
pub const MAX_POINTER_BYTES: usize = 1024;
/// Objects per batch request (Git LFS's own batch size).
const BATCH_SIZE: usize = 100;
/// Largest batch answer read.
const MAX_BATCH_RESPONSE: u64 = 8 * 1024 * 1024;
/// Most headers one download action may carry.
const MAX_ACTION_HEADERS: usize = 32;

/// A Git LFS pointer: the object's SHA-256 (lowercase hex) and size.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Pointer {
    pub oid: String,
    pub size: u64,
}

/// Read `data` as a pointer file (`version …\noid sha256:<64 hex>\nsize <n>\n`), strictly:
/// anything else (extensions included) is an ordinary file and stays as it is.
pub fn parse_pointer(data: &[u8]) -> Option<Pointer> {
    if data.len() > MAX_POINTER_BYTES {
        return None;
    }
    let text = std::str::from_utf8(data).ok()?;
    let text = text.strip_suffix('\n').unwrap_or(text);
    let mut lines = text.split('\n');
    let version = lines.next()?;
    if !VERSIONS.contains(&version) {
        return None;
    }
    let oid = lines.next()?.strip_prefix("oid sha256:")?;
    if oid.len() != 64 || !oid.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return None;
    }
    let size = lines.next()?.strip_prefix("size ")?;
    if size.is_empty()
        || !size.bytes().all(|b| b.is_ascii_digit())
        || (size.len() > 1 && size.starts_with('0'))
    {
        return None;
    }
    let size = size.parse().ok()?;
    if lines.next().is_some() {
        return None;
    }
    Some(Pointer {
        oid: oid.to_string(),
        size,
    })
}

/// Bounds on what one export downloads.
#[derive(Debug, Clone)]
pub struct LfsLimits {
    /// Largest single object.
    pub max_object_bytes: u64,
    /// Most bytes downloaded for one repository's tree.
    pub max_total_bytes: u64,
    /// Most distinct objects.
    pub max_objects: usize,
    /// Longest the downloads for one repository's tree may take.
    pub timeout: Duration,
}

impl Default for LfsLimits {
    fn default() -> Self {
        Self {
            max_object_bytes: 512 * 1024 * 1024,
            max_total_bytes: 2 * 1024 * 1024 * 1024,
            max_objects: 10_000,
            timeout: Duration::from_secs(300),
        }
    }
}

/// Why LFS objects could not be put in place.
#[derive(Debug, thiserror::Error)]
pub enum LfsError {
    /// The repository's transport has no LFS support here.
    #[error("{0}")]
    Unsupported(String),
    /// An object was refused: over a limit, or not what its pointer says.
    #[error("{0}")]
    Refused(String),
    /// The LFS server failed or answered something unusable.
    #[error("{0}")]
    Server(String),
    #[error("writing {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The LFS API endpoint of a repository URL: `<url>/info/lfs` for a URL ending in `.git`,
/// `<url>.git/info/lfs` otherwise (Git LFS's rule); http(s) only, user info dropped.
pub fn endpoint(repo_url: &str) -> Result<String, LfsError> {
    let mut url = reqwest::Url::parse(repo_url).map_err(|_| {
        LfsError::Unsupported(format!(
            "Git LFS needs an http(s):// repository URL, not {}",
            redact_url(repo_url)
        ))
    })?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(LfsError::Unsupported(format!(
            "Git LFS is fetched over http(s):// only (not {}://)",
            url.scheme()
        )));
    }
    let _ = url.set_username("");
    let _ = url.set_password(None);
    url.set_query(None);
    url.set_fragment(None);
    let base = url.as_str().trim_end_matches('/').to_string();
    Ok(if base.ends_with(".git") {
        format!("{base}/info/lfs")
    } else {
        format!("{base}.git/info/lfs")
    })
}

/// Where objects come from: the repository, its credentials and transport settings.
#[derive(Debug, Clone, Copy)]
pub struct LfsSource<'a> {
    pub url: &'a str,
    pub creds: &'a Credentials,
    pub transport: &'a TransportConfig,
}

#[derive(serde::Serialize)]
struct BatchRequest<'a> {
    operation: &'static str,
    transfers: [&'static str; 1],
    objects: Vec<BatchObjectRef<'a>>,
    hash_algo: &'static str,
}

#[derive(serde::Serialize)]
struct BatchObjectRef<'a> {
    oid: &'a str,
    size: u64,
}

#[derive(serde::Deserialize)]
struct BatchResponse {
    #[serde(default)]
    transfer: Option<String>,
    #[serde(default)]
    objects: Vec<BatchObject>,
}

#[derive(serde::Deserialize)]
struct BatchObject {
    oid: String,
    #[serde(default)]
    size: u64,
    #[serde(default)]
    actions: Option<Actions>,
    #[serde(default)]
    error: Option<ObjectError>,
}

#[derive(serde::Deserialize)]
struct Actions {
    download: Option<Action>,
}

#[derive(serde::Deserialize, Clone)]
struct Action {
    href: String,
    #[serde(default)]
    header: HashMap<String, String>,
}

#[derive(serde::Deserialize)]
struct ObjectError {
    #[serde(default)]
    code: i64,
    #[serde(default)]
    message: String,
}

/// Replace the pointer files `files` (paths relative to `root`, each a regular file the export
/// wrote) with their objects. At most `max_write` bytes are written (the export's remaining
/// budget); returns the bytes written.
pub fn smudge(
    src: &LfsSource<'_>,
    limits: &LfsLimits,
    root: &Path,
    files: &[(PathBuf, Pointer)],
    max_write: u64,
) -> Result<u64, LfsError> {
    if files.is_empty() {
        return Ok(0);
    }
    let started = Instant::now();
    let deadline = started + limits.timeout;
    // Distinct objects, in first-seen order.
    let mut wanted: Vec<&Pointer> = Vec::new();
    for (_, p) in files {
        if !wanted.contains(&p) {
            wanted.push(p);
        }
    }
    if wanted.len() > limits.max_objects {
        return Err(LfsError::Refused(format!(
            "the tree points at {} LFS objects, more than the limit of {}",
            wanted.len(),
            limits.max_objects
        )));
    }
    if let Some((path, p)) = files.iter().find(|(_, p)| p.size > limits.max_object_bytes) {
        return Err(LfsError::Refused(format!(
            "{}: the LFS object of {} bytes is larger than the limit of {} bytes",
            path.display(),
            p.size,
            limits.max_object_bytes
        )));
    }
    let total: u64 = wanted.iter().map(|p| p.size).sum();
    let written: u64 = files.iter().map(|(_, p)| p.size).sum();
    if total > limits.max_total_bytes || written > max_write {
        return Err(LfsError::Refused(format!(
            "the tree's LFS objects ({total} bytes) are larger than the limit of {} bytes",
            limits.max_total_bytes.min(max_write)
        )));
    }
    let client = Clients::new(src)?;
    let endpoint = endpoint(src.url)?;
    let auth = client.repo_auth(src, deadline)?;
    let mut actions: HashMap<String, Action> = HashMap::new();
    for chunk in wanted.chunks(BATCH_SIZE) {
        batch(
            &client,
            &endpoint,
            auth.as_deref(),
            chunk,
            deadline,
            &mut actions,
        )?;
    }
    let staging = root.parent().unwrap_or(root);
    let mut downloaded: HashMap<&str, tempfile::NamedTempFile> = HashMap::new();
    for p in &wanted {
        let action = actions.get(&p.oid).ok_or_else(|| {
            LfsError::Server(format!("the LFS server gave no download for {}", p.oid))
        })?;
        let file = download(
            &client,
            src.url,
            auth.as_deref(),
            action,
            p,
            staging,
            deadline,
        )?;
        downloaded.insert(p.oid.as_str(), file);
    }
    let mut out = 0;
    for (rel, p) in files {
        let target = root.join(rel);
        let Some(obj) = downloaded.get(p.oid.as_str()) else {
            continue;
        };
        replace(obj.path(), &target)?;
        out += p.size;
    }
    tracing::info!(
        repo = %redact_url(src.url),
        objects = wanted.len(),
        files = files.len(),
        bytes = total,
        seconds = started.elapsed().as_secs_f64(),
        "LFS objects fetched"
    );
    Ok(out)
}

/// Put the object at `obj` where the pointer file `target` is, keeping its mode (through a
/// temporary file renamed over it: nothing is written through an existing path).
fn replace(obj: &Path, target: &Path) -> Result<(), LfsError> {
    use std::os::unix::fs::PermissionsExt;
    let werr = |source| LfsError::Write {
        path: target.to_path_buf(),
        source,
    };
    let meta = std::fs::symlink_metadata(target).map_err(werr)?;
    if !meta.file_type().is_file() {
        return Err(werr(std::io::Error::other("not a regular file")));
    }
    let dir = target.parent().unwrap_or(target);
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(werr)?;
    let mut src = std::fs::File::open(obj).map_err(werr)?;
    std::io::copy(&mut src, tmp.as_file_mut()).map_err(werr)?;
    std::fs::set_permissions(
        tmp.path(),
        std::fs::Permissions::from_mode(meta.permissions().mode() & 0o755),
    )
    .map_err(werr)?;
    tmp.persist(target).map_err(|e| werr(e.error))?;
    Ok(())
}

/// HTTP clients: one for the repository's origin (its client certificate), one per other host
/// (CAs and proxy only).
struct Clients {
    repo: reqwest::blocking::Client,
    anonymous: Credentials,
    transport: TransportConfig,
    other: std::cell::RefCell<HashMap<String, reqwest::blocking::Client>>,
}

fn build(settings: &HttpSettings) -> Result<reqwest::blocking::Client, LfsError> {
    settings
        .apply_blocking(
            reqwest::blocking::Client::builder()
                .redirect(reqwest::redirect::Policy::limited(5))
                .timeout(None::<Duration>),
        )
        .build()
        .map_err(|e| LfsError::Server(crate::helm_repo::describe_reqwest(&e)))
}

impl Clients {
    fn new(src: &LfsSource<'_>) -> Result<Self, LfsError> {
        let settings = HttpSettings::for_repo(src.transport, src.url, src.creds)
            .map_err(|e| LfsError::Unsupported(e.0))?;
        Ok(Self {
            repo: build(&settings)?,
            anonymous: crate::git_submodule::anonymous(src.creds),
            transport: src.transport.clone(),
            other: Default::default(),
        })
    }

    /// The client for `url`: the repository's own on its origin, else one without secrets.
    fn for_url(&self, repo_url: &str, url: &str) -> Result<reqwest::blocking::Client, LfsError> {
        if crate::git_submodule::same_origin(repo_url, url) {
            return Ok(self.repo.clone());
        }
        let key = crate::git_submodule::origin(url)
            .map(|(s, h, p)| format!("{s}://{h}:{p}"))
            .unwrap_or_default();
        if let Some(c) = self.other.borrow().get(&key) {
            return Ok(c.clone());
        }
        let settings = HttpSettings::for_repo(&self.transport, url, &self.anonymous)
            .map_err(|e| LfsError::Server(e.0))?;
        let c = build(&settings)?;
        self.other.borrow_mut().insert(key, c.clone());
        Ok(c)
    }

    /// The `Authorization` value for the repository's own origin, if it has credentials.
    fn repo_auth(
        &self,
        src: &LfsSource<'_>,
        deadline: Instant,
    ) -> Result<Option<String>, LfsError> {
        use base64::Engine;
        let basic = |u: &str, p: &str| {
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"))
            )
        };
        let c = src.creds;
        let auth = if let Some(app) = &c.github_app {
            let token = app
                .installation_token(src.transport, remaining(deadline)?)
                .map_err(|e| LfsError::Server(e.to_string()))?;
            Some(basic("x-access-token", &token))
        } else if let Some(token) = &c.bearer_token {
            Some(format!("Bearer {token}"))
        } else {
            match (&c.username, &c.password) {
                (Some(u), Some(p)) => Some(basic(u, p)),
                (None, Some(p)) => Some(basic("git", p)),
                _ => None,
            }
        };
        if auth.is_some() && src.url.to_ascii_lowercase().starts_with("http://") {
            return Err(LfsError::Unsupported(
                "refusing to send credentials in clear text over http:// to the LFS server".into(),
            ));
        }
        Ok(auth)
    }
}

/// Time left before `deadline`, or a timeout error.
fn remaining(deadline: Instant) -> Result<Duration, LfsError> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        Err(LfsError::Server("timed out fetching LFS objects".into()))
    } else {
        Ok(left)
    }
}

/// One batch request; the download actions it returns go into `out`.
fn batch(
    clients: &Clients,
    endpoint: &str,
    auth: Option<&str>,
    objects: &[&Pointer],
    deadline: Instant,
    out: &mut HashMap<String, Action>,
) -> Result<(), LfsError> {
    let body = serde_json::to_vec(&BatchRequest {
        operation: "download",
        transfers: ["basic"],
        objects: objects
            .iter()
            .map(|p| BatchObjectRef {
                oid: &p.oid,
                size: p.size,
            })
            .collect(),
        hash_algo: "sha256",
    })
    .map_err(|e| LfsError::Server(e.to_string()))?;
    let url = format!("{endpoint}/objects/batch");
    let shown = redact_url(&url);
    let mut req = clients
        .repo
        .post(&url)
        .timeout(remaining(deadline)?)
        .header("Accept", "application/vnd.git-lfs+json")
        .header("Content-Type", "application/vnd.git-lfs+json")
        .body(body);
    if let Some(a) = auth {
        req = req.header("Authorization", a);
    }
    let resp = req.send().map_err(|e| {
        LfsError::Server(format!(
            "POST {shown}: {}",
            crate::helm_repo::describe_reqwest(&e)
        ))
    })?;
    let status = resp.status();
    let mut text = Vec::new();
    resp.take(MAX_BATCH_RESPONSE + 1)
        .read_to_end(&mut text)
        .map_err(|e| LfsError::Server(format!("POST {shown}: reading the answer: {e}")))?;
    if text.len() as u64 > MAX_BATCH_RESPONSE {
        return Err(LfsError::Server(format!(
            "POST {shown}: the answer is larger than {MAX_BATCH_RESPONSE} bytes"
        )));
    }
    if !status.is_success() {
        let said: String = serde_json::from_slice::<serde_json::Value>(&text)
            .ok()
            .and_then(|v| v["message"].as_str().map(str::to_string))
            .unwrap_or_default()
            .chars()
            .take(300)
            .collect();
        return Err(LfsError::Server(format!(
            "POST {shown}: HTTP {status}{}",
            if said.is_empty() {
                String::new()
            } else {
                format!(": {said}")
            }
        )));
    }
    let answer: BatchResponse = serde_json::from_slice(&text)
        .map_err(|e| LfsError::Server(format!("POST {shown}: not a batch answer: {e}")))?;
    if answer.transfer.as_deref().is_some_and(|t| t != "basic") {
        return Err(LfsError::Server(format!(
            "POST {shown}: the server chose the {:?} transfer; only basic is supported",
            answer.transfer.unwrap_or_default()
        )));
    }
    for o in answer.objects {
        let Some(asked) = objects.iter().find(|p| p.oid == o.oid) else {
            continue; // an object nobody asked for
        };
        if let Some(e) = o.error {
            return Err(LfsError::Server(format!(
                "LFS object {}: {} ({})",
                o.oid,
                e.message.chars().take(300).collect::<String>(),
                e.code
            )));
        }
        if o.size != asked.size {
            return Err(LfsError::Refused(format!(
                "LFS object {}: the server says {} bytes, the pointer {}",
                o.oid, o.size, asked.size
            )));
        }
        if let Some(d) = o.actions.and_then(|a| a.download) {
            out.insert(o.oid, d);
        }
    }
    Ok(())
}

/// Download one object into a temporary file under `staging`, checked against its pointer.
fn download(
    clients: &Clients,
    repo_url: &str,
    auth: Option<&str>,
    action: &Action,
    p: &Pointer,
    staging: &Path,
    deadline: Instant,
) -> Result<tempfile::NamedTempFile, LfsError> {
    let href = reqwest::Url::parse(&action.href)
        .map_err(|_| LfsError::Server(format!("LFS object {}: its URL does not parse", p.oid)))?;
    if !matches!(href.scheme(), "http" | "https") {
        return Err(LfsError::Refused(format!(
            "LFS object {}: only http(s) download URLs are followed, not {}://",
            p.oid,
            href.scheme()
        )));
    }
    let shown = redact_url(href.as_str());
    if action.header.len() > MAX_ACTION_HEADERS {
        return Err(LfsError::Server(format!(
            "LFS object {}: too many headers",
            p.oid
        )));
    }
    let client = clients.for_url(repo_url, href.as_str())?;
    let mut req = client.get(href.clone()).timeout(remaining(deadline)?);
    let mut has_auth = false;
    for (k, v) in &action.header {
        let name = reqwest::header::HeaderName::from_bytes(k.as_bytes());
        let value = reqwest::header::HeaderValue::from_str(v);
        let (Ok(name), Ok(value)) = (name, value) else {
            return Err(LfsError::Server(format!(
                "LFS object {}: an invalid header",
                p.oid
            )));
        };
        has_auth |= name == reqwest::header::AUTHORIZATION;
        req = req.header(name, value);
    }
    // The repository's own credentials, only to its own origin.
    if !has_auth
        && let Some(a) = auth
        && crate::git_submodule::same_origin(repo_url, href.as_str())
    {
        req = req.header(reqwest::header::AUTHORIZATION, a);
    }
    let resp = req.send().map_err(|e| {
        LfsError::Server(format!(
            "GET {shown}: {}",
            crate::helm_repo::describe_reqwest(&e)
        ))
    })?;
    if !resp.status().is_success() {
        return Err(LfsError::Server(format!(
            "GET {shown}: HTTP {}",
            resp.status()
        )));
    }
    if resp.content_length().is_some_and(|n| n > p.size) {
        return Err(LfsError::Refused(format!(
            "LFS object {}: the server sends more bytes than its pointer's {}",
            p.oid, p.size
        )));
    }
    let mut tmp = tempfile::NamedTempFile::new_in(staging).map_err(|source| LfsError::Write {
        path: staging.to_path_buf(),
        source,
    })?;
    verify_copy(resp, p, tmp.as_file_mut())?;
    Ok(tmp)
}

/// Copy `from` into `to`, refusing anything that is not exactly the object `p` names (its
/// size, then its SHA-256).
pub fn verify_copy(from: impl Read, p: &Pointer, to: &mut impl Write) -> Result<(), LfsError> {
    let mut hasher = Sha256::new();
    let mut limited = from.take(p.size.saturating_add(1));
    let mut buf = vec![0u8; 64 * 1024];
    let mut n: u64 = 0;
    loop {
        let got = limited
            .read(&mut buf)
            .map_err(|e| LfsError::Server(format!("LFS object {}: reading: {e}", p.oid)))?;
        if got == 0 {
            break;
        }
        n += got as u64;
        if n > p.size {
            return Err(LfsError::Refused(format!(
                "LFS object {}: more than the pointer's {} bytes",
                p.oid, p.size
            )));
        }
        hasher.update(&buf[..got]);
        to.write_all(&buf[..got])
            .map_err(|source| LfsError::Write {
                path: PathBuf::from(&p.oid),
                source,
            })?;
    }
    if n != p.size {
        return Err(LfsError::Refused(format!(
            "LFS object {}: {n} bytes, the pointer says {}",
            p.oid, p.size
        )));
    }
    let got = hex::encode(hasher.finalize());
    if got != p.oid {
        return Err(LfsError::Refused(format!(
            "LFS object {}: the content's SHA-256 is {got} (tampered with?)",
            p.oid
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pointer_text(content: &[u8]) -> (String, Pointer) {
        let oid = hex::encode(Sha256::digest(content));
        let p = Pointer {
            oid: oid.clone(),
            size: content.len() as u64,
        };
        (
            format!(
                "version https://git-lfs.github.com/spec/v1\noid sha256:{oid}\nsize {}\n",
                content.len()
            ),
            p,
        )
    }

    #[test]
    fn pointers_are_read_strictly() {
        let (text, p) = pointer_text(b"hello\n");
        assert_eq!(parse_pointer(text.as_bytes()), Some(p.clone()));
        assert_eq!(
            parse_pointer(text.trim_end().as_bytes()),
            Some(p.clone()),
            "no final newline"
        );
        let oid = &p.oid;
        for bad in [
            String::new(),
            "hello\n".to_string(),
            text.replace("v1", "v2"),
            text.replace("sha256", "sha1"),
            text.replace(oid, &oid.to_uppercase()),
            text.replace(oid, &oid[..63]),
            text.replace("size 6", "size -6"),
            text.replace("size 6", "size 06"),
            text.replace("size 6", "size 99999999999999999999999"),
            format!("{text}extra line\n"),
            text.replace("oid", "ext-0-foo bar\noid"),
            format!("{text}{}", " ".repeat(MAX_POINTER_BYTES)),
        ] {
            assert_eq!(parse_pointer(bad.as_bytes()), None, "{bad:?}");
        }
    }

    #[test]
    fn a_tampered_or_resized_object_is_refused() {
        let (_, p) = pointer_text(b"the real content\n");
        let mut out = Vec::new();
        verify_copy(&b"the real content\n"[..], &p, &mut out).expect("intact");
        assert_eq!(out, b"the real content\n");
        for (body, why) in [
            (&b"the evil content\n"[..], "SHA-256"),
            (&b"the real content\n and more"[..], "more than"),
            (&b"the real"[..], "the pointer says"),
        ] {
            let err = verify_copy(body, &p, &mut Vec::new()).expect_err("refused");
            assert!(matches!(err, LfsError::Refused(_)), "{err}");
            assert!(err.to_string().contains(why), "{err}");
        }
    }

    #[test]
    fn endpoints_follow_git_lfs() {
        assert_eq!(
            endpoint("https://git.example.com/org/app.git").expect("https"),
            "https://git.example.com/org/app.git/info/lfs"
        );
        assert_eq!(
            endpoint("https://user:pw@git.example.com/org/app/").expect("no .git"),
            "https://git.example.com/org/app.git/info/lfs"
        );
        for url in [
            "ssh://git@host/app.git",
            "git@host:app.git",
            "file:///x.git",
        ] {
            assert!(
                matches!(endpoint(url), Err(LfsError::Unsupported(_))),
                "{url}"
            );
        }
    }
}
