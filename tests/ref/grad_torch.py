#!/usr/bin/python3
"""Reference input gradients from PyTorch autograd, for tests/test_grad.c.

    grad_torch.py --model M.onnx --input IN.pb --layer NAME --save OUT.pb [--layer ... --save ...]

For each --layer/--save pair, writes the gradient of 1/2 * sum(a^2) (a = the value NAME's
activations) with respect to the graph input, as a float32 TensorProto named like the graph
input.  The graph runs through bench/onnx_torch.py in float64 (--float32 for single precision),
so the reference is as exact as autograd gets; each layer's objective is printed.
"""
import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "bench"))
from onnx_torch import OnnxTorch, load_pb, save_pb  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--input", required=True)
    ap.add_argument("--layer", action="append", required=True)
    ap.add_argument("--save", action="append", required=True)
    ap.add_argument("--float32", action="store_true")
    args = ap.parse_args()
    if len(args.layer) != len(args.save):
        ap.error("give one --save per --layer")
    dtype = torch.float32 if args.float32 else torch.float64
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))
    net = OnnxTorch(args.model, dtype)
    _, x0 = load_pb(args.input, dtype)
    name = net.inputs[0]
    for layer, out in zip(args.layer, args.save):
        x = x0.clone().requires_grad_(True)
        a = net.run({name: x}, [layer])[layer]
        obj = 0.5 * (a * a).sum()
        obj.backward()
        save_pb(out, x.grad, name)
        print("%s: objective %.9g, |grad| %.9g" % (layer, float(obj), float(x.grad.norm())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
