"""What the Space mirrors under tests/peers/ share: their test hooks (delays, the slow path's
steps), the name of an uploaded file, and a watchdog that ends the server with the process that
started it. Imported by each mirror from the folder above it; runs under every Gradio venv
(plain Python, no Gradio import).
"""

import os
import time

# MIRROR_INSTANT=1 skips every sleep; MIRROR_DELAY_S adds a delay to every call that does work.
INSTANT = os.environ.get("MIRROR_INSTANT") == "1"
DELAY_S = float(os.environ.get("MIRROR_DELAY_S") or 0)
# The `slow` hook: this many gr.Progress steps of this many seconds (about 10 s in all).
SLOW_STEPS = 20
SLOW_STEP_S = 0.5


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


def exit_with_parent():
    """Test harnesses that never run their teardown (a static, a killed test) leave no server."""
    parent = os.getppid()
    while True:
        time.sleep(1)
        if os.getppid() != parent:
            os._exit(0)
