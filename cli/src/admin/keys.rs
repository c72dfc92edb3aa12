//! The key table of `flotilla admin import`: every key of `argocd-cm`, `argocd-cmd-params-cm`
//! and `argocd-rbac-cm` with what Flotilla does with it (honoured, mapped to a flag, not needed,
//! refused), its Flotilla equivalent and why. `docs/argocd-config-keys.md` is generated from it
//! (a test keeps the two equal).
//!
//! Where the keys come from: Argo CD's `docs/operator-manual/argocd-cm.yaml` and
//! `argocd-cmd-params-cm.yaml` (v2.x and v3.x), the `argocd-cmd-params-cm` keys its v3
//! manifests read (`configMapKeyRef`), `argocd-rbac-cm`'s documented keys, and the legacy
//! in-ConfigMap repository keys of Argo CD before v2.

use serde::Serialize;

/// Which ConfigMap a key belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub enum Source {
    #[serde(rename = "argocd-cm")]
    ArgocdCm,
    #[serde(rename = "argocd-cmd-params-cm")]
    CmdParams,
    #[serde(rename = "argocd-rbac-cm")]
    RbacCm,
}

impl Source {
    pub fn name(self) -> &'static str {
        match self {
            Source::ArgocdCm => "argocd-cm",
            Source::CmdParams => "argocd-cmd-params-cm",
            Source::RbacCm => "argocd-rbac-cm",
        }
    }

    #[cfg(test)]
    pub const ALL: [Source; 3] = [Source::ArgocdCm, Source::CmdParams, Source::RbacCm];
}

/// What Flotilla does with a setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum Treatment {
    /// Flotilla reads it where Argo CD has it and does what Argo CD does.
    #[serde(rename = "honoured")]
    Honoured,
    /// Flotilla does the same, configured elsewhere (a flag, an environment variable).
    #[serde(rename = "mapped")]
    Mapped,
    /// Flotilla has no use for it: its design covers it, or it configures something Flotilla
    /// does not have whose absence changes neither what is deployed nor who may do what.
    #[serde(rename = "not needed")]
    NotNeeded,
    /// Flotilla will not do what it asks.
    #[serde(rename = "refused")]
    Refused,
}

impl Treatment {
    pub fn name(self) -> &'static str {
        match self {
            Treatment::Honoured => "honoured",
            Treatment::Mapped => "mapped",
            Treatment::NotNeeded => "not needed",
            Treatment::Refused => "refused",
        }
    }
}

/// How a mapped value is carried over to the Flotilla flag (shown in the report).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Conv {
    None,
    /// A whole number, as is.
    Int,
    /// A Go duration (`180s`, `3m`, `1h0m0s`) or plain seconds → seconds.
    Seconds,
    /// Seconds → milliseconds.
    Millis,
    /// A Go duration → hours (rounded up).
    Hours,
}

/// One key (or family of keys: `<…>` stands for a part the user chooses).
#[derive(Debug, Clone, Copy, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct KeyDoc {
    pub source: Source,
    pub key: &'static str,
    pub treatment: Treatment,
    /// Refused in a way that changes security or what gets deployed.
    #[serde(rename = "unsafe")]
    pub is_unsafe: bool,
    /// The Flotilla component, flag or variable that does it (empty: none).
    #[serde(skip_serializing_if = "str::is_empty")]
    pub flotilla: &'static str,
    pub detail: &'static str,
    /// Values that ask for exactly what Flotilla does anyway: then the key is honoured.
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    pub honoured_when: &'static [&'static str],
    #[serde(skip)]
    pub conv: Conv,
}

impl KeyDoc {
    const fn new(
        source: Source,
        key: &'static str,
        treatment: Treatment,
        flotilla: &'static str,
        detail: &'static str,
    ) -> Self {
        Self {
            source,
            key,
            treatment,
            is_unsafe: false,
            flotilla,
            detail,
            honoured_when: &[],
            conv: Conv::None,
        }
    }

    const fn unsafe_(mut self) -> Self {
        self.is_unsafe = true;
        self
    }

    const fn when(mut self, values: &'static [&'static str]) -> Self {
        self.honoured_when = values;
        self
    }

    const fn conv(mut self, c: Conv) -> Self {
        self.conv = c;
        self
    }

    /// Whether `value` asks for what Flotilla does anyway.
    pub fn honoured_by_value(&self, value: &str) -> bool {
        let v = value.trim();
        self.honoured_when.iter().any(|h| h.eq_ignore_ascii_case(v))
    }

    /// The key's treatment as the doc states it (`refused (unsafe); honoured when false`).
    pub fn treatment_text(&self) -> String {
        let mut t = self.treatment.name().to_string();
        if self.is_unsafe {
            t.push_str(" (unsafe)");
        }
        if !self.honoured_when.is_empty() {
            let vs: Vec<String> = self
                .honoured_when
                .iter()
                .map(|v| {
                    if v.is_empty() {
                        "empty".to_string()
                    } else {
                        format!("`{v}`")
                    }
                })
                .collect();
            t.push_str(&format!("; honoured when {}", vs.join(" or ")));
        }
        t
    }
}

use Source::{ArgocdCm as CM, CmdParams as CP, RbacCm as RB};
use Treatment::{Honoured as H, Mapped as M, NotNeeded as NN, Refused as R};

const fn cm(key: &'static str, t: Treatment, f: &'static str, d: &'static str) -> KeyDoc {
    KeyDoc::new(CM, key, t, f, d)
}
const fn cp(key: &'static str, t: Treatment, f: &'static str, d: &'static str) -> KeyDoc {
    KeyDoc::new(CP, key, t, f, d)
}
const fn rb(key: &'static str, t: Treatment, f: &'static str, d: &'static str) -> KeyDoc {
    KeyDoc::new(RB, key, t, f, d)
}

const SERVER: &str = "flotilla-server";
const CONTROLLER: &str = "flotilla-controller";
const NO_DEX: &str = "Flotilla has no bundled Dex (see argocd-cm dex.config).";
const NO_UI_FEATURE: &str =
    "A UI feature Flotilla's UI does not have; nothing deployed or allowed depends on it.";
const NO_HYDRATOR: &str = "Flotilla has no source hydrator (an Application with spec.sourceHydrator is refused by the controller with a condition).";
const KUSTOMIZE_VERSIONS: &str = "One kustomize binary: an Application naming spec.source.kustomize.version is refused by the controller with a condition.";
const RENDER_TYPES: &str = "Flotilla always renders this source type: an Application Argo CD would refuse would be rendered and deployed.";
const NO_REPO_SERVER_CALLS: &str =
    "flotilla-server never calls the repo-server (renders belong to the controllers).";
