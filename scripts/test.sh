#!/usr/bin/env bash
# The test job: set up, then run the whole suite (the Docker/registry tests included).
# Extra arguments go to pytest, e.g. `scripts/test.sh -m "not docker"` for the fast subset.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
bash scripts/setup.sh
bash scripts/example-repos.sh
.venv/bin/ruff check .
exec .venv/bin/python -m pytest -q -p no:cacheprovider "$@"
