#!/usr/bin/python3
"""A small network made of the element-wise ops of modern networks, exported by PyTorch, with
its reference output and input gradient, for tests/test_grad.c.

    elementwise_torch.py OUTDIR

Writes OUTDIR/opset<N>.onnx for N in 13, 14, 17 (torch 1.13 writes GELU as its Erf pattern,
hardswish as x * HardSigmoid(x) before opset 14 and as HardSwish from 14); OUTDIR/opset20.onnx,
the opset 17 graph with the Erf pattern replaced by a Gelu node (opset 20), as newer
exporters write it and torch 1.13 cannot; input.pb, and
output.pb and grad.pb: torch's output, and the gradient of 1/2 * sum(y^2) with respect to
the input, both by autograd in float64 from the same float32 weights.  Ops exported: Conv,
Erf, HardSigmoid, HardSwish, PRelu, Elu, Softplus, Tanh, Max, Min, Pow (tensor exponent),
Sqrt, Exp, Log, Abs, Neg, Reciprocal, with Add, Sub, Mul, Div around them, and Gelu.
"""
import os
import sys

import onnx
import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "bench"))
from onnx_torch import save_pb  # noqa: E402

OPSETS = (13, 14, 17)


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(3, 8, 3, padding=1)
        self.c2 = nn.Conv2d(8, 8, 3, padding=1)
        self.c3 = nn.Conv2d(8, 8, 3, padding=1)
        self.c4 = nn.Conv2d(8, 8, 1)
        self.prelu = nn.PReLU(8, 0.2)

    def forward(self, x):
        a = F.gelu(self.c1(x))
        b = F.hardswish(self.c2(a))
        c = self.prelu(self.c3(b))
        d = F.elu(c, 0.7) + F.softplus(c) + torch.tanh(c)
        e = torch.maximum(d, self.c4(a)) - torch.minimum(c, b)
        f = torch.pow(torch.sqrt(torch.exp(-e * e) + 1.0), b)
        g = torch.log(torch.abs(f) + 0.5) + torch.reciprocal(f + 1.0) - torch.erf(-f)
        return F.hardsigmoid(g) * g


def gelu_fused(model):
    """model with each x * 0.5 * (1 + erf(x / sqrt(2))) as torch 1.13 writes it (Div, Erf, Add,
    Mul, Mul) replaced by Gelu(x), and the opset set to 20."""
    g = model.graph
    users = {}
    for n in g.node:
        for i in n.input:
            users.setdefault(i, []).append(n)

    def only_user(name, op):
        u = users.get(name, [])
        return u[0] if len(u) == 1 and u[0].op_type == op else None

    fused = 0
    for erf in [n for n in g.node if n.op_type == "Erf"]:
        div = next((n for n in g.node if erf.input[0] in n.output), None)
        add = only_user(erf.output[0], "Add")
        mul = add and only_user(add.output[0], "Mul")
        half = mul and only_user(mul.output[0], "Mul")
        if not half or div.op_type != "Div" or div.input[0] not in mul.input:
            continue  # an Erf of its own (the network has one)
        x = div.input[0]
        gelu = onnx.helper.make_node("Gelu", [x], [half.output[0]], name=erf.name + "_gelu")
        at = list(g.node).index(div)
        for n in (div, erf, add, mul, half):
            g.node.remove(n)
        g.node.insert(at, gelu)
        fused += 1
    if not fused:
        raise RuntimeError("no GELU pattern found")
    model.opset_import[0].version = 20
    return model


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    torch.manual_seed(0)
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))
    net = Net().eval()
    x = torch.randn(1, 3, 20, 24)
    for opset in OPSETS:
        torch.onnx.export(net, x, os.path.join(out, "opset%d.onnx" % opset), opset_version=opset,
                          input_names=["x"], output_names=["y"])
    fused = gelu_fused(onnx.load(os.path.join(out, "opset%d.onnx" % OPSETS[-1])))
    onnx.save(fused, os.path.join(out, "opset20.onnx"))
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
