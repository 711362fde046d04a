"""A test peer whose Gradio API mirrors the yisol/IDM-VTON Space exactly.

Sources read: the Space's app.py (the ZeroGPU version: `@spaces.GPU def start_tryon`, manual mask
resized to 768x1024, crop returns `(human_img_orig, mask_gray)`) as kept unchanged in GitHub copies
of the Space (code-index file ids 29355754056 and 1659629856; the Space repo itself is not on
GitHub), identical in API to github.com/yisol/IDM-VTON gradio_demo/app.py @
12b6ddba6186f243ee84143c4e686c09e8c9b953. The GitHub demo differs only inside
start_tryon: it crops the manual mask like the photo and, with auto-crop, returns the original photo
with the grey mask pasted in as the second output.

Endpoint table of the real Space (dependencies in config order; fn_index = position; the
load_example names are what Gradio 4.17 gives gr.Examples, as seen on this mirror's /config):

| fn_index | api_name | inputs (component, default) | outputs |
|---|---|---|---|
| 0 | `load_example` (gr.Examples of the ImageEditor; show_api false) | Dataset | ImageEditor |
| 1 | `load_example_1` (gr.Examples of the garment Image; show_api false) | Dataset | Image |
| 2 | `/tryon` | dict: ImageEditor(sources upload, type pil, label "Human. Mask with pen or use auto-masking", value {background, layers, composite}, default None); garm_img: Image(label "Garment", sources upload, type pil, default None); garment_des: Textbox(placeholder "Description of garment ex) Short Sleeve Round Neck T-shirts", default ""); is_checked: Checkbox(label "Yes", info "Use auto-generated mask (Takes 5 seconds)", default True); is_checked_crop: Checkbox(label "Yes", info "Use auto-crop & resizing", default False); denoise_steps: Number(20..40, step 1, default 30, "Denoising Steps"); seed: Number(-1..2147483647, step 1, default 42, "Seed") | Image("Output"), Image("Masked image output") |

Sizes, as in the Space: the garment and the person are resized to 768x1024 (with auto-crop the
person is first cropped to the centred 3:4 box). The mask comes from an auto "upper body" parse when
is_checked, else from `layers[0]` of the ImageEditor value (non-black pixels), resized to 768x1024.
The masked image is the 768x1024 person with the mask area grey. Without auto-crop the result is
768x1024; with auto-crop the 768x1024 result is resized to the crop box and pasted into the
original photo, so the result has the ImageEditor background's size.

The mirror runs on Gradio 4.17.0 (protocol sse_v2). Its "auto mask" is the torso box (x 22-78 %,
y 20-68 %) restricted to pixels that differ from the photo's corner colour; its "try-on" blends the
garment into the mask with weight denoise_steps/40, the seed nudging the brightness. Every call
prints one machine-readable line to stdout:

    TRYON {"background": [w, h], "layers": 1, "garment": [w, h], "garment_des": "…", "is_checked": true,
           "is_checked_crop": false, "denoise_steps": 30, "seed": 42, "result": [w, h], "mask": [w, h]}

Test hooks that leave the API alone: an uploaded image (ImageEditor background or garment) whose
file name contains `fail`, or a garment description containing `fail`, raises
gr.Error("mirror failure: …"); `slow` in either makes the call take about 10 s reporting gr.Progress
steps; env MIRROR_DELAY_S adds a delay to every call; MIRROR_INSTANT=1 skips every sleep.

Run: GRADIO_ANALYTICS_ENABLED=False HF_HUB_OFFLINE=1 GRADIO_TEMP_DIR=$(mktemp -d) \
     /tmp/venv-4.17.0/bin/python app.py --port 7863
"""

import argparse
import json
import os
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


# -------------------------------------------------------------------------
# Upload names: the Space's function only sees PIL images, so the mirror's hooks read the uploaded
# file name in a wrapper around the components' preprocess (config and API stay untouched).
# -------------------------------------------------------------------------

def _tag(image, name):
    if isinstance(image, Image.Image):
        image.info["mirror_name"] = name
    return image


