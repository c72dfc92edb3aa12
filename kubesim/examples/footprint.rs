//! Kubesim's memory per stored object, measured the way the 50k load test fills it: Applications
//! with an Argo-CD-like status on the control plane, SSA'd Deployments and ConfigMaps per target.
//!
//! `cargo run --release -p kubesim --example footprint -- [--apps N] [--clusters C]
//! [--status-writes K] [--history H]`. Defaults: 10,000 apps on 100 clusters (the load test's
//! 100 apps per cluster), 5 status writes per app, history = apps (50,000 at 50k, as the load
//! test starts kubesim). Bytes come from jemalloc's counters; the breakdown from
//! `Store::footprint`.

use std::sync::Arc;
use std::time::Instant;

use kubesim::fields::Scope;
use kubesim::footprint::Footprint;
use kubesim::resources::ResourceType;
use kubesim::store::{PatchKind, Store, WriteCtx};
use serde_json::{Value, json};

#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// What one run loads.
struct Args {
    apps: usize,
    clusters: usize,
    status_writes: usize,
    history: usize,
}

fn parse_args() -> Result<Args, String> {
    let mut apps = 10_000;
    let mut clusters = None;
    let mut status_writes = 5;
    let mut history = None;
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || -> Result<usize, String> {
            it.next()
                .ok_or_else(|| format!("{flag} needs a value"))?
                .parse()
                .map_err(|e| format!("{flag}: {e}"))
        };
        match flag.as_str() {
            "--apps" => apps = value()?,
            "--clusters" => clusters = Some(value()?),
            "--status-writes" => status_writes = value()?,
            "--history" => history = Some(value()?),
            other => return Err(format!("unknown flag {other}")),
        }
    }
    Ok(Args {
        apps,
        clusters: clusters.unwrap_or((apps / 100).max(1)),
        status_writes,
        history: history.unwrap_or(apps.max(16)),
    })
}

/// jemalloc's bytes allocated and resident, after refreshing its counters.
fn jemalloc() -> (usize, usize) {
    use tikv_jemalloc_ctl::{epoch, stats};
    let _ = epoch::advance();
    (
        stats::allocated::read().unwrap_or(0),
        stats::resident::read().unwrap_or(0),
    )
}

fn ctx(manager: &str) -> WriteCtx {
    WriteCtx {
        manager: manager.into(),
        dry_run: false,
        field_validation: Default::default(),
        warnings: Default::default(),
    }
}

fn rt(store: &Store, group: &str, version: &str, plural: &str) -> Arc<ResourceType> {
    store
        .lookup(group, version, plural)
        .unwrap_or_else(|| panic!("{plural} is served"))
}

fn apply(store: &Store, rt: &Arc<ResourceType>, ns: &str, name: &str, body: &Value, m: &str) {
    let bytes = serde_json::to_vec(body).expect("json");
    store
        .patch(
            rt,
            ns,
            name,
            PatchKind::Apply { force: true },
            &bytes,
            Scope::Main,
            &ctx(m),
        )
        .unwrap_or_else(|e| panic!("apply {name}: {e:?}"));
}

fn namespace(store: &Store, name: &str) {
    let ns = rt(store, "", "v1", "namespaces");
    let _ = store.create(
        &ns,
        "",
        json!({"metadata": {"name": name}}),
        &ctx("kubesim"),
    );
}

fn app_name(i: usize) -> String {
    format!("app-{i:05}")
}

fn team(i: usize) -> String {
    format!("team-{:02}", i % 32)
}

fn revision(i: usize, step: usize) -> String {
    format!(
        "{:040x}",
        (i as u128 + 1) * 0x9e37_79b9_7f4a_7c15 + step as u128
    )
}

/// The Application CRD the chart ships (what `--print-crds` prints).
fn application_crd() -> Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../charts/flotilla/files/crds.yaml"
    );
    let text = std::fs::read_to_string(path).expect("charts/flotilla/files/crds.yaml");
    let doc = text.split("\n---").next().expect("first document");
    serde_yaml::from_str(doc).expect("CRD yaml")
}

