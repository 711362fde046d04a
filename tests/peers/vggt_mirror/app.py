"""A test peer whose Gradio API mirrors the facebook/vggt Space exactly.

Same components, same event bindings in the same order (so the same api_names, fn_index values,
inputs and outputs) as the Space's demo_gradio.py; the model is replaced by a cheap GLB built from
the uploaded pixels with trimesh. The log output echoes what the Space received, machine-readably:

    SETTINGS {"target_dir": …, "conf_thres": …, …}   (the arguments by name, in argument order)
    ARGS ["input_images_…", 50, "All", …]            (the same values as a positional list)
    IMAGES a.png,b.png                                (the files, in the order they were processed)

Test hooks that leave the API alone: an image whose name contains `slow` makes /gradio_demo take
about 10 s reporting gr.Progress steps; one containing `fail` raises gr.Error("mirror failure: …");
one containing `quota` is refused with ZeroGPU's quota text ("Try again in 0:00:02") until
MIRROR_QUOTA_WAIT_S after the first such call; env MIRROR_DELAY_S adds a delay to every
/gradio_demo call; MIRROR_INSTANT=1 skips every sleep; MIRROR_QUEUE_MAX sizes the queue and
MIRROR_CONCURRENCY how many reconstructions run at once; each logs `INFLIGHT n` as it starts.

Run: GRADIO_ANALYTICS_ENABLED=False HF_HUB_OFFLINE=1 GRADIO_TEMP_DIR=… python app.py --port 7861
"""

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from datetime import datetime

import gradio as gr
import numpy as np
import trimesh
from PIL import Image

# The hooks and watchdog every mirror shares (tests/peers/mirror_support.py).
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from mirror_support import (  # noqa: E402
    DELAY_S,
    INSTANT,
    CONCURRENCY,
    QUEUE_MAX,
    counted,
    SLOW_STEPS,
    SLOW_STEP_S,
    quota_refusal,
    sleep as _sleep,
    serve as _serve,
)

POINTS_PER_IMAGE = 4096


# -------------------------------------------------------------------------
# Uploads: a new target_dir with an images/ folder, as the Space does
# -------------------------------------------------------------------------
def handle_uploads(input_video, input_images):
    timestamp = datetime.now().strftime("%Y%m%d_%H%M%S_%f")
    target_dir = f"input_images_{timestamp}"
    target_dir_images = os.path.join(target_dir, "images")
    if os.path.exists(target_dir):
        shutil.rmtree(target_dir)
    os.makedirs(target_dir)
    os.makedirs(target_dir_images)

    image_paths = []
    if input_images is not None:
        for file_data in input_images:
            if isinstance(file_data, dict) and "name" in file_data:
                file_path = file_data["name"]
            else:
                file_path = file_data
            dst_path = os.path.join(target_dir_images, os.path.basename(file_path))
            shutil.copy(file_path, dst_path)
            image_paths.append(dst_path)

    if input_video is not None:
        # The Space extracts one frame a second with OpenCV; the mirror has no decoder and keeps
        # the video file itself so the folder is not empty.
        video_path = input_video["name"] if isinstance(input_video, dict) else input_video
        dst_path = os.path.join(target_dir_images, os.path.basename(video_path))
        shutil.copy(video_path, dst_path)

    image_paths = sorted(image_paths)
    return target_dir, image_paths


def update_gallery_on_upload(input_video, input_images):
    if not input_video and not input_images:
        return None, None, None, None
    target_dir, image_paths = handle_uploads(input_video, input_images)
    return None, target_dir, image_paths, "Upload complete. Click 'Reconstruct' to begin 3D processing."


