//! GitHub App credentials for Git over HTTPS: an app JWT (RS256, signed with the app's key)
//! exchanged for an installation token, cached until a minute before it expires.

use std::collections::HashMap;
use std::sync::{LazyLock, Mutex};
use std::time::Duration;

use base64::Engine;

use crate::transport::{HttpSettings, TransportConfig};

/// A GitHub App installation, from a repository Secret.
#[derive(Clone, PartialEq, Eq)]
pub struct GithubAppCreds {
    pub app_id: i64,
    pub installation_id: i64,
    /// The app's private key (PEM, RSA: PKCS#1 as GitHub hands it out, or PKCS#8).
    pub private_key: String,
    /// GitHub Enterprise's API base (`https://ghe.example.com/api/v3`); `None`: github.com.
    pub enterprise_base_url: Option<String>,
}

impl std::fmt::Debug for GithubAppCreds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GithubAppCreds")
            .field("app_id", &self.app_id)
            .field("installation_id", &self.installation_id)
            .field("enterprise_base_url", &self.enterprise_base_url)
            .finish()
    }
}

/// Why no installation token could be had.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[error("GitHub App {app_id} installation {installation_id}: {message}")]
pub struct GithubAppError {
    pub app_id: i64,
    pub installation_id: i64,
    pub message: String,
}

/// The public GitHub API.
pub const GITHUB_API: &str = "https://api.github.com";
/// Tokens are renewed this long before they expire (as GitHub's own client libraries do).
const RENEW_BEFORE: Duration = Duration::from_secs(60);
/// Largest token response read.
const MAX_RESPONSE: usize = 64 * 1024;

/// Installation tokens by (API base, app, installation, key digest): (token, expiry).
static TOKENS: LazyLock<Mutex<HashMap<String, (String, jiff::Timestamp)>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));

impl GithubAppCreds {
    fn api_base(&self) -> String {
        self.enterprise_base_url
            .as_deref()
            .filter(|b| !b.trim().is_empty())
            .unwrap_or(GITHUB_API)
            .trim_end_matches('/')
            .to_string()
    }

    fn error(&self, message: impl Into<String>) -> GithubAppError {
        GithubAppError {
            app_id: self.app_id,
            installation_id: self.installation_id,
            message: message.into(),
        }
    }

    fn cache_key(&self) -> String {
        use sha2::{Digest, Sha256};
        let digest = hex::encode(Sha256::digest(self.private_key.as_bytes()));
        format!(
            "{}|{}|{}|{digest}",
            self.api_base(),
            self.app_id,
            self.installation_id
        )
    }

