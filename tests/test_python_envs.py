"""Python environments end to end: lock, build, share layers, relock, explain, errors.

These talk to the Python package index through uv (its shared cache keeps reruns fast) and
use only a few tiny pure-Python wheels, pinned so the results do not move.
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import subprocess
import sys
import tarfile
import tomllib
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from packaging.version import Version

from graphbuild.cache.blobs import BlobStore

if TYPE_CHECKING:
    from conftest import Result, TestWorkspace

pytestmark = pytest.mark.network

#: The image's Python is the host's, so layers ship bytecode (compiled only for a matching Python).
PY = f"{sys.version_info[0]}.{sys.version_info[1]}"

ENVS = f"""
py_layer(
    name = "core",
    requirements = [
        "six==1.16.0",
        "attrs==23.2.0",
    ],
)

py_layer(
    name = "web",
    over = [":core"],
    requirements = [
        "idna==3.6",
    ],
)

environment(
    name = "prod",
    layers = [":core"],
    libraries = ["//libs/mylib"],
    python = "{PY}",
)

environment(
    name = "dev",
    layers = [":web"],
    libraries = ["//libs/mylib"],
    python = "{PY}",
)
"""

PYPROJECT = """
[build-system]
requires = ["setuptools>=68"]
build-backend = "setuptools.build_meta"

[project]
name = "mylib"
version = "0.1.0"
dependencies = [
    "iniconfig==2.0.0",
]

