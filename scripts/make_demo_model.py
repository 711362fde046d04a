#!/usr/bin/env python3
"""Writes a small ONNX model with the VGGT ONNX export contract (akretz/vggt-onnx), as a stand-in.

The real VGGT-1B weights cannot be downloaded here, so the `vggt-onnx` pipeline, its tests and the
README's offline command run this model instead. It is a cheap, documented function of the pixels,
NOT a reconstruction network:

  input  input_images       float32 [S, 3, 518, 518] in [0, 1]        (S dynamic)
  output pose_enc           float32 [1, S, 9]   a fixed ring of cameras: frame i sits at angle
                                                0.3*i rad around the y axis, radius 2, looking at the
                                                origin; T = (0, 0, 2), quaternion (XYZW) of a
                                                rotation about y by -0.3*i, fov_h = fov_w = 1.0 rad
         depth              float32 [1, S, H, W, 1]  1 + luminance (ITU-R 601 weights)
         depth_conf         float32 [1, S, H, W]     1 + 10 * |Laplacian of luminance|
         world_points       float32 [1, S, H, W, 3]  depth unprojected through that camera (so the
                                                     point-map and depth branches agree)
         world_points_conf  float32 [1, S, H, W]     0.5 + depth_conf / 2
         images             float32 [1, S, 3, H, W]  the input, unchanged

Options make the broken variants the tests need: `--input-name` (a wrong input name),
`--input-rank 3` (a wrong rank: [3, 518, 518]) and `--external-data` (weights in `NAME.onnx_data`
beside the model, as the real 5 GB export ships).
"""

import argparse
import math
import os

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

SIZE = 518
STEP = 0.3  # radians between neighbouring cameras
RADIUS = 2.0
FOV = 1.0  # radians, both axes


