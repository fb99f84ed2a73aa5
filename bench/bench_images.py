"""Images and tests on the example workspace (issues 4 and 12): test runs executed vs the naive
environments x libraries; the bytes each push uploads; the registry's bytes for all the
environments against the compressed size of the distinct packages they contain plus the base;
and what a `docker pull` of a second environment transfers after the first.

    .venv/bin/python bench/bench_images.py [--no-packages] [--no-pull]

The example is copied into a temp dir; each environment gets an env var naming this run, so its
image (config) is this run's own while its layers are the example's: removing the images at the
end touches nothing of anyone else's.
"""

from __future__ import annotations

import argparse
import io
import json
import re
import shutil
import subprocess
import tempfile
import tomllib
import types
import uuid
from pathlib import Path
from typing import Any

from example_copy import copy_example, graphbuild, services_env

from graphbuild.rules.oci.compress import write_gzip
from graphbuild.rules.python.bytecode import compile_tree
from graphbuild.rules.python.layers import _strip_host_state, site_packages
from graphbuild.rules.python.lockfile import TEST_RUNNER_GROUP
from graphbuild.rules.python.platforms import best_wheel
from graphbuild.rules.python.uv import uv_bin
from graphbuild.rules.tarball import write_tree

ENVS = ("prod", "dev", "ml", "research")
PYTHON, PLATFORM, PREFIX = "3.11", "x86_64-manylinux_2_36", "/opt/env"


def registry_json(host: str, path: str, accept: str = "") -> Any:
    import urllib.request

    request = urllib.request.Request(f"http://{host}{path}", headers={"Accept": accept} if accept else {})
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.loads(response.read())


def image_manifest(host: str, repository: str, tag: str) -> dict[str, Any]:
    accept = "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json"
    document = registry_json(host, f"/v2/{repository}/manifests/{tag}", accept)
    if "manifests" in document:
        document = registry_json(host, f"/v2/{repository}/manifests/{document['manifests'][0]['digest']}", accept)
    return document


def shipped_packages(ws: Path) -> dict[tuple[str, str], dict[str, str]]:
    """(name, version) -> the wheel each environment's image installs, over all environments."""
    found: dict[tuple[str, str], dict[str, str]] = {}
    for env in ENVS:
        lock = tomllib.loads((ws / f"envs/pylock.{env}.toml").read_text())
        packages = {p["name"]: p for p in lock["packages"] if "version" in p}
        for layer in lock["tool"]["graphbuild"]["layers"]:
            if layer["label"] == TEST_RUNNER_GROUP:
                continue
            for name in layer["packages"]:
                wheel = best_wheel(packages[name].get("wheels", []), PYTHON, PLATFORM)
                if wheel is None:
                    raise SystemExit(f"{name} has no wheel: this benchmark compresses wheels only")
                found[(name, packages[name]["version"])] = {"url": wheel["url"], "sha256": wheel["hashes"]["sha256"]}
    return found


def package_layer_size(work: Path, name: str, wheel: dict[str, str], uv_cache_env: dict[str, str]) -> int:
    """One package as a layer alone would be: installed for the image, bytecode compiled as the
    layers do, a deterministic tar, gzip -6 as graphbuild compresses layers; its size."""
    scratch = work / f"pkg-{name}"
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(parents=True)
    (scratch / "req.txt").write_text(f"{name} @ {wheel['url']} --hash=sha256:{wheel['sha256']}\n")
    staging, root = scratch / "staging", scratch / "root"
    subprocess.run([uv_bin(), "pip", "install", "--target", str(staging), "--no-deps", "--no-build", "--link-mode",
                    "copy", "--no-compile", "--python-version", PYTHON, "--python-platform", PLATFORM, "--quiet",
                    "-r", str(scratch / "req.txt")], check=True, env=uv_cache_env, capture_output=True)
    sp = root / site_packages(PREFIX, PYTHON).lstrip("/")
    sp.parent.mkdir(parents=True)
    if (staging / "bin").is_dir():
        shutil.move(staging / "bin", root / f"{PREFIX}/bin".lstrip("/"))
    staging.rename(sp)
    _strip_host_state(sp)
    compile_tree(types.SimpleNamespace(log=lambda message: None), root, PYTHON)  # type: ignore[arg-type]
    write_tree(root, scratch / "layer.tar")
    out = io.BytesIO()
    with open(scratch / "layer.tar", "rb") as tar:
        write_gzip(tar, out, level=6, threads=2)
    shutil.rmtree(scratch, ignore_errors=True)
    return len(out.getvalue())


