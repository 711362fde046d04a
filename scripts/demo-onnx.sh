#!/usr/bin/env bash
# A `vggt-onnx` run end to end on the embedded defaults: VGGT's pre-processing, ONNX Runtime
# inference and post-processing, with the demo model (a documented stand-in with the VGGT ONNX
# export's exact contract; scripts/make_demo_model.py). Checks the GLB with the Khronos glTF
# validator and predictions.npz with numpy. Usage: bash scripts/demo-onnx.sh [IMAGE…]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

bash scripts/test-env.sh
export ORT_DYLIB_PATH=${ORT_DYLIB_PATH:-$(ls "$root"/.venv/lib/python3*/site-packages/onnxruntime/capi/libonnxruntime.so.* | head -n1)}
echo "demo-onnx: building spaceport" >&2
spaceport=$(bash scripts/cargo-bin.sh spaceport-cli spaceport)

work=$(mktemp -d)
model="$work/models/vggt.onnx"
.venv/bin/python scripts/make_demo_model.py "$model" --external-data >/dev/null

images=("$@")
[ ${#images[@]} -gt 0 ] || images=(examples/vggt/*.png)
out="$root/spaceport-out/demo-onnx"
rm -rf "$out"
SPACEPORT_MODEL_VGGT_ONNX="$model" \
  "$spaceport" --data "$work/data" run vggt-onnx "${images[@]}" --set conf_thres=30 --out "$out"

(cd tests/node && node validate-gltf.mjs "$out/scene.glb" >"$work/report.json") || {
  cat "$work/report.json" >&2; echo "demo-onnx: the glTF validator found errors" >&2; exit 1; }
.venv/bin/python -c '
import sys, numpy as np
d = np.load(sys.argv[1])
for k in sorted(d.files):
    print(f"  {k:24s} {str(d[k].shape):22s} {d[k].dtype}")
' "$out/predictions.npz"
echo "demo-onnx: $out/scene.glb passes the glTF validator; $out/predictions.npz loads in numpy"
