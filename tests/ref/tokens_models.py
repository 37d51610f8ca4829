#!/usr/bin/python3
"""Writes the tiny fixed-size transformer-like models of tests/test_tokens.c.

    tokens_models.py OUTDIR

Seeded random weights (numpy, seed 0); only operators dream has today.  Every model takes a
1x3x32x32 image (declared so) and only that size: its position embedding or its Reshapes are
fixed to the 4x4 or 8x8 grid of patches.
  vit.onnx   patchify Conv 8x8 stride 8 -> 1x12x4x4 -> tokens 1x16x12, a constant class token
             first (1x17x12), a position embedding (17x12), two blocks of
             x + Relu((M @ x) @ W) (M mixes the tokens: 17x17), the class token (Gather) ->
             Gemm -> 10 logits.  Values: 'tokens' (after the position embedding), 'block1',
             'block2', 'cls'.
  clip.onnx  the same tokens turned sequence-first (17x1x12, CLIP's layout) by a Transpose,
             one block on them ('seq'), back to 1x17x12 and on to the logits.
  swin.onnx  Conv 4x4 stride 4 -> 1x16x8x8 -> Transpose to channels-last 1x8x8x16
             ('grid0'), MatMul + Relu on the channels ('grid1', 1x8x8x16), a Reshape to 1x64x16
             tokens ('flat'), ReduceMean over the tokens, Gemm -> 10 logits.
"""
import os
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OUT = sys.argv[1]
os.makedirs(OUT, exist_ok=True)
rng = np.random.default_rng(0)


def init(name, arr, inits):
    inits.append(numpy_helper.from_array(np.asarray(arr), name))
    return name


def w(*shape, scale=None):
    fan = shape[-1] if len(shape) == 2 else int(np.prod(shape[1:]))
    s = scale if scale is not None else 1.0 / np.sqrt(fan)
    return (rng.standard_normal(shape) * s).astype(np.float32)


def save(nodes, inits, outputs, name):
    x = helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, 32, 32])
    y = helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 10])
    g = helper.make_graph(nodes, name, [x], [y], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 7
    onnx.checker.check_model(m)
    onnx.save(m, os.path.join(OUT, name + ".onnx"))


def patch_tokens(nodes, inits, C=12, P=8):
    """image -> 1 x (1 + N) x C tokens with class token and position embedding."""
    N = (32 // P) ** 2
    init("patch_w", w(C, 3, P, P), inits)
    init("patch_b", w(C, scale=0.1), inits)
    nodes.append(helper.make_node("Conv", ["image", "patch_w", "patch_b"], ["patches"],
                                  kernel_shape=[P, P], strides=[P, P]))
    init("flat_shape", np.array([1, C, N], dtype=np.int64), inits)
    nodes.append(helper.make_node("Reshape", ["patches", "flat_shape"], ["patch_flat"]))
    nodes.append(helper.make_node("Transpose", ["patch_flat"], ["patch_tokens"], perm=[0, 2, 1]))
    init("cls_token", w(1, 1, C, scale=0.5), inits)
    nodes.append(helper.make_node("Concat", ["cls_token", "patch_tokens"], ["with_cls"], axis=1))
    init("pos_embed", w(1, 1 + N, C, scale=0.5), inits)
    nodes.append(helper.make_node("Add", ["with_cls", "pos_embed"], ["tokens"]))
    return N


def block(nodes, inits, x, out, T, C, tag):
    """out = x + Relu((M @ x) @ W), M: T x T mixing the tokens."""
    init(tag + "_mix", w(T, T, scale=1.0 / np.sqrt(T)), inits)
    init(tag + "_w", w(C, C), inits)
    nodes.append(helper.make_node("MatMul", [tag + "_mix", x], [tag + "_mixed"]))
    nodes.append(helper.make_node("MatMul", [tag + "_mixed", tag + "_w"], [tag + "_proj"]))
    nodes.append(helper.make_node("Relu", [tag + "_proj"], [tag + "_act"]))
    nodes.append(helper.make_node("Add", [x, tag + "_act"], [out]))


def head(nodes, inits, x, C):
    init("cls_index", np.array(0, dtype=np.int64), inits)
    nodes.append(helper.make_node("Gather", [x, "cls_index"], ["cls"], axis=1))
    init("head_w", w(10, C), inits)
    init("head_b", w(10, scale=0.1), inits)
    nodes.append(helper.make_node("Gemm", ["cls", "head_w", "head_b"], ["logits"], transB=1))


def vit():
    nodes, inits, C = [], [], 12
    N = patch_tokens(nodes, inits, C)
    block(nodes, inits, "tokens", "block1", N + 1, C, "b1")
    block(nodes, inits, "block1", "block2", N + 1, C, "b2")
    head(nodes, inits, "block2", C)
    save(nodes, inits, ["logits"], "vit")


def clip():
    nodes, inits, C = [], [], 12
    N = patch_tokens(nodes, inits, C)
    nodes.append(helper.make_node("Transpose", ["tokens"], ["seq_in"], perm=[1, 0, 2]))
    init("s_w", w(C, C), inits)
    nodes.append(helper.make_node("MatMul", ["seq_in", "s_w"], ["s_proj"]))
    nodes.append(helper.make_node("Relu", ["s_proj"], ["s_act"]))
    nodes.append(helper.make_node("Add", ["seq_in", "s_act"], ["seq"]))
    nodes.append(helper.make_node("Transpose", ["seq"], ["batch_first"], perm=[1, 0, 2]))
    block(nodes, inits, "batch_first", "block1", N + 1, C, "b1")
    head(nodes, inits, "block1", C)
    save(nodes, inits, ["logits"], "clip")


def swin():
    nodes, inits, C = [], [], 16
    init("patch_w", w(C, 3, 4, 4), inits)
    init("patch_b", w(C, scale=0.1), inits)
    nodes.append(helper.make_node("Conv", ["image", "patch_w", "patch_b"], ["patches"],
                                  kernel_shape=[4, 4], strides=[4, 4]))
    nodes.append(helper.make_node("Transpose", ["patches"], ["grid0"], perm=[0, 2, 3, 1]))
    init("g_w", w(C, C), inits)
    nodes.append(helper.make_node("MatMul", ["grid0", "g_w"], ["g_proj"]))
    nodes.append(helper.make_node("Relu", ["g_proj"], ["grid1"]))
    init("flat_shape", np.array([1, 64, C], dtype=np.int64), inits)
    nodes.append(helper.make_node("Reshape", ["grid1", "flat_shape"], ["flat"]))
    nodes.append(helper.make_node("ReduceMean", ["flat"], ["pooled"], axes=[1], keepdims=0))
    init("head_w", w(10, C), inits)
    init("head_b", w(10, scale=0.1), inits)
    nodes.append(helper.make_node("Gemm", ["pooled", "head_w", "head_b"], ["logits"], transB=1))
    save(nodes, inits, ["logits"], "swin")


vit()
clip()
swin()
print("wrote vit.onnx, clip.onnx, swin.onnx to", OUT)
