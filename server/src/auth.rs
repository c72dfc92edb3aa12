//! Who is calling: a bearer token checked on every request. For now the local admin, whose
//! token is bootstrapped into a Secret on first start (as Argo CD's initial admin secret);
//! SSO, ServiceAccount and project tokens come next. Deny by default.

use http::HeaderMap;
use k8s_openapi::api::core::v1::Secret;
use kube::api::PostParams;
use kube::{Api, Client};

/// The Secret holding the local admin's token (key `token`).
pub const ADMIN_SECRET: &str = "flotilla-initial-admin-secret";

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub subject: String,
    /// Groups the caller belongs to (from its identity provider), for RBAC.
    pub groups: Vec<String>,
}

/// Why a call is refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AuthError {
    #[error("no bearer token")]
    Missing,
    #[error("the token is not valid")]
    Invalid,
}

/// Checks bearer tokens.
#[derive(Clone, Default)]
pub struct Authenticator {
    admin_token: Option<String>,
}

impl Authenticator {
    pub fn new(admin_token: Option<String>) -> Self {
        Self {
            admin_token: admin_token.filter(|t| !t.is_empty()),
        }
    }

    /// The caller behind `headers`' `Authorization: Bearer` token.
    pub async fn authenticate(&self, headers: &HeaderMap) -> Result<Principal, AuthError> {
        let token = headers
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or(AuthError::Missing)?;
        match &self.admin_token {
            Some(admin)
                if flotilla_controller::webhook::ct_eq(token.as_bytes(), admin.as_bytes()) =>
            {
                Ok(Principal {
                    subject: "admin".into(),
                    groups: Vec::new(),
                })
            }
            _ => Err(AuthError::Invalid),
        }
    }
}

/// The local admin's token: from [`ADMIN_SECRET`] in `namespace`, created with a random token
/// when missing (the token is never logged; read it from the Secret).
pub async fn bootstrap_admin_token(client: &Client, namespace: &str) -> anyhow::Result<String> {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let read = |s: &Secret| {
        s.data
            .as_ref()
            .and_then(|d| d.get("token"))
            .and_then(|t| String::from_utf8(t.0.clone()).ok())
            .filter(|t| !t.is_empty())
    };
    if let Some(s) = secrets.get_opt(ADMIN_SECRET).await?
        && let Some(t) = read(&s)
    {
        return Ok(t);
    }
    let token = hex::encode(rand::random::<[u8; 32]>());
    let secret: Secret = serde_json::from_value(serde_json::json!({
        "metadata": {"name": ADMIN_SECRET, "labels": {"app.kubernetes.io/part-of": "flotilla"}},
        "stringData": {"token": token}}))?;
    match secrets.create(&PostParams::default(), &secret).await {
        Ok(_) => Ok(token),
        // Another replica created it first: use theirs.
        Err(kube::Error::Api(e)) if e.code == 409 => secrets
            .get(ADMIN_SECRET)
            .await
            .ok()
            .as_ref()
            .and_then(read)
            .ok_or_else(|| anyhow::anyhow!("{ADMIN_SECRET} exists without a token")),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bearer(t: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            http::header::AUTHORIZATION,
            http::HeaderValue::from_str(&format!("Bearer {t}")).expect("header"),
        );
        h
    }

    #[tokio::test]
    async fn only_the_admin_token_passes() {
        let a = Authenticator::new(Some("s3cret".into()));
        assert_eq!(
            a.authenticate(&bearer("s3cret")).await.map(|p| p.subject),
            Ok("admin".into())
        );
        assert_eq!(a.authenticate(&bearer("s3cre")).await, Err(AuthError::Invalid));
        assert_eq!(a.authenticate(&HeaderMap::new()).await, Err(AuthError::Missing));
        // No admin configured: nothing passes.
        assert_eq!(
            Authenticator::new(None).authenticate(&bearer("")).await,
            Err(AuthError::Missing)
        );
        assert_eq!(
            Authenticator::new(Some(String::new())).authenticate(&bearer("x")).await,
            Err(AuthError::Invalid)
        );
    }
}
