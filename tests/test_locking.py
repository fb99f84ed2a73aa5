"""Locks: what is keyed (never a line number, never the order of a set), what a lock must hold
(one version per distribution), how it is checked when read, and git libraries whose version
comes from their tags.

The tests on the example workspace copy its `envs/` and `libs/` with the committed locks and
need no network: analysis, `affected` and lock validation read files only.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tarfile
import textwrap
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from graphbuild.rules.python import lockfile

if TYPE_CHECKING:
    from conftest import Result, TestWorkspace

REPO_ROOT = Path(__file__).resolve().parents[1]
PY = f"{sys.version_info[0]}.{sys.version_info[1]}"
ENVS = ["//envs:dev", "//envs:ml", "//envs:prod", "//envs:research"]


def git(*args: str, cwd: Path) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@example.com", "GIT_CONFIG_NOSYSTEM": "1"}
    return subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True, text=True).stdout


def ok(result: Result) -> Result:
    assert result.exit_code == 0, result.stderr + result.stdout
    return result


@pytest.fixture
def example(ws: TestWorkspace) -> TestWorkspace:
    """The example workspace with its committed locks, as a git repository (the base image a
    stand-in tarball: these tests never build it)."""
    shutil.copy2(REPO_ROOT / "graphbuild.toml", ws.root / "graphbuild.toml")
    ignore = shutil.ignore_patterns("__pycache__", "graphbuild-out", "*.egg-info")
    for name in ("envs", "libs"):
        shutil.copytree(REPO_ROOT / name, ws.root / name, ignore=ignore)
    (ws.root / ".bases").mkdir()
    with tarfile.open(ws.root / ".bases/debian-bookworm-python3.tar", "w"):
        pass
    git("init", "-q", "-b", "main", cwd=ws.root)
    git("add", "-A", "-f", cwd=ws.root)
    git("commit", "-q", "-m", "example", cwd=ws.root)
    return ws


def affected(ws: TestWorkspace) -> dict:
    return ok(ws.gb("affected", "--since", "HEAD", "//...", "--nodes", "--json")).json


def edit(ws: TestWorkspace, rel: str, old: str, new: str) -> None:
    path = ws.root / rel
    text = path.read_text()
    assert text.count(old) == 1, (rel, old)
    path.write_text(text.replace(old, new))


# 1. locations are never keyed


def analysed(ws: TestWorkspace, pattern: str = "//envs/..."):
    """The analysis of `pattern` and every node's static fingerprint (its key, with the
    fingerprints of its dependencies standing in for their outputs)."""
    import argparse

    from graphbuild.analysis.fingerprint import fingerprints
    from graphbuild.operations.session import Session

    session = Session(argparse.Namespace(workspace=str(ws.root), cache_dir=str(ws.cache)))
    try:
        analysis = session.analyze(session.labels([pattern]))
        return analysis, fingerprints(analysis)
    finally:
        session.close()


def test_comment_and_blank_lines_anywhere_in_build_envs_affect_nothing(example):
    _, before = analysed(example)
    edit(example, "envs/BUILD.envs", "base_image(", "# a comment at the top moves every line\n\nbase_image(")
    edit(example, "envs/BUILD.envs", "\npy_layer(\n    name = \"devtools\"",
         "\n\n# between targets\n\npy_layer(\n    name = \"devtools\"")
    edit(example, "envs/BUILD.envs", '        "requests>=2.31",\n',
         '        # inside a requirement list\n\n        "requests>=2.31",\n')
    edit(example, "envs/BUILD.envs", '    libraries = ["//libs/textstats", "//libs/featurize", ":research_tools"],',
         '\n    libraries = ["//libs/textstats", "//libs/featurize", ":research_tools"],  # why')
    assert affected(example) == {"command": "affected", "since": "HEAD", "targets": [], "nodes": [], "warnings": [],
                                "exit_code": 0}
    analysis, after = analysed(example)
    # every node, the lock nodes included (affected looks at them too), has the same key
    assert after == before
    # and the lines did move: messages and `why` still get the new ones
    lock = analysis.nodes["//envs:prod#lock"]
    assert lock.unkeyed["where"]["//envs:core|requests>=2.31"].startswith("envs/BUILD.envs:")
    assert lock.unkeyed["where"]["//envs:core|requests>=2.31"] != "envs/BUILD.envs:16"


def test_no_node_of_the_example_keys_a_location(example):
    """Every keyed input of every node of the built-in rules, searched for what a location
    looks like (Located values are fine: only their value is keyed)."""
    from graphbuild.nodes import Located

    def keyed(value):
        if isinstance(value, Located):
            return keyed(value.value)
        if isinstance(value, dict):
            return {k: keyed(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [keyed(v) for v in value]
        return value

    analysis, _ = analysed(example, "//...")
    location = re.compile(r"(BUILD\.envs|\.envs|\.toml):\d+")
    assert len(analysis.nodes) > 30
    for node in analysis.nodes.values():
        text = repr({name: keyed(value) for name, value in node.inputs.items()})
        assert not location.search(text), (node.id, location.search(text))


# 2. a requirement set is a set; the layer stack is an order


def test_reordered_requirements_and_libraries_keep_the_lock_fresh_and_affect_nothing(example):
    core = '        "numpy>=2.0,<2.3",\n        "requests>=2.31",\n        "pydantic>=2.7",\n'
    edit(example, "envs/BUILD.envs", core, "".join(sorted(core.splitlines(keepends=True), reverse=True)))
    edit(example, "envs/BUILD.envs", '        "pytest>=8",\n        "coverage>=7.4",\n',
         '        "coverage>=7.4",\n        "pytest>=8",\n')
    edit(example, "envs/BUILD.envs", 'libraries = ["//libs/textstats", "//libs/featurize", ":research_tools"]',
         'libraries = [":research_tools", "//libs/featurize", "//libs/textstats"]')
    edit(example, "libs/featurize/pyproject.toml", 'dependencies = ["numpy>=2.0", "textstats"]',
         'dependencies = ["textstats", "numpy>=2.0"]')
    ok(example.gb("graph", "//envs/...", "--format", "json"))  # the committed locks are fresh
    found = affected(example)
    # a library's pyproject is one of its files: its own nodes rerun, nothing of the locks does
    assert not [n for n in found["nodes"] if n.endswith("#lock") or "#layer." in n], found["nodes"]


def test_normalised_spec_orders_sets_and_keeps_the_stack():
    spec = {"python": "3.11", "platform": "p", "test_runner": ["pytest>=8", "hypothesis"],
            "layers": [{"label": "//e:core", "requirements": ["requests", "Numpy>=2", "attrs"]},
                       {"label": "//e:top", "requirements": ["b", "a"]}],
            "libraries": [{"label": "//l:z", "name": "z", "requirements": ["y", "x"]},
                          {"label": "//l:a", "name": "a", "requirements": []}]}
    normal = lockfile.normalise_spec(spec)
    assert [layer["label"] for layer in normal["layers"]] == ["//e:core", "//e:top"]
    assert normal["layers"][0]["requirements"] == ["attrs", "Numpy>=2", "requests"]
    assert [lib["label"] for lib in normal["libraries"]] == ["//l:a", "//l:z"]
    assert normal["test_runner"] == ["hypothesis", "pytest>=8"]
    shuffled = {**spec, "layers": [{**spec["layers"][0], "requirements": ["attrs", "requests", "Numpy>=2"]},
                                   spec["layers"][1]], "libraries": spec["libraries"][::-1]}
    assert lockfile.normalise_spec(shuffled) == normal
    assert lockfile.spec_changes(spec, shuffled, {}) == []


def test_spec_changes_name_a_changed_stack_order_and_each_kind_of_change():
    base = {"python": "3.11", "platform": "p", "test_runner": ["pytest>=8"],
            "layers": [{"label": "//e:core", "requirements": ["six"]}, {"label": "//e:a", "requirements": ["idna"]},
                       {"label": "//e:b", "requirements": ["attrs"]}],
            "libraries": [{"label": "//l:x", "name": "x", "requirements": [],
                           "git": {"url": "u", "ref_kind": "branch", "ref": "main", "subdir": ""}}]}
    swapped = {**base, "layers": [base["layers"][0], base["layers"][2], base["layers"][1]]}
    assert lockfile.spec_changes(base, swapped, {}) == [
        "the layer stack changed order (bottom first): //e:core, //e:a, //e:b -> //e:core, //e:b, //e:a"]
    runner = {**base, "test_runner": ["pytest>=9"]}
    assert lockfile.spec_changes(base, runner, {"testrunner|pytest>=9": "envs/BUILD.envs:7"}) == [
        "test_runner: requirement 'pytest>=9' added (envs/BUILD.envs:7)",
        "test_runner: requirement 'pytest>=8' removed"]
    branch = {**base, "libraries": [{**base["libraries"][0], "git": {**base["libraries"][0]["git"], "ref": "fork"}}]}
    (change,) = lockfile.spec_changes(base, branch, {"//l:x": "envs/BUILD.envs:3"})
    assert change.startswith("library //l:x: git ") and "ref=main" in change and "ref=fork" in change
    assert change.endswith("(envs/BUILD.envs:3)")


# 3. a lock is checked when read: each way of breaking one, with the file, the entry, the line


def _corrupt(text: str, case: str) -> tuple[str, str, str]:
    """The example's prod lock broken one way, what the error must say, and what is on the
    line it must name."""
    packages, tool = text.split("[tool.graphbuild]", 1)
    tool = "[tool.graphbuild]" + tool
    if case == "version-against-wheel":
        return text.replace('name = "idna"\nversion = "3.20"', 'name = "idna"\nversion = "3.19"', 1), \
            "package idna: version 3.19 but its wheel idna-3.20-py3-none-any.whl is version 3.20", "idna-3.20"
    if case == "missing-dependency":
        blocks = re.split(r"(?=^\[\[packages\]\]\n)", packages, flags=re.M)
        kept = [b for b in blocks if not b.startswith('[[packages]]\nname = "idna"\n')]
        assert len(kept) == len(blocks) - 1
        return "".join(kept) + tool, "package requests depends on idna, which the lock does not hold", \
            'name = "requests"'
    if case == "layer-without-package":
        return text.replace('packages = [\n    "annotated-types",', 'packages = [\n    "no-such-package",\n'
                                                                  '    "annotated-types",', 1), \
            "layer //envs:core holds no-such-package, which has no [[packages]] entry", '"no-such-package"'
    if case == "bad-hash":
        sha = re.search(r'sha256 = "([0-9a-f]{64})"', text).group(1)
        return text.replace(sha, sha[:40], 1), "has no valid sha256 hash", sha[:40]
    if case == "tool-table":
        return packages + tool.replace("[tool.graphbuild.spec]\n", "[tool.graphbuild.spec]\npython = 3\n", 1) \
            .replace('python = "3.11"\n', "", 1), "[tool.graphbuild.spec] python must be a string", \
            "[tool.graphbuild.spec]"
    if case == "not-toml":
        return text.replace('name = "idna"', 'name = "idna', 1), "not valid TOML", 'name = "idna'
    if case == "format":
        return text.replace("format = 1", "format = 99", 1), "format is 99", "format = 99"
    raise AssertionError(case)


@pytest.mark.parametrize("case", ["version-against-wheel", "missing-dependency", "layer-without-package", "bad-hash",
                                  "tool-table", "not-toml", "format"])
def test_a_damaged_lock_is_an_error_naming_the_file_the_entry_and_its_line(example, case):
    path = example.root / "envs/pylock.prod.toml"
    broken, expected, on_line = _corrupt(path.read_text(), case)
    path.write_text(broken)
    text = example.gb("build", "//envs:prod")
    assert text.exit_code == 2, text.stderr
    assert "Traceback" not in text.stderr
    assert expected in text.stderr, text.stderr
    assert "graphbuild lock //envs:prod" in text.stderr
    result = example.gb("build", "//envs:prod", "--json")
    assert result.exit_code == 2
    error = result.json["error"]
    path_part, _, line = error["location"].partition(":")
    assert path_part == "envs/pylock.prod.toml"
    assert line.isdigit() and on_line in broken.splitlines()[int(line) - 1], (line, on_line)
    assert "graphbuild lock //envs:prod" in error["hint"]


def test_every_problem_of_a_lock_is_listed_at_once(example):
    path = example.root / "envs/pylock.prod.toml"
    text = _corrupt(path.read_text(), "version-against-wheel")[0]
    text = _corrupt(text, "layer-without-package")[0]
    path.write_text(text)
    result = example.gb("build", "//envs:prod")
    assert result.exit_code == 2
    assert "3 problems" in result.stderr  # the sdist and the wheel of idna, and the layer
    assert "its sdist idna-3.20.tar.gz is version 3.20" in result.stderr
    assert "package idna: version 3.19" in result.stderr and "holds no-such-package" in result.stderr


# 4. the same, end to end: a reordered set reruns nothing; a changed stack is named


LAYERED = f"""
py_layer(
    name = "core",
    requirements = [
        "six==1.16.0",
        "attrs==23.2.0",
    ],
)

