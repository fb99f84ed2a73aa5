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
  # fixed dates and authors: the same sources give the same commit, so a repository made
  # from older sources (examples/ changed since) is made again, and a current one is kept
  local want have
  want=$(git -C "$work" rev-parse HEAD)
  have=$(git -C "$bare" rev-parse -q --verify refs/heads/main 2>/dev/null || true)
  if [ "$want" != "$have" ]; then
    rm -rf "$bare"
    git clone -q --bare "$work" "$bare"
    echo "made $bare at $want" >&2
  fi
  rm -rf "$work"
}

make_repo research-lib "$root/examples/research-lib"
