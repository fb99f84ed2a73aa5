"""The image a user takes away from `graphbuild build`: an OCI image layout in
`graphbuild-out/<package>/<name>/`, and with `--output docker-archive` a
`graphbuild-out/<package>/<name>.docker.tar` that `docker load` reads; no Docker engine needed.

Both are output trees of the environment (`OutputTree`): the engine copies the blobs there from
the store once a build is done, as it delivers any output, so nothing in them links into the
cache (`graphbuild clean` or a cache gc cannot leave them dangling, and editing them cannot
damage the cache), an unchanged blob is not copied again, and an up-to-date layout costs a
build nothing (no node runs for it). The only node is `#out`, which writes the two small
documents the formats need beyond the image's own: `oci-layout` and the archive's
`manifest.json` (made from the config, whose `diff_ids` name the layers' tars).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from graphbuild.api import ExecContext, OutputRef, OutputTree, executor

DOCKER_ARCHIVE = "docker-archive"


@executor("oci.out_files", version=1)
def write_out_files(ctx: ExecContext) -> dict[str, Any]:
    """Inputs: `config` and `manifest` (the image's), `tag`; outputs `oci-layout` and
    `docker-manifest.json`. The archive holds each layer as its tar (named by its diff_id)
    where there is one, else (a base pulled compressed) as the manifest's blob."""
    config, image = Path(ctx.inputs["config"]), json.loads(Path(ctx.inputs["manifest"]).read_bytes())
    diff_ids = json.loads(config.read_bytes())["rootfs"]["diff_ids"]
    store = config.parent  # the blob store: every output is a file named by its sha256
    layers = [diff if (store / diff.removeprefix("sha256:")).is_file() else layer["digest"]
              for diff, layer in zip(diff_ids, image["layers"], strict=True)]
    ctx.out("oci-layout").write_text(json.dumps({"imageLayoutVersion": "1.0.0"}))
    manifest = [{"Config": f"blobs/sha256/{config.name}", "RepoTags": [ctx.inputs["tag"]],
                 "Layers": [f"blobs/sha256/{d.removeprefix('sha256:')}" for d in layers]}]
    ctx.out("docker-manifest.json").write_text(json.dumps(manifest))
    return {"layers": len(diff_ids)}


def image_trees(name: str, *, out: Any, index: OutputRef, manifest: OutputRef, config: OutputRef,
                blobs: list[OutputRef], tars: list[OutputRef]) -> tuple[OutputTree, ...]:
    """The layout `<name>/` (blobs first, `index.json` last: a reader never finds an index
    naming a blob not yet there) and the archive `<name>.docker.tar` (the layers as tars: the
    engine decompresses nothing)."""
    cas = "blobs/sha256/{sha256}"
    layout = OutputTree(path=name, files=(
        *((cas, blob) for blob in blobs), (cas, config), (cas, manifest),
        ("oci-layout", out.output("oci-layout")), ("index.json", index)))
    archive = OutputTree(path=f"{name}.docker.tar", kind=DOCKER_ARCHIVE, files=(
        ("manifest.json", out.output("docker-manifest.json")), (cas, config), *((cas, tar) for tar in tars)))
    return layout, archive
