//! `flotilla login URL --sso`: the OIDC authorization-code flow with PKCE, as `argocd login
//! --sso` runs it: the server names the issuer and the CLI's client ID, the browser signs in
//! at the provider, which redirects to a one-shot listener on loopback with the code.

use std::time::Duration;

use base64::Engine;
use serde_json::Value;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::client::ApiError;

/// How long the browser has to finish the sign-in.
const TIMEOUT: Duration = Duration::from_secs(300);
/// The largest callback request read.
const MAX_REQUEST: usize = 16 * 1024;

fn b64(bytes: impl AsRef<[u8]>) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn random() -> String {
    b64(rand::random::<[u8; 32]>())
}

/// The PKCE S256 challenge of `verifier`.
pub fn challenge(verifier: &str) -> String {
    b64(Sha256::digest(verifier.as_bytes()))
}

fn config_err(what: impl std::fmt::Display) -> ApiError {
    ApiError::Config(format!("SSO login: {what}"))
}

/// The query parameters of a request line `GET /path?a=b HTTP/1.1`.
fn callback_params(request: &str) -> Option<Vec<(String, String)>> {
    let target = request.lines().next()?.split(' ').nth(1)?;
    let url = url::Url::parse(&format!("http://localhost{target}")).ok()?;
    (url.path() == "/auth/callback").then(|| url.query_pairs().into_owned().collect())
}

/// The `nonce` claim of an ID token (read, not verified: the API server verifies the token;
/// the CLI only checks that it answers this login).
fn nonce_of(id_token: &str) -> Option<String> {
    let payload = id_token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    let claims: Value = serde_json::from_slice(&bytes).ok()?;
    claims["nonce"].as_str().map(str::to_string)
}

