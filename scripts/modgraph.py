#!/usr/bin/env python3
"""Print which top-level modules of src/ each module imports (`crate::x`), test code left
out, and exit 1 when the graph has a loop. The README's architecture paragraph describes
the one direction of flow this checks. Usage: scripts/modgraph.py [--quiet]"""
import collections
import os
import re
import sys

SRC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src")


def is_module(name):
    return os.path.exists(os.path.join(SRC, name + ".rs")) or os.path.isdir(
        os.path.join(SRC, name)
    )


def graph():
    deps = collections.defaultdict(set)
    for root, _, files in os.walk(SRC):
        for f in files:
            if not f.endswith(".rs"):
                continue
            rel = os.path.relpath(os.path.join(root, f), SRC)
            top = rel.split(os.sep)[0].removesuffix(".rs")
            if top in ("lib", "main"):
                continue
            text = open(os.path.join(root, f), encoding="utf-8").read()
            text = re.sub(r"#\[cfg\(test\)\]\s*mod tests \{.*", "", text, flags=re.S)
            names = re.findall(r"crate::([a-z_]+)", text)
            for group in re.findall(r"crate::\{([^}]*)\}", text):
                names += re.findall(r"\b([a-z_]+)\b", group)
            deps[top] |= {n for n in names if n != top and is_module(n)}
    return deps


def loops(deps):
    found = []

    def walk(node, path):
        for d in sorted(deps.get(node, ())):
            if d in path:
                found.append(path[path.index(d):] + [d])
            elif len(path) < len(deps) + 1:
                walk(d, path + [d])

    for m in sorted(deps):
        walk(m, [m])
    return found


def main():
    deps = graph()
    if "--quiet" not in sys.argv:
        for m in sorted(deps):
            print(f"{m} -> {', '.join(sorted(deps[m])) or '-'}")
    bad = loops(deps)
    for cycle in bad[:10]:
        print("loop: " + " -> ".join(cycle), file=sys.stderr)
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
