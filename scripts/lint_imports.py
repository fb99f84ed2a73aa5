"""Check the import contracts of pyproject.toml (`[tool.importlinter]`) with `lint-imports`.

rules/ and cache/ are packaged as graphbuild.rules and graphbuild.cache (`package-dir` in
pyproject.toml), but import-linter finds a package's modules by walking its directory, where
they are not. So the package is laid out as it installs, in a temporary directory (following
the `package-dir` mapping, so a new mapping needs nothing here), and checked there.

Usage: .venv/bin/python scripts/lint_imports.py  (exit status of lint-imports)
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def lay_out(dest: Path) -> None:
    """Copy each package of the `package-dir` mapping to where it installs (sources only)."""
    mapping: dict[str, str] = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"]
    for package, source in sorted(mapping.items()):  # parents first
        target = dest.joinpath(*package.split("."))
        target.mkdir(parents=True, exist_ok=True)
        for path in (ROOT / source).glob("*.py"):
            shutil.copy2(path, target / path.name)
        # subpackages not listed in the mapping live in the mapped directory itself
        for sub in (ROOT / source).iterdir():
            if sub.is_dir() and (sub / "__init__.py").is_file() and f"{package}.{sub.name}" not in mapping:
                shutil.copytree(sub, target / sub.name, ignore=shutil.ignore_patterns("__pycache__"),
                                dirs_exist_ok=True)


def main() -> int:
    lint = Path(sys.executable).parent / "lint-imports"
    with tempfile.TemporaryDirectory(prefix="graphbuild-imports-") as tmp:
        lay_out(Path(tmp))
        # from the laid-out copy: its directory comes first on the path, not the editable install
        return subprocess.run([str(lint), "--config", str(ROOT / "pyproject.toml"), "--no-cache"], cwd=tmp,
                              env={"PYTHONPATH": tmp, "PATH": "/usr/bin:/bin"}).returncode


if __name__ == "__main__":
    sys.exit(main())
