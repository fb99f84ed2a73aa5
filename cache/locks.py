"""Per-key locks across processes: a node in progress in one graphbuild process is waited for
by the others sharing the cache, not run a second time.

All keys share one file, `tmp/locks/keys.lock`; the lock of a key is a one-byte POSIX record
lock (`lockf`) at an offset drawn from the key (60 bits of it). The kernel releases a
process's record locks when it dies, however it dies, so a crashed run never blocks another;
and taking or releasing one is a single system call, with no file created or deleted per key
(what a cold build of thousands of nodes would otherwise pay for each).

Record locks belong to the process, not to a descriptor: two threads of one process never
block each other (the scheduler already runs one key once per process), and closing any
descriptor of the file would drop every lock the process holds on it. So each process opens
the file once and never closes it.
"""

from __future__ import annotations

import fcntl
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

_POLL_SECONDS = (0.01, 0.05, 0.1, 0.2)
_FILE = "keys.lock"
_OPEN: dict[Path, int] = {}  # lock file -> this process's descriptor of it (never closed)
_OPEN_GUARD = threading.Lock()


class Stopped(Exception):
    """The wait for a lock was given up: the run is stopping."""


class KeyLocks:
    def __init__(self, directory: Path):
        self.directory = directory
        self.stopping = threading.Event()

    def _fd(self) -> int:
        path = self.directory / _FILE
        with _OPEN_GUARD:
            fd = _OPEN.get(path)
            if fd is None:
                self.directory.mkdir(parents=True, exist_ok=True)
                fd = _OPEN[path] = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            return fd

    @contextmanager
    def hold(self, key: str, *, on_wait: Callable[[], None] | None = None) -> Iterator[bool]:
        """Hold the lock of `key` (hex); yields whether another process held it first (waited)."""
        fd = self._fd()
        offset = int(key[:15], 16)
        waited = False
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, offset)
        except OSError:  # EAGAIN or EACCES: another process holds it
            waited = True
            self._wait(fd, offset, on_wait)
        try:
            yield waited
        finally:
            fcntl.lockf(fd, fcntl.LOCK_UN, 1, offset)

    def _wait(self, fd: int, offset: int, on_wait: Callable[[], None] | None) -> None:
        if on_wait is not None:
            on_wait()
        # poll, so that a run being interrupted does not wait for another process's node
        attempt = 0
        while True:
            if self.stopping.is_set():
                raise Stopped
            time.sleep(_POLL_SECONDS[min(attempt, len(_POLL_SECONDS) - 1)])
            attempt += 1
            try:
                fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, offset)
                return
            except OSError:
                continue
