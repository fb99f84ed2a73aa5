"""Images that ship: compressed layers the engine pulls, an SBOM pushed with the image, the
standard metadata, checked end to end on the real Docker engine and registry, and by tools
that are not ours (skopeo, umoci, CycloneDX's schema).

The workspace is a git repository (the release's revision comes from its HEAD); every test
pushes to repositories of its own.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import shutil
import subprocess
from typing import TYPE_CHECKING, Any

import pytest
from docker_env import (
    BASE,
    blob,
    image_digest,
    image_tags,
    link_base,
    manifest,
    manifest_digest,
    nodes,
    ok,
    raw_manifest,
    registry,
    unique_repository,
    write_library,
)
from packaging.utils import canonicalize_name

from graphbuild.cache import oci_media as media

if TYPE_CHECKING:
    from conftest import TestWorkspace

pytestmark = [pytest.mark.docker, pytest.mark.network]


@pytest.fixture(scope="session", autouse=True)
def services(registry: str) -> None:
    """The engine, the registry and the base tarball (started by conftest's fixture)."""


ENVS = BASE + """
py_layer(name = "core", requirements = ["six==1.16.0"])

py_layer(name = "extra", over = [":core"], requirements = ["attrs==23.2.0"])

environment(
    name = "app",
    base = ":base",
    layers = [":extra"],
    libraries = ["//libs/mylib"],
    push = "{prefix}/app:v1",
    env = {{"GB_TEST_RUN": "{prefix}"{extra}}},  # an image of this run's own: removing it touches no other
)

environment(
    name = "small",
    base = ":base",
    layers = [":core"],
    push = "{prefix}/small:v1",
    layer_compression = "zstd",
)
"""
APP, SMALL = "//envs:app", "//envs:small"


def git(ws: TestWorkspace, *args: str, date: str = "") -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@example.com", "GIT_CONFIG_NOSYSTEM": "1"}
    if date:
        env.update(GIT_AUTHOR_DATE=date, GIT_COMMITTER_DATE=date)
    return subprocess.run(["git", *args], cwd=ws.root, env=env, check=True, capture_output=True,
                          text=True).stdout.strip()


def commit(ws: TestWorkspace, message: str, date: str) -> str:
    git(ws, "add", "-A")
    git(ws, "commit", "-q", "-m", message, date=date)
    return git(ws, "rev-parse", "HEAD")


def write_envs(ws: TestWorkspace, prefix: str, extra: str = "") -> None:
    ws.write("envs/BUILD.envs", ENVS.format(prefix=prefix, extra=extra))


@pytest.fixture(scope="module")
def shipped(tmp_path_factory) -> dict[str, Any]:
    """A git workspace, committed, after `graphbuild run //envs:app` and `run //envs:small`."""
    from conftest import TestWorkspace

    tmp = tmp_path_factory.mktemp("shipped")
    ws = TestWorkspace(tmp / "ws", tmp / "cache")
    prefix = unique_repository("gbship")
    link_base(ws)
    write_envs(ws, prefix)
    write_library(ws, "mylib", deps=("iniconfig==2.0.0",), module='def hello():\n    return "hi"\n',
                  test='from mylib import hello\n\n\ndef test_hello():\n    assert hello() == "hi"\n')
    ws.write(".gitignore", ".bases/\ngraphbuild-out/\n")
    git(ws, "init", "-q", "-b", "main")
    # credentials in a remote URL must never reach an image or a registry
    git(ws, "remote", "add", "origin", "https://ci-user:s3cret-token@git.example.invalid/team/envs.git")
    ok(ws.gb("lock", "//envs/..."))
    revision = commit(ws, "first", "2026-01-02T03:04:05+00:00")
    app = ok(ws.gb("run", APP, "--json"))
    small = ok(ws.gb("run", SMALL, "--json"))
    return {"ws": ws, "prefix": prefix, "revision": revision, "app": nodes(app), "small": nodes(small)}


def _decompressed_sha256(data: bytes, media_type: str) -> str:
    if media_type == media.LAYER_TAR_GZIP:
        data = gzip.decompress(data)
    elif media_type == media.LAYER_TAR_ZSTD:
        import zstandard

        data = zstandard.ZstdDecompressor().stream_reader(data).read()
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        if os.environ.get("CI"):
            pytest.fail(f"{name} is not installed (scripts/services.sh installs it)")
        pytest.skip(f"{name} is not installed (scripts/services.sh installs it)")
    return path


def _run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), capture_output=True, text=True, timeout=600)


