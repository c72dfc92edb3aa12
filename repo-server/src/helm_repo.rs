//! Helm chart repositories: read `index.yaml` (briefly cached), resolve a chart version or
//! semver constraint, download the chart archive once (digest checked), and unpack it safely
//! into the cache for the Helm renderer.

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::git::Credentials;
use flotilla_core::coalesce::Coalescer;

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

type ChartKey = (String, String, String);

/// Access to Helm repositories, with a chart cache on disk.
pub struct HelmRepos {
    dir: PathBuf,
    index_ttl: Duration,
    timeout: Duration,
    indexes: Mutex<HashMap<String, (Instant, Arc<Index>)>>,
    charts: Coalescer<ChartKey, Result<PathBuf, HelmRepoError>>,
}

fn http_client(insecure: bool, timeout: Duration) -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .timeout(timeout)
        .danger_accept_invalid_certs(insecure)
        .build()
        .map_err(|e| e.to_string())
}

fn short(s: &str) -> String {
    hex::encode(&Sha256::digest(s.as_bytes())[..8])
}

/// Pick a version from the index entries: an exact version, or the highest one matching a
/// semver constraint (`*`, `>=1.2 <2`, `^1.4`); an empty revision means the latest.
fn pick(versions: &[ChartVersion], wanted: &str) -> Option<ChartVersion> {
    if let Some(exact) = versions.iter().find(|v| v.version == wanted) {
        return Some(exact.clone());
    }
    let req = if wanted.trim().is_empty() || wanted.trim() == "latest" {
        semver::VersionReq::STAR
    } else {
        semver::VersionReq::parse(wanted).ok()?
    };
    versions
        .iter()
        .filter_map(|v| {
            let parsed = semver::Version::parse(v.version.trim_start_matches('v')).ok()?;
            // Pre-releases only when asked for explicitly (semver's own rule).
            req.matches(&parsed).then_some((parsed, v))
        })
        .max_by(|a, b| a.0.cmp(&b.0))
        .map(|(_, v)| v.clone())
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
            indexes: Mutex::new(HashMap::new()),
            charts: Coalescer::default(),
        }
    }

    async fn download(
        &self,
        url: &str,
        repo_url: &str,
        creds: &Credentials,
    ) -> Result<Vec<u8>, HelmRepoError> {
        let unavailable = |message: String| HelmRepoError::Unavailable {
            url: repo_url.to_string(),
            message,
        };
        let client = http_client(creds.insecure, self.timeout).map_err(unavailable)?;
        let mut req = client.get(url);
        if let Some(token) = &creds.bearer_token {
            req = req.bearer_auth(token);
        } else if let Some(user) = &creds.username {
            req = req.basic_auth(user, creds.password.as_deref());
        }
        let resp = req
            .send()
            .await
            .map_err(|e| unavailable(format!("GET {url}: {e}")))?;
        let status = resp.status();
        if status == reqwest::StatusCode::NOT_FOUND {
            return Err(HelmRepoError::NotFound {
                url: repo_url.to_string(),
                message: format!("GET {url}: 404"),
            });
        }
        if !status.is_success() {
            return Err(unavailable(format!("GET {url}: HTTP {status}")));
        }
        let body = resp
            .bytes()
            .await
            .map_err(|e| unavailable(format!("reading {url}: {e}")))?;
        if body.len() > MAX_DOWNLOAD {
            return Err(HelmRepoError::Invalid {
                url: repo_url.to_string(),
                message: format!("{url} is larger than {MAX_DOWNLOAD} bytes"),
            });
        }
        Ok(body.to_vec())
    }

    async fn index(
        &self,
        repo_url: &str,
        creds: &Credentials,
    ) -> Result<Arc<Index>, HelmRepoError> {
        if let Some((at, idx)) = self
            .indexes
            .lock()
            .ok()
            .and_then(|m| m.get(repo_url).cloned())
            && at.elapsed() < self.index_ttl
        {
            return Ok(idx);
        }
        let url = format!("{}/index.yaml", repo_url.trim_end_matches('/'));
        let bytes = self.download(&url, repo_url, creds).await?;
        let idx: Index = serde_yaml::from_slice(&bytes).map_err(|e| HelmRepoError::Invalid {
            url: repo_url.to_string(),
            message: format!("index.yaml: {e}"),
        })?;
        let idx = Arc::new(idx);
        if let Ok(mut m) = self.indexes.lock() {
            m.insert(repo_url.to_string(), (Instant::now(), idx.clone()));
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
                url: repo_url.to_string(),
                message: format!("no chart named {chart:?}"),
            })?;
        pick(versions, wanted).ok_or_else(|| HelmRepoError::NotFound {
            url: repo_url.to_string(),
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
        let idx = self.index(repo_url, creds).await?;
        Ok(Self::find(&idx, repo_url, chart, wanted)?.version)
    }

    /// The unpacked chart directory (holding `Chart.yaml`) of `chart` at `version`.
    pub async fn chart(
        self: &Arc<Self>,
        repo_url: &str,
        creds: &Credentials,
        chart: &str,
        version: &str,
    ) -> Result<PathBuf, HelmRepoError> {
        let dest =
            self.dir
                .join(short(repo_url))
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
        let key = (url.clone(), c.clone(), v.clone());
        let out = self
            .charts
            .run(key, move || async move {
                let idx = this.index(&url, &creds).await?;
                let entry = Self::find(&idx, &url, &c, &v)?;
                let archive_url = entry.urls.first().ok_or_else(|| HelmRepoError::Invalid {
                    url: url.clone(),
                    message: format!("chart {c} {v} has no download URL"),
                })?;
                let absolute = if archive_url.contains("://") {
                    archive_url.clone()
                } else {
                    format!("{}/{}", url.trim_end_matches('/'), archive_url)
                };
                let bytes = this.download(&absolute, &url, &creds).await?;
                if let Some(want) = entry.digest.as_deref().filter(|d| !d.is_empty()) {
                    let got = hex::encode(Sha256::digest(&bytes));
                    if !got.eq_ignore_ascii_case(want) {
                        return Err(HelmRepoError::Invalid {
                            url: url.clone(),
                            message: format!(
                                "chart {c} {v}: digest {got} does not match the index ({want})"
                            ),
                        });
                    }
                }
                let dest2 = dest.clone();
                let parent = this.dir.clone();
                let c2 = c.clone();
                tokio::task::spawn_blocking(move || -> Result<PathBuf, String> {
                    std::fs::create_dir_all(&parent).map_err(|e| e.to_string())?;
                    let tmp = tempfile::tempdir_in(&parent).map_err(|e| e.to_string())?;
                    unpack(&bytes, tmp.path())?;
                    if !tmp.path().join(&c2).join("Chart.yaml").is_file() {
                        return Err(format!("the archive has no {c2}/Chart.yaml"));
                    }
                    if let Some(p) = dest2.parent() {
                        std::fs::create_dir_all(p).map_err(|e| e.to_string())?;
                    }
                    let kept = tmp.keep();
                    if std::fs::rename(&kept, &dest2).is_err() && !dest2.join(&c2).is_dir() {
                        return Err(format!("could not store the chart in {}", dest2.display()));
                    }
                    Ok(dest2.join(&c2))
                })
                .await
                .map_err(|e| HelmRepoError::Invalid {
                    url: url.clone(),
                    message: e.to_string(),
                })?
                .map_err(|message| HelmRepoError::Invalid {
                    url: url.clone(),
                    message: format!("chart {c} {v}: {message}"),
                })
            })
            .await
            .map_err(|message| HelmRepoError::Unavailable {
                url: repo_url.to_string(),
                message,
            })?;
        out.value
    }
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
    }

    #[test]
    fn archives_unpack_and_cannot_escape() {
        let mut good = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        let body = b"name: c\nversion: 1.0.0\n";
        h.set_size(body.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        good.append_data(&mut h, "c/Chart.yaml", &body[..])
            .expect("append");
        let tar_bytes = good.into_inner().expect("tar");
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        std::io::Write::write_all(&mut gz, &tar_bytes).expect("gz");
        let tgz = gz.finish().expect("gz");
        let dir = tempfile::tempdir().expect("dir");
        unpack(&tgz, dir.path()).expect("unpacks");
        assert!(dir.path().join("c/Chart.yaml").is_file());
        assert!(unpack(b"not a tarball", dir.path()).is_err());
    }
}
