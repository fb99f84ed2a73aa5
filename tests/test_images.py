"""Images end to end against a real Docker engine and a real registry.

`scripts/workspace-env.sh` starts (idempotently) dockerd, a registry on 127.0.0.1 and a
Debian+Python base tarball; its exports are set for the whole session. Workspaces are small
and use tiny pinned wheels (through uv, so they need the package index), except the first
test, which runs the repository's example workspace. Every test pushes to registry
repositories of its own (a uuid in the name), so runs never see each other's pushes.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from docker_env import (
    BASE,
    blob_sizes,
    copy_example,
    image_digest,
    image_tags,
    link_base,
    manifest,
    manifest_digest,
    nodes,
    ok,
    registry,
    tags,
    unique_repository,
    write_library,
)

if TYPE_CHECKING:
    from conftest import TestWorkspace

pytestmark = [pytest.mark.docker, pytest.mark.network]


@pytest.fixture(scope="session", autouse=True)
def services(registry: str) -> None:
    """Every test here needs the engine, the registry and the base tarball (conftest's fixture
    starts them and sets DOCKER_HOST, GRAPHBUILD_REGISTRY, GRAPHBUILD_BASE_TARBALL)."""


def workspace(root: Path, cache: Path) -> TestWorkspace:
    from conftest import TestWorkspace

    return TestWorkspace(root, cache)


# -- a small workspace: two environments over one layer, one library -------------------------

SMALL = BASE + """
py_layer(name = "core", requirements = ["six==1.16.0"])

py_layer(name = "extra", over = [":core"], requirements = ["attrs==23.2.0"])

environment(
    name = "a",
    base = ":base",
    layers = [":core"],
    libraries = ["//libs/mylib"],
    push = "{prefix}/a:v1",
)