    /// The app's JWT as GitHub wants it: RS256, issued a minute in the past (clock skew),
    /// valid nine minutes (GitHub's limit is ten), the app ID as issuer.
    pub fn app_jwt(&self, now: jiff::Timestamp) -> Result<String, GithubAppError> {
        use rustls::pki_types::PrivateKeyDer;
        use rustls::pki_types::pem::PemObject;
        let key = PrivateKeyDer::from_pem_slice(self.private_key.as_bytes())
            .map_err(|_| self.error("githubAppPrivateKey is not a PEM private key"))?;
        let pair = match &key {
            PrivateKeyDer::Pkcs1(k) => ring::signature::RsaKeyPair::from_der(k.secret_pkcs1_der()),
            PrivateKeyDer::Pkcs8(k) => {
                ring::signature::RsaKeyPair::from_pkcs8(k.secret_pkcs8_der())
            }
            _ => return Err(self.error("githubAppPrivateKey is not an RSA key")),
        }
        .map_err(|e| self.error(format!("githubAppPrivateKey is not a usable RSA key: {e}")))?;
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let iat = now.as_second() - 60;
        let header = b64.encode(br#"{"alg":"RS256","typ":"JWT"}"#);
        let claims = b64.encode(
            serde_json::json!({"iat": iat, "exp": iat + 600 - 60, "iss": self.app_id.to_string()})
                .to_string(),
        );
        let signing_input = format!("{header}.{claims}");
        let mut sig = vec![0u8; pair.public().modulus_len()];
        pair.sign(
            &ring::signature::RSA_PKCS1_SHA256,
            &ring::rand::SystemRandom::new(),
            signing_input.as_bytes(),
            &mut sig,
        )
        .map_err(|_| self.error("signing the app JWT failed"))?;
        Ok(format!("{signing_input}.{}", b64.encode(sig)))
    }

    /// An installation token: the cached one while it has more than a minute left, else a new
    /// one from `POST {api}/app/installations/{id}/access_tokens`. Blocking (runs in the
    /// fetch's blocking task).
    pub fn installation_token(
        &self,
        transport: &TransportConfig,
        timeout: Duration,
    ) -> Result<String, GithubAppError> {
        let key = self.cache_key();
        let now = jiff::Timestamp::now();
        if let Ok(cache) = TOKENS.lock()
            && let Some((token, expires)) = cache.get(&key)
            && now + RENEW_BEFORE < *expires
        {
            return Ok(token.clone());
        }
        let (token, expires) = self.mint(transport, timeout, now)?;
        if let Ok(mut cache) = TOKENS.lock() {
            // Bounded by the number of distinct apps configured; drop expired entries.
            cache.retain(|_, (_, e)| *e > now);
            cache.insert(key, (token.clone(), expires));
        }
        tracing::info!(
            app_id = self.app_id,
            installation_id = self.installation_id,
            expires = %expires,
            "GitHub App installation token minted"
        );
        Ok(token)
    }

    fn mint(
        &self,
        transport: &TransportConfig,
        timeout: Duration,
        now: jiff::Timestamp,
    ) -> Result<(String, jiff::Timestamp), GithubAppError> {
        use std::io::Read;
        let url = format!(
            "{}/app/installations/{}/access_tokens",
            self.api_base(),
            self.installation_id
        );
        let shown = flotilla_core::redact::redact_url(&url);
        // The app JWT can mint tokens for every installation of the app: never in clear text.
        if !url.to_ascii_lowercase().starts_with("https://") {
            return Err(self.error(format!(
                "the GitHub API base {shown} is not https:// (the app's JWT would travel in clear text)"
            )));
        }
        let jwt = self.app_jwt(now)?;
        let settings = HttpSettings::for_repo(transport, &url, &Default::default())
            .map_err(|e| self.error(e.0))?;
        let client = settings
            .apply_blocking(
                reqwest::blocking::Client::builder()
                    .timeout(timeout)
                    .redirect(reqwest::redirect::Policy::none()),
            )
            .build()
            .map_err(|e| self.error(crate::helm_repo::describe_reqwest(&e)))?;
        let resp = client
            .post(&url)
            .bearer_auth(&jwt)
            .header("Accept", "application/vnd.github+json")
            .header("X-GitHub-Api-Version", "2022-11-28")
            .header("User-Agent", "flotilla-repo-server")
            .send()
            .map_err(|e| {
                self.error(format!(
                    "POST {shown}: {}",
                    crate::helm_repo::describe_reqwest(&e.without_url())
                ))
            })?;
        let status = resp.status();
        let mut body = Vec::new();
        resp.take(MAX_RESPONSE as u64 + 1)
            .read_to_end(&mut body)
            .map_err(|e| self.error(format!("reading the reply of {shown}: {e}")))?;
        if body.len() > MAX_RESPONSE {
            return Err(self.error(format!("the reply of {shown} is too large")));
        }
        if !status.is_success() {
            // GitHub's error body is a JSON `message`; anything else is not echoed.
            let message = serde_json::from_slice::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| {
                    v["message"]
                        .as_str()
                        .map(|m| m.chars().take(120).collect::<String>())
                })
                .unwrap_or_default();
            return Err(self.error(format!("POST {shown}: HTTP {status} {message}")));
        }
        #[derive(serde::Deserialize)]
        struct Reply {
            token: String,
            expires_at: String,
        }
        let reply: Reply = serde_json::from_slice(&body)
            .map_err(|e| self.error(format!("the reply of {shown} is not a token: {e}")))?;
        let expires: jiff::Timestamp = reply
            .expires_at
            .parse()
            .map_err(|e| self.error(format!("expires_at {:?}: {e}", reply.expires_at)))?;
        if reply.token.is_empty() {
            return Err(self.error(format!("{shown} returned an empty token")));
        }
        Ok((reply.token, expires))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_non_rsa_or_garbled_key_is_a_clear_error() {
        let app = GithubAppCreds {
            app_id: 7,
            installation_id: 9,
            private_key: "not a key".into(),
            enterprise_base_url: None,
        };
        let e = app.app_jwt(jiff::Timestamp::now()).expect_err("garbled");
        assert!(e.to_string().contains("GitHub App 7 installation 9"), "{e}");
        let ec = rcgen::KeyPair::generate().expect("ec key");
        let app = GithubAppCreds {
            private_key: ec.serialize_pem(),
            ..app
        };
        let e = app.app_jwt(jiff::Timestamp::now()).expect_err("not RSA");
        assert!(e.message.contains("RSA"), "{e}");
        assert_eq!(app.api_base(), GITHUB_API);
        let ghe = GithubAppCreds {
            enterprise_base_url: Some("https://ghe.corp/api/v3/".into()),
            ..app
        };
        assert_eq!(ghe.api_base(), "https://ghe.corp/api/v3");
        assert!(!format!("{ghe:?}").contains("BEGIN"), "no key in Debug");
        // The app JWT never goes over plain http (checked before anything is signed or sent).
        let plain = GithubAppCreds {
            enterprise_base_url: Some("http://127.0.0.1:9/api/v3".into()),
            ..ghe
        };
        let e = plain
            .mint(
                &TransportConfig::default(),
                Duration::from_secs(1),
                jiff::Timestamp::now(),
            )
            .expect_err("http");
        assert!(e.message.contains("not https://"), "{e}");
    }
}
