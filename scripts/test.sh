#!/usr/bin/env bash
# The test job: set up (venv, services), lint, then run the whole suite, Docker tests included.
# Extra arguments go to pytest, e.g. `scripts/test.sh -m "not docker"` for the fast subset.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
bash scripts/setup.sh
bash scripts/example-repos.sh
eval "$(bash scripts/workspace-env.sh)"
.venv/bin/ruff check .
exec .venv/bin/python -m pytest -q -p no:cacheprovider "$@"
