#!/usr/bin/python3
"""A small network made of the data-movement ops, exported by PyTorch, with its reference
output and input gradient, for tests/ops/test_resize.c.

    layout_torch.py OUTDIR

Writes OUTDIR/opset<N>.onnx for N in 11 and 13, input.pb, and output.pb and grad.pb: torch's
output, and the gradient of 1/2 * sum(y^2) with respect to the input, both by autograd in
float64 from the same float32 weights.  Ops exported: Resize (nearest as torch writes it:
asymmetric, floor; bilinear with align_corners false, which torch 1.13 writes as half_pixel,
and true, align_corners; by a
scale factor and by a size), Pad in reflect and edge (replicate) modes, Split, Expand and Tile
(repeat), with Conv, Add, Mul, Tanh, Slice and Concat around them, and the shape arithmetic
torch writes for them (Shape, Gather, Unsqueeze, Concat, ConstantOfShape, Equal, Where).
"""
import os
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "bench"))
from onnx_torch import save_pb  # noqa: E402

OPSETS = (11, 13)


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(3, 6, 3)
        self.c2 = nn.Conv2d(6, 4, 3)
        self.c3 = nn.Conv2d(4, 4, 1)

    def forward(self, x):
        a = self.c1(F.pad(x, (1, 2, 2, 1), mode="reflect"))           # Pad reflect
        b, c = torch.split(a, [2, 4], dim=1)                           # Split
        b = F.interpolate(b, scale_factor=2.0, mode="nearest")         # Resize nearest
        c = F.interpolate(c, size=(b.shape[2], b.shape[3]), mode="bilinear",
                          align_corners=False)                         # Resize linear
        d = torch.cat([b, c], 1)
        e = self.c2(F.pad(d, (1, 1, 3, 1), mode="replicate"))         # Pad edge: 30x36
        # align_corners by scales whose lengths are whole (15x27): for a fractional in * scale
        # the ONNX reference divides by in * scale - 1, torch by the rounded size - 1
        f = F.interpolate(e, scale_factor=(0.5, 0.75), mode="bilinear",
                          align_corners=True, recompute_scale_factor=False)
        g = f * f[:, :1].expand(-1, 4, -1, -1)                         # Expand
        h = g.repeat(1, 2, 1, 3)                                       # Tile
        return self.c3(h[:, :4] + h[:, 4:]) * torch.tanh(h[:, 2:3])


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    torch.manual_seed(0)
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))
    net = Net().eval()
    x = torch.randn(1, 3, 13, 17)
    for opset in OPSETS:
        torch.onnx.export(net, x, os.path.join(out, "opset%d.onnx" % opset), opset_version=opset,
                          input_names=["x"], output_names=["y"])
    net64 = Net().double().eval()
    net64.load_state_dict(net.state_dict())
    x64 = x.double().requires_grad_(True)
    y = net64(x64)
    (0.5 * (y * y).sum()).backward()
    save_pb(os.path.join(out, "input.pb"), x, "x")
    save_pb(os.path.join(out, "output.pb"), y, "y")
    save_pb(os.path.join(out, "grad.pb"), x64.grad, "x")


if __name__ == "__main__":
    main()
