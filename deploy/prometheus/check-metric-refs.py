#!/usr/bin/env python3
"""Checks that the Prometheus rules and the Grafana dashboard use only what slogate exposes.

Starts the real server (`slogate serve`) on free loopback ports with a gate, an SLO, a threshold
rule, and PagerDuty, Slack and webhook delivery configured, sends it OTLP/HTTP JSON spans of a canary and a baseline,
asks for a verdict of each gate phase, waits for an alert evaluation and reads /metrics. Then,
for every PromQL expression in the rules file and in the dashboard (panel queries and template
variable queries):

- every `slogate_*` metric must be a family on /metrics (`_bucket`, `_sum`, `_count` of a
  histogram included), every `slogate:*` series a recording rule of the rules file;
- every label in a selector must be one the family carries (or `job` / `instance`, which
  Prometheus adds), and every literal value matched with `=` or a plain `a|b` alternation with
  `=~` must occur on /metrics, so a label value slogate does not write (say window="60m") fails;
- every label in `by`, `without`, `on`, `ignoring` and in a `{{label}}` legend must be carried by
  one of the expression's families.

A rename on slogate's side thus fails this check instead of silently emptying an alert or panel.

Usage: check-metric-refs.py --slogate BIN --rules RULES.yaml --dashboard DASHBOARD.json
                            [--save-exposition FILE]
"""

import argparse
import json
import os
import random
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import yaml

TARGET_LABELS = {"job", "instance"}
PROM_METRICS = {"up"}  # series Prometheus writes itself
GROUPING = {"by", "without", "on", "ignoring", "group_left", "group_right"}


# --- the live server ----------------------------------------------------------------------------

def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http(method, url, body=None, timeout=10):
    req = urllib.request.Request(url, data=body, method=method)
    if body is not None:
        req.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return r.status, r.read().decode()


def spans(service, version, n, errors, base_ms):
    """One OTLP/JSON export request: n SERVER spans of one service version, `errors` of them 5xx."""
    now = time.time_ns()
    out = []
    for i in range(n):
        dur = int((base_ms + random.random() * base_ms) * 1e6)
        out.append({
            "traceId": os.urandom(16).hex(), "spanId": os.urandom(8).hex(),
            "name": "GET /cart", "kind": 2,
            "startTimeUnixNano": str(now - dur - i * 1_000_000), "endTimeUnixNano": str(now - i * 1_000_000),
            "attributes": [
                {"key": "http.request.method", "value": {"stringValue": "GET"}},
                {"key": "http.route", "value": {"stringValue": "/cart"}},
                {"key": "http.response.status_code", "value": {"intValue": "503" if i < errors else "200"}},
            ],
        })
    resource = {"attributes": [
        {"key": "service.name", "value": {"stringValue": service}},
        {"key": "service.version", "value": {"stringValue": version}},
        {"key": "deployment.environment.name", "value": {"stringValue": "prod"}},
    ]}
    return json.dumps({"resourceSpans": [{"resource": resource, "scopeSpans": [{"spans": out}]}]}).encode()


CONFIG = """
server: {{otlp_grpc: "127.0.0.1:{grpc}", otlp_http: "127.0.0.1:{otlp}", http: "127.0.0.1:{api}"}}
history: {{dir: "{dir}/history"}}
pagerduty:
  enabled: true
  url: "http://127.0.0.1:{closed}"
  routing_key_env: CHECK_ROUTING_KEY
  outbox_dir: "{dir}/outbox"
  retry_min: 1s
  retry_max: 2s
notifications:
  outbox_dir: "{dir}/notify"
  slack: {{enabled: true, webhook_url_env: CHECK_SLACK_URL, retry_min: 1s, retry_max: 2s}}
  webhooks:
    - {{name: bridge, url: "http://127.0.0.1:{closed}/hook", retry_min: 1s, retry_max: 2s}}
slos:
  - {{name: checkout-availability, service: checkout, objective: 0.999, period: 30d}}
alerting:
  evaluation_interval: 1s
  min_requests: 1
  rules:
    - {{name: checkout-errors, service: checkout, metric: error_rate, above: 0.01, window: 5m, for: 0s, tier: P1}}
gates:
  - name: checkout
    service: checkout
    window: 10m
    min_requests: 10
    criteria:
      - {{name: p95-vs-baseline, metric: latency_p95, compare: ratio, pass: 1.1, fail: 1.3}}
    phases:
      - name: canary
        criteria: [{{name: error-rate, metric: error_rate, pass: 0.02, fail: 0.05}}]
"""


