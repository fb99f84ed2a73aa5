"""The workspace: its root (marked by `graphbuild.toml`), its packages and its config.

`graphbuild.toml` is validated against a schema (`Config`) when the workspace is found:
an unknown key or a value of the wrong type is an error naming the file, the line and the
keys that are valid, before anything else happens.
"""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from graphbuild.errors import GraphbuildError, Location, SpecError, UsageError, did_you_mean, raise_collected
from graphbuild.labels import GRAMMAR_HINT, package_problem
from graphbuild.loading.evaluator import DEFAULT_MEMORY_MB

MARKER = "graphbuild.toml"
BUILD_FILE = "BUILD.envs"
# Never packages: tool state and things no one declares targets in.
ALWAYS_IGNORED = frozenset({"graphbuild-out", "node_modules", "__pycache__"})


class _Section(BaseModel):
    # strict: "yes" is not a boolean, "5" not a number
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class WorkspaceSection(_Section):
    ignore: list[str] = Field(default=[], description="directories (relative to the root) never searched for packages")


class CacheSection(_Section):
    dir: str | None = Field(default=None, description="the local cache directory, relative to the workspace root")
    remote: str | None = Field(default=None, description="a shared cache: oci://HOST/REPOSITORY")
    remote_readonly: bool = Field(default=False, description="read the shared cache, never write to it")
    # each entry is checked (with its own line) where the keys are read: operations/session.py
    trusted_keys: Any = Field(default=[], description="public keys whose shared-cache entries are read")


class PushSection(_Section):
    registry: str | None = Field(default=None, description="HOST[:PORT] of the registry pushes go to")


class PluginsSection(_Section):
    rules: list[str] = Field(default=[], description="Python files of the workspace defining rules (trusted code)")
    verbs: list[str] = Field(default=[], description="Python files of the workspace adding verbs (a list VERBS)")


class LoadingSection(_Section):
    max_steps: int = Field(default=10_000_000, gt=0,
                           description="Starlark steps (loop iterations, calls) one BUILD file may take")
    timeout: float = Field(default=60.0, gt=0, description="seconds one BUILD file's evaluation may take")
    max_memory_mb: int = Field(default=DEFAULT_MEMORY_MB, ge=64,
                               description="memory (MiB) the Starlark evaluator may use")


class Config(_Section):
    """The schema of graphbuild.toml."""

    workspace: WorkspaceSection = WorkspaceSection()
    cache: CacheSection = CacheSection()
    push: PushSection = PushSection()
    plugins: PluginsSection = PluginsSection()
    loading: LoadingSection = LoadingSection()


@dataclass
class Workspace:
    root: Path
    #: graphbuild.toml as parsed (validated against `Config`); `settings` is the typed view
    config: dict = field(default_factory=dict)
    settings: Config = field(default_factory=Config)

    @staticmethod
    def find(start: Path) -> Workspace:
        """The workspace containing `start`: the nearest ancestor holding `graphbuild.toml`."""
        start = start.resolve()
        for directory in (start, *start.parents):
            marker = directory / MARKER
            if marker.is_file():
                return Workspace.at(directory)
        raise UsageError(
            f"not inside a graphbuild workspace (no {MARKER} in {start} or above)",
            hint=f"create an empty {MARKER} at the root of your repository",
        )

    @staticmethod
    def at(root: Path) -> Workspace:
        """The workspace rooted at `root`, its graphbuild.toml read and validated."""
        config, settings = read_config(root / MARKER)
        return Workspace(root, config, settings)

    @property
    def ignored(self) -> frozenset[str]:
        return frozenset(p.strip("/") for p in self.settings.workspace.ignore)

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
                problem = package_problem(rel)
                if problem:  # `//...` would list labels nothing can parse back
                    raise SpecError(f"{rel}/{BUILD_FILE} makes a package of a directory whose name cannot be one: "
                                    f"{problem}", location=Location(f"{rel}/{BUILD_FILE}", 1),
                                    hint=f"rename the directory, or leave it out with [workspace] ignore = [\"{rel}\"] "
                                    f"in {MARKER} ({GRAMMAR_HINT})")
                found.append(rel)
        return sorted(found)


def read_config(marker: Path) -> tuple[dict, Config]:
    """graphbuild.toml parsed and validated; every problem reported with its line."""
    try:
        data = marker.read_bytes()
    except OSError as err:
        raise SpecError(f"cannot read {MARKER}: {err.strerror}", location=Location(MARKER, 1)) from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise SpecError(f"{MARKER} is not UTF-8 text (byte {err.start})",
                        location=Location(MARKER, data[: err.start].count(b"\n") + 1)) from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        message = str(err)
        at = re.search(r"\(at line (\d+), column (\d+)\)$", message)
        location = Location(MARKER, int(at.group(1)), int(at.group(2))) if at else Location(MARKER)
        raise SpecError(f"invalid TOML: {message[: at.start()].strip() if at else message}", location=location,
                        hint="see https://toml.io for the syntax") from None
    try:
        return data, Config.model_validate(data)
    except ValidationError as err:
        errors: list[GraphbuildError] = [_config_error(problem, text) for problem in err.errors()]
        raise_collected(errors)
        raise AssertionError("unreachable") from None


def _config_error(problem: Any, text: str) -> SpecError:
    path = tuple(problem["loc"])
    keys = tuple(p for p in path if isinstance(p, str))
    location = Location(MARKER, key_line(text, keys))
    model: type[BaseModel] = Config
    for key in keys[:-1]:
        annotation = model.model_fields[key].annotation if key in model.model_fields else None
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            break
        model = annotation
    where = f"[{'.'.join(keys[:-1])}] " if len(keys) > 1 else ""
    if problem["type"] == "extra_forbidden":
        valid = sorted(model.model_fields)
        close = did_you_mean(keys[-1], valid)
        what = "table" if len(keys) == 1 else "key"
        of = f" of {where.strip()}" if where else ""
        return SpecError(f"unknown {what} {where}'{keys[-1]}' in {MARKER}", location=location,
                         hint=(close + " " if close else "") + f"valid {what}s{of}: " + ", ".join(valid))
    name = ".".join(str(p) for p in path)
    described = model.model_fields.get(keys[-1]) if keys else None
    hint = f"{keys[-1]}: {described.description}" if described is not None and described.description else None
    return SpecError(f"{MARKER}: {name}: {problem['msg']}", location=location, hint=hint)


_KEY = r'(?:[A-Za-z0-9_-]+|"[^"\n]*"|\'[^\'\n]*\')'
_HEADER = re.compile(r"^\s*\[\[?\s*(" + _KEY + r"(?:\s*\.\s*" + _KEY + r")*)\s*\]\]?")
_ASSIGN = re.compile(r"^\s*(" + _KEY + r"(?:\s*\.\s*" + _KEY + r")*)\s*=")


def _key_path(text: str) -> tuple[str, ...]:
    return tuple(part.strip().strip("\"'") for part in re.findall(_KEY, text))


def key_line(text: str, keys: tuple[str, ...]) -> int:
    """The line where the TOML key `keys` (tables, then key) is written: the longest
    prefix of it found, since tomllib keeps no positions.  0 when nothing matches."""
    table: tuple[str, ...] = ()
    best, best_length = 0, 0
    for number, line in enumerate(text.splitlines(), 1):
        header = _HEADER.match(line)
        if header:
            table = _key_path(header.group(1))
            full = table
        else:
            assign = _ASSIGN.match(line)
            if not assign:
                continue
            full = table + _key_path(assign.group(1))
        if full and full == keys[: len(full)] and len(full) > best_length:
            best, best_length = number, len(full)
    return best
