"""Garbage collection of the local cache: least recently used results go first."""

from __future__ import annotations

import contextlib
import shutil
import time
from pathlib import Path
from typing import Any

from graphbuild.cache.actions import ActionCache
from graphbuild.cache.blobs import BlobStore
from graphbuild.cache.runs import sweep_dead_runs
from graphbuild.cache.state import sweep as sweep_state

# Other files of tmp/ (an older layout's scratch, damaged databases moved aside) go after a day.
_STALE_TMP_SECONDS = 24 * 3600
# Runs are swept by liveness, not age (a live run may be old); the key lock file is held by
# every running build (deleting it would let two of them take one key).
_KEPT = {"runs", "locks"}


def collect(actions: ActionCache, blobs: BlobStore, tmp: Path, max_bytes: int,
            state: Path | None = None) -> dict[str, Any]:
    """Evict results, oldest use first, until the blobs the rest reference fit in `max_bytes`;
    delete every blob no result references, then every entry of the rule-owned `state` that
    refers to a deleted blob (an OCI layout must not outlive its blobs)."""
    sizes = dict(blobs.iter_blobs())
    entries = sorted(actions.entries(), key=lambda e: e[2])  # oldest use first
    refs = {key: [sha for sha, _ in record.blob_refs()] for key, record, _ in entries}
    kept = {key for key, _, _ in entries}
    referenced: dict[str, int] = {}
    for key in kept:
        for sha in refs[key]:
            referenced[sha] = referenced.get(sha, 0) + 1
    total = sum(sizes.get(sha, 0) for sha in referenced)
    evicted = 0
    for key, _, _ in entries:
        if total <= max_bytes:
            break
        kept.discard(key)
        actions.delete(key)
        actions.delete_manifest(key)
        evicted += 1
        for sha in refs[key]:
            referenced[sha] -= 1
            if referenced[sha] == 0:
                del referenced[sha]
                total -= sizes.get(sha, 0)
    freed = 0
    deleted = 0
    for sha, size in sizes.items():
        if sha not in referenced:
            blobs.delete(sha)
            freed += size
            deleted += 1
    swept_state = len(sweep_state(state, blobs.has)) if state is not None else 0
    sweep_dead_runs(tmp)
    now = time.time()
    for child in tmp.iterdir() if tmp.is_dir() else ():
        if child.name in _KEPT:
            continue
        with contextlib.suppress(FileNotFoundError):
            if now - child.stat().st_mtime > _STALE_TMP_SECONDS:
                shutil.rmtree(child, ignore_errors=True) if child.is_dir() else child.unlink(missing_ok=True)
    return {"evicted_results": evicted, "kept_results": len(kept), "deleted_blobs": deleted,
            "deleted_state_entries": swept_state,
            "freed_bytes": freed, "kept_bytes": total}

