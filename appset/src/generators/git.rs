//! The `git` generator: `directories` (Go `path.Match` over every directory of the repo, with
//! `exclude: true` winning) and `files` (JSON/YAML content plus path parameters), as Argo CD's
//! `GitGenerator` does.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::{Map, Value};

use super::glob::path_match;
use super::{
    GeneratorError, Inputs, MAX_GIT_FILE_BYTES, Options, Params, append_values, check_bound,
    flatten_params, refuse_extra, sanitize_name,
};
use crate::types::GitGenerator;

pub(crate) fn generate(
    g: &GitGenerator,
    opts: &Options,
    inputs: &dyn Inputs,
    path: &str,
) -> Result<Vec<Params>, GeneratorError> {
    refuse_extra(&g.extra, path)?;
    for (i, d) in g.directories.iter().enumerate() {
        refuse_extra(&d.extra, &format!("{path}.directories[{i}]"))?;
    }
    for (i, f) in g.files.iter().enumerate() {
        refuse_extra(&f.extra, &format!("{path}.files[{i}]"))?;
    }
    if !g.directories.is_empty() {
        directories(g, opts, inputs, path)
    } else if !g.files.is_empty() {
        files(g, opts, inputs, path)
    } else {
        Err(GeneratorError::Invalid {
            path: path.to_string(),
            reason: "neither directories nor files are set".into(),
        })
    }
}

fn input_err(path: &str) -> impl Fn(super::InputError) -> GeneratorError + '_ {
    move |source| GeneratorError::Input {
        path: path.to_string(),
        source,
    }
}

/// Go's `path.Dir`/`path.Base` for repo-relative, clean paths.
fn dir(p: &str) -> String {
    match p.rsplit_once('/') {
        Some(("", _)) => "/".into(),
        Some((d, _)) => d.to_string(),
        None => ".".into(),
    }
}

fn base(p: &str) -> String {
    let t = p.trim_end_matches('/');
    if t.is_empty() {
        return if p.is_empty() { ".".into() } else { "/".into() };
    }
    t.rsplit_once('/').map_or(t, |(_, b)| b).to_string()
}

fn directories(
    g: &GitGenerator,
    opts: &Options,
    inputs: &dyn Inputs,
    path: &str,
) -> Result<Vec<Params>, GeneratorError> {
    let all = inputs
        .git_directories(&g.repo_url, &g.revision)
        .map_err(input_err(path))?;
    let mut out = Vec::new();
    for app in all {
        let mut include = false;
        let mut exclude = false;
        for d in &g.directories {
            // Argo CD logs a malformed pattern and treats it as "no match".
            if path_match(&d.path, &app).unwrap_or(false) {
                if d.exclude {
                    exclude = true;
                } else {
                    include = true;
                }
            }
        }
        if !include || exclude {
            continue;
        }
        let mut p = Map::new();
        if opts.go_template {
            let mut pp = Map::new();
            pp.insert("path".into(), Value::String(app.clone()));
            pp.insert("basename".into(), Value::String(base(&app)));
            pp.insert(
                "basenameNormalized".into(),
                Value::String(sanitize_name(&base(&app))),
            );
            pp.insert("segments".into(), segments(&app));
            insert_go_path(&mut p, &g.path_param_prefix, pp);
        } else {
            let name = flat_name(&g.path_param_prefix);
            p.insert(name.clone(), Value::String(app.clone()));
            p.insert(format!("{name}.basename"), Value::String(base(&app)));
            p.insert(
                format!("{name}.basenameNormalized"),
                Value::String(sanitize_name(&base(&app))),
            );
            insert_flat_segments(&mut p, &name, &app);
        }
        append_values(&g.values, &mut p, opts, path)?;
        out.push(p);
        check_bound(out.len(), path)?;
    }
    Ok(out)
}

fn flat_name(prefix: &str) -> String {
    if prefix.is_empty() {
        "path".into()
    } else {
        format!("{prefix}.path")
    }
}

fn segments(p: &str) -> Value {
    Value::Array(p.split('/').map(|s| Value::String(s.to_string())).collect())
}

