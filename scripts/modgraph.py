#!/usr/bin/env python3
"""The module map of src/: each top-level module, its one job (the first sentence of its doc
comment), its layer and the modules it imports (`crate::x`, test code left out).

Exits 1 when the graph has a loop: imports flow one way, from the shells (cli, server, http)
down to the leaves (error, models, ...), and a module's layer is one more than the highest
layer it imports, so no import goes up.

Usage:
  scripts/modgraph.py            print the map (Markdown, as ARCHITECTURE.md holds it)
  scripts/modgraph.py --quiet    check for loops only
  scripts/modgraph.py --check F  also fail when the map in F (between the `modgraph` markers)
                                 is not the one printed: the document stays true
"""
import collections
import os
import re
import sys

SRC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src")
BEGIN, END = "<!-- modgraph: begin -->", "<!-- modgraph: end -->"


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
            if os.path.basename(f) == "tests.rs":
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


def layers(deps):
    """0 for a module that imports none; else one more than the highest it imports."""
    memo = {}

    def layer(m, seen=()):
        if m in memo:
            return memo[m]
        if m in seen:
            return 0
        memo[m] = 1 + max((layer(d, seen + (m,)) for d in deps.get(m, ())), default=-1)
        return memo[m]

    return {m: layer(m) for m in deps}


def one_job(module):
    path = os.path.join(SRC, module + ".rs")
    if not os.path.exists(path):
        path = os.path.join(SRC, module, "mod.rs")
    doc = []
    for line in open(path, encoding="utf-8"):
        if not line.startswith("//!"):
            break
        doc.append(line[3:].strip())
    text = " ".join(doc)
    text = re.sub(r"\[`([^`]*)`\](\([^)]*\))?", r"`\1`", text)
    m = re.match(r"(.+?[.])(\s|$)", text)
    return (m.group(1) if m else text).strip()


def table(deps):
    lay = layers(deps)
    modules = sorted(set(deps) | {d for ds in deps.values() for d in ds})
    for m in modules:
        deps.setdefault(m, set())
        lay.setdefault(m, 0)
    rows = ["| layer | module | its one job | imports |", "|---|---|---|---|"]
    for m in sorted(modules, key=lambda m: (-lay[m], m)):
        job = one_job(m).replace("|", "\\|")
        rows.append(f"| {lay[m]} | `{m}` | {job} | {', '.join(sorted(deps[m])) or '-'} |")
    return "\n".join(rows)


def main():
    deps = graph()
    bad = loops(deps)
    for cycle in bad[:10]:
        print("loop: " + " -> ".join(cycle), file=sys.stderr)
    if bad:
        sys.exit(1)
    printed = table(deps)
    if "--check" in sys.argv:
        path = sys.argv[sys.argv.index("--check") + 1]
        doc = open(path, encoding="utf-8").read()
        if BEGIN not in doc or END not in doc:
            print(f"{path}: no {BEGIN} ... {END} block", file=sys.stderr)
            sys.exit(1)
        held = doc.split(BEGIN, 1)[1].split(END, 1)[0].strip()
        if held != printed:
            print(
                f"{path}: the module map is out of date; replace it with the output of "
                "scripts/modgraph.py",
                file=sys.stderr,
            )
            sys.exit(1)
    elif "--quiet" not in sys.argv:
        print(printed)


if __name__ == "__main__":
    main()