def live_exposition(binary: Path) -> str:
    ports = dict(grpc=free_port(), otlp=free_port(), api=free_port(), closed=free_port())
    with tempfile.TemporaryDirectory(prefix="slogate-metric-refs-") as d:
        cfg = Path(d) / "slogate.yaml"
        cfg.write_text(CONFIG.format(dir=d, **ports))
        api = f"http://127.0.0.1:{ports['api']}"
        log = open(Path(d) / "server.log", "w+")
        env = dict(os.environ, CHECK_ROUTING_KEY="0123456789abcdef0123456789abcdef", NO_COLOR="1",
                   CHECK_SLACK_URL=f"http://127.0.0.1:{ports['closed']}/slack")
        proc = subprocess.Popen([str(binary), "serve", "--config", str(cfg)], stdout=log, stderr=subprocess.STDOUT, env=env)
        try:
            deadline = time.time() + 60
            while True:
                if proc.poll() is not None:
                    log.seek(0)
                    sys.exit(f"error: slogate exited with {proc.returncode}:\n{log.read()}")
                try:
                    if http("GET", f"{api}/readyz", timeout=1)[0] == 200:
                        break
                except OSError:
                    pass
                if time.time() > deadline:
                    sys.exit("error: slogate did not become ready within 60 s")
                time.sleep(0.2)
            # A baseline, and a canary with more errors and slower responses: the gate fails, the
            # threshold rule fires, the SLO burns, and PagerDuty delivery (to a closed port) retries.
            for version, n, errors, base in [("v1", 400, 2, 20), ("v2", 200, 30, 40)]:
                status, body = http("POST", f"http://127.0.0.1:{ports['otlp']}/v1/traces", spans("checkout", version, n, errors, base))
                if status != 200:
                    sys.exit(f"error: OTLP export answered {status}: {body}")
            for phase in ["default", "canary"]:
                q = f"phase={phase}&" if phase != "default" else ""
                status, body = http("GET", f"{api}/api/v1/gates/checkout/verdict?{q}canary.version=v2&baseline.version=v1")
                if status != 200:
                    sys.exit(f"error: verdict answered {status}: {body}")
            time.sleep(2)  # a couple of alert evaluations and delivery attempts
            return http("GET", f"{api}/metrics")[1]
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


# --- the exposition -----------------------------------------------------------------------------

SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+\S+')
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse_exposition(text):
    """{family: {"type": t, "labels": {label: {values}}}}, with histogram series folded in."""
    families, types = {}, {}
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(None, 3)
            types[name] = kind
            families.setdefault(name, {"type": kind, "labels": {}, "samples": 0})
            continue
        if not line or line.startswith("#"):
            continue
        m = SAMPLE.match(line)
        if not m:
            sys.exit(f"error: cannot parse exposition line {line!r}")
        name = m.group(1)
        fam = name
        for suffix in ("_bucket", "_sum", "_count"):
            if name.endswith(suffix) and types.get(name[: -len(suffix)]) in ("histogram", "summary"):
                fam = name[: -len(suffix)]
        f = families.setdefault(fam, {"type": types.get(fam, "untyped"), "labels": {}, "samples": 0})
        f["samples"] += 1
        for k, v in LABEL.findall(m.group(2) or ""):
            f["labels"].setdefault(k, set()).add(v)
    return families


