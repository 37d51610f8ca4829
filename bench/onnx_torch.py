#!/usr/bin/python3
"""A minimal ONNX -> PyTorch interpreter: reads a model with the `onnx` package and runs its
graph with torch.nn.functional, node by node, stopping at the requested values.

Debian ships no onnx2torch; this is the peer the benchmark runs and the oracle the gradient
tests compare against (torch autograd flows through every op here).  It covers what BVLC
GoogLeNet and SqueezeNet use and the common CNN ops around them: Conv (groups, pads, strides,
dilations, auto_pad), Relu, LeakyRelu, Sigmoid, Clip, MaxPool and AveragePool (ceil_mode,
asymmetric pads), GlobalAveragePool, GlobalMaxPool, LRN, Concat, Flatten, Gemm, MatMul,
Softmax, Dropout, Identity, Add, Sub, Mul, Div, Sum, BatchNormalization, ReduceMean, Reshape,
Transpose, Squeeze, Unsqueeze, Constant, Shape, Gather, Cast.

    from onnx_torch import OnnxTorch
    net = OnnxTorch("bvlc_googlenet.onnx", dtype=torch.float32)
    vals = net.run({"data": x}, ["inception_4c/output"])   # dict name -> tensor

Command line: onnx_torch.py MODEL INPUT.pb VALUE [VALUE...] [--save DIR] prints each value's
shape and a checksum, and with --save writes DIR/<value with / as _>.pb.
"""
import argparse
import math
import os
import sys

import numpy as np
import onnx
import onnx.numpy_helper
import torch
import torch.nn.functional as F


def _attrs(node):
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def _pads_for(attrs, in_spatial, kernel, strides, dilations):
    """ONNX pads as (begin..., end...), resolving auto_pad."""
    n = len(kernel)
    auto = attrs.get("auto_pad", b"NOTSET")
    auto = auto.decode() if isinstance(auto, bytes) else auto
    if auto in ("NOTSET", ""):
        return list(attrs.get("pads", [0] * (2 * n)))
    if auto == "VALID":
        return [0] * (2 * n)
    begin, end = [], []
    for i in range(n):
        out = math.ceil(in_spatial[i] / strides[i])
        eff = (kernel[i] - 1) * dilations[i] + 1
        total = max((out - 1) * strides[i] + eff - in_spatial[i], 0)
        small = total // 2
        if auto == "SAME_UPPER":
            begin.append(small)
            end.append(total - small)
        else:
            begin.append(total - small)
            end.append(small)
    return begin + end


def _torch_pad(pads):
    """ONNX (b0, b1, e0, e1) -> F.pad order (last dim first): (b1, e1, b0, e0)."""
    n = len(pads) // 2
    out = []
    for i in reversed(range(n)):
        out += [pads[i], pads[i + n]]
    return out


