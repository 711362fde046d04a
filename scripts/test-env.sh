#!/usr/bin/env bash
# Installs every test peer into the project: the Python venv (.venv, from the pinned
# tests/requirements.txt), the npm tools (tests/node/node_modules), the rustup targets and
# wasmtime (cargo's bin, reused when present).
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

# The WASI-HTTP host the edge component is tested under (tests/it/edge.rs). A cold install
# compiles for about 13 minutes on two cores, so an installed one of this version is reused.
wasmtime_version=48.0.8
wasmtime_bin=${CARGO_HOME:-$HOME/.cargo}/bin/wasmtime
if ! "$wasmtime_bin" --version 2>/dev/null | grep -Eq "^wasmtime $wasmtime_version( |$)"; then
  echo "test-env: installing wasmtime-cli $wasmtime_version (cargo install, once)" >&2
  cargo install -q wasmtime-cli --version "$wasmtime_version" --locked >&2
fi
