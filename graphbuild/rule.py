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

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationInfo

from graphbuild.labels import Label, LabelError

__all__ = [
    "Attrs",
    "DefaultInfo",
    "Field",
    "LabelAttr",
    "Provider",
    "RuleDef",
    "Source",
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
        if value.startswith("/") or ".." in value.split("/"):
            raise ValueError(f"source path {value!r} must be relative to the package and stay inside it")
        return value
    raise ValueError(f"expected a file path or a label, got {type(value).__name__}")


#: An attribute value that names another target (`:x`, `//pkg:x`); resolved to a `Label`.
LabelAttr = Annotated[Label, BeforeValidator(_to_label)]
#: A file of the package (a path, may be a glob result) or another target's outputs (a label).
Source = Annotated[Label | str, BeforeValidator(_to_source)]


class Attrs(BaseModel):
    """Base of every rule's attribute model. Unknown attributes are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)

    name: str = Field(description="The target's name, unique within its package.", pattern=r"^[A-Za-z0-9_.+\-@=,~]+$")

    def labels(self) -> Iterator[tuple[str, Label]]:
        """Every (attribute, label) this target depends on, in declaration order."""
        for attr in type(self).model_fields:
            yield from ((attr, lab) for lab in _walk_labels(getattr(self, attr)))


def _walk_labels(value: Any) -> Iterator[Label]:
    if isinstance(value, Label):
        yield value
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _walk_labels(item)
    elif isinstance(value, dict):
        for item in value.values():
            yield from _walk_labels(item)
    elif isinstance(value, BaseModel):
        for attr in type(value).model_fields:
            yield from _walk_labels(getattr(value, attr))


class Provider(BaseModel):
    """Typed information a target hands to the targets that depend on it."""

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)


class DefaultInfo(Provider):
    """The files a target produces (what `graphbuild build` puts in graphbuild-out/)."""

    files: tuple[Any, ...] = Field(default=(), description="FileRef or OutputRef values")


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
