//! Printing results: aligned tables (`wide` adds the source), or the JSON/YAML the API
//! returned, for scripts.

use serde_json::Value;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Table,
    Wide,
    Json,
    Yaml,
}

fn s(v: &Value, k: &str) -> String {
    v[k].as_str().unwrap_or_default().to_string()
}

/// Rows as columns padded to their widest cell.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            widths[i] = widths[i].max(c.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        cells
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:<w$}", w = widths[i]))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_string()
    };
    let mut out = vec![line(header.to_vec())];
    out.extend(
        rows.iter()
            .map(|r| line(r.iter().map(String::as_str).collect())),
    );
    out.join("\n")
}

/// Application summaries as the chosen format.
pub fn render_apps(apps: &[Value], format: Format) -> String {
    match format {
        Format::Json | Format::Yaml => render_value(&Value::Array(apps.to_vec()), format),
        Format::Table | Format::Wide => {
            let wide = format == Format::Wide;
            let mut header = vec!["NAME", "PROJECT", "CLUSTER", "NAMESPACE", "SYNC", "HEALTH"];
            if wide {
                header.extend(["REPO", "PATH", "TARGET", "REVISION"]);
            }
            let rows: Vec<Vec<String>> = apps
                .iter()
                .map(|a| {
                    let cluster = Some(s(a, "destName"))
                        .filter(|n| !n.is_empty())
                        .unwrap_or_else(|| s(a, "destServer"));
                    let mut r = vec![
                        s(a, "name"),
                        s(a, "project"),
                        cluster,
                        s(a, "destNamespace"),
                        s(a, "sync"),
                        s(a, "health"),
                    ];
                    if wide {
                        r.extend([
                            s(a, "repoUrl"),
                            s(a, "path"),
                            s(a, "targetRevision"),
                            s(a, "revision").chars().take(7).collect(),
                        ]);
                    }
                    r
                })
                .collect();
            table(&header, &rows)
        }
    }
}

pub fn print_apps(apps: &[Value], format: Format) {
    println!("{}", render_apps(apps, format));
}

/// Any API answer: JSON or YAML as returned; tables print it as YAML (readable).
pub fn render_value(v: &Value, format: Format) -> String {
    match format {
        Format::Json => serde_json::to_string_pretty(v).unwrap_or_default(),
        _ => serde_yaml::to_string(v).unwrap_or_default(),
    }
}

pub fn print_value(v: &Value, format: Format) {
    println!("{}", render_value(v, format).trim_end());
}

