"""Human output on stderr while nodes run, then a summary.

Two views of the same events:

* on a terminal, a live view (`rich`, imported only then) of the nodes running now with
  their elapsed time and a bar of nodes done out of the total; finished nodes that did work
  scroll above it;
* anywhere else (a pipe, a CI log, `CI=true`, `TERM=dumb`, `-q`), one line per node as it
  starts and finishes, and for a node still running after N seconds
  (`GRAPHBUILD_PROGRESS_INTERVAL`, default 10) the same `running` line again with its
  elapsed time, so a long step never looks like a hang.

`-v` adds each command a node runs and the tail of its log; `-q` keeps only failures and the
summary. Colour follows `--color=auto|always|never`; `auto` means a terminal without
`NO_COLOR` set.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Mapping
from typing import TextIO

from graphbuild.execution.events import NodeOutcome
from graphbuild.nodes import Node

COLOR_CHOICES = ("auto", "always", "never")
INTERVAL_ENV = "GRAPHBUILD_PROGRESS_INTERVAL"
_DEFAULT_INTERVAL = 10.0
_COLORS = {"ran": "32", "cached": "2", "failed": "31;1", "skipped": "33", "running": "36"}
#: Lines of a node's log shown by `-v` under a node that ran (a failure shows its whole tail).
VERBOSE_TAIL_LINES = 10


def _isatty(stream: TextIO) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


def wants_color(choice: str | None, stream: TextIO, environ: Mapping[str, str] = os.environ) -> bool:
    """`always` and `never` are obeyed; `auto` (the default) colours a terminal unless
    NO_COLOR is set to anything but the empty string (no-color.org) or TERM is `dumb`."""
    if choice == "always":
        return True
    if choice == "never":
        return False
    if environ.get("NO_COLOR") or environ.get("TERM") == "dumb":
        return False
    return _isatty(stream)


def wants_live_view(stream: TextIO, *, quiet: bool, environ: Mapping[str, str] = os.environ) -> bool:
    """A live view only where someone watches a terminal: not under CI (whose logs are files
    even when a runner allocates a pseudo-terminal), not on a dumb terminal, not with -q."""
    ci = environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")
    return not quiet and not ci and environ.get("TERM") != "dumb" and _isatty(stream)


def progress_interval(environ: Mapping[str, str] = os.environ) -> float:
    """Seconds between two `running` lines of one node in the line view (0: never repeat)."""
    text = environ.get(INTERVAL_ENV, "").strip()
    try:
        value = float(text) if text else _DEFAULT_INTERVAL
    except ValueError:
        return _DEFAULT_INTERVAL
    return max(value, 0.0)


def make_console(*, verbose: bool = False, quiet: bool = False, color: str | None = "auto",
                 stream: TextIO | None = None) -> ConsoleReporter:
    """The reporter for a command run by a person or a program: live on a terminal, lines
    elsewhere."""
    stream = stream or sys.stderr
    painted = wants_color(color, stream)
    if wants_live_view(stream, quiet=quiet):
        from graphbuild.reporting.live import LiveConsole  # rich is imported only here

        return LiveConsole(stream, verbose=verbose, color=painted)
    return ConsoleReporter(stream, verbose=verbose, quiet=quiet, color=painted)


class ConsoleReporter:
    """The line view (and the state both views keep: totals, running nodes, timings)."""

    def __init__(self, stream: TextIO | None = None, *, verbose: bool = False, quiet: bool = False,
                 color: bool | None = None, interval: float | None = None):
        self.stream = stream or sys.stderr
        self.color = _isatty(self.stream) if color is None else color
        self.verbose = verbose
        self.quiet = quiet
        self.interval = progress_interval() if interval is None else interval
        self.total = 0
        self.done = 0
        #: node id -> (node, monotonic start, monotonic time of its last `running` line)
        self.running: dict[str, tuple[Node, float, float]] = {}
        self.durations: dict[str, float] = {}  # nodes that ran -> seconds
        self.logs: dict[str, str] = {}  # -v: the tail of the log of nodes that ran
        self._lock = threading.RLock()
        self._pending: list[str] = []
        self._stop = threading.Event()
        self._ticker: threading.Thread | None = None

    # -- the Reporter protocol --------------------------------------------------------------

    def run_started(self, total: int, phase: str) -> None:
        with self._lock:
            self.total = total
            self.done = 0
        self._start_ticker()

    def node_started(self, node: Node) -> None:
        now = time.monotonic()
        with self._lock:
            self.running[node.id] = (node, now, now)
        if not self.quiet:
            self._line(f"{self._count()} {self._paint('running')} {node.id}", now=True)
            if self.verbose:
                self._line(f"    {node.id}: executor {node.executor.ident}", now=True)

    def node_command(self, node: Node, command: str) -> None:
        """A command a node's executor starts (shown with -v)."""
        if self.verbose and not self.quiet:
            self._line(f"    {node.id}: $ {command}", now=True)

    def node_log(self, node: Node, text: str) -> None:
        """The whole log of a node that ran; -v shows its last lines."""
        if self.verbose and text:
            with self._lock:
                self.logs[node.id] = "\n".join(text.rstrip("\n").splitlines()[-VERBOSE_TAIL_LINES:])

    def node_finished(self, node: Node, outcome: NodeOutcome) -> None:
        status = outcome.status
        with self._lock:
            self.done += 1
            if status == "cached" and not outcome.cached_from and outcome.source != "remote":
                # the common case, thousands of times in a no-op build: one batched line
                if not self.quiet:
                    self._pending.append(f"{self._count()} {self._paint(status)} {node.id}\n")
                return
            self.running.pop(node.id, None)
            if status == "ran":
                self.durations[node.id] = outcome.duration
            log = self.logs.pop(node.id, "") if self.logs else ""
        if self.quiet and status != "failed":
            return
        # what did work (or failed) is shown at once
        self._line(f"{self._count()} {self._paint(status)} {node.id}{describe(outcome)}", now=status != "cached")
        if status == "failed" and outcome.log_tail:
            self._line(indent_log(outcome.log_tail), now=True)
        elif log:
            self._line(indent_log(log), now=True)

    def warning(self, text: str) -> None:
        self._line(("\x1b[33mwarning:\x1b[0m " if self.color else "warning: ") + text, now=True)

    # -- what commands print ----------------------------------------------------------------

    def info(self, text: str) -> None:
        if not self.quiet:
            self._line(text, now=True)

    def summary(self, text: str) -> None:
        bold = self.color and text.startswith("FAILED")
        self._line(f"\x1b[31;1m{text}\x1b[0m" if bold else text, now=True)

    def flush(self) -> None:
        with self._lock:
            self._write_pending()

    def close(self) -> None:
        """The end of the command: stop the ticker, write what is pending."""
        self._stop.set()
        if self._ticker is not None and self._ticker is not threading.current_thread():
            self._ticker.join(timeout=2)
        self.flush()

    # -- internals --------------------------------------------------------------------------

    def _count(self) -> str:
        return f"[{self.done:>{len(str(self.total))}}/{self.total}]"

    def _paint(self, status: str) -> str:
        word = f"{status:<8}"
        return f"\x1b[{_COLORS[status]}m{word}\x1b[0m" if self.color else word

    def _line(self, text: str, *, now: bool = False) -> None:
        with self._lock:
            self._pending.append(text + "\n")
            # Anything that says work is happening is written at once (a process killed
            # mid-build has printed what it was doing); cache hits are batched (a no-op
            # build of thousands of nodes would otherwise spend its time in write calls) and
            # the ticker writes them within a tenth of a second.
            if now:
                self._write_pending()

    def _write_pending(self) -> None:
        if not self._pending:
            return
        try:
            self.stream.write("".join(self._pending))
            self.stream.flush()
        except (OSError, ValueError):  # a closed pipe (`graphbuild build ... | head`)
            pass
        self._pending.clear()

    def _start_ticker(self) -> None:
        if self._ticker is None:
            self._ticker = threading.Thread(target=self._tick, name="graphbuild-console", daemon=True)
            self._ticker.start()

    def _tick(self) -> None:
        while not self._stop.wait(0.1):
            with self._lock:
                self._write_pending()
                if self.quiet or not self.interval:
                    continue
                now = time.monotonic()
                for nid, (node, started, shown) in list(self.running.items()):
                    if now - shown >= self.interval:
                        self.running[nid] = (node, started, now)
                        self._line(f"{self._count()} {self._paint('running')} {nid} "
                                   f"({now - started:.0f} s)", now=True)


def describe(outcome: NodeOutcome) -> str:
    """What follows a finished node's id: its time, where a cached result came from, why it failed."""
    extra = ""
    if outcome.status == "ran":
        extra = f" ({outcome.duration:.2f} s)"
        if outcome.summary:  # what the node did, in its own words (a push...)
            extra += f": {outcome.summary}"
    elif outcome.status == "cached" and (outcome.source == "remote" or outcome.cached_from):
        where = [w for w in ("remote" if outcome.source == "remote" else None,
                             outcome.cached_from and f"from {outcome.cached_from}") if w]
        extra = f" ({', '.join(where)})"
        if outcome.summary:
            extra += f": {outcome.summary}"
    elif outcome.status in ("failed", "skipped"):
        extra = f": {outcome.message}" + (f" [{outcome.detail}]" if outcome.detail else "")
    return extra


def indent_log(text: str) -> str:
    return "\n".join("    | " + line for line in text.splitlines())