def _pool_out_len(length, k, s, d, pb, pe, ceil_mode):
    eff = (k - 1) * d + 1
    num = length + pb + pe - eff
    return (math.ceil(num / s) if ceil_mode else num // s) + 1


def _pool(x, attrs, kind):
    kernel = list(attrs["kernel_shape"])
    n = len(kernel)
    strides = list(attrs.get("strides", [1] * n))
    dil = list(attrs.get("dilations", [1] * n))
    ceil_mode = int(attrs.get("ceil_mode", 0))
    pads = _pads_for(attrs, list(x.shape[2:]), kernel, strides, dil)
    # Explicit padding, then extend the far edge so that every ONNX output window exists
    # (ceil_mode overhang); the extension is -inf for max and excluded from averages.
    extra = []
    for i in range(n):
        o = _pool_out_len(x.shape[2 + i], kernel[i], strides[i], dil[i], pads[i], pads[i + n],
                          ceil_mode)
        need = (o - 1) * strides[i] + (kernel[i] - 1) * dil[i] + 1
        have = x.shape[2 + i] + pads[i] + pads[i + n]
        extra.append(max(need - have, 0))
    full = list(pads[:n]) + [pads[i + n] + extra[i] for i in range(n)]
    if kind == "max":
        xp = F.pad(x, _torch_pad(full), value=-math.inf)
        fn = {1: F.max_pool1d, 2: F.max_pool2d, 3: F.max_pool3d}[n]
        return fn(xp, kernel, strides, 0, dil)
    if any(d != 1 for d in dil):
        raise NotImplementedError("AveragePool with dilations")
    include_pad = int(attrs.get("count_include_pad", 0))
    xp = F.pad(x, _torch_pad(full), value=0.0)
    ones = torch.ones((1, 1) + tuple(x.shape[2:]), dtype=x.dtype)
    # Padding counts in the divisor with count_include_pad; the ceil_mode overhang never does.
    mask = F.pad(ones, _torch_pad(list(pads)), value=1.0 if include_pad else 0.0)
    mask = F.pad(mask, _torch_pad([0] * n + extra), value=0.0)
    fn = {1: F.avg_pool1d, 2: F.avg_pool2d, 3: F.avg_pool3d}[n]
    if n == 2:
        s = fn(xp, kernel, strides, 0, divisor_override=1)
        c = fn(mask, kernel, strides, 0, divisor_override=1)
    else:
        size = float(np.prod(kernel))
        s = fn(xp, kernel, strides, 0) * size
        c = fn(mask, kernel, strides, 0) * size
    return s / c


def _lrn(x, attrs):
    """ONNX LRN: y = x / (bias + alpha/size * sum of x^2 over the channel window)^beta, the
    window being floor((size-1)/2) channels before and ceil((size-1)/2) after.  Written out
    because torch's local_response_norm places the window the other way for even sizes."""
    size = int(attrs["size"])
    alpha = float(attrs.get("alpha", 1e-4))
    beta = float(attrs.get("beta", 0.75))
    bias = float(attrs.get("bias", 1.0))
    sq = x * x
    before, after = (size - 1) // 2, size - 1 - (size - 1) // 2
    c = x.shape[1]
    padded = F.pad(sq.transpose(1, -1), (before, after)).transpose(1, -1)
    acc = sum(padded[:, i:i + c] for i in range(size))
    return x / (bias + alpha / size * acc) ** beta


def _softmax(x, attrs, opset, log=False):
    axis = int(attrs.get("axis", -1 if opset >= 13 else 1))
    fn = torch.log_softmax if log else torch.softmax
    if opset >= 13:
        return fn(x, dim=axis)
    axis = axis % x.dim()
    shape = x.shape
    flat = x.reshape(int(np.prod(shape[:axis])), -1)
    return fn(flat, dim=1).reshape(shape)


class OnnxTorch:
    """An ONNX graph evaluated with torch ops.  Initializers become tensors of `dtype`."""

    def __init__(self, path, dtype=torch.float32):
        self.model = onnx.load(path)
        self.dtype = dtype
        self.opset = 13
        for imp in self.model.opset_import:
            if imp.domain in ("", "ai.onnx"):
                self.opset = imp.version
        g = self.model.graph
        self.consts = {}
        for init in g.initializer:
            self.consts[init.name] = self._tensor(onnx.numpy_helper.to_array(init))
        self.nodes = list(g.node)
        self.producer = {}
        for i, n in enumerate(self.nodes):
            for o in n.output:
                if o:
                    self.producer[o] = i
        self.inputs = [i.name for i in g.input if i.name not in self.consts]
        self.outputs = [o.name for o in g.output]

    def _tensor(self, arr):
        t = torch.from_numpy(np.array(arr))
        return t.to(self.dtype) if t.is_floating_point() else t

    def needed(self, targets):
        """Indices of the nodes the targets depend on, in graph order."""
        need, stack = set(), list(targets)
        while stack:
            v = stack.pop()
            i = self.producer.get(v)
            if i is None or i in need:
                continue
            need.add(i)
            stack.extend(x for x in self.nodes[i].input if x)
        return sorted(need)

    def run(self, feeds, targets=None):
        """Evaluate the nodes `targets` need (all outputs by default); returns name -> tensor
        for the targets."""
        targets = list(targets or self.outputs)
        env = dict(self.consts)
        env.update(feeds)
        for i in self.needed(targets):
            node = self.nodes[i]
            args = [env[x] if x else None for x in node.input]
            outs = self._op(node, args)
            if not isinstance(outs, (list, tuple)):
                outs = [outs]
            for name, val in zip(node.output, outs):
                if name:
                    env[name] = val
        missing = [t for t in targets if t not in env]
        if missing:
            raise KeyError("values not computed: %s" % ", ".join(missing))
        return {t: env[t] for t in targets}

    def _op(self, node, x):
        op, a = node.op_type, _attrs(node)
        if op == "Conv":
            w = x[1]
            n = w.dim() - 2
            kernel = list(a.get("kernel_shape", w.shape[2:]))
            strides = list(a.get("strides", [1] * n))
            dil = list(a.get("dilations", [1] * n))
            pads = _pads_for(a, list(x[0].shape[2:]), kernel, strides, dil)
            inp = F.pad(x[0], _torch_pad(pads)) if any(pads) else x[0]
            fn = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}[n]
            b = x[2] if len(x) > 2 else None
            return fn(inp, w, b, strides, 0, dil, int(a.get("group", 1)))
        if op == "Relu":
            return F.relu(x[0])
        if op == "LeakyRelu":
            return F.leaky_relu(x[0], float(a.get("alpha", 0.01)))
        if op == "Sigmoid":
            return torch.sigmoid(x[0])
        if op == "Clip":
            lo = a.get("min") if self.opset < 11 else (x[1] if len(x) > 1 else None)
            hi = a.get("max") if self.opset < 11 else (x[2] if len(x) > 2 else None)
            lo = float(lo) if lo is not None else None
            hi = float(hi) if hi is not None else None
            return torch.clamp(x[0], lo, hi)
        if op == "MaxPool":
            return _pool(x[0], a, "max")
        if op == "AveragePool":
            return _pool(x[0], a, "avg")
        if op == "GlobalAveragePool":
            return x[0].mean(dim=tuple(range(2, x[0].dim())), keepdim=True)
        if op == "GlobalMaxPool":
            return x[0].amax(dim=tuple(range(2, x[0].dim())), keepdim=True)
        if op == "LRN":
            return _lrn(x[0], a)
        if op == "Concat":
            return torch.cat(x, dim=int(a["axis"]))
        if op == "Flatten":
            axis = int(a.get("axis", 1)) % max(x[0].dim(), 1)
            return x[0].reshape(int(np.prod(x[0].shape[:axis])), -1)
        if op == "Gemm":
            A, B = x[0], x[1]
            if a.get("transA", 0):
                A = A.t()
            if a.get("transB", 0):
                B = B.t()
            y = float(a.get("alpha", 1.0)) * (A @ B)
            if len(x) > 2 and x[2] is not None:
                y = y + float(a.get("beta", 1.0)) * x[2]
            return y
        if op == "MatMul":
            return torch.matmul(x[0], x[1])
        if op == "Softmax":
            return _softmax(x[0], a, self.opset)
        if op == "LogSoftmax":
            return _softmax(x[0], a, self.opset, log=True)
        if op in ("Dropout", "Identity"):
            return x[0]
        if op == "Add":
            return x[0] + x[1]
        if op == "Sub":
            return x[0] - x[1]
        if op == "Mul":
            return x[0] * x[1]
        if op == "Div":
            return x[0] / x[1]
        if op == "Sum":
            return sum(x[1:], x[0])
        if op == "BatchNormalization":
            return F.batch_norm(x[0], x[3], x[4], x[1], x[2], False, 0.0,
                                float(a.get("epsilon", 1e-5)))
        if op == "ReduceMean":
            axes = a.get("axes")
            if axes is None and len(x) > 1 and x[1] is not None:
                axes = x[1].tolist()
            keep = bool(a.get("keepdims", 1))
            if not axes:
                return x[0].mean() if not keep else x[0].mean(
                    dim=tuple(range(x[0].dim())), keepdim=True)
            return x[0].mean(dim=tuple(int(v) for v in axes), keepdim=keep)
        if op == "Reshape":
            shape = [int(v) for v in x[1].tolist()]
            if not a.get("allowzero", 0):
                shape = [x[0].shape[i] if v == 0 else v for i, v in enumerate(shape)]
            return x[0].reshape(shape)
        if op == "Transpose":
            perm = a.get("perm", list(reversed(range(x[0].dim()))))
            return x[0].permute(*perm)
        if op in ("Squeeze", "Unsqueeze"):
            axes = a.get("axes")
            if axes is None and len(x) > 1 and x[1] is not None:
                axes = x[1].tolist()
            y = x[0]
            if op == "Squeeze":
                if axes is None:
                    return y.squeeze()
                for ax in sorted((int(v) % y.dim() for v in axes), reverse=True):
                    y = y.squeeze(ax)
                return y
            rank = y.dim() + len(axes)
            for ax in sorted(int(v) % rank for v in axes):
                y = y.unsqueeze(ax)
            return y
        if op == "Constant":
            return self._tensor(onnx.numpy_helper.to_array(a["value"]))
        if op == "Shape":
            return torch.tensor(list(x[0].shape), dtype=torch.int64)
        if op == "Gather":
            axis = int(a.get("axis", 0))
            idx = x[1].long()
            idx = torch.where(idx < 0, idx + x[0].shape[axis], idx)
            return torch.index_select(x[0], axis, idx.reshape(-1)).reshape(
                x[0].shape[:axis] + idx.shape + x[0].shape[axis + 1:])
        if op == "Cast":
            to = int(a["to"])
            return x[0].to(self.dtype if to in (1, 11) else torch.int64)
        raise NotImplementedError("onnx_torch: op %s (node '%s') is not supported" %
                                  (op, node.name))


