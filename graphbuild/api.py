"""The public API for rule authors: everything a rule uses, built-in or in a workspace plugin.

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
    from graphbuild.execution.context import ExecContext
    from graphbuild.execution.events import NodeOutcome as Outcome
    from graphbuild.execution.processes import run_process
    from graphbuild.labels import Label
    from graphbuild.nodes import ActionFailed, Executor, FileRef, Located, Node, OutputRef, executor
    from graphbuild.rule import (
        Attrs,
        DefaultInfo,
        Field,
        LabelAttr,
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
    "Outcome": "graphbuild.execution.events:NodeOutcome", "Label": "graphbuild.labels",
    **dict.fromkeys(("ActionFailed", "Executor", "FileRef", "Located", "Node", "OutputRef", "executor"),
                    "graphbuild.nodes"),
    **dict.fromkeys(("Attrs", "DefaultInfo", "Field", "LabelAttr", "OutputPaths", "OutputTree", "Provider",
                     "RelativeDir",
                     "RelativePath", "RuleDef", "Source", "WorkspacePath", "rule"), "graphbuild.rule"),
}

__all__ = [
    "ActionFailed", "Attrs", "DefaultInfo", "ExecContext", "Executor", "Field", "FileRef", "Label",
    "LabelAttr", "Located", "Location", "Node", "NodeHandle", "OutputPaths", "OutputRef", "OutputTree", "Outcome",
    "Provider",
    "RelativeDir", "RelativePath", "Report", "RuleContext", "RuleDef", "Source", "SpecError", "StaleLock",
    "UsageError",
    "Verb", "VerbContext", "WorkspacePath", "executor", "rule", "run_is_alive", "run_process",
]


def __getattr__(name: str) -> Any:
    where = _LAZY.get(name)
    if where is None:
        raise AttributeError(f"module 'graphbuild.api' has no attribute {name!r}")
    module, _, attr = where.partition(":")
    value = getattr(importlib.import_module(module), attr or name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


def run_is_alive(ctx: ExecContext, run_id: str) -> bool:
    """Whether the graphbuild run `run_id` is still running (see `ExecContext.run_is_alive`):
    what a run left behind (a container labelled `org.graphbuild.run=<run id>`) may be removed
    only when this is False. `ctx.run_id` is the current run's id."""
    return ctx.run_is_alive(run_id)
