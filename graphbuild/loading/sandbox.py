"""The Starlark-like subset of Python that BUILD.envs and rule files may use.

BUILD files describe; they must not compute from the outside world, or two evaluations of
the same files could disagree and cache keys would lie.  So: no imports, no I/O builtins, no
reflection through dunder attributes, no unbounded loops, no sets (their order depends on the
hash seed).  Rule files (loaded with `load()`) may also define classes, for attribute models.
"""

from __future__ import annotations

import ast
import builtins
from typing import Any

from graphbuild.errors import Location, SpecError

_WHY_NO_IMPORT = (
    "BUILD.envs files cannot import: a build description that reads code from outside the workspace "
    "cannot be cached reliably"
)

# name -> why it is refused
FORBIDDEN_NAMES: dict[str, str] = {
    **{n: "it performs I/O" for n in ("open", "input", "breakpoint", "exit", "quit", "help")},
    **{n: "it runs code from a string" for n in ("exec", "eval", "compile")},
    "__import__": "it imports a module, and code from outside the workspace cannot be cached reliably",
    **{n: "it inspects the interpreter" for n in ("globals", "locals", "vars", "dir", "id", "type", "object",
                                                  "super", "memoryview", "classmethod", "staticmethod",
                                                  "property", "setattr", "delattr")},
    **{n: "its iteration order is not deterministic; use a list or a dict" for n in ("set", "frozenset")},
    "hash": "its value changes between runs",
}

SAFE_BUILTINS: tuple[str, ...] = (
    "abs", "all", "any", "bool", "dict", "enumerate", "filter", "float", "getattr", "hasattr", "int",
    "isinstance", "len", "list", "map", "max", "min", "range", "repr", "reversed", "sorted", "str",
    "sum", "tuple", "zip", "True", "False", "None", "ValueError",
)


def restricted_builtins(*, allow_classes: bool) -> dict[str, Any]:
    table = {name: getattr(builtins, name) for name in SAFE_BUILTINS}
    if allow_classes:
        table["__build_class__"] = builtins.__build_class__
    return table


class _Checker(ast.NodeVisitor):
    def __init__(self, path: str, *, allow_classes: bool):
        self.path = path
        self.allow_classes = allow_classes
        self.errors: list[SpecError] = []

    def _refuse(self, node: ast.AST, message: str, hint: str | None = None) -> None:
        loc = Location(self.path, getattr(node, "lineno", 0), getattr(node, "col_offset", -1) + 1)
        self.errors.append(SpecError(message, location=loc, hint=hint))

    def visit_Import(self, node: ast.Import | ast.ImportFrom) -> None:
        self._refuse(node, "'import' is not allowed: " + _WHY_NO_IMPORT,
                     'define rules in a .envs file of the workspace and use load("//pkg:file.envs", "name")')

    visit_ImportFrom = visit_Import

    def visit_Attribute(self, node: ast.Attribute) -> None:
        if node.attr.startswith("__"):
            self._refuse(node, f"access to the dunder attribute '{node.attr}' is not allowed: "
                               "reflection through dunder attributes reaches around these restrictions")
        self.generic_visit(node)

    def visit_Name(self, node: ast.Name) -> None:
        if node.id in FORBIDDEN_NAMES:
            self._refuse(node, f"'{node.id}' is not allowed in BUILD.envs: {FORBIDDEN_NAMES[node.id]}")
        elif node.id.startswith("__"):
            self._refuse(node, f"the name '{node.id}' is not allowed in BUILD.envs")
        self.generic_visit(node)

    def _construct(self, node: ast.AST, what: str, hint: str | None = None) -> None:
        self._refuse(node, f"{what} is not allowed in BUILD.envs", hint)
        self.generic_visit(node)

    def visit_While(self, node: ast.While) -> None:
        self._construct(node, "'while'", "a loop without a bound might never end: loop over a list or range() instead")

    def visit_Try(self, node: ast.AST) -> None:
        self._construct(node, "'try'", "call fail(\"message\") to report an error")

    visit_TryStar = visit_Try

    def visit_With(self, node: ast.AST) -> None:
        self._construct(node, "'with'")

    visit_AsyncWith = visit_With

    def visit_Global(self, node: ast.AST) -> None:
        self._construct(node, "'global'/'nonlocal'")

    visit_Nonlocal = visit_Global

    def visit_Yield(self, node: ast.AST) -> None:
        self._construct(node, "'yield'")

    visit_YieldFrom = visit_Yield
    visit_Await = visit_Yield

    def visit_AsyncFunctionDef(self, node: ast.AST) -> None:
        self._construct(node, "'async def'")

    def visit_Set(self, node: ast.AST) -> None:
        self._construct(node, "a set", "its order is not deterministic; use a list")

    visit_SetComp = visit_Set

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        if not self.allow_classes:
            self._construct(node, "'class'", "BUILD.envs only declares targets: define attribute models in a rule "
                                             "file loaded with load()")
        else:
            self.generic_visit(node)


def parse_restricted(source: str, path: str, *, allow_classes: bool) -> ast.Module:
    """Parse and check a BUILD.envs or rule file; raise every violation at once."""
    try:
        tree = ast.parse(source, filename=path)
    except SyntaxError as err:
        loc = Location(path, err.lineno or 0, err.offset or 0)
        raise SpecError(f"syntax error: {err.msg}", location=loc) from None
    checker = _Checker(path, allow_classes=allow_classes)
    checker.visit(tree)
    from graphbuild.errors import raise_collected

    raise_collected(list(checker.errors))
    return tree


def call_sites(tree: ast.Module) -> dict[tuple[int, int], ast.Call]:
    """Calls of the file by (line, column): where a rule call's keyword arguments are written."""
    return {(node.lineno, node.col_offset): node for node in ast.walk(tree) if isinstance(node, ast.Call)}


