#!/usr/bin/env bash
# Install graphbuild into ./.venv on a Debian machine (as root: installs what apt must provide).
# Idempotent; prints nothing on stdout.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

need=()
command -v git >/dev/null || need+=(git)
command -v python3 >/dev/null || need+=(python3)
python3 -c 'import ensurepip, venv' 2>/dev/null || need+=(python3-venv)
command -v dot >/dev/null || need+=(graphviz)          # graphbuild why --graph
command -v chromium >/dev/null || need+=(chromium)     # the why --graph screenshot test (headless)
command -v npm >/dev/null || need+=(npm)               # gitlab-ci-local, for the CI pipeline test
command -v rsync >/dev/null || need+=(rsync)           # gitlab-ci-local copies the checkout with it
command -v chromium >/dev/null || need+=(chromium)     # renders `graphbuild matrix --html` in a test
if [ ${#need[@]} -gt 0 ]; then
  echo "setup: installing ${need[*]} with apt" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  apt-get install -y -qq "${need[@]}" >&2
fi

if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv" >&2
  python3 -m venv .venv >&2
fi
stamp=.venv/.graphbuild-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  echo "setup: installing graphbuild and its test tools into .venv" >&2
  .venv/bin/python -m pip install -q --upgrade pip >&2
  .venv/bin/python -m pip install -q -e '.[test]' >&2
  touch "$stamp"
fi
# the bytecode a regular (non-editable) install would have written: every command starts
# faster, even where PYTHONDONTWRITEBYTECODE is set (0.1 s of each start otherwise)
.venv/bin/python -m compileall -q -j 0 graphbuild rules cache >/dev/null 2>&1 || true

# gitlab-ci-local runs generated GitLab pipelines locally in the tests (4.70 runs on Node 20)
if ! command -v gitlab-ci-local >/dev/null || [ "$(gitlab-ci-local --version 2>/dev/null)" != "4.70.0" ]; then
  echo "setup: installing gitlab-ci-local with npm" >&2
  npm install -g --silent gitlab-ci-local@4.70.0 >&2
fi
