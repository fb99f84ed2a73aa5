#!/usr/bin/env bash
# The test job: set up (scripts/prepare.sh), lint, check the import contracts (import-linter,
# `[tool.importlinter]` in pyproject.toml), then run the whole suite, Docker tests included.
# Extra arguments go to pytest, e.g. `scripts/test.sh -m "not docker"`.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
eval "$(bash scripts/prepare.sh)"
.venv/bin/ruff check .
.venv/bin/python scripts/lint_imports.py
exec .venv/bin/python -m pytest -q -p no:cacheprovider "$@"
