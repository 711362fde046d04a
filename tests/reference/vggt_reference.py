#!/usr/bin/env python3
"""VGGT's post-processing as the facebook/vggt Space runs it, restated from reading its
visual_util.py (`predictions_to_glb` and the camera helpers) and demo app (`np.savez` of the
predictions, `scene.export` of the GLB) with the same library calls: numpy at the Space's pin,
trimesh's scene graph and exporter, scipy's Rotation, matplotlib's colormap. It is the yardstick
for spaceport-onnx's GLB and npz writers: their numbers are checked against it
(check_glb.py) and their speed and memory measured beside it (the `postprocess` bench).

The Space's version is followed: no alpha-mask filter (a later addition to visual_util.py) and
the sky mask left out (spaceport does not run the sky model).

usage:
  vggt_reference.py glb   PREDICTIONS.npz OUT.glb CONF_THRES {pointmap,depth} BLACK WHITE SHOW_CAM
  vggt_reference.py bench PREDICTIONS.npz OUT_DIR CONF_THRES {pointmap,depth} BLACK WHITE SHOW_CAM
      (booleans as 0/1). `bench` prints one JSON line: milliseconds and peak RSS (MiB) of building
      and exporting the GLB, then of np.savez, and the RSS with the predictions loaded.
"""

import json
import os
import sys
import time

import matplotlib
import numpy as np
import trimesh
from scipy.spatial.transform import Rotation


def opengl_flip():
    m = np.identity(4)
    m[1, 1] = -1
    m[2, 2] = -1
    return m


def about(axis, degrees):
    m = np.eye(4)
    m[:3, :3] = Rotation.from_euler(axis, degrees, degrees=True).as_matrix()
    return m


def apply_4x4(t, points):
    t = t.swapaxes(-1, -2)
    return (points @ t[..., :-1, :] + t[..., -1:, :])[..., : points.shape[-1]]


def frustum_faces(cone):
    n = len(cone.vertices)
    faces = []
    for a, b, c in cone.faces:
        if 0 in (a, b, c):
            continue
        faces += [(a, b, b + n), (a, a + n, c), (c + n, b, c),
                  (a, b, b + 2 * n), (a, a + 2 * n, c), (c + 2 * n, b, c)]
    faces += [(c, b, a) for a, b, c in faces]
    return np.array(faces)


def add_camera(scene, cam_to_world, colour, scene_scale):
    width, height = scene_scale * 0.05, scene_scale * 0.1
    tilt = about("z", 45)
    tilt[2, 3] = -height
    cone = trimesh.creation.cone(width, height, sections=4)
    copies = np.concatenate([cone.vertices, 0.95 * cone.vertices, apply_4x4(about("z", 2), cone.vertices)])
    mesh = trimesh.Trimesh(vertices=apply_4x4(cam_to_world @ opengl_flip() @ tilt, copies),
                           faces=frustum_faces(cone))
    mesh.visual.face_colors[:, :3] = colour
    scene.add_geometry(mesh)


def predictions_to_glb(pred, conf_thres, mode, mask_black, mask_white, show_cam):
    if mode == "pointmap":
        points, conf = pred["world_points"], pred["world_points_conf"]
    else:
        points, conf = pred["world_points_from_depth"], pred["depth_conf"]
    extrinsic = pred["extrinsic"]
    vertices = points.reshape(-1, 3)
    colours = (np.transpose(pred["images"], (0, 2, 3, 1)).reshape(-1, 3) * 255).astype(np.uint8)
    conf = conf.reshape(-1)
    threshold = 0.0 if conf_thres == 0.0 else np.percentile(conf, conf_thres)
    keep = (conf >= threshold) & (conf > 1e-5)
    if mask_black:
        keep &= colours.sum(axis=1) >= 16
    if mask_white:
        keep &= ~((colours[:, 0] > 240) & (colours[:, 1] > 240) & (colours[:, 2] > 240))
    vertices, colours = vertices[keep], colours[keep]
    if vertices.size == 0:
        vertices, colours, scene_scale = np.array([[1, 0, 0]]), np.array([[255, 255, 255]]), 1
    else:
        lo, hi = np.percentile(vertices, 5, axis=0), np.percentile(vertices, 95, axis=0)
        scene_scale = np.linalg.norm(hi - lo)

    scene = trimesh.Scene()
    scene.add_geometry(trimesh.PointCloud(vertices=vertices, colors=colours))
    n = len(extrinsic)
    world_to_cam = np.zeros((n, 4, 4))
    world_to_cam[:, :3, :4] = extrinsic
    world_to_cam[:, 3, 3] = 1
    if show_cam:
        rainbow = matplotlib.colormaps.get_cmap("gist_rainbow")
        for i in range(n):
            colour = tuple(int(255 * x) for x in rainbow(i / n)[:3])
            add_camera(scene, np.linalg.inv(world_to_cam[i]), colour, scene_scale)
    scene.apply_transform(np.linalg.inv(world_to_cam[0]) @ opengl_flip() @ about("y", 180))
    return scene


def settings(argv):
    return float(argv[0]), argv[1], bool(int(argv[2])), bool(int(argv[3])), bool(int(argv[4]))


def rss_mib(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return float("nan")


def reset_peak():
    # Writing 5 to clear_refs resets VmHWM to the current RSS (Linux >= 4.0).
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def main():
    command, npz_path, out = sys.argv[1], sys.argv[2], sys.argv[3]
    args = settings(sys.argv[4:9])
    with np.load(npz_path) as npz:
        pred = {k: npz[k] for k in npz.files}
    if command == "glb":
        predictions_to_glb(pred, *args).export(file_obj=out)
        return
    assert command == "bench", f"unknown command {command}"
    loaded = rss_mib("VmRSS")
    reset_peak()
    t = time.perf_counter()
    scene = predictions_to_glb(pred, *args)
    scene.export(file_obj=os.path.join(out, "scene.glb"))
    glb_ms = (time.perf_counter() - t) * 1e3
    points = len(next(g for g in scene.geometry.values() if isinstance(g, trimesh.PointCloud)).vertices)
    del scene
    glb_peak = rss_mib("VmHWM")
    reset_peak()
    t = time.perf_counter()
    np.savez(os.path.join(out, "predictions.npz"), **pred)
    npz_ms = (time.perf_counter() - t) * 1e3
    print(json.dumps({"numpy": np.__version__, "points": points, "loaded_mib": loaded,
                      "glb_ms": glb_ms, "glb_peak_mib": glb_peak,
                      "npz_ms": npz_ms, "npz_peak_mib": rss_mib("VmHWM")}))


if __name__ == "__main__":
    main()
