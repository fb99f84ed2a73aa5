"""Locks other tools can use: `uv pip install -r envs/pylock.ENV.toml` installs exactly what the
image ships (its layers' pins, the in-repo libraries, the git libraries at their commits), the
test runner's packages only with `--group test`; packaging's PEP 751 reader agrees."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
import uuid
from pathlib import Path

import pytest
from docker_env import REPO_ROOT, copy_example, ok, registry
from packaging.pylock import Pylock
from packaging.utils import canonicalize_name

from graphbuild.rules.python import lockfile
from graphbuild.rules.python.uv import uv_bin

EXAMPLES = ["dev", "ml", "prod", "research"]
#: what the image's own Python reports: every distribution, canonical name and version
LIST_DISTRIBUTIONS = ("import importlib.metadata as m, json; "
                      "print(json.dumps(sorted((d.metadata['Name'], d.version) for d in m.distributions())))")


def _shipped_by_spec(lock: dict) -> set[str]:
    """What [tool.graphbuild] says the image holds: every layer but the test runner's, and the libraries."""
    tool = lock["tool"]["graphbuild"]
    names = {n for layer in tool["layers"] if layer["label"] != lockfile.TEST_RUNNER_GROUP for n in layer["packages"]}
    return names | {lib["name"] for lib in tool["libraries"]}


@pytest.mark.parametrize("env", EXAMPLES)
def test_packagings_reader_selects_the_images_set_and_the_test_group_adds_the_runner(env):
    data = tomllib.loads((REPO_ROOT / f"envs/pylock.{env}.toml").read_text())
    lock = Pylock.from_dict(data)  # valid PEP 751 (raises otherwise)
    environment = {"python_full_version": "3.11.2", "python_version": "3.11", "sys_platform": "linux",
                   "platform_machine": "x86_64", "implementation_name": "cpython",
                   "platform_python_implementation": "CPython", "os_name": "posix"}

    def selected(groups: frozenset[str]) -> set[str]:  # as an installer evaluates the markers (PEP 751)
        marker_env = {**environment, "extras": frozenset(), "dependency_groups": groups}
        return {p.name for p in lock.packages if p.marker is None or p.marker.evaluate(marker_env)}

    default = selected(frozenset(lock.default_groups or []))
    with_tests = selected(frozenset({"test"}))
    runner = {n for layer in data["tool"]["graphbuild"]["layers"] if layer["label"] == lockfile.TEST_RUNNER_GROUP
              for n in layer["packages"]}
    assert default == _shipped_by_spec(data)
    assert with_tests == default | runner
    if env != "dev":  # dev ships pytest in a layer of its own: nothing is left for the runner
        assert "pytest" in runner and "pytest" not in default
    libraries = {p.name: p for p in lock.packages if p.vcs or p.directory}
    assert {"textstats", "featurize"} <= set(libraries)
    assert libraries["textstats"].directory.path == "../libs/textstats"
    if env == "research":
        vcs = libraries["research-tools"].vcs
        assert vcs.type == "git" and vcs.path == "../.repos/research-lib.git" and vcs.url is None
        assert len(vcs.commit_id) == 40 and vcs.requested_revision == "main"


def test_a_lock_that_breaks_the_standard_is_named_with_its_entry(tmp_path):
    text = (REPO_ROOT / "envs/pylock.prod.toml").read_text()
    broken = text.replace('name = "idna"', 'name = "IDNA"', 1)
    with pytest.raises(lockfile.LockInvalid) as err:
        lockfile.parse(broken)
    problem = err.value.problems[0]
    assert "not a valid PEP 751 lock: Name 'IDNA' is not normalized" in problem.message
    assert broken.splitlines()[problem.line - 1] == 'name = "IDNA"'
    bad_marker = text.replace("marker = \"'test' in dependency_groups\"", "marker = \"'test' in\"", 1)
    with pytest.raises(lockfile.LockInvalid, match="not a valid PEP 751 lock: Expected a marker"):
        lockfile.parse(bad_marker)


def _venv_distributions(root: Path, lock: Path, *extra: str) -> set[tuple[str, str]]:
    venv = root / f"venv-{uuid.uuid4().hex[:8]}"
    env = {k: v for k, v in os.environ.items() if k != "VIRTUAL_ENV"}
    subprocess.run([uv_bin(), "venv", "-q", "--python", sys.executable, str(venv)], check=True, env=env)
    python = venv / "bin/python"
    proc = subprocess.run([uv_bin(), "pip", "install", "-q", "--python", str(python), "-r", str(lock), *extra],
                          cwd=lock.parent, capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr
    # (from the venv's directory: `-c` puts the working directory on sys.path, and a checkout's
    # egg-info there would be listed too)
    out = subprocess.run([str(python), "-c", LIST_DISTRIBUTIONS], cwd=venv, check=True, capture_output=True,
                         text=True).stdout
    return {(canonicalize_name(name), version) for name, version in json.loads(out)}


@pytest.mark.docker
@pytest.mark.network
def test_uv_installs_from_every_example_lock_exactly_what_its_image_ships(tmp_path):
    import docker

    root = tmp_path / "example"
    copy_example(root)
    prefix = f"gblock-{uuid.uuid4().hex[:10]}"
    build = root / "envs/BUILD.envs"
    build.write_text(build.read_text().replace('"graphbuild-examples/', f'"{prefix}/'))
    from conftest import TestWorkspace

    ws = TestWorkspace(root, tmp_path / "cache")
    ok(ws.gb("run", "//envs/..."))  # builds, tests in the images, pushes

    client = docker.from_env()
    for env in EXAMPLES:
        lock_path = root / f"envs/pylock.{env}.toml"
        data = tomllib.loads(lock_path.read_text())
        ref = f"{registry()}/{prefix}/{env}:latest"
        client.images.pull(ref)
        try:
            output = client.containers.run(ref, ["python", "-c", LIST_DISTRIBUTIONS], network_mode="none",
                                           remove=True)
        finally:
            client.images.remove(ref)  # the tag only
        in_image = {(canonicalize_name(name), version) for name, version in json.loads(output)}
        installed = _venv_distributions(tmp_path, lock_path)
        assert installed == in_image, (env, installed ^ in_image)
        assert {name for name, _ in in_image} == _shipped_by_spec(data)
        runner = {n for layer in data["tool"]["graphbuild"]["layers"]
                  if layer["label"] == lockfile.TEST_RUNNER_GROUP for n in layer["packages"]}
        with_tests = _venv_distributions(tmp_path, lock_path, "--group", "test")
        assert {name for name, _ in with_tests} == {name for name, _ in in_image} | runner
