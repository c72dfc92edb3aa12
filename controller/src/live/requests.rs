//! A tower layer on every destination-cluster client that counts its Kubernetes API requests
//! by verb, resource and response code (`flotilla_app_k8s_request_total`, and with
//! `--argocd-metrics` Argo CD's `argocd_app_k8s_request_total`).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Method, Request, Response};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;

use super::metrics::{CacheMetrics, K8sRequestLabels};
use crate::metrics_argocd::{ArgoK8sRequestLabels, ArgoMetrics};

/// Counts requests of the client for `server` into `counter` and Argo CD's `argocd`.
#[derive(Clone)]
pub struct CountRequests {
    pub server: Arc<str>,
    pub counter: Option<Family<K8sRequestLabels, Counter>>,
    pub argocd: Option<Arc<ArgoMetrics>>,
    /// `host[:port]` of `server` (client-go's `host` label).
    pub host: Arc<str>,
}

impl CountRequests {
    /// Count the requests to `server` into the series `metrics` exports.
    pub fn new(server: &str, metrics: &CacheMetrics) -> Self {
        Self {
            server: server.into(),
            counter: (!metrics.argocd_only).then(|| metrics.k8s_requests.clone()),
            argocd: metrics.argocd.clone(),
            host: host_of(server).into(),
        }
    }
}

/// The namespace of a namespaced request path (`/api/v1/namespaces/web/configmaps` → `web`;
/// a namespace itself, `/api/v1/namespaces/web`, has none), as Argo CD's `resource_namespace`.
pub fn namespace_of(path: &str) -> &str {
    let mut segs = path.split('/').filter(|s| !s.is_empty());
    while let Some(s) = segs.next() {
        if s == "namespaces" {
            let ns = segs.next().unwrap_or_default();
            return if segs.next().is_some() { ns } else { "" };
        }
    }
    ""
}

/// `host[:port]` of a server URL.
pub fn host_of(server: &str) -> &str {
    let rest = server.split_once("://").map_or(server, |(_, r)| r);
    rest.split(['/', '?', '#']).next().unwrap_or_default()
}

/// Argo CD's verb for ours (its request parser knows no collection delete).
fn argocd_verb(verb: &'static str) -> &'static str {
    match verb {
        "DeleteCollection" => "Delete",
        "Other" => "Unknown",
        v => v,
    }
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

/// Whether a request's query asks for a watch (`watch=true` or `watch=1`).
pub fn is_watch(query: Option<&str>) -> bool {
    query.is_some_and(|q| q.split('&').any(|kv| kv == "watch=true" || kv == "watch=1"))
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
    let watch = is_watch(query);
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
        let argocd = self.layer.argocd.is_some().then(|| {
            (
                namespace_of(req.uri().path()).to_string(),
                req.method().as_str().to_string(),
            )
        });
        let fut = self.inner.call(req);
        let layer = self.layer.clone();
        Box::pin(async move {
            let res = fut.await;
            let status = res.as_ref().ok().map(|r| r.status().as_u16());
            if let (Some(argo), Some((namespace, method))) = (&layer.argocd, argocd) {
                argo.kubectl_requests
                    .get_or_create(&crate::metrics_argocd::ArgoKubectlRequestLabels {
                        host: layer.host.clone(),
                        method,
                        // client-go's code of a request without a response.
                        code: status.map_or_else(|| "<error>".to_string(), |s| s.to_string()),
                    })
                    .inc();
                argo.k8s_requests
                    .get_or_create(&ArgoK8sRequestLabels {
                        namespace: "",
                        name: "",
                        project: "",
                        server: layer.server.to_string(),
                        // Argo CD's status code of a request without a response is 0.
                        response_code: status.unwrap_or(0).to_string(),
                        verb: argocd_verb(verb),
                        resource_kind: resource.clone(),
                        resource_namespace: namespace,
                        dry_run: "false",
                    })
                    .inc();
            }
            if let Some(counter) = &layer.counter {
                counter
                    .get_or_create(&K8sRequestLabels {
                        server: layer.server.to_string(),
                        verb,
                        resource,
                        response_code: status
                            .map(|s| s.to_string())
                            .unwrap_or_else(|| "error".to_string()),
                    })
                    .inc();
            }
            res
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespaces_of_request_paths() {
        for (path, ns) in [
            ("/api/v1/namespaces/web/configmaps/x", "web"),
            ("/apis/apps/v1/namespaces/web/deployments", "web"),
            ("/api/v1/namespaces/web", ""),
            ("/api/v1/namespaces", ""),
            ("/apis/apps/v1/deployments", ""),
        ] {
            assert_eq!(namespace_of(path), ns, "{path}");
        }
        assert_eq!(argocd_verb("DeleteCollection"), "Delete");
        assert_eq!(host_of("https://10.0.0.1:6443/"), "10.0.0.1:6443");
        assert_eq!(
            host_of("https://kubernetes.default.svc"),
            "kubernetes.default.svc"
        );
        assert_eq!(argocd_verb("Patch"), "Patch");
    }

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
