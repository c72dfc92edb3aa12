//! A tower layer on every destination-cluster client that counts its Kubernetes API requests
//! by verb, resource and response code (`flotilla_app_k8s_request_total`).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Method, Request, Response};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;

use super::metrics::K8sRequestLabels;

/// Counts requests of the client for `server` into `counter`.
#[derive(Clone)]
pub struct CountRequests {
    pub server: Arc<str>,
    pub counter: Family<K8sRequestLabels, Counter>,
}

impl<S> tower::Layer<S> for CountRequests {
    type Service = Counted<S>;
    fn layer(&self, inner: S) -> Counted<S> {
        Counted {
            inner,
            layer: self.clone(),
        }
    }
}

/// The counting service.
#[derive(Clone)]
pub struct Counted<S> {
    inner: S,
    layer: CountRequests,
}

/// Kubernetes' verb and the resource of an API request path such as
/// `/apis/apps/v1/namespaces/web/deployments/x` (`Get`, `deployments`).
pub fn verb_and_resource(
    method: &Method,
    path: &str,
    query: Option<&str>,
) -> (&'static str, String) {
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let rest: &[&str] = match segs.as_slice() {
        ["api", _version, rest @ ..] => rest,
        ["apis", _group, _version, rest @ ..] => rest,
        _ => &[],
    };
    let rest = match rest {
        ["namespaces", _ns, tail @ ..] if !tail.is_empty() => tail,
        other => other,
    };
    let resource = rest.first().map(|r| r.to_string()).unwrap_or_default();
    let named = rest.len() >= 2;
    let watch = query.is_some_and(|q| q.split('&').any(|kv| kv == "watch=true" || kv == "watch=1"));
    let verb = match *method {
        Method::GET if watch => "Watch",
        Method::GET if named || resource.is_empty() => "Get",
        Method::GET => "List",
        Method::POST => "Create",
        Method::PUT => "Update",
        Method::PATCH => "Patch",
        Method::DELETE if named => "Delete",
        Method::DELETE => "DeleteCollection",
        _ => "Other",
    };
    (verb, resource)
}

impl<S, B, R> tower::Service<Request<B>> for Counted<S>
where
    S: tower::Service<Request<B>, Response = Response<R>>,
    S::Future: Send + 'static,
    S::Error: 'static,
{
    type Response = Response<R>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Response<R>, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let (verb, resource) = verb_and_resource(req.method(), req.uri().path(), req.uri().query());
        let fut = self.inner.call(req);
        let layer = self.layer.clone();
        Box::pin(async move {
            let res = fut.await;
            let response_code = match &res {
                Ok(r) => r.status().as_u16().to_string(),
                Err(_) => "error".to_string(),
            };
            layer
                .counter
                .get_or_create(&K8sRequestLabels {
                    server: layer.server.to_string(),
                    verb,
                    resource,
                    response_code,
                })
                .inc();
            res
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_map_to_kubernetes_verbs_and_resources() {
        let cases = [
            (
                Method::GET,
                "/api/v1/namespaces/web/configmaps/x",
                None,
                ("Get", "configmaps"),
            ),
            (
                Method::GET,
                "/api/v1/configmaps",
                Some("labelSelector=a"),
                ("List", "configmaps"),
            ),
            (
                Method::GET,
                "/apis/apps/v1/deployments",
                Some("watch=true&resourceVersion=5"),
                ("Watch", "deployments"),
            ),
            (
                Method::PATCH,
                "/apis/apps/v1/namespaces/web/deployments/web",
                None,
                ("Patch", "deployments"),
            ),
            (
                Method::DELETE,
                "/api/v1/namespaces/web/configmaps/x",
                None,
                ("Delete", "configmaps"),
            ),
            (
                Method::POST,
                "/api/v1/namespaces",
                None,
                ("Create", "namespaces"),
            ),
            (
                Method::GET,
                "/api/v1/namespaces/web",
                None,
                ("Get", "namespaces"),
            ),
            (Method::GET, "/apis", None, ("Get", "")),
        ];
        for (m, path, q, (verb, res)) in cases {
            assert_eq!(
                verb_and_resource(&m, path, q),
                (verb, res.to_string()),
                "{m} {path}"
            );
        }
    }
}
