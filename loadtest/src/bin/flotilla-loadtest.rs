//! `flotilla-loadtest`: run a load-test scenario against a fleet of real processes on this
//! machine and write its report (JSON, Markdown, SVG charts).

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Parser;
use flotilla_loadtest::harness::{self, RunOptions, scenario::Scenario};

/// Run a load-test scenario: starts kubesim, git daemon, Redis Cluster nodes, repo-servers and
/// controllers as processes, creates the applications, drives changes and faults, measures,
/// tears everything down and writes report.json, report.md, progress.svg and latency.svg (and
/// rollout.svg for a chaos scenario, soak-memory.svg and soak-cpu.svg for a soak).
#[derive(Debug, Parser)]
#[command(name = "flotilla-loadtest", version)]
struct Args {
    /// A scenario: a YAML file, or the name of one in loadtest/scenarios (smoke, 1k, 10k,
    /// 1k-orphans, failover, rebalance, chaos, chaos-smoke, soak, soak-smoke, ...).
    scenario: String,
    /// Directory for the report (default: loadtest/reports/<scenario>).
    #[arg(long)]
    out: Option<PathBuf>,
    /// No live progress line.
    #[arg(long)]
    quiet: bool,
}

fn scenario_path(arg: &str) -> PathBuf {
    let p = PathBuf::from(arg);
    if p.is_file() {
        return p;
    }
    flotilla_loadtest::fleet::process::package_dir()
        .join("scenarios")
        .join(format!("{arg}.yaml"))
}

#[tokio::main]
async fn main() -> Result<()> {
    flotilla_loadtest::stderr_logs("warn");
    let args = Args::parse();
    let path = scenario_path(&args.scenario);
    let scenario = Scenario::load(&path).with_context(|| format!("scenario {}", args.scenario))?;
    let out = args.out.unwrap_or_else(|| {
        flotilla_loadtest::fleet::process::package_dir()
            .join("reports")
            .join(&scenario.name)
    });
    let report = harness::run(
        &scenario,
        &RunOptions {
            out_dir: Some(out.clone()),
            progress: !args.quiet,
        },
    )
    .await?;
    println!("{}", report.markdown());
    println!("report written to {}", out.display());
    if !report.ok {
        anyhow::bail!(
            "scenario {} failed: {}",
            scenario.name,
            report.problems.join("; ")
        );
    }
    Ok(())
}
