"""What images and in-image tests are keyed on, end to end on the real engine and registry.

- a test's key holds what reaches the test process (the image's env...), so a warm run fails
  exactly like a cold one;
- a test is keyed on the wheel it tests, not only on the sources that wheel came from;
- a library layer is keyed on its wheel's content, not on the target's name;
- image labels carry nothing the image's content does not determine (no lock digest);
- a layer that would overwrite another layer's file is refused.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from docker_env import BASE, PYPROJECT, image_digest, image_tags, link_base, nodes, ok, unique_repository

from graphbuild.cache.actions import ActionCache

if TYPE_CHECKING:
    from conftest import TestWorkspace


@pytest.fixture
def services(registry: str) -> None:
    """The engine, the registry and the base tarball (conftest's `registry` starts them)."""


docker = pytest.mark.usefixtures("services")

A = "//envs:a"

ONE_ENV = BASE + """
py_layer(name = "core", requirements = ["six==1.16.0"])

environment(
    name = "a",
    base = ":base",
    layers = [":core"],
    libraries = ["//libs/{lib}"],
    push = "{prefix}/a:v1",
    test_runner = [{runner}],{extra}
)
"""


def one_env(ws: TestWorkspace, lib: str, prefix: str = "unpushed", *, runner: str = '"pytest==8.3.4"',
            extra: str = "") -> None:
    link_base(ws)
    ws.write("envs/BUILD.envs", ONE_ENV.format(lib=lib, prefix=prefix, runner=runner, extra=extra))


def library(ws: TestWorkspace, name: str, files: dict[str, str], *, pyproject: str | None = None) -> None:
    ws.write(f"libs/{name}/BUILD.envs", f'py_library(name = "{name}")\n')
    ws.write(f"libs/{name}/pyproject.toml", pyproject or PYPROJECT.format(name=name, deps=""))
    for path, text in files.items():
        ws.write(f"libs/{name}/{path}", text)


# 1. the image's env reaches the tests: it is in their key


@pytest.mark.docker
@pytest.mark.network
@docker
def test_an_env_var_of_the_image_reruns_the_tests_and_a_warm_run_fails_like_a_cold_one(ws, tmp_path):
    prefix = unique_repository()
    library(ws, "mylib", {"mylib/__init__.py": "VALUE = 1\n",
                          "tests/test_mylib.py": "import mylib\n\n\ndef test_value():\n    assert mylib.VALUE == 1\n"})
    one_env(ws, "mylib", prefix)
    ok(ws.gb("lock", A))
    first = nodes(ok(ws.gb("run", A, "--json")))
    assert first[f"{A}#test.mylib"]["status"] == "ran"
    assert first[f"{A}#push"]["status"] == "ran"

    # PYTEST_ADDOPTS reaches pytest in the container: the warm run must not reuse the pass
    one_env(ws, "mylib", prefix, extra='\n    env = {"PYTEST_ADDOPTS": "--no-such-flag"},')
    warm = ws.gb("run", A, "--json")
    assert warm.exit_code == 1, warm.stderr
    test = nodes(warm)[f"{A}#test.mylib"]
    assert (test["status"], test["detail"]) == ("failed", None), test
    assert "pytest usage error" in test["message"]
    assert nodes(warm)[f"{A}#push"]["status"] == "skipped"
    why = ok(ws.gb("why", A, "--node", f"{A}#test.mylib", "--json")).json
    changed = [c for n in why["nodes"] for c in n.get("changes", []) if n["id"] == f"{A}#test.mylib"]
    assert [c["input"] for c in changed] == ["runtime"], changed
    assert changed[0]["location"].startswith("envs/BUILD.envs:")

    from conftest import TestWorkspace

    cold = TestWorkspace(ws.root, tmp_path / "cold-cache").gb("run", A, "--json")
    assert cold.exit_code == 1
    assert nodes(cold)[f"{A}#test.mylib"]["message"] == test["message"]
    assert image_tags(f"{prefix}/a") == ["v1"]

    # the image's default command is replaced by the test command: it does not reach the test
    one_env(ws, "mylib", prefix, extra='\n    cmd = ["python", "-V"],')
    again = nodes(ok(ws.gb("run", A, "--json")))
    assert again[f"{A}#image"]["status"] == "ran"
    assert again[f"{A}#test.mylib"]["status"] == "cached"
    assert image_digest(f"{prefix}/a", "v1") == again[f"{A}#push"]["metadata"]["digest"]


# 2. the test is keyed on the wheel that was installed, not only on the sources


STAMPED_SETUP = """
import os

from setuptools import setup

# what the wheel holds depends on more than the library's files (here: the build's environment)
with open("src/stamped/_flavour.py", "w") as handle:
    handle.write(f"FLAVOUR = {os.environ.get('GB_TEST_FLAVOUR', 'good')!r}\\n")
setup()
"""


@pytest.mark.docker
@pytest.mark.network
@docker
def test_a_test_reruns_when_its_wheel_changes_though_its_sources_did_not(ws, monkeypatch):
    pyproject = PYPROJECT.format(name="stamped", deps="").replace("[tool.setuptools]",
                                                                  '[tool.setuptools]\npackage-dir = {"" = "src"}')
    library(ws, "stamped", {
        "setup.py": STAMPED_SETUP, "src/stamped/__init__.py": "",
        "tests/test_stamped.py": "from stamped._flavour import FLAVOUR\n\n\n"
                                 "def test_flavour():\n    assert FLAVOUR == 'good'\n"}, pyproject=pyproject)
    one_env(ws, "stamped")
    ok(ws.gb("lock", A))
    first = nodes(ok(ws.gb("test", A, "--json")))
    assert first[f"{A}#test.stamped"]["status"] == "ran"
    wheel = first["//libs/stamped:stamped#wheel"]

    # the wheel node's stored result goes (a forged or lost record); rebuilt, the wheel differs
    monkeypatch.setenv("GB_TEST_FLAVOUR", "bad")
    actions = ActionCache(ws.cache / "actions")
    actions.delete(wheel["key"])
    actions.close()
    second = ws.gb("test", A, "--json")
    assert second.exit_code == 1, second.stderr
    found = nodes(second)
    assert found["//libs/stamped:stamped#wheel"]["status"] == "ran"
    assert found["//libs/stamped:stamped#wheel"]["outputs"]["wheel"] != wheel["outputs"]["wheel"]
    test = found[f"{A}#test.stamped"]
    assert (test["status"], test["detail"]) == ("failed", None), test
    assert "test_flavour" in test["message"]


# 3. one wheel, one library layer, whatever the targets are called


def git(*args: str, cwd: Path) -> str:
    env = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.invalid", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@example.invalid", "PATH": "/usr/bin:/bin", "HOME": str(cwd)}
    return subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True, text=True).stdout


