//! One ConfigMap watched by name as a stream of its data: every change, and an empty map when
//! it is deleted or a relist no longer finds it, so settings built from it never go stale.

use std::collections::BTreeMap;

use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use kube::{Api, Client};

/// The data of ConfigMap `name` in `namespace`, each time it changes (watch errors are logged
/// and retried with backoff).
pub fn data_stream(
    client: Client,
    namespace: &str,
    name: &str,
) -> impl Stream<Item = BTreeMap<String, String>> + Send + 'static {
    let api: Api<ConfigMap> = Api::namespaced(client, namespace);
    let cfg = watcher::Config::default().fields(&format!("metadata.name={name}"));
    let name = name.to_string();
    // Whether the current (re)list found the ConfigMap.
    watcher::watcher(api, cfg)
        .default_backoff()
        .scan(false, move |listed, ev| {
            let out = match ev {
                Ok(Event::Apply(cm) | Event::InitApply(cm)) => {
                    *listed = true;
                    Some(cm.data.unwrap_or_default().into_iter().collect())
                }
                Ok(Event::Delete(_)) => Some(BTreeMap::new()),
                Ok(Event::Init) => {
                    *listed = false;
                    None
                }
                Ok(Event::InitDone) if *listed => None,
                Ok(Event::InitDone) => Some(BTreeMap::new()),
                Err(e) => {
                    tracing::warn!(config_map = %name, error = %e, "watching");
                    None
                }
            };
            futures::future::ready(Some(out))
        })
        .filter_map(futures::future::ready)
}
