#!/usr/bin/env bash
# A real `vggt` run end to end on the embedded defaults (SQLite + a blob directory), against the
# mirror of facebook/vggt (a real Gradio server, tests/peers/vggt_mirror) started on 127.0.0.1.
# Installs what it needs, builds `spaceport`, runs the job, validates the GLB with the Khronos
# glTF validator and prints where it is. Usage: bash scripts/demo.sh [IMAGE…]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

bash scripts/test-env.sh
echo "demo: building spaceport" >&2
spaceport=$(bash scripts/cargo-bin.sh spaceport-cli spaceport)

work=$(mktemp -d)
port=$(.venv/bin/python -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
echo "demo: starting the vggt mirror Space on 127.0.0.1:$port" >&2
GRADIO_ANALYTICS_ENABLED=False HF_HUB_OFFLINE=1 GRADIO_TEMP_DIR="$work/gradio" \
  .venv/bin/python tests/peers/vggt_mirror/app.py --port "$port" >"$work/mirror.log" 2>&1 &
mirror=$!
trap 'kill $mirror 2>/dev/null || true' EXIT
for _ in $(seq 1 120); do
  grep -q "MIRROR READY" "$work/mirror.log" 2>/dev/null && break
  kill -0 $mirror 2>/dev/null || { cat "$work/mirror.log" >&2; echo "demo: the mirror did not start" >&2; exit 1; }
  sleep 0.5
done
grep -q "MIRROR READY" "$work/mirror.log" || { echo "demo: the mirror did not start within 60 s" >&2; exit 1; }

images=("$@")
[ ${#images[@]} -gt 0 ] || images=(examples/vggt/*.png)
out="$root/spaceport-out/demo"
rm -rf "$out"
SPACEPORT_SPACE_URL_VGGT="http://127.0.0.1:$port" \
  "$spaceport" --data "$work/data" run vggt "${images[@]}" \
    --set conf_thres=40 --set prediction_mode=pointmap --out "$out"

(cd tests/node && node validate-gltf.mjs "$out/scene.glb" >"$work/report.json") || {
  cat "$work/report.json" >&2; echo "demo: the glTF validator found errors" >&2; exit 1; }
echo "demo: $out/scene.glb passes the Khronos glTF validator with zero errors"
