//! Tests of ApplicationSet templates: Argo CD's documented examples in both modes, Sprig
//! functions, `templatePatch`, per-generator overrides, refused functions and malformed input.

use serde_json::{Map, Value, json};

use super::*;

fn params(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

fn go(s: &str, p: Value) -> Result<String, TemplateError> {
    match render_value(&Value::from(s), &params(p), true, &[])? {
        Value::String(s) => Ok(s),
        other => Ok(other.to_string()),
    }
}

fn go_ok(s: &str, p: Value) -> String {
    match go(s, p) {
        Ok(s) => s,
        Err(e) => panic!("{s}: {e}"),
    }
}

const STRICT: &[&str] = &["missingkey=error"];

fn strict() -> Vec<String> {
    STRICT.iter().map(|s| s.to_string()).collect()
}

#[test]
fn fasttemplate_cluster_generator_example() {
    let template = json!({
        "metadata": {"name": "{{name}}-guestbook"},
        "spec": {
            "project": "default",
            "source": {"repoURL": "https://github.com/argoproj/argocd-example-apps/",
                       "targetRevision": "HEAD", "path": "guestbook"},
            "destination": {"server": "{{server}}", "namespace": "guestbook"}
        }
    });
    let p = params(json!({"name": "staging", "nameNormalized": "staging",
                          "server": "https://1.2.3.4", "metadata.labels.env": "stg"}));
    let app = render_application(&template, None, &p, false, &[]).expect("render");
    assert_eq!(app["apiVersion"], "argoproj.io/v1alpha1");
    assert_eq!(app["kind"], "Application");
    assert_eq!(app["metadata"]["name"], "staging-guestbook");
    assert_eq!(app["spec"]["destination"]["server"], "https://1.2.3.4");
}

#[test]
fn fasttemplate_git_generator_and_unknown_tags() {
    let p = params(
        json!({"path": "apps/guestbook", "path.basename": "guestbook",
                          "path[0]": "apps", "replicas": 3}),
    );
    let v = json!({"name": "{{path.basename}}", "path": "{{ path }}", "first": "{{path[0]}}",
                   "unknown": "{{nope}} and {{ spaced }}", "nonString": "{{replicas}}",
                   "empty": "{{}}", "multi": "a {{\n}} b", "n": 5, "b": true});
    let out = render_value(&v, &p, false, &[]).expect("render");
    assert_eq!(out["name"], "guestbook");
    assert_eq!(out["path"], "apps/guestbook");
    assert_eq!(out["first"], "apps");
    assert_eq!(out["unknown"], "{{nope}} and {{ spaced }}");
    assert_eq!(out["nonString"], "{{replicas}}");
    assert_eq!(out["empty"], "{{}}");
    assert_eq!(out["multi"], "a {{\n}} b");
    assert_eq!(out["n"], 5);
    assert_eq!(out["b"], true);
}

#[test]
fn fasttemplate_unclosed_tag_is_an_error() {
    let p = params(json!({"a": "x"}));
    let err = render_value(&json!("{{a}} {{b"), &p, false, &[]).expect_err("unclosed");
    assert!(matches!(err, TemplateError::UnclosedTag { .. }), "{err}");
}

#[test]
fn map_keys_are_rendered_too() {
    let p = params(json!({"team": "blue"}));
    let v = json!({"labels": {"team-{{team}}": "yes"}});
    assert_eq!(
        render_value(&v, &p, false, &[]).expect("fast")["labels"]["team-blue"],
        "yes"
    );
    let v = json!({"labels": {"team-{{ .team }}": "yes"}});
    assert_eq!(
        render_value(&v, &p, true, &[]).expect("go")["labels"]["team-blue"],
        "yes"
    );
}

#[test]
fn empty_params_render_nothing_like_argo_cd() {
    let v = json!({"name": "{{ .x }}"});
    assert_eq!(render_value(&v, &Map::new(), true, &[]).expect("render"), v);
}

#[test]
fn gotemplate_cluster_and_git_examples() {
    let template = json!({
        "metadata": {"name": "{{ .nameNormalized }}-guestbook",
                     "labels": {"env": "{{ index .metadata.labels \"env\" }}"}},
        "spec": {
            "project": "default",
            "source": {"repoURL": "https://github.com/infra-team/cluster-deployments.git",
                       "targetRevision": "HEAD", "path": "guestbook/{{ .nameNormalized }}"},
            "destination": {"server": "{{ .server }}", "namespace": "guestbook"}
        }
    });
    let p = params(json!({"name": "Prod_East", "nameNormalized": "prod-east",
                          "server": "https://east", "metadata": {"labels": {"env": "prod"}}}));
    let app = render_application(&template, None, &p, true, &strict()).expect("render");
    assert_eq!(app["metadata"]["name"], "prod-east-guestbook");
    assert_eq!(app["metadata"]["labels"]["env"], "prod");
    assert_eq!(app["spec"]["source"]["path"], "guestbook/prod-east");

    // Git directory generator, goTemplate flavour.
    let p = params(
        json!({"path": {"path": "apps/guestbook", "basename": "guestbook",
                                   "basenameNormalized": "guestbook",
                                   "segments": ["apps", "guestbook"]}}),
    );
    assert_eq!(go_ok("{{ .path.basename }}", p.clone().into()), "guestbook");
    assert_eq!(
        go_ok("{{ index .path.segments 0 }}", p.clone().into()),
        "apps"
    );
    assert_eq!(
        go_ok("{{ printf \"%s-%d\" .path.basename 3 }}", p.into()),
        "guestbook-3"
    );
}

#[test]
fn missing_key_default_prints_no_value_and_error_option_fails() {
    assert_eq!(go_ok("x-{{ .missing }}", json!({"a": "b"})), "x-<no value>");
    let err = render_value(
        &json!("{{ .missing }}"),
        &params(json!({"a": "b"})),
        true,
        &strict(),
    )
    .expect_err("missing key");
    assert!(matches!(err, TemplateError::Execute { .. }), "{err}");
    assert!(err.to_string().contains("missing"), "{err}");
    let err = render_value(
        &json!("x"),
        &params(json!({"a": "b"})),
        true,
        &["bogus".into()],
    )
    .expect_err("bad option");
    assert!(matches!(err, TemplateError::InvalidOption(_)));
}

#[test]
fn normalize_and_slugify() {
    assert_eq!(
        go_ok("{{ normalize .n }}", json!({"n": "-My_Cluster.Name!-"})),
        "my-cluster.name"
    );
    assert_eq!(super::sprig::normalize(&"a".repeat(300)).len(), 253);
    assert_eq!(
        go_ok(
            "{{ slugify .n }}",
            json!({"n": "Feature/JIRA-123 Add.Thing"})
        ),
        "feature-jira-123-add-thing"
    );
    assert_eq!(
        go_ok(
            "{{ slugify 10 true .n }}",
            json!({"n": "hello-world-again"})
        ),
        "hello"
    );
    assert_eq!(
        go_ok(
            "{{ slugify 10 false .n }}",
            json!({"n": "hello-world-again"})
        ),
        "hello-worl"
    );
}

#[test]
fn to_yaml_with_nindent_and_from_yaml() {
    let p = json!({"values": {"replicas": 2, "image": {"tag": "v1"}}});
    assert_eq!(
        go_ok("values:{{ toYaml .values | nindent 2 }}", p),
        "values:\n  image:\n    tag: v1\n  replicas: 2"
    );
    assert_eq!(
        go_ok("{{ (fromYaml .y).a.b }}", json!({"y": "a:\n  b: deep"})),
        "deep"
    );
    assert_eq!(
        go_ok("{{ index (fromYamlArray .y) 1 }}", json!({"y": "- x\n- y"})),
        "y"
    );
    assert!(go("{{ fromYaml .y }}", json!({"y": "- list"})).is_err());
    assert_eq!(
        go_ok("{{ toJson .v }}", json!({"v": {"b": "<x>", "a": [1, 2]}})),
        r#"{"a":[1,2],"b":"\u003cx\u003e"}"#
    );
}

#[test]
fn sprig_defaults_strings_lists_dicts_math() {
    let p = json!({"empty": "", "name": "guestbook", "n": 3, "list": ["a", "b", "a"]});
    let cases = [
        ("{{ .empty | default \"fallback\" }}", "fallback"),
        ("{{ .missing | default \"fb\" }}", "fb"),
        ("{{ .name | default \"fb\" }}", "guestbook"),
        ("{{ empty .empty }}", "true"),
        ("{{ coalesce .empty .missing .name }}", "guestbook"),
        ("{{ ternary \"yes\" \"no\" (eq .n 3) }}", "yes"),
        (
            "{{ upper .name }}/{{ lower \"ABC\" }}/{{ title \"hello world\" }}",
            "GUESTBOOK/abc/Hello World",
        ),
        (
            "{{ trim \"  x  \" }}{{ trimPrefix \"gu\" .name }}{{ trimSuffix \"book\" .name }}",
            "xestbookguest",
        ),
        ("{{ replace \"book\" \"shelf\" .name }}", "guestshelf"),
        ("{{ trunc 5 .name }}|{{ trunc -4 .name }}", "guest|book"),
        (
            "{{ contains \"est\" .name }}{{ hasPrefix \"gue\" .name }}{{ hasSuffix \"x\" .name }}",
            "truetruefalse",
        ),
        ("{{ (split \"-\" \"a-b\")._1 }}", "b"),
        ("{{ join \",\" (splitList \"-\" \"a-b-c\") }}", "a,b,c"),
        ("{{ join \",\" (uniq .list) }}", "a,b"),
        ("{{ join \",\" (list 1 \"x\" true) }}", "1,x,true"),
        (
            "{{ $d := dict \"k\" \"v\" }}{{ get $d \"k\" }}{{ hasKey $d \"k\" }}{{ hasKey $d \"z\" }}",
            "vtruefalse",
        ),
        ("{{ (set (dict) \"a\" 1).a }}", "1"),
        ("{{ join \",\" (keys (dict \"b\" 1 \"a\" 2)) }}", "a,b"),
        (
            "{{ quote .name }} {{ squote .name }}",
            "\"guestbook\" 'guestbook'",
        ),
        ("{{ int \"42\" }} {{ toString 7 }}", "42 7"),
        (
            "{{ add 1 2 3 }} {{ sub 10 4 }} {{ mul 2 3 }} {{ div 7 2 }} {{ mod 7 2 }}",
            "6 6 6 3 1",
        ),
        ("{{ add .n \"2\" }}", "5"),
        ("{{ b64enc \"hi\" }} {{ b64dec \"aGk=\" }}", "aGk= hi"),
        (
            "{{ sha256sum \"abc\" }}",
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
        ),
        ("{{ regexMatch \"^g.*k$\" .name }}", "true"),
        (
            "{{ regexReplaceAll \"(e)(s)\" .name \"${2}${1}\" }}",
            "gusetbook",
        ),
        ("{{ semverCompare \">=1.2.0 <2.0.0\" \"v1.5.3\" }}", "true"),
        ("{{ semverCompare \"^2\" \"1.9.0\" }}", "false"),
        ("{{ semverCompare \"1.2.3\" \"1.2.4\" }}", "false"),
        ("{{ semverCompare \"~1.2 || >=3\" \"3.1.0\" }}", "true"),
        ("{{ range $i, $e := until 3 }}{{ $i }}{{ end }}", "012"),
        ("{{ if and (gt .n 2) (ne .name \"x\") }}ok{{ end }}", "ok"),
    ];
    for (tmpl, want) in cases {
        assert_eq!(go_ok(tmpl, p.clone()), want, "{tmpl}");
    }
}

#[test]
fn removed_unsupported_and_undefined_functions_are_refused() {
    for f in [
        "env \"HOME\"",
        "expandenv \"$HOME\"",
        "getHostByName \"example.com\"",
    ] {
        // Even in a branch never taken, as Go refuses at parse time.
        let err = go(
            &format!("{{{{ if false }}}}{{{{ {f} }}}}{{{{ end }}}}"),
            json!({"a": 1}),
        )
        .expect_err(f);
        assert!(
            matches!(err, TemplateError::RemovedFunction { .. }),
            "{f}: {err}"
        );
    }
    let err = go("{{ now }}", json!({"a": 1})).expect_err("now");
    assert!(
        matches!(err, TemplateError::UnsupportedFunction { .. }),
        "{err}"
    );
    let err = go("{{ nosuchfunc 1 }}", json!({"a": 1})).expect_err("undefined");
    assert!(
        matches!(err, TemplateError::UndefinedFunction { .. }),
        "{err}"
    );
}

#[test]
fn malformed_templates_and_runtime_errors() {
    for bad in ["{{ .a ", "{{ .a | }}", "{{ range }}{{ end }}", "{{ \"x }}"] {
        let err = go(bad, json!({"a": 1})).expect_err(bad);
        assert!(matches!(err, TemplateError::Parse { .. }), "{bad}: {err}");
    }
    let err = go("{{ div 1 0 }}", json!({"a": 1})).expect_err("div0");
    assert!(matches!(err, TemplateError::Execute { .. }), "{err}");
    let err = go("{{ fail \"nope\" }}", json!({"a": 1})).expect_err("fail");
    assert!(err.to_string().contains("nope"));
}

#[test]
fn output_is_bounded() {
    let err = go(
        "{{ range until 100000 }}{{ repeat 100 \"x\" }}{{ end }}",
        json!({"a": 1}),
    )
    .expect_err("too large");
    assert!(matches!(err, TemplateError::TooLarge { .. }), "{err}");
    let err = go("{{ repeat 2000000 \"x\" }}", json!({"a": 1})).expect_err("repeat");
    assert!(matches!(err, TemplateError::Execute { .. }), "{err}");
}

const PATCH: &str = r#"
spec:
  source:
    helm:
      valueFiles:
      {{- range $valueFile := .valueFiles }}
        - {{ $valueFile }}
      {{- end }}
{{- if .autoSync }}
  syncPolicy:
    automated:
      prune: {{ .prune }}
{{- end }}
"#;

fn patch_template() -> Value {
    json!({
        "metadata": {"name": "{{ .name }}", "generateName": "dropped-"},
        "spec": {
            "project": "default",
            "source": {"repoURL": "https://github.com/infra-team/cluster-deployments.git",
                       "targetRevision": "HEAD", "chart": "guestbook"},
            "destination": {"server": "{{ .url }}", "namespace": "guestbook"}
        }
    })
}

#[test]
fn template_patch_adds_automated_sync_conditionally() {
    let on = params(
        json!({"name": "a", "url": "https://a", "autoSync": true, "prune": true,
                           "valueFiles": ["values.yaml", "values-a.yaml"]}),
    );
    let app = render_application(&patch_template(), Some(PATCH), &on, true, &[]).expect("on");
    assert_eq!(app["spec"]["syncPolicy"]["automated"]["prune"], true);
    assert_eq!(
        app["spec"]["source"]["helm"]["valueFiles"],
        json!(["values.yaml", "values-a.yaml"])
    );
    assert_eq!(app["spec"]["source"]["chart"], "guestbook");
    assert!(app["metadata"].get("generateName").is_none());

    let off = params(
        json!({"name": "b", "url": "https://b", "autoSync": false, "prune": false,
                            "valueFiles": ["values.yaml"]}),
    );
    let app = render_application(&patch_template(), Some(PATCH), &off, true, &[]).expect("off");
    assert!(app["spec"].get("syncPolicy").is_none());
    assert_eq!(
        app["spec"]["source"]["helm"]["valueFiles"],
        json!(["values.yaml"])
    );
}

#[test]
fn template_patch_rules() {
    let p = params(json!({"name": "a", "url": "https://a"}));
    // spec.project cannot be changed; null deletes; JSON works; $patch: replace replaces.
    let patch = r#"{"spec": {"project": "evil", "destination": {"namespace": null},
                   "source": {"$patch": "replace", "repoURL": "https://other"}}}"#;
    let app = render_application(&patch_template(), Some(patch), &p, true, &[]).expect("json");
    assert_eq!(app["spec"]["project"], "default");
    assert!(app["spec"]["destination"].get("namespace").is_none());
    assert_eq!(app["spec"]["source"], json!({"repoURL": "https://other"}));
    // An RFC 6902 list.
    let patch =
        r#"[{"op": "add", "path": "/metadata/annotations", "value": {"k": "{{ .name }}"}}]"#;
    let app = render_application(&patch_template(), Some(patch), &p, true, &[]).expect("6902");
    assert_eq!(app["metadata"]["annotations"]["k"], "a");
    // Go template only; malformed patches fail.
    assert!(matches!(
        render_application(&patch_template(), Some("spec: {}"), &p, false, &[]),
        Err(TemplateError::PatchNeedsGoTemplate)
    ));
    assert!(matches!(
        render_application(&patch_template(), Some("hello world"), &p, true, &[]),
        Err(TemplateError::InvalidPatch(_))
    ));
}

