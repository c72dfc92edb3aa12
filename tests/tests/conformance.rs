//! Kubernetes API conformance: every API-server behaviour the controller relies on, written
//! against "a Kubernetes API server" through the `kube` client. Runs against kubesim by default
//! and against a real cluster when `FLOTILLA_TEST_KUBECONFIG` names a kubeconfig.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, ensure};
use flotilla_tests::{Target, api_status, eventually};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{
    DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams, WatchEvent,
    WatchParams,
};
use kube::core::{ApiResource, GroupVersionKind};
use kube::discovery::{Discovery, Scope};
use kube::{Api, Client, ResourceExt};
use serde_json::{Value, json};

fn mk_cm(name: &str, labels: &[(&str, &str)], data: &[(&str, &str)]) -> ConfigMap {
    let labels: BTreeMap<String, String> = labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let data: BTreeMap<String, String> = data
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    serde_json::from_value(json!({"metadata": {"name": name, "labels": labels}, "data": data}))
        .expect("valid configmap")
}

fn mk_deploy(name: &str, replicas: i32, image: &str) -> Value {
    json!({"apiVersion": "apps/v1", "kind": "Deployment",
           "metadata": {"name": name, "labels": {"app": name}},
           "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                    "template": {"metadata": {"labels": {"app": name}},
                                 "spec": {"containers": [{"name": "main", "image": image,
                                     "ports": [{"containerPort": 80}],
                                     "env": [{"name": "A", "value": "1"}]}]}}}})
}

/// The resourceVersion of a fresh list, where a watch starts.
async fn list_rv(api: &Api<ConfigMap>) -> Result<String> {
    api.list(&ListParams::default())
        .await?
        .metadata
        .resource_version
        .context("list resourceVersion")
}

fn status_of(e: &kube::Error) -> Result<(u16, String, String)> {
    let s = api_status(e).ok_or_else(|| anyhow!("not an API status error: {e}"))?;
    Ok((s.code, s.reason.clone(), s.message.clone()))
}

