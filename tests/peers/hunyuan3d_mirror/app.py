"""A test peer whose Gradio API mirrors the tencent/Hunyuan3D-2 Space (`--layout live`) or the
Hunyuan3D-2.1 app (`--layout github`) exactly.

Both real apps mount Gradio at "/" of a FastAPI app that also serves their output folder at /static
(the HTML outputs are iframes pointing there) and run it with uvicorn; the mirror does the same.

## `--layout live`: the Space tencent/Hunyuan3D-2 (runs hg_app.py on sdk gradio 4.44.x)
Source read: hg_app.py of the Space as copied in github.com/menonpg/Hunyuan3D-2 @
db1c32fa30dcbf7652107683867ac4ce78eb4d80 (the latest copy found: outputs are DownloadButtons, the
functions take a gr.Request, queue(max_size=10), enable_t23d defaults to False). An earlier copy,
github.com/gocgodman/Hunyuan3D-2 hg_app.py @ 002ae29a, has the same 7 inputs but gr.File outputs,
gr.update(...) returns, enable_t23d=True (so also a `tab_gt.select` dependency) and queue(max_size=1).

| fn_index | api_name | inputs (component, default) | outputs |
|---|---|---|---|
| 0 | `load_example` (gr.Examples of image; show_api false) | Dataset | Image |
| 1 | `load_example_1` (gr.Examples of caption; show_api false) | Dataset | Textbox |
| 2 | `lambda` (tab_gi.select) | – | Tabs |
| 3 | `/shape_generation` | caption: Textbox("Text Prompt", default ""); image: Image("Image", type pil, image_mode RGBA, default None); steps: Slider(20..50, step 1, default 50, "Inference Steps"); guidance_scale: Number(default 5.5, "Guidance Scale"); seed: Slider(0..1e7, default 1234, "Seed"); octree_resolution: Dropdown([256, 384, 512], default 256, "Octree Resolution"); check_box_rembg: Checkbox(default True, "Remove Background") | DownloadButton("Download White Mesh") = white_mesh.glb, HTML (iframe of a model-viewer page) |
| 4 | `lambda_1` (.then) | – | DownloadButton |
| 5 | `/generation_all` | the same 7 | DownloadButton("Download White Mesh") = white_mesh.glb, DownloadButton("Download Textured Mesh") = textured_mesh.glb, HTML (white), HTML (textured) |
| 6 | `lambda_2` (.then) | – | DownloadButton, DownloadButton |

With no image it fails with gr.Error("Text to 3D is disable. Please enable it by `python
gradio_app.py --enable_t23d`."), as the Space does.

## `--layout github`: Hunyuan3D-2.1 gradio_app.py (13 inputs, the first a gr.State)
Source read: github.com/Tencent-Hunyuan/Hunyuan3D-2.1 gradio_app.py @ 8f7b4be (HEAD 5e3ec6d).
The Hunyuan3D-2 repo's own gradio_app.py (github.com/Tencent/Hunyuan3D-2 @ 2ee4770) has the same 13
slots but a Textbox caption instead of the State, a Text Prompt tab and more Examples.
MV_MODE and TURBO_MODE are off, texture generation on; MAX_SEED = 1e7.

| fn_index | api_name | inputs (component, default) | outputs |
|---|---|---|---|
| 0 | `load_example` (gr.Examples of image; show_api false) | Dataset | Image |
| 1 | `lambda` (tab_ip.select) | – | Tabs |
| 2 | `/shape_generation` | caption: **State(None)** (not in /info; send null); image: Image("Image", pil, RGBA); mv_image_front/back/left/right: Image("Front"/"Back"/"Left"/"Right", pil, RGBA); steps: Slider(1..100, step 1, default 30, "Inference Steps"); guidance_scale: Number(5.0, "Guidance Scale"); seed: Slider(0..1e7, step 1, default 1234, "Seed"); octree_resolution: Slider(16..512, default 256, "Octree Resolution"); check_box_rembg: Checkbox(True, "Remove Background"); num_chunks: Slider(1000..5000000, default 8000, "Number of Chunks"); randomize_seed: Checkbox(True, "Randomize seed") | File = white_mesh.glb, HTML, JSON("Mesh Stats"), Slider (the seed used) |
| 3, 4 | `lambda_1`, `lambda_2` (.then) | – | Checkbox, Checkbox, Button, DownloadButton / Tabs |
| 5 | `/generation_all` | the same 13 | File = white_mesh.obj (2.1 re-exports the face-reduced white mesh as OBJ), File = textured_mesh.glb, HTML, JSON, Slider |
| 6, 7 | `lambda_3`, `lambda_4` (.then) | – | as 3, 4 |
| 8 | `/on_gen_mode_change` | Radio | Slider |
| 9 | `/on_decode_mode_change` | Radio | Slider |
| 10 | `lambda_5` (confirm_export.click) | – | Tabs |
| 11 | `/on_export_click` | File, File, Dropdown(glb/obj/ply/stl), Checkbox, Checkbox, Slider | HTML, DownloadButton |

With neither image nor caption it fails with gr.Error("Please provide either a caption or an image.").

## What the mirror computes
"Background removal" (when check_box_rembg is set or the image is RGB, as in the apps) keys out the
colour of the image corners; the silhouette (alpha > 127) on a grid of octree_resolution/4 cells
(16..128) becomes a closed extruded solid whose two faces bulge by pixel darkness; the seed adds a
small deterministic ripple. white_mesh.glb carries geometry only (as the Space's white mesh);
textured_mesh.glb has UVs and the processed image as its PBR base-colour texture. Stats and the
seed are reported as the 2.1 app does. Every generation prints one line to stdout:

    GENERATE {"endpoint": "shape_generation", "image": [w, h], "steps": 30, …, "faces": N}

Test hooks that leave the API alone: an image (any of the image inputs) whose uploaded file name
contains `fail` raises gr.Error("mirror failure: …"); `slow` makes the call take about 10 s reporting
gr.Progress steps; env MIRROR_DELAY_S adds a delay to every generation; MIRROR_INSTANT=1 skips
every sleep.

Run (live, Gradio 6.31): GRADIO_ANALYTICS_ENABLED=False HF_HUB_OFFLINE=1 GRADIO_TEMP_DIR=$(mktemp -d) \
     /work/main/.venv/bin/python app.py --layout live --port 7864
Run (github, Gradio 4.44.1): … /tmp/venv-4.44.1/bin/python app.py --layout github --port 7865
"""

