//! Helm chart repositories: read `index.yaml` (briefly cached), resolve a chart version or
//! semver constraint, download the chart archive once (digest checked), and unpack it safely
//! into the cache for the Helm renderer. Charts in OCI registries the same way, by manifest
//! digest (the registry protocol is `oci.rs`).

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::git::Credentials;
use crate::metrics::RepoMetrics;
use crate::oci::{self, ChartRef, OciError, Revision};
use crate::transport::{HttpSettings, TransportConfig};
use flotilla_core::coalesce::Coalescer;
// URL userinfo redaction in messages: the project's one implementation.
use flotilla_core::redact::redact_text as redact;

/// Why a chart could not be had.
#[derive(Debug, Clone, thiserror::Error)]
pub enum HelmRepoError {
    #[error("Helm repository {url}: {message}")]
    Unavailable { url: String, message: String },
    #[error("Helm repository {url}: {message}")]
    NotFound { url: String, message: String },
    #[error("Helm repository {url}: {message}")]
    Invalid { url: String, message: String },
}

#[derive(Debug, Deserialize)]
struct Index {
    #[serde(default)]
    entries: HashMap<String, Vec<ChartVersion>>,
}

#[derive(Debug, Clone, Deserialize)]
struct ChartVersion {
    version: String,
    #[serde(default)]
    urls: Vec<String>,
    #[serde(default)]
    digest: Option<String>,
}

/// Largest chart archive or index accepted.
const MAX_DOWNLOAD: usize = 64 * 1024 * 1024;

/// Longest chart name or version (or version constraint) accepted.
const MAX_NAME: usize = 128;

/// Repository URL, chart, version, whether credentials may go to other origins.
type ChartKey = (String, String, String, bool);

/// A reqwest error and its causes on one line, without the request URL (which may carry
/// userinfo; callers name the redacted URL themselves).
fn describe(e: reqwest::Error) -> String {
    describe_reqwest(&e.without_url())
}

/// A reqwest error and its causes on one line (callers strip the URL first when it may carry
/// userinfo).
pub fn describe_reqwest(e: &reqwest::Error) -> String {
    let mut out = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        out.push_str(": ");
        out.push_str(&cause.to_string());
        source = cause.source();
    }
    out
}

/// Whether `url` has the same origin (scheme, host, port) as the repository at `repo_url`.
/// Anything that does not parse, or has no tuple origin, is another origin.
fn same_origin(repo_url: &str, url: &reqwest::Url) -> bool {
    match reqwest::Url::parse(repo_url) {
        Ok(repo) => {
            let (a, b) = (repo.origin(), url.origin());
            a.is_tuple() && a == b
        }
        Err(_) => false,
    }
}

/// Refuse a chart name that could be anything but one plain path component: it becomes a
/// directory name in the chart cache and is looked up inside the archive.
fn check_chart_name(repo_url: &str, chart: &str) -> Result<(), HelmRepoError> {
    let ok = !chart.is_empty()
        && chart.len() <= MAX_NAME
        && !chart.starts_with('.')
        && !chart.contains("..")
        && chart
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(HelmRepoError::Invalid {
            url: redact(repo_url),
            message: format!(
                "invalid chart name {:?}: want 1-{MAX_NAME} of [A-Za-z0-9._-], not starting \
                 with '.' and without '..'",
                chart.chars().take(MAX_NAME).collect::<String>()
            ),
        })
    }
}

/// Refuse a chart version (`constraint`: or version constraint such as `>=1.2, <2`) with
/// anything but semver characters (and, for constraints, operators and spaces).
fn check_version(repo_url: &str, version: &str, constraint: bool) -> Result<(), HelmRepoError> {
    let ok = version.len() <= MAX_NAME
        && !version.contains("..")
        && version.bytes().all(|b| {
            b.is_ascii_alphanumeric()
                || matches!(b, b'.' | b'+' | b'-' | b'_')
                || (constraint
                    && matches!(
                        b,
                        b' ' | b',' | b'<' | b'>' | b'=' | b'^' | b'~' | b'*' | b'|' | b'!'
                    ))
        });
    if ok {
        Ok(())
    } else {
        Err(HelmRepoError::Invalid {
            url: redact(repo_url),
            message: format!(
                "invalid chart version {:?}: want at most {MAX_NAME} semver characters",
                version.chars().take(MAX_NAME).collect::<String>()
            ),
        })
    }
}

/// Access to Helm repositories, with a chart cache on disk.
pub struct HelmRepos {
    dir: PathBuf,
    index_ttl: Duration,
    timeout: Duration,
    /// Largest index or archive accepted (`MAX_DOWNLOAD`; smaller in tests).
    max_download: usize,
    indexes: Mutex<HashMap<String, (Instant, Arc<Index>)>>,
    charts: Coalescer<ChartKey, Result<PathBuf, HelmRepoError>>,
    /// CAs per server name (`argocd-tls-certs-cm`).
    transport: TransportConfig,
    /// Bearer tokens from OCI registries' token services.
    oci_tokens: oci::TokenCache,
    /// What OCI registries answered, per repository and credentials, kept `index_ttl`.
    oci_memo: Mutex<HashMap<String, (Instant, OciMemo)>>,
    /// Chart downloads from OCI registries, by (chart reference, manifest digest).
    oci_charts: Coalescer<(String, String), Result<PathBuf, HelmRepoError>>,
    /// Registry request counters, when the repo-server's metrics are given.
    metrics: Option<RepoMetrics>,
}

/// One remembered registry answer.
#[derive(Clone)]
enum OciMemo {
    /// The repository's tags.
    Tags(Arc<Vec<String>>),
    /// The manifest digest a tag named.
    Digest(oci::Digest),
    /// A manifest by digest exists and is a chart (with the version it names, if any).
    Manifest(Option<String>),
}

/// Entries of `oci_memo` kept before stale ones are swept.
const MAX_OCI_MEMO: usize = 10_000;

/// A registry error as a Helm repository error naming the repository (redacted).
fn oci_error(repo_url: &str, e: OciError) -> HelmRepoError {
    let url = redact(repo_url);
    match e {
        OciError::Invalid(message) => HelmRepoError::Invalid { url, message },
        OciError::NotFound(message) => HelmRepoError::NotFound { url, message },
        OciError::Denied(message) | OciError::Unavailable(message) => {
            HelmRepoError::Unavailable { url, message }
        }
    }
}

