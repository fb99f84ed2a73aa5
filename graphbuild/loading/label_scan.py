"""Target labels of a workspace found without evaluating it: for shell completion.

A quick scan (`name = "..."` in every BUILD.envs), not the loader: completion must answer at
once. Targets a macro makes under a computed name are missed; `graphbuild query //...` is the
exact list.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

BUILD_FILE = "BUILD.envs"
_SKIPPED = {"graphbuild-out", "node_modules", "__pycache__"}
_NAME = re.compile(r"""\bname\s*=\s*["']([^"'\\]+)["']""")


def scan_labels(start: str | Path) -> list[str]:
    root = _root(Path(start).resolve())
    if root is None:
        return []
    ignored = _ignored(root)
    labels: list[str] = []
    for directory, dirnames, filenames in os.walk(root):
        rel = Path(directory).relative_to(root).as_posix()
        package = "" if rel == "." else rel
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and d not in _SKIPPED
                             and (f"{package}/{d}".lstrip("/")) not in ignored)
        if BUILD_FILE in filenames:
            try:
                text = (Path(directory) / BUILD_FILE).read_text(errors="replace")
            except OSError:
                continue
            names = list(dict.fromkeys(_NAME.findall(text)))
            if names:
                labels.append(f"//{package}/..." if package else "//...")
            labels.extend(f"//{package}:{name}" for name in names)
    return labels


def _root(start: Path) -> Path | None:
    for directory in (start, *start.parents):
        if (directory / "graphbuild.toml").is_file():
            return directory
    return None


def _ignored(root: Path) -> set[str]:
    try:
        text = (root / "graphbuild.toml").read_text()
    except (OSError, UnicodeDecodeError):
        return set()
    if "ignore" not in text:
        return set()
    import tomllib

    try:
        ignore = tomllib.loads(text).get("workspace", {}).get("ignore", [])
    except tomllib.TOMLDecodeError:
        return set()
    return {str(p).strip("/") for p in ignore if isinstance(p, str)}
