#!/usr/bin/python3
"""The objective a dream climbs, measured independently of dream: 1/2 sum a^2 of a layer,
computed in float32 by PyTorch through bench/onnx_torch.py, on the input photo and on each
dreamed picture (same size).  The gain of a picture is its objective minus the input's; the
bf16 target of issue #13 is gain(bf16 picture) >= 0.9 x gain(fp32 picture).

    bench/objective.py MODEL.onnx IN.jpg OUT_A.png [OUT_B.png ...] [--layer L]

Prints one line per picture: objective, gain, and the gain relative to the first picture's.
GoogLeNet's preprocessing (BGR, 0..255, minus 104,117,123) unless --mean/--rgb say otherwise.
"""
import argparse
import os
import sys

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from onnx_torch import OnnxTorch  # noqa: E402


def objective(net, layer, path, mean, order):
    img = np.asarray(Image.open(path).convert("RGB"), dtype=np.float32)
    x = torch.from_numpy(img)[:, :, order] - mean
    x = x.permute(2, 0, 1).unsqueeze(0).contiguous()
    with torch.no_grad():
        a = net.run({net.inputs[0]: x}, [layer])[layer]
    # the sum in float64 so that the evaluation adds no rounding of its own to compare
    return 0.5 * float((a.double() ** 2).sum()), img.shape[1], img.shape[0]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("input")
    ap.add_argument("outputs", nargs="+")
    ap.add_argument("--layer", default="inception_4c/output")
    ap.add_argument("--mean", default="104,117,123")
    ap.add_argument("--rgb", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))
    net = OnnxTorch(args.model, dtype=torch.float32)
    mean = torch.tensor([float(v) for v in args.mean.split(",")])
    order = [0, 1, 2] if args.rgb else [2, 1, 0]
    base, w0, h0 = objective(net, args.layer, args.input, mean, order)
    print("%-40s objective %.6g" % (args.input, base))
    first = None
    for path in args.outputs:
        obj, w, h = objective(net, args.layer, path, mean, order)
        if (w, h) != (w0, h0):
            sys.exit("%s is %dx%d, the input %dx%d" % (path, w, h, w0, h0))
        gain = obj - base
        first = gain if first is None else first
        print("%-40s objective %.6g gain %.6g (%.3f x the first's)" % (path, obj, gain,
                                                                        gain / first))


if __name__ == "__main__":
    main()
