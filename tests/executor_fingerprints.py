"""Fingerprints of the built-in executors' code, to catch a behaviour change without a version bump.

A node's key holds its executor's `name@version`, not its code: a built-in executor whose
code changes must bump `version`, or every result it stored before is served as if the new
code had made it. The fingerprint of an executor is the syntax tree (no line numbers, no
comments, no docstrings) of its function and of every function, class and constant of the
built-in rules (and the cache's helpers) it reaches by name, transitively. `tests/golden/executors.json` records the
fingerprint of each `name@version`; `test_executor_versions.py` compares.

Regenerate after bumping a version: `.venv/bin/python tests/executor_fingerprints.py --write`.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import json
import pkgutil
import sys
import textwrap
from pathlib import Path
from types import FunctionType, ModuleType
from typing import Any

import xxhash

GOLDEN = Path(__file__).parent / "golden" / "executors.json"
_OWN = "graphbuild.rules"
#: code whose behaviour reaches executors' outputs: the built-in rules and the cache's OCI helpers
_FOLLOWED = ("graphbuild.rules", "graphbuild.cache")


def builtin_executors() -> dict[str, Any]:
    """Every `Executor` defined at the top level of a module of the built-in rules, by ident."""
    import graphbuild.rules as package
    from graphbuild.nodes import Executor

    found: dict[str, Any] = {}
    for info in pkgutil.walk_packages(package.__path__, prefix=f"{_OWN}."):
        module = importlib.import_module(info.name)
        for value in vars(module).values():
            if isinstance(value, Executor) and value.fn.__module__ == module.__name__:
                found[value.ident] = value
    return found


def _tree(obj: Any) -> str:
    source = textwrap.dedent(inspect.getsource(obj))
    tree = ast.parse(source)
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if (isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef | ast.Module) and body
                and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant)
                and isinstance(body[0].value.value, str)):
            node.body = body[1:] or [ast.Pass()]
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            node.decorator_list = []  # the decorator holds the version: that is what is checked
    return ast.dump(tree)


def _referenced(fn: FunctionType) -> list[tuple[str, Any]]:
    names: set[str] = set()
    stack = [fn.__code__]
    while stack:
        code = stack.pop()
        names.update(code.co_names)
        stack.extend(c for c in code.co_consts if hasattr(c, "co_names"))
    return [(name, fn.__globals__[name]) for name in sorted(names) if name in fn.__globals__]


def fingerprint(fn: FunctionType) -> str:
    parts: list[str] = []
    seen: set[int] = set()
    stack: list[Any] = [fn]
    while stack:
        obj = stack.pop()
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        if isinstance(obj, FunctionType):
            parts.append(f"def {obj.__module__}.{obj.__qualname__}:{_tree(obj)}")
            stack.extend(value for _, value in _referenced(obj) if _is_own(value))
            for name, value in _referenced(obj):
                if isinstance(value, str | int | float | bool | tuple | frozenset) and name.isupper():
                    parts.append(f"const {obj.__module__}.{name}={value!r}")
        elif isinstance(obj, type):
            parts.append(f"class {obj.__module__}.{obj.__qualname__}:{_tree(obj)}")
            for member in vars(obj).values():
                if isinstance(member, FunctionType):
                    stack.extend(value for _, value in _referenced(member) if _is_own(value))
        elif isinstance(obj, ModuleType):
            continue
    return xxhash.xxh3_128_hexdigest("\n".join(sorted(parts)).encode())


def _is_own(value: Any) -> bool:
    module = getattr(value, "__module__", None) or ""
    return isinstance(value, FunctionType | type) and module.startswith(_FOLLOWED)


def current() -> dict[str, str]:
    return {ident: fingerprint(ex.fn) for ident, ex in sorted(builtin_executors().items())}


if __name__ == "__main__":
    if sys.argv[1:] == ["--write"]:
        GOLDEN.parent.mkdir(exist_ok=True)
        GOLDEN.write_text(json.dumps(current(), indent=2, sort_keys=True) + "\n")
        print(f"wrote {GOLDEN}")
    else:
        print(json.dumps(current(), indent=2, sort_keys=True))
