#!/usr/bin/env python3
"""A minimal `helm` for machines without the binary: `helm template`, `helm lint` and
`helm version`, run by Helm v4's own engine through PyPI's helm-python-sdk (no network, no
cluster).

`helm lint CHART [--values FILE]... [--set K=V]... [--strict] [--namespace NS]` prints each
finding as `[SEVERITY] path: message` and exits 1 when the chart has errors (or warnings
with --strict), like helm's.

Supports what flotilla-repo-server passes: template CHART --name-template NAME [--namespace NS]
[--values FILE]... [--set K=V]... [--set-string K=V]... [--set-file K=PATH]...
[--include-crds] [--skip-crds] [--kube-version V] [--api-versions GV]...
Output is what `helm template` prints: YAML documents, each
after a `# Source:` comment, CRDs from the chart's crds/ first when --include-crds.
"""

import os
import sys

import yaml
from helm_python.chart import Chart


def die(msg, code=1):
    sys.stderr.write(f"Error: {msg}\n")
    sys.exit(code)


def split_key(key):
    """a.b\\.c.d -> ['a', 'b.c', 'd'] (helm's escaped dots)."""
    parts, cur, i = [], "", 0
    while i < len(key):
        if key[i] == "\\" and i + 1 < len(key) and key[i + 1] == ".":
            cur += "."
            i += 2
            continue
        if key[i] == ".":
            parts.append(cur)
            cur = ""
        else:
            cur += key[i]
        i += 1
    parts.append(cur)
    return parts


def typed(value):
    """helm --set value typing: {a,b} lists, true/false, null, integers; else a string."""
    if value.startswith("{") and value.endswith("}"):
        inner = value[1:-1]
        return [typed(v) for v in inner.split(",")] if inner else []
    if value in ("true", "false"):
        return value == "true"
    if value == "null":
        return None
    try:
        return int(value)
    except ValueError:
        return value


def set_path(values, key, value):
    parts = split_key(key)
    node = values
    for p in parts[:-1]:
        if not isinstance(node.get(p), dict):
            node[p] = {}
        node = node[p]
    node[parts[-1]] = value


def merge(dst, src):
    for k, v in src.items():
        if isinstance(v, dict) and isinstance(dst.get(k), dict):
            merge(dst[k], v)
        else:
            dst[k] = v
    return dst


def parse_args(args, extra_flags=()):
    """positional args, merged values, namespace, and the set of boolean flags seen."""
    positional, values = [], {}
    namespace, flags = "default", set()
    it = iter(args)
    for a in it:
        if a in ("--namespace", "-n"):
            namespace = next(it, "default")
        elif a == "--name-template":
            flags.add(("name", next(it, "")))
        elif a == "--kube-version":
            flags.add(("kube", next(it, "")))
        elif a == "--api-versions":
            flags.add(("api", next(it, "")))
        elif a in ("--values", "-f"):
            path = next(it, "")
            try:
                with open(path, encoding="utf-8") as f:
                    merge(values, yaml.safe_load(f) or {})
            except OSError as e:
                die(f"open {path}: {e.strerror}")
            except yaml.YAMLError as e:
                die(f"failed to parse {path}: {e}")
        elif a in ("--set", "--set-string", "--set-file"):
            kv = next(it, "")
            if "=" not in kv:
                die(f"failed parsing {a} data: key {kv!r} has no value")
            k, v = kv.split("=", 1)
            if a == "--set":
                v = typed(v)
            elif a == "--set-file":
                try:
                    with open(v, encoding="utf-8") as f:
                        v = f.read()
                except OSError as e:
                    die(f"open {v}: {e.strerror}")
            set_path(values, k, v)
        elif a in extra_flags:
            flags.add(a)
        elif a.startswith("-"):
            die(f"unknown flag: {a}")
        else:
            positional.append(a)
    return positional, values, namespace, flags


def lint(args):
    from helm_python.chart import lint as helm_lint

    positional, values, namespace, flags = parse_args(args, ("--strict", "--quiet"))
    if len(positional) != 1:
        die("lint needs CHART")
    strict = "--strict" in flags
    try:
        report = helm_lint(positional[0], values, strict=strict, namespace=namespace)
    except Exception as e:
        die(str(e))
    names = {0: "UNKNOWN", 1: "INFO", 2: "WARNING", 3: "ERROR"}
    failed = bool(report.get("errors"))
    for m in report.get("messages", []):
        sev = m.get("severity", 0)
        if sev >= 3 or (strict and sev >= 2):
            failed = True
        print(f"[{names.get(sev, sev)}] {m.get('path', '')}: {m.get('error', '')}")
    for e in report.get("errors", []):
        print(f"[ERROR] {e}")
    linted = report.get("total_charts_linted", 0)
    print(f"{linted} chart(s) linted, {'1 chart(s) failed' if failed else '0 chart(s) failed'}")
    sys.exit(1 if failed else 0)


