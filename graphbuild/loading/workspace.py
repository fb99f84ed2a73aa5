"""The workspace: its root (marked by `graphbuild.toml`), its packages and its config."""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from graphbuild.errors import Location, SpecError, UsageError

MARKER = "graphbuild.toml"
BUILD_FILE = "BUILD.envs"
# Never packages: tool state and things no one declares targets in.
ALWAYS_IGNORED = frozenset({"graphbuild-out", "node_modules", "__pycache__"})


@dataclass
class Workspace:
    root: Path
    config: dict = field(default_factory=dict)

    @staticmethod
    def find(start: Path) -> Workspace:
        """The workspace containing `start`: the nearest ancestor holding `graphbuild.toml`."""
        start = start.resolve()
        for directory in (start, *start.parents):
            marker = directory / MARKER
            if marker.is_file():
                return Workspace(directory, _read_config(marker))
        raise UsageError(
            f"not inside a graphbuild workspace (no {MARKER} in {start} or above)",
            hint=f"create an empty {MARKER} at the root of your repository",
        )

    @property
    def ignored(self) -> frozenset[str]:
        extra = self.config.get("workspace", {}).get("ignore", [])
        return frozenset(p.strip("/") for p in extra)

    def package_dir(self, package: str) -> Path:
        return self.root / package if package else self.root

    def build_file(self, package: str) -> Path:
        return self.package_dir(package) / BUILD_FILE

    def rel(self, path: Path | str) -> str:
        return Path(path).resolve().relative_to(self.root).as_posix()

    def package_of(self, path: Path) -> str:
        """The package a directory belongs to (for labels typed relative to the cwd)."""
        path = path.resolve()
        try:
            rel = path.relative_to(self.root)
        except ValueError:
            return ""
        for candidate in (rel, *rel.parents):
            pkg = candidate.as_posix().strip(".")
            if self.build_file(pkg).is_file():
                return pkg
        return ""

    def packages_under(self, package: str) -> list[str]:
        """Every package in the subtree of `package` (itself included), sorted."""
        ignored = self.ignored
        found: list[str] = []
        top = self.package_dir(package)
        for dirpath, dirnames, filenames in os.walk(top):
            rel = Path(dirpath).relative_to(self.root).as_posix()
            rel = "" if rel == "." else rel
            dirnames[:] = sorted(
                d for d in dirnames
                if not d.startswith(".") and d not in ALWAYS_IGNORED and f"{rel}/{d}".strip("/") not in ignored
            )
            if BUILD_FILE in filenames:
                found.append(rel)
        return sorted(found)


def _read_config(marker: Path) -> dict:
    try:
        return tomllib.loads(marker.read_text())
    except tomllib.TOMLDecodeError as err:
        raise SpecError(f"invalid TOML: {err}", location=Location(marker.name)) from None
