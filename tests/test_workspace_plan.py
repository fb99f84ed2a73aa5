"""Image layers planned across the whole workspace (issue 12), end to end: environments of two
BUILD.envs packages that share packages get the same layers, under the same chain, in both
images; the registry stores those layers once; a pin change in one package touches the other
package's nodes only where the plan really moves one of its layers (`build`, `affected`).

A cap of 3 own layers (the venv and two package layers) makes the plan merge packages, so that
planning each package apart would give other layers (another grouping of the same packages).
"""

from __future__ import annotations

import subprocess
from typing import TYPE_CHECKING

import pytest
from docker_env import BASE, blob_sizes, link_base, manifest, nodes, ok, unique_repository

if TYPE_CHECKING:
    from conftest import TestWorkspace

pytestmark = pytest.mark.network

A, B = "//team_a:prod", "//team_b:prod"  # the same name in two packages

TEAM = """
py_layer(name = "core", requirements = [{requirements}])

environment(
    name = "prod",
    layers = [":core"],
    max_layers = 3,
    test_runner = [],{extra}
)
"""


def write_teams(ws: TestWorkspace, b_pins: str = '"idna==3.6"', *, prefix: str | None = None) -> None:
    shared = '"six==1.16.0", "attrs==23.2.0", "iniconfig==2.0.0"'
    for team, pins in (("team_a", shared), ("team_b", f'"six==1.16.0", "attrs==23.2.0", "iniconfig==2.0.0", {b_pins}')):
        extra = "" if prefix is None else f'\n    base = "//base",\n    push = "{prefix}/{team}:v1",'
        ws.write(f"{team}/BUILD.envs", TEAM.format(requirements=pins, extra=extra))


def layer_of(document: dict, package: str) -> dict:
    return next(layer for layer in document["layers"] if package in [p["name"] for p in layer["packages"]])


def build_ran(result) -> set[str]:
    return {n["id"] for n in result.json["nodes"] if n["phase"] != "lock" and n["status"] == "ran"}


def test_layers_shows_the_other_packages_environment_sharing_them_and_both_plan_alike(ws):
    write_teams(ws)
    ok(ws.gb("lock", "//..."))
    a = ok(ws.gb("layers", A, "--json")).json
    b = ok(ws.gb("layers", B, "--json")).json
    shared_a, shared_b = layer_of(a, "six"), layer_of(b, "six")
    # one layer holding the three shared packages, first in both images, named alike
    assert sorted(p["name"] for p in shared_a["packages"]) == ["attrs", "iniconfig", "six"]
    assert shared_a["environments"] == shared_b["environments"] == [A, B]
    assert shared_a["name"] == shared_b["name"] and shared_a["position"] == shared_b["position"] == 1
    assert shared_a["chain_shared"] and shared_b["chain_shared"]
    assert layer_of(b, "idna")["environments"] == [B]
    assert b["own_layers"] <= 3 and a["own_layers"] <= 3
    text = ok(ws.gb("layers", A)).stdout
    assert f"shared by 2: {A}, {B}" in text
    # the merged layer is one node's work: the second environment's is a cache hit
    built = ok(ws.gb("build", "//...", "--json"))
    merged = {n["id"]: n for n in built.json["nodes"] if "#layer.pkgs." in n["id"]}
    shared_nodes = [merged[f"{env}#layer.{shared_a['name']}"] for env in (A, B)]
    assert sorted(n["status"] for n in shared_nodes) == ["cached", "ran"]
    assert shared_nodes[0]["outputs"] == shared_nodes[1]["outputs"]


def test_a_pin_only_one_package_has_leaves_the_other_packages_nodes_alone(ws):
    write_teams(ws)
    ok(ws.gb("lock", "//..."))
    ok(ws.gb("build", "//...", "--json"))
    write_teams(ws, '"idna==3.7"')
    ok(ws.gb("lock", B))
    # the plan keeps A's layers (idna is B's alone): none of A's nodes has a new key
    assert build_ran(ok(ws.gb("build", A, "--json"))) == set()
    assert {nid.split("#")[0] for nid in build_ran(ok(ws.gb("build", B, "--json")))} == {B}


