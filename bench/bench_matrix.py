"""`graphbuild matrix` on the example workspace (issue 11): test runs executed versus the naive
libraries x environments count, and the wall time of a cold and a warm matrix, side by side.

    .venv/bin/python bench/bench_matrix.py [--rounds N]

Each round copies the example into a temp dir with a fresh graphbuild cache (uv's own cache of
downloaded wheels stays warm, as on any machine that built once) and runs:
  cold        `graphbuild matrix` on the empty cache: every lock-compatible cell's image and test
  warm        `graphbuild matrix` again, nothing changed
  after test  on another fresh cache: `graphbuild test //envs/...` first (what CI does anyway),
              then `graphbuild matrix`: only the probes that share no closure with a listed test run
Medians over the rounds are printed with the machine's load.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import uuid
from pathlib import Path

from example_copy import copy_example, graphbuild, services_env


def one_round(top: Path, env: dict[str, str]) -> dict[str, float]:
    ws = copy_example(top / "example", f"gbbench-{uuid.uuid4().hex[:8]}")
    cold, cold_s = graphbuild(["matrix", "--cache-dir", str(top / "cache")], cwd=ws, env=env)
    warm, warm_s = graphbuild(["matrix", "--cache-dir", str(top / "cache")], cwd=ws, env=env)
    graphbuild(["test", "//envs/...", "--cache-dir", str(top / "cache2")], cwd=ws, env=env)
    after, after_s = graphbuild(["matrix", "--cache-dir", str(top / "cache2")], cwd=ws, env=env)
    s = cold["summary"]
    return {"naive": s["naive_test_runs"], "cells": s["cells"], "decided_from_locks": s["incompatible"]
            + s["not applicable"], "runs": s["test_runs_executed"] + s["test_runs_reused"],
            "cold_executed": s["test_runs_executed"], "cold_reused": s["test_runs_reused"], "cold_s": cold_s,
            "warm_executed": warm["summary"]["test_runs_executed"], "warm_s": warm_s,
            "after_test_executed": after["summary"]["test_runs_executed"], "after_test_s": after_s}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    env = services_env()
    rounds = []
    for number in range(args.rounds):
        with tempfile.TemporaryDirectory(prefix="gb-bench-matrix-") as tmp:
            rounds.append(one_round(Path(tmp), env))
        print(f"round {number + 1}: {rounds[-1]}", flush=True)
    median = {key: statistics.median(r[key] for r in rounds) for key in rounds[0]}
    load = os.getloadavg()
    print(f"\nload average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; {args.rounds} rounds, medians:")
    print(f"cells {median['cells']:.0f} (naive test runs: libraries x environments = {median['naive']:.0f}); "
          f"decided from the locks, nothing built: {median['decided_from_locks']:.0f}")
    print(f"test runs needed {median['runs']:.0f}: cold {median['cold_executed']:.0f} executed, "
          f"{median['cold_reused']:.0f} reused (identical closures)")
    print(f"matrix cold   {median['cold_s']:7.2f} s")
    print(f"matrix warm   {median['warm_s']:7.2f} s   ({median['warm_executed']:.0f} test runs executed; "
          f"{median['cold_s'] / median['warm_s']:.0f}x faster than cold)")
    print(f"matrix after `test //envs/...`  {median['after_test_s']:7.2f} s   "
          f"({median['after_test_executed']:.0f} test runs executed)")


if __name__ == "__main__":
    main()
