"""The public API for rule authors: everything a rule uses, built-in or in a workspace plugin.

A plugin (a Python file named in graphbuild.toml, `[plugins] rules = [...]`) imports from
here, and may use the built-in rules' helpers `run_command` and `staged_sources` from
`graphbuild.rules`.
"""

from __future__ import annotations

from graphbuild.analysis.context import NodeHandle, RuleContext
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

__all__ = [
    "ActionFailed", "Attrs", "DefaultInfo", "ExecContext", "Executor", "Field", "FileRef", "Label",
    "LabelAttr", "Located", "Location", "NodeHandle", "OutputPaths", "OutputRef", "OutputTree", "Provider",
    "RelativeDir", "RelativePath", "RuleContext", "RuleDef", "Source", "SpecError", "WorkspacePath", "executor",
    "rule", "run_is_alive", "run_process",
]


def run_is_alive(ctx: ExecContext, run_id: str) -> bool:
    """Whether the graphbuild run `run_id` is still running (see `ExecContext.run_is_alive`):
    what a run left behind (a container labelled `org.graphbuild.run=<run id>`) may be removed
    only when this is False. `ctx.run_id` is the current run's id."""
    return ctx.run_is_alive(run_id)
