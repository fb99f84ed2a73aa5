"""The explain use case (`graphbuild why TARGET`): why each node of a last run ran, or where it came from."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from graphbuild.analysis.analyzer import Analysis
from graphbuild.errors import EXIT_OK, GraphbuildError, UsageError
from graphbuild.execution.events import NodeOutcome
from graphbuild.keying import after_key, node_manifest
from graphbuild.keys import Component, diff
from graphbuild.labels import Label
from graphbuild.nodes import LOCK_PHASE
from graphbuild.records import RunEntry, RunRecord

if TYPE_CHECKING:
    from graphbuild.operations.session import Session


@dataclass(frozen=True)
class ExplainReport:
    """Why each node of a target's last run ran, or where its result came from."""

    target: Label
    nodes: tuple[dict[str, Any], ...]
    graph_file: Path | None = None  # where the run is to be drawn (`--graph`), with these edges
    edges: tuple[tuple[str, str], ...] = ()
    exit_code: int = EXIT_OK


@dataclass(frozen=True)
class CompareReport:
    """Two targets' last runs side by side, node by node."""

    target: Label
    other: Label
    rows: tuple[dict[str, Any], ...]
    exit_code: int = EXIT_OK


def why(session: Session, target: str, *, node: str | None = None, graph: str | None = None,
        vs: str | None = None) -> ExplainReport | CompareReport:
    labels = session.labels([target])
    if len(labels) != 1:
        raise UsageError(f"why takes one target; {target} names {len(labels)}")
    label = labels[0]
    if vs:
        return compare(session, label, vs)
    report = explain(session, label, node)
    if not graph:
        return ExplainReport(label, tuple(report))
    edges = _edges(session, label, {entry["id"] for entry in report})
    # -C DIR: as if started in DIR
    return ExplainReport(label, tuple(report), session.cwd / Path(graph), tuple(edges))


def explain(session: Session, label: Label, only: str | None = None) -> list[dict[str, Any]]:
    runs = session.history.runs(str(label))
    if not runs:
        raise UsageError(f"{label} has no recorded run in this cache", hint=f"run 'graphbuild build {label}' first")
    last = runs[-1]
    previous = runs[-2] if len(runs) > 1 else None
    analysis = _analysis(session, label)
    mine = _closure(analysis, label)
    report = []
    for nid, run_entry in last.nodes.items():
        key, status, cached_from = run_entry.key, run_entry.status, run_entry.cached_from
        source, cacheable = run_entry.source, run_entry.cacheable
        # a node asked for by id is shown even outside the target's own closure (a matrix probe)
        if (only and nid != only) or (not only and mine is not None and nid not in mine):
            continue
        entry: dict[str, Any] = {"id": nid, "status": status, "key": key}
        phase = analysis.nodes[nid].phase if analysis is not None and nid in analysis.nodes else None
        if phase:
            entry["phase"] = phase
        if status == "cached":
            where = [w for w in (source and f"{source} cache", cached_from and f"from {cached_from}") if w]
            entry["reason"] = "cached" + (f" ({', '.join(where)})" if where else "")
            entry["source"] = source
            entry["cached_from"] = cached_from
            # served by a node that ran for another target: its own inputs still changed
            moved = _changes(session, nid, key, previous)
            if moved.get("changes"):
                entry["changes"] = moved["changes"]
                entry["reason"] += ": inputs changed"
        elif status == "skipped":
            entry["reason"] = "skipped: a dependency failed"
        else:
            entry.update(_changes(session, nid, key, previous))
            if phase == LOCK_PHASE:  # only --relock runs one as part of a recorded run
                entry["reason"] = ("relocked before the build (--relock): the lock file was out of date with the "
                                   "spec; the target's other nodes read the rewritten lock")
            elif not cacheable and not entry.get("changes"):
                entry["reason"] = "runs every time: it acts on the outside world (a Docker engine, a registry...)"
        report.append(entry)
    if only and not report:
        raise UsageError(f"node {only} was not part of the last run of {label}")
    return report


def _edges(session: Session, label: Label, ids: set[str]) -> list[tuple[str, str]]:
    """(cause, effect) pairs among `ids`: a dependency, then the node that read its result."""
    analysis = _analysis(session, label)
    if analysis is None:
        return []
    import networkx as nx

    graph = nx.DiGraph([(d, n) for n in ids if n in analysis.nodes for d in analysis.nodes[n].deps if d in ids])
    # drawn without the edges implied by others: a picture, not a proof
    return list(nx.transitive_reduction(graph).edges) if nx.is_directed_acyclic_graph(graph) else list(graph.edges)


