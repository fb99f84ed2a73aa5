"""Human output on stderr: one line per node as it starts and finishes, then a summary."""

from __future__ import annotations

import sys
import threading
import time
from typing import TextIO

from graphbuild.execution.events import NodeOutcome
from graphbuild.nodes import Node

_COLORS = {"ran": "32", "cached": "2", "failed": "31;1", "skipped": "33", "running": "36"}


class ConsoleReporter:
    def __init__(self, stream: TextIO | None = None, *, verbose: bool = False, quiet: bool = False):
        self.stream = stream or sys.stderr
        self.color = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.verbose = verbose
        self.quiet = quiet
        self.total = 0
        self.done = 0
        self._lock = threading.Lock()
        self._flushed = time.monotonic()
        self._pending: list[str] = []

    def _paint(self, status: str) -> str:
        word = f"{status:<8}"
        return f"\x1b[{_COLORS[status]}m{word}\x1b[0m" if self.color else word

    def _line(self, text: str, *, last: bool = False) -> None:
        with self._lock:
            self._pending.append(text + "\n")
            # a terminal sees each line at once; a pipe or a file gets them in batches (a no-op
            # build of thousands of nodes would otherwise spend its time in write calls)
            if last or self.color or time.monotonic() - self._flushed > 0.2:
                self._write_pending()

    def _write_pending(self) -> None:
        self.stream.write("".join(self._pending))
        self.stream.flush()
        self._pending.clear()
        self._flushed = time.monotonic()

    def run_started(self, total: int, phase: str) -> None:
        self.total = total
        self.done = 0

    def node_started(self, node: Node) -> None:
        if not self.quiet:
            self._line(f"[{self.done:>{len(str(self.total))}}/{self.total}] {self._paint('running')} {node.id}")

    def node_finished(self, node: Node, outcome: NodeOutcome) -> None:
        self.done += 1
        if self.quiet and outcome.status != "failed":
            return
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
        self._line(f"[{self.done:>{len(str(self.total))}}/{self.total}] {self._paint(outcome.status)} {node.id}{extra}")
        if outcome.status == "failed" and outcome.log_tail:
            self._line("\n".join("    | " + line for line in outcome.log_tail.splitlines()))

    def warning(self, text: str) -> None:
        self._line(("\x1b[33mwarning:\x1b[0m " if self.color else "warning: ") + text)

    def info(self, text: str) -> None:
        if not self.quiet:
            self._line(text)

    def summary(self, text: str) -> None:
        self._line(text, last=True)

    def flush(self) -> None:
        with self._lock:
            self._write_pending()

