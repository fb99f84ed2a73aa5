"""Text and JSON renderings of `why`: an `ExplainReport` or a `CompareReport`."""

from __future__ import annotations

import json
from typing import Any

from graphbuild.operations.explain import CompareReport, ExplainReport
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


def narrowed(name: str, old: str, new: str) -> list[tuple[str, str, str]]:
    """A change of a mapping or list (an `env`, an image's runtime) as the entries that
    changed, each on its own line: `env: {"A": "1", "B": "2"} -> {...}` reads as
    `env[B]: "2" -> "3"`; a list as the items it lost and gained."""
    try:
        before, after = json.loads(old), json.loads(new)
    except ValueError:
        return [(name, old, new)]
    return _narrow(name, before, after) or [(name, old, new)]


def _narrow(name: str, before: Any, after: Any) -> list[tuple[str, str, str]]:
    if isinstance(before, dict) and isinstance(after, dict):
        shown = []
        for key in sorted(set(before) | set(after)):
            if key not in before or key not in after:
                shown.append((f"{name}[{key}]", json.dumps(before[key]) if key in before else "(unset)",
                              json.dumps(after[key]) if key in after else "(unset)"))
            elif before[key] != after[key]:
                shown.extend(_narrow(f"{name}[{key}]", before[key], after[key]))
        return shown
    if isinstance(before, list) and isinstance(after, list) and before and after:
        lost = [item for item in before if item not in after]
        gained = [item for item in after if item not in before]
        if lost or gained:
            return [(name, " ".join(json.dumps(i) for i in lost) or "(nothing)",
                     " ".join(json.dumps(i) for i in gained) or "(nothing)")]
        return [(name, "(order) " + json.dumps(before), json.dumps(after))]
    return [(name, json.dumps(before), json.dumps(after))]
