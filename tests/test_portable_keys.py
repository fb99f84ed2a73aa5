"""Keys are the same on every machine and in every checkout: the example workspace built in
checkouts at different absolute paths, by different users (HOME, TMPDIR, XDG_CACHE_HOME), from
different commits, with different local caches, gives every node the same key; a result reused
under the same key carries the same metadata; the environment's name reaches only the nodes
whose bytes hold it (the image's labels, the SBOM); and a second checkout with an empty local
cache reuses everything from the shared cache.

  A   the first machine: builds, tests and runs everything, writing the shared cache
  C   another machine, another path, its own cache and no shared one (everything runs again),
      and //envs:prod renamed //envs:prod2 (the same attributes)
  D   a third machine, another path, an empty local cache, reading A's shared cache
"""

from __future__ import annotations

import contextlib
import json
import re
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from conftest import Result
from conftest import TestWorkspace as Workspace  # (not collected as a test class)
from docker_env import copy_example

from graphbuild.cache.signing import SigningKey

pytestmark = [pytest.mark.docker, pytest.mark.network]

COMMANDS = ("build", "test", "run")
#: the nodes of //envs:prod whose bytes hold the environment's name: the image's labels and
#: title (README: what the image records), the SBOM's name, the tag it is loaded under; the
#: push pushes that image
NAMED = frozenset({"image", "image.test", "sbom", "out", "load", "push"})


@dataclass
class Machine:
    """A checkout of the example on a machine of its own."""

    name: str
    ws: Workspace
    home: Path
    runs: dict[str, Result]

    def places(self) -> list[str]:
        """What is this machine's own: the checkout, the cache, the home and temp directories."""
        return [str(self.ws.root), str(self.ws.cache), str(self.home)]

    @contextlib.contextmanager
    def user(self) -> Iterator[None]:
        """HOME, TMPDIR and XDG_CACHE_HOME of this machine's user while graphbuild runs."""
        with pytest.MonkeyPatch.context() as patch:
            for var, sub in (("HOME", "."), ("TMPDIR", "tmp"), ("XDG_CACHE_HOME", ".cache")):
                (self.home / sub).mkdir(parents=True, exist_ok=True)
                patch.setenv(var, str(self.home / sub))
            patch.setattr(tempfile, "tempdir", None)  # read TMPDIR again
            yield

    def gb(self, *args: str) -> Result:
        with self.user():
            result = self.ws.gb(*args)
        assert result.exit_code == 0, result.stderr[-3000:] + result.stdout[-3000:]
        return result

    def nodes(self, command: str) -> dict[str, dict[str, Any]]:
        return {n["id"]: n for n in self.runs[command].json["nodes"]}


def checkout(top: Path, path: str, prefix: str, *, when: str, rename: bool = False) -> Workspace:
    """The example (its push destinations under `prefix`) at `top/path`, a git repository whose
    one commit is dated `when`: another checkout has another HEAD."""
    root = top / path
    copy_example(root)
    build = root / "envs/BUILD.envs"
    text = build.read_text().replace('push = "graphbuild-examples/', f'push = "{prefix}/')
    if rename:
        assert text.count('name = "prod"') == 1
        text = text.replace('name = "prod"', 'name = "prod2"')
        (root / "envs/pylock.prod.toml").rename(root / "envs/pylock.prod2.toml")
    build.write_text(text)
    (root / ".gitignore").write_text("graphbuild-out/\n.bases/\n")
    git = ["git", "-c", "user.name=Someone", "-c", "user.email=someone@example.invalid",
           "-c", "commit.gpgsign=false"]
    env = {"GIT_AUTHOR_DATE": when, "GIT_COMMITTER_DATE": when, "PATH": "/usr/bin:/bin"}
    subprocess.run([*git, "init", "-q", "-b", "main", "."], cwd=root, check=True, env=env)
    subprocess.run([*git, "add", "-A"], cwd=root, check=True, env=env)
    subprocess.run([*git, "commit", "-q", "-m", "checkout"], cwd=root, check=True, env=env)
    return Workspace(root, top / f"cache-{path.replace('/', '-')}")


