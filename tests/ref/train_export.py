#!/usr/bin/python3
"""Checks a model `dream train` wrote, for tests/cli/test_train_cli.c.

    train_export.py DIR

DIR/out.onnx (the `cnn` architecture as trained), DIR/x.pb (an input batch of one) and
DIR/y/logits.pb (what `dream run` computed).  The model must pass onnx.checker (full check),
carry the dream.* metadata_props, and PyTorch -- the same network written with
torch.nn.functional from the file's initializers, in float64 -- must give dream's logits
within 1e-4 relative to their largest magnitude.  Exit status 1 with a message otherwise.
"""
import os
import sys

import numpy as np
import onnx
import torch
import torch.nn.functional as F
from onnx import numpy_helper


def main():
    d = sys.argv[1]
    m = onnx.load(os.path.join(d, "out.onnx"))
    onnx.checker.check_model(m, full_check=True)
    meta = {p.key: p.value for p in m.metadata_props}
    for k in ("dream.size", "dream.mean", "dream.std", "dream.channel_order", "dream.labels"):
        if k not in meta:
            sys.exit("metadata %s missing: %s" % (k, meta))
    p = {t.name: torch.tensor(numpy_helper.to_array(t).astype(np.float64)) for t in m.graph.initializer}
    x = torch.tensor(numpy_helper.to_array(onnx.load_tensor(os.path.join(d, "x.pb"))).astype(np.float64))
    h = F.max_pool2d(F.relu(F.conv2d(x, p["conv1.weight"], p["conv1.bias"], padding=1)), 2)
    h = F.max_pool2d(F.relu(F.conv2d(h, p["conv2.weight"], p["conv2.bias"], padding=1)), 2)
    y = F.linear(h.flatten(1), p["fc1.weight"], p["fc1.bias"]).numpy()
    got = numpy_helper.to_array(onnx.load_tensor(os.path.join(d, "y", "logits.pb")))
    err = np.abs(got - y).max() / max(np.abs(y).max(), 1e-12)
    print("torch", y.ravel(), "dream", got.ravel(), "relative error", err)
    if got.shape != y.shape or not err < 1e-4:
        sys.exit("dream run and PyTorch disagree: relative error %g" % err)


if __name__ == "__main__":
    main()
