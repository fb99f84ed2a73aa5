"""The rule API: an attribute model (pydantic) plus an implementation that declares nodes.

A rule is written once (built in, or in a workspace plugin) and called from BUILD.envs, a
Starlark file, as a function of keyword arguments::

    class GenruleAttrs(Attrs):
        srcs: list[Source] = Field(default=[], description="input files or targets")
        cmd: str = Field(description="shell command")

    @rule(attrs=GenruleAttrs, version=1, doc="Run a shell command over files.")
    def genrule(ctx: RuleContext, attrs: GenruleAttrs) -> list[Provider]:
        ...

The engine finds a target's dependencies from its attribute values: every `Label` inside
them (attributes typed `LabelAttr`, or `Source` values that are labels) is a dependency.
"""

from __future__ import annotations

import posixpath
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, ValidationInfo

from graphbuild.labels import GRAMMAR_HINT, Label, LabelError, target_name_problem
from graphbuild.nodes import leaves

__all__ = [
    "Attrs",
    "DefaultInfo",
    "Field",
    "LabelAttr",
    "OutputPaths",
    "Provider",
    "RelativeDir",
    "RelativePath",
    "RuleDef",
    "Source",
    "WorkspacePath",
    "rule",
]


def _package_of(info: ValidationInfo) -> str | None:
    return (info.context or {}).get("package")


def _to_label(value: Any, info: ValidationInfo) -> Label:
    if isinstance(value, Label):
        return value
    if not isinstance(value, str):
        raise ValueError(f"expected a label string such as ':name' or '//pkg:name', got {type(value).__name__}")
    try:
        return Label.parse(value if value.startswith((":", "//")) else ":" + value, package=_package_of(info))
    except LabelError as err:
        raise ValueError(err.message) from None


def _to_source(value: Any, info: ValidationInfo) -> Label | str:
    if isinstance(value, str) and value.startswith((":", "//")):
        return _to_label(value, info)
    if isinstance(value, str):
        return _relative_path(value)
    raise ValueError(f"expected a file path or a label, got {type(value).__name__}")


# -- paths ------------------------------------------------------------------------------------
# Attribute values naming files are checked here, as they are loaded, for what their text alone
# says (absolute, `..`, empty); `RuleContext.file()` then resolves them, following symlinks,
# and refuses any that lands outside the package (or the workspace, for a `WorkspacePath`).

_MAX_PATH = 4096
_MAX_NAME = 255


def _path_text(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"expected a path (a string), got {type(value).__name__}")
    if not value:
        raise ValueError("the path is empty")
    if "\0" in value:
        raise ValueError(f"path {value!r} contains a NUL character")
    if len(value) > _MAX_PATH:
        raise ValueError(f"path '{value[:40]}...' is {len(value)} characters long (at most {_MAX_PATH})")
    if value.startswith("/"):
        raise ValueError(f"path {value!r} is absolute: write it relative to the package")
    long = next((p for p in value.split("/") if len(p.encode()) > _MAX_NAME), None)
    if long:
        raise ValueError(f"path part '{long[:20]}...' is {len(long.encode())} bytes long (file systems allow "
                         f"{_MAX_NAME})")
    return value


