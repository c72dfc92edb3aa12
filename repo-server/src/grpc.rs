//! The `flotilla.repo.v1.RepoServer` gRPC service: converts wire messages to domain requests,
//! calls a `ManifestBackend`, and maps its errors to gRPC status codes with clear messages.

use std::sync::Arc;
use std::time::Instant;

use flotilla_proto::repo::v1 as pb;
use pb::repo_server_server::RepoServer;
use tonic::{Code, Request, Response, Status};
use tracing::Instrument;

use crate::RenderError;
use crate::backend::{GenerateRequest, ListRequest, ManifestBackend, RepoError, RepoRef};
use crate::git::{Credentials, GitError};
use crate::helm_repo::HelmRepoError;
use crate::metrics::{RepoMetrics, RequestLabels};
use crate::source::{
    DirectoryOptions, HelmOptions, HelmParameter, JsonnetOptions, JsonnetVar, KustomizeOptions,
    PluginOptions, SourceKind, SourceRef, SourceSpec,
};

/// The gRPC service over any backend.
pub struct RepoGrpc<B> {
    backend: Arc<B>,
    metrics: RepoMetrics,
}

impl<B> RepoGrpc<B> {
    pub fn new(backend: Arc<B>, metrics: RepoMetrics) -> Self {
        Self { backend, metrics }
    }

    fn count(&self, method: &'static str, code: Code) {
        let code = match code {
            Code::Ok => "OK",
            Code::NotFound => "NotFound",
            Code::InvalidArgument => "InvalidArgument",
            Code::FailedPrecondition => "FailedPrecondition",
            Code::Unavailable => "Unavailable",
            _ => "Internal",
        };
        self.metrics
            .requests
            .get_or_create(&RequestLabels { method, code })
            .inc();
    }
}

fn repo_ref(repo: Option<pb::Repository>, fallback_url: &str) -> RepoRef {
    let r = repo.unwrap_or_default();
    let some = |s: String| (!s.is_empty()).then_some(s);
    RepoRef {
        url: if r.url.is_empty() {
            fallback_url.to_string()
        } else {
            r.url
        },
        creds: Credentials {
            username: some(r.username),
            password: some(r.password),
            bearer_token: some(r.bearer_token),
            insecure: r.insecure,
            ssh_private_key: some(r.ssh_private_key),
            tls_client_cert_data: some(r.tls_client_cert_data),
            tls_client_cert_key: some(r.tls_client_cert_key),
            proxy: some(r.proxy),
            no_proxy: some(r.no_proxy),
            enable_oci: r.enable_oci,
            // Not on the wire (yet): Git LFS is off for requests from the controller.
            enable_lfs: r.enable_lfs,
            github_app: (r.github_app_id != 0).then(|| crate::github_app::GithubAppCreds {
                app_id: r.github_app_id,
                installation_id: r.github_app_installation_id,
                private_key: r.github_app_private_key,
                enterprise_base_url: some(r.github_app_enterprise_base_url),
            }),
        },
    }
}