/// The Application as the harness applies it.
fn application(i: usize) -> Value {
    json!({"apiVersion": "argoproj.io/v1alpha1", "kind": "Application",
        "metadata": {"name": app_name(i), "namespace": "argocd",
            "annotations": {"argocd.argoproj.io/manifest-generate-paths": "."}},
        "spec": {"project": "default",
            "source": {"repoURL": format!("git://127.0.0.1:9418/apps-{:02}.git", i % 10),
                       "targetRevision": "main", "path": format!("apps/{}", app_name(i))},
            "destination": {"name": format!("cluster-{:03}", i % 100 + 1), "namespace": team(i)},
            "syncPolicy": {"automated": {"prune": true, "selfHeal": true},
                           "syncOptions": ["CreateNamespace=true"]}}})
}

/// Status write number `step` of application `i`: the way an Argo-CD-like controller moves an
/// app from Unknown through a sync to Synced+Healthy, then refreshes.
fn app_status(i: usize, step: usize) -> Value {
    let name = app_name(i);
    let ns = team(i);
    let rev = revision(i, 0);
    let t = |s: usize| {
        format!(
            "2025-01-01T00:{:02}:{:02}Z",
            (i / 60 + s) % 60,
            (i + s) % 60
        )
    };
    let synced = step >= 2;
    let health = match step {
        0 => "Missing",
        1 | 2 => "Progressing",
        _ => "Healthy",
    };
    let resource = |group: &str, version: &str, kind: &str, n: &str| {
        json!({"group": group, "version": version, "kind": kind, "namespace": ns, "name": n,
               "status": if synced { "Synced" } else { "OutOfSync" },
               "health": {"status": if kind == "Deployment" { health } else { "Healthy" }}})
    };
    let result = |group: &str, version: &str, kind: &str, n: &str| {
        json!({"group": group, "version": version, "kind": kind, "namespace": ns, "name": n,
               "status": "Synced", "message": format!("{} serverside-applied", kind.to_lowercase()),
               "hookPhase": "Running", "syncPhase": "Sync"})
    };
    let source = json!({"repoURL": format!("git://127.0.0.1:9418/apps-{:02}.git", i % 10),
                        "targetRevision": "main", "path": format!("apps/{name}")});
    let mut st = json!({
        "sync": {"status": if synced { "Synced" } else { "OutOfSync" }, "revision": rev},
        "health": {"status": health},
        "sourceType": "Directory",
        "reconciledAt": t(step),
        "resources": [
            resource("", "v1", "ConfigMap", &name),
            resource("apps", "v1", "Deployment", &name),
            resource("", "v1", "ConfigMap", &format!("{name}-2")),
        ],
    });
    if step >= 1 {
        st["operationState"] = json!({
            "operation": {"sync": {"revision": rev, "syncStrategy": {"hook": {}},
                                   "syncOptions": ["CreateNamespace=true"]},
                          "initiatedBy": {"automated": true}, "retry": {"limit": 5}},
            "phase": if synced { "Succeeded" } else { "Running" },
            "message": if synced { "successfully synced (all tasks run)" } else { "one or more tasks are running" },
            "startedAt": t(1),
            "syncResult": {"revision": rev, "source": source,
                "resources": [
                    result("", "v1", "ConfigMap", &name),
                    result("apps", "v1", "Deployment", &name),
                    result("", "v1", "ConfigMap", &format!("{name}-2")),
                ]},
        });
        if synced {
            st["operationState"]["finishedAt"] = json!(t(2));
        }
    }
    if synced {
        st["history"] = json!([{"id": 0, "revision": rev, "source": source,
            "deployStartedAt": t(1), "deployedAt": t(2), "initiatedBy": {"automated": true}}]);
    }
    st
}