py_layer(name = "a", over = [":core"], requirements = ["idna==3.6"])

py_layer(name = "b", over = [":core"], requirements = ["iniconfig==2.0.0"])

environment(name = "prod", layers = [":a", ":b"], python = "{PY}")
"""


@pytest.mark.network
def test_reordering_a_layer_reruns_nothing_and_swapping_the_stack_is_named(ws):
    ws.write("envs/BUILD.envs", LAYERED)
    ok(ws.gb("lock", "//envs:prod"))
    lock = (ws.root / "envs/pylock.prod.toml").read_bytes()
    ok(ws.gb("build", "//envs:prod"))
    ws.write("envs/BUILD.envs", "# moved down\n\n" + LAYERED.replace(
        '        "six==1.16.0",\n        "attrs==23.2.0",\n', '        "attrs==23.2.0",\n\n        "six==1.16.0",\n'))
    rebuilt = ok(ws.gb("build", "//envs:prod", "--json"))
    assert rebuilt.ran() == set()
    assert ok(ws.gb("lock", "//envs:prod", "--json")).json["nodes"][0]["metadata"]["changed"] == {}
    assert (ws.root / "envs/pylock.prod.toml").read_bytes() == lock  # a set in another order: the same lock

    ws.write("envs/BUILD.envs", LAYERED.replace('layers = [":a", ":b"]', 'layers = [":b", ":a"]'))
    stale = ws.gb("build", "//envs:prod")
    assert stale.exit_code == 2
    assert ("the layer stack changed order (bottom first): //envs:core, //envs:a, //envs:b -> "
            "//envs:core, //envs:b, //envs:a") in stale.stderr
    assert "layer order changed" not in stale.stderr
    relocked = ok(ws.gb("build", "--relock", "//envs:prod", "--json"))
    assert {nid.split("#")[1] for nid in relocked.ran()} == {"lock"}  # same packages per layer: nothing rebuilt


# 5. `why`: a target's own previous run, the mode of a file, a changed attribute with its line


def repo_with_branches(path: Path, *branches: str) -> str:
    (path / "research").mkdir(parents=True)
    git("init", "-q", "-b", "main", cwd=path)
    (path / "pyproject.toml").write_text('[build-system]\nrequires = ["setuptools>=68"]\n'
                                         'build-backend = "setuptools.build_meta"\n\n'
                                         '[project]\nname = "research"\nversion = "0.1.0"\n')
    (path / "research/__init__.py").write_text("VALUE = 1\n")
    git("add", "-A", cwd=path)
    git("commit", "-q", "-m", "one", cwd=path)
    for branch in branches:
        git("branch", branch, cwd=path)
    return git("rev-parse", "HEAD", cwd=path).strip()


@pytest.mark.network
def test_why_compares_a_node_with_its_own_previous_run_not_another_targets(ws, tmp_path):
    repo = tmp_path / "repo"
    first = repo_with_branches(repo, "fork")
    ws.write("envs/BUILD.envs", f"""
        git_library(name = "upstream", url = "{repo.as_uri()}", branch = "main")
        git_library(name = "forked", url = "{repo.as_uri()}", branch = "fork")
        environment(name = "a", libraries = [":upstream"], python = "{PY}")
        environment(name = "b", libraries = [":forked"], python = "{PY}")
    """)
    ok(ws.gb("lock", "//envs/..."))
    built = ok(ws.gb("build", "//envs:a", "//envs:b", "--json")).statuses()
    # one wheel, two targets: the same commit has one key
    assert sorted([built["//envs:a#git.upstream"], built["//envs:b#git.forked"]]) == ["cached", "ran"]

    git("checkout", "-q", "fork", cwd=repo)
    (repo / "research/__init__.py").write_text("VALUE = 2\n")
    git("commit", "-q", "-am", "two", cwd=repo)
    second = git("rev-parse", "HEAD", cwd=repo).strip()
    ok(ws.gb("lock", "//envs:b"))
    assert ok(ws.gb("build", "//envs:b", "--json")).statuses()["//envs:b#git.forked"] == "ran"

    why = ok(ws.gb("why", "//envs:b", "--json"))
    node = next(n for n in why.json["nodes"] if n["id"] == "//envs:b#git.forked")
    (change,) = [c for c in node["changes"] if c["input"] == "commit"]
    assert change["old"] == f"branch fork at {first}"
    assert change["new"] == f"branch fork at {second}"
    text = ok(ws.gb("why", "//envs:b")).stdout
    assert f"commit: branch fork at {first} -> branch fork at {second}" in text
    assert "branch main" not in text


def test_why_shows_a_mode_change_and_a_changed_attribute_with_its_line(ws):
    ws.write("pkg/BUILD.envs", """
        genrule(
            name = "gen",
            srcs = ["run.sh"],
            outs = ["out.txt"],
            cmd = "cat $SRCS > $OUT",
            env = {"GREETING": "hello", "LANG": "C.UTF-8"},
        )
    """)
    ws.write("pkg/run.sh", "echo hi\n")
    ok(ws.gb("build", "//pkg:gen"))
    (ws.root / "pkg/run.sh").chmod(0o755)
    edit(ws, "pkg/BUILD.envs", '"GREETING": "hello"', '"GREETING": "bye"')
    edit(ws, "pkg/BUILD.envs", 'cmd = "cat $SRCS > $OUT"', 'cmd = "cat $SRCS $SRCS > $OUT"')
    assert ok(ws.gb("build", "//pkg:gen", "--json")).ran() == {"//pkg:gen#gen"}

    why = ok(ws.gb("why", "//pkg:gen", "--json"))
    changes = {c["input"]: c for c in why.json["nodes"][0]["changes"]}
    mode = changes["srcs[pkg/run.sh]"]
    assert mode["old"] != mode["new"]
    assert mode["old"].endswith("not executable") and mode["new"].endswith(" executable")
    env_line = 6
    assert (ws.root / "pkg/BUILD.envs").read_text().splitlines()[env_line - 1].strip().startswith("env =")
    assert changes["env"]["location"] == f"pkg/BUILD.envs:{env_line}"
    assert changes["cmd"]["location"] == f"pkg/BUILD.envs:{env_line - 1}"
    text = ok(ws.gb("why", "//pkg:gen")).stdout
    assert f'env[GREETING]: "hello" -> "bye"    (pkg/BUILD.envs:{env_line})' in text
    assert "LANG" not in text  # only what changed
    assert "pkg/run.sh" in text and "not executable -> " in text


# 6. one version per distribution: a library the test runner depends on is locked once


def library_repo(path: Path, name: str, version: str) -> Path:
    """A git repository holding a pure-Python project `name` at `version`."""
    module = name.replace("-", "_")
    (path / module).mkdir(parents=True)
    (path / "pyproject.toml").write_text(f'[build-system]\nrequires = ["setuptools>=68"]\n'
                                         f'build-backend = "setuptools.build_meta"\n\n'
                                         f'[project]\nname = "{name}"\nversion = "{version}"\n\n'
                                         f'[tool.setuptools]\npackages = ["{module}"]\n')
    (path / module / "__init__.py").write_text(f'__version__ = "{version}"\n')
    git("init", "-q", "-b", "main", cwd=path)
    git("add", "-A", cwd=path)
    git("commit", "-q", "-m", version, cwd=path)
    return path


def with_base(ws: TestWorkspace, body: str) -> None:
    """An environment with a base (its test runner is locked with it); locks never read the base."""
    (ws.root / "base").mkdir(parents=True, exist_ok=True)
    with tarfile.open(ws.root / "base/rootfs.tar", "w"):
        pass
    ws.write("envs/BUILD.envs", 'base_image(name = "debian", tarball = "../base/rootfs.tar")\n' + textwrap.dedent(body))


@pytest.mark.network
def test_a_library_the_test_runner_needs_is_its_only_copy_in_the_lock(ws, tmp_path):
    repo = library_repo(tmp_path / "pluggy", "pluggy", "1.5.0")
    with_base(ws, f"""
        git_library(name = "plug", url = "{repo.as_uri()}", branch = "main")
        environment(name = "prod", base = ":debian", libraries = [":plug"], python = "{PY}")
    """)
    ok(ws.gb("lock", "//envs:prod"))
    lock = lockfile.parse((ws.root / "envs/pylock.prod.toml").read_text())
    assert "pluggy" not in lock.packages  # not the index's release beside the library's build
    assert "pytest" in lock.packages and "pluggy" in lock.dependencies("pytest")
    runner = next(layer for layer in lock.layers if layer["label"] == "testrunner")
    assert "pytest" in runner["packages"] and "pluggy" not in runner["packages"]
    library = lock.libraries["//envs:plug"]
    assert (library["name"], library["version"], library["required_by"]) == ("pluggy", "1.5.0", ["pytest"])

    # the branch moves to a version pytest refuses: relocking keeps every pin, and still checks it
    (repo / "pyproject.toml").write_text((repo / "pyproject.toml").read_text().replace("1.5.0", "1.0.0"))
    git("commit", "-q", "-am", "1.0.0", cwd=repo)
    result = ws.gb("lock", "//envs:prod", "--json")
    assert result.exit_code == 2
    message = result.json["nodes"][0]["message"]
    assert message.startswith("one version per distribution: library //envs:plug builds pluggy 1.0.0, but pytest "
                              f"{lock.packages['pytest']['version']} (in testrunner) requires pluggy"), message


@pytest.mark.network
def test_a_library_too_old_for_the_test_runner_fails_the_lock_naming_both(ws, tmp_path):
    repo = library_repo(tmp_path / "pluggy", "pluggy", "1.0.0")
    with_base(ws, f"""
        git_library(name = "plug", url = "{repo.as_uri()}", branch = "main")
        environment(
            name = "prod",
            base = ":debian",
            libraries = [":plug"],
            test_runner = ["pytest>=8.3"],
            python = "{PY}",
        )
    """)
    line = next(i + 1 for i, text in enumerate((ws.root / "envs/BUILD.envs").read_text().splitlines())
                if "libraries =" in text)
    result = ws.gb("lock", "//envs:prod", "--json")
    assert result.exit_code == 2, result.stdout
    (node,) = result.json["nodes"]
    message = node["message"]
    assert message.startswith("one version per distribution: library //envs:plug builds pluggy 1.0.0, but pytest ")
    assert re.search(r"pytest \d+\.\d+\.\d+ \(in testrunner\) requires pluggy[<>=]", message), message
    assert node["location"] == f"envs/BUILD.envs:{line}"
    assert not (ws.root / "envs/pylock.prod.toml").exists()


def test_a_library_requiring_another_in_another_version_fails_the_lock_naming_both(ws):
    for name, version, deps in (("textstats", "0.3.0", []), ("featurize", "0.2.0", ["textstats>=1.0"])):
        ws.write(f"libs/{name}/BUILD.envs", f'py_library(name = "{name}")\n')
        ws.write(f"libs/{name}/pyproject.toml", f'[project]\nname = "{name}"\nversion = "{version}"\n'
                                                f'dependencies = {deps!r}\n'.replace("'", '"'))
    ws.write("envs/BUILD.envs", f'environment(name = "prod", libraries = ["//libs/textstats", "//libs/featurize"], '
                                f'python = "{PY}")\n')
    result = ws.gb("lock", "//envs:prod", "--json")
    assert result.exit_code == 2
    (node,) = result.json["nodes"]
    assert node["message"] == ("one version per distribution: a library of the environment requires "
                               "'textstats>=1.0', but library //libs/textstats:textstats builds textstats 0.3.0")
    assert node["location"] == "libs/featurize/pyproject.toml:4"  # the dependencies line


# 7. git libraries whose version comes from their tags


SCM_PYPROJECT = """
[build-system]
requires = ["setuptools>=68", "setuptools-scm>=8"]
build-backend = "setuptools.build_meta"

