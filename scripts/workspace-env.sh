#!/usr/bin/env bash
# Start the services the example workspace and the Docker tests need, and link the base image
# tarball into the workspace (.bases/, ignored by git). Prints `export` lines to eval.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
exports=$(bash "$root/scripts/services.sh")
eval "$exports"
mkdir -p "$root/.bases"
ln -sfn "$GRAPHBUILD_BASE_TARBALL" "$root/.bases/debian-bookworm-python3.tar"
printf '%s\n' "$exports"
