//! GitHub App credentials for Git over HTTPS: an app JWT (RS256, signed with the app's key)
//! exchanged for an installation token, cached until shortly before it expires.

/// A GitHub App installation, from a repository Secret.
#[derive(Clone, PartialEq, Eq)]
pub struct GithubAppCreds {
    pub app_id: i64,
    pub installation_id: i64,
    /// The app's private key (PEM, RSA).
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
