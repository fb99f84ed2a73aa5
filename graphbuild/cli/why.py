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
    from graphbuild.operations.explain import why
    from graphbuild.reporting.explain import rendered

    return rendered(why(ctx.session, args.target, node=args.node, graph=args.graph, vs=args.vs))


VERBS = [Verb("why", "explain what changed for a target's last run", _configure, run,
              description="For each node of the target's last run: if it ran, the inputs that differ from the run "
                          "before (name, old, new, and the BUILD.envs line); if not, where its result came from.")]
