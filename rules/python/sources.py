"""The source files of an in-repo library: everything in its directory that git would track."""

from __future__ import annotations

import os
from pathlib import Path

import pathspec

_ALWAYS_SKIPPED = {".git", "__pycache__", ".venv", "graphbuild-out", ".pytest_cache", ".ruff_cache", ".mypy_cache"}


def library_files(root: Path) -> list[Path]:
    """Files under `root` (sorted), honouring `.gitignore` files at and below it; nested
    packages (directories with their own BUILD.envs) are not part of this one."""
    found: list[Path] = []
    specs: list[tuple[Path, pathspec.GitIgnoreSpec]] = []
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        ignore = here / ".gitignore"
        if ignore.is_file():
            specs.append((here, pathspec.GitIgnoreSpec.from_lines(ignore.read_text().splitlines())))

        def ignored(path: Path, is_dir: bool) -> bool:
            for base, spec in specs:
                if base == path or base in path.parents:
                    rel = path.relative_to(base).as_posix() + ("/" if is_dir else "")
                    if spec.match_file(rel):
                        return True
            return False

        dirnames[:] = sorted(
            d for d in dirnames
            if d not in _ALWAYS_SKIPPED and not d.endswith(".egg-info")
            and not (here / d / "BUILD.envs").is_file() and not ignored(here / d, True)
        )
        found.extend(here / f for f in sorted(filenames) if not ignored(here / f, False))
    return sorted(found)