def resolve(name, families):
    """The family a series name belongs to, and the extra labels that series has."""
    if name in families:
        return name, set()
    for suffix, extra in (("_bucket", {"le"}), ("_sum", set()), ("_count", set())):
        base = name[: -len(suffix)]
        if name.endswith(suffix) and families.get(base, {}).get("type") in ("histogram", "summary"):
            return base, extra
    return None, set()


# --- PromQL ---------------------------------------------------------------------------------------

TOKEN = re.compile(r'''
    (?P<str>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`)
  | (?P<range>\[[^\]]*\])
  | (?P<var>\$\{[^}]*\}|\$[a-zA-Z_][a-zA-Z0-9_]*)
  | (?P<num>\d+(?:\.\d+)?(?:e[+-]?\d+)?)
  | (?P<ident>[a-zA-Z_:][a-zA-Z0-9_:]*)
  | (?P<op>=~|!~|!=|==|<=|>=|[{}(),=<>+\-*/^%])
  | (?P<ws>\s+)
''', re.X)


def tokens(expr):
    pos, out = 0, []
    while pos < len(expr):
        m = TOKEN.match(expr, pos)
        if not m:
            raise ValueError(f"cannot tokenise {expr[pos:pos + 20]!r}")
        pos = m.end()
        if m.lastgroup != "ws":
            out.append((m.lastgroup, m.group()))
    return out


def unquote(s):
    return s[1:-1].encode().decode("unicode_escape") if s[0] in "\"'" else s[1:-1]


def analyse(expr):
    """Selectors [(metric, [(label, op, value)])] and grouping labels of one expression."""
    toks = tokens(expr)
    selectors, grouping = [], set()
    i = 0
    while i < len(toks):
        kind, text = toks[i]
        if kind == "ident" and text in GROUPING and i + 1 < len(toks) and toks[i + 1][1] == "(":
            j = i + 2
            while toks[j][1] != ")":
                if toks[j][0] == "ident":
                    grouping.add(toks[j][1])
                j += 1
            i = j + 1
            continue
        if kind == "ident" and (text.startswith("slogate") or text in PROM_METRICS) and not (i + 1 < len(toks) and toks[i + 1][1] == "(" ):
            matchers = []
            if i + 1 < len(toks) and toks[i + 1][1] == "{":
                j = i + 2
                while toks[j][1] != "}":
                    if toks[j][0] == "ident":
                        label, op, value = toks[j][1], toks[j + 1][1], toks[j + 2]
                        matchers.append((label, op, unquote(value[1]) if value[0] == "str" else None))
                        j += 3
                    else:
                        j += 1
                i = j
            selectors.append((text, matchers))
        i += 1
    return selectors, grouping


