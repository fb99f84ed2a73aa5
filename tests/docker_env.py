"""Helpers for the image tests: the local services (Docker engine, registry, base tarball),
registry queries, and small image workspaces written into temp dirs.

The services come from `scripts/workspace-env.sh` (idempotent; it starts what is missing and
prints `export NAME=VALUE` lines).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from conftest import Result, TestWorkspace

REPO_ROOT = Path(__file__).resolve().parents[1]
WORKSPACE_ENV = REPO_ROOT / "scripts" / "workspace-env.sh"
EXAMPLE_REPOS = REPO_ROOT / "scripts" / "example-repos.sh"
SERVICE_VARS = ("DOCKER_HOST", "GRAPHBUILD_REGISTRY", "GRAPHBUILD_BASE_TARBALL")

#: the accept header for reading image manifests back from the registry
_ACCEPT = ", ".join(["application/vnd.oci.image.manifest.v1+json", "application/vnd.oci.image.index.v1+json",
                     "application/vnd.docker.distribution.manifest.v2+json"])


# -- services -------------------------------------------------------------------------------


class ServicesUnavailable(Exception):
    """scripts/workspace-env.sh failed or printed no usable exports."""


def parse_exports(text: str) -> dict[str, str]:
    """`export A=1 B='x y'` lines -> {A: "1", B: "x y"}; other lines are ignored."""
    found: dict[str, str] = {}
    for line in text.splitlines():
        words = shlex.split(line.strip())
        if not words or words[0] != "export":
            continue
        for word in words[1:]:
            name, sep, value = word.partition("=")
            if sep:
                found[name] = value
    return found


def start_services(timeout: float = 1800) -> dict[str, str]:
    """Run scripts/workspace-env.sh and return the variables it exports."""
    try:
        proc = subprocess.run(["bash", str(WORKSPACE_ENV)], cwd=REPO_ROOT, capture_output=True, text=True,
                              timeout=timeout)
    except (OSError, subprocess.TimeoutExpired) as err:
        raise ServicesUnavailable(f"{WORKSPACE_ENV.name} did not finish: {err}") from None
    if proc.returncode != 0:
        tail = "\n".join(proc.stderr.strip().splitlines()[-15:])
        raise ServicesUnavailable(f"{WORKSPACE_ENV.name} exited with {proc.returncode}:\n{tail}")
    exports = parse_exports(proc.stdout)
    missing = [name for name in SERVICE_VARS if not exports.get(name)]
    if missing:
        raise ServicesUnavailable(f"{WORKSPACE_ENV.name} exported no {', '.join(missing)}:\n{proc.stdout}")
    return exports


def unique_repository(prefix: str = "gbtest") -> str:
    """A registry repository prefix no other run uses."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


# -- registry --------------------------------------------------------------------------------


def registry() -> str:
    return os.environ["GRAPHBUILD_REGISTRY"]


def _get(path: str, *, method: str = "GET", accept: str | None = None) -> tuple[int, bytes, Any]:
    request = urllib.request.Request(f"http://{registry()}{path}", method=method,
                                     headers={"Accept": accept} if accept else {})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read(), response.headers
    except urllib.error.HTTPError as err:
        return err.code, err.read(), err.headers


def tags(repository: str) -> list[str]:
    """The repository's tags; [] when the registry does not know the repository."""
    status, body, _ = _get(f"/v2/{repository}/tags/list")
    if status == 404:
        return []
    assert status == 200, (status, body)
    return json.loads(body).get("tags") or []


def image_tags(repository: str) -> list[str]:
    """The tags people push, without the `sha256-<hex>` tags of referrers indexes (OCI 1.1's
    fallback for registries without the referrers API: where the SBOMs are listed)."""
    return [t for t in tags(repository) if not re.fullmatch(r"sha256-[0-9a-f]{64}", t)]


def manifest_digest(repository: str, tag: str) -> str | None:
    """`HEAD /v2/<repo>/manifests/<tag>`: the digest, or None on 404."""
    status, body, headers = _get(f"/v2/{repository}/manifests/{tag}", method="HEAD", accept=_ACCEPT)
    if status == 404:
        return None
    assert status == 200, (status, body)
    return headers["Docker-Content-Digest"]


