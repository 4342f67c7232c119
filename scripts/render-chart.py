"""Renders deploy/helm/siemflow once per values file in its ci/ folder, with Helm's own
library (the helm-python-sdk package: libhelm_c.so, Helm v4's Go SDK) and no helm binary,
into OUT/<case>.yaml; lints the chart (strict) for each case first. Then checks that the
chart's pods are the plain manifests' pods (deploy/kubernetes/, which the e2e test runs):
same args (but --watch-config, which config.reload decides), probes, mounts, security
context, resources and grace period; and checks the ServiceMonitor, which no bundled
schema covers. Exit 1 on any error.

Usage: render-chart.py CHART MANIFESTS OUT
"""

import pathlib
import sys

import yaml
from helm_python import chart as helm_chart

NAMESPACE = "siemflow"


def main() -> int:
    chart_dir, manifests, out = (pathlib.Path(a) for a in sys.argv[1:4])
    out.mkdir(parents=True, exist_ok=True)
    chart = helm_chart.Chart.load(chart_dir)
    failed = False
    for case in sorted((chart_dir / "ci").glob("*.yaml")):
        values = yaml.safe_load(case.read_text()) or {}
        lint = helm_chart.lint(chart_dir, values, strict=True, namespace=NAMESPACE)
        problems = [m for m in lint.get("messages", []) if m.get("severity", "") not in ("INFO", 1)]
        if problems:
            print(f"{case.name}: helm lint: {problems}", file=sys.stderr)
            failed = True
        rendered = chart.render(values, name="siemflow", namespace=NAMESPACE, is_install=True)
        documents = [
            text.strip()
            for path, text in sorted(rendered.items())
            if not path.endswith("NOTES.txt") and text.strip()
        ]
        target = out / case.name
        target.write_text("\n---\n".join(documents) + "\n")
        kinds = [d["kind"] for d in yaml.safe_load_all(target.read_text()) if d]
        print(f"rendered {case.name}: {', '.join(kinds)}")
        objects = [d for d in yaml.safe_load_all(target.read_text()) if d]
        plain = PLAIN.get(case.name)
        if plain:
            failed |= not same_pod(case.name, objects, manifests / plain)
            failed |= not same_pipeline(case.name, objects, manifests / plain)
        for monitor in (o for o in objects if o["kind"] == "ServiceMonitor"):
            endpoint = monitor["spec"]["endpoints"][0]
            if (endpoint.get("port"), endpoint.get("path")) != ("api", "/metrics"):
                print(f"{case.name}: ServiceMonitor scrapes {endpoint}", file=sys.stderr)
                failed = True
    return 1 if failed else 0


# The chart's ci/ cases and the plain manifest each must match.
PLAIN = {
    "collector.yaml": "collector/statefulset.yaml",
    "receiver.yaml": "receiver/deployment.yaml",
    "sidecar.yaml": "sidecar/deployment.yaml",
    "sidecar-classic.yaml": "sidecar/deployment-classic.yaml",
}

COMPARED = ["args", "ports", "startupProbe", "livenessProbe", "readinessProbe", "resources",
            "securityContext", "restartPolicy"]


def same_pipeline(case: str, objects: list, plain_file: pathlib.Path) -> bool:
    """The chart's default pipeline (files/<role>.toml) is the plain ConfigMap's."""
    plain = next(yaml.safe_load_all((plain_file.parent / "configmap.yaml").read_text()))
    rendered = next(o for o in objects if o["kind"] == "ConfigMap")
    if rendered["data"]["pipeline.toml"].strip() != plain["data"]["pipeline.toml"].strip():
        print(f"{case}: the pipeline differs from {plain_file.parent}/configmap.yaml",
              file=sys.stderr)
        return False
    return True


def siemflow_container(workload: dict) -> dict:
    spec = workload["spec"]["template"]["spec"]
    containers = spec.get("containers", []) + spec.get("initContainers", [])
    return next(c for c in containers if c["name"] == "siemflow")


def same_pod(case: str, objects: list, plain_file: pathlib.Path) -> bool:
    plain = next(yaml.safe_load_all(plain_file.read_text()))
    rendered = next(o for o in objects if o["kind"] == plain["kind"])
    ours, theirs = siemflow_container(rendered), siemflow_container(plain)
    ok = True
    for key in COMPARED:
        a, b = ours.get(key), theirs.get(key)
        if key == "args":
            a, b = ([x for x in v if x != "--watch-config"] for v in (a, b))
        if a != b:
            print(f"{case}: {key} differs from {plain_file}: {a!r} != {b!r}", file=sys.stderr)
            ok = False
    mounts = lambda c: sorted(m["mountPath"] for m in c["volumeMounts"])
    if mounts(ours) != mounts(theirs):
        print(f"{case}: mounts differ from {plain_file}", file=sys.stderr)
        ok = False
    for key in ["terminationGracePeriodSeconds", "securityContext", "automountServiceAccountToken"]:
        a = rendered["spec"]["template"]["spec"].get(key)
        b = plain["spec"]["template"]["spec"].get(key)
        if key == "securityContext":
            a, b = ({k: v for k, v in d.items() if k != "fsGroupChangePolicy"} for d in (a, b))
        if a != b:
            print(f"{case}: pod {key} differs from {plain_file}: {a!r} != {b!r}", file=sys.stderr)
            ok = False
    return ok


if __name__ == "__main__":
    sys.exit(main())
