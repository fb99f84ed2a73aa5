"""`graphbuild query EXPR`: questions about the target graph (deps, rdeps, kind, allpaths...)."""

from __future__ import annotations

import argparse

import networkx as nx

from graphbuild.cli.output import emit_json, emit_text
from graphbuild.cli.session import Session
from graphbuild.errors import EXIT_OK
from graphbuild.loading.closure import load_closure
from graphbuild.query import evaluate


def add_parser(sub: argparse._SubParsersAction, parent: argparse.ArgumentParser) -> None:
    parser = sub.add_parser(
        "query", parents=[parent], help="query the target graph",
        description="Evaluate a query over targets. Functions: deps(X[, N]), rdeps(U, X[, N]), kind(RE, X), "
                    "allpaths(A, B), somepath(A, B); operators + - ^ (union, except, intersect).",
    )
    parser.add_argument("expr", metavar="EXPR", help="e.g. 'deps(//envs:prod)' or 'rdeps(//..., //envs:core)'")
    parser.set_defaults(handler=run_query)


def run_query(session: Session, args: argparse.Namespace) -> int:
    named: dict[str, list] = {}

    def resolve(word: str) -> set[str]:
        if word not in named:
            named[word] = session.labels([word])
        return {str(lab) for lab in named[word]}

    # The first pass only learns which targets the expression names; the second runs over
    # the dependency closure of those.
    evaluate(args.expr, nx.DiGraph(), resolve)
    _, graph = load_closure(session.loader, list(dict.fromkeys(lab for labels in named.values() for lab in labels)))
    result = sorted(evaluate(args.expr, graph, resolve))
    if args.json:
        emit_json({"command": "query", "expr": args.expr,
                   "targets": [{"label": lab, "kind": graph.nodes[lab].get("kind")} for lab in result]})
    elif result:
        emit_text("\n".join(result))
    return EXIT_OK
