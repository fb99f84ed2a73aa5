"""Text and JSON renderings of an `AffectedReport`."""

from __future__ import annotations

import sys
from typing import Any

from graphbuild.operations.affected import AffectedReport
from graphbuild.reporting.render import Rendered


def rendered(report: AffectedReport, *, with_nodes: bool) -> Rendered:
    def text(r: AffectedReport) -> str:
        for warning in r.warnings:  # beside the answer, not in it: stdout stays a list of labels
            sys.stderr.write(f"warning: {warning}\n")
        return "\n".join([str(lab) for lab in r.targets] + ([f"  {nid}" for nid in r.nodes] if with_nodes else []))

    def to_json(r: AffectedReport) -> dict[str, Any]:
        return {"since": r.since, "targets": [str(lab) for lab in r.targets], "warnings": list(r.warnings),
                **({"nodes": list(r.nodes)} if with_nodes else {})}

    return Rendered(report, text, to_json)
