"""Per-key locks across processes: a node in progress in one graphbuild process is waited for
by the others sharing the cache, not run a second time.

A lock is an `flock` on `tmp/locks/<key>.lock`: the kernel releases it when its holder dies,
however it dies, so a crashed run never blocks another. The holder deletes the file before
releasing it; a waiter that then gets the lock checks that the file it locked is still the one
at the path (else it tries again), so two processes never both believe they hold one key.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

_POLL_SECONDS = (0.01, 0.05, 0.1, 0.2)


class Stopped(Exception):
    """The wait for a lock was given up: the run is stopping."""


class KeyLocks:
    def __init__(self, directory: Path):
        self.directory = directory
        self.stopping = threading.Event()
        self._made = False

    @contextlib.contextmanager
    def hold(self, key: str, *, on_wait: Callable[[], None] | None = None) -> Iterator[bool]:
        """Hold the lock of `key`; yields whether another process held it first (waited)."""
        if not self._made:
            self.directory.mkdir(parents=True, exist_ok=True)
            self._made = True
        path = self.directory / f"{key}.lock"
        waited = False
        while True:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            try:
                waited |= self._lock(fd, on_wait if not waited else None)
                same = os.fstat(fd).st_ino == os.stat(path).st_ino
            except FileNotFoundError:
                same = False
            except BaseException:
                os.close(fd)
                raise
            if same:
                break
            os.close(fd)  # its holder deleted it meanwhile: lock the new one
        try:
            yield waited
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
            os.close(fd)

    def _lock(self, fd: int, on_wait: Callable[[], None] | None) -> bool:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return False
        except BlockingIOError:
            pass
        if on_wait is not None:
            on_wait()
        # poll, so that a run being interrupted does not wait for another process's node
        for attempt in range(1 << 62):
            if self.stopping.is_set():
                raise Stopped
            time.sleep(_POLL_SECONDS[min(attempt, len(_POLL_SECONDS) - 1)])
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return True
            except BlockingIOError:
                continue
        return True
