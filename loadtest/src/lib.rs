//! flotilla-loadtest: the fleet launcher (kubesim + Git + Redis + the product binaries as processes) used by end-to-end
//! tests and the demo, and the load-test harness. Must not be needed at run time by the product.
#![forbid(unsafe_code)]

pub mod browser;
pub mod fleet;
pub mod harness;
/// kubesim, re-exported: the harness and the tests reach it as `flotilla_loadtest::kubesim`.
pub use kubesim;

/// Log to stderr with `RUST_LOG`, else `default_filter` (stdout stays for the binaries' output).
pub fn stderr_logs(default_filter: &str) {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| default_filter.into()),
        )
        .with_writer(std::io::stderr)
        .init();
}