# -------------------------------------------------------------------------
# Reconstruction: a coloured point cloud per image (one layer each) plus camera frusta
# -------------------------------------------------------------------------
def _frustum(index, count):
    """A small pyramid (apex at the camera centre) looking at the origin, as a mesh."""
    angle = 2 * np.pi * index / max(count, 1)
    centre = np.array([np.sin(angle) * 2.5, 0.0, np.cos(angle) * 2.5])
    forward = -centre / np.linalg.norm(centre)
    right = np.cross([0.0, 1.0, 0.0], forward)
    right /= np.linalg.norm(right)
    up = np.cross(forward, right)
    base = centre + forward * 0.4
    corners = [base + (sx * right * 0.2) + (sy * up * 0.15) for sx, sy in ((-1, -1), (1, -1), (1, 1), (-1, 1))]
    vertices = np.array([centre, *corners])
    faces = np.array([[0, 1, 2], [0, 2, 3], [0, 3, 4], [0, 4, 1], [1, 3, 2], [1, 4, 3]])
    # Vertex colours: trimesh converts face colours with scipy, which the test venv does not have.
    colors = np.tile([255, 64, 64, 255], (len(vertices), 1)).astype(np.uint8)
    return trimesh.Trimesh(vertices=vertices, faces=faces, vertex_colors=colors, process=False)


def _points(path, layer, mask_black_bg, mask_white_bg, conf_thres):
    """Pixels of one image as coloured points on the plane z = layer."""
    with Image.open(path) as img:
        rgb = np.asarray(img.convert("RGB").resize((64, 64)), dtype=np.uint8)
    h, w, _ = rgb.shape
    ys, xs = np.mgrid[0:h, 0:w]
    xyz = np.stack([xs / w - 0.5, 0.5 - ys / h, np.full(xs.shape, layer * 0.1)], axis=-1).reshape(-1, 3)
    colors = rgb.reshape(-1, 3)
    keep = np.ones(len(colors), dtype=bool)
    if mask_black_bg:
        keep &= colors.sum(axis=1) >= 16
    if mask_white_bg:
        keep &= ~((colors > 240).all(axis=1))
    # The Space drops the conf_thres percent least confident points; brightness stands in.
    brightness = colors.sum(axis=1)
    if conf_thres and conf_thres > 0 and keep.any():
        keep &= brightness >= np.percentile(brightness[keep], min(float(conf_thres), 99.0))
    if not keep.any():
        keep[0] = True
    xyz, colors = xyz[keep][:POINTS_PER_IMAGE], colors[keep][:POINTS_PER_IMAGE]
    rgba = np.concatenate([colors, np.full((len(colors), 1), 255, dtype=np.uint8)], axis=1)
    return trimesh.PointCloud(vertices=xyz, colors=rgba)


