#!/usr/bin/env python3
"""Lists import cycles between the modules of each crate (`use crate::a::b` in a file of
module `x` is an edge x -> a; a module is a top-level file or folder of `src/`; edges from a
folder to itself are not cycles). Exit status 1 when there is any.

    python3 scripts/import-cycles.py            # kernels, model, bench-harness
"""
import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
USE = re.compile(r"\bcrate::([a-z_0-9]+)")


def modules(src):
    edges = {}
    for dirpath, _, files in os.walk(src):
        for f in files:
            if not f.endswith(".rs"):
                continue
            path = os.path.join(dirpath, f)
            rel = os.path.relpath(path, src).split(os.sep)
            mod = rel[0][:-3] if len(rel) == 1 else rel[0]
            if mod in ("lib", "main", "bin"):
                continue
            text = open(path).read()
            # Strip comments and the test modules' imports would still count: keep them, a
            # test module is part of its file.
            text = re.sub(r"//[^\n]*", "", text)
            for m in USE.finditer(text):
                if m.group(1) != mod:
                    edges.setdefault(mod, set()).add(m.group(1))
            edges.setdefault(mod, set())
    return edges


def cycles(edges):
    found, seen = [], set()
    for a in sorted(edges):
        for b in sorted(edges[a]):
            if a in edges.get(b, ()) and (b, a) not in seen:
                seen.add((a, b))
                found.append(f"{a} <-> {b}")
    # Longer cycles: a DFS for back edges.
    color, stack = {}, []

    def dfs(u):
        color[u] = 1
        stack.append(u)
        for v in sorted(edges.get(u, ())):
            if color.get(v) == 1:
                cyc = stack[stack.index(v):] + [v]
                if len(cyc) > 3:
                    found.append(" -> ".join(cyc))
            elif color.get(v) is None and v in edges:
                dfs(v)
        stack.pop()
        color[u] = 2

    for u in sorted(edges):
        if color.get(u) is None:
            dfs(u)
    return found


def main():
    bad = 0
    for crate in ("kernels", "model", "bench-harness"):
        c = cycles(modules(os.path.join(ROOT, crate, "src")))
        for line in c:
            print(f"{crate}: {line}")
        bad += len(c)
    print("no import cycles" if bad == 0 else f"{bad} import cycle(s)")
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
