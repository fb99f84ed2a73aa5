"""Wheels built from sources: in-repo libraries, git checkouts and sdists, each in its own node."""

from __future__ import annotations

import hashlib
import shutil
import urllib.request
from pathlib import Path
from typing import Any

from graphbuild.api import ActionFailed, ExecContext, executor
from graphbuild.rules.python import gitsource
from graphbuild.rules.python.uv import run_uv
from graphbuild.rules.tarball import write_tree

# Zip timestamps of the wheel; with it, the same sources give the same wheel bytes.
SOURCE_DATE_EPOCH = "315532800"


def _build(ctx: ExecContext, source: Path) -> dict[str, Any]:
    dist = ctx.scratch / "dist"
    proc = run_uv(["build", "--wheel", "--out-dir", str(dist), "--quiet", str(source)], cwd=ctx.scratch,
                  env={"SOURCE_DATE_EPOCH": SOURCE_DATE_EPOCH})
    ctx.log(proc.stdout + proc.stderr)
    wheels = sorted(dist.glob("*.whl")) if dist.is_dir() else []
    if proc.returncode != 0 or len(wheels) != 1:
        raise ActionFailed("building the wheel failed", details=proc.stderr)
    shutil.copyfile(wheels[0], ctx.out("wheel"))
    ctx.out("filename").write_text(wheels[0].name + "\n")
    return {"filename": wheels[0].name}


@executor("python.wheel.local", version=1)
def wheel_from_workspace(ctx: ExecContext) -> dict[str, Any]:
    """Inputs: `files` (the library's files), `root` (their directory in the workspace)."""
    root = ctx.workspace_root / ctx.inputs["root"]
    source = ctx.scratch / "src"
    for path in ctx.inputs["files"]:
        dest = source / Path(path).relative_to(root)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, dest)
    return _build(ctx, source)


@executor("python.wheel.git", version=2)
def wheel_from_git(ctx: ExecContext) -> dict[str, Any]:
    """Inputs: `url`, `commit`, `subdir`, `package` (where a relative url is relative to)."""
    url = gitsource.absolute_url(ctx.inputs["url"], ctx.workspace_root, ctx.inputs["package"])
    tree = gitsource.checkout(url, ctx.inputs["commit"], ctx.scratch / "checkout")
    shutil.rmtree(tree / ".git")
    source = tree / ctx.inputs["subdir"] if ctx.inputs["subdir"] else tree
    # the library's files, for its tests to run against in images
    write_tree(source, ctx.out("source.tar"))
    return _build(ctx, source)


@executor("python.wheel.sdist", version=1)
def wheel_from_sdist(ctx: ExecContext) -> dict[str, Any]:
    """Inputs: `url`, `sha256`, `filename` of a locked sdist."""
    archive = ctx.scratch / ctx.inputs["filename"]
    with urllib.request.urlopen(ctx.inputs["url"], timeout=300) as response, open(archive, "wb") as out:
        shutil.copyfileobj(response, out)
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()
    if digest != ctx.inputs["sha256"]:
        raise ActionFailed(f"sdist {archive.name} has sha256 {digest}, the lock says {ctx.inputs['sha256']}")
    return _build(ctx, archive)
