"""Benchmark the engine on a synthetic workspace (see gen_workspace.py), through the real CLI.

    python bench/bench_engine.py [--targets 1000] [--keep DIR] [--profile]

Generates the workspace (fresh cache dir), then runs `python -m graphbuild` as subprocesses
and prints, in one table:

* load+analysis: wall time of `graph //... --format json` (first with no file digests
  remembered, then warm), and the same minus a bare `import graphbuild.cli.main`;
* cold `run //...`: wall time and nodes ran;
* no-op `run //...`: median wall time of several runs, and nodes ran (must be 0);
* after touching one source file of a leaf target (no deps) with many reverse dependencies:
  wall time, nodes ran, and whether the nodes that ran are exactly the nodes of that target
  and of every target depending on it (from `query 'rdeps(//..., T)'` and the graph JSON).

Then the goal check "no-op < 1.0 s".  `--profile` also runs one no-op under cProfile and
prints the top entries, to find the engine's hot spots.

Then loading alone (`--loading-only` skips the rest): one BUILD.envs holding 500, 2,000 and
8,000 genrules written out one after another (each over several lines, with lists), timed as
`query //big:all` (median of `--loading-runs`), beside the same targets made by a loop in
Starlark and written on one line; the figure that must stay flat is the time per target
(loading is linear).
`--baseline DIR` compares with another version of graphbuild installed in DIR (put first on
PYTHONPATH), side by side on the same workspace: a cold run of its own (its own cache), then
no-op runs alternating between the two, and the ratio of their medians. Install both the same
way (`--candidate DIR` for the version under test): an editable install imports ~40 ms slower
than an installed one. To make the directories from git revisions:

    mkdir /tmp/gb-base && git archive REV | tar -x -C /tmp/gb-base
    .venv/bin/pip install --no-deps --target /tmp/gb-base-site /tmp/gb-base
    (the same for HEAD into /tmp/gb-new-site)
    .venv/bin/python bench/bench_engine.py --candidate /tmp/gb-new-site --baseline /tmp/gb-base-site
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import pstats
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gen_workspace import generate

NOOP_GOAL_SECONDS = 1.0


@dataclass
class Timed:
    seconds: float
    stdout: str
    stderr: str
    returncode: int

    def json(self) -> Any:
        return json.loads(self.stdout)


class Bench:
    def __init__(self, root: Path, cache: Path, jobs: int | None, pythonpath: Path | None = None):
        self.root = root
        self.cache = cache
        self.jobs = jobs
        self.env = {k: v for k, v in os.environ.items() if k not in ("GRAPHBUILD_CACHE_DIR", "PYTHONPATH")}
        if pythonpath is not None:
            self.env["PYTHONPATH"] = str(pythonpath)

    def argv(self, *args: str) -> list[str]:
        extra = ["-j", str(self.jobs)] if self.jobs else []
        return [*args, "--cache-dir", str(self.cache), "-C", str(self.root), *extra]

    def run(self, *args: str, python_args: tuple[str, ...] = (), check: bool = True) -> Timed:
        cmd = [sys.executable, *python_args, "-m", "graphbuild", *self.argv(*args)]
        started = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, env=self.env, cwd=self.root)
        elapsed = time.perf_counter() - started
        if check and proc.returncode != 0:
            sys.stderr.write(proc.stderr[-4000:] + proc.stdout[-4000:])
            raise SystemExit(f"graphbuild {' '.join(args)} exited with {proc.returncode}")
        return Timed(elapsed, proc.stdout, proc.stderr, proc.returncode)

    def bare_import(self) -> float:
        started = time.perf_counter()
        subprocess.run([sys.executable, "-c", "import graphbuild.cli.main"], check=True, env=self.env)
        return time.perf_counter() - started


def ran_nodes(result: Timed) -> set[str]:
    return {n["id"] for n in result.json()["nodes"] if n["status"] == "ran"}


def summary_ran(result: Timed) -> int:
    """Nodes ran, from the text summary line `N nodes: X ran, ...`."""
    match = re.search(r"^\d+ nodes: (\d+) ran", result.stderr + result.stdout, re.MULTILINE)
    if match is None:
        raise SystemExit(f"no summary line in the output of graphbuild run:\n{result.stderr[-2000:]}")
    return int(match.group(1))


def target_graph(graph_json: dict) -> tuple[dict[str, list[str]], dict[str, set[str]]]:
    """(label -> its node ids, label -> labels it depends on directly) from `graph --format json`."""
    label_of = {n["id"]: n["label"] for n in graph_json["nodes"]}
    nodes: dict[str, list[str]] = {}
    deps: dict[str, set[str]] = {}
    for node in graph_json["nodes"]:
        nodes.setdefault(node["label"], []).append(node["id"])
        deps.setdefault(node["label"], set()).update(
            label_of[d] for d in node["deps"] if label_of[d] != node["label"])
    return nodes, deps


def reverse_closure(deps: dict[str, set[str]]) -> dict[str, set[str]]:
    """label -> the labels depending on it, transitively, itself included."""
    rdeps: dict[str, set[str]] = {lab: set() for lab in deps}
    for lab, ds in deps.items():
        for d in ds:
            rdeps[d].add(lab)
    closure: dict[str, set[str]] = {}
    for lab in sorted(deps):
        seen, stack = {lab}, [lab]
        while stack:
            for parent in rdeps[stack.pop()]:
                if parent not in seen:
                    seen.add(parent)
                    stack.append(parent)
        closure[lab] = seen
    return closure


def pick_leaf(deps: dict[str, set[str]], closure: dict[str, set[str]], share: float) -> str:
    """The leaf target (no deps) whose reverse closure is closest to `share` of all targets."""
    want = share * len(deps)
    leaves = [lab for lab, ds in deps.items() if not ds]
    return min(leaves, key=lambda lab: (abs(len(closure[lab]) - want), lab))


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def fmt_s(seconds: float) -> str:
    return f"{seconds:.2f} s"


def print_profile(path: Path, top: int) -> None:
    stats = pstats.Stats(str(path))
    stats.sort_stats("cumulative").print_stats(top)
    stats.sort_stats("tottime").print_stats(top)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--targets", type=int, default=1000)
    parser.add_argument("--packages", type=int, default=50)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--keep", metavar="DIR", type=Path,
                        help="generate into DIR (workspace DIR/ws, cache DIR/cache) and keep it")
    parser.add_argument("-j", "--jobs", type=int, help="passed to graphbuild (default: its own, nproc)")
    parser.add_argument("--noop-runs", type=int, default=3, help="no-op runs to take the median of")
    parser.add_argument("--touch-share", type=float, default=0.1,
                        help="touch a leaf whose reverse deps are closest to this share of the targets")
    parser.add_argument("--profile", action="store_true", help="also profile one no-op run (cProfile)")
    parser.add_argument("--profile-top", type=int, default=25)
    parser.add_argument("--loading", default="500,2000,8000", metavar="N,N,...",
                        help="targets in one BUILD file for the loading benchmark")
    parser.add_argument("--loading-runs", type=int, default=3)
    parser.add_argument("--loading-only", action="store_true", help="run the loading benchmark alone")
    parser.add_argument("--candidate", metavar="DIR", type=Path,
                        help="time the graphbuild installed in DIR (on PYTHONPATH) instead of the one this "
                             "interpreter imports: with --baseline, both installed the same way")
    parser.add_argument("--baseline", metavar="DIR", type=Path,
                        help="also time no-op runs of the graphbuild installed in DIR, alternating (see above)")
    args = parser.parse_args(argv)

    if args.keep:
        if args.keep.exists():
            parser.error(f"{args.keep} exists; --keep wants a new directory")
        base = args.keep
        base.mkdir(parents=True)
    else:
        base = Path(tempfile.mkdtemp(prefix="graphbuild-bench-"))
    try:
        sizes = [int(n) for n in args.loading.split(",") if n]
        if args.loading_only:
            return bench_loading(base, sizes, args.loading_runs)
        return _bench(args, base) | bench_loading(base, sizes, args.loading_runs)
    finally:
        if not args.keep:
            shutil.rmtree(base, ignore_errors=True)


def _bench(args: argparse.Namespace, base: Path) -> int:
    root, cache = base / "ws", base / "cache"
    info = generate(root, targets=args.targets, packages=args.packages, seed=args.seed)
    bench = Bench(root, cache, args.jobs, args.candidate)
    rows: list[tuple[str, str, str]] = []
    failures: list[str] = []

    print(f"workspace: {root} ({info['packages']} packages, {info['targets']} targets, "
          f"{info['edges']} target edges, {info['source_files']} source files)", flush=True)
    print(f"machine: nproc={os.cpu_count()}, python {platform.python_version()} ({sys.executable}), "
          f"{platform.platform()}, load average {load_average()}", flush=True)

    # (a) load + analysis
    bare = statistics.median(bench.bare_import() for _ in range(3))
    graph_first = bench.run("graph", "//...", "--format", "json")
    graph_json = graph_first.json()
    label_nodes, deps = target_graph(graph_json)
    n_nodes = len(graph_json["nodes"])
    rows.append(("bare `import graphbuild.cli.main`", fmt_s(bare), "median of 3"))
    rows.append(("load+analysis, first (`graph //...`)", fmt_s(graph_first.seconds),
                 f"{len(label_nodes)} targets, {n_nodes} nodes; {fmt_s(graph_first.seconds - bare)} beyond import"))
    print(f"graph: {n_nodes} nodes in {fmt_s(graph_first.seconds)}", flush=True)

    # (b) cold run
    cold = bench.run("run", "//...", "--json")
    cold_ran = ran_nodes(cold)
    rows.append(("cold `run //...`", fmt_s(cold.seconds), f"{len(cold_ran)} ran of {n_nodes}"))
    if len(cold_ran) != n_nodes:
        failures.append(f"cold run ran {len(cold_ran)} nodes, expected {n_nodes}")
    print(f"cold run: {len(cold_ran)} ran in {fmt_s(cold.seconds)}", flush=True)

    # load + analysis again, file digests now remembered
    warm_graphs = [bench.run("graph", "//...", "--format", "json").seconds for _ in range(3)]
    warm_graph = statistics.median(warm_graphs)
    rows.append(("load+analysis, warm (`graph //...`)", fmt_s(warm_graph),
                 f"median of 3; {fmt_s(warm_graph - bare)} beyond import"))

    # (c) no-op
    baseline = Bench(root, base / "cache-baseline", args.jobs, args.baseline) if args.baseline else None
    if baseline is not None:
        version = baseline.run("--version").stdout.strip()
        baseline_cold = baseline.run("run", "//...", "--json")
        rows.append((f"baseline cold `run //...` ({args.baseline})", fmt_s(baseline_cold.seconds),
                     f"{len(ran_nodes(baseline_cold))} ran; {version}"))
    noops: list[Timed] = []
    base_noops: list[Timed] = []
    for _ in range(args.noop_runs):  # alternating: both see the same load
        noops.append(bench.run("run", "//...", "--json"))
        if baseline is not None:
            base_noops.append(baseline.run("run", "//...", "--json"))
    noop = statistics.median(r.seconds for r in noops)
    noop_ran = max(len(ran_nodes(r)) for r in noops)
    noop_ok = noop_ran == 0
    rows.append(("no-op `run //...`", fmt_s(noop),
                 f"median of {len(noops)} ({', '.join(f'{r.seconds:.2f}' for r in noops)}); {noop_ran} ran "
                 f"[{'PASS' if noop_ok else 'FAIL'}]; engine-reported "
                 f"{statistics.median(r.json()['summary']['seconds'] for r in noops):.2f} s"))
    if not noop_ok:
        failures.append(f"no-op run ran {noop_ran} nodes")
    if base_noops:
        base_noop = statistics.median(r.seconds for r in base_noops)
        rows.append(("baseline no-op `run //...`", fmt_s(base_noop),
                     f"median of {len(base_noops)} ({', '.join(f'{r.seconds:.2f}' for r in base_noops)}); "
                     f"{max(len(ran_nodes(r)) for r in base_noops)} ran; engine-reported "
                     f"{statistics.median(r.json()['summary']['seconds'] for r in base_noops):.2f} s; "
                     f"this / baseline = {noop / base_noop:.3f}"))
    # The same without --json: what a person typing `graphbuild run //...` waits for.
    plain: list[Timed] = []
    base_plain: list[Timed] = []
    for _ in range(args.noop_runs):
        plain.append(bench.run("run", "//..."))
        if baseline is not None:
            base_plain.append(baseline.run("run", "//..."))
    plain_noop = statistics.median(r.seconds for r in plain)
    plain_ran = max(summary_ran(r) for r in plain)
    rows.append(("no-op `run //...` (text output)", fmt_s(plain_noop),
                 f"median of {len(plain)} ({', '.join(f'{r.seconds:.2f}' for r in plain)}); {plain_ran} ran "
                 f"[{'PASS' if plain_ran == 0 else 'FAIL'}]"))
    if base_plain:
        base_plain_noop = statistics.median(r.seconds for r in base_plain)
        rows.append(("baseline no-op `run //...` (text output)", fmt_s(base_plain_noop),
                     f"median of {len(base_plain)} ({', '.join(f'{r.seconds:.2f}' for r in base_plain)}); "
                     f"this / baseline = {plain_noop / base_plain_noop:.3f}"))
    if plain_ran != 0:
        failures.append(f"no-op run (text output) ran {plain_ran} nodes")
    print(f"no-op run: {noop_ran} ran, median {fmt_s(noop)}", flush=True)

    # (d) touch one leaf input
    closure = reverse_closure(deps)
    leaf = pick_leaf(deps, closure, args.touch_share)
    query = bench.run("query", f"rdeps(//..., {leaf})", "--json")
    queried = {t["label"] for t in query.json()["targets"]}
    expected = {nid for lab in queried for nid in label_nodes[lab]}
    pkg, name = leaf.removeprefix("//").split(":")
    src = sorted(p for p in (root / pkg).iterdir() if p.name.startswith(name + "_"))[0]
    with src.open("a") as handle:
        handle.write("touched by bench_engine.py\n")
    touched = bench.run("run", "//...", "--json")
    touched_ran = ran_nodes(touched)
    touch_ok = touched_ran == expected and queried == closure[leaf]
    rows.append((f"after touching {src.relative_to(root)}", fmt_s(touched.seconds),
                 f"{len(touched_ran)} ran; rdeps: {len(queried)} targets = {len(expected)} nodes "
                 f"[{'PASS' if touch_ok else 'FAIL'}]"))
    if not touch_ok:
        failures.append(f"touch run: {len(touched_ran - expected)} unexpected, {len(expected - touched_ran)} "
                        f"missing; query vs graph rdeps differ by {len(queried ^ closure[leaf])}")
        for nid in sorted(touched_ran ^ expected)[:10]:
            failures.append(f"  {'unexpected' if nid in touched_ran else 'missing'}: {nid}")
    print(f"touch run: {len(touched_ran)} ran in {fmt_s(touched.seconds)}", flush=True)

    width = max(len(r[0]) for r in rows)
    print()
    print(f"{'measurement':<{width}}  {'wall':>8}  notes")
    print(f"{'-' * width}  {'-' * 8}  {'-' * 40}")
    for what, value, notes in rows:
        print(f"{what:<{width}}  {value:>8}  {notes}")
    print()
    slowest = max(noop, plain_noop)
    print(f"no-op < {NOOP_GOAL_SECONDS:.1f} s: {'MET' if slowest < NOOP_GOAL_SECONDS else 'NOT MET'} "
          f"({noop:.2f} s with --json, {plain_noop:.2f} s text)")
    print(f"load average at the end: {load_average()} (other work on the machine skews the figures)")
    for line in failures:
        print(f"FAIL: {line}")

    if args.profile:
        prof = base / "noop.prof"
        result = bench.run("run", "//...", "--json", python_args=("-m", "cProfile", "-o", str(prof)))
        where = f"; profile in {prof}" if args.keep else ""
        print(f"\nprofiled no-op run: {fmt_s(result.seconds)} wall (under cProfile), "
              f"{len(ran_nodes(result))} ran{where}")
        print_profile(prof, args.profile_top)
    return 1 if failures else 0


def written_out(count: int) -> str:
    """`count` genrules, one after another, as a person (or a generator) writes them."""
    parts = ["# generated by bench/bench_engine.py: targets written out one after another\n"]
    for i in range(count):
        parts.append(f"""
