"""The action cache: node key -> result record, in a `diskcache` (SQLite; safe across processes)."""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import diskcache

_RESULT = "r:"
_USED = "u:"
_MANIFEST = "m:"


class ActionCache:
    def __init__(self, directory: Path):
        # No eviction by diskcache itself: `cache gc` evicts by last use, blobs included.
        self._cache = diskcache.Cache(str(directory), eviction_policy="none", size_limit=2**62,
                                      statistics=False, timeout=120)

    def get(self, key: str) -> dict[str, Any] | None:
        return self._cache.get(_RESULT + key)

    def put(self, key: str, record: dict[str, Any]) -> None:
        self._cache.set(_RESULT + key, record)
        self._cache.set(_USED + key, time.time())

    def put_manifest(self, key: str, manifest: dict[str, list]) -> None:
        """The named inputs of a key (what `why` diffs), kept for failed runs too."""
        self._cache.set(_MANIFEST + key, manifest)

    def get_manifest(self, key: str) -> dict[str, list] | None:
        return self._cache.get(_MANIFEST + key)

    def delete(self, key: str) -> None:
        self._cache.delete(_RESULT + key)
        self._cache.delete(_USED + key)

    def delete_manifest(self, key: str) -> None:
        self._cache.delete(_MANIFEST + key)

    def mark_used(self, keys: Iterable[str]) -> None:
        """Record a last-use time for keys hit by a run (one transaction)."""
        now = time.time()
        with self._cache.transact():
            for key in keys:
                self._cache.set(_USED + key, now)

    def entries(self) -> Iterator[tuple[str, dict[str, Any], float]]:
        """(key, record, last use) for every stored result."""
        for raw in list(self._cache.iterkeys()):
            if not raw.startswith(_RESULT):
                continue
            key = raw[len(_RESULT):]
            record = self._cache.get(raw)
            if record is not None:
                yield key, record, self._cache.get(_USED + key, 0.0)

    def clear(self) -> None:
        self._cache.clear()

    def close(self) -> None:
        self._cache.close()
