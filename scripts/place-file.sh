#!/usr/bin/env bash
# place-file.sh SOURCE DEST: make DEST (inside a workspace) hold SOURCE's bytes without a
# symlink: a hard link when both are on one file system, else a copy (kept while identical).
set -euo pipefail
src=$1 dest=$2
[[ -f "$src" ]] || { echo "place-file: no file $src" >&2; exit 1; }
mkdir -p "$(dirname "$dest")"
if [[ "$src" -ef "$dest" && ! -L "$dest" ]]; then
    exit 0
fi
tmp="$dest.tmp.$$"
if ln -f "$src" "$tmp" 2>/dev/null; then
    mv -f "$tmp" "$dest"
elif [[ -f "$dest" && ! -L "$dest" ]] && cmp -s "$src" "$dest"; then
    exit 0
else
    cp --reflink=auto "$src" "$tmp" && mv -f "$tmp" "$dest"
fi
