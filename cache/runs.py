"""Runs: each graphbuild process that builds has an identity, and what a dead one left is swept.

A run has an id and a directory `tmp/runs/<id>/` in the cache, holding:

- `lock`, locked (`flock`) by the run for as long as its process lives: the kernel releases
  the lock when the process dies, however it dies (SIGKILL included), so a run whose lock can
  be taken is dead;
- `groups`, the process groups of the child processes it started (executors start every
  child in a group of its own);
- the scratch directories of its nodes and the temporary files of the blobs it stores.

Every child of a run carries the run's id in its environment (`GRAPHBUILD_RUN_ID`), and so do
their own children: that is how what a dead run left is told from unrelated processes (a
group number alone may have been reused since). Before its first child, a run starts a
watchdog: a small process in a session of its own that reads a pipe only the run holds. The
kernel closes the pipe when the run's process dies, however it dies, and the watchdog then
kills what is left of the run's children at once (a run that finishes tells it to go
without killing anything). When a run starts, it sweeps every dead run of the cache: kills
what is left of its children (should the watchdog have died too) and deletes its directory.
A live run, concurrent in another process, is never touched.

Every run also holds `runs.lock` beside `tmp/` (in the cache's root, which `clean` keeps)
shared for its whole life; `graphbuild clean` takes it exclusively, so it never deletes what a
live run is building, and a run starting during a clean waits for it to end. Docker containers are
engine-wide rather than per cache, so `run_is_alive` also answers for a run of another cache
on this machine: its id carries the process id and start time of its process (and the boot
and pid namespace they are valid in).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import secrets
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import IO

#: A run directory without its lock file yet is a run starting (or one killed while starting).
_STARTING_SECONDS = 60.0

# The watchdog: waits for the end of its stdin (the run closes it, or dies); unless the run
# said "q" (finished), it kills what is left of the run's recorded process groups.
_WATCHDOG = """
import sys
if not sys.stdin.buffer.read().endswith(b"q"):
    import site
    site.main()  # started with -S (a quicker start): graphbuild's site-packages only now
    from pathlib import Path
    from graphbuild.cache.runs import kill_run_processes
    kill_run_processes(sys.argv[1], Path(sys.argv[2]))
"""
#: Set in the environment of every child of a run (and so of their children): what the
#: watchdog and the sweep find even a child started a moment before its run died, not yet
#: recorded.
RUN_ENV = "GRAPHBUILD_RUN_ID"


@dataclass(frozen=True)
class _ProcStat:
    state: str
    pgid: int
    start: int  # clock ticks since boot


def _proc_stat(pid: int) -> _ProcStat | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2:].split()  # the command name may hold spaces and parens
    return _ProcStat(state=fields[0], pgid=int(fields[2]), start=int(fields[19]))


def _process_start(pid: int) -> int | None:
    """When a live process started (None when there is none, or only its zombie)."""
    stat = _proc_stat(pid)
    return None if stat is None or stat.state in ("Z", "X") else stat.start


@cache
def _machine() -> str:
    """Where pids mean the same processes: this boot, this pid namespace."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip().replace("-", "")[:8]
        namespace = os.stat("/proc/self/ns/pid").st_ino
    except OSError:
        return "unknown"
    return f"{boot}.{namespace:x}"


def new_run_id() -> str:
    pid = os.getpid()
    return f"{_machine()}-{pid}-{_process_start(pid) or 0}-{secrets.token_hex(3)}"


def _process_of(run_id: str) -> tuple[int, int] | None:
    """(pid, start) of a run id made on this machine; None for another machine's or a foreign id."""
    parts = run_id.split("-")
    if len(parts) != 4 or parts[0] != _machine() or parts[0] == "unknown":
        return None
    try:
        return int(parts[1]), int(parts[2])
    except ValueError:
        return None


def run_is_alive(tmp: Path, run_id: str) -> bool:
    """Whether run `run_id` is still running.

    `tmp` is the cache's tmp directory. A run of this cache is alive while it holds its lock; a
    run of another cache on this machine while its process lives (a process that ran several
    runs in turn counts as alive); a run of another machine or pid namespace cannot be checked
    and counts as alive (nothing of it may be removed).
    """
    directory = tmp / "runs" / run_id
    if "/" not in run_id and run_id not in ("", ".", "..") and directory.is_dir():
        fd = _try_lock(directory)
        if fd is None:
            return True
        os.close(fd)
        return False
    found = _process_of(run_id)
    if found is None:
        return True
    pid, start = found
    return _process_start(pid) == start


def _try_lock(directory: Path) -> int | None:
    """The run's lock, taken (the run is dead: the caller now holds it), or None (alive)."""
    try:
        fd = os.open(directory / "lock", os.O_RDWR | os.O_CLOEXEC)
    except NotADirectoryError:
        return None  # not a run's directory: not ours to judge
    except FileNotFoundError:
        # no lock yet: a run between mkdir and taking its lock, unless that was long ago
        with contextlib.suppress(OSError):
            if time.time() - directory.stat().st_mtime < _STARTING_SECONDS:
                return None
        return os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


