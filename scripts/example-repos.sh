#!/usr/bin/env bash
# Make the git repositories the example workspace follows (//envs:research takes a library
# from a branch of one). They are built from examples/ with fixed dates and authors, so the
# commits, and so the lock files, are the same on every machine. Idempotent.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
repos="$root/.repos"
mkdir -p "$repos"

make_repo() {  # make_repo NAME SOURCE_DIR
  local name=$1 src=$2 bare="$repos/$1.git"
  if [ -d "$bare" ] && git -C "$bare" rev-parse -q --verify refs/heads/main >/dev/null; then
    return 0
  fi
  rm -rf "$bare"
  local work
  work=$(mktemp -d)
  cp -r "$src/." "$work/"
  (
    cd "$work"
    export GIT_AUTHOR_NAME="Research Group" GIT_AUTHOR_EMAIL="research@example.invalid"
    export GIT_COMMITTER_NAME="Research Group" GIT_COMMITTER_EMAIL="research@example.invalid"
    export GIT_AUTHOR_DATE="2026-01-01T00:00:00Z" GIT_COMMITTER_DATE="2026-01-01T00:00:00Z"
    git init -q -b main .
    git add -A
    git -c commit.gpgsign=false commit -q -m "research-tools 0.1.0"
  )
  git clone -q --bare "$work" "$bare"
  rm -rf "$work"
  echo "made $bare at $(git -C "$bare" rev-parse refs/heads/main)" >&2
}

make_repo research-lib "$root/examples/research-lib"