@pytest.fixture(scope="module")
def machines(tmp_path_factory: pytest.TempPathFactory, registry: str) -> Iterator[dict[str, Machine]]:
    top = tmp_path_factory.mktemp("portable")
    prefix = f"gbportable-{uuid.uuid4().hex[:12]}"
    remote = f"oci://{registry}/{prefix}/cache"
    key = SigningKey.generate()
    (top / "ci-signing.pem").write_bytes(key.pem())

    def machine(name: str, path: str, when: str, *, rename: bool = False) -> Machine:
        ws = checkout(top, path, prefix, when=when, rename=rename)
        config = ws.root / "graphbuild.toml"
        config.write_text(config.read_text() + f'\n[cache]\ntrusted_keys = ["{key.public.line()}"]\n')
        return Machine(name, ws, top / f"home-{name}", {})

    a = machine("a", "a", "2026-03-01T00:00:00Z")
    c = machine("c", "c/a/much/deeper/checkout", "2026-04-02T10:00:00Z", rename=True)
    d = machine("d", "d/elsewhere", "2026-05-03T20:00:00Z")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("GRAPHBUILD_REMOTE_CACHE_SIGNING_KEY_FILE", str(top / "ci-signing.pem"))
        for command in COMMANDS:
            a.runs[command] = a.gb(command, "//envs/...", "--json", "--remote-cache", remote)
    for command in COMMANDS:
        c.runs[command] = c.gb(command, "//envs/...", "--json")
    for command in COMMANDS:  # no signing key: reads only
        d.runs[command] = d.gb(command, "//envs/...", "--json", "--remote-cache", remote)
    yield {"a": a, "c": c, "d": d}


def renamed(node_id: str) -> str:
    """A node of //envs:prod as //envs:prod2 (the same node in checkout C)."""
    return node_id.replace("//envs:prod#", "//envs:prod2#")


def test_every_node_has_the_same_key_in_another_checkout_on_another_machine(machines):
    a, c = machines["a"], machines["c"]
    for command in COMMANDS:
        first, other = a.nodes(command), c.nodes(command)
        assert {renamed(nid) for nid in first} == set(other)
        assert {n["status"] for n in other.values()} >= {"ran"}  # C ran its own nodes
        different = sorted(nid for nid, n in first.items() if n["key"] != other[renamed(nid)]["key"])
        # only //envs:prod's nodes whose bytes hold its name; its packages, layers and tests
        # keep their keys (README: environments agreeing on a test's inputs share its result)
        named = sorted(f"//envs:prod#{name}" for name in NAMED if f"//envs:prod#{name}" in first)
        assert different == named, command
    tests = [nid for nid in a.nodes("test") if nid.startswith("//envs:prod#test.")]
    assert len(tests) == 4
    assert all(a.nodes("test")[nid]["key"] == c.nodes("test")[renamed(nid)]["key"] for nid in tests)


def test_a_result_has_the_same_metadata_wherever_it_was_made(machines):
    """The metadata is part of what dependents key on: under one key, one metadata, and no
    path of the machine that made it."""
    a, c, d = machines.values()
    places = [place for m in (a, c, d) for place in m.places()]
    for m in (a, c, d):
        for command in COMMANDS:
            for nid, node in m.nodes(command).items():
                text = json.dumps(node["metadata"])
                assert not [p for p in places if p in text], (m.name, nid, text)
                # a test result reused by another environment does not name the one that ran it
                assert set(re.findall(r"//envs:[\w.-]+", text)) <= {nid.split("#")[0]}, (m.name, nid, text)
    first, other = a.nodes("run"), c.nodes("run")
    for nid, node in first.items():
        if node["kind"] == "oci.push":
            continue  # what a push uploads depends on what the registry held already
        if node["key"] == other[renamed(nid)]["key"]:
            assert node["metadata"] == other[renamed(nid)]["metadata"], nid


def test_a_checkout_elsewhere_with_an_empty_cache_reuses_everything_from_the_shared_cache(machines):
    a, d = machines["a"], machines["d"]
    for command in COMMANDS:
        first, second = a.nodes(command), d.nodes(command)
        assert {nid: n["key"] for nid, n in second.items()} == {nid: n["key"] for nid, n in first.items()}
        ran = {nid for nid, n in second.items() if n["status"] == "ran"}
        # loading into the engine and pushing are never cached; everything else comes from A
        assert ran == {nid for nid, n in second.items() if n["kind"] in ("docker.load", "oci.push")}, command
        if command != "run":
            assert ran == set() and d.runs[command].json["summary"]["ran"] == 0
    # (a node sharing its key with one before it in the run is served by that one)
    assert {n["cache"] for n in d.nodes("build").values() if not n["cached_from"]} == {"remote"}
    assert d.nodes("test")["//envs:prod#test.jobconfig"]["cache"] == "remote"
    assert d.nodes("run")["//envs:prod#test.jobconfig"]["cache"] == "local"  # D's own cache by then
