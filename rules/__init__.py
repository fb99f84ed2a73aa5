"""Built-in rules (installed as `graphbuild.rules`).

`BUILTIN_RULES` is what every BUILD.envs sees (besides the workspace's plugins); `run_command`
and `staged_sources` are here for plugins, which define rules the same way these are.
The Python and OCI rules are imported only when a BUILD file first calls one.
"""

from __future__ import annotations

from graphbuild.api import LazyRule, RuleDef
from graphbuild.rules.command import run_command, staged_sources
from graphbuild.rules.command_test import command_test
from graphbuild.rules.filegroup import filegroup
from graphbuild.rules.genrule import genrule

_LAZY = {
    "py_layer": "graphbuild.rules.python.py_layer",
    "py_library": "graphbuild.rules.python.py_library",
    "git_library": "graphbuild.rules.python.py_library",
    "environment": "graphbuild.rules.python.environment",
    "base_image": "graphbuild.rules.oci.base_image",
}

BUILTIN_RULES: dict[str, RuleDef | LazyRule] = {
    **{r.name: r for r in (genrule, command_test, filegroup)},
    **{name: LazyRule(name, module) for name, module in _LAZY.items()},
}

__all__ = ["BUILTIN_RULES", "run_command", "staged_sources"]
