#!/usr/bin/env python3
"""Cross-checks a GLB written by spaceport-onnx against the predictions.npz written beside it:
re-runs the point selection of VGGT's `predictions_to_glb` (visual_util.py) in numpy — the
confidence percentile, conf > 1e-5, the black/white background masks, the alignment to the first
camera with the OpenGL flip — and compares it with the point cloud trimesh reads from the GLB
(another real glTF consumer). Prints one JSON line; exits non-zero on a mismatch.

usage: check_glb.py SCENE.glb PREDICTIONS.npz CONF_THRES {pointmap,depth} MASK_BLACK MASK_WHITE SHOW_CAM
       (booleans as 0/1)
"""

import json
import sys

import numpy as np
import trimesh


def expected(npz, conf_thres, mode, mask_black, mask_white):
    if mode == "pointmap":
        pts, conf = npz["world_points"], npz["world_points_conf"]
    else:
        pts, conf = npz["world_points_from_depth"], npz["depth_conf"]
    colors = (np.transpose(npz["images"], (0, 2, 3, 1)).reshape(-1, 3) * 255).astype(np.uint8)
    verts = pts.reshape(-1, 3)
    conf = conf.reshape(-1)
    threshold = 0.0 if conf_thres == 0.0 else np.percentile(conf, conf_thres)
    mask = (conf >= threshold) & (conf > 1e-5)
    if mask_black:
        mask &= colors.sum(axis=1) >= 16
    if mask_white:
        mask &= ~((colors[:, 0] > 240) & (colors[:, 1] > 240) & (colors[:, 2] > 240))
    verts, colors = verts[mask], colors[mask]
    if verts.size == 0:
        verts, colors = np.array([[1.0, 0.0, 0.0]]), np.array([[255, 255, 255]], np.uint8)
    e = np.eye(4)
    e[:3, :4] = npz["extrinsic"][0]
    opengl = np.diag([1.0, -1.0, -1.0, 1.0])
    rot_y180 = np.diag([-1.0, 1.0, -1.0, 1.0])
    t = np.linalg.inv(e) @ opengl @ rot_y180
    return verts @ t[:3, :3].T + t[:3, 3], colors


def main() -> None:
    glb, npz_path, conf_thres, mode = sys.argv[1], sys.argv[2], float(sys.argv[3]), sys.argv[4]
    mask_black, mask_white, show_cam = (bool(int(a)) for a in sys.argv[5:8])
    npz = np.load(npz_path)
    want_v, want_c = expected(npz, conf_thres, mode, mask_black, mask_white)

    scene = trimesh.load(glb, force="scene")
    clouds = [g for g in scene.geometry.values() if isinstance(g, trimesh.PointCloud)]
    meshes = [g for g in scene.geometry.values() if isinstance(g, trimesh.Trimesh)]
    assert len(clouds) == 1, f"{len(clouds)} point clouds"
    got_v = np.asarray(clouds[0].vertices)
    got_c = np.asarray(clouds[0].colors)[:, :3]
    assert got_v.shape == want_v.shape, f"{got_v.shape[0]} points, numpy selects {want_v.shape[0]}"
    frames = npz["extrinsic"].shape[0]
    assert len(meshes) == (frames if show_cam else 0), f"{len(meshes)} camera meshes for {frames} frames"
    report = {
        "points": int(got_v.shape[0]),
        "cameras": len(meshes),
        "vertex_max_diff": float(np.abs(got_v - want_v).max()),
        "colour_max_diff": int(np.abs(got_c.astype(int) - want_c.astype(int)).max()),
    }
    print(json.dumps(report))
    assert report["vertex_max_diff"] < 1e-4 * max(1.0, float(np.abs(want_v).max())), report
    assert report["colour_max_diff"] == 0, report


if __name__ == "__main__":
    main()
