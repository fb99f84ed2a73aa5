"""The public API for rule authors: everything a rule (built-in or in a workspace rule file) uses."""

from __future__ import annotations

from typing import Any

from graphbuild.analysis.context import NodeHandle, RuleContext
from graphbuild.errors import Location, SpecError
from graphbuild.execution.context import ExecContext
from graphbuild.labels import Label
from graphbuild.nodes import ActionFailed, Executor, FileRef, Located, OutputRef, executor
from graphbuild.rule import (
    Attrs,
    DefaultInfo,
    Field,
    LabelAttr,
    OutputPaths,
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
    "LabelAttr", "Located", "Location", "NodeHandle", "OutputPaths", "OutputRef", "Provider", "RULE_API",
    "RelativeDir", "RelativePath", "RuleContext", "RuleDef", "Source", "SpecError", "WorkspacePath", "executor",
    "rule",
]

#: Names a workspace rule file sees (it cannot import).
RULE_API: dict[str, Any] = {
    name: globals()[name]
    for name in ("ActionFailed", "Attrs", "DefaultInfo", "Field", "FileRef", "Label", "LabelAttr", "Located",
                 "OutputPaths", "OutputRef", "Provider", "RelativeDir", "RelativePath", "Source", "WorkspacePath",
                 "executor", "rule")
}
