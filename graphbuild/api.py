"""The public API for rule authors: everything a rule uses, built-in or in a workspace plugin.

Rules import nothing else of graphbuild (an import-linter contract checks it): `media` are the
OCI media types and canonical JSON, `Registry`/`RegistryError` the OCI registry client,
`write_atomic(path, data)` replaces a file so that a reader sees the old or the new bytes.

A plugin (a Python file named in graphbuild.toml, `[plugins] rules = [...]`) imports from
here, and may use the built-in rules' helpers `run_command` and `staged_sources` from
`graphbuild.rules`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from graphbuild.analysis.context import NodeHandle, RuleContext
from graphbuild.cache import oci_media as media
from graphbuild.cache.atomic import write_bytes as write_atomic
from graphbuild.errors import Location, SpecError
from graphbuild.execution.context import ExecContext
from graphbuild.execution.processes import run_process
from graphbuild.labels import Label
from graphbuild.nodes import ActionFailed, Executor, FileRef, Located, OutputRef, executor
from graphbuild.rule import (
    Attrs,
    DefaultInfo,
    Field,
    LabelAttr,
    LazyRule,
    OutputPaths,
    Provider,
    RelativeDir,
    RelativePath,
    RuleDef,
    Source,
    WorkspacePath,
    rule,
)

if TYPE_CHECKING:
    from graphbuild.cache.registry import Registry, RegistryError

__all__ = [
    "ActionFailed", "Attrs", "DefaultInfo", "ExecContext", "Executor", "Field", "FileRef", "Label",
    "LabelAttr", "LazyRule", "Located", "Location", "NodeHandle", "OutputPaths", "OutputRef", "Provider",
    "Registry", "RegistryError", "RelativeDir", "RelativePath", "RuleContext", "RuleDef", "Source", "SpecError",
    "WorkspacePath", "executor", "media", "rule", "run_is_alive", "run_process", "write_atomic",
]

#: Loaded when a rule first asks (`from graphbuild.api import Registry` inside its executor): the
#: registry client brings an HTTP stack a build that pushes nothing does not need.
_LAZY = {"Registry": "graphbuild.cache.registry", "RegistryError": "graphbuild.cache.registry"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def run_is_alive(ctx: ExecContext, run_id: str) -> bool:
    """Whether the graphbuild run `run_id` is still running (see `ExecContext.run_is_alive`):
    what a run left behind (a container labelled `org.graphbuild.run=<run id>`) may be removed
    only when this is False. `ctx.run_id` is the current run's id."""
    return ctx.run_is_alive(run_id)
