"""Wheels built from sources: in-repo libraries, git checkouts and sdists, each in its own node."""

from __future__ import annotations

import email.parser
import hashlib
import re
import shutil
import urllib.request
import zipfile
from pathlib import Path
from typing import Any

from packaging.utils import parse_wheel_filename
from packaging.version import Version

from graphbuild.api import ActionFailed, ExecContext, executor
from graphbuild.rules.python import gitsource
from graphbuild.rules.python.uv import run_uv
from graphbuild.rules.tarball import write_tree

# Zip timestamps of the wheel; with it, the same sources give the same wheel bytes.
SOURCE_DATE_EPOCH = "315532800"


def _build(ctx: ExecContext, source: Path, env: dict[str, str] | None = None) -> dict[str, Any]:
    dist = ctx.scratch / "dist"
    # not --quiet: uv then passes on the build backend's own output, which holds the reason
    # when a build fails
    proc = run_uv(["build", "--wheel", "--out-dir", str(dist), "--no-progress", str(source)], cwd=ctx.scratch,
                  env={"SOURCE_DATE_EPOCH": SOURCE_DATE_EPOCH, **(env or {})})
    ctx.log(proc.stdout + proc.stderr)
    wheels = sorted(dist.glob("*.whl")) if dist.is_dir() else []
    if proc.returncode != 0 or len(wheels) != 1:
        raise ActionFailed(f"building the wheel failed: {build_error(proc.stderr)}")
    shutil.copyfile(wheels[0], ctx.out("wheel"))
    ctx.out("filename").write_text(wheels[0].name + "\n")
    return {"filename": wheels[0].name}


def built_metadata(source: Path, workdir: Path) -> tuple[str, str, list[str]]:
    """The name, version and dependencies a project's build backend gives it (for a project
    that declares them `dynamic`, or in setup.py/setup.cfg): a wheel is built and its METADATA
    read. Raises ActionFailed with the backend's own reason."""
    dist = workdir / "metadata-dist"
    proc = run_uv(["build", "--wheel", "--out-dir", str(dist), "--no-progress", str(source)], cwd=workdir)
    wheels = sorted(dist.glob("*.whl")) if dist.is_dir() else []
    if proc.returncode != 0 or len(wheels) != 1:
        raise ActionFailed(f"building the library to read its version failed: {build_error(proc.stderr)}",
                           details=proc.stderr)
    with zipfile.ZipFile(wheels[0]) as archive:
        name = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA") and n.count("/") == 1)
        message = email.parser.BytesParser().parsebytes(archive.read(name))
    requires = [r for r in message.get_all("Requires-Dist") or [] if "extra" not in r.partition(";")[2]]
    shutil.rmtree(dist, ignore_errors=True)
    return str(message["Name"]), str(message["Version"]), requires


_EXCEPTION_LINE = re.compile(r"^\s*([A-Za-z_][\w.]*(Error|Exception|Exit)|error)\b:?\s")


def build_error(stderr: str) -> str:
    """The build backend's own reason in uv's output: its last exception line (`LookupError:
    setuptools-scm was unable to detect version...`), else uv's last cause."""
    lines = [line.rstrip() for line in stderr.splitlines() if line.strip()]
    for line in reversed(lines):
        if _EXCEPTION_LINE.match(line) and not line.lstrip().startswith("error: Failed to build"):
            return line.strip()
    causes = [line.strip().removeprefix("cause: ") for line in lines if line.strip().startswith("cause:")]
    if causes:
        return causes[-1]
    return lines[-1].strip() if lines else "uv build failed without a message"


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


@executor("python.wheel.git", version=3)
def wheel_from_git(ctx: ExecContext) -> dict[str, Any]:
    """Inputs: `url`, `commit`, `subdir`, `package` (where a relative url is relative to), and
    `version`: the version the lock recorded for the commit (empty: the project's own).

    The checkout keeps its `.git`: build backends that take the version from git tags
    (setuptools-scm, hatch-vcs, versioningit...) need it, and so do their file finders (the
    files git tracks go into the wheel). The version is handed to them as the lock recorded
    it, so tags added to the repository since then change nothing; a backend that ignores the
    hand-over and builds another version fails the node instead of building something else."""
    url = gitsource.absolute_url(ctx.inputs["url"], ctx.workspace_root, ctx.inputs["package"])
    tree = gitsource.checkout(url, ctx.inputs["commit"], ctx.scratch / "checkout")
    source = tree / ctx.inputs["subdir"] if ctx.inputs["subdir"] else tree
    # the library's files, for its tests to run against in images (git's own data left out)
    aside = ctx.scratch / "git-dir"
    (tree / ".git").rename(aside)
    write_tree(source, ctx.out("source.tar"))
    aside.rename(tree / ".git")
    expected = ctx.inputs.get("version") or ""
    name = ctx.inputs.get("name") or ""
    env = gitsource.pretend_version_env(name, expected) if expected and name else {}
    result = _build(ctx, source, env)
    built = parse_wheel_filename(result["filename"])[1]
    if expected and built != Version(expected):
        raise ActionFailed(f"the build backend made version {built} of {name}, the lock says {expected} "
                           "(its version plugin ignores the version graphbuild hands it)",
                           details="relock to record what the backend builds now: graphbuild lock TARGET")
    return result


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
