#!/usr/bin/env python3
"""Checks a predictions.npz written by spaceport-onnx against what VGGT's demo saves: every key,
shape and dtype; then re-derives the cameras from pose_enc and world_points_from_depth by
unprojection with VGGT's own formulas (numpy ports of `pose_encoding_to_extri_intri` and
`unproject_depth_map_to_point_map`) and reports the largest differences. Prints one JSON line.

usage: check_predictions_npz.py FILE.npz S [H W]
"""

import json
import sys
import zipfile

import numpy as np


def quat_to_mat(q):
    i, j, k, r = q[..., 0], q[..., 1], q[..., 2], q[..., 3]
    two_s = 2.0 / (q * q).sum(-1)
    o = np.stack([
        1 - two_s * (j * j + k * k), two_s * (i * j - k * r), two_s * (i * k + j * r),
        two_s * (i * j + k * r), 1 - two_s * (i * i + k * k), two_s * (j * k - i * r),
        two_s * (i * k - j * r), two_s * (j * k + i * r), 1 - two_s * (i * i + j * j),
    ], -1)
    return o.reshape(q.shape[:-1] + (3, 3))


def pose_to_extri_intri(pose, h, w):
    t, quat, fov_h, fov_w = pose[..., :3], pose[..., 3:7], pose[..., 7], pose[..., 8]
    extr = np.concatenate([quat_to_mat(quat), t[..., None]], -1).astype(np.float32)
    intr = np.zeros(pose.shape[:-1] + (3, 3), np.float32)
    intr[..., 0, 0] = (w / 2.0) / np.tan(fov_w / 2.0)
    intr[..., 1, 1] = (h / 2.0) / np.tan(fov_h / 2.0)
    intr[..., 0, 2] = w / 2
    intr[..., 1, 2] = h / 2
    intr[..., 2, 2] = 1.0
    return extr, intr


def unproject(depth, extr, intr):
    out = []
    for d, e, k in zip(depth[..., 0], extr, intr):
        h, w = d.shape
        u, v = np.meshgrid(np.arange(w), np.arange(h))
        cam = np.stack(((u - k[0, 2]) * d / k[0, 0], (v - k[1, 2]) * d / k[1, 1], d), -1).astype(np.float32)
        r, t = e[:, :3], e[:, 3:]
        inv = np.tile(np.eye(4), (1, 1))
        inv[:3, :3] = r.T
        inv[:3, 3:] = -np.matmul(r.T, t)
        out.append(np.dot(cam, inv[:3, :3].T) + inv[:3, 3])
    return np.stack(out)


def main() -> None:
    path, s = sys.argv[1], int(sys.argv[2])
    h, w = (int(sys.argv[3]), int(sys.argv[4])) if len(sys.argv) > 4 else (518, 518)
    want = {
        "pose_enc": ((s, 9), np.float32),
        "depth": ((s, h, w, 1), np.float32),
        "depth_conf": ((s, h, w), np.float32),
        "world_points": ((s, h, w, 3), np.float32),
        "world_points_conf": ((s, h, w), np.float32),
        "images": ((s, 3, h, w), np.float32),
        "extrinsic": ((s, 3, 4), np.float32),
        "intrinsic": ((s, 3, 3), np.float32),
        "world_points_from_depth": ((s, h, w, 3), np.float64),
    }
    # Every member's CRC-32 against its bytes (the writer joins CRCs taken piece by piece).
    with zipfile.ZipFile(path) as z:
        bad = z.testzip()
        assert bad is None, f"{bad}: CRC-32 does not match its bytes"
    npz = np.load(path, allow_pickle=False)
    assert sorted(npz.files) == sorted(want), f"keys {sorted(npz.files)} != {sorted(want)}"
    for key, (shape, dtype) in want.items():
        a = npz[key]
        assert a.shape == shape, f"{key}: shape {a.shape} != {shape}"
        assert a.dtype == dtype, f"{key}: dtype {a.dtype} != {dtype}"
        assert np.isfinite(a).all(), f"{key}: not finite"
    extr, intr = pose_to_extri_intri(npz["pose_enc"], h, w)
    wpd = unproject(npz["depth"], npz["extrinsic"], npz["intrinsic"])
    print(json.dumps({
        "keys": len(want),
        "extrinsic_max_diff": float(np.abs(extr - npz["extrinsic"]).max()),
        "intrinsic_max_diff": float(np.abs(intr - npz["intrinsic"]).max()),
        "world_points_from_depth_max_diff": float(np.abs(wpd - npz["world_points_from_depth"]).max()),
        "pointmap_vs_depth_branch_max_diff": float(np.abs(npz["world_points"] - wpd).max()),
    }))


if __name__ == "__main__":
    main()
