"""A test peer whose Gradio API mirrors the flamehaze1115/Wonder3D-demo Space exactly.

Source read: the Space's gradio_app.py (README: sdk gradio, app_file gradio_app.py) as copied in
github.com/Hammer-888/Wonder3D-hf gradio_app.py @ 2dabbb6ee879c29e4415d6503736e2457c2dc4f4 (same API
at de49b4d1), checked against github.com/xxlong0/Wonder3D gradio_app.py @ df03557 (identical bindings;
its guidance slider is 1..5) and the later gradio_app_mv.py @ f3f7015 (adds a sixth run_pipeline input,
a "Write Results" CheckboxGroup, and reorders the layout). The Space is a Gradio 3.x app: its events
have no api_name, so they are unnamed endpoints called by fn_index, and Image inputs travel as
base64 data URLs. It returns no mesh ("The demo does not include the mesh reconstruction part").

Endpoint table of the real Space (dependencies in config order; fn_index = position):

| fn_index | api_name | inputs (component, default) | outputs |
|---|---|---|---|
| 0 | false (gr.Examples load; not in /info) | Dataset | Image("Input image") |
| 1 | null: `preprocess` (run_btn.click, queue=True) | Image("Input image", type pil, image_mode RGBA, default None); CheckboxGroup(["Background Removal"], default ["Background Removal"], "Input Image Preprocessing") | Image (hidden processed_image_highres, pil RGBA), Image("Processed Image", 320x320) |
| 2 | null: `run_pipeline` (.success of fn 1) | Image (the hidden processed_image_highres, RGBA data URL); Slider(1..10, step 1, default 3, "Classifier Free Guidance Scale"); Slider(15..100, step 1, default 50, "Number of Diffusion Inference Steps"); Number(default 42, "Seed"); Number(default 192, "Crop size") | 12 x Image (256x256 RGB): colour views front, front_right, right, back, left, front_left, then the normal maps of the same views |

preprocess shrinks the input to at most 1024 px, removes the background when "Background Removal" is
ticked (rembg + SAM in the Space), and pads it to a square with transparent grey (127,127,127,0).
run_pipeline crops the object to crop_size inside a 256x256 white canvas and renders the six views.

The mirror runs on Gradio 3.50.2 (protocol ws). Background removal keys out the corner colour (an
image that already has transparency keeps its alpha). Each colour view squeezes the object by
|cos(azimuth)| (mirrored from behind) and shades it; each normal map is the gradient of the object's
darkness rotated to the view; the seed adds a small deterministic ripple to the colour views. Every
run_pipeline call prints one line to stdout:

    RUN_PIPELINE {"image": [w, h], "guidance_scale": 3, "steps": 50, "seed": 42, "crop_size": 192}

Test hooks that leave the API alone (the Space's inputs carry no file names):
- run_pipeline with seed 13 raises gr.Error("mirror failure: …");
- run_pipeline with seed 14 takes about 10 s reporting gr.Progress steps;
- preprocess with "fail" among the CheckboxGroup values raises gr.Error (so the .success step never runs);
- env MIRROR_DELAY_S adds a delay to every run_pipeline; MIRROR_INSTANT=1 skips every sleep.

Run: GRADIO_ANALYTICS_ENABLED=False HF_HUB_OFFLINE=1 GRADIO_TEMP_DIR=$(mktemp -d) \
     /tmp/venv-3.50.2/bin/python app.py --port 7866
"""

import argparse
import json
import os
import sys
import tempfile
import time
from functools import partial

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
    serve as _serve,
)

FAIL_SEED = 13
SLOW_SEED = 14
VIEWS = [("front", 0), ("front_right", 45), ("right", 90), ("back", 180), ("left", 270), ("front_left", 315)]

_TITLE = "Wonder3D: Single Image to 3D using Cross-Domain Diffusion"


# -------------------------------------------------------------------------
# preprocess: shrink, remove background, pad to a square (as the Space, minus rembg and SAM)
# -------------------------------------------------------------------------
def _remove_background(image):
    rgba = np.asarray(image.convert("RGBA"))
    if (rgba[..., 3] < 255).any():
        return image.convert("RGBA")
    rgb = rgba[..., :3].astype(np.int16)
    corners = np.array([rgb[0, 0], rgb[0, -1], rgb[-1, 0], rgb[-1, -1]]).mean(axis=0)
    alpha = np.where(np.abs(rgb - corners).sum(axis=-1) > 40, 255, 0).astype(np.uint8)
    return Image.fromarray(np.dstack([rgba[..., :3], alpha]), mode="RGBA")


