//! The *Helm* source type: `helm template` on a chart directory (from Git, or unpacked from a
//! Helm repository) with Argo CD's options: values files, inline values, parameters, file
//! parameters, release name, CRDs. A clear error when no `helm` binary is available.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::RenderError;
use crate::paths::{confine, stays_inside};
use crate::render::directory::parse_manifests;
use crate::source::HelmOptions;

/// Where `helm` is: `FLOTILLA_HELM`, else `helm` on PATH.
pub fn find_helm() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("FLOTILLA_HELM").map(PathBuf::from)
        && p.is_file()
    {
        return Some(p);
    }
    std::env::split_paths(&std::env::var("PATH").unwrap_or_default())
        .map(|d| d.join("helm"))
        .find(|p| p.is_file())
}

/// The arguments of `helm template` (after the binary) for one render. `values_file` is the
/// inline values written to a file, when there are any.
pub fn template_args(
    release: &str,
    chart_dir: &Path,
    namespace: &str,
    opts: &HelmOptions,
    value_files: &[PathBuf],
    values_file: Option<&Path>,
    file_params: &[(String, PathBuf)],
) -> Vec<String> {
    // The release name is the value of a flag, never a positional argument: nothing from the
    // Application can be parsed as a flag (CVE-2022-24348's family). Checked by [`release_name`].
    let mut args = vec![
        "template".to_string(),
        chart_dir.display().to_string(),
        "--name-template".to_string(),
        release.to_string(),
    ];
    if !namespace.is_empty() {
        args.push("--namespace".into());
        args.push(namespace.to_string());
    }
    if !opts.skip_crds {
        args.push("--include-crds".into());
    }
    for f in value_files {
        args.push("--values".into());
        args.push(f.display().to_string());
    }
    if let Some(f) = values_file {
        args.push("--values".into());
        args.push(f.display().to_string());
    }
    for p in &opts.parameters {
        args.push(
            if p.force_string {
                "--set-string"
            } else {
                "--set"
            }
            .into(),
        );
        args.push(format!("{}={}", p.name, p.value));
    }
    for (name, path) in file_params {
        args.push("--set-file".into());
        args.push(format!("{name}={}", path.display()));
    }
    // The destination's capabilities, as Argo CD passes them (values checked: a version and
    // group/version[/Kind] strings only, never anything that reads as a flag).
    if !opts.kube_version.is_empty() && !opts.kube_version.starts_with('-') {
        args.push("--kube-version".into());
        args.push(opts.kube_version.clone());
    }
    for v in opts.api_versions.iter().filter(|v| {
        !v.starts_with('-')
            && v.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '/' | '-'))
    }) {
        args.push("--api-versions".into());
        args.push(v.clone());
    }
    args
}

/// The release name: `helm.releaseName`, else the Application's name; refused unless it is a
/// name Helm accepts (lowercase DNS labels separated by dots, at most 53 characters), so a value
/// like `--post-renderer=...` can never reach helm.
pub fn release_name<'a>(release_name: &'a str, app_name: &'a str) -> Result<&'a str, RenderError> {
    let name = [release_name, app_name, "release"]
        .into_iter()
        .find(|s| !s.is_empty())
        .unwrap_or("release");
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    if name.len() > 53 || !name.split('.').all(label_ok) {
        return Err(RenderError::Unsupported {
            what: format!(
                "Helm release name {:?} is invalid: lowercase letters, digits, '-' and '.', starting and ending with a letter or digit, at most 53 characters",
                name.chars().take(80).collect::<String>()
            ),
        });
    }
    Ok(name)
}

/// Whether `helm template` failed because the chart's dependencies are not in `charts/`.
fn missing_dependency(stderr: &str) -> bool {
    stderr.contains("found in Chart.yaml, but missing in charts/ directory")
        || stderr.contains("found in requirements.yaml, but missing in charts")
}

/// One `helm dependency build` per chart directory at a time (renders of one commit share its
/// tree); the second caller finds the dependencies built.
static DEPENDENCY_LOCKS: std::sync::LazyLock<
    std::sync::Mutex<std::collections::HashMap<PathBuf, std::sync::Arc<std::sync::Mutex<()>>>>,
> = std::sync::LazyLock::new(Default::default);

