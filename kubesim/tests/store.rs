//! The store's history through its public API: events share the stored versions, the history
//! is bounded by bytes as well as by count, list snapshots and DELETED events stay exact.

use kubesim::fields::Scope;
use kubesim::store::{DeleteOpts, EventType, INITIAL_RV, PatchKind, Store, WriteCtx};
use serde_json::json;

fn ctx() -> WriteCtx {
    WriteCtx {
        manager: "test".into(),
        dry_run: false,
        field_validation: Default::default(),
        warnings: Default::default(),
    }
}

fn store_with_namespace(history_bytes: usize) -> Store {
    let store = Store::new(10_000, 64).with_history_bytes(history_bytes);
    let ns = store.lookup("", "v1", "namespaces").expect("namespaces");
    store
        .create(&ns, "", json!({"metadata": {"name": "default"}}), &ctx())
        .expect("namespace");
    store
}

#[test]
fn history_bounded_by_bytes_answers_gone_before_what_it_dropped() {
    let store = store_with_namespace(4_000);
    let cm = store.lookup("", "v1", "configmaps").expect("configmaps");
    let first = store.resource_version();
    for i in 0..40 {
        store
            .create(
                &cm,
                "default",
                json!({"metadata": {"name": format!("cm-{i}")}, "data": {"k": "v".repeat(200)}}),
                &ctx(),
            )
            .expect("create");
    }
    let gr = cm.group_resource();
    let e = store
        .watch_start(&gr, None, Some(first))
        .err()
        .expect("dropped history answers 410");
    assert_eq!(e.code, 410);
    let recent = store.resource_version() - 3;
    let start = store.watch_start(&gr, None, Some(recent)).expect("recent");
    assert_eq!(start.backlog.len(), 3);
    // Without a byte bound the same writes are all still there.
    let unbounded = store_with_namespace(0);
    for i in 0..40 {
        unbounded
            .create(
                &cm,
                "default",
                json!({"metadata": {"name": format!("cm-{i}")}, "data": {"k": "v".repeat(200)}}),
                &ctx(),
            )
            .expect("create");
    }
    let all = unbounded
        .watch_start(&gr, None, Some(INITIAL_RV))
        .expect("all history");
    assert_eq!(all.backlog.len(), 40);
}

#[test]
fn events_carry_the_version_before_and_exact_lists_rebuild_it() {
    let store = store_with_namespace(0);
    let cm = store.lookup("", "v1", "configmaps").expect("configmaps");
    let created = store
        .create(
            &cm,
            "default",
            json!({"metadata": {"name": "a", "labels": {"tier": "web"}}, "data": {"v": "1"}}),
            &ctx(),
        )
        .expect("create");
    let at_create = store.resource_version();
    let patch = br#"{"metadata": {"labels": {"tier": "db"}}, "data": {"v": "2"}}"#;
    let (updated, _) = store
        .patch(
            &cm,
            "default",
            "a",
            PatchKind::Merge,
            patch,
            Scope::Main,
            &ctx(),
        )
        .expect("patch");
    assert_eq!(updated.meta().label("tier"), Some("db"));
    let start = store
        .watch_start(&cm.group_resource(), None, Some(at_create))
        .expect("watch");
    let ev = &start.backlog[0];
    assert_eq!(ev.kind, EventType::Modified);
    let prev = ev.prev.as_ref().expect("prev");
    assert_eq!(prev.meta().label("tier"), Some("web"));
    assert!(std::sync::Arc::ptr_eq(prev, &created), "shared, not copied");
    assert_eq!(ev.object_json(), updated.json());
    let page = store
        .list(&cm, Some("default"), |_| true, None, None, Some(at_create))
        .expect("exact list");
    let v = page.values().expect("values");
    assert_eq!(v[0]["data"]["v"], "1");
    assert_eq!(page.rv, at_create);
    // A DELETED event carries the deletion's resourceVersion.
    let before_delete = store.resource_version();
    store
        .delete(&cm, "default", "a", &DeleteOpts::default())
        .expect("delete");
    let start = store
        .watch_start(&cm.group_resource(), None, Some(before_delete))
        .expect("watch");
    let ev = &start.backlog[0];
    assert_eq!(ev.kind, EventType::Deleted);
    assert_eq!(&*ev.object.meta().resource_version, ev.rv.to_string());
    let value = ev.object.value().expect("parses");
    assert_eq!(value["data"]["v"], "2");
}