def expand2square(pil_img, background_color):
    width, height = pil_img.size
    if width == height:
        return pil_img
    side = max(width, height)
    result = Image.new(pil_img.mode, (side, side), background_color)
    result.paste(pil_img, ((side - width) // 2, (side - height) // 2))
    return result


def preprocess(predictor, input_image, chk_group=None, segment=True, rescale=False):
    if chk_group is not None and "fail" in chk_group:
        raise gr.Error("mirror failure: preprocess was asked to fail")
    RES = 1024
    input_image.thumbnail([RES, RES], Image.Resampling.LANCZOS)
    if chk_group is not None:
        segment = "Background Removal" in chk_group
        rescale = "Rescale" in chk_group
    if segment:
        input_image = _remove_background(input_image)
    input_image = expand2square(input_image.convert("RGBA"), (127, 127, 127, 0))
    return input_image, input_image.resize((320, 320), Image.Resampling.LANCZOS)


# -------------------------------------------------------------------------
# run_pipeline: six colour views and six normal maps computed from the pixels
# -------------------------------------------------------------------------
def prepare_data(single_image, crop_size):
    """The object cropped to crop_size, centred on a 256x256 white canvas; also its mask."""
    rgba = np.asarray(single_image.convert("RGBA")).astype(np.float32)
    alpha = rgba[..., 3:] / 255.0
    rgb = rgba[..., :3] * alpha + 255.0 * (1 - alpha)
    ys, xs = np.nonzero(alpha[..., 0] > 0.5)
    if len(xs) == 0:
        ys, xs = np.nonzero(np.ones(alpha.shape[:2]))
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    crop_size = int(min(max(int(crop_size), 8), 256))
    scale = crop_size / max(y1 - y0, x1 - x0)
    size = (max(1, round((x1 - x0) * scale)), max(1, round((y1 - y0) * scale)))
    obj = Image.fromarray(rgb[y0:y1, x0:x1].round().astype(np.uint8)).resize(size, Image.BILINEAR)
    mask = Image.fromarray((alpha[y0:y1, x0:x1, 0] * 255).astype(np.uint8)).resize(size, Image.BILINEAR)
    return np.asarray(obj).astype(np.float32), np.asarray(mask).astype(np.float32) / 255.0


def _normals(obj, mask):
    height = (1.0 - obj.mean(axis=-1) / 255.0) * mask + mask * 0.5
    gy, gx = np.gradient(height)
    n = np.stack([-gx * 4.0, gy * 4.0, np.ones_like(height)], axis=-1)
    return n / np.linalg.norm(n, axis=-1, keepdims=True)


def _place(pixels, mask):
    """pixels (h, w, 3) with mask (h, w) centred on a white 256x256 canvas."""
    canvas = np.full((256, 256, 3), 255.0)
    h, w = mask.shape
    top, left = (256 - h) // 2, (256 - w) // 2
    region = canvas[top : top + h, left : left + w]
    canvas[top : top + h, left : left + w] = region * (1 - mask[..., None]) + pixels * mask[..., None]
    return canvas.round().clip(0, 255).astype(np.uint8)


def _view(image, mask, azimuth):
    c = np.cos(np.radians(azimuth))
    h, w = mask.shape
    width = max(2, round(w * max(abs(c), 0.25)))
    squeezed = np.asarray(Image.fromarray(image.round().clip(0, 255).astype(np.uint8)).resize((width, h), Image.BILINEAR))
    squeezed_mask = np.asarray(Image.fromarray((mask * 255).astype(np.uint8)).resize((width, h), Image.BILINEAR)) / 255.0
    if c < 0:
        squeezed, squeezed_mask = squeezed[:, ::-1], squeezed_mask[:, ::-1]
    return squeezed.astype(np.float32), squeezed_mask


def run_pipeline(pipeline, cfg, single_image, guidance_scale, steps, seed, crop_size, progress=gr.Progress()):
    seed = int(seed)
    if seed == FAIL_SEED:
        raise gr.Error(f"mirror failure: seed {FAIL_SEED} was asked to fail")
    _sleep(DELAY_S)
    if seed == SLOW_SEED and not INSTANT:
        for _ in progress.tqdm(range(SLOW_STEPS), desc="cross-domain diffusion"):
            time.sleep(SLOW_STEP_S)

    obj, mask = prepare_data(single_image, crop_size)
    normals = _normals(obj, mask)
    rng = np.random.default_rng(seed)
    images_pred, normals_pred = [], []
    for _, azimuth in VIEWS:
        a = np.radians(azimuth)
        shade = 0.75 + 0.25 * abs(np.cos(a))
        colour, m = _view(obj * shade + rng.integers(-3, 4, size=obj.shape), mask, azimuth)
        images_pred.append(_place(colour, m))
        rotated = np.stack(
            [normals[..., 0] * np.cos(a) + normals[..., 2] * np.sin(a), normals[..., 1],
             -normals[..., 0] * np.sin(a) + normals[..., 2] * np.cos(a)],
            axis=-1,
        )
        encoded, m = _view((rotated + 1.0) * 127.5, mask, azimuth)
        normals_pred.append(_place(encoded, m))

    record = {"image": list(single_image.size), "guidance_scale": guidance_scale, "steps": steps, "seed": seed,
              "crop_size": crop_size}
    print(f"RUN_PIPELINE {json.dumps(record)}", flush=True)
    return images_pred + normals_pred


# -------------------------------------------------------------------------
# The UI: components and bindings in the Space's order
# -------------------------------------------------------------------------
def _write_examples(folder):
    os.makedirs(folder, exist_ok=True)
    for i, colour in enumerate(((230, 80, 40), (60, 160, 90))):
        pixels = np.zeros((128, 128, 4), dtype=np.uint8)
        pixels[24:104, 40:88] = (*colour, 255)
        Image.fromarray(pixels, mode="RGBA").save(os.path.join(folder, f"example_{i}.png"))
    return folder


def build_app(example_folder):
    predictor, pipeline, cfg = None, None, None  # SAM, the diffusion pipeline and its config in the Space

    with gr.Blocks(title=_TITLE) as demo:
        with gr.Row():
            with gr.Column(scale=1):
                gr.Markdown("# " + _TITLE + " (mirror, test peer)")
        gr.Markdown("Generate consistent multi-view normals maps and color images.")
        with gr.Row(variant="panel"):
            with gr.Column(scale=1):
                input_image = gr.Image(type="pil", image_mode="RGBA", height=320, label="Input image", tool=None)

                example_fns = [os.path.join(example_folder, example) for example in sorted(os.listdir(example_folder))]
                gr.Examples(
                    examples=example_fns,
                    inputs=[input_image],
                    outputs=[input_image],
                    cache_examples=False,
                    label="Examples (click one of the images below to start)",
                    examples_per_page=30,
                )
            with gr.Column(scale=1):
                processed_image = gr.Image(
                    type="pil",
                    label="Processed Image",
                    interactive=False,
                    height=320,
                    tool=None,
                    image_mode="RGBA",
                    elem_id="disp_image",
                )
                processed_image_highres = gr.Image(type="pil", image_mode="RGBA", visible=False, tool=None)

                with gr.Accordion("Advanced options", open=True):
                    with gr.Row():
                        with gr.Column():
                            input_processing = gr.CheckboxGroup(
                                ["Background Removal"], label="Input Image Preprocessing", value=["Background Removal"]
                            )
                        with gr.Column():
                            gr.CheckboxGroup(["Background Removal"], label="Output Image Postprocessing", value=[])
                    with gr.Row():
                        with gr.Column():
                            scale_slider = gr.Slider(1, 10, value=3, step=1, label="Classifier Free Guidance Scale")
                        with gr.Column():
                            steps_slider = gr.Slider(15, 100, value=50, step=1, label="Number of Diffusion Inference Steps")
                    with gr.Row():
                        with gr.Column():
                            seed = gr.Number(42, label="Seed")
                        with gr.Column():
                            crop_size = gr.Number(192, label="Crop size")
                run_btn = gr.Button("Generate", variant="primary", interactive=True)
        with gr.Row():
            views = [gr.Image(interactive=False, height=240, show_label=False) for _ in range(6)]
        with gr.Row():
            normals = [gr.Image(interactive=False, height=240, show_label=False) for _ in range(6)]

        first_stage = run_btn.click(
            fn=partial(preprocess, predictor),
            inputs=[input_image, input_processing],
            outputs=[processed_image_highres, processed_image],
            queue=True,
        )
        first_stage.success(
            fn=partial(run_pipeline, pipeline, cfg),
            inputs=[processed_image_highres, scale_slider, steps_slider, seed, crop_size],
            outputs=views + normals,
        )
    return demo


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=7860)
    args = parser.parse_args()

    work = tempfile.mkdtemp(prefix="wonder3d_mirror_", dir=os.environ.get("GRADIO_TEMP_DIR"))
    os.chdir(work)
    demo = build_app(_write_examples(os.path.join(work, "example_images")))
    demo.queue()
    _serve(demo, args.port, max_threads=80)


if __name__ == "__main__":
    main()
