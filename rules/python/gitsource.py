"""Git sources of libraries: a ref resolved to a commit, and files read at that commit."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from graphbuild.api import ActionFailed, run_process

_GIT_ENV = {"GIT_TERMINAL_PROMPT": "0", "GIT_CONFIG_NOSYSTEM": "1", "LC_ALL": "C"}


def git(args: list[str], *, cwd: Path | None = None) -> str:
    import os

    proc = run_process(["git", *args], cwd=cwd, env={**os.environ, **_GIT_ENV}, timeout=600)
    if proc.returncode != 0:
        raise ActionFailed(f"git {' '.join(args[:2])} failed: {proc.stderr.strip().splitlines()[-1:]}",
                           details=proc.stderr)
    return proc.stdout


def absolute_url(url: str, workspace_root: Path, package: str) -> str:
    """A URL written as a relative path (`../repos/lib.git`) is relative to its BUILD.envs."""
    if url.startswith(("./", "../")):
        return (workspace_root / package / url).resolve().as_uri()
    return url


def resolve_ref(url: str, kind: str, ref: str) -> str | None:
    """The commit a branch or tag names now (None: no such ref); a commit is returned as is."""
    if kind == "commit":
        return ref
    patterns = [f"refs/heads/{ref}"] if kind == "branch" else [f"refs/tags/{ref}^{{}}", f"refs/tags/{ref}"]
    found = {}
    for line in git(["ls-remote", url, *patterns]).splitlines():
        sha, name = line.split("\t", 1)
        found[name] = sha
    for pattern in patterns:
        if pattern in found:
            return found[pattern]
    return None


def checkout(url: str, commit: str, dest: Path) -> Path:
    """A work tree of `url` at `commit` in `dest` (a fresh clone: works for any commit)."""
    git(["clone", "--quiet", "--no-checkout", url, str(dest)])
    git(["-c", "advice.detachedHead=false", "checkout", "--quiet", commit], cwd=dest)
    return dest


def pretend_version_env(name: str, version: str) -> dict[str, str]:
    """Environment variables through which the tag-based version plugins take a version as
    given instead of asking git (setuptools-scm and hatch-vcs, which uses it; vcs-versioning,
    setuptools-scm's core; pdm-backend; poetry- and uv-dynamic-versioning): the version the
    lock recorded, so the same commit gives the same wheel wherever it is built."""
    upper = re.sub(r"[-_.]+", "_", name).upper()
    return {
        f"SETUPTOOLS_SCM_PRETEND_VERSION_FOR_{upper}": version,
        f"VCS_VERSIONING_PRETEND_VERSION_FOR_{upper}": version,
        # hatch-vcs does not pass the distribution name to setuptools-scm: only the unnamed
        # variable reaches it (a build dependency built from an sdist would see it too; they
        # are wheels in practice)
        "SETUPTOOLS_SCM_PRETEND_VERSION": version,
        "PDM_BUILD_SCM_VERSION": version,
        "POETRY_DYNAMIC_VERSIONING_BYPASS": version,
        "UV_DYNAMIC_VERSIONING_BYPASS": version,
    }


def project_table(tree: Path, subdir: str) -> dict:
    path = tree / subdir / "pyproject.toml" if subdir else tree / "pyproject.toml"
    """The `[project]` table ({} without a pyproject.toml: a setup.py project, whose metadata
    only its build gives)."""
    try:
        return tomllib.loads(path.read_text()).get("project", {})
    except FileNotFoundError:
        return {}
    except (OSError, tomllib.TOMLDecodeError) as err:
        raise ActionFailed(f"cannot read {path.name} of the library: {err}", bad_input=True) from None
