//! Talking to flotilla-server: the stored login (server URL and token, a file only its owner
//! reads), GET with the bearer token, errors by status, and every page of a list.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// What a command could not do.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error(
        "not logged in: run `flotilla login URL --token TOKEN` or set FLOTILLA_SERVER and FLOTILLA_AUTH_TOKEN"
    )]
    NotLoggedIn,
    #[error("the server refused the token: {0}")]
    Unauthorized(String),
    #[error("permission denied: {0}")]
    Forbidden(String),
    #[error("not found: {0}")]
    NotFound(String),
    #[error("the server answered {0}: {1}")]
    Refused(u16, String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Failed(String),
    #[error("timed out: {0}")]
    Timeout(String),
    #[error("cannot reach the server: {0}")]
    Unreachable(String),
    #[error("{0}")]
    Config(String),
}

/// The stored login.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Config {
    pub server: String,
    pub token: String,
}

impl Config {
    /// `$XDG_CONFIG_HOME/flotilla/config.json`, else `~/.config/flotilla/config.json`.
    pub fn default_path() -> PathBuf {
        let base = std::env::var_os("XDG_CONFIG_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))
            .unwrap_or_else(|| PathBuf::from("."));
        base.join("flotilla").join("config.json")
    }

    pub fn load(path: &Path) -> Result<Self, ApiError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ApiError::Config(format!("reading {}: {e}", path.display())))?;
        serde_json::from_str(&text).map_err(|e| {
            ApiError::Config(format!("{} is not a flotilla login: {e}", path.display()))
        })
    }

    /// Write the login readable by its owner only (it holds a token).
    pub fn save(&self, path: &Path) -> Result<(), ApiError> {
        let err = |e: std::io::Error| ApiError::Config(format!("writing {}: {e}", path.display()));
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(err)?;
        }
        let text =
            serde_json::to_string_pretty(self).map_err(|e| ApiError::Config(e.to_string()))?;
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
        use std::io::Write;
        let mut f = opts.open(path).map_err(err)?;
        // An existing file keeps its mode on open: make it private before the token goes in.
        #[cfg(unix)]
        f.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .map_err(err)?;
        f.write_all(text.as_bytes()).map_err(err)
    }
}

/// A client of one server with one token.
pub struct Api {
    base: String,
    token: String,
    http: reqwest::Client,
}

/// An error and its causes, `a: b: c` (reqwest's own message alone says little).
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        out.push_str(": ");
        out.push_str(&c.to_string());
        cur = c.source();
    }
    out
}

/// The HTTP client every call uses (30 s per request).
pub fn http() -> Result<reqwest::Client, ApiError> {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .map_err(|e| ApiError::Config(format!("HTTP client: {e}")))
}

impl Api {
    pub fn new(server: &str, token: &str) -> Result<Self, ApiError> {
        let http = http()?;
        Ok(Self {
            base: server.trim_end_matches('/').to_string(),
            token: token.to_string(),
            http,
        })
    }

    /// GET `path` (with its query) as JSON.
    pub async fn get(&self, path: &str) -> Result<Value, ApiError> {
        self.call(self.http.get(format!("{}{path}", self.base)))
            .await
    }

    /// POST `body` (JSON) to `path`.
    pub async fn post(&self, path: &str, body: &Value) -> Result<Value, ApiError> {
        let req = self
            .http
            .post(format!("{}{path}", self.base))
            .header("content-type", "application/json")
            .body(body.to_string());
        self.call(req).await
    }

    /// DELETE `path` (with its query).
    pub async fn delete(&self, path: &str) -> Result<Value, ApiError> {
        self.call(self.http.delete(format!("{}{path}", self.base)))
            .await
    }

    async fn call(&self, req: reqwest::RequestBuilder) -> Result<Value, ApiError> {
        let resp = req
            .bearer_auth(&self.token)
            .send()
            .await
            .map_err(|e| ApiError::Unreachable(chain(&e.without_url())))?;
        let code = resp.status().as_u16();
        let text = resp
            .text()
            .await
            .map_err(|e| ApiError::Unreachable(crate::client::chain(&e.without_url())))?;
        let body: Value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        let message = body["error"]
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| body.to_string());
        match code {
            200 => Ok(body),
            401 => Err(ApiError::Unauthorized(message)),
            403 => Err(ApiError::Forbidden(message)),
            404 => Err(ApiError::NotFound(message)),
            409 => Err(ApiError::Conflict(message)),
            _ => Err(ApiError::Refused(code, message)),
        }
    }

    /// Every application matching `filters`, all pages.
    pub async fn list_apps(
        &self,
        filters: &[(&str, Option<String>)],
    ) -> Result<Vec<Value>, ApiError> {
        let mut query: Vec<String> = filters
            .iter()
            .filter_map(|(k, v)| v.as_ref().map(|v| format!("{k}={}", encode(v))))
            .collect();
        query.push("limit=500".into());
        let mut out = Vec::new();
        let mut cont: Option<String> = None;
        loop {
            let mut q = query.clone();
            if let Some(c) = &cont {
                q.push(format!("continue={}", encode(c)));
            }
            let page = self
                .get(&format!("/api/v1/applications?{}", q.join("&")))
                .await?;
            out.extend(page["items"].as_array().cloned().unwrap_or_default());
            cont = page["metadata"]["continue"].as_str().map(str::to_string);
            if cont.is_none() {
                return Ok(out);
            }
        }
    }
}

/// Percent-encode a query value (RFC 3986 unreserved characters pass).
pub fn encode(v: &str) -> String {
    v.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_values_are_encoded() {
        assert_eq!(encode("tier=back,team!=a"), "tier%3Dback%2Cteam%21%3Da");
        assert_eq!(encode("argocd/web"), "argocd%2Fweb");
    }

    #[test]
    fn the_login_is_private_to_its_owner() {
        let dir = std::env::temp_dir().join(format!("flotilla-cli-{}", std::process::id()));
        let path = dir.join("config.json");
        Config {
            server: "http://x".into(),
            token: "t".into(),
        }
        .save(&path)
        .expect("saved");
        // An existing, readable file becomes private when a token is written into it.
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
            Config {
                server: "http://x".into(),
                token: "t".into(),
            }
            .save(&path)
            .expect("saved again");
        }
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).expect("meta").permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
        assert_eq!(Config::load(&path).expect("loads").token, "t");
        let _ = std::fs::remove_dir_all(dir);
    }
}
