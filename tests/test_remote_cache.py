"""The shared cache in a real OCI registry (`--remote-cache oci://HOST/REPO`), as two machines
see it: two copies of a workspace in different directories, each with its own local cache,
sharing one registry repository (a uuid in its name, so runs never see each other's entries).
Writers sign with a key graphbuild.toml trusts; attackers can push to the repository but hold
no trusted key.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import uuid
import zipfile
from pathlib import Path
from typing import Any

import pytest
import requests
from conftest import Result
from conftest import TestWorkspace as Workspace  # (not collected as a test class)
from docker_env import BASE, link_base, tags, write_library

from graphbuild.cache.signing import PublicKey, SigningKey
from graphbuild.keys import digest

pytestmark = pytest.mark.docker

SIGNING_KEY_FILE_ENV = "GRAPHBUILD_REMOTE_CACHE_SIGNING_KEY_FILE"


@pytest.fixture
def remote(registry: str) -> str:
    return f"oci://{registry}/gbcache-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def signing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> SigningKey:
    """The CI's key: every run of the test signs what it writes with it (through the environment)."""
    key = SigningKey.generate()
    path = tmp_path / "ci-signing.pem"
    path.write_bytes(key.pem())
    monkeypatch.setenv(SIGNING_KEY_FILE_ENV, str(path))
    return key


def trust(ws: Workspace, *keys: PublicKey) -> None:
    """graphbuild.toml of `ws` trusts exactly `keys`."""
    lines = ", ".join(f'"{key.line()}"' for key in keys)
    ws.write("graphbuild.toml", f"[cache]\ntrusted_keys = [{lines}]\n")


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


def genrule_workspace(tmp_path: Path, key: SigningKey, name: str = "ws1") -> Workspace:
    ws = Workspace(tmp_path / name, tmp_path / f"{name}-cache")
    trust(ws, key.public)
    ws.write("pkg/BUILD.envs", GENRULES)
    ws.write("pkg/a.txt", "alpha\n")
    ws.write("pkg/c.txt", "zeta\neta\n")
    return ws


def test_a_second_machine_gets_every_result_from_the_remote_cache(tmp_path, remote, signing):
    ws1 = genrule_workspace(tmp_path, signing)
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


def test_why_names_the_remote_cache_a_result_came_from(tmp_path, remote, signing):
    ws1 = genrule_workspace(tmp_path, signing)
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


# -- forged and tampered entries ---------------------------------------------------------------


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

    def config(self, key: str) -> dict[str, Any]:
        return json.loads(self.blob(self.manifest(f"gb-{key}")["config"]["digest"]))

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

    def rewrite(self, key: str, change, *, sign_with: SigningKey | None = None, layers=()) -> None:
        """Replace the config (record, key, inputs, signature) of entry gb-<key> by `change(config)`;
        re-signed with `sign_with` when given (else the old signature stays); `layers` added."""
        manifest = self.manifest(f"gb-{key}")
        config = json.loads(self.blob(manifest["config"]["digest"]))
        change(config)
        if sign_with is not None:
            config["signature"] = sign_with.sign(config["key"], config["record"], config["inputs"])
        data = json.dumps(config, sort_keys=True).encode()
        manifest["config"] = {**manifest["config"], "digest": self.put_blob(data), "size": len(data)}
        manifest["layers"] = [*manifest["layers"], *layers]
        put = requests.put(f"{self.base}/manifests/gb-{key}", data=json.dumps(manifest).encode(), timeout=30,
                           headers={"Content-Type": manifest["mediaType"]})
        assert put.status_code == 201, put.text


def outputs_digest(record: dict[str, Any]) -> str:
    """The output digest graphbuild computes for a record (what a forger recomputes)."""
    return digest({"outputs": {n: o[0] for n, o in record["outputs"].items()}, "metadata": record["metadata"]})


def remote_warnings(result: Result) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.startswith("warning: remote cache")]


def test_entries_are_signed_by_the_writer(tmp_path, remote, signing):
    ws1 = genrule_workspace(tmp_path, signing)
    first = by_id(ok(ws1.gb("build", "//pkg:b", "--json", "--remote-cache", remote)))
    config = RawRegistry(remote).config(first["//pkg:b#gen"]["key"])
    assert config["signature"]["key_id"] == signing.public.key_id
    assert config["signature"]["algorithm"] == "ed25519"
    pem = signing.pem().decode()
    assert "".join(pem.splitlines()[1:-1]) not in json.dumps(config)


