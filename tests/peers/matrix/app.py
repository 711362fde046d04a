"""The protocol-matrix test peer: ONE small Blocks app that starts unchanged on Gradio 3.50.2 (ws),
4.15.0 (sse_v1), 4.17.0 (sse_v2), 4.44.1 (sse_v3, routes at root) and 6.31.0 (sse_v3, /gradio_api).

fn_index layout (= position in /config `dependencies`; the same on all five versions, checked
with /config on each):

  fn  handler     inputs -> outputs                           api_name in /config
  0   process     Image(pil), Number, Checkbox -> Image, Text "process"
  1   double      Number -> Number (x*2)                      3.x null; 4.x false; 6.x "false" (*)
  2   with_state  State, Number -> State, Text "total=<sum>"  "accumulate"
  3   slow        Number n -> Text "step 0".."step n-1"       "slow" (generator + gr.Progress)
  4   Stop button, fn=None (no backend fn)                    3.x null; 4.15/4.17 "unnamed";
                                                              4.44 "unnamed"; 6.x "unnamed"
  5   Stop button's cancel dep, cancels=[3]                   3.x null; 4.15/4.17 "cancel";
                                                              4.44 "unnamed_1"; 6.x "unnamed_1"
  6   make_file   Text -> File (result.txt with the text)     "make_file"
  7   file_info   File -> Text "name=<b> size=<n> sha256=<h>" "file_info"

(*) 6.x has no boolean api_name any more: api_name=False becomes the string "false" with
    `api_visibility:"private"` (no `show_api` key). gradio_client refuses private / api_name=False
    endpoints (4.x and 6.x), but the server runs them by fn_index over /queue/join.
6.x dep 5 is `backend_fn:false, types.cancel:true, cancels:[3], queue:false` (as in 4.44); in
3.x-4.17 dep 5 has a backend fn (the cancel coroutine) that is called via /run/predict.

Behaviour: `process` and `slow` raise gr.Error("negative number not allowed") for n < 0. `process`
returns the input transposed (W,H -> H,W) and "size=(W, H) mode=RGB n=<n> flag=<flag>" (size of
the input). State is per session. `slow` sleeps MATRIX_STEP_S seconds per step (default 1.0, or
--step-s) and reports gr.Progress((i, n)) before each step (progress messages on 4.x/6.x; 3.50.2
sends them over its ws as well).

Run: GRADIO_ANALYTICS_ENABLED=False HF_HUB_OFFLINE=1 GRADIO_TEMP_DIR=$(mktemp -d) \
         <venv>/bin/python tests/peers/matrix/app.py --port 7861
Binds 127.0.0.1 only; queue on.
"""

import argparse
import hashlib
import os
import tempfile
import time

import gradio as gr
from PIL import Image

GRADIO_MAJOR = int(gr.__version__.split(".")[0])
STEP_S = float(os.environ.get("MATRIX_STEP_S") or 1.0)


def _check(n):
    if n is not None and n < 0:
        raise gr.Error("negative number not allowed")


def process(img, n, flag):
    _check(n)
    if img is None:
        raise gr.Error("no image")
    img = img.convert("RGB")
    text = f"size={img.size} mode={img.mode} n={n} flag={flag}"
    # Image.Transpose exists in Pillow >= 9.1; the venvs pin 10.4, the fallback is for old ones.
    transpose = getattr(getattr(Image, "Transpose", Image), "TRANSPOSE")
    return img.transpose(transpose), text


def double(x):
    return (x or 0) * 2


def with_state(total, x):
    total = (total or 0) + (x or 0)
    return total, f"total={total}"


def slow(n, progress=gr.Progress()):
    _check(n)
    n = int(n or 0)
    # gr.Info reaches the client as a {"msg": "log"} message (3.50.2 has it too).
    if hasattr(gr, "Info"):
        gr.Info(f"slow: {n} steps")
    for i in range(n):
        # gr.Progress exists in all five versions; 4.x/6.x send {"msg":"progress"} messages.
        progress((i, n), desc="slow", unit="steps")
        time.sleep(STEP_S)
        yield f"step {i}"