/// The domain form of a wire source.
pub fn source_spec(src: &pb::ApplicationSource, app_name: &str, namespace: &str) -> SourceSpec {
    use pb::application_source::Kind;
    let kind = match &src.kind {
        None => SourceKind::Auto,
        Some(Kind::Directory(d)) => SourceKind::Directory(DirectoryOptions {
            recurse: d.recurse,
            include: d.include.clone(),
            exclude: d.exclude.clone(),
            jsonnet: d
                .jsonnet
                .as_ref()
                .map(|j| {
                    let vars = |v: &[pb::JsonnetVar]| {
                        v.iter()
                            .map(|v| JsonnetVar {
                                name: v.name.clone(),
                                value: v.value.clone(),
                                code: v.code,
                            })
                            .collect()
                    };
                    JsonnetOptions {
                        ext_vars: vars(&j.ext_vars),
                        tlas: vars(&j.tlas),
                        libs: j.libs.clone(),
                    }
                })
                .unwrap_or_default(),
        }),
        Some(Kind::Helm(h)) => SourceKind::Helm(HelmOptions {
            value_files: h.value_files.clone(),
            values: h.values.clone(),
            parameters: h
                .parameters
                .iter()
                .map(|p| HelmParameter {
                    name: p.name.clone(),
                    value: p.value.clone(),
                    force_string: p.force_string,
                })
                .collect(),
            file_parameters: h
                .file_parameters
                .iter()
                .map(|p| (p.name.clone(), p.path.clone()))
                .collect(),
            release_name: h.release_name.clone(),
            skip_crds: h.skip_crds,
            ignore_missing_value_files: h.ignore_missing_value_files,
            pass_credentials: h.pass_credentials,
            kube_version: h
                .capabilities
                .as_ref()
                .map(|c| c.kube_version.clone())
                .unwrap_or_default(),
            api_versions: h
                .capabilities
                .as_ref()
                .map(|c| c.api_versions.clone())
                .unwrap_or_default(),
            ref_roots: None,
        }),
        Some(Kind::Plugin(p)) => SourceKind::Plugin(PluginOptions {
            name: p.name.clone(),
            env: sorted(&p.env),
            kube_version: p
                .capabilities
                .as_ref()
                .map(|c| c.kube_version.clone())
                .unwrap_or_default(),
            api_versions: p
                .capabilities
                .as_ref()
                .map(|c| c.api_versions.clone())
                .unwrap_or_default(),
            target_revision: p.target_revision.clone(),
        }),
        Some(Kind::Kustomize(k)) => SourceKind::Kustomize(KustomizeOptions {
            name_prefix: k.name_prefix.clone(),
            name_suffix: k.name_suffix.clone(),
            images: k.images.clone(),
            common_labels: sorted(&k.common_labels),
            common_annotations: sorted(&k.common_annotations),
            namespace: k.namespace.clone(),
        }),
    };
    SourceSpec {
        repo_url: src.repo_url.clone(),
        path: src.path.clone(),
        chart: src.chart.clone(),
        kind,
        app_name: app_name.to_string(),
        namespace: namespace.to_string(),
        multiple_sources: false,
        refs: Vec::new(),
    }
}

/// The domain form of the ref sources a request reads files from.
pub fn source_refs(refs: &[pb::RefSource]) -> Vec<SourceRef> {
    refs.iter()
        .map(|r| SourceRef {
            name: r.name.clone(),
            repo: repo_ref(r.repo.clone(), ""),
            commit: r.commit_sha.to_lowercase(),
        })
        .collect()
}

fn sorted(m: &std::collections::BTreeMap<String, String>) -> Vec<(String, String)> {
    let mut v: Vec<_> = m.iter().map(|(a, b)| (a.clone(), b.clone())).collect();
    v.sort();
    v
}

/// Metadata set on every error the repo-server itself answers. A client seeing `Unavailable`
/// *without* it knows the repo-server was not reached (try another); with it, something behind
/// the repo-server (a Git server) is down and another repo-server would not help.
pub const ERROR_ORIGIN: &str = "flotilla-error-origin";

/// The gRPC status for a backend error; the message is what users will see in a condition.
pub fn status(e: &RepoError) -> Status {
    let code = match e {
        RepoError::Git(g) => match g.as_ref() {
            GitError::UnknownRevision { .. } => Code::NotFound,
            GitError::Fetch { .. } => Code::Unavailable,
            _ => Code::Internal,
        },
        RepoError::Render(r) => match r.as_ref() {
            RenderError::PathMissing { .. } => Code::NotFound,
            _ => Code::FailedPrecondition,
        },
        RepoError::Helm(h) => match h {
            HelmRepoError::NotFound { .. } => Code::NotFound,
            HelmRepoError::Unavailable { .. } => Code::Unavailable,
            HelmRepoError::Invalid { .. } => Code::FailedPrecondition,
        },
        RepoError::Invalid(_) => Code::InvalidArgument,
        RepoError::Refused(_) => Code::FailedPrecondition,
        RepoError::Internal(_) => Code::Internal,
    };
    let mut md = tonic::metadata::MetadataMap::new();
    md.insert(
        ERROR_ORIGIN,
        tonic::metadata::MetadataValue::from_static("repo-server"),
    );
    Status::with_metadata(code, e.to_string(), md)
}

#[tonic::async_trait]
impl<B: ManifestBackend> RepoServer for RepoGrpc<B> {
    async fn resolve_revision(
        &self,
        request: Request<pb::ResolveRevisionRequest>,
    ) -> Result<Response<pb::ResolveRevisionResponse>, Status> {
        let span = tracing::info_span!("repo_server.resolve_revision");
        flotilla_core::telemetry::adopt_grpc_context(&span, request.metadata());
        self.resolve_revision_traced(request.into_inner())
            .instrument(span)
            .await
    }

