//! Cluster Secrets with cloud authentication and proxies: EKS tokens (`awsAuthConfig`) checked
//! by a loopback STS that verifies SigV4 like AWS and an EKS-like front, credential commands
//! (`execProviderConfig`) cached until expiry, `proxyUrl` through a CONNECT proxy, refused
//! unknown `config` fields; in-process and through a whole fleet.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use base64::Engine;
use flotilla_controller::cluster_auth::aws::{AwsAuth, AwsSettings, WebIdentity};
use flotilla_controller::cluster_auth::exec::ExecSettings;
use flotilla_controller::cluster_auth::sigv4::Credentials;
use flotilla_controller::cluster_auth::{self, AuthEnv};
use flotilla_controller::clusters::{Cluster, ClusterSecretError};
use flotilla_loadtest::fleet::eks::{EksFront, FakeSts, TrustedIdentity, Upstream, ensure_sts};
use flotilla_loadtest::fleet::proxy::ConnectProxy;
use flotilla_loadtest::fleet::{Fleet, FleetConfig};
use flotilla_loadtest::kubesim::{KubeSim, SimConfig};
use flotilla_tests::e2e::*;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::Api;
use serde_json::{Value, json};

const BASE_ROLE: &str = "arn:aws:iam::111122223333:role/flotilla-controller";
const DEPLOY_ROLE: &str = "arn:aws:iam::111122223333:role/deployer";
const WEB_IDENTITY: &str = "eyJhbGciOiJSUzI1NiJ9.irsa-token.sig";
const EXEC_API: &str = "client.authentication.k8s.io/v1beta1";

fn secret(name: &str, server: &str, config: &Value) -> Secret {
    let mut s = Secret::default();
    s.metadata.name = Some(name.into());
    s.data = Some(
        [
            ("name", name.to_string()),
            ("server", server.to_string()),
            ("config", config.to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), ByteString(v.into_bytes())))
        .collect(),
    );
    s
}

fn cluster(name: &str, server: &str, config: &Value) -> Result<Cluster> {
    Ok(Cluster::from_secret(&secret(name, server, config))?)
}

fn ca_data(pem: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(pem)
}

/// The URL inside a `k8s-aws-v1.` token.
fn token_url(token: &str) -> Result<url::Url> {
    let b64 = token
        .strip_prefix("k8s-aws-v1.")
        .context("k8s-aws-v1. prefix")?;
    ensure!(!b64.contains('='), "padding in {b64}");
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(b64)?;
    Ok(url::Url::parse(&String::from_utf8(raw)?)?)
}

/// A shell script `name` in `dir` (run as `sh <script>`: no exec bit, no ETXTBSY races).
fn exec_script(dir: &Path, name: &str, body: &str) -> Result<PathBuf> {
    let p = dir.join(name);
    std::fs::write(&p, format!("#!/bin/sh\nset -e\n{body}\n"))?;
    Ok(p)
}

/// A credential script: counts its runs in `<dir>/runs` (`$n`), prints the token the shell
/// expression `tokens` gives, valid `expiry_secs` from now (no expiry when `None`).
fn counting_script(dir: &Path, tokens: &str, expiry_secs: Option<u64>) -> Result<PathBuf> {
    let runs = dir.join("runs").display().to_string();
    let (expiry, exp_arg) = match expiry_secs {
        Some(s) => (
            format!("exp=$(date -u -d '+{s} seconds' +%Y-%m-%dT%H:%M:%SZ)\n"),
            r#",\"expirationTimestamp\":\"$exp\""#,
        ),
        None => (String::new(), ""),
    };
    exec_script(
        dir,
        "creds.sh",
        &format!(
            r#"echo run >> '{runs}'
n=$(wc -l < '{runs}')
token={tokens}
{expiry}printf '%s' "{{\"apiVersion\":\"{EXEC_API}\",\"kind\":\"ExecCredential\",\"status\":{{\"token\":\"$token\"{exp_arg}}}}}""#
        ),
    )
}

fn runs(dir: &Path) -> usize {
    std::fs::read_to_string(dir.join("runs"))
        .map(|s| s.lines().count())
        .unwrap_or(0)
}

fn exec_config(script: &Path, env: &[(&str, &str)]) -> Value {
    json!({"execProviderConfig": {
        "command": "sh",
        "args": [script.display().to_string()],
        "env": env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<BTreeMap<_, _>>(),
        "apiVersion": EXEC_API,
        "installHint": "see the test",
    }})
}

