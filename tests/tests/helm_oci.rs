//! Helm charts from OCI registries through the repo-server's backend, against the real
//! distribution registry (Debian's `docker-registry`) with charts pushed by Helm's own code:
//! TLS from a private CA (`argocd-tls-certs-cm`) with htpasswd basic auth; token auth through a
//! token service; plain HTTP only with `insecure`. Versions, semver constraints, digest pins,
//! refused credentials (also for charts already cached), `enableOCI` scheme-less URLs.

use std::path::Path;

use anyhow::{Context, Result, ensure};
use flotilla_loadtest::fleet::git_http::TestCa;
use flotilla_loadtest::fleet::registry::{self, Registry, RegistryAuth, RegistryConfig};
use flotilla_repo_server::backend::{
    GenerateRequest, Generated, GitBackend, GitBackendConfig, ManifestBackend, RepoRef,
};
use flotilla_repo_server::git::Credentials;
use flotilla_repo_server::metrics::{OciRequestLabels, RepoMetrics};
use flotilla_repo_server::source::{SourceKind, SourceSpec};
use flotilla_repo_server::transport::TransportConfig;

const USER: &str = "deployer";
const PASSWORD: &str = "s3cret-registry-pass";

const CHART: &str = "apiVersion: v2\nname: web\nversion: 0.0.0\n";
const TEMPLATE: &str = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}-web\ndata:\n  version: {{ .Chart.Version | quote }}\n";

fn require_helm() -> Result<()> {
    let found = std::env::var_os("FLOTILLA_HELM").is_some()
        || std::env::split_paths(&std::env::var("PATH").unwrap_or_default())
            .any(|d| d.join("helm").is_file());
    ensure!(
        found,
        "no helm on PATH: run `source scripts/lib.sh; ensure_helm` (or ./scripts/test.sh) first"
    );
    Ok(())
}

/// `helm package` the test chart at each version and `helm push` it to `<registry>/charts`.
fn push_chart(
    work: &Path,
    registry: &Registry,
    ca: Option<&Path>,
    login: Option<(&str, &str)>,
    versions: &[&str],
) -> Result<()> {
    let chart = work.join("src/web");
    std::fs::create_dir_all(chart.join("templates"))?;
    std::fs::write(chart.join("Chart.yaml"), CHART)?;
    std::fs::write(chart.join("templates/cm.yaml"), TEMPLATE)?;
    registry::push_chart(work, registry, ca, login, &chart, "web", versions)
}

/// A backend whose TLS trust for 127.0.0.1 is `ca` (`argocd-tls-certs-cm`), or none extra.
fn backend(work: &Path, ca: Option<&TestCa>) -> Result<(GitBackend, RepoMetrics)> {
    let mut cfg = GitBackendConfig::new(work.join("repos"), work.join("work"));
    let certs = work.join("tls-certs");
    std::fs::create_dir_all(&certs)?;
    if let Some(ca) = ca {
        std::fs::write(certs.join("127.0.0.1"), &ca.pem)?;
    }
    cfg.transport = TransportConfig {
        tls_certs_dir: certs,
        ..TransportConfig::default()
    };
    let metrics = RepoMetrics::default();
    Ok((GitBackend::new(cfg, metrics.clone())?, metrics))
}

fn basic(user: &str, pass: &str) -> Credentials {
    Credentials {
        username: Some(user.into()),
        password: Some(pass.into()),
        ..Credentials::default()
    }
}

fn spec(url: &str) -> SourceSpec {
    SourceSpec {
        repo_url: url.into(),
        chart: "web".into(),
        kind: SourceKind::Auto,
        app_name: "shop".into(),
        namespace: "shop-ns".into(),
        ..SourceSpec::default()
    }
}

async fn resolve(b: &GitBackend, repo: &RepoRef, revision: &str) -> Result<String, String> {
    b.resolve(repo.clone(), revision.into(), "web".into())
        .await
        .map(|r| r.commit)
        .map_err(|e| e.to_string())
}

async fn generate(
    b: &GitBackend,
    repo: &RepoRef,
    revision: &str,
    commit: &str,
) -> Result<Generated, String> {
    b.generate(GenerateRequest {
        repo: repo.clone(),
        spec: spec(&repo.url),
        revision: revision.into(),
        commit: commit.into(),
        source_digest: String::new(),
        no_cache: false,
    })
    .await
    .map_err(|e| e.to_string())
}

/// The rendered ConfigMap's `data.version`, checking it is the chart's object.
fn rendered_version(g: &Generated) -> Result<String> {
    let objects = &g.rendered.objects;
    ensure!(objects.len() == 1, "{objects:?}");
    let cm = &objects[0];
    ensure!(cm["kind"] == "ConfigMap", "{cm}");
    ensure!(cm["metadata"]["name"] == "shop-web", "{cm}");
    Ok(cm["data"]["version"]
        .as_str()
        .unwrap_or_default()
        .to_string())
}

