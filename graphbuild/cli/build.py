"""`graphbuild build|test|run TARGETS...`: take targets through a phase.

build: the targets' build nodes; test: also their test nodes; run: everything (tests, pushes).
"""

from __future__ import annotations

import argparse
import os
import time
from typing import Any

from graphbuild.cache.blobs import CorruptBlob
from graphbuild.cli.output import emit_json
from graphbuild.cli.session import Session
from graphbuild.errors import EXIT_BUILD_FAILED, EXIT_OK
from graphbuild.execution.events import STATUSES, NodeOutcome
from graphbuild.execution.materialize import materialize
from graphbuild.execution.scheduler import Scheduler
from graphbuild.nodes import OutputRef
from graphbuild.reporting.console import ConsoleReporter
from graphbuild.rule import DefaultInfo


def add_parser(sub: argparse._SubParsersAction, parent: argparse.ArgumentParser) -> None:
    helps = {
        "build": "build the targets' outputs (no tests, no pushes)",
        "test": "build the targets and run their tests",
        "run": "build, test and run the targets' run-time actions (pushes)",
    }
    for verb, text in helps.items():
        parser = sub.add_parser(verb, parents=[parent], help=text, description=text)
        parser.add_argument("targets", nargs="+", metavar="TARGET", help="labels or patterns (//envs:prod, //...)")
        parser.set_defaults(handler=run_verb, phase={"build": "build", "test": "test", "run": "run"}[verb])


def run_verb(session: Session, args: argparse.Namespace) -> int:
    started = time.monotonic()
    labels = session.labels(args.targets)
    analysis = session.analyze(labels)
    order = analysis.closure(labels, args.phase)
    reporter = ConsoleReporter(verbose=args.verbose, quiet=args.quiet or args.json)
    scheduler = Scheduler(actions=session.actions, blobs=session.blobs, workspace_root=session.workspace.root,
                          tmp_dir=session.cache.tmp, reporter=reporter, jobs=session.jobs)
    outcomes = scheduler.run(analysis.nodes, order)
    wanted = [ref for lab in labels for ref in analysis.providers[lab][DefaultInfo].files
              if isinstance(ref, OutputRef)]
    for _ in range(3):
        try:
            materialize(wanted, outcomes, session.blobs, session.workspace.root, session.files.digest)
            break
        except CorruptBlob as err:
            producer = next(nid for nid, o in outcomes.items() if any(v[0] == err.digest for v in o.outputs.values()))
            reporter.warning(f"corrupt blob sha256:{err.digest[:16]} (output of {producer}) removed; rebuilding it")
            outcomes.update(scheduler.run(analysis.nodes, order, force=[producer]))
    run_id = f"{time.time_ns()}-{os.getpid()}"
    session.history.record(run_id, {
        "time": time.time(),
        "phase": args.phase,
        "nodes": {nid: [o.key, o.status, o.cached_from] for nid, o in outcomes.items()},
    }, [str(lab) for lab in labels])
    elapsed = time.monotonic() - started
    counts = {status: 0 for status in STATUSES}
    for outcome in outcomes.values():
        counts[outcome.status] += 1
    summary = (f"{len(order)} nodes: {counts['ran']} ran, {counts['cached']} cached, {counts['failed']} failed"
               + (f", {counts['skipped']} skipped" if counts["skipped"] else "") + f" in {elapsed:.2f} s")
    failed = counts["failed"] + counts["skipped"] > 0
    exit_code = EXIT_BUILD_FAILED if failed else EXIT_OK
    if args.json:
        emit_json({
            "command": args.phase,
            "targets": [str(lab) for lab in labels],
            "nodes": [_node_json(analysis.nodes[nid], outcomes[nid]) for nid in order],
            "summary": {**counts, "total": len(order), "seconds": round(elapsed, 3)},
            "exit_code": exit_code,
        })
    else:
        for nid in order:
            if outcomes[nid].status == "failed":
                reporter.info(f"FAILED: {nid}: {outcomes[nid].message}")
        reporter.summary(summary)
    return exit_code


def _node_json(node: Any, outcome: NodeOutcome) -> dict[str, Any]:
    return {
        "id": node.id,
        "label": str(node.label),
        "kind": node.kind,
        "phase": node.phase,
        "key": outcome.key,
        "status": outcome.status,
        "cached_from": outcome.cached_from,
        "duration": round(outcome.duration, 4),
        "outputs": {name: v[0] for name, v in outcome.outputs.items()},
        "metadata": outcome.metadata,
        "message": outcome.message or None,
        "log_tail": outcome.log_tail or None,
    }
