//! Shared harness for the workspace integration tests: a Kubernetes API server to test against
//! (kubesim in-process by default, a real cluster when `FLOTILLA_TEST_KUBECONFIG` is set), fresh
//! namespaces that are cleaned up, and polling helpers. Must not mock any Flotilla part.
#![forbid(unsafe_code)]

pub use flotilla_loadtest::browser;
pub mod e2e;

use std::future::Future;
use std::sync::Mutex;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use flotilla_loadtest::kubesim::{KubeSim, SimConfig};
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{DeleteParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, Config};

/// Environment variable naming a kubeconfig of a real cluster to run the conformance suite on.
pub const REAL_CLUSTER_ENV: &str = "FLOTILLA_TEST_KUBECONFIG";

/// Label on every namespace the suite creates, so leftovers are easy to find.
pub const SUITE_LABEL: &str = "flotilla.dev/conformance";

/// The API server under test.
pub struct Target {
    pub client: Client,
    /// The same API server without the client's retries of 429/503/504 (to see those answers).
    pub no_retry: Client,
    /// `Some` when running against kubesim (kubesim-only assertions may use it).
    pub sim: Option<KubeSim>,
    namespaces: Mutex<Vec<String>>,
}

/// A client for a kubeconfig text.
pub async fn client_from_kubeconfig(yaml: &str, context: Option<&str>) -> Result<Client> {
    client_with_retry(yaml, context, true).await
}

/// A client for a kubeconfig text, with or without kube's retries of 429/503/504.
pub async fn client_with_retry(yaml: &str, context: Option<&str>, retry: bool) -> Result<Client> {
    let kc = Kubeconfig::from_yaml(yaml).context("parsing kubeconfig")?;
    let opts = KubeConfigOptions {
        context: context.map(str::to_string),
        ..Default::default()
    };
    let mut cfg = Config::from_custom_kubeconfig(kc, &opts)
        .await
        .context("building client config")?;
    cfg.default_retry = retry;
    // kube sets no read timeout: a server that never answers would hang a test until CI's
    // limit. Two minutes of silence is an error here (watches get bookmarks well before).
    cfg.read_timeout = Some(std::time::Duration::from_secs(120));
    Client::try_from(cfg).context("building client")
}

impl Target {
    /// kubesim with one target cluster, or the real cluster named by `FLOTILLA_TEST_KUBECONFIG`.
    pub async fn new() -> Result<Self> {
        Self::with_config(SimConfig {
            clusters: 1,
            ..SimConfig::default()
        })
        .await
    }

    pub async fn with_config(cfg: SimConfig) -> Result<Self> {
        if let Ok(path) = std::env::var(REAL_CLUSTER_ENV) {
            let yaml = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
            let client = client_from_kubeconfig(&yaml, None).await?;
            let no_retry = client_with_retry(&yaml, None, false).await?;
            return Ok(Self {
                client,
                no_retry,
                sim: None,
                namespaces: Mutex::new(Vec::new()),
            });
        }
        let sim = KubeSim::start(cfg).await?;
        // The suite talks to a target cluster the way the controller does, over HTTP.
        let name = sim
            .clusters()
            .first()
            .map(|c| c.name.clone())
            .unwrap_or_else(|| sim.control_plane().name.clone());
        let client = client_from_kubeconfig(&sim.kubeconfig_yaml(), Some(&name)).await?;
        let no_retry = client_with_retry(&sim.kubeconfig_yaml(), Some(&name), false).await?;
        Ok(Self {
            client,
            no_retry,
            sim: Some(sim),
            namespaces: Mutex::new(Vec::new()),
        })
    }

    pub fn is_kubesim(&self) -> bool {
        self.sim.is_some()
    }

    /// Create a fresh namespace `conf-<prefix>-<random>`, deleted when the target drops.
    pub async fn namespace(&self, prefix: &str) -> Result<String> {
        let name = format!(
            "conf-{prefix}-{}",
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        );
        let ns: Namespace = serde_json::from_value(serde_json::json!({
            "metadata": {"name": name, "labels": {SUITE_LABEL: "true"}}
        }))?;
        Api::<Namespace>::all(self.client.clone())
            .create(&PostParams::default(), &ns)
            .await
            .with_context(|| format!("creating namespace {name}"))?;
        if let Ok(mut list) = self.namespaces.lock() {
            list.push(name.clone());
        }
        Ok(name)
    }

    /// A unique name for cluster-scoped objects.
    pub fn unique(&self, prefix: &str) -> String {
        format!(
            "{prefix}-{}",
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        )
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        if self.sim.is_some() {
            return;
        }
        let names = self
            .namespaces
            .lock()
            .map(|mut l| std::mem::take(&mut *l))
            .unwrap_or_default();
        if names.is_empty() {
            return;
        }
        let client = self.client.clone();
        // Drop cannot await; clean up on a helper thread with its own runtime.
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async move {
                let api = Api::<Namespace>::all(client);
                for n in names {
                    let _ = api.delete(&n, &DeleteParams::default()).await;
                }
            });
        })
        .join();
    }
}

/// Poll `f` until it returns `Ok(Some(v))`, failing after `timeout` with the last error.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut f: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Option<T>>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    let mut last = String::from("condition not met");
    loop {
        match f().await {
            Ok(Some(v)) => return Ok(v),
            Ok(None) => {}
            Err(e) => last = format!("{e:#}"),
        }
        if tokio::time::Instant::now() >= deadline {
            bail!("timed out after {timeout:?} waiting for {what}: {last}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The `Status` of a failed API call.
pub fn api_status(e: &kube::Error) -> Option<&kube::core::Status> {
    match e {
        kube::Error::Api(s) => Some(s),
        _ => None,
    }
}

/// A client for `server` authenticating with a bearer `token`.
pub fn client_with_token(server: &str, token: &str) -> Result<Client> {
    let mut cfg = Config::new(server.parse().context("server URL")?);
    cfg.auth_info.token = Some(token.to_string().into());
    Client::try_from(cfg).context("building client")
}