def test_a_record_forged_without_the_key_is_never_used(tmp_path, remote, signing):
    """The measured attack: push access, no key; a modified output re-filed under the right key
    with its output digest recomputed (a self-consistent record)."""
    ws1 = genrule_workspace(tmp_path, signing)
    first = by_id(ok(ws1.gb("test", "//...", "--json", "--remote-cache", remote)))
    raw = RawRegistry(remote)
    key = {nid: first[nid]["key"] for nid in first}
    injected = b"ALPHA\nINJECTED\n"
    injected_sha = raw.put_blob(injected).removeprefix("sha256:")
    layer = {"mediaType": "application/octet-stream", "digest": f"sha256:{injected_sha}", "size": len(injected)}

    def forge(output: str):
        def change(config):
            record = config["record"]
            record["outputs"][output] = [injected_sha, len(injected), False]
            record["output_digest"] = outputs_digest(record)
        return change

    attacker = SigningKey.generate()  # a key of the attacker's own, which graphbuild.toml does not list
    raw.rewrite(key["//pkg:b#gen"], forge("b.out"), layers=[layer])  # the writer's signature kept
    raw.rewrite(key["//pkg:c#gen"], lambda config: (forge("c.out")(config), config.pop("signature")),
                layers=[layer])  # unsigned
    raw.rewrite(key["//pkg:d#gen"], forge("d.out"), sign_with=attacker, layers=[layer])

    ws2 = copy_workspace(ws1, tmp_path / "ws2", tmp_path / "ws2-cache")  # an empty local cache
    second = ok(ws2.gb("test", "//...", "--json", "--remote-cache", remote))
    refused = {"//pkg:b#gen": "has a bad signature", "//pkg:c#gen": "is unsigned",
               "//pkg:d#gen": f"is signed by key '{attacker.public.key_id}', which graphbuild.toml"}
    assert second.ran() == set(refused)
    nodes = by_id(second)
    assert (nodes["//pkg:a#gen"]["status"], nodes["//pkg:a#gen"]["cache"]) == ("cached", "remote")
    assert (nodes["//pkg:t#test"]["status"], nodes["//pkg:t#test"]["cache"]) == ("cached", "remote")
    for nid in refused:
        assert nodes[nid]["outputs"] == first[nid]["outputs"], nid
    out = ws2.root / "graphbuild-out/pkg"
    assert (out / "b.out").read_text() == "ALPHA\n"
    assert (out / "c.out").read_text() == "eta\nzeta\n"
    assert (out / "d.out").read_text().strip() == "2"
    assert (ws2.cache / "blobs/sha256" / first["//pkg:a#gen"]["outputs"]["a.out"]).is_file()
    assert not (ws2.cache / "blobs/sha256" / injected_sha).exists()  # the forged blob was not even fetched
    warnings = remote_warnings(second)
    assert len(warnings) == len(refused), warnings
    for nid, why in refused.items():
        assert [w for w in warnings if f"entry gb-{key[nid]} {why}" in w and f"{nid} will run instead" in w], (
            nid, warnings)
    assert "Traceback" not in second.stderr


def test_a_record_signed_by_a_key_no_longer_trusted_is_ignored(tmp_path, remote, signing):
    """Rotation: entries of the old key are read while both keys are listed, ignored (and
    reported) once the old one is removed; the new key's entries replace them."""
    old = SigningKey.generate()
    ws1 = genrule_workspace(tmp_path, signing)
    trust(ws1, old.public)
    (tmp_path / "old.pem").write_bytes(old.pem())
    first = by_id(ok(ws1.gb("build", "//pkg:a", "--json", "--remote-cache", remote,
                            "--remote-cache-signing-key", str(tmp_path / "old.pem"))))
    ws2 = copy_workspace(ws1, tmp_path / "ws2", tmp_path / "ws2-cache")
    trust(ws2, old.public, signing.public)
    both = ok(ws2.gb("build", "//pkg:a", "--json", "--remote-cache", remote))
    assert by_id(both)["//pkg:a#gen"]["cache"] == "remote" and not remote_warnings(both)

    ws3 = copy_workspace(ws1, tmp_path / "ws3", tmp_path / "ws3-cache")
    trust(ws3, signing.public)
    new_only = ok(ws3.gb("build", "//pkg:a", "--json", "--remote-cache", remote))
    assert new_only.ran() == {"//pkg:a#gen"}
    [warning] = remote_warnings(new_only)
    assert f"entry gb-{first['//pkg:a#gen']['key']} is signed by key '{old.public.key_id}'" in warning
    assert "//pkg:a#gen will run instead" in warning

    ws4 = copy_workspace(ws3, tmp_path / "ws4", tmp_path / "ws4-cache")  # ws3 re-signed it with the new key
    again = ok(ws4.gb("build", "//pkg:a", "--json", "--remote-cache", remote))
    assert by_id(again)["//pkg:a#gen"]["cache"] == "remote" and not remote_warnings(again)


