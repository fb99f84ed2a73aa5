"""Child processes of executors, all started here: each in its own process group, recorded
with the run, killed with graphbuild, so that nothing of them outlives a crash.

- Each child leads a new session and process group: a timeout, or the end of the command,
  kills the whole group (a shell's background jobs, a build backend's workers), not just the
  child.
- Each child's environment leaves out the CI's secrets (`graphbuild.secrets`): uv, build
  backends and commands never see registry passwords, job tokens or the signing key.
- Each group is recorded with the run (`Run.record_group`), and each child's environment
  carries the run's id (`GRAPHBUILD_RUN_ID`); a watchdog of the run kills what is left of
  both the moment graphbuild dies, however it dies (SIGKILL included): children and
  grandchildren alike, a child started an instant before the death included. The next run's sweep kills what even that
  missed (the watchdog killed along with graphbuild).

Executors reach this through `ExecContext.run` or `graphbuild.api.run_process`.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from graphbuild.cache.runs import RUN_ENV
from graphbuild.secrets import without_secrets

if TYPE_CHECKING:
    from graphbuild.cache.runs import Run

# how often a wait with a timeout looks whether the child exited while its output stays open
_POLL_SECONDS = 1.0
_bound = threading.local()


_null_fd: int | None = None


def _devnull() -> int:
    """One /dev/null for every child's stdin (subprocess.DEVNULL opens one per child)."""
    global _null_fd
    if _null_fd is None:
        _null_fd = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
    return _null_fd


def bind(run: Run | None) -> None:
    """Record the children this thread starts with `run` (the scheduler binds each worker)."""
    _bound.run = run


def bound_run() -> Run | None:
    return getattr(_bound, "run", None)


def run_process(args: Sequence[str] | str, *, cwd: Path | str | None = None, env: Mapping[str, str] | None = None,
                timeout: float | None = None, input: str | None = None, shell: bool = False,
                merge_stderr: bool = False) -> subprocess.CompletedProcess[str]:
    """`subprocess.run(args, capture_output=True, text=True, ...)` for executors.

    The child runs in its own process group, recorded with the current run (whose watchdog
    kills the group if graphbuild dies); when it exits, what is left of its group is killed.
    On a timeout the whole group is killed and `subprocess.TimeoutExpired` is raised, as
    `subprocess.run` does (`.output` holds what it wrote). `merge_stderr=True` sends stderr into stdout (`.stderr`
    is then None). `env=None` passes graphbuild's own environment; either way without the CI's
    secrets.
    """
    run = bound_run()
    child_env = _child_env(run, env)
    child = subprocess.Popen(
        args, cwd=cwd, env=child_env, shell=shell, text=True,
        stdin=subprocess.PIPE if input is not None else _devnull(), stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT if merge_stderr else subprocess.PIPE, start_new_session=True,
    )
    if run is not None:
        run.record_group(child.pid)
    try:
        if timeout is None:
            # the fast path (one blocking read): a background job that keeps the output open
            # keeps this waiting, as it would a shell's `$(...)`
            stdout, stderr = child.communicate(input=input)
            _kill_group(child.pid)  # what is left of its group: background jobs nobody waits for
            return subprocess.CompletedProcess(args, child.returncode, stdout, stderr)
        deadline = time.monotonic() + timeout
        while True:
            wait = min(_POLL_SECONDS, max(0.0, deadline - time.monotonic()))
            try:
                stdout, stderr = child.communicate(input=input, timeout=wait)
                break
            except subprocess.TimeoutExpired:
                input = None  # written already; communicate goes on from where it was
                if child.poll() is not None:
                    # it exited, but a background job of its group still holds its output open
                    _kill_group(child.pid)
                elif time.monotonic() >= deadline:
                    _kill_group(child.pid)
                    stdout, stderr = child.communicate()
                    raise subprocess.TimeoutExpired(args, timeout, output=stdout, stderr=stderr) from None
    except BaseException:
        _kill_group(child.pid)
        child.wait()
        raise
    _kill_group(child.pid)  # what is left of its group: background jobs nobody waits for
    return subprocess.CompletedProcess(args, child.returncode, stdout, stderr)


def start_process(args: Sequence[str], *, env: Mapping[str, str] | None = None) -> subprocess.Popen[str]:
    """A long-lived helper process an executor talks to through its stdin and stdout (text;
    stderr discarded), e.g. a worker that serves many nodes: started like `run_process`'s
    children (its own group, no CI secrets, recorded with the current run, so the watchdog
    kills it if graphbuild dies); its owner ends it by closing its stdin. It runs in `/`, so
    that it holds no scratch directory of a node."""
    run = bound_run()
    child_env = _child_env(run, env)
    child = subprocess.Popen(args, cwd="/", env=child_env, text=True, stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, start_new_session=True)
    if run is not None:
        run.record_group(child.pid)
    return child


def _child_env(run: Run | None, env: Mapping[str, str] | None) -> dict[str, str]:
    """A child's environment: `env` (graphbuild's own when None) without the CI's secrets,
    with the run's id; the run's watchdog started before the first child exists (none may
    start unwatched)."""
    child_env = without_secrets(os.environ if env is None else env)
    if run is not None:
        run.watch_children()
        child_env[RUN_ENV] = run.id
    return child_env


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)