/// Unpack a chart archive into `dest` (through a temporary directory in `parent`, renamed
/// into place) and return the chart's directory, `dest/<chart>`.
async fn store_chart(
    parent: PathBuf,
    dest: PathBuf,
    chart: String,
    bytes: Vec<u8>,
) -> Result<PathBuf, String> {
    tokio::task::spawn_blocking(move || -> Result<PathBuf, String> {
        std::fs::create_dir_all(&parent).map_err(|e| e.to_string())?;
        let tmp = tempfile::tempdir_in(&parent).map_err(|e| e.to_string())?;
        unpack(&bytes, tmp.path())?;
        if !tmp.path().join(&chart).join("Chart.yaml").is_file() {
            return Err(format!("the archive has no {chart}/Chart.yaml"));
        }
        if let Some(p) = dest.parent() {
            std::fs::create_dir_all(p).map_err(|e| e.to_string())?;
        }
        let kept = tmp.keep();
        if std::fs::rename(&kept, &dest).is_err() {
            let _ = std::fs::remove_dir_all(&kept);
            if !dest.join(&chart).is_dir() {
                return Err(format!("could not store the chart in {}", dest.display()));
            }
        }
        Ok(dest.join(&chart))
    })
    .await
    .map_err(|e| e.to_string())?
}

fn http_client(settings: &HttpSettings, timeout: Duration) -> Result<reqwest::Client, String> {
    settings
        .apply(reqwest::Client::builder().timeout(timeout))
        .build()
        .map_err(|e| describe_reqwest(&e))
}

fn short(s: &str) -> String {
    hex::encode(&Sha256::digest(s.as_bytes())[..8])
}

/// Pick a version from the index entries: an exact version, or the highest one matching a
/// Helm version constraint (`*`, `>=1.2 <2`, `^1.4`, `1.2.x || 2.x`, see [`constraint`]); an
/// empty revision means the latest.
fn pick(versions: &[ChartVersion], wanted: &str) -> Option<ChartVersion> {
    if let Some(exact) = versions.iter().find(|v| v.version == wanted) {
        return Some(exact.clone());
    }
    let alternatives = constraint(wanted)?;
    versions
        .iter()
        .filter_map(|v| {
            let parsed = semver::Version::parse(v.version.trim_start_matches('v')).ok()?;
            // Pre-releases only when asked for explicitly (semver's own rule).
            alternatives
                .iter()
                .any(|req| req.matches(&parsed))
                .then_some((parsed, v))
        })
        .max_by(|a, b| a.0.cmp(&b.0))
        .map(|(_, v)| v.clone())
}

/// A Helm version constraint (Masterminds semver, what Helm and Argo CD read) as semver
/// requirements, any of which may match: `||` separates alternatives; within one,
/// comparators are separated by spaces or commas and all must hold; `A - B` is `>=A, <=B`;
/// `~>` is `~`; a bare version is exact (`1.2.3`) or a wildcard (`1.2`, `1.2.x`, `*`), never
/// a caret range. Empty or `latest`: any release. `None` when it does not parse.
fn constraint(wanted: &str) -> Option<Vec<semver::VersionReq>> {
    let wanted = wanted.trim();
    if wanted.is_empty() || wanted == "latest" {
        return Some(vec![semver::VersionReq::STAR]);
    }
    const OPS: [&str; 9] = [">=", "<=", "~>", "!=", ">", "<", "=", "~", "^"];
    wanted
        .split("||")
        .map(|alternative| {
            let raw: Vec<&str> = alternative
                .split(|c: char| c.is_whitespace() || c == ',')
                .filter(|t| !t.is_empty())
                .collect();
            let mut comparators = Vec::new();
            let mut i = 0;
            while i < raw.len() {
                if raw.get(i + 1) == Some(&"-") {
                    // A hyphen range.
                    let (lo, hi) = (raw[i], *raw.get(i + 2)?);
                    comparators.push(format!(">={}", lo.trim_start_matches('v')));
                    comparators.push(format!("<={}", hi.trim_start_matches('v')));
                    i += 3;
                    continue;
                }
                let mut token = raw[i].to_string();
                // An operator apart from its version (`>= 1.2`).
                if OPS.contains(&raw[i]) {
                    token.push_str(raw.get(i + 1)?);
                    i += 1;
                }
                i += 1;
                let op = OPS.iter().find(|op| token.starts_with(**op)).copied();
                let version = token[op.map_or(0, str::len)..].trim_start_matches('v');
                let comparator = match op {
                    Some("!=") => return None, // not expressible as a semver requirement
                    Some("~>") => format!("~{version}"),
                    Some(op) => format!("{op}{version}"),
                    None if version.contains(['*', 'x', 'X']) => version.to_string(),
                    None => format!("={version}"),
                };
                comparators.push(comparator);
            }
            if comparators.is_empty() {
                return None;
            }
            semver::VersionReq::parse(&comparators.join(", ")).ok()
        })
        .collect()
}

/// Unpack a chart archive (`.tgz`) into `dest`, refusing entries that leave it.
fn unpack(bytes: &[u8], dest: &Path) -> Result<(), String> {
    let gz = flate2::read::GzDecoder::new(bytes);
    let mut archive = tar::Archive::new(gz.take(MAX_DOWNLOAD as u64 * 4));
    for entry in archive.entries().map_err(|e| e.to_string())? {
        let mut entry = entry.map_err(|e| e.to_string())?;
        let kind = entry.header().entry_type();
        if !(kind.is_file() || kind.is_dir()) {
            continue; // no links or devices from a downloaded archive
        }
        // unpack_in refuses absolute paths and `..`.
        if !entry.unpack_in(dest).map_err(|e| e.to_string())? {
            return Err("archive entry leaves the chart directory".into());
        }
    }
    Ok(())
}

impl HelmRepos {
    pub fn new(dir: PathBuf) -> Self {
        Self {
            dir,
            index_ttl: Duration::from_secs(30),
            timeout: Duration::from_secs(60),
            max_download: MAX_DOWNLOAD,
            indexes: Mutex::new(HashMap::new()),
            charts: Coalescer::default(),
            transport: TransportConfig::default(),
            oci_tokens: oci::TokenCache::default(),
            oci_memo: Mutex::new(HashMap::new()),
            oci_charts: Coalescer::default(),
            metrics: None,
        }
    }

    /// Count registry requests in these metrics.
    pub fn with_metrics(mut self, metrics: RepoMetrics) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// Use these SSH known hosts and TLS CAs.
    pub fn with_transport(mut self, transport: TransportConfig) -> Self {
        self.transport = transport;
        self
    }

