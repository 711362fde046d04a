"""A test peer whose Gradio API mirrors the Kwai-Kolors/Kolors-Virtual-Try-On Space exactly.

Source read: the Space's app.py as copied in github.com/HAQ-NAWAZ-MALIK/2024-Projects,
Kolors-Virtual-Try-On/app.py @ 9d35b977fdca2ad066649c8156c3858c5dcee777 (README: sdk gradio 4.38.1),
checked against the older copy github.com/teasai/Kolors-Virtual-Try-On app.py @ 002bcad0 (same API,
function `start_tryon`, concurrency_limit=10) and a later copy (function `tryon` with `import spaces`,
concurrency_limit=40, no explicit queue()). The model runs on a remote service the Space calls with
secret credentials; only the Gradio API is public.

Endpoint table of the real Space (dependencies in config order; fn_index = position; the
load_example names are what Gradio 4.44 gives gr.Examples, as seen on this mirror's /config):

| fn_index | api_name | inputs (component, default) | outputs |
|---|---|---|---|
| 0 | `load_example` (gr.Examples of "Person image"; show_api false, not in /info) | Dataset | Image |
| 1 | `load_example_1` (gr.Examples of "Garment image"; show_api false) | Dataset | Image |
| 2 | `/tryon` | person_img: Image(label "Person image", sources upload, type numpy, default None); garment_img: Image("Garment image", numpy, None); seed: Slider(0..999999, step 1, default 0, "Seed"); randomize_seed: Checkbox(default True, "Random seed") | Image("Result"), Number("Seed used"), Textbox("Response") |
| 3 | `load_example_2` (showcase gr.Examples; show_api false) | Dataset | Image, Image, Image |

`/tryon` returns `(None, None, "Empty image")` when either image is missing, draws the seed from
`random.randint(0, 999999)` when randomize_seed is set, and otherwise echoes the seed it was given;
the info text is "Success". Queue: `queue(max_size=20)`, `concurrency_limit=10` on /tryon.

The mirror runs on Gradio 4.44.1 (protocol sse_v3, no /gradio_api prefix). The try-on result is the
person image (same size) with the garment, its near-white background keyed out, blended onto the torso
box (x 25-75 %, y 22-70 % of the person); the seed nudges the garment brightness so different seeds
give different pixels. Every call prints one machine-readable line to stdout:

    TRYON {"person": [h, w], "garment": [h, w], "seed": 7, "randomize_seed": false, "names": [...]}

Test hooks that leave the API alone: an uploaded image whose file name contains `fail` raises
gr.Error("mirror failure: …"); one containing `slow` makes the call take about 10 s reporting
gr.Progress steps; env MIRROR_DELAY_S adds a delay to every call; MIRROR_INSTANT=1 skips every sleep.

Run: GRADIO_ANALYTICS_ENABLED=False HF_HUB_OFFLINE=1 GRADIO_TEMP_DIR=$(mktemp -d) \
     /tmp/venv-4.44.1/bin/python app.py --port 7862
"""

import argparse
import json
import os
import random
import sys
import tempfile
import time

import gradio as gr
import numpy as np
from PIL import Image

# The hooks and watchdog every mirror shares (tests/peers/mirror_support.py).
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from mirror_support import (  # noqa: E402
    DELAY_S,
    INSTANT,
    SLOW_STEPS,
    SLOW_STEP_S,
    sleep as _sleep,
    payload_name as _payload_name,
    serve as _serve,
)

MAX_SEED = 999999


# -------------------------------------------------------------------------
# Upload names: the Space's function only sees arrays, so the mirror's hooks read the uploaded file
# name in a wrapper around each Image component's preprocess (config and API stay untouched).
# -------------------------------------------------------------------------
class _NamedArray(np.ndarray):
    """An ndarray that remembers the name of the file it was decoded from."""

    mirror_name = ""


def _remember_upload_name(component):
    original = component.preprocess

    def preprocess(payload):
        value = original(payload)
        if isinstance(value, np.ndarray):
            value = value.view(_NamedArray)
            value.mirror_name = _payload_name(payload)
        return value

    component.preprocess = preprocess


def _name_of(array):
    return getattr(array, "mirror_name", "") or ""


# -------------------------------------------------------------------------
# Try-on: the garment keyed and blended onto the person's torso box
# -------------------------------------------------------------------------
def _compose(person, garment, seed):
    person = np.asarray(person)[..., :3].astype(np.float32)
    garment = np.asarray(garment)[..., :3]
    h, w, _ = person.shape
    x0, x1 = int(w * 0.25), max(int(w * 0.75), int(w * 0.25) + 1)
    y0, y1 = int(h * 0.22), max(int(h * 0.70), int(h * 0.22) + 1)
    patch = Image.fromarray(garment.astype(np.uint8)).resize((x1 - x0, y1 - y0), Image.BILINEAR)
    patch = np.asarray(patch).astype(np.float32)
    # Key out the garment photo's background (near white), as a try-on keeps only the garment.
    alpha = np.where((patch > 235).all(axis=-1), 0.0, 0.85)[..., None]
    patch = np.clip(patch + (int(seed) % 17) - 8, 0, 255)
    out = person.copy()
    out[y0:y1, x0:x1] = out[y0:y1, x0:x1] * (1 - alpha) + patch * alpha
    return out.round().astype(np.uint8)