def raw_manifest(repository: str, reference: str) -> tuple[bytes, str]:
    """A manifest's bytes and media type, as the registry serves them."""
    status, body, headers = _get(f"/v2/{repository}/manifests/{reference}", accept=_ACCEPT)
    assert status == 200, (status, body)
    return body, headers["Content-Type"]


def manifest(repository: str, tag: str) -> dict[str, Any]:
    """The image manifest a tag names: through the index graphbuild tags (one image, and the
    release's annotations)."""
    document = json.loads(raw_manifest(repository, tag)[0])
    if "manifests" in document:
        [entry] = document["manifests"]
        document = json.loads(raw_manifest(repository, entry["digest"])[0])
    return document


def image_digest(repository: str, tag: str) -> str | None:
    """The digest of the image manifest a tag names (through the release index), or None."""
    if manifest_digest(repository, tag) is None:
        return None
    document = json.loads(raw_manifest(repository, tag)[0])
    if "manifests" in document:
        return document["manifests"][0]["digest"]
    return manifest_digest(repository, tag)


def blob(repository: str, digest: str) -> bytes:
    status, body, _ = _get(f"/v2/{repository}/blobs/{digest}")
    assert status == 200, (status, digest)
    return body


def blob_sizes(document: dict[str, Any]) -> dict[str, int]:
    """digest -> size of every blob an image manifest names (layers and config)."""
    sizes = {layer["digest"]: layer["size"] for layer in document["layers"]}
    sizes[document["config"]["digest"]] = document["config"]["size"]
    return sizes


# -- workspaces ------------------------------------------------------------------------------

BASE = 'base_image(name = "base", tarball = "../.bases/base.tar")\n'

PYPROJECT = """
[build-system]
requires = ["setuptools>=68"]
build-backend = "setuptools.build_meta"

[project]
name = "{name}"
version = "0.1.0"
dependencies = [{deps}]

[tool.setuptools]
packages = ["{name}"]
"""


def link_base(ws: TestWorkspace) -> None:
    """`.bases/base.tar` of the workspace: the real base tarball, hard-linked (graphbuild reads
    no file outside the workspace, so a symlink out would be refused), else copied."""
    place_file(Path(os.environ["GRAPHBUILD_BASE_TARBALL"]), ws.root / ".bases" / "base.tar")


def copy_example(root: Path) -> None:
    """The repository's example workspace (graphbuild.toml, envs, libs, the git repository the
    research environment follows, the base tarballs hard-linked) copied to a new `root`."""
    subprocess.run(["bash", str(EXAMPLE_REPOS)], check=True, capture_output=True, text=True)
    root.mkdir(parents=True)
    shutil.copy2(REPO_ROOT / "graphbuild.toml", root / "graphbuild.toml")
    ignore = shutil.ignore_patterns("__pycache__", "graphbuild-out", "*.egg-info")
    for name in ("envs", "libs", ".repos"):
        shutil.copytree(REPO_ROOT / name, root / name, symlinks=True, ignore=ignore)
    for tarball in (REPO_ROOT / ".bases").iterdir():  # hard links (or copies): never symlinks out
        place_file(tarball.resolve(), root / ".bases" / tarball.name)


def place_file(source: Path, dest: Path) -> None:
    """`dest` holds `source`'s bytes, without a symlink: a hard link, or a copy across file systems."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    if dest.is_symlink() or dest.exists():
        dest.unlink()
    try:
        os.link(source, dest)
    except OSError:
        shutil.copyfile(source, dest)


def write_library(ws: TestWorkspace, name: str, *, module: str, test: str, deps: tuple[str, ...] = ()) -> None:
    """A py_library at //libs/<name>: package <name> and tests/test_<name>.py."""
    ws.write(f"libs/{name}/BUILD.envs", f'py_library(name = "{name}")\n')
    ws.write(f"libs/{name}/pyproject.toml", PYPROJECT.format(name=name, deps=", ".join(f'"{d}"' for d in deps)))
    ws.write(f"libs/{name}/{name}/__init__.py", module)
    ws.write(f"libs/{name}/tests/test_{name}.py", test)


def ok(result: Result) -> Result:
    assert result.exit_code == 0, result.stderr + result.stdout
    return result


def nodes(result: Result) -> dict[str, dict[str, Any]]:
    """id -> node of a `--json` build/test/run."""
    return {n["id"]: n for n in result.json["nodes"]}
