"""Faults the local cache survives: concurrent runs on one cache (each node runs once in all),
a damaged action cache or last-use table, a corrupt blob read by several nodes at once, and
SIGKILL at random points of a cold run (the rerun reuses everything stored, and nothing of
the killed run is left: no process of its groups, no scratch directory)."""

from __future__ import annotations

import json
import os
import random
import re
import signal
import time
from pathlib import Path

import pytest

from graphbuild.cache.actions import ActionCache
from graphbuild.cache.runs import Run, run_is_alive
from graphbuild.records import ActionResult, Status

# -- helpers ---------------------------------------------------------------------------------


def _side_lines(path: Path) -> list[str]:
    return path.read_text().split() if path.exists() else []


def _slow_workspace(ws, side: Path, *, count: int = 8, sleep: float = 0.4) -> list[str]:
    """`count` independent slow genrules and two that join them; each command appends its
    name to `side` once it runs, so the file counts runs across processes."""
    names = [f"n{i}" for i in range(count)]
    rules = [f'genrule(name = "{n}", outs = ["{n}.txt"], cmd = "sleep {sleep}; echo {n} >> {side}; echo {n} > $OUT")'
             for n in names]
    rules.append(f'genrule(name = "join1", srcs = [":n0", ":n1", ":n2"], outs = ["j1.txt"], '
                 f'cmd = "sleep {sleep}; echo join1 >> {side}; cat $SRCS > $OUT")')
    rules.append(f'genrule(name = "join2", srcs = [":join1", ":n3"], outs = ["j2.txt"], '
                 f'cmd = "echo join2 >> {side}; cat $SRCS > $OUT")')
    ws.write("pkg/BUILD.envs", "\n".join(rules) + "\n")
    return [*names, "join1", "join2"]


def _processes() -> dict[int, tuple[int, str]]:
    """pid -> (pgid, cwd) of every process we can see."""
    return {pid: (pgid, cwd) for pid, (pgid, cwd, _) in _processes_with_commands().items()}


def _processes_with_commands() -> dict[int, tuple[int, str, str]]:
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
            found[int(entry)] = (int(fields[2]), cwd, command)
        except (OSError, ValueError):
            continue
    return found


# -- two runs at once --------------------------------------------------------------------------


@pytest.mark.parametrize("runs", [2, pytest.param(4, marks=pytest.mark.slow)])
def test_concurrent_runs_on_one_cache_run_each_node_once_in_all(ws, tmp_path, runs):
    side = tmp_path / "ran.txt"
    names = _slow_workspace(ws, side)
    procs = [ws.gb_process("build", "//pkg:all", "-j", "2", "--json") for _ in range(runs)]
    results = [proc.communicate(timeout=300) for proc in procs]
    for proc, (_, err) in zip(procs, results, strict=True):
        assert proc.returncode == 0, err
    lines = _side_lines(side)
    assert sorted(lines) == sorted(names), f"ran more than once: {[n for n in set(lines) if lines.count(n) > 1]}"
    # every process reports every node, ran by itself or found stored by another
    for out, _ in results:
        statuses = {n["id"]: n["status"] for n in json.loads(out)["nodes"]}
        assert len(statuses) == len(names)
        assert set(statuses.values()) <= {"ran", "cached"}
    assert (ws.root / "graphbuild-out/pkg/j2.txt").read_text() == "n0\nn1\nn2\nn3\n"
    assert list((ws.cache / "tmp" / "runs").iterdir()) == []


