//! flotilla-core: the few things every Flotilla binary shares (logging set-up, the HTTP
//! endpoint serving `/metrics` and health, in-flight request coalescing, Kubernetes
//! quantities). Must not know Applications, Git or clusters.
#![forbid(unsafe_code)]

pub mod coalesce;
pub mod http;
pub mod metrics_mode;
pub mod quantity;
pub mod redact;
pub mod status_auth;
pub mod telemetry;

/// Resolves on SIGTERM or Ctrl-C (how Kubernetes and a terminal stop a process).
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutting down");
}
