//! `--help` of every binary documents every option: each flag has a description and its
//! environment variable, so configuration from flags and env is discoverable.

use anyhow::{Context, Result, ensure};
use flotilla_loadtest::fleet::process;

fn help(bin: &str) -> Result<String> {
    let out = std::process::Command::new(process::binary(bin)?)
        .arg("--help")
        .output()
        .with_context(|| format!("{bin} --help"))?;
    ensure!(out.status.success(), "{bin} --help failed");
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[test]
fn every_option_is_documented_with_its_environment_variable() -> Result<()> {
    for bin in [
        "flotilla-controller",
        "flotilla-repo-server",
        "flotilla-server",
    ] {
        let text = help(bin)?;
        let lines: Vec<&str> = text.lines().collect();
        let mut flags = 0;
        for (i, line) in lines.iter().enumerate() {
            let t = line.trim_start();
            if !t.starts_with("--") && !t.starts_with("-h,") && !t.starts_with("-V,") {
                continue;
            }
            flags += 1;
            // The description: every following line up to the next option.
            let doc: String = lines[i + 1..]
                .iter()
                .take_while(|l| !l.trim_start().starts_with('-'))
                .map(|l| l.trim())
                .collect::<Vec<_>>()
                .join(" ");
            let doc = doc.trim();
            ensure!(
                !doc.is_empty() && !doc.starts_with('-'),
                "{bin}: {t} has no description"
            );
            let builtin =
                t.starts_with("-h,") || t.starts_with("-V,") || t.starts_with("--print-crds");
            ensure!(
                builtin || doc.contains("[env: FLOTILLA_"),
                "{bin}: {t} cannot be set from the environment: {doc}"
            );
        }
        ensure!(flags >= 10, "{bin}: only {flags} options found");
        ensure!(
            text.contains("OTEL_EXPORTER_OTLP_ENDPOINT"),
            "{bin}: tracing documented"
        );
    }
    Ok(())
}