fn insert_flat_segments(p: &mut Params, name: &str, value: &str) {
    for (k, v) in value.split('/').enumerate() {
        if !v.is_empty() {
            p.insert(format!("{name}[{k}]"), Value::String(v.to_string()));
        }
    }
}

fn insert_go_path(p: &mut Params, prefix: &str, pp: Map<String, Value>) {
    if prefix.is_empty() {
        p.insert("path".into(), Value::Object(pp));
    } else {
        let mut wrap = Map::new();
        wrap.insert("path".into(), Value::Object(pp));
        p.insert(prefix.to_string(), Value::Object(wrap));
    }
}

fn files(
    g: &GitGenerator,
    opts: &Options,
    inputs: &dyn Inputs,
    path: &str,
) -> Result<Vec<Params>, GeneratorError> {
    let mut contents: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    for f in g.files.iter().filter(|f| !f.exclude) {
        for (name, data) in inputs
            .git_files(&g.repo_url, &g.revision, &f.path)
            .map_err(input_err(path))?
        {
            if data.len() > MAX_GIT_FILE_BYTES {
                return Err(GeneratorError::FileTooLarge {
                    path: path.to_string(),
                    file: name,
                    size: data.len(),
                    limit: MAX_GIT_FILE_BYTES,
                });
            }
            contents.insert(name, data);
            check_bound(contents.len(), path)?;
        }
    }
    for f in g.files.iter().filter(|f| f.exclude) {
        for (name, _) in inputs
            .git_files(&g.repo_url, &g.revision, &f.path)
            .map_err(input_err(path))?
        {
            contents.remove(&name);
        }
    }
    let mut out = Vec::new();
    for (file, data) in &contents {
        let objects = parse_file(data).map_err(|reason| GeneratorError::File {
            path: path.to_string(),
            file: file.clone(),
            reason,
        })?;
        for obj in objects {
            let d = dir(file);
            let filename = base(file);
            let mut p;
            if opts.go_template {
                p = obj;
                let mut pp = Map::new();
                pp.insert("path".into(), Value::String(d.clone()));
                pp.insert("basename".into(), Value::String(base(&d)));
                pp.insert("filename".into(), Value::String(filename.clone()));
                pp.insert(
                    "basenameNormalized".into(),
                    Value::String(sanitize_name(&base(&d))),
                );
                pp.insert(
                    "filenameNormalized".into(),
                    Value::String(sanitize_name(&filename)),
                );
                pp.insert("segments".into(), segments(&d));
                insert_go_path(&mut p, &g.path_param_prefix, pp);
            } else {
                p = flatten_params(&obj);
                let name = flat_name(&g.path_param_prefix);
                p.insert(name.clone(), Value::String(d.clone()));
                p.insert(format!("{name}.basename"), Value::String(base(&d)));
                p.insert(format!("{name}.filename"), Value::String(filename.clone()));
                p.insert(
                    format!("{name}.basenameNormalized"),
                    Value::String(sanitize_name(&base(&d))),
                );
                p.insert(
                    format!("{name}.filenameNormalized"),
                    Value::String(sanitize_name(&filename)),
                );
                insert_flat_segments(&mut p, &name, &d);
            }
            append_values(&g.values, &mut p, opts, path)?;
            out.push(p);
            check_bound(out.len(), path)?;
        }
    }
    Ok(out)
}

