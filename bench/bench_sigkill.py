"""SIGKILL stress on the example workspace: kill a cold `graphbuild run //envs:prod` at random
points, rerun it, and check after each kill that

* the rerun exits 0 and reuses every result stored before the kill (each such node `cached`);
* nothing of the killed run is left once the rerun is done: no process of the process groups
  it recorded, no process carrying its run id in its environment, no process working in its
  directory, no scratch directory, and no container
  labelled `org.graphbuild.run=<its run id>` (containers get that label from the test-image
  executor; when none carries it yet, that is reported, not failed).

    .venv/bin/python bench/bench_sigkill.py [--trials 20] [--seed 1] [-j 2] [--keep DIR]

Every trial uses a fresh cache (a cold run each time); the uv cache and the Docker engine are
shared, as on a developer's machine. A first, uninterrupted cold run measures how long a cold
run takes; each trial then kills at a uniformly random point of that span (a run that finished
first is run again with half the delay). Every other trial also kills the run's watchdog first,
so that what the run left is found by the next run's sweep alone. Needs the services
(`scripts/workspace-env.sh`, started if need be) and the package index.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from example_copy import GRAPHBUILD, copy_example, services_env

from graphbuild.cache.actions import ActionCache
from graphbuild.cache.runs import RUN_ENV, run_is_alive

TARGET = "//envs:prod"
LABEL = "org.graphbuild.run"


@dataclass
class Trial:
    index: int
    delay: float
    watchdog_too: bool = False  # its watchdog killed first: the next run's sweep must clean up
    killed: bool = False
    in_progress: list[str] = field(default_factory=list)
    stored: int = 0
    reused: int = 0
    rerun_exit: int | None = None
    rerun_seconds: float = 0.0
    alive_after_kill: int = 0  # processes of the killed run right after the kill (the sweep's work)
    left_processes: list[str] = field(default_factory=list)
    left_dirs: list[str] = field(default_factory=list)
    labelled_after_kill: int = 0
    left_containers: list[str] = field(default_factory=list)
    unlabelled_left: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def processes() -> dict[int, tuple[int, str, str]]:
    """pid -> (pgid, cwd, command + " " + the run id in its environment) of every live process."""
    found = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            text = Path(f"/proc/{entry}/stat").read_text()
            fields = text[text.rindex(")") + 2:].split()
            if fields[0] == "Z":
                continue
            try:
                cwd = os.readlink(f"/proc/{entry}/cwd")
            except OSError:
                cwd = ""
            command = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            try:
                environ = Path(f"/proc/{entry}/environ").read_bytes().split(b"\0")
            except OSError:
                environ = []
            run = next((e.decode(errors="replace") for e in environ if e.startswith(RUN_ENV.encode() + b"=")), "")
            found[int(entry)] = (int(fields[2]), cwd, f"{command.strip()} {run}".strip())
        except (OSError, ValueError):
            continue
    return found


def of_run(procs: dict[int, tuple[int, str, str]], groups: set[int], run_dirs: list[Path]) -> dict[int, str]:
    marks = [f"{RUN_ENV}={d.name}" for d in run_dirs]
    return {pid: command[:100] for pid, (pgid, cwd, command) in procs.items()
            if pgid in groups or any(cwd.startswith(str(d)) for d in run_dirs)
            or any(command.endswith(mark) for mark in marks)}


def stored_keys(cache: Path) -> set[str]:
    actions = ActionCache(cache / "actions", warn=lambda text: None)
    try:
        return {key for key, _, _ in actions.entries()}
    finally:
        actions.close()


def in_progress(stderr: str) -> list[str]:
    """Nodes the killed run had started and not finished, from its progress lines."""
    started: dict[str, None] = {}
    for line in stderr.splitlines():
        match = re.match(r"^\[\s*\d+/\d+\] (\S+)\s+(\S+)", line)
        if not match:
            continue
        status, nid = match.groups()
        if status == "running":
            started[nid] = None
        else:
            started.pop(nid, None)
    return list(started)


class Docker:
    def __init__(self) -> None:
        try:
            import docker

            self.client = docker.from_env()
            self.client.ping()
        except Exception as err:  # no engine: the container checks are skipped and said so
            print(f"note: no Docker engine ({err}); container checks skipped")
            self.client = None

    def labelled(self, run_id: str) -> list[str]:
        if self.client is None:
            return []
        return [c.name for c in self.client.containers.list(all=True, filters={"label": f"{LABEL}={run_id}"})]

    def any_labelled(self) -> bool:
        return self.client is not None and bool(self.client.containers.list(all=True, filters={"label": LABEL}))

    def from_images(self, image_ids: set[str], since: set[str]) -> list[str]:
        """Containers made from these images that did not exist before the trial."""
        if self.client is None or not image_ids:
            return []
        return [c.name for c in self.client.containers.list(all=True)
                if c.id not in since and c.attrs.get("Image") in image_ids]

    def remove_ours(self, base: Path) -> int:
        """Remove the stopped containers whose mounts lie in this benchmark's directory (what
        the killed runs left): the engine is shared, nothing else of it is touched."""
        if self.client is None:
            return 0
        removed = 0
        for container in self.client.containers.list(all=True, filters={"status": "exited"}):
            sources = [m.get("Source", "") for m in container.attrs.get("Mounts", [])]
            if any(source.startswith(str(base)) for source in sources):
                container.remove()
                removed += 1
        return removed

    def ids(self) -> set[str]:
        return {c.id for c in self.client.containers.list(all=True)} if self.client is not None else set()


def graphbuild(args: list[str], ws: Path, cache: Path, env: dict[str, str], jobs: int) -> subprocess.Popen:
    return subprocess.Popen([*GRAPHBUILD, *args, "-C", str(ws), "--cache-dir", str(cache), "-j", str(jobs)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def run_trial(index: int, delay: float, ws: Path, cache: Path, env: dict[str, str], jobs: int,
              docker: Docker, watchdog_too: bool) -> Trial:
    trial = Trial(index, delay, watchdog_too)
    before = docker.ids()
    for _ in range(4):  # a run that finished before its kill is no trial: again, killed earlier
        shutil.rmtree(cache, ignore_errors=True)
        proc = graphbuild(["run", TARGET], ws, cache, env, jobs)
        try:
            proc.wait(timeout=trial.delay)
        except subprocess.TimeoutExpired:
            if watchdog_too:  # the run's watchdog is the process naming the run's groups file
                for pid, (_, _, command) in processes().items():
                    if "kill_run_processes" in command and str(cache / "tmp" / "runs") in command:
                        os.kill(pid, signal.SIGKILL)
            proc.send_signal(signal.SIGKILL)
            trial.killed = True
        _, err = proc.communicate()
        if trial.killed:
            break
        trial.delay /= 2
    if not trial.killed:
        trial.problems.append("every run finished before its kill")
        return trial
    trial.in_progress = in_progress(err)

    run_dirs = sorted((cache / "tmp" / "runs").iterdir()) if (cache / "tmp" / "runs").is_dir() else []
    dead_ids = [d.name for d in run_dirs]
    groups: set[int] = set()
    for run_dir in run_dirs:
        if run_is_alive(cache / "tmp", run_dir.name):
            trial.problems.append(f"run {run_dir.name} still counts as alive after the kill")
        if (run_dir / "groups").exists():
            groups |= {int(line.split()[0]) for line in (run_dir / "groups").read_text().split("\n") if line}
    time.sleep(0.5)  # the kernel delivers the death signals of the direct children
    trial.alive_after_kill = len(of_run(processes(), groups, run_dirs))
    trial.labelled_after_kill = sum(len(docker.labelled(rid)) for rid in dead_ids)
    stored = stored_keys(cache)
    trial.stored = len(stored)

    started = time.monotonic()
    rerun = graphbuild(["run", TARGET, "--json"], ws, cache, env, jobs)
    out, err = rerun.communicate()
    trial.rerun_seconds = time.monotonic() - started
    trial.rerun_exit = rerun.returncode
    if rerun.returncode != 0:
        trial.problems.append(f"rerun exited {rerun.returncode}: {err.strip().splitlines()[-3:]}")
        return trial
    nodes = json.loads(out)["nodes"]
    statuses = {n["key"]: n["status"] for n in nodes}
    again = [key for key in stored if key in statuses]
    trial.reused = sum(1 for key in again if statuses[key] == "cached")
    if trial.reused != len(again):
        ran = [n["id"] for n in nodes if n["key"] in stored and n["status"] != "cached"]
        trial.problems.append(f"results stored before the kill ran again: {ran}")

    left = of_run(processes(), groups, run_dirs)
    trial.left_processes = [f"{pid} {command}" for pid, command in left.items()]
    tmp = cache / "tmp"
    trial.left_dirs = [str(p) for rid in dead_ids for p in (tmp / "runs" / rid, tmp / "trash" / f"run-{rid}")
                       if p.exists()]
    trial.left_dirs += [str(p) for p in tmp.iterdir() if p.name.startswith(("node-", "blob-"))]
    trial.left_containers = [name for rid in dead_ids for name in docker.labelled(rid)]
    test_images = {"sha256:" + n["outputs"]["config.json"] for n in nodes
                   if n["id"].endswith("#image.test") and "config.json" in n["outputs"]}
    trial.unlabelled_left = len(docker.from_images(test_images, before))
    if trial.left_processes:
        trial.problems.append(f"processes of the killed run remain: {trial.left_processes}")
    if trial.left_dirs:
        trial.problems.append(f"directories of the killed run remain: {trial.left_dirs}")
    if trial.left_containers:
        trial.problems.append(f"containers of the killed run remain: {trial.left_containers}")
    return trial


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("-j", "--jobs", type=int, default=2)
    parser.add_argument("--keep", metavar="DIR", type=Path, help="work in DIR (a new directory) and keep it")
    args = parser.parse_args(argv)

    env = services_env()
    env.pop("GRAPHBUILD_CACHE_DIR", None)
    if args.keep:
        args.keep.mkdir(parents=True)
        base = args.keep
    else:
        base = Path(tempfile.mkdtemp(prefix="graphbuild-bench-sigkill-"))
    docker = Docker()
    try:
        ws = copy_example(base / "ws", f"bench-sigkill-{uuid.uuid4().hex[:8]}")
        print(f"machine: nproc={os.cpu_count()}, load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}",
              flush=True)
        calibration = base / "cache-calibration"
        started = time.monotonic()
        cold = graphbuild(["run", TARGET, "--json"], ws, calibration, env, args.jobs)
        out, err = cold.communicate()
        cold_seconds = time.monotonic() - started
        if cold.returncode != 0:
            print(err[-3000:])
            return 2
        total = len(json.loads(out)["nodes"])
        print(f"uninterrupted cold `run {TARGET}`: {cold_seconds:.1f} s, {total} nodes", flush=True)
        shutil.rmtree(calibration, ignore_errors=True)

        rnd = random.Random(args.seed)
        trials = []
        for index in range(1, args.trials + 1):
            delay = rnd.uniform(0.5, 0.95 * cold_seconds)
            cache = base / f"cache-{index}"
            trial = run_trial(index, delay, ws, cache, env, args.jobs, docker, watchdog_too=index % 2 == 0)
            trials.append(trial)
            during = ", ".join(trial.in_progress) or "(not known: its last progress lines were not flushed)"
            print(f"trial {index:>2}: kill at {trial.delay:5.1f} s"
                  f"{' (and its watchdog)' if trial.watchdog_too else ''} during {during}; "
                  f"{trial.alive_after_kill} processes of it alive after the kill, "
                  f"{trial.labelled_after_kill} labelled containers; "
                  f"rerun exit {trial.rerun_exit} in {trial.rerun_seconds:.1f} s, reused {trial.reused}/{trial.stored} "
                  f"stored; left: {len(trial.left_processes)} processes, {len(trial.left_dirs)} dirs, "
                  f"{len(trial.left_containers)} labelled + {trial.unlabelled_left} unlabelled containers "
                  f"[{'PASS' if trial.ok else 'FAIL'}]", flush=True)
            for problem in trial.problems:
                print(f"    FAIL: {problem}", flush=True)
            shutil.rmtree(cache, ignore_errors=True)

        passed = sum(t.ok for t in trials)
        print()
        print(f"{passed}/{len(trials)} trials passed")
        print(f"kills: {sum(t.killed for t in trials)}; during a node: "
              f"{sum(bool(t.in_progress) for t in trials)}; results stored before the kill: median "
              f"{statistics.median(t.stored for t in trials):.0f} (of {total} nodes), all reused: "
              f"{sum(t.reused == t.stored for t in trials if t.rerun_exit == 0)}")
        for watchdog_too in (False, True):
            some = [t for t in trials if t.watchdog_too == watchdog_too]
            print(f"{'watchdog killed too' if watchdog_too else 'watchdog alive'} ({len(some)} trials): processes "
                  f"of the killed run alive 0.5 s after the kill: {sum(t.alive_after_kill for t in some)}; "
                  f"after the rerun: {sum(len(t.left_processes) for t in some)}")
        labelled = docker.any_labelled() or any(t.labelled_after_kill for t in trials)
        if not labelled:
            print(f"containers: none carries the label {LABEL} yet (the test-image executor does not set it): "
                  f"the labelled-container check found nothing to check")
        print(f"containers labelled by a killed run, after the kill: {sum(t.labelled_after_kill for t in trials)}; "
              f"after the rerun: {sum(len(t.left_containers) for t in trials)}; unlabelled test containers left: "
              f"{sum(t.unlabelled_left for t in trials)}")
        print(f"removed {docker.remove_ours(base)} stopped containers of this benchmark from the engine")
        print(f"load average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
        return 0 if passed == len(trials) else 1
    finally:
        if not args.keep:
            shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