const SERVER_TLS: &str = "flotilla-server serves plain HTTP: TLS terminates at the Ingress (the chart's ingress.tls) or a mesh.";
const NOTIFICATIONS: &str = "Configures Argo CD's notifications controller, which Flotilla does not replace: keep running it (it reads the Application status Flotilla writes).";
const COMMIT_SERVER: &str =
    "Configures Argo CD's commit server (source hydrator); Flotilla has none.";
const NO_SELF_HEAL_BACKOFF: &str =
    "No exponential self-heal backoff: self-heal waits a fixed 5 s after each sync.";
const LEGACY_REPOS: &str = "Legacy in-ConfigMap repositories and credential templates (Argo CD before v2): Flotilla reads repository / repo-creds Secrets only, so these credentials would not be used; move each entry to a Secret.";

/// Every key Flotilla knows, in the doc's order.
pub const KEYS: &[KeyDoc] = &[
    // ---- argocd-cm: who may sign in (flotilla-server)
    cm("url", H, SERVER, "The external URL: the SSO browser flow redirects to <url>/auth/callback."),
    cm("additionalUrls", R, "", "SSO redirects go to `url` only: signing in through another host name fails."),
    cm("oidc.config", H, SERVER, "SSO: name, issuer, clientID, clientSecret ($ references into argocd-secret), cliClientID, requestedScopes, allowedAudiences, rootCA (other fields are listed and not used). A config that does not parse leaves SSO off: nobody signs in through it."),
    cm("oidc.tls.insecure.skip.verify", R, "", "Flotilla always verifies the provider's certificate; give a private CA as oidc.config rootCA.").when(&["false"]),
    cm("dex.config", R, "", "No bundled Dex: configure oidc.config with your provider (or a Dex you run yourself); until then nobody signs in through Dex."),
    cm("dex.storage", NN, "", NO_DEX),
    cm("users.anonymous.enabled", H, SERVER, "Anonymous callers get policy.default's permissions, as in Argo CD."),
    cm("users.session.duration", H, SERVER, "Lifetime of password sign-in sessions (default 24h)."),
    cm("admin.enabled", H, SERVER, "`false` turns Argo CD's admin password (argocd-secret admin.password) off."),
    cm("accounts.<name>", M, "flotilla-server --service-account-tokens (FLOTILLA_SERVICE_ACCOUNT_TOKENS) or project role tokens", "Local accounts: the `login` capability is honoured (bcrypt password in argocd-secret accounts.<name>.password); `apiKey` has no equivalent: automation uses ServiceAccount tokens or project role tokens instead.").when(&["login"]),
    cm("accounts.<name>.enabled", H, SERVER, "`false` disables the account."),
    cm("passwordPattern", NN, "", "Flotilla has no password-change API: passwords are bcrypt hashes written to argocd-secret."),
    // ---- argocd-cm: comparison and health (flotilla-controller, settings.rs)
    cm("resource.customizations", H, CONTROLLER, "Single-key customizations (health.lua, health.lua.useOpenLibs, ignoreDifferences, ignoreResourceUpdates, knownTypeFields) parsed by the controller; `actions` are refused (the rest of the entry applies)."),
    cm("resource.customizations.health.<group_kind>", H, CONTROLLER, "Lua health checks in a sandbox (Argo CD's libraries, 1 s budget, 32 MiB)."),
    cm("resource.customizations.useOpenLibs.<group_kind>", H, CONTROLLER, "The Lua standard libraries for that health check."),
    cm("resource.customizations.ignoreDifferences.<group_kind>", H, CONTROLLER, "jsonPointers, jqPathExpressions, managedFieldsManagers; `all` for every kind."),
    cm("resource.customizations.ignoreResourceUpdates.<group_kind>", H, CONTROLLER, "Updates that change only these fields do not trigger a reconcile (with resource.ignoreResourceUpdatesEnabled)."),
    cm("resource.customizations.knownTypeFields.<group_kind>", H, CONTROLLER, "Fields normalized as a Kubernetes type (core/v1 PodSpec, PodTemplateSpec, Container, ResourceRequirements, ServiceSpec, PersistentVolumeClaimSpec; apps/v1 Deployment/StatefulSet/DaemonSet specs; batch/v1 Job/CronJob specs; meta/v1 Duration); another type is refused."),
    cm("resource.customizations.actions.<group_kind>", R, CONTROLLER, "Resource actions are not supported yet: nobody can run them (the rest of the customization applies)."),
    cm("resource.ignoreResourceUpdatesEnabled", H, CONTROLLER, "When absent Flotilla leaves it off (Argo CD 3.x turns it on): set `true` to keep that."),
    cm("resource.exclusions", H, CONTROLLER, "Kinds never watched, compared or pruned (globs over apiGroups, kinds, clusters); events and metrics are always excluded."),
    cm("resource.inclusions", H, CONTROLLER, "When set, only these kinds are watched, compared and pruned."),
    cm("resource.compareoptions", H, CONTROLLER, "ignoreAggregatedRoles, ignoreResourceStatusField (crd, all, off/none), ignoreDifferencesOnResourceUpdates."),
    cm("resource.respectRBAC", NN, "", "The controller watches only the kinds its Applications use, not every kind the cluster serves."),
    cm("resource.sensitive.mask.annotations", R, "", "Flotilla masks Secret data only: these annotations' values would be shown in diffs and resource views.").unsafe_(),
    cm("resource.includeEventLabelKeys", R, "", "Events Flotilla writes carry no Application labels."),
    cm("resource.excludeEventLabelKeys", R, "", "Events Flotilla writes carry no Application labels."),
    cm("resource.customLabels", NN, "", NO_UI_FEATURE),
    cm("flotilla.health.genericConditions", H, CONTROLLER, "Flotilla's own key: kstatus-style generic health (Ready/Available conditions) for kinds without a check."),
    // ---- argocd-cm: tracking
    cm("application.resourceTrackingMethod", H, CONTROLLER, "label, annotation or annotation+label: objects Argo CD deployed are recognised and adopted (read at start; a change needs a restart). Not set: Flotilla's own tracking label only, while Argo CD 3.x then tracks by annotation."),
    cm("application.instanceLabelKey", H, CONTROLLER, "The instance label of the label methods (read at start)."),
    cm("installationID", H, CONTROLLER, "Objects carrying another installation's id are not adopted."),
    // ---- argocd-cm: refresh and sync
    cm("timeout.reconciliation", M, "flotilla-controller --refresh-seconds (FLOTILLA_REFRESH_SECONDS)", "The periodic refresh. The controller names the key as not honoured (log line, flotilla_settings_problems) until it is removed.").conv(Conv::Seconds),
    cm("timeout.reconciliation.jitter", NN, "", "Flotilla adds up to 20 % jitter to every periodic refresh itself. The controller names the key as not honoured until it is removed."),
    cm("timeout.hard.reconciliation", R, "", "No periodic hard refresh: renders are cached by (commit, source) and made again only for a new commit or when an app is annotated argocd.argoproj.io/refresh=hard."),
    cm("application.sync.impersonation.enabled", R, "", "Syncs use the cluster Secret's credentials, never a per-project ServiceAccount: with it on, Flotilla would apply with more privilege than Argo CD. \"false\" is what Flotilla does.").unsafe_().when(&["false"]),
    cm("application.sync.impersonation.enforced", NN, "", "Flotilla does not impersonate (see application.sync.impersonation.enabled)."),
    cm("application.sync.requireOverridePrivilegeForRevisionSync", R, "", "flotilla-server lets whoever may `sync` an app sync it to another revision (there is no `override` check).").unsafe_().when(&["false"]),
    cm("cluster.inClusterEnabled", M, "flotilla-controller --no-in-cluster and flotilla-server --no-in-cluster (FLOTILLA_NO_IN_CLUSTER)", "`false`: set --no-in-cluster on both (the control plane is then not a destination).").when(&["true"]),
    cm("webhook.maxPayloadSizeMB", NN, "", "The controller's webhook accepts bodies up to 1 MiB; a push it refuses is picked up by the periodic refresh."),
    cm("webhook.refresh.jitter", NN, "", "Webhook refreshes drop cached revisions and coalesce: one render per (commit, source) across the fleet."),
    cm("webhook.refresh.jitter.threshold", NN, "", "Webhook refreshes drop cached revisions and coalesce: one render per (commit, source) across the fleet."),
    // ---- argocd-cm: rendering (flotilla-repo-server)
    cm("kustomize.enable", R, "", RENDER_TYPES).unsafe_().when(&["true"]),
    cm("jsonnet.enable", R, "", RENDER_TYPES).unsafe_().when(&["true"]),
    cm("helm.enable", R, "", RENDER_TYPES).unsafe_().when(&["true"]),
    cm("kustomize.enabled", R, "", RENDER_TYPES).unsafe_().when(&["true"]),
    cm("jsonnet.enabled", R, "", RENDER_TYPES).unsafe_().when(&["true"]),
    cm("helm.enabled", R, "", RENDER_TYPES).unsafe_().when(&["true"]),
    cm("kustomize.buildOptions", R, "", "The repo-server runs plain `kustomize build` (or `kubectl kustomize`): options such as --enable-helm or --load-restrictor would change or break the render.").unsafe_(),
    cm("kustomize.buildOptions.<version>", R, "", KUSTOMIZE_VERSIONS),
    cm("kustomize.path.<version>", R, "", KUSTOMIZE_VERSIONS),
    cm("kustomize.version.<version>", R, "", KUSTOMIZE_VERSIONS),
    cm("helm.valuesFileSchemes", R, "", "Remote values files are never fetched: valueFiles must be in the source tree or a $ref source (an app naming a URL gets a render error).").when(&[""]),
    cm("configManagementPlugins", M, "flotilla-repo-server --plugin NAME=COMMAND (FLOTILLA_REPO_PLUGINS)", "Each plugin becomes one --plugin whose command runs its init and generate commands in the source directory."),
    cm("repositories", R, "", LEGACY_REPOS).unsafe_(),
    cm("repository.credentials", R, "", LEGACY_REPOS).unsafe_(),
    cm("helm.repositories", R, "", LEGACY_REPOS).unsafe_(),
    // ---- argocd-cm: source hydrator
    cm("commit.author.name", NN, "", NO_HYDRATOR),
    cm("commit.author.email", NN, "", NO_HYDRATOR),
    cm("sourceHydrator.commitMessageTemplate", NN, "", NO_HYDRATOR),
    cm("sourceHydrator.readmeMessageTemplate", NN, "", NO_HYDRATOR),
    // ---- argocd-cm: UI features
    cm("statusbadge.enabled", R, "", "No status badges: badge URLs stop working.").when(&["false"]),
    cm("statusbadge.url", NN, "", "No status badges."),
    cm("exec.enabled", R, "", "No web terminal into pods.").when(&["false"]),
    cm("exec.shells", NN, "", "No web terminal into pods."),
    cm("extension.config", R, "", "No UI extensions or extension proxy."),
    cm("server.maxPodLogsToRender", NN, "", "The UI shows no pod logs."),
    cm("server.rbac.log.enforce.enable", NN, "", "Neither the UI nor the API serves pod logs."),
    cm("project.links", NN, "", NO_UI_FEATURE),
    cm("application.links", NN, "", NO_UI_FEATURE),
    cm("resource.links", NN, "", NO_UI_FEATURE),
    cm("application.allowedNodeLabels", NN, "", NO_UI_FEATURE),
    cm("ga.trackingid", NN, "", "No analytics."),
    cm("ga.anonymizeusers", NN, "", "No analytics."),
    cm("help.chatUrl", NN, "", NO_UI_FEATURE),
    cm("help.chatText", NN, "", NO_UI_FEATURE),
    cm("help.download.<platform>", NN, "", NO_UI_FEATURE),
    cm("ui.cssurl", NN, "", NO_UI_FEATURE),
    cm("ui.bannercontent", NN, "", NO_UI_FEATURE),
    cm("ui.bannerurl", NN, "", NO_UI_FEATURE),
    cm("ui.bannerpermanent", NN, "", NO_UI_FEATURE),
    cm("ui.bannerposition", NN, "", NO_UI_FEATURE),
    cm("ui.loginButtonText", NN, "", NO_UI_FEATURE),
    // ---- argocd-cmd-params-cm: shared
    cp("repo.server", M, "flotilla-controller --repo-server (FLOTILLA_REPO_SERVER)", "A URL: https://host:port (comma-separated for several) or dns:///name:port for every replica behind a headless Service."),
    cp("commit.server", NN, "", COMMIT_SERVER),
    cp("hydrator.enabled", R, "", NO_HYDRATOR).when(&["false"]),
    cp("redis.server", M, "--redis-url of flotilla-controller and flotilla-repo-server (FLOTILLA_REDIS_URL)", "redis://host:port, redis-cluster://… or redis-sentinel://…; without it each process caches in memory."),
    cp("redis.compression", NN, "", "Cache entries are always zstd-compressed."),
    cp("redis.db", NN, "", "Flotilla's keys all start with flotilla:, so they do not collide with Argo CD's in a shared Redis."),
    cp("redis.key.prefix", NN, "", "Flotilla's keys always start with flotilla:."),
    cp("redis.sentinel.hosts", M, "--redis-url redis-sentinel://host:26379?sentinelServiceName=NAME&node=… (FLOTILLA_REDIS_URL)", "The Sentinel nodes go in the URL."),
    cp("redis.sentinel.master", M, "--redis-url redis-sentinel://…?sentinelServiceName=NAME (FLOTILLA_REDIS_URL)", "The master's name goes in the URL."),
    cp("otlp.address", M, "OTEL_EXPORTER_OTLP_ENDPOINT (every binary)", "http(s)://host:4317."),
    cp("otlp.insecure", M, "the scheme of OTEL_EXPORTER_OTLP_ENDPOINT", "http:// is plaintext, https:// is TLS."),
    cp("otlp.headers", M, "OTEL_EXPORTER_OTLP_HEADERS", "key=value pairs, comma-separated."),
    cp("otlp.attrs", M, "OTEL_RESOURCE_ATTRIBUTES", "key=value pairs, comma-separated."),
    cp("otlp.sample.ratio", R, "", "Flotilla does not sample traces: every trace is exported when OTLP export is on."),
    cp("otlp.metrics.enabled", R, "", "Metrics are served on /metrics for Prometheus; there is no OTLP metrics export.").when(&["false"]),
    cp("otlp.metrics.interval", NN, "", "Metrics are scraped from /metrics."),
    cp("application.namespaces", M, "flotilla-controller and flotilla-server --application-namespaces (FLOTILLA_APPLICATION_NAMESPACES)", "Comma-separated globs, on both; an Application outside the control-plane namespace needs a project whose spec.sourceNamespaces lists its namespace, and its RBAC object is <project>/<namespace>/<name>."),
    cp("log.format.timestamp", NN, "", "Logs carry RFC 3339 timestamps (JSON with --log-format json)."),
    // ---- argocd-cmd-params-cm: application controller
    cp("controller.repo.server.timeout.seconds", M, "flotilla-controller --rpc-timeout-seconds (FLOTILLA_RPC_TIMEOUT_SECONDS)", "Deadline of one repo-server call.").conv(Conv::Int),
    cp("controller.repo.server.plaintext", M, "flotilla-controller --repo-server-plaintext (FLOTILLA_REPO_SERVER_PLAINTEXT) with flotilla-repo-server --plaintext", "`true`: gRPC without TLS (loopback tests only).").when(&["false"]),
    cp("controller.repo.server.strict.tls", M, "flotilla-controller --repo-server-ca (FLOTILLA_REPO_SERVER_CA)", "Flotilla always verifies the repo-servers' certificates, against this CA.").when(&["true"]),
    cp("controller.status.processors", M, "flotilla-controller --workers (FLOTILLA_WORKERS)", "One pool of workers does refreshes and operations alike.").conv(Conv::Int),
    cp("controller.operation.processors", M, "flotilla-controller --workers (FLOTILLA_WORKERS)", "One pool of workers does refreshes and operations alike.").conv(Conv::Int),
    cp("controller.log.format", M, "flotilla-controller --log-format (FLOTILLA_LOG_FORMAT)", "text or json."),
    cp("controller.log.level", M, "RUST_LOG", "e.g. info, debug, warn."),
    cp("controller.metrics.cache.expiration", NN, "", "Application metrics are computed from the live state; nothing to expire."),
    cp("controller.self.heal.timeout.seconds", R, "", "Self-heal waits a fixed 5 s after a sync.").when(&["5"]),
    cp("controller.self.heal.backoff.factor", R, "", NO_SELF_HEAL_BACKOFF),
    cp("controller.self.heal.backoff.cap.seconds", R, "", NO_SELF_HEAL_BACKOFF),
    cp("controller.self.heal.backoff.cooldown.seconds", R, "", NO_SELF_HEAL_BACKOFF),
    cp("controller.sync.timeout.seconds", M, "flotilla-controller --sync-timeout-seconds (FLOTILLA_SYNC_TIMEOUT_SECONDS)", "0: never.").conv(Conv::Int),
    cp("controller.sync.wave.delay.seconds", M, "flotilla-controller --sync-wave-delay-ms (FLOTILLA_SYNC_WAVE_DELAY_MS)", "In milliseconds.").conv(Conv::Millis),
    cp("controller.app.state.cache.expiration", NN, "", "No app state cache: the live state comes from per-cluster watches."),
    cp("controller.default.cache.expiration", NN, "", "The controller's caches are bounded in memory (--manifest-cache-entries) and keyed by commit; resolved revisions expire after --revision-cache-seconds."),
    cp("controller.resource.health.persist", NN, "", "Each resource's health is written in status.resources (as Argo CD with `true`); status is written only when it changed."),
    cp("controller.sharding.algorithm", NN, "", "Clusters are shared by a consistent-hash ring over Lease heartbeats (--shard-balance, --shard-epsilon); a cluster Secret's `shard` pins it."),
    cp("controller.kubectl.parallelism.limit", NN, "", "No kubectl: server-side apply over HTTP."),
    cp("controller.k8sclient.retry.max", NN, "", "A failed request fails the reconcile, which the work queue retries with backoff."),
    cp("controller.k8sclient.retry.base.backoff", NN, "", "A failed request fails the reconcile, which the work queue retries with backoff."),
    cp("controller.repo.error.grace.period.seconds", NN, "", "A render error becomes a condition; nothing is pruned or changed meanwhile."),
    cp("controller.diff.server.side", NN, "", "The diff is server-side-apply aware (field ownership from managedFields); the ServerSideDiff compare option is accepted per resource."),
    cp("controller.profile.enabled", NN, "", "No profiling endpoint."),
    cp("controller.cluster.cache.batch.events.processing", NN, "", "Watch events update the per-cluster index as they arrive."),
    cp("controller.cluster.cache.events.processing.interval", NN, "", "Watch events update the per-cluster index as they arrive."),
    cp("controller.ignore.normalizer.jq.timeout", R, "", "jqPathExpressions are evaluated by jaq without a timeout of their own."),
    // ---- argocd-cmd-params-cm: API server
    cp("server.listen.address", M, "flotilla-server --listen (FLOTILLA_SERVER_LISTEN)", "host:port; the API, the UI and /metrics share it."),
    cp("server.metrics.listen.address", M, "flotilla-server --listen (FLOTILLA_SERVER_LISTEN)", "/metrics is served on the --listen address."),
    cp("server.insecure", M, "TLS at the Ingress (the chart's ingress.tls)", SERVER_TLS).when(&["true"]),
    cp("server.basehref", R, "", "The UI is served at /.").when(&["/"]),
    cp("server.rootpath", R, "", "The API and the UI are served at /.").when(&["", "/"]),
    cp("server.staticassets", NN, "", "The UI is embedded in the binary."),
    cp("server.k8sclient.retry.max", NN, "", "Reads come from watch caches; a failed write is reported to the caller."),
    cp("server.k8sclient.retry.base.backoff", NN, "", "Reads come from watch caches; a failed write is reported to the caller."),
    cp("server.api.content.types", NN, "", "The API accepts JSON bodies only."),
    cp("server.webhook.parallelism.limit", NN, "", "Git webhooks go to the controllers (--webhook-listen), not the API server."),
    cp("server.webhook.refresh.workers", NN, "", "Git webhooks go to the controllers (--webhook-listen), not the API server."),
    cp("server.log.format", M, "flotilla-server --log-format (FLOTILLA_LOG_FORMAT)", "text or json."),
    cp("server.log.level", M, "RUST_LOG", "e.g. info, debug, warn."),
    cp("server.repo.server.timeout.seconds", NN, "", NO_REPO_SERVER_CALLS),
    cp("server.repo.server.plaintext", NN, "", NO_REPO_SERVER_CALLS),
    cp("server.repo.server.strict.tls", NN, "", NO_REPO_SERVER_CALLS),
    cp("server.repo.server.ca.cert.path", NN, "", NO_REPO_SERVER_CALLS),
    cp("server.repo.server.client.cert.path", NN, "", NO_REPO_SERVER_CALLS),
    cp("server.repo.server.client.cert.key.path", NN, "", NO_REPO_SERVER_CALLS),
    cp("server.dex.server", NN, "", NO_DEX),
    cp("server.dex.server.plaintext", NN, "", NO_DEX),
    cp("server.dex.server.strict.tls", NN, "", NO_DEX),
    cp("server.disable.auth", R, "", "Authentication cannot be turned off: every API call needs a token.").when(&["false"]),
    cp("server.enable.gzip", NN, "", "Compression belongs to the Ingress."),
    cp("server.x.frame.options", NN, "", "The UI is served with a strict Content-Security-Policy (frame-ancestors 'none')."),
    cp("server.content.security.policy", R, "", "The UI's Content-Security-Policy is fixed (strict)."),
    cp("server.tls.minversion", NN, "", SERVER_TLS),
    cp("server.tls.maxversion", NN, "", SERVER_TLS),
    cp("server.tls.ciphers", NN, "", SERVER_TLS),
    cp("server.tls.curvepreferences", NN, "", SERVER_TLS),
    cp("server.connection.status.cache.expiration", NN, "", "No such cache: lists come from watches."),
    cp("server.oidc.cache.expiration", NN, "", "No such cache: the SSO state lives in an encrypted cookie."),
    cp("server.login.attempts.expiration", NN, "", "Password sign-in is limited to 5 failures per user per 5 minutes."),
    cp("server.app.state.cache.expiration", NN, "", "No such cache: lists come from watches."),
    cp("server.default.cache.expiration", NN, "", "No such cache: lists come from watches."),
    cp("server.enable.proxy.extension", R, "", "No extension proxy.").when(&["false"]),
    cp("server.profile.enabled", NN, "", "No profiling endpoint."),
    cp("server.grpc.enable.txt.service.config", NN, "", "No gRPC API: the API is JSON over HTTP."),
    cp("server.k8s.client.qps", NN, "", "Kubernetes client tuning of Argo CD's server; flotilla-server reads from watch caches."),
    cp("server.k8s.client.burst", NN, "", "Kubernetes client tuning of Argo CD's server; flotilla-server reads from watch caches."),
    cp("server.k8s.client.max.idle.connections", NN, "", "Kubernetes client tuning of Argo CD's server; flotilla-server reads from watch caches."),
    cp("server.k8s.tcp.timeout", NN, "", "Kubernetes client tuning of Argo CD's server; flotilla-server reads from watch caches."),
    cp("server.k8s.tcp.keepalive", NN, "", "Kubernetes client tuning of Argo CD's server; flotilla-server reads from watch caches."),
    cp("server.k8s.tls.handshake.timeout", NN, "", "Kubernetes client tuning of Argo CD's server; flotilla-server reads from watch caches."),
    cp("server.k8s.tcp.idle.timeout", NN, "", "Kubernetes client tuning of Argo CD's server; flotilla-server reads from watch caches."),
    cp("server.disable.swagger.ui", NN, "", "No Swagger UI: the API is described at /api/v1/openapi.json."),
    cp("server.http.cookie.maxnumber", NN, "", "The session is one small cookie."),
    cp("server.glob.cache.size", NN, "", "RBAC answers are memoized per request and project."),
    cp("server.sync.replace.allowed", R, "", "Flotilla honours Replace=true sync options for whoever may sync: it cannot forbid them.").unsafe_().when(&["true"]),
    // ---- argocd-cmd-params-cm: repo-server
    cp("reposerver.listen.address", M, "flotilla-repo-server --listen (FLOTILLA_REPO_LISTEN)", "host:port of the gRPC API."),
    cp("reposerver.metrics.listen.address", M, "flotilla-repo-server --metrics-listen (FLOTILLA_REPO_METRICS_LISTEN)", "host:port of /metrics, /healthz, /readyz."),
    cp("reposerver.log.format", M, "flotilla-repo-server --log-format (FLOTILLA_LOG_FORMAT)", "text or json."),
    cp("reposerver.log.level", M, "RUST_LOG", "e.g. info, debug, warn."),
    cp("reposerver.parallelism.limit", M, "flotilla-repo-server --parallelism (FLOTILLA_REPO_PARALLELISM)", "Renders at once per replica (at least 1; more wait in a fair queue).").conv(Conv::Int),
    cp("reposerver.disable.tls", M, "flotilla-repo-server --plaintext (FLOTILLA_REPO_PLAINTEXT) with the controllers' --repo-server-plaintext", "`true`: gRPC without TLS (loopback tests only).").when(&["false"]),
    cp("reposerver.tls.minversion", NN, "", "rustls: TLS 1.2 and 1.3 with its safe cipher suites only."),
    cp("reposerver.tls.maxversion", NN, "", "rustls: TLS 1.2 and 1.3 with its safe cipher suites only."),
    cp("reposerver.tls.ciphers", NN, "", "rustls: TLS 1.2 and 1.3 with its safe cipher suites only."),
    cp("reposerver.repo.cache.expiration", M, "flotilla-repo-server --cache-ttl-hours (FLOTILLA_CACHE_TTL_HOURS)", "How long renders stay in the shared cache.").conv(Conv::Hours),
    cp("reposerver.default.cache.expiration", M, "flotilla-repo-server --cache-ttl-hours (FLOTILLA_CACHE_TTL_HOURS)", "How long renders stay in the shared cache.").conv(Conv::Hours),
    cp("reposerver.max.combined.directory.manifests.size", NN, "", "Directory renders are bounded by the repo-server itself (file count, render timeout)."),
    cp("reposerver.plugin.tar.exclusions", NN, "", "Plugins run in a private copy of the tree; nothing is streamed."),
    cp("reposerver.plugin.use.manifest.generate.paths", NN, "", "Renders are shared per (commit, source) across apps and replicas."),
    cp("reposerver.allow.oob.symlinks", R, "", "Symlinks leaving the repository are always refused.").when(&["false"]),
    cp("reposerver.streamed.manifest.max.tar.size", NN, "", "No streamed manifests: `flotilla app diff --local` renders in the CLI."),
    cp("reposerver.streamed.manifest.max.extracted.size", NN, "", "No streamed manifests: `flotilla app diff --local` renders in the CLI."),
    cp("reposerver.enable.git.submodule", M, "flotilla-repo-server --git-submodules (FLOTILLA_GIT_SUBMODULES)", "true or false."),
    cp("reposerver.git.lsremote.parallelism.limit", NN, "", "Revision resolution is coalesced per repository and cached."),
    cp("reposerver.git.request.timeout", M, "flotilla-repo-server --fetch-timeout-seconds (FLOTILLA_REPO_FETCH_TIMEOUT_SECONDS)", "Give up on a fetch after this long.").conv(Conv::Seconds),
    cp("reposerver.include.hidden.directories", R, "", "Directory sources skip hidden files and directories: with it on, Argo CD renders objects Flotilla would not.").unsafe_().when(&["false"]),
    cp("reposerver.helm.manifest.max.extracted.size", NN, "", "Chart archives are unpacked within the repo-server's own bounds."),
    cp("reposerver.disable.helm.manifest.max.extracted.size", NN, "", "Chart archives are unpacked within the repo-server's own bounds."),
    cp("reposerver.oci.manifest.max.extracted.size", NN, "", "OCI artifacts are read within the repo-server's own bounds."),
    cp("reposerver.disable.oci.manifest.max.extracted.size", NN, "", "OCI artifacts are read within the repo-server's own bounds."),
    cp("reposerver.oci.layer.media.types", R, "", "OCI registries serve Helm charts only (no plain-manifest OCI sources)."),
    cp("reposerver.revision.cache.lock.timeout", NN, "", "Revision resolution is coalesced in-process."),
    cp("reposerver.grpc.max.size", NN, "", "The repo-server sets its own gRPC message bounds."),
    // ---- argocd-cmd-params-cm: components Flotilla does not replace
    cp("commitserver.listen.address", NN, "", COMMIT_SERVER),
    cp("commitserver.log.format", NN, "", COMMIT_SERVER),
    cp("commitserver.log.level", NN, "", COMMIT_SERVER),
    cp("commitserver.metrics.listen.address", NN, "", COMMIT_SERVER),
    cp("dexserver.log.format", NN, "", NO_DEX),
    cp("dexserver.log.level", NN, "", NO_DEX),
    cp("dexserver.disable.tls", NN, "", NO_DEX),
    cp("applicationsetcontroller.enable.leader.election", NN, CONTROLLER, "ApplicationSets are keys on the controllers' Lease ring: every replica takes a share, no leader."),
    cp("applicationsetcontroller.policy", R, "", "A global applicationsSync policy: Flotilla follows each set's own syncPolicy.applicationsSync (default sync), so it would update and delete what this policy forbids.").unsafe_().when(&["sync"]),
    cp("applicationsetcontroller.enable.policy.override", R, "", "Sets always choose their own syncPolicy.applicationsSync in Flotilla.").unsafe_().when(&["true"]),
    cp("applicationsetcontroller.concurrent.reconciliations.max", NN, CONTROLLER, "Each replica reconciles its own share of the sets."),
    cp("applicationsetcontroller.enable.new.git.file.globbing", R, "", "Git files generators match with git ls-files semantics only: doublestar globs would select other files.").unsafe_().when(&["false"]),
    cp("applicationsetcontroller.debug", NN, CONTROLLER, "The controller's log level applies (RUST_LOG)."),
    cp("applicationsetcontroller.log.format", NN, CONTROLLER, "The controller's --log-format applies."),
    cp("applicationsetcontroller.log.level", NN, CONTROLLER, "The controller's log level applies (RUST_LOG)."),
    cp("applicationsetcontroller.dryrun", R, "", "No dry-run mode: Flotilla would write the Applications.").unsafe_().when(&["false"]),
    cp("applicationsetcontroller.enable.git.submodule", R, "", "Git generators list a commit's own tree: submodule contents are not listed.").when(&["false"]),
    cp("applicationsetcontroller.enable.progressive.syncs", NN, CONTROLLER, "RollingSync is always available: a set's strategy is honoured."),
    cp("applicationsetcontroller.namespaces", R, "", "ApplicationSets are reconciled in the control-plane namespace only: sets elsewhere would generate nothing.").when(&[""]),
    cp("applicationsetcontroller.scm.root.ca.path", R, "", "SCM provider APIs are verified against the system CAs only.").when(&[""]),
    cp("applicationsetcontroller.allowed.scm.providers", M, "flotilla-controller --allowed-scm-providers (FLOTILLA_ALLOWED_SCM_PROVIDERS)", "The same comma-separated list of SCM API URLs a generator's `api` must be one of; the public github.com and gitlab.com APIs stay allowed, as in Argo CD.").when(&[""]),
    cp("applicationsetcontroller.enable.scm.providers", M, "flotilla-controller --no-scm-providers (FLOTILLA_NO_SCM_PROVIDERS)", "`false`: set --no-scm-providers (the scmProvider and pullRequest generators are then refused).").when(&["true"]),
    cp("applicationsetcontroller.webhook.parallelism.limit", NN, "", "Flotilla has no ApplicationSet webhook (sets regenerate at their generators' requeue)."),
    cp("applicationsetcontroller.requeue.after", R, "", "Sets without a generator requeue of their own regenerate every 180 s (Argo CD's default).").when(&["3m", "180s", "3m0s"]),
    cp("applicationsetcontroller.enable.tokenref.strict.mode", NN, CONTROLLER, "Strict mode is always on: tokenRef Secrets must be labelled argocd.argoproj.io/secret-type: scm-creds."),
    cp("applicationsetcontroller.enable.github.api.metrics", NN, "", "No GitHub API metrics."),
    cp("notificationscontroller.log.level", NN, "", NOTIFICATIONS),
    cp("notificationscontroller.log.format", NN, "", NOTIFICATIONS),
    cp("notificationscontroller.selfservice.enabled", NN, "", NOTIFICATIONS),
    cp("notificationscontroller.repo.server.plaintext", NN, "", NOTIFICATIONS),
    // ---- argocd-rbac-cm (flotilla-server, rbac.rs)
    rb("policy.csv", H, SERVER, "Argo CD's casbin model on top of role:readonly and role:admin, globs, deny wins. A line that does not parse makes flotilla-server refuse the whole ConfigMap (the previous policy stays; on a fresh start only the built-in roles apply)."),
    rb("policy.default", H, SERVER, "The role every authenticated caller (and anonymous, when enabled) has."),
    rb("scopes", H, SERVER, "The ID-token claims that name groups: a YAML list; anything else is read as [groups]."),
    rb("policy.matchMode", R, "", "Patterns are matched as globs only: regex patterns would grant or deny differently.").unsafe_().when(&["glob"]),
    rb("policy.<name>.csv", H, SERVER, "Overlays: appended to policy.csv in key order, as Argo CD does (a line that does not parse refuses the whole ConfigMap, as in policy.csv)."),
];

