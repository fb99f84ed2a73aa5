"""The action cache: node key -> result record, in a `diskcache` (SQLite; safe across processes).

A corrupt database (garbage, a truncated file, a page that no longer reads) is not fatal: it is
reported once, naming the file, moved aside under `tmp/corrupt/` and replaced by an empty one,
and the run goes on; the nodes whose results were in it run again, and their outputs, already in
the blob store, are not stored twice. A single record that no longer decodes, or that does not
have the shape of a record, is dropped the same way.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import pickle
import sqlite3
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import diskcache

from graphbuild.records import ActionResult, OtherFormat, RecordError

_RESULT = "r:"
_MANIFEST = "m:"
_DB = "cache.db"
_USAGE = "usage.sqlite"
# SQLite's primary result codes for a damaged file: SQLITE_CORRUPT, SQLITE_NOTADB
_CORRUPT_CODES = (11, 26)
# what unpickling a damaged value can raise
_UNDECODABLE = (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, ImportError,
                IndexError, KeyError, UnicodeDecodeError)

T = TypeVar("T")


def _stderr_warning(text: str) -> None:
    sys.stderr.write(f"warning: {text}\n")


class ActionCache:
    def __init__(self, directory: Path, *, warn: Callable[[str], None] | None = None):
        self.directory = directory
        #: where damaged files are moved (the cache's tmp/: `cache gc` empties it after a day)
        self._aside = directory.parent / "tmp" / "corrupt"
        self._recover_lock = directory.parent / "tmp" / "locks" / "actions-recover.lock"
        self._warn = warn or _stderr_warning
        self._lock = threading.RLock()  # swapping a damaged database for a new one
        self._db_inode: int | None = None  # of the cache.db this process opened
        # Last use of each key, for `cache gc`: a plain table written in one statement per run
        # (a no-op build touches thousands of keys; one diskcache write each would dominate it).
        self._usage_path = directory / _USAGE
        self._usage: sqlite3.Connection | None = None
        self._usage_inode: int | None = None
        self._usage_lock = threading.RLock()  # one connection, used by the worker threads in turn
        self._cache: diskcache.Cache = self._guard(_DB, self._open)

    # -- opening, and recovering from a damaged file ---------------------------------------------

    def _open(self) -> diskcache.Cache:
        self.directory.mkdir(parents=True, exist_ok=True)
        # No eviction by diskcache itself: `cache gc` evicts by last use, blobs included.
        cache = diskcache.Cache(str(self.directory), eviction_policy="none", size_limit=2**62,
                                statistics=False, timeout=120)
        self._db_inode = _inode(self.directory / _DB)
        return cache

    def _guard(self, which: str, operation: Callable[[], T]) -> T:
        """Run `operation`; when SQLite finds `which` damaged, replace it and run it once more."""
        try:
            return operation()
        except sqlite3.DatabaseError as err:
            if not _is_corrupt(err):
                raise
            self._replace(which, err)
        return operation()

    def _replace(self, which: str, err: sqlite3.DatabaseError) -> None:
        with self._lock:
            self._recover_lock.parent.mkdir(parents=True, exist_ok=True)
            with open(self._recover_lock, "w") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX)  # one process moves it; the others reopen
                if which == _DB:
                    self._replace_db(err)
                else:
                    self._replace_usage(err)

    def _replace_db(self, err: sqlite3.DatabaseError) -> None:
        if not self._replaced_meanwhile(self.directory / _DB, self._db_inode, self._open):
            # the database and the value files it names go aside together
            dest = self._aside_path("actions")
            if self.directory.exists():
                os.replace(self.directory, dest)
            self._warn(f"the action cache {self.directory / _DB} is corrupt ({err}); moved aside to {dest}; "
                       f"starting an empty one (results are rebuilt, stored blobs are reused)")
        old = getattr(self, "_cache", None)
        if old is not None:
            with contextlib.suppress(Exception):
                old.close()
        self._cache = self._open()
        with self._usage_lock:
            self._close_usage()

    def _replace_usage(self, err: sqlite3.DatabaseError) -> None:
        with self._usage_lock:
            self._close_usage()
            if not self._replaced_meanwhile(self._usage_path, self._usage_inode,
                                            lambda: self._close_usage(self._usage_db())):
                dest = self._aside_path("usage")
                dest.mkdir()
                for suffix in ("", "-wal", "-shm"):
                    with contextlib.suppress(FileNotFoundError):
                        os.replace(self._usage_path.with_name(_USAGE + suffix), dest / (_USAGE + suffix))
                self._warn(f"the last-use table {self._usage_path} is corrupt ({err}); moved aside to {dest}; "
                           f"starting an empty one (`cache gc` takes every result as unused until it is used)")

    @staticmethod
    def _replaced_meanwhile(path: Path, known_inode: int | None, try_open: Callable[[], Any]) -> bool:
        """Whether another process has already put a new file in place of the damaged one."""
        if known_inode is not None:
            return _inode(path) != known_inode
        try:  # this process never opened it: does it open now?
            try_open()
        except sqlite3.DatabaseError as err:
            if _is_corrupt(err):
                return False
            raise
        return True

    def _aside_path(self, name: str) -> Path:
        self._aside.mkdir(parents=True, exist_ok=True)
        return self._aside / f"{name}-{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}-{time.monotonic_ns()}"

    def _close_usage(self, usage: sqlite3.Connection | None = None) -> None:
        usage = usage or self._usage
        if usage is not None:
            with contextlib.suppress(sqlite3.Error):
                usage.close()
        self._usage = None

    def _usage_db(self) -> sqlite3.Connection:
        if self._usage is None:
            usage = sqlite3.connect(self._usage_path, timeout=120, isolation_level=None, check_same_thread=False)
            try:
                usage.execute("PRAGMA journal_mode=WAL")
                usage.execute("PRAGMA synchronous=NORMAL")
                usage.execute("CREATE TABLE IF NOT EXISTS used (key TEXT PRIMARY KEY, at REAL) WITHOUT ROWID")
            except sqlite3.Error:
                usage.close()
                raise
            self._usage_inode = _inode(self._usage_path)
            self._usage = usage
        return self._usage

    def _with_usage(self, operation: Callable[[sqlite3.Connection], T]) -> T:
        def run() -> T:
            with self._usage_lock:
                return operation(self._usage_db())

        return self._guard(_USAGE, run)

    # -- records ---------------------------------------------------------------------------------

    def _get(self, raw_key: str) -> Any:
        try:
            try:
                return self._cache.get(raw_key)  # the hot path of a no-op build: no wrapper
            except sqlite3.DatabaseError as err:
                if not _is_corrupt(err):
                    raise
                self._replace(_DB, err)
            return self._cache.get(raw_key)
        except _UNDECODABLE as err:
            self._drop(raw_key, f"does not decode ({type(err).__name__})")
            return None

    def _drop(self, raw_key: str, why: str) -> None:
        self._warn(f"the action cache entry {raw_key[len(_RESULT):]} {why}; dropped, its node runs again")
        self._guard(_DB, lambda: self._cache.delete(raw_key))

    def get(self, key: str) -> ActionResult | None:
        stored = self._get(_RESULT + key)
        if stored is None:
            return None
        try:
            return ActionResult.from_json(stored)
        except OtherFormat:  # written by another version: a miss (the node's run replaces it)
            return None
        except RecordError:
            self._drop(_RESULT + key, "is not a result record")
            return None

    def put(self, key: str, record: ActionResult) -> None:
        stored = record.to_json()
        self._guard(_DB, lambda: self._cache.set(_RESULT + key, stored))
        self.mark_used([key])

    def put_manifest(self, key: str, manifest: dict[str, list]) -> None:
        """The named inputs of a key (what `why` diffs), kept for failed runs too."""
        self._guard(_DB, lambda: self._cache.set(_MANIFEST + key, manifest))

    def get_manifest(self, key: str) -> dict[str, list] | None:
        manifest = self._get(_MANIFEST + key)
        return manifest if isinstance(manifest, dict) else None

    def delete(self, key: str) -> None:
        self._guard(_DB, lambda: self._cache.delete(_RESULT + key))
        self._with_usage(lambda db: db.execute("DELETE FROM used WHERE key = ?", (key,)))

    def delete_manifest(self, key: str) -> None:
        self._guard(_DB, lambda: self._cache.delete(_MANIFEST + key))

    def mark_used(self, keys: Iterable[str]) -> None:
        """Record a last-use time for keys hit by a run (one transaction)."""
        now = time.time()
        rows = [(key, now) for key in keys]
        if not rows:
            return

        def write(db: sqlite3.Connection) -> None:
            with _transaction(db):
                db.executemany("INSERT OR REPLACE INTO used (key, at) VALUES (?, ?)", rows)

        self._with_usage(write)

    def entries(self) -> Iterator[tuple[str, ActionResult, float]]:
        """(key, record, last use) for every stored result."""
        used = dict(self._with_usage(lambda db: db.execute("SELECT key, at FROM used").fetchall()))
        for raw in self._guard(_DB, lambda: list(self._cache.iterkeys())):
            if not raw.startswith(_RESULT):
                continue
            key = raw[len(_RESULT):]
            record = self.get(key)
            if record is not None:
                yield key, record, used.get(key, 0.0)

    def clear(self) -> None:
        self._guard(_DB, self._cache.clear)
        self._with_usage(lambda db: db.execute("DELETE FROM used"))

    def close(self) -> None:
        with contextlib.suppress(sqlite3.Error):
            self._cache.close()
        if self._usage is not None:
            with contextlib.suppress(sqlite3.Error):
                self._usage.close()
            self._usage = None


def _is_corrupt(err: sqlite3.DatabaseError) -> bool:
    """A damaged file, as opposed to a busy or locked one (which waiting or retrying fixes)."""
    code = getattr(err, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF in _CORRUPT_CODES
    return not isinstance(err, sqlite3.OperationalError)


def _inode(path: Path) -> int | None:
    try:
        return path.stat().st_ino
    except OSError:
        return None


@contextlib.contextmanager
def _transaction(db: sqlite3.Connection) -> Iterator[None]:
    db.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")
