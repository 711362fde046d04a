"""A test peer whose Gradio API mirrors the not-lain/background-removal Space (BiRefNet): the
segmentation stage of `segment-then-3d`.

Source read: the Space's app.py as its public copies have it (a TabbedInterface of three
gr.Interface tabs, "Image Upload", "URL Input", "File Output"; BiRefNet at 1024², the mask from
the sigmoid of the last prediction resized to the image and put in as its alpha). The Space runs
on ZeroGPU (`@spaces.GPU` on `process`). Its ImageSlider is the `gradio_imageslider` custom
component; on Gradio 6 the built-in gr.ImageSlider has the same value shape (a pair of images).

| fn_index | api_name | inputs (component) | outputs |
|---|---|---|---|
| 0 | `/image` | Image("Upload an image", type numpy) | ImageSlider("Processed Image", type pil): (cut-out RGBA, original RGB) |
| 1 | `load_example` (gr.Examples; show_api false) | Dataset | Image |
| 2 | `/text` | Textbox("Paste an image URL") | ImageSlider("Processed Image from URL", type pil) |
| 3 | `load_example_1` (gr.Examples; show_api false) | Dataset | Textbox |
| 4 | `/png` | Image("Upload an image", type filepath) | File("Output PNG File"): the cut-out as `<upload name>.png`, RGBA |

(The exact fn_index order is whatever Gradio gives this layout; spaceport calls by api_name.)

## What the mirror computes
The "segmentation" keys out the colour of the image corners (mirror_support.key_out_background):
the object keeps its pixels, opaque; the background becomes transparent. `/png` writes the RGBA
PNG beside the upload, as the Space does, and prints one line to stdout:

    SEGMENT {"endpoint": "png", "image": [w, h], "kept": N}

Test hooks that leave the API alone: an upload whose file name contains `fail` raises
gr.Error("mirror failure: …"); `slow` makes the call take about 10 s reporting gr.Progress steps;
env MIRROR_DELAY_S adds a delay to every call; MIRROR_INSTANT=1 skips every sleep.

Run (Gradio 6.31): GRADIO_ANALYTICS_ENABLED=False HF_HUB_OFFLINE=1 GRADIO_TEMP_DIR=$(mktemp -d) \\
     /work/main/.venv/bin/python app.py --port 7866
"""

import argparse
import io
import json
import os
import sys
import tempfile
import time
import urllib.request

import gradio as gr
import numpy as np
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from mirror_support import (  # noqa: E402
    DELAY_S,
    INSTANT,
    SLOW_STEPS,
    SLOW_STEP_S,
    serve as _serve,
    key_out_background,
    sleep as _sleep,
)


def _hooks(name, progress):
    if "fail" in name:
        raise gr.Error(f"mirror failure: {name} was asked to fail")
    _sleep(DELAY_S)
    if "slow" in name and not INSTANT:
        for _ in progress.tqdm(range(SLOW_STEPS), desc="segmenting"):
            time.sleep(SLOW_STEP_S)


def _load(source):
    """loadimg's load_img for what the tabs pass: an array, a path, or a URL."""
    if isinstance(source, np.ndarray):
        return Image.fromarray(source)
    if isinstance(source, str) and source.startswith(("http://", "https://")):
        with urllib.request.urlopen(source, timeout=10) as r:
            return Image.open(io.BytesIO(r.read()))
    return Image.open(source)


def process(image):
    """The Space's `process`: the mask becomes the image's alpha."""
    return key_out_background(image)


def fn(image, progress=gr.Progress()):
    im = _load(image).convert("RGB")
    origin = im.copy()
    _hooks("", progress)
    return (process(im), origin)


def process_file(f, progress=gr.Progress()):
    if f is None:
        raise gr.Error("No image given")
    _hooks(os.path.basename(f), progress)
    name_path = f.rsplit(".", 1)[0] + ".png"
    im = _load(f).convert("RGB")
    transparent = process(im)
    transparent.save(name_path)
    kept = int((np.asarray(transparent)[..., 3] > 0).sum())
    print(f"SEGMENT {json.dumps({'endpoint': 'png', 'image': list(im.size), 'kept': kept})}", flush=True)
    return name_path


def build_app(example):
    slider1 = gr.ImageSlider(label="Processed Image", type="pil")
    slider2 = gr.ImageSlider(label="Processed Image from URL", type="pil")
    image_upload = gr.Image(label="Upload an image")
    image_file_upload = gr.Image(label="Upload an image", type="filepath")
    url_input = gr.Textbox(label="Paste an image URL")
    output_file = gr.File(label="Output PNG File")
    tab1 = gr.Interface(fn, inputs=image_upload, outputs=slider1, examples=[example], api_name="image")
    tab2 = gr.Interface(fn, inputs=url_input, outputs=slider2, examples=[example], api_name="text")
    tab3 = gr.Interface(process_file, inputs=image_file_upload, outputs=output_file, examples=[example],
                        api_name="png")
    return gr.TabbedInterface(
        [tab1, tab2, tab3], ["Image Upload", "URL Input", "File Output"], title="Background Removal Tool"
    )


def _write_example(root):
    os.makedirs(root, exist_ok=True)
    pixels = np.full((96, 96, 3), 250, dtype=np.uint8)
    pixels[20:76, 28:68] = (200, 80, 40)
    path = os.path.join(root, "butterfly.png")
    Image.fromarray(pixels).save(path)
    return path


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=7860)
    args = parser.parse_args()

    work = tempfile.mkdtemp(prefix="background_removal_mirror_", dir=os.environ.get("GRADIO_TEMP_DIR"))
    os.chdir(work)
    demo = build_app(_write_example(os.path.join(work, "assets")))
    demo.queue(max_size=20)
    _serve(demo, args.port)


if __name__ == "__main__":
    main()
