"""Loading images into the local Docker engine (the `docker` SDK; DOCKER_HOST is honoured)."""

from __future__ import annotations

import io
import json
import os
import tarfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from graphbuild.api import ActionFailed, ExecContext, executor
from graphbuild.rules.oci.image import write_layout

_BLOCK = 512
_CHUNK = 1 << 20


def docker_client() -> Any:
    """A client of the configured engine, or a clear failure when there is none."""
    import docker
    from docker.errors import DockerException

    try:
        client = docker.from_env(timeout=600)
        client.ping()
    except DockerException as err:
        raise ActionFailed(f"no Docker engine answers (DOCKER_HOST={_docker_host()}): {err}",
                           details="start one (scripts/services.sh does) and set DOCKER_HOST") from None
    return client


def _docker_host() -> str:
    return os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")


def archive_stream(config: Path, layers: list[Path], tags: list[str]) -> Iterator[bytes]:
    """A `docker load` archive (manifest.json + blobs), produced as it is read: no copy on disk."""
    manifest = [{"Config": f"blobs/sha256/{config.name}", "RepoTags": tags,
                 "Layers": [f"blobs/sha256/{p.name}" for p in layers]}]
    yield from _member("manifest.json", io.BytesIO(json.dumps(manifest).encode()), None)
    seen = set()
    for path in [config, *layers]:
        if path.name in seen:
            continue
        seen.add(path.name)
        with open(path, "rb") as handle:
            yield from _member(f"blobs/sha256/{path.name}", handle, path.stat().st_size)
    yield b"\0" * (_BLOCK * 2)


def _member(name: str, handle: io.BufferedIOBase | io.BytesIO, size: int | None) -> Iterator[bytes]:
    if size is None:
        data = handle.read()
        size = len(data)
        handle = io.BytesIO(data)
    info = tarfile.TarInfo(name)
    info.size = size
    info.mode = 0o644
    yield info.tobuf(format=tarfile.GNU_FORMAT)
    while chunk := handle.read(_CHUNK):
        yield chunk
    if size % _BLOCK:
        yield b"\0" * (_BLOCK - size % _BLOCK)


_LOAD_LOCKS: dict[str, threading.Lock] = {}
_LOCKS_GUARD = threading.Lock()


def ensure_loaded(client: Any, config: Path, layers: list[Path], tags: list[str]) -> tuple[Any, bool]:
    """The engine's image for `config` (its name is the image id), loaded if the engine lacks it
    (once per image even when several nodes ask at the same time); then tagged."""
    from docker.errors import APIError, ImageNotFound

    image_id = "sha256:" + config.name
    with _LOCKS_GUARD:
        lock = _LOAD_LOCKS.setdefault(image_id, threading.Lock())
    loaded = False
    with lock:
        try:
            image = client.images.get(image_id)
        except ImageNotFound:
            try:
                client.images.load(archive_stream(config, layers, tags))
                image = client.images.get(image_id)
            except (APIError, ImageNotFound) as err:
                raise ActionFailed(f"the Docker engine did not load the image: {err}") from None
            loaded = True
    for tag in tags:
        repository, _, name = tag.rpartition(":")
        image.tag(repository, name)
    return image, loaded


def image_tags(repository: str, manifest_digest: str) -> list[str]:
    return [f"{repository}:{manifest_digest.removeprefix('sha256:')[:12]}", f"{repository}:latest"]


@executor("docker.load", version=4, cacheable=False)
def load_image(ctx: ExecContext) -> dict[str, Any]:
    """Inputs: `config`, `layers` (all, base first: the uncompressed tars, which the engine takes
    without decompressing them; a layer pulled compressed as it is), `index`, `repository`;
    unkeyed: `blobs` (what the manifest lists, present for the layout). Loads the image unless
    the engine has it already, then tags it REPOSITORY:<digest prefix> and REPOSITORY:latest;
    also (re)writes the image's OCI layout in the cache.

    Its metadata says what was loaded, never where or how: `layout` is relative to the cache
    directory, and whether the engine already had the image goes in the summary (metadata is
    part of the output digest that dependents key on: it must not vary with the machine)."""
    config = Path(ctx.inputs["config"])
    layers = [Path(p) for p in ctx.inputs["layers"]]
    index = Path(ctx.inputs["index"]).read_bytes()
    digest = json.loads(index)["manifests"][0]["digest"]
    manifest = json.loads(Path(ctx.blob_root, "sha256", digest.removeprefix("sha256:")).read_bytes()) \
        if ctx.blob_root else None
    named = [manifest["config"]["digest"], *(layer["digest"] for layer in manifest["layers"])] if manifest else []
    layout = write_layout(ctx, ctx.blob_root, index, digest, named) if ctx.blob_root else None
    image_id = "sha256:" + config.name
    tags = image_tags(ctx.inputs["repository"], digest)
    _, loaded = ensure_loaded(docker_client(), config, layers, tags)
    ctx.summarize(f"{'loaded' if loaded else 'already in the engine:'} {tags[0]}")
    return {"image_id": image_id, "digest": digest, "tags": tags,
            "layout": os.path.relpath(layout, Path(ctx.blob_root).parent) if layout and ctx.blob_root else None}