# 1. gzip layers: what the registry holds, the engine pulls and runs, skopeo and umoci read


def test_the_pushed_image_has_gzip_layers_the_engine_pulls_and_runs(shipped):
    import docker

    prefix, found = shipped["prefix"], shipped["app"]
    repository = f"{prefix}/app"
    image = manifest(repository, "v1")
    config = json.loads(blob(repository, image["config"]["digest"]))
    assert image_digest(repository, "v1") == found[f"{APP}#push"]["metadata"]["digest"]
    assert [layer["mediaType"] for layer in image["layers"]] == [media.LAYER_TAR_GZIP] * 6  # base, venv, 2, libs
    for layer, diff_id in zip(image["layers"], config["rootfs"]["diff_ids"], strict=True):
        data = blob(repository, layer["digest"])
        assert layer["size"] == len(data)
        assert data[:10] == b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"  # no name, mtime 0, OS unknown
        assert _decompressed_sha256(data, layer["mediaType"]) == diff_id
    base = image["layers"][0]
    assert base["size"] < 0.6 * os.path.getsize(os.environ["GRAPHBUILD_BASE_TARBALL"])  # compressed too
    # a fresh repository: every blob arrived, uploaded or mounted from another repository of the
    # registry that had it (the base, when another test pushed it before); the push counts compressed bytes
    pushed = found[f"{APP}#push"]["metadata"]
    assert pushed["skipped_bytes"] == 0
    assert pushed["uploaded_bytes"] + pushed["mounted_bytes"] == \
        sum(layer["size"] for layer in image["layers"]) + image["config"]["size"]

    # the engine pulls it from the registry (not the copy `load` gave it) and runs every layer
    client = docker.from_env()
    ref = f"{registry()}/{repository}:v1"
    image_id = "sha256:" + hashlib.sha256(blob(repository, image["config"]["digest"])).hexdigest()
    client.images.remove(image_id, force=True)  # this test's own image: the loaded copy goes
    try:
        pulled = client.images.pull(ref)
        assert pulled.id == image_id  # the config the engine pulled is the one graphbuild built
        output = client.containers.run(
            ref, ["python", "-c", "import six, attrs, iniconfig, mylib; print(mylib.hello(), six.__version__)"],
            network_mode="none", remove=True)
        assert output.decode().split() == ["hi", "1.16.0"]
    finally:
        client.images.remove(image_id, force=True)


def test_skopeo_copies_the_pushed_image_and_umoci_unpacks_it(shipped, tmp_path):
    skopeo, umoci = _tool("skopeo"), _tool("umoci")
    repository = f"{shipped['prefix']}/app"
    source = f"docker://{registry()}/{repository}:v1"
    inspected = json.loads(_run(skopeo, "inspect", "--tls-verify=false", source).stdout)
    assert inspected["Digest"] == manifest_digest(repository, "v1")
    assert inspected["Labels"]["org.opencontainers.image.title"] == "envs/app"
    copied = _run(skopeo, "copy", "--src-tls-verify=false", source, f"oci:{tmp_path / 'oci'}:app")
    assert copied.returncode == 0, copied.stderr
    unpacked = _run(umoci, "unpack", "--image", f"{tmp_path / 'oci'}:app", str(tmp_path / "bundle"))
    assert unpacked.returncode == 0, unpacked.stderr
    site = tmp_path / "bundle/rootfs/opt/env/lib/python3.11/site-packages"
    assert {"six.py", "attr", "iniconfig", "mylib"} <= {p.name for p in site.iterdir()}
    assert (tmp_path / "bundle/rootfs/usr/bin/python3").exists()  # the base, unpacked from its gzip layer


# 2. zstd layers, where an environment asks for them


