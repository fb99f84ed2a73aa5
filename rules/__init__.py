"""Built-in rules (installed as `graphbuild.rules`).

`BUILTIN_RULES` is what every BUILD.envs sees (besides the workspace's plugins); `run_command`
and `staged_sources` are here for plugins, which define rules the same way these are.
The Python and OCI rules are imported only when a BUILD file first calls one; this package
itself imports nothing until a name is asked for, so `graphbuild.rules.verbs` (the verbs the
rule packages add to the command line) is read without importing any rule.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from graphbuild.rule import LazyRule, RuleDef
    from graphbuild.rules.command import run_command, staged_sources

    BUILTIN_RULES: dict[str, RuleDef | LazyRule]

_LAZY = {
    "py_layer": "graphbuild.rules.python.py_layer",
    "py_library": "graphbuild.rules.python.py_library",
    "git_library": "graphbuild.rules.python.py_library",
    "environment": "graphbuild.rules.python.environment",
    "base_image": "graphbuild.rules.oci.base_image",
}

__all__ = ["BUILTIN_RULES", "run_command", "staged_sources"]


def _builtin_rules() -> dict[str, Any]:
    from graphbuild.rule import LazyRule
    from graphbuild.rules.command_test import command_test
    from graphbuild.rules.filegroup import filegroup
    from graphbuild.rules.genrule import genrule

    return {
        **{r.name: r for r in (genrule, command_test, filegroup)},
        **{name: LazyRule(name, module) for name, module in _LAZY.items()},
    }


def __getattr__(name: str) -> Any:
    if name == "BUILTIN_RULES":
        value: Any = _builtin_rules()
    elif name in ("run_command", "staged_sources"):
        from graphbuild.rules import command

        value = getattr(command, name)
    else:
        raise AttributeError(f"module 'graphbuild.rules' has no attribute {name!r}")
    globals()[name] = value
    return value
