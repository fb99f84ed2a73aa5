"""The dependency closure of some targets: what analysis loads before it analyses anything."""

from __future__ import annotations

from collections.abc import Mapping

from graphbuild.errors import GraphbuildError, Location, SpecError, raise_collected
from graphbuild.graph import DiGraph
from graphbuild.labels import Label
from graphbuild.loading.loader import Loader, Target


def load_closure(loader: Loader, requested: list[Label]) -> tuple[dict[Label, Target], DiGraph]:
    """The requested targets and every target they depend on, loaded, with the graph of their
    dependencies (edges carry the attribute and its location); every loading error at once, and
    a dependency cycle as a spec error naming each edge."""
    graph = DiGraph()
    targets: dict[Label, Target] = {}
    stack: list[tuple[Label, Location | None]] = [(lab, None) for lab in reversed(requested)]
    errors: list[GraphbuildError] = []
    while stack:
        label, referenced_at = stack.pop()
        if label in targets:
            continue
        try:
            target = loader.target(label, referenced_at=referenced_at)
        except GraphbuildError as err:
            errors.append(err)
            continue
        targets[label] = target
        graph.add_node(str(label), kind=target.rule.name)
        for attr, dep in target.attrs.labels():
            where = target.attr_location(attr)
            graph.add_edge(str(label), str(dep), attr=attr, location=str(where))
            stack.append((dep, where))
    raise_collected(errors)
    _check_cycles(graph)
    return targets, graph


def _check_cycles(graph: DiGraph) -> None:
    cycle = graph.find_cycle()
    if cycle is None:
        return
    lines = []
    for src, dst in cycle:
        data: Mapping = graph.edges[src, dst]
        lines.append(f"  {src} -> {dst}    ({data['location']}, attribute '{data['attr']}')")
    path = " -> ".join([*(src for src, _ in cycle), cycle[0][0]])
    first = graph.edges[cycle[0]]
    raise SpecError(
        f"dependency cycle: {path}\n" + "\n".join(lines),
        location=Location(*_split_location(first["location"])),
        hint="a target cannot depend on itself, even indirectly: remove one of these dependencies",
    )


def _split_location(text: str) -> tuple[str, int]:
    path, _, line = text.partition(":")
    return path, int(line.split(":")[0]) if line else 0
