"""What analysis produces and execution consumes: nodes, their inputs and their executors.

A node's inputs are named values; execution turns them into a key (see `keys.py`) and hands
them, resolved to paths, to the node's executor.  Values are plain data (str, int, float,
bool, None, lists, dicts with str keys) or references:

* `FileRef`: a file of the workspace, keyed by its content digest;
* `OutputRef`: an output of another node, keyed by that output's digest (early cutoff);
* `Located`: any value with the spec location it came from, shown by `graphbuild why`.
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from graphbuild.errors import Location
from graphbuild.labels import Label

# An executor is called with an `ExecContext` (graphbuild.execution.context); nodes are
# declared during analysis, before execution exists, so this module does not import it.
ExecFn = Callable[[Any], "Mapping[str, Any] | None"]

PHASES = ("build", "test", "run")
#: Nodes that rewrite checked-in files derived from the spec (lock files); run only by
#: `graphbuild lock` (or `--relock`), never as part of a build.
LOCK_PHASE = "lock"


@dataclass(frozen=True, slots=True)
class FileRef:
    """A workspace file: `path` relative to the workspace root, `digest` its sha256 (hex)."""

    path: str
    digest: str
    executable: bool = False


@dataclass(frozen=True, slots=True)
class OutputRef:
    """Output `name` of node `node_id`; resolved at execution to the produced blob."""

    node_id: str
    name: str


@dataclass(frozen=True, slots=True)
class Located:
    """A value, the spec location it came from and how `why` should show it; only `value` is keyed."""

    value: Any
    location: Location | None = field(default=None, compare=False)
    display: str | None = field(default=None, compare=False)


#: Set while a workspace plugin is imported: "path sha256:digest" of its file.
defining_source: contextvars.ContextVar[str] = contextvars.ContextVar("graphbuild_defining_source", default="")


@dataclass(frozen=True, slots=True)
class Executor:
    """What runs a node: a named, versioned function. Bump `version` when its behaviour changes.

    An executor defined by a workspace plugin also carries that file's digest (`source`):
    plugins are source, so editing one reruns the nodes its executors run.
    """

    name: str
    version: int
    fn: ExecFn = field(compare=False, repr=False)
    # Nodes whose result depends on the outside world (a registry, the network) opt out.
    cacheable: bool = True
    source: str = ""

    def __post_init__(self) -> None:
        if not self.source:
            object.__setattr__(self, "source", defining_source.get())

    @property
    def ident(self) -> str:
        return f"{self.name}@{self.version}" + (f" ({self.source})" if self.source else "")


def executor(name: str, *, version: int = 1, cacheable: bool = True):
    """Decorator turning `fn(ctx) -> metadata | None` into an `Executor`."""

    def wrap(fn: ExecFn) -> Executor:
        return Executor(name=name, version=version, fn=fn, cacheable=cacheable)

    return wrap


class ActionFailed(Exception):
    """Raised by an executor when its node fails.

    `deterministic=True` says the inputs alone produced the failure (a failing test), so the
    failure may be cached; anything else (a timeout, an engine error) is retried next run.
    `bad_input=True` says the spec is wrong (exit code 2, not 1).
    """

    def __init__(self, message: str, *, deterministic: bool = False, details: str = "",
                 metadata: Mapping[str, Any] | None = None, bad_input: bool = False,
                 location: Location | None = None):
        super().__init__(message)
        self.message = message
        self.deterministic = deterministic
        self.details = details
        self.metadata = dict(metadata or {})
        # The spec asked for the impossible (an unknown package, conflicting pins): the
        # command exits 2 like any spec error, and `location` says where to fix it.
        self.bad_input = bad_input
        self.location = location


@dataclass(frozen=True, slots=True)
class Node:
    """One action of the graph. `id` is `<target label>#<action name>`, stable across runs."""

    id: str
    label: Label
    kind: str
    rule: str
    rule_version: int
    executor: Executor
    inputs: Mapping[str, Any]
    outputs: tuple[str, ...]
    deps: tuple[str, ...]
    phase: str = "build"
    locations: Mapping[str, Location] = field(default_factory=lambda: MappingProxyType({}), compare=False)
    unkeyed: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}), compare=False)
    description: str = field(default="", compare=False)
    #: outputs that are JUnit XML test reports (`--junit-dir` collects them for CI)
    reports: tuple[str, ...] = field(default=(), compare=False)

    @property
    def cacheable(self) -> bool:
        return self.executor.cacheable


# -- the one walk over values ----------------------------------------------------------------------
# Node inputs and rule attributes are trees of the same shapes: lists and tuples, mappings,
# `Located` wrappers and (in attributes) pydantic models, around leaves (plain data, labels,
# references). `rebuild` and `leaves` are the only code that knows those shapes.

_SCALARS = (str, int, float, bool, type(None))


def _model_fields(value: Any) -> Any:
    """The field names of a pydantic model (duck-typed: this module does not import pydantic)."""
    return getattr(type(value), "model_fields", None) if not isinstance(value, _SCALARS) else None


def rebuild(value: Any, leaf: Callable[[Any], Any]) -> Any:
    """`value` as plain data: `Located` unwrapped, lists and tuples as lists, mappings as dicts
    with str keys, pydantic models as dicts of their fields; each other value becomes `leaf(value)`."""
    if isinstance(value, list | tuple):
        return [rebuild(item, leaf) for item in value]
    if isinstance(value, Mapping):
        return {str(k): rebuild(item, leaf) for k, item in value.items()}
    if isinstance(value, Located):
        return rebuild(value.value, leaf)
    fields = _model_fields(value)
    if fields is not None:
        return {name: rebuild(getattr(value, name), leaf) for name in fields}
    return leaf(value)


def leaves(value: Any) -> Iterator[Any]:
    """Every leaf of `value` (what `rebuild` hands to `leaf`), in order."""
    if isinstance(value, list | tuple):
        for item in value:
            yield from leaves(item)
    elif isinstance(value, Mapping):
        for item in value.values():
            yield from leaves(item)
    elif isinstance(value, Located):
        yield from leaves(value.value)
    elif (fields := _model_fields(value)) is not None:
        for name in fields:
            yield from leaves(getattr(value, name))
    else:
        yield value


def iter_refs(value: Any) -> Iterator[FileRef | OutputRef]:
    """Every FileRef/OutputRef inside an input value."""
    return (leaf for leaf in leaves(value) if isinstance(leaf, FileRef | OutputRef))