class Checker:
    def __init__(self, families, recorded, custom_vars=None):
        self.families, self.recorded = families, recorded
        # Dashboard variables with fixed values: `label="$var"` must match every one of them.
        self.custom_vars = custom_vars or {}
        self.errors = []

    def expr(self, where, expr, legend=None, recorded_labels=None):
        try:
            selectors, grouping = analyse(expr)
        except (ValueError, IndexError) as e:
            self.errors.append(f"{where}: {e}")
            return
        available = set(TARGET_LABELS)
        for metric, matchers in selectors:
            if metric in PROM_METRICS:
                available |= {m[0] for m in matchers}
                continue
            if ":" in metric:
                if metric not in self.recorded:
                    self.errors.append(f"{where}: {metric} is not a recording rule of the rules file")
                available |= self.recorded.get(metric, set())
                continue
            fam, extra = resolve(metric, self.families)
            if fam is None:
                self.errors.append(f"{where}: slogate does not expose {metric}")
                continue
            labels = self.families[fam]["labels"]
            available |= set(labels) | extra
            for label, op, value in matchers:
                if label not in labels and label not in TARGET_LABELS | extra:
                    self.errors.append(f"{where}: {metric} has no label {label!r} (it has {sorted(labels)})")
                    continue
                if value is None or label in TARGET_LABELS | extra:
                    continue
                var = re.fullmatch(r"\$\{?([a-zA-Z0-9_]+)\}?", value)
                if op == "=" and var and var.group(1) in self.custom_vars:
                    wanted = self.custom_vars[var.group(1)]
                elif "$" in value:
                    continue
                elif op == "=":
                    wanted = [value]
                elif op == "=~" and re.fullmatch(r"[a-zA-Z0-9_.\-]+(\|[a-zA-Z0-9_.\-]+)*", value):
                    wanted = value.split("|")
                else:
                    continue
                for w in wanted:
                    if w not in labels.get(label, set()):
                        self.errors.append(f"{where}: {metric} never has {label}={w!r} (seen: {sorted(labels.get(label, set()))})")
        for label in sorted(grouping):
            if label not in available:
                self.errors.append(f"{where}: groups by {label!r}, which none of its series carries")
        for label in re.findall(r"\{\{\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\}\}", legend or ""):
            if label not in available:
                self.errors.append(f"{where}: legend uses {{{{{label}}}}}, which none of its series carries")
        return available


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--slogate", type=Path, required=True)
    ap.add_argument("--rules", type=Path, required=True)
    ap.add_argument("--dashboard", type=Path, required=True)
    ap.add_argument("--save-exposition", type=Path)
    a = ap.parse_args()

    exposition = live_exposition(a.slogate)
    if a.save_exposition:
        a.save_exposition.write_text(exposition)
    families = parse_exposition(exposition)
    ours = sorted(f for f in families if f.startswith("slogate_"))
    empty = [f for f in ours if families[f]["samples"] == 0]
    if empty:
        # A family without samples tells no labels or values: the traffic above produces them all.
        sys.exit(f"error: the live run left these families without samples, so their labels cannot be checked: {empty}")

    rules = yaml.safe_load(a.rules.read_text())
    dashboard = json.loads(a.dashboard.read_text())
    custom = {v["name"]: [o.strip() for o in v["query"].split(",")]
              for v in dashboard["templating"]["list"] if v.get("type") == "custom"}
    check = Checker(families, {}, custom)
    # Recording rules first, in file order, so later rules and the dashboard may use them.
    for g in rules["groups"]:
        for r in g["rules"]:
            name = r.get("record") or r.get("alert")
            labels = check.expr(f"rule {name}", r["expr"])
            if "record" in r:
                check.recorded[r["record"]] = labels or set()
            for text in (r.get("annotations") or {}).values():
                for label in re.findall(r"\$labels\.([a-zA-Z_][a-zA-Z0-9_]*)", text):
                    if labels is not None and label not in labels:
                        check.errors.append(f"rule {name}: an annotation uses $labels.{label}, which none of its series carries")
    n_rules = sum(len(g["rules"]) for g in rules["groups"])

    n_queries = 0
    for v in dashboard["templating"]["list"]:
        if v.get("type") != "query":
            continue
        q = v["query"]["query"] if isinstance(v["query"], dict) else v["query"]
        m = re.fullmatch(r"\s*label_values\((.*),\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\)\s*", q, re.S)
        if not m:
            check.errors.append(f"variable {v['name']}: expected label_values(SELECTOR, LABEL), got {q!r}")
            continue
        available = check.expr(f"variable {v['name']}", m.group(1))
        if available is not None and m.group(2) not in available:
            check.errors.append(f"variable {v['name']}: the series have no label {m.group(2)!r}")
        n_queries += 1
    for p in dashboard["panels"]:
        for t in p.get("targets", []):
            check.expr(f"panel {p['title']!r} query {t['refId']}", t["expr"], t.get("legendFormat"))
            n_queries += 1

    for e in check.errors:
        print(f"error: {e}", file=sys.stderr)
    if check.errors:
        sys.exit(1)
    print(f"metric references: ok ({n_rules} rules, {n_queries} dashboard queries, against the "
          f"{len(ours)} slogate families a live server exposes)")


if __name__ == "__main__":
    main()
