#!/usr/bin/env python3
"""A minimal `helm` for machines without the binary: `helm template` and `helm version`,
rendered by Helm v4's own engine through PyPI's helm-python-sdk (no network, no cluster).

Supports what flotilla-repo-server passes: template NAME CHART [--namespace NS]
[--values FILE]... [--set K=V]... [--set-string K=V]... [--set-file K=PATH]...
[--include-crds] [--skip-crds]. Output is what `helm template` prints: YAML documents, each
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
    """helm --set value typing: true/false, null, integers; everything else a string."""
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


def template(args):
    positional, values = [], {}
    namespace, include_crds = "default", False
    it = iter(args)
    for a in it:
        if a in ("--namespace", "-n"):
            namespace = next(it, "default")
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
        elif a == "--include-crds":
            include_crds = True
        elif a == "--skip-crds":
            include_crds = False
        elif a.startswith("-"):
            die(f"unknown flag: {a}")
        else:
            positional.append(a)
    if len(positional) != 2:
        die("template needs NAME and CHART")
    name, chart_dir = positional
    try:
        chart = Chart.load(chart_dir)
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
    die(f"unsupported command {args[0]!r} (this shim only renders: helm template)")


if __name__ == "__main__":
    main()
