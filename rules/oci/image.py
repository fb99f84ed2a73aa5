"""Daemonless image assembly: base layers + layers -> OCI config, manifest and index.

Layers are uncompressed tars already in the blob store (their sha256 is both the blob digest
and the diff_id), so assembling an image writes three small JSON documents; the same inputs
give the same bytes, hence the same image digest, on any machine.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Any

from graphbuild.api import ExecContext, executor
from graphbuild.cache import oci_media as media

EPOCH = "1970-01-01T00:00:00Z"
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def blob_digest(path: Path) -> str:
    """Outputs handed to an executor are files of the blob store, named by their sha256."""
    return "sha256:" + path.name


@executor("oci.image", version=1)
def assemble_image(ctx: ExecContext) -> dict[str, Any]:
    """Inputs: `base` {layers: [{blob, media_type, diff_id}], env}, `layers` (tars), `layer_names`,
    `env`, `cmd`, `labels`, `name` (the ref name in the index)."""
    base = ctx.inputs["base"]
    descriptors, diff_ids, history = [], [], []
    for layer in base["layers"]:
        path = Path(layer["blob"])
        descriptors.append({"mediaType": layer["media_type"], "digest": blob_digest(path),
                            "size": path.stat().st_size})
        diff_ids.append(layer["diff_id"] or blob_digest(path))
        history.append({"created": EPOCH, "created_by": f"base {base['label']}"})
    for name, layer in zip(ctx.inputs["layer_names"], ctx.inputs["layers"], strict=True):
        path = Path(layer)
        descriptors.append({"mediaType": media.LAYER_TAR, "digest": blob_digest(path), "size": path.stat().st_size})
        diff_ids.append(blob_digest(path))
        history.append({"created": EPOCH, "created_by": f"graphbuild {name}"})
    env = _merge_env(base.get("env", []), ctx.inputs["env"])
    config = {
        "architecture": ctx.inputs.get("architecture", "amd64"),
        "os": "linux",
        "created": EPOCH,
        "config": {"Env": env, "Cmd": ctx.inputs["cmd"], "WorkingDir": "/", "Labels": ctx.inputs["labels"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": history,
    }
    config_bytes = media.canonical_json(config)
    ctx.out("config.json").write_bytes(config_bytes)
    manifest = {
        "schemaVersion": 2,
        "mediaType": media.MANIFEST,
        "config": {"mediaType": media.CONFIG, "digest": media.sha256_digest(config_bytes),
                   "size": len(config_bytes)},
        "layers": descriptors,
    }
    manifest_bytes = media.canonical_json(manifest)
    ctx.out("manifest.json").write_bytes(manifest_bytes)
    digest = media.sha256_digest(manifest_bytes)
    index = {"schemaVersion": 2, "mediaType": media.INDEX, "manifests": [
        {"mediaType": media.MANIFEST, "digest": digest, "size": len(manifest_bytes),
         "annotations": {"org.opencontainers.image.ref.name": ctx.inputs["name"]}}]}
    ctx.out("index.json").write_bytes(media.canonical_json(index))
    size = sum(d["size"] for d in descriptors) + len(config_bytes)
    return {"digest": digest, "config_digest": media.sha256_digest(config_bytes), "size": size,
            "layers": [d["digest"] for d in descriptors]}


def write_layout(blob_root: Path, index_bytes: bytes, digest: str) -> Path:
    """An OCI image layout in the cache, `<cache>/images/<digest>/`, sharing the blob store."""
    layout = blob_root.parent / "images" / digest.removeprefix("sha256:")
    layout.mkdir(parents=True, exist_ok=True)
    (layout / "oci-layout").write_text(json.dumps({"imageLayoutVersion": "1.0.0"}))
    tmp = layout / f".index.json.{os.getpid()}"
    tmp.write_bytes(index_bytes)
    os.replace(tmp, layout / "index.json")
    link = layout / "blobs"
    if not link.is_symlink():
        with contextlib.suppress(FileExistsError):
            link.symlink_to(os.path.relpath(blob_root, layout))
    return layout


def _merge_env(base_env: list[str], extra: dict[str, str]) -> list[str]:
    merged: dict[str, str] = {}
    for item in base_env:
        key, _, value = item.partition("=")
        merged[key] = value
    merged.setdefault("PATH", DEFAULT_PATH)
    for key, value in extra.items():
        merged[key] = value.replace("$PATH", merged.get("PATH", DEFAULT_PATH))
    return [f"{k}={v}" for k, v in merged.items()]
