//! The README's demo runs to its end: the example apps converge, a commit rolls out and a
//! deletion prunes, and an app moves from "Argo CD" to Flotilla and back with its objects
//! unchanged (the demo itself fails when any of that does not happen).

use anyhow::{Context, Result, ensure};
use flotilla_loadtest::fleet::process;

#[test]
fn the_demo_runs_to_its_end_and_shows_the_hand_over() -> Result<()> {
    let demo = process::binary("flotilla-demo")?;
    let bin_dir = demo.parent().context("binary dir")?;
    let out = std::process::Command::new(&demo)
        .arg("--examples")
        .arg(process::workspace_dir().join("examples"))
        .arg("--exit")
        .env("FLOTILLA_BIN_DIR", bin_dir)
        .output()
        .context("running flotilla-demo")?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    ensure!(out.status.success(), "the demo failed:\n{text}");
    for want in [
        "==> Converged",
        "guestbook-ui has 3 replicas",
        "pruned from cluster-001",
        "Flotilla did not touch it",
        "guestbook    argocd  flotilla  moved",
        "guestbook    flotilla  argocd  moved",
        "still has 4",
        "never changed identity (UID unchanged)",
    ] {
        ensure!(
            text.contains(want),
            "the demo did not say {want:?}:\n{text}"
        );
    }
    Ok(())
}
