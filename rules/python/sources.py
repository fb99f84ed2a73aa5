"""The source files of an in-repo library: the files of its directory that git would list.

git's rules are followed exactly (`gitignore.py`): every `.gitignore` from the workspace root
down to each file, then `.git/info/exclude`; a file git tracks is listed even when a pattern
matches it, as `git ls-files` does. Tool state that is never source (`__pycache__`, `.venv`,
`*.egg-info`, ...) is skipped even when no `.gitignore` says so, and so are nested packages
(directories with their own BUILD.envs). The package's own BUILD.envs is its description, not
its content: a comment added there rebuilds nothing.
"""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

from graphbuild.rules.python.gitignore import IgnoreRules

_ALWAYS_SKIPPED = {".git", "__pycache__", ".venv", "graphbuild-out", ".pytest_cache", ".ruff_cache", ".mypy_cache"}
_BUILD_FILE = "BUILD.envs"
_GIT_ENV = {"GIT_TERMINAL_PROMPT": "0", "GIT_CONFIG_NOSYSTEM": "1", "LC_ALL": "C"}


def library_files(workspace_root: Path, package: str) -> list[Path]:
    """The library's files under workspace_root/package, sorted."""
    rules = IgnoreRules.for_workspace(workspace_root)
    top = workspace_root / package if package else workspace_root
    if package and rules.ignored(package, is_dir=True):
        return sorted(_tracked_but_ignored(workspace_root, package))
    found: list[Path] = []
    excluded = False
    for dirpath, dirnames, filenames in os.walk(top):
        here = Path(dirpath)
        rel = here.relative_to(workspace_root).as_posix()
        prefix = "" if rel == "." else rel + "/"
        kept = []
        for name in sorted(dirnames):
            if _skipped_dir(here, name):
                continue
            if rules.ignored(prefix + name, is_dir=True):
                excluded = True
                continue
            kept.append(name)
        dirnames[:] = kept
        for name in sorted(filenames):
            if here == top and name == _BUILD_FILE:
                continue  # the package's spec, not the library's content: its attributes enter keys
            if rules.ignored(prefix + name, is_dir=False):
                excluded = True
            else:
                found.append(here / name)
    if excluded:  # only then can a tracked file be one a pattern matches
        found.extend(_tracked_but_ignored(workspace_root, package))
    return sorted(set(found))


def _skipped_dir(parent: Path, name: str) -> bool:
    return (name in _ALWAYS_SKIPPED or name.endswith(".egg-info")
            or (parent / name / _BUILD_FILE).is_file())


def _tracked_but_ignored(workspace_root: Path, package: str) -> list[Path]:
    """Files git tracks under the package although an ignore pattern matches them (added with
    `git add -f`): `git ls-files` lists them, so they are sources too. Nothing outside a git
    work tree."""
    top = workspace_root / package if package else workspace_root
    try:
        proc = subprocess.run(["git", "ls-files", "-z", "--cached", "--ignored", "--exclude-standard", "--", "."],
                              cwd=top, capture_output=True, env={**os.environ, **_GIT_ENV}, timeout=120)
    except (OSError, subprocess.TimeoutExpired):
        return []
    if proc.returncode != 0:
        return []
    found = []
    for raw in proc.stdout.split(b"\0"):
        if not raw:
            continue
        rel = os.fsdecode(raw)
        parts = rel.split("/")
        if any(p in _ALWAYS_SKIPPED or p.endswith(".egg-info") for p in parts[:-1]):
            continue
        if any((top.joinpath(*parts[:i]) / _BUILD_FILE).is_file() for i in range(1, len(parts))):
            continue  # a nested package's file
        path = top / rel
        try:
            mode = path.lstat().st_mode
        except OSError:
            continue  # tracked, but deleted from the work tree
        if stat.S_ISREG(mode) or stat.S_ISLNK(mode):
            found.append(path)
    return found