environment(
    name = "b",
    base = ":base",
    layers = [":extra"],
    libraries = ["//libs/mylib"],
    push = "{prefix}/b:v1",
)
"""

A, B = "//envs:a", "//envs:b"


def write_small(ws: TestWorkspace, prefix: str) -> None:
    link_base(ws)
    ws.write("envs/BUILD.envs", SMALL.format(prefix=prefix))
    write_library(ws, "mylib", deps=("iniconfig==2.0.0",),
                  module='def hello():\n    return "hi"\n',
                  test='from mylib import hello\n\n\ndef test_hello():\n    assert hello() == "hi"\n')
    ok(ws.gb("lock", "//envs/..."))


@pytest.fixture(scope="module")
def small(tmp_path_factory) -> tuple[TestWorkspace, str]:
    """The small workspace, locked; nothing built (each test brings its own cache). Its push
    repositories are never pushed to."""
    tmp = tmp_path_factory.mktemp("small")
    ws = workspace(tmp / "ws", tmp / "unused-cache")
    prefix = unique_repository()
    write_small(ws, prefix)
    return ws, prefix


def started(text: str, nid: str) -> bool:
    """Whether the human output has a `[i/n] running NODE` line for the node."""
    return any(line.split()[-2:] == ["running", nid] for line in text.splitlines())


def with_cache(ws: TestWorkspace, cache: Path) -> TestWorkspace:
    return workspace(ws.root, cache)


@pytest.fixture(scope="module")
def pushed(tmp_path_factory):
    """Another copy of the small workspace (its own repositories) after `graphbuild run //envs:a`."""
    tmp = tmp_path_factory.mktemp("pushed")
    ws = workspace(tmp / "ws", tmp / "cache")
    prefix = unique_repository()
    write_small(ws, prefix)
    result = ok(ws.gb("run", A, "--json"))
    return ws, prefix, result


# 1. the example workspace: build, test (shared across environments), push, and run the image


def test_example_workspace_runs_end_to_end_and_the_pushed_image_works(tmp_path):
    root = tmp_path / "example"
    copy_example(root)
    prefix = unique_repository("gbexample")
    build = root / "envs" / "BUILD.envs"
    text = build.read_text()
    assert text.count('push = "graphbuild-examples/') == 4
    build.write_text(text.replace('push = "graphbuild-examples/', f'push = "{prefix}/'))
    ws = workspace(root, tmp_path / "cache")

    # the push destination is not part of the lock spec: the committed locks still hold
    result = ws.gb("run", "//envs/...", "--json")
    assert result.exit_code == 0, result.stderr + result.stdout
    found = nodes(result)
    envs = sorted(nid.split("#")[0] for nid in found if nid.endswith("#image"))
    assert envs == ["//envs:dev", "//envs:ml", "//envs:prod", "//envs:research"]
    assert {nid: found[f"{nid}#image"]["status"] for nid in envs} == dict.fromkeys(envs, "ran")

    test_nodes = {nid: n for nid, n in found.items() if "#test." in nid}
    libraries = {nid.split("#test.")[1] for nid in test_nodes}
    assert libraries == {"textstats", "featurize", "research_tools", "jobconfig", "legacyconf", "classify"}
    # one test node per (environment, library): textstats and featurize everywhere, jobconfig and
    # legacyconf in prod, classify in ml, research_tools in research
    assert len(test_nodes) == len(envs) * 2 + 4
    assert {n["status"] for n in test_nodes.values()} <= {"ran", "cached"}, {
        nid: (n["status"], n["message"]) for nid, n in test_nodes.items()}
    ran_tests = [nid for nid, n in test_nodes.items() if n["status"] == "ran"]
    assert 0 < len(ran_tests) < len(test_nodes), ran_tests
    for nid, n in test_nodes.items():
        if n["status"] == "cached":  # a result of the same library's tests in another environment
            source = n["cached_from"]
            assert source and source != nid and source.endswith("#test." + nid.split("#test.")[1]), (nid, source)

    for env in envs:
        push = found[f"{env}#push"]
        assert push["status"] == "ran", push
        name = env.split(":")[1]
        assert push["metadata"]["reference"] == f"{registry()}/{prefix}/{name}:latest"
        assert push["metadata"]["digest"] == found[f"{env}#image"]["metadata"]["digest"]
        assert image_digest(f"{prefix}/{name}", "latest") == push["metadata"]["digest"]
        assert manifest_digest(f"{prefix}/{name}", "latest") == push["metadata"]["tag_digest"]

    import docker

    client = docker.from_env()
    ref = f"{registry()}/{prefix}/prod:latest"
    try:
        client.images.pull(ref)
        output = client.containers.run(
            ref, ["python", "-c", "import numpy, requests, pydantic, textstats, featurize; print('imported')"],
            network_mode="none", remove=True)
        assert b"imported" in output
    finally:
        try:
            client.images.remove(ref)  # only the tag: graphbuild's own tags keep the image
        except docker.errors.APIError:
            pass


# 2. one library's tests, shared by two environments that agree on its closure


def test_second_environment_reuses_the_first_ones_library_test_result(small, tmp_path):
    ws = with_cache(small[0], tmp_path / "cache")
    first = ok(ws.gb("test", A, "--json"))
    assert nodes(first)[f"{A}#test.mylib"]["status"] == "ran"
    assert nodes(first)[f"{A}#test.mylib"]["metadata"]["tests"] == 1

    second = ok(ws.gb("test", B, "--json"))
    test = nodes(second)[f"{B}#test.mylib"]
    assert test["status"] == "cached"
    assert test["cached_from"] == f"{A}#test.mylib"
    assert nodes(second)[f"{B}#pkg.attrs"]["status"] == "ran"  # b's image really differs

    text = ok(ws.gb("test", B)).stderr
    [line] = [line for line in text.splitlines() if f"{B}#test.mylib" in line]
    assert " cached " in line
    assert f"(from {A}#test.mylib" in line
    assert not started(text, f"{B}#test.mylib")


# 3. a library whose test fails in one environment only: that push is held back


VERCHECK = BASE + """
py_layer(name = "new", requirements = ["idna==3.7"])

py_layer(name = "old", requirements = ["idna==3.6"])

environment(name = "a", base = ":base", layers = [":new"], libraries = ["//libs/vercheck"], push = "{prefix}/a:v1")