def test_zstd_layers_are_valid_oci_that_skopeo_reads_and_converts(shipped, tmp_path):
    skopeo, umoci = _tool("skopeo"), _tool("umoci")
    repository = f"{shipped['prefix']}/small"
    image = manifest(repository, "v1")
    config = json.loads(blob(repository, image["config"]["digest"]))
    assert {layer["mediaType"] for layer in image["layers"]} == {media.LAYER_TAR_ZSTD}
    for layer, diff_id in zip(image["layers"], config["rootfs"]["diff_ids"], strict=True):
        assert _decompressed_sha256(blob(repository, layer["digest"]), layer["mediaType"]) == diff_id
    # the same layers as the gzip environment's, compressed once more: the tars are shared
    app = manifest(f"{shipped['prefix']}/app", "v1")
    app_config = json.loads(blob(f"{shipped['prefix']}/app", app["config"]["digest"]))
    assert config["rootfs"]["diff_ids"] == app_config["rootfs"]["diff_ids"][:3]
    # umoci 0.4 (Debian 12) knows no zstd layer; skopeo does, and converts them to gzip
    source = f"docker://{registry()}/{repository}:v1"
    copied = _run(skopeo, "copy", "--src-tls-verify=false", "--dest-compress-format", "gzip", "--dest-compress",
                  source, f"oci:{tmp_path / 'oci'}:small")
    assert copied.returncode == 0, copied.stderr
    unpacked = _run(umoci, "unpack", "--image", f"{tmp_path / 'oci'}:small", str(tmp_path / "bundle"))
    assert unpacked.returncode == 0, unpacked.stderr
    assert (tmp_path / "bundle/rootfs/opt/env/lib/python3.11/site-packages/six.py").is_file()


# 3. the SBOM: pushed as a referrer of the image, valid CycloneDX, exactly what the image holds