def build(input_name: str, input_rank: int) -> onnx.ModelProto:
    nodes = []
    inits = []

    def const(name, value, dtype=np.float32):
        inits.append(numpy_helper.from_array(np.asarray(value, dtype=dtype), name))
        return name

    def node(op, inputs, output, **attrs):
        nodes.append(helper.make_node(op, inputs, [output], **attrs))
        return output

    if input_rank == 4:
        x = input_name
        in_shape = ["S", 3, SIZE, SIZE]
    else:
        # A model whose input has the wrong rank: one image [3, H, W].
        in_shape = [3, SIZE, SIZE]
        x = node("Unsqueeze", [input_name, const("axis0", [0], np.int64)], "x4")

    axis0 = "axis0" if input_rank != 4 else const("axis0", [0], np.int64)
    axis1 = const("axis1", [1], np.int64)

    # Luminance [S, 1, H, W].
    lum_w = const("lum_w", np.array([0.299, 0.587, 0.114]).reshape(1, 3, 1, 1))
    lum = node("ReduceSum", [node("Mul", [x, lum_w], "rgb_w"), axis1], "lum", keepdims=1)

    # depth = 1 + lum, as [1, S, H, W, 1].
    one = const("one", 1.0)
    depth_s1hw = node("Add", [lum, one], "depth_s1hw")
    depth_shw1 = node("Transpose", [depth_s1hw], "depth_shw1", perm=[0, 2, 3, 1])
    node("Unsqueeze", [depth_shw1, axis0], "depth")

    # depth_conf = 1 + 10 * |Laplacian(lum)|, as [1, S, H, W].
    lap = const("laplacian", np.array([[0, 1, 0], [1, -4, 1], [0, 1, 0]]).reshape(1, 1, 3, 3))
    edges = node("Abs", [node("Conv", [lum, lap], "lap", pads=[1, 1, 1, 1])], "edges")
    conf_s1hw = node("Add", [node("Mul", [edges, const("ten", 10.0)], "edges10"), one], "conf_s1hw")
    conf_shw = node("Squeeze", [conf_s1hw, axis1], "conf_shw")
    node("Unsqueeze", [conf_shw, axis0], "depth_conf")
    wp_conf = node("Add", [node("Mul", [conf_shw, const("half", 0.5)], "conf_half"), "half"], "wpc_shw")
    node("Unsqueeze", [wp_conf, axis0], "world_points_conf")

    # Camera angles theta_i = STEP * i for i in 0..S, as [S].
    shape = node("Shape", [x], "x_shape")
    s = node("Gather", [shape, const("zero_i", 0, np.int64)], "s", axis=0)
    idx = node("Range", [const("r0", 0, np.int64), s, const("r1", 1, np.int64)], "idx")
    theta = node("Mul", [node("Cast", [idx], "idx_f", to=TensorProto.FLOAT), const("step", STEP)], "theta")
    half_theta = node("Mul", [theta, "half"], "half_theta")
    col = lambda v, name: node("Unsqueeze", [v, axis1], name)  # [S] -> [S, 1]
    zeros = node("Mul", [theta, const("zero_f", 0.0)], "zeros")
    ones = node("Add", [zeros, one], "ones")
    qy = node("Neg", [node("Sin", [half_theta], "sin_half")], "qy")
    qw = node("Cos", [half_theta], "qw")
    tz = node("Mul", [ones, const("radius", RADIUS)], "tz")
    fov = node("Mul", [ones, const("k_fov", FOV)], "fov_v")
    cols = [col(zeros, "c_tx"), col(zeros, "c_ty"), col(tz, "c_tz"), col(zeros, "c_qx"), col(qy, "c_qy"),
            col(zeros, "c_qz"), col(qw, "c_qw"), col(fov, "c_fh"), col(fov, "c_fw")]
    pose = node("Concat", cols, "pose_s9", axis=1)
    node("Unsqueeze", [pose, axis0], "pose_enc")

    # world_points: unproject depth through camera i (the facebook/vggt Space's convention: pixel
    # u at u - W/2, no half-pixel shift).
    f = (SIZE / 2) / math.tan(FOV / 2)
    grid = (np.arange(SIZE, dtype=np.float64) - SIZE / 2) / f
    gx = const("grid_x", np.broadcast_to(grid[None, :], (SIZE, SIZE)))  # [H, W]
    gy = const("grid_y", np.broadcast_to(grid[:, None], (SIZE, SIZE)))
    d = depth_s1hw  # [S, 1, H, W]
    xc = node("Mul", [d, gx], "xc")
    yc = node("Mul", [d, gy], "yc")
    zc = node("Sub", [d, "radius"], "zc")  # camera z minus T_z
    c4 = node("Unsqueeze", [node("Cos", [theta], "cos_t"), const("axes123", [1, 2, 3], np.int64)], "c4")
    s4 = node("Unsqueeze", [node("Sin", [theta], "sin_t"), "axes123"], "s4")
    # world = Ry(theta) (p_cam - T): Xw = c x + s z, Yw = y, Zw = -s x + c z.
    xw = node("Add", [node("Mul", [c4, xc], "cx"), node("Mul", [s4, zc], "sz")], "xw")
    zw = node("Sub", [node("Mul", [c4, zc], "cz"), node("Mul", [s4, xc], "sx")], "zw")
    pts = node("Concat", [xw, yc, zw], "pts_s3hw", axis=1)
    pts = node("Transpose", [pts], "pts_shw3", perm=[0, 2, 3, 1])
    node("Unsqueeze", [pts, axis0], "world_points")

    node("Unsqueeze", [x, axis0], "images")

    f32 = TensorProto.FLOAT
    outputs = [
        helper.make_tensor_value_info("pose_enc", f32, [1, "S", 9]),
        helper.make_tensor_value_info("depth", f32, [1, "S", SIZE, SIZE, 1]),
        helper.make_tensor_value_info("depth_conf", f32, [1, "S", SIZE, SIZE]),
        helper.make_tensor_value_info("world_points", f32, [1, "S", SIZE, SIZE, 3]),
        helper.make_tensor_value_info("world_points_conf", f32, [1, "S", SIZE, SIZE]),
        helper.make_tensor_value_info("images", f32, [1, "S", 3, SIZE, SIZE]),
    ]
    graph = helper.make_graph(
        nodes,
        "vggt_demo_stand_in",
        [helper.make_tensor_value_info(input_name, f32, in_shape)],
        outputs,
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="spaceport")
    model.ir_version = 10  # onnxruntime 1.23 reads IR <= 11; the onnx package writes newer by default
    model.doc_string = "Spaceport demo stand-in for VGGT (not a reconstruction network); see scripts/make_demo_model.py"
    onnx.checker.check_model(model)
    return model


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", help="path of the .onnx file to write")
    ap.add_argument("--external-data", action="store_true", help="store the weights in OUT_data (OUT.onnx_data)")
    ap.add_argument("--input-name", default="input_images")
    ap.add_argument("--input-rank", type=int, choices=[3, 4], default=4)
    args = ap.parse_args()

    model = build(args.input_name, args.input_rank)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    if args.external_data:
        location = os.path.basename(args.out) + "_data"
        data_path = os.path.join(os.path.dirname(os.path.abspath(args.out)), location)
        if os.path.exists(data_path):
            os.remove(data_path)  # onnx appends to an existing data file
        onnx.save_model(model, args.out, save_as_external_data=True, all_tensors_to_one_file=True,
                        location=location, size_threshold=1024)
    else:
        onnx.save_model(model, args.out)
    print(args.out)


if __name__ == "__main__":
    main()