@pytest.mark.network
def test_two_git_library_targets_at_one_commit_share_their_layer(ws, tmp_path):
    repo = tmp_path / "repo"
    (repo / "sharedlib").mkdir(parents=True)
    (repo / "pyproject.toml").write_text(PYPROJECT.format(name="sharedlib", deps=""))
    (repo / "sharedlib/__init__.py").write_text("VALUE = 1\n")
    git("init", "-q", "-b", "main", cwd=repo)
    git("add", "-A", cwd=repo)
    git("commit", "-q", "-m", "one", cwd=repo)
    ws.write("envs/BUILD.envs", f"""
        py_layer(name = "core", requirements = ["six==1.16.0"])
        git_library(name = "alpha", url = "{repo.as_uri()}", branch = "main")
        git_library(name = "beta", url = "{repo.as_uri()}", branch = "main")
        environment(name = "a", layers = [":core"], libraries = [":alpha"])
        environment(name = "b", layers = [":core"], libraries = [":beta"])
    """)
    ok(ws.gb("lock", "//envs/..."))
    first = nodes(ok(ws.gb("build", "//envs:a", "--json")))
    assert first["//envs:a#lib.alpha"]["status"] == "ran"
    second = nodes(ok(ws.gb("build", "//envs:b", "--json")))
    layer = second["//envs:b#lib.beta"]
    assert layer["status"] == "cached"
    assert layer["cached_from"] == "//envs:a#lib.alpha"
    assert layer["outputs"]["layer.tar"] == first["//envs:a#lib.alpha"]["outputs"]["layer.tar"]


