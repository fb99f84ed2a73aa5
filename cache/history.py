"""Run history per workspace: which nodes each run touched, their keys and statuses.

Each target label points at its last two runs; `graphbuild why` compares them.  Node inputs
themselves are kept as manifests in the action cache, so a run record stays small: by key,
written by the node that ran it, and by key and node id for a node whose result came from
another node (two targets may share a key but not how their inputs read: a branch name).
"""

from __future__ import annotations

import fcntl
import json
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import xxhash

from graphbuild.cache.atomic import write_bytes
from graphbuild.records import RecordError, RunEntry, RunRecord

KEEP = 2


class History:
    def __init__(self, directory: Path, workspace_root: Path):
        ident = xxhash.xxh3_64_hexdigest(str(workspace_root).encode())
        self.path = directory / f"{ident}.json"

    def _read(self) -> dict[str, Any]:
        try:
            data = json.loads(self.path.read_text())
        except (OSError, ValueError):
            data = {}
        data.setdefault("runs", {})
        data.setdefault("labels", {})
        return data

    def runs(self, label: str) -> list[RunRecord]:
        """The recorded runs of `label`, oldest first (at most `KEEP`); a damaged one is left out."""
        data = self._read()
        return [run for rid in data["labels"].get(label, []) if (run := _parse(data["runs"].get(rid)))]

    @staticmethod
    def _last_nodes(data: dict[str, Any], labels: Iterable[str]) -> dict[str, RunEntry]:
        # one run is usually the last of many labels (a run of //...): each is read once
        last = dict.fromkeys(rids[-1] for label in labels if (rids := data["labels"].get(label)))
        found: dict[str, RunEntry] = {}
        for rid in last:
            if (run := _parse(data["runs"].get(rid))) is not None:
                found.update(run.nodes)
        return found

    def last_nodes(self, labels: Iterable[str]) -> dict[str, RunEntry]:
        """node id -> its entry in the last recorded run of any of `labels`."""
        return self._last_nodes(self._read(), labels)

    def record(self, run_id: str, run: RunRecord, labels: Iterable[str],
               before: Callable[[dict[str, RunEntry]], None] | None = None) -> None:
        """Store one run and make it the latest of each label (under a lock, so concurrent runs
        both land). `before` is first handed the labels' last recorded nodes (`last_nodes`)."""
        labels = list(labels)
        lock_path = self.path.with_suffix(".lock")
        with open(lock_path, "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            data = self._read()
            if before is not None:
                before(self._last_nodes(data, labels))
            data["runs"][run_id] = run.to_json()
            for label in labels:
                data["labels"][label] = [*data["labels"].get(label, []), run_id][-KEEP:]
            referenced = {rid for rids in data["labels"].values() for rid in rids}
            data["runs"] = {rid: r for rid, r in data["runs"].items() if rid in referenced}
            write_bytes(self.path, json.dumps(data, separators=(",", ":")).encode())


def _parse(stored: Any) -> RunRecord | None:
    if stored is None:
        return None
    try:
        return RunRecord.from_json(stored)
    except RecordError:
        return None