    /// GET `url` for the repository at `repo_url`, reading at most `max_download` bytes.
    /// Credentials go only to the repository's own origin, unless `pass_credentials`.
    async fn download(
        &self,
        url: &reqwest::Url,
        repo_url: &str,
        creds: &Credentials,
        pass_credentials: bool,
    ) -> Result<Vec<u8>, HelmRepoError> {
        let shown = redact(url.as_str());
        let unavailable = |message: String| HelmRepoError::Unavailable {
            url: redact(repo_url),
            message,
        };
        let too_large = || HelmRepoError::Invalid {
            url: redact(repo_url),
            message: format!("{shown} is larger than {} bytes", self.max_download),
        };
        let send_creds = pass_credentials || same_origin(repo_url, url);
        // A client certificate is a credential too: only for the repository's own origin
        // (or with passCredentials); CAs, proxy and `insecure` apply to every request.
        let for_request = if send_creds {
            creds.clone()
        } else {
            Credentials {
                insecure: creds.insecure,
                proxy: creds.proxy.clone(),
                no_proxy: creds.no_proxy.clone(),
                ..Credentials::default()
            }
        };
        let settings = HttpSettings::for_repo(&self.transport, url.as_str(), &for_request)
            .map_err(|e| unavailable(e.0))?;
        let client = http_client(&settings, self.timeout).map_err(unavailable)?;
        let mut req = client.get(url.clone());
        if send_creds {
            if let Some(token) = &creds.bearer_token {
                req = req.bearer_auth(token);
            } else if let Some(user) = &creds.username {
                req = req.basic_auth(user, creds.password.as_deref());
            }
        }
        let mut resp = req
            .send()
            .await
            .map_err(|e| unavailable(format!("GET {shown}: {}", describe(e))))?;
        let status = resp.status();
        if status == reqwest::StatusCode::NOT_FOUND {
            return Err(HelmRepoError::NotFound {
                url: redact(repo_url),
                message: format!("GET {shown}: 404"),
            });
        }
        if !status.is_success() {
            return Err(unavailable(format!("GET {shown}: HTTP {status}")));
        }
        let limit = self.max_download;
        if resp.content_length().is_some_and(|n| n > limit as u64) {
            return Err(too_large());
        }
        // Read chunk by chunk and stop at the limit: never hold more than `limit` bytes (plus
        // one chunk) of a body the server may make endless.
        let mut body = Vec::new();
        while let Some(chunk) = resp
            .chunk()
            .await
            .map_err(|e| unavailable(format!("reading {shown}: {}", describe(e))))?
        {
            if body.len() + chunk.len() > limit {
                return Err(too_large());
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }

    /// The repository's index, read with `creds` (cached per repository *and* credentials,
    /// so a caller without them never reads an index fetched with them).
    async fn index(
        &self,
        repo_url: &str,
        creds: &Credentials,
    ) -> Result<Arc<Index>, HelmRepoError> {
        if let Some((at, idx)) = self
            .indexes
            .lock()
            .ok()
            .and_then(|m| m.get(&index_key(repo_url, creds)).cloned())
            && at.elapsed() < self.index_ttl
        {
            return Ok(idx);
        }
        let url = format!("{}/index.yaml", repo_url.trim_end_matches('/'));
        let url = reqwest::Url::parse(&url).map_err(|e| HelmRepoError::Invalid {
            url: redact(repo_url),
            message: format!("not a URL: {e}"),
        })?;
        let bytes = self.download(&url, repo_url, creds, false).await?;
        let idx: Index = serde_yaml::from_slice(&bytes).map_err(|e| HelmRepoError::Invalid {
            url: redact(repo_url),
            message: format!("index.yaml: {e}"),
        })?;
        let idx = Arc::new(idx);
        if let Ok(mut m) = self.indexes.lock() {
            m.insert(index_key(repo_url, creds), (Instant::now(), idx.clone()));
        }
        Ok(idx)
    }

    fn find(
        idx: &Index,
        repo_url: &str,
        chart: &str,
        wanted: &str,
    ) -> Result<ChartVersion, HelmRepoError> {
        let versions = idx
            .entries
            .get(chart)
            .ok_or_else(|| HelmRepoError::NotFound {
                url: redact(repo_url),
                message: format!("no chart named {chart:?}"),
            })?;
        pick(versions, wanted).ok_or_else(|| HelmRepoError::NotFound {
            url: redact(repo_url),
            message: format!("chart {chart} has no version matching {wanted:?}"),
        })
    }

    /// The version of `chart` that `wanted` (a version or constraint) means now.
    pub async fn resolve(
        &self,
        repo_url: &str,
        creds: &Credentials,
        chart: &str,
        wanted: &str,
    ) -> Result<String, HelmRepoError> {
        check_chart_name(repo_url, chart)?;
        check_version(repo_url, wanted, true)?;
        let idx = self.index(repo_url, creds).await?;
        Ok(Self::find(&idx, repo_url, chart, wanted)?.version)
    }

    /// The unpacked chart directory (holding `Chart.yaml`) of `chart` at `version`. The
    /// credentials go only to the repository's own origin (`chart_with` to choose).
    pub async fn chart(
        self: &Arc<Self>,
        repo_url: &str,
        creds: &Credentials,
        chart: &str,
        version: &str,
    ) -> Result<PathBuf, HelmRepoError> {
        self.chart_with(repo_url, creds, chart, version, false)
            .await
    }

    /// `chart`, where `pass_credentials` (Argo CD's `helm.passCredentials`, Helm's
    /// `--pass-credentials`) also sends the credentials when `index.yaml` places the archive
    /// on another origin (scheme, host, port) than the repository's.
    pub async fn chart_with(
        self: &Arc<Self>,
        repo_url: &str,
        creds: &Credentials,
        chart: &str,
        version: &str,
        pass_credentials: bool,
    ) -> Result<PathBuf, HelmRepoError> {
        check_chart_name(repo_url, chart)?;
        check_version(repo_url, version, false)?;
        // Charts fetched through a proxy or without certificate checks are kept apart from
        // those fetched directly (see `git::cache_name`).
        let dest = self
            .dir
            .join(short(&crate::git::cache_name(repo_url, creds)))
            .join(format!("{}-{}", short(chart), short(version)));
        let ready = dest.join(chart);
        if ready.join("Chart.yaml").is_file() {
            return Ok(ready);
        }
        let this = self.clone();
        let (url, c, v, creds) = (
            repo_url.to_string(),
            chart.to_string(),
            version.to_string(),
            creds.clone(),
        );
        let key = (
            crate::git::cache_name(&url, &creds),
            c.clone(),
            v.clone(),
            pass_credentials,
        );
        let out = self
            .charts
            .run(key, move || async move {
                let idx = this.index(&url, &creds).await?;
                let entry = Self::find(&idx, &url, &c, &v)?;
                let archive_url = entry.urls.first().ok_or_else(|| HelmRepoError::Invalid {
                    url: redact(&url),
                    message: format!("chart {c} {v} has no download URL"),
                })?;
                let absolute = if archive_url.contains("://") {
                    archive_url.clone()
                } else {
                    format!("{}/{}", url.trim_end_matches('/'), archive_url)
                };
                let absolute =
                    reqwest::Url::parse(&absolute).map_err(|e| HelmRepoError::Invalid {
                        url: redact(&url),
                        message: format!("chart {c} {v}: download URL {}: {e}", redact(&absolute)),
                    })?;
                let bytes = this
                    .download(&absolute, &url, &creds, pass_credentials)
                    .await?;
                if let Some(want) = entry.digest.as_deref().filter(|d| !d.is_empty()) {
                    let got = hex::encode(Sha256::digest(&bytes));
                    if !got.eq_ignore_ascii_case(want) {
                        return Err(HelmRepoError::Invalid {
                            url: redact(&url),
                            message: format!(
                                "chart {c} {v}: digest {got} does not match the index ({want})"
                            ),
                        });
                    }
                }
                store_chart(this.dir.clone(), dest, c.clone(), bytes)
                    .await
                    .map_err(|message| HelmRepoError::Invalid {
                        url: redact(&url),
                        message: format!("chart {c} {v}: {message}"),
                    })
            })
            .await
            .map_err(|message| HelmRepoError::Unavailable {
                url: redact(repo_url),
                message,
            })?;
        out.value
    }

    // -- OCI registries ------------------------------------------------------------------

    fn oci_session<'a>(
        &'a self,
        chart: &'a ChartRef,
        repo_url: &str,
        creds: &'a Credentials,
    ) -> Result<oci::Session<'a>, HelmRepoError> {
        oci::Session::new(
            chart,
            oci::SessionConfig {
                creds,
                transport: &self.transport,
                timeout: self.timeout,
                max_blob: self.max_download,
                tokens: &self.oci_tokens,
                metrics: self.metrics.as_ref(),
            },
        )
        .map_err(|e| oci_error(repo_url, e))
    }