environment(name = "b", base = ":base", layers = [":old"], libraries = ["//libs/vercheck"], push = "{prefix}/b:v1")
"""


def test_a_test_failing_in_one_environment_holds_back_only_its_push(ws):
    prefix = unique_repository()
    link_base(ws)
    ws.write("envs/BUILD.envs", VERCHECK.format(prefix=prefix))
    write_library(ws, "vercheck", deps=("idna",),
                  module="import idna\n\n\ndef idna_version():\n    return idna.__version__\n",
                  test='from vercheck import idna_version\n\n\ndef test_idna_is_3_7():\n'
                       '    assert idna_version() == "3.7"\n')
    ok(ws.gb("lock", "//envs/..."))

    result = ws.gb("run", "//envs/...", "--json")
    assert result.exit_code == 1, result.stderr + result.stdout
    found = nodes(result)
    assert found[f"{A}#test.vercheck"]["status"] == "ran"
    failed = found[f"{B}#test.vercheck"]
    assert failed["status"] == "failed"
    assert "test_idna_is_3_7" in failed["message"]
    assert B in failed["message"]
    assert [name.rsplit("::", 1)[-1] for name in failed["metadata"]["failing"]] == ["test_idna_is_3_7"]
    assert failed["metadata"]["failures"] == 1
    assert "assert '3.6' == '3.7'" in failed["log_tail"]
    assert failed["log_tail"].count("1 failed in") == 1  # the container's log, once
    assert found[f"{B}#push"]["status"] == "skipped"
    assert f"{B}#test.vercheck" in found[f"{B}#push"]["message"]
    assert found[f"{A}#push"]["status"] == "ran"
    assert image_tags(f"{prefix}/a") == ["v1"]
    assert image_digest(f"{prefix}/a", "v1") == found[f"{A}#push"]["metadata"]["digest"]
    assert tags(f"{prefix}/b") == []
    assert manifest_digest(f"{prefix}/b", "v1") is None

    # the failure is a result of its inputs: reported again, not run again
    again = ws.gb("run", "//envs/...")
    assert again.exit_code == 1
    assert not started(again.stderr, f"{B}#test.vercheck")
    assert started(again.stderr, f"{A}#load")  # (the human output does show what ran)
    assert f"FAILED {B}#test.vercheck" in again.stderr
    assert "test_idna_is_3_7" in again.stderr
    cached = ws.gb("run", "//envs/...", "--json")
    assert cached.exit_code == 1
    node = nodes(cached)[f"{B}#test.vercheck"]
    assert (node["status"], node["detail"]) == ("failed", "cached failure")
    assert "test_idna_is_3_7" in node["message"]
    assert nodes(cached)[f"{B}#push"]["status"] == "skipped"
    assert manifest_digest(f"{prefix}/b", "v1") is None


# 4. the same files give the same image, whatever cache built it


def test_image_digests_are_identical_across_two_clean_caches(small, tmp_path):
    builds = [ok(with_cache(small[0], tmp_path / f"cache{i}").gb("build", A, B, "--json")) for i in (1, 2)]
    for env in (A, B):
        images = [nodes(build)[f"{env}#image"] for build in builds]
        assert [image["status"] for image in images] == ["ran", "ran"]
        assert images[0]["metadata"]["digest"] == images[1]["metadata"]["digest"]
        assert images[0]["outputs"]["manifest.json"] == images[1]["outputs"]["manifest.json"]
        assert images[0]["outputs"]["config.json"] == images[1]["outputs"]["config.json"]
    digests = {nodes(builds[0])[f"{env}#image"]["metadata"]["digest"] for env in (A, B)}
    assert len(digests) == 2


# 5. the OCI layout and the pushed image, read by other tools


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        if os.environ.get("CI"):
            pytest.fail(f"{name} is not installed (scripts/services.sh installs it)")
        pytest.skip(f"{name} is not installed (scripts/services.sh installs it)")
    return path


def test_the_oci_layout_and_the_pushed_image_check_out_with_skopeo_and_umoci(pushed, tmp_path):
    skopeo, umoci = _tool("skopeo"), _tool("umoci")
    ws, prefix, result = pushed
    found = nodes(result)
    digest = found[f"{A}#image"]["metadata"]["digest"]
    load = found[f"{A}#load"]
    assert load["status"] == "ran"
    assert load["metadata"]["digest"] == digest
    # relative to the cache directory: metadata names no place of this machine
    assert load["metadata"]["layout"] == f"state/oci-images/{digest.removeprefix('sha256:')}"
    layout = ws.cache / load["metadata"]["layout"]
    assert json.loads((layout / "oci-layout").read_text())["imageLayoutVersion"] == "1.0.0"
    index = json.loads((layout / "index.json").read_text())
    assert [m["digest"] for m in index["manifests"]] == [digest]
    refname = index["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"]
    assert refname == "envs/a"

    raw = subprocess.run([skopeo, "inspect", "--raw", f"oci:{layout}:{refname}"], check=True,
                         capture_output=True).stdout
    assert "sha256:" + hashlib.sha256(raw).hexdigest() == digest
    inspected = json.loads(subprocess.run([skopeo, "inspect", f"oci:{layout}:{refname}"], check=True,
                                          capture_output=True, text=True).stdout)
    assert inspected["Digest"] == digest
    assert inspected["Labels"]["org.graphbuild.target"] == A
    assert len(inspected["Layers"]) == len(json.loads(raw)["layers"])

    listed = subprocess.run([umoci, "ls", "--layout", str(layout)], capture_output=True, text=True)
    assert listed.returncode == 0, listed.stderr
    assert refname in listed.stdout.split()
    stat = subprocess.run([umoci, "stat", "--image", f"{layout}:{refname}"], capture_output=True, text=True)
    assert stat.returncode == 0, stat.stderr
    assert "graphbuild lib.mylib" in stat.stdout

    remote = json.loads(subprocess.run(
        [skopeo, "inspect", "--tls-verify=false", f"docker://{registry()}/{prefix}/a:v1"], check=True,
        capture_output=True, text=True).stdout)
    # the tag names the release index (one image, the release's annotations); the image is ours
    assert remote["Digest"] == found[f"{A}#push"]["metadata"]["tag_digest"]
    assert image_digest(f"{prefix}/a", "v1") == digest == found[f"{A}#push"]["metadata"]["digest"]
    assert remote["Layers"] == inspected["Layers"]


# 6. pushes send only what the registry lacks


def test_pushes_upload_only_missing_blobs_and_mount_shared_ones_across_repositories(pushed):
    ws, prefix, _ = pushed
    again = nodes(ok(ws.gb("run", A, "--json")))[f"{A}#push"]
    assert again["status"] == "ran"
    total_a = sum(blob_sizes(manifest(f"{prefix}/a", "v1")).values())
    assert again["metadata"]["uploaded_bytes"] == 0
    assert again["metadata"]["mounted_bytes"] == 0
    assert again["metadata"]["skipped_bytes"] == total_a > 0

    other = nodes(ok(ws.gb("run", B, "--json")))[f"{B}#push"]
    assert other["status"] == "ran"
    meta = other["metadata"]
    blobs_a = blob_sizes(manifest(f"{prefix}/a", "v1"))
    blobs_b = blob_sizes(manifest(f"{prefix}/b", "v1"))
    new = sum(size for digest, size in blobs_b.items() if digest not in blobs_a)
    shared = sum(size for digest, size in blobs_b.items() if digest in blobs_a)
    assert 0 < new < sum(blobs_b.values())
    assert meta["uploaded_bytes"] == new
    assert meta["mounted_bytes"] == shared > 0
    assert meta["uploaded_bytes"] + meta["mounted_bytes"] + meta["skipped_bytes"] == sum(blobs_b.values())


# 7. an unreachable registry fails the push cleanly


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_an_unreachable_registry_fails_the_push_without_a_traceback(pushed, monkeypatch):
    ws, _, _ = pushed
    monkeypatch.setenv("GRAPHBUILD_REGISTRY", f"127.0.0.1:{_closed_port()}")
    result = ws.gb("run", A, "--json")
    assert result.exit_code == 1, result.stderr + result.stdout
    push = nodes(result)[f"{A}#push"]
    assert push["status"] == "failed"
    assert "not reachable" in push["message"]
    assert "internal error" not in push["message"]
    assert {n["status"] for nid, n in nodes(result).items() if nid != f"{A}#push"} <= {"ran", "cached"}
    text = ws.gb("run", A)
    assert text.exit_code == 1
    assert f"FAILED {A}#push" in text.stderr
    assert "not reachable" in text.stderr
    for output in (result.stdout, result.stderr, text.stdout, text.stderr):
        assert "Traceback" not in output


# 8. a test that hangs is stopped, and a timeout is not a result to cache


SLOW = BASE + """
py_layer(name = "core", requirements = ["six==1.16.0"])

