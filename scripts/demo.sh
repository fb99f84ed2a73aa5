#!/usr/bin/env bash
# The main job: build, test and push //envs:prod of this repository's example workspace.
# Sets up everything it needs first: the venv, the example git repository, a Docker engine,
# a registry on loopback and the Debian base image (scripts/services.sh, cached per machine).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
bash scripts/setup.sh
bash scripts/example-repos.sh
eval "$(bash scripts/workspace-env.sh)"
exec .venv/bin/graphbuild run "${@:-//envs:prod}"