def test_a_trusted_writers_bad_entries_are_still_checked(tmp_path, remote, signing):
    """Defence in depth: entries signed by the trusted key (a writer's bug, a stolen key) are
    still checked against the key they are filed under and the blobs they name."""
    ws1 = genrule_workspace(tmp_path, signing)
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
        record["output_digest"] = outputs_digest(record)

    def wrong_key(config):  # t's entry is another action's, filed under t's key
        config["key"] = "0" * 32

    for nid, change in (("//pkg:b#gen", swap_output), ("//pkg:c#gen", change_inputs),
                        ("//pkg:d#gen", missing_blob), ("//pkg:t#test", wrong_key)):
        raw.rewrite(key[nid], change, sign_with=signing)

    ws2 = copy_workspace(ws1, tmp_path / "ws2", tmp_path / "ws2-cache")
    second = ok(ws2.gb("test", "//...", "--json", "--remote-cache", remote))
    tampered = {"//pkg:b#gen": "do not match its output digest", "//pkg:c#gen": "do not hash to its key",
                "//pkg:d#gen": "output blob sha256:ffffffffffffffff failed verification",
                "//pkg:t#test": "filed under the wrong key"}
    assert second.ran() == set(tampered)
    assert (by_id(second)["//pkg:a#gen"]["status"], by_id(second)["//pkg:a#gen"]["cache"]) == ("cached", "remote")
    for nid in tampered:
        assert by_id(second)[nid]["outputs"] == first[nid]["outputs"], nid
    out = ws2.root / "graphbuild-out/pkg"
    assert (out / "b.out").read_text() == "ALPHA\n"
    assert (out / "c.out").read_text() == "eta\nzeta\n"
    assert (out / "d.out").read_text().strip() == "2"

    warnings = remote_warnings(second)
    for nid, why in tampered.items():
        assert [w for w in warnings if f"gb-{key[nid]}" in w and why in w and f"{nid} will run instead" in w], (
            nid, second.stderr)
    assert len(warnings) == len(tampered), warnings
    assert "Traceback" not in second.stderr

    # the second machine stored its own (good) results over the bad entries
    ws3 = copy_workspace(ws1, tmp_path / "ws3", tmp_path / "ws3-cache")
    third = ok(ws3.gb("test", "//...", "--json", "--remote-cache", remote))
    assert third.ran() == set()
    assert "warning" not in third.stderr
    assert (ws3.root / "graphbuild-out/pkg/b.out").read_text() == "ALPHA\n"


def registry_blob_file(sha: str) -> Path:
    """Where the loopback registry (scripts/services.sh) keeps a blob's bytes."""
    state = Path(os.environ.get("GRAPHBUILD_STATE", "/var/lib/graphbuild-services"))
    return state / "registry/docker/registry/v2/blobs/sha256" / sha[:2] / sha / "data"


