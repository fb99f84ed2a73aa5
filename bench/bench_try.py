"""`graphbuild try ENV --upgrade PKG` (issue 11) versus a full cold build of the environment,
side by side on the example workspace.

    .venv/bin/python bench/bench_try.py [--rounds N] [--env //envs:prod] [--upgrade tomli]

Each round copies the example into a temp dir with a fresh graphbuild cache (uv's cache of
downloaded wheels stays warm, as on any machine that built once) and runs:
  cold   `graphbuild test ENV` on the empty cache: every lock-resolved layer, compression,
         image and library test of the environment (what a first CI run of it costs)
  try    then `graphbuild try ENV --upgrade PKG`: the candidate's lock (one uv resolution of
         the layers from the one holding PKG up), the layers that differ, the candidate's images
         and the library tests whose closure changed; the rest is the environment's own nodes
The try's exit status is reported, not required (the example's tomli upgrade regresses: 1).
Medians over the rounds are printed with the machine's load.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

from example_copy import GRAPHBUILD, copy_example, services_env


def timed(args: list[str], *, cwd: Path, env: dict[str, str], ok: tuple[int, ...] = (0,)) -> tuple[dict, float]:
    started = time.monotonic()
    proc = subprocess.run([*GRAPHBUILD, *args, "--json", "-C", str(cwd)], capture_output=True, text=True, env=env)
    elapsed = time.monotonic() - started
    if proc.returncode not in ok:
        raise SystemExit(f"graphbuild {' '.join(args)} exited {proc.returncode}:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout), elapsed


def one_round(top: Path, env: dict[str, str], target: str, upgrade: str) -> dict[str, float]:
    ws = copy_example(top / "example", f"gbbench-{uuid.uuid4().hex[:8]}")
    cache = ["--cache-dir", str(top / "cache")]
    cold, cold_s = timed(["test", target, *cache], cwd=ws, env=env)
    tried, try_s = timed(["try", target, "--upgrade", upgrade, *cache], cwd=ws, env=env, ok=(0, 1))
    candidate = [n for n in tried["nodes"] if n["id"].startswith(f"{target}.candidate#")]
    return {"cold_s": cold_s, "cold_ran": cold["summary"]["ran"], "try_s": try_s,
            "try_ran": sum(n["status"] == "ran" for n in candidate),
            "try_cached": sum(n["status"] == "cached" for n in candidate), "candidate_nodes": len(candidate),
            "moved": len(tried["moved"]), "exit": tried["exit_code"]}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--env", default="//envs:prod")
    parser.add_argument("--upgrade", default="tomli")
    args = parser.parse_args()
    env = services_env()
    rounds = []
    for number in range(args.rounds):
        with tempfile.TemporaryDirectory(prefix="gb-bench-try-") as tmp:
            rounds.append(one_round(Path(tmp), env, args.env, args.upgrade))
        print(f"round {number + 1}: {rounds[-1]}", flush=True)
    median = {key: statistics.median(r[key] for r in rounds) for key in rounds[0]}
    load = os.getloadavg()
    print(f"\nload average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; {args.rounds} rounds, medians:")
    print(f"cold `test {args.env}`                {median['cold_s']:7.2f} s   ({median['cold_ran']:.0f} nodes ran)")
    print(f"`try {args.env} --upgrade {args.upgrade}`  {median['try_s']:7.2f} s   "
          f"(candidate: {median['try_ran']:.0f} of {median['candidate_nodes']:.0f} nodes ran, "
          f"{median['try_cached']:.0f} cached; {median['moved']:.0f} package(s) moved; exit {median['exit']:.0f})")
    print(f"try / cold = {median['try_s'] / median['cold_s']:.2f}")


if __name__ == "__main__":
    main()
