"""Built-in rules (installed as `graphbuild.rules`).

`BUILTIN_RULES` is what every BUILD.envs sees; `RULE_API` is what a workspace rule file
(loaded with `load()`) sees besides them, so it can define rules the same way these are.
"""

from __future__ import annotations

from typing import Any

from graphbuild.api import RULE_API as _ENGINE_API
from graphbuild.rule import RuleDef
from graphbuild.rules.command import run_command
from graphbuild.rules.command_test import command_test
from graphbuild.rules.filegroup import filegroup
from graphbuild.rules.genrule import genrule
from graphbuild.rules.python.environment import environment
from graphbuild.rules.python.py_layer import py_layer
from graphbuild.rules.python.py_library import git_library, py_library

BUILTIN_RULES: dict[str, RuleDef] = {
    r.name: r for r in (genrule, command_test, filegroup, py_layer, py_library, git_library, environment)
}

RULE_API: dict[str, Any] = {**_ENGINE_API, "run_command": run_command}

__all__ = ["BUILTIN_RULES", "RULE_API"]
