#!/usr/bin/env python3
"""Cross-checks a GLB written by spaceport-onnx against the scene VGGT's own post-processing
builds from the predictions.npz written beside it (vggt_reference.py: the facebook/vggt Space's
`predictions_to_glb` at its numpy pin), both read with trimesh (another real glTF consumer): the
point cloud's points and colours, and the camera meshes' vertices, after each file's node
transforms. Prints one JSON line; exits non-zero on a mismatch. Run it with .venv-vggt's python.

usage: check_glb.py SCENE.glb PREDICTIONS.npz CONF_THRES {pointmap,depth} MASK_BLACK MASK_WHITE SHOW_CAM
       (booleans as 0/1)
"""

import json
import os
import sys

import numpy as np
import trimesh

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import vggt_reference  # noqa: E402


def placed(scene):
    """(point clouds, meshes) of a scene with their node transforms applied, in node order."""
    clouds, meshes = [], []
    for node in scene.graph.nodes_geometry:
        transform, name = scene.graph[node]
        g = scene.geometry[name]
        vertices = trimesh.transformations.transform_points(np.asarray(g.vertices, np.float64), transform)
        if isinstance(g, trimesh.PointCloud):
            clouds.append((vertices, np.asarray(g.colors)[:, :3]))
        else:
            meshes.append(vertices)
    return clouds, meshes


def main() -> None:
    glb, npz_path = sys.argv[1], sys.argv[2]
    settings = vggt_reference.settings(sys.argv[3:8])
    with np.load(npz_path) as npz:
        pred = {k: npz[k] for k in npz.files}
    want_clouds, want_meshes = placed(vggt_reference.predictions_to_glb(pred, *settings))
    got_clouds, got_meshes = placed(trimesh.load(glb, force="scene"))
    assert len(got_clouds) == 1, f"{len(got_clouds)} point clouds"
    (got_v, got_c), (want_v, want_c) = got_clouds[0], want_clouds[0]
    assert got_v.shape == want_v.shape, f"{got_v.shape[0]} points, the reference keeps {want_v.shape[0]}"
    assert len(got_meshes) == len(want_meshes), f"{len(got_meshes)} camera meshes, the reference {len(want_meshes)}"
    scale = max(1.0, float(np.abs(want_v).max()))
    # trimesh merges a mesh's duplicate vertices (differently for a loaded file and a built
    # mesh), so each camera is compared by its bounding box.
    box = lambda v: np.stack([v.min(axis=0), v.max(axis=0)])  # noqa: E731
    # A scene graph's node order is not the order meshes were added: pair them by position.
    boxes = lambda ms: sorted((box(m) for m in ms), key=lambda b: tuple(b.mean(axis=0).round(3)))  # noqa: E731
    camera_diff = max((float(np.abs(g - w).max()) for g, w in zip(boxes(got_meshes), boxes(want_meshes))),
                      default=0.0)
    report = {
        "points": int(got_v.shape[0]),
        "cameras": len(got_meshes),
        "numpy": np.__version__,
        "vertex_max_diff": float(np.abs(got_v - want_v).max()),
        "colour_max_diff": int(np.abs(got_c.astype(int) - want_c.astype(int)).max()),
        "camera_vertex_max_diff": camera_diff,
    }
    print(json.dumps(report))
    assert report["vertex_max_diff"] < 1e-5 * scale, report
    assert report["colour_max_diff"] == 0, report
    assert report["camera_vertex_max_diff"] < 1e-4 * scale, report


if __name__ == "__main__":
    main()
