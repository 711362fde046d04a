#!/usr/bin/env bash
# Installs every test peer into the project: the Python venv (.venv, from the pinned
# tests/requirements.txt), the npm tools (tests/node/node_modules) and the rustup targets.
# Idempotent and quick when nothing changed. Prints the env lines the tests read.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

stamp=.venv/.requirements.sha256
want=$(sha256sum tests/requirements.txt | cut -d' ' -f1)
if [ ! -x .venv/bin/python ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "test-env: installing Python test peers into .venv" >&2
  python3 -m venv .venv
  .venv/bin/pip install -q --disable-pip-version-check -r tests/requirements.txt
  echo "$want" > "$stamp"
fi

if [ ! -d tests/node/node_modules/gltf-validator ]; then
  echo "test-env: installing npm test tools into tests/node/node_modules" >&2
  (cd tests/node && npm ci --no-audit --no-fund --silent)
fi

if ! rustup target list --installed | grep -qx wasm32-wasip2; then
  rustup target add wasm32-wasip2 >&2
fi
