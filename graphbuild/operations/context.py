"""`VerbContext` for the verbs of rule packages and plugins, over one command's `Session`."""

from __future__ import annotations

import argparse
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import Any

from graphbuild.analysis.analyzer import Analysis
from graphbuild.errors import UsageError
from graphbuild.execution.events import NodeOutcome
from graphbuild.labels import Label
from graphbuild.nodes import LOCK_PHASE, PHASES, Executor, Located, Node, OutputRef, iter_refs
from graphbuild.operations.build import BuildRequest, ExecutionReport, build, count, execute
from graphbuild.operations.session import Session


class SessionContext:
    """What `Verb.run(ctx, args)` gets (the protocol `graphbuild.api.VerbContext`)."""

    def __init__(self, session: Session, args: argparse.Namespace, reporter: Any):
        self.session = session  # the engine's own verbs use it directly; rule verbs use the methods
        self.args = args
        self._reporter = reporter

    @property
    def root(self) -> Path:
        return self.session.workspace.root

    @property
    def cwd(self) -> Path:
        return self.session.cwd

    @property
    def json(self) -> bool:
        return bool(getattr(self.args, "json", False))

    @property
    def reporter(self) -> Any:
        return self._reporter

    def labels(self, patterns: Sequence[str]) -> list[Label]:
        return self.session.labels(list(patterns))

    def analyze(self, labels: Sequence[Label], *, locking: bool = False) -> Analysis:
        return self.session.analyze(list(labels), locking=locking)

    def build(self, labels: Sequence[Label | str], *, phase: str = "build") -> ExecutionReport:
        if phase not in PHASES:
            raise UsageError(f"phase must be one of {', '.join(PHASES)}, not {phase!r}")
        return build(self.session, self._reporter, BuildRequest(phase, tuple(str(lab) for lab in labels)))

    def action(self, label: Label | str, name: str, *, executor: Executor, inputs: Mapping[str, Any] | None = None,
               outputs: Sequence[str] = (), after: Sequence[str] = (), phase: str = "build",
               kind: str | None = None, description: str = "") -> Node:
        label = label if isinstance(label, Label) else Label.parse(str(label))
        if phase not in (*PHASES, LOCK_PHASE):
            raise UsageError(f"node {name!r}: phase must be one of {', '.join((*PHASES, LOCK_PHASE))}")
        all_inputs = dict(inputs or {})
        deps = dict.fromkeys(ref.node_id for ref in iter_refs(all_inputs) if isinstance(ref, OutputRef))
        for nid in after:
            all_inputs[f"after:{nid}"] = nid
            deps[nid] = None
        locations = {k: v.location for k, v in all_inputs.items() if isinstance(v, Located) and v.location}
        return Node(id=f"{label}#{name}", label=label, kind=kind or f"verb.{name}", rule="verb", rule_version=1,
                    executor=executor, inputs=MappingProxyType(all_inputs), outputs=tuple(outputs),
                    deps=tuple(deps), phase=phase, locations=MappingProxyType(locations),
                    description=description or f"{name} {label}")

    def execute(self, nodes: Iterable[Node], *, analysis: Analysis | None = None) -> ExecutionReport:
        import time

        started = time.monotonic()
        own = {node.id: node for node in nodes}
        known = {**(analysis.nodes if analysis is not None else {}), **own}
        order = _closure(known, list(own))
        outcomes = execute(self.session, self._reporter, known, order, [])
        return ExecutionReport("execute", (), tuple(order), outcomes, {nid: known[nid] for nid in order},
                               time.monotonic() - started, counts=count(outcomes.values()))

    def blob_path(self, digest: str) -> Path:
        return self.session.blobs.verified_path(digest)

    def output_path(self, outcome: NodeOutcome, name: str) -> Path:
        if name not in outcome.outputs:
            raise UsageError(f"node {outcome.node_id} has no output {name!r}",
                             hint="its outputs: " + (", ".join(sorted(outcome.outputs)) or "none"))
        return self.blob_path(outcome.outputs[name][0])


def _closure(nodes: Mapping[str, Node], roots: list[str]) -> list[str]:
    """`roots` and every node they depend on, dependencies first (deterministic)."""
    order: list[str] = []
    state: dict[str, int] = {}
    for root in roots:
        stack: list[tuple[str, bool]] = [(root, False)]
        while stack:
            nid, done = stack.pop()
            if done:
                if state.get(nid) != 2:
                    state[nid] = 2
                    order.append(nid)
                continue
            if state.get(nid):
                continue
            if nid not in nodes:
                raise UsageError(f"node {nid} is not known: analyse the target it belongs to and pass the analysis")
            state[nid] = 1
            stack.append((nid, True))
            stack.extend((dep, False) for dep in reversed(nodes[nid].deps) if not state.get(dep))
    return order
