#!/usr/bin/env bash
# The main job: build, test and push //envs:prod of this repository's example workspace.
# Sets up everything it needs first (venv, example git repos, Docker engine, registry, base image).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
bash scripts/setup.sh
bash scripts/example-repos.sh
exec .venv/bin/graphbuild run "${@:-//envs:prod}"