def chart_dependencies(chart_dir):
    try:
        with open(os.path.join(chart_dir, "Chart.yaml"), encoding="utf-8") as f:
            meta = yaml.safe_load(f) or {}
    except OSError as e:
        die(f"open Chart.yaml: {e.strerror}")
    return meta.get("dependencies") or []


def present(chart_dir, dep):
    charts = os.path.join(chart_dir, "charts")
    name, version = dep.get("name", ""), str(dep.get("version", ""))
    return os.path.isdir(os.path.join(charts, name)) or os.path.isfile(
        os.path.join(charts, f"{name}-{version}.tgz"))


def dependency(args):
    """`helm dependency build CHART`: file:// dependencies are copied into charts/; any
    other repository needs the network, which this shim (like an offline helm) does not have."""
    import shutil
    if len(args) != 2 or args[0] != "build":
        die("this shim supports: helm dependency build CHART")
    chart_dir = args[1]
    for dep in chart_dependencies(chart_dir):
        if present(chart_dir, dep):
            continue
        repo = str(dep.get("repository", ""))
        if not repo.startswith("file://"):
            die(f"no cached repository for {repo} found. (try 'helm repo update'): "
                f"dependency {dep.get('name')} cannot be fetched offline")
        src = os.path.normpath(os.path.join(chart_dir, repo[len("file://"):]))
        if not os.path.isfile(os.path.join(src, "Chart.yaml")):
            die(f"directory {src} not found")
        os.makedirs(os.path.join(chart_dir, "charts"), exist_ok=True)
        shutil.copytree(src, os.path.join(chart_dir, "charts", dep.get("name", "")),
                        symlinks=True)
    print("Saving dependencies")


def template(args):
    positional, values, namespace, flags = parse_args(
        args, ("--include-crds", "--skip-crds"))
    include_crds = "--include-crds" in flags
    names = [f[1] for f in flags if isinstance(f, tuple) and f[0] == "name"]
    if len(positional) == 1 and names:
        name, chart_dir = names[0], positional[0]
    elif len(positional) == 2 and not names:
        name, chart_dir = positional
    else:
        die("template needs [NAME] CHART (or CHART --name-template NAME)")
    # As helm does: a dependency Chart.yaml declares must be in charts/.
    for dep in chart_dependencies(chart_dir):
        if not present(chart_dir, dep):
            die(f"found in Chart.yaml, but missing in charts/ directory: {dep.get('name')}")
    kube = [f[1] for f in flags if isinstance(f, tuple) and f[0] == "kube"]
    apis = sorted(f[1] for f in flags if isinstance(f, tuple) and f[0] == "api")
    try:
        chart = Chart.load(chart_dir)
        if kube or apis:
            # Helm's .Capabilities from --kube-version / --api-versions (the engine's options).
            import json
            from helm_python.chart import _native
            opts = {"name": name, "namespace": namespace, "is_install": True}
            if kube:
                opts["kube_version"] = kube[0]
            if apis:
                opts["api_versions"] = apis
            rendered = json.loads(_native.call_string(
                "helm_render", chart._raw(), json.dumps(values), json.dumps(opts)))
        else:
            rendered = chart.render(values, name=name, namespace=namespace,
                                    is_install=True)
    except Exception as e:  # the engine's errors carry Helm's message
        die(str(e))
    out = []
    crds = os.path.join(chart_dir, "crds")
    if include_crds and os.path.isdir(crds):
        for f in sorted(os.listdir(crds)):
            if f.endswith((".yaml", ".yml", ".json")):
                with open(os.path.join(crds, f), encoding="utf-8") as fh:
                    out.append((f"{os.path.basename(chart_dir)}/crds/{f}", fh.read()))
    for path in sorted(rendered):
        body = rendered[path]
        base = os.path.basename(path)
        if base == "NOTES.txt" or base.startswith("_") or not body.strip():
            continue
        out.append((path, body))
    for path, body in out:
        sys.stdout.write(f"---\n# Source: {path}\n{body.rstrip()}\n")


def main():
    args = sys.argv[1:]
    if not args or args[0] in ("-h", "--help"):
        print(__doc__)
        return
    if args[0] == "version":
        print("v4.0.0+helm-python-sdk (flotilla helm shim)")
        return
    if args[0] == "template":
        template(args[1:])
        return
    if args[0] == "lint":
        lint(args[1:])
        return
    if args[0] == "dependency":
        dependency(args[1:])
        return
    die(f"unsupported command {args[0]!r} (this shim supports: helm template, helm lint, helm dependency build, helm version)")


if __name__ == "__main__":
    main()
