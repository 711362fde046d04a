"""What the Space mirrors under tests/peers/ share: their test hooks (delays, the slow path's
steps), the name of an uploaded file, and a watchdog that ends the server with the process that
started it, a stand-in background remover. Imported by each mirror from the folder above it; runs
under every Gradio venv (no Gradio import; numpy and PIL, which every Gradio brings, only where
used).
"""

import functools
import os
import threading
import time

# MIRROR_INSTANT=1 skips every sleep; MIRROR_DELAY_S adds a delay to every call that does work;
# MIRROR_QUEUE_MAX sizes the Gradio queue (a full one answers 503 "Queue is full").
INSTANT = os.environ.get("MIRROR_INSTANT") == "1"
DELAY_S = float(os.environ.get("MIRROR_DELAY_S") or 0)
# The `slow` hook: this many gr.Progress steps of this many seconds (about 10 s in all).
SLOW_STEPS = 20
SLOW_STEP_S = 0.5
QUEUE_MAX = int(os.environ.get("MIRROR_QUEUE_MAX") or 20)
# MIRROR_CONCURRENCY: how many calls of one endpoint the Space runs at once (Gradio's default 1).
CONCURRENCY = int(os.environ.get("MIRROR_CONCURRENCY") or 1)


# The `quota` hook: the first call with such a file starts a ZeroGPU-style quota that frees this
# many seconds later (MIRROR_QUOTA_WAIT_S); every call before then is refused with ZeroGPU's text.
QUOTA_WAIT_S = float(os.environ.get("MIRROR_QUOTA_WAIT_S") or 2)
_quota_free_at = None


def quota_refusal(names):
    """ZeroGPU's refusal text while the quota the `quota` hook started is spent, else None."""
    global _quota_free_at
    if not any("quota" in n for n in names):
        return None
    now = time.time()
    if _quota_free_at is None:
        _quota_free_at = now + QUOTA_WAIT_S
    left = _quota_free_at - now
    if left <= 0:
        return None
    secs = int(left + 0.999)
    return (
        f"You have exceeded your GPU quota (60s requested vs. 0s left). "
        f"Try again in {secs // 3600}:{secs // 60 % 60:02d}:{secs % 60:02d}"
    )


_inflight = 0
_inflight_lock = threading.Lock()


def counted(fn):
    """Logs `INFLIGHT n` as each call of `fn` starts (n counting itself), so tests can prove how
    many jobs the Space ran at once. Keeps fn's signature, which Gradio reads."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        global _inflight
        with _inflight_lock:
            _inflight += 1
            print(f"INFLIGHT {_inflight}", flush=True)
        try:
            return fn(*args, **kwargs)
        finally:
            with _inflight_lock:
                _inflight -= 1

    return wrapper


def sleep(seconds):
    if not INSTANT and seconds > 0:
        time.sleep(seconds)


def payload_name(payload):
    """The file name(s) an uploaded payload (FileData, or a 3.x path) carries, for the hooks."""
    if payload is None or isinstance(payload, str):
        return os.path.basename(payload or "")
    names = [getattr(payload, "orig_name", None), getattr(payload, "path", None)]
    names = [os.path.basename(str(n)) for n in names if n]
    return " ".join(dict.fromkeys(names))


def key_out_background(image):
    """Stand-in for a background remover (rembg, BiRefNet): pixels close to the mean colour of
    the image's corners become transparent; the rest keep their colour, opaque. RGBA out."""
    import numpy as np
    from PIL import Image

    rgb = np.asarray(image.convert("RGB")).astype(np.int16)
    corners = np.array([rgb[0, 0], rgb[0, -1], rgb[-1, 0], rgb[-1, -1]]).mean(axis=0)
    alpha = np.where(np.abs(rgb - corners).sum(axis=-1) > 40, 255, 0).astype(np.uint8)
    return Image.fromarray(np.dstack([rgb.astype(np.uint8), alpha]), mode="RGBA")


def serve(demo, port, **launch):
    """Launches a mirror's Blocks on 127.0.0.1:`port` (its queue already set), says it is ready,
    and serves until killed or its parent (the test) is gone. `launch` adds Gradio launch
    options (`max_threads` …)."""
    import sys

    threading.Thread(target=exit_with_parent, daemon=True).start()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, show_error=True, **launch)
    print(f"MIRROR READY http://127.0.0.1:{port}", flush=True)
    try:
        demo.block_thread()
    except KeyboardInterrupt:
        pass
    sys.exit(0)


def exit_with_parent():
    """Test harnesses that never run their teardown (a static, a killed test) leave no server."""
    parent = os.getppid()
    while True:
        time.sleep(1)
        if os.getppid() != parent:
            os._exit(0)
