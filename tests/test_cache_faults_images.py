"""Cache faults on the real parts (Docker engine, registry, package index): a same-size edit of
a library with its mtime restored reruns the library's tests in the image, and a corrupt layer
blob is rebuilt by its producer alone, every node reading it then reading the repair."""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import uuid
from pathlib import Path

import pytest
from docker_env import BASE, link_base, nodes, ok, unique_repository, write_library

from graphbuild.cache import files as file_digests

pytestmark = [pytest.mark.docker, pytest.mark.network]


@pytest.fixture(scope="module", autouse=True)
def services(registry: str) -> None:
    """The engine, the registry and the base tarball (conftest's fixture starts them)."""


# a unique `env` makes a unique image: removing it from the engine touches nobody else's
WORKSPACE = BASE + """
py_layer(name = "core", requirements = ["six==1.16.0"])

environment(
    name = "a",
    base = ":base",
    layers = [":core"],
    libraries = ["//libs/mylib"],
    push = "{prefix}/a:v1",
    env = {{"GB_TEST_UNIQUE": "{unique}"}},
)
"""
A = "//envs:a"


def _workspace(ws) -> str:
    prefix = unique_repository("gbfaults")
    link_base(ws)
    ws.write("envs/BUILD.envs", WORKSPACE.format(prefix=prefix, unique=uuid.uuid4().hex))
    write_library(ws, "mylib", module="VALUE = 1\n",
                  test="import six\nfrom mylib import VALUE\n\n\ndef test_value():\n    assert VALUE == 1\n")
    ok(ws.gb("lock", "//envs/..."))
    return prefix


def test_a_same_size_edit_of_a_library_with_its_mtime_restored_reruns_its_tests_in_the_image(ws, monkeypatch):
    monkeypatch.setattr(file_digests, "_RACY_NS", 0)  # files written seconds ago count as old
    _workspace(ws)
    first = ok(ws.gb("test", A, "--json"))
    assert nodes(first)[f"{A}#test.mylib"]["status"] == "ran"

    source = ws.root / "libs/mylib/mylib/__init__.py"
    before = source.stat()
    source.write_text("VALUE = 2\n")  # same size
    os.utime(source, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert (source.stat().st_size, source.stat().st_mtime_ns) == (before.st_size, before.st_mtime_ns)

    second = ws.gb("test", A, "--json")
    assert second.exit_code == 1, second.stderr
    found = nodes(second)
    assert found[f"{A}#test.mylib"]["status"] == "failed"
    assert "test_value" in found[f"{A}#test.mylib"]["message"]
    assert found["//libs/mylib:mylib#wheel"]["status"] == "ran"


def test_a_corrupt_layer_blob_is_rebuilt_by_its_producer_alone_and_every_reader_reads_the_repair(ws):
    import docker

    _workspace(ws)
    first = ok(ws.gb("run", A, "--json"))
    found = nodes(first)
    producer = f"{A}#pkg.six"  # six's package node: its tar is a layer of the image
    sha = found[producer]["outputs"]["layer.tar"]
    image_id = found[f"{A}#load"]["metadata"]["image_id"]

    client = docker.from_env()
    client.images.remove(image_id, force=True)  # so that #load must read the layers again
    try:
        _repaired(ws, client, found, producer, sha, image_id)
    finally:  # the image is this test's own (a unique env): leave the shared engine as it was
        with contextlib.suppress(docker.errors.APIError):
            client.images.remove(image_id, force=True)


def _repaired(ws, client, found, producer, sha, image_id):
    blob = ws.cache / "blobs" / "sha256" / sha
    data = bytearray(blob.read_bytes())
    data[len(data) // 2] ^= 0x01  # same size, one bit
    os.chmod(blob, 0o644)
    blob.write_bytes(bytes(data))

    second = ws.gb("run", A)
    assert second.exit_code == 0, second.stderr
    text = second.stderr
    assert text.count("corrupt blob") == 1 and producer in text
    assert f"rebuilt {producer}" in text
    ran = {m.group(1) for m in re.finditer(r"^\[\s*\d+/\d+\] ran\s+(\S+)", text, re.M)}
    assert ran == {f"{A}#load", f"{A}#push"}  # the non-cacheable ones, which always run
    started = {m.group(1) for m in re.finditer(r"^\[\s*\d+/\d+\] running\s+(\S+)", text, re.M)}
    assert started - {f"{A}#load", f"{A}#push"} == {producer}  # nothing else was rebuilt
    total = len(found)
    counters = [tuple(map(int, m.groups())) for m in re.finditer(r"^\[\s*(\d+)/(\d+)\]", text, re.M)]
    assert all(done <= count == total for done, count in counters), text
    assert len(re.findall(r"^\[\s*\d+/\d+\] (?:ran|cached)\s", text, re.M)) == total

    assert hashlib.sha256(Path(blob).read_bytes()).hexdigest() == sha
    # the engine loaded the image from the repaired layer (it checks each layer against the
    # config's diff_ids) and the image works
    image = client.images.get(image_id)
    assert f"sha256:{sha}" in image.attrs["RootFS"]["Layers"]
    output = client.containers.run(image_id, ["python", "-c", "import six, mylib; print(mylib.VALUE)"],
                                   network_mode="none", remove=True)
    assert output.strip() == b"1"

    third = ok(ws.gb("run", A, "--json"))
    assert {nid for nid, n in nodes(third).items() if n["status"] == "ran"} == {f"{A}#load", f"{A}#push"}