def test_clean_refuses_while_a_build_runs_on_the_cache_and_the_build_keeps_its_work(ws, tmp_path):
    started, release = tmp_path / "started", tmp_path / "release"
    ws.write("pkg/BUILD.envs", f"""
        genrule(name = "slow", outs = ["slow.txt"],
                cmd = "touch {started}; while [ ! -e {release} ]; do sleep 0.05; done; echo done > $OUT")
    """)
    build = ws.gb_process("build", "//pkg:slow", "--json")
    try:
        deadline = time.monotonic() + 120
        while not started.exists():
            assert build.poll() is None and time.monotonic() < deadline, build.communicate()
            time.sleep(0.05)
        refused = ws.gb("clean")
        assert refused.exit_code == 2
        assert "another graphbuild process is building with the cache" in refused.stderr
        assert (ws.cache / "tmp" / "runs").is_dir()  # nothing of the live run was touched
    finally:
        release.touch()  # the build ends whatever happened above
    _, err = build.communicate(timeout=120)
    assert build.returncode == 0, err
    assert (ws.root / "graphbuild-out/pkg/slow.txt").read_text() == "done\n"
    assert ws.gb("build", "//pkg:slow", "--json").json["summary"]["cached"] == 1  # its result was kept
    assert ws.gb("clean").exit_code == 0  # once nothing runs, clean goes ahead
    assert not (ws.cache / "blobs").exists()


# -- a damaged action cache ------------------------------------------------------------------------


def _chain(ws):
    """Built by another process, which has exited: the databases are closed, as a user finds them."""
    ws.write("pkg/BUILD.envs", """
        genrule(name = "base", outs = ["base.txt"], cmd = "echo base-content > $OUT")
        genrule(name = "top", srcs = [":base"], outs = ["top.txt"], cmd = "tr a-z A-Z < $SRCS > $OUT")
    """)
    proc = ws.gb_process("build", "//pkg:top", "--json")
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert not (ws.cache / "actions" / "cache.db-wal").exists()
    return json.loads(out)