fn local_env(aws: AwsSettings) -> Arc<AuthEnv> {
    Arc::new(AuthEnv::new(ExecSettings::from_process(), aws))
}

async fn get_default_ns(client: &kube::Client) -> Result<()> {
    let ns = Api::<Namespace>::all(client.clone()).get("default").await?;
    ensure!(ns.metadata.name.as_deref() == Some("default"));
    Ok(())
}

/// Python's standard library, independently of the controller's signer, makes the same
/// presigned URL; and the token has the shape EKS expects.
#[tokio::test]
async fn eks_token_matches_an_independent_sigv4_implementation() -> Result<()> {
    let creds = Credentials {
        access_key_id: "ASIAQEXAMPLE7KEYID01".into(),
        secret_access_key: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY".into(),
        session_token: Some("IQoJb3JpZ2luX2VjEXAMPLE/+token==".into()),
    };
    let auth = AwsAuth::new(AwsSettings {
        region: Some("eu-west-1".into()),
        static_credentials: Some(creds.clone()),
        ..Default::default()
    });
    let t = auth.token("prod-eks", None).await?;
    let url = token_url(&t.token)?;
    ensure!(url.scheme() == "https" && url.host_str() == Some("sts.eu-west-1.amazonaws.com"));
    let q: BTreeMap<String, String> = url.query_pairs().into_owned().collect();
    let get = |k: &str| q.get(k).map(String::as_str).unwrap_or_default();
    ensure!(get("Action") == "GetCallerIdentity" && get("Version") == "2011-06-15");
    ensure!(get("X-Amz-Algorithm") == "AWS4-HMAC-SHA256");
    ensure!(get("X-Amz-Expires") == "60");
    ensure!(get("X-Amz-SignedHeaders") == "host;x-k8s-aws-id");
    ensure!(get("X-Amz-Security-Token") == creds.session_token.as_deref().unwrap_or_default());

    let py = r#"
import sys, hmac, hashlib, urllib.parse
akid, secret, token, region, cluster, amzdate = sys.argv[1:7]
date = amzdate[:8]
host = "sts.%s.amazonaws.com" % region
scope = "%s/%s/sts/aws4_request" % (date, region)
params = {"Action": "GetCallerIdentity", "Version": "2011-06-15",
          "X-Amz-Algorithm": "AWS4-HMAC-SHA256", "X-Amz-Credential": akid + "/" + scope,
          "X-Amz-Date": amzdate, "X-Amz-Expires": "60",
          "X-Amz-SignedHeaders": "host;x-k8s-aws-id", "X-Amz-Security-Token": token}
q = lambda s: urllib.parse.quote(s, safe="-_.~")
cq = "&".join("%s=%s" % (q(k), q(v)) for k, v in sorted(params.items()))
creq = "\n".join(["GET", "/", cq, "host:%s\nx-k8s-aws-id:%s\n" % (host, cluster),
                  "host;x-k8s-aws-id", hashlib.sha256(b"").hexdigest()])
sts = "\n".join(["AWS4-HMAC-SHA256", amzdate, scope, hashlib.sha256(creq.encode()).hexdigest()])
h = lambda k, m: hmac.new(k, m.encode(), hashlib.sha256).digest()
k = h(h(h(h(("AWS4" + secret).encode(), date), region), "sts"), "aws4_request")
print("https://%s/?%s&X-Amz-Signature=%s" % (host, cq, hmac.new(k, sts.encode(), hashlib.sha256).hexdigest()))
"#;
    let out = std::process::Command::new("python3")
        .args([
            "-c",
            py,
            &creds.access_key_id,
            &creds.secret_access_key,
            creds.session_token.as_deref().unwrap_or_default(),
            "eu-west-1",
            "prod-eks",
            get("X-Amz-Date"),
        ])
        .output()
        .context("running python3")?;
    ensure!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let expected = String::from_utf8(out.stdout)?.trim().to_string();
    ensure!(
        url.as_str() == expected,
        "ours:   {url}\npython: {expected}"
    );
    Ok(())
}