def load_pb(path, dtype=torch.float32):
    """A TensorProto file -> (name, tensor)."""
    t = onnx.TensorProto()
    with open(path, "rb") as f:
        t.ParseFromString(f.read())
    return t.name, torch.from_numpy(onnx.numpy_helper.to_array(t).copy()).to(dtype)


def save_pb(path, tensor, name):
    """Writes a float32 TensorProto (atomically: temporary file, then rename)."""
    arr = tensor.detach().cpu().numpy().astype(np.float32)
    proto = onnx.numpy_helper.from_array(arr, name)
    tmp = "%s.tmp.%d" % (path, os.getpid())
    with open(tmp, "wb") as f:
        f.write(proto.SerializeToString())
    os.replace(tmp, path)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model")
    ap.add_argument("input", help="TensorProto .pb for the graph's first input")
    ap.add_argument("values", nargs="+")
    ap.add_argument("--save", metavar="DIR")
    ap.add_argument("--double", action="store_true", help="compute in float64")
    args = ap.parse_args()
    dtype = torch.float64 if args.double else torch.float32
    net = OnnxTorch(args.model, dtype)
    _, x = load_pb(args.input, dtype)
    with torch.no_grad():
        out = net.run({net.inputs[0]: x}, args.values)
    for name, t in out.items():
        print("%s %s sum=%.6g sumsq=%.6g" % (name, "x".join(map(str, t.shape)),
                                             float(t.sum()), float((t * t).sum())))
        if args.save:
            save_pb(os.path.join(args.save, name.replace("/", "_") + ".pb"), t, name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
