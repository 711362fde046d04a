#!/usr/bin/env python3
"""Reference for spaceport-onnx's pre-processing: VGGT's `load_and_preprocess_images` re-computed
with PIL and numpy (torch is not installed here; `ToTensor` is `uint8 / 255` in float32 and
`F.pad(value=1.0)` is white padding, so numpy gives the same values).

usage: vggt_preprocess.py {pad,crop} OUT.npy IMAGE...   (images in the order given)
"""

import sys

import numpy as np
from PIL import Image

TARGET = 518


def load(path: str, mode: str) -> np.ndarray:
    img = Image.open(path)
    if img.mode == "RGBA":
        background = Image.new("RGBA", img.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, img)
    img = img.convert("RGB")
    width, height = img.size
    if mode == "pad":
        if width >= height:
            new_width = TARGET
            new_height = round(height * (new_width / width) / 14) * 14
        else:
            new_height = TARGET
            new_width = round(width * (new_height / height) / 14) * 14
    else:
        new_width = TARGET
        new_height = round(height * (new_width / width) / 14) * 14
    img = img.resize((new_width, new_height), Image.Resampling.BICUBIC)
    arr = np.asarray(img, dtype=np.uint8).astype(np.float32).transpose(2, 0, 1) / np.float32(255.0)
    if mode == "crop" and new_height > TARGET:
        start_y = (new_height - TARGET) // 2
        arr = arr[:, start_y : start_y + TARGET, :]
    if mode == "pad":
        h_pad = TARGET - arr.shape[1]
        w_pad = TARGET - arr.shape[2]
        if h_pad > 0 or w_pad > 0:
            top, left = h_pad // 2, w_pad // 2
            arr = np.pad(arr, ((0, 0), (top, h_pad - top), (left, w_pad - left)), constant_values=1.0)
    return arr


def main() -> None:
    mode, out, paths = sys.argv[1], sys.argv[2], sys.argv[3:]
    frames = [load(p, mode) for p in paths]
    max_h = max(f.shape[1] for f in frames)
    max_w = max(f.shape[2] for f in frames)
    padded = []
    for f in frames:
        h_pad, w_pad = max_h - f.shape[1], max_w - f.shape[2]
        top, left = h_pad // 2, w_pad // 2
        padded.append(np.pad(f, ((0, 0), (top, h_pad - top), (left, w_pad - left)), constant_values=1.0))
    np.save(out, np.stack(padded).astype(np.float32))


if __name__ == "__main__":
    main()