/// Treatment of a key the table does not list, by its source and prefix.
pub fn unknown(source: Source, key: &str) -> KeyDoc {
    const UNKNOWN: &str = "Not a key Argo CD documents or Flotilla reads: what it would change cannot be judged (a typo, or a newer Argo CD setting).";
    let prefix = |p: &str| key.starts_with(p);
    let detail = match source {
        Source::CmdParams if prefix("notificationscontroller.") => Some(NOTIFICATIONS),
        Source::CmdParams if prefix("commitserver.") => Some(COMMIT_SERVER),
        Source::CmdParams if prefix("dexserver.") => Some(NO_DEX),
        _ => None,
    };
    match detail {
        Some(d) => KeyDoc::new(source, "", NN, "", d),
        None => KeyDoc::new(source, "", R, "", UNKNOWN).unsafe_(),
    }
}

/// Whether `key` matches `pattern`, and how specific the match is (literal characters).
/// `<name>` and `<platform>` stand for one dot-free part; any other `<…>` for one or more
/// characters.
fn matches(pattern: &str, key: &str) -> Option<usize> {
    let Some(open) = pattern.find('<') else {
        return (pattern == key).then_some(usize::MAX);
    };
    let close = pattern[open..].find('>')? + open;
    let (head, hole, tail) = (
        &pattern[..open],
        &pattern[open + 1..close],
        &pattern[close + 1..],
    );
    let middle = key.strip_prefix(head)?.strip_suffix(tail)?;
    if middle.is_empty() || key.len() < head.len() + tail.len() {
        return None;
    }
    if matches!(hole, "name" | "platform") && middle.contains('.') {
        return None;
    }
    Some(head.len() + tail.len())
}

