"""`graphbuild why TARGET`: why each node of the target's last run ran (or that it was cached)."""

from __future__ import annotations

import argparse
from typing import Any

from graphbuild.verbs import Verb


def _configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("target", metavar="TARGET")
    parser.add_argument("--node", metavar="ID", help="only this node")
    parser.add_argument("--graph", metavar="FILE", help="also draw the run: FILE.svg or FILE.html")
    parser.add_argument("--vs", metavar="TARGET", help="compare with another target (e.g. two environments): "
                        "which nodes, packages and test results differ, from their last runs")


def run(ctx: Any, args: argparse.Namespace) -> Any:
    from graphbuild.operations.explain import ExplainReport, why
    from graphbuild.reporting.explain import rendered

    report = why(ctx.session, args.target, node=args.node, graph=args.graph, vs=args.vs)
    if isinstance(report, ExplainReport) and report.graph_file is not None:
        from graphbuild.reporting.why_graph import render

        render(list(report.nodes), list(report.edges), f"why {report.target}", report.graph_file)
    return rendered(report)


VERBS = [Verb("why", "explain what changed for a target's last run", _configure, run,
              description="For each node of the target's last run: if it ran, the inputs that differ from the run "
                          "before (name, old, new, and the BUILD.envs line); if not, where its result came from.")]