def tryon(person_img, garment_img, seed, randomize_seed, progress=gr.Progress()):
    if person_img is None or garment_img is None:
        return None, None, "Empty image"
    names = [_name_of(person_img), _name_of(garment_img)]
    failing = [n for n in names if "fail" in n]
    if failing:
        raise gr.Error(f"mirror failure: {failing[0]} was asked to fail")
    if randomize_seed:
        seed = random.randint(0, MAX_SEED)

    _sleep(DELAY_S)
    if any("slow" in n for n in names) and not INSTANT:
        for _ in progress.tqdm(range(SLOW_STEPS), desc="trying on"):
            time.sleep(SLOW_STEP_S)

    result_img = _compose(person_img, garment_img, seed)
    record = {
        "person": list(np.asarray(person_img).shape[:2]),
        "garment": list(np.asarray(garment_img).shape[:2]),
        "seed": seed,
        "randomize_seed": randomize_seed,
        "names": names,
    }
    print(f"TRYON {json.dumps(record)}", flush=True)
    return result_img, seed, "Success"


# -------------------------------------------------------------------------
# Example assets: the Space ships photos under assets/; the mirror draws small stand-ins
# -------------------------------------------------------------------------
def _write_examples(root):
    paths = {"human": [], "cloth": [], "examples": []}
    for folder in paths:
        os.makedirs(os.path.join(root, folder), exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(3):
        person = np.full((96, 64, 3), 200, dtype=np.uint8)
        person[10:90, 20:44] = rng.integers(40, 160, size=3)
        cloth = np.full((64, 64, 3), 255, dtype=np.uint8)
        cloth[8:56, 8:56] = rng.integers(0, 255, size=3)
        for folder, pixels in (("human", person), ("cloth", cloth)):
            path = os.path.join(root, folder, f"{i:03d}.png")
            Image.fromarray(pixels).save(path)
            paths[folder].append(path)
        for kind, pixels in (("model", person), ("garment", cloth), ("result", _compose(person, cloth, 0))):
            path = os.path.join(root, "examples", f"{kind}{i + 1}.png")
            Image.fromarray(pixels).save(path)
            paths["examples"].append(path)
    return paths


css = """
#col-left, #col-mid, #col-right { margin: 0 auto; max-width: 430px; }
#col-showcase { margin: 0 auto; max-width: 1100px; }
"""


def build_app(assets):
    human_list_path = assets["human"]
    garm_list_path = assets["cloth"]
    showcase = assets["examples"]
    with gr.Blocks(css=css) as Tryon:
        gr.HTML("<h1>Kolors Virtual Try-On mirror (test peer)</h1>")
        with gr.Row():
            with gr.Column(elem_id="col-left"):
                gr.HTML("<div>Step 1. Upload a person image</div>")
            with gr.Column(elem_id="col-mid"):
                gr.HTML("<div>Step 2. Upload a garment image</div>")
            with gr.Column(elem_id="col-right"):
                gr.HTML("<div>Step 3. Press Run to get try-on results</div>")
        with gr.Row():
            with gr.Column(elem_id="col-left"):
                imgs = gr.Image(label="Person image", sources="upload", type="numpy")
                gr.Examples(inputs=imgs, examples_per_page=12, examples=human_list_path)
            with gr.Column(elem_id="col-mid"):
                garm_img = gr.Image(label="Garment image", sources="upload", type="numpy")
                gr.Examples(inputs=garm_img, examples_per_page=12, examples=garm_list_path)
            with gr.Column(elem_id="col-right"):
                image_out = gr.Image(label="Result", show_share_button=False)
                with gr.Row():
                    seed = gr.Slider(label="Seed", minimum=0, maximum=MAX_SEED, step=1, value=0)
                    randomize_seed = gr.Checkbox(label="Random seed", value=True)
                with gr.Row():
                    seed_used = gr.Number(label="Seed used")
                    result_info = gr.Text(label="Response")
                test_button = gr.Button(value="Run", elem_id="button")

        test_button.click(
            fn=tryon,
            inputs=[imgs, garm_img, seed, randomize_seed],
            outputs=[image_out, seed_used, result_info],
            api_name="tryon",
            concurrency_limit=10,
        )

        with gr.Column(elem_id="col-showcase"):
            gr.HTML("<div>Virtual try-on examples in pairs of person and garment images</div>")
            gr.Examples(
                examples=[showcase[i : i + 3] for i in range(0, len(showcase), 3)],
                inputs=[imgs, garm_img, image_out],
                label=None,
            )

    _remember_upload_name(imgs)
    _remember_upload_name(garm_img)
    return Tryon


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=7860)
    args = parser.parse_args()

    work = tempfile.mkdtemp(prefix="kolors_mirror_", dir=os.environ.get("GRADIO_TEMP_DIR"))
    os.chdir(work)
    demo = build_app(_write_examples(os.path.join(work, "assets")))
    demo.queue(max_size=20)
    _serve(demo, args.port, max_threads=5)


if __name__ == "__main__":
    main()
