"""The shared cache in a real OCI registry (`--remote-cache oci://HOST/REPO`), as two machines
see it: two copies of a workspace in different directories, each with its own local cache,
sharing one registry repository (a uuid in its name, so runs never see each other's entries).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import uuid
from pathlib import Path
from typing import Any

import pytest
import requests
from conftest import Result
from conftest import TestWorkspace as Workspace  # (not collected as a test class)
from docker_env import BASE, link_base, tags, write_library

from graphbuild.keys import digest

pytestmark = pytest.mark.docker




@pytest.fixture
def remote(registry: str) -> str:
    return f"oci://{registry}/gbcache-{uuid.uuid4().hex[:12]}"


def repository(remote: str) -> str:
    return remote.removeprefix("oci://").split("/", 1)[1]


def ok(result: Result) -> Result:
    assert result.exit_code == 0, result.stderr + result.stdout
    return result


def by_id(result: Result) -> dict[str, dict[str, Any]]:
    return {n["id"]: n for n in result.json["nodes"]}


def copy_workspace(src: Workspace, root: Path, cache: Path) -> Workspace:
    """The same files in another directory, with an empty local cache of its own."""
    shutil.copytree(src.root, root, symlinks=True, ignore=shutil.ignore_patterns("graphbuild-out"))
    return Workspace(root, cache)


# -- genrules and a command_test ------------------------------------------------------------

GENRULES = """
genrule(name = "a", srcs = ["a.txt"], outs = ["a.out"], cmd = "cat $SRCS > $OUT")
genrule(name = "b", srcs = [":a"], outs = ["b.out"], cmd = "tr a-z A-Z < $SRCS > $OUT")
genrule(name = "c", srcs = ["c.txt"], outs = ["c.out"], cmd = "sort $SRCS > $OUT")
genrule(name = "d", srcs = [":c"], outs = ["d.out"], cmd = "wc -l < $SRCS > $OUT")
command_test(name = "t", srcs = [":b", ":d"], cmd = "grep -q ALPHA pkg/b/b.out")
"""
NODES = {"//pkg:a#gen", "//pkg:b#gen", "//pkg:c#gen", "//pkg:d#gen", "//pkg:t#test"}


def genrule_workspace(tmp_path: Path, name: str = "ws1") -> Workspace:
    ws = Workspace(tmp_path / name, tmp_path / f"{name}-cache")
    ws.write("pkg/BUILD.envs", GENRULES)
    ws.write("pkg/a.txt", "alpha\n")
    ws.write("pkg/c.txt", "zeta\neta\n")
    return ws


def test_a_second_machine_gets_every_result_from_the_remote_cache(tmp_path, remote):
    ws1 = genrule_workspace(tmp_path)
    first = ok(ws1.gb("test", "//...", "--json", "--remote-cache", remote))
    assert first.ran() == NODES
    assert {n["cache"] for n in first.json["nodes"]} == {None}
    assert len([t for t in tags(repository(remote)) if t.startswith("gb-")]) == len(NODES)

    ws2 = copy_workspace(ws1, tmp_path / "ws2", tmp_path / "ws2-cache")
    second = ok(ws2.gb("test", "//...", "--json", "--remote-cache", remote))
    assert second.json["summary"]["ran"] == 0
    assert {nid: (n["status"], n["cache"]) for nid, n in by_id(second).items()} == dict.fromkeys(
        NODES, ("cached", "remote"))
    assert {nid: n["key"] for nid, n in by_id(second).items()} == {nid: n["key"] for nid, n in by_id(first).items()}
    out = ws2.root / "graphbuild-out/pkg"
    assert (out / "a.out").read_text() == "alpha\n"
    assert (out / "b.out").read_text() == "ALPHA\n"
    assert (out / "c.out").read_text() == "eta\nzeta\n"
    assert (out / "d.out").read_text().strip() == "2"

    text = ok(ws2.gb("test", "//...", "--remote-cache", remote))
    assert "5 nodes: 0 ran, 5 cached, 0 failed" in text.stderr  # now from its own local cache
    why = ok(ws2.gb("why", "//pkg:b", "--json"))
    assert [(e["id"], e["status"], e["source"]) for e in why.json["nodes"]] == [
        ("//pkg:a#gen", "cached", "local"), ("//pkg:b#gen", "cached", "local")]

    # one spec change on the second machine: only that node and what depends on it run
    build = ws2.root / "pkg/BUILD.envs"
    build.write_text(build.read_text().replace('"sort $SRCS > $OUT"', '"sort -r $SRCS > $OUT"'))
    third = ok(ws2.gb("test", "//...", "--json", "--remote-cache", remote))
    assert third.ran() == {"//pkg:c#gen", "//pkg:d#gen"}  # d counts the same 2 lines: t is cut off
    unchanged = ("//pkg:a#gen", "//pkg:b#gen", "//pkg:t#test")
    assert {nid: by_id(third)[nid]["status"] for nid in unchanged} == dict.fromkeys(unchanged, "cached")
    assert (ws2.root / "graphbuild-out/pkg/c.out").read_text() == "zeta\neta\n"

    # ... and the first machine now gets that result from the second one
    (ws1.root / "pkg/BUILD.envs").write_text(build.read_text())
    fourth = ok(ws1.gb("test", "//...", "--json", "--remote-cache", remote))
    assert fourth.ran() == set()
    assert by_id(fourth)["//pkg:c#gen"]["cache"] == "remote"
    assert by_id(fourth)["//pkg:d#gen"]["cache"] == "remote"


def test_why_names_the_remote_cache_a_result_came_from(tmp_path, remote):
    ws1 = genrule_workspace(tmp_path)
    ok(ws1.gb("build", "//pkg:b", "--remote-cache", remote))
    ws2 = copy_workspace(ws1, tmp_path / "ws2", tmp_path / "ws2-cache")
    ok(ws2.gb("build", "//pkg:b", "--remote-cache", remote))
    why = ok(ws2.gb("why", "//pkg:b", "--json"))
    assert {e["id"]: (e["status"], e["source"], e["reason"]) for e in why.json["nodes"]} == {
        "//pkg:a#gen": ("cached", "remote", "cached (remote cache)"),
        "//pkg:b#gen": ("cached", "remote", "cached (remote cache)"),
    }
    text = ok(ws2.gb("why", "//pkg:b"))
    assert "//pkg:b#gen: cached - cached (remote cache)" in text.stdout.splitlines()
    node = ok(ws2.gb("why", "//pkg:b", "--node", "//pkg:a#gen"))
    assert node.stdout.splitlines() == ["//pkg:a#gen: cached - cached (remote cache)"]


# -- tampered entries -----------------------------------------------------------------------


class RawRegistry:
    """Plain HTTP to the registry, to overwrite cache entries the way an attacker could."""

    def __init__(self, remote: str):
        host, self.repo = remote.removeprefix("oci://").split("/", 1)
        self.base = f"http://{host}/v2/{self.repo}"

    def manifest(self, tag: str) -> dict[str, Any]:
        response = requests.get(f"{self.base}/manifests/{tag}", timeout=30,
                                headers={"Accept": "application/vnd.oci.image.manifest.v1+json"})
        response.raise_for_status()
        return response.json()

    def blob(self, digest: str) -> bytes:
        response = requests.get(f"{self.base}/blobs/{digest}", timeout=30)
        response.raise_for_status()
        return response.content

    def put_blob(self, data: bytes) -> str:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        start = requests.post(f"{self.base}/blobs/uploads/", timeout=30)
        assert start.status_code == 202, start.text
        location = start.headers["Location"]
        if location.startswith("/"):
            location = self.base.split("/v2/")[0] + location
        put = requests.put(location, params={"digest": digest}, data=data, timeout=30,
                           headers={"Content-Type": "application/octet-stream"})
        assert put.status_code == 201, put.text
        return digest

    def rewrite(self, key: str, change) -> None:
        """Replace the config (record, key, inputs) of entry gb-<key> by `change(config)`."""
        manifest = self.manifest(f"gb-{key}")
        config = json.loads(self.blob(manifest["config"]["digest"]))
        change(config)
        data = json.dumps(config, sort_keys=True).encode()
        manifest["config"] = {**manifest["config"], "digest": self.put_blob(data), "size": len(data)}
        put = requests.put(f"{self.base}/manifests/gb-{key}", data=json.dumps(manifest).encode(), timeout=30,
                           headers={"Content-Type": manifest["mediaType"]})
        assert put.status_code == 201, put.text


def test_tampered_remote_entries_are_rejected_and_the_nodes_run(tmp_path, remote):
    ws1 = genrule_workspace(tmp_path)
    first = by_id(ok(ws1.gb("test", "//...", "--json", "--remote-cache", remote)))
    raw = RawRegistry(remote)
    key = {nid: first[nid]["key"] for nid in first}
    a_sha = first["//pkg:a#gen"]["outputs"]["a.out"]

    def swap_output(config):  # b's result claims a's (real, present) blob as its output
        config["record"]["outputs"]["b.out"] = [a_sha, len("alpha\n"), False]

    def change_inputs(config):  # c's stored inputs are not the ones its key hashes
        config["inputs"]["cmd"][1] = "sort -u $SRCS > $OUT"
        config["inputs"]["cmd"][0] = "0" * 32

    def missing_blob(config):  # d's output (record consistent in itself) is a blob the registry lacks
        record = config["record"]
        record["outputs"]["d.out"] = ["f" * 64, 2, False]
        record["output_digest"] = digest({"outputs": {n: o[0] for n, o in record["outputs"].items()},
                                          "metadata": record["metadata"]})

    def wrong_key(config):  # t's entry is another action's, filed under t's key
        config["key"] = "0" * 32

    raw.rewrite(key["//pkg:b#gen"], swap_output)
    raw.rewrite(key["//pkg:c#gen"], change_inputs)
    raw.rewrite(key["//pkg:d#gen"], missing_blob)
    raw.rewrite(key["//pkg:t#test"], wrong_key)

    ws2 = copy_workspace(ws1, tmp_path / "ws2", tmp_path / "ws2-cache")
    second = ws2.gb("test", "//...", "--json", "--remote-cache", remote)
    ok(second)
    tampered = {"//pkg:b#gen": "do not match its output digest", "//pkg:c#gen": "do not hash to its key",
                "//pkg:d#gen": "downloading sha256:ffffffff", "//pkg:t#test": "filed under the wrong key"}
    assert second.ran() == set(tampered)
    assert (by_id(second)["//pkg:a#gen"]["status"], by_id(second)["//pkg:a#gen"]["cache"]) == ("cached", "remote")
    for nid in tampered:
        assert by_id(second)[nid]["outputs"] == first[nid]["outputs"], nid
    out = ws2.root / "graphbuild-out/pkg"
    assert (out / "b.out").read_text() == "ALPHA\n"
    assert (out / "c.out").read_text() == "eta\nzeta\n"
    assert (out / "d.out").read_text().strip() == "2"

    warnings = [line for line in second.stderr.splitlines() if line.startswith("warning: remote cache")]
    for nid, why in tampered.items():
        assert [w for w in warnings if nid in w and why in w and "will run instead" in w], (nid, second.stderr)
    assert len(warnings) == len(tampered), warnings
    assert "Traceback" not in second.stderr

    # the second machine stored its own (good) results over the bad entries
    ws3 = copy_workspace(ws1, tmp_path / "ws3", tmp_path / "ws3-cache")
    third = ok(ws3.gb("test", "//...", "--json", "--remote-cache", remote))
    assert third.ran() == set()
    assert "warning" not in third.stderr
    assert (ws3.root / "graphbuild-out/pkg/b.out").read_text() == "ALPHA\n"


# -- an unavailable registry, read-only use --------------------------------------------------


def test_an_unavailable_remote_cache_warns_and_builds_locally(tmp_path):
    ws = genrule_workspace(tmp_path)
    result = ws.gb("build", "//...", "--json", "--remote-cache", "oci://127.0.0.1:1/x")
    assert result.exit_code == 0, result.stderr
    assert result.ran() == NODES - {"//pkg:t#test"}
    [warning] = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert "oci://127.0.0.1:1/x" in warning and "unavailable" in warning and "local cache only" in warning
    assert (ws.root / "graphbuild-out/pkg/b.out").read_text() == "ALPHA\n"

    required = ws.gb("build", "//...", "--remote-cache", "oci://127.0.0.1:1/x", "--remote-cache-required")
    assert required.exit_code == 2
    assert "remote cache oci://127.0.0.1:1/x is unavailable" in required.stderr
    assert "--remote-cache-required" in required.stderr  # the hint: how to go on without it
    assert "Traceback" not in required.stderr
    as_json = ws.gb("build", "//...", "--json", "--remote-cache", "oci://127.0.0.1:1/x", "--remote-cache-required")
    assert as_json.exit_code == 2
    assert "unavailable" in as_json.json["error"]["message"]

    bad = ws.gb("build", "//...", "--remote-cache", "http://127.0.0.1:5000/x")
    assert bad.exit_code == 2
    assert "oci://HOST[:PORT]/REPOSITORY" in bad.stderr


def test_the_environment_variable_configures_the_remote_cache(tmp_path, remote, monkeypatch):
    monkeypatch.setenv("GRAPHBUILD_REMOTE_CACHE", remote)
    ws1 = genrule_workspace(tmp_path)
    ok(ws1.gb("build", "//pkg:b"))
    ws2 = copy_workspace(ws1, tmp_path / "ws2", tmp_path / "ws2-cache")
    second = ok(ws2.gb("build", "//pkg:b", "--json"))
    assert {n["cache"] for n in second.json["nodes"]} == {"remote"}


def test_a_readonly_remote_cache_is_read_but_never_written(tmp_path, remote, monkeypatch):
    ws1 = genrule_workspace(tmp_path)
    ok(ws1.gb("build", "//pkg:a", "--remote-cache", remote))
    stored = set(tags(repository(remote)))
    assert len(stored) == 1

    # a read-only run: a is a remote hit, b, c, d run and are stored nowhere but locally
    ws2 = copy_workspace(ws1, tmp_path / "ws2", tmp_path / "ws2-cache")
    second = ok(ws2.gb("test", "//...", "--json", "--remote-cache", remote, "--remote-cache-readonly"))
    assert by_id(second)["//pkg:a#gen"]["cache"] == "remote"
    assert second.ran() == NODES - {"//pkg:a#gen"}
    assert set(tags(repository(remote))) == stored

    ws3 = copy_workspace(ws1, tmp_path / "ws3", tmp_path / "ws3-cache")
    third = ok(ws3.gb("test", "//...", "--json", "--remote-cache", remote))
    assert third.ran() == NODES - {"//pkg:a#gen"}
    assert by_id(third)["//pkg:a#gen"]["cache"] == "remote"

    monkeypatch.setenv("GRAPHBUILD_REMOTE_CACHE_READONLY", "1")
    ws4 = copy_workspace(ws1, tmp_path / "ws4", tmp_path / "ws4-cache")
    ws4.write("pkg/a.txt", "alpha 4\n")
    assert ok(ws4.gb("build", "//pkg:a", "--json", "--remote-cache", remote)).ran() == {"//pkg:a#gen"}
    assert len(tags(repository(remote))) == len(NODES)  # ws3's run stored; ws4's did not


# -- Python environments: layers, images and library tests ------------------------------------

ENVS = BASE + """
py_layer(name = "core", requirements = ["six==1.16.0"])