/// sigs.k8s.io/yaml semantics: the first YAML (or JSON) document, as one object (an empty or
/// `null` document is an empty object) or else as a list of objects.
fn parse_file(data: &[u8]) -> Result<Vec<Map<String, Value>>, String> {
    let first = match serde_yaml::Deserializer::from_slice(data).next() {
        None => return Ok(vec![Map::new()]),
        Some(doc) => Value::deserialize(doc).map_err(|e| format!("unable to parse file: {e}"))?,
    };
    match first {
        Value::Null => Ok(vec![Map::new()]),
        Value::Object(m) => Ok(vec![m]),
        Value::Array(items) => items
            .into_iter()
            .map(|v| match v {
                Value::Object(m) => Ok(m),
                Value::Null => Ok(Map::new()),
                other => Err(format!(
                    "unable to parse file: list item is not an object: {other}"
                )),
            })
            .collect(),
        other => Err(format!(
            "unable to parse file: not an object or a list: {other}"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::generators::testing::{FakeInputs, flat, go, obj};
    use serde_json::json;

    fn repo() -> FakeInputs {
        FakeInputs {
            dirs: vec![
            "applicationset".into(),
            "applicationset/examples".into(),
            "applicationset/examples/git-generator-directory".into(),
            "applicationset/examples/git-generator-directory/cluster-addons".into(),
            "applicationset/examples/git-generator-directory/cluster-addons/argo-workflows".into(),
            "applicationset/examples/git-generator-directory/cluster-addons/prometheus-operator".into(),
            "applicationset/examples/git-generator-directory/excludes/cluster-addons/exclude-helm-guestbook".into(),
            ],
            files: vec![
            (
                "applicationset/examples/git-generator-files-discovery/cluster-config/engineering/dev/config.json".into(),
                br#"{"aws_account": "123456", "asset_id": "11223344",
                     "cluster": {"owner": "cluster-admin@company.com", "name": "engineering-dev",
                                 "address": "https://1.2.3.4"}}"#.to_vec(),
            ),
            (
                "applicationset/examples/git-generator-files-discovery/cluster-config/engineering/prod/config.json".into(),
                br#"{"aws_account": "123456", "asset_id": "11223344",
                     "cluster": {"owner": "cluster-admin@company.com", "name": "engineering-prod",
                                 "address": "https://2.4.6.8"}}"#.to_vec(),
            ),
            ("envs/list.yaml".into(), b"- name: a\n  replicas: 1000000\n- name: b\n".to_vec()),
            ("envs/empty.yaml".into(), Vec::new()),
            ("envs/scalar.yaml".into(), b"just a string".to_vec()),
            ],
            ..Default::default()
        }
    }

    fn git(v: Value) -> GitGenerator {
        serde_json::from_value(v).unwrap_or_default()
    }

    #[test]
    fn directories_documented_example_fasttemplate() -> Result<(), GeneratorError> {
        let g = git(json!({
            "repoURL": "https://github.com/argoproj/argo-cd.git", "revision": "HEAD",
            "directories": [
                {"path": "applicationset/examples/git-generator-directory/cluster-addons/*"},
                {"path": "applicationset/examples/git-generator-directory/cluster-addons/prometheus-operator", "exclude": true}
            ]
        }));
        let out = generate(&g, &flat(), &repo(), "git")?;
        assert_eq!(
            out,
            vec![obj(json!({
                "path": "applicationset/examples/git-generator-directory/cluster-addons/argo-workflows",
                "path.basename": "argo-workflows",
                "path.basenameNormalized": "argo-workflows",
                "path[0]": "applicationset",
                "path[1]": "examples",
                "path[2]": "git-generator-directory",
                "path[3]": "cluster-addons",
                "path[4]": "argo-workflows"
            }))]
        );
        Ok(())
    }

    #[test]
    fn directories_go_template_prefix_and_values() -> Result<(), GeneratorError> {
        let g = git(json!({
            "repoURL": "r", "revision": "main", "pathParamPrefix": "app",
            "directories": [{"path": "applicationset/examples/git-generator-directory/cluster-addons/*"}],
            "values": {"ns": "ns-{{ .app.path.basename }}"}
        }));
        let out = generate(&g, &go(), &repo(), "git")?;
        assert_eq!(out.len(), 2);
        assert_eq!(
            out[0],
            obj(json!({
                "app": {"path": {
                    "path": "applicationset/examples/git-generator-directory/cluster-addons/argo-workflows",
                    "basename": "argo-workflows",
                    "basenameNormalized": "argo-workflows",
                    "segments": ["applicationset", "examples", "git-generator-directory", "cluster-addons", "argo-workflows"]
                }},
                "values": {"ns": "ns-argo-workflows"}
            }))
        );
        Ok(())
    }

    #[test]
    fn files_documented_example_both_modes() -> Result<(), GeneratorError> {
        let spec = json!({
            "repoURL": "https://github.com/argoproj/argo-cd.git", "revision": "HEAD",
            "files": [{"path": "applicationset/examples/git-generator-files-discovery/cluster-config/**/config.json"}]
        });
        let out = generate(&git(spec.clone()), &flat(), &repo(), "git")?;
        assert_eq!(out.len(), 2);
        assert_eq!(
            out[0],
            obj(json!({
                "aws_account": "123456", "asset_id": "11223344",
                "cluster.owner": "cluster-admin@company.com", "cluster.name": "engineering-dev",
                "cluster.address": "https://1.2.3.4",
                "path": "applicationset/examples/git-generator-files-discovery/cluster-config/engineering/dev",
                "path.basename": "dev",
                "path.filename": "config.json",
                "path.basenameNormalized": "dev",
                "path.filenameNormalized": "config.json",
                "path[0]": "applicationset", "path[1]": "examples", "path[2]": "git-generator-files-discovery",
                "path[3]": "cluster-config", "path[4]": "engineering", "path[5]": "dev"
            }))
        );
        let out = generate(&git(spec), &go(), &repo(), "git")?;
        assert_eq!(
            out[1].get("cluster"),
            Some(&json!({"owner": "cluster-admin@company.com",
            "name": "engineering-prod", "address": "https://2.4.6.8"}))
        );
        assert_eq!(
            out[1].get("path"),
            Some(&json!({
                "path": "applicationset/examples/git-generator-files-discovery/cluster-config/engineering/prod",
                "basename": "prod", "filename": "config.json", "basenameNormalized": "prod",
                "filenameNormalized": "config.json",
                "segments": ["applicationset", "examples", "git-generator-files-discovery", "cluster-config", "engineering", "prod"]
            }))
        );
        Ok(())
    }

    #[test]
    fn files_lists_empty_exclude_and_numbers() -> Result<(), GeneratorError> {
        let g = git(json!({"repoURL": "r", "revision": "HEAD", "files": [
            {"path": "envs/*.yaml"}, {"path": "envs/scalar.yaml", "exclude": true}
        ]}));
        let out = generate(&g, &flat(), &repo(), "git")?;
        // Sorted by path: empty.yaml (one set, only path params), then list.yaml (two sets).
        assert_eq!(out.len(), 3);
        assert_eq!(out[0].get("path.filename"), Some(&json!("empty.yaml")));
        assert_eq!(out[1].get("name"), Some(&json!("a")));
        assert_eq!(out[1].get("replicas"), Some(&json!("1e+06")));
        assert_eq!(out[2].get("name"), Some(&json!("b")));
        let out = generate(&g, &go(), &repo(), "git")?;
        assert_eq!(out[1].get("replicas"), Some(&json!(1000000)));
        Ok(())
    }

    #[test]
    fn errors() {
        let scalar = git(
            json!({"repoURL": "r", "revision": "HEAD", "files": [{"path": "envs/scalar.yaml"}]}),
        );
        assert!(matches!(
            generate(&scalar, &flat(), &repo(), "git"),
            Err(GeneratorError::File { .. })
        ));
        let mut big = repo();
        big.files = vec![("big.json".into(), vec![b' '; MAX_GIT_FILE_BYTES + 1])];
        let g = git(json!({"repoURL": "r", "revision": "HEAD", "files": [{"path": "big.json"}]}));
        assert!(matches!(
            generate(&g, &flat(), &big, "git"),
            Err(GeneratorError::FileTooLarge { .. })
        ));
        let mut failing = repo();
        failing.fail = true;
        let g = git(json!({"repoURL": "r", "revision": "HEAD", "directories": [{"path": "*"}]}));
        assert!(matches!(
            generate(&g, &flat(), &failing, "git"),
            Err(GeneratorError::Input { .. })
        ));
        let neither = git(json!({"repoURL": "r", "revision": "HEAD"}));
        assert!(generate(&neither, &flat(), &repo(), "git").is_err());
    }

    #[test]
    fn path_helpers_match_go() {
        assert_eq!(dir("a/b/c.json"), "a/b");
        assert_eq!(dir("c.json"), ".");
        assert_eq!(base("a/b"), "b");
        assert_eq!(base("."), ".");
    }
}