/// `helm dependency build` in the chart directory. Local (`file://`) dependencies must stay
/// inside the repository; remote ones need the Helm repository to be reachable, and when it is
/// not the render fails with Helm's message (never an empty render).
fn build_dependencies(
    root: &Path,
    chart_dir: &Path,
    chart_path: &str,
    timeout: std::time::Duration,
    helm_cmd: &dyn Fn(&[String]) -> Command,
) -> Result<(), RenderError> {
    let meta: serde_json::Value = std::fs::read_to_string(chart_dir.join("Chart.yaml"))
        .ok()
        .and_then(|t| serde_yaml::from_str(&t).ok())
        .unwrap_or_default();
    for dep in meta["dependencies"].as_array().into_iter().flatten() {
        let repo = dep["repository"].as_str().unwrap_or_default();
        if let Some(rel) = repo.strip_prefix("file://") {
            let target = chart_dir.join(rel);
            if !stays_inside(root, &target) {
                return Err(RenderError::PathEscapes {
                    path: repo.to_string(),
                });
            }
        }
    }
    let lock = DEPENDENCY_LOCKS
        .lock()
        .map(|mut m| m.entry(chart_dir.to_path_buf()).or_default().clone())
        .map_err(|_| RenderError::Tool {
            tool: "helm dependency build",
            path: chart_path.to_string(),
            message: "lock poisoned".into(),
        })?;
    let _held = lock.lock();
    let args = vec![
        "dependency".to_string(),
        "build".to_string(),
        chart_dir.display().to_string(),
    ];
    let out = super::exec::run(
        &mut helm_cmd(&args),
        timeout,
        "helm dependency build",
        chart_path,
    )?;
    if !out.success {
        return Err(RenderError::Tool {
            tool: "helm dependency build",
            path: chart_path.to_string(),
            message: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(())
}

/// Render the chart at `chart_path` of the tree `root` (a checkout, or an unpacked chart with
/// `chart_path` empty).
pub fn render(
    helm: Option<&Path>,
    root: &Path,
    chart_path: &str,
    app_name: &str,
    namespace: &str,
    opts: &HelmOptions,
    timeout: std::time::Duration,
) -> Result<Vec<serde_json::Value>, RenderError> {
    let helm = helm.ok_or(RenderError::ToolMissing {
        wanted: "helm (put it on PATH or set FLOTILLA_HELM)",
    })?;
    let chart_dir = confine(root, chart_path)?;
    if !chart_dir.join("Chart.yaml").is_file() {
        return Err(RenderError::Tool {
            tool: "helm template",
            path: chart_path.to_string(),
            message: "no Chart.yaml: not a Helm chart".into(),
        });
    }
    // Values files are relative to the chart and must stay inside the tree.
    let mut value_files = Vec::new();
    for f in &opts.value_files {
        let p = chart_dir.join(f);
        if !p.exists() {
            if opts.ignore_missing_value_files {
                continue;
            }
            return Err(RenderError::PathMissing {
                path: format!("{chart_path}/{f}"),
            });
        }
        if !stays_inside(root, &p) {
            return Err(RenderError::PathEscapes { path: f.clone() });
        }
        value_files.push(p);
    }
    let mut file_params = Vec::new();
    for (name, f) in &opts.file_parameters {
        let p = chart_dir.join(f);
        if !p.is_file() {
            return Err(RenderError::PathMissing {
                path: format!("{chart_path}/{f}"),
            });
        }
        if !stays_inside(root, &p) {
            return Err(RenderError::PathEscapes { path: f.clone() });
        }
        file_params.push((name.clone(), p));
    }
    // Inline values go to a private file (the tree is shared by concurrent renders).
    let scratch = tempfile::tempdir().map_err(|source| RenderError::Read {
        path: std::env::temp_dir(),
        source,
    })?;
    let values_file = if opts.values.trim().is_empty() {
        None
    } else {
        let f = scratch.path().join("values.yaml");
        std::fs::write(&f, &opts.values).map_err(|source| RenderError::Read {
            path: f.clone(),
            source,
        })?;
        Some(f)
    };
    let release = release_name(&opts.release_name, app_name)?;
    let args = template_args(
        release,
        &chart_dir,
        namespace,
        opts,
        &value_files,
        values_file.as_deref(),
        &file_params,
    );
    let helm_cmd = |args: &[String]| {
        let mut c = Command::new(helm);
        c.args(args)
            .current_dir(&chart_dir)
            // No helm configuration, cache or plugins from the repo-server's home.
            .env("HELM_CONFIG_HOME", scratch.path().join("config"))
            .env("HELM_CACHE_HOME", scratch.path().join("cache"))
            .env("HELM_DATA_HOME", scratch.path().join("data"))
            .env("HELM_PLUGINS", scratch.path().join("plugins"));
        c
    };
    let mut out = super::exec::run(&mut helm_cmd(&args), timeout, "helm template", chart_path)?;
    if !out.success && missing_dependency(&String::from_utf8_lossy(&out.stderr)) {
        // As Argo CD does: build the chart's dependencies, then render again.
        build_dependencies(root, &chart_dir, chart_path, timeout, &helm_cmd)?;
        out = super::exec::run(&mut helm_cmd(&args), timeout, "helm template", chart_path)?;
    }
    if !out.success {
        return Err(RenderError::Tool {
            tool: "helm template",
            path: chart_path.to_string(),
            message: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    parse_manifests(
        Path::new(&format!("{chart_path} (helm template output)")),
        &String::from_utf8_lossy(&out.stdout),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::HelmParameter;

    const T: std::time::Duration = super::super::exec::DEFAULT_TIMEOUT;

    #[test]
    fn a_release_name_that_looks_like_a_flag_is_refused() {
        for bad in [
            "--post-renderer=/bin/sh",
            "--set-file=x=/etc/passwd",
            "-x",
            "Upper",
            "a_b",
            "a..b",
            &"a".repeat(54),
        ] {
            let e = release_name(bad, "app").expect_err(bad);
            assert!(e.to_string().contains("release name"), "{e}");
        }
        assert_eq!(release_name("", "my-app").expect("app name"), "my-app");
        assert_eq!(release_name("web.v2", "x").expect("dots"), "web.v2");
    }

    #[test]
    fn a_local_dependency_outside_the_repository_is_refused_before_helm_runs() {
        let root = tempfile::tempdir().expect("tmp");
        let chart = root.path().join("chart");
        std::fs::create_dir_all(&chart).expect("mkdir");
        std::fs::write(
            chart.join("Chart.yaml"),
            "apiVersion: v2\nname: c\nversion: 0.1.0\ndependencies:\n- name: x\n  version: 1.0.0\n  repository: file://../../../etc\n",
        )
        .expect("write");
        let never = |_: &[String]| -> Command { panic!("helm must not run") };
        let err = build_dependencies(
            root.path(),
            &chart,
            "chart",
            std::time::Duration::from_secs(5),
            &never,
        )
        .expect_err("refused");
        assert!(matches!(err, RenderError::PathEscapes { .. }), "{err:?}");
        assert!(missing_dependency(
            "Error: found in Chart.yaml, but missing in charts/ directory: x"
        ));
    }

    #[test]
    fn the_destinations_capabilities_become_helm_flags() {
        let opts = HelmOptions {
            kube_version: "v1.30.2".into(),
            api_versions: vec!["v1".into(), "apps/v1/Deployment".into(), "--evil".into()],
            ..Default::default()
        };
        let args = template_args("web", Path::new("/c"), "", &opts, &[], None, &[]);
        let tail: Vec<&str> = args.iter().skip(5).map(String::as_str).collect();
        assert_eq!(
            tail,
            [
                "--kube-version",
                "v1.30.2",
                "--api-versions",
                "v1",
                "--api-versions",
                "apps/v1/Deployment"
            ]
        );
    }

    #[test]
    fn arguments_follow_argo_cds_options() {
        let opts = HelmOptions {
            parameters: vec![
                HelmParameter {
                    name: "image.tag".into(),
                    value: "1.2".into(),
                    force_string: false,
                },
                HelmParameter {
                    name: "port".into(),
                    value: "80".into(),
                    force_string: true,
                },
            ],
            ..Default::default()
        };
        let args = template_args(
            "web",
            Path::new("/c"),
            "prod",
            &opts,
            &[PathBuf::from("/c/values-prod.yaml")],
            Some(Path::new("/tmp/v.yaml")),
            &[("cfg".into(), PathBuf::from("/c/cfg.txt"))],
        );
        assert_eq!(
            args,
            [
                "template",
                "/c",
                "--name-template",
                "web",
                "--namespace",
                "prod",
                "--include-crds",
                "--values",
                "/c/values-prod.yaml",
                "--values",
                "/tmp/v.yaml",
                "--set",
                "image.tag=1.2",
                "--set-string",
                "port=80",
                "--set-file",
                "cfg=/c/cfg.txt"
            ]
        );
        let skip = HelmOptions {
            skip_crds: true,
            ..Default::default()
        };
        assert!(
            !template_args("r", Path::new("/c"), "", &skip, &[], None, &[])
                .contains(&"--include-crds".to_string())
        );
    }

    #[test]
    fn no_helm_is_a_clear_error_and_bad_paths_are_refused() {
        let repo = tempfile::tempdir().expect("dir");
        std::fs::create_dir_all(repo.path().join("chart")).expect("mkdir");
        std::fs::write(
            repo.path().join("chart/Chart.yaml"),
            "name: c\nversion: 0.1.0\n",
        )
        .expect("write");
        let e = render(
            None,
            repo.path(),
            "chart",
            "a",
            "ns",
            &HelmOptions::default(),
            T,
        )
        .expect_err("no helm");
        assert!(e.to_string().contains("helm"), "{e}");
        let fake = Path::new("/bin/true");
        let missing = HelmOptions {
            value_files: vec!["nope.yaml".into()],
            ..Default::default()
        };
        let e =
            render(Some(fake), repo.path(), "chart", "a", "ns", &missing, T).expect_err("missing");
        assert!(matches!(e, RenderError::PathMissing { .. }), "{e}");
        let ignore = HelmOptions {
            ignore_missing_value_files: true,
            ..missing.clone()
        };
        assert!(render(Some(fake), repo.path(), "chart", "a", "ns", &ignore, T).is_ok());
        std::fs::write(repo.path().join("outside.yaml"), "a: 1").expect("write");
        let outside = tempfile::tempdir().expect("dir");
        std::fs::write(outside.path().join("x.yaml"), "a: 1").expect("write");
        let escape = HelmOptions {
            value_files: vec![outside.path().join("x.yaml").display().to_string()],
            ..Default::default()
        };
        let e =
            render(Some(fake), repo.path(), "chart", "a", "ns", &escape, T).expect_err("escape");
        assert!(matches!(e, RenderError::PathEscapes { .. }), "{e}");
    }
}
