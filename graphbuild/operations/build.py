"""The build use case: take targets through a phase (build, test, run) or relock them.

relock (`lock`, or `--relock` before the rest) -> analysis -> scheduling (with the outputs
materialised under graphbuild-out/ as they arrive) -> history -> JUnit reports copied.
Returns an `ExecutionReport`; printing it is the CLI's business.
"""

from __future__ import annotations

import os
import re
import shutil
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from graphbuild.analysis.analyzer import Analysis
from graphbuild.errors import EXIT_BAD_INPUT, EXIT_BUILD_FAILED, EXIT_OK, GraphbuildError, SpecErrors, StaleLock
from graphbuild.execution.events import STATUSES, NodeOutcome, Reporter
from graphbuild.execution.materialize import materialize, materialize_trees
from graphbuild.execution.scheduler import Scheduler
from graphbuild.labels import Label
from graphbuild.nodes import LOCK_PHASE, Node, OutputRef
from graphbuild.records import RunEntry, RunRecord
from graphbuild.rule import DefaultInfo

if TYPE_CHECKING:
    from graphbuild.operations.session import Session


@dataclass(frozen=True)
class BuildRequest:
    phase: str  # build, test, run or lock
    patterns: tuple[str, ...]
    relock: bool = False
    upgrade: bool = False
    affected_since: str | None = None
    junit_dir: Path | None = None
    output: str = "oci"  # output trees of this kind are delivered too (as tar files); "oci": only directories


@dataclass(frozen=True)
class ExecutionReport:
    """What a run did: each node's outcome, in the order they were planned."""

    command: str
    targets: tuple[Label, ...]
    order: tuple[str, ...]
    outcomes: Mapping[str, NodeOutcome]
    nodes: Mapping[str, Node]
    seconds: float
    note: str = ""  # said instead of a run (nothing affected)
    counts: Mapping[str, int] = field(default_factory=dict)

    @property
    def failures(self) -> list[NodeOutcome]:
        return [self.outcomes[nid] for nid in self.order if self.outcomes[nid].status == "failed"]

    @property
    def ok(self) -> bool:
        return self.exit_code == EXIT_OK

    @property
    def exit_code(self) -> int:
        failures = self.failures
        if any(f.bad_input for f in failures):
            return EXIT_BAD_INPUT
        if failures or any(o.status == "skipped" for o in self.outcomes.values()):
            return EXIT_BUILD_FAILED
        return EXIT_OK


def count(outcomes: Iterable[NodeOutcome]) -> dict[str, int]:
    counts = dict.fromkeys(STATUSES, 0)
    for outcome in outcomes:
        counts[outcome.status] += 1
    return counts


def build(session: Session, reporter: Reporter, request: BuildRequest) -> ExecutionReport:
    started = time.monotonic()
    labels = session.labels(list(request.patterns))
    if request.affected_since:
        from graphbuild.operations.affected import affected

        labels = affected(session, list(request.patterns), request.affected_since).targets
        if not labels:
            return ExecutionReport(request.phase, (), (), {}, {}, time.monotonic() - started,
                                   note=f"nothing is affected by the changes since {request.affected_since}")
    outcomes: dict[str, NodeOutcome] = {}
    lock_order: list[str] = []
    nodes: dict[str, Node] = {}
    to_lock = labels if request.phase == LOCK_PHASE else stale_locks(session, labels) if request.relock else []
    if to_lock:
        outcomes, lock_order = _lock(session, reporter, to_lock, nodes, upgrade=request.upgrade)
    if request.phase != LOCK_PHASE and all(o.ok for o in outcomes.values()):
        analysis = session.analyze(labels)
        order = analysis.closure(labels, request.phase)
        wanted = [ref for lab in labels for ref in analysis.providers[lab][DefaultInfo].files
                  if isinstance(ref, OutputRef)]
        trees = [(lab.package, tree) for lab in labels for tree in analysis.providers[lab][DefaultInfo].trees]
        outcomes.update(execute(session, reporter, analysis.nodes, order, wanted, request.phase, trees=trees,
                                kinds=() if request.output == "oci" else (request.output,)))
        nodes.update(analysis.nodes)
        _record_history(session, request.phase, labels, outcomes, analysis)
        if request.junit_dir is not None:
            copy_junit_reports(session, analysis.nodes, outcomes, session.cwd / request.junit_dir)
    order = [*lock_order, *(nid for nid in outcomes if nid not in lock_order)]
    return ExecutionReport(request.phase, tuple(labels), tuple(order), outcomes, nodes, time.monotonic() - started,
                           counts=count(outcomes.values()))


#: Rounds of locking at most: a lock that reads another's (a fork reads its parent's) is
#: locked again once that one was rewritten; a chain of forks needs a round per link.
_LOCK_ROUNDS = 4


