#!/usr/bin/env bash
# The main job: build, test and push //envs:prod of this repository's example workspace,
# after setting up everything it needs (scripts/prepare.sh).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
eval "$(bash scripts/prepare.sh)"
exec .venv/bin/graphbuild run "${@:-//envs:prod}"