def git(ws: TestWorkspace, *args: str) -> str:
    return subprocess.run(["git", "-C", str(ws.root), "-c", "user.name=t", "-c", "user.email=t@example.com", *args],
                          check=True, capture_output=True, text=True).stdout


def test_affected_reports_the_other_package_only_when_the_plan_moves_its_layers(ws):
    write_teams(ws)
    ws.write(".gitignore", "graphbuild-out/\n")
    ok(ws.gb("lock", "//..."))
    git(ws, "init", "-q", "-b", "main")
    git(ws, "add", "-A")
    git(ws, "commit", "-q", "-m", "locked")

    # idna is B's alone: A's plan does not move, A is not affected, and none of its nodes is
    write_teams(ws, '"idna==3.7"')
    ok(ws.gb("lock", B))
    report = ok(ws.gb("affected", "--since", "HEAD", "--json", "--nodes")).json
    assert [t for t in report["targets"] if t.startswith("//team_a")] == []
    assert not [n for n in report["nodes"] if n.startswith(A)]
    assert B in report["targets"]

    # six moves forward in B alone: A's six is no longer shared, so A's layers really move
    # (six leaves the shared layer for one of A's own): A is affected, for those nodes
    write_teams(ws)
    ws.write("team_b/BUILD.envs", (ws.root / "team_b/BUILD.envs").read_text().replace("six==1.16.0", "six==1.17.0"))
    ok(ws.gb("lock", B))
    report = ok(ws.gb("affected", "--since", "HEAD", "--json", "--nodes")).json
    assert A in report["targets"]
    moved = {n.split("#", 1)[1] for n in report["nodes"] if n.startswith(f"{A}#")}
    assert moved and all(name.startswith(("layer.", "pkg.")) for name in moved), moved
    assert not any(name.startswith("pkg.") for name in moved)  # no package of A is reinstalled
    assert report["warnings"] == []

    # a spec changed and not locked yet: a coarser answer (by target), said beside it, not in it
    ws.write("team_b/BUILD.envs", (ws.root / "team_b/BUILD.envs").read_text().replace("six==1.17.0", "six==1.15.0"))
    stale = ws.gb("affected", "--since", "HEAD")
    assert stale.exit_code == 0, stale.stderr
    assert "warning: some lock files are out of date" in stale.stderr and "graphbuild lock" in stale.stderr
    assert "warning" not in stale.stdout and B in stale.stdout.split()
    as_json = ok(ws.gb("affected", "--since", "HEAD", "--json")).json
    assert as_json["warnings"] and "out of date" in as_json["warnings"][0]


@pytest.mark.docker
def test_the_registry_stores_the_layers_two_packages_share_once(ws, registry):
    prefix = unique_repository()
    link_base(ws)
    ws.write("base/BUILD.envs", BASE)
    write_teams(ws, prefix=prefix)
    ok(ws.gb("lock", "//..."))
    first = nodes(ok(ws.gb("run", A, "--json")))[f"{A}#push"]
    assert first["status"] == "ran"
    second = nodes(ok(ws.gb("run", B, "--json")))[f"{B}#push"]
    assert second["status"] == "ran"
    blobs_a = blob_sizes(manifest(f"{prefix}/team_a", "v1"))
    blobs_b = blob_sizes(manifest(f"{prefix}/team_b", "v1"))
    layers_a = [layer["digest"] for layer in manifest(f"{prefix}/team_a", "v1")["layers"]]
    layers_b = [layer["digest"] for layer in manifest(f"{prefix}/team_b", "v1")["layers"]]
    # the base, the venv and the shared packages' layer: the same blobs, in the same order at
    # the bottom of both images (so an engine that pulled A reuses them for B)
    assert layers_b[: len(layers_a)] == layers_a
    assert len(layers_b) == len(layers_a) + 1  # B's own layer (idna) on top
    # B's push uploads only what A's did not: its idna layer and its config
    meta = second["metadata"]
    new = {digest: size for digest, size in blobs_b.items() if digest not in blobs_a}
    assert len(new) == 2
    assert meta["uploaded_bytes"] == sum(new.values())
    assert meta["mounted_bytes"] == sum(size for digest, size in blobs_b.items() if digest in blobs_a) > 0
