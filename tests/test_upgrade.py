"""`graphbuild exec`, `resources`, `graphbuild try` and declared forks, end to end on a copy of
the example workspace with the real Docker engine and registry: a command's exit status and
the mounted directory, limits read back from the engine, the example's regressing library
found by a candidate upgrade without touching the lock, `--adopt`, a fork sharing the layers
it does not change; and bad input (exit 2, no traceback)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from docker_env import copy_example
from test_matrix import LEGACYCONF, PROD

if TYPE_CHECKING:
    from conftest import TestWorkspace

pytestmark = [pytest.mark.docker, pytest.mark.network]

LOCK = "envs/pylock.prod.toml"
CANDIDATE_LOCK = "envs/pylock.prod.candidate.toml"


@pytest.fixture(scope="module")
def example(tmp_path_factory: pytest.TempPathFactory, registry: str) -> Iterator[TestWorkspace]:
    top = tmp_path_factory.mktemp("upgrade")
    copy_example(top / "example")
    from conftest import TestWorkspace

    yield TestWorkspace(top / "example", top / "cache")


def _exec_process(ws: TestWorkspace, *args: str, cwd: Path | None = None) -> subprocess.Popen:
    """`graphbuild exec ARGS` in a process of its own (the command's output is the process's),
    the workspace and cache options before the `--` that starts the command."""
    split = args.index("--")
    argv = [sys.executable, "-m", "graphbuild", "exec", *args[:split], "--cache-dir", str(ws.cache),
            *([] if cwd else ["-C", str(ws.root)]), *args[split:]]
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=cwd or ws.root)


def _process(ws: TestWorkspace, *args: str, cwd: Path | None = None) -> tuple[int, str, str]:
    proc = _exec_process(ws, *args, cwd=cwd)
    out, err = proc.communicate(timeout=900)
    return proc.returncode, out, err


# -- exec -----------------------------------------------------------------------------------------


def test_exec_returns_the_commands_exit_status_and_sees_the_directory_read_only(example, tmp_path):
    job = tmp_path / "job"
    job.mkdir()
    (job / "data.txt").write_text("forty-two\n")
    code, out, err = _process(
        example, "-q", "--workdir", str(job), "-e", "GREETING=hello", PROD, "--",
        "python", "-c", "import os, sys, numpy; print(os.getcwd(), open('data.txt').read().strip(), "
        "os.environ['GREETING'], numpy.__name__); open('new.txt', 'w')")
    assert code == 1, (out, err)  # the mount is read-only: the command's own failure, its own status
    assert "/work forty-two hello numpy" in out, err
    assert "Read-only file system" in err
    # the current directory by default
    code, out, err = _process(example, "-q", PROD, "--", "sh", "-c", "ls /work; exit 7",
                              cwd=example.root / "libs" / "legacyconf")
    assert code == 7, err
    assert "pyproject.toml" in out.split()


def test_exec_attaches_the_terminal_when_there_is_one(example):
    import shlex
    import shutil

    if shutil.which("script") is None:
        pytest.skip("needs script(1) from util-linux for a pseudo-terminal")
    argv = [sys.executable, "-m", "graphbuild", "exec", "-q", "--cache-dir", str(example.cache), "-C",
            str(example.root), PROD, "--", "sh", "-c", "tty; test -t 0 && test -t 1 && echo both-terminals"]
    proc = subprocess.run(["script", "-qec", shlex.join(argv), "/dev/null"], capture_output=True, text=True,
                          timeout=900, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "/dev/pts/" in proc.stdout and "both-terminals" in proc.stdout
    # without a terminal: none in the container either
    code, out, _ = _process(example, "-q", PROD, "--", "sh", "-c", "tty || true")
    assert code == 0 and "not a tty" in out


def test_resources_reach_the_exec_container_read_back_from_the_engine(example):
    from graphbuild.rules.oci.docker_engine import docker_client
    from graphbuild.rules.python.workload import EXEC_LABEL

    example.write("envs/BUILD.envs", (example.root / "envs/BUILD.envs").read_text() + """
