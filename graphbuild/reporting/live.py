"""The live view on a terminal: the nodes running now with their elapsed time, and a bar of
nodes done out of the total, redrawn a few times a second by `rich`.

Nodes that did work (ran, failed, skipped, came from the shared cache) are printed above the
view as they finish, so the scrollback keeps the story; local cache hits only move the bar
(with -v they are printed too). Imported only when stderr is a terminal: `rich` costs start-up
time that `--help` and pipes need not pay.
"""

from __future__ import annotations

import time
from typing import TextIO

from rich.console import Console, Group
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.spinner import Spinner
from rich.table import Table
from rich.text import Text

from graphbuild.execution.events import NodeOutcome
from graphbuild.nodes import Node
from graphbuild.reporting.console import ConsoleReporter, describe

STYLES = {"ran": "green", "cached": "dim", "failed": "bold red", "skipped": "yellow", "running": "cyan"}
#: Running nodes listed by name; more are counted in one line.
_MAX_SHOWN = 8
_SLOWEST = 3


class LiveConsole(ConsoleReporter):
    def __init__(self, stream: TextIO, *, verbose: bool = False, color: bool = True):
        super().__init__(stream, verbose=verbose, quiet=False, color=color, interval=0)
        self.console = Console(file=stream, force_terminal=True, no_color=not color,
                               color_system="auto" if color else None, highlight=False, emoji=False)
        self.started = time.monotonic()
        self._spinners: dict[str, Spinner] = {}
        self._live: Live | None = None

    # -- the Reporter protocol --------------------------------------------------------------

    def run_started(self, total: int, phase: str) -> None:
        with self._lock:
            self.total = total
            self.done = 0
            if self._live is None:
                self._live = Live(self, console=self.console, refresh_per_second=4, transient=True,
                                  redirect_stdout=False, redirect_stderr=True)
                self._live.start()

    def node_started(self, node: Node) -> None:
        now = time.monotonic()
        with self._lock:
            self.running[node.id] = (node, now, now)
            self._spinners[node.id] = Spinner("dots", style=STYLES["running"] if self.color else "")
        if self.verbose:
            self._print(Text(f"    {node.id}: executor {node.executor.ident}", style="dim"))

    def node_command(self, node: Node, command: str) -> None:
        if self.verbose:
            self._print(Text(f"    {node.id}: $ {command}", style="dim"))

    def node_finished(self, node: Node, outcome: NodeOutcome) -> None:
        with self._lock:
            self.done += 1
            self.running.pop(node.id, None)
            self._spinners.pop(node.id, None)
            if outcome.status == "ran":
                self.durations[node.id] = outcome.duration
            log = self.logs.pop(node.id, "")
        if outcome.status == "cached" and not (self.verbose or outcome.source == "remote"):
            return  # the bar counts it
        line = Text(f"[{self.done}/{self.total}] ")
        line.append(f"{outcome.status:<8}", style=STYLES[outcome.status])
        line.append(f" {node.id}{describe(outcome)}")
        self._print(line)
        tail = outcome.log_tail if outcome.status == "failed" else log
        if tail:
            self._print(Text("\n".join("    | " + row for row in tail.splitlines()), style="dim"))

    def warning(self, text: str) -> None:
        line = Text("warning:", style="yellow")
        line.append(" " + text)
        self._print(line)

    # -- what commands print ----------------------------------------------------------------

    def info(self, text: str) -> None:
        self._print(Text(text))

    def summary(self, text: str) -> None:
        self._stop_live()  # the summary is the end: the view gives way to it
        if text.startswith("FAILED"):
            self._print(Text(text, style=STYLES["failed"]))
            return
        self._print(Text(text, style="bold"))
        slowest = sorted(self.durations.items(), key=lambda item: -item[1])[:_SLOWEST]
        slowest = [(nid, seconds) for nid, seconds in slowest if seconds >= 0.1]
        if slowest and self.total > 1:
            self._print(Text("slowest: " + ", ".join(f"{nid} ({seconds:.1f} s)" for nid, seconds in slowest),
                             style="dim"))

    def flush(self) -> None:
        self.console.file.flush()

    def close(self) -> None:
        self._stop_live()
        self.flush()

    # -- drawing ----------------------------------------------------------------------------

    def __rich__(self) -> Group:
        now = time.monotonic()
        with self._lock:
            running = sorted(self.running.items(), key=lambda item: item[1][1])
            spinners = dict(self._spinners)
            done, total = self.done, self.total
        table = Table.grid(padding=(0, 1))
        table.add_column(width=1)
        table.add_column()
        table.add_column(justify="right")
        for nid, (_, started, _) in running[:_MAX_SHOWN]:
            table.add_row(spinners.get(nid, ""), nid, Text(f"{now - started:5.1f} s", style="dim"))
        if len(running) > _MAX_SHOWN:
            table.add_row("", Text(f"… and {len(running) - _MAX_SHOWN} more running", style="dim"), "")
        bar = Table.grid(padding=(0, 1))
        bar.add_row(ProgressBar(total=max(total, 1), completed=done, width=40),
                    Text(f"{done}/{total} nodes", style="bold"),
                    Text(f"{len(running)} running, {now - self.started:.0f} s", style="dim"))
        return Group(table, bar)

    def _print(self, renderable: Text) -> None:
        # Console.print is thread-safe and, while the view is live, prints above it
        self.console.print(renderable, soft_wrap=True)

    def _stop_live(self) -> None:
        with self._lock:
            live, self._live = self._live, None
        if live is not None:
            live.stop()