def pull(env: dict[str, str], ref: str, sizes: dict[str, int]) -> dict[str, int]:
    """`docker pull` through the engine: bytes of the layers it downloaded and of those it had."""
    import docker

    client = docker.APIClient(base_url=env["DOCKER_HOST"], timeout=600)
    repository, _, tag = ref.rpartition(":")
    status: dict[str, str] = {}
    for event in client.pull(repository, tag=tag, stream=True, decode=True):
        if ("id" in event and event.get("status") in ("Already exists", "Pull complete", "Download complete")
                and status.get(event["id"]) != "Already exists"):
            status[event["id"]] = event["status"]
    by_short = {digest.removeprefix("sha256:")[:12]: size for digest, size in sizes.items()}
    downloaded = sum(by_short.get(i, 0) for i, s in status.items() if s != "Already exists")
    had = sum(by_short.get(i, 0) for i, s in status.items() if s == "Already exists")
    return {"downloaded": downloaded, "had": had}


def chain_reuse(first: list[tuple[str, str, int]], second: list[tuple[str, str, int]]) -> int:
    """Bytes of `second`'s layers an engine holding `first` must still download: a layer is
    reused only with the same chain of layers under it (the engine keys layers by chain)."""
    have = set()
    chain = ""
    for _, diff_id, _ in first:
        chain = f"{chain}/{diff_id}"
        have.add(chain)
    missing, chain = 0, ""
    for _, diff_id, size in second:
        chain = f"{chain}/{diff_id}"
        if chain not in have:
            missing += size
    return missing


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--no-packages", action="store_true", help="skip compressing each package alone")
    parser.add_argument("--no-pull", action="store_true", help="skip the docker pulls")
    args = parser.parse_args()
    env = services_env()
    host = env["GRAPHBUILD_REGISTRY"]
    with tempfile.TemporaryDirectory(prefix="graphbuild-bench-images-") as tmp:
        root = Path(tmp)
        prefix = f"bench-{uuid.uuid4().hex[:8]}"
        ws = copy_example(root / "ws", prefix)
        build = ws / "envs/BUILD.envs"
        build.write_text(re.sub(r'(\n    push = "[^"]+",\n)', rf'\1    env = {{"GRAPHBUILD_BENCH_RUN": "{prefix}"}},\n',
                                build.read_text()))
        env_all = {**env, "GRAPHBUILD_CACHE_DIR": str(root / "cache")}
        report, seconds = graphbuild(["test", "//envs/..."], cwd=ws, env=env_all)
        tests = [n for n in report["nodes"] if n["kind"] == "python.test"]
        envs = {n["label"] for n in tests}
        ran = [n for n in tests if n["status"] == "ran"]
        compress = [n for n in report["nodes"] if n["kind"] == "oci.compress"]
        print(f"cold `graphbuild test //envs/...` of the example workspace: {seconds:.1f} s "
              f"(compression nodes: {len([n for n in compress if n['status'] == 'ran'])} ran, "
              f"{sum(n['duration'] or 0 for n in compress):.1f} s in all)")
        print(f"test nodes: {len(tests)} (environments x their libraries, over {len(envs)} environments); "
              f"test runs executed: {len(ran)}; reused: {len(tests) - len(ran)}")
        for node in tests:
            print(f"  {node['id']:<40} {node['status']:<7} {node.get('cached_from') or ''}")

        print("\npushes, one environment at a time, to fresh repositories of one registry:")
        print(f"{'environment':<12} {'image (compressed)':>19} {'uncompressed':>13} {'uploaded':>12} "
              f"{'mounted/skipped':>16}")
        layers: dict[str, list[tuple[str, str, int]]] = {}
        library_layers: dict[str, int] = {}  # each library is a layer of its own: one package, as is
        blobs: dict[str, int] = {}
        image_ids = []
        for name in ENVS:
            run, _ = graphbuild(["run", f"//envs:{name}"], cwd=ws, env=env_all)
            push = next(n for n in run["nodes"] if n["id"].endswith("#push"))
            image = next(n for n in run["nodes"] if n["id"].endswith("#image"))
            image_ids.append("sha256:" + image["outputs"]["config.json"])
            meta = push["metadata"]
            size = image["metadata"].get("size") or 0
            print(f"{name:<12} {size / 1e6:>16.1f} MB {image['metadata'].get('uncompressed_size', 0) / 1e6:>10.1f} MB "
                  f"{meta['uploaded_bytes'] / 1e6:>9.1f} MB "
                  f"{(meta['mounted_bytes'] + meta['skipped_bytes']) / 1e6:>13.1f} MB")
            manifest = image_manifest(host, f"{prefix}/{name}", "latest")
            config = registry_json(host, f"/v2/{prefix}/{name}/blobs/{manifest['config']['digest']}")
            layers[name] = [(layer["digest"], diff, layer["size"])
                            for layer, diff in zip(manifest["layers"], config["rootfs"]["diff_ids"], strict=True)]
            for layer, history in zip(manifest["layers"], config["history"], strict=True):
                if history["created_by"].startswith("graphbuild lib."):
                    library_layers[layer["digest"]] = layer["size"]
            blobs.update({digest: size for digest, _, size in layers[name]})
            blobs[manifest["config"]["digest"]] = manifest["config"]["size"]
        registry_bytes = sum(blobs.values())
        base = layers["prod"][0][2]
        venv = layers["prod"][1][2]
        print(f"\nregistry bytes for the {len(ENVS)} environments (distinct layer and config blobs): "
              f"{registry_bytes / 1e6:.1f} MB in {len(blobs)} blobs (base {base / 1e6:.1f} MB)")

        if not args.no_packages:
            packages = shipped_packages(ws)
            uv_env = {**env, "UV_NO_PROGRESS": "1"}
            total = 0
            for (name, _), wheel in sorted(packages.items()):
                total += package_layer_size(root, name, wheel, uv_env)
            libraries = sum(library_layers.values())
            floor = total + libraries + base + venv
            print(f"distinct packages shipped: {len(packages)} from the index, each alone as a gzip -6 layer (bytecode "
                  f"as the layers ship it): {total / 1e6:.1f} MB; + {len(library_layers)} distinct library layers "
                  f"{libraries / 1e6:.2f} MB + base + venv skeleton: {floor / 1e6:.1f} MB")
            print(f"registry bytes / (distinct packages + base): {registry_bytes / floor:.2f}x (goal <= 1.1x)")

        if not args.no_pull:
            first, second = "prod", "dev"
            expected = chain_reuse(layers[first], layers[second])
            differ = sum(s for d, _, s in layers[second] if d not in {x for x, _, _ in layers[first]})
            print(f"\n`docker pull` of {second} after {first}: by the engine's rule (a layer is reused only on the "
                  f"same chain of layers under it), {expected / 1e6:.1f} MB of "
                  f"{sum(s for _, _, s in layers[second]) / 1e6:.1f} MB to download; its layers that differ from "
                  f"{first}'s: {differ / 1e6:.1f} MB")
            subprocess.run(["docker", "rmi", "-f", *image_ids], env=env, capture_output=True)  # this run's images
            sizes = {d: s for name in (first, second) for d, _, s in layers[name]}
            try:
                for name in (first, second):
                    seen = pull(env, f"{host}/{prefix}/{name}:latest", sizes)
                    print(f"  observed: pull {name}: {seen['downloaded'] / 1e6:.1f} MB downloaded, "
                          f"{seen['had'] / 1e6:.1f} MB already there (the engine also reuses layers that other "
                          f"pulls of the same blobs left)")
            finally:
                subprocess.run(["docker", "rmi", "-f", *image_ids], env=env, capture_output=True)


if __name__ == "__main__":
    main()
