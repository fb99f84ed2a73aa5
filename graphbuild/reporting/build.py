"""Text and JSON renderings of an `ExecutionReport` (build, test, run, lock).

The nodes' lines went to stderr as they finished (the console reporter); what is left is the
failures and the summary line, said through the same reporter so they follow them.
"""

from __future__ import annotations

from typing import Any

from graphbuild.execution.events import NodeOutcome
from graphbuild.nodes import Node
from graphbuild.operations.build import ExecutionReport
from graphbuild.reporting.render import Rendered


def rendered(report: ExecutionReport, reporter: Any) -> Rendered:
    return Rendered(report, lambda r: text(r, reporter), to_json)


def text(report: ExecutionReport, reporter: Any) -> str:
    if report.note:
        reporter.summary(report.note)
        return ""
    counts = report.counts
    for failure in report.failures:
        where = f"{failure.location}: " if failure.location else ""
        reporter.summary(f"FAILED {failure.node_id}: {where}{failure.message}")
    reporter.summary(f"{len(report.order)} nodes: {counts['ran']} ran, {counts['cached']} cached, "
                     f"{counts['failed']} failed" + (f", {counts['skipped']} skipped" if counts["skipped"] else "")
                     + f" in {report.seconds:.2f} s")
    return ""  # nothing on stdout


def to_json(report: ExecutionReport) -> dict[str, Any]:
    counts = dict(report.counts) or {s: 0 for s in ("ran", "cached", "failed", "skipped")}
    return {
        "targets": [str(lab) for lab in report.targets],
        "nodes": [node_json(report.nodes[nid], report.outcomes[nid]) for nid in report.order if nid in report.nodes],
        "summary": {**counts, "total": len(report.order), "seconds": round(report.seconds, 3)},
    }


def node_json(node: Node, outcome: NodeOutcome) -> dict[str, Any]:
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