def _lock(session: Session, reporter: Reporter, labels: list[Label], nodes: dict[str, Node], *,
          upgrade: bool) -> tuple[dict[str, NodeOutcome], list[str]]:
    """Run the lock nodes of `labels`; then, while the analysis of a lock node changed because
    a lock it reads was just rewritten (a fork locked with its parent), lock those targets again."""
    from graphbuild.analysis.fingerprint import fingerprints

    outcomes: dict[str, NodeOutcome] = {}
    order: list[str] = []
    analysis = session.analyze(labels, locking=True)
    before = fingerprints(analysis)
    for _ in range(_LOCK_ROUNDS):
        round_order = analysis.closure(labels, LOCK_PHASE)
        outcomes.update(execute(session, reporter, analysis.nodes, round_order, [], LOCK_PHASE,
                                options={"upgrade": upgrade}))
        nodes.update(analysis.nodes)
        order += [nid for nid in round_order if nid not in order]
        if not all(outcomes[nid].ok for nid in round_order):
            break
        # the analysis after this round's locks were written is the next round's
        analysis = session.analyze(labels, locking=True)
        after = fingerprints(analysis)
        moved = {nid.split("#", 1)[0] for nid in round_order if after.get(nid) != before.get(nid)}
        if not moved:
            break
        labels, before = [label for label in labels if str(label) in moved], after
    return outcomes, order


def stale_locks(session: Session, labels: list[Label]) -> list[Label]:
    """The targets `--relock` must relock: those whose analysis fails with `StaleLock`. Any
    other error (a typo in an attribute...) is raised as is, and nothing is relocked."""
    try:
        session.analyze(labels)
    except SpecErrors as err:
        errors = err.errors
    except GraphbuildError as err:
        errors = [err]
    else:
        return []
    others = [e for e in errors if not (isinstance(e, StaleLock) and isinstance(e.target, Label))]
    if others:
        raise others[0] if len(others) == 1 else SpecErrors(others)
    return list(dict.fromkeys(e.target for e in errors))  # type: ignore[misc]


def execute(session: Session, reporter: Reporter, nodes: Mapping[str, Node], order: Sequence[str],
            wanted: list[OutputRef], phase: str, options: dict[str, Any] | None = None, trees: list | None = None,
            kinds: tuple[str, ...] = ()) -> dict[str, NodeOutcome]:
    """Run `order` (node ids of `nodes`, dependencies first) through the caches; the `wanted`
    outputs and the output `trees` (package, OutputTree) are materialised under graphbuild-out/
    (a corrupt cached blob reruns its node); trees of a kind only when `kinds` names it."""
    scheduler = Scheduler(actions=session.actions, blobs=session.blobs, workspace_root=session.workspace.root,
                          tmp_dir=session.cache.tmp, reporter=reporter, jobs=session.jobs, remote=session.remote,
                          options=options, run=session.run, phase=phase, state_dir=session.cache.state)

    def deliver(outcomes: Mapping[str, NodeOutcome]) -> list[Path]:
        written = materialize(wanted, dict(outcomes), session.blobs, session.workspace.root, session.files.digest)
        return written + materialize_trees(trees or [], dict(outcomes), session.blobs, session.workspace.root,
                                           session.files.digest, kinds)

    return scheduler.run(dict(nodes), list(order), deliver=deliver)


def copy_junit_reports(session: Session, nodes: Mapping[str, Node], outcomes: Mapping[str, NodeOutcome],
                       directory: Path) -> None:
    """The outputs nodes declare as JUnit reports (`reports=`): CI systems collect them."""
    directory.mkdir(parents=True, exist_ok=True)
    for nid, outcome in outcomes.items():
        node = nodes.get(nid)
        if node is None or not outcome.ok:
            continue
        for index, output in enumerate(node.reports):
            name = re.sub(r"[^A-Za-z0-9_.-]+", "_", nid.removeprefix("//")) + (f".{index}" if index else "")
            shutil.copyfile(session.blobs.verified_path(outcome.outputs[output].sha256), directory / f"{name}.xml")


def _record_history(session: Session, phase: str, labels: list[Label], outcomes: dict[str, NodeOutcome],
                    analysis: Analysis) -> None:
    from graphbuild.operations.explain import keep_own_inputs

    run = RunRecord(time=time.time(), phase=phase, nodes={
        nid: RunEntry(key=o.key, status=o.status, cached_from=o.cached_from, source=o.source,
                      cacheable=analysis.nodes[nid].cacheable)
        for nid, o in outcomes.items() if nid in analysis.nodes})
    session.history.record(f"{time.time_ns()}-{os.getpid()}", run, _run_labels(labels, outcomes),
                           before=lambda last: keep_own_inputs(session, analysis, outcomes, last))


def _run_labels(labels: list[Label], outcomes: dict[str, NodeOutcome]) -> list[str]:
    """The requested targets, then every target a node of the run belongs to: `why
    //libs/textstats` explains the library's nodes of a run of `//envs/...` too."""
    found = dict.fromkeys(str(lab) for lab in labels)
    found.update(dict.fromkeys(nid.split("#", 1)[0] for nid in outcomes))
    return list(found)
