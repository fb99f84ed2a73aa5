"""Start-up of the `graphbuild` command beside a bare interpreter, whole processes timed.

    python bench/bench_startup.py [--runs 30] [--dir DIR]

Runs, interleaved round by round (the machine's load hits every command alike), a bare
`python -c pass` and `graphbuild --help`, `--version`, `help build`, `completion bash` and
`completion --labels` (the console script of this interpreter's environment, run from DIR,
default: this repository, a workspace), `query` (loading) and `graph` (loading and analysis)
of //envs:prod, and prints each command's median wall time and its
ratio to the bare interpreter's median. The goal: --help, --version and completion within 3x.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

GOAL = 3.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--dir", type=Path, default=Path(__file__).resolve().parent.parent)
    parser.add_argument("--baseline", metavar="SCRIPT",
                        help="another graphbuild console script (e.g. /work/main/.venv/bin/graphbuild): its --help "
                             "and --version timed in the same rounds")
    args = parser.parse_args()
    script = Path(sys.executable).parent / "graphbuild"
    commands = {
        "python -c pass": [sys.executable, "-c", "pass"],
        "graphbuild --help": [str(script), "--help"],
        "graphbuild --version": [str(script), "--version"],
        "graphbuild help build": [str(script), "help", "build"],
        "graphbuild completion bash": [str(script), "completion", "bash"],
        "graphbuild completion --labels": [str(script), "completion", "--labels"],
        # loading, and loading + analysis: what every build pays before its first node
        "graphbuild query deps(//envs:prod)": [str(script), "query", "deps(//envs:prod)"],
        "graphbuild graph //envs:prod": [str(script), "graph", "//envs:prod", "--json"],
    }
    if args.baseline:
        commands["baseline --help"] = [args.baseline, "--help"]
        commands["baseline --version"] = [args.baseline, "--version"]
        commands["baseline query deps(//envs:prod)"] = [args.baseline, "query", "deps(//envs:prod)"]
        commands["baseline graph //envs:prod"] = [args.baseline, "graph", "//envs:prod", "--json"]
    times: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(args.runs):
        for name, argv in commands.items():
            started = time.perf_counter()
            subprocess.run(argv, cwd=args.dir, stdout=subprocess.DEVNULL, check=True)
            times[name].append(time.perf_counter() - started)
    bare = statistics.median(times["python -c pass"])
    load = os.getloadavg()
    print(f"{args.runs} runs each, interleaved; load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; "
          f"{os.cpu_count()} cores")
    print(f"{'command':<34} {'median ms':>10} {'x bare':>7}")
    for name, samples in times.items():
        median = statistics.median(samples)
        print(f"{name:<34} {median * 1000:>10.1f} {median / bare:>7.2f}")
    # what must answer at once: --help, --version, and what the completion script runs at <TAB>
    # (generating the script, once per installation, is shown but not held to the goal)
    goal = ("graphbuild --help", "graphbuild --version", "graphbuild completion --labels")
    worst = max(statistics.median(times[n]) for n in goal)
    print(f"goal: --help, --version, completion at <TAB> within {GOAL:.0f}x a bare interpreter: "
          f"{'met' if worst / bare <= GOAL else 'NOT met'} (worst {worst / bare:.2f}x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