def _remember_upload_name(component, editor=False):
    original = component.preprocess

    def preprocess(payload):
        value = original(payload)
        if editor:
            if isinstance(value, dict) and payload is not None:
                _tag(value.get("background"), _payload_name(getattr(payload, "background", None)))
            return value
        return _tag(value, _payload_name(payload))

    component.preprocess = preprocess


def _name_of(image):
    return image.info.get("mirror_name", "") if isinstance(image, Image.Image) else ""


# -------------------------------------------------------------------------
# Try-on: the Space's size handling, with cheap pixel arithmetic where the models were
# -------------------------------------------------------------------------
def _binary_mask(pil_image, threshold=0):
    gray = np.asarray(pil_image.convert("L"))
    return Image.fromarray(((gray > threshold) * 255).astype(np.uint8))


def _auto_mask(human_img):
    """Stand-in for OpenPose + human parsing: the torso box minus background-coloured pixels."""
    rgb = np.asarray(human_img).astype(np.int16)
    h, w, _ = rgb.shape
    background = rgb[0, 0]
    differs = np.abs(rgb - background).sum(axis=-1) > 30
    box = np.zeros((h, w), dtype=bool)
    box[int(h * 0.20) : int(h * 0.68), int(w * 0.22) : int(w * 0.78)] = True
    mask = box & differs
    if not mask.any():
        mask = box
    return Image.fromarray((mask * 255).astype(np.uint8))


def start_tryon(
    dict, garm_img, garment_des, is_checked, is_checked_crop, denoise_steps, seed, progress=gr.Progress()
):
    names = [_name_of(dict["background"]), _name_of(garm_img), garment_des or ""]
    failing = [n for n in names if "fail" in n]
    if failing:
        raise gr.Error(f"mirror failure: {failing[0]} was asked to fail")

    garment_size = list(garm_img.size)
    garm_img = garm_img.convert("RGB").resize((768, 1024))
    human_img_orig = dict["background"].convert("RGB")

    if is_checked_crop:
        width, height = human_img_orig.size
        target_width = int(min(width, height * (3 / 4)))
        target_height = int(min(height, width * (4 / 3)))
        left = (width - target_width) / 2
        top = (height - target_height) / 2
        right = (width + target_width) / 2
        bottom = (height + target_height) / 2
        cropped_img = human_img_orig.crop((left, top, right, bottom))
        crop_size = cropped_img.size
        human_img = cropped_img.resize((768, 1024))
    else:
        human_img = human_img_orig.resize((768, 1024))

    if is_checked:
        mask = _auto_mask(human_img)
    else:
        mask = _binary_mask(dict["layers"][0].convert("RGB").resize((768, 1024)))

    m = (np.asarray(mask).astype(np.float32) / 255.0)[..., None]
    human = np.asarray(human_img).astype(np.float32)
    mask_gray = Image.fromarray((human * (1 - m) + 127.5 * m).round().astype(np.uint8))

    # The diffusion model's prompt is built the same way (a None description fails the same way).
    prompt = "model is wearing " + garment_des
    _sleep(DELAY_S)
    if any("slow" in n for n in names) and not INSTANT:
        for _ in progress.tqdm(range(SLOW_STEPS), desc="denoising"):
            time.sleep(SLOW_STEP_S)

    weight = min(max(float(denoise_steps) / 40.0, 0.0), 1.0)
    garment = np.clip(np.asarray(garm_img).astype(np.float32) + (int(seed) % 17) - 8, 0, 255)
    result = human * (1 - m * weight) + garment * (m * weight)
    images = [Image.fromarray(result.round().astype(np.uint8))]

    if is_checked_crop:
        out_img = images[0].resize(crop_size)
        human_img_orig.paste(out_img, (int(left), int(top)))
        outputs = (human_img_orig, mask_gray)
    else:
        outputs = (images[0], mask_gray)

    record = {
        "background": list(dict["background"].size),
        "layers": len(dict.get("layers") or []),
        "garment": garment_size,
        "garment_des": garment_des,
        "prompt": prompt,
        "is_checked": is_checked,
        "is_checked_crop": is_checked_crop,
        "denoise_steps": denoise_steps,
        "seed": seed,
        "result": list(outputs[0].size),
        "mask": list(outputs[1].size),
    }
    print(f"TRYON {json.dumps(record)}", flush=True)
    return outputs


