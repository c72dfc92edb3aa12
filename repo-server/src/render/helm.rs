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

/// Where the value file or file parameter `f` of the chart in `chart_dir` (inside the tree
/// `root`) is, `None` when it does not exist. With `refs` (a multi-source Application), `$name/rel`
/// is `rel` from the root of the ref source `name`'s checkout, as Argo CD resolves it: never
/// outside that checkout (no `..`, no absolute path, no symlink out), and an unknown name is an
/// error naming it. Any other path is relative to the chart and must stay inside `root`.
fn locate(
    root: &Path,
    chart_dir: &Path,
    f: &str,
    refs: Option<&[(String, PathBuf)]>,
) -> Result<Option<PathBuf>, RenderError> {
    if let (Some(refs), Some(rest)) = (refs, f.strip_prefix('$')) {
        let (name, rel) = rest.split_once('/').unwrap_or((rest, ""));
        let Some((_, ref_root)) = refs.iter().find(|(n, _)| n == name) else {
            let known: Vec<String> = refs.iter().map(|(n, _)| format!("${n}")).collect();
            return Err(RenderError::Unsupported {
                what: if known.is_empty() {
                    format!(
                        "source referenced \"${name}\", but no source has a 'ref' field defined"
                    )
                } else {
                    format!(
                        "source referenced \"${name}\", which is not one of the available sources ({})",
                        known.join(", ")
                    )
                },
            });
        };
        return match confine(ref_root, rel) {
            Ok(p) if p.is_file() => Ok(Some(p)),
            Ok(_) | Err(RenderError::PathMissing { .. }) => Ok(None),
            Err(RenderError::PathEscapes { .. }) => Err(RenderError::PathEscapes {
                path: f.to_string(),
            }),
            Err(e) => Err(e),
        };
    }
    let p = chart_dir.join(f);
    if !p.exists() {
        return Ok(None);
    }
    if !stays_inside(root, &p) {
        return Err(RenderError::PathEscapes {
            path: f.to_string(),
        });
    }
    Ok(Some(p))
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
    // Values files are relative to the chart and must stay inside the tree; `$name/...` ones
    // (multi-source) are read from the ref source's checkout and must stay inside it.
    let refs = opts.ref_roots.as_deref();
    let shown = |f: &str| {
        if refs.is_some() && f.starts_with('$') {
            f.to_string()
        } else {
            format!("{chart_path}/{f}")
        }
    };
    let mut value_files = Vec::new();
    for f in &opts.value_files {
        match locate(root, &chart_dir, f, refs)? {
            Some(p) => value_files.push(p),
            None if opts.ignore_missing_value_files => continue,
            None => return Err(RenderError::PathMissing { path: shown(f) }),
        }
    }
    let mut file_params = Vec::new();
    for (name, f) in &opts.file_parameters {
        match locate(root, &chart_dir, f, refs)? {
            Some(p) if p.is_file() => file_params.push((name.clone(), p)),
            _ => return Err(RenderError::PathMissing { path: shown(f) }),
        }
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

    /// A stand-in `helm` that renders one ConfigMap whose `data.values` is the content of every
    /// `--values` file and `data.files` the `--set-file` arguments, so tests see what helm read.
    fn echo_helm(dir: &Path) -> PathBuf {
        let p = dir.join("helm");
        std::fs::write(
            &p,
            "#!/bin/sh\nv=\"\"\nf=\"\"\nwhile [ $# -gt 0 ]; do\n  case \"$1\" in\n    --values) v=\"$v$(tr -d '\\n' < \"$2\")\"; shift;;\n    --set-file) f=\"$f${2%%=*}\"; shift;;\n  esac\n  shift\ndone\nprintf 'apiVersion: v1\\nkind: ConfigMap\\nmetadata: {name: x}\\ndata: {values: \"%s\", files: \"%s\"}\\n' \"$v\" \"$f\"\n",
        )
        .expect("write");
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        p
    }

    #[test]
    fn ref_value_files_are_read_from_the_ref_checkout_and_never_outside_it() {
        let tools = tempfile::tempdir().expect("dir");
        let helm = echo_helm(tools.path());
        let repo = tempfile::tempdir().expect("chart repo");
        std::fs::create_dir_all(repo.path().join("chart")).expect("mkdir");
        std::fs::write(
            repo.path().join("chart/Chart.yaml"),
            "name: c\nversion: 0.1.0\n",
        )
        .expect("write");
        let values = tempfile::tempdir().expect("values repo");
        std::fs::create_dir_all(values.path().join("envs")).expect("mkdir");
        std::fs::write(values.path().join("envs/prod.yaml"), "color: green").expect("write");
        std::fs::write(values.path().join("envs/cert.txt"), "pem").expect("write");
        let outside = tempfile::tempdir().expect("outside");
        std::fs::write(outside.path().join("secret.yaml"), "token: x").expect("write");
        std::os::unix::fs::symlink(
            outside.path().join("secret.yaml"),
            values.path().join("envs/evil.yaml"),
        )
        .expect("symlink");
        std::os::unix::fs::symlink(outside.path(), values.path().join("out")).expect("symlink");
        let refs = Some(vec![("values".to_string(), values.path().to_path_buf())]);
        let opts = |files: &[&str]| HelmOptions {
            value_files: files.iter().map(|f| f.to_string()).collect(),
            ref_roots: refs.clone(),
            ..Default::default()
        };
        let run = |o: &HelmOptions| render(Some(&helm), repo.path(), "chart", "a", "ns", o, T);

        let out = run(&HelmOptions {
            file_parameters: vec![("tls".into(), "$values/envs/cert.txt".into())],
            ..opts(&["$values/envs/prod.yaml"])
        })
        .expect("renders");
        assert_eq!(out[0]["data"]["values"], "color: green", "{out:?}");
        assert_eq!(out[0]["data"]["files"], "tls");

        for bad in [
            "$values/../../etc/passwd",
            "$values/envs/../../outside.yaml",
            "$values//etc/passwd",
            "$values/envs/evil.yaml",
            "$values/out/secret.yaml",
        ] {
            let e = run(&opts(&[bad])).expect_err(bad);
            assert!(matches!(e, RenderError::PathEscapes { .. }), "{bad}: {e}");
            assert!(e.to_string().contains(bad), "{e}");
            // Not even with ignoreMissingValueFiles, and not as a file parameter either.
            let ignoring = HelmOptions {
                ignore_missing_value_files: true,
                ..opts(&[bad])
            };
            assert!(matches!(
                run(&ignoring),
                Err(RenderError::PathEscapes { .. })
            ));
            let param = HelmOptions {
                file_parameters: vec![("x".into(), bad.into())],
                ..opts(&[])
            };
            assert!(matches!(run(&param), Err(RenderError::PathEscapes { .. })));
        }

        let e = run(&opts(&["$other/prod.yaml"])).expect_err("unknown ref");
        assert!(
            e.to_string().contains(
                "source referenced \"$other\", which is not one of the available sources ($values)"
            ),
            "{e}"
        );
        let none = HelmOptions {
            ref_roots: Some(Vec::new()),
            ..opts(&["$values/envs/prod.yaml"])
        };
        let e = run(&none).expect_err("no refs");
        assert!(e.to_string().contains("no source has a 'ref' field"), "{e}");

        let e = run(&opts(&["$values/envs/missing.yaml"])).expect_err("missing");
        assert!(matches!(e, RenderError::PathMissing { .. }), "{e}");
        assert!(e.to_string().contains("$values/envs/missing.yaml"), "{e}");
        let ignoring = HelmOptions {
            ignore_missing_value_files: true,
            ..opts(&["$values/envs/missing.yaml", "$values/envs/prod.yaml"])
        };
        let out = run(&ignoring).expect("missing ignored");
        assert_eq!(out[0]["data"]["values"], "color: green");
        // A directory is not a values file.
        assert!(matches!(
            run(&opts(&["$values/envs"])),
            Err(RenderError::PathMissing { .. })
        ));

        // A single-source Application: `$values/...` is a path relative to the chart.
        let single = HelmOptions {
            ref_roots: None,
            ..opts(&["$values/envs/prod.yaml"])
        };
        let e = run(&single).expect_err("a plain path");
        assert!(
            e.to_string().contains("chart/$values/envs/prod.yaml"),
            "{e}"
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
