//! Config-management plugins: a named command configured on the repo-server
//! (`--plugin NAME=COMMAND`), run by `sh -c` in the source directory with Argo CD's build
//! environment; whatever YAML or JSON it prints on stdout are the manifests.

use std::path::Path;
use std::process::Command;

use crate::RenderError;
use crate::paths::confine;
use crate::render::directory::parse_manifests;
use crate::source::PluginOptions;

/// One configured plugin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginConfig {
    pub name: String,
    /// Run with `sh -c`.
    pub command: String,
}

impl std::str::FromStr for PluginConfig {
    type Err = String;
    /// `NAME=COMMAND`
    fn from_str(s: &str) -> Result<Self, String> {
        let (name, command) = s
            .split_once('=')
            .ok_or_else(|| format!("plugin {s:?}: expected NAME=COMMAND"))?;
        if name.trim().is_empty() || command.trim().is_empty() {
            return Err(format!("plugin {s:?}: empty name or command"));
        }
        Ok(Self {
            name: name.trim().to_string(),
            command: command.to_string(),
        })
    }
}

/// What the command learns about the source (Argo CD's build environment).
pub struct BuildEnv<'a> {
    pub app_name: &'a str,
    pub namespace: &'a str,
    pub repo_url: &'a str,
    pub path: &'a str,
    pub revision: &'a str,
}

pub fn render(
    plugins: &[PluginConfig],
    root: &Path,
    opts: &PluginOptions,
    env: &BuildEnv,
    timeout: std::time::Duration,
) -> Result<Vec<serde_json::Value>, RenderError> {
    let plugin = plugins
        .iter()
        .find(|p| p.name == opts.name)
        .ok_or_else(|| RenderError::Unsupported {
            what: format!(
                "plugin {:?} is not configured on the repo-server (configured: {})",
                opts.name,
                if plugins.is_empty() {
                    "none".to_string()
                } else {
                    plugins
                        .iter()
                        .map(|p| p.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                }
            ),
        })?;
    let dir = confine(root, env.path)?;
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(&plugin.command)
        .current_dir(&dir)
        .env("ARGOCD_APP_NAME", env.app_name)
        .env("ARGOCD_APP_NAMESPACE", env.namespace)
        .env("ARGOCD_APP_SOURCE_REPO_URL", env.repo_url)
        .env("ARGOCD_APP_SOURCE_PATH", env.path)
        .env("ARGOCD_APP_REVISION", env.revision)
        .env("ARGOCD_APP_SOURCE_TARGET_REVISION", &opts.target_revision)
        .env("KUBE_VERSION", opts.kube_version.trim_start_matches('v'))
        .env("KUBE_API_VERSIONS", opts.api_versions.join(","));
    for (k, v) in &opts.env {
        cmd.env(format!("ARGOCD_ENV_{k}"), v);
    }
    let out = super::exec::run(&mut cmd, timeout, "plugin", env.path)?;
    if !out.success {
        return Err(RenderError::Tool {
            tool: "plugin",
            path: format!("{} ({})", env.path, plugin.name),
            message: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    parse_manifests(
        Path::new(&format!("{} (plugin {} output)", env.path, plugin.name)),
        &String::from_utf8_lossy(&out.stdout),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plugin_command_renders_with_argo_cds_environment() {
        let repo = tempfile::tempdir().expect("dir");
        std::fs::create_dir_all(repo.path().join("app")).expect("mkdir");
        std::fs::write(repo.path().join("app/name.txt"), "from-file").expect("write");
        let plugins: Vec<PluginConfig> = vec![
            "cm=printf 'apiVersion: v1\\nkind: ConfigMap\\nmetadata: {name: %s-%s}\\ndata: {f: %s}\\n' \"$ARGOCD_APP_NAME\" \"$ARGOCD_ENV_SUFFIX\" \"$(cat name.txt)\""
                .parse()
                .expect("config"),
            "fail=echo broken >&2; exit 3".parse().expect("config"),
        ];
        let env = BuildEnv {
            app_name: "web",
            namespace: "prod",
            repo_url: "https://git/x",
            path: "app",
            revision: "abc",
        };
        let opts = PluginOptions {
            name: "cm".into(),
            env: vec![("SUFFIX".into(), "blue".into())],
            ..Default::default()
        };
        let objs = render(
            &plugins,
            repo.path(),
            &opts,
            &env,
            super::super::exec::DEFAULT_TIMEOUT,
        )
        .expect("renders");
        assert_eq!(objs[0]["metadata"]["name"], "web-blue");
        assert_eq!(objs[0]["data"]["f"], "from-file");
        let e = render(
            &plugins,
            repo.path(),
            &PluginOptions {
                name: "fail".into(),
                ..Default::default()
            },
            &env,
            super::super::exec::DEFAULT_TIMEOUT,
        )
        .expect_err("fails");
        assert!(e.to_string().contains("broken"), "{e}");
        let e = render(
            &plugins,
            repo.path(),
            &PluginOptions {
                name: "nope".into(),
                ..Default::default()
            },
            &env,
            super::super::exec::DEFAULT_TIMEOUT,
        )
        .expect_err("unknown");
        assert!(e.to_string().contains("cm, fail"), "{e}");
        assert!("no-equals".parse::<PluginConfig>().is_err());
    }
}