/// IRSA → AssumeRoleWithWebIdentity → AssumeRole(roleARN) → presigned token, accepted by an
/// EKS-like front only after the STS verified its signature for the cluster's name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aws_auth_reaches_an_eks_like_cluster_through_sts() -> Result<()> {
    let sim = KubeSim::start(SimConfig {
        clusters: 1,
        tls: true,
        ..SimConfig::default()
    })
    .await?;
    let target = sim.clusters()[0].clone();
    let sts = FakeSts::start(TrustedIdentity {
        role_arn: BASE_ROLE.into(),
        web_identity_token: WEB_IDENTITY.into(),
    })
    .await?;
    let front = EksFront::start(
        "prod-eks",
        sts.addr,
        Upstream {
            addr: target.addr,
            token: target.token.clone(),
            ca_pem: target.ca_pem.clone().context("kubesim TLS")?,
        },
    )
    .await?;
    let dir = tempfile::tempdir()?;
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, format!("{WEB_IDENTITY}\n"))?;
    let env = local_env(AwsSettings {
        sts_endpoint: Some(sts.url()),
        web_identity: Some(WebIdentity {
            role_arn: BASE_ROLE.into(),
            token_file: token_file.clone(),
            session_name: None,
        }),
        ..Default::default()
    });
    let config = |name: &str| {
        json!({"awsAuthConfig": {"clusterName": name, "roleARN": DEPLOY_ROLE},
               "tlsClientConfig": {"caData": ca_data(&front.ca_pem)}})
    };
    let c = cluster("eks", &front.url(), &config("prod-eks"))?;
    let client = cluster_auth::client(&c, env.clone())?;
    for _ in 0..3 {
        get_default_ns(&client).await?;
    }
    ensure_sts(
        &sts,
        "one web identity exchange, one AssumeRole of the deployer, one token verified for prod-eks",
        |l| {
            l.web_identity_calls == 1
                && l.assume_role_calls == 1
                && l.assumed_roles == [DEPLOY_ROLE]
                && l.verified.len() == 1
                && l.verified[0].0 == "prod-eks"
                && l.verified[0].1.contains(":assumed-role/deployer/")
                && l.refused.is_empty()
        },
    )?;
    let log = front.log();
    ensure!(log.accepted == 3 && log.refused.is_empty(), "{log:?}");
    ensure!(
        log.tokens.len() == 1,
        "one token for three requests: {log:?}"
    );
    let url = token_url(&log.tokens[0])?;
    ensure!(
        url.as_str().starts_with(&format!("{}/?", sts.url())),
        "{url}"
    );

    // A token signed for another cluster name fails STS's check: the name is signed.
    let other = cluster("other", &front.url(), &config("staging-eks"))?;
    let err = get_default_ns(&cluster_auth::client(&other, env.clone())?)
        .await
        .expect_err("refused");
    ensure!(
        format!("{err:#}").contains("401") || format!("{err:#}").contains("Unauthorized"),
        "{err:#}"
    );
    ensure_sts(&sts, "the staging token refused", |l| {
        l.refused
            .iter()
            .any(|r| r.contains("signature does not match"))
    })?;

    // No usable web identity: a clear error, no secret in it.
    std::fs::write(&token_file, "not-the-token")?;
    let fresh_env = local_env(env.aws.settings().clone());
    let err = get_default_ns(&cluster_auth::client(&c, fresh_env)?)
        .await
        .expect_err("STS refuses");
    let msg = format!("{err:#}");
    ensure!(
        msg.contains("AssumeRoleWithWebIdentity") && msg.contains("InvalidIdentityToken"),
        "{msg}"
    );
    ensure!(
        !msg.contains("not-the-token") && !msg.contains(WEB_IDENTITY),
        "{msg}"
    );
    Ok(())
}