environment(name = "slow", base = ":base", layers = [":core"], libraries = ["//libs/slow"], test_timeout = 3)
"""


def test_a_test_timeout_fails_the_test_and_is_not_cached(ws):
    import docker

    link_base(ws)
    ws.write("envs/BUILD.envs", SLOW)
    write_library(ws, "slow", module="", test="import time\n\n\ndef test_sleeps():\n    time.sleep(30)\n")
    ok(ws.gb("lock", "//envs/..."))
    test_id = "//envs:slow#test.slow"
    for attempt in range(2):
        result = ws.gb("test", "//envs:slow", "--json")
        assert result.exit_code == 1, result.stderr + result.stdout
        node = nodes(result)[test_id]
        assert node["status"] == "failed", (attempt, node)
        assert "timed out after 3 s" in node["message"]
        assert node["detail"] is None  # ran again, not a cached failure
        assert 2.5 < node["duration"] < 25
    text = ws.gb("test", "//envs:slow")
    assert text.exit_code == 1
    assert started(text.stderr, test_id)
    assert "cached failure" not in text.stderr
    config = nodes(result)["//envs:slow#image.test"]["outputs"]["config.json"]
    left = docker.from_env().containers.list(all=True, filters={"ancestor": f"sha256:{config}"})
    assert left == []


# 9. build stops at the image, test at the tests


def test_build_runs_no_test_load_or_push_and_test_runs_no_push(small, tmp_path):
    ws, prefix = small
    ws = with_cache(ws, tmp_path / "cache")
    build = nodes(ok(ws.gb("build", A, "--json")))
    assert build[f"{A}#image"]["status"] == "ran"
    assert {n["phase"] for n in build.values()} == {"build"}
    assert not [nid for nid in build if "#test" in nid or "#load" in nid or "#push" in nid or "image.test" in nid]

    test = nodes(ok(ws.gb("test", A, "--json")))
    assert test[f"{A}#image"]["status"] == "cached"
    assert test[f"{A}#test.mylib"]["status"] == "ran"
    assert f"{A}#load.test" not in test  # the test loads its image itself, only when it runs
    assert {n["phase"] for n in test.values()} == {"build", "test"}
    assert f"{A}#push" not in test
    assert f"{A}#load" not in test
    assert tags(f"{prefix}/a") == []


# 10. a base image from a registry, pinned by the lock


def test_a_registry_base_is_pinned_by_the_lock_and_pulled(tmp_path):
    registry_host = os.environ["GRAPHBUILD_REGISTRY"]
    repo = unique_repository("gbbase")
    first = workspace(tmp_path / "first", tmp_path / "cache1")
    link_base(first)
    first.write("envs/BUILD.envs", BASE + f"""
