#!/usr/bin/env python3
"""Checks what `helm template` rendered from the slogate chart, beyond the Kubernetes schemas.

- exactly the expected kinds (so a value set that should switch a part on really does);
- the slogate container: non-root, read-only root filesystem, no privilege escalation, all
  capabilities dropped, liveness on /healthz and readiness on /readyz, resources set, the data
  volume at /var/lib/slogate, and container ports equal to the listen addresses in the rendered
  configuration;
- the PagerDuty routing key, when enabled, comes from a mounted Secret file named in the config;
- TLS and tokens: every certificate, key, client CA and token file named in the config lies in a
  directory that is a whole Secret mounted read-only (no subPath, no items, so rotations reach
  the pod); with TLS the probes use HTTPS (with mutual TLS, which the kubelet cannot present a
  certificate for, they only connect); the ServiceMonitor sends a read token from the Secret
  mounted for read_token_files and scrapes over https with a CA and serverName (and a client
  certificate with mutual TLS). --expect tls,mtls,ingest-auth,api-auth makes their absence an
  error, so a template that drops them fails;
- writes the rendered slogate.yaml (for `slogate config check`) and the ServiceMonitors (JSON
  and a TypeScript module that must `satisfies` the prometheus-operator types).

Usage: check-rendered.py RENDERED.yaml --kinds Kind,Kind,... --config-out FILE [--expect WHAT,...]
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
    ap.add_argument("--expect", default="", help="comma-separated: tls, mtls, ingest-auth, api-auth")
    a = ap.parse_args()
    expect = {e for e in a.expect.split(",") if e}
    unknown = expect - {"tls", "mtls", "ingest-auth", "api-auth"}
    check(not unknown, f"unknown --expect {sorted(unknown)}")

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
    tls = config.get("server", {}).get("tls") or {}
    mtls = bool(tls.get("client_ca_file"))
    auth = config.get("auth") or {}
    check(bool(tls) == ("tls" in expect or "mtls" in expect), f"server.tls is {tls or 'off'}, expected {'on' if {'tls', 'mtls'} & expect else 'off'}")
    check(mtls == ("mtls" in expect), f"server.tls.client_ca_file is {'set' if mtls else 'unset'}, expected {'set' if 'mtls' in expect else 'unset'}")
    ingest_files = auth.get("ingest", {}).get("token_files") or []
    read_files = auth.get("api", {}).get("read_token_files") or []
    admin_files = auth.get("api", {}).get("admin_token_files") or []
    check(bool(ingest_files) == ("ingest-auth" in expect), f"auth.ingest.token_files is {ingest_files}, expected {'some' if 'ingest-auth' in expect else 'none'}")
    check(bool(read_files and admin_files) == ("api-auth" in expect), f"auth.api read/admin token files are {read_files}/{admin_files}, expected {'both' if 'api-auth' in expect else 'none'}")
    ports_by_name = {p["name"]: p["containerPort"] for p in c["ports"]}
    for probe, path in [("startupProbe", "/healthz"), ("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")]:
        pr = c.get(probe, {})
        if mtls:
            # The kubelet has no client certificate: a handshake would be refused.
            check(pr.get("tcpSocket", {}).get("port") in ("http", ports_by_name.get("http")) and "httpGet" not in pr,
                  f"{probe} must be a tcpSocket probe on the API port with mutual TLS, is {pr}")
        else:
            get = pr.get("httpGet", {})
            check(get.get("path") == path and get.get("port") in ("http", ports_by_name.get("http")), f"{probe} must be GET {path} on the API port, is {pr}")
            want_scheme = "HTTPS" if tls else "HTTP"
            check(get.get("scheme", "HTTP") == want_scheme, f"{probe} must use scheme {want_scheme} (TLS {'on' if tls else 'off'}), is {get.get('scheme', 'HTTP')}")
    check(bool(c.get("resources", {}).get("requests")) and bool(c.get("resources", {}).get("limits")), "resources need requests and limits")
    mounts = {m["mountPath"]: m["name"] for m in c.get("volumeMounts", [])}
    vols = {v["name"]: v for v in pod.get("volumes", [])}
    mount_specs = {m["mountPath"]: m for m in c.get("volumeMounts", [])}

    def secret_dir(path, what):
        """The Secret mounted whole at the directory of `path` (None and an error if not)."""
        d, _, key = str(path).rpartition("/")
        m = mount_specs.get(d)
        if not m:
            errors.append(f"{what} {path}: nothing is mounted at {d}")
            return None
        check(m.get("readOnly") is True, f"{what} {path}: the mount at {d} must be read-only")
        check("subPath" not in m and "subPathExpr" not in m, f"{what} {path}: the mount at {d} uses subPath, so rotations would not reach the pod")
        sec = vols.get(m["name"], {}).get("secret")
        if sec is None:
            errors.append(f"{what} {path}: the volume {m['name']} at {d} is not a Secret")
            return None
        check("items" not in sec, f"{what} {path}: the Secret volume {m['name']} projects items; mount the whole Secret")
        return sec.get("secretName"), key

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

    tls_secrets = {}
    for field in ("cert_file", "key_file", "client_ca_file"):
        if tls.get(field):
            got_sec = secret_dir(tls[field], f"server.tls.{field}")
            if got_sec:
                tls_secrets[field] = got_sec
    if tls:
        check("cert_file" in tls and "key_file" in tls, "server.tls needs cert_file and key_file")
        check(tls_secrets.get("cert_file", (None,))[0] == tls_secrets.get("key_file", (0,))[0], "cert_file and key_file must come from the same Secret")
        check(tls_secrets.get("cert_file", (None, ""))[1] == "tls.crt" and tls_secrets.get("key_file", (None, ""))[1] == "tls.key",
              "cert_file and key_file must be tls.crt and tls.key of a kubernetes.io/tls Secret")
    token_secrets = {}
    for what, files in [("auth.ingest.token_files", ingest_files), ("auth.api.read_token_files", read_files), ("auth.api.admin_token_files", admin_files)]:
        for f in files:
            got_sec = secret_dir(f, what)
            if got_sec:
                token_secrets.setdefault(what, set()).add(got_sec)

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
        for ep in sm["spec"]["endpoints"]:
            name = sm["metadata"]["name"]
            az = ep.get("authorization")
            if auth.get("api"):
                creds = (az or {}).get("credentials", {})
                check(az is not None and az.get("type", "Bearer") == "Bearer", f"ServiceMonitor {name}: /metrics needs a token, but the endpoint has no Bearer authorization")
                check((creds.get("name"), creds.get("key")) in token_secrets.get("auth.api.read_token_files", set()),
                      f"ServiceMonitor {name}: authorization credentials {creds} are not a read token file the server reads ({sorted(token_secrets.get('auth.api.read_token_files', set()))})")
            else:
                check(az is None, f"ServiceMonitor {name}: authorization set but the API has no tokens")
            tc = ep.get("tlsConfig")
            if tls:
                check(ep.get("scheme") == "https", f"ServiceMonitor {name}: TLS is on, the scrape scheme must be https, is {ep.get('scheme')}")
                tc = tc or {}
                ca = tc.get("ca", {})
                check(bool(ca.get("secret") or ca.get("configMap")), f"ServiceMonitor {name}: tlsConfig needs a CA (secret or configMap)")
                check(bool(tc.get("serverName")), f"ServiceMonitor {name}: tlsConfig needs serverName (Prometheus scrapes pod IPs)")
                check(not tc.get("insecureSkipVerify"), f"ServiceMonitor {name}: insecureSkipVerify must not be set")
                if mtls:
                    check(bool(tc.get("cert", {}).get("secret")) and bool(tc.get("keySecret")), f"ServiceMonitor {name}: mutual TLS needs a client cert and keySecret")
            else:
                check(ep.get("scheme", "http") == "http" and tc is None, f"ServiceMonitor {name}: TLS is off, but the scrape uses {ep.get('scheme')} / tlsConfig")
    return finish()


def finish():
    for e in errors:
        print(f"error: {e}", file=sys.stderr)
    if errors:
        sys.exit(1)


if __name__ == "__main__":
    main()