def test_a_blob_corrupted_in_the_registry_is_rejected_rebuilt_and_repaired(tmp_path, remote, signing):
    ws1 = genrule_workspace(tmp_path, signing)
    unique = uuid.uuid4().hex  # blobs are shared by every repository of the registry: corrupt only ours
    ws1.write("pkg/a.txt", f"alpha {unique}\n")
    first = by_id(ok(ws1.gb("test", "//...", "--json", "--remote-cache", remote)))
    b_sha = first["//pkg:b#gen"]["outputs"]["b.out"]
    stored = registry_blob_file(b_sha)
    if not stored.is_file():
        pytest.skip(f"the registry's storage is not at {stored} on this machine")
    data = bytearray(stored.read_bytes())
    data[0] ^= 0x20  # same size: "ALPHA" -> "aLPHA"
    stored.write_bytes(bytes(data))
    raw = RawRegistry(remote)
    assert hashlib.sha256(raw.blob(f"sha256:{b_sha}")).hexdigest() != b_sha  # the registry serves it corrupt

    b_key = first["//pkg:b#gen"]["key"]
    expected_b = f"ALPHA {unique.upper()}\n"

    def reader(name: str, *options: str) -> Result:
        ws = copy_workspace(ws1, tmp_path / name, tmp_path / f"{name}-cache")
        result = ok(ws.gb("test", "//...", "--json", "--remote-cache", remote, *options))
        assert (ws.root / "graphbuild-out/pkg/b.out").read_text() == expected_b
        return result

    # a read-only reader: rejects it, rebuilds b, writes nothing
    readonly = reader("ro", "--remote-cache-readonly")
    assert readonly.ran() == {"//pkg:b#gen"}
    [warning] = remote_warnings(readonly)
    assert f"entry gb-{b_key}: output blob sha256:{b_sha[:16]} failed verification" in warning
    assert "arrived corrupt" in warning and "//pkg:b#gen will run instead" in warning
    assert raw.manifest(f"gb-{b_key}")["layers"][0]["digest"] == f"sha256:{b_sha}"

    # the next writer: rejects it, rebuilds b, and stores it again under a digest the registry never held
    writer = reader("w")
    assert writer.ran() == {"//pkg:b#gen"}
    assert len(remote_warnings(writer)) == 1
    [layer] = raw.manifest(f"gb-{b_key}")["layers"]
    assert layer["digest"] != f"sha256:{b_sha}"
    assert layer["annotations"] == {"dev.graphbuild.content.digest": f"sha256:{b_sha}"}
    assert expected_b.encode() in raw.blob(layer["digest"])

    # every later machine: all from the registry, nothing to report
    later = reader("later")
    assert later.ran() == set(), later.stderr
    assert not remote_warnings(later)
    assert {n["cache"] for n in later.json["nodes"]} == {"remote"}


def test_without_trusted_keys_or_a_signing_key_nothing_is_read_or_written(tmp_path, remote, signing, monkeypatch):
    ws1 = genrule_workspace(tmp_path, signing)
    ok(ws1.gb("build", "//pkg:a", "--remote-cache", remote))
    assert len(tags(repository(remote))) == 1

    untrusting = copy_workspace(ws1, tmp_path / "ws2", tmp_path / "ws2-cache")
    untrusting.write("graphbuild.toml", "")
    result = ok(untrusting.gb("build", "//...", "--json", "--remote-cache", remote))
    assert result.ran() == NODES - {"//pkg:t#test"}  # a's entry is not even looked at
    [no_keys, not_trusted] = sorted(remote_warnings(result), key=lambda w: "lists no" not in w)
    assert "lists no [cache] trusted_keys, so no result is read" in no_keys
    assert "is not in [cache] trusted_keys" in not_trusted
    assert len(tags(repository(remote))) == 4  # it still writes, signed

    monkeypatch.delenv(SIGNING_KEY_FILE_ENV)
    keyless = copy_workspace(ws1, tmp_path / "ws3", tmp_path / "ws3-cache")
    keyless.write("pkg/c.txt", "new\n")
    result = ok(keyless.gb("build", "//...", "--json", "--remote-cache", remote))
    assert result.ran() == {"//pkg:c#gen", "//pkg:d#gen"}
    assert by_id(result)["//pkg:a#gen"]["cache"] == "remote"
    [warning] = result.stderr.splitlines()
    assert "no signing key" in warning and "nothing is written to it" in warning
    assert "GRAPHBUILD_REMOTE_CACHE_READONLY=1" in warning
    assert len(tags(repository(remote))) == 4
    quiet = ok(keyless.gb("build", "//...", "--remote-cache", remote, "--remote-cache-readonly"))
    assert "warning" not in quiet.stderr


def test_the_signing_key_never_reaches_a_node(tmp_path, remote, monkeypatch):
    key = SigningKey.generate()
    text = "".join(key.pem().decode().splitlines()[1:-1])  # one line, as a masked CI variable holds it
    monkeypatch.setenv("GRAPHBUILD_REMOTE_CACHE_SIGNING_KEY", text)
    ws = Workspace(tmp_path / "ws", tmp_path / "cache")
    trust(ws, key.public)
    ws.write("pkg/BUILD.envs", 'genrule(name = "env", outs = ["env.out"], cmd = "env > $OUT; cat /proc/$$/environ '
                               '>> $OUT")\n')
    result = ok(ws.gb("build", "//pkg:env", "--json", "--remote-cache", remote, "-v"))
    assert text not in (ws.root / "graphbuild-out/pkg/env.out").read_text()
    assert text not in result.stdout + result.stderr
    assert "GRAPHBUILD_REMOTE_CACHE_SIGNING_KEY" not in os.environ
    config = RawRegistry(remote).config(by_id(result)["//pkg:env#gen"]["key"])
    assert config["signature"]["key_id"] == key.public.key_id  # it did sign with it
    assert text not in json.dumps(config)


