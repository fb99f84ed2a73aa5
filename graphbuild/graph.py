"""The directed graphs of loading and analysis: targets and their dependencies, nodes and theirs.

A small graph of our own rather than networkx's: every command builds these graphs, and
importing networkx cost 0.13 s of each command's start (README: "Why graphbuild/graph.py"),
for the four things needed here (edges with attributes, neighbours both ways, a topological order and
a cycle). Where a command needs more (`graphbuild why --graph`'s transitive reduction), it
imports networkx itself. Orders follow insertion: the same loading gives the same order.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator
from typing import Any


class DiGraph:
    """Nodes (hashable, with an attribute dict) and directed edges (with an attribute dict)."""

    def __init__(self) -> None:
        self.nodes: dict[Any, dict[str, Any]] = {}
        self.edges: dict[tuple[Any, Any], dict[str, Any]] = {}
        self._out: dict[Any, dict[Any, None]] = {}
        self._in: dict[Any, dict[Any, None]] = {}

    def add_node(self, node: Any, **attrs: Any) -> None:
        if node not in self.nodes:
            self.nodes[node] = {}
            self._out[node] = {}
            self._in[node] = {}
        self.nodes[node].update(attrs)

    def add_edge(self, source: Any, target: Any, **attrs: Any) -> None:
        self.add_node(source)
        self.add_node(target)
        self._out[source][target] = None
        self._in[target][source] = None
        self.edges.setdefault((source, target), {}).update(attrs)

    def __contains__(self, node: object) -> bool:
        return node in self.nodes

    def __len__(self) -> int:
        return len(self.nodes)

    def __iter__(self) -> Iterator[Any]:
        return iter(self.nodes)

    def successors(self, node: Any) -> Iterator[Any]:
        return iter(self._out[node])

    def predecessors(self, node: Any) -> Iterator[Any]:
        return iter(self._in[node])

    def descendants(self, node: Any) -> set[Any]:
        """Every node reachable from `node` (not `node` itself, unless on a cycle through it)."""
        seen: set[Any] = set()
        stack = list(self._out[node])
        while stack:
            current = stack.pop()
            if current not in seen:
                seen.add(current)
                stack.extend(self._out[current])
        return seen

    def topological_order(self, among: Collection[Any] | None = None) -> list[Any]:
        """The nodes (or those of `among`, edges between them only), each before the nodes it
        points to; ties in insertion order, generation by generation (Kahn). A cycle raises
        `GraphCycle` with one cycle's edges."""
        members = self.nodes if among is None else {n: None for n in self.nodes if n in among}
        indegree = {n: 0 for n in members}
        for node in members:
            for target in self._out[node]:
                if target in indegree:
                    indegree[target] += 1
        generation = [n for n, d in indegree.items() if d == 0]
        order: list[Any] = []
        while generation:
            order.extend(generation)
            following = []
            for node in generation:
                for target in self._out[node]:
                    if target in indegree:
                        indegree[target] -= 1
                        if indegree[target] == 0:
                            following.append(target)
            generation = following
        if len(order) != len(indegree):
            raise GraphCycle(self._cycle_among({n for n, d in indegree.items() if d > 0}))
        return order

    def find_cycle(self) -> list[tuple[Any, Any]] | None:
        """One cycle's edges, in order, or None."""
        try:
            self.topological_order()
        except GraphCycle as cycle:
            return cycle.edges
        return None

    def _cycle_among(self, left: set[Any]) -> list[tuple[Any, Any]]:
        # every node Kahn's walk left has a predecessor left too: walk back until one repeats
        node = next(n for n in self.nodes if n in left)
        path: dict[Any, int] = {}
        while node not in path:
            path[node] = len(path)
            node = next(p for p in self._in[node] if p in left)
        walked = list(path)[path[node]:]  # node -> its predecessor -> ...: the cycle reversed
        ring = list(reversed(walked))
        position = {n: i for i, n in enumerate(self.nodes)}
        first = min(range(len(ring)), key=lambda i: position[ring[i]])  # from the earliest node
        ring = ring[first:] + ring[:first]
        return [(ring[i], ring[(i + 1) % len(ring)]) for i in range(len(ring))]



class GraphCycle(ValueError):
    def __init__(self, edges: list[tuple[Any, Any]]):
        super().__init__(" -> ".join(str(a) for a, _ in edges))
        self.edges = edges
