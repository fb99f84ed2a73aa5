"""`graphbuild build|test|run|lock TARGETS...`: take targets through a phase.

build: the targets' build nodes; test: also their test nodes; run: everything (tests,
pushes); lock: only the nodes that rewrite lock files (`--relock` does that before the rest).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import time
from pathlib import Path
from typing import Any

from graphbuild.analysis.analyzer import Analysis
from graphbuild.cli.output import emit_json
from graphbuild.cli.session import Session
from graphbuild.errors import EXIT_BAD_INPUT, EXIT_BUILD_FAILED, EXIT_OK, GraphbuildError, SpecErrors
from graphbuild.execution.events import STATUSES, NodeOutcome
from graphbuild.execution.materialize import materialize, materialize_trees
from graphbuild.execution.scheduler import Scheduler
from graphbuild.labels import Label
from graphbuild.nodes import LOCK_PHASE, OutputRef
from graphbuild.reporting.console import ConsoleReporter
from graphbuild.rule import DefaultInfo

_HELP = {
    "build": "build the targets' outputs (no tests, no pushes)",
    "test": "build the targets and run their tests",
    "run": "build, test, then run the targets' run-time actions (pushes); pushes wait for every test",
    "lock": "rewrite the lock files the targets derive from their specs (resolves; needs the package index)",
}


def add_parser(sub: argparse._SubParsersAction, parent: argparse.ArgumentParser) -> None:
    for verb, text in _HELP.items():
        parser = sub.add_parser(verb, parents=[parent], help=text, description=text)
        parser.add_argument("targets", nargs="+", metavar="TARGET", help="labels or patterns (//envs:prod, //...)")
        if verb == "lock":
            parser.add_argument("--upgrade", action="store_true",
                                help="resolve every layer afresh (by default the pins of layers whose spec "
                                     "did not change are kept)")
        else:
            parser.add_argument("--relock", action="store_true",
                                help="update lock files first instead of failing when one is out of date")
            parser.add_argument("--affected-since", metavar="REV",
                                help="only the targets a change since git revision REV affects (for CI)")
            parser.add_argument("--output", choices=("oci", "docker-archive"), default="oci",
                                help="what an image target leaves in graphbuild-out/<package>/: its OCI layout "
                                     "<name>/ (default), or also <name>.docker.tar for `docker load` (outputs of "
                                     "that kind)")
            parser.add_argument("--junit-dir", metavar="DIR",
                                help="copy the JUnit reports of the run's tests (ran or cached) into DIR")
        parser.set_defaults(handler=run_verb, phase=verb)


def run_verb(session: Session, args: argparse.Namespace) -> int:
    reporter = ConsoleReporter(verbose=args.verbose, quiet=args.quiet or args.json)
    try:
        return _run(session, args, reporter)
    finally:
        reporter.flush()  # lines are written in batches; nothing may stay behind


def _run(session: Session, args: argparse.Namespace, reporter: ConsoleReporter) -> int:
    started = time.monotonic()
    labels = session.labels(args.targets)
    if getattr(args, "affected_since", None):
        from graphbuild.cli.affected import affected

        labels, _ = affected(session, args.targets, args.affected_since)
        if not labels:
            reporter.summary(f"nothing is affected by the changes since {args.affected_since}")
            if args.json:
                emit_json({"command": args.phase, "targets": [], "nodes": [], "exit_code": EXIT_OK,
                           "summary": {s: 0 for s in (*STATUSES, "total")}})
            return EXIT_OK
    outcomes: dict[str, NodeOutcome] = {}
    lock_order: list[str] = []
    to_lock = labels if args.phase == LOCK_PHASE else _stale(session, labels) if getattr(args, "relock", False) else []
    if to_lock:
        lock_analysis = session.analyze(to_lock, locking=True)
        lock_order = lock_analysis.closure(to_lock, LOCK_PHASE)
        outcomes = _execute(session, reporter, lock_analysis, lock_order, [],
                            options={"upgrade": bool(getattr(args, "upgrade", False))})
        analysis = lock_analysis
    if args.phase != LOCK_PHASE and all(o.ok for o in outcomes.values()):
        analysis = session.analyze(labels)
        order = analysis.closure(labels, args.phase)
        wanted = [ref for lab in labels for ref in analysis.providers[lab][DefaultInfo].files
                  if isinstance(ref, OutputRef)]
        trees = [(lab.package, tree) for lab in labels for tree in analysis.providers[lab][DefaultInfo].trees]
        output = getattr(args, "output", "oci")
        outcomes.update(_execute(session, reporter, analysis, order, wanted, trees=trees,
                                 kinds=() if output == "oci" else (output,)))
        _record_history(session, args.phase, labels, outcomes, analysis)
        if getattr(args, "junit_dir", None):
            _copy_reports(session, outcomes, session.cwd / args.junit_dir)
    order = [*lock_order, *(nid for nid in outcomes if nid not in lock_order)]
    return _report(args, reporter, analysis, labels, order, outcomes, time.monotonic() - started)


def _stale(session: Session, labels: list[Label]) -> list[Label]:
    """The targets `--relock` must relock: those whose analysis fails (a stale or missing lock
    is a spec error of the target that reads it). Any other spec error is raised as is."""
    try:
        session.analyze(labels)
    except SpecErrors as err:
        errors = err.errors
    except GraphbuildError as err:
        errors = [err]
    else:
        return []
    stale = [e.target for e in errors if isinstance(e.target, Label)]
    if len(stale) < len(errors):
        raise errors[0] if len(errors) == 1 else SpecErrors([e for e in errors if not isinstance(e.target, Label)])
    return list(dict.fromkeys(stale))


def _execute(session: Session, reporter: ConsoleReporter, analysis: Analysis, order: list[str],
             wanted: list[OutputRef], options: dict[str, Any] | None = None, trees: list | None = None,
             kinds: tuple[str, ...] = ()) -> dict[str, NodeOutcome]:
    scheduler = Scheduler(actions=session.actions, blobs=session.blobs, workspace_root=session.workspace.root,
                          tmp_dir=session.cache.tmp, reporter=reporter, jobs=session.jobs, remote=session.remote,
                          options=options, run=session.run)
    def deliver(outcomes: dict[str, NodeOutcome]) -> list[Path]:
        written = materialize(wanted, outcomes, session.blobs, session.workspace.root, session.files.digest)
        return written + materialize_trees(trees or [], outcomes, session.blobs, session.workspace.root,
                                           session.files.digest, kinds)

    return scheduler.run(analysis.nodes, order, deliver=deliver)


def _copy_reports(session: Session, outcomes: dict[str, NodeOutcome], directory: Path) -> None:
    """Outputs named `junit.xml` are JUnit reports by convention: CI systems collect them."""
    directory.mkdir(parents=True, exist_ok=True)
    for nid, outcome in outcomes.items():
        report = outcome.outputs.get("junit.xml")
        if report and outcome.ok:
            name = re.sub(r"[^A-Za-z0-9_.-]+", "_", nid.removeprefix("//")) + ".xml"
            shutil.copyfile(session.blobs.verified_path(report[0]), directory / name)


def _record_history(session: Session, phase: str, labels: list[Label], outcomes: dict[str, NodeOutcome],
                    analysis: Analysis) -> None:
    from graphbuild.cli.why import keep_own_inputs

    session.history.record(f"{time.time_ns()}-{os.getpid()}", {
        "time": time.time(),
        "phase": phase,
        "nodes": {nid: [o.key, o.status, o.cached_from, o.source, analysis.nodes[nid].cacheable]
                  for nid, o in outcomes.items() if nid in analysis.nodes},
    }, _run_labels(labels, outcomes), before=lambda last: keep_own_inputs(session, analysis, outcomes, last))


def _run_labels(labels: list[Label], outcomes: dict[str, NodeOutcome]) -> list[str]:
    """The requested targets, then every target a node of the run belongs to: `why
    //libs/textstats` explains the library's nodes of a run of `//envs/...` too."""
    found = dict.fromkeys(str(lab) for lab in labels)
    found.update(dict.fromkeys(nid.split("#", 1)[0] for nid in outcomes))
    return list(found)


