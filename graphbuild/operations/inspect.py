"""Read-only questions about the graphs: `query EXPR` (targets) and `graph TARGETS` (nodes)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from graphbuild.errors import EXIT_OK
from graphbuild.graph import DiGraph
from graphbuild.labels import Label
from graphbuild.loading.closure import load_closure
from graphbuild.nodes import Node
from graphbuild.query import evaluate

if TYPE_CHECKING:
    from graphbuild.operations.session import Session


@dataclass(frozen=True)
class QueryReport:
    expr: str
    targets: tuple[tuple[str, str | None], ...]  # (label, rule kind)
    exit_code: int = EXIT_OK


@dataclass(frozen=True)
class GraphReport:
    targets: tuple[Label, ...]
    nodes: tuple[Node, ...]  # what the targets need, dependencies first
    exit_code: int = EXIT_OK


def query(session: Session, expr: str) -> QueryReport:
    named: dict[str, list] = {}

    def resolve(word: str) -> set[str]:
        if word not in named:
            named[word] = session.labels([word])
        return {str(lab) for lab in named[word]}

    # The first pass only learns which targets the expression names; the second runs over
    # the dependency closure of those.
    evaluate(expr, DiGraph(), resolve)
    _, graph = load_closure(session.loader, list(dict.fromkeys(lab for labels in named.values() for lab in labels)))
    result = sorted(evaluate(expr, graph, resolve))
    return QueryReport(expr, tuple((lab, graph.nodes[lab].get("kind")) for lab in result))


def action_graph(session: Session, patterns: list[str]) -> GraphReport:
    labels = session.labels(patterns)
    analysis = session.analyze(labels)
    return GraphReport(tuple(labels), tuple(analysis.nodes[nid] for nid in analysis.closure(labels, "run")))
