#!/usr/bin/env python3
"""The chart's proof without a cluster: Helm (helm-python-sdk, Helm 4's own Go SDK) renders and
lints it; kubernetes-validate checks every rendered object against the API server's OpenAPI
schema of a Kubernetes release, strict (unknown fields are errors, as `kubectl apply
--validate=strict` makes them).

Run by reach's tests and `cargo xtask manifests` with the venv `cargo xtask setup` makes:
  chart.py render CHART [--values JSON] [--name N] [--namespace NS]   → JSON {files, documents}
  chart.py yaml CHART [--values JSON] [--name N] [--namespace NS]     → the manifests as YAML
  chart.py lint CHART [--values JSON] [--kube-version V]              → Helm's lint report, JSON
  chart.py validate --kube V [--kube V ...] < documents.json          → one result per object
`--kube latest` is the newest release kubernetes-validate has schemas for.
"""
import argparse
import json
import sys

import yaml


def rendered(args):
    import helm_python as helm

    values = json.loads(args.values) if args.values else None
    with helm.Chart.load(args.chart) as chart:
        files = chart.render(values, name=args.name, namespace=args.namespace, is_install=True)
    documents = []
    for source in sorted(files):
        if not source.endswith((".yaml", ".yml")):
            continue  # NOTES.txt
        for doc in yaml.safe_load_all(files[source]):
            if doc:
                documents.append({"source": source, "object": doc})
    return files, documents


def cmd_render(args):
    files, documents = rendered(args)
    json.dump({"files": files, "documents": documents}, sys.stdout)


# `kubectl apply -f` creates objects in file order: what others live in or use comes first.
APPLY_ORDER = ["Namespace", "ServiceAccount", "ConfigMap", "Service", "DaemonSet", "ServiceMonitor"]


def cmd_yaml(args):
    _, documents = rendered(args)
    if args.kind:
        documents = [d for d in documents if d["object"].get("kind") in args.kind]
    documents.sort(key=lambda d: APPLY_ORDER.index(d["object"]["kind"])
                   if d["object"]["kind"] in APPLY_ORDER else len(APPLY_ORDER))
    out = []
    for d in documents:
        body = yaml.safe_dump(d["object"], sort_keys=False, default_flow_style=False, width=100)
        out.append(f"# Source: {d['source']}\n{body}")
    sys.stdout.write("---\n".join(out))


def cmd_lint(args):
    import helm_python as helm

    values = json.loads(args.values) if args.values else None
    report = helm.lint(args.chart, values, strict=True, namespace=args.namespace,
                       kube_version=args.kube_version)
    json.dump(report, sys.stdout)


def cmd_validate(args):
    import kubernetes_validate as kv
    from kubernetes_validate import utils

    documents = json.load(sys.stdin)
    versions = [utils.latest_version() if v == "latest" else v for v in args.kube]
    results = []
    for d in documents:
        obj = d["object"]
        for version in versions:
            r = {
                "source": d.get("source"),
                "kind": obj.get("kind"),
                "apiVersion": obj.get("apiVersion"),
                "name": (obj.get("metadata") or {}).get("name"),
                "kube": version,
            }
            try:
                r["schema"] = kv.validate(obj, version, strict=True)
                r["result"] = "valid"
            except utils.SchemaNotFoundError as e:
                r["result"] = "no_schema"
                r["error"] = str(e)
            except utils.ValidationError as e:
                r["result"] = "invalid"
                r["error"] = f"{'.'.join(str(p) for p in e.path)}: {e.message}"
            results.append(r)
    json.dump({"versions": versions, "results": results}, sys.stdout)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    for name, fn in (("render", cmd_render), ("yaml", cmd_yaml)):
        s = sub.add_parser(name)
        s.add_argument("chart")
        s.add_argument("--values", help="values as JSON, merged over values.yaml")
        s.add_argument("--name", default="reach")
        s.add_argument("--namespace", default="reach")
        if name == "yaml":
            s.add_argument("--kind", action="append", help="only objects of this kind")
        s.set_defaults(fn=fn)
    s = sub.add_parser("lint")
    s.add_argument("chart")
    s.add_argument("--values")
    s.add_argument("--kube-version")
    s.add_argument("--namespace", default="reach")
    s.set_defaults(fn=cmd_lint)
    s = sub.add_parser("validate")
    s.add_argument("--kube", action="append", required=True)
    s.set_defaults(fn=cmd_validate)
    args = p.parse_args()
    args.fn(args)


if __name__ == "__main__":
    main()
