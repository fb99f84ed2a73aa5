"""The public API for rule authors: everything a rule uses, built-in or in a workspace plugin.

Rules import nothing else of graphbuild (an import-linter contract checks it): `media` are the
OCI media types and canonical JSON, `Registry`/`RegistryError` the OCI registry client,
`write_atomic(path, data)` replaces a file so that a reader sees the old or the new bytes.

A plugin (a Python file named in graphbuild.toml, `[plugins] rules = [...]`) imports from
here, and may use the built-in rules' helpers `run_command` and `staged_sources` from
`graphbuild.rules`.

Names are imported when first used (PEP 562): `from graphbuild.api import Verb, Report` in a
module that only declares verbs costs no more than the standard library, so `graphbuild
--help` stays fast; `from graphbuild.api import rule` imports the rule machinery.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from graphbuild.errors import Location, SpecError, StaleLock, UsageError
from graphbuild.verbs import Report, Verb, VerbContext

if TYPE_CHECKING:
    from graphbuild.analysis.context import NodeHandle, RuleContext
    from graphbuild.cache import oci_media as media
    from graphbuild.cache.atomic import write_bytes as write_atomic
    from graphbuild.cache.registry import Registry, RegistryError
    from graphbuild.execution.context import ExecContext
    from graphbuild.execution.events import NodeOutcome as Outcome
    from graphbuild.execution.processes import run_process, start_process
    from graphbuild.labels import Label
    from graphbuild.nodes import ActionFailed, Executor, FileRef, Located, Node, OutputRef, executor
    from graphbuild.rule import (
        Attrs,
        DefaultInfo,
        Field,
        LabelAttr,
        LazyRule,
        OutputPaths,
        OutputTree,
        Provider,
        RelativeDir,
        RelativePath,
        RuleDef,
        Source,
        WorkspacePath,
        rule,
    )

_LAZY = {
    "NodeHandle": "graphbuild.analysis.context", "RuleContext": "graphbuild.analysis.context",
    "ExecContext": "graphbuild.execution.context", "run_process": "graphbuild.execution.processes",
    "start_process": "graphbuild.execution.processes",
    "Outcome": "graphbuild.execution.events:NodeOutcome", "Label": "graphbuild.labels",
    **dict.fromkeys(("ActionFailed", "Executor", "FileRef", "Located", "Node", "OutputRef", "executor"),
                    "graphbuild.nodes"),
    **dict.fromkeys(("Attrs", "DefaultInfo", "Field", "LabelAttr", "OutputPaths", "OutputTree", "Provider",
                     "RelativeDir", "RelativePath", "RuleDef", "Source", "WorkspacePath", "rule", "LazyRule"),
                    "graphbuild.rule"),
    # the registry client brings an HTTP stack a build that pushes nothing does not need
    "Registry": "graphbuild.cache.registry", "RegistryError": "graphbuild.cache.registry",
    "media": "graphbuild.cache.oci_media:", "write_atomic": "graphbuild.cache.atomic:write_bytes",
}

__all__ = [
    "ActionFailed", "Attrs", "DefaultInfo", "ExecContext", "Executor", "Field", "FileRef", "Label",
    "LabelAttr", "LazyRule", "Located", "Location", "Node", "NodeHandle", "OutputPaths", "OutputRef", "OutputTree",
    "Outcome",
    "Provider", "Registry", "RegistryError", "RelativeDir", "RelativePath", "Report", "RuleContext", "RuleDef",
    "Source", "SpecError", "StaleLock", "UsageError", "Verb", "VerbContext", "WorkspacePath", "executor", "media",
    "rule", "run_is_alive", "run_process", "start_process", "write_atomic",
]


def __getattr__(name: str) -> Any:
    where = _LAZY.get(name)
    if where is None:
        raise AttributeError(f"module 'graphbuild.api' has no attribute {name!r}")
    module, colon, attr = where.partition(":")
    imported = importlib.import_module(module)
    value = imported if colon and not attr else getattr(imported, attr or name)  # "module:": the module itself
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


def run_is_alive(ctx: ExecContext, run_id: str) -> bool:
    """Whether the graphbuild run `run_id` is still running (see `ExecContext.run_is_alive`):
    what a run left behind (a container labelled `org.graphbuild.run=<run id>`) may be removed
    only when this is False. `ctx.run_id` is the current run's id."""
    return ctx.run_is_alive(run_id)