# 4. labels carry only what the content determines: a relock that changes nothing keeps the digest


@pytest.mark.docker
@pytest.mark.network
@docker
def test_a_relock_that_changes_nothing_in_the_image_keeps_its_digest(ws):
    library(ws, "mylib", {"mylib/__init__.py": "", "tests/test_mylib.py": "def test_ok():\n    pass\n"})
    one_env(ws, "mylib")
    ok(ws.gb("lock", A))
    first = nodes(ok(ws.gb("test", A, "--json")))
    lock = (ws.root / "envs/pylock.a.toml").read_bytes()

    one_env(ws, "mylib", runner='"pytest >= 8.3.4, == 8.3.4"')  # another spelling, the same resolution
    ok(ws.gb("lock", A))
    assert (ws.root / "envs/pylock.a.toml").read_bytes() != lock
    second = nodes(ok(ws.gb("test", A, "--json")))
    for node in (f"{A}#image", f"{A}#image.test", f"{A}#test.mylib"):
        assert second[node]["status"] == "cached", (node, second[node])
    assert second[f"{A}#image"]["metadata"]["digest"] == first[f"{A}#image"]["metadata"]["digest"]

    config = json.loads((ws.cache / "blobs" / "sha256" / second[f"{A}#image"]["outputs"]["config.json"]).read_text())
    assert set(config["config"]["Labels"]) == {"org.graphbuild.target", "org.graphbuild.layers",
                                               "org.opencontainers.image.title"}


# 5. layers that overwrite each other's files are refused


@pytest.mark.docker
@pytest.mark.network
@docker
def test_a_layer_overwriting_another_layers_file_is_refused_naming_both_and_the_path(ws):
    pyproject = PYPROJECT.format(name="fakesix", deps="").replace('packages = ["fakesix"]', 'py-modules = ["six"]')
    library(ws, "fakesix", {"six.py": "FAKE = True\n", "tests/test_fake.py": "def test_ok():\n    pass\n"},
            pyproject=pyproject)
    one_env(ws, "fakesix")
    ok(ws.gb("lock", A))
    result = ws.gb("build", A, "--json")
    assert result.exit_code == 1, result.stderr
    image = nodes(result)[f"{A}#image"]
    assert image["status"] == "failed"
    assert ("layer lib.fakesix overwrites /opt/env/lib/python3.11/site-packages/six.py "
            "(a file of layer pkg.six)") in image["message"]
    assert "Traceback" not in result.stderr + result.stdout
    text = ws.gb("build", A)
    assert text.exit_code == 1
    assert "six.py" in text.stderr and "pkg.six" in text.stderr


def _listing(tmp_path: Path, name: str, entries: list) -> tuple[str, Path]:
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps({"entries": entries}))
    return name, path


def test_identical_files_and_shared_directories_are_no_conflict_but_anything_else_is(tmp_path):
    from graphbuild.api import ActionFailed
    from graphbuild.rules.oci.image import check_overlaps

    lower = _listing(tmp_path, "layer.core", [["d", "opt", None], ["d", "opt/ns", None],
                                              ["f", "opt/ns/__init__.py", "aa 644"], ["l", "opt/link", "x"]])
    same = _listing(tmp_path, "layer.more", [["d", "opt", None], ["d", "opt/ns", None],
                                             ["f", "opt/ns/__init__.py", "aa 644"], ["l", "opt/link", "x"]])
    check_overlaps([lower, same])
    for entries, what in (([["f", "opt/ns/__init__.py", "bb 644"]], "a file"),
                          ([["f", "opt/ns/__init__.py", "aa 755"]], "a file"),
                          ([["f", "opt/ns", "cc 644"]], "a directory"),
                          ([["d", "opt/link", None]], "a symlink"),
                          ([["l", "opt/link", "y"]], "a symlink")):
        other = _listing(tmp_path, "lib.x", entries)
        with pytest.raises(ActionFailed) as err:
            check_overlaps([lower, other])
        assert f"({what} of layer layer.core)" in err.value.message
        assert err.value.message.count("layer lib.x overwrites /opt/") == 1
        assert err.value.deterministic