def _damage(path: Path, how: str) -> None:
    size = path.stat().st_size
    if how == "garbage":
        path.write_bytes(random.Random(7).randbytes(size))
    else:
        with open(path, "r+b") as handle:
            handle.truncate(size // 2)


def _blobs(ws) -> dict[str, int]:
    return {p.name: p.stat().st_size for p in (ws.cache / "blobs" / "sha256").iterdir()}


@pytest.mark.parametrize("how", ["garbage", "truncated"])
def test_a_damaged_action_cache_is_reported_once_moved_aside_and_rebuilt(ws, how):
    _chain(ws)
    blobs_before = _blobs(ws)
    db = ws.cache / "actions" / "cache.db"
    _damage(db, how)

    again = ws.gb("build", "//pkg:top", "--json")
    assert again.exit_code == 0, again.stderr
    assert "Traceback" not in again.stderr
    warnings = [line for line in again.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1, again.stderr
    assert str(db) in warnings[0] and "corrupt" in warnings[0]
    assert again.ran() == {"//pkg:base#gen", "//pkg:top#gen"}  # results were lost: the nodes rerun
    assert (ws.root / "graphbuild-out/pkg/top.txt").read_text() == "BASE-CONTENT\n"
    assert set(_blobs(ws)) >= set(blobs_before)  # the blob store was kept
    aside = list((ws.cache / "tmp" / "corrupt").iterdir())
    assert len(aside) == 1 and (aside[0] / "cache.db").is_file()

    fine = ws.gb("build", "//pkg:top", "--json")
    assert fine.exit_code == 0
    assert set(fine.statuses().values()) == {"cached"}
    assert "warning" not in fine.stderr


@pytest.mark.parametrize("how", ["garbage", "truncated"])
def test_a_damaged_last_use_table_is_reported_once_and_results_stay_cached(ws, how):
    _chain(ws)
    usage = ws.cache / "actions" / "usage.sqlite"
    _damage(usage, how)

    again = ws.gb("build", "//pkg:top", "--json")
    assert again.exit_code == 0, again.stderr
    warnings = [line for line in again.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1, again.stderr
    assert str(usage) in warnings[0] and "corrupt" in warnings[0]
    assert set(again.statuses().values()) == {"cached"}  # the results themselves were intact
    gc = ws.gb("cache", "gc", "--max-size", "1G", "--json")
    assert gc.exit_code == 0, gc.stderr
    assert gc.json["kept_results"] == 2
    assert "warning" not in ws.gb("build", "//pkg:top").stderr


def test_damage_found_while_running_is_repaired_in_the_same_run(ws, tmp_path):
    """A database whose damage shows only on a later read (not when it opens)."""
    _chain(ws)
    cache = ActionCache(ws.cache / "actions", warn=lambda text: warned.append(text))
    warned: list[str] = []
    cache.close()
    _damage(ws.cache / "actions" / "cache.db", "garbage")
    assert cache.get("0" * 32) is None  # the read fails, the file is replaced, the read retried
    assert len(warned) == 1 and "cache.db" in warned[0]
    result = ActionResult.create(Status.OK, "//pkg:k#gen")
    cache.put("k", result)
    assert cache.get("k") == result
    cache.close()


def test_a_record_of_the_wrong_shape_is_dropped_not_trusted(ws):
    first = _chain(ws)
    key = next(n["key"] for n in first["nodes"] if n["id"] == "//pkg:base#gen")
    cache = ActionCache(ws.cache / "actions")
    stored = cache.get(key)
    assert stored is not None
    cache._cache.set("r:" + key, {**stored.to_json(), "outputs": {"base.txt": ["short", 1, False]}})
    cache.close()
    again = ws.gb("build", "//pkg:base", "--json")
    assert again.exit_code == 0, again.stderr
    assert again.statuses() == {"//pkg:base#gen": "ran"}
    assert key in again.stderr and "not a result record" in again.stderr


def test_a_record_of_an_older_format_is_a_quiet_miss(ws):
    """What an older graphbuild stored (the same key, another record layout) runs again,
    without a warning per node: upgrading is not damage."""
    first = _chain(ws)
    key = next(n["key"] for n in first["nodes"] if n["id"] == "//pkg:base#gen")
    cache = ActionCache(ws.cache / "actions")
    stored = cache.get(key)
    assert stored is not None
    older = {k: v for k, v in stored.to_json().items() if k not in ("format", "summary")}
    cache._cache.set("r:" + key, older)
    cache.close()
    again = ws.gb("build", "//pkg:base", "--json")
    assert again.exit_code == 0, again.stderr
    assert again.statuses() == {"//pkg:base#gen": "ran"}
    assert "warning" not in again.stderr
    assert ws.gb("build", "//pkg:base", "--json").statuses() == {"//pkg:base#gen": "cached"}


# -- a corrupt blob read by several nodes at once ------------------------------------------------


def test_a_corrupt_blob_read_by_several_nodes_is_rebuilt_once_and_all_read_the_repair(ws, tmp_path):
    side = tmp_path / "ran.txt"
    consumers = [f"c{i}" for i in range(4)]
    ws.write("pkg/BUILD.envs", "\n".join([
        f'genrule(name = "base", outs = ["base.txt"], cmd = "echo base >> {side}; echo base-content > $OUT")',
        *(f'genrule(name = "{c}", srcs = [":base"], outs = ["{c}.txt"], cmd = "sleep 0.2; cat $SRCS > $OUT")'
          for c in consumers),
    ]) + "\n")
    first = ws.gb("build", "//pkg:all", "--json")
    assert first.exit_code == 0, first.stderr
    sha = next(n["outputs"]["base.txt"] for n in first.json["nodes"] if n["id"] == "//pkg:base#gen")
    blob = ws.cache / "blobs" / "sha256" / sha
    data = bytearray(blob.read_bytes())
    data[0] ^= 0x01  # same size, one bit: only reading the bytes can tell
    os.chmod(blob, 0o644)
    blob.write_bytes(bytes(data))
    # the consumers must run again (their commands changed), all at once, all reading base's blob
    ws.write("pkg/BUILD.envs", (ws.root / "pkg/BUILD.envs").read_text().replace("sleep 0.2", "sleep 0.3"))

    again = ws.gb("build", "//pkg:all", "-j", "4")
    assert again.exit_code == 0, again.stderr
    assert _side_lines(side) == ["base", "base"]  # built once, rebuilt once: exactly the producer
    for c in consumers:
        assert (ws.root / f"graphbuild-out/pkg/{c}.txt").read_text() == "base-content\n"
    counters = [tuple(map(int, m.groups())) for m in re.finditer(r"^\[\s*(\d+)/(\d+)\]", again.stderr, re.M)]
    assert counters and all(done <= total == 5 for done, total in counters), again.stderr
    finished = re.findall(r"^\[\s*\d+/5\] (?:ran|cached|failed|skipped)\s", again.stderr, re.M)
    assert len(finished) == 5, again.stderr
    assert again.stderr.count("corrupt blob") == 1
    assert "rebuilt //pkg:base#gen" in again.stderr
    assert ws.gb("build", "//pkg:all", "--json").statuses() == {f"//pkg:{n}#gen": "cached"
                                                                  for n in ["base", *consumers]}


# -- runs: identity and liveness -------------------------------------------------------------------


def test_a_run_is_alive_while_its_process_holds_it_and_dead_after(tmp_path):
    tmp = tmp_path / "tmp"
    run = Run(tmp)
    assert run_is_alive(tmp, run.id)
    assert run.alive(run.id)
    run.finish()
    # finished: its directory is gone; its process (this one) still lives, so the id alone
    # cannot prove it dead from another cache, but this cache knows it is over
    assert not (tmp / "runs" / run.id).exists()
    assert run_is_alive(tmp, "another-machine-1-2-abc")  # cannot be checked: counts as alive
    assert not run_is_alive(tmp, run.id.replace(f"-{os.getpid()}-", "-999999999-"))  # no such process


def test_a_killed_runs_lock_is_free_and_the_next_run_sweeps_it(ws, tmp_path):
    ws.write("pkg/BUILD.envs", 'genrule(name = "slow", outs = ["s.txt"], cmd = "sleep 30; echo > $OUT")\n')
    proc = ws.gb_process("build", "//pkg:slow")
    runs = ws.cache / "tmp" / "runs"
    run_dir = _wait_for(lambda: next((d for d in runs.iterdir() if (d / "groups").exists()), None) if runs.is_dir()
                        else None)
    assert run_is_alive(ws.cache / "tmp", run_dir.name)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)
    assert not run_is_alive(ws.cache / "tmp", run_dir.name)
    other = Run(ws.cache / "tmp")  # a new run sweeps the dead one
    try:
        assert other.swept == [run_dir.name]
        assert not run_dir.exists()
    finally:
        other.finish()


def _wait_for(probe, timeout: float = 60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = probe()
        if found:
            return found
        time.sleep(0.05)
    raise AssertionError("timed out waiting")


# -- SIGKILL at random points of a cold run ------------------------------------------------------------


def _kill_workspace(ws) -> None:
    """Every node leaves a background job (a grandchild of graphbuild, in the node's process
    group): a normal run kills it when its shell exits; a killed run leaves it to the sweep."""
    rules = [f'genrule(name = "g{i}", outs = ["g{i}.txt"], '
             f'cmd = "sleep 60 >/dev/null 2>&1 & sleep 0.{i % 4 + 3}; echo g{i} > $OUT")' for i in range(10)]
    rules.append('genrule(name = "mid", srcs = [":g0", ":g1", ":g2"], outs = ["mid.txt"], '
                 'cmd = "sleep 60 >/dev/null 2>&1 & sleep 0.3; cat $SRCS > $OUT")')
    rules.append('genrule(name = "top", srcs = [":mid", ":g9"], outs = ["top.txt"], cmd = "cat $SRCS > $OUT")')
    ws.write("pkg/BUILD.envs", "\n".join(rules) + "\n")


@pytest.mark.parametrize(("seed", "watchdog_too"), [
    (3, True), pytest.param(1, False, marks=pytest.mark.slow), pytest.param(2, False, marks=pytest.mark.slow)])
def test_sigkill_at_a_random_point_of_a_cold_run_leaves_nothing_and_loses_nothing(ws, tmp_path, seed, watchdog_too):
    """`watchdog_too`: the run's watchdog is killed first, so what the run left is found by
    the next run's sweep alone."""
    _kill_workspace(ws)
    proc = ws.gb_process("build", "//pkg:all", "-j", "2")
    runs = ws.cache / "tmp" / "runs"
    # a random point once nodes run (before that, there is nothing to leave behind)
    _wait_for(lambda: runs.is_dir() and any((d / "groups").exists() for d in runs.iterdir()))
    time.sleep(random.Random(seed).uniform(0.0, 1.2))
    if watchdog_too:
        for pid, (_, _, command) in _processes_with_commands().items():
            if "kill_run_processes" in command and str(runs) in command:
                os.kill(pid, signal.SIGKILL)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL  # killed, not finished

    dead = list(runs.iterdir())
    groups: set[int] = set()
    for run_dir in dead:
        assert not run_is_alive(ws.cache / "tmp", run_dir.name)
        if (run_dir / "groups").exists():
            groups |= {int(line.split()[0]) for line in (run_dir / "groups").read_text().splitlines()}
    assert groups
    if watchdog_too:
        # nobody killed the background jobs of the groups: the next run's sweep must
        assert any(pgid in groups for pgid, _ in _processes().values())
    else:  # the watchdog kills every process of the run's groups at once
        _wait_for(lambda: not any(pgid in groups for pgid, _ in _processes().values()), timeout=10)
    stored = {key for key, _, _ in _stored(ws)}

    rerun = ws.gb("build", "//pkg:all", "--json")
    assert rerun.exit_code == 0, rerun.stderr
    statuses = {n["key"]: n["status"] for n in rerun.json["nodes"]}
    reused = {key for key in stored if key in statuses}
    assert all(statuses[key] == "cached" for key in reused), "a result stored before the kill ran again"
    assert (ws.root / "graphbuild-out/pkg/top.txt").is_file()

    left = {pid: info for pid, info in _processes().items()
            if info[0] in groups or any(info[1].startswith(str(d)) for d in dead)}
    assert left == {}, f"processes of the killed run remain: {left}"
    tmp = ws.cache / "tmp"
    remains = [p for d in dead for p in (d, tmp / "trash" / f"run-{d.name}") if p.exists()]
    assert remains == []
    assert list((tmp / "runs").iterdir()) == []
    assert [p for p in tmp.iterdir() if p.name.startswith(("node-", "blob-"))] == []


def _stored(ws):
    cache = ActionCache(ws.cache / "actions")
    try:
        return list(cache.entries())
    finally:
        cache.close()


def test_children_and_grandchildren_die_with_graphbuild_even_by_sigkill(tmp_path):
    import subprocess
    import sys

    pids = tmp_path / "pids"
    script = ("import sys\n"
              "from pathlib import Path\n"
              "from graphbuild.cache.runs import Run\n"
              "from graphbuild.execution import processes\n"
              f"processes.bind(Run(Path({str(tmp_path / 'tmp')!r})))\n"
              f"processes.run_process(['bash', '-c', 'sleep 60 & echo $$ $! > {pids}; wait'])\n")
    parent = subprocess.Popen([sys.executable, "-c", script])
    child, grandchild = map(int, _wait_for(lambda: pids.exists() and pids.read_text().split()))
    assert {child, grandchild} <= set(_processes())
    parent.send_signal(signal.SIGKILL)
    parent.wait(timeout=30)
    # the run's watchdog kills both at once: no next run needed
    _wait_for(lambda: not ({child, grandchild} & set(_processes())), timeout=10)


def test_a_child_not_yet_recorded_when_graphbuild_dies_is_killed_by_its_run_id(tmp_path):
    """The instant between starting a child and recording its group: the child is found by
    the run id in its environment."""
    import subprocess
    import sys

    pid_file = tmp_path / "child.pid"
    script = ("import os, subprocess, time\n"
              "from pathlib import Path\n"
              "from graphbuild.cache.runs import RUN_ENV, Run\n"
              f"run = Run(Path({str(tmp_path / 'tmp')!r}))\n"
              "run.watch_children()\n"
              "child = subprocess.Popen(['sleep', '60'], start_new_session=True,\n"
              "                         env={**os.environ, RUN_ENV: run.id})  # never recorded\n"
              f"Path({str(pid_file)!r}).write_text(str(child.pid))\n"
              "time.sleep(60)\n")
    parent = subprocess.Popen([sys.executable, "-c", script])
    child = int(_wait_for(lambda: pid_file.exists() and pid_file.read_text().strip()))
    parent.send_signal(signal.SIGKILL)
    parent.wait(timeout=30)
    _wait_for(lambda: child not in _processes(), timeout=10)
