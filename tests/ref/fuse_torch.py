#!/usr/bin/python3
"""A transformer-style block exported by PyTorch 1.13 at opset 13, whose nn.LayerNorm and
nn.GELU the exporter writes as chains of element-wise ops, with its reference output and
input gradient, for tests/plan/test_fuse.c (the planner's fusion of those chains).

    fuse_torch.py OUTDIR

Writes OUTDIR/block.onnx, input.pb, and output.pb and grad.pb: torch's output, and the
gradient of 1/2 * sum(y^2) with respect to the input, both by autograd in float64 from the
same float32 weights.  Block: y = LN2(x + W2 GELU(W1 LN1(x))) with LN1 over the last dim and
LN2 over the last two (nn.LayerNorm((6, 32))), affine weights drawn away from 1 and 0.
"""
import os
import sys

import torch
import torch.nn as nn

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "bench"))
from onnx_torch import save_pb  # noqa: E402


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.ln1 = nn.LayerNorm(32)
        self.fc1 = nn.Linear(32, 64)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(64, 32)
        self.ln2 = nn.LayerNorm((6, 32), eps=1e-6)
        with torch.no_grad():
            for ln in (self.ln1, self.ln2):
                ln.weight.uniform_(0.5, 1.5)
                ln.bias.uniform_(-0.5, 0.5)

    def forward(self, x):
        return self.ln2(x + self.fc2(self.act(self.fc1(self.ln1(x)))))


def main():
    out = sys.argv[1]
    torch.manual_seed(0)
    net = Block().eval()
    x = torch.randn(2, 6, 32) * 2 + 0.5
    torch.onnx.export(net, x, os.path.join(out, "block.onnx"), opset_version=13,
                      input_names=["x"], output_names=["y"])
    net64 = net.double()
    x64 = x.double().requires_grad_(True)
    y = net64(x64)
    (0.5 * (y * y).sum()).backward()
    save_pb(os.path.join(out, "input.pb"), x, "x")
    save_pb(os.path.join(out, "output.pb"), y, "y")
    save_pb(os.path.join(out, "grad.pb"), x64.grad, "x")


if __name__ == "__main__":
    main()
