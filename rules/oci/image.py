"""Daemonless image assembly: base layers + layers -> OCI config, manifest and index.

Layers are already in the blob store (compressed by their own nodes, see `compress.py`;
`diff_ids` are the tars' digests), so assembling an image writes three small JSON documents;
the same inputs give the same bytes, hence the same image digest, on any machine.

graphbuild's own layers come with their file lists (`files.json`, written with the layer): a
layer that would replace another layer's file with different content is refused, naming both
layers and the path, instead of shipping whichever came last.
"""

from __future__ import annotations

import contextlib
import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from graphbuild.api import ActionFailed, ExecContext, executor, media, write_atomic
from graphbuild.rules.oci.descriptors import ResolvedLayer

EPOCH = "1970-01-01T00:00:00Z"
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def blob_digest(path: Path) -> str:
    """Outputs handed to an executor are files of the blob store, named by their sha256."""
    return "sha256:" + path.name


def runtime_config(base_env: list[str], env: dict[str, str]) -> dict[str, Any]:
    """The fields of an image's config that reach a process started with an explicit command
    (`Cmd` does not: the command replaces it). The test nodes key on exactly this."""
    return {"Env": _merge_env(base_env, env), "WorkingDir": "/", "User": "", "Entrypoint": None}


@executor("oci.image", version=3)
def assemble_image(ctx: ExecContext) -> dict[str, Any]:
    """Inputs: `layers` (each `ImageLayer.as_input()`, base first), `layer_names` (one per layer, for
    the history), `base_env`, `env`, `cmd`, `labels`, `created`, `architecture`, `name` (the ref
    name in the layout's index); unkeyed: `layer_files` (the `files.json` of each of graphbuild's
    own layers, by name), checked for layers overwriting each other."""
    listings = ctx.unkeyed.get("layer_files") or {}
    check_overlaps([(name, Path(listing)) for name, listing in listings.items()])
    layers = [ResolvedLayer.from_input(layer) for layer in ctx.inputs["layers"]]
    created = ctx.inputs.get("created") or EPOCH
    history = [{"created": created, "created_by": name} for name in ctx.inputs["layer_names"]]
    runtime = runtime_config(ctx.inputs.get("base_env", []), ctx.inputs["env"])
    config = {
        "architecture": ctx.inputs.get("architecture", "amd64"),
        "os": "linux",
        "created": created,
        "config": {"Env": runtime["Env"], "Cmd": ctx.inputs["cmd"], "WorkingDir": runtime["WorkingDir"],
                   "Labels": ctx.inputs["labels"]},
        "rootfs": {"type": "layers", "diff_ids": [layer.diff for layer in layers]},
        "history": history,
    }
    config_bytes = media.canonical_json(config)
    ctx.out("config.json").write_bytes(config_bytes)
    manifest = {
        "schemaVersion": 2,
        "mediaType": media.MANIFEST,
        "config": {"mediaType": media.CONFIG, "digest": media.sha256_digest(config_bytes),
                   "size": len(config_bytes)},
        "layers": [layer.descriptor() for layer in layers],
    }
    manifest_bytes = media.canonical_json(manifest)
    ctx.out("manifest.json").write_bytes(manifest_bytes)
    digest = media.sha256_digest(manifest_bytes)
    index = {"schemaVersion": 2, "mediaType": media.INDEX, "manifests": [
        {"mediaType": media.MANIFEST, "digest": digest, "size": len(manifest_bytes),
         "annotations": {media.REF_NAME: ctx.inputs["name"]}}]}
    ctx.out("index.json").write_bytes(media.canonical_json(index))
    size = sum(d["size"] for d in manifest["layers"]) + len(config_bytes)
    return {"digest": digest, "config_digest": media.sha256_digest(config_bytes), "size": size,
            "uncompressed_size": sum(layer.loadable.stat().st_size for layer in layers),
            "layers": [d["digest"] for d in manifest["layers"]]}


def created_time(epoch: str | None) -> str | None:
    """RFC 3339 (UTC) of a `SOURCE_DATE_EPOCH` value; None when unset; ValueError when it is not
    a number of seconds."""
    if epoch is None or epoch == "":
        return None
    try:
        seconds = int(epoch)
    except ValueError:
        raise ValueError(f"{epoch!r} is not a whole number of seconds") from None
    if seconds < 0:
        raise ValueError(f"{epoch} is before 1970")
    try:
        return datetime.fromtimestamp(seconds, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    except (OverflowError, OSError, ValueError):
        raise ValueError(f"{epoch} is too far in the future") from None


#: How many overwritten paths a failure lists in its message (all of them go to the details).
_SHOWN = 5


def check_overlaps(layers: list[tuple[str, Path]]) -> None:
    """Refuse layers that replace a file of a layer under them with something else.

    Each listing is `{"entries": [[kind, path, detail], ...]}` (kind `d`, `f` with the content
    digest and mode, or `l` with the link target). Directories may be shared; the same file
    with the same bytes in two layers (a namespace package's `__init__.py`) is no conflict.
    """
    seen: dict[str, tuple[str, str, Any]] = {}
    conflicts: list[str] = []
    for name, listing in layers:
        for kind, path, detail in json.loads(listing.read_bytes())["entries"]:
            previous = seen.get(path)
            if previous is None:
                seen[path] = (name, kind, detail)
            elif (kind, detail) != previous[1:]:
                what = "a directory" if previous[1] == "d" else "a file" if previous[1] == "f" else "a symlink"
                conflicts.append(f"layer {name} overwrites /{path} ({what} of layer {previous[0]})")
    if conflicts:
        more = f" (and {len(conflicts) - _SHOWN} more)" if len(conflicts) > _SHOWN else ""
        raise ActionFailed(
            "layers overwrite each other's files: " + "; ".join(conflicts[:_SHOWN]) + more,
            details="\n".join(conflicts) + "\nTwo layers ship the same path with different content: usually "
            "one distribution locked twice, or two distributions shipping the same module. Every path may come "
            "from one layer only (shadowing is not supported).",
            deterministic=True, metadata={"overwritten": conflicts})


#: the rule-owned state directory of OCI layouts (`ExecContext.state_dir`)
LAYOUTS = "oci-images"


def write_layout(ctx: ExecContext, blob_root: Path, index_bytes: bytes, digest: str, blobs: list[str]) -> Path:
    """An OCI image layout in the cache's state, `state/oci-images/<digest>/`, sharing the blob
    store; `blobs` (every blob the image names: manifest, config, layers) are recorded with it,
    so `cache gc` deletes the layout when it deletes one of them."""
    layout = ctx.state_entry(LAYOUTS, digest.removeprefix("sha256:"), blobs=[digest, *blobs])
    write_atomic(layout / "oci-layout", json.dumps({"imageLayoutVersion": "1.0.0"}).encode())
    write_atomic(layout / "index.json", index_bytes)
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