# -------------------------------------------------------------------------
# Example assets: the Space ships photos under example/; the mirror draws small stand-ins
# -------------------------------------------------------------------------
def _write_examples(root):
    human_dir, cloth_dir = os.path.join(root, "human"), os.path.join(root, "cloth")
    os.makedirs(human_dir, exist_ok=True)
    os.makedirs(cloth_dir, exist_ok=True)
    rng = np.random.default_rng(0)
    humans, cloths = [], []
    for i in range(2):
        person = np.full((128, 96, 3), 210, dtype=np.uint8)
        person[16:120, 30:66] = rng.integers(40, 160, size=3)
        cloth = np.full((128, 96, 3), 255, dtype=np.uint8)
        cloth[16:112, 12:84] = rng.integers(0, 255, size=3)
        humans.append(os.path.join(human_dir, f"{i:05d}_00.jpg"))
        cloths.append(os.path.join(cloth_dir, f"{i:05d}_00.jpg"))
        Image.fromarray(person).save(humans[-1])
        Image.fromarray(cloth).save(cloths[-1])
    return humans, cloths


def build_app(human_list_path, garm_list_path):
    human_ex_list = [{"background": p, "layers": None, "composite": None} for p in human_list_path]

    image_blocks = gr.Blocks().queue()
    with image_blocks as demo:
        gr.Markdown("## IDM-VTON mirror (test peer)")
        gr.Markdown("Virtual try-on test peer: the Space's API, cheap pixel arithmetic inside.")
        with gr.Row():
            with gr.Column():
                imgs = gr.ImageEditor(
                    sources="upload", type="pil", label="Human. Mask with pen or use auto-masking", interactive=True
                )
                with gr.Row():
                    is_checked = gr.Checkbox(label="Yes", info="Use auto-generated mask (Takes 5 seconds)", value=True)
                with gr.Row():
                    is_checked_crop = gr.Checkbox(label="Yes", info="Use auto-crop & resizing", value=False)

                gr.Examples(inputs=imgs, examples_per_page=10, examples=human_ex_list)

            with gr.Column():
                garm_img = gr.Image(label="Garment", sources="upload", type="pil")
                with gr.Row(elem_id="prompt-container"):
                    with gr.Row():
                        prompt = gr.Textbox(
                            placeholder="Description of garment ex) Short Sleeve Round Neck T-shirts",
                            show_label=False,
                            elem_id="prompt",
                        )
                gr.Examples(inputs=garm_img, examples_per_page=8, examples=garm_list_path)
            with gr.Column():
                masked_img = gr.Image(label="Masked image output", elem_id="masked-img", show_share_button=False)
            with gr.Column():
                image_out = gr.Image(label="Output", elem_id="output-img", show_share_button=False)

        with gr.Column():
            try_button = gr.Button(value="Try-on")
            with gr.Accordion(label="Advanced Settings", open=False):
                with gr.Row():
                    denoise_steps = gr.Number(label="Denoising Steps", minimum=20, maximum=40, value=30, step=1)
                    seed = gr.Number(label="Seed", minimum=-1, maximum=2147483647, step=1, value=42)

        try_button.click(
            fn=start_tryon,
            inputs=[imgs, garm_img, prompt, is_checked, is_checked_crop, denoise_steps, seed],
            outputs=[image_out, masked_img],
            api_name="tryon",
        )

    _remember_upload_name(imgs, editor=True)
    _remember_upload_name(garm_img)
    return image_blocks


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=7860)
    args = parser.parse_args()

    work = tempfile.mkdtemp(prefix="idm_vton_mirror_", dir=os.environ.get("GRADIO_TEMP_DIR"))
    os.chdir(work)
    demo = build_app(*_write_examples(os.path.join(work, "example")))
    demo.queue()
    _serve(demo, args.port)


if __name__ == "__main__":
    main()