environment(
    name = "limited",
    fork = ":prod",
    resources = {"cpus": 1.5, "memory": "300m", "pids": 100},
)
""")
    assert example.gb("lock", "//envs:limited").exit_code == 0
    proc = _exec_process(example, "-q", "//envs:limited", "--", "sleep", "120")
    client = docker_client()
    try:
        found = []
        deadline = time.monotonic() + 600
        while not found and time.monotonic() < deadline and proc.poll() is None:
            found = client.containers.list(filters={"label": f"{EXEC_LABEL}=//envs:limited"})
            time.sleep(0.5)
        assert found, proc.communicate()
        host = found[0].attrs["HostConfig"]
        assert host["NanoCpus"] == 1_500_000_000
        assert host["Memory"] == 300 << 20 and host["MemorySwap"] == 300 << 20
        assert host["PidsLimit"] == 100
        assert host["ReadonlyRootfs"] is False and host["CapDrop"] == ["ALL"]
        assert host["NetworkMode"] == "none"
        assert any(m["Destination"] == "/work" and not m["RW"] for m in found[0].attrs["Mounts"])
        found[0].kill()
    finally:
        proc.kill()
        proc.communicate()


# -- try ------------------------------------------------------------------------------------------


def test_try_upgrade_names_the_regressing_library_exits_1_and_never_touches_the_lock(example):
    before = (example.root / LOCK).read_bytes()
    image_before = {n["id"]: n["key"] for n in example.gb("build", PROD, "--json").json["nodes"]}[f"{PROD}#image"]
    result = example.gb("try", PROD, "--upgrade", "tomli", "--json")
    assert result.exit_code == 1, result.stderr[-3000:]
    report = result.json
    assert report["regressions"] == [LEGACYCONF]
    assert report["moved"]["tomli"]["before"] == "1.2.3"
    assert report["moved"]["tomli"]["now"].startswith("2.")
    assert set(report["moved"]) == {"tomli"}  # nothing else moved
    legacy = report["libraries"][LEGACYCONF]
    assert (legacy["before"], legacy["now"]) == ("pass", "fail")
    assert any("test_reads_the_job_table" in t for t in legacy["failing"])
    assert all(e["now"] == "pass" for lab, e in report["libraries"].items() if lab != LEGACYCONF)
    assert (example.root / LOCK).read_bytes() == before
    assert (example.root / CANDIDATE_LOCK).is_file()
    # the candidate's lock left beside prod's takes no part in prod's layer plan
    again = example.gb("build", PROD, "--json")
    assert {n["id"]: n["key"] for n in again.json["nodes"]}[f"{PROD}#image"] == image_before
    assert again.ran() == set()
    # every package but tomli is installed by prod's own nodes: same keys
    keys = {n["id"]: n["key"] for n in report["nodes"]}
    packages = [nid.split("#", 1)[1] for nid in keys if nid.startswith(f"{PROD}#pkg.")]
    assert "pkg.tomli" in packages and len(packages) > 3
    for node in [*packages, "layer.venv"]:
        same = keys[f"{PROD}.candidate#{node}"] == keys[f"{PROD}#{node}"]
        assert same == (node != "pkg.tomli"), node
    # as text, and --adopt refuses a candidate that regressed
    again = example.gb("try", PROD, "--upgrade", "tomli", "--adopt")
    assert again.exit_code == 1
    assert "//libs/legacyconf  pass -> fail  REGRESSED" in again.stdout
    assert "tomli  1.2.3 -> 2." in again.stdout
    assert "not adopted" in again.stdout
    assert (example.root / LOCK).read_bytes() == before
    assert "ran" not in {n["status"] for n in example.gb("try", PROD, "--upgrade", "tomli", "--json").json["nodes"]
                         if "#test." in n["id"]}  # nothing changed: every test result reused


def test_a_declared_fork_builds_and_tests_sharing_every_layer_it_does_not_change(example):
    example.write("envs/BUILD.envs", (example.root / "envs/BUILD.envs").read_text() + """
