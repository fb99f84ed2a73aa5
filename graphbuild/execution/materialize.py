"""Copy the files requested targets produce into `graphbuild-out/`, where people look for them."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterable
from pathlib import Path

from graphbuild.cache.blobs import BlobStore
from graphbuild.execution.events import NodeOutcome
from graphbuild.nodes import OutputRef

OUT_DIR = "graphbuild-out"


def materialize(refs: Iterable[OutputRef], outcomes: dict[str, NodeOutcome], blobs: BlobStore,
                workspace_root: Path, digest_of: Callable[[Path], str]) -> list[Path]:
    """Write each output under graphbuild-out/<package>/<name>; unchanged files are left alone.

    Reading a blob verifies it, so a corrupt one raises `CorruptBlob` here instead of being
    handed to the user.
    """
    written = []
    for ref in refs:
        outcome = outcomes.get(ref.node_id)
        if outcome is None or not outcome.ok:
            continue
        sha, _, executable = outcome.outputs[ref.name]
        package = ref.node_id.split(":", 1)[0].removeprefix("//")
        dest = workspace_root / OUT_DIR / package / ref.name
        if dest.is_file() and digest_of(dest) == sha:
            continue
        source = blobs.verified_path(sha)
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")  # per process: two builds may write it at once
        shutil.copyfile(source, tmp)
        os.chmod(tmp, 0o755 if executable else 0o644)
        os.replace(tmp, dest)
        written.append(dest)
    return written