class Run:
    """This process's run in a cache (see the module's docstring)."""

    def __init__(self, tmp: Path):
        self.tmp = tmp
        self.id = new_run_id()
        self.dir = tmp / "runs" / self.id
        self._shared_fd: int | None = hold_cache(tmp, exclusive=False)
        self.dir.mkdir(parents=True)
        self._lock_fd: int | None = os.open(self.dir / "lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
        self._watchdog: subprocess.Popen | None = None
        self._groups_lock = threading.Lock()
        self._groups: IO[str] | None = None
        self.swept = sweep_dead_runs(tmp)

    def scratch_dir(self, prefix: str = "node-") -> Path:
        import tempfile

        return Path(tempfile.mkdtemp(dir=self.dir, prefix=prefix))

    def watch_children(self) -> None:
        """Start the watchdog (once, before the first child)."""
        if self._watchdog is not None:
            return
        with self._groups_lock:
            if self._watchdog is None:
                self._watchdog = subprocess.Popen(
                    [sys.executable, "-S", "-c", _WATCHDOG, self.id, str(self.dir / "groups")], stdin=subprocess.PIPE,
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd="/", start_new_session=True)

    def record_group(self, pgid: int) -> None:
        """Note a child's process group (its leader is `pgid`): the watchdog, or the next run's
        sweep, kills what is left of it if this process dies."""
        with self._groups_lock:
            if self._groups is None:
                self._groups = open(self.dir / "groups", "a")  # noqa: SIM115 (open for the run's life)
            self._groups.write(f"{pgid}\n")
            self._groups.flush()  # to the kernel: a SIGKILL now loses nothing

    def alive(self, run_id: str) -> bool:
        return run_id == self.id or run_is_alive(self.tmp, run_id)

    def finish(self) -> None:
        """End the run: its directory goes (scratch left by nodes included), its lock with it."""
        if self._lock_fd is None:
            return
        if self._groups is not None:
            self._groups.close()
            self._groups = None
        trash = self.tmp / "trash"
        trash.mkdir(exist_ok=True)
        gone = trash / f"run-{self.id}"
        try:
            os.replace(self.dir, gone)
        except OSError:
            gone = self.dir
        # what is left is small (the lock, the groups file): nodes' scratch went to the trash
        shutil.rmtree(gone, ignore_errors=True)
        if self._watchdog is not None:
            # done: it goes without killing anything (not waited for: it exits on its own)
            with contextlib.suppress(OSError, ValueError):
                self._watchdog.stdin.write(b"q")
                self._watchdog.stdin.close()
            self._watchdog = None
        os.close(self._lock_fd)
        self._lock_fd = None
        if self._shared_fd is not None:
            os.close(self._shared_fd)
            self._shared_fd = None


class CacheBusy(Exception):
    """Another graphbuild process runs on this cache."""


def hold_cache(tmp: Path, *, exclusive: bool) -> int:
    """The cache-wide lock (`runs.lock` in the cache's root), held until the descriptor is
    closed: shared by every run (waiting while a `clean` holds it); exclusive for `clean`,
    which does not wait: raises CacheBusy while a run holds it."""
    path = cache_lock_path(tmp)
    while True:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB if exclusive else fcntl.LOCK_SH)
        except OSError:
            os.close(fd)
            raise CacheBusy from None
        # a clean deletes the file last, while it holds it: a lock taken on a file no longer
        # at the path guards nothing, so it is taken again on the one there now
        try:
            if os.stat(path).st_ino == os.fstat(fd).st_ino:
                return fd
        except FileNotFoundError:
            pass
        os.close(fd)


def cache_lock_path(tmp: Path) -> Path:
    return tmp.parent / "runs.lock"


def sweep_dead_runs(tmp: Path) -> list[str]:
    """Kill what is left of every dead run's child processes and delete its directory (at once:
    a crash is rare, and its scratch may be large). Returns the ids of the runs swept."""
    runs = tmp / "runs"
    swept = []
    for directory in sorted(runs.iterdir()) if runs.is_dir() else ():
        fd = _try_lock(directory)
        if fd is None:
            continue
        try:
            kill_run_processes(directory.name, directory / "groups")
            trash = tmp / "trash"
            trash.mkdir(exist_ok=True)
            gone = trash / f"run-{directory.name}"
            try:
                os.replace(directory, gone)
            except OSError:
                gone = directory
            shutil.rmtree(gone, ignore_errors=True)
            swept.append(directory.name)
        finally:
            os.close(fd)
    return swept


def kill_run_processes(run_id: str, groups: Path) -> None:
    """SIGKILL what is left of a dead run's children: every process carrying the run's id in
    its environment, and every process group holding one (its recorded groups first of all:
    members that cleared their environment go with their group). A group number is never
    trusted alone: it may have been reused by an unrelated process since it was recorded."""
    recorded = set()
    with contextlib.suppress(OSError):
        for line in groups.read_text().splitlines():
            with contextlib.suppress(ValueError, IndexError):
                recorded.add(int(line.split()[0]))
    marker = f"{RUN_ENV}={run_id}".encode()
    marked: list[int] = []
    owned: set[int] = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        pid = int(entry)
        try:
            environ = Path(f"/proc/{pid}/environ").read_bytes()
        except OSError:
            continue
        if marker in environ.split(b"\0"):
            marked.append(pid)
            stat = _proc_stat(pid)
            if stat is not None and (stat.pgid in recorded or stat.pgid == pid):
                owned.add(stat.pgid)
    for pgid in owned:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGKILL)
    for pid in marked:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
