#!/usr/bin/python3
"""Reference input gradients from PyTorch autograd, for tests/test_grad.c.

    grad_torch.py --model M.onnx --input IN.pb --layer NAME --save OUT.pb [--layer ... --save ...]
                  [--flat WxH]

For each --layer/--save pair, writes the gradient of 1/2 * sum(a^2) (a = the value NAME's
activations) with respect to the graph input, as a float32 TensorProto named like the graph
input.  The graph runs through bench/onnx_torch.py in float64 (--float32 for single precision),
so the reference is as exact as autograd gets; each layer's objective is printed.

--flat WxH first writes to IN.pb a synthetic grey picture of that size made of large constant
areas (tools/ties.py's `flat`, preprocessed for BVLC GoogLeNet: BGR minus its mean), whose
max-pools meet exact ties everywhere: a float32 computation that rounds equal inputs
differently by position breaks them, and its gradient then leaves float64's by far (issue #13).
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
    ap.add_argument("--flat", metavar="WxH")
    args = ap.parse_args()
    if len(args.layer) != len(args.save):
        ap.error("give one --save per --layer")
    dtype = torch.float32 if args.float32 else torch.float64
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))
    net = OnnxTorch(args.model, dtype)
    if args.flat:
        sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..",
                                        "tools"))
        from ties import make_input
        w, h = (int(v) for v in args.flat.split("x"))
        save_pb(args.input, torch.from_numpy(make_input("flat", w, h)), net.inputs[0])
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