/// A credential command runs once while its token is valid, again after it expired or the
/// cluster refused it; a failing command is a clear error without its output.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_provider_tokens_are_cached_until_expiry() -> Result<()> {
    let sim = KubeSim::start(SimConfig {
        clusters: 1,
        tls: true,
        ..SimConfig::default()
    })
    .await?;
    let target = sim.clusters()[0].clone();
    for n in 1..=6 {
        sim.add_token(&format!("exec-token-{n}"), &format!("exec-user-{n}"));
    }
    let env = local_env(AwsSettings::default());
    let tls = json!({"caData": target.ca_data()});
    let users = || {
        target
            .log
            .since(0)
            .into_iter()
            .map(|r| r.user)
            .collect::<std::collections::BTreeSet<_>>()
    };

    // Tokens valid for 4 s.
    let dir = tempfile::tempdir()?;
    let script = counting_script(dir.path(), "exec-token-$n", Some(4))?;
    let mut config = exec_config(&script, &[("PLUGIN_MODE", "test")]);
    config["tlsClientConfig"] = tls.clone();
    let c = cluster("exec", &target.url(), &config)?;
    let client = cluster_auth::client(&c, env.clone())?;
    for _ in 0..4 {
        get_default_ns(&client).await?;
    }
    ensure!(
        runs(dir.path()) == 1,
        "one run while valid, got {}",
        runs(dir.path())
    );
    ensure!(users().contains("exec-user-1"), "{:?}", users());
    tokio::time::sleep(Duration::from_millis(4500)).await;
    get_default_ns(&client).await?;
    get_default_ns(&client).await?;
    ensure!(
        runs(dir.path()) == 2,
        "a second run after expiry, got {}",
        runs(dir.path())
    );
    ensure!(users().contains("exec-user-2"), "{:?}", users());

    // No expiry: kept until the cluster answers 401 (run 1 prints a token kubesim refuses).
    let dir2 = tempfile::tempdir()?;
    let script = counting_script(
        dir2.path(),
        "$( [ \"$n\" = 1 ] && echo refused-token || echo exec-token-5 )",
        None,
    )?;
    let mut config = exec_config(&script, &[]);
    config["tlsClientConfig"] = tls.clone();
    let client = cluster_auth::client(&cluster("exec-401", &target.url(), &config)?, env.clone())?;
    ensure!(get_default_ns(&client).await.is_err(), "the refused token");
    get_default_ns(&client).await?;
    get_default_ns(&client).await?;
    ensure!(
        runs(dir2.path()) == 2,
        "re-run after 401 only, got {}",
        runs(dir2.path())
    );

    // A failing command: a clear error naming the command, never its output or arguments.
    let dir3 = tempfile::tempdir()?;
    let failing = exec_script(
        dir3.path(),
        "fail.sh",
        "echo '{\"status\":{\"token\":\"s3cr3t-stdout\"}}'\necho 'auth failed for s3cr3t-stderr' >&2\nexit 7",
    )?;
    let mut config = exec_config(&failing, &[("API_KEY", "s3cr3t-env")]);
    config["tlsClientConfig"] = tls.clone();
    let client = cluster_auth::client(&cluster("exec-fail", &target.url(), &config)?, env.clone())?;
    let msg = format!("{:#}", get_default_ns(&client).await.expect_err("fails"));
    ensure!(
        msg.contains("exec provider command \"sh\" failed") && msg.contains("7"),
        "{msg}"
    );
    ensure!(!msg.contains("s3cr3t"), "{msg}");

    // A missing command names the install hint.
    let config = json!({"execProviderConfig": {"command": "/nonexistent/kubelogin",
        "apiVersion": EXEC_API, "installHint": "install kubelogin"}, "tlsClientConfig": tls});
    let client = cluster_auth::client(&cluster("exec-missing", &target.url(), &config)?, env)?;
    let msg = format!("{:#}", get_default_ns(&client).await.expect_err("missing"));
    ensure!(
        msg.contains("not found") && msg.contains("install kubelogin"),
        "{msg}"
    );
    Ok(())
}

/// `proxyUrl`: every connection to the cluster is a CONNECT tunnel through the proxy; unknown
/// `config` fields are refused by name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_url_tunnels_and_unknown_fields_are_refused() -> Result<()> {
    let sim = KubeSim::start(SimConfig {
        clusters: 1,
        tls: true,
        ..SimConfig::default()
    })
    .await?;
    let target = sim.clusters()[0].clone();
    let proxy = ConnectProxy::start().await?;
    let config = json!({"bearerToken": target.token, "proxyUrl": proxy.url(),
                        "tlsClientConfig": {"caData": target.ca_data()}});
    let c = cluster("proxied", &target.url(), &config)?;
    let client = cluster_auth::client(&c, local_env(AwsSettings::default()))?;
    get_default_ns(&client).await?;
    ensure!(proxy.count() >= 1, "no tunnel");
    let tunnels = proxy.tunnels.lock().map(|t| t.clone()).unwrap_or_default();
    ensure!(
        tunnels.iter().all(|t| t == &target.host_port()),
        "{tunnels:?}"
    );

    let mut bad = config.clone();
    bad["someNewField"] = json!(true);
    match cluster("bad", &target.url(), &bad) {
        Err(e) => {
            let e = e.downcast::<ClusterSecretError>()?;
            ensure!(
                e == ClusterSecretError::UnknownConfigField {
                    secret: "bad".into(),
                    field: "someNewField".into()
                },
                "{e}"
            );
        }
        Ok(_) => anyhow::bail!("an unknown field was accepted"),
    }
    Ok(())
}