/// The objects one app renders, as the controller applies them (tracking label + annotation).
fn rendered(i: usize) -> Vec<(Arc<str>, Value)> {
    let name = app_name(i);
    let ns = team(i);
    let track = |group: &str, kind: &str, n: &str| json!({"flotilla.dev/tracking-id": format!("argocd/{name}:{group}/{kind}:{ns}/{n}")});
    let labels = json!({"flotilla.dev/app": name});
    vec![
        (
            "configmaps".into(),
            json!({"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": name, "namespace": ns, "labels": labels,
                             "annotations": track("", "ConfigMap", &name)},
                "data": {"version": "1"}}),
        ),
        (
            "deployments".into(),
            json!({"apiVersion": "apps/v1", "kind": "Deployment",
                "metadata": {"name": name, "namespace": ns, "labels": labels,
                             "annotations": track("apps", "Deployment", &name)},
                "spec": {"replicas": 1, "selector": {"matchLabels": {"app": name}},
                    "template": {"metadata": {"labels": {"app": name}},
                        "spec": {"containers": [{"name": "web", "image": "registry.example/web:1.0",
                                                 "ports": [{"containerPort": 8080}]}]}}}}),
        ),
        (
            "configmaps".into(),
            json!({"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": format!("{name}-2"), "namespace": ns, "labels": labels,
                             "annotations": track("", "ConfigMap", &format!("{name}-2"))},
                "data": {"key": "value-2"}}),
        ),
    ]
}

/// The status kube-controller-manager writes once the Deployment's pod is ready.
fn ready(obj: &Value) -> Option<Value> {
    let now = "2025-01-01T00:00:05Z";
    let cond = |t: &str, reason: &str, message: String| {
        json!({"type": t, "status": "True", "reason": reason, "message": message,
               "lastTransitionTime": now, "lastUpdateTime": now})
    };
    let name = obj.pointer("/metadata/name")?.as_str()?;
    Some(
        json!({"observedGeneration": 1, "replicas": 1, "updatedReplicas": 1,
        "readyReplicas": 1, "availableReplicas": 1,
        "conditions": [
            cond("Available", "MinimumReplicasAvailable", "Deployment has minimum availability.".into()),
            cond("Progressing", "NewReplicaSetAvailable",
                 format!("ReplicaSet \"{name}-5d8f7c9b6\" has successfully progressed.")),
        ]}),
    )
}

fn load_control_plane(store: &Store, args: &Args) {
    namespace(store, "argocd");
    let crds = rt(
        store,
        "apiextensions.k8s.io",
        "v1",
        "customresourcedefinitions",
    );
    store
        .create(&crds, "", application_crd(), &ctx("flotilla-installer"))
        .expect("Application CRD");
    let apps = rt(store, "argoproj.io", "v1alpha1", "applications");
    for i in 0..args.apps {
        apply(
            store,
            &apps,
            "argocd",
            &app_name(i),
            &application(i),
            "flotilla-loadtest",
        );
    }
    // Status writes arrive in waves over the whole fleet, as reconciles do.
    for step in 0..args.status_writes {
        for i in 0..args.apps {
            let patch = json!({"status": app_status(i, step)});
            store
                .patch(
                    &apps,
                    "argocd",
                    &app_name(i),
                    PatchKind::Merge,
                    patch.to_string().as_bytes(),
                    Scope::Status,
                    &ctx("flotilla-controller"),
                )
                .expect("status write");
        }
    }
}

