#!/usr/bin/env python3
"""Writes the test images spaceport-onnx's tests use: smooth gradients plus noise (so resampling
differences show), in the modes and shapes VGGT meets: landscape and portrait RGB, RGBA with
partial transparency, greyscale, a tiny image (upscaled), and a JPEG.

usage: make_test_images.py OUT_DIR
"""

import os
import sys

import numpy as np
from PIL import Image


def scene(w: int, h: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    r = 127 + 120 * np.sin(x / 23.0 + seed)
    g = 127 + 120 * np.cos(y / 17.0 - seed)
    b = 255 * (x + y) / (w + h)
    img = np.stack([r, g, b], axis=-1) + rng.normal(0, 12, (h, w, 3))
    img[h // 3 : h // 2, w // 4 : w // 2] = [250, 250, 250]  # a white patch (white-background mask)
    img[h // 2 : h // 2 + 10, : w // 5] = [3, 3, 3]  # a black bar (black-background mask)
    return np.clip(img, 0, 255).astype(np.uint8)


def main() -> None:
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    Image.fromarray(scene(640, 480, 1)).save(os.path.join(out, "a_landscape.png"))
    Image.fromarray(scene(300, 533, 2)).save(os.path.join(out, "b_portrait.png"))
    rgba = np.dstack([scene(400, 300, 3), np.tile(np.linspace(0, 255, 400).astype(np.uint8), (300, 1))])
    Image.fromarray(rgba, "RGBA").save(os.path.join(out, "c_rgba.png"))
    Image.fromarray(scene(350, 350, 4)[..., 0], "L").save(os.path.join(out, "d_grey.png"))
    Image.fromarray(scene(97, 61, 5)).save(os.path.join(out, "e_tiny.png"))
    Image.fromarray(scene(800, 600, 6)).save(os.path.join(out, "f_photo.jpg"), quality=90)
    Image.fromarray(scene(1037, 518, 7)).save(os.path.join(out, "g_wide.png"))


if __name__ == "__main__":
    main()
