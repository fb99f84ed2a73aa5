"""A node per package, image layers planned across environments, and the image a user takes
away from `graphbuild build` (an OCI layout, a `docker load` archive), end to end.

Tiny pure-Python wheels from the package index (uv's shared cache keeps reruns fast); the
Docker tests use the real engine and the shared base tarball, and names of their own.
"""

from __future__ import annotations

import hashlib
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
    assert by_package["six"]["environments"] == [DEV, PROD]
    assert by_package["idna"]["environments"] == [DEV]
    assert "named by a requirement" in by_package["idna"]["why"]
    assert all(layer["chain_shared"] for layer in layers)
    text = ok(ws.gb("layers", DEV)).stdout
    assert f"shared by 2: {DEV}, {PROD}" in text and "why:" in text
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
    assert not (ws.root / f"graphbuild-out/envs/{name}.docker.tar").exists()  # only when asked
    skopeo, umoci = _tool("skopeo"), _tool("umoci")
    inspected = subprocess.run([skopeo, "inspect", f"oci:{layout}"], capture_output=True, text=True)
    assert inspected.returncode == 0, inspected.stderr
    assert json.loads(inspected.stdout)["Digest"] == digest
    unpacked = subprocess.run([umoci, "unpack", "--rootless", "--image", f"{layout}:envs/{name}",
                               str(tmp_path / "bundle")], capture_output=True, text=True)
    assert unpacked.returncode == 0, unpacked.stderr
    site = next((tmp_path / "bundle/rootfs/opt/env/lib").glob("python*/site-packages"))
    assert {"six.py", "attr", "idna", "mylib"} <= {p.name for p in site.iterdir()}

    # nothing changed: no node runs, the layout is left as it is
    stamp = (layout / "index.json").stat().st_mtime_ns
    assert ok(ws.gb("build", target, "--json")).ran() == set()
    assert (layout / "index.json").stat().st_mtime_ns == stamp
    # the cache gone (graphbuild clean removes it): the layout still holds every blob it names
    shutil.rmtree(ws.cache)
    assert subprocess.run([umoci, "stat", "--image", f"{layout}:envs/{name}"], capture_output=True).returncode == 0

    ok(ws.gb("build", target, "--output", "docker-archive"))
    archive = ws.root / f"graphbuild-out/envs/{name}.docker.tar"
    client = docker.from_env()
    tag = f"graphbuild/envs/{name}:latest"
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
def test_an_environment_without_a_base_leaves_no_layout(ws):
    write_envs(ws)
    ok(ws.gb("lock", "//envs/..."))
    ok(ws.gb("build", DEV, "--json"))
    assert not (ws.root / "graphbuild-out/envs/dev").exists()


def test_output_trees_are_copies_written_in_order_and_never_through_a_symlink(tmp_path):
    from graphbuild.cache.blobs import BlobStore
    from graphbuild.execution.events import NodeOutcome
    from graphbuild.execution.materialize import OutputTreeError, materialize_trees
    from graphbuild.nodes import OutputRef
    from graphbuild.rule import OutputTree

    (tmp_path / "cache/tmp").mkdir(parents=True)
    (tmp_path / "cache/blobs/sha256").mkdir(parents=True)
    store = BlobStore(tmp_path / "cache/blobs", tmp_path / "cache/tmp")
    shas = [store.put_bytes(data)[0] for data in (b"layer", b"index")]
    outcome = NodeOutcome("//p:t#n", "ran", outputs={"a": [shas[0], 5, False], "i": [shas[1], 5, False]})
    tree = OutputTree(path="img", files=(("blobs/sha256/{sha256}", OutputRef("//p:t#n", "a")),
                                         ("index.json", OutputRef("//p:t#n", "i"))))
    archive = OutputTree(path="img.tar", kind="tarball", files=(("x", OutputRef("//p:t#n", "a")),))
    root = tmp_path / "ws"
    root.mkdir()
    digest = lambda path: hashlib.sha256(path.read_bytes()).hexdigest()  # noqa: E731
    materialize_trees([("p", tree), ("p", archive)], {"//p:t#n": outcome}, store, root, digest)
    layout = root / "graphbuild-out/p/img"
    assert (layout / "blobs/sha256" / shas[0]).read_bytes() == b"layer"
    assert not (layout / "blobs/sha256" / shas[0]).is_symlink()
    assert (layout / "index.json").read_bytes() == b"index"
    assert not (root / "graphbuild-out/p/img.tar").exists()  # a kind not asked for
    materialize_trees([("p", archive)], {"//p:t#n": outcome}, store, root, digest, kinds=("tarball",))
    import tarfile

    with tarfile.open(root / "graphbuild-out/p/img.tar") as tar:
        assert [(m.name, m.mtime) for m in tar] == [("x", 0)]
    # a symlink planted in the output tree is refused, not followed
    shutil.rmtree(root / "graphbuild-out")
    (tmp_path / "elsewhere").mkdir()
    (root / "graphbuild-out").mkdir()
    os.symlink(tmp_path / "elsewhere", root / "graphbuild-out/p")
    with pytest.raises(OutputTreeError, match="symlink"):
        materialize_trees([("p", tree)], {"//p:t#n": outcome}, store, root, digest)
    assert not any((tmp_path / "elsewhere").iterdir())


@pytest.mark.network
def test_environments_of_different_packages_are_planned_together_and_share_their_layers(ws):
    """A fork in another package (//team:exp over //envs:core) gets the very layer that holds
    what it shares with //envs:prod: planned with every lock of the workspace, not only the
    locks beside it. A cap of 4 own layers (prod: venv, library, two) makes packages share layers."""
    from test_python_envs import PY

    write_envs(ws, ENVS.replace('    layers = [":core"],\n    libraries = ["//libs/mylib"],\n',
                                '    layers = [":core"],\n    libraries = ["//libs/mylib"],\n    max_layers = 4,\n'))
    ws.write("team/BUILD.envs", f"""
py_layer(name = "extra", over = ["//envs:core"], requirements = ["idna==3.6"])

environment(name = "exp", layers = [":extra"], python = "{PY}", max_layers = 4)
""")
    ok(ws.gb("lock", "//envs:prod", "//team:exp"))
    plan = {p["name"]: layer for layer in ok(ws.gb("layers", "//team:exp", "--json")).json["layers"]
            for p in layer["packages"]}
    assert plan["six"]["environments"] == ["//envs:prod", "//team:exp"]  # by label, wherever they are
    assert plan["idna"]["environments"] == ["//team:exp"]
    shared = plan["six"]["name"]
    assert set(p["name"] for p in plan["six"]["packages"]) == {"six", "attrs"}
    prod_plan = ok(ws.gb("layers", PROD, "--json")).json["layers"]
    assert [layer["name"] for layer in prod_plan] == [shared, "pkg.iniconfig"]  # most shared first
    assert prod_plan[0]["environments"] == ["//envs:prod", "//team:exp"]
    built = build_nodes(ok(ws.gb("build", PROD, "//team:exp", "--json")))
    here, there = built[f"{PROD}#layer.{shared}"], built[f"//team:exp#layer.{shared}"]
    assert here["key"] == there["key"] and here["outputs"] == there["outputs"]
    assert {here["status"], there["status"]} == {"ran", "cached"}  # one node's work, one blob
