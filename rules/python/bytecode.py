"""Bytecode of a package node: hash-based .pyc files (no mtimes), compiled for the image's paths.

Most packages of an environment are small: a `python -m compileall` process for each costs an
interpreter start (40-50 ms) for a few milliseconds of compiling, 51 times in a cold build of
the benchmark's environment. So a small tree goes to a compile worker: one Python process that
compiles tree after tree, each path read from its stdin, its verdict written to its stdout. One
worker per node compiling at once, started on first use and kept; a worker reads end-of-file
and exits when graphbuild does, however graphbuild ends (and the run's watchdog kills it too).
A big tree still gets a process of its own that compiles on every core.

Both compile each file alone with the same settings (`compileall.compile_dir`; hash seed 0, for
interpreters before 3.11, whose marshal wrote a frozenset constant in hash order), so a tree's
.pyc files are the same whichever compiles it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

from graphbuild.api import ActionFailed, ExecContext, run_process, start_process

#: Trees with more sources than this compile on every core, in a process of their own.
_BIG_TREE = 100
#: The packages' own test suites are not imported at run time: they get no bytecode.
_SKIPPED = r"/(tests?|testing)/"
_ENV = {"PYTHONHASHSEED": "0"}

_WORKER = f"""
import compileall, py_compile, re, sys
skipped = re.compile({_SKIPPED!r})
for line in sys.stdin:
    root = line.rstrip("\\n")
    ok = compileall.compile_dir(root, None, None, False, skipped, 2, False, workers=1,
                                invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH,
                                stripdir=root, prependdir="/")
    sys.stdout.write("ok\\n" if ok else "some failed\\n")
    sys.stdout.flush()
"""

_idle: list[subprocess.Popen[str]] = []
_guard = threading.Lock()


def compile_tree(ctx: ExecContext, root: Path, python: str) -> None:
    """Compile every source under `root` (a tree laid out as in the image, `/` = `root`)."""
    if f"{sys.version_info[0]}.{sys.version_info[1]}" != python:
        ctx.log(f"bytecode skipped: graphbuild runs on Python {sys.version_info[0]}.{sys.version_info[1]}, "
                f"the image has {python}")
        return
    sources = sum(1 for _ in root.rglob("*.py"))
    if not sources:
        return
    if sources <= _BIG_TREE and _compile_in_worker(root):
        return
    proc = run_process([sys.executable, "-S", "-m", "compileall", "-q", "-j", "0" if sources > _BIG_TREE else "1",
                        "--invalidation-mode", "unchecked-hash", "-x", _SKIPPED, "-s", str(root), "-p", "/",
                        str(root)], env={**os.environ, **_ENV})
    if proc.returncode not in (0, 1):  # 1: some file did not compile (a py2 test fixture...): still fine
        raise ActionFailed("compiling bytecode failed", details=proc.stderr)


def prestart_worker() -> None:
    """Start a worker now if none is idle (a node about to install a package), so that its
    interpreter's start overlaps the install instead of following it."""
    with _guard:
        if _idle and _idle[-1].poll() is None:
            return
    worker = _start()
    with _guard:
        _idle.append(worker)


def _start() -> subprocess.Popen[str]:
    return start_process([sys.executable, "-S", "-c", _WORKER], env={**os.environ, **_ENV})


def _compile_in_worker(root: Path) -> bool:
    """Whether a worker compiled the tree (a file that does not compile is fine, as with
    compileall's exit 1); False if no worker could: the caller compiles it in a process."""
    if "\n" in str(root):
        return False
    with _guard:
        _idle[:] = [w for w in _idle if w.poll() is None]  # a worker may have died (killed) while idle
        worker = _idle.pop() if _idle else None
    try:
        if worker is None:
            worker = _start()
        assert worker.stdin is not None and worker.stdout is not None
        worker.stdin.write(f"{root}\n")
        worker.stdin.flush()
        answer = worker.stdout.readline()
    except OSError:
        answer = ""
    if not answer:  # it died: the tree is compiled again in a process of its own
        if worker is not None:
            worker.kill()
            worker.wait()
        return False
    with _guard:
        _idle.append(worker)
    return True
