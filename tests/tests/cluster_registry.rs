//! The controller's cluster registry, built from the Argo CD cluster Secrets kubesim publishes
//! (over TLS), yields clients that reach every destination cluster.

use anyhow::{Context, Result, ensure};
use flotilla_controller::clusters::Registry;
use flotilla_loadtest::kubesim::{KubeSim, SECRET_TYPE_LABEL, SimConfig};
use flotilla_tests::client_from_kubeconfig;
use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::api::ListParams;
use kube::{Api, Client};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registry_from_cluster_secrets_reaches_every_cluster() -> Result<()> {
    let sim = KubeSim::start(SimConfig {
        clusters: 5,
        tls: true,
        ..SimConfig::default()
    })
    .await?;
    let cp = client_from_kubeconfig(&sim.kubeconfig_yaml(), Some("control-plane")).await?;
    let secrets = Api::<Secret>::namespaced(cp, "argocd")
        .list(&ListParams::default().labels(&format!("{SECRET_TYPE_LABEL}=cluster")))
        .await?;
    let registry = Registry::from_secrets(&secrets.items, None);
    ensure!(registry.errors.is_empty(), "{:?}", registry.errors);
    ensure!(registry.len() == 5);
    for target in sim.clusters() {
        let c = registry
            .resolve(Some(&target.url()), None)
            .with_context(|| format!("{} by server", target.name))?;
        ensure!(registry.resolve(None, Some(&target.name)).is_some());
        let client = Client::try_from(c.kube_config()?)?;
        let ns = Api::<Namespace>::all(client).get("default").await?;
        ensure!(ns.metadata.name.as_deref() == Some("default"));
    }
    Ok(())
}
