//! One ConfigMap (or Secret) watched by name as a stream of its data: every change, and an
//! empty map when it is deleted or a relist no longer finds it, so settings never go stale.

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
    named_stream(
        Api::<ConfigMap>::namespaced(client, namespace),
        name,
        |cm: ConfigMap| cm.data.unwrap_or_default().into_iter().collect(),
    )
}

/// `data` of the object `name` of `api`'s kind each time it changes, and `V::default()` when
/// it is deleted or a relist no longer finds it.
pub fn named_stream<K, V>(
    api: Api<K>,
    name: &str,
    data: fn(K) -> V,
) -> impl Stream<Item = V> + Send + 'static
where
    K: kube::Resource + Clone + std::fmt::Debug + serde::de::DeserializeOwned + Send + 'static,
    K::DynamicType: Default,
    V: Default + Send + 'static,
{
    let cfg = watcher::Config::default().fields(&format!("metadata.name={name}"));
    let name = name.to_string();
    // Whether the current (re)list found the object.
    watcher::watcher(api, cfg)
        .default_backoff()
        .scan(false, move |listed, ev| {
            let out = match ev {
                Ok(Event::Apply(o) | Event::InitApply(o)) => {
                    *listed = true;
                    Some(data(o))
                }
                Ok(Event::Delete(_)) => Some(V::default()),
                Ok(Event::Init) => {
                    *listed = false;
                    None
                }
                Ok(Event::InitDone) if *listed => None,
                Ok(Event::InitDone) => Some(V::default()),
                Err(e) => {
                    tracing::warn!(object = %name, error = %e, "watching");
                    None
                }
            };
            futures::future::ready(Some(out))
        })
        .filter_map(futures::future::ready)
}
