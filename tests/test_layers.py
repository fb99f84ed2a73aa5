"""The CLI only parses and renders; use cases live in operations/, which never reach up."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "graphbuild"


def _imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return found


def test_cli_modules_are_small_and_import_no_engine_floor_at_module_level():
    for path in sorted((PACKAGE / "cli").glob("*.py")):
        lines = len(path.read_text().splitlines())
        assert lines <= 125, f"{path.name} has {lines} lines: move the work to graphbuild/operations"
        top = {n.module for n in ast.parse(path.read_text()).body if isinstance(n, ast.ImportFrom) and n.module}
        heavy = {m for m in top if m.startswith(("graphbuild.analysis", "graphbuild.execution", "graphbuild.cache",
                                                 "graphbuild.loading.loader", "graphbuild.operations"))}
        assert not heavy, f"{path.name} imports {heavy} at module level: --help would pay for it"


def test_operations_never_import_reporting_or_cli():
    for path in sorted((PACKAGE / "operations").glob("*.py")):
        upward = {m for m in _imports(path) if m.startswith(("graphbuild.cli", "graphbuild.reporting"))}
        assert not upward, f"operations/{path.name} imports {upward}"


def test_reporting_never_imports_cli():
    for path in sorted((PACKAGE / "reporting").glob("*.py")):
        assert not {m for m in _imports(path) if m.startswith("graphbuild.cli")}, path.name