environment(
    name = "prod-next",
    fork = ":prod",
    upgrade = ["tomli"],
)
""")
    assert example.gb("lock", "//envs:prod-next").exit_code == 0
    result = example.gb("test", PROD, "//envs:prod-next", "--json")
    assert result.exit_code == 1  # legacyconf fails with tomli 2, in prod-next only
    nodes = {n["id"]: n for n in result.json["nodes"]}
    failed = {nid for nid, n in nodes.items() if n["status"] == "failed"}
    assert failed == {"//envs:prod-next#test.legacyconf"}
    shared = [name.split("#", 1)[1] for name in nodes
              if name.startswith((f"{PROD}#layer.", f"{PROD}#pkg.", f"{PROD}#lib."))]
    changed = [name for name in shared if nodes[f"{PROD}#{name}"]["key"] != nodes[f"//envs:prod-next#{name}"]["key"]]
    assert changed == ["pkg.tomli"]  # the one package the fork moves; every other node is prod's
    assert {"layer.venv", "lib.textstats"} <= set(shared)
    assert not any(nid.startswith("//envs:prod-next#push") for nid in nodes)  # push is never inherited
    assert nodes["//envs:prod-next#test.textstats"]["key"] == nodes[f"{PROD}#test.textstats"]["key"]


def test_the_upgrades_pipeline_validates_and_runs_under_gitlab_ci_local(example, tmp_path):
    import shutil

    import yaml
    from test_ci_gitlab import GRAPHBUILD, git, validate

    runner = shutil.which("gitlab-ci-local")
    if runner is None:
        pytest.skip("gitlab-ci-local is not installed (scripts/setup.sh installs it)")
    generated = example.gb("ci", "gitlab", "--upgrades", PROD, "//envs:dev", "--graphbuild", str(GRAPHBUILD))
    assert generated.exit_code == 0, generated.stderr
    validate(tmp_path, generated.stdout)
    document = yaml.safe_load(generated.stdout)
    # prod has a newer tomli its spec allows; dev has nothing newer: no job for it
    assert [name for name in document if name.startswith("upgrade:")] == ["upgrade:envs_prod"]
    job = document["upgrade:envs_prod"]
    assert job["artifacts"] == {"when": "always", "paths": ["reports/"], "expire_in": "30 days"}
    assert "tomli 1.2.3 -> 2." in job["script"][0]
    assert (example.root / LOCK).read_text().count('name = "tomli"\nversion = "1.2.3"') == 1  # untouched
    (example.root / ".gitlab-ci.yml").write_text(generated.stdout)
    (example.root / ".gitignore").write_text("graphbuild-out/\nreports/\n.gitlab-ci-local/\n.bases/\n.repos/\n")
    git(example.root, "init", "-q", "-b", "main")
    git(example.root, "add", "-A")
    git(example.root, "commit", "-q", "-m", "example")
    env = {name: value for name, value in os.environ.items() if not name.startswith(("GRAPHBUILD_CACHE", "CI_"))}
    proc = subprocess.run([runner, "--shell-isolation=false", "--no-color", "--variable",
                           f"GRAPHBUILD_CACHE_DIR={example.cache}"], cwd=example.root, capture_output=True, text=True,
                          timeout=900, env={**env, "HOME": str(tmp_path / "home")})
    log = proc.stdout + proc.stderr
    assert proc.returncode != 0 and "FAIL  upgrade:envs_prod" in log, log  # legacyconf regressed: the job fails
    report = json.loads((example.root / "reports/try-envs_prod.json").read_text())  # and its report is kept
    assert report["regressions"] == [LEGACYCONF] and report["all"] is True
    assert "REGRESSED: //libs/legacyconf" in (example.root / "reports/try-envs_prod.txt").read_text()


@pytest.mark.parametrize("args, expected", [
    (["exec", PROD], "no command to run"),
    (["exec", "//envs:nope", "--", "true"], "no target 'nope'"),
    (["exec", "//envs:core", "--", "true"], "is not an environment with a base image"),
    (["exec", "-e", "1X=2", PROD, "--", "true"], "expected NAME=VALUE"),
    (["try", "//envs:nope", "--upgrade", "numpy"], "no target 'nope'"),
    (["try", PROD, "--upgrade", "numpy>>1"], "invalid requirement 'numpy>>1'"),
    (["try", PROD, "--upgrade", "notapackage"], "//envs:prod has no package notapackage"),
    (["try", PROD, "--upgrade", "jobconfig"], "is a library of //envs:prod"),
    (["try", PROD], "try needs --upgrade PKG (repeatable) or --all"),
])
def test_bad_input_is_a_clear_error_with_exit_2(example, args, expected):
    result = example.gb(*args)
    assert result.exit_code == 2, (result.stdout, result.stderr)
    assert expected in result.stderr
    assert "Traceback" not in result.stderr


def test_try_adopt_writes_a_clean_candidate_as_the_lock(example):
    result = example.gb("try", PROD, "--upgrade", "requests<2.33", "--adopt", "--json")
    assert result.exit_code == 0, result.stderr[-3000:]
    assert result.json["adopted"] and result.json["regressions"] == []
    now = result.json["moved"]["requests"]["now"]
    assert now.startswith("2.32.")
    text = (example.root / LOCK).read_text()
    assert f'name = "requests"\nversion = "{now}"' in text and "fork" not in text
    assert example.gb("build", PROD).exit_code == 0  # a lock of prod's own spec, not stale


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q"]))
