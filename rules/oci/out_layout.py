"""The image a user takes away: an OCI image layout under `graphbuild-out/<package>/<name>/`.

Written by a node of its own (not cached: it writes the workspace's output tree, like the
other outputs of `graphbuild build`), from the image node's documents and the layers' blobs,
with no Docker engine. With `--output docker-archive` it also writes
`graphbuild-out/<package>/<name>.docker.tar`, which `docker load` reads.

The layout is its own copy: nothing in it links into the cache, so `graphbuild clean` or a
cache gc cannot leave it dangling, and editing it cannot damage the cache. Blobs an earlier
layout of the same target already holds are hard-linked from it (a pin change copies only
the changed layer). The new layout is made beside the old one and renamed over it: a reader
sees the old layout or the new one, never half of one. Nothing is written through a symlink.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

from graphbuild.api import ActionFailed, ExecContext, executor
from graphbuild.rules.oci.docker_engine import archive_stream

OUT_DIR = "graphbuild-out"
OUTPUT_KINDS = ("oci", "docker-archive")


def output_dir(workspace_root: Path, package: str) -> Path:
    """graphbuild-out/<package>/, made as needed; a symlink or a file on the way is refused."""
    current = workspace_root
    for part in [OUT_DIR, *(p for p in package.split("/") if p)]:
        if part in (".", ".."):
            raise ActionFailed(f"package {package!r} is not a path inside {OUT_DIR}/", bad_input=True)
        current = current / part
        with contextlib.suppress(FileExistsError):
            current.mkdir()
        if current.is_symlink() or not current.is_dir():
            raise ActionFailed(f"cannot write the image layout through {current}: it is not a directory",
                               details=f"remove it (graphbuild clean removes {OUT_DIR}/): outputs are written "
                               f"only inside {OUT_DIR}/, never through a link out of it", bad_input=True)
    return current


def write_oci_layout(dest: Path, index: bytes, blobs: list[Path]) -> bool:
    """Make `dest` an OCI image layout of `index` with `blobs` (files named by their sha256);
    False when it already is exactly that (nothing written)."""
    if _up_to_date(dest, index, blobs):
        return False
    tmp = dest.with_name(f".{dest.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    blob_dir = tmp / "blobs" / "sha256"
    blob_dir.mkdir(parents=True)
    previous = dest / "blobs" / "sha256"
    try:
        for blob in dict.fromkeys(blobs):
            target = blob_dir / blob.name
            old = previous / blob.name
            if not dest.is_symlink() and old.is_file() and not old.is_symlink() \
                    and old.stat().st_size == blob.stat().st_size:
                try:
                    os.link(old, target)
                    continue
                except OSError:
                    pass
            _copy_verified(blob, target)
        (tmp / "oci-layout").write_text(json.dumps({"imageLayoutVersion": "1.0.0"}))
        (tmp / "index.json").write_bytes(index)
        old_dir = dest.with_name(f".{dest.name}.old-{os.getpid()}")
        if dest.is_symlink() or dest.is_file():
            dest.unlink()
        elif dest.exists():
            os.replace(dest, old_dir)
        os.replace(tmp, dest)
        shutil.rmtree(old_dir, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return True


def _copy_verified(blob: Path, target: Path) -> None:
    """Copy a blob of the store (named by its sha256), checking its bytes on the way."""
    digest = hashlib.sha256()
    with open(blob, "rb") as source, open(target, "wb") as out:
        while chunk := source.read(1 << 20):
            digest.update(chunk)
            out.write(chunk)
    if digest.hexdigest() != blob.name:
        raise ActionFailed(f"the cache's blob {blob.name} is damaged (its bytes hash to {digest.hexdigest()})",
                           details="run the build again: a damaged blob is rebuilt or fetched again")
    os.chmod(target, 0o444)


def _up_to_date(dest: Path, index: bytes, blobs: list[Path]) -> bool:
    try:
        if dest.is_symlink() or (dest / "index.json").read_bytes() != index:
            return False
        for blob in blobs:
            found = dest / "blobs" / "sha256" / blob.name
            if found.is_symlink() or found.stat().st_size != blob.stat().st_size:
                return False
    except OSError:
        return False
    return True


def write_docker_archive(dest: Path, config: Path, layers: list[Path], tags: list[str]) -> None:
    tmp = dest.with_name(f".{dest.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as out:
            for chunk in archive_stream(config, layers, tags):
                out.write(chunk)
        os.replace(tmp, dest)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


@executor("oci.out_layout", version=1, cacheable=False)
def write_image_outputs(ctx: ExecContext) -> dict[str, Any]:
    """Inputs: `index` (the image node's), `package`, `name`, `repository`; the nodes making the
    layers' blobs come before it (`waits_for`), and every blob is found beside the index, in the
    blob store, by its digest: reading it through an input would hash every layer on every
    build, even when the layout is up to date. Option `output` (from `--output`): "oci" (the
    default) or "docker-archive" (both)."""
    kind = ctx.options.get("output") or "oci"
    if kind not in OUTPUT_KINDS:
        raise ActionFailed(f"--output must be one of {', '.join(OUTPUT_KINDS)}, not {kind!r}", bad_input=True)
    index = Path(ctx.inputs["index"])
    store = index.parent
    document = json.loads(index.read_bytes())
    manifest_digest = document["manifests"][0]["digest"]
    manifest = store / manifest_digest.removeprefix("sha256:")
    manifest_doc = json.loads(manifest.read_bytes())
    config = store / manifest_doc["config"]["digest"].removeprefix("sha256:")
    layers = [store / layer["digest"].removeprefix("sha256:") for layer in manifest_doc["layers"]]
    missing = [p.name for p in [manifest, config, *layers] if not p.is_file()]
    if missing:
        raise ActionFailed(f"the image's blobs {', '.join(missing[:3])} are not in the local cache")
    where = output_dir(ctx.workspace_root, ctx.inputs["package"])
    layout = where / ctx.inputs["name"]
    written = write_oci_layout(layout, index.read_bytes(), [manifest, config, *layers])
    result: dict[str, Any] = {"layout": str(layout.relative_to(ctx.workspace_root)), "written": written,
                              "digest": manifest_digest}
    if kind == "docker-archive":
        archive = where / f"{ctx.inputs['name']}.docker.tar"
        tag = f"{ctx.inputs['repository']}:latest"
        # the uncompressed tars where the store has them (the engine then decompresses nothing)
        diff_ids = json.loads(config.read_bytes())["rootfs"]["diff_ids"]
        loadable = [tar if (tar := store / diff.removeprefix("sha256:")).is_file() else blob
                    for diff, blob in zip(diff_ids, layers, strict=True)]
        write_docker_archive(archive, config, loadable, [tag])
        result["archive"] = str(archive.relative_to(ctx.workspace_root))
        result["tag"] = tag
    shown = result.get("archive") or result["layout"]
    result["summary"] = f"{'wrote' if written or kind != 'oci' else 'up to date:'} {shown}"
    return result
