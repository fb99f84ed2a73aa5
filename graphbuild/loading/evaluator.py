"""graphbuild's side of the Starlark evaluator process (`worker.py`).

One process serves every loader of this graphbuild process (a command has one, `affected`
two); it is started as graphbuild starts (`prestart`), so its start-up overlaps graphbuild's
own, and the packages of a pattern are asked for at once, so that it evaluates one file while
graphbuild validates the targets of the one before.

When it dies (memory limit, interpreter crash) or does not answer in time, the file being
evaluated gets a located error: the statement at fault is found by evaluating ever shorter
prefixes of the file in fresh processes (the same statements crash the same way).
"""

from __future__ import annotations

import atexit
import collections
import importlib.util
import itertools
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Hashable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import graphbuild
from graphbuild.errors import GraphbuildError, Location, SpecError, raise_collected
from graphbuild.loading import protocol
from graphbuild.loading.scan import scan
from graphbuild.secrets import without_secrets

#: How long graphbuild waits beyond the evaluator's own deadline before it kills it.
GRACE_SECONDS = 15.0
#: The memory limit unless graphbuild.toml says otherwise ([loading] max_memory_mb).
DEFAULT_MEMORY_MB = 1024
#: Probes at most for bisecting a crash (a file of a million statements needs 20).
MAX_PROBES = 24

# -S: no site-packages scan at start-up (a third of its start-up time); the two directories it
# needs, graphbuild's and starlark's, are passed instead.
_BOOT = ("import os, sys; sys.path[:0] = sys.argv.pop(1).split(os.pathsep); "
         "from graphbuild.loading.worker import main; main()")


def _import_paths() -> str:
    spec = importlib.util.find_spec("starlark")
    assert spec is not None and spec.origin is not None, "starlark-pyo3 is not installed"
    paths = [Path(graphbuild.__file__).resolve().parent.parent, Path(spec.origin).resolve().parent.parent]
    return os.pathsep.join(dict.fromkeys(str(p) for p in paths))


@dataclass(frozen=True)
class Limits:
    max_steps: int
    timeout: float
    max_memory_mb: int


@dataclass
class RuleCall:
    """A rule called by a BUILD file, as the evaluator saw it."""

    rule: str
    line: int
    col: int
    positional: int
    kwargs: dict[str, Any]
    attr_lines: dict[str, int]


@dataclass
class Evaluated:
    calls: list[RuleCall]


class EvaluatorUnavailable(GraphbuildError):
    """graphbuild's own evaluator process cannot run (an installation problem, not a BUILD file's)."""


class _Died(Exception):
    def __init__(self, kind: str, detail: str = ""):
        super().__init__(kind)
        self.kind = kind
        self.detail = detail


class _Lost(Exception):
    """The request was queued behind one that killed the process: ask a new one."""


