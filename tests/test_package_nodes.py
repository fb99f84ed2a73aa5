"""A node per package, image layers planned across environments, and the image a user takes
away from `graphbuild build` (an OCI layout, a `docker load` archive), end to end.

Tiny pure-Python wheels from the package index (uv's shared cache keeps reruns fast); the
Docker tests use the real engine and the shared base tarball, and names of their own.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import uuid

import pytest
from test_python_envs import DEV, ENVS, PROD, build_nodes, ok, ran_build_nodes, write_envs

# 1. a node per package


@pytest.mark.network
def test_a_pin_change_reinstalls_exactly_that_package_and_every_other_is_a_cache_hit(ws):
    write_envs(ws)
    ok(ws.gb("lock", "//envs/..."))
    first = ok(ws.gb("build", "//envs/...", "--json"))
    nodes = build_nodes(first)
    # one node per locked package in each environment; the same wheel in both is one node's work
    for env in (PROD, DEV):
        assert {f"{env}#pkg.{p}" for p in ("six", "attrs", "iniconfig")} <= set(nodes)
    assert f"{DEV}#pkg.idna" in nodes and f"{PROD}#pkg.idna" not in nodes
    six = {nodes[f"{env}#pkg.six"]["status"] for env in (PROD, DEV)}
    assert six == {"ran", "cached"}
    assert nodes[f"{PROD}#pkg.six"]["outputs"] == nodes[f"{DEV}#pkg.six"]["outputs"]

    ws.write("envs/BUILD.envs", ENVS.replace("idna==3.6", "idna==3.7"))
    rebuilt = ok(ws.gb("build", "--relock", "//envs/...", "--json"))
    # the package alone: its install, its bytecode; no other package of either environment
    assert ran_build_nodes(rebuilt) == {f"{DEV}#pkg.idna"}
    again = ok(ws.gb("build", "//envs/...", "--json"))
    assert again.ran() == set()


@pytest.mark.network
def test_packages_sharing_a_layer_are_merged_and_a_pin_change_remakes_only_that_layer(ws):
    # a cap of 3 own layers: venv + library + one layer for every package of the environment
    write_envs(ws, ENVS.replace('    layers = [":web"],\n', '    layers = [":web"],\n    max_layers = 3,\n'))
    ok(ws.gb("lock", "//envs/..."))
    first = ok(ws.gb("build", DEV, "--json"))
    merged = [nid for nid in build_nodes(first) if nid.startswith(f"{DEV}#layer.pkgs.")]
    assert len(merged) == 1, merged
    plan = ok(ws.gb("layers", DEV, "--json")).json
    assert plan["own_layers"] <= 3
    assert [sorted(p["name"] for p in layer["packages"]) for layer in plan["layers"]] == [
        ["attrs", "idna", "iniconfig", "six"]]
    assert "max_layers" in plan["layers"][0]["why"]

    ws.write("envs/BUILD.envs", ENVS.replace("idna==3.6", "idna==3.7").replace(
        '    layers = [":web"],\n', '    layers = [":web"],\n    max_layers = 3,\n'))
    rebuilt = ok(ws.gb("build", "--relock", DEV, "--json"))
    assert ran_build_nodes(rebuilt) == {f"{DEV}#pkg.idna", merged[0]}


@pytest.mark.network
def test_layers_shows_the_plan_most_shared_first_with_the_environments_and_why(ws):
    write_envs(ws)
    ok(ws.gb("lock", "//envs/..."))
    doc = ok(ws.gb("layers", DEV, "--json")).json
    assert doc["environment"] == DEV and doc["max_layers"] == 40
    layers = doc["layers"]
    assert [len(layer["environments"]) for layer in layers] == sorted(
        (len(layer["environments"]) for layer in layers), reverse=True)
    by_package = {p["name"]: layer for layer in layers for p in layer["packages"]}
    assert by_package["six"]["environments"] == ["dev", "prod"]
    assert by_package["idna"]["environments"] == ["dev"]
    assert "named by a requirement" in by_package["idna"]["why"]
    assert all(layer["chain_shared"] for layer in layers)
    text = ok(ws.gb("layers", DEV)).stdout
    assert "shared by 2: dev, prod" in text and "why:" in text
    # a target that is not an environment: a clear error, exit 2
    bad = ws.gb("layers", "//libs/mylib")
    assert bad.exit_code == 2
    assert "not an environment" in bad.stderr


# 2. the image a user takes: an OCI layout (and a docker-archive) in graphbuild-out/


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} is not installed (scripts/services.sh installs it)")
    return path


@pytest.mark.docker
@pytest.mark.network
def test_build_writes_an_oci_layout_and_a_docker_archive_the_engine_loads_and_runs(ws, registry, tmp_path):
    import docker
    from docker_env import BASE, link_base

    name = f"out{uuid.uuid4().hex[:10]}"
    link_base(ws)
    write_envs(ws, BASE + ENVS.replace('name = "dev"', f'name = "{name}",\n    base = ":base"'))
    target = f"//envs:{name}"
    ok(ws.gb("lock", target))
    built = ok(ws.gb("build", target, "--json"))
    layout = ws.root / "graphbuild-out/envs" / name
    digest = build_nodes(built)[f"{target}#image"]["metadata"]["digest"]
    index = json.loads((layout / "index.json").read_text())
    assert index["manifests"][0]["digest"] == digest
    assert not any(p.is_symlink() for p in layout.rglob("*"))  # a copy of its own: no link into the cache
    skopeo, umoci = _tool("skopeo"), _tool("umoci")
    inspected = subprocess.run([skopeo, "inspect", f"oci:{layout}"], capture_output=True, text=True)
    assert inspected.returncode == 0, inspected.stderr
    assert json.loads(inspected.stdout)["Digest"] == digest
    unpacked = subprocess.run([umoci, "unpack", "--rootless", "--image", f"{layout}:envs/{name}",
                               str(tmp_path / "bundle")], capture_output=True, text=True)
    assert unpacked.returncode == 0, unpacked.stderr
    site = next((tmp_path / "bundle/rootfs/opt/env/lib").glob("python*/site-packages"))
    assert {"six.py", "attr", "idna", "mylib"} <= {p.name for p in site.iterdir()}

    # the cache gone (graphbuild clean): the layout still holds every blob it names
    shutil.rmtree(ws.cache)
    assert subprocess.run([umoci, "stat", "--image", f"{layout}:envs/{name}"], capture_output=True).returncode == 0

    archived = ok(ws.gb("build", target, "--output", "docker-archive", "--json"))
    out = build_nodes(archived)[f"{target}#out"]["metadata"]
    archive = ws.root / out["archive"]
    client = docker.from_env()
    tag = out["tag"]
    try:
        with open(archive, "rb") as handle:
            loaded = client.images.load(handle.read())
        assert tag in loaded[0].tags
        output = client.containers.run(tag, ["python", "-c", "import six, idna, mylib; print(mylib.hello())"],
                                       network_mode="none", remove=True)
        assert output.decode().strip() == "hi"
    finally:
        client.images.remove(tag, force=True)


@pytest.mark.network
def test_the_layout_is_replaced_whole_and_an_up_to_date_one_is_left_alone(ws):
    write_envs(ws)
    ok(ws.gb("lock", "//envs/..."))
    # no base: no image, no layout (layers only)
    built = ok(ws.gb("build", DEV, "--json"))
    assert f"{DEV}#out" not in build_nodes(built)
    assert not (ws.root / "graphbuild-out/envs/dev").exists()


def test_output_refuses_a_symlinked_output_tree(tmp_path):
    from graphbuild.api import ActionFailed
    from graphbuild.rules.oci.out_layout import output_dir

    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "ws").mkdir()
    os.symlink(tmp_path / "elsewhere", tmp_path / "ws/graphbuild-out")
    with pytest.raises(ActionFailed, match="not a directory"):
        output_dir(tmp_path / "ws", "envs")
    assert not any((tmp_path / "elsewhere").iterdir())


def test_an_oci_layout_is_rewritten_only_when_it_changed_and_reuses_unchanged_blobs(tmp_path):
    import hashlib

    from graphbuild.rules.oci.out_layout import write_oci_layout

    store = tmp_path / "store"
    store.mkdir()

    def blob(data: bytes) -> os.PathLike:
        path = store / hashlib.sha256(data).hexdigest()
        path.write_bytes(data)
        return path

    a, b, c = blob(b"a" * 1000), blob(b"b" * 10), blob(b"c" * 10)
    dest = tmp_path / "out/img"
    dest.parent.mkdir()
    assert write_oci_layout(dest, b'{"i":1}', [a, b])
    inode = (dest / "blobs/sha256" / a.name).stat().st_ino
    assert not write_oci_layout(dest, b'{"i":1}', [a, b])  # up to date: nothing written
    assert write_oci_layout(dest, b'{"i":2}', [a, c])
    assert (dest / "blobs/sha256" / a.name).stat().st_ino == inode  # linked from the old layout, not copied
    assert sorted(p.name for p in (dest / "blobs/sha256").iterdir()) == sorted([a.name, c.name])
    assert (dest / "index.json").read_bytes() == b'{"i":2}'
    assert [p.name for p in dest.parent.iterdir()] == ["img"]  # no temp or old directory left
    # a damaged blob in the store is refused, and the old layout stays as it was
    e = blob(b"e" * 5)
    e.write_bytes(b"x" * 5)
    from graphbuild.api import ActionFailed

    with pytest.raises(ActionFailed, match="damaged"):
        write_oci_layout(dest, b'{"i":3}', [a, e])
    assert (dest / "index.json").read_bytes() == b'{"i":2}'
    assert [p.name for p in dest.parent.iterdir()] == ["img"]