@counted
def gradio_demo(
    target_dir,
    conf_thres=3.0,
    frame_filter="All",
    mask_black_bg=False,
    mask_white_bg=False,
    show_cam=True,
    mask_sky=False,
    prediction_mode="Pointmap Regression",
    progress=gr.Progress(),
):
    if not target_dir or target_dir == "None" or not os.path.isdir(target_dir):
        return None, "No valid target directory found. Please upload first.", None

    settings = {
        "target_dir": target_dir,
        "conf_thres": conf_thres,
        "frame_filter": frame_filter,
        "mask_black_bg": mask_black_bg,
        "mask_white_bg": mask_white_bg,
        "show_cam": show_cam,
        "mask_sky": mask_sky,
        "prediction_mode": prediction_mode,
    }
    target_dir_images = os.path.join(target_dir, "images")
    names = sorted(os.listdir(target_dir_images)) if os.path.isdir(target_dir_images) else []
    if not names:
        raise gr.Error("No images found. Check your upload.")
    failing = [n for n in names if "fail" in n]
    if failing:
        raise gr.Error(f"mirror failure: {failing[0]} was asked to fail")
    refusal = quota_refusal(names)
    if refusal:
        # As ZeroGPU refuses a call when the caller's GPU minutes are spent.
        raise gr.Error(refusal, title="ZeroGPU quota exceeded")

    # Not in the Space: a log line (gr.Info reaches clients as a {"msg": "log"} message), so the
    # run's `logs` can be tested.
    gr.Info(f"mirror: reconstructing {len(names)} frames")
    _sleep(DELAY_S)
    if any("slow" in n for n in names) and not INSTANT:
        for _ in progress.tqdm(range(SLOW_STEPS), desc="reconstructing"):
            time.sleep(SLOW_STEP_S)

    scene = trimesh.Scene()
    for layer, name in enumerate(names):
        cloud = _points(os.path.join(target_dir_images, name), layer, mask_black_bg, mask_white_bg, conf_thres)
        scene.add_geometry(cloud, node_name=f"points_{layer}", geom_name=f"points_{layer}")
        if show_cam:
            scene.add_geometry(_frustum(layer, len(names)), node_name=f"camera_{layer}", geom_name=f"camera_{layer}")

    if frame_filter is None:
        frame_filter = "All"
    glbfile = os.path.join(
        target_dir,
        f"glbscene_{conf_thres}_{frame_filter.replace('.', '_').replace(':', '').replace(' ', '_')}_maskb{mask_black_bg}_maskw{mask_white_bg}_cam{show_cam}_sky{mask_sky}_pred{str(prediction_mode).replace(' ', '_')}.glb",
    )
    scene.export(file_obj=glbfile, file_type="glb")

    choices = ["All"] + [f"{i}: {n}" for i, n in enumerate(names)]
    log_msg = (
        f"Reconstruction Success ({len(names)} frames). Waiting for visualization.\n\n"
        f"SETTINGS {json.dumps(settings)}\n\n"
        f"ARGS {json.dumps(list(settings.values()))}\n\n"
        f"IMAGES {','.join(names)}"
    )
    return glbfile, log_msg, gr.Dropdown(choices=choices, value=frame_filter, interactive=True)


def clear_fields():
    return None


def update_log():
    return "Loading and Reconstructing..."


def update_visualization(
    target_dir, conf_thres, frame_filter, mask_black_bg, mask_white_bg, show_cam, mask_sky, prediction_mode, is_example
):
    if is_example == "True":
        return None, "No reconstruction available. Please click the Reconstruct button first."
    if not target_dir or target_dir == "None" or not os.path.isdir(target_dir):
        return None, "No reconstruction available. Please click the Reconstruct button first."
    glbs = sorted(f for f in os.listdir(target_dir) if f.endswith(".glb"))
    if not glbs:
        return None, f"No reconstruction available at {target_dir}. Please run 'Reconstruct' first."
    return os.path.join(target_dir, glbs[-1]), "Updating Visualization"


def example_pipeline(
    input_video,
    num_images_str,
    input_images,
    conf_thres,
    mask_black_bg,
    mask_white_bg,
    show_cam,
    mask_sky,
    prediction_mode,
    is_example_str,
):
    target_dir, image_paths = handle_uploads(input_video, input_images)
    glbfile, log_msg, dropdown = gradio_demo(
        target_dir, conf_thres, "All", mask_black_bg, mask_white_bg, show_cam, mask_sky, prediction_mode
    )
    return glbfile, log_msg, target_dir, dropdown, image_paths


