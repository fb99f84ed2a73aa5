"""Text and JSON renderings of `why`: an `ExplainReport` or a `CompareReport`."""

from __future__ import annotations

from graphbuild.operations.explain import CompareReport, ExplainReport
from graphbuild.reporting.changes import narrowed
from graphbuild.reporting.render import Rendered


def rendered(report: ExplainReport | CompareReport) -> Rendered:
    if isinstance(report, CompareReport):
        return Rendered(report, compare_text, lambda r: {"target": str(r.target), "vs": str(r.other),
                                                         "nodes": list(r.rows)})
    return Rendered(report, explain_text, lambda r: {"target": str(r.target), "nodes": list(r.nodes)})


def compare_text(report: CompareReport) -> str:
    lines = [f"{report.target} vs {report.other}"]
    for row in report.rows:
        lines.append(f"  {row['name']:<28} {row['state']}")
        for change in row.get("changes", []):
            left, right = ("(absent)" if v is None else v for v in (change["old"], change["new"]))
            lines.append(f"      {change['input']}: {left} | {right}")
    return "\n".join(lines)


def explain_text(report: ExplainReport) -> str:
    lines = []
    for entry in report.nodes:
        reason = "" if entry["status"] == "ran" else f" - {entry['reason']}"
        lines.append(f"{entry['id']}: {entry['status']}{reason}")
        if entry["status"] in ("ran", "failed") or entry.get("changes"):
            if not entry.get("changes"):
                lines.append(f"    {entry['reason']}")
            for change in entry.get("changes", []):
                where = f"    ({change['location']})" if change["location"] else ""
                old = "(new input)" if change["old"] is None else change["old"]
                new = "(removed)" if change["new"] is None else change["new"]
                for name, before, after in narrowed(change["input"], old, new):
                    lines.append(f"    {name}: {before} -> {after}{where}")
    return "\n".join(lines)
