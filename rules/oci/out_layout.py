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


@executor("oci.out_files", version=2)
def write_out_files(ctx: ExecContext) -> dict[str, Any]:
    """Inputs: `config` (the image's), `layers` (what the archive holds for each
    layer, base first: its tar where there is one, else, for a base pulled compressed, the
    manifest's blob), `tag`; outputs `oci-layout` and `docker-manifest.json`. Every name comes
    from the inputs (each output path is named by its sha256), never from what the cache holds."""
    config = Path(ctx.inputs["config"])
    layers = [Path(path).name for path in ctx.inputs["layers"]]
    ctx.out("oci-layout").write_text(json.dumps({"imageLayoutVersion": "1.0.0"}))
    manifest = [{"Config": f"blobs/sha256/{config.name}", "RepoTags": [ctx.inputs["tag"]],
                 "Layers": [f"blobs/sha256/{sha}" for sha in layers]}]
    ctx.out("docker-manifest.json").write_text(json.dumps(manifest))
    return {"layers": len(layers)}


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