    /// Run one registry operation (a few requests, each with its own timeout) within twice
    /// the request timeout in all: a registry answering slowly page after page still ends.
    async fn oci_bounded<T>(
        &self,
        repo_url: &str,
        what: &str,
        work: impl std::future::Future<Output = Result<T, OciError>>,
    ) -> Result<T, HelmRepoError> {
        let limit = self.timeout * 2;
        match tokio::time::timeout(limit, work).await {
            Ok(r) => r.map_err(|e| oci_error(repo_url, e)),
            Err(_) => Err(HelmRepoError::Unavailable {
                url: redact(repo_url),
                message: format!("{what} took longer than {limit:?}"),
            }),
        }
    }

    fn memo_key(kind: &str, chart: &ChartRef, creds: &Credentials, what: &str) -> String {
        format!("{kind}\0{chart}\0{}\0{what}", creds.digest())
    }

    fn memo_get(&self, key: &str) -> Option<OciMemo> {
        let memo = self.oci_memo.lock().ok()?;
        memo.get(key)
            .filter(|(at, _)| at.elapsed() < self.index_ttl)
            .map(|(_, v)| v.clone())
    }

    fn memo_put(&self, key: String, value: OciMemo) {
        if let Ok(mut memo) = self.oci_memo.lock() {
            if memo.len() >= MAX_OCI_MEMO {
                let ttl = self.index_ttl;
                memo.retain(|_, (at, _)| at.elapsed() < ttl);
            }
            if memo.len() < MAX_OCI_MEMO {
                memo.insert(key, (Instant::now(), value));
            }
        }
    }

    /// The repository's tags, read with `creds`.
    async fn oci_tags(
        &self,
        chart: &ChartRef,
        repo_url: &str,
        creds: &Credentials,
    ) -> Result<Arc<Vec<String>>, HelmRepoError> {
        let key = Self::memo_key("tags", chart, creds, "");
        if let Some(OciMemo::Tags(t)) = self.memo_get(&key) {
            return Ok(t);
        }
        let mut session = self.oci_session(chart, repo_url, creds)?;
        let tags = Arc::new(
            self.oci_bounded(
                repo_url,
                &format!("listing the tags of {chart}"),
                session.tags(),
            )
            .await?,
        );
        self.memo_put(key, OciMemo::Tags(tags.clone()));
        Ok(tags)
    }

    /// The digest of the chart manifest under `tag`, read with `creds` (it must be a chart).
    async fn oci_tag_digest(
        &self,
        chart: &ChartRef,
        repo_url: &str,
        creds: &Credentials,
        tag: &str,
    ) -> Result<oci::Digest, HelmRepoError> {
        let key = Self::memo_key("tag", chart, creds, tag);
        if let Some(OciMemo::Digest(d)) = self.memo_get(&key) {
            return Ok(d);
        }
        let mut session = self.oci_session(chart, repo_url, creds)?;
        let (digest, manifest) = self
            .oci_bounded(
                repo_url,
                &format!("reading {chart}:{tag}"),
                session.manifest(tag),
            )
            .await?;
        manifest
            .chart_layer()
            .map_err(|e| oci_error(repo_url, OciError::Invalid(format!("{chart}:{tag}: {e}"))))?;
        self.memo_put(key, OciMemo::Digest(digest.clone()));
        self.memo_put(
            Self::memo_key("manifest", chart, creds, &digest.to_string()),
            OciMemo::Manifest(manifest.version_tag()),
        );
        Ok(digest)
    }

    /// Check that the chart manifest `digest` can be read with `creds` (and is a chart);
    /// returns the version it names.
    async fn oci_manifest(
        &self,
        chart: &ChartRef,
        repo_url: &str,
        creds: &Credentials,
        digest: &oci::Digest,
    ) -> Result<Option<String>, HelmRepoError> {
        let key = Self::memo_key("manifest", chart, creds, &digest.to_string());
        if let Some(OciMemo::Manifest(v)) = self.memo_get(&key) {
            return Ok(v);
        }
        let mut session = self.oci_session(chart, repo_url, creds)?;
        let reference = digest.to_string();
        let (_, manifest) = self
            .oci_bounded(
                repo_url,
                &format!("reading {chart}@{digest}"),
                session.manifest(&reference),
            )
            .await?;
        manifest.chart_layer().map_err(|e| {
            oci_error(
                repo_url,
                OciError::Invalid(format!("{chart}@{digest}: {e}")),
            )
        })?;
        let version = manifest.version_tag();
        self.memo_put(key, OciMemo::Manifest(version.clone()));
        Ok(version)
    }