[tool.setuptools]
packages = ["mylib"]
"""

DEV = "//envs:dev"
PROD = "//envs:prod"


def write_library(ws: TestWorkspace, pyproject: str = PYPROJECT) -> None:
    ws.write("libs/mylib/BUILD.envs", 'py_library(name = "mylib")\n')
    ws.write("libs/mylib/pyproject.toml", pyproject)
    ws.write("libs/mylib/mylib/__init__.py", 'def hello():\n    return "hi"\n')
    ws.write("libs/mylib/tests/test_mylib.py", 'from mylib import hello\n\n\ndef test_hello():\n'
                                               '    assert hello() == "hi"\n')
    ws.write("libs/mylib/.gitignore", "README.md\n")
    ws.write("libs/mylib/README.md", "notes that are not part of the library\n")


def write_envs(ws: TestWorkspace, build: str = ENVS) -> None:
    ws.write("envs/BUILD.envs", build)
    write_library(ws)


def line_of(ws: TestWorkspace, rel: str, needle: str) -> int:
    """1-based line of the only line of `rel` containing `needle`."""
    lines = [i + 1 for i, line in enumerate((ws.root / rel).read_text().splitlines()) if needle in line]
    assert len(lines) == 1, (needle, lines)
    return lines[0]


def ok(result: Result) -> Result:
    assert result.exit_code == 0, result.stderr + result.stdout
    return result


def build_nodes(result: Result) -> dict[str, dict]:
    """id -> node of a --json build, without the lock nodes (they always run)."""
    return {n["id"]: n for n in result.json["nodes"] if n["phase"] != "lock"}


def ran_build_nodes(result: Result) -> set[str]:
    return {nid for nid, n in build_nodes(result).items() if n["status"] == "ran"}


def locked(ws: TestWorkspace, env: str) -> dict:
    return tomllib.loads((ws.root / f"envs/pylock.{env}.toml").read_text())


def locked_versions(ws: TestWorkspace, env: str) -> dict[str, str]:
    # (the index's packages: libraries are `directory`/`vcs` entries, built from their sources)
    return {p["name"]: p["version"] for p in locked(ws, env)["packages"]
            if "version" in p and "directory" not in p and "vcs" not in p}


def git(*args: str, cwd: Path) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.com", "GIT_CONFIG_NOSYSTEM": "1"}
    return subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True, text=True).stdout


# 1. two environments over one layer share it; a library's wheel is built once


def test_lock_then_build_two_environments_sharing_the_core_layer(ws):
    write_envs(ws)
    lock = ok(ws.gb("lock", "//envs/...", "--json"))
    assert {n["id"]: n["status"] for n in lock.json["nodes"]} == {f"{PROD}#lock": "ran", f"{DEV}#lock": "ran"}
    assert locked_versions(ws, "prod") == {"six": "1.16.0", "attrs": "23.2.0", "iniconfig": "2.0.0"}
    assert locked_versions(ws, "dev") == {"six": "1.16.0", "attrs": "23.2.0", "iniconfig": "2.0.0", "idna": "3.6"}
    layers = {layer["label"]: layer["packages"] for layer in locked(ws, "dev")["tool"]["graphbuild"]["layers"]}
    assert layers == {"//envs:core": ["attrs", "six"], "//envs:web": ["idna"], "libraries": ["iniconfig"]}

    first = ok(ws.gb("build", "//envs/...", "--json"))
    nodes = build_nodes(first)
    # a node per locked package (each its own image layer here), the venv, the library's layer
    assert {f"{env}#{name}" for env in (PROD, DEV) for name in ("layer.venv", "pkg.six", "pkg.attrs",
                                                                  "pkg.iniconfig", "lib.mylib")} | {
        f"{DEV}#pkg.idna", "//libs/mylib:mylib#wheel"} == set(nodes)
    for package in ("six", "attrs", "iniconfig"):
        core = {nodes[f"{env}#pkg.{package}"]["status"]: env for env in (PROD, DEV)}
        assert set(core) == {"ran", "cached"}, core
        shared = nodes[f"{core['cached']}#pkg.{package}"]
        assert shared["cached_from"] == f"{core['ran']}#pkg.{package}"
        assert shared["outputs"] == nodes[f"{core['ran']}#pkg.{package}"]["outputs"]
    assert nodes[f"{DEV}#pkg.idna"]["status"] == "ran"
    wheels = [n for n in first.json["nodes"] if n["id"] == "//libs/mylib:mylib#wheel"]
    assert [n["status"] for n in wheels] == ["ran"]

    second = ok(ws.gb("build", "//envs/...", "--json"))
    assert second.ran() == set()
    assert second.json["summary"]["ran"] == 0


def test_relocking_keeps_the_pins_of_unchanged_layers_unless_upgrade(ws):
    write_envs(ws)
    ok(ws.gb("lock", "//envs:dev"))
    before = (ws.root / "envs/pylock.dev.toml").read_bytes()
    # another pin in the lock's place (version and file names alike, so the lock stays valid)
    # shows whether a relock resolves core again
    packages, tool = before.decode().split("[tool.graphbuild]")
    (ws.root / "envs/pylock.dev.toml").write_text(packages.replace("1.16.0", "1.15.0") + "[tool.graphbuild]" + tool)
    ok(ws.gb("lock", "//envs:dev"))
    assert locked_versions(ws, "dev")["six"] == "1.15.0"  # kept: core's spec did not change
    ok(ws.gb("lock", "--upgrade", "//envs:dev"))
    assert locked_versions(ws, "dev")["six"] == "1.16.0"  # resolved afresh
    assert (ws.root / "envs/pylock.dev.toml").read_bytes() == before


def test_a_changed_layer_keeps_the_versions_its_requirements_still_allow(ws):
    write_envs(ws)
    ok(ws.gb("lock", "//envs:dev"))
    # core's spec changes: six is loosened (the index has a newer six) and a requirement is added
    ws.write("envs/BUILD.envs", ENVS.replace('"six==1.16.0"', '"six>=1.15", "iniconfig==2.0.0", "packaging==24.0"'))
    result = ok(ws.gb("lock", "//envs:dev", "--json"))
    assert result.json["nodes"][0]["metadata"]["changed"] == {"packaging": [None, "24.0"]}
    assert locked_versions(ws, "dev")["six"] == "1.16.0"  # still allowed: not moved
    layers = {layer["label"]: layer["packages"] for layer in locked(ws, "dev")["tool"]["graphbuild"]["layers"]}
    # iniconfig moved down into core (a lower layer now requires it), out of the libraries' layer
    assert layers == {"//envs:core": ["attrs", "iniconfig", "packaging", "six"], "//envs:web": ["idna"],
                      "libraries": []}
    ok(ws.gb("lock", "--upgrade", "//envs:dev"))
    assert Version(locked_versions(ws, "dev")["six"]) > Version("1.16.0")  # resolved afresh: the newest


# 2. one changed pin: only the node of that package is rebuilt, and `why` says which pin and where


def test_relock_after_a_changed_pin_rebuilds_only_its_package_and_why_names_it(ws):
    write_envs(ws)
    ok(ws.gb("lock", "//envs/..."))
    ok(ws.gb("build", "//envs/..."))
    ws.write("envs/BUILD.envs", ENVS.replace("idna==3.6", "idna==3.7"))
    line = line_of(ws, "envs/BUILD.envs", "idna==3.7")

    rebuilt = ok(ws.gb("build", "--relock", "//envs/...", "--json"))
    # only the environment whose lock went stale is relocked
    assert {n["id"] for n in rebuilt.json["nodes"] if n["phase"] == "lock"} == {f"{DEV}#lock"}
    assert ran_build_nodes(rebuilt) == {f"{DEV}#pkg.idna"}
    assert {n["status"] for nid, n in build_nodes(rebuilt).items() if nid != f"{DEV}#pkg.idna"} == {"cached"}
    assert locked_versions(ws, "dev")["idna"] == "3.7"

    why = ok(ws.gb("why", DEV, "--json"))
    web = next(n for n in why.json["nodes"] if n["id"] == f"{DEV}#pkg.idna")
    assert web["status"] == "ran"
    assert len(web["changes"]) == 1
    change = web["changes"][0]
    assert change["input"] == "pkg:idna"
    assert change["old"].startswith("idna 3.6")
    assert change["new"].startswith("idna 3.7")
    assert change["location"] == f"envs/BUILD.envs:{line}"
    core = next(n for n in why.json["nodes"] if n["id"] == f"{DEV}#pkg.six")
    assert core["status"] == "cached"

    text = ok(ws.gb("why", DEV)).stdout
    web_lines = text.split(f"{DEV}#pkg.idna: ran", 1)[1].splitlines()
    assert "pkg:idna: idna 3.6" in web_lines[1]
    assert "-> idna 3.7" in web_lines[1]
    assert f"envs/BUILD.envs:{line}" in web_lines[1]


# 3. a stale or missing lock stops the build before anything runs


def test_a_stale_lock_is_a_spec_error_naming_the_change_and_the_fix(ws):
    write_envs(ws)
    ok(ws.gb("lock", "//envs/..."))
    ws.write("envs/BUILD.envs", ENVS.replace("idna==3.6", "idna==3.7"))
    line = line_of(ws, "envs/BUILD.envs", "idna==3.7")
    env_line = line_of(ws, "envs/BUILD.envs", 'name = "dev"') - 1  # `environment(` opens the call

    text = ws.gb("build", "//envs/...")
    assert text.exit_code == 2
    assert DEV in text.stderr and "pylock.dev.toml" in text.stderr
    assert f"'idna==3.7' added (envs/BUILD.envs:{line})" in text.stderr
    assert "'idna==3.6' removed" in text.stderr
    assert f"graphbuild lock {DEV}" in text.stderr

    result = ws.gb("build", "//envs/...", "--json")
    assert result.exit_code == 2
    error = result.json["error"]
    assert "out of date" in error["message"] and DEV in error["message"]
    assert f"envs/BUILD.envs:{line}" in error["message"]
    assert error["location"].startswith(f"envs/BUILD.envs:{env_line}")
    assert f"graphbuild lock {DEV}" in error["hint"]
    assert locked_versions(ws, "dev")["idna"] == "3.6"  # a build never rewrites a lock by itself


def test_a_missing_lock_is_a_spec_error_with_the_lock_command_as_hint(ws):
    write_envs(ws)
    text = ws.gb("build", PROD)
    assert text.exit_code == 2
    assert "has no lock file envs/pylock.prod.toml" in text.stderr
    assert f"graphbuild lock {PROD}" in text.stderr

    result = ws.gb("build", PROD, "--json")
    assert result.exit_code == 2
    assert PROD in result.json["error"]["message"]
    assert result.json["error"]["location"].startswith("envs/BUILD.envs:")
    assert f"graphbuild lock {PROD}" in result.json["error"]["hint"]


# 4. layers are reproducible: the same lock gives the same bytes from any cache and checkout


def test_layers_of_one_lock_are_byte_identical_across_caches_and_clean_of_host_state(ws, tmp_path):
    ws.write("envs/BUILD.envs", f"""
        py_layer(
            name = "tools",
            requirements = [
                "six==1.16.0",
                "pycodestyle==2.11.1",
            ],
        )

        environment(name = "prod", layers = [":tools"], libraries = ["//libs/mylib"], python = "{PY}")
    """)
    write_library(ws)
    ok(ws.gb("lock", PROD))
    other = type(ws)(tmp_path / "elsewhere", tmp_path / "cache2")  # same files, another path and cache
    shutil.copytree(ws.root, other.root, dirs_exist_ok=True)

    first = build_nodes(ok(ws.gb("build", PROD, "--json")))
    second = build_nodes(ok(other.gb("build", PROD, "--json")))
    assert {nid: n["status"] for nid, n in second.items()} == dict.fromkeys(first, "ran")
    assert {nid: n["outputs"] for nid, n in first.items()} == {nid: n["outputs"] for nid, n in second.items()}

    stores = [BlobStore(cache / "blobs", cache / "tmp") for cache in (ws.cache, other.cache)]
    layer_ids = [nid for nid, n in first.items() if "layer.tar" in n["outputs"]]
    assert {nid.split("#")[1] for nid in layer_ids} == {"layer.venv", "pkg.six", "pkg.pycodestyle", "pkg.iniconfig",
                                                        "lib.mylib"}
    host_paths = [str(p).encode() for p in (tmp_path, ws.cache, other.cache)]
    pycs = scripts = 0
    for nid in layer_ids:
        digest = first[nid]["outputs"]["layer.tar"]
        blobs = [store.path(digest).read_bytes() for store in stores]
        assert blobs[0] == blobs[1], nid
        assert hashlib.sha256(blobs[0]).hexdigest() == digest
        with tarfile.open(fileobj=io.BytesIO(blobs[0])) as tar:
            members = tar.getmembers()
            names = [m.name for m in members]
            assert names == sorted(names, key=str.encode), nid
            assert len(names) == len(set(names)), nid
            for member in members:
                assert (member.mtime, member.uid, member.gid, member.uname, member.gname) == (0, 0, 0, "", ""), \
                    (nid, member.name)
                assert member.mode in (0o644, 0o755, 0o777), (nid, member.name, oct(member.mode))
                if not member.isfile():
                    continue
                data = tar.extractfile(member).read()
                assert not any(p in data for p in host_paths), (nid, member.name)
                if "/__pycache__/" in member.name:
                    assert member.name.endswith(".pyc"), (nid, member.name)
                    flags = int.from_bytes(data[4:8], "little")
                    assert flags in (1, 3), (nid, member.name, flags)  # hash-based, never mtime-based
                    assert b"/opt/env/lib/python" in data, (nid, member.name)
                    pycs += 1
                if member.name.startswith("opt/env/bin/"):
                    assert data.startswith(b"#!/opt/env/bin/python\n"), (nid, member.name, data[:60])
                    assert member.mode == 0o755
                    scripts += 1
    assert pycs > 0  # the image's Python is the host's: bytecode ships, hash-based
    assert scripts == 1  # pycodestyle's console script


# 5. git libraries: a branch is pinned by the lock; a new commit rebuilds that library only


def test_git_library_follows_its_branch_through_lock(ws, tmp_path):
    repo = tmp_path / "research-repo"
    (repo / "research").mkdir(parents=True)
    git("init", "-q", cwd=repo)
    git("symbolic-ref", "HEAD", "refs/heads/main", cwd=repo)
    (repo / "pyproject.toml").write_text(PYPROJECT.replace("mylib", "research"))
    (repo / "research/__init__.py").write_text("VALUE = 1\n")
    git("add", "-A", cwd=repo)
    git("commit", "-q", "-m", "one", cwd=repo)
    old = git("rev-parse", "HEAD", cwd=repo).strip()
    ws.write("envs/BUILD.envs", f"""
        py_layer(
            name = "core",
            requirements = [
                "six==1.16.0",
            ],
        )

        git_library(name = "research", url = "{repo.as_uri()}", branch = "main")

        environment(name = "fork", layers = [":core"], libraries = [":research"], python = "{PY}")
    """)
    fork = "//envs:fork"

    ok(ws.gb("lock", fork))
    assert old in (ws.root / "envs/pylock.fork.toml").read_text()
    first = ok(ws.gb("build", fork, "--json"))
    assert first.statuses()[f"{fork}#git.research"] == "ran"
    assert set(build_nodes(first)) == {f"{fork}#{n}" for n in ("layer.venv", "pkg.six", "pkg.iniconfig",
                                                               "git.research", "lib.research")}

    (repo / "research/__init__.py").write_text("VALUE = 2\n")
    git("commit", "-q", "-am", "two", cwd=repo)
    new = git("rev-parse", "HEAD", cwd=repo).strip()
    assert ok(ws.gb("build", fork, "--json")).ran() == set()  # the lock still pins the old commit

    # the spec did not change, so --relock has nothing to do; `graphbuild lock` follows the branch
    assert ok(ws.gb("build", "--relock", fork, "--json")).ran() == set()
    ok(ws.gb("lock", fork))
    relocked = ok(ws.gb("build", fork, "--json"))
    assert ran_build_nodes(relocked) == {f"{fork}#git.research", f"{fork}#lib.research"}
    assert {n["status"] for nid, n in build_nodes(relocked).items()
            if nid.split("#")[1] not in ("git.research", "lib.research")} == {"cached"}
    assert new in (ws.root / "envs/pylock.fork.toml").read_text()

    why = ok(ws.gb("why", fork, "--json"))
    node = next(n for n in why.json["nodes"] if n["id"] == f"{fork}#git.research")
    (change,) = [c for c in node["changes"] if c["input"] == "commit"]
    assert old in change["old"] and new in change["new"]
    assert change["location"].startswith("envs/BUILD.envs:")


# 6. errors in requirements: exit 2 at the BUILD.envs line that causes them


def _one_layer(*requirements: str) -> str:
    items = "".join(f'        "{r}",\n' for r in requirements)
    return f'py_layer(\n    name = "core",\n    requirements = [\n{items}    ],\n)\n\n' \
           f'environment(name = "prod", layers = [":core"], python = "{PY}")\n'


@pytest.mark.parametrize("verb", ["lock", "build"])
def test_bad_requirement_syntax_is_an_analysis_error_at_its_list_item(ws, verb):
    ws.write("envs/BUILD.envs", _one_layer("six==1.16.0", "numpy>>1"))
    line = line_of(ws, "envs/BUILD.envs", "numpy>>1")
    text = ws.gb(verb, PROD)
    assert text.exit_code == 2
    assert f"envs/BUILD.envs:{line}" in text.stderr
    assert "invalid requirement 'numpy>>1'" in text.stderr
    result = ws.gb(verb, PROD, "--json")
    assert result.exit_code == 2
    assert result.json["error"]["location"].split(":")[:2] == ["envs/BUILD.envs", str(line)]
    assert "PEP 508" in result.json["error"]["hint"]


def test_unknown_package_fails_the_lock_at_its_requirement(ws):
    ws.write("envs/BUILD.envs", _one_layer("six==1.16.0", "no-such-package-zz9"))
    line = line_of(ws, "envs/BUILD.envs", "no-such-package-zz9")
    text = ws.gb("lock", PROD)
    assert text.exit_code == 2
    assert f"envs/BUILD.envs:{line}" in text.stderr and "no-such-package-zz9" in text.stderr
    result = ws.gb("lock", PROD, "--json")
    assert result.exit_code == 2
    (node,) = result.json["nodes"]
    assert node["status"] == "failed"
    assert node["location"] == f"envs/BUILD.envs:{line}"
    assert "no-such-package-zz9" in node["message"]
    assert not (ws.root / "envs/pylock.prod.toml").exists()


def test_unsatisfiable_constraints_in_one_layer_name_both_requirements(ws):
    ws.write("envs/BUILD.envs", _one_layer("six==1.16.0", "six>=1.17"))
    lines = {line_of(ws, "envs/BUILD.envs", "six==1.16.0"), line_of(ws, "envs/BUILD.envs", "six>=1.17")}
    text = ws.gb("lock", PROD)
    assert text.exit_code == 2
    for line in lines:
        assert f"envs/BUILD.envs:{line}" in text.stderr
    result = ws.gb("lock", PROD, "--json")
    assert result.exit_code == 2
    (node,) = result.json["nodes"]
    assert node["location"] in {f"envs/BUILD.envs:{line}" for line in lines}
    assert "six" in node["message"] and "1.16.0" in node["message"] and "1.17" in node["message"]
    for line in lines:
        assert f"envs/BUILD.envs:{line}" in node["log_tail"]


def test_a_version_conflict_between_layers_names_both_layers_and_versions(ws):
    ws.write("envs/BUILD.envs", f"""
        py_layer(
            name = "core",
            requirements = [
                "idna==3.6",
            ],
        )

        py_layer(
            name = "web",
            over = [":core"],
            requirements = [
                "idna==3.7",
            ],
        )

        environment(name = "dev", layers = [":web"], python = "{PY}")
    """)
    line = line_of(ws, "envs/BUILD.envs", "idna==3.7")
    text = ws.gb("lock", DEV)
    assert text.exit_code == 2
    assert f"envs/BUILD.envs:{line}" in text.stderr
    result = ws.gb("lock", DEV, "--json")
    assert result.exit_code == 2
    (node,) = result.json["nodes"]
    message = node["message"]
    assert "//envs:core" in message and "//envs:web" in message, message
    assert "idna" in message and "3.6" in message and "3.7" in message, message
    assert node["location"] == f"envs/BUILD.envs:{line}"


# 7. what a py_library's key is made of: the files git would track


def test_ignored_files_do_not_rebuild_a_library_and_its_module_does(ws):
    write_envs(ws)
    ok(ws.gb("lock", "//envs/..."))
    ok(ws.gb("build", "//envs/..."))

    (ws.root / "libs/mylib/README.md").write_text("edited notes\n")
    assert ok(ws.gb("build", "//envs/...", "--json")).ran() == set()

    ws.write("libs/mylib/mylib/__init__.py", 'def hello():\n    return "hello"\n')
    rebuilt = ok(ws.gb("build", "//envs/...", "--json"))
    nodes = build_nodes(rebuilt)
    libs = {nid for nid in nodes if nid.endswith("#lib.mylib")}
    assert rebuilt.ran() == {"//libs/mylib:mylib#wheel"} | (rebuilt.ran() & libs)
    assert len(rebuilt.ran() & libs) == 1  # the other environment shares the new library layer
    (shared,) = libs - rebuilt.ran()
    assert nodes[shared]["status"] == "cached"
    assert nodes[shared]["cached_from"] in libs - {shared}
    others = {nid for nid in nodes if nid not in libs and nid != "//libs/mylib:mylib#wheel"}
    assert {nodes[nid]["status"] for nid in others} == {"cached"}
