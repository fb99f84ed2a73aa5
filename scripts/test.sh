#!/usr/bin/env bash
# The test job: set up (scripts/prepare.sh), lint, check the import contracts (import-linter,
# `[tool.importlinter]` in pyproject.toml), then run the whole suite, Docker tests included.
# Extra arguments go to pytest, e.g. `scripts/test.sh -m "not docker"`. `--fast` runs the fast
# subset (no Docker, no network) on every core (pytest-xdist): what to run after each change.
set -euo pipefail
fast=()
if [ "${1:-}" = "--fast" ]; then
  shift
  fast=(-m "not docker and not network" -n auto)
fi
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
eval "$(bash scripts/prepare.sh)"
.venv/bin/ruff check .
.venv/bin/python scripts/lint_imports.py
exec .venv/bin/python -m pytest -q -p no:cacheprovider "${fast[@]}" "$@"
