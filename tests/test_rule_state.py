"""Rule-owned state in the cache (`ExecContext.state_dir`): the OCI layouts `docker.load`
writes and the push locations live under `<cache>/state/`, and neither `graphbuild cache gc`
nor `graphbuild clean` leaves a layout whose blobs are gone (umoci reads what remains)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import TestWorkspace as Workspace  # (not collected as a test class)
from docker_env import BASE, link_base, nodes, ok, unique_repository

pytestmark = [pytest.mark.docker, pytest.mark.network]

ENVS = BASE + """
py_layer(name = "core", requirements = ["six==1.16.0"])

environment(name = "a", base = ":base", layers = [":core"], push = "{prefix}/a:v1")

environment(name = "b", base = ":base", layers = [":core"], env = {{"FLAVOUR": "b"}})
"""


@pytest.fixture(scope="module", autouse=True)
def services(registry: str) -> None:
    """The engine, the registry and the base tarball (conftest's fixture starts them)."""


def _umoci() -> str:
    path = shutil.which("umoci")
    if path is None:
        pytest.skip("umoci is not installed (scripts/services.sh installs it)")
    return path


def _layouts(cache: Path) -> list[Path]:
    root = cache / "state" / "oci-images"
    return sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []


def _check_with_umoci(layout: Path) -> None:
    """umoci lists the layout's image and reads its manifest, config and layers' descriptors."""
    umoci = _umoci()
    listed = subprocess.run([umoci, "ls", "--layout", str(layout)], capture_output=True, text=True)
    assert listed.returncode == 0, listed.stderr
    for ref in listed.stdout.split():
        stat = subprocess.run([umoci, "stat", "--image", f"{layout}:{ref}"], capture_output=True, text=True)
        assert stat.returncode == 0, f"{layout}:{ref}: {stat.stderr}"
    index = json.loads((layout / "index.json").read_text())
    manifest = json.loads((layout / "blobs" / "sha256" / index["manifests"][0]["digest"][7:]).read_text())
    for descriptor in [manifest["config"], *manifest["layers"]]:
        assert (layout / "blobs" / "sha256" / descriptor["digest"][7:]).is_file(), descriptor


def test_gc_and_clean_leave_no_dangling_image_layout(tmp_path):
    ws = Workspace(tmp_path / "ws", tmp_path / "cache")
    link_base(ws)
    prefix = unique_repository()
    ws.write("envs/BUILD.envs", ENVS.format(prefix=prefix))
    ok(ws.gb("lock", "//envs/..."))
    result = ok(ws.gb("run", "//envs/...", "--json"))
    found = nodes(result)
    loads = {env: found[f"//envs:{env}#load"]["metadata"] for env in ("a", "b")}
    layouts = _layouts(ws.cache)
    # one layout per image, in the rule's state directory; none beside the blob store
    assert [p.name for p in layouts] == sorted(m["digest"][7:] for m in loads.values())
    assert {ws.cache / m["layout"] for m in loads.values()} == set(layouts)  # (relative to the cache)
    assert not (ws.cache / "images").exists() and not (ws.cache / "push-locations.json").exists()
    assert json.loads((ws.cache / "state" / "oci-push" / "locations.json").read_text())  # the push landed
    for layout in layouts:
        _check_with_umoci(layout)

    # gc deleting the blobs of one image (b's results evicted first: a ran later) takes its layout
    b_image = found["//envs:b#image"]["outputs"]["manifest.json"]
    gc = ok(ws.gb("cache", "gc", "--max-size", "0", "--json"))
    assert gc.json["deleted_blobs"] > 0
    assert gc.json["deleted_state_entries"] == 2  # every blob went: both layouts went with them
    assert _layouts(ws.cache) == []
    assert not (ws.cache / "blobs" / "sha256" / b_image).exists()

    # a layout whose blobs are all still stored is kept, and still reads
    ok(ws.gb("run", "//envs/..."))
    kept = ok(ws.gb("cache", "gc", "--max-size", "100G", "--json"))
    assert kept.json["deleted_state_entries"] == 0
    assert len(_layouts(ws.cache)) == 2
    for layout in _layouts(ws.cache):
        _check_with_umoci(layout)

    # a single blob lost (a disk cleanup, a partial gc): only the layout naming it goes
    a_layout = ws.cache / "state" / "oci-images" / loads["a"]["digest"][7:]
    a_manifest = json.loads((a_layout / "blobs" / "sha256" / loads["a"]["digest"][7:]).read_text())
    b_layout = next(p for p in _layouts(ws.cache) if p != a_layout)
    b_manifest_layers = {d["digest"] for d in json.loads(
        (b_layout / "blobs" / "sha256" / b_layout.name).read_text())["layers"]}
    only_a = next(d for d in a_manifest["layers"] if d["digest"] not in b_manifest_layers) \
        if any(d["digest"] not in b_manifest_layers for d in a_manifest["layers"]) else a_manifest["config"]
    (ws.cache / "blobs" / "sha256" / only_a["digest"][7:]).unlink()
    swept = ok(ws.gb("cache", "gc", "--max-size", "100G", "--json"))
    assert swept.json["deleted_state_entries"] == 1
    assert _layouts(ws.cache) == [b_layout]
    _check_with_umoci(b_layout)

    ok(ws.gb("clean"))
    assert not (ws.cache / "state").exists()