    /// The chart `wanted` names in the OCI registry `repo_url` (`oci://host/path`, or
    /// scheme-less with `enableOCI`), read with `creds`, as its commit ([`oci::commit`]:
    /// `<tag>-sha256.<hex>`). `wanted` is a version (tag), a semver constraint over the tags
    /// (empty: the highest release), a digest (`sha256:…`), a version pinned to a digest
    /// (`1.2.0@sha256:…`, refused unless the tag is that manifest), or a commit from before.
    pub async fn oci_resolve(
        &self,
        repo_url: &str,
        creds: &Credentials,
        chart: &str,
        wanted: &str,
    ) -> Result<String, HelmRepoError> {
        check_chart_name(repo_url, chart)?;
        let cref = ChartRef::new(repo_url, chart).map_err(|e| oci_error(repo_url, e))?;
        let revision = oci::parse_revision(wanted).map_err(|e| oci_error(repo_url, e))?;
        match revision {
            Revision::Resolved { tag, digest } => {
                self.oci_manifest(&cref, repo_url, creds, &digest).await?;
                Ok(oci::commit(tag.as_deref(), &digest))
            }
            Revision::Pinned { tag: None, digest } => {
                let version = self.oci_manifest(&cref, repo_url, creds, &digest).await?;
                Ok(oci::commit(version.as_deref(), &digest))
            }
            Revision::Pinned {
                tag: Some(tag),
                digest,
            } => {
                let actual = self.oci_tag_digest(&cref, repo_url, creds, &tag).await?;
                if actual != digest {
                    return Err(HelmRepoError::Invalid {
                        url: redact(repo_url),
                        message: format!(
                            "{cref}:{tag} is {actual}, not the pinned digest {digest}"
                        ),
                    });
                }
                Ok(oci::commit(Some(&tag), &digest))
            }
            Revision::Version(version) => {
                check_version(repo_url, &version, true)?;
                let exact = oci::tag_of_version(&version);
                let tag = if semver::Version::parse(version.trim_start_matches('v')).is_ok()
                    && oci::valid_tag(&exact)
                {
                    // A full version is that tag (as Helm reads it), never a range.
                    exact
                } else {
                    let tags = self.oci_tags(&cref, repo_url, creds).await?;
                    let versions: Vec<ChartVersion> = tags
                        .iter()
                        .map(|t| ChartVersion {
                            version: oci::version_of_tag(t),
                            urls: Vec::new(),
                            digest: None,
                        })
                        .collect();
                    let picked =
                        pick(&versions, &version).ok_or_else(|| HelmRepoError::NotFound {
                            url: redact(repo_url),
                            message: format!(
                                "{cref} has no version matching {version:?} ({} tags)",
                                tags.len()
                            ),
                        })?;
                    oci::tag_of_version(&picked.version)
                };
                let digest = self.oci_tag_digest(&cref, repo_url, creds, &tag).await?;
                Ok(oci::commit(Some(&tag), &digest))
            }
        }
    }

    /// Check that `creds` can read the chart manifest `digest` now (answers are remembered
    /// per credentials for the index TTL).
    pub async fn oci_check_access(
        &self,
        repo_url: &str,
        creds: &Credentials,
        chart: &str,
        digest: &oci::Digest,
    ) -> Result<(), HelmRepoError> {
        check_chart_name(repo_url, chart)?;
        let cref = ChartRef::new(repo_url, chart).map_err(|e| oci_error(repo_url, e))?;
        self.oci_manifest(&cref, repo_url, creds, digest).await?;
        Ok(())
    }

    /// The unpacked chart directory (holding `Chart.yaml`) of the chart manifest `digest`:
    /// downloaded once (the layer checked against its digest and size), then kept on disk
    /// under the digest. The caller checks access first: a cached chart is served as is.
    pub async fn oci_chart(
        self: &Arc<Self>,
        repo_url: &str,
        creds: &Credentials,
        chart: &str,
        digest: &oci::Digest,
    ) -> Result<PathBuf, HelmRepoError> {
        check_chart_name(repo_url, chart)?;
        let cref = ChartRef::new(repo_url, chart).map_err(|e| oci_error(repo_url, e))?;
        let dest = self
            .dir
            .join("oci")
            .join(short(&cref.to_string()))
            .join(digest.file_name());
        let ready = dest.join(chart);
        if ready.join("Chart.yaml").is_file() {
            return Ok(ready);
        }
        let this = self.clone();
        let (url, c, creds, d) = (
            repo_url.to_string(),
            chart.to_string(),
            creds.clone(),
            digest.clone(),
        );
        let key = (cref.to_string(), digest.to_string());
        let out = self
            .oci_charts
            .run(key, move || async move {
                let bytes = {
                    let mut session = this.oci_session(&cref, &url, &creds)?;
                    let reference = d.to_string();
                    let download = async {
                        let (_, manifest) = session.manifest(&reference).await?;
                        let layer = manifest.chart_layer()?.clone();
                        session.blob(&layer).await
                    };
                    this.oci_bounded(&url, &format!("downloading {cref}@{d}"), download)
                        .await?
                };
                tracing::info!(chart = %cref, digest = %d, bytes = bytes.len(), "chart downloaded from the registry");
                store_chart(this.dir.clone(), dest, c.clone(), bytes)
                    .await
                    .map_err(|message| HelmRepoError::Invalid {
                        url: redact(&url),
                        message: format!("{cref}@{d}: {message}"),
                    })
            })
            .await
            .map_err(|message| HelmRepoError::Unavailable {
                url: redact(repo_url),
                message,
            })?;
        out.value
    }
}

