#!/usr/bin/env python3
"""Checks a Grafana dashboard JSON: its structure, then its types against Grafana's own schema.

1. Structure (here): the fields Grafana needs to import it (title, uid, schemaVersion, panels,
   templating), unique panel ids, panels inside the 24-column grid and not overlapping, every
   panel and query on the `${datasource}` variable, every query with a unique refId and a
   non-empty expr, and every `$variable` a query uses defined.
2. PromQL (with --promtool): every query, with the template variables filled in, goes through
   `promtool check rules` as a recording rule, so a syntax error fails.
3. Types (with --tsc-dir): writes a TypeScript module in which the dashboard, and each panel's
   options and custom field config, must `satisfies` the types that npm's @grafana/schema
   generates from Grafana's CUE schema (dashboard v1 and each panel plugin's panelcfg), and runs
   `tsc --noEmit --strict` on it. Unknown fields, wrong types and misspelt enum values fail.

Which metrics and labels the queries use is checked against a live slogate by
deploy/prometheus/check-metric-refs.py.

Usage: check-dashboard.py DASHBOARD.json [--promtool PROMTOOL] [--tsc-dir DIR]
  DIR holds node_modules with typescript and @grafana/schema (scripts/check-deploy installs it).
"""

import argparse
import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

# Panel plugins whose options (and custom field config, where the plugin has one) are checked.
PANEL_TYPES = {
    "timeseries": ("TimeSeriesPanelCfg", True),
    "stat": ("StatPanelCfg", False),
    "table": ("TablePanelCfg", True),
    "state-timeline": ("StateTimelinePanelCfg", True),
    "bargauge": ("BarGaugePanelCfg", False),
}
PANELCFG_DIR = {
    "TimeSeriesPanelCfg": "timeseries",
    "StatPanelCfg": "stat",
    "TablePanelCfg": "table",
    "StateTimelinePanelCfg": "statetimeline",
    "BarGaugePanelCfg": "bargauge",
}
BUILTIN_VARS = {"__rate_interval", "__interval", "__interval_ms", "__range", "__range_s", "__range_ms", "__dashboard"}

errors = []


def error(msg):
    errors.append(msg)


def structure(d):
    for key, kind in [("title", str), ("uid", str), ("schemaVersion", int), ("panels", list), ("templating", dict), ("time", dict)]:
        if not isinstance(d.get(key), kind):
            error(f"dashboard: `{key}` must be a {kind.__name__}")
    if errors:
        return
    if not re.fullmatch(r"[a-zA-Z0-9_-]{1,40}", d["uid"]):
        error(f"dashboard: uid {d['uid']!r} must be 1-40 characters of [a-zA-Z0-9_-]")
    if d.get("id") is not None:
        error("dashboard: `id` must be null or absent in a file meant for import or provisioning")
    variables = d["templating"].get("list", [])
    names = [v.get("name") for v in variables]
    if len(set(names)) != len(names):
        error(f"templating: duplicate variable names in {names}")
    if "datasource" not in names or next(v for v in variables if v["name"] == "datasource")["type"] != "datasource":
        error("templating: a `datasource` variable of type datasource is required (queries use ${datasource})")
    defined = set(names) | BUILTIN_VARS

    def uses(text, where):
        for m in re.finditer(r"\$(?:\{([a-zA-Z0-9_]+)(?::[a-z]+)?\}|([a-zA-Z0-9_]+))", text):
            name = m.group(1) or m.group(2)
            if name not in defined:
                error(f"{where}: uses ${name}, which no template variable defines")

    for v in variables:
        if v.get("type") == "query":
            q = v.get("query")
            text = q.get("query") if isinstance(q, dict) else q
            if not text:
                error(f"variable {v['name']}: empty query")
            else:
                uses(text, f"variable {v['name']}")
            if v.get("datasource", {}).get("uid") != "${datasource}":
                error(f"variable {v['name']}: datasource must be ${{datasource}}")

    ids, cells = set(), {}
    for p in d["panels"]:
        where = f"panel {p.get('id')} ({p.get('title')!r})"
        if not isinstance(p.get("id"), int) or p["id"] in ids:
            error(f"{where}: ids must be unique integers")
        ids.add(p.get("id"))
        if not p.get("title"):
            error(f"{where}: no title")
        g = p.get("gridPos") or {}
        if not all(isinstance(g.get(k), int) for k in "hwxy"):
            error(f"{where}: gridPos needs integer h, w, x, y")
            continue
        if g["x"] < 0 or g["w"] < 1 or g["h"] < 1 or g["x"] + g["w"] > 24:
            error(f"{where}: gridPos {g} is outside the 24-column grid")
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                if (x, y) in cells:
                    error(f"{where}: overlaps panel {cells[(x, y)]} at column {x}, row {y}")
                    break
                cells[(x, y)] = p["id"]
            else:
                continue
            break
        if p.get("type") == "row":
            if p.get("panels"):
                error(f"{where}: an expanded row keeps its panels at the top level, not inside it")
            continue
        if p.get("type") not in PANEL_TYPES:
            error(f"{where}: panel type {p.get('type')!r} has no schema check here; add it to PANEL_TYPES")
        if p.get("datasource", {}).get("uid") != "${datasource}":
            error(f"{where}: datasource must be ${{datasource}}")
        uses(p.get("title", ""), where)
        targets = p.get("targets") or []
        if not targets:
            error(f"{where}: no queries")
        refs = [t.get("refId") for t in targets]
        if len(set(refs)) != len(refs) or not all(refs):
            error(f"{where}: refIds {refs} must be present and unique")
        for t in targets:
            if not (t.get("expr") or "").strip():
                error(f"{where} query {t.get('refId')}: empty expr")
            if t.get("datasource", {}).get("uid") != "${datasource}":
                error(f"{where} query {t.get('refId')}: datasource must be ${{datasource}}")
            uses(t.get("expr", ""), f"{where} query {t.get('refId')}")


