#!/usr/bin/env bash
# Builds binary BIN of package PACKAGE and prints its path, as cargo reports it: wherever the
# target dir is (CARGO_TARGET_DIR, a config's build.target-dir), never a guessed target/debug.
# Usage: scripts/cargo-bin.sh PACKAGE BIN
set -euo pipefail
package=$1 bin=$2
cargo build -q -p "$package" --bin "$bin" --message-format=json-render-diagnostics |
  python3 -c '
import json, sys
want = sys.argv[1]
path = ""
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["name"] == want:
        path = m["executable"]
if not path:
    sys.exit(f"cargo built no binary named {want}")
print(path)
' "$bin"
