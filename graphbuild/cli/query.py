"""`graphbuild query EXPR` (the target graph) and `graphbuild graph TARGETS` (the action graph)."""

from __future__ import annotations

import argparse
from typing import Any

from graphbuild.verbs import Verb


def _configure_query(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("expr", metavar="EXPR", help="e.g. 'deps(//envs:prod)' or 'rdeps(//..., //envs:core)'")


def run_query(ctx: Any, args: argparse.Namespace) -> Any:
    from graphbuild.operations.inspect import query
    from graphbuild.reporting import inspect

    return inspect.query(query(ctx.session, args.expr))


def _configure_graph(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("targets", nargs="+", metavar="TARGET")
    parser.add_argument("--format", choices=("dot", "json"), default="dot")


def run_graph(ctx: Any, args: argparse.Namespace) -> Any:
    from graphbuild.operations.inspect import action_graph
    from graphbuild.reporting import inspect

    return inspect.graph(action_graph(ctx.session, args.targets), as_json=args.format == "json")


VERBS = [
    Verb("query", "query the target graph", _configure_query, run_query,
         description="Evaluate a query over targets. Functions: deps(X[, N]), rdeps(U, X[, N]), kind(RE, X), "
                     "allpaths(A, B), somepath(A, B); operators + - ^ (union, except, intersect)."),
    Verb("graph", "print the action graph of targets", _configure_graph, run_graph,
         description="Print the nodes the targets need (all phases) and their dependencies."),
]