async fn raw(
    client: &Client,
    method: &str,
    path: &str,
    content_type: &str,
    body: &[u8],
) -> Result<std::result::Result<Value, kube::Error>> {
    let req = http::Request::builder()
        .method(method)
        .uri(path)
        .header("Content-Type", content_type)
        .body(body.to_vec())?;
    Ok(client.request::<Value>(req).await)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovery_serves_builtin_kinds_with_correct_scope() -> Result<()> {
    let t = Target::new().await?;
    let version = t.client.apiserver_version().await?;
    ensure!(version.major == "1", "version {version:?}");
    let discovery = Discovery::new(t.client.clone()).run().await?;
    let expect = [
        ("", "v1", "Namespace", false),
        ("", "v1", "ConfigMap", true),
        ("", "v1", "Secret", true),
        ("", "v1", "Service", true),
        ("", "v1", "ServiceAccount", true),
        ("", "v1", "Pod", true),
        ("", "v1", "PersistentVolumeClaim", true),
        ("", "v1", "Event", true),
        ("apps", "v1", "Deployment", true),
        ("apps", "v1", "StatefulSet", true),
        ("apps", "v1", "DaemonSet", true),
        ("apps", "v1", "ReplicaSet", true),
        ("batch", "v1", "Job", true),
        ("batch", "v1", "CronJob", true),
        ("networking.k8s.io", "v1", "Ingress", true),
        ("autoscaling", "v2", "HorizontalPodAutoscaler", true),
        ("rbac.authorization.k8s.io", "v1", "Role", true),
        ("rbac.authorization.k8s.io", "v1", "RoleBinding", true),
        ("rbac.authorization.k8s.io", "v1", "ClusterRole", false),
        (
            "rbac.authorization.k8s.io",
            "v1",
            "ClusterRoleBinding",
            false,
        ),
        ("coordination.k8s.io", "v1", "Lease", true),
        (
            "apiextensions.k8s.io",
            "v1",
            "CustomResourceDefinition",
            false,
        ),
    ];
    for (g, v, k, namespaced) in expect {
        let gvk = GroupVersionKind::gvk(g, v, k);
        let (_, caps) = discovery
            .resolve_gvk(&gvk)
            .ok_or_else(|| anyhow!("{g}/{v} {k} not discovered"))?;
        let want = if namespaced {
            Scope::Namespaced
        } else {
            Scope::Cluster
        };
        ensure!(caps.scope == want, "{k}: scope {:?}", caps.scope);
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crd_registered_at_run_time_is_served_and_discovered() -> Result<()> {
    let t = Target::new().await?;
    let group = format!("{}.conformance.flotilla.dev", t.unique("g"));
    let crd_name = format!("widgets.{group}");
    let crd: CustomResourceDefinition = serde_json::from_value(json!({
        "metadata": {"name": crd_name},
        "spec": {"group": group, "scope": "Namespaced",
                 "names": {"plural": "widgets", "singular": "widget", "kind": "Widget", "listKind": "WidgetList"},
                 "versions": [{"name": "v1", "served": true, "storage": true,
                               "subresources": {"status": {}},
                               "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}]}
    }))?;
    let crds = Api::<CustomResourceDefinition>::all(t.client.clone());
    crds.create(&PostParams::default(), &crd).await?;
    eventually("CRD established", Duration::from_secs(30), || async {
        let c = crds.get(&crd_name).await?;
        let established = c
            .status
            .and_then(|s| s.conditions)
            .unwrap_or_default()
            .iter()
            .any(|c| c.type_ == "Established" && c.status == "True");
        Ok(established.then_some(()))
    })
    .await?;
    let gvk = GroupVersionKind::gvk(&group, "v1", "Widget");
    eventually("CRD in discovery", Duration::from_secs(30), || async {
        let d = Discovery::new(t.client.clone()).run().await?;
        Ok(d.resolve_gvk(&gvk).map(|_| ()))
    })
    .await?;
    let ns = t.namespace("crd").await?;
    let ar = ApiResource::from_gvk_with_plural(&gvk, "widgets");
    let widgets: Api<DynamicObject> = Api::namespaced_with(t.client.clone(), &ns, &ar);
    let w: DynamicObject = serde_json::from_value(json!({
        "apiVersion": format!("{group}/v1"), "kind": "Widget",
        "metadata": {"name": "w1"}, "spec": {"size": 3}
    }))?;
    let created = widgets.create(&PostParams::default(), &w).await?;
    ensure!(
        created.metadata.generation == Some(1),
        "custom resources track generation"
    );
    ensure!(widgets.list(&ListParams::default()).await?.items.len() == 1);
    crds.delete(&crd_name, &DeleteParams::default()).await?;
    eventually("CRD gone", Duration::from_secs(60), || async {
        match widgets.list(&ListParams::default()).await {
            Err(e) if api_status(&e).is_some_and(|s| s.code == 404) => Ok(Some(())),
            Err(e) => Err(e.into()),
            Ok(_) => Ok(None),
        }
    })
    .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_get_update_delete_with_conflicts() -> Result<()> {
    let t = Target::new().await?;
    let ns = t.namespace("crud").await?;
    let cms = Api::<ConfigMap>::namespaced(t.client.clone(), &ns);
    let created = cms
        .create(&PostParams::default(), &mk_cm("a", &[], &[("k", "v")]))
        .await?;
    ensure!(created.metadata.uid.is_some(), "uid set");
    ensure!(
        created.metadata.creation_timestamp.is_some(),
        "creationTimestamp set"
    );
    let rv1 = created.resource_version().context("rv")?;

    let again = cms
        .create(&PostParams::default(), &mk_cm("a", &[], &[]))
        .await
        .expect_err("duplicate create fails");
    let (code, reason, msg) = status_of(&again)?;
    ensure!(code == 409 && reason == "AlreadyExists", "{code} {reason}");
    ensure!(msg == "configmaps \"a\" already exists", "{msg}");

    let mut update = created.clone();
    update.data = Some(BTreeMap::from([("k".into(), "v2".into())]));
    let updated = cms.replace("a", &PostParams::default(), &update).await?;
    ensure!(updated.resource_version() != Some(rv1.clone()), "rv bumps");

    // The same stale object again: 409 Conflict.
    let stale = cms
        .replace("a", &PostParams::default(), &update)
        .await
        .expect_err("stale resourceVersion");
    let (code, reason, msg) = status_of(&stale)?;
    ensure!(code == 409 && reason == "Conflict", "{code} {reason}");
    ensure!(msg.contains("the object has been modified"), "{msg}");

    // Deleted at once: the answer is a Status naming what went, not the object; a dry run
    // answers the same and deletes nothing.
    let uid = cms.get("a").await?.metadata.uid.context("uid")?;
    let dry = cms
        .delete("a", &DeleteParams::default().dry_run())
        .await?
        .right()
        .context("a dry-run deletion answers with a Status")?;
    ensure!(
        dry.status == Some(kube::core::response::StatusSummary::Success),
        "{dry:?}"
    );
    ensure!(cms.get_opt("a").await?.is_some(), "dry run deleted");
    let status = cms
        .delete("a", &DeleteParams::default())
        .await?
        .right()
        .context("an object deleted at once answers with a Status")?;
    let details = status.details.context("details")?;
    ensure!(
        details.name == "a" && details.kind == "configmaps" && details.uid == uid,
        "{details:?}"
    );
    let gone = cms.get("a").await.expect_err("deleted");
    let (code, reason, msg) = status_of(&gone)?;
    ensure!(code == 404 && reason == "NotFound", "{code} {reason}");
    ensure!(msg == "configmaps \"a\" not found", "{msg}");
    ensure!(cms.get_opt("a").await?.is_none());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn namespaced_create_needs_existing_namespace() -> Result<()> {
    let t = Target::new().await?;
    let missing = t.unique("missing");
    let cms = Api::<ConfigMap>::namespaced(t.client.clone(), &missing);
    let err = cms
        .create(&PostParams::default(), &mk_cm("a", &[], &[]))
        .await
        .expect_err("namespace missing");
    let (code, reason, msg) = status_of(&err)?;
    ensure!(code == 404 && reason == "NotFound", "{code} {reason}");
    ensure!(
        msg == format!("namespaces \"{missing}\" not found"),
        "{msg}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_filters_by_label_and_field_selectors() -> Result<()> {
    let t = Target::new().await?;
    let ns = t.namespace("sel").await?;
    let cms = Api::<ConfigMap>::namespaced(t.client.clone(), &ns);
    for (name, labels) in [
        ("a", vec![("app", "web"), ("tier", "front")]),
        ("b", vec![("app", "db")]),
        ("c", vec![("app", "cache"), ("tier", "back")]),
        ("d", vec![]),
    ] {
        cms.create(&PostParams::default(), &mk_cm(name, &labels, &[]))
            .await?;
    }
    let names = |sel: &'static str| {
        let cms = cms.clone();
        async move {
            let mut n: Vec<String> = cms
                .list(&ListParams::default().labels(sel))
                .await?
                .items
                .iter()
                .map(|c| c.name_any())
                .collect();
            n.sort();
            Ok::<_, anyhow::Error>(n.join(","))
        }
    };
    ensure!(names("app=web").await? == "a");
    ensure!(names("app==db").await? == "b");
    ensure!(names("app!=web").await? == "b,c,d");
    ensure!(names("app in (web,db)").await? == "a,b");
    ensure!(names("app notin (web,db)").await? == "c,d");
    ensure!(names("tier").await? == "a,c");
    ensure!(names("!tier").await? == "b,d");
    ensure!(names("app,tier=back").await? == "c");

    let by_name = cms
        .list(&ListParams::default().fields("metadata.name=b"))
        .await?;
    ensure!(by_name.items.len() == 1 && by_name.items[0].name_any() == "b");
    let all_ns = Api::<ConfigMap>::all(t.client.clone())
        .list(&ListParams::default().fields(&format!("metadata.namespace={ns}")))
        .await?;
    ensure!(all_ns.items.len() >= 4, "{}", all_ns.items.len());
    ensure!(
        all_ns
            .items
            .iter()
            .all(|c| c.namespace() == Some(ns.clone()))
    );

    let bad = cms
        .list(&ListParams::default().labels("app in web"))
        .await
        .expect_err("bad selector");
    let (code, reason, _) = status_of(&bad)?;
    ensure!(code == 400 && reason == "BadRequest", "{code} {reason}");
    let bad = cms
        .list(&ListParams::default().fields("data.k=v"))
        .await
        .expect_err("unsupported field selector");
    ensure!(status_of(&bad)?.0 == 400);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_pages_with_limit_and_continue() -> Result<()> {
    let t = Target::new().await?;
    let ns = t.namespace("page").await?;
    let cms = Api::<ConfigMap>::namespaced(t.client.clone(), &ns);
    for i in 0..7 {
        cms.create(
            &PostParams::default(),
            &mk_cm(&format!("cm-{i}"), &[("p", "x")], &[]),
        )
        .await?;
    }
    let mut seen = Vec::new();
    let mut token: Option<String> = None;
    let mut pages = 0;
    loop {
        let mut lp = ListParams::default().labels("p=x").limit(3);
        if let Some(t) = &token {
            lp = lp.continue_token(t);
        }
        let page = cms.list(&lp).await?;
        pages += 1;
        ensure!(page.items.len() <= 3);
        seen.extend(page.items.iter().map(|c| c.name_any()));
        if pages == 1 {
            ensure!(
                page.metadata.remaining_item_count == Some(4),
                "remaining {:?}",
                page.metadata.remaining_item_count
            );
        }
        match page.metadata.continue_ {
            Some(c) if !c.is_empty() => token = Some(c),
            _ => break,
        }
    }
    ensure!(pages == 3, "pages {pages}");
    seen.sort();
    seen.dedup();
    ensure!(seen.len() == 7, "{seen:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_and_exact_lists_serve_one_snapshot() -> Result<()> {
    let t = Target::new().await?;
    let ns = t.namespace("snap").await?;
    let cms = Api::<ConfigMap>::namespaced(t.client.clone(), &ns);
    for i in 0..6 {
        cms.create(
            &PostParams::default(),
            &mk_cm(&format!("cm-{i}"), &[], &[("v", "old")]),
        )
        .await?;
    }
    let first = cms.list(&ListParams::default().limit(2)).await?;
    let snapshot_rv = first.metadata.resource_version.clone().context("rv")?;
    let token = first.metadata.continue_.clone().context("continue")?;
    // Changes after the first page: one deleted, one changed, one created.
    cms.delete("cm-3", &DeleteParams::default()).await?;
    let mut changed = cms.get("cm-4").await?;
    changed.data = Some([("v".to_string(), "new".to_string())].into());
    cms.replace("cm-4", &PostParams::default(), &changed)
        .await?;
    cms.create(&PostParams::default(), &mk_cm("cm-9", &[], &[("v", "new")]))
        .await?;
    let rest = cms
        .list(&ListParams::default().limit(100).continue_token(&token))
        .await?;
    ensure!(rest.metadata.resource_version.as_deref() == Some(snapshot_rv.as_str()));
    let names: Vec<String> = rest.items.iter().map(|c| c.name_any()).collect();
    ensure!(names == ["cm-2", "cm-3", "cm-4", "cm-5"], "{names:?}");
    let v4 = rest.items[2]
        .data
        .as_ref()
        .and_then(|d| d.get("v"))
        .cloned();
    ensure!(v4.as_deref() == Some("old"), "{v4:?}");
    // The same snapshot, asked for exactly.
    let exact = cms
        .list(
            &ListParams::default()
                .at(&snapshot_rv)
                .matching(kube::api::VersionMatch::Exact),
        )
        .await?;
    ensure!(exact.items.len() == 6 && exact.items.iter().all(|c| c.name_any() != "cm-9"));
    // Bad combinations and a resourceVersion from the future.
    let path = format!("/api/v1/namespaces/{ns}/configmaps");
    let no_rv = raw(
        &t.client,
        "GET",
        &format!("{path}?resourceVersionMatch=NotOlderThan"),
        "application/json",
        b"",
    )
    .await?
    .expect_err("resourceVersionMatch needs resourceVersion");
    ensure!(status_of(&no_rv)?.0 == 422, "{no_rv}");
    let initial = raw(
        &t.client,
        "GET",
        &format!("{path}?watch=1&sendInitialEvents=true&allowWatchBookmarks=true"),
        "application/json",
        b"",
    )
    .await?
    .expect_err("sendInitialEvents needs resourceVersionMatch=NotOlderThan");
    ensure!(status_of(&initial)?.0 == 422, "{initial}");
    let future = raw(
        &t.no_retry,
        "GET",
        &format!("{path}?resourceVersion=999999999999&resourceVersionMatch=NotOlderThan"),
        "application/json",
        b"",
    )
    .await?
    .expect_err("future resourceVersion");
    let (code, reason, msg) = status_of(&future)?;
    ensure!(
        code == 504 && reason == "Timeout" && msg.contains("Too large resource version"),
        "{code} {reason} {msg}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_delivers_ordered_events_and_bookmarks() -> Result<()> {
    let t = Target::new().await?;
    let ns = t.namespace("watch").await?;
    let cms = Api::<ConfigMap>::namespaced(t.client.clone(), &ns);
    let rv = list_rv(&cms).await?;
    let mut stream = cms
        .watch(&WatchParams::default().labels("w=1").timeout(8), &rv)
        .await?
        .boxed();
    cms.create(&PostParams::default(), &mk_cm("x", &[("w", "1")], &[]))
        .await?;
    cms.create(
        &PostParams::default(),
        &mk_cm("ignored", &[("w", "2")], &[]),
    )
    .await?;
    cms.patch(
        "x",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"a": "b"}})),
    )
    .await?;
    // Leaving the selector is seen as a deletion.
    cms.patch(
        "x",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"w": "0"}}})),
    )
    .await?;
    let mut kinds = Vec::new();
    let mut last_rv = 0u64;
    let mut bookmark_rv = None;
    while let Some(ev) = stream.try_next().await? {
        let (kind, o) = match ev {
            WatchEvent::Added(o) => ("ADDED", o),
            WatchEvent::Modified(o) => ("MODIFIED", o),
            WatchEvent::Deleted(o) => ("DELETED", o),
            WatchEvent::Bookmark(b) => {
                bookmark_rv = Some(b.metadata.resource_version.parse::<u64>()?);
                continue;
            }
            WatchEvent::Error(e) => return Err(anyhow!("watch error {e:?}")),
        };
        ensure!(o.name_any() == "x", "only the selected object");
        let rv: u64 = o.resource_version().unwrap_or_default().parse()?;
        ensure!(rv > last_rv, "events in resourceVersion order");
        last_rv = rv;
        kinds.push(kind);
        if kinds.len() == 3 {
            break;
        }
    }
    ensure!(
        kinds == ["ADDED", "MODIFIED", "DELETED"],
        "selector view of the lifecycle: {kinds:?}"
    );
    // Bookmarks carry a resourceVersion no older than what was delivered.
    let mut stream = cms
        .watch(&WatchParams::default().timeout(3), &last_rv.to_string())
        .await?
        .boxed();
    while let Some(ev) = stream.try_next().await? {
        if let WatchEvent::Bookmark(b) = ev {
            bookmark_rv = Some(b.metadata.resource_version.parse::<u64>()?);
        }
    }
    if let Some(b) = bookmark_rv {
        ensure!(b >= last_rv, "bookmark {b} older than {last_rv}");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_event_types_follow_the_object_lifecycle() -> Result<()> {
    let t = Target::new().await?;
    let ns = t.namespace("life").await?;
    let cms = Api::<ConfigMap>::namespaced(t.client.clone(), &ns);
    let rv = list_rv(&cms).await?;
    let mut stream = cms
        .watch(&WatchParams::default().timeout(8), &rv)
        .await?
        .boxed();
    cms.create(&PostParams::default(), &mk_cm("y", &[], &[]))
        .await?;
    cms.patch(
        "y",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"a": "1"}})),
    )
    .await?;
    cms.delete("y", &DeleteParams::default()).await?;
    let mut seen = Vec::new();
    while let Some(ev) = stream.try_next().await? {
        match ev {
            WatchEvent::Added(_) => seen.push("ADDED"),
            WatchEvent::Modified(_) => seen.push("MODIFIED"),
            WatchEvent::Deleted(_) => seen.push("DELETED"),
            WatchEvent::Bookmark(_) => continue,
            WatchEvent::Error(e) => return Err(anyhow!("{e:?}")),
        }
        if seen.len() == 3 {
            break;
        }
    }
    ensure!(seen == ["ADDED", "MODIFIED", "DELETED"], "{seen:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_from_a_compacted_resource_version_is_gone() -> Result<()> {
    let t = Target::new().await?;
    let cms = Api::<ConfigMap>::all(t.client.clone());
    let result = cms.watch(&WatchParams::default().timeout(5), "1").await;
    let code = match result {
        Err(e) => status_of(&e)?.0,
        Ok(stream) => {
            let mut stream = stream.boxed();
            match stream.next().await {
                Some(Ok(WatchEvent::Error(e))) => e.code,
                Some(Err(e)) => status_of(&e)?.0,
                other => return Err(anyhow!("expected 410, got {other:?}")),
            }
        }
    };
    ensure!(code == 410, "code {code}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_merge_and_strategic_patches() -> Result<()> {
    let t = Target::new().await?;
    let ns = t.namespace("patch").await?;
    let deploys = Api::<Deployment>::namespaced(t.client.clone(), &ns);
    let d: Deployment = serde_json::from_value(mk_deploy("web", 1, "nginx:1.27"))?;
    deploys.create(&PostParams::default(), &d).await?;

    // Strategic merge: containers and env merge by name.
    let p = json!({"spec": {"template": {"spec": {"containers": [
        {"name": "main", "env": [{"name": "B", "value": "2"}]},
        {"name": "sidecar", "image": "busybox:1"}]}}}});
    let d = deploys
        .patch("web", &PatchParams::default(), &Patch::Strategic(p))
        .await?;
    let spec = d.spec.template.spec.context("pod spec")?;
    ensure!(spec.containers.len() == 2, "containers merged by name");
    let env = spec.containers[0].env.clone().unwrap_or_default();
    ensure!(env.len() == 2, "env merged by name: {env:?}");

    // Merge patch: lists are replaced wholesale.
    let p = json!({"spec": {"template": {"spec": {"containers": [{"name": "only", "image": "nginx:1.28"}]}}}});
    let d = deploys
        .patch("web", &PatchParams::default(), &Patch::Merge(p))
        .await?;
    let spec = d.spec.template.spec.context("pod spec")?;
    ensure!(spec.containers.len() == 1 && spec.containers[0].name == "only");

    // JSON patch: precise operations, and a failed test op is refused.
    let path = format!("/apis/apps/v1/namespaces/{ns}/deployments/web");
    let ops = json!([{"op": "replace", "path": "/spec/replicas", "value": 4}]);
    let v = raw(
        &t.client,
        "PATCH",
        &path,
        "application/json-patch+json",
        ops.to_string().as_bytes(),
    )
    .await??;
    ensure!(v["spec"]["replicas"] == 4);
    let ops = json!([{"op": "test", "path": "/spec/replicas", "value": 99}]);
    let err = raw(
        &t.client,
        "PATCH",
        &path,
        "application/json-patch+json",
        ops.to_string().as_bytes(),
    )
    .await?
    .expect_err("test op fails");
    let code = status_of(&err)?.0;
    ensure!(code == 422 || code == 500, "code {code}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_side_apply_tracks_owners_conflicts_and_removals() -> Result<()> {
    let t = Target::new().await?;
    let ns = t.namespace("ssa").await?;
    let deploys = Api::<Deployment>::namespaced(t.client.clone(), &ns);
    let mut desired = mk_deploy("app", 2, "nginx:1.27");
    desired["metadata"]["labels"]["extra"] = json!("yes");
    let d = deploys
        .patch(
            "app",
            &PatchParams::apply("flotilla"),
            &Patch::Apply(&desired),
        )
        .await?;
    let mf = d.metadata.managed_fields.clone().unwrap_or_default();
    ensure!(
        mf.iter()
            .any(|m| m.manager.as_deref() == Some("flotilla")
                && m.operation.as_deref() == Some("Apply")),
        "{mf:?}"
    );
    let rv = d.resource_version();

    // Re-applying the same configuration changes nothing.
    let again = deploys
        .patch(
            "app",
            &PatchParams::apply("flotilla"),
            &Patch::Apply(&desired),
        )
        .await?;
    ensure!(again.resource_version() == rv, "no-op apply keeps rv");

    // Another manager changing an owned field conflicts...
    let theirs = json!({"apiVersion": "apps/v1", "kind": "Deployment",
                        "metadata": {"name": "app"}, "spec": {"replicas": 5}});
    let err = deploys
        .patch("app", &PatchParams::apply("other"), &Patch::Apply(&theirs))
        .await
        .expect_err("conflict");
    let (code, reason, msg) = status_of(&err)?;
    ensure!(code == 409 && reason == "Conflict", "{code} {reason}");
    ensure!(
        msg.contains("flotilla") && msg.contains(".spec.replicas"),
        "{msg}"
    );
    // ...unless forced, which moves ownership.
    let d = deploys
        .patch(
            "app",
            &PatchParams::apply("other").force(),
            &Patch::Apply(&theirs),
        )
        .await?;
    ensure!(d.spec.replicas == Some(5));

    // Our manager stops applying the label (and replicas, now owned by "other"): the label goes.
    let mut trimmed = mk_deploy("app", 2, "nginx:1.27");
    trimmed["spec"]
        .as_object_mut()
        .context("spec")?
        .remove("replicas");
    let d = deploys
        .patch(
            "app",
            &PatchParams::apply("flotilla"),
            &Patch::Apply(&trimmed),
        )
        .await?;
    ensure!(
        !d.labels().contains_key("extra"),
        "dropped field removed: {:?}",
        d.labels()
    );
    ensure!(d.labels().get("app").map(String::as_str) == Some("app"));
    ensure!(
        d.spec.replicas == Some(5),
        "other's field kept: {:?} {:?}",
        d.spec.replicas,
        d.metadata.managed_fields
    );

    // Apply creates when missing.
    let fresh = deploys
        .patch(
            "fresh",
            &PatchParams::apply("flotilla"),
            &Patch::Apply(&mk_deploy("fresh", 1, "nginx:1.27")),
        )
        .await?;
    ensure!(fresh.metadata.generation == Some(1));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_side_apply_drops_associative_list_items_whole() -> Result<()> {
    let t = Target::new().await?;
    let ns = t.namespace("ssa-lists").await?;
    let deploys = Api::<Deployment>::namespaced(t.client.clone(), &ns);
    let container = |name: &str, env: &[&str], ports: &[i32]| {
        json!({"name": name, "image": "nginx:1.27",
               "env": env.iter().map(|e| json!({"name": e, "value": "1"})).collect::<Vec<_>>(),
               "ports": ports.iter().map(|p| json!({"containerPort": p})).collect::<Vec<_>>()})
    };
    let with = |containers: Vec<Value>| {
        let mut d = mk_deploy("lists", 1, "nginx:1.27");
        d["spec"]["template"]["spec"]["containers"] = Value::Array(containers);
        d
    };
    let apply = |manager: &'static str, body: Value| {
        let deploys = deploys.clone();
        async move {
            deploys
                .patch("lists", &PatchParams::apply(manager), &Patch::Apply(&body))
                .await
        }
    };
    apply(
        "flotilla",
        with(vec![
            container("web", &["X", "Y"], &[80, 443]),
            container("sidecar", &["S"], &[9000]),
        ]),
    )
    .await?;
    // The applier drops a container, an env var and a port: each goes whole.
    let d = apply("flotilla", with(vec![container("web", &["X"], &[80])])).await?;
    let spec = serde_json::to_value(&d.spec)?;
    let cs = &spec["template"]["spec"]["containers"];
    ensure!(cs.as_array().map(Vec::len) == Some(1), "{cs}");
    ensure!(cs[0]["name"] == "web", "{cs}");
    ensure!(cs[0]["env"] == json!([{"name": "X", "value": "1"}]), "{cs}");
    ensure!(
        cs[0]["ports"] == json!([{"containerPort": 80, "protocol": "TCP"}]),
        "{cs}"
    );
    // Another manager adds an env var to the container; the first drops its own: only the
    // second manager's stays, whole.
    let other = json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "lists"},
        "spec": {"template": {"spec": {"containers": [
            {"name": "web", "env": [{"name": "Z", "value": "2"}]}]}}}});
    apply("other", other).await?;
    let d = apply("flotilla", with(vec![container("web", &[], &[80])])).await?;
    let spec = serde_json::to_value(&d.spec)?;
    let cs = &spec["template"]["spec"]["containers"];
    ensure!(
        cs[0]["name"] == "web" && cs[0]["image"] == "nginx:1.27",
        "{cs}"
    );
    ensure!(cs[0]["env"] == json!([{"name": "Z", "value": "2"}]), "{cs}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn managed_fields_can_be_reset_and_rewritten_by_the_client() -> Result<()> {
    let t = Target::new().await?;
    let ns = t.namespace("mf").await?;
    let cms = Api::<ConfigMap>::namespaced(t.client.clone(), &ns);
    let body = json!({"apiVersion": "v1", "kind": "ConfigMap",
                      "metadata": {"name": "m"}, "data": {"a": "1"}});
    cms.patch("m", &PatchParams::apply("flotilla"), &Patch::Apply(&body))
        .await?;
    let managers = |cm: &ConfigMap| -> Vec<String> {
        cm.metadata
            .managed_fields
            .iter()
            .flatten()
            .filter_map(|m| m.manager.clone())
            .collect()
    };
    // The documented reset: a list with one empty entry strips managedFields entirely.
    let reset = json!([{"op": "replace", "path": "/metadata/managedFields", "value": [{}]}]);
    let v = raw(
        &t.client,
        "PATCH",
        &format!("/api/v1/namespaces/{ns}/configmaps/m"),
        "application/json-patch+json",
        reset.to_string().as_bytes(),
    )
    .await??;
    ensure!(
        v["metadata"]["managedFields"].is_null(),
        "{}",
        v["metadata"]["managedFields"]
    );
    ensure!(managers(&cms.get("m").await?).is_empty());
    // A client may write managedFields itself (kubectl's client-side to server-side apply
    // migration renames the client-side manager this way).
    let rewrite = json!({"metadata": {"managedFields": [{
        "manager": "kubectl", "operation": "Apply", "apiVersion": "v1",
        "fieldsType": "FieldsV1", "fieldsV1": {"f:data": {"f:a": {}}}}]}});
    let cm = cms
        .patch("m", &PatchParams::default(), &Patch::Merge(&rewrite))
        .await?;
    ensure!(
        managers(&cm) == ["kubectl"],
        "{:?}",
        cm.metadata.managed_fields
    );
    // ...and the new owner is who an apply now conflicts with.
    let theirs = json!({"apiVersion": "v1", "kind": "ConfigMap",
                        "metadata": {"name": "m"}, "data": {"a": "2"}});
    let err = cms
        .patch("m", &PatchParams::apply("someone"), &Patch::Apply(&theirs))
        .await
        .expect_err("conflict with kubectl");
    let (code, _, msg) = status_of(&err)?;
    ensure!(code == 409 && msg.contains("kubectl"), "{code} {msg}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn built_in_kinds_are_decoded_by_their_schema() -> Result<()> {
    let t = Target::new().await?;
    let ns = t.namespace("schema").await?;
    let cms = format!("/api/v1/namespaces/{ns}/configmaps");
    let deploys = format!("/apis/apps/v1/namespaces/{ns}/deployments");
    let post = |path: String, body: Value| {
        let client = t.client.clone();
        async move {
            raw(
                &client,
                "POST",
                &path,
                "application/json",
                body.to_string().as_bytes(),
            )
            .await
        }
    };
    // Unknown fields are dropped (the default, Warn) or refused (Strict).
    let v = post(
        cms.clone(),
        json!({"apiVersion": "v1", "kind": "ConfigMap",
               "metadata": {"name": "u"}, "data": {"k": "v"}, "extra": true}),
    )
    .await??;
    ensure!(v.get("extra").is_none(), "{v}");
    let got = Api::<ConfigMap>::namespaced(t.client.clone(), &ns)
        .get("u")
        .await?;
    ensure!(got.data.is_some_and(|d| d["k"] == "v"));
    // ...and the answer warns about each, as kubectl shows it.
    let resp = t
        .no_retry
        .send(
            http::Request::builder()
                .method("POST")
                .uri(cms.clone())
                .header("Content-Type", "application/json")
                .body(kube::client::Body::from(
                    json!({"apiVersion": "v1", "kind": "ConfigMap",
                           "metadata": {"name": "w"}, "bogus": 1})
                    .to_string()
                    .into_bytes(),
                ))?,
        )
        .await?;
    let warnings: Vec<String> = resp
        .headers()
        .get_all("warning")
        .iter()
        .filter_map(|v| v.to_str().ok().map(str::to_string))
        .collect();
    ensure!(
        warnings
            .iter()
            .any(|w| w.starts_with("299") && w.contains("unknown field \\\"bogus\\\"")),
        "{warnings:?}"
    );
    let strict = post(
        format!("{cms}?fieldValidation=Strict"),
        json!({"apiVersion": "v1", "kind": "ConfigMap",
               "metadata": {"name": "s"}, "extra": true}),
    )
    .await?
    .expect_err("strict refuses unknown fields");
    let (code, _, msg) = status_of(&strict)?;
    ensure!(
        code == 400 && msg.contains("unknown field \"extra\""),
        "{code} {msg}"
    );
    // Wrong types are 400; missing required fields 422.
    let typed = post(
        cms.clone(),
        json!({"apiVersion": "v1", "kind": "ConfigMap",
               "metadata": {"name": "n"}, "data": {"k": 3}}),
    )
    .await?
    .expect_err("integer data");
    ensure!(status_of(&typed)?.0 == 400, "{typed}");
    let mut d = mk_deploy("three", 1, "nginx:1.27");
    d["spec"]["replicas"] = json!("three");
    let typed = post(deploys.clone(), d)
        .await?
        .expect_err("string replicas");
    ensure!(status_of(&typed)?.0 == 400, "{typed}");
    let mut d = mk_deploy("nosel", 1, "nginx:1.27");
    d["spec"]
        .as_object_mut()
        .context("spec")?
        .remove("selector");
    let missing = post(deploys.clone(), d).await?.expect_err("no selector");
    let (code, reason, msg) = status_of(&missing)?;
    ensure!(
        code == 422 && reason == "Invalid" && msg.contains("spec.selector"),
        "{code} {msg}"
    );
    let mut d = mk_deploy("noimage", 1, "nginx:1.27");
    d["spec"]["template"]["spec"]["containers"][0]
        .as_object_mut()
        .context("container")?
        .remove("image");
    let missing = post(deploys, d).await?.expect_err("no image");
    ensure!(status_of(&missing)?.0 == 422, "{missing}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_server_has_its_bootstrap_objects_and_common_kinds() -> Result<()> {
    let t = Target::new().await?;
    let svc = Api::<k8s_openapi::api::core::v1::Service>::namespaced(t.client.clone(), "default")
        .get("kubernetes")
        .await?;
    let ports = svc.spec.and_then(|s| s.ports).unwrap_or_default();
    ensure!(ports.iter().any(|p| p.port == 443), "{ports:?}");
    let roles = Api::<k8s_openapi::api::rbac::v1::ClusterRole>::all(t.client.clone());
    for name in ["cluster-admin", "admin", "edit", "view"] {
        roles
            .get(name)
            .await
            .with_context(|| format!("ClusterRole {name}"))?;
    }
    let discovery = Discovery::new(t.client.clone()).run().await?;
    for (group, kind) in [
        ("events.k8s.io", "Event"),
        ("discovery.k8s.io", "EndpointSlice"),
        ("", "ReplicationController"),
        ("", "PodTemplate"),
    ] {
        let found = discovery
            .groups()
            .filter(|g| g.name() == group)
            .flat_map(|g| g.recommended_resources())
            .any(|(ar, _)| ar.kind == kind);
        ensure!(found, "{group}/{kind} is served");
    }
    // Every served group-version has its APIService (local ones always available).
    let apiservices = get_json(&t.client, "/apis/apiregistration.k8s.io/v1/apiservices").await?;
    let apps = apiservices["items"]
        .as_array()
        .and_then(|items| items.iter().find(|i| i["metadata"]["name"] == "v1.apps"))
        .ok_or_else(|| anyhow!("no v1.apps APIService"))?;
    ensure!(apps["spec"]["group"] == "apps", "{apps}");
    ensure!(
        apps["status"]["conditions"].as_array().is_some_and(|cs| cs
            .iter()
            .any(|c| c["type"] == "Available" && c["status"] == "True")),
        "{apps}"
    );
    // `kubectl drain` and the node controller select nodes by spec.unschedulable.
    Api::<k8s_openapi::api::core::v1::Node>::all(t.client.clone())
        .list(&ListParams::default().fields("spec.unschedulable=false"))
        .await?;
    // A Status is written with details before code, and every document ends with a newline.
    let resp = t
        .no_retry
        .send(
            http::Request::builder()
                .uri("/api/v1/namespaces/default/configmaps/no-such-thing")
                .body(kube::client::Body::empty())?,
        )
        .await?;
    use http_body_util::BodyExt;
    let body = resp.into_body().collect().await?.to_bytes();
    let text = String::from_utf8_lossy(&body);
    ensure!(text.ends_with('\n'), "{text:?}");
    let (d, c) = (text.find("\"details\""), text.find("\"code\""));
    ensure!(d.is_some() && c.is_some() && d < c, "{text}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accept_header_selects_metadata_tables_and_aggregated_discovery() -> Result<()> {
    let t = Target::new().await?;
    let ns = t.namespace("accept").await?;
    let cms = Api::<ConfigMap>::namespaced(t.client.clone(), &ns);
    cms.create(
        &PostParams::default(),
        &mk_cm("big", &[("a", "b")], &[("k", "v")]),
    )
    .await?;
    // Metadata-only get, list and watch (what a memory-lean cache uses).
    let meta = cms.get_metadata("big").await?;
    ensure!(meta.metadata.name.as_deref() == Some("big"));
    ensure!(
        meta.types
            .as_ref()
            .is_some_and(|t| t.kind == "PartialObjectMetadata"),
        "{:?}",
        meta.types
    );
    let list = cms.list_metadata(&ListParams::default()).await?;
    ensure!(
        list.items.len() == 1
            && list.items[0]
                .metadata
                .labels
                .as_ref()
                .is_some_and(|l| l["a"] == "b")
    );
    let mut events = cms
        .watch_metadata(&kube::api::WatchParams::default(), "0")
        .await?
        .boxed();
    let first = tokio::time::timeout(Duration::from_secs(10), events.try_next())
        .await??
        .context("a watch event")?;
    match first {
        kube::api::WatchEvent::Added(o) => {
            ensure!(o.metadata.name.as_deref() == Some("big"));
            ensure!(
                o.types
                    .as_ref()
                    .is_some_and(|t| t.kind == "PartialObjectMetadata"),
                "{:?}",
                o.types
            );
        }
        other => anyhow::bail!("unexpected {other:?}"),
    }
    // A Table, as kubectl asks for one.
    let req = http::Request::builder()
        .uri(format!("/api/v1/namespaces/{ns}/configmaps"))
        .header(
            "Accept",
            "application/json;as=Table;v=v1;g=meta.k8s.io,application/json",
        )
        .body(Vec::new())?;
    let table: Value = t.client.request(req).await?;
    ensure!(table["kind"] == "Table", "{table}");
    ensure!(table["columnDefinitions"][0]["name"] == "Name", "{table}");
    ensure!(table["rows"][0]["cells"][0] == "big", "{table}");
    // Aggregated discovery names what the legacy documents name; workloads are in `all`.
    let legacy = Discovery::new(t.client.clone()).run().await?;
    let aggregated = Discovery::new(t.client.clone()).run_aggregated().await?;
    let kinds = |d: &Discovery| -> std::collections::BTreeSet<(String, String)> {
        d.groups()
            .flat_map(|g| g.recommended_resources())
            .map(|(ar, _)| (ar.group, ar.kind))
            .collect()
    };
    ensure!(
        kinds(&legacy) == kinds(&aggregated),
        "aggregated discovery differs"
    );
    let apps: Value = t
        .client
        .request(
            http::Request::builder()
                .uri("/apis/apps/v1")
                .body(Vec::new())?,
        )
        .await?;
    let deploy = apps["resources"]
        .as_array()
        .and_then(|r| r.iter().find(|r| r["name"] == "deployments"))
        .context("deployments")?;
    ensure!(deploy["categories"] == json!(["all"]), "{deploy}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workloads_scale_through_the_scale_subresource() -> Result<()> {
    let t = Target::new().await?;
    let ns = t.namespace("scale").await?;
    let deploys = Api::<Deployment>::namespaced(t.client.clone(), &ns);
    deploys
        .patch(
            "web",
            &PatchParams::apply("t"),
            &Patch::Apply(&mk_deploy("web", 2, "nginx:1.27")),
        )
        .await?;
    let s = deploys.get_scale("web").await?;
    ensure!(s.spec.as_ref().and_then(|s| s.replicas) == Some(2), "{s:?}");
    ensure!(
        s.status.as_ref().and_then(|s| s.selector.as_deref()) == Some("app=web"),
        "{s:?}"
    );
    // What `kubectl scale` and an HPA do.
    let s = deploys
        .patch_scale(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": 5}})),
        )
        .await?;
    ensure!(s.spec.and_then(|s| s.replicas) == Some(5));
    ensure!(deploys.get("web").await?.spec.replicas == Some(5));
    let err = deploys
        .patch_scale(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": -1}})),
        )
        .await
        .expect_err("negative replicas");
    ensure!(status_of(&err)?.0 == 422, "{err}");
    Ok(())
}

/// A schema in an OpenAPI document tagged with `kind` (`x-kubernetes-group-version-kind`).
fn schema_of_kind<'a>(schemas: &'a Value, group: &str, kind: &str) -> Option<&'a Value> {
    schemas.as_object()?.values().find(|s| {
        s["x-kubernetes-group-version-kind"]
            .as_array()
            .is_some_and(|g| g.iter().any(|g| g["group"] == group && g["kind"] == kind))
    })
}

async fn get_json(client: &Client, path: &str) -> Result<Value> {
    let req = http::Request::get(path)
        .header("Accept", "application/json")
        .body(Vec::new())?;
    Ok(client.request::<Value>(req).await?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openapi_documents_describe_built_in_kinds_and_crds() -> Result<()> {
    let t = Target::new().await?;
    let index = get_json(&t.client, "/openapi/v3").await?;
    let link = index["paths"]["apis/apps/v1"]["serverRelativeURL"]
        .as_str()
        .ok_or_else(|| anyhow!("no apps/v1 in {index}"))?;
    let apps = get_json(&t.client, link).await?;
    let dep = schema_of_kind(&apps["components"]["schemas"], "apps", "Deployment")
        .ok_or_else(|| anyhow!("no Deployment schema"))?;
    ensure!(dep["properties"]["spec"].is_object(), "{dep}");
    // kubectl validates on the server only when the kind's PATCH takes `fieldValidation`.
    let validates = apps["paths"].as_object().is_some_and(|paths| {
        paths.values().any(|p| {
            p["patch"]["x-kubernetes-group-version-kind"]["kind"] == "Deployment"
                && p["patch"]["parameters"]
                    .as_array()
                    .is_some_and(|ps| ps.iter().any(|q| q["name"] == "fieldValidation"))
        })
    });
    ensure!(validates, "no PATCH with fieldValidation for deployments");
    let v2 = get_json(&t.client, "/openapi/v2").await?;
    ensure!(v2["swagger"] == "2.0");
    ensure!(schema_of_kind(&v2["definitions"], "", "ConfigMap").is_some());

    // A CRD's schema is published under its group-version, with the object fields added.
    let group = format!("{}.conformance.flotilla.dev", t.unique("o"));
    let crd: CustomResourceDefinition = serde_json::from_value(json!({
        "metadata": {"name": format!("gizmos.{group}")},
        "spec": {"group": group, "scope": "Namespaced",
                 "names": {"plural": "gizmos", "singular": "gizmo", "kind": "Gizmo"},
                 "versions": [{"name": "v1", "served": true, "storage": true,
                   "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                     "spec": {"type": "object", "description": "What the gizmo wants.",
                              "properties": {"size": {"type": "integer"}}}}}}}]}
    }))?;
    let crds = Api::<CustomResourceDefinition>::all(t.client.clone());
    crds.create(&PostParams::default(), &crd).await?;
    let key = format!("apis/{group}/v1");
    let doc = eventually("CRD in /openapi/v3", Duration::from_secs(60), || async {
        let index = get_json(&t.client, "/openapi/v3").await?;
        match index["paths"][&key]["serverRelativeURL"].as_str() {
            Some(link) => Ok(Some(get_json(&t.client, link).await?)),
            None => Ok(None),
        }
    })
    .await?;
    let gizmo = schema_of_kind(&doc["components"]["schemas"], &group, "Gizmo")
        .ok_or_else(|| anyhow!("no Gizmo schema in {doc}"))?;
    ensure!(
        gizmo["properties"]["spec"]["description"] == "What the gizmo wants.",
        "{gizmo}"
    );
    ensure!(gizmo["properties"]["metadata"].is_object(), "{gizmo}");
    crds.delete(&format!("gizmos.{group}"), &DeleteParams::default())
        .await?;
    Ok(())
}

async fn post_json(
    client: &Client,
    path: &str,
    body: &Value,
) -> Result<std::result::Result<Value, kube::Error>> {
    raw(
        client,
        "POST",
        path,
        "application/json",
        &serde_json::to_vec(body)?,
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_reviews_answer_can_i_and_whoami() -> Result<()> {
    let t = Target::new().await?;
    let review = post_json(
        &t.client,
        "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
        &json!({"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview",
                "spec": {"resourceAttributes": {"verb": "create", "group": "apps",
                                                "resource": "deployments", "namespace": "default"}}}),
    )
    .await??;
    // The suite's credentials may do anything (cluster-admin on a real cluster).
    ensure!(review["status"]["allowed"] == true, "{review}");
    ensure!(review["spec"]["resourceAttributes"]["resource"] == "deployments");
    let me = post_json(
        &t.client,
        "/apis/authentication.k8s.io/v1/selfsubjectreviews",
        &json!({"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"}),
    )
    .await??;
    ensure!(
        me["status"]["userInfo"]["username"]
            .as_str()
            .is_some_and(|u| !u.is_empty()),
        "{me}"
    );
    let rules = post_json(
        &t.client,
        "/apis/authorization.k8s.io/v1/selfsubjectrulesreviews",
        &json!({"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectRulesReview",
                "spec": {"namespace": "default"}}),
    )
    .await??;
    ensure!(rules["status"]["resourceRules"].is_array(), "{rules}");
    // Reviews are not stored: there is nothing to get or list.
    let got = raw(
        &t.no_retry,
        "GET",
        "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
        "",
        b"",
    )
    .await?;
    ensure!(got.is_err(), "{got:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eviction_respects_disruption_budgets() -> Result<()> {
    let t = Target::new().await?;
    let ns = t.namespace("evict").await?;
    let deploys = Api::<Deployment>::namespaced(t.client.clone(), &ns);
    deploys
        .patch(
            "web",
            &PatchParams::apply("t"),
            &Patch::Apply(&mk_deploy("web", 2, "nginx:1.27")),
        )
        .await?;
    let pods = Api::<k8s_openapi::api::core::v1::Pod>::namespaced(t.client.clone(), &ns);
    let ready = |p: &k8s_openapi::api::core::v1::Pod| {
        p.status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
    };
    let names = eventually("two ready pods", Duration::from_secs(120), || async {
        let list = pods.list(&ListParams::default().labels("app=web")).await?;
        let names: Vec<String> = list
            .items
            .iter()
            .filter(|p| ready(p))
            .map(|p| p.name_any())
            .collect();
        Ok((names.len() == 2).then_some(names))
    })
    .await?;
    let pdbs =
        Api::<k8s_openapi::api::policy::v1::PodDisruptionBudget>::namespaced(t.client.clone(), &ns);
    let pdb = |min: i32| {
        json!({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
               "metadata": {"name": "web"},
               "spec": {"minAvailable": min, "selector": {"matchLabels": {"app": "web"}}}})
    };
    pdbs.patch(
        "web",
        &PatchParams::apply("t").force(),
        &Patch::Apply(&pdb(2)),
    )
    .await?;
    let path = |name: &str| format!("/api/v1/namespaces/{ns}/pods/{name}/eviction");
    let eviction = |name: &str| json!({"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": name, "namespace": ns}});
    // A real cluster's disruption controller needs a moment to compute the budget.
    let refused = eventually("eviction refused", Duration::from_secs(60), || async {
        match post_json(&t.no_retry, &path(&names[0]), &eviction(&names[0])).await? {
            Err(e) => Ok(Some(status_of(&e)?)),
            Ok(_) => Err(anyhow!("evicted despite minAvailable 2")),
        }
    })
    .await?;
    ensure!(refused.0 == 429, "{refused:?}");
    ensure!(refused.2.contains("disruption budget"), "{refused:?}");
    pdbs.patch(
        "web",
        &PatchParams::apply("t").force(),
        &Patch::Apply(&pdb(1)),
    )
    .await?;
    eventually("eviction allowed", Duration::from_secs(60), || async {
        match post_json(&t.no_retry, &path(&names[0]), &eviction(&names[0])).await? {
            Ok(s) => Ok(Some(s)),
            Err(_) => Ok(None),
        }
    })
    .await?;
    eventually("evicted pod gone", Duration::from_secs(60), || async {
        Ok(pods.get_opt(&names[0]).await?.is_none().then_some(()))
    })
    .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protobuf_bodies_create_simple_kinds() -> Result<()> {
    use k8s_pb::apimachinery::pkg::apis::meta::v1::ObjectMeta;
    use prost::Message;
    let t = Target::new().await?;
    let ns = t.namespace("pb").await?;
    // What `kubectl create configmap` sends: the k8s envelope around a runtime.Unknown.
    let cm = k8s_pb::api::core::v1::ConfigMap {
        metadata: Some(ObjectMeta {
            name: Some("from-pb".into()),
            ..Default::default()
        }),
        data: [("greeting".to_string(), "hello".to_string())].into(),
        ..Default::default()
    };
    let unknown = k8s_pb::apimachinery::pkg::runtime::Unknown {
        type_meta: Some(k8s_pb::apimachinery::pkg::runtime::TypeMeta {
            api_version: Some("v1".into()),
            kind: Some("ConfigMap".into()),
        }),
        raw: Some(cm.encode_to_vec()),
        content_encoding: Some(String::new()),
        content_type: Some(String::new()),
    };
    let mut body = b"k8s\0".to_vec();
    body.extend(unknown.encode_to_vec());
    raw(
        &t.client,
        "POST",
        &format!("/api/v1/namespaces/{ns}/configmaps"),
        "application/vnd.kubernetes.protobuf",
        &body,
    )
    .await??;
    let got = Api::<ConfigMap>::namespaced(t.client.clone(), &ns)
        .get("from-pb")
        .await?;
    ensure!(got.data.and_then(|d| d.get("greeting").cloned()).as_deref() == Some("hello"));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn custom_resources_scale_through_their_scale_subresource() -> Result<()> {
    let t = Target::new().await?;
    let group = format!("{}.conformance.flotilla.dev", t.unique("sc"));
    let crd: CustomResourceDefinition = serde_json::from_value(json!({
        "metadata": {"name": format!("fleets.{group}")},
        "spec": {"group": group, "scope": "Namespaced",
                 "names": {"plural": "fleets", "singular": "fleet", "kind": "Fleet"},
                 "versions": [{"name": "v1", "served": true, "storage": true,
                   "subresources": {"status": {}, "scale": {
                       "specReplicasPath": ".spec.size", "statusReplicasPath": ".status.size",
                       "labelSelectorPath": ".status.selector"}},
                   "schema": {"openAPIV3Schema": {"type": "object",
                       "x-kubernetes-preserve-unknown-fields": true}}}]}
    }))?;
    let crds = Api::<CustomResourceDefinition>::all(t.client.clone());
    crds.create(&PostParams::default(), &crd).await?;
    let ns = t.namespace("crscale").await?;
    let gvk = GroupVersionKind::gvk(&group, "v1", "Fleet");
    let ar = ApiResource::from_gvk_with_plural(&gvk, "fleets");
    let api: Api<DynamicObject> = Api::namespaced_with(t.client.clone(), &ns, &ar);
    let fleet: DynamicObject = serde_json::from_value(json!({
        "apiVersion": format!("{group}/v1"), "kind": "Fleet",
        "metadata": {"name": "f"}, "spec": {"size": 3}}))?;
    eventually("fleets served", Duration::from_secs(30), || async {
        Ok(api
            .create(&PostParams::default(), &fleet)
            .await
            .ok()
            .map(|_| ()))
    })
    .await?;
    api.patch_status(
        "f",
        &PatchParams::default(),
        &Patch::Merge(json!({"status": {"size": 2, "selector": "app=fleet"}})),
    )
    .await?;
    let base = format!("/apis/{group}/v1/namespaces/{ns}/fleets/f/scale");
    let scale = get_json(&t.client, &base).await?;
    ensure!(
        scale["kind"] == "Scale" && scale["spec"]["replicas"] == 3,
        "{scale}"
    );
    ensure!(scale["status"]["replicas"] == 2, "{scale}");
    ensure!(scale["status"]["selector"] == "app=fleet", "{scale}");
    let patched = raw(
        &t.client,
        "PATCH",
        &base,
        "application/merge-patch+json",
        br#"{"spec":{"replicas":5}}"#,
    )
    .await??;
    ensure!(patched["spec"]["replicas"] == 5, "{patched}");
    let f = api.get("f").await?;
    ensure!(f.data["spec"]["size"] == 5, "{:?}", f.data);
    crds.delete(&format!("fleets.{group}"), &DeleteParams::default())
        .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crd_deletion_cleans_up_through_its_finalizer() -> Result<()> {
    let t = Target::new().await?;
    let (api, crd_name) = widget_crd(&t).await?;
    let crds = Api::<CustomResourceDefinition>::all(t.client.clone());
    let group = crd_name.trim_start_matches("gadgets.").to_string();
    let mk = |name: &str, finalizers: &[&str]| -> Result<DynamicObject> {
        Ok(serde_json::from_value(json!({
            "apiVersion": format!("{group}/v1"), "kind": "Gadget",
            "metadata": {"name": name, "finalizers": finalizers}}))?)
    };
    api.create(&PostParams::default(), &mk("free", &[])?)
        .await?;
    api.create(
        &PostParams::default(),
        &mk("held", &["conformance.flotilla.dev/hold"])?,
    )
    .await?;
    let lp = WatchParams::default().fields(&format!("metadata.name={crd_name}"));
    let rv = crds
        .get(&crd_name)
        .await?
        .resource_version()
        .unwrap_or_default();
    let mut watch = crds.watch(&lp, &rv).await?.boxed();
    crds.delete(&crd_name, &DeleteParams::default()).await?;
    // The CRD stays, Terminating, until its resources are gone; the free one goes.
    eventually("free gadget deleted", Duration::from_secs(60), || async {
        Ok(api.get_opt("free").await?.is_none().then_some(()))
    })
    .await?;
    let crd = crds.get(&crd_name).await?;
    ensure!(crd.metadata.deletion_timestamp.is_some());
    ensure!(
        crd.finalizers()
            .iter()
            .any(|f| f == "customresourcecleanup.apiextensions.k8s.io"),
        "{:?}",
        crd.metadata.finalizers
    );
    let terminating = crd
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| {
            cs.iter()
                .any(|c| c.type_ == "Terminating" && c.status == "True")
        });
    ensure!(terminating, "{:?}", crd.status);
    let held = api.get("held").await?;
    ensure!(held.metadata.deletion_timestamp.is_some());
    let err = Api::<DynamicObject>::namespaced_with(
        t.no_retry.clone(),
        held.metadata.namespace.as_deref().unwrap_or_default(),
        &kube::core::ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk(&group, "v1", "Gadget"),
            "gadgets",
        ),
    )
    .create(&PostParams::default(), &mk("late", &[])?)
    .await
    .expect_err("no creates under a terminating CRD");
    ensure!(status_of(&err)?.0 == 405, "{err}");
    // Releasing the last resource lets the CRD go.
    api.patch(
        "held",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": null}})),
    )
    .await?;
    eventually("CRD gone", Duration::from_secs(60), || async {
        Ok(crds.get_opt(&crd_name).await?.is_none().then_some(()))
    })
    .await?;
    let mut saw = Vec::new();
    while let Ok(Some(ev)) = tokio::time::timeout(Duration::from_secs(5), watch.try_next()).await? {
        match ev {
            WatchEvent::Modified(c) => saw.push(if c.metadata.deletion_timestamp.is_some() {
                "terminating"
            } else {
                "modified"
            }),
            WatchEvent::Deleted(_) => {
                saw.push("deleted");
                break;
            }
            _ => {}
        }
    }
    ensure!(
        saw.first() == Some(&"terminating") && saw.last() == Some(&"deleted"),
        "{saw:?}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dependents_of_absent_owners_are_collected() -> Result<()> {
    let t = Target::new().await?;
    let ns = t.namespace("gc").await?;
    let cms = Api::<ConfigMap>::namespaced(t.client.clone(), &ns);
    let owner = cms
        .create(&PostParams::default(), &mk_cm("owner", &[], &[]))
        .await?;
    let owned_by = |name: &str, owner_name: &str, uid: &str| {
        let mut c = mk_cm(name, &[], &[]);
        c.metadata.owner_references = Some(vec![
            k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference {
                api_version: "v1".into(),
                kind: "ConfigMap".into(),
                name: owner_name.into(),
                uid: uid.into(),
                ..Default::default()
            },
        ]);
        c
    };
    let live_uid = owner.metadata.uid.clone().unwrap_or_default();
    cms.create(
        &PostParams::default(),
        &owned_by("kept", "owner", &live_uid),
    )
    .await?;
    // An owner uid that never existed: the garbage collector deletes the dependent.
    cms.create(
        &PostParams::default(),
        &owned_by("stray", "ghost", "00000000-0000-4000-8000-000000000000"),
    )
    .await?;
    eventually("stray collected", Duration::from_secs(120), || async {
        Ok(cms.get_opt("stray").await?.is_none().then_some(()))
    })
    .await?;
    ensure!(
        cms.get_opt("kept").await?.is_some(),
        "a dependent of a live owner stays"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crd_groups_get_an_api_service_while_served() -> Result<()> {
    let t = Target::new().await?;
    let (_, crd_name) = widget_crd(&t).await?;
    let group = crd_name.trim_start_matches("gadgets.").to_string();
    let path = format!("/apis/apiregistration.k8s.io/v1/apiservices/v1.{group}");
    let svc = eventually("APIService registered", Duration::from_secs(60), || async {
        Ok(get_json(&t.client, &path).await.ok())
    })
    .await?;
    ensure!(
        svc["spec"]["group"] == group.as_str() && svc["spec"]["version"] == "v1",
        "{svc}"
    );
    Api::<CustomResourceDefinition>::all(t.client.clone())
        .delete(&crd_name, &DeleteParams::default())
        .await?;
    eventually("APIService removed", Duration::from_secs(60), || async {
        Ok(get_json(&t.no_retry, &path).await.is_err().then_some(()))
    })
    .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workload_controllers_run_pods_for_statefulsets_daemonsets_and_jobs() -> Result<()> {
    use k8s_openapi::api::core::v1::Pod;
    let t = Target::new().await?;
    let ns = t.namespace("pods").await?;
    let pods = Api::<Pod>::namespaced(t.client.clone(), &ns);
    let template = |app: &str, restart: &str| {
        json!({"metadata": {"labels": {"app": app}},
               "spec": {"restartPolicy": restart,
                        "containers": [{"name": "c", "image": "busybox:1.36", "command": ["true"]}]}})
    };
    let apply = |api_version: &str, kind: &str, name: &str, spec: Value| {
        let client = t.client.clone();
        let ns = ns.clone();
        let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
        let gvk = GroupVersionKind::gvk(group, version, kind);
        let plural = format!("{}s", kind.to_lowercase());
        let name = name.to_string();
        let obj = json!({"apiVersion": api_version, "kind": kind, "metadata": {"name": name}, "spec": spec});
        async move {
            let api: Api<DynamicObject> = Api::namespaced_with(
                client,
                &ns,
                &ApiResource::from_gvk_with_plural(&gvk, &plural),
            );
            api.patch(&name, &PatchParams::apply("t"), &Patch::Apply(&obj))
                .await
        }
    };
    apply(
        "apps/v1",
        "StatefulSet",
        "db",
        json!({"replicas": 2, "serviceName": "db",
        "selector": {"matchLabels": {"app": "db"}}, "template": template("db", "Always")}),
    )
    .await?;
    apply(
        "apps/v1",
        "DaemonSet",
        "agent",
        json!({
        "selector": {"matchLabels": {"app": "agent"}}, "template": template("agent", "Always")}),
    )
    .await?;
    apply(
        "batch/v1",
        "Job",
        "migrate",
        json!({"template": template("migrate", "Never")}),
    )
    .await?;
    let owned = |pods: &[Pod], kind: &str| -> Vec<String> {
        pods.iter()
            .filter(|p| {
                p.metadata
                    .owner_references
                    .iter()
                    .flatten()
                    .any(|r| r.kind == kind && r.controller == Some(true))
            })
            .map(|p| p.name_any())
            .collect()
    };
    eventually(
        "pods of every workload",
        Duration::from_secs(120),
        || async {
            let all = pods.list(&ListParams::default()).await?.items;
            let mut sts = owned(&all, "StatefulSet");
            sts.sort();
            let ds = owned(&all, "DaemonSet");
            let job_done = all.iter().any(|p| {
                p.labels().get("job-name").map(String::as_str) == Some("migrate")
                    && p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Succeeded")
            });
            Ok((sts == ["db-0", "db-1"] && !ds.is_empty() && job_done).then_some(()))
        },
    )
    .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_changes_nothing() -> Result<()> {
    let t = Target::new().await?;
    let ns = t.namespace("dry").await?;
    let cms = Api::<ConfigMap>::namespaced(t.client.clone(), &ns);
    let pp = PostParams {
        dry_run: true,
        ..Default::default()
    };
    let out = cms.create(&pp, &mk_cm("ghost", &[], &[("a", "1")])).await?;
    ensure!(out.name_any() == "ghost");
    ensure!(cms.get_opt("ghost").await?.is_none(), "not persisted");

    cms.patch(
        "real",
        &PatchParams::apply("flotilla"),
        &Patch::Apply(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "real"}, "data": {"a": "1"}})),
    )
    .await?;
    let preview = cms
        .patch(
            "real",
            &PatchParams::apply("flotilla").dry_run(),
            &Patch::Apply(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "real"}, "data": {"a": "2"}})),
        )
        .await?;
    ensure!(
        preview
            .data
            .as_ref()
            .and_then(|d| d.get("a"))
            .map(String::as_str)
            == Some("2")
    );
    let stored = cms.get("real").await?;
    ensure!(
        stored
            .data
            .as_ref()
            .and_then(|d| d.get("a"))
            .map(String::as_str)
            == Some("1")
    );
    Ok(())
}

async fn widget_crd(t: &Target) -> Result<(Api<DynamicObject>, String)> {
    let group = format!("{}.conformance.flotilla.dev", t.unique("s"));
    let crd_name = format!("gadgets.{group}");
    let crd: CustomResourceDefinition = serde_json::from_value(json!({
        "metadata": {"name": crd_name},
        "spec": {"group": group, "scope": "Namespaced",
                 "names": {"plural": "gadgets", "singular": "gadget", "kind": "Gadget"},
                 "versions": [{"name": "v1", "served": true, "storage": true,
                               "subresources": {"status": {}},
                               "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}]}
    }))?;
    let crds = Api::<CustomResourceDefinition>::all(t.client.clone());
    crds.create(&PostParams::default(), &crd).await?;
    let gvk = GroupVersionKind::gvk(&group, "v1", "Gadget");
    let ar = ApiResource::from_gvk_with_plural(&gvk, "gadgets");
    let ns = t.namespace("status").await?;
    let api: Api<DynamicObject> = Api::namespaced_with(t.client.clone(), &ns, &ar);
    // Wait until the new kind is served.
    eventually("gadgets served", Duration::from_secs(30), || async {
        Ok(api.list(&ListParams::default()).await.ok().map(|_| ()))
    })
    .await?;
    Ok((api, crd_name))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn custom_resources_follow_their_structural_schema() -> Result<()> {
    let t = Target::new().await?;
    let group = format!("{}.conformance.flotilla.dev", t.unique("p"));
    let crd: CustomResourceDefinition = serde_json::from_value(json!({
        "metadata": {"name": format!("sprockets.{group}")},
        "spec": {"group": group, "scope": "Namespaced",
                 "names": {"plural": "sprockets", "singular": "sprocket", "kind": "Sprocket"},
                 "versions": [{"name": "v1", "served": true, "storage": true,
                   "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                     "spec": {"type": "object", "required": ["size"], "properties": {
                       "size": {"type": "integer"},
                       "mode": {"type": "string", "enum": ["fast", "slow"], "default": "slow"},
                       "extra": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}}}}}]}
    }))?;
    Api::<CustomResourceDefinition>::all(t.client.clone())
        .create(&PostParams::default(), &crd)
        .await?;
    let ar = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk(&group, "v1", "Sprocket"),
        "sprockets",
    );
    let ns = t.namespace("prune").await?;
    let api: Api<DynamicObject> = Api::namespaced_with(t.client.clone(), &ns, &ar);
    eventually("sprockets served", Duration::from_secs(30), || async {
        Ok(api.list(&ListParams::default()).await.ok().map(|_| ()))
    })
    .await?;
    let mk = |name: &str, spec: Value| -> Result<DynamicObject> {
        Ok(serde_json::from_value(
            json!({"apiVersion": format!("{group}/v1"), "kind": "Sprocket",
            "metadata": {"name": name}, "spec": spec, "unknownTop": 1}),
        )?)
    };
    // Unknown fields vanish silently; defaults appear; preserved subtrees stay.
    let created = api
        .create(
            &PostParams::default(),
            &mk(
                "a",
                json!({"size": 3, "typo": true, "extra": {"any": {"thing": 1}}}),
            )?,
        )
        .await?;
    let v = serde_json::to_value(&created)?;
    ensure!(
        v.get("unknownTop").is_none() && v["spec"].get("typo").is_none(),
        "{v}"
    );
    ensure!(
        v["spec"]["mode"] == "slow" && v["spec"]["extra"]["any"]["thing"] == 1,
        "{v}"
    );
    // Wrong types, missing required fields and values outside the enum are refused.
    for (name, spec) in [
        ("b", json!({"size": "three"})),
        ("c", json!({"mode": "fast"})),
        ("d", json!({"size": 1, "mode": "warp"})),
    ] {
        let err = api
            .create(&PostParams::default(), &mk(name, spec.clone())?)
            .await
            .expect_err("refused");
        ensure!(status_of(&err)?.0 == 422, "{spec}: {err}");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_subresource_and_generation() -> Result<()> {
    let t = Target::new().await?;
    let (api, crd_name) = widget_crd(&t).await?;
    let g: DynamicObject = serde_json::from_value(json!({
        "apiVersion": api.resource_url().split('/').skip(2).take(2).collect::<Vec<_>>().join("/"),
        "kind": "Gadget", "metadata": {"name": "g"}, "spec": {"size": 1},
        "status": {"phase": "ignored-on-create"}
    }))?;
    let created = api.create(&PostParams::default(), &g).await?;
    ensure!(created.metadata.generation == Some(1));
    ensure!(
        created.data.get("status").is_none(),
        "status dropped on create"
    );

    // Status through the subresource: no generation bump, spec untouched.
    let s = api
        .patch_status(
            "g",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"phase": "Ready"}, "spec": {"size": 100}})),
        )
        .await?;
    ensure!(s.data["status"]["phase"] == "Ready");
    ensure!(s.data["spec"]["size"] == 1, "spec ignored on /status");
    ensure!(s.metadata.generation == Some(1));

    // Status through the main endpoint is ignored; a spec change bumps generation.
    let m = api
        .patch(
            "g",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"phase": "Hacked"}, "spec": {"size": 2}})),
        )
        .await?;
    ensure!(m.data["status"]["phase"] == "Ready");
    ensure!(m.metadata.generation == Some(2));
    // A metadata-only change does not.
    let m = api
        .patch(
            "g",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"x": "y"}}})),
        )
        .await?;
    ensure!(m.metadata.generation == Some(2));
    Api::<CustomResourceDefinition>::all(t.client.clone())
        .delete(&crd_name, &DeleteParams::default())
        .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deployment_generation_bumps_only_on_spec_change() -> Result<()> {
    let t = Target::new().await?;
    let ns = t.namespace("gen").await?;
    let deploys = Api::<Deployment>::namespaced(t.client.clone(), &ns);
    let d: Deployment = serde_json::from_value(mk_deploy("g", 1, "nginx:1.27"))?;
    let d = deploys.create(&PostParams::default(), &d).await?;
    ensure!(d.metadata.generation == Some(1));
    let d = deploys
        .patch(
            "g",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {"a": "b"}}})),
        )
        .await?;
    ensure!(d.metadata.generation == Some(1));
    let d = deploys
        .patch(
            "g",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": 3}})),
        )
        .await?;
    ensure!(d.metadata.generation == Some(2));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finalizers_hold_deletion_until_removed() -> Result<()> {
    let t = Target::new().await?;
    let ns = t.namespace("fin").await?;
    let cms = Api::<ConfigMap>::namespaced(t.client.clone(), &ns);
    let mut cm = mk_cm("held", &[], &[]);
    cm.metadata.finalizers = Some(vec!["flotilla.dev/test".into()]);
    cms.create(&PostParams::default(), &cm).await?;
    // Held by a finalizer: the answer is the object, now terminating.
    let held = cms
        .delete("held", &DeleteParams::default())
        .await?
        .left()
        .context("an object held by a finalizer answers with the object")?;
    ensure!(held.metadata.deletion_timestamp.is_some());
    // A terminating object takes no new finalizers.
    let add = json!({"metadata": {"finalizers": ["flotilla.dev/test", "example.com/another"]}});
    let err = cms
        .patch("held", &PatchParams::default(), &Patch::Merge(&add))
        .await
        .expect_err("no new finalizers while terminating");
    let (code, _, msg) = status_of(&err)?;
    ensure!(
        code == 422 && msg.contains("no new finalizers"),
        "{code} {msg}"
    );
    let held = cms.get("held").await?;
    ensure!(
        held.metadata.deletion_timestamp.is_some(),
        "deletionTimestamp set"
    );
    cms.patch(
        "held",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": null}})),
    )
    .await?;
    eventually("object removed", Duration::from_secs(30), || async {
        Ok(cms.get_opt("held").await?.is_none().then_some(()))
    })
    .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn propagation_policy_controls_owned_objects() -> Result<()> {
    let t = Target::new().await?;
    let ns = t.namespace("gc").await?;
    let cms = Api::<ConfigMap>::namespaced(t.client.clone(), &ns);
    let owned_by = |owner: &ConfigMap, name: &str| -> Result<ConfigMap> {
        let mut c = mk_cm(name, &[], &[]);
        c.metadata.owner_references = Some(vec![
            k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference {
                api_version: "v1".into(),
                kind: "ConfigMap".into(),
                name: owner.name_any(),
                uid: owner.metadata.uid.clone().context("uid")?,
                ..Default::default()
            },
        ]);
        Ok(c)
    };
    for (policy, owner, child) in [
        ("Background", "o-bg", "c-bg"),
        ("Foreground", "o-fg", "c-fg"),
        ("Orphan", "o-or", "c-or"),
    ] {
        let o = cms
            .create(&PostParams::default(), &mk_cm(owner, &[], &[]))
            .await?;
        cms.create(&PostParams::default(), &owned_by(&o, child)?)
            .await?;
        let dp = match policy {
            "Background" => DeleteParams::background(),
            "Foreground" => DeleteParams::foreground(),
            _ => DeleteParams::orphan(),
        };
        cms.delete(owner, &dp).await?;
        eventually("owner gone", Duration::from_secs(60), || async {
            Ok(cms.get_opt(owner).await?.is_none().then_some(()))
        })
        .await?;
        if policy == "Orphan" {
            let c = cms.get(child).await?;
            ensure!(
                c.metadata.owner_references.unwrap_or_default().is_empty(),
                "orphaned child loses its owner reference"
            );
        } else {
            eventually("dependent collected", Duration::from_secs(60), || async {
                Ok(cms.get_opt(child).await?.is_none().then_some(()))
            })
            .await?;
        }
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn namespace_deletion_removes_its_contents() -> Result<()> {
    let t = Target::new().await?;
    let ns = t.namespace("nsdel").await?;
    let cms = Api::<ConfigMap>::namespaced(t.client.clone(), &ns);
    cms.create(&PostParams::default(), &mk_cm("inside", &[], &[]))
        .await?;
    let nss = Api::<Namespace>::all(t.client.clone());
    nss.delete(&ns, &DeleteParams::default()).await?;
    eventually("namespace gone", Duration::from_secs(120), || async {
        Ok(nss.get_opt(&ns).await?.is_none().then_some(()))
    })
    .await?;
    ensure!(cms.get_opt("inside").await?.is_none());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secret_string_data_is_stored_as_data() -> Result<()> {
    let t = Target::new().await?;
    let ns = t.namespace("sec").await?;
    let secrets = Api::<Secret>::namespaced(t.client.clone(), &ns);
    let s: Secret = serde_json::from_value(
        json!({"metadata": {"name": "s"}, "stringData": {"token": "hunter2"}}),
    )?;
    let s = secrets.create(&PostParams::default(), &s).await?;
    let data = s.data.unwrap_or_default();
    ensure!(data.get("token").map(|b| b.0.as_slice()) == Some(b"hunter2".as_slice()));
    ensure!(s.string_data.is_none());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_real_status_codes() -> Result<()> {
    let t = Target::new().await?;
    let ns = t.namespace("bad").await?;
    let path = format!("/api/v1/namespaces/{ns}/configmaps");

    // Malformed JSON.
    let err = raw(&t.client, "POST", &path, "application/json", b"{not json")
        .await?
        .expect_err("malformed");
    let (code, reason, _) = status_of(&err)?;
    ensure!(code == 400 && reason == "BadRequest", "{code} {reason}");

    // Unknown resource.
    let err = raw(
        &t.client,
        "GET",
        &format!("/api/v1/namespaces/{ns}/frobnicators"),
        "application/json",
        b"",
    )
    .await?
    .expect_err("unknown kind");
    let (code, reason, _) = status_of(&err)?;
    ensure!(code == 404 && reason == "NotFound", "{code} {reason}");

    // Invalid name.
    let body = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "Not_Valid"}});
    let err = raw(
        &t.client,
        "POST",
        &path,
        "application/json",
        body.to_string().as_bytes(),
    )
    .await?
    .expect_err("invalid name");
    let (code, reason, _) = status_of(&err)?;
    ensure!(code == 422 && reason == "Invalid", "{code} {reason}");

    // Namespace in the body that disagrees with the URL.
    let body = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x", "namespace": "elsewhere"}});
    let err = raw(
        &t.client,
        "POST",
        &path,
        "application/json",
        body.to_string().as_bytes(),
    )
    .await?
    .expect_err("namespace mismatch");
    ensure!(status_of(&err)?.0 == 400);

    // Apply without a field manager.
    let err = raw(
        &t.client,
        "PATCH",
        &format!("{path}/x"),
        "application/apply-patch+yaml",
        b"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\n",
    )
    .await?
    .expect_err("apply needs fieldManager");
    ensure!(status_of(&err)?.0 == 422);

    // Unsupported patch type.
    let err = raw(&t.client, "PATCH", &format!("{path}/x"), "text/plain", b"x")
        .await?
        .expect_err("unsupported media type");
    ensure!(status_of(&err)?.0 == 415);

    // Wrong resourceVersion on update.
    let cms = Api::<ConfigMap>::namespaced(t.client.clone(), &ns);
    let mut cm = cms
        .create(&PostParams::default(), &mk_cm("rv", &[], &[]))
        .await?;
    cm.metadata.resource_version = Some("1".into());
    let err = cms
        .replace("rv", &PostParams::default(), &cm)
        .await
        .expect_err("wrong rv");
    let (code, reason, _) = status_of(&err)?;
    ensure!(code == 409 && reason == "Conflict", "{code} {reason}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn yaml_bodies_are_accepted() -> Result<()> {
    let t = Target::new().await?;
    let ns = t.namespace("yaml").await?;
    let body = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: from-yaml\ndata:\n  k: v\n";
    let v = raw(
        &t.client,
        "POST",
        &format!("/api/v1/namespaces/{ns}/configmaps"),
        "application/yaml",
        body.as_bytes(),
    )
    .await??;
    ensure!(v["data"]["k"] == "v");
    Ok(())
}

/// Resource quantities are stored in canonical form (`1000m` → `1`, numbers become strings,
/// `1.5Gi` → `1536Mi`) and a value that is not a quantity is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quantities_are_stored_in_canonical_form() -> Result<()> {
    let t = Target::new().await?;
    let ns = t.namespace("quantities").await?;
    let api: Api<DynamicObject> = Api::namespaced_with(
        t.client.clone(),
        &ns,
        &ApiResource::from_gvk(&GroupVersionKind::gvk("apps", "v1", "Deployment")),
    );
    let mut d = mk_deploy("sized", 1, "nginx:1.27");
    d["spec"]["template"]["spec"]["containers"][0]["resources"] = json!({
        "limits": {"cpu": "1000m", "memory": "1024Mi", "ephemeral-storage": "2000000"},
        "requests": {"cpu": 0.5, "memory": "1.5Gi"}});
    api.patch(
        "sized",
        &PatchParams::apply("conformance"),
        &Patch::Apply(&d),
    )
    .await?;
    let live = serde_json::to_value(api.get("sized").await?)?;
    let res = &live["spec"]["template"]["spec"]["containers"][0]["resources"];
    ensure!(
        res == &json!({"limits": {"cpu": "1", "memory": "1Gi", "ephemeral-storage": "2M"},
                        "requests": {"cpu": "500m", "memory": "1536Mi"}}),
        "{res}"
    );
    // The diff normalizes what the server canonicalized: Git's forms are no drift.
    ensure!(
        flotilla_controller::diff::diff(&d, Some(&live), "conformance").in_sync(),
        "{:?}",
        flotilla_controller::diff::diff(&d, Some(&live), "conformance")
    );
    let mut bad = mk_deploy("badly-sized", 1, "nginx:1.27");
    bad["spec"]["template"]["spec"]["containers"][0]["resources"] =
        json!({"limits": {"cpu": "one"}});
    let e = api
        .patch(
            "badly-sized",
            &PatchParams::apply("conformance"),
            &Patch::Apply(&bad),
        )
        .await
        .expect_err("not a quantity");
    let (code, _, message) = status_of(&e)?;
    ensure!(
        code == 400 && message.contains("quantities must match"),
        "{code} {message}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_account_tokens_are_requested_and_reviewed() -> Result<()> {
    use k8s_openapi::api::authentication::v1::{TokenRequest, TokenReview};
    use k8s_openapi::api::core::v1::ServiceAccount;
    let t = Target::new().await?;
    let ns = t.namespace("satoken").await?;
    let sas = Api::<ServiceAccount>::namespaced(t.client.clone(), &ns);
    let sa: ServiceAccount = serde_json::from_value(json!({"metadata": {"name": "robot"}}))?;
    let sa = sas.create(&PostParams::default(), &sa).await?;
    let uid = sa.metadata.uid.clone().unwrap_or_default();
    let request = |spec: Value| -> Result<TokenRequest> {
        Ok(serde_json::from_value(
            json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": spec}),
        )?)
    };
    // Too short a validity is invalid; a missing ServiceAccount is not found.
    let e = sas
        .create_token_request(
            "robot",
            &PostParams::default(),
            &request(json!({"audiences": [], "expirationSeconds": 599}))?,
        )
        .await
        .err()
        .context("a 599 s token")?;
    let (code, reason, message) = status_of(&e)?;
    ensure!(
        code == 422
            && reason == "Invalid"
            && message.contains("spec.expirationSeconds")
            && message.contains("may not specify a duration less than 10 minutes"),
        "{code} {reason} {message}"
    );
    let e = sas
        .create_token_request(
            "nobody",
            &PostParams::default(),
            &request(json!({"audiences": []}))?,
        )
        .await
        .err()
        .context("a token for a missing ServiceAccount")?;
    ensure!(status_of(&e)?.0 == 404, "{e}");
    // A token for the API server's audiences, valid for the default hour.
    let made = sas
        .create_token_request(
            "robot",
            &PostParams::default(),
            &request(json!({"audiences": []}))?,
        )
        .await?;
    let spec = made.spec.clone().unwrap_or_default();
    ensure!(
        spec.expiration_seconds == Some(3600)
            && spec.audiences.as_ref().is_some_and(|a| !a.is_empty()),
        "{spec:?}"
    );
    let status = made.status.context("TokenRequest status")?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs() as i64;
    let expires = status
        .expiration_timestamp
        .context("expirationTimestamp")?
        .0
        .as_second();
    let left = expires - now;
    ensure!((3000..=3700).contains(&left), "expires in {left} s");
    let token = status.token.context("status.token")?;
    ensure!(token.split('.').count() == 3, "a JWT");

    // TokenReview says who it is.
    let reviews = Api::<TokenReview>::all(t.client.clone());
    let review = |token: &str, audiences: Value| -> Result<TokenReview> {
        Ok(serde_json::from_value(
            json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview",
            "spec": {"token": token, "audiences": audiences}}),
        )?)
    };
    let r = reviews
        .create(&PostParams::default(), &review(&token, json!([]))?)
        .await?
        .status
        .context("review status")?;
    let user = r.user.clone().unwrap_or_default();
    let groups = user.groups.clone().unwrap_or_default();
    ensure!(
        r.authenticated == Some(true)
            && user.username.as_deref()
                == Some(format!("system:serviceaccount:{ns}:robot").as_str())
            && user.uid.as_deref() == Some(uid.as_str())
            && groups.iter().any(|g| g == "system:serviceaccounts")
            && groups
                .iter()
                .any(|g| *g == format!("system:serviceaccounts:{ns}"))
            && groups.iter().any(|g| g == "system:authenticated")
            && r.audiences.as_ref().is_some_and(|a| !a.is_empty()),
        "{r:?}"
    );
    // Another audience, a garbage token: not authenticated (and no error status).
    for (tok, auds) in [
        (token.as_str(), json!(["https://not-this-cluster.example"])),
        ("garbage", json!([])),
    ] {
        let r = reviews
            .create(&PostParams::default(), &review(tok, auds)?)
            .await?
            .status
            .context("review status")?;
        ensure!(
            r.authenticated != Some(true) && r.user.and_then(|u| u.username).is_none(),
            "{tok}"
        );
    }
    // No token at all is a bad request.
    let e = raw(
        &t.client,
        "POST",
        "/apis/authentication.k8s.io/v1/tokenreviews",
        "application/json",
        br#"{"apiVersion":"authentication.k8s.io/v1","kind":"TokenReview","spec":{}}"#,
    )
    .await?
    .err()
    .context("a review without a token")?;
    let (code, _, message) = status_of(&e)?;
    ensure!(
        code == 400 && message.contains("token is required"),
        "{code} {message}"
    );

    // The token authenticates ordinary requests as the ServiceAccount.
    let mut cfg = match &t.sim {
        Some(sim) => {
            let name = sim.clusters().first().map(|c| c.name.clone());
            kube::Config::from_custom_kubeconfig(
                kube::config::Kubeconfig::from_yaml(&sim.kubeconfig_yaml())?,
                &kube::config::KubeConfigOptions {
                    context: name,
                    ..Default::default()
                },
            )
            .await?
        }
        None => {
            let path = std::env::var(flotilla_tests::REAL_CLUSTER_ENV)?;
            kube::Config::from_custom_kubeconfig(
                kube::config::Kubeconfig::read_from(path)?,
                &Default::default(),
            )
            .await?
        }
    };
    cfg.auth_info = kube::config::AuthInfo {
        token: Some(token.clone().into()),
        ..Default::default()
    };
    let as_robot = Client::try_from(cfg)?;
    let me = raw(
        &as_robot,
        "POST",
        "/apis/authentication.k8s.io/v1/selfsubjectreviews",
        "application/json",
        br#"{"apiVersion":"authentication.k8s.io/v1","kind":"SelfSubjectReview"}"#,
    )
    .await?
    .map_err(|e| anyhow!("SelfSubjectReview as the ServiceAccount: {e}"))?;
    ensure!(
        me.pointer("/status/userInfo/username")
            == Some(&json!(format!("system:serviceaccount:{ns}:robot"))),
        "{me}"
    );

    // Deleting the ServiceAccount invalidates its tokens.
    sas.delete("robot", &DeleteParams::default()).await?;
    eventually(
        "the deleted ServiceAccount's token refused",
        Duration::from_secs(60),
        || async {
            let r = reviews
                .create(&PostParams::default(), &review(&token, json!([]))?)
                .await?
                .status
                .context("review status")?;
            Ok((r.authenticated != Some(true)).then_some(()))
        },
    )
    .await?;
    Ok(())
}