#[test]
fn per_generator_template_override() {
    let set = json!({
        "metadata": {"name": "{{ .name }}-app", "labels": {"team": "core"}},
        "spec": {"project": "default",
                 "source": {"repoURL": "https://git/repo", "path": "base", "targetRevision": "HEAD"},
                 "syncPolicy": {"automated": {"prune": true}}}
    });
    let generator = json!({
        "metadata": {"labels": {"env": "staging"}},
        "spec": {"source": {"path": "overlays/{{ .name }}"},
                 "syncPolicy": {"automated": {"prune": false}}}
    });
    let merged = merge_template(&set, &generator);
    assert_eq!(merged["metadata"]["name"], "{{ .name }}-app");
    assert_eq!(
        merged["metadata"]["labels"],
        json!({"env": "staging", "team": "core"})
    );
    assert_eq!(merged["spec"]["source"]["path"], "overlays/{{ .name }}");
    assert_eq!(merged["spec"]["source"]["repoURL"], "https://git/repo");
    // mergo treats false as unset: the set's true fills it, as in Argo CD.
    assert_eq!(merged["spec"]["syncPolicy"]["automated"]["prune"], true);
    let app = render_application(&merged, None, &params(json!({"name": "x"})), true, &[])
        .expect("render");
    assert_eq!(app["spec"]["source"]["path"], "overlays/x");
}

#[test]
fn default_finalizer() {
    let mut app = json!({"metadata": {"name": "a"}});
    add_default_finalizer(&mut app, false);
    assert_eq!(app["metadata"]["finalizers"], json!([RESOURCES_FINALIZER]));
    let mut app = json!({"metadata": {"name": "a"}});
    add_default_finalizer(&mut app, true);
    assert!(app["metadata"].get("finalizers").is_none());
}