def make_file(text):
    path = os.path.join(tempfile.mkdtemp(prefix="matrix-"), "result.txt")
    with open(path, "w", encoding="utf-8") as f:
        f.write(text or "")
    return path


def file_info(f):
    if f is None:
        raise gr.Error("no file")
    # 3.x File(type="file") gives a tempfile wrapper with .name; 4.x/6.x (type="filepath") a str.
    path = f if isinstance(f, str) else getattr(f, "name", None) or f["name"]
    with open(path, "rb") as fh:
        data = fh.read()
    return f"name={os.path.basename(path)} size={len(data)} sha256={hashlib.sha256(data).hexdigest()}"


def build():
    # 4.x and 6.x: api_name=False hides fn 1 (4.x config: false; 6.x: "false" + private).
    # 3.x: api_name=None leaves it null (3.x does not derive names from the fn).
    unnamed = None if GRADIO_MAJOR < 4 else False
    # 3.x File defaults to type="file" (a tempfile wrapper) and has no "filepath"; 4.x+ has it.
    file_kwargs = {} if GRADIO_MAJOR < 4 else {"type": "filepath"}

    with gr.Blocks(analytics_enabled=False, title="spaceport matrix") as demo:
        with gr.Row():
            img_in = gr.Image(type="pil", image_mode="RGB", label="image")
            n_in = gr.Number(value=1, label="n")
            flag_in = gr.Checkbox(value=False, label="flag")
            img_out = gr.Image(label="transposed")
            info_out = gr.Textbox(label="info")
            process_btn = gr.Button("process")
        with gr.Row():
            x_in = gr.Number(value=1, label="x")
            x_out = gr.Number(label="x*2")
            double_btn = gr.Button("double")
        with gr.Row():
            total = gr.State(0)
            add_in = gr.Number(value=1, label="add")
            total_out = gr.Textbox(label="total")
            add_btn = gr.Button("accumulate")
        with gr.Row():
            steps_in = gr.Number(value=3, label="steps")
            steps_out = gr.Textbox(label="step")
            slow_btn = gr.Button("slow")
            stop_btn = gr.Button("stop")
        with gr.Row():
            text_in = gr.Textbox(value="hello", label="text")
            file_out = gr.File(label="result.txt")
            make_btn = gr.Button("make_file")
        with gr.Row():
            file_in = gr.File(label="file", **file_kwargs)
            file_info_out = gr.Textbox(label="file info")
            info_btn = gr.Button("file_info")

        # The registration order below IS the fn_index layout; do not reorder.
        process_btn.click(process, [img_in, n_in, flag_in], [img_out, info_out], api_name="process")  # 0
        double_btn.click(double, [x_in], [x_out], api_name=unnamed)  # 1
        add_btn.click(with_state, [total, add_in], [total, total_out], api_name="accumulate")  # 2
        slow_ev = slow_btn.click(slow, [steps_in], [steps_out], api_name="slow")  # 3
        # 4 (the fn=None click itself) and 5 (the cancel dependency Gradio adds for `cancels`).
        stop_btn.click(None, None, None, cancels=[slow_ev])
        make_btn.click(make_file, [text_in], [file_out], api_name="make_file")  # 6
        info_btn.click(file_info, [file_in], [file_info_out], api_name="file_info")  # 7

    if GRADIO_MAJOR < 4:
        # 3.x: one global pool of workers (default 1), so a running `slow` would block every other
        # fn; 4 workers keep it closer to 4.x/6.x, where the default limit of 1 is per event.
        demo.queue(concurrency_count=4)
    else:
        demo.queue()
    return demo


def main():
    global STEP_S
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, default=7860)
    parser.add_argument("--step-s", type=float, default=None, help="seconds per `slow` step (env MATRIX_STEP_S)")
    args = parser.parse_args()
    if args.step_s is not None:
        STEP_S = args.step_s
    build().launch(server_name="127.0.0.1", server_port=args.port, show_error=True)


if __name__ == "__main__":
    main()