/// The table's entry for `key` of `source`: an exact key first, else the most specific family.
pub fn lookup(source: Source, key: &str) -> Option<&'static KeyDoc> {
    KEYS.iter()
        .filter(|k| k.source == source)
        .filter_map(|k| matches(k.key, key).map(|score| (score, k)))
        .max_by_key(|(score, _)| *score)
        .map(|(_, k)| k)
}

/// A Go duration (`180s`, `3m`, `1h0m0s`, `1.5h`, `500ms`) or plain seconds, in seconds.
pub fn duration_seconds(text: &str) -> Option<f64> {
    let t = text.trim();
    if t.is_empty() {
        return None;
    }
    if let Ok(n) = t.parse::<f64>() {
        return Some(n);
    }
    let mut total = 0.0;
    let mut rest = t;
    while !rest.is_empty() {
        let num_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let n: f64 = rest[..num_end].parse().ok()?;
        rest = &rest[num_end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_end] {
            "h" => 3600.0,
            "m" => 60.0,
            "s" => 1.0,
            "ms" => 0.001,
            "us" | "µs" => 0.000_001,
            "ns" => 0.000_000_001,
            _ => return None,
        };
        total += n * scale;
        rest = &rest[unit_end..];
    }
    Some(total)
}

/// `value` converted for the Flotilla flag, if the key says how and the value reads.
pub fn convert(conv: Conv, value: &str) -> Option<String> {
    let v = value.trim();
    match conv {
        Conv::None => None,
        Conv::Int => v.parse::<i64>().ok().map(|n| n.to_string()),
        Conv::Seconds => duration_seconds(v).map(|s| format!("{}", s.ceil() as i64)),
        Conv::Millis => duration_seconds(v).map(|s| format!("{}", (s * 1000.0).round() as i64)),
        Conv::Hours => duration_seconds(v).map(|s| format!("{}", (s / 3600.0).ceil() as i64)),
    }
}