# -------------------------------------------------------------------------
# The UI: components and bindings in the Space's order
# -------------------------------------------------------------------------
with gr.Blocks() as demo:
    is_example = gr.Textbox(label="is_example", visible=False, value="None")
    num_images = gr.Textbox(label="num_images", visible=False, value="None")

    gr.HTML("<h1>VGGT mirror (test peer)</h1>")

    target_dir_output = gr.Textbox(label="Target Dir", visible=False, value="None")

    with gr.Row():
        with gr.Column(scale=2):
            input_video = gr.Video(label="Upload Video", interactive=True)
            input_images = gr.File(file_count="multiple", label="Upload Images", interactive=True)
            image_gallery = gr.Gallery(label="Preview", columns=4, height="300px", object_fit="contain", preview=True)

        with gr.Column(scale=4):
            with gr.Column():
                gr.Markdown("**3D Reconstruction (Point Cloud and Camera Poses)**")
                log_output = gr.Markdown("Please upload a video or images, then click Reconstruct.")
                reconstruction_output = gr.Model3D(height=520, zoom_speed=0.5, pan_speed=0.5)

            with gr.Row():
                submit_btn = gr.Button("Reconstruct", scale=1, variant="primary")
                clear_btn = gr.ClearButton(
                    [input_video, input_images, reconstruction_output, log_output, target_dir_output, image_gallery],
                    scale=1,
                )

            with gr.Row():
                prediction_mode = gr.Radio(
                    ["Depthmap and Camera Branch", "Pointmap Branch"],
                    label="Select a Prediction Mode",
                    value="Depthmap and Camera Branch",
                    scale=1,
                )

            with gr.Row():
                conf_thres = gr.Slider(minimum=0, maximum=100, value=50, step=0.1, label="Confidence Threshold (%)")
                frame_filter = gr.Dropdown(choices=["All"], value="All", label="Show Points from Frame")
                with gr.Column():
                    show_cam = gr.Checkbox(label="Show Camera", value=True)
                    mask_sky = gr.Checkbox(label="Filter Sky", value=False)
                    mask_black_bg = gr.Checkbox(label="Filter Black Background", value=False)
                    mask_white_bg = gr.Checkbox(label="Filter White Background", value=False)

    gr.Markdown("Click any row to load an example.")
    gr.Examples(
        # The Space lists seven example videos; the mirror ships none, so one row of settings only.
        examples=[[None, "1", None, 20.0, False, False, True, False, "Depthmap and Camera Branch", "True"]],
        inputs=[
            input_video,
            num_images,
            input_images,
            conf_thres,
            mask_black_bg,
            mask_white_bg,
            show_cam,
            mask_sky,
            prediction_mode,
            is_example,
        ],
        outputs=[reconstruction_output, log_output, target_dir_output, frame_filter, image_gallery],
        fn=example_pipeline,
        cache_examples=False,
        examples_per_page=50,
    )

    submit_btn.click(fn=clear_fields, inputs=[], outputs=[reconstruction_output]).then(
        fn=update_log, inputs=[], outputs=[log_output]
    ).then(
        fn=gradio_demo,
        inputs=[
            target_dir_output,
            conf_thres,
            frame_filter,
            mask_black_bg,
            mask_white_bg,
            show_cam,
            mask_sky,
            prediction_mode,
        ],
        outputs=[reconstruction_output, log_output, frame_filter],
    ).then(fn=lambda: "False", inputs=[], outputs=[is_example])

    viz_inputs = [
        target_dir_output,
        conf_thres,
        frame_filter,
        mask_black_bg,
        mask_white_bg,
        show_cam,
        mask_sky,
        prediction_mode,
        is_example,
    ]
    for control in (conf_thres, frame_filter, mask_black_bg, mask_white_bg, show_cam, mask_sky, prediction_mode):
        control.change(update_visualization, viz_inputs, [reconstruction_output, log_output])

    input_video.change(
        fn=update_gallery_on_upload,
        inputs=[input_video, input_images],
        outputs=[reconstruction_output, target_dir_output, image_gallery, log_output],
    )
    input_images.change(
        fn=update_gallery_on_upload,
        inputs=[input_video, input_images],
        outputs=[reconstruction_output, target_dir_output, image_gallery, log_output],
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=7860)
    args = parser.parse_args()

    # target_dir is relative to the working directory, as on the Space; keep it in a fresh folder.
    work = tempfile.mkdtemp(prefix="vggt_mirror_", dir=os.environ.get("GRADIO_TEMP_DIR"))
    os.chdir(work)
    demo.queue(max_size=QUEUE_MAX, default_concurrency_limit=CONCURRENCY)
    _serve(demo, args.port)


if __name__ == "__main__":
    main()
