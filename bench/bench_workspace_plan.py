"""What planning layers across the whole workspace costs analysis (issue 12).

    .venv/bin/python bench/bench_workspace_plan.py [--teams 50] [--rounds 5] [--before REV]

Two workspaces: the example workspace, and the same with `--teams` more packages (`//team00`
...), each declaring an environment `prod` over a `core` layer of its own (the example's
requirements, the example's libraries; its lock is the example's prod lock under its labels).
Each command runs as its own process, cold in-process caches, warm file digests:

* `graphbuild query //...`: loading only (every BUILD.envs evaluated);
* `graphbuild graph //...`: loading and analysis of every target (every environment plans);
* `graphbuild layers //envs:prod`: one environment's analysis (it now loads the workspace).

With `--before REV` (e.g. the commit before the workspace plan), the same commands run from
REV's sources too, alternated with the current ones round by round (medians reported side by
side, so the machine's load hits both alike).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "bench"))

from example_copy import copy_example  # noqa: E402

TEAM = """
py_layer(
    name = "core",
    requirements = [
        "numpy>=2.0,<2.3",
        "requests>=2.31",
        "pydantic>=2.7",
    ],
)

environment(
    name = "prod",
    base = "//envs:debian",
    layers = [":core"],
    libraries = ["//libs/textstats", "//libs/featurize", "//libs/jobconfig", "//libs/legacyconf"],
)
"""


def add_teams(root: Path, count: int) -> None:
    lock = (root / "envs/pylock.prod.toml").read_text()
    for index in range(count):
        team = root / f"team{index:02d}"
        team.mkdir()
        (team / "BUILD.envs").write_text(TEAM)
        (team / "pylock.prod.toml").write_text(lock.replace("//envs:core", f"//team{index:02d}:core"))


def sources_at(rev: str, dest: Path) -> Path:
    """REV's graphbuild importable from `dest` (rules/ and cache/ placed as the install maps them)."""
    archive = subprocess.Popen(["git", "-C", str(REPO), "archive", "--format=tar", rev], stdout=subprocess.PIPE)
    subprocess.run(["tar", "-x", "-C", str(dest)], stdin=archive.stdout, check=True)
    if archive.wait() != 0:
        raise SystemExit(f"git archive {rev} failed")
    for name in ("rules", "cache"):
        shutil.move(str(dest / name), str(dest / "graphbuild" / name))
    return dest


def timed(command: list[str], root: Path, cache: Path, pythonpath: Path | None) -> float:
    # run from outside the repository: `-m` puts the working directory first on sys.path
    env = dict(os.environ)
    if pythonpath is not None:
        env["PYTHONPATH"] = str(pythonpath)
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "graphbuild", *command, "--cache-dir", str(cache), "-C", str(root)],
                          env=env, capture_output=True, text=True, cwd=cache.parent)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed in {root}:\n{done.stderr[-2000:]}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--teams", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--before", help="a git revision to measure side by side")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-wsplan-") as tmp_text:
        tmp = Path(tmp_text)
        example = copy_example(tmp / "example", "bench")
        synthetic = copy_example(tmp / "synthetic", "bench")
        add_teams(synthetic, args.teams)
        versions: dict[str, Path | None] = {"now": None}
        if args.before:
            versions[f"before ({args.before})"] = sources_at(args.before, Path(tempfile.mkdtemp(dir=tmp)))
        commands = [["query", "//..."], ["graph", "//..."], ["layers", "//envs:prod"]]
        workspaces = {"example": example, f"example + {args.teams} packages": synthetic}
        times: dict[tuple[str, str, str], list[float]] = {}
        for version, path in versions.items():  # warm the file digests (the base tarball's)
            for name, root in workspaces.items():
                timed(["graph", "//..."], root, tmp / f"cache-{name}-{version}", path)
        for _ in range(args.rounds):
            for command in commands:
                for name, root in workspaces.items():
                    for version, path in versions.items():
                        seconds = timed(command, root, tmp / f"cache-{name}-{version}", path)
                        times.setdefault((" ".join(command), name, version), []).append(seconds)
        load = os.getloadavg()
        print(f"medians of {args.rounds}, load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
        for (command, name, version), values in times.items():
            print(f"  {command:28s} {name:24s} {version:24s} {statistics.median(values):6.2f} s")


if __name__ == "__main__":
    main()
