"""The action cache: node key -> result record, in a `diskcache` (SQLite; safe across processes)."""

from __future__ import annotations

import contextlib
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import diskcache

_RESULT = "r:"
_MANIFEST = "m:"


class ActionCache:
    def __init__(self, directory: Path):
        # No eviction by diskcache itself: `cache gc` evicts by last use, blobs included.
        self._cache = diskcache.Cache(str(directory), eviction_policy="none", size_limit=2**62,
                                      statistics=False, timeout=120)
        # Last use of each key, for `cache gc`: a plain table written in one statement per run
        # (a no-op build touches thousands of keys; one diskcache write each would dominate it).
        self._usage_path = directory / "usage.sqlite"
        self._usage: sqlite3.Connection | None = None
        self._usage_lock = threading.Lock()  # one connection, used by the worker threads in turn

    def _usage_db(self) -> sqlite3.Connection:
        if self._usage is None:
            self._usage = sqlite3.connect(self._usage_path, timeout=120, isolation_level=None,
                                          check_same_thread=False)
            self._usage.execute("PRAGMA journal_mode=WAL")
            self._usage.execute("PRAGMA synchronous=NORMAL")
            self._usage.execute("CREATE TABLE IF NOT EXISTS used (key TEXT PRIMARY KEY, at REAL) WITHOUT ROWID")
        return self._usage

    def get(self, key: str) -> dict[str, Any] | None:
        return self._cache.get(_RESULT + key)

    def put(self, key: str, record: dict[str, Any]) -> None:
        self._cache.set(_RESULT + key, record)
        self.mark_used([key])

    def put_manifest(self, key: str, manifest: dict[str, list]) -> None:
        """The named inputs of a key (what `why` diffs), kept for failed runs too."""
        self._cache.set(_MANIFEST + key, manifest)

    def get_manifest(self, key: str) -> dict[str, list] | None:
        return self._cache.get(_MANIFEST + key)

    def delete(self, key: str) -> None:
        self._cache.delete(_RESULT + key)
        with self._usage_lock:
            self._usage_db().execute("DELETE FROM used WHERE key = ?", (key,))

    def delete_manifest(self, key: str) -> None:
        self._cache.delete(_MANIFEST + key)

    def mark_used(self, keys: Iterable[str]) -> None:
        """Record a last-use time for keys hit by a run (one transaction)."""
        now = time.time()
        rows = [(key, now) for key in keys]
        if rows:
            with self._usage_lock:
                db = self._usage_db()
                with _transaction(db):
                    db.executemany("INSERT OR REPLACE INTO used (key, at) VALUES (?, ?)", rows)

    def entries(self) -> Iterator[tuple[str, dict[str, Any], float]]:
        """(key, record, last use) for every stored result."""
        with self._usage_lock:
            used = dict(self._usage_db().execute("SELECT key, at FROM used").fetchall())
        for raw in list(self._cache.iterkeys()):
            if not raw.startswith(_RESULT):
                continue
            key = raw[len(_RESULT):]
            record = self._cache.get(raw)
            if record is not None:
                yield key, record, used.get(key, 0.0)

    def clear(self) -> None:
        self._cache.clear()
        with self._usage_lock:
            self._usage_db().execute("DELETE FROM used")

    def close(self) -> None:
        self._cache.close()
        if self._usage is not None:
            self._usage.close()
            self._usage = None


@contextlib.contextmanager
def _transaction(db: sqlite3.Connection) -> Iterator[None]:
    db.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")
