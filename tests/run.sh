#!/usr/bin/env bash
# Set up .venv from the project's own files and run the whole test suite: README's test
# command and what CI (.ci/run) runs. Extra arguments go to pytest (e.g. tests/model -x).
#
# Editor tests need tools outside Python: a real Neovim (Debian's, installed here when we are
# root or may sudo) and the VS Code extension's npm packages (from its lockfile). Without
# them those tests skip, and -rs prints each skip's reason at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo -n"
if ! command -v nvim >/dev/null; then
  echo "tests/run.sh: installing Neovim (Debian) for the editor tests" >&2
  { $SUDO apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q neovim >/dev/null; } \
    || echo "tests/run.sh: could not install neovim; tests/e2e/test_neovim.py will skip" >&2
fi
if command -v npm >/dev/null; then
  (cd editors/vscode && npm ci --no-audit --no-fund --loglevel=error)
else
  echo "tests/run.sh: no npm; the VS Code extension tests will skip" >&2
fi
[ -x .venv/bin/python ] || python3 -m venv .venv
. .venv/bin/activate
# torch first, by exact version: pip takes the CPU build on this disk (a range would pull CUDA).
pip install -q torch==2.13.0
pip install -q -c tests/constraints.txt -e ".[dev]"
# Unbuffered: in a pipe (CI's log) Python holds pytest's progress back in its buffer for
# minutes; a newcomer sees each file's line as it finishes.
export PYTHONUNBUFFERED=1
exec python -m pytest -rs "$@"