fn load_target(store: &Store, args: &Args, cluster: usize) {
    for t in 0..32 {
        namespace(store, &team(t));
    }
    let deployments = rt(store, "apps", "v1", "deployments");
    let configmaps = rt(store, "", "v1", "configmaps");
    for i in (0..args.apps).filter(|i| i % args.clusters == cluster) {
        for (plural, obj) in rendered(i) {
            let rt = if &*plural == "deployments" {
                &deployments
            } else {
                &configmaps
            };
            let name = obj["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            apply(store, rt, &team(i), &name, &obj, "flotilla-controller");
        }
        let key = (team(i), app_name(i));
        store.write_status(&deployments.group_resource(), &key, ready);
    }
}

/// What the controllers' watches do to every event: serialize it (the JSON is cached on the
/// event, shared by all watchers, for as long as the history holds it).
fn watch_everything(store: &Store, history: usize) {
    let from = store
        .resource_version()
        .saturating_sub(history as u64)
        .max(kubesim::store::INITIAL_RV);
    let kinds = [
        ("argoproj.io", "v1alpha1", "applications"),
        ("apps", "v1", "deployments"),
        ("", "v1", "configmaps"),
        ("", "v1", "namespaces"),
    ];
    for gr in kinds
        .iter()
        .filter_map(|(g, v, p)| store.lookup(g, v, p))
        .map(|rt| rt.group_resource())
    {
        if let Ok(start) = store.watch_start(&gr, None, Some(from)) {
            for ev in &start.backlog {
                std::hint::black_box(ev.object_json());
            }
        }
    }
}

fn mib(b: usize) -> String {
    format!("{:.1} MiB", b as f64 / (1024.0 * 1024.0))
}

fn per(b: usize, n: usize) -> String {
    format!("{:>7.0} B/object", b as f64 / n.max(1) as f64)
}

fn print_breakdown(label: &str, f: &Footprint, objects: usize) {
    println!(
        "  {label} ({objects} objects, {} history events)",
        f.history_events
    );
    for (name, bytes) in f.parts() {
        println!("    {name:<28} {:>11} {}", mib(bytes), per(bytes, objects));
    }
    println!(
        "    {:<28} {:>11} {}",
        "= estimated total",
        mib(f.total()),
        per(f.total(), objects)
    );
}

fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("footprint: {e}");
            std::process::exit(2);
        }
    };
    println!(
        "loading {} apps, {} target clusters, {} status writes per app, history {} events per cluster",
        args.apps, args.clusters, args.status_writes, args.history
    );
    let started = Instant::now();
    let (before_empty, _) = jemalloc();
    let empty: Vec<Store> = (0..10).map(|_| Store::new(args.history, 4096)).collect();
    let (after_empty, _) = jemalloc();
    let per_store = (after_empty - before_empty) / empty.len();
    drop(empty);
    let (base, _) = jemalloc();
    let control = Store::new(args.history, 4096);
    load_control_plane(&control, &args);
    watch_everything(&control, args.history);
    let (after_cp, _) = jemalloc();
    let targets: Vec<Store> = (0..args.clusters)
        .map(|c| {
            let s = Store::new(args.history, 4096);
            load_target(&s, &args, c);
            watch_everything(&s, args.history);
            s
        })
        .collect();
    let (after_all, resident) = jemalloc();
    let cp_objects = control.object_count();
    let target_objects: usize = targets.iter().map(Store::object_count).sum();
    let objects = cp_objects + target_objects;
    let cp_bytes = after_cp - base;
    let target_bytes = after_all - after_cp;
    let total = after_all - base;
    println!("loaded in {:.1}s", started.elapsed().as_secs_f64());
    println!("jemalloc allocated (ground truth, everything the stores hold):");
    println!(
        "  control plane   {:>11} {} ({cp_objects} objects)",
        mib(cp_bytes),
        per(cp_bytes, cp_objects)
    );
    println!(
        "  target clusters {:>11} {} ({target_objects} objects)",
        mib(target_bytes),
        per(target_bytes, target_objects)
    );
    println!(
        "  all             {:>11} {} ({objects} objects); resident {}",
        mib(total),
        per(total, objects),
        mib(resident)
    );
    println!(
        "  an empty store (registry, watch channel): {:.1} KiB each",
        per_store as f64 / 1024.0
    );
    println!("breakdown (Store::footprint estimates):");
    print_breakdown("control plane", &control.footprint(), cp_objects);
    let mut t = Footprint::default();
    for s in &targets {
        t.add(&s.footprint());
    }
    print_breakdown("target clusters", &t, target_objects);
    let mut all = control.footprint();
    all.add(&t);
    print_breakdown("all", &all, objects);
    println!(
        "current objects only: {} (estimated, objects + managedFields + keys + indexes)",
        per(all.current(), objects)
    );
}