environment(name = "app", base = ":base", layers = [":core"], libraries = ["//libs/mylib"])
"""


@pytest.mark.network
def test_python_environment_layers_and_tests_come_from_the_remote_cache(tmp_path, remote):
    ws1 = Workspace(tmp_path / "ws1", tmp_path / "ws1-cache")
    link_base(ws1)
    ws1.write("envs/BUILD.envs", ENVS)
    write_library(ws1, "mylib", deps=("iniconfig==2.0.0",), module='def hello():\n    return "hi"\n',
                  test='from mylib import hello\n\n\ndef test_hello():\n    assert hello() == "hi"\n')
    ok(ws1.gb("lock", "//envs/..."))
    first = ok(ws1.gb("test", "//envs/...", "--json", "--remote-cache", remote))
    nodes = set(by_id(first))
    assert first.ran() == nodes
    assert "//envs:app#layer.core" in nodes and "//envs:app#test.mylib" in nodes
    assert by_id(first)["//envs:app#test.mylib"]["metadata"]["tests"] == 1

    ws2 = copy_workspace(ws1, tmp_path / "ws2", tmp_path / "ws2-cache")
    second = ok(ws2.gb("test", "//envs/...", "--json", "--remote-cache", remote))
    assert second.json["summary"]["ran"] == 0
    assert {nid: (n["status"], n["cache"]) for nid, n in by_id(second).items()} == dict.fromkeys(
        nodes, ("cached", "remote"))
    assert by_id(second)["//envs:app#image"]["metadata"]["digest"] == by_id(first)["//envs:app#image"][
        "metadata"]["digest"]
    assert by_id(second)["//envs:app#test.mylib"]["metadata"]["tests"] == 1

    # the library changes on the second machine: its wheel, layer, the image and its tests run
    (ws2.root / "libs/mylib/mylib/__init__.py").write_text('def hello():\n    return "hi"\n\n\nVERSION = 2\n')
    third = ok(ws2.gb("test", "//envs/...", "--json", "--remote-cache", remote))
    library_nodes = {"//libs/mylib:mylib#wheel", "//envs:app#lib.mylib", "//envs:app#image",
                     "//envs:app#image.test", "//envs:app#test.mylib"}
    assert third.ran() == library_nodes
    assert {by_id(third)[nid]["status"] for nid in nodes - library_nodes} == {"cached"}

    # a requirement changes (then --relock): the lock and the core layer run, not the library's
    build = ws2.root / "envs/BUILD.envs"
    build.write_text(build.read_text().replace('["six==1.16.0"]', '["six==1.16.0", "attrs==23.2.0"]'))
    stale = ws2.gb("test", "//envs/...", "--remote-cache", remote)
    assert stale.exit_code == 2 and "attrs==23.2.0" in stale.stderr
    fourth = ok(ws2.gb("test", "//envs/...", "--json", "--relock", "--remote-cache", remote))
    ran = fourth.ran()
    assert "//envs:app#layer.core" in ran and "//envs:app#image" in ran
    assert not ran & {"//libs/mylib:mylib#wheel", "//envs:app#lib.mylib", "//envs:base#import"}
    assert ran <= {"//envs:app#lock", "//envs:app#layer.core", "//envs:app#layer.venv", "//envs:app#image",
                   "//envs:app#image.test", "//envs:app#test.mylib"}