py_layer(name = "core", requirements = ["six==1.16.0"])
environment(name = "a", base = ":base", layers = [":core"], push = "{repo}:v1")
""")
    ok(first.gb("lock", "//envs:a"))
    pushed = nodes(ok(first.gb("run", "//envs:a", "--json")))["//envs:a#push"]["metadata"]["digest"]

    second = workspace(tmp_path / "second", tmp_path / "cache2")
    second.write("envs/BUILD.envs", f"""
base_image(name = "up", ref = "{registry_host}/{repo}:v1")
py_layer(name = "more", requirements = ["attrs==23.2.0"])
environment(name = "b", base = ":up", layers = [":more"], libraries = [], push = "{repo}-b:v1")
""")
    stale = second.gb("build", "//envs:b")
    assert stale.exit_code == 2 and "no lock file envs/baselock.up.json" in stale.stderr
    ok(second.gb("lock", "//envs/..."))
    pinned = json.loads((second.root / "envs/baselock.up.json").read_text())
    assert pinned["digest"] == pushed
    built = nodes(ok(second.gb("run", "//envs:b", "--json")))
    assert built["//envs:up#pull"]["status"] == "ran"
    image = manifest(f"{repo}-b", "v1")
    base_layers = manifest(repo, "v1")["layers"]
    assert [layer["digest"] for layer in image["layers"][: len(base_layers)]] == [
        layer["digest"] for layer in base_layers]
    out = subprocess.run(["docker", "run", "--rm", "--network", "none", f"{registry_host}/{repo}-b:v1", "python",
                          "-c", "import six, attrs; print('ok')"], capture_output=True, text=True,
                         env=os.environ, timeout=300)
    assert out.stdout.strip() == "ok", out.stderr
    # the tag moving on does not move the build: the lock pins the digest
    again = nodes(ok(second.gb("build", "//envs:b", "--json")))
    assert again["//envs:up#pull"]["status"] == "cached"
