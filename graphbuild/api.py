"""The public API for rule authors: everything a rule (built-in or in a workspace rule file) uses."""

from __future__ import annotations

from typing import Any

from graphbuild.analysis.context import NodeHandle, RuleContext
from graphbuild.errors import Location, SpecError
from graphbuild.execution.context import ExecContext
from graphbuild.execution.processes import run_process
from graphbuild.labels import Label
from graphbuild.nodes import ActionFailed, Executor, FileRef, Located, OutputRef, executor
from graphbuild.rule import Attrs, DefaultInfo, Field, LabelAttr, Provider, RuleDef, Source, rule

__all__ = [
    "ActionFailed", "Attrs", "DefaultInfo", "ExecContext", "Executor", "Field", "FileRef", "Label",
    "LabelAttr", "Located", "Location", "NodeHandle", "OutputRef", "Provider", "RULE_API", "RuleContext",
    "RuleDef", "Source", "SpecError", "executor", "rule", "run_is_alive", "run_process",
]


def run_is_alive(ctx: ExecContext, run_id: str) -> bool:
    """Whether the graphbuild run `run_id` is still running (see `ExecContext.run_is_alive`):
    what a run left behind (a container labelled `org.graphbuild.run=<run id>`) may be removed
    only when this is False. `ctx.run_id` is the current run's id."""
    return ctx.run_is_alive(run_id)

#: Names a workspace rule file sees (it cannot import).
RULE_API: dict[str, Any] = {
    name: globals()[name]
    for name in ("ActionFailed", "Attrs", "DefaultInfo", "Field", "FileRef", "Label", "LabelAttr", "Located",
                 "OutputRef", "Provider", "Source", "executor", "rule")
}
