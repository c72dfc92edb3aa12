//! Listing applications as the API does at fleet scale: 50,000 apps from the watch-kept index,
//! filtered, RBAC-checked (once per project where no rule names apps) and paged, for an admin
//! and for a user whose policy names projects and a deny on some apps of one project.

use std::hint::black_box;
use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use flotilla_controller::types::Application;
use flotilla_server::query::{AppIndex, ListQuery};
use flotilla_server::rbac::{AppVisibility, Policy};

fn apps(n: usize) -> Vec<Arc<Application>> {
    (0..n)
        .map(|i| {
            Arc::new(
                serde_json::from_value(serde_json::json!({
                    "apiVersion": "argoproj.io/v1alpha1", "kind": "Application",
                    "metadata": {"name": format!("app-{i:05}"), "namespace": "argocd",
                                 "labels": {"team": format!("team-{}", i % 20)}},
                    "spec": {"project": format!("proj-{}", i % 50),
                             "source": {"repoURL": "https://git.example.com/apps.git", "path": format!("apps/app-{i:05}"), "targetRevision": "main"},
                             "destination": {"name": format!("cluster-{:03}", i % 500), "namespace": format!("app-{i:05}")}},
                    "status": {"sync": {"status": "Synced", "revision": "0123456789abcdef0123456789abcdef01234567"},
                               "health": {"status": "Healthy"}}}))
                .expect("app"),
            )
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let admin = rt.block_on(Policy::new("", None)).expect("policy");
    let team = rt
        .block_on(Policy::new(
            "p, role:team, applications, get, proj-1*/*, allow\np, role:team, applications, get, proj-12/app-0001*, deny\ng, team-a, role:team\n",
            None,
        ))
        .expect("policy");
    let index = AppIndex::default();
    for a in apps(50_000) {
        index.upsert(&a);
    }
    let first_page = ListQuery {
        limit: Some(500),
        ..Default::default()
    };
    let filtered = ListQuery {
        project: Some("proj-7".into()),
        limit: Some(500),
        ..Default::default()
    };
    let groups = vec!["team-a".to_string()];
    let mut g = c.benchmark_group("list-50k");
    g.sample_size(10);
    g.bench_function("admin first page", |b| {
        b.iter(|| black_box(&index).page(&first_page, &AppVisibility::new(&admin, "admin", &[])))
    });
    g.bench_function("group policy first page", |b| {
        b.iter(|| black_box(&index).page(&first_page, &AppVisibility::new(&team, "alice", &groups)))
    });
    g.bench_function("admin one project", |b| {
        b.iter(|| black_box(&index).page(&filtered, &AppVisibility::new(&admin, "admin", &[])))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