/// `<version>-sha256.<hex>` → `<hex>`.
fn digest_hex(commit: &str) -> Result<&str> {
    let (_, hex) = commit
        .rsplit_once("-sha256.")
        .with_context(|| format!("{commit} is not <version>-sha256.<hex>"))?;
    ensure!(hex.len() == 64, "{commit}");
    Ok(hex)
}

fn oci_requests(m: &RepoMetrics, repo: &str, request_type: &'static str) -> u64 {
    m.oci_requests
        .get_or_create(&OciRequestLabels {
            repo: repo.into(),
            request_type,
        })
        .get()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oci_charts_over_tls_with_basic_auth() -> Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    require_helm()?;
    let work = tempfile::tempdir()?;
    let ca = TestCa::new("registry CA")?;
    let ca_file = work.path().join("ca.pem");
    std::fs::write(&ca_file, &ca.pem)?;
    let hash = bcrypt::hash_with_result(PASSWORD, 4)?.format_for_version(bcrypt::Version::TwoY);
    let registry = Registry::start(RegistryConfig {
        tls: Some(&ca),
        auth: RegistryAuth::Htpasswd(format!("{USER}:{hash}\n")),
    })
    .await?;
    push_chart(
        work.path(),
        &registry,
        Some(&ca_file),
        Some((USER, PASSWORD)),
        &["1.0.0", "1.2.0", "2.0.0"],
    )?;

    let (b, metrics) = backend(work.path(), Some(&ca))?;
    let repo = RepoRef {
        url: registry.oci_url("charts"),
        creds: basic(USER, PASSWORD),
    };
    // Versions and constraints resolve to `<version>-sha256.<manifest digest>`.
    let v100 = resolve(&b, &repo, "1.0.0")
        .await
        .map_err(anyhow::Error::msg)?;
    ensure!(v100.starts_with("1.0.0-sha256."), "{v100}");
    let v120 = resolve(&b, &repo, ">=1.0 <2")
        .await
        .map_err(anyhow::Error::msg)?;
    ensure!(v120.starts_with("1.2.0-sha256."), "{v120}");
    let v200 = resolve(&b, &repo, "*").await.map_err(anyhow::Error::msg)?;
    ensure!(v200.starts_with("2.0.0-sha256."), "{v200}");
    ensure!(resolve(&b, &repo, "").await.as_deref() == Ok(v200.as_str()));
    ensure!(resolve(&b, &repo, "1.2.*").await.as_deref() == Ok(v120.as_str()));
    let missing = resolve(&b, &repo, "1.5.0")
        .await
        .expect_err("no such version");
    ensure!(missing.contains("not found"), "{missing}");
    let none = resolve(&b, &repo, ">=3").await.expect_err("no match");
    ensure!(none.contains("no version matching"), "{none}");

    // Digest pins: alone, or with the version it must be.
    let hex = digest_hex(&v120)?;
    ensure!(
        resolve(&b, &repo, &format!("sha256:{hex}"))
            .await
            .as_deref()
            == Ok(v120.as_str())
    );
    ensure!(
        resolve(&b, &repo, &format!("1.2.0@sha256:{hex}"))
            .await
            .as_deref()
            == Ok(v120.as_str())
    );
    let wrong = resolve(&b, &repo, &format!("2.0.0@sha256:{hex}"))
        .await
        .expect_err("2.0.0 is another manifest");
    ensure!(wrong.contains("not the pinned digest"), "{wrong}");
    let unknown = resolve(&b, &repo, &format!("sha256:{}", "0".repeat(64)))
        .await
        .expect_err("no such manifest");
    ensure!(unknown.contains("not found"), "{unknown}");

    // Renders: the chart's objects, at the resolved digest.
    let g = generate(&b, &repo, ">=1.0 <2", "")
        .await
        .map_err(anyhow::Error::msg)?;
    ensure!(g.rendered.commit == v120, "{}", g.rendered.commit);
    ensure!(rendered_version(&g)? == "1.2.0");
    let g = generate(&b, &repo, "", &v200)
        .await
        .map_err(anyhow::Error::msg)?;
    ensure!(rendered_version(&g)? == "2.0.0");
    let g = generate(&b, &repo, &format!("sha256:{hex}"), "")
        .await
        .map_err(anyhow::Error::msg)?;
    ensure!(rendered_version(&g)? == "1.2.0" && g.rendered.commit == v120);

    // Wrong or no credentials: refused with a clear error, even for a chart on disk and a
    // render in memory (nothing cached is served to unverified credentials).
    let bad = RepoRef {
        url: repo.url.clone(),
        creds: basic(USER, "wrong-password"),
    };
    let err = resolve(&b, &bad, "1.0.0")
        .await
        .expect_err("wrong password");
    ensure!(err.contains("refused the credentials"), "{err}");
    ensure!(!err.contains("wrong-password"), "{err}");
    let err = generate(&b, &bad, "", &v120)
        .await
        .expect_err("cached chart, wrong password");
    ensure!(err.contains("refused the credentials"), "{err}");
    let anonymous = RepoRef {
        url: repo.url.clone(),
        creds: Credentials::default(),
    };
    let err = generate(&b, &anonymous, "", &v120)
        .await
        .expect_err("no credentials");
    ensure!(err.contains("requires credentials"), "{err}");

    // Argo CD's `enableOCI`: the same registry without a scheme.
    let schemeless = RepoRef {
        url: format!("{}/charts", registry.host()),
        creds: Credentials {
            enable_oci: true,
            ..basic(USER, PASSWORD)
        },
    };
    let c = resolve(&b, &schemeless, "~1.0")
        .await
        .map_err(anyhow::Error::msg)?;
    ensure!(c == v100, "{c} != {v100}");
    let g = generate(&b, &schemeless, "1.0.0", "")
        .await
        .map_err(anyhow::Error::msg)?;
    ensure!(rendered_version(&g)? == "1.0.0");
    // Without `enableOCI` it is no OCI repository (and no URL the repo-server serves).
    let plain = RepoRef {
        url: schemeless.url.clone(),
        creds: basic(USER, PASSWORD),
    };
    ensure!(resolve(&b, &plain, "1.0.0").await.is_err());

    // The registry's certificate is trusted only through the CA given for its host.
    let untrusting = tempfile::tempdir()?;
    let (b2, _) = backend(untrusting.path(), None)?;
    let err = resolve(&b2, &repo, "1.0.0").await.expect_err("unknown CA");
    ensure!(err.to_lowercase().contains("certificate"), "{err}");
    // ... or with `insecure`, which skips verification.
    let insecure = RepoRef {
        url: repo.url.clone(),
        creds: Credentials {
            insecure: true,
            ..basic(USER, PASSWORD)
        },
    };
    let c = resolve(&b2, &insecure, "1.0.0")
        .await
        .map_err(anyhow::Error::msg)?;
    ensure!(c == v100, "{c}");

    // Requests are counted per registry repository.
    let label = registry.oci_url("charts/web");
    for kind in ["tags", "manifest", "blob"] {
        ensure!(
            oci_requests(&metrics, &label, kind) > 0,
            "no {kind} requests"
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oci_token_auth() -> Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    require_helm()?;
    let work = tempfile::tempdir()?;
    let ca = TestCa::new("registry CA")?;
    let ca_file = work.path().join("ca.pem");
    std::fs::write(&ca_file, &ca.pem)?;
    let registry = Registry::start(RegistryConfig {
        tls: Some(&ca),
        auth: RegistryAuth::Token {
            username: USER.into(),
            password: PASSWORD.into(),
        },
    })
    .await?;
    push_chart(
        work.path(),
        &registry,
        Some(&ca_file),
        Some((USER, PASSWORD)),
        &["1.0.0", "1.1.0"],
    )?;
    let (b, _) = backend(work.path(), Some(&ca))?;
    let repo = RepoRef {
        url: registry.oci_url("charts"),
        creds: basic(USER, PASSWORD),
    };
    let before = registry.tokens_issued();
    let c = resolve(&b, &repo, "^1").await.map_err(anyhow::Error::msg)?;
    ensure!(c.starts_with("1.1.0-sha256."), "{c}");
    ensure!(
        registry.tokens_issued() > before,
        "the token service was not asked"
    );
    let g = generate(&b, &repo, "1.0.0", "")
        .await
        .map_err(anyhow::Error::msg)?;
    ensure!(rendered_version(&g)? == "1.0.0");

    let bad = RepoRef {
        url: repo.url.clone(),
        creds: basic(USER, "wrong-password"),
    };
    let err = resolve(&b, &bad, "1.0.0")
        .await
        .expect_err("wrong password");
    ensure!(err.contains("credentials were refused"), "{err}");
    // Anonymous callers get a token that allows nothing.
    let anonymous = RepoRef {
        url: repo.url.clone(),
        creds: Credentials::default(),
    };
    let err = generate(&b, &anonymous, "", &c)
        .await
        .expect_err("anonymous");
    ensure!(err.contains("requires credentials"), "{err}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oci_plain_http_only_when_insecure() -> Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    require_helm()?;
    let work = tempfile::tempdir()?;
    let registry = Registry::start(RegistryConfig {
        tls: None,
        auth: RegistryAuth::Open,
    })
    .await?;
    push_chart(work.path(), &registry, None, None, &["0.1.0"])?;
    let (b, _) = backend(work.path(), None)?;
    let secure = RepoRef {
        url: registry.oci_url("charts"),
        creds: Credentials::default(),
    };
    let err = resolve(&b, &secure, "0.1.0").await.expect_err("HTTPS only");
    ensure!(err.contains(&registry.host()), "{err}");
    let insecure = RepoRef {
        url: secure.url.clone(),
        creds: Credentials {
            insecure: true,
            ..Credentials::default()
        },
    };
    let c = resolve(&b, &insecure, "0.1.0")
        .await
        .map_err(anyhow::Error::msg)?;
    let g = generate(&b, &insecure, "", &c)
        .await
        .map_err(anyhow::Error::msg)?;
    ensure!(rendered_version(&g)? == "0.1.0");
    Ok(())
}
