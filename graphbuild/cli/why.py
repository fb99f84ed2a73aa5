"""`graphbuild why TARGET`: why each node of the target's last run ran (or that it was cached)."""

from __future__ import annotations

import argparse
from typing import Any

from graphbuild.cli.output import emit_json, emit_text
from graphbuild.cli.session import Session
from graphbuild.errors import EXIT_OK, GraphbuildError, UsageError
from graphbuild.keys import Component, diff
from graphbuild.labels import Label


def add_parser(sub: argparse._SubParsersAction, parent: argparse.ArgumentParser) -> None:
    parser = sub.add_parser(
        "why", parents=[parent], help="explain what changed for a target's last run",
        description="For each node of the target's last run: if it ran, the inputs that differ from the run "
                    "before (name, old, new, and the BUILD.envs line); if not, where its result came from.",
    )
    parser.add_argument("target", metavar="TARGET")
    parser.add_argument("--node", metavar="ID", help="only this node")
    parser.set_defaults(handler=run_why)


def explain(session: Session, label: Label, only: str | None = None) -> list[dict[str, Any]]:
    runs = session.history.runs(str(label))
    if not runs:
        raise UsageError(f"{label} has no recorded run in this cache", hint=f"run 'graphbuild build {label}' first")
    last = runs[-1]
    previous = runs[-2] if len(runs) > 1 else None
    mine = _closure(session, label)
    report = []
    for nid, (key, status, cached_from, *rest) in last["nodes"].items():
        source = rest[0] if rest else None
        if (only and nid != only) or (mine is not None and nid not in mine):
            continue
        entry: dict[str, Any] = {"id": nid, "status": status, "key": key}
        if status == "cached":
            where = [w for w in (source and f"{source} cache", cached_from and f"from {cached_from}") if w]
            entry["reason"] = "cached" + (f" ({', '.join(where)})" if where else "")
            entry["source"] = source
            entry["cached_from"] = cached_from
        elif status == "skipped":
            entry["reason"] = "skipped: a dependency failed"
        else:
            entry.update(_changes(session, nid, key, previous))
        report.append(entry)
    if only and not report:
        raise UsageError(f"node {only} was not part of the last run of {label}")
    return report


def _closure(session: Session, label: Label) -> set[str] | None:
    """The nodes the target needs (a run of //envs/... also recorded other targets' nodes);
    None when the spec cannot be analysed right now: then every node of the run is shown."""
    try:
        analysis = session.analyze([label])
    except GraphbuildError:
        return None
    return set(analysis.closure([label], "run")) | set(analysis.closure([label], "lock"))


def _changes(session: Session, nid: str, key: str | None, previous: dict | None) -> dict[str, Any]:
    before = previous["nodes"].get(nid) if previous else None
    if before is None:
        return {"reason": "no earlier run of this node is recorded", "changes": []}
    old_key = before[0]
    if old_key == key:
        return {"reason": "same inputs as the previous run; its cached result was missing, corrupt or a "
                          "failure that is never cached", "changes": []}
    old = session.actions.get_manifest(old_key) if old_key else None
    new = session.actions.get_manifest(key) if key else None
    if old is None or new is None:
        return {"reason": "inputs changed (the earlier inputs are no longer in the cache)", "changes": []}
    changes = diff({k: Component.from_json(v) for k, v in old.items()},
                   {k: Component.from_json(v) for k, v in new.items()})
    return {"reason": "inputs changed", "changes": [
        {"input": c.name, "old": c.old, "new": c.new, "location": c.location} for c in changes]}


def run_why(session: Session, args: argparse.Namespace) -> int:
    labels = session.labels([args.target])
    if len(labels) != 1:
        raise UsageError(f"why takes one target; {args.target} names {len(labels)}")
    label = labels[0]
    report = explain(session, label, args.node)
    if args.json:
        emit_json({"command": "why", "target": str(label), "nodes": report})
        return EXIT_OK
    lines = []
    for entry in report:
        reason = "" if entry["status"] == "ran" else f" - {entry['reason']}"
        lines.append(f"{entry['id']}: {entry['status']}{reason}")
        if entry["status"] in ("ran", "failed"):
            if not entry.get("changes"):
                lines.append(f"    {entry['reason']}")
            for change in entry.get("changes", []):
                where = f"    ({change['location']})" if change["location"] else ""
                old = "(new input)" if change["old"] is None else change["old"]
                new = "(removed)" if change["new"] is None else change["new"]
                lines.append(f"    {change['input']}: {old} -> {new}{where}")
    emit_text("\n".join(lines))
    return EXIT_OK
