"""The line view's cost on a no-op build, side by side with another version of the reporter.

    python bench/bench_console.py [--nodes 5000] [--runs 9] [--baseline-rev main]

Feeds one reporter the events of a build of N nodes (all cache hits but 1 %, which start and
run) and writes its lines into a pipe read by another thread, as a CI log or `| tee` would;
then the same with the reporter of git revision `--baseline-rev` (loaded from `git show`).
Prints the median time per build of each and their ratio. The line view writes lines about
work at once (a killed run has printed them) and batches cache hits; this checks that the
batching still keeps a no-op build's output cheap.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import subprocess
import sys
import threading
import time
import types
from pathlib import Path

from graphbuild.execution.events import NodeOutcome
from graphbuild.nodes import Executor, Node

ROOT = Path(__file__).resolve().parent.parent


def _load(rev: str) -> types.ModuleType:
    source = subprocess.run(["git", "show", f"{rev}:graphbuild/reporting/console.py"], cwd=ROOT, check=True,
                            capture_output=True, text=True).stdout
    spec = importlib.util.spec_from_loader(f"console_{rev}", loader=None)
    module = importlib.util.module_from_spec(spec)
    exec(compile(source, f"{rev}:console.py", "exec"), module.__dict__)
    return module


def _one_build(reporter_class: type, nodes: list[Node]) -> float:
    read, write = os.pipe()
    drain = threading.Thread(target=lambda: [None for _ in iter(lambda: os.read(read, 1 << 16), b"")], daemon=True)
    drain.start()
    stream = os.fdopen(write, "w", buffering=1)
    reporter = reporter_class(stream, verbose=False, quiet=False)
    started = time.perf_counter()
    reporter.run_started(len(nodes), "")
    for index, node in enumerate(nodes):
        if index % 100 == 0:
            reporter.node_started(node)
            reporter.node_finished(node, NodeOutcome(node.id, "ran", duration=0.01))
        else:
            reporter.node_finished(node, NodeOutcome(node.id, "cached", cached_from=None))
    reporter.summary(f"{len(nodes)} nodes")
    (getattr(reporter, "close", None) or reporter.flush)()
    elapsed = time.perf_counter() - started
    stream.close()
    drain.join()
    os.close(read)
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--nodes", type=int, default=5000)
    parser.add_argument("--runs", type=int, default=9)
    parser.add_argument("--baseline-rev", default="main")
    args = parser.parse_args()
    from graphbuild.reporting.console import ConsoleReporter

    baseline = _load(args.baseline_rev).ConsoleReporter
    executor = Executor("bench", 1, lambda ctx: None)
    nodes = [Node(id=f"//pkg{i // 50}:t{i}#gen", label=None, kind="genrule", rule="genrule", rule_version=1,
                  executor=executor, inputs={}, outputs=(), deps=()) for i in range(args.nodes)]
    times: dict[str, list[float]] = {"candidate": [], "baseline": []}
    for _ in range(args.runs):  # alternated, so both see the same machine load
        times["candidate"].append(_one_build(ConsoleReporter, nodes))
        times["baseline"].append(_one_build(baseline, nodes))
    medians = {name: statistics.median(values) for name, values in times.items()}
    print(f"line view, {args.nodes} nodes (1 % ran), into a pipe, median of {args.runs}:")
    for name, value in medians.items():
        print(f"  {name:<10} {value * 1000:7.1f} ms  (min {min(times[name]) * 1000:.1f}, "
              f"max {max(times[name]) * 1000:.1f})")
    print(f"  ratio candidate/baseline: {medians['candidate'] / medians['baseline']:.2f}")


if __name__ == "__main__":
    sys.exit(main())