[project]
name = "scmlib"
dynamic = ["version"]

[tool.setuptools]
packages = ["scmlib"]

[tool.setuptools_scm]
"""


def scm_repo(path: Path) -> tuple[str, str]:
    """A setuptools-scm project: tagged v1.2.0, then one commit past the tag. Returns both commits."""
    (path / "scmlib").mkdir(parents=True)
    (path / "pyproject.toml").write_text(SCM_PYPROJECT)
    (path / "scmlib/__init__.py").write_text("VALUE = 1\n")
    git("init", "-q", "-b", "main", cwd=path)
    git("add", "-A", cwd=path)
    git("commit", "-q", "-m", "release", cwd=path)
    git("tag", "v1.2.0", cwd=path)
    tagged = git("rev-parse", "HEAD", cwd=path).strip()
    (path / "scmlib/__init__.py").write_text("VALUE = 2\n")
    git("commit", "-q", "-am", "after the release", cwd=path)
    return tagged, git("rev-parse", "HEAD", cwd=path).strip()


def built_by_hand(repo: Path, ref: str, tmp_path: Path) -> str:
    """The wheel file name `uv build` gives in a full clone checked out at `ref`."""
    from graphbuild.rules.python.uv import uv_bin

    tmp_path.mkdir(parents=True, exist_ok=True)
    clone = tmp_path / f"by-hand-{ref}"
    git("clone", "-q", str(repo), str(clone), cwd=tmp_path)
    git("checkout", "-q", ref, cwd=clone)
    subprocess.run([uv_bin(), "build", "--wheel", "-q", "--out-dir", str(clone / "dist"), str(clone)], check=True,
                   capture_output=True)
    (wheel,) = (clone / "dist").glob("*.whl")
    return wheel.name


@pytest.mark.network
def test_git_library_versions_come_from_tags_as_a_full_clone_gives_them(ws, tmp_path):
    repo = tmp_path / "scm"
    tagged, latest = scm_repo(repo)
    ws.write("envs/BUILD.envs", f"""
        git_library(name = "released", url = "{repo.as_uri()}", tag = "v1.2.0")
        git_library(name = "tip", url = "{repo.as_uri()}", branch = "main")
        environment(name = "old", libraries = [":released"], python = "{PY}")
        environment(name = "new", libraries = [":tip"], python = "{PY}")
    """)
    ok(ws.gb("lock", "//envs/..."))
    versions = {env: lockfile.parse((ws.root / f"envs/pylock.{env}.toml").read_text()).libraries
                for env in ("old", "new")}
    assert (versions["old"]["//envs:released"]["commit"], versions["old"]["//envs:released"]["version"]) == \
        (tagged, "1.2.0")
    assert re.fullmatch(rf"1\.2\.1\.dev1\+g{latest[:7]}[0-9a-f]*", versions["new"]["//envs:tip"]["version"])

    first = ok(ws.gb("build", "//envs/...", "--json"))
    nodes = {n["id"]: n for n in first.json["nodes"]}
    names = {env: nodes[f"//envs:{env}#git.{lib}"]["metadata"]["filename"]
             for env, lib in (("old", "released"), ("new", "tip"))}
    assert names == {"old": built_by_hand(repo, "v1.2.0", tmp_path), "new": built_by_hand(repo, "main", tmp_path)}
    assert names["old"] == "scmlib-1.2.0-py3-none-any.whl"

    # a tag added since the lock changes nothing: the same commit, the same wheel, on any machine
    git("tag", "v9.0.0", latest, cwd=repo)
    assert built_by_hand(repo, "main", tmp_path / "again").startswith("scmlib-9.0.0")
    other = type(ws)(tmp_path / "elsewhere", tmp_path / "cache2")
    shutil.copytree(ws.root, other.root, dirs_exist_ok=True)
    second = {n["id"]: n for n in ok(other.gb("build", "//envs/...", "--json")).json["nodes"]}
    for nid in ("//envs:old#git.released", "//envs:new#git.tip"):
        assert second[nid]["status"] == "ran"
        assert second[nid]["outputs"] == nodes[nid]["outputs"], nid


@pytest.mark.network
def test_a_failing_git_build_shows_the_backends_own_error(ws, tmp_path):
    repo = library_repo(tmp_path / "broken", "broken", "0.1.0")
    (repo / "setup.py").write_text('raise RuntimeError("this build is broken on purpose")\n')
    git("add", "-A", cwd=repo)
    git("commit", "-q", "-m", "break it", cwd=repo)
    ws.write("envs/BUILD.envs", f"""
        git_library(name = "broken", url = "{repo.as_uri()}", branch = "main")
        environment(name = "prod", libraries = [":broken"], python = "{PY}")
    """)
    ok(ws.gb("lock", "//envs:prod"))
    result = ws.gb("build", "//envs:prod", "--json")
    assert result.exit_code == 1
    node = next(n for n in result.json["nodes"] if n["id"] == "//envs:prod#git.broken")
    assert node["status"] == "failed"
    assert node["message"] == "building the wheel failed: RuntimeError: this build is broken on purpose"
    assert "Traceback" in node["log_tail"] and "broken on purpose" in node["log_tail"]


def test_two_libraries_of_one_distribution_fail_the_lock(ws):
    for package in ("a", "b"):
        ws.write(f"libs/{package}/BUILD.envs", 'py_library(name = "lib")\n')
        ws.write(f"libs/{package}/pyproject.toml", '[project]\nname = "same-name"\nversion = "1.0"\n')
    ws.write("envs/BUILD.envs", f'environment(name = "prod", libraries = ["//libs/a:lib", "//libs/b:lib"], '
                                f'python = "{PY}")\n')
    result = ws.gb("lock", "//envs:prod", "--json")
    assert result.exit_code == 2
    assert result.json["nodes"][0]["message"] == ("one version per distribution: libraries //libs/a:lib and "
                                                  "//libs/b:lib both build same-name")


@pytest.mark.network
def test_graphbuild_lock_rewrites_a_damaged_lock(example):
    path = example.root / "envs/pylock.prod.toml"
    path.write_text(_corrupt(path.read_text(), "missing-dependency")[0])
    assert example.gb("graph", "//envs:prod").exit_code == 2
    ok(example.gb("lock", "//envs:prod"))
    lock = lockfile.parse(path.read_text())
    assert "idna" in lock.packages and "idna" in lock.dependencies("requests")
    ok(example.gb("graph", "//envs:prod"))


@pytest.mark.network
def test_a_library_whose_new_version_its_requirer_refuses_makes_the_lock_stale(ws):
    def libraries(textstats_version: str) -> None:
        for name, version, deps in (("textstats", textstats_version, []), ("featurize", "0.2.0", ["textstats>=0.3"])):
            ws.write(f"libs/{name}/BUILD.envs", f'py_library(name = "{name}")\n')
            ws.write(f"libs/{name}/pyproject.toml", f'[project]\nname = "{name}"\nversion = "{version}"\n'
                                                    f'dependencies = {deps!r}\n'.replace("'", '"'))

    libraries("0.3.0")
    ws.write("envs/BUILD.envs", f'environment(name = "prod", libraries = ["//libs/textstats", "//libs/featurize"], '
                                f'python = "{PY}")\n')
    ok(ws.gb("lock", "//envs:prod"))
    textstats = lockfile.parse((ws.root / "envs/pylock.prod.toml").read_text()).libraries["//libs/textstats:textstats"]
    assert (textstats["version"], textstats["required_by"]) == ("0.3.0", ["//libs/featurize:featurize"])
    libraries("0.3.1")  # still accepted: the lock holds
    ok(ws.gb("graph", "//envs:prod"))
    libraries("0.2.0")
    result = ws.gb("graph", "//envs:prod")
    assert result.exit_code == 2
    assert ("library //libs/textstats:textstats is version 0.2.0 now, the lock checked 0.3.0 against "
            "'textstats>=0.3'") in result.stderr


@pytest.mark.network
def test_a_fork_locked_with_its_parent_in_one_command_is_not_left_stale(example):
    """The fork's lock reads its parent's: when one `lock` rewrites both, the fork is locked
    again after its parent's new lock is written (it used to be left out of date)."""
    path = example.root / "envs/BUILD.envs"
    path.write_text(path.read_text() + '\nenvironment(name = "prod-next", fork = ":prod", upgrade = ["tomli"])\n')
    ok(example.gb("lock", "//envs:prod-next"))
    edit(example, "envs/BUILD.envs", '"pydantic>=2.7",', '"pydantic>=2.7",\n        "six==1.16.0",')
    result = ok(example.gb("lock", "//envs:prod", "//envs:prod-next", "--json"))
    relocked = [n["id"] for n in result.json["nodes"]]
    assert relocked.count("//envs:prod-next#lock") == 1 and "//envs:prod#lock" in relocked
    assert "six" in (example.root / "envs/pylock.prod-next.toml").read_text()
    layers = example.gb("layers", "//envs:prod-next", "--json")
    assert layers.exit_code == 0, layers.stderr  # not "out of date: the lock of //envs:prod ... changed"
