#!/usr/bin/env bash
# Start the services the example workspace and the Docker tests need, and put the base image
# tarball into the workspace (.bases/, ignored by git). Prints `export` lines to eval.
#
# graphbuild reads no file outside the workspace, symlinks included, so .bases/ gets a hard
# link to the tarball (no copy, same inode), or a copy when the two are on different file
# systems.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
exports=$(bash "$root/scripts/services.sh")
eval "$exports"
mkdir -p "$root/.bases"
bash "$root/scripts/place-file.sh" "$GRAPHBUILD_BASE_TARBALL" "$root/.bases/debian-bookworm-python3.tar"
printf '%s\n' "$exports"