class _Process:
    """One evaluator process.  Requests are pipelined: graphbuild may send several (the
    packages of a `//...`) and validate one file's targets while the next is evaluated.
    Replies come back in order; one read ahead of its asker is kept for it."""

    def __init__(self, max_memory_mb: int):
        self.max_memory_mb = max_memory_mb
        self.stderr = tempfile.TemporaryFile()  # noqa: SIM115 (closed by close())
        env = {**without_secrets(os.environ), "RUST_BACKTRACE": "0"}
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-S", "-c", _BOOT, _import_paths(), str(max_memory_mb)],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.stderr, bufsize=0, env=env, cwd="/",
                close_fds=True,
            )
        except (OSError, ValueError) as err:
            self.stderr.close()
            raise EvaluatorUnavailable(f"cannot start the Starlark evaluator: {err}") from None
        self.sessions: set[int] = set()
        self.outstanding: collections.deque[Hashable] = collections.deque()
        self.ready: dict[Hashable, dict | _Died] = {}

    def asked(self, key: Hashable) -> bool:
        return key in self.ready or key in self.outstanding

    def send(self, key: Hashable, message: tuple) -> None:
        assert self.proc.stdin is not None
        try:
            protocol.write(self.proc.stdin, message)
        except OSError:
            pass  # dead: reading the reply says how
        self.outstanding.append(key)

    def reply(self, key: Hashable, timeout: float) -> dict:
        """The reply to `key`.  A death is charged to the request being evaluated when it
        happened (the first outstanding one); requests queued behind it are lost."""
        assert self.proc.stdout is not None
        if key in self.ready:
            found = self.ready.pop(key)
            if isinstance(found, _Died):
                raise found
            return found
        while self.outstanding:
            head = self.outstanding[0]
            died: _Died | None = None
            try:
                message = protocol.read(self.proc.stdout, time.monotonic() + timeout)
            except protocol.ReadTimeout:
                self.kill()
                died = _Died("timeout")
            except (EOFError, protocol.ProtocolError, OSError):
                died = _Died(*self._why_dead())
            else:
                self.outstanding.popleft()
                if "crash" in message:
                    self.kill()
                    died = _Died(message["crash"], message.get("detail", ""))
                elif head == key:
                    return message
                else:
                    self.ready[head] = message
                    continue
            self.outstanding.clear()
            if head == key:
                raise died
            self.ready[head] = died
            break
        raise _Lost

    def request(self, key: Hashable, message: tuple, timeout: float) -> dict:
        if not self.asked(key):
            self.send(key, message)
        return self.reply(key, timeout)

    def _why_dead(self) -> tuple[str, str]:
        try:
            status = self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.kill()
            status = self.proc.returncode
        self.stderr.seek(0)
        text = self.stderr.read()[-4000:].decode(errors="replace")
        if "memory allocation" in text or "MemoryError" in text or "Cannot allocate memory" in text:
            return "memory", text
        if status in (-signal.SIGSEGV, -signal.SIGBUS, -signal.SIGABRT) or "overflowed its stack" in text:
            # a stack overflow, or an allocation refused under the address-space limit that the
            # interpreter did not check: the process cannot say which (its peak memory, as the
            # kernel reports it, includes graphbuild's own at the fork)
            return "crash", text
        return "exit", f"exit status {status}: {text.strip()[-300:]}"

    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def close(self) -> None:
        """End of input: the evaluator exits by itself (not waited for: graphbuild is exiting)."""
        if self.proc.stdin:
            try:
                self.proc.stdin.close()
            except OSError:
                pass
        self.stderr.close()


_processes: dict[int, _Process] = {}
_lock = threading.RLock()
_session_ids = itertools.count(1)
_probe_ids = itertools.count(1)


def _process(max_memory_mb: int) -> _Process:
    with _lock:
        current = _processes.get(max_memory_mb)
        if current is None or not current.alive():
            fresh = _processes[max_memory_mb] = _Process(max_memory_mb)
            if current is not None:  # answers (and deaths) it gave before dying still hold
                fresh.ready.update(current.ready)
                current.stderr.close()
            current = fresh
        return current


def prestart(max_memory_mb: int = DEFAULT_MEMORY_MB) -> None:
    """Start the evaluator now, so that its start-up overlaps graphbuild's own imports."""
    try:
        _process(max_memory_mb)
    except EvaluatorUnavailable:
        pass  # said again, with the reason, when a BUILD file is first evaluated


@atexit.register
def _close_all() -> None:
    with _lock:
        for proc in _processes.values():
            proc.close()
        _processes.clear()


