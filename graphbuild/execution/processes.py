"""Child processes of executors, all started here: each in its own process group, dying with
graphbuild, and recorded with the run so that nothing of them outlives a crash.

- Each child leads a new session and process group: a timeout, or the end of the command,
  kills the whole group (a shell's background jobs, a build backend's workers), not just the
  child.
- Each child asks the kernel for SIGKILL when the graphbuild thread that started it dies
  (`PR_SET_PDEATHSIG`): a graphbuild killed with SIGKILL takes its direct children with it.
- Each group is recorded with the run (`Run.record_group`): a grandchild that escaped (its
  parent was killed, it was not) is killed by the next run's sweep.

Executors reach this through `ExecContext.run` or `graphbuild.api.run_process`.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import signal
import subprocess
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from graphbuild.cache.runs import Run

_PR_SET_PDEATHSIG = 1
# how often a wait for a child looks whether it exited while its output stays open
_POLL_SECONDS = 1.0
_bound = threading.local()


def _load_prctl():  # type: ignore[no-untyped-def]
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        prctl = libc.prctl
    except (OSError, AttributeError):
        return None
    prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    prctl.restype = ctypes.c_int
    return prctl


# resolved once, here: the child between fork and exec must only call it (no imports, no locks)
_prctl = _load_prctl()


def _die_with_parent(parent: int) -> None:
    """In the child, before exec: SIGKILL when the parent thread dies (already dead: exit now)."""
    if _prctl is not None:
        _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:
        os._exit(137)


def bind(run: Run | None) -> None:
    """Record the children this thread starts with `run` (the scheduler binds each worker)."""
    _bound.run = run


def bound_run() -> Run | None:
    return getattr(_bound, "run", None)


def run_process(args: Sequence[str] | str, *, cwd: Path | str | None = None, env: Mapping[str, str] | None = None,
                timeout: float | None = None, input: str | None = None, shell: bool = False,
                merge_stderr: bool = False) -> subprocess.CompletedProcess[str]:
    """`subprocess.run(args, capture_output=True, text=True, ...)` for executors.

    The child runs in its own process group, dies with graphbuild, and is recorded with the
    current run; when it exits, what is left of its group is killed. On a timeout the whole
    group is killed and `subprocess.TimeoutExpired` is raised, as `subprocess.run` does
    (`.output` holds what it wrote). `merge_stderr=True` sends stderr into stdout (`.stderr`
    is then None). `env=None` passes graphbuild's own environment.
    """
    parent = os.getpid()
    child = subprocess.Popen(
        args, cwd=cwd, env=dict(env) if env is not None else None, shell=shell, text=True,
        stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT if merge_stderr else subprocess.PIPE,
        start_new_session=True, preexec_fn=lambda: _die_with_parent(parent),
    )
    run = bound_run()
    if run is not None:
        run.record_group(child.pid)
    deadline = None if timeout is None else time.monotonic() + timeout
    try:
        while True:
            wait = _POLL_SECONDS if deadline is None else min(_POLL_SECONDS, max(0.0, deadline - time.monotonic()))
            try:
                stdout, stderr = child.communicate(input=input, timeout=wait)
                break
            except subprocess.TimeoutExpired:
                input = None  # written already; communicate goes on from where it was
                if child.poll() is not None:
                    # it exited, but a background job of its group still holds its output open
                    _kill_group(child.pid)
                elif deadline is not None and time.monotonic() >= deadline:
                    _kill_group(child.pid)
                    stdout, stderr = child.communicate()
                    raise subprocess.TimeoutExpired(args, timeout or 0.0, output=stdout, stderr=stderr) from None
    except BaseException:
        _kill_group(child.pid)
        child.wait()
        raise
    _kill_group(child.pid)  # what is left of its group: background jobs nobody waits for
    return subprocess.CompletedProcess(args, child.returncode, stdout, stderr)


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)