genrule(
    name = "t{i}",
    srcs = [
        "t{i}_a.txt",
        "t{i}_b.txt",
    ],
    outs = ["t{i}.out"],
    cmd = "cat $SRCS > $OUT",
    env = {{"INDEX": "{i}"}},
)
""")
    return "".join(parts)


def on_one_line(count: int) -> str:
    """The same calls joined by ';' on a single line (every call starts on the same line)."""
    return "; ".join(f'genrule(name = "t{i}", srcs = ["t{i}_a.txt", "t{i}_b.txt"], outs = ["t{i}.out"], '
                     f'cmd = "cat $SRCS > $OUT", env = {{"INDEX": "{i}"}})' for i in range(count)) + "\n"


def made_in_a_loop(count: int) -> str:
    return f"""
[genrule(
    name = "t%d" % i,
    srcs = ["t%d_a.txt" % i, "t%d_b.txt" % i],
    outs = ["t%d.out" % i],
    cmd = "cat $SRCS > $OUT",
    env = {{"INDEX": str(i)}},
) for i in range({count})]
"""


def bench_loading(base: Path, sizes: list[int], runs: int) -> int:
    """Time loading one BUILD file of N targets, less the same command on a file of one target
    (start-up, imports, the evaluator process); per-target times must stay flat."""
    print(f"\nloading: {', '.join(map(str, sizes))} targets in one BUILD.envs; load average {load_average()}",
          flush=True)

    cases = [(1, "written out", written_out(1))] + [
        (count, style, text)
        for count in sizes
        for style, text in (("written out", written_out(count)), ("on one line", on_one_line(count)),
                            ("made in a loop", made_in_a_loop(count)))
        if style != "on one line" or count <= 2000]
    benches = []
    for count, style, text in cases:
        root = base / f"loading-{count}-{style.split()[0]}"
        (root / "big").mkdir(parents=True)
        (root / "graphbuild.toml").write_text("")
        (root / "big" / "BUILD.envs").write_text(text)
        benches.append(Bench(root, base / "loading-cache", None))
    times: list[list[float]] = [[] for _ in cases]
    for _ in range(runs):  # rounds over every case: drift in the machine's load hits all alike
        for index, ((count, _, _), bench) in enumerate(zip(cases, benches, strict=True)):
            result = bench.run("query", "//big:all", "--json")
            found = len(result.json()["targets"])
            if found != count:
                raise SystemExit(f"query found {found} targets, expected {count}")
            times[index].append(result.seconds)
    medians = [statistics.median(t) for t in times]
    baseline = medians[0]
    rows = [(count, style, seconds, len(text.splitlines()))
            for (count, style, text), seconds in zip(cases[1:], medians[1:], strict=True)]
    print(f"\n{'targets':>8}  {'how':<15} {'lines':>7}  {'query wall':>10}  {'beyond 1 target':>15}  "
          f"{'per target':>10}")
    print(f"{1:>8}  {'written out':<15} {len(written_out(1).splitlines()):>7}  {fmt_s(baseline):>10}")
    per_target: dict[int, float] = {}
    for count, style, seconds, lines in rows:
        beyond = seconds - baseline
        if style == "written out":
            per_target[count] = beyond / (count - 1)
        print(f"{count:>8}  {style:<15} {lines:>7}  {fmt_s(seconds):>10}  {fmt_s(beyond):>15}  "
              f"{beyond / (count - 1) * 1e6:>7.0f} us")
    # linear: the cost of each further target does not grow with the file (a quadratic loader
    # would make the slope between the two largest sizes several times the first one's)
    sizes = sorted(per_target)
    written = {c: s for c, style, s, _ in rows if style == "written out"}
    steps = list(itertools.pairwise(sizes))
    slopes = [(written[b] - written[a]) / (b - a) for a, b in steps]
    ratio = slopes[-1] / slopes[0] if len(slopes) > 1 and slopes[0] > 0 else 1.0
    costs = ", ".join(f"{a:,}->{b:,}: {slope * 1e6:.0f} us" for (a, b), slope in zip(steps, slopes, strict=True))
    print(f"cost of each further target written out: {costs}; last/first x{ratio:.2f} "
          f"({'linear' if ratio < 1.5 else 'NOT linear'}); load average at the end {load_average()}")
    return 0 if ratio < 1.5 else 1


if __name__ == "__main__":
    sys.exit(main())