/// The index cache key: the repository and a digest of the credentials it was read with.
fn index_key(repo_url: &str, creds: &Credentials) -> String {
    format!("{repo_url}\0{}", creds.digest())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> ChartVersion {
        ChartVersion {
            version: s.into(),
            urls: vec![],
            digest: None,
        }
    }

    #[test]
    fn versions_are_picked_exactly_or_by_constraint() {
        let vs = [v("1.2.0"), v("1.10.0"), v("2.0.0-rc.1"), v("1.9.3")];
        let pick = |w: &str| pick(&vs, w).map(|c| c.version);
        assert_eq!(pick("1.9.3").as_deref(), Some("1.9.3"));
        assert_eq!(
            pick("").as_deref(),
            Some("1.10.0"),
            "latest, no pre-release"
        );
        assert_eq!(pick("*").as_deref(), Some("1.10.0"));
        assert_eq!(pick("~1.9").as_deref(), Some("1.9.3"));
        assert_eq!(pick(">=1.0, <1.5").as_deref(), Some("1.2.0"));
        assert_eq!(pick("2.0.0-rc.1").as_deref(), Some("2.0.0-rc.1"));
        assert_eq!(pick("3.x"), None);
        // Helm's (Masterminds') constraint syntax.
        assert_eq!(pick(">=1.0 <1.5").as_deref(), Some("1.2.0"));
        assert_eq!(pick(">= 1.0, < 1.5").as_deref(), Some("1.2.0"));
        assert_eq!(pick("1.2.x").as_deref(), Some("1.2.0"));
        assert_eq!(pick("1.2.*").as_deref(), Some("1.2.0"));
        assert_eq!(
            pick("1.9").as_deref(),
            Some("1.9.3"),
            "a wildcard, not ^1.9"
        );
        assert_eq!(pick("1.2.1"), None, "a bare version is exact");
        assert_eq!(pick("1.0.0 - 1.9.9").as_deref(), Some("1.9.3"));
        assert_eq!(pick("~> 1.2").as_deref(), Some("1.2.0"));
        assert_eq!(pick("3.x || ~1.9").as_deref(), Some("1.9.3"));
        assert_eq!(pick("^1").as_deref(), Some("1.10.0"));
        assert_eq!(pick("v1.9.3").as_deref(), Some("1.9.3"));
        assert_eq!(pick("!=1.2.0"), None);
        assert_eq!(pick(">="), None);
    }

    /// A gzipped tar holding `<name>/Chart.yaml`.
    fn tgz(name: &str) -> Vec<u8> {
        let mut tar = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        let body = format!("name: {name}\nversion: 1.0.0\n");
        h.set_size(body.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        tar.append_data(&mut h, format!("{name}/Chart.yaml"), body.as_bytes())
            .expect("append");
        let tar_bytes = tar.into_inner().expect("tar");
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        std::io::Write::write_all(&mut gz, &tar_bytes).expect("gz");
        gz.finish().expect("gz")
    }

    #[test]
    fn archives_unpack_and_cannot_escape() {
        let tgz = tgz("c");
        let dir = tempfile::tempdir().expect("dir");
        unpack(&tgz, dir.path()).expect("unpacks");
        assert!(dir.path().join("c/Chart.yaml").is_file());
        assert!(unpack(b"not a tarball", dir.path()).is_err());
    }

    /// How the test server answers one path.
    #[derive(Clone)]
    enum Reply {
        Status(u16),
        Body(Vec<u8>),
        /// `total` bytes, chunked, in 64 KiB pieces, counting what was written.
        Endless(usize),
        /// A `Content-Length` far over any limit, then nothing until the client leaves.
        HugeLength,
    }

    /// One request the test server saw.
    #[derive(Debug, Clone)]
    struct Seen {
        path: String,
        authorization: Option<String>,
    }

    /// A loopback HTTP/1.1 server answering one request per connection.
    struct TestServer {
        url: String,
        seen: Arc<Mutex<Vec<Seen>>>,
        /// Body bytes written by `Reply::Endless` so far.
        sent: Arc<std::sync::atomic::AtomicUsize>,
    }

    impl TestServer {
        fn seen(&self) -> Vec<Seen> {
            self.seen.lock().expect("lock").clone()
        }

        fn sent(&self) -> usize {
            self.sent.load(std::sync::atomic::Ordering::SeqCst)
        }
    }

    async fn serve(routes: Vec<(&str, Reply)>) -> TestServer {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let routes: Arc<HashMap<String, Reply>> = Arc::new(
            routes
                .into_iter()
                .map(|(p, r)| (p.to_string(), r))
                .collect(),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let sent = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (seen2, sent2) = (seen.clone(), sent.clone());
        tokio::spawn(async move {
            loop {
                let Ok((mut sock, _)) = listener.accept().await else {
                    return;
                };
                let (routes, seen, sent) = (routes.clone(), seen2.clone(), sent2.clone());
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    let mut buf = [0u8; 4096];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                        match sock.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                        }
                    }
                    let head = String::from_utf8_lossy(&head).to_string();
                    let path = head
                        .split_whitespace()
                        .nth(1)
                        .unwrap_or_default()
                        .to_string();
                    let authorization = head.lines().find_map(|l| {
                        let (k, v) = l.split_once(':')?;
                        k.eq_ignore_ascii_case("authorization")
                            .then(|| v.trim().to_string())
                    });
                    seen.lock().expect("lock").push(Seen {
                        path: path.clone(),
                        authorization,
                    });
                    match routes.get(&path).cloned().unwrap_or(Reply::Status(404)) {
                        Reply::Status(code) => {
                            let _ = sock
                                .write_all(
                                    format!(
                                        "HTTP/1.1 {code} X\r\nContent-Length: 0\r\n\
                                         Connection: close\r\n\r\n"
                                    )
                                    .as_bytes(),
                                )
                                .await;
                        }
                        Reply::Body(body) => {
                            let head = format!(
                                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\
                                 Connection: close\r\n\r\n",
                                body.len()
                            );
                            let _ = sock.write_all(head.as_bytes()).await;
                            let _ = sock.write_all(&body).await;
                        }
                        Reply::Endless(total) => {
                            let head = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\
                                        Connection: close\r\n\r\n";
                            if sock.write_all(head.as_bytes()).await.is_err() {
                                return;
                            }
                            let piece = vec![b'#'; 64 * 1024];
                            let mut left = total;
                            while left > 0 {
                                let n = left.min(piece.len());
                                let mut chunk = format!("{n:x}\r\n").into_bytes();
                                chunk.extend_from_slice(&piece[..n]);
                                chunk.extend_from_slice(b"\r\n");
                                if sock.write_all(&chunk).await.is_err() {
                                    return;
                                }
                                sent.fetch_add(n, std::sync::atomic::Ordering::SeqCst);
                                left -= n;
                            }
                            let _ = sock.write_all(b"0\r\n\r\n").await;
                        }
                        Reply::HugeLength => {
                            let head = "HTTP/1.1 200 OK\r\nContent-Length: 1099511627776\r\n\
                                        Connection: close\r\n\r\n";
                            if sock.write_all(head.as_bytes()).await.is_err() {
                                return;
                            }
                            // Send nothing more; return when the client hangs up.
                            let _ = sock.read(&mut buf).await;
                        }
                    }
                });
            }
        });
        TestServer { url, seen, sent }
    }

    fn repos(dir: &Path, max_download: usize) -> Arc<HelmRepos> {
        // The binary installs this at start-up; reqwest needs one even for http://.
        let _ = rustls::crypto::ring::default_provider().install_default();
        Arc::new(HelmRepos {
            max_download,
            ..HelmRepos::new(dir.to_path_buf())
        })
    }

    fn basic(user: &str, pass: &str) -> Credentials {
        Credentials {
            username: Some(user.into()),
            password: Some(pass.into()),
            ..Credentials::default()
        }
    }

    /// An index with chart `c` at `c_url` and chart `d` at the relative `d-1.0.0.tgz`.
    fn index_yaml(c_url: &str) -> Vec<u8> {
        format!(
            "apiVersion: v1\nentries:\n  c:\n  - version: 1.0.0\n    digest: {}\n    urls: \
             [\"{c_url}\"]\n  d:\n  - version: 1.0.0\n    urls: [d-1.0.0.tgz]\n",
            hex::encode(Sha256::digest(tgz("c")))
        )
        .into_bytes()
    }

    /// F10: an index on repository A naming an archive on B must not hand A's credentials to B.
    #[tokio::test]
    async fn credentials_go_only_to_the_repository_origin() {
        let other = serve(vec![("/c-1.0.0.tgz", Reply::Body(tgz("c")))]).await;
        let archive = format!("{}/c-1.0.0.tgz", other.url);
        let repo = serve(vec![
            ("/repo/index.yaml", Reply::Body(index_yaml(&archive))),
            ("/repo/d-1.0.0.tgz", Reply::Body(tgz("d"))),
        ])
        .await;
        let repo_url = format!("{}/repo", repo.url);
        let creds = basic("alice", "helm-repo-pass");
        let alice = Some("Basic YWxpY2U6aGVsbS1yZXBvLXBhc3M=".to_string());

        let dir = tempfile::tempdir().expect("dir");
        let helm = repos(dir.path(), MAX_DOWNLOAD);
        let c = helm
            .chart(&repo_url, &creds, "c", "1.0.0")
            .await
            .expect("the chart downloads without credentials");
        assert!(c.join("Chart.yaml").is_file());
        let d = helm
            .chart(&repo_url, &creds, "d", "1.0.0")
            .await
            .expect("chart d");
        assert!(d.join("Chart.yaml").is_file());

        let on_other = other.seen();
        assert_eq!(on_other.len(), 1, "{on_other:?}");
        assert_eq!(
            on_other[0].authorization, None,
            "credentials leaked to another origin"
        );
        // The repository's own origin still gets them: the index and a relative archive.
        let on_repo = repo.seen();
        assert!(!on_repo.is_empty());
        for s in &on_repo {
            assert_eq!(s.authorization, alice, "{s:?}");
        }
        assert!(on_repo.iter().any(|s| s.path == "/repo/d-1.0.0.tgz"));

        // passCredentials: true sends them along (here a bearer token).
        let dir = tempfile::tempdir().expect("dir");
        let helm = repos(dir.path(), MAX_DOWNLOAD);
        let token = Credentials {
            bearer_token: Some("tok".into()),
            ..Credentials::default()
        };
        helm.chart_with(&repo_url, &token, "c", "1.0.0", true)
            .await
            .expect("chart with passCredentials");
        let on_other = other.seen();
        assert_eq!(on_other.len(), 2, "{on_other:?}");
        assert_eq!(on_other[1].authorization.as_deref(), Some("Bearer tok"));
    }

    #[test]
    fn origins_are_scheme_host_and_port() {
        let same = |a: &str, b: &str| same_origin(a, &reqwest::Url::parse(b).expect("url"));
        assert!(same(
            "https://charts.example.com/x",
            "https://charts.example.com/y/c.tgz"
        ));
        assert!(same(
            "https://Charts.Example.com/x",
            "https://charts.example.com:443/c.tgz"
        ));
        assert!(same(
            "https://u:p@charts.example.com/x",
            "https://charts.example.com/c.tgz"
        ));
        assert!(!same(
            "https://charts.example.com/x",
            "http://charts.example.com/c.tgz"
        ));
        assert!(!same(
            "https://charts.example.com/x",
            "https://charts.example.com:8443/c"
        ));
        assert!(!same(
            "https://charts.example.com/",
            "https://charts.example.com.evil.net/c"
        ));
        assert!(!same(
            "https://charts.example.com/",
            "https://cdn.example.com/c.tgz"
        ));
        assert!(!same("not a url", "https://charts.example.com/c.tgz"));
    }

    /// Wait (a little) for the server to stop writing, then return how much it sent.
    /// The download was refused at the 1 MiB limit, and the client stopped reading: the server
    /// could write only the limit plus what the socket buffers hold, never the whole 64 MiB.
    async fn assert_cut_off(err: &HelmRepoError, server: &TestServer) {
        assert!(
            matches!(err, HelmRepoError::Invalid { message, .. }
                if message.contains("larger than 1048576 bytes")),
            "{err}"
        );
        let sent = settled(server).await;
        assert!(sent < 24 * MIB, "the client read {sent} bytes");
    }

    async fn settled(server: &TestServer) -> usize {
        let mut last = server.sent();
        for _ in 0..20 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let now = server.sent();
            if now == last {
                break;
            }
            last = now;
        }
        last
    }

    const MIB: usize = 1024 * 1024;

    /// F11: an endless index is cut off at the limit, not read to the end and then refused.
    #[tokio::test]
    async fn an_oversized_index_is_refused_while_streaming() {
        let server = serve(vec![("/big/index.yaml", Reply::Endless(64 * MIB))]).await;
        let dir = tempfile::tempdir().expect("dir");
        let helm = repos(dir.path(), MIB);
        let err = helm
            .resolve(
                &format!("{}/big", server.url),
                &Credentials::default(),
                "c",
                "",
            )
            .await
            .expect_err("too large");
        assert_cut_off(&err, &server).await;
    }

    /// F11 for the chart archive.
    #[tokio::test]
    async fn an_oversized_archive_is_refused_while_streaming() {
        let server = serve(vec![("/r/c-1.0.0.tgz", Reply::Endless(64 * MIB))]).await;
        let index = serve(vec![(
            "/r/index.yaml",
            Reply::Body(index_yaml(&format!("{}/r/c-1.0.0.tgz", server.url))),
        )])
        .await;
        let dir = tempfile::tempdir().expect("dir");
        let helm = repos(dir.path(), MIB);
        let err = helm
            .chart(
                &format!("{}/r", index.url),
                &Credentials::default(),
                "c",
                "1.0.0",
            )
            .await
            .expect_err("too large");
        assert_cut_off(&err, &server).await;
    }

    /// F11: a `Content-Length` over the limit is refused before any of the body arrives (the
    /// server here never sends it, so waiting for it would take the whole request timeout).
    #[tokio::test]
    async fn an_oversized_content_length_is_refused_at_once() {
        let server = serve(vec![("/r/index.yaml", Reply::HugeLength)]).await;
        let dir = tempfile::tempdir().expect("dir");
        let helm = repos(dir.path(), MIB);
        let err = tokio::time::timeout(
            Duration::from_secs(10),
            helm.resolve(
                &format!("{}/r", server.url),
                &Credentials::default(),
                "c",
                "",
            ),
        )
        .await
        .expect("refused without waiting for the body")
        .expect_err("too large");
        assert!(
            matches!(&err, HelmRepoError::Invalid { message, .. }
                if message.contains("larger than")),
            "{err}"
        );
    }

    #[test]
    fn chart_names_and_versions_are_checked() {
        for good in ["nginx", "kube-prometheus-stack", "My_Chart.v2", "a", "c1"] {
            assert!(check_chart_name("r", good).is_ok(), "{good}");
        }
        let long = "a".repeat(MAX_NAME + 1);
        for bad in [
            "", "..", "../../x", "a/b", "/abs", "a\\b", ".hidden", "a..b", "a b", "ä", "c\0", &long,
        ] {
            assert!(
                matches!(
                    check_chart_name("r", bad),
                    Err(HelmRepoError::Invalid { .. })
                ),
                "{bad:?}"
            );
        }
        for good in ["1.2.3", "v1.0.0-rc.1+build.5", "0.1.0_x", ""] {
            assert!(check_version("r", good, false).is_ok(), "{good}");
        }
        for good in [
            ">=1.0, <1.5",
            "^1.4",
            "~1.9",
            "*",
            "3.x",
            "1.2 || 2.x",
            "latest",
        ] {
            assert!(check_version("r", good, true).is_ok(), "{good}");
        }
        for bad in ["../1.0", "1.0/x", "1.0\\x", "..", "1 .0", ">=1.0"] {
            assert!(check_version("r", bad, false).is_err(), "{bad:?}");
        }
        for bad in ["../1.0", "1.0/x", "^1\\x", "1.0\n"] {
            assert!(check_version("r", bad, true).is_err(), "{bad:?}");
        }
    }

    /// F16: a chart name walking out of its cache slot must not select another directory.
    #[tokio::test]
    async fn a_traversing_chart_name_is_refused() {
        let dir = tempfile::tempdir().expect("dir");
        let repo_url = "http://127.0.0.1:9/repo";
        let (chart, version) = ("../../x", "1.0.0");
        // What `chart` would return for that name: a chart planted outside its own slot.
        let slot =
            dir.path()
                .join(short(repo_url))
                .join(format!("{}-{}", short(chart), short(version)));
        std::fs::create_dir_all(&slot).expect("slot");
        std::fs::create_dir_all(dir.path().join("x")).expect("x");
        std::fs::write(dir.path().join("x/Chart.yaml"), "name: x\n").expect("planted");

        let helm = repos(dir.path(), MAX_DOWNLOAD);
        let creds = Credentials::default();
        let err = helm
            .chart(repo_url, &creds, chart, version)
            .await
            .expect_err("refused");
        assert!(matches!(err, HelmRepoError::Invalid { .. }), "{err}");
        assert!(err.to_string().contains("invalid chart name"), "{err}");
        let err = helm
            .resolve(repo_url, &creds, chart, "")
            .await
            .expect_err("refused");
        assert!(matches!(err, HelmRepoError::Invalid { .. }), "{err}");
        let err = helm
            .chart(repo_url, &creds, "c", "../../1.0.0")
            .await
            .expect_err("refused");
        assert!(err.to_string().contains("invalid chart version"), "{err}");
    }

    #[test]
    fn userinfo_is_redacted() {
        assert_eq!(
            redact("https://user:pass@host/x?q=a@b"),
            "https://***@host/x?q=a@b"
        );
        assert_eq!(redact("https://tok@host:8443"), "https://***@host:8443");
        assert_eq!(redact("http://a:b@c@host/"), "http://***@host/");
        assert_eq!(redact("https://host/a@b"), "https://host/a@b");
        assert_eq!(redact("oci://host/x"), "oci://host/x");
        assert_eq!(redact("no url"), "no url");
    }

    /// Errors name the repository and archive URLs without their userinfo.
    #[tokio::test]
    async fn errors_do_not_carry_url_credentials() {
        let secret = "s3cr3t-pass";
        let other = serve(vec![]).await; // 404 for everything
        let index = index_yaml(&format!(
            "http://bob:{secret}@{}/c-1.0.0.tgz",
            other.url.trim_start_matches("http://")
        ));
        let repo = serve(vec![("/repo/index.yaml", Reply::Body(index))]).await;
        let host = repo.url.trim_start_matches("http://");
        let dir = tempfile::tempdir().expect("dir");
        let helm = repos(dir.path(), MAX_DOWNLOAD);
        let creds = Credentials::default();

        // The index is found; the archive (userinfo from the index) is not.
        let err = helm
            .chart(
                &format!("http://alice:{secret}@{host}/repo"),
                &creds,
                "c",
                "1.0.0",
            )
            .await
            .expect_err("archive 404");
        assert!(matches!(err, HelmRepoError::NotFound { .. }), "{err}");
        // No index at all.
        let missing = helm
            .resolve(
                &format!("http://alice:{secret}@{host}/none"),
                &creds,
                "c",
                "",
            )
            .await
            .expect_err("index 404");
        // Nobody listening.
        let closed = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            l.local_addr().expect("addr")
        };
        let refused = helm
            .resolve(
                &format!("http://alice:{secret}@{closed}/repo"),
                &creds,
                "c",
                "",
            )
            .await
            .expect_err("refused");
        assert!(
            matches!(refused, HelmRepoError::Unavailable { .. }),
            "{refused}"
        );
        for e in [err, missing, refused] {
            let text = format!("{e} {e:?}");
            assert!(!text.contains(secret), "{text}");
            assert!(text.contains("***@"), "{text}");
        }
    }
}