/// The controller binary, through a fleet: an EKS cluster (IRSA + roleARN), a cluster behind
/// a credential command, one behind a proxy; a Secret with an unknown field is refused in the
/// log and a failing command shows on the app without its output.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fleet_syncs_to_eks_exec_and_proxied_clusters() -> Result<()> {
    let sts = FakeSts::start(TrustedIdentity {
        role_arn: BASE_ROLE.into(),
        web_identity_token: WEB_IDENTITY.into(),
    })
    .await?;
    let dir = tempfile::tempdir()?;
    let token_file = dir.path().join("irsa-token");
    std::fs::write(&token_file, WEB_IDENTITY)?;
    let fleet = Fleet::start(FleetConfig {
        clusters: 3,
        env: vec![
            ("FLOTILLA_AWS_STS_ENDPOINT".into(), sts.url()),
            ("AWS_ROLE_ARN".into(), BASE_ROLE.into()),
            (
                "AWS_WEB_IDENTITY_TOKEN_FILE".into(),
                token_file.display().to_string(),
            ),
            // Whatever the test's environment holds, IRSA is what the controller uses.
            ("AWS_ACCESS_KEY_ID".into(), String::new()),
            ("AWS_SECRET_ACCESS_KEY".into(), String::new()),
            (
                "FLOTILLA_TEST_SECRET".into(),
                "s3cr3t-controller-env".into(),
            ),
        ],
        ..Default::default()
    })
    .await?;
    let sim = fleet.sim.in_process()?;
    let (c1, c2, c3) = (
        sim.cluster("cluster-001").context("cluster-001")?.clone(),
        sim.cluster("cluster-002").context("cluster-002")?.clone(),
        sim.cluster("cluster-003").context("cluster-003")?.clone(),
    );
    let front = EksFront::start(
        "prod-eks",
        sts.addr,
        Upstream {
            addr: c1.addr,
            token: c1.token.clone(),
            ca_pem: c1.ca_pem.clone().context("TLS")?,
        },
    )
    .await?;
    let proxy = ConnectProxy::start().await?;
    sim.add_token("exec-fleet-token", "exec-user");
    let exec_dir = tempfile::tempdir()?;
    // The token is refused unless the controller's own environment stayed out of the command.
    let script = counting_script(
        exec_dir.path(),
        "$( [ -z \"${FLOTILLA_TEST_SECRET:-}\" ] && echo exec-fleet-token || echo leaked-env )",
        Some(3600),
    )?;
    let failing = exec_script(
        exec_dir.path(),
        "fail.sh",
        "echo 's3cr3t-stdout'\necho 's3cr3t-stderr' >&2\nexit 4",
    )?;

    let localhost =
        |c: &flotilla_loadtest::kubesim::Cluster| format!("https://localhost:{}", c.addr.port());
    let secret_yaml = |name: &str, server: &str, config: Value| {
        json!({"apiVersion": "v1", "kind": "Secret",
               "metadata": {"name": name, "namespace": NS,
                            "labels": {"argocd.argoproj.io/secret-type": "cluster"}},
               "stringData": {"name": name, "server": server, "config": config.to_string()}})
        .to_string()
    };
    let with_tls = |mut v: Value, c: &flotilla_loadtest::kubesim::Cluster| {
        v["tlsClientConfig"] = json!({"caData": c.ca_data()});
        v
    };
    fleet
        .apply(&secret_yaml(
            "eks-prod",
            &front.url(),
            json!({"awsAuthConfig": {"clusterName": "prod-eks", "roleARN": DEPLOY_ROLE},
                   "tlsClientConfig": {"caData": ca_data(&front.ca_pem)}}),
        ))
        .await?;
    fleet
        .apply(&secret_yaml(
            "exec-cluster",
            &localhost(&c2),
            with_tls(exec_config(&script, &[]), &c2),
        ))
        .await?;
    fleet
        .apply(&secret_yaml(
            "proxied",
            &localhost(&c3),
            with_tls(
                json!({"bearerToken": c3.token, "proxyUrl": proxy.url()}),
                &c3,
            ),
        ))
        .await?;
    fleet
        .apply(&secret_yaml(
            "exec-broken",
            "https://127.0.0.1:9",
            exec_config(&failing, &[("API_KEY", "s3cr3t-env")]),
        ))
        .await?;
    fleet
        .apply(&secret_yaml(
            "bad-config",
            "https://127.0.0.1:10",
            json!({"bearerToken": "t", "someNewField": 1}),
        ))
        .await?;

    fleet.git.commit_files(
        &[
            ("aws/cm.yaml", &config_map("aws", "eks")),
            ("exec/cm.yaml", &config_map("exec", "exec")),
            ("proxied/cm.yaml", &config_map("proxied", "proxy")),
            ("broken/cm.yaml", &config_map("broken", "x")),
        ],
        "cluster auth",
    )?;
    for (app, path, dest) in [
        ("aws-app", "aws", "eks-prod"),
        ("exec-app", "exec", "exec-cluster"),
        ("proxied-app", "proxied", "proxied"),
        ("broken-app", "broken", "exec-broken"),
    ] {
        fleet
            .apply(&auto_synced_app(&fleet, app, path, dest, &[]))
            .await?;
    }
    wait_synced_healthy(&fleet, "aws-app").await?;
    wait_synced_healthy(&fleet, "exec-app").await?;
    wait_synced_healthy(&fleet, "proxied-app").await?;
    ensure!(
        live_value(&fleet, "cluster-001", "aws-app", "aws")
            .await?
            .as_deref()
            == Some("eks")
    );
    ensure!(
        live_value(&fleet, "cluster-002", "exec-app", "exec")
            .await?
            .as_deref()
            == Some("exec")
    );
    ensure!(
        live_value(&fleet, "cluster-003", "proxied-app", "proxied")
            .await?
            .as_deref()
            == Some("proxy")
    );

    // EKS: IRSA exchanged once, the deployer role assumed, tokens verified for prod-eks.
    ensure_sts(&sts, "IRSA, AssumeRole and verified tokens", |l| {
        l.web_identity_calls == 1
            && l.assume_role_calls == 1
            && !l.verified.is_empty()
            && l.verified
                .iter()
                .all(|(c, arn)| c == "prod-eks" && arn.contains("assumed-role/deployer/"))
            && l.refused.is_empty()
    })?;
    let flog = front.log();
    ensure!(flog.accepted > 0 && flog.refused.is_empty(), "{flog:?}");
    ensure!(
        flog.tokens.iter().all(|t| t.starts_with("k8s-aws-v1.")),
        "{flog:?}"
    );

    // Exec: one run for the whole sync; its token is what reached cluster-002.
    ensure!(
        runs(exec_dir.path()) == 1,
        "runs: {}",
        runs(exec_dir.path())
    );
    let exec_requests = c2
        .log
        .since(0)
        .into_iter()
        .filter(|r| r.user == "exec-user")
        .count();
    ensure!(
        exec_requests > 0,
        "no request with the exec token reached cluster-002"
    );

    // Proxy: cluster-003 reached through tunnels only.
    let tunnels = proxy.tunnels.lock().map(|t| t.clone()).unwrap_or_default();
    ensure!(
        !tunnels.is_empty()
            && tunnels
                .iter()
                .all(|t| t == &format!("localhost:{}", c3.addr.port())),
        "{tunnels:?}"
    );

    // A failing command: the app says so, without the command's output or env.
    let a = wait_app(
        &fleet,
        "broken-app",
        Duration::from_secs(60),
        "an exec failure condition",
        |a| {
            conditions(a)
                .iter()
                .any(|(_, m)| m.contains("exec provider command"))
        },
    )
    .await?;
    let msgs = conditions(&a)
        .into_iter()
        .map(|(_, m)| m)
        .collect::<Vec<_>>()
        .join(" | ");
    ensure!(
        msgs.contains("failed") && !msgs.contains("s3cr3t"),
        "{msgs}"
    );

    // The unknown field: refused by name in the controller's log, nothing secret logged.
    let log_path = fleet.controllers[0].proc.log.clone();
    let log = flotilla_tests::eventually("the refusal in the log", Duration::from_secs(30), || {
        let p = log_path.clone();
        async move {
            let text = std::fs::read_to_string(&p)?;
            Ok(text.contains("someNewField").then_some(text))
        }
    })
    .await?;
    ensure!(
        !log.contains("s3cr3t") && !log.contains(WEB_IDENTITY),
        "a secret in the controller log"
    );
    Ok(())
}