# -- an unavailable registry, read-only use --------------------------------------------------


def test_an_unavailable_remote_cache_warns_and_builds_locally(tmp_path, signing):
    ws = genrule_workspace(tmp_path, signing)
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


def test_the_environment_variable_configures_the_remote_cache(tmp_path, remote, signing, monkeypatch):
    monkeypatch.setenv("GRAPHBUILD_REMOTE_CACHE", remote)
    ws1 = genrule_workspace(tmp_path, signing)
    ok(ws1.gb("build", "//pkg:b"))
    ws2 = copy_workspace(ws1, tmp_path / "ws2", tmp_path / "ws2-cache")
    second = ok(ws2.gb("build", "//pkg:b", "--json"))
    assert {n["cache"] for n in second.json["nodes"]} == {"remote"}


def test_a_readonly_remote_cache_is_read_but_never_written(tmp_path, remote, signing, monkeypatch):
    ws1 = genrule_workspace(tmp_path, signing)
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


def forge_wheel(raw: RawRegistry, key: str) -> str:
    """Re-file entry gb-<key> (a wheel node) with a wheel whose module has one line added, its
    output sha256, size and output digest recomputed, the writer's signature left as it was."""
    config = raw.config(key)
    wheel_sha, _, executable = config["record"]["outputs"]["wheel"]
    source = zipfile.ZipFile(io.BytesIO(raw.blob(f"sha256:{wheel_sha}")))
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as forged:
        for info in source.infolist():
            data = source.read(info)
            if info.filename.endswith("mylib/__init__.py"):
                data += b"\nimport os; os.system('echo owned')\n"
            forged.writestr(info, data)
    data = buffer.getvalue()
    forged_sha = raw.put_blob(data).removeprefix("sha256:")

    def change(config):
        record = config["record"]
        record["outputs"]["wheel"] = [forged_sha, len(data), executable]
        record["output_digest"] = outputs_digest(record)

    raw.rewrite(key, change, layers=[{"mediaType": "application/octet-stream", "digest": f"sha256:{forged_sha}",
                                      "size": len(data)}])
    return forged_sha


ENVS = BASE + """
py_layer(name = "core", requirements = ["six==1.16.0"])

environment(name = "app", base = ":base", layers = [":core"], libraries = ["//libs/mylib"])
"""