def _report(args: argparse.Namespace, reporter: ConsoleReporter, analysis: Analysis, labels: list[Label],
            order: list[str], outcomes: dict[str, NodeOutcome], elapsed: float) -> int:
    counts = {status: 0 for status in STATUSES}
    for outcome in outcomes.values():
        counts[outcome.status] += 1
    failures = [outcomes[nid] for nid in order if outcomes[nid].status == "failed"]
    if any(f.bad_input for f in failures):
        exit_code = EXIT_BAD_INPUT
    elif failures or counts["skipped"]:
        exit_code = EXIT_BUILD_FAILED
    else:
        exit_code = EXIT_OK
    if args.json:
        emit_json({
            "command": args.phase,
            "targets": [str(lab) for lab in labels],
            "nodes": [_node_json(analysis.nodes[nid], outcomes[nid]) for nid in order if nid in analysis.nodes],
            "summary": {**counts, "total": len(order), "seconds": round(elapsed, 3)},
            "exit_code": exit_code,
        })
        return exit_code
    for failure in failures:
        where = f"{failure.location}: " if failure.location else ""
        reporter.summary(f"FAILED {failure.node_id}: {where}{failure.message}")
    reporter.summary(f"{len(order)} nodes: {counts['ran']} ran, {counts['cached']} cached, {counts['failed']} failed"
                     + (f", {counts['skipped']} skipped" if counts["skipped"] else "") + f" in {elapsed:.2f} s")
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
        "cache": outcome.source,
        "duration": round(outcome.duration, 4),
        "outputs": {name: v[0] for name, v in outcome.outputs.items()},
        "metadata": outcome.metadata,
        "message": outcome.message or None,
        "detail": outcome.detail or None,
        "location": outcome.location,
        "log_tail": outcome.log_tail or None,
    }
