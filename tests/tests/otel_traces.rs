//! OpenTelemetry end to end: an in-process OTLP collector receives the spans of the real
//! controller and repo-server processes, and one reconciliation is one trace whose spans cross
//! from the controller into the repo-server with the right parent/child links.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use flotilla_loadtest::fleet::{Fleet, FleetConfig};
use flotilla_tests::e2e::*;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};

/// One received span, flattened.
#[derive(Debug, Clone)]
struct Span {
    service: String,
    name: String,
    trace: Vec<u8>,
    id: Vec<u8>,
    parent: Vec<u8>,
}

#[derive(Clone, Default)]
struct Collector {
    spans: Arc<Mutex<Vec<Span>>>,
}

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let mut out = Vec::new();
        for rs in request.into_inner().resource_spans {
            let service = rs
                .resource
                .iter()
                .flat_map(|r| r.attributes.iter())
                .find(|a| a.key == "service.name")
                .and_then(|a| a.value.as_ref())
                .and_then(|v| match &v.value {
                    Some(
                        opentelemetry_proto::tonic::common::v1::any_value::Value::StringValue(s),
                    ) => Some(s.clone()),
                    _ => None,
                })
                .unwrap_or_default();
            for ss in rs.scope_spans {
                for s in ss.spans {
                    out.push(Span {
                        service: service.clone(),
                        name: s.name,
                        trace: s.trace_id,
                        id: s.span_id,
                        parent: s.parent_span_id,
                    });
                }
            }
        }
        if let Ok(mut spans) = self.spans.lock() {
            spans.extend(out);
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

/// The chain of span names from `span` up to its trace's root, as far as received.
fn ancestry<'a>(span: &'a Span, by_id: &HashMap<&[u8], &'a Span>) -> Vec<(&'a str, &'a str)> {
    let mut out = vec![(span.service.as_str(), span.name.as_str())];
    let mut cur = span;
    while !cur.parent.is_empty() {
        let Some(p) = by_id.get(cur.parent.as_slice()) else {
            out.push(("?", "?"));
            break;
        };
        out.push((p.service.as_str(), p.name.as_str()));
        cur = p;
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_reconciliation_is_one_trace_across_controller_and_repo_server() -> Result<()> {
    let collector = Collector::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let server = tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(TraceServiceServer::new(collector.clone()))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    let env = |k: &str, v: String| (k.to_string(), v);
    let fleet = Fleet::start(FleetConfig {
        env: vec![
            env("OTEL_EXPORTER_OTLP_ENDPOINT", format!("http://{addr}")),
            env("OTEL_BSP_SCHEDULE_DELAY", "100".into()),
        ],
        ..Default::default()
    })
    .await?;
    fleet
        .git
        .commit_files(&[("web/cm.yaml", CONFIG_MAP)], "web")?;
    fleet
        .apply(&auto_synced_app(&fleet, "web", "web", "cluster-001", &[]))
        .await?;
    wait_synced_healthy(&fleet, "web").await?;

    let spans = flotilla_tests::eventually("the sync's spans", Duration::from_secs(30), || {
        let spans = collector.spans.clone();
        async move {
            let spans = spans.lock().map(|s| s.clone()).unwrap_or_default();
            let ready = spans
                .iter()
                .any(|s| s.service == "flotilla-repo-server" && s.name == "render")
                && spans.iter().any(|s| s.name == "apply");
            Ok(ready.then_some(spans))
        }
    })
    .await?;
    let by_id: HashMap<&[u8], &Span> = spans.iter().map(|s| (s.id.as_slice(), s)).collect();

    // The repo-server's render sits under its gRPC handler, whose parent is the controller's
    // client span, under the refresh of one reconcile: one trace across both processes.
    let render = spans
        .iter()
        .find(|s| s.service == "flotilla-repo-server" && s.name == "render")
        .context("a render span")?;
    let chain = ancestry(render, &by_id);
    ensure!(
        chain
            == vec![
                ("flotilla-repo-server", "render"),
                ("flotilla-repo-server", "repo_server.generate_manifests"),
                ("flotilla-controller", "repo_server.generate_manifests"),
                ("flotilla-controller", "refresh"),
                ("flotilla-controller", "reconcile"),
            ],
        "render's ancestry: {chain:?}"
    );
    let root = by_id
        .values()
        .find(|s| s.name == "reconcile" && s.trace == render.trace)
        .context("the reconcile root")?;
    ensure!(root.parent.is_empty(), "reconcile is the trace's root");
    let in_trace: Vec<&str> = spans
        .iter()
        .filter(|s| s.trace == render.trace)
        .map(|s| s.name.as_str())
        .collect();
    for name in [
        "cache_lookup",
        "diff",
        "apply",
        "repo_server.resolve_revision",
    ] {
        ensure!(
            in_trace.contains(&name),
            "{name} missing from the trace: {in_trace:?}"
        );
    }
    // The first resolve fetched the repository on the repo-server, in the same trace.
    let fetch = spans
        .iter()
        .find(|s| s.name == "git_fetch" && s.trace == render.trace)
        .context("a git_fetch span in the reconcile's trace")?;
    let chain = ancestry(fetch, &by_id);
    ensure!(
        chain.get(1) == Some(&("flotilla-repo-server", "repo_server.resolve_revision"))
            && chain.get(2) == Some(&("flotilla-controller", "repo_server.resolve_revision")),
        "git_fetch's ancestry: {chain:?}"
    );
    server.abort();
    Ok(())
}