def _relative_path(value: Any) -> str:
    """A path that stays inside the directory it is relative to; normalised (`./a//b` -> `a/b`)."""
    text = _path_text(value)
    parts = [p for p in text.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise ValueError(f"path {text!r} goes up with '..': it must stay inside the package")
    return "/".join(parts) or "."


def _relative_dir(value: Any) -> str:
    """Like `_relative_path`; `""` and `"."` (the directory itself) normalise to `""`."""
    if value == "":
        return ""
    normal = _relative_path(value)
    return "" if normal == "." else normal


def _workspace_path(value: Any, info: ValidationInfo) -> str:
    """Relative to the package, may go up with `..` but not out of the workspace."""
    text = _path_text(value)
    package = _package_of(info)
    normal = posixpath.normpath(text)
    if package is not None:
        joined = posixpath.normpath(posixpath.join(package or ".", text))
        if joined == ".." or joined.startswith("../"):
            raise ValueError(f"path {text!r} leaves the workspace")
    return normal


#: A path relative to the directory it is used in (the package, a library, a repository):
#: never absolute, never `..`; `.` is the directory itself.
RelativePath = Annotated[str, BeforeValidator(_relative_path)]
#: A subdirectory: like `RelativePath`, and `""` means the directory itself.
RelativeDir = Annotated[str, BeforeValidator(_relative_dir)]
#: A file of the workspace, written relative to the package: `..` may go up, not out of the
#: workspace. Read it with `ctx.file(path, attr=..., within="workspace")`.
WorkspacePath = Annotated[str, BeforeValidator(_workspace_path)]


def _distinct_outputs(paths: list[str]) -> list[str]:
    """Output paths of one target: no two alike, none inside another (a file is not a directory)."""
    seen = set(paths)
    for path in paths:
        if path == ".":
            raise ValueError("'.' is a directory, not an output file")
        if paths.count(path) > 1:
            raise ValueError(f"output {path!r} is listed twice")
        parents = ["/".join(path.split("/")[:i]) for i in range(1, path.count("/") + 1)]
        clash = next((p for p in parents if p in seen), None)
        if clash:
            raise ValueError(f"output {path!r} is inside output {clash!r}, which is a file")
    return paths


#: The files a target writes, relative to its output directory (graphbuild-out/<package>/).
OutputPaths = Annotated[list[RelativePath], AfterValidator(_distinct_outputs)]


def _valid_name(name: str) -> str:
    problem = target_name_problem(name)
    if problem:
        raise ValueError(f"invalid target name {name[:140]!r}: {problem}; {GRAMMAR_HINT}")
    return name


#: An attribute value that names another target (`:x`, `//pkg:x`); resolved to a `Label`.
LabelAttr = Annotated[Label, BeforeValidator(_to_label)]
#: A file of the package (a path, may be a glob result) or another target's outputs (a label).
Source = Annotated[Label | str, BeforeValidator(_to_source)]


class Attrs(BaseModel):
    """Base of every rule's attribute model. Unknown attributes are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)

    name: Annotated[str, AfterValidator(_valid_name)] = Field(
        description="The target's name, unique within its package (see the README, Labels).")

    def labels(self) -> Iterator[tuple[str, Label]]:
        """Every (attribute, label) this target depends on, in declaration order."""
        for attr in type(self).model_fields:
            yield from ((attr, lab) for lab in _walk_labels(getattr(self, attr)))


def _walk_labels(value: Any) -> Iterator[Label]:
    return (leaf for leaf in leaves(value) if isinstance(leaf, Label))


class Provider(BaseModel):
    """Typed information a target hands to the targets that depend on it."""

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)


class OutputTree(BaseModel):
    """Outputs delivered together under one path of graphbuild-out/<package>/: a directory of
    them (an OCI image layout, say), or, for a tree of a `kind`, one tar file holding them,
    written only when the command asks for that kind (`graphbuild build --output KIND`).

    `files` are (relative path, OutputRef) in the order they are written; `{sha256}` in a path
    stands for the output's sha256 (content-addressed names such as `blobs/sha256/{sha256}`).
    A directory's files are written in order (each atomically; put the file that names the
    others last); files of an earlier build that the tree no longer lists are left alone."""

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    path: RelativePath
    files: tuple[tuple[str, Any], ...]
    kind: str = ""


class DefaultInfo(Provider):
    """The files a target produces (what `graphbuild build` puts in graphbuild-out/)."""

    files: tuple[Any, ...] = Field(default=(), description="FileRef or OutputRef values")
    trees: tuple[OutputTree, ...] = Field(default=(), description="outputs delivered as a directory (or, for a "
                                          "kind asked with --output, a tar file) of graphbuild-out/<package>/")


@dataclass(frozen=True)
class RuleDef:
    """A rule: its name (the kind shown by `query kind()`), attributes, implementation, version."""

    name: str
    attrs: type[Attrs]
    implementation: Callable[..., Any] = field(compare=False)
    version: int = 1
    doc: str = ""


class LazyRule:
    """A rule whose module is imported the first time a BUILD file calls it: a workspace pays
    start-up time only for the rules it uses."""

    def __init__(self, name: str, module: str, attribute: str | None = None):
        self.name = name
        self._module = module
        self._attribute = attribute or name
        self._resolved: RuleDef | None = None

    def resolve(self) -> RuleDef:
        if self._resolved is None:
            import importlib

            self._resolved = getattr(importlib.import_module(self._module), self._attribute)
        return self._resolved


def rule(*, attrs: type[Attrs], version: int = 1, doc: str = "", name: str | None = None):
    """Decorator making a `RuleDef` from an implementation `fn(ctx, attrs) -> providers`."""

    def wrap(fn: Callable[..., Any]) -> RuleDef:
        return RuleDef(name=name or fn.__name__, attrs=attrs, implementation=fn, version=version,
                       doc=doc or (fn.__doc__ or "").strip())

    return wrap