import argparse
import json
import os
import random
import shutil
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import gradio as gr
import numpy as np
import trimesh
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
    exit_with_parent as _exit_with_parent,
    key_out_background as _remove_background,
)


SAVE_DIR = "gradio_cache"  # made absolute in main(), like the Space's
HTML_OUTPUT_PLACEHOLDER = "<div style='height: 596px; width: 100%;'>No mesh here.</div>"
SUPPORTED_FORMATS = ["glb", "obj", "ply", "stl"]
MAX_SEED = int(1e7)
GITHUB_MODEL = {"shapegen": "tencent/Hunyuan3D-2.1/hunyuan3d-dit-v2-1", "texgen": "tencent/Hunyuan3D-2.1"}


# -------------------------------------------------------------------------
# Upload names: the apps' functions only see PIL images, so the mirror's hooks read the uploaded
# file name in a wrapper around each Image component's preprocess (config and API stay untouched).
# -------------------------------------------------------------------------

def _remember_upload_name(component):
    original = component.preprocess

    def preprocess(payload):
        value = original(payload)
        if isinstance(value, Image.Image):
            value.info["mirror_name"] = _payload_name(payload)
        return value

    component.preprocess = preprocess


def _hooks(images, progress):
    names = [img.info.get("mirror_name", "") for img in images if isinstance(img, Image.Image)]
    failing = [n for n in names if "fail" in n]
    if failing:
        raise gr.Error(f"mirror failure: {failing[0]} was asked to fail")
    _sleep(DELAY_S)
    if any("slow" in n for n in names) and not INSTANT:
        for _ in progress.tqdm(range(SLOW_STEPS), desc="generating shape"):
            time.sleep(SLOW_STEP_S)


# -------------------------------------------------------------------------
# Geometry: a closed solid extruded from the image silhouette (numpy only; trimesh without scipy)
# -------------------------------------------------------------------------
def _vertex_normals(vertices, faces):
    face_normals = np.cross(vertices[faces[:, 1]] - vertices[faces[:, 0]], vertices[faces[:, 2]] - vertices[faces[:, 0]])
    normals = np.zeros_like(vertices)
    for k in range(3):
        np.add.at(normals, faces[:, k], face_normals)
    return normals / np.maximum(np.linalg.norm(normals, axis=1, keepdims=True), 1e-12)


