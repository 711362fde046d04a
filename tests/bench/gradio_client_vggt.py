"""The baseline of `cargo bench -p spaceport-cli --bench e2e`: a warm `gradio_client` doing what
the `vggt` pipeline does, against the same mirror Space, one run per command read from stdin.

    python tests/bench/gradio_client_vggt.py URL IMAGE_A IMAGE_B

Connects once (the client's /config and /info fetches are not timed), prints `READY`, then for
every `run` line on stdin makes the two calls the pipeline makes — `/update_gallery_on_upload_1`
with the images as `handle_file` inputs, then `/gradio_demo` on its `target_dir` with the
pipeline's default settings — which also downloads the GLB, and prints `MS <elapsed> <glb bytes>`.
Driven line by line so the Rust bench can interleave these runs with its own.
"""

import os
import sys
import time

from gradio_client import Client, handle_file

# The vggt pipeline's defaults, in the Space's spelling (pipelines/vggt.toml).
SETTINGS = dict(
    conf_thres=50,
    frame_filter="All",
    mask_black_bg=False,
    mask_white_bg=False,
    show_cam=True,
    mask_sky=False,
    prediction_mode="Depthmap and Camera Branch",
)


def one_run(client, images):
    start = time.perf_counter()
    _, target_dir, _, _ = client.predict(
        None, [handle_file(p) for p in images], api_name="/update_gallery_on_upload_1"
    )
    glb, _, _ = client.predict(target_dir, *SETTINGS.values(), api_name="/gradio_demo")
    elapsed_ms = (time.perf_counter() - start) * 1000.0
    size = os.path.getsize(glb)
    if size == 0:
        raise RuntimeError(f"an empty GLB at {glb}")
    return elapsed_ms, size


def main():
    url, *images = sys.argv[1:]
    if len(images) < 1:
        sys.exit(__doc__)
    client = Client(url, verbose=False)
    print("READY", flush=True)
    for line in sys.stdin:
        if line.strip() != "run":
            break
        elapsed_ms, size = one_run(client, images)
        print(f"MS {elapsed_ms:.3f} {size}", flush=True)


if __name__ == "__main__":
    main()