    async fn generate_manifests(
        &self,
        request: Request<pb::GenerateManifestsRequest>,
    ) -> Result<Response<pb::GenerateManifestsResponse>, Status> {
        let span = tracing::info_span!("repo_server.generate_manifests");
        flotilla_core::telemetry::adopt_grpc_context(&span, request.metadata());
        self.generate_manifests_traced(request.into_inner())
            .instrument(span)
            .await
    }

    async fn list_repo_paths(
        &self,
        request: Request<pb::ListRepoPathsRequest>,
    ) -> Result<Response<pb::ListRepoPathsResponse>, Status> {
        let span = tracing::info_span!("repo_server.list_repo_paths");
        flotilla_core::telemetry::adopt_grpc_context(&span, request.metadata());
        self.list_repo_paths_traced(request.into_inner())
            .instrument(span)
            .await
    }

    async fn update_revision_for_paths(
        &self,
        request: Request<pb::UpdateRevisionForPathsRequest>,
    ) -> Result<Response<pb::UpdateRevisionForPathsResponse>, Status> {
        let span = tracing::info_span!("repo_server.update_revision_for_paths");
        flotilla_core::telemetry::adopt_grpc_context(&span, request.metadata());
        let req = request.into_inner();
        let repo = repo_ref(req.repo, "");
        let _pending = self.pending(&repo.url);
        let res = self
            .backend
            .paths_changed(repo, req.synced_commit, req.commit, req.paths)
            .instrument(span)
            .await;
        match res {
            Ok(changes) => {
                self.count("UpdateRevisionForPaths", Code::Ok);
                Ok(Response::new(pb::UpdateRevisionForPathsResponse {
                    changes,
                }))
            }
            Err(e) => {
                let s = status(&e);
                self.count("UpdateRevisionForPaths", s.code());
                Err(s)
            }
        }
    }

    async fn get_load(
        &self,
        _request: Request<pb::GetLoadRequest>,
    ) -> Result<Response<pb::GetLoadResponse>, Status> {
        let (running, waiting, slots) = self.backend.load();
        let n = |v: usize| u32::try_from(v).unwrap_or(u32::MAX);
        Ok(Response::new(pb::GetLoadResponse {
            renders_running: n(running),
            renders_waiting: n(waiting),
            render_slots: n(slots),
        }))
    }
}

/// Counts a request in `flotilla_repo_pending_request_total` while it is alive.
struct Pending(prometheus_client::metrics::gauge::Gauge);

impl Drop for Pending {
    fn drop(&mut self) {
        self.0.dec();
    }
}

impl<B: ManifestBackend> RepoGrpc<B> {
    fn pending(&self, repo: &str) -> Pending {
        let g = self
            .metrics
            .pending
            .get_or_create(&crate::metrics::RepoLabels {
                repo: self.metrics.repo_label(repo),
            })
            .clone();
        g.inc();
        Pending(g)
    }

    async fn resolve_revision_traced(
        &self,
        req: pb::ResolveRevisionRequest,
    ) -> Result<Response<pb::ResolveRevisionResponse>, Status> {
        let repo = repo_ref(req.repo, "");
        let _pending = self.pending(&repo.url);
        let started = Instant::now();
        let res = self
            .backend
            .resolve(repo.clone(), req.revision.clone(), req.chart.clone())
            .await;
        tracing::debug!(repo = %flotilla_core::redact::redact_url(&repo.url), revision = %req.revision, ms = started.elapsed().as_millis() as u64, ok = res.is_ok(), "ResolveRevision");
        match res {
            Ok(r) => {
                self.count("ResolveRevision", Code::Ok);
                Ok(Response::new(pb::ResolveRevisionResponse {
                    commit_sha: r.commit,
                    resolved_ref: String::new(),
                }))
            }
            Err(e) => {
                let s = status(&e);
                self.count("ResolveRevision", s.code());
                Err(s)
            }
        }
    }