def _extrude(image, octree_resolution, seed):
    """Vertices, faces and per-vertex UVs of the silhouette solid."""
    n = int(min(max(int(octree_resolution) // 4, 16), 128))
    rgba = image.convert("RGBA")
    w, h = rgba.size
    scale = n / max(w, h)
    gw, gh = max(1, round(w * scale)), max(1, round(h * scale))
    small = np.asarray(rgba.resize((gw, gh), Image.BILINEAR)).astype(np.float32)
    inside = small[..., 3] > 127
    if not inside.any():
        inside[:] = True
    darkness = 1.0 - small[..., :3].mean(axis=-1) / 255.0
    ripple = np.random.default_rng(int(seed)).uniform(0, 0.01, size=inside.shape)
    thickness = np.where(inside, 0.04 + 0.12 * darkness + ripple, 0.0)

    # Corner heights: the thickest adjacent inside cell.
    padded = np.pad(thickness, 1)
    corner_t = np.maximum.reduce([padded[:-1, :-1], padded[:-1, 1:], padded[1:, :-1], padded[1:, 1:]])
    rows, cols = np.mgrid[0 : gh + 1, 0 : gw + 1]
    xy = np.stack([(cols - gw / 2) / n, (gh / 2 - rows) / n], axis=-1).reshape(-1, 2)
    t = corner_t.reshape(-1)
    count = len(t)
    vertices = np.concatenate([np.column_stack([xy, t]), np.column_stack([xy, -t])])
    uv = np.column_stack([cols.reshape(-1) / gw, 1.0 - rows.reshape(-1) / gh])
    uv = np.concatenate([uv, uv])

    r, c = np.nonzero(inside)
    tl, tr = r * (gw + 1) + c, r * (gw + 1) + c + 1
    bl, br = tl + (gw + 1), tr + (gw + 1)
    faces = [
        np.column_stack([tl, bl, br]),  # front (+z), counter-clockwise seen from +z
        np.column_stack([tl, br, tr]),
        np.column_stack([tl, br, bl]) + count,  # back (-z)
        np.column_stack([tl, tr, br]) + count,
    ]
    # Side walls where an inside cell borders an outside one; edges in counter-clockwise order.
    ins = np.pad(inside, 1)
    for (dr, dc), (p, q) in (
        ((0, -1), (tl, bl)),
        ((1, 0), (bl, br)),
        ((0, 1), (br, tr)),
        ((-1, 0), (tr, tl)),
    ):
        open_edge = ~ins[r + 1 + dr, c + 1 + dc]
        p, q = p[open_edge], q[open_edge]
        faces.append(np.column_stack([p, p + count, q + count]))
        faces.append(np.column_stack([p, q + count, q]))
    faces = np.concatenate(faces).astype(np.int64)

    used, faces = np.unique(faces, return_inverse=True)
    faces = faces.reshape(-1, 3)
    return vertices[used], faces, uv[used]


def _white_mesh(image, octree_resolution, seed):
    vertices, faces, uv = _extrude(image, octree_resolution, seed)
    mesh = trimesh.Trimesh(vertices=vertices, faces=faces, process=False)
    mesh.metadata["mirror_uv"] = uv
    return mesh


def _textured_mesh(mesh, image):
    """Stand-in for Hunyuan3D-Paint: UVs from the front projection, the image as base colour."""
    texture = Image.new("RGB", image.size, (255, 255, 255))
    texture.paste(image.convert("RGBA"), mask=image.convert("RGBA").split()[-1])
    texture.thumbnail((512, 512))
    material = trimesh.visual.material.PBRMaterial(
        baseColorTexture=texture, metallicFactor=0.0, roughnessFactor=1.0, name="mirror_texture"
    )
    return trimesh.Trimesh(
        vertices=mesh.vertices,
        faces=mesh.faces,
        vertex_normals=_vertex_normals(mesh.vertices, mesh.faces),
        visual=trimesh.visual.TextureVisuals(uv=mesh.metadata["mirror_uv"], material=material),
        process=False,
    )


def export_mesh(mesh, save_folder, textured=False, type="glb"):
    name = "textured_mesh" if textured else "white_mesh"
    path = os.path.join(save_folder, f"{name}.{type}")
    mesh.export(path, file_type=type)
    return path


def build_model_viewer_html(save_folder, height=596, width=700, textured=False, unique=False):
    """A model-viewer page next to the GLB, shown through an iframe under /static (as the apps do)."""
    glb = "textured_mesh.glb" if textured else "white_mesh.glb"
    stem = "textured_mesh" if textured else "white_mesh"
    html_name = f"{uuid.uuid4()}_{stem}.html" if unique else f"{stem}.html"
    output_html_path = os.path.join(save_folder, html_name)
    with open(output_html_path, "w", encoding="utf-8") as f:
        f.write(
            '<!DOCTYPE html><html><head><script type="module" '
            'src="https://ajax.googleapis.com/ajax/libs/model-viewer/3.1.1/model-viewer.min.js"></script>'
            f'</head><body><model-viewer style="height: {height - 10}px; width: {width}px;" src="./{glb}" '
            "auto-rotate camera-controls></model-viewer></body></html>"
        )
    rel_path = os.path.relpath(output_html_path, SAVE_DIR)
    iframe_tag = f'<iframe src="/static/{rel_path}" height="{height}" width="100%" frameborder="0"></iframe>'
    return f"<div style='height: {height}; width: 100%;'>{iframe_tag}</div>"


def _log(record):
    print(f"GENERATE {json.dumps(record, default=str)}", flush=True)


# -------------------------------------------------------------------------
# --layout live: hg_app.py of the Space (7 inputs)
# -------------------------------------------------------------------------
def _live_gen_shape(caption, image, steps, guidance_scale, seed, octree_resolution, check_box_rembg, req, progress):
    save_folder = os.path.join(SAVE_DIR, str(req.session_hash))
    os.makedirs(save_folder, exist_ok=True)
    if image is None:
        raise gr.Error("Text to 3D is disable. Please enable it by `python gradio_app.py --enable_t23d`.")
    _hooks([image], progress)
    image.save(os.path.join(save_folder, "input.png"))
    if check_box_rembg or image.mode == "RGB":
        image = _remove_background(image)
    image.save(os.path.join(save_folder, "rembg.png"))
    mesh = _white_mesh(image, octree_resolution, seed)
    return mesh, save_folder, image


def live_generation_all(
    caption, image, steps, guidance_scale, seed, octree_resolution, check_box_rembg, req: gr.Request,
    progress=gr.Progress(),
):
    size = list(image.size) if image is not None else None
    mesh, save_folder, image = _live_gen_shape(
        caption, image, steps, guidance_scale, seed, octree_resolution, check_box_rembg, req, progress
    )
    path = export_mesh(mesh, save_folder, textured=False)
    model_viewer_html = build_model_viewer_html(save_folder, unique=True)
    textured_mesh = _textured_mesh(mesh, image)
    path_textured = export_mesh(textured_mesh, save_folder, textured=True)
    model_viewer_html_textured = build_model_viewer_html(save_folder, textured=True, unique=True)
    _log({"endpoint": "generation_all", "caption": caption, "image": size, "steps": steps,
          "guidance_scale": guidance_scale, "seed": seed, "octree_resolution": octree_resolution,
          "check_box_rembg": check_box_rembg, "faces": len(mesh.faces)})
    return path, path_textured, model_viewer_html, model_viewer_html_textured


def live_shape_generation(
    caption, image, steps, guidance_scale, seed, octree_resolution, check_box_rembg, req: gr.Request,
    progress=gr.Progress(),
):
    size = list(image.size) if image is not None else None
    mesh, save_folder, image = _live_gen_shape(
        caption, image, steps, guidance_scale, seed, octree_resolution, check_box_rembg, req, progress
    )
    path = export_mesh(mesh, save_folder, textured=False)
    model_viewer_html = build_model_viewer_html(save_folder, unique=True)
    _log({"endpoint": "shape_generation", "caption": caption, "image": size, "steps": steps,
          "guidance_scale": guidance_scale, "seed": seed, "octree_resolution": octree_resolution,
          "check_box_rembg": check_box_rembg, "faces": len(mesh.faces)})
    return path, model_viewer_html


live_generation_all.__name__ = "generation_all"
live_shape_generation.__name__ = "shape_generation"


def build_live_app(example_is, example_ts):
    HAS_T2I = False  # the Space's --enable_t23d defaults to False
    HAS_TEXTUREGEN = True
    with gr.Blocks(title="Hunyuan-3D-2.0", analytics_enabled=False, delete_cache=(1000, 1000)) as demo:
        gr.HTML("<div>Hunyuan3D-2 mirror (test peer)</div>")

        with gr.Row():
            with gr.Column(scale=2):
                with gr.Tabs() as tabs_prompt:
                    with gr.Tab("Image Prompt", id="tab_img_prompt"):
                        image = gr.Image(label="Image", type="pil", image_mode="RGBA", height=290)
                        with gr.Row():
                            check_box_rembg = gr.Checkbox(value=True, label="Remove Background")
                    with gr.Tab("Text Prompt", id="tab_txt_prompt", visible=HAS_T2I):
                        caption = gr.Textbox(
                            label="Text Prompt",
                            placeholder="HunyuanDiT will be used to generate image.",
                            info="Example: A 3D model of a cute cat, white background",
                        )

                with gr.Accordion("Advanced Options", open=False):
                    num_steps = gr.Slider(maximum=50, minimum=20, value=50, step=1, label="Inference Steps")
                    octree_resolution = gr.Dropdown([256, 384, 512], value=256, label="Octree Resolution")
                    cfg_scale = gr.Number(value=5.5, label="Guidance Scale")
                    seed = gr.Slider(maximum=1e7, minimum=0, value=1234, label="Seed")

                with gr.Group():
                    btn = gr.Button(value="Generate Shape Only", variant="primary")
                    btn_all = gr.Button(value="Generate Shape and Texture", variant="primary", visible=HAS_TEXTUREGEN)

                with gr.Group():
                    file_out = gr.DownloadButton(label="Download White Mesh", interactive=False)
                    file_out2 = gr.DownloadButton(label="Download Textured Mesh", interactive=False)

            with gr.Column(scale=5):
                with gr.Tabs():
                    with gr.Tab("Generated Mesh"):
                        html_output1 = gr.HTML(HTML_OUTPUT_PLACEHOLDER, label="Output")
                    with gr.Tab("Generated Textured Mesh"):
                        html_output2 = gr.HTML(HTML_OUTPUT_PLACEHOLDER, label="Output")

            with gr.Column(scale=2):
                with gr.Tabs():
                    with gr.Tab("Image to 3D Gallery", id="tab_img_gallery") as tab_gi:
                        with gr.Row():
                            gr.Examples(examples=example_is, inputs=[image], label="Image Prompts", examples_per_page=18)
                    with gr.Tab("Text to 3D Gallery", id="tab_txt_gallery", visible=HAS_T2I):
                        with gr.Row():
                            gr.Examples(examples=example_ts, inputs=[caption], label="Text Prompts", examples_per_page=18)

        gr.HTML("<div><b>Warning: </b>Text to 3D is disable.</div>")

        tab_gi.select(fn=lambda: gr.update(selected="tab_img_prompt"), outputs=tabs_prompt)

        inputs = [caption, image, num_steps, cfg_scale, seed, octree_resolution, check_box_rembg]
        btn.click(live_shape_generation, inputs=inputs, outputs=[file_out, html_output1]).then(
            lambda: gr.Button(interactive=True),
            outputs=[file_out],
        )
        btn_all.click(
            live_generation_all, inputs=inputs, outputs=[file_out, file_out2, html_output1, html_output2]
        ).then(
            lambda: (gr.Button(interactive=True), gr.Button(interactive=True)),
            outputs=[file_out, file_out2],
        )

    _remember_upload_name(image)
    demo.queue(max_size=10)
    return demo


# -------------------------------------------------------------------------
# --layout github: Hunyuan3D-2.1 gradio_app.py (13 inputs, State first)
# -------------------------------------------------------------------------
def _github_gen_shape(
    caption, image, mv_image_front, mv_image_back, mv_image_left, mv_image_right, steps, guidance_scale,
    seed, octree_resolution, check_box_rembg, num_chunks, randomize_seed, progress,
):
    if image is None and caption is None:
        raise gr.Error("Please provide either a caption or an image.")
    _hooks([image, mv_image_front, mv_image_back, mv_image_left, mv_image_right], progress)
    if randomize_seed:
        seed = random.randint(0, MAX_SEED)
    seed = int(seed)
    octree_resolution = int(octree_resolution)
    save_folder = os.path.join(SAVE_DIR, str(uuid.uuid4()))
    os.makedirs(save_folder, exist_ok=True)
    stats = {
        "model": dict(GITHUB_MODEL),
        "params": {
            "caption": caption,
            "steps": steps,
            "guidance_scale": guidance_scale,
            "seed": seed,
            "octree_resolution": octree_resolution,
            "check_box_rembg": check_box_rembg,
            "num_chunks": num_chunks,
        },
    }
    time_meta = {}
    if image is None:
        raise gr.Error("Text to 3D is disable.             Please enable it by `python gradio_app.py --enable_t23d`.")
    if check_box_rembg or image.mode == "RGB":
        start_time = time.time()
        image = _remove_background(image)
        time_meta["remove background"] = time.time() - start_time
    start_time = time.time()
    mesh = _white_mesh(image, octree_resolution, seed)
    time_meta["shape generation"] = time.time() - start_time
    time_meta["export to trimesh"] = 0.0
    stats["number_of_faces"] = int(mesh.faces.shape[0])
    stats["number_of_vertices"] = int(mesh.vertices.shape[0])
    stats["time"] = time_meta
    return mesh, image, save_folder, stats, seed


def github_generation_all(
    caption=None, image=None, mv_image_front=None, mv_image_back=None, mv_image_left=None, mv_image_right=None,
    steps=50, guidance_scale=7.5, seed=1234, octree_resolution=256, check_box_rembg=False, num_chunks=200000,
    randomize_seed: bool = False, progress=gr.Progress(),
):
    start_time_0 = time.time()
    mesh, image, save_folder, stats, seed = _github_gen_shape(
        caption, image, mv_image_front, mv_image_back, mv_image_left, mv_image_right, steps, guidance_scale,
        seed, octree_resolution, check_box_rembg, num_chunks, randomize_seed, progress,
    )
    export_mesh(mesh, save_folder, textured=False)
    # 2.1 re-exports the face-reduced white mesh as OBJ and returns that path.
    path = export_mesh(mesh, save_folder, textured=False, type="obj")
    stats["time"]["face reduction"] = 0.0
    tmp_time = time.time()
    glb_path_textured = export_mesh(_textured_mesh(mesh, image), save_folder, textured=True)
    stats["time"]["texture generation"] = time.time() - tmp_time
    stats["time"]["convert textured OBJ to GLB"] = 0.0
    stats["time"]["total"] = time.time() - start_time_0
    model_viewer_html_textured = build_model_viewer_html(save_folder, height=650, width=500, textured=True)
    _log({"endpoint": "generation_all", **stats["params"], "randomize_seed": randomize_seed,
          "faces": stats["number_of_faces"]})
    return gr.update(value=path), gr.update(value=glb_path_textured), model_viewer_html_textured, stats, seed


def github_shape_generation(
    caption=None, image=None, mv_image_front=None, mv_image_back=None, mv_image_left=None, mv_image_right=None,
    steps=50, guidance_scale=7.5, seed=1234, octree_resolution=256, check_box_rembg=False, num_chunks=200000,
    randomize_seed: bool = False, progress=gr.Progress(),
):
    start_time_0 = time.time()
    mesh, image, save_folder, stats, seed = _github_gen_shape(
        caption, image, mv_image_front, mv_image_back, mv_image_left, mv_image_right, steps, guidance_scale,
        seed, octree_resolution, check_box_rembg, num_chunks, randomize_seed, progress,
    )
    stats["time"]["total"] = time.time() - start_time_0
    mesh.metadata["extras"] = stats
    path = export_mesh(mesh, save_folder, textured=False)
    model_viewer_html = build_model_viewer_html(save_folder, height=650, width=500)
    _log({"endpoint": "shape_generation", **stats["params"], "randomize_seed": randomize_seed,
          "faces": stats["number_of_faces"]})
    return gr.update(value=path), model_viewer_html, stats, seed


github_generation_all.__name__ = "generation_all"
github_shape_generation.__name__ = "shape_generation"


def on_gen_mode_change(value):
    if value == "Turbo":
        return gr.update(value=5)
    elif value == "Fast":
        return gr.update(value=10)
    return gr.update(value=30)


def on_decode_mode_change(value):
    if value == "Low":
        return gr.update(value=196)
    elif value == "Standard":
        return gr.update(value=256)
    return gr.update(value=384)


def on_export_click(file_out, file_out2, file_type, reduce_face, export_texture, target_face_num):
    if file_out is None:
        raise gr.Error("Please generate a mesh first.")
    source = file_out2 if export_texture else file_out
    mesh = trimesh.load(source, force="mesh", process=False)
    if file_type == "glb" and not export_texture:
        mesh = trimesh.Trimesh(vertices=mesh.vertices, faces=mesh.faces, process=False)
    save_folder = os.path.join(SAVE_DIR, str(uuid.uuid4()))
    os.makedirs(save_folder, exist_ok=True)
    path = export_mesh(mesh, save_folder, textured=export_texture, type=file_type)
    preview = os.path.join(SAVE_DIR, str(uuid.uuid4()))
    os.makedirs(preview, exist_ok=True)
    shutil.copy(source, os.path.join(preview, "textured_mesh.glb" if export_texture else "white_mesh.glb"))
    model_viewer_html = build_model_viewer_html(preview, height=650, width=500, textured=export_texture)
    return model_viewer_html, gr.update(value=path, interactive=True)


def build_github_app(example_is):
    MV_MODE, TURBO_MODE, HAS_TEXTUREGEN = False, False, True
    with gr.Blocks(title="Hunyuan-3D-2.1", analytics_enabled=False) as demo:
        gr.HTML("<div>Hunyuan-3D-2.1 mirror (test peer)</div>")

        with gr.Row():
            with gr.Column(scale=3):
                with gr.Tabs(selected="tab_img_prompt"):
                    with gr.Tab("Image Prompt", id="tab_img_prompt", visible=not MV_MODE) as tab_ip:
                        image = gr.Image(label="Image", type="pil", image_mode="RGBA", height=290)
                        caption = gr.State(None)
                    with gr.Tab("MultiView Prompt", visible=MV_MODE):
                        with gr.Row():
                            mv_image_front = gr.Image(label="Front", type="pil", image_mode="RGBA", height=140,
                                                      min_width=100, elem_classes="mv-image")
                            mv_image_back = gr.Image(label="Back", type="pil", image_mode="RGBA", height=140,
                                                     min_width=100, elem_classes="mv-image")
                        with gr.Row():
                            mv_image_left = gr.Image(label="Left", type="pil", image_mode="RGBA", height=140,
                                                     min_width=100, elem_classes="mv-image")
                            mv_image_right = gr.Image(label="Right", type="pil", image_mode="RGBA", height=140,
                                                      min_width=100, elem_classes="mv-image")

                with gr.Row():
                    btn = gr.Button(value="Gen Shape", variant="primary", min_width=100)
                    btn_all = gr.Button(value="Gen Textured Shape", variant="primary", visible=HAS_TEXTUREGEN,
                                        min_width=100)

                with gr.Group():
                    file_out = gr.File(label="File", visible=False)
                    file_out2 = gr.File(label="File", visible=False)

                with gr.Tabs(selected="tab_options" if TURBO_MODE else "tab_export"):
                    with gr.Tab("Options", id="tab_options", visible=TURBO_MODE):
                        gen_mode = gr.Radio(label="Generation Mode", choices=["Turbo", "Fast", "Standard"], value="Turbo")
                        decode_mode = gr.Radio(label="Decoding Mode", choices=["Low", "Standard", "High"],
                                               value="Standard")
                    with gr.Tab("Advanced Options", id="tab_advanced_options"):
                        with gr.Row():
                            check_box_rembg = gr.Checkbox(value=True, label="Remove Background", min_width=100)
                            randomize_seed = gr.Checkbox(label="Randomize seed", value=True, min_width=100)
                        seed = gr.Slider(label="Seed", minimum=0, maximum=1e7, step=1, value=1234, min_width=100)
                        with gr.Row():
                            num_steps = gr.Slider(maximum=100, minimum=1, value=30, step=1, label="Inference Steps")
                            octree_resolution = gr.Slider(maximum=512, minimum=16, value=256, label="Octree Resolution")
                        with gr.Row():
                            cfg_scale = gr.Number(value=5.0, label="Guidance Scale", min_width=100)
                            num_chunks = gr.Slider(maximum=5000000, minimum=1000, value=8000,
                                                   label="Number of Chunks", min_width=100)
                    with gr.Tab("Export", id="tab_export"):
                        with gr.Row():
                            file_type = gr.Dropdown(label="File Type", choices=SUPPORTED_FORMATS, value="glb",
                                                    min_width=100)
                            reduce_face = gr.Checkbox(label="Simplify Mesh", value=False, min_width=100)
                            export_texture = gr.Checkbox(label="Include Texture", value=False, visible=False,
                                                         min_width=100)
                        target_face_num = gr.Slider(maximum=1000000, minimum=100, value=10000, label="Target Face Number")
                        with gr.Row():
                            confirm_export = gr.Button(value="Transform", min_width=100)
                            file_export = gr.DownloadButton(label="Download", variant="primary", interactive=False,
                                                            min_width=100)

            with gr.Column(scale=6):
                with gr.Tabs(selected="gen_mesh_panel") as tabs_output:
                    with gr.Tab("Generated Mesh", id="gen_mesh_panel"):
                        html_gen_mesh = gr.HTML(HTML_OUTPUT_PLACEHOLDER, label="Output")
                    with gr.Tab("Exporting Mesh", id="export_mesh_panel"):
                        html_export_mesh = gr.HTML(HTML_OUTPUT_PLACEHOLDER, label="Output")
                    with gr.Tab("Mesh Statistic", id="stats_panel"):
                        stats = gr.Json({}, label="Mesh Stats")

            with gr.Column(scale=3 if MV_MODE else 2):
                with gr.Tabs(selected="tab_img_gallery") as gallery:
                    with gr.Tab("Image to 3D Gallery", id="tab_img_gallery", visible=not MV_MODE):
                        with gr.Row():
                            gr.Examples(examples=example_is, inputs=[image], label=None, examples_per_page=18)

        tab_ip.select(fn=lambda: gr.update(selected="tab_img_gallery"), outputs=gallery)

        inputs = [
            caption, image, mv_image_front, mv_image_back, mv_image_left, mv_image_right, num_steps, cfg_scale,
            seed, octree_resolution, check_box_rembg, num_chunks, randomize_seed,
        ]
        btn.click(github_shape_generation, inputs=inputs, outputs=[file_out, html_gen_mesh, stats, seed]).then(
            lambda: (gr.update(visible=False, value=False), gr.update(interactive=True), gr.update(interactive=True),
                     gr.update(interactive=False)),
            outputs=[export_texture, reduce_face, confirm_export, file_export],
        ).then(
            lambda: gr.update(selected="gen_mesh_panel"),
            outputs=[tabs_output],
        )

        btn_all.click(
            github_generation_all, inputs=inputs, outputs=[file_out, file_out2, html_gen_mesh, stats, seed]
        ).then(
            lambda: (gr.update(visible=True, value=True), gr.update(interactive=False), gr.update(interactive=True),
                     gr.update(interactive=False)),
            outputs=[export_texture, reduce_face, confirm_export, file_export],
        ).then(
            lambda: gr.update(selected="gen_mesh_panel"),
            outputs=[tabs_output],
        )

        gen_mode.change(on_gen_mode_change, inputs=[gen_mode], outputs=[num_steps])
        decode_mode.change(on_decode_mode_change, inputs=[decode_mode], outputs=[octree_resolution])
        confirm_export.click(
            lambda: gr.update(selected="export_mesh_panel"),
            outputs=[tabs_output],
        ).then(
            on_export_click,
            inputs=[file_out, file_out2, file_type, reduce_face, export_texture, target_face_num],
            outputs=[html_export_mesh, file_export],
        )

    for component in (image, mv_image_front, mv_image_back, mv_image_left, mv_image_right):
        _remember_upload_name(component)
    demo.queue()
    return demo


# -------------------------------------------------------------------------
# Serving: FastAPI with /static, Gradio mounted at "/", uvicorn (as both apps do)
# -------------------------------------------------------------------------
def _write_examples(root):
    os.makedirs(root, exist_ok=True)
    paths = []
    for i, colour in enumerate(((220, 60, 40), (40, 120, 220))):
        pixels = np.zeros((96, 96, 4), dtype=np.uint8)
        pixels[16:80, 24:72] = (*colour, 255)
        paths.append(os.path.join(root, f"example_{i}.png"))
        Image.fromarray(pixels, mode="RGBA").save(paths[-1])
    return paths


def main():
    global SAVE_DIR
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=7860)
    parser.add_argument("--layout", choices=["live", "github"], default="live")
    args = parser.parse_args()

    import uvicorn
    from fastapi import FastAPI
    from fastapi.staticfiles import StaticFiles

    work = tempfile.mkdtemp(prefix="hunyuan3d_mirror_", dir=os.environ.get("GRADIO_TEMP_DIR"))
    os.chdir(work)
    SAVE_DIR = os.path.join(work, "gradio_cache" if args.layout == "live" else "save_dir")
    os.makedirs(SAVE_DIR, exist_ok=True)
    example_is = _write_examples(os.path.join(work, "assets", "example_images"))
    if args.layout == "live":
        demo = build_live_app(example_is, ["A 3D model of a cute cat, white background"])
    else:
        demo = build_github_app(example_is)

    app = FastAPI()
    app.mount("/static", StaticFiles(directory=Path(SAVE_DIR).absolute(), html=args.layout == "github"), name="static")
    mount_kwargs = {"show_error": True}
    if int(gr.__version__.split(".")[0]) >= 5:
        mount_kwargs["ssr_mode"] = False
    app = gr.mount_gradio_app(app, demo, path="/", **mount_kwargs)

    threading.Thread(target=_exit_with_parent, daemon=True).start()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=args.port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started and thread.is_alive():
        time.sleep(0.1)
    if not thread.is_alive():
        sys.exit(1)
    print(f"MIRROR READY http://127.0.0.1:{args.port} layout={args.layout}", flush=True)
    try:
        thread.join()
    except KeyboardInterrupt:
        server.should_exit = True
    sys.exit(0)


if __name__ == "__main__":
    main()
