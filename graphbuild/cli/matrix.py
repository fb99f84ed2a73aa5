"""`graphbuild matrix [ENVS...] [--libraries LIBS...]`: which library passes in which environment.

The logic is the Python rules' (`graphbuild.rules.python.matrix`); this module analyses the
workspace, adds the probe nodes the rules declare to the analysis, runs the cells' test nodes
through the scheduler like any other nodes, and prints the result.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import networkx as nx

from graphbuild.analysis.analyzer import Analysis
from graphbuild.analysis.context import RuleContext
from graphbuild.cli.output import emit_json, emit_text
from graphbuild.cli.session import Session
from graphbuild.errors import EXIT_BUILD_FAILED, EXIT_OK, UsageError, did_you_mean
from graphbuild.execution.events import NodeOutcome
from graphbuild.labels import Label
from graphbuild.reporting.console import ConsoleReporter

HELP = "test every library in every environment: pass, fail, incompatible or not applicable"


def add_parser(sub: argparse._SubParsersAction, parent: argparse.ArgumentParser) -> None:
    parser = sub.add_parser("matrix", parents=[parent], help=HELP, description=HELP + (
        ". A library an environment does not list is decided from the environment's lock, then tested in a "
        "probe image (the library installed over the environment's image; never pushed). Exit 0 when every "
        "cell was decided (fail cells included), 1 when some could not be (an engine error)."))
    parser.add_argument("environments", nargs="*", metavar="ENV",
                        help="environments (labels or patterns; default: every environment of the workspace)")
    parser.add_argument("--libraries", nargs="+", metavar="LIB", default=None,
                        help="libraries (labels or patterns; default: every library of the workspace)")
    parser.add_argument("--html", metavar="FILE", help="also write the matrix as an HTML grid to FILE")
    parser.add_argument("--junit-dir", metavar="DIR", help="write one JUnit report per environment into DIR")
    parser.set_defaults(handler=run_matrix)


# -- shared with `pick` -----------------------------------------------------------------------


def analyse_workspace(session: Session) -> Analysis:
    """The whole workspace, analysed: every environment and library is a candidate."""
    return session.analyze(session.labels(["//..."]))


def select(session: Session, patterns: list[str], known: dict[str, Any], what: str) -> list[str]:
    """Labels of `known` (environments or libraries) the patterns name; a label that is not
    one is a usage error naming the ones there are."""
    found: list[str] = []
    for pattern in patterns:
        labels = [str(lab) for lab in session.labels([pattern])]
        if "..." in pattern or pattern.endswith((":all", ":*")):  # a pattern: the ones it covers
            labels = [lab for lab in labels if lab in known]
        for label in labels:
            if label not in known:
                hint = did_you_mean(label, list(known)) or f"{what}s: {', '.join(sorted(known)) or 'none'}"
                raise UsageError(f"{label} is not {_article(what)} {what} of the workspace", hint=hint)
        found.extend(lab for lab in labels if lab not in found)
    return found


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def context_maker(session: Session, analysis: Analysis):
    def context_for(label: Label) -> RuleContext:
        return RuleContext(analysis.targets[label], analysis.providers, session.workspace.root, session.files.digest)
    return context_for


def run_extra_nodes(session: Session, args: argparse.Namespace, analysis: Analysis, declared: list[Any],
                    wanted: list[str]) -> dict[str, NodeOutcome]:
    """Add nodes declared after analysis, then run `wanted` and what they depend on."""
    from graphbuild.cli.build import _execute, _record_history

    for node in declared:
        analysis.nodes[node.id] = node
        analysis.action_graph.add_node(node.id)
        for dep in node.deps:
            analysis.action_graph.add_edge(node.id, dep)
    needed: set[str] = set()
    stack = list(wanted)
    while stack:
        nid = stack.pop()
        if nid not in needed:
            needed.add(nid)
            stack.extend(analysis.nodes[nid].deps)
    order = list(reversed(list(nx.topological_sort(analysis.action_graph.subgraph(needed)))))
    reporter = ConsoleReporter(verbose=args.verbose, quiet=args.quiet or args.json)
    try:
        outcomes = _execute(session, reporter, analysis, order, [])
    finally:
        reporter.flush()
    # recorded like a `test` run of the environments: `why ENV --node ID` explains a probe
    labels = list(dict.fromkeys(analysis.nodes[nid].label for nid in wanted))
    _record_history(session, "test", labels, outcomes, analysis)
    return outcomes


# -- the verb ---------------------------------------------------------------------------------


def run_matrix(session: Session, args: argparse.Namespace) -> int:
    from graphbuild.rules.python import matrix, matrix_report

    started = time.monotonic()
    analysis = analyse_workspace(session)
    workspace = matrix.view(analysis, session.workspace.root)
    envs = select(session, args.environments, workspace.environments, "environment") if args.environments \
        else sorted(workspace.environments)
    libs = select(session, args.libraries, workspace.libraries, "library") if args.libraries \
        else sorted(workspace.libraries)
    if not envs:
        raise UsageError("the workspace has no environment", hint="declare one with environment(...) in BUILD.envs")
    plan = matrix.plan(analysis, workspace, envs, libs, context_maker(session, analysis))
    outcomes = run_extra_nodes(session, args, analysis, plan.nodes, plan.test_nodes)
    cells = matrix.finish(plan, outcomes)
    found = matrix.counts(cells)
    code = EXIT_BUILD_FAILED if found[matrix.ERROR] else EXIT_OK
    if args.html:
        path = session.cwd / args.html
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(matrix_report.html_page(cells, envs, libs))
    if args.junit_dir:
        matrix_report.write_junit(cells, envs, session.cwd / args.junit_dir)
    elapsed = time.monotonic() - started
    if args.json:
        emit_json({"command": "matrix", "environments": envs, "libraries": libs,
                   "cells": [c.as_json() for c in cells],
                   "summary": {**found, "naive_test_runs": len(envs) * len(libs), "seconds": round(elapsed, 3)},
                   "exit_code": code})
        return code
    emit_text(matrix_report.table(cells, envs, libs))
    emit_text(matrix_report.summary_line(cells) + f" in {elapsed:.1f} s")
    if args.html:
        emit_text(f"wrote {Path(args.html)}")
    return code