def compare(session: Session, label: Label, vs: str) -> CompareReport:
    """Two targets' last runs side by side, node by node (matched by name after '#')."""
    others = session.labels([vs])
    if len(others) != 1:
        raise UsageError(f"--vs takes one target; {vs} names {len(others)}")
    other = others[0]
    sides = []
    for target in (label, other):
        runs = session.history.runs(str(target))
        if not runs:
            raise UsageError(f"{target} has no recorded run in this cache", hint=f"run 'graphbuild build {target}'")
        mine = _closure(_analysis(session, target), target)
        nodes = {nid: entry for nid, entry in runs[-1].nodes.items() if mine is None or nid in mine}
        sides.append({nid.split("#", 1)[1] if nid.startswith(f"{target}#") else nid: (nid, entry)
                      for nid, entry in nodes.items()})
    rows = []
    for name in sorted(set(sides[0]) | set(sides[1])):
        left, right = sides[0].get(name), sides[1].get(name)
        row: dict[str, Any] = {"name": name}
        if left is None or right is None:
            row["state"] = f"only in {label if right is None else other}"
        elif left[1].key == right[1].key:
            row["state"] = "same"
        else:
            row["state"] = "differs"
            row["changes"] = _manifest_diff(session, left, right)
        if left:
            row["left"] = {"id": left[0], "key": left[1].key, "status": left[1].status}
        if right:
            row["right"] = {"id": right[0], "key": right[1].key, "status": right[1].status}
        rows.append(row)
    return CompareReport(label, other, tuple(rows))


def own_manifest_key(key: str, nid: str) -> str:
    """Where a node's own view of a key's inputs is kept when another node's result served it."""
    return f"{key}@{nid}"


def keep_own_inputs(session: Session, analysis: Analysis, outcomes: dict[str, NodeOutcome],
                    before: dict[str, RunEntry]) -> None:
    """After a run: the manifest of each node served by another node's result (another target
    sharing its key, or the remote cache), as this node reads it. A manifest stored by key is
    the view of the node that ran it: the same commit reads "branch main" in one environment
    and "branch fork" in another, and `why` must show each target its own previous inputs.
    Nodes whose entry in the labels' last run (`before`) already had this key and source are
    skipped (a no-op run writes nothing)."""
    for nid, outcome in outcomes.items():
        node = analysis.nodes.get(nid)
        if node is None or not outcome.key or not (outcome.cached_from or outcome.source == "remote"):
            continue
        previous = before.get(nid)
        if previous and previous.key == outcome.key and previous.served_by_other:
            continue  # kept by that run already
        try:
            manifest = node_manifest(node, lambda ref: outcomes[ref.node_id].outputs[ref.name][0],
                                     lambda dep: after_key(outcomes[dep]))
        except (KeyError, IndexError):  # a dependency without an outcome: nothing to explain with
            continue
        session.actions.put_manifest(own_manifest_key(outcome.key, nid),
                                     {name: comp.to_json() for name, comp in manifest.items()})


def _manifest(session: Session, key: str | None, nid: str | None = None) -> dict[str, Component] | None:
    stored = None
    if key and nid:
        stored = session.actions.get_manifest(own_manifest_key(key, nid))
    if stored is None and key:
        stored = session.actions.get_manifest(key)
    return {k: Component.from_json(v) for k, v in stored.items()} if stored is not None else None


def _manifest_diff(session: Session, left: tuple[str, RunEntry],
                   right: tuple[str, RunEntry]) -> list[dict[str, Any]]:
    old, new = _manifest(session, left[1].key, left[0]), _manifest(session, right[1].key, right[0])
    if old is None or new is None:
        return []
    return [{"input": c.name, "old": c.old, "new": c.new} for c in diff(old, new)]


def _analysis(session: Session, label: Label) -> Analysis | None:
    """The target analysed now, or None when its spec is broken (then the run is shown as recorded)."""
    try:
        return session.analyze([label])
    except GraphbuildError:
        return None


def _closure(analysis: Analysis | None, label: Label) -> set[str] | None:
    """The nodes the target needs (a run of //envs/... also recorded other targets' nodes);
    None when the spec cannot be analysed right now: then every node of the run is shown."""
    if analysis is None:
        return None
    return set(analysis.closure([label], "run")) | set(analysis.closure([label], "lock"))


def _changes(session: Session, nid: str, key: str | None, previous: RunRecord | None) -> dict[str, Any]:
    before = previous.nodes.get(nid) if previous else None
    if before is None:
        return {"reason": "no earlier run of this node is recorded", "changes": []}
    old_key = before.key
    if old_key == key:
        return {"reason": "same inputs as the previous run; its cached result was missing, corrupt or a "
                          "failure that is never cached", "changes": []}
    old, new = _manifest(session, old_key, nid), _manifest(session, key, nid)
    if old is None or new is None:
        return {"reason": "inputs changed (the earlier inputs are no longer in the cache)", "changes": []}
    changes = diff(old, new)
    return {"reason": "inputs changed", "changes": [
        {"input": c.name, "old": c.old, "new": c.new, "location": c.location} for c in changes]}
