"""`graphbuild graph TARGETS --format dot|json`: the action graph the targets need."""

from __future__ import annotations

import argparse

from graphbuild.cli.output import emit_json, emit_text
from graphbuild.cli.session import Session
from graphbuild.errors import EXIT_OK


def add_parser(sub: argparse._SubParsersAction, parent: argparse.ArgumentParser) -> None:
    parser = sub.add_parser("graph", parents=[parent], help="print the action graph of targets",
                            description="Print the nodes the targets need (all phases) and their dependencies.")
    parser.add_argument("targets", nargs="+", metavar="TARGET")
    parser.add_argument("--format", choices=("dot", "json"), default="dot")
    parser.set_defaults(handler=run_graph)


def run_graph(session: Session, args: argparse.Namespace) -> int:
    labels = session.labels(args.targets)
    analysis = session.analyze(labels)
    order = analysis.closure(labels, "run")
    nodes = [analysis.nodes[nid] for nid in order]
    if args.json or args.format == "json":
        emit_json({"command": "graph", "targets": [str(lab) for lab in labels], "nodes": [
            {"id": n.id, "label": str(n.label), "kind": n.kind, "phase": n.phase, "executor": n.executor.ident,
             "deps": list(n.deps), "outputs": list(n.outputs)} for n in nodes]})
        return EXIT_OK
    lines = ["digraph graphbuild {", "  rankdir=LR;", "  node [shape=box, fontname=monospace];"]
    for node in nodes:
        shape = {"build": "box", "test": "ellipse", "run": "hexagon"}[node.phase]
        lines.append(f'  "{node.id}" [label="{node.id}\\n{node.kind}", shape={shape}];')
        lines.extend(f'  "{node.id}" -> "{dep}";' for dep in node.deps)
    lines.append("}")
    emit_text("\n".join(lines))
    return EXIT_OK