/// Marks around the generated part of `docs/argocd-config-keys.md`.
#[cfg(test)]
pub const DOC_BEGIN: &str = "<!-- BEGIN GENERATED: flotilla admin import --list-keys -->";
#[cfg(test)]
pub const DOC_END: &str = "<!-- END GENERATED -->";

#[cfg(test)]
fn md_cell(s: &str) -> String {
    s.replace('|', "\\|")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The generated part of `docs/argocd-config-keys.md`: one table per ConfigMap.
#[cfg(test)]
pub fn markdown() -> String {
    let mut out = String::new();
    out.push_str(DOC_BEGIN);
    out.push('\n');
    for source in Source::ALL {
        let rows: Vec<&KeyDoc> = KEYS.iter().filter(|k| k.source == source).collect();
        out.push_str(&format!(
            "\n### `{}` ({} keys)\n\n",
            source.name(),
            rows.len()
        ));
        out.push_str("| Key | Treatment | Flotilla equivalent | Why |\n");
        out.push_str("|---|---|---|---|\n");
        for k in rows {
            out.push_str(&format!(
                "| `{}` | {} | {} | {} |\n",
                k.key.replace('|', "\\|"),
                md_cell(&k.treatment_text()),
                md_cell(k.flotilla),
                md_cell(k.detail)
            ));
        }
    }
    let count = |t: Treatment| KEYS.iter().filter(|k| k.treatment == t).count();
    out.push_str(&format!(
        "\n{} keys: {} honoured, {} mapped, {} not needed, {} refused ({} of them unsafe).\n\n",
        KEYS.len(),
        count(Treatment::Honoured),
        count(Treatment::Mapped),
        count(Treatment::NotNeeded),
        count(Treatment::Refused),
        KEYS.iter().filter(|k| k.is_unsafe).count()
    ));
    out.push_str(DOC_END);
    out.push('\n');
    out
}

/// The part of `doc` between the generated marks (inclusive), if both are there.
#[cfg(test)]
pub fn generated_part(doc: &str) -> Option<&str> {
    let start = doc.find(DOC_BEGIN)?;
    let end = doc[start..].find(DOC_END)? + start + DOC_END.len();
    let end = if doc[end..].starts_with('\n') {
        end + 1
    } else {
        end
    };
    Some(&doc[start..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_unique_and_well_formed() {
        let mut seen = std::collections::BTreeSet::new();
        for k in KEYS {
            assert!(seen.insert((k.source, k.key)), "{} listed twice", k.key);
            assert!(!k.detail.is_empty(), "{} has no reason", k.key);
            if k.treatment == Treatment::Mapped {
                assert!(!k.flotilla.is_empty(), "{} is mapped to nothing", k.key);
            }
            if k.is_unsafe {
                assert_eq!(k.treatment, Treatment::Refused, "{}", k.key);
            }
            // Every family resolves to itself.
            let example = k
                .key
                .replace("<group_kind>", "apps_Deployment")
                .replace("<version>", "v3.9.1");
            let example = example
                .replace("<name>", "alice")
                .replace("<platform>", "linux-amd64");
            assert_eq!(
                lookup(k.source, &example).map(|e| e.key),
                Some(k.key),
                "{example}"
            );
        }
    }

    #[test]
    fn families_pick_the_most_specific_entry() {
        assert_eq!(
            lookup(Source::ArgocdCm, "accounts.alice").map(|k| k.key),
            Some("accounts.<name>")
        );
        assert_eq!(
            lookup(Source::ArgocdCm, "accounts.alice.enabled").map(|k| k.key),
            Some("accounts.<name>.enabled")
        );
        assert_eq!(
            lookup(Source::ArgocdCm, "accounts.alice.password").map(|k| k.key),
            None,
            "a dotted account name is no account (flotilla-server skips it)"
        );
        assert_eq!(
            lookup(
                Source::ArgocdCm,
                "resource.customizations.ignoreDifferences.admissionregistration.k8s.io_MutatingWebhookConfiguration"
            )
            .map(|k| k.key),
            Some("resource.customizations.ignoreDifferences.<group_kind>")
        );
        assert_eq!(
            lookup(Source::ArgocdCm, "resource.customizations").map(|k| k.key),
            Some("resource.customizations")
        );
        assert_eq!(
            lookup(Source::RbacCm, "policy.overlay.csv").map(|k| k.key),
            Some("policy.<name>.csv")
        );
        assert_eq!(
            lookup(Source::RbacCm, "policy.csv").map(|k| k.key),
            Some("policy.csv")
        );
        assert!(lookup(Source::ArgocdCm, "timeout.reconciliation.jitterx").is_none());
        assert!(lookup(Source::CmdParams, "url").is_none(), "sources apart");
    }

    #[test]
    fn unknown_keys_are_refused_unless_they_configure_components_flotilla_lacks() {
        let u = unknown(Source::ArgocdCm, "frobnicate");
        assert!(u.treatment == Treatment::Refused && u.is_unsafe);
        let a = unknown(Source::CmdParams, "notificationscontroller.some.new.flag");
        assert!(a.treatment == Treatment::NotNeeded && !a.is_unsafe);
        let s = unknown(Source::CmdParams, "applicationsetcontroller.some.new.flag");
        assert!(
            s.treatment == Treatment::Refused && s.is_unsafe,
            "Flotilla runs ApplicationSets itself: an unknown setting of theirs is unsafe"
        );
        let c = unknown(Source::CmdParams, "controller.some.new.flag");
        assert!(c.treatment == Treatment::Refused && c.is_unsafe);
    }

    #[test]
    fn values_flotilla_does_anyway_are_honoured() {
        let k = lookup(Source::ArgocdCm, "application.sync.impersonation.enabled").expect("k");
        assert!(k.honoured_by_value(" false ") && k.honoured_by_value("FALSE"));
        assert!(!k.honoured_by_value("true"));
        let k = lookup(Source::ArgocdCm, "helm.valuesFileSchemes").expect("k");
        assert!(k.honoured_by_value("") && !k.honoured_by_value("http, https"));
        assert_eq!(
            k.treatment_text(),
            "refused; honoured when empty",
            "the doc says so"
        );
    }

    #[test]
    fn durations_and_conversions() {
        assert_eq!(duration_seconds("180s"), Some(180.0));
        assert_eq!(duration_seconds("3m"), Some(180.0));
        assert_eq!(duration_seconds("1h0m0s"), Some(3600.0));
        assert_eq!(duration_seconds("1h30m"), Some(5400.0));
        assert_eq!(duration_seconds("90"), Some(90.0));
        assert_eq!(duration_seconds("500ms"), Some(0.5));
        assert_eq!(duration_seconds("soon"), None);
        assert_eq!(duration_seconds("3 minutes"), None);
        assert_eq!(convert(Conv::Seconds, "2m"), Some("120".into()));
        assert_eq!(convert(Conv::Millis, "2"), Some("2000".into()));
        assert_eq!(convert(Conv::Hours, "24h0m0s"), Some("24".into()));
        assert_eq!(convert(Conv::Hours, "90m"), Some("2".into()));
        assert_eq!(convert(Conv::Int, "20"), Some("20".into()));
        assert_eq!(convert(Conv::Int, "lots"), None);
        assert_eq!(convert(Conv::None, "20"), None);
    }

    /// `docs/argocd-config-keys.md` is this table: regenerate it with
    /// `FLOTILLA_BLESS=1 cargo test -p flotilla-cli keys::` when the table changes.
    #[test]
    fn the_doc_is_generated_from_this_table() {
        let path =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/argocd-config-keys.md");
        let doc = std::fs::read_to_string(&path).expect("docs/argocd-config-keys.md");
        let want = markdown();
        let have = generated_part(&doc).expect("the doc has the generated marks");
        if have != want && std::env::var_os("FLOTILLA_BLESS").is_some() {
            std::fs::write(&path, doc.replacen(have, &want, 1)).expect("writing the doc");
            return;
        }
        assert!(
            have == want,
            "docs/argocd-config-keys.md disagrees with cli/src/admin/keys.rs: run \
             FLOTILLA_BLESS=1 cargo test -p flotilla-cli keys:: and review the diff"
        );
    }
}