/// An app's resources: kind, name, sync, health (wide: the differing paths), each managed
/// workload followed by what the cluster made for it (indented: ReplicaSets, Pods, Jobs).
pub fn render_resources(v: &Value, wide: bool) -> String {
    let mut header = vec![
        "GROUP",
        "KIND",
        "NAMESPACE",
        "NAME",
        "STATUS",
        "HEALTH",
        "PRUNE",
    ];
    if wide {
        header.push("DIFFERENCES");
    }
    let children: Vec<&Value> = v["children"].as_array().into_iter().flatten().collect();
    let mut rows: Vec<Vec<String>> = Vec::new();
    // Depth-first below `uid`, indented by `depth`.
    fn below(
        uid: &str,
        depth: usize,
        children: &[&Value],
        rows: &mut Vec<Vec<String>>,
        wide: bool,
    ) {
        if uid.is_empty() || depth > 8 {
            return;
        }
        for c in children.iter().filter(|c| c["parentUid"] == uid) {
            let mut row = vec![
                s(c, "group"),
                format!("{}└ {}", "  ".repeat(depth - 1), s(c, "kind")),
                s(c, "namespace"),
                s(c, "name"),
                s(c, "info"),
                c["health"]["status"].as_str().unwrap_or_default().into(),
                String::new(),
            ];
            if wide {
                row.push(String::new());
            }
            rows.push(row);
            below(
                c["uid"].as_str().unwrap_or_default(),
                depth + 1,
                children,
                rows,
                wide,
            );
        }
    }
    for r in v["resources"].as_array().into_iter().flatten() {
        let mut row = vec![
            s(r, "group"),
            s(r, "kind"),
            s(r, "namespace"),
            s(r, "name"),
            s(r, "status"),
            r["health"]["status"].as_str().unwrap_or_default().into(),
            if r["requiresPruning"] == true {
                "prune".into()
            } else {
                String::new()
            },
        ];
        if wide {
            row.push(
                r["differences"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                    .collect::<Vec<_>>()
                    .join(","),
            );
        }
        rows.push(row);
        below(
            r["uid"].as_str().unwrap_or_default(),
            1,
            &children,
            &mut rows,
            wide,
        );
    }
    table(&header, &rows)
}

/// Deployment history: id, when, revision, who.
pub fn render_history(v: &Value) -> String {
    let rows: Vec<Vec<String>> = v["history"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|h| {
            let revision = h["revision"]
                .as_str()
                .map(str::to_string)
                .or_else(|| {
                    h["revisions"].as_array().map(|r| {
                        r.iter()
                            .filter_map(Value::as_str)
                            .collect::<Vec<_>>()
                            .join(",")
                    })
                })
                .unwrap_or_default();
            vec![
                h["id"].to_string(),
                s(h, "deployedAt"),
                revision,
                h["initiatedBy"]["username"]
                    .as_str()
                    .map(str::to_string)
                    .unwrap_or_else(|| {
                        if h["initiatedBy"]["automated"] == true {
                            "automated".into()
                        } else {
                            String::new()
                        }
                    }),
            ]
        })
        .collect();
    table(&["ID", "DEPLOYED", "REVISION", "BY"], &rows)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn resources_and_history_tables() {
        let r = json!({"resources": [
            {"group": "apps", "kind": "Deployment", "namespace": "web", "name": "web", "status": "OutOfSync",
             "health": {"status": "Healthy"}, "differences": [".spec.replicas"], "uid": "d1"},
            {"group": "", "kind": "ConfigMap", "namespace": "web", "name": "old", "status": "OutOfSync", "requiresPruning": true}],
            "children": [
              {"group": "", "kind": "Pod", "namespace": "web", "name": "web-1-a", "uid": "p1", "parentUid": "r1", "info": "Running", "health": {"status": "Healthy"}},
              {"group": "apps", "kind": "ReplicaSet", "namespace": "web", "name": "web-1", "uid": "r1", "parentUid": "d1", "info": "1/1 ready", "health": {"status": "Healthy"}}]});
        let t = render_resources(&r, true);
        let lines: Vec<&str> = t.lines().collect();
        assert!(
            lines[0].starts_with(
                "GROUP  KIND          NAMESPACE  NAME     STATUS     HEALTH   PRUNE  DIFFERENCES"
            ),
            "{t}"
        );
        assert!(lines[1].ends_with("Healthy         .spec.replicas"), "{t}");
        assert!(
            lines[2].starts_with("apps   └ ReplicaSet  web        web-1    1/1 ready"),
            "{t}"
        );
        assert!(
            lines[3].starts_with("         └ Pod       web        web-1-a  Running"),
            "{t}"
        );
        assert!(lines[4].ends_with("prune"), "{t}");
        let h = json!({"history": [{"id": 0, "deployedAt": "2026-11-30T10:00:00Z", "revision": "abc",
                                     "initiatedBy": {"username": "alice"}}]});
        assert_eq!(
            render_history(&h).lines().nth(1),
            Some("0   2026-11-30T10:00:00Z  abc       alice")
        );
    }

    #[test]
    fn tables_align_and_wide_adds_the_source() {
        let apps = vec![
            json!({"name": "web", "project": "default", "destName": "prod", "destNamespace": "web",
                   "sync": "Synced", "health": "Healthy", "repoUrl": "https://git/x", "path": "web",
                   "targetRevision": "main", "revision": "0123456789"}),
            json!({"name": "a-much-longer-name", "project": "team", "destServer": "https://k8s",
                   "destNamespace": "x", "sync": "OutOfSync", "health": "Progressing"}),
        ];
        let t = render_apps(&apps, Format::Table);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(
            lines[0],
            "NAME                PROJECT  CLUSTER      NAMESPACE  SYNC       HEALTH"
        );
        assert_eq!(
            lines[1],
            "web                 default  prod         web        Synced     Healthy"
        );
        assert!(lines[2].starts_with("a-much-longer-name  team     https://k8s"));
        let w = render_apps(&apps, Format::Wide);
        assert!(
            w.lines()
                .nth(1)
                .is_some_and(|l| l.ends_with("https://git/x  web   main    0123456")),
            "{w}"
        );
        let j: Value = serde_json::from_str(&render_apps(&apps, Format::Json)).expect("json");
        assert_eq!(j[0]["name"], "web");
    }
}