def promql(d, promtool: Path):
    """Checks the syntax of every query with promtool, the variables replaced by sample values."""
    values = {"__rate_interval": "5m", "__interval": "1m", "__range": "1h"}
    for v in d["templating"]["list"]:
        if v.get("type") == "custom":
            values[v["name"]] = v["query"].split(",")[0].strip()
        else:
            values[v["name"]] = ".*"

    def fill(expr):
        return re.sub(r"\$(?:\{([a-zA-Z0-9_]+)(?::[a-z]+)?\}|([a-zA-Z0-9_]+))",
                      lambda m: values.get(m.group(1) or m.group(2), m.group(0)), expr)

    rules = []
    for v in d["templating"]["list"]:
        q = v.get("query")
        text = q.get("query") if isinstance(q, dict) else q
        m = re.fullmatch(r"\s*label_values\((.*),\s*[a-zA-Z_][a-zA-Z0-9_]*\s*\)\s*", text or "", re.S) if v.get("type") == "query" else None
        if m:
            rules.append({"record": f"dashboard:variable_{v['name']}", "expr": fill(m.group(1))})
    for p in d["panels"]:
        for t in p.get("targets", []):
            rules.append({"record": f"dashboard:panel{p['id']}_{t.get('refId')}", "expr": fill(t.get("expr", ""))})
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
        json.dump({"groups": [{"name": "dashboard-queries", "rules": rules}]}, f)
    r = subprocess.run([str(promtool), "check", "rules", f.name], capture_output=True, text=True)
    Path(f.name).unlink()
    if r.returncode != 0:
        error(f"promtool: a dashboard query does not parse:\n{r.stdout}{r.stderr}")


def typescript(d, tsc_dir: Path):
    """Writes the dashboard as typed TypeScript and runs tsc over it."""
    lines = [
        "// Generated by deploy/grafana/check-dashboard.py: the dashboard must satisfy @grafana/schema.",
        'import type { Dashboard } from "@grafana/schema/dist/esm/raw/dashboard/x/Dashboard_types.gen";',
    ]
    for name, folder in PANELCFG_DIR.items():
        lines.append(f'import type * as {name} from "@grafana/schema/dist/esm/raw/composable/{folder}/panelcfg/x/{name}_types.gen";')
    lines += [
        # JSON has no enums: let a string enum accept its values' literals.
        "type Json<T> = T extends string ? `${T}` : T extends (infer U)[] ? Json<U>[] : T extends object ? { [K in keyof T]: Json<T[K]> } : T;",
        f"export const dashboard = {json.dumps(d, indent=2)} satisfies Json<Dashboard>;",
    ]
    for p in d["panels"]:
        kind = PANEL_TYPES.get(p.get("type"))
        if not kind:
            continue
        module, has_field_config = kind
        lines.append(f"export const panel{p['id']}Options = {json.dumps(p.get('options', {}))} satisfies Json<{module}.Options>;")
        custom = p.get("fieldConfig", {}).get("defaults", {}).get("custom")
        if custom is not None:
            if not has_field_config:
                error(f"panel {p['id']}: a {p['type']} panel has no custom field config")
            else:
                lines.append(f"export const panel{p['id']}Custom = {json.dumps(custom)} satisfies Json<{module}.FieldConfig>;")
    out = tsc_dir / "check" / "dashboard.mts"
    out.parent.mkdir(exist_ok=True)
    out.write_text("\n".join(lines) + "\n")
    tsc = tsc_dir / "node_modules" / ".bin" / "tsc"
    r = subprocess.run(
        [str(tsc), "--noEmit", "--strict", "--skipLibCheck", "--target", "es2022",
         "--module", "nodenext", "--moduleResolution", "nodenext", str(out)],
        cwd=tsc_dir, capture_output=True, text=True)
    if r.returncode != 0:
        error(f"tsc: the dashboard does not satisfy @grafana/schema ({out}):\n{r.stdout}{r.stderr}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dashboard", type=Path)
    ap.add_argument("--promtool", type=Path)
    ap.add_argument("--tsc-dir", type=Path)
    a = ap.parse_args()
    d = json.loads(a.dashboard.read_text())
    structure(d)
    if not errors and a.promtool:
        promql(d, a.promtool)
    if not errors and a.tsc_dir:
        typescript(d, a.tsc_dir)
    for e in errors:
        print(f"error: {e}", file=sys.stderr)
    if errors:
        sys.exit(1)
    n = sum(1 for p in d["panels"] if p.get("type") != "row")
    print(f"{a.dashboard}: ok ({n} panels, {len(d['templating']['list'])} variables"
          + (", PromQL parsed by promtool" if a.promtool else "")
          + (", types checked against @grafana/schema" if a.tsc_dir else "") + ")")


if __name__ == "__main__":
    main()
