#!/usr/bin/python3
"""Writes tiny models with one operator attribute dream does not support, for
tests/cli/test_unsupported_cli.c.

    unsupported_models.py OUTDIR

Each takes a 1x3x16x16 image: a Conv 3->4 3x3 (seeded random weights) named 'conv1', then
  resize_cubic.onnx  Resize 'up2' (opset 13), mode 'cubic', scales 1,1,2,2;
  pad_wrap.onnx      Pad 'padwrap' (opset 13 as written; 'wrap' arrived at opset 19),
                     mode 'wrap', pads 1 on H and W;
then a Relu 'out'.  dream must refuse each at load, naming the node, the op and the piece.
"""
import os
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OUT = sys.argv[1]
os.makedirs(OUT, exist_ok=True)
rng = np.random.default_rng(0)


def model(name, node, extra_inits):
    inits = [numpy_helper.from_array((rng.standard_normal((4, 3, 3, 3)) * 0.3).astype(np.float32), "w"),
             numpy_helper.from_array(np.zeros(4, np.float32), "b")] + extra_inits
    nodes = [helper.make_node("Conv", ["image", "w", "b"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
             node,
             helper.make_node("Relu", ["mid"], ["out"], name="out")]
    g = helper.make_graph(nodes, name, [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, 16, 16])],
                          [helper.make_tensor_value_info("out", TensorProto.FLOAT, None)], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    onnx.save(m, os.path.join(OUT, name + ".onnx"))


model("resize_cubic",
      helper.make_node("Resize", ["c1", "", "scales"], ["mid"], name="up2", mode="cubic"),
      [numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "scales")])
model("pad_wrap",
      helper.make_node("Pad", ["c1", "pads"], ["mid"], name="padwrap", mode="wrap"),
      [numpy_helper.from_array(np.array([0, 0, 1, 1, 0, 0, 1, 1], np.int64), "pads")])
