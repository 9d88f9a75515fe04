#!/usr/bin/env python3
"""Writes kubeconform's standalone JSON schemas from the ones PyPI's kubernetes-validate ships.

kubernetes-validate keeps one schema per kind whose `$ref`s point into a shared
`/api/_definitions.json`; kubeconform resolves such references over the network, which is closed
here. This inlines, for every top-level kind, the definitions it reaches (transitively) under
`$defs`, and writes `<out>/v<version>-standalone-strict/<kind>-<group>-<version>.json`, the layout
kubeconform's `-schema-location` template `{{ .NormalizedKubernetesVersion }}-standalone
{{ .StrictSuffix }}/{{ .ResourceKind }}{{ .KindSuffix }}.json` expects.

Usage: standalone-schemas.py OUT_DIR KUBERNETES_VERSION...   (e.g. 1.29.0 1.37.0)
"""

import json
import sys
from pathlib import Path

import kubernetes_validate

PREFIX = "/api/_definitions.json#/$defs/"


def refs(node, found):
    """Adds every definition name `node` refers to, in either spelling, to `found`."""
    if isinstance(node, dict):
        for k, v in node.items():
            if k == "$ref" and isinstance(v, str):
                for p in (PREFIX, "#/$defs/"):
                    if v.startswith(p):
                        found.add(v[len(p):])
            else:
                refs(v, found)
    elif isinstance(node, list):
        for v in node:
            refs(v, found)


def relink(node):
    """The same schema with shared-file references turned into local ones."""
    if isinstance(node, dict):
        return {
            k: ("#/$defs/" + v[len(PREFIX):] if k == "$ref" and isinstance(v, str) and v.startswith(PREFIX) else relink(v))
            for k, v in node.items()
        }
    if isinstance(node, list):
        return [relink(v) for v in node]
    return node


def convert(src: Path, dst: Path) -> int:
    defs = json.loads((src / "_definitions.json").read_text())["$defs"]
    dst.mkdir(parents=True, exist_ok=True)
    written = 0
    for f in sorted(src.glob("*.json")):
        if f.name == "_definitions.json":
            continue
        schema = json.loads(f.read_text())
        if "x-kubernetes-group-version-kind" not in schema:
            continue  # a nested type, not something a manifest is
        needed, todo = set(), set()
        refs(schema, todo)
        while todo:
            name = todo.pop()
            if name in needed:
                continue
            needed.add(name)
            if name not in defs:
                sys.exit(f"error: {f.name} refers to {name}, which {src} does not define")
            refs(defs[name], todo)
        out = relink(schema)
        out.pop("$id", None)
        out["$defs"] = {n: defs[n] for n in sorted(needed)}
        (dst / f.name).write_text(json.dumps(out, separators=(",", ":")))
        written += 1
    return written


def main() -> None:
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    out = Path(sys.argv[1])
    root = Path(kubernetes_validate.__file__).parent / "kubernetes-json-schema"
    for version in sys.argv[2:]:
        src = root / f"v{version}-local-strict"
        if not src.is_dir():
            sys.exit(f"error: kubernetes-validate has no schemas for Kubernetes {version} ({src})")
        n = convert(src, out / f"v{version}-standalone-strict")
        print(f"kubernetes {version}: {n} standalone schemas")


if __name__ == "__main__":
    main()
