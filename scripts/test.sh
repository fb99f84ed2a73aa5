#!/usr/bin/env bash
# The test job: set up (scripts/prepare.sh), lint, then run the whole suite, Docker tests
# included. Extra arguments go to pytest, e.g. `scripts/test.sh -m "not docker"`.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
eval "$(bash scripts/prepare.sh)"
.venv/bin/ruff check .
exec .venv/bin/python -m pytest -q -p no:cacheprovider "$@"
