#!/usr/bin/env python3
"""No module of the gateway crate may depend on a module that depends on it.

Reads `crates/gateway/src`, takes each module's references to `crate::MODULE` (and
`crate::MODULE::SUB` when SUB is a module of its own) outside comments and tests, plus
`use super::*` in a submodule, and fails with the cycles it finds (Tarjan's strongly
connected components). A parent declaring its child (`mod x;`) is not an edge."""
from __future__ import annotations

import collections
import os
import re
import sys

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "crates", "gateway", "src")


def modules() -> dict[str, str]:
    out = {}
    for dirpath, _, files in os.walk(ROOT):
        for f in files:
            if not f.endswith(".rs"):
                continue
            rel = os.path.relpath(os.path.join(dirpath, f), ROOT)[:-3]
            name = rel.replace("/mod", "").replace("/", "::")
            src = open(os.path.join(dirpath, f), encoding="utf-8").read()
            src = src.split("#[cfg(test)]")[0]
            src = re.sub(r"//[^\n]*", "", src)
            out["crate" if name == "lib" else name] = src
    return out


def main() -> int:
    mods = modules()
    edges: dict[str, set[str]] = collections.defaultdict(set)
    for m, src in mods.items():
        for path in re.findall(r"crate::([a-z_]+(?:::[a-z_]+)?)", src):
            target = path if path in mods else path.split("::")[0]
            if target in mods and target != m and not m.startswith(target + "::"):
                edges[m].add(target)
        if "::" in m and re.search(r"use super::\*", src):
            edges[m].add(m.rsplit("::", 1)[0])
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    cycles: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(edges[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                cycles.append(sorted(comp))

    sys.setrecursionlimit(10_000)
    for v in sorted(mods):
        if v not in index:
            visit(v)
    if not cycles:
        print(f"cycles: none among the gateway's {len(mods)} modules")
        return 0
    for comp in cycles:
        print("cycles: these modules depend on each other:")
        for m in comp:
            print(f"  {m} -> {', '.join(sorted(edges[m] & set(comp)))}")
    return 1


if __name__ == "__main__":
    sys.exit(main())