    async fn list_repo_paths_traced(
        &self,
        req: pb::ListRepoPathsRequest,
    ) -> Result<Response<pb::ListRepoPathsResponse>, Status> {
        use crate::git_listing::Wanted;
        use flotilla_appset::generators::glob::FileGlobbing;
        let wanted = match (req.directories, req.file_globs.is_empty()) {
            (true, true) => Wanted::Directories,
            (false, false) => Wanted::Files {
                globs: req.file_globs,
                globbing: if req.doublestar_globbing {
                    FileGlobbing::Doublestar
                } else {
                    FileGlobbing::GitLsFiles
                },
            },
            _ => {
                self.count("ListRepoPaths", Code::InvalidArgument);
                return Err(status(&RepoError::Invalid(
                    "set exactly one of directories and file_globs".into(),
                )));
            }
        };
        let repo = repo_ref(req.repo, "");
        let _pending = self.pending(&repo.url);
        let started = Instant::now();
        let res = self
            .backend
            .list_paths(ListRequest {
                repo: repo.clone(),
                revision: req.revision.clone(),
                wanted,
            })
            .await;
        tracing::debug!(repo = %flotilla_core::redact::redact_url(&repo.url), revision = %req.revision, ms = started.elapsed().as_millis() as u64, ok = res.is_ok(), "ListRepoPaths");
        match res {
            Ok(l) => {
                self.count("ListRepoPaths", Code::Ok);
                Ok(Response::new(pb::ListRepoPathsResponse {
                    commit_sha: l.commit,
                    directories: l.listing.directories,
                    files: l
                        .listing
                        .files
                        .into_iter()
                        .map(|(path, content)| pb::list_repo_paths_response::File { path, content })
                        .collect(),
                }))
            }
            Err(e) => {
                let s = status(&e);
                self.count("ListRepoPaths", s.code());
                Err(s)
            }
        }
    }

    async fn generate_manifests_traced(
        &self,
        req: pb::GenerateManifestsRequest,
    ) -> Result<Response<pb::GenerateManifestsResponse>, Status> {
        let Some(src) = req.source else {
            self.count("GenerateManifests", Code::InvalidArgument);
            return Err(status(&RepoError::Invalid("source is required".into())));
        };
        let scope = req
            .repo
            .as_ref()
            .map(|r| r.credential_scope.clone())
            .unwrap_or_default();
        let repo = repo_ref(req.repo, &src.repo_url);
        let _pending = self.pending(&repo.url);
        let mut spec = source_spec(&src, &req.app_name, &req.namespace);
        spec.refs = source_refs(&req.ref_sources);
        spec.multiple_sources = req.has_multiple_sources || !spec.refs.is_empty();
        let started = Instant::now();
        let res = self
            .backend
            .generate(GenerateRequest {
                repo: repo.clone(),
                spec,
                revision: src.target_revision.clone(),
                commit: req.commit_sha.clone(),
                // The shared cache key is made here from the source this request renders;
                // the request's cache_key fields are ignored (a client never names a key).
                // With the ref sources it reads (their commits included): a render of the
                // same source with another values commit is another render.
                source_digest: flotilla_cache::keys::render_digest(
                    &src,
                    &scope,
                    req.has_multiple_sources,
                    &req.ref_sources,
                ),
                no_cache: req.no_cache,
            })
            .await;
        tracing::debug!(repo = %flotilla_core::redact::redact_url(&repo.url), path = %src.path, ms = started.elapsed().as_millis() as u64, ok = res.is_ok(), "GenerateManifests");
        match res {
            Ok(g) => {
                let r = &g.rendered;
                let manifests = r
                    .objects
                    .iter()
                    .map(serde_json::to_string)
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| Status::internal(format!("encoding manifests: {e}")))?;
                self.count("GenerateManifests", Code::Ok);
                Ok(Response::new(pb::GenerateManifestsResponse {
                    commit_sha: r.commit.clone(),
                    manifests,
                    source_type: r.source_type.to_string(),
                    app_specific: g.app_specific,
                    from_cache: g.from_cache,
                }))
            }
            Err(e) => {
                let s = status(&e);
                self.count("GenerateManifests", s.code());
                Err(s)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::{Generated, Resolved};
    use crate::source::Rendered;
    use pb::repo_server_client::RepoServerClient;
    use pb::repo_server_server::RepoServerServer;

    /// An in-memory backend: one repository with fixed branches and rendered objects.
    struct Memory;

    impl ManifestBackend for Memory {
        fn load(&self) -> (usize, usize, usize) {
            (1, 2, 3)
        }

        async fn resolve(
            &self,
            repo: RepoRef,
            revision: String,
            _chart: String,
        ) -> Result<Resolved, RepoError> {
            match (repo.url.as_str(), revision.as_str()) {
                ("mem://repo", "main" | "") => Ok(Resolved {
                    commit: "a".repeat(40),
                }),
                ("mem://repo", other) => Err(GitError::UnknownRevision {
                    url: repo.url.clone(),
                    revision: other.into(),
                }
                .into()),
                _ => Err(GitError::Fetch {
                    url: repo.url.clone(),
                    message: "connection refused".into(),
                }
                .into()),
            }
        }

        async fn generate(&self, req: GenerateRequest) -> Result<Generated, RepoError> {
            let GenerateRequest {
                repo,
                spec,
                revision,
                commit,
                source_digest,
                ..
            } = req;
            assert_eq!(repo.creds.username.as_deref(), Some("u"));
            // The server's own digest of the source, never the client's cache_key.
            assert_eq!(source_digest.len(), 32, "{source_digest}");
            let commit = if commit.is_empty() {
                self.resolve(repo, revision, String::new()).await?.commit
            } else {
                commit
            };
            if spec.path == "missing" {
                return Err(RenderError::PathMissing { path: spec.path }.into());
            }
            Ok(Generated {
                rendered: Arc::new(Rendered {
                    commit,
                    objects: vec![serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap",
                        "metadata": {"name": spec.path, "namespace": spec.namespace}})],
                    source_type: "Directory",
                }),
                app_specific: false,
                from_cache: true,
            })
        }
    }

