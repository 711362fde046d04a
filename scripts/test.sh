#!/usr/bin/env bash
# The test command: installs the test peers (pinned Python venv, npm validator, wasm target),
# then runs formatting and lint checks, the core's wasm32-wasip2 build and the edge component's
# lint there, and every test suite
# (unit, contract, and the integration suites against real Gradio servers and ONNX Runtime).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

bash scripts/test-env.sh
# A fresh clone builds once: incremental state (2 GB) would only take disk.
if [ "${CI:-}" = true ]; then export CARGO_INCREMENTAL=0; fi
export ORT_DYLIB_PATH=${ORT_DYLIB_PATH:-$(ls "$root"/.venv/lib/python3*/site-packages/onnxruntime/capi/libonnxruntime.so.* | head -n1)}

cargo fmt --all -- --check
# The page the server embeds (web/dist) is the build of web/src as committed.
(cd web && node build.mjs --check)
cargo clippy --workspace --all-targets -- -D warnings
cargo build -q -p spaceport-core --target wasm32-wasip2
cargo clippy -q -p orchestrator --target wasm32-wasip2 -- -D warnings
# Each function's tests run against the binary it ships: built alone, since a workspace build
# would unify its spaceport-stack features with the CLI's (every client) and test a bigger one.
functions=(accept-upload submit-space poll-status fetch-artifact call-model notify-webhook reconstruct)
status=0
cargo test --workspace --no-fail-fast "${functions[@]/#/--exclude=}" || status=1
for f in "${functions[@]}"; do
    cargo test -p "$f" --no-fail-fast || status=1
done
exit $status
