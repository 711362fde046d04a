"""gradio_client latency baseline against the protocol-matrix peer (tests/peers/matrix/app.py).

    <venv>/bin/python tests/bench/gradio_client_matrix.py --url http://127.0.0.1:7861 [--n 30]

Run it with the venv of the server's Gradio version, so the client is the one that ships with it
(gradio_client 0.6.1 with 3.50.2, 0.8.1 / 0.9.0 with 4.15.0 / 4.17.0, 1.3.0 with 4.44.1, 2.7.2 with
6.31.0). Makes N sequential calls of each of

  fn1      fn_index=1 (x*2, api_name False/null), 21 -> 42
  process  api_name=/process: a 4x3 PNG (uploaded), 2, True -> a transposed image (downloaded) + text

and prints one JSON line per endpoint:
  {"client":"gradio_client <ver>","gradio":"<server>","endpoint":...,"n":N,"p50_ms":...,"p90_ms":...,"min_ms":...}

Each sample is the wall time of one `client.predict(...)`, from the Python call to the returned
result (for `process` that includes the upload and the download of the output image). Client
construction (its /config and /info fetches) and --warmup calls per endpoint (default 1) are not
timed. Percentiles are nearest-rank.

Client API differences handled here:
- `handle_file` exists from gradio_client 1.0; older clients take a plain path and upload it
  themselves (0.6.x base64-encodes it for the 3.x Image, 0.8/0.9 upload it as FileData).
- gradio_client 0.8+ refuses endpoints whose api_name is False (4.x `false`, 6.x "false" with
  api_visibility "private") with InvalidAPIEndpointError before sending anything; the server itself
  runs them by fn_index, so the bench marks that endpoint valid (`is_valid = True`) and then uses
  the client's ordinary predict path. 0.6.1 (3.x, api_name null) needs no override.
- `client.endpoints` is a list up to 1.x and a dict keyed by fn_index in 2.x.
"""

import argparse
import json
import math
import os
import sys
import tempfile
import time

import gradio_client
from gradio_client import Client
from PIL import Image

try:  # gradio_client >= 1.0
    from gradio_client import handle_file
except ImportError:  # 0.6.x / 0.8.x / 0.9.x: a plain path is uploaded by the client
    handle_file = None


def percentile(sorted_ms, p):
    return sorted_ms[max(0, math.ceil(p / 100.0 * len(sorted_ms)) - 1)]


def endpoint(client, fn_index):
    # A list (indexed by position = fn_index) up to 1.x, a dict keyed by fn_index in 2.x.
    return client.endpoints[fn_index]


def make_png(directory):
    path = os.path.join(directory, "in.png")
    img = Image.new("RGB", (4, 3))
    for x in range(4):
        for y in range(3):
            img.putpixel((x, y), (x * 60, y * 80, 128))
    img.save(path)
    return path


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--url", required=True)
    ap.add_argument("--n", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=1, help="untimed calls per endpoint first")
    args = ap.parse_args()

    png = make_png(tempfile.mkdtemp(prefix="matrix-bench-"))
    client = Client(args.url, verbose=False)
    server = client.config.get("version", "?")
    client_ver = f"gradio_client {gradio_client.__version__}"

    fn1 = endpoint(client, 1)
    if not fn1.is_valid:  # api_name False on 4.x / 6.x: see the module docstring
        fn1.is_valid = True
    image_arg = handle_file(png) if handle_file else png

    def call_fn1():
        out = client.predict(21, fn_index=1)
        if float(out) != 42:
            raise RuntimeError(f"fn1: expected 42, got {out!r}")

    def call_process():
        img, text = client.predict(image_arg, 2, True, api_name="/process")
        return img, text

    def check_process(result):
        img, text = result
        if not text.startswith("size=(4, 3) mode=RGB n=2") or not text.endswith("flag=True"):
            raise RuntimeError(f"process: unexpected text {text!r}")
        with Image.open(img) as out:
            if out.size != (3, 4):
                raise RuntimeError(f"process: expected a 3x4 image, got {out.size} at {img}")

    for name, call, check in (("fn1", call_fn1, None), ("process", call_process, check_process)):
        for _ in range(args.warmup):
            result = call()
            if check:
                check(result)
        samples = []
        for _ in range(args.n):
            t0 = time.perf_counter()
            result = call()
            samples.append((time.perf_counter() - t0) * 1000.0)
            if check:  # outside the timing
                check(result)
        samples.sort()
        print(
            json.dumps(
                {
                    "client": client_ver,
                    "gradio": server,
                    "endpoint": name,
                    "n": args.n,
                    "p50_ms": round(percentile(samples, 50), 2),
                    "p90_ms": round(percentile(samples, 90), 2),
                    "min_ms": round(samples[0], 2),
                }
            ),
            flush=True,
        )
    # Some old clients leave non-daemon threads (e.g. 0.6.x executors); do not wait on them.
    sys.stdout.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