    async fn serve() -> RepoServerClient<tonic::transport::Channel> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let svc = RepoGrpc::new(Arc::new(Memory), RepoMetrics::default());
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(RepoServerServer::new(svc))
                .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)),
        );
        RepoServerClient::connect(format!("http://{addr}"))
            .await
            .expect("connect")
    }

    fn mk_request(path: &str, revision: &str) -> pb::GenerateManifestsRequest {
        pb::GenerateManifestsRequest {
            repo: Some(pb::Repository {
                url: "mem://repo".into(),
                username: "u".into(),
                password: "p".into(),
                ..Default::default()
            }),
            source: Some(pb::ApplicationSource {
                repo_url: "mem://repo".into(),
                path: path.into(),
                target_revision: revision.into(),
                ..Default::default()
            }),
            commit_sha: String::new(),
            app_name: "web".into(),
            namespace: "team-a".into(),
            cache_key: "flotilla:m:k".into(),
            app_cache_key: "flotilla:m:k:a".into(),
            no_cache: false,
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn generate_returns_json_objects_and_the_resolved_commit() {
        let mut client = serve().await;
        let resp = client
            .generate_manifests(mk_request("apps/web", "main"))
            .await
            .expect("ok")
            .into_inner();
        assert_eq!(resp.commit_sha, "a".repeat(40));
        assert_eq!(resp.source_type, "Directory");
        assert!(resp.from_cache && !resp.app_specific, "flags pass through");
        let obj: serde_json::Value = serde_json::from_str(&resp.manifests[0]).expect("json");
        assert_eq!(obj["metadata"]["namespace"], "team-a");
    }

    #[tokio::test]
    async fn load_reports_the_backends_render_slots() {
        let mut c = serve().await;
        let l = c
            .get_load(pb::GetLoadRequest {})
            .await
            .expect("load")
            .into_inner();
        assert_eq!(
            (l.renders_running, l.renders_waiting, l.render_slots),
            (1, 2, 3)
        );
    }

    #[tokio::test]
    async fn errors_map_to_codes_with_the_backends_message() {
        let mut client = serve().await;
        let e = client
            .generate_manifests(mk_request("missing", "main"))
            .await
            .expect_err("missing path");
        assert_eq!(e.code(), Code::NotFound);
        assert!(e.message().contains("missing"), "{}", e.message());
        let e = client
            .generate_manifests(mk_request("apps/web", "nope"))
            .await
            .expect_err("unknown revision");
        assert_eq!(e.code(), Code::NotFound);
        let e = client
            .resolve_revision(pb::ResolveRevisionRequest {
                repo: Some(pb::Repository {
                    url: "mem://down".into(),
                    ..Default::default()
                }),
                revision: "main".into(),
                chart: String::new(),
            })
            .await
            .expect_err("unreachable");
        assert_eq!(e.code(), Code::Unavailable);
        assert!(e.message().contains("connection refused"));
        assert!(
            e.metadata().get(ERROR_ORIGIN).is_some(),
            "an upstream failure says it came from the repo-server"
        );
        let mut no_source = mk_request("x", "main");
        no_source.source = None;
        let e = client
            .generate_manifests(no_source)
            .await
            .expect_err("no source");
        assert_eq!(e.code(), Code::InvalidArgument);
    }
}
