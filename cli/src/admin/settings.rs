//! `flotilla admin settings validate`: the analysis of `flotilla admin import` over a directory
//! (or file) of Argo CD config objects, offline — no cluster — for CI: exit 1 on anything
//! refused.

use std::path::PathBuf;

use clap::Subcommand;

use super::AdminError;
use super::import::{self, TREATMENTS_HELP};
use crate::output::Format;

const VALIDATE_HELP: &str = "\
Exit status: 0 nothing refused; 1 something refused (unsafe or not; the report is printed
first); 2 input that cannot be read or holds no config object. Applications and AppProjects
in the input are not checked here (`flotilla admin import` restores them).";

#[derive(Debug, Subcommand)]
pub enum SettingsCommand {
    /// Check every config object in a directory (argocd-cm, argocd-cmd-params-cm,
    /// argocd-rbac-cm, argocd-tls-certs-cm, argocd-ssh-known-hosts-cm, repository, repo-creds
    /// and cluster Secrets) as `flotilla admin import` does, without a cluster; exit 1 on
    /// anything refused or unsafe.
    #[command(
        after_help = "Exit 1 on any refused row (unsafe or not); --help says what each treatment means.",
        after_long_help = format!("{TREATMENTS_HELP}\n\n{VALIDATE_HELP}")
    )]
    Validate {
        /// A directory (searched recursively for .yaml, .yml and .json) or a file of YAML;
        /// `-` for standard input.
        path: PathBuf,
    },
}

pub async fn run(cmd: SettingsCommand, format: Format) -> Result<u8, AdminError> {
    let SettingsCommand::Validate { path } = cmd;
    let objects = import::read_objects(std::slice::from_ref(&path))?;
    let mut report = import::analyse(&objects);
    if report.apps > 0 {
        report.notes.push(format!(
            "{} Applications/AppProjects not checked here (flotilla admin import restores them)",
            report.apps
        ));
    }
    if report.findings.is_empty() {
        for n in &report.notes {
            eprintln!("note: {n}");
        }
        return Err(AdminError::Invalid(format!(
            "{}: no Argo CD config object (argocd-cm, argocd-cmd-params-cm, argocd-rbac-cm, argocd-tls-certs-cm, argocd-ssh-known-hosts-cm, repository/repo-creds/cluster Secrets) found",
            path.display()
        )));
    }
    println!("{}", report.render(format, None).trim_end());
    for n in &report.notes {
        eprintln!("note: {n}");
    }
    let refused = report.refused_count();
    if refused > 0 {
        return Err(AdminError::Unsafe(format!(
            "{refused} refused ({} unsafe)",
            report.unsafe_count()
        )));
    }
    Ok(0)
}