@pytest.mark.network
def test_python_environment_layers_and_tests_come_from_the_remote_cache(tmp_path, remote, signing):
    ws1 = Workspace(tmp_path / "ws1", tmp_path / "ws1-cache")
    trust(ws1, signing.public)
    link_base(ws1)
    ws1.write("envs/BUILD.envs", ENVS)
    write_library(ws1, "mylib", deps=("iniconfig==2.0.0",), module='def hello():\n    return "hi"\n',
                  test='from mylib import hello\n\n\ndef test_hello():\n    assert hello() == "hi"\n')
    ok(ws1.gb("lock", "//envs/..."))
    first = ok(ws1.gb("test", "//envs/...", "--json", "--remote-cache", remote))
    nodes = set(by_id(first))
    assert first.ran() == nodes
    assert "//envs:app#pkg.six" in nodes and "//envs:app#test.mylib" in nodes
    assert by_id(first)["//envs:app#test.mylib"]["metadata"]["tests"] == 1

    ws2 = copy_workspace(ws1, tmp_path / "ws2", tmp_path / "ws2-cache")
    second = ok(ws2.gb("test", "//envs/...", "--json", "--remote-cache", remote))
    assert second.json["summary"]["ran"] == 0
    assert {nid: (n["status"], n["cache"]) for nid, n in by_id(second).items()} == dict.fromkeys(
        nodes, ("cached", "remote"))
    assert by_id(second)["//envs:app#image"]["metadata"]["digest"] == by_id(first)["//envs:app#image"][
        "metadata"]["digest"]
    assert by_id(second)["//envs:app#test.mylib"]["metadata"]["tests"] == 1

    # The measured attack: the wheel re-filed with one line added and its digests recomputed,
    # by someone who can push to the repository but holds no trusted key.
    wheel_id = "//libs/mylib:mylib#wheel"
    forged_sha = forge_wheel(RawRegistry(remote), by_id(first)[wheel_id]["key"])
    ws3 = copy_workspace(ws1, tmp_path / "ws3", tmp_path / "ws3-cache")  # an empty local cache
    forged = ok(ws3.gb("test", "//envs/...", "--json", "--remote-cache", remote))
    assert forged.ran() == {wheel_id}  # the same wheel rebuilt: everything downstream still from the registry
    assert by_id(forged)[wheel_id]["outputs"] == by_id(first)[wheel_id]["outputs"]
    assert by_id(forged)["//envs:app#image"]["metadata"]["digest"] == by_id(first)["//envs:app#image"][
        "metadata"]["digest"]
    assert not (ws3.cache / "blobs/sha256" / forged_sha).exists()
    [warning] = remote_warnings(forged)
    assert f"entry gb-{by_id(first)[wheel_id]['key']} has a bad signature" in warning
    assert f"{wheel_id} will run instead" in warning

    # the library changes on the second machine: its wheel, layer, the image and its tests run
    (ws2.root / "libs/mylib/mylib/__init__.py").write_text('def hello():\n    return "hi"\n\n\nVERSION = 2\n')
    third = ok(ws2.gb("test", "//envs/...", "--json", "--remote-cache", remote))
    library_nodes = {"//libs/mylib:mylib#wheel", "//envs:app#lib.mylib", "//envs:app#compress.lib.mylib",
                     "//envs:app#image", "//envs:app#sbom", "//envs:app#out", "//envs:app#image.test",
                     "//envs:app#test.mylib"}
    assert third.ran() == library_nodes
    assert {by_id(third)[nid]["status"] for nid in nodes - library_nodes} == {"cached"}

    # a requirement changes (then --relock): the lock and the core layer run, not the library's
    build = ws2.root / "envs/BUILD.envs"
    build.write_text(build.read_text().replace('["six==1.16.0"]', '["six==1.16.0", "attrs==23.2.0"]'))
    stale = ws2.gb("test", "//envs/...", "--remote-cache", remote)
    assert stale.exit_code == 2 and "attrs==23.2.0" in stale.stderr
    fourth = ok(ws2.gb("test", "//envs/...", "--json", "--relock", "--remote-cache", remote))
    ran = fourth.ran()
    assert "//envs:app#pkg.attrs" in ran and "//envs:app#image" in ran
    assert not ran & {"//libs/mylib:mylib#wheel", "//envs:app#lib.mylib", "//envs:base#import"}
    assert ran <= {"//envs:app#lock", "//envs:app#pkg.attrs", "//envs:app#compress.pkg.attrs", "//envs:app#out",
                   "//envs:app#layer.venv", "//envs:app#image", "//envs:app#sbom", "//envs:app#image.test",
                   "//envs:app#test.mylib"}


@pytest.mark.network
def test_every_key_is_the_same_in_another_checkout_with_its_own_cache_and_home(tmp_path, registry, monkeypatch):
    """What a shared cache relies on: the same sources give the same keys wherever they are
    checked out. Both checkouts run everything themselves (no shared cache): the tests run
    twice, with other timings in their reports, and the push that follows them keeps its key."""
    ws1 = Workspace(tmp_path / "ws1", tmp_path / "ws1-cache")
    link_base(ws1)
    ws1.write("envs/BUILD.envs", ENVS.replace('libraries = ["//libs/mylib"])',
                                              f'libraries = ["//libs/mylib"], push = "{registry}/portable/app")'))
    write_library(ws1, "mylib", module='def hello():\n    return "hi"\n',
                  test='from mylib import hello\n\n\ndef test_hello():\n    assert hello() == "hi"\n')
    ok(ws1.gb("lock", "//envs/..."))
    first = ok(ws1.gb("run", "//envs/...", "--json"))
    ws2 = copy_workspace(ws1, tmp_path / "elsewhere" / "deeper" / "checkout", tmp_path / "other-cache")
    monkeypatch.setenv("HOME", str(tmp_path / "other-home"))
    monkeypatch.setenv("TMPDIR", str(tmp_path / "other-tmp"))
    (tmp_path / "other-tmp").mkdir()
    second = ok(ws2.gb("run", "//envs/...", "--json"))
    keys1 = {nid: n["key"] for nid, n in by_id(first).items()}
    keys2 = {nid: n["key"] for nid, n in by_id(second).items()}
    assert "//envs:app#push" in keys1 and "//envs:app#test.mylib" in keys1
    assert second.ran() == set(keys2)  # nothing shared: every node ran again
    assert {nid for nid in keys1 if keys1[nid] != keys2.get(nid)} == set()
