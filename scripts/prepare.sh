#!/usr/bin/env bash
# Everything the main job and the tests need, idempotently: the venv (setup.sh), the example
# git repository, and the Docker engine, registry and base image (workspace-env.sh).
# Prints the `export` lines of the services, to eval; progress goes to stderr.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bash "$root/scripts/setup.sh"
bash "$root/scripts/example-repos.sh"
bash "$root/scripts/workspace-env.sh"