/// Sign in through the server's SSO and return the ID token. `port` is the loopback port the
/// provider redirects to (`http://localhost:<port>/auth/callback` must be registered for the
/// CLI's client; 0 picks a free one).
pub async fn login(http: &reqwest::Client, server: &str, port: u16) -> Result<String, ApiError> {
    let get_json = |url: String| async move {
        let resp = http
            .get(&url)
            .send()
            .await
            .map_err(|e| ApiError::Unreachable(crate::client::chain(&e.without_url())))?;
        if !resp.status().is_success() {
            return Err(config_err(format!("{url} answered {}", resp.status())));
        }
        let text = resp.text().await.map_err(|e| config_err(e.without_url()))?;
        serde_json::from_str::<Value>(&text).map_err(config_err)
    };
    let cfg = get_json(format!(
        "{}/api/v1/auth/config",
        server.trim_end_matches('/')
    ))
    .await?;
    if cfg["sso"] != true {
        return Err(config_err("the server has no SSO configured (use --token)"));
    }
    let issuer = cfg["issuer"]
        .as_str()
        .unwrap_or_default()
        .trim_end_matches('/');
    let client_id = cfg["cliClientID"]
        .as_str()
        .or(cfg["clientID"].as_str())
        .unwrap_or_default()
        .to_string();
    let discovery = get_json(format!("{issuer}/.well-known/openid-configuration")).await?;
    let (Some(authorize), Some(token_endpoint)) = (
        discovery["authorization_endpoint"].as_str(),
        discovery["token_endpoint"].as_str(),
    ) else {
        return Err(config_err("the provider's discovery lacks its endpoints"));
    };
    let scopes: Vec<String> = cfg["scopes"]
        .as_array()
        .map(|s| {
            s.iter()
                .filter_map(|x| x.as_str().map(str::to_string))
                .collect()
        })
        .filter(|s: &Vec<String>| !s.is_empty())
        .unwrap_or_else(|| {
            vec![
                "openid".into(),
                "profile".into(),
                "email".into(),
                "groups".into(),
            ]
        });

    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .map_err(|e| config_err(format!("listening on 127.0.0.1:{port}: {e}")))?;
    let port = listener.local_addr().map_err(config_err)?.port();
    let redirect = format!("http://localhost:{port}/auth/callback");
    let (verifier, state, nonce) = (random(), random(), random());
    let mut url = url::Url::parse(authorize).map_err(config_err)?;
    url.query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", &client_id)
        .append_pair("redirect_uri", &redirect)
        .append_pair("scope", &scopes.join(" "))
        .append_pair("state", &state)
        .append_pair("nonce", &nonce)
        .append_pair("code_challenge", &challenge(&verifier))
        .append_pair("code_challenge_method", "S256");
    println!("Open this URL in a browser to sign in:\n{url}");
    // Best effort: a desktop opens it; a headless machine just prints it.
    let _ = std::process::Command::new("xdg-open")
        .arg(url.as_str())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn();

    let code = tokio::time::timeout(TIMEOUT, async {
        loop {
            let (mut conn, _) = listener.accept().await.map_err(config_err)?;
            let mut buf = vec![0u8; MAX_REQUEST];
            let n = tokio::time::timeout(Duration::from_secs(10), conn.read(&mut buf))
                .await
                .map_err(|_| config_err("the callback request timed out"))?
                .map_err(config_err)?;
            let request = String::from_utf8_lossy(&buf[..n]).to_string();
            let Some(params) = callback_params(&request) else {
                let _ = conn
                    .write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                    .await;
                continue;
            };
            let param = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
            // Only an answer carrying this login's state counts (any local page could call
            // the listener); a wrong one is refused and the login keeps waiting.
            if param("state").as_deref() != Some(state.as_str()) {
                let _ = conn
                    .write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                    .await;
                continue;
            }
            let (status, body, result) = match (param("code"), param("error")) {
                (_, Some(e)) => ("400 Bad Request", format!("Sign-in failed: {e}"), Err(config_err(format!("the provider refused: {e}")))),
                (Some(c), None) => ("200 OK", "Signed in to Flotilla. You can close this window.".to_string(), Ok(c)),
                (None, None) => ("400 Bad Request", "Unexpected sign-in response.".to_string(), Err(config_err("the callback has no code"))),
            };
            let _ = conn
                .write_all(
                    format!(
                        "HTTP/1.1 {status}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    )
                    .as_bytes(),
                )
                .await;
            return result;
        }
    })
    .await
    .map_err(|_| ApiError::Timeout(format!("no sign-in within {}s", TIMEOUT.as_secs())))??;

    let form = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("grant_type", "authorization_code")
        .append_pair("code", &code)
        .append_pair("redirect_uri", &redirect)
        .append_pair("client_id", &client_id)
        .append_pair("code_verifier", &verifier)
        .finish();
    let resp = http
        .post(token_endpoint)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form)
        .send()
        .await
        .map_err(|e| ApiError::Unreachable(crate::client::chain(&e.without_url())))?;
    let status = resp.status();
    let body: Value =
        serde_json::from_str(&resp.text().await.unwrap_or_default()).unwrap_or(Value::Null);
    if !status.is_success() {
        return Err(config_err(format!(
            "the token endpoint answered {status}: {}",
            body["error_description"]
                .as_str()
                .or(body["error"].as_str())
                .unwrap_or_default()
        )));
    }
    let id_token = body["id_token"]
        .as_str()
        .ok_or_else(|| config_err("the token response has no id_token"))?
        .to_string();
    if nonce_of(&id_token).as_deref() != Some(nonce.as_str()) {
        return Err(config_err(
            "the ID token does not answer this login (nonce)",
        ));
    }
    Ok(id_token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pkce_and_the_callback_are_read_as_specified() {
        // RFC 7636, appendix B.
        assert_eq!(
            challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
        let p =
            callback_params("GET /auth/callback?code=abc&state=xyz HTTP/1.1\r\nHost: x\r\n\r\n")
                .expect("callback");
        assert_eq!(
            p,
            vec![
                ("code".into(), "abc".into()),
                ("state".into(), "xyz".into())
            ]
        );
        assert!(callback_params("GET /favicon.ico HTTP/1.1\r\n\r\n").is_none());
        let token = format!(
            "e30.{}.sig",
            b64(serde_json::json!({"nonce": "n1"}).to_string())
        );
        assert_eq!(nonce_of(&token).as_deref(), Some("n1"));
        assert_eq!(nonce_of("garbage"), None);
    }
}