class Evaluator:
    """Evaluates the BUILD files of one workspace with one set of rules."""

    def __init__(self, root: Path, build_file: str, limits: Limits, linked_roots: tuple[Path, ...] = ()):
        self.root = root
        self.build_file = build_file
        self.limits = limits
        self.linked_roots = linked_roots
        self.rules: list[str] = []
        self.sid = next(_session_ids)
        _process(limits.max_memory_mb)  # start it now: its start-up overlaps ours

    def prefetch(self, packages: list[str], rules: list[str]) -> None:
        """Ask for these packages now; `evaluate` collects them (the evaluator works meanwhile)."""
        self.rules = sorted(rules)
        with _lock:
            proc = self._opened()
            for package in packages:
                key = ("eval", self.sid, package)
                if not proc.asked(key):
                    proc.send(key, ("eval", self.sid, package, None))

    def evaluate(self, package: str, rules: list[str]) -> Evaluated:
        """The rule calls of a BUILD file; what it printed goes to stderr, even when it fails."""
        self.rules = sorted(rules)
        rel = f"{package}/{self.build_file}".lstrip("/")
        try:
            reply = self._ask(("eval", self.sid, package), ("eval", self.sid, package, None))
        except _Died as died:
            raise self._crash_error(died, package, rel) from None
        for line in reply.get("prints", ()):
            sys.stderr.write(line + "\n")
        if "errors" in reply:
            raise_collected([
                SpecError(error["message"], hint=error.get("hint"),
                          location=Location(error.get("path") or rel, error.get("line") or 0, error.get("col") or 0))
                for error in reply["errors"]])
        calls = [RuleCall(rule, line, col, positional, kwargs, attr_lines)
                 for rule, line, col, positional, kwargs, attr_lines in reply["calls"]]
        return Evaluated(calls)

    def close(self) -> None:
        with _lock:
            proc = _processes.get(self.limits.max_memory_mb)
            if proc is not None and proc.alive() and self.sid in proc.sessions:
                try:
                    proc.request(("close", self.sid), ("close", self.sid), GRACE_SECONDS)
                except (_Died, _Lost):
                    pass
                proc.sessions.discard(self.sid)

    def _opened(self) -> _Process:
        """The evaluator process, this loader's session opened in it."""
        proc = _process(self.limits.max_memory_mb)
        if self.sid not in proc.sessions:
            config = {"root": str(self.root), "build_file": self.build_file, "rules": self.rules,
                      "max_steps": self.limits.max_steps, "timeout": self.limits.timeout,
                      "linked_roots": [str(p) for p in self.linked_roots]}
            try:
                proc.request(("open", self.sid), ("open", self.sid, config), GRACE_SECONDS)
            except (_Died, _Lost) as died:
                detail = died.detail.strip()[-500:] if isinstance(died, _Died) else ""
                raise EvaluatorUnavailable(f"the Starlark evaluator did not start: {detail}",
                                           hint="reinstall graphbuild (it needs starlark-pyo3)") from None
            proc.sessions.add(self.sid)
        return proc

    def _ask(self, key: Hashable, message: tuple) -> dict:
        for _ in range(3):  # asked again when lost behind a file that killed the process
            with _lock:
                proc = self._opened()
                try:
                    return proc.request(key, message, self.limits.timeout + GRACE_SECONDS)
                except _Lost:
                    continue
        raise _Died("exit", "the evaluator stopped again and again")

    # -- when the evaluator dies --------------------------------------------------------------

    def _crash_error(self, died: _Died, package: str, rel: str) -> SpecError:
        if died.kind == "timeout":
            return SpecError(f"evaluation did not finish within {self.limits.timeout + GRACE_SECONDS:g} s",
                             location=Location(rel),
                             hint="an expensive expression? raise [loading] timeout in graphbuild.toml if this "
                                  "file really needs it")
        line = self._statement_at_fault(package, rel)
        where = "evaluating this statement" if line else "evaluating this file"
        if died.kind == "memory":
            message = f"{where} used more than the {self.limits.max_memory_mb} MiB memory limit"
            hint = ("build smaller values; raise [loading] max_memory_mb in graphbuild.toml if this file really "
                    "needs more")
        elif died.kind in ("stack", "crash"):
            message = (f"{where} crashed the Starlark interpreter: a value or expression nested too deeply"
                       + ("" if died.kind == "stack" else f", or more memory than the {self.limits.max_memory_mb} MiB "
                          "limit"))
            hint = "flatten the nesting (name the inner parts), or build smaller values"
        elif died.kind == "panic":
            detail = died.detail.splitlines()[0] if died.detail else ""
            message = f"{where} stopped the Starlark interpreter ({detail.removeprefix('PanicException: ')})"
            hint = "a value too large to build?"
        else:
            message = f"the Starlark evaluator stopped while {where} ({died.detail.splitlines()[0][:200]})"
            hint = None
        return SpecError(message, location=Location(rel, line or 0), hint=hint)

    def _statement_at_fault(self, package: str, rel: str) -> int | None:
        """The first top-level statement whose prefix of the file makes the evaluator die."""
        try:
            source = (self.root / rel).read_text()
        except (OSError, UnicodeDecodeError):
            return None
        starts = scan(source).statements
        if not starts:
            return None
        lines = source.splitlines(keepends=True)
        low, high = 1, len(starts)  # the whole file (`high` statements) dies
        for _ in range(MAX_PROBES):
            if low >= high:
                break
            middle = (low + high) // 2
            prefix = "".join(lines[: starts[middle] - 1])
            probe = next(_probe_ids)
            try:
                self._ask(("probe", probe), ("eval", self.sid, package, prefix))
                low = middle + 1
            except _Died:
                high = middle
        return starts[low - 1] if low == high else None
