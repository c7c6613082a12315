"""Dependency graph: strongly connected components and a deterministic start order."""

from __future__ import annotations

import graphlib
from collections import deque
from typing import TYPE_CHECKING, Callable, Iterable, Mapping

if TYPE_CHECKING:
    from _typeshed import SupportsRichComparison

__all__ = ["start_order", "cycle_path"]


def _components(edges: Mapping[str, Iterable[str]]) -> list[list[str]]:
    """Tarjan's strongly connected components (iterative: no recursion limit)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    out: list[list[str]] = []
    counter = 0
    for root in edges:
        if root in index:
            continue
        work = [(root, iter(edges.get(root, ())))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, it = work[-1]
            advanced = False
            for nxt in it:
                if nxt not in edges:
                    continue
                if nxt not in index:
                    index[nxt] = low[nxt] = counter
                    counter += 1
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, iter(edges.get(nxt, ()))))
                    advanced = True
                    break
                if nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
            if advanced:
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                comp = []
                while True:
                    w = stack.pop()
                    on_stack.discard(w)
                    comp.append(w)
                    if w == node:
                        break
                out.append(comp)
    return out


def cycle_path(members: Iterable[str], edges: Mapping[str, Iterable[str]],
               key: Callable[[str], SupportsRichComparison] = lambda n: n) -> list[str]:
    """One cycle through the smallest member, as ``[a, b, ..., a]``."""
    group = set(members)
    start = min(group, key=key)
    prev: dict[str, str] = {}
    queue = deque([start])
    while queue:
        node = queue.popleft()
        for nxt in sorted((n for n in edges.get(node, ()) if n in group), key=key):
            if nxt == start:
                path = [node]
                while path[-1] != start:
                    path.append(prev[path[-1]])
                return list(reversed(path)) + [start]
            if nxt not in prev:
                prev[nxt] = node
                queue.append(nxt)
    return [start, start]


def start_order(edges: Mapping[str, Iterable[str]],
                key: Callable[[str], SupportsRichComparison] = lambda n: n) -> tuple[list[str], list[list[str]]]:
    """Start order (dependencies first) and the cycles found.

    *edges* maps each node to the nodes it depends on; unknown names are ignored.
    Among nodes that are ready together, *key* decides. Members of a cycle come
    after their other dependencies, in *key* order.
    """
    comps = _components(edges)
    comp_of = {n: i for i, c in enumerate(comps) for n in c}
    cycles = [sorted(c, key=key) for c in comps
              if len(c) > 1 or any(d == c[0] for d in edges.get(c[0], ()))]
    sorter: graphlib.TopologicalSorter[int] = graphlib.TopologicalSorter()
    for i, comp in enumerate(comps):
        deps = {comp_of[d] for n in comp for d in edges.get(n, ()) if d in comp_of} - {i}
        sorter.add(i, *deps)
    sorter.prepare()
    order: list[str] = []
    while sorter.is_active():
        ready = sorted(sorter.get_ready(), key=lambda i: min(key(n) for n in comps[i]))
        for i in ready:
            order.extend(sorted(comps[i], key=key))
            sorter.done(i)
    return order, [cycle_path(c, edges, key) for c in cycles]