def _sbom(repository: str, image: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the referrers index under the fallback tag, the SBOM document) of an image."""
    index = json.loads(raw_manifest(repository, "sha256-" + image.removeprefix("sha256:"))[0])
    [entry] = [m for m in index["manifests"] if m.get("artifactType") == media.CYCLONEDX_JSON]
    artifact = json.loads(raw_manifest(repository, entry["digest"])[0])
    assert artifact["subject"]["digest"] == image
    [layer] = artifact["layers"]
    assert layer["mediaType"] == media.CYCLONEDX_JSON
    return index, json.loads(blob(repository, layer["digest"]))


def test_the_sbom_is_pushed_as_a_referrer_and_lists_exactly_what_python_finds_in_the_image(shipped):
    import docker
    from cyclonedx.schema import SchemaVersion
    from cyclonedx.validation.json import JsonStrictValidator

    prefix, found = shipped["prefix"], shipped["app"]
    repository = f"{prefix}/app"
    digest = found[f"{APP}#push"]["metadata"]["digest"]
    assert found[f"{APP}#push"]["metadata"]["sbom"]["referrers"] == f"tag sha256-{digest.removeprefix('sha256:')}"
    _, sbom = _sbom(repository, digest)
    assert JsonStrictValidator(SchemaVersion.V1_6).validate_str(json.dumps(sbom)) is None
    listed = {(canonicalize_name(c["name"]), c["version"]) for c in sbom["components"]}

    code = ("import importlib.metadata as m, json; "
            "print(json.dumps(sorted((d.metadata['Name'], d.version) for d in m.distributions())))")
    client = docker.from_env()
    ref = f"{registry()}/{repository}:v1"
    client.images.pull(ref)
    try:
        output = client.containers.run(ref, ["python", "-c", code], network_mode="none", remove=True)
    finally:
        client.images.remove(ref)  # the tag only
    inside = {(canonicalize_name(name), version) for name, version in json.loads(output)}
    assert listed == inside
    assert {"six", "attrs", "iniconfig", "mylib"} <= {name for name, _ in listed}
    assert "pytest" not in {name for name, _ in listed}  # the test runner is not shipped

    lock = (shipped["ws"].root / "envs/pylock.app.toml").read_text()
    six = next(c for c in sbom["components"] if c["name"] == "six")
    assert six["purl"] == "pkg:pypi/six@1.16.0"
    assert six["hashes"][0]["content"] in lock  # the locked wheel's sha256
    mylib = next(c for c in sbom["components"] if c["name"] == "mylib")
    assert {"name": "graphbuild:target", "value": "//libs/mylib:mylib"} in mylib["properties"]


# 4. standard metadata: content in the image, the release in the index the tag names


def test_the_release_annotations_name_the_commit_and_a_commit_changing_nothing_pushes_nothing(shipped, tmp_path):
    from conftest import TestWorkspace

    ws, prefix, found = shipped["ws"], shipped["prefix"], shipped["app"]
    repository = f"{prefix}/app"
    push = found[f"{APP}#push"]["metadata"]
    index = json.loads(raw_manifest(repository, "v1")[0])
    assert manifest_digest(repository, "v1") == push["tag_digest"]
    notes = index["annotations"]
    assert notes[media.REVISION] == shipped["revision"]
    assert notes[media.CREATED] == "2026-01-02T03:04:05Z"  # the commit's time
    assert notes[media.SOURCE] == "https://git.example.invalid/team/envs.git"  # no credentials
    assert notes[media.TITLE] == "envs/app"
    assert index["manifests"][0]["platform"] == {"architecture": "amd64", "os": "linux"}
    config = json.loads(blob(repository, manifest(repository, "v1")["config"]["digest"]))
    assert config["created"] == "1970-01-01T00:00:00Z"  # content alone decides the image
    assert media.REVISION not in config["config"]["Labels"]

    # one commit, two fresh caches: one image
    again = TestWorkspace(ws.root, tmp_path / "fresh").gb("build", APP, "--json")
    assert nodes(ok(again))[f"{APP}#image"]["metadata"]["digest"] == push["digest"]

    # a commit touching nothing the image holds: nothing rebuilt, nothing pushed, the tag stays
    ws.write("README.md", "notes\n")
    commit(ws, "docs", "2026-02-01T00:00:00+00:00")
    rerun = nodes(ok(ws.gb("run", APP, "--json")))
    assert rerun[f"{APP}#image"]["status"] == "cached"
    second = rerun[f"{APP}#push"]["metadata"]
    assert (second["tag_moved"], second["uploaded_bytes"], second["digest"]) == (False, 0, push["digest"])
    assert manifest_digest(repository, "v1") == push["tag_digest"]
    assert json.loads(raw_manifest(repository, "v1")[0])["annotations"][media.REVISION] == shipped["revision"]

    # a commit that changes the image: only its config is new, and the tag names the new commit
    write_envs(ws, prefix, extra=', "APP_MODE": "prod"')
    revision = commit(ws, "env", "2026-03-01T00:00:00+00:00")
    moved = nodes(ok(ws.gb("run", APP, "--json")))
    third = moved[f"{APP}#push"]["metadata"]
    assert third["tag_moved"] and third["digest"] != push["digest"]
    assert third["uploaded_bytes"] == manifest(repository, "v1")["config"]["size"]  # the layers are there
    notes = json.loads(raw_manifest(repository, "v1")[0])["annotations"]
    assert (notes[media.REVISION], notes[media.CREATED]) == (revision, "2026-03-01T00:00:00Z")
    assert image_tags(repository) == ["v1"]
    # the new image has its SBOM too (the same document: the same distributions)
    assert _sbom(repository, third["digest"])[1] == _sbom(repository, push["digest"])[1]


def test_source_date_epoch_dates_the_image_and_the_same_epoch_gives_the_same_digest(shipped, tmp_path, monkeypatch):
    from conftest import TestWorkspace

    ws = shipped["ws"]
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    digests = []
    for name in ("one", "two"):
        result = nodes(ok(TestWorkspace(ws.root, tmp_path / name).gb("build", SMALL, "--json")))
        digests.append(result[f"{SMALL}#image"]["metadata"]["digest"])
        config = json.loads((tmp_path / name / "blobs/sha256" / result[f"{SMALL}#image"]["outputs"]["config.json"])
                            .read_text())
        assert config["created"] == "2023-11-14T22:13:20Z"
        assert config["config"]["Labels"][media.CREATED] == "2023-11-14T22:13:20Z"
        assert {h["created"] for h in config["history"]} == {"2023-11-14T22:13:20Z"}
    assert digests[0] == digests[1] != shipped["small"][f"{SMALL}#image"]["metadata"]["digest"]
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "yesterday")
    bad = TestWorkspace(ws.root, tmp_path / "bad").gb("build", SMALL)
    assert bad.exit_code == 2
    assert "SOURCE_DATE_EPOCH" in bad.stderr and "Traceback" not in bad.stderr
