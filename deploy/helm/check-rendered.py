#!/usr/bin/env python3
"""Checks what `helm template` rendered from the slogate chart, beyond the Kubernetes schemas.

- exactly the expected kinds (so a value set that should switch a part on really does);
- the slogate container: non-root, read-only root filesystem, no privilege escalation, all
  capabilities dropped, liveness on /healthz and readiness on /readyz, resources set, the data
  volume at /var/lib/slogate, and container ports equal to the listen addresses in the rendered
  configuration;
- the PagerDuty routing key, when enabled, comes from a mounted Secret file named in the config;
- writes the rendered slogate.yaml (for `slogate config check`) and the ServiceMonitors (JSON
  and a TypeScript module that must `satisfies` the prometheus-operator types).

Usage: check-rendered.py RENDERED.yaml --kinds Kind,Kind,... --config-out FILE
                         [--servicemonitors-out FILE.json] [--servicemonitors-ts FILE.mts]
"""

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

import yaml

errors = []


def check(cond, msg):
    if not cond:
        errors.append(msg)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("rendered", type=Path)
    ap.add_argument("--kinds", required=True, help="comma-separated, repeated for several of a kind")
    ap.add_argument("--config-out", type=Path, required=True)
    ap.add_argument("--servicemonitors-out", type=Path)
    ap.add_argument("--servicemonitors-ts", type=Path)
    a = ap.parse_args()

    docs = [d for d in yaml.safe_load_all(a.rendered.read_text()) if d]
    got = Counter(d["kind"] for d in docs)
    want = Counter(k for k in a.kinds.split(",") if k)
    check(got == want, f"rendered kinds {dict(sorted(got.items()))}, expected {dict(sorted(want.items()))}")

    by_kind = {}
    for d in docs:
        by_kind.setdefault(d["kind"], []).append(d)
    cms = by_kind.get("ConfigMap", [])
    sts = by_kind.get("StatefulSet", [])
    if len(cms) != 1 or len(sts) != 1:
        errors.append("expected one ConfigMap and one StatefulSet")
        return finish()
    config_text = cms[0]["data"]["slogate.yaml"]
    a.config_out.write_text(config_text)
    config = yaml.safe_load(config_text)

    pod = sts[0]["spec"]["template"]["spec"]
    (c,) = [c for c in pod["containers"] if c["name"] == "slogate"]
    sc, psc = c.get("securityContext", {}), pod.get("securityContext", {})
    check(psc.get("runAsNonRoot") is True and psc.get("runAsUser", 0) != 0, "pod must run as a non-root user")
    check(sc.get("readOnlyRootFilesystem") is True, "root filesystem must be read-only")
    check(sc.get("allowPrivilegeEscalation") is False, "privilege escalation must be off")
    check(sc.get("capabilities", {}).get("drop") == ["ALL"], "all capabilities must be dropped")
    check(c.get("livenessProbe", {}).get("httpGet", {}).get("path") == "/healthz", "liveness probe must be GET /healthz")
    check(c.get("readinessProbe", {}).get("httpGet", {}).get("path") == "/readyz", "readiness probe must be GET /readyz")
    check(bool(c.get("resources", {}).get("requests")) and bool(c.get("resources", {}).get("limits")), "resources need requests and limits")
    mounts = {m["mountPath"]: m["name"] for m in c.get("volumeMounts", [])}
    check(mounts.get("/var/lib/slogate") == "data", "the data volume must be mounted at /var/lib/slogate")
    check("/tmp" in mounts, "a writable /tmp must be mounted (read-only root filesystem)")
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    server = config["server"]
    for key, name in [("otlp_grpc", "otlp-grpc"), ("otlp_http", "otlp-http"), ("http", "http")]:
        check(server[key].rsplit(":", 1)[1] == str(ports.get(name)), f"server.{key} {server[key]} does not match container port {name}={ports.get(name)}")
    check(config["history"]["dir"].startswith("/var/lib/slogate/"), "history.dir must be on the data volume")
    check(config["pagerduty"]["outbox_dir"].startswith("/var/lib/slogate/"), "pagerduty.outbox_dir must be on the data volume")
    check(not any(e.get("name") == "SLOGATE_PAGERDUTY_ROUTING_KEY" for e in c.get("env", [])), "the routing key must not be in the environment")

    if config["pagerduty"]["enabled"]:
        key_file = config["pagerduty"].get("routing_key_file", "")
        mount_dir, _, key = key_file.rpartition("/")
        check(mounts.get(mount_dir) == "pagerduty", f"routing_key_file {key_file} must be on the mounted pagerduty Secret")
        vols = {v["name"]: v for v in pod["volumes"]}
        secret = vols.get("pagerduty", {}).get("secret", {})
        check(any(i["key"] == key and i["path"] == key for i in secret.get("items", [])), f"the pagerduty volume must project key {key}")
        created = [s for s in by_kind.get("Secret", []) if s["metadata"]["name"] == secret.get("secretName")]
        for s in created:
            check(key in s.get("data", {}), f"Secret {s['metadata']['name']} has no key {key}")
    else:
        check("routing_key_file" not in config["pagerduty"], "pagerduty is off but routing_key_file is set")

    for svc in by_kind.get("Service", []):
        if svc["spec"].get("clusterIP") == "None":
            check(svc["spec"]["selector"] == sts[0]["spec"]["selector"]["matchLabels"], "the headless Service must select the StatefulSet's pods")
            check(sts[0]["spec"]["serviceName"] == svc["metadata"]["name"], "the StatefulSet's serviceName must be the headless Service")

    sms = by_kind.get("ServiceMonitor", [])
    if a.servicemonitors_out:
        a.servicemonitors_out.write_text(json.dumps(sms))
    if a.servicemonitors_ts:
        lines = [
            'import type { IServiceMonitor } from "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/ServiceMonitor";',
            "type Json<T> = T extends string ? `${T}` : T extends (infer U)[] ? Json<U>[] : T extends object ? { [K in keyof T]: Json<T[K]> } : T;",
        ]
        lines += [f"export const serviceMonitor{i} = {json.dumps(sm, indent=2)} satisfies Json<IServiceMonitor>;" for i, sm in enumerate(sms)]
        a.servicemonitors_ts.write_text("\n".join(lines) + "\n")
        for sm in sms:
            sel = sm["spec"]["selector"]["matchLabels"]
            matched = [s for s in by_kind.get("Service", []) if all(s["metadata"].get("labels", {}).get(k) == v for k, v in sel.items())]
            check(len(matched) == 1, f"ServiceMonitor {sm['metadata']['name']} must select exactly one Service, selects {[s['metadata']['name'] for s in matched]}")
            for m in matched:
                names = {p["name"] for p in m["spec"]["ports"]}
                for ep in sm["spec"]["endpoints"]:
                    check(ep["port"] in names, f"ServiceMonitor port {ep['port']} is not a port of Service {m['metadata']['name']}")
    return finish()


def finish():
    for e in errors:
        print(f"error: {e}", file=sys.stderr)
    if errors:
        sys.exit(1)


if __name__ == "__main__":
    main()
