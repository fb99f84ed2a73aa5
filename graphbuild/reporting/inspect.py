"""Renderings of `query` (one label a line) and `graph` (Graphviz dot, or JSON)."""

from __future__ import annotations

from typing import Any

from graphbuild.operations.inspect import GraphReport, QueryReport
from graphbuild.reporting.render import Rendered


def query(report: QueryReport) -> Rendered:
    return Rendered(report, lambda r: "\n".join(lab for lab, _ in r.targets),
                    lambda r: {"expr": r.expr, "targets": [{"label": lab, "kind": kind} for lab, kind in r.targets]})


def graph(report: GraphReport, *, as_json: bool) -> Rendered:
    return Rendered(report, graph_json_text if as_json else dot, graph_json)


def graph_json(report: GraphReport) -> dict[str, Any]:
    return {"targets": [str(lab) for lab in report.targets], "nodes": [
        {"id": n.id, "label": str(n.label), "kind": n.kind, "phase": n.phase, "executor": n.executor.ident,
         "deps": list(n.deps), "outputs": list(n.outputs)} for n in report.nodes]}


def graph_json_text(report: GraphReport) -> str:
    import json

    return json.dumps({"command": "graph", **graph_json(report), "exit_code": report.exit_code})


def dot(report: GraphReport) -> str:
    lines = ["digraph graphbuild {", "  rankdir=LR;", "  node [shape=box, fontname=monospace];"]
    for node in report.nodes:
        shape = {"build": "box", "test": "ellipse", "run": "hexagon"}[node.phase]
        lines.append(f'  "{node.id}" [label="{node.id}\\n{node.kind}", shape={shape}];')
        lines.extend(f'  "{node.id}" -> "{dep}";' for dep in node.deps)
    lines.append("}")
    return "\n".join(lines)
