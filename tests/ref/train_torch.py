#!/usr/bin/python3
"""torch.optim reference steps for tests/test_train.c.

    train_torch.py DIR

DIR holds init.onnx (dream's `cnn` architecture with its initial weights), x.pb (a batch,
N x C x H x W) and labels.pb (int64, N).  The same network is written with torch.nn.functional,
from the same weights; two steps of torch.optim.SGD (lr 0.1, momentum 0.9, weight decay 1e-3)
and, from the initial weights again, two steps of torch.optim.Adam (lr 0.01, weight decay
1e-3), each on the same batch with nn.CrossEntropyLoss (mean), are taken in float32.  Writes
sgd_<name>.pb and adam_<name>.pb for every weight, and grad_<name>.pb: the gradient of the
first step's loss.  Also checks x through init.onnx with onnx.checker.
"""
import os
import sys

import numpy as np
import onnx
import torch
import torch.nn.functional as F
from onnx import numpy_helper


def load(path):
    return numpy_helper.to_array(onnx.load_tensor(path))


def net(p, x):
    h = F.max_pool2d(F.relu(F.conv2d(x, p["conv1.weight"], p["conv1.bias"], padding=1)), 2)
    h = F.max_pool2d(F.relu(F.conv2d(h, p["conv2.weight"], p["conv2.bias"], padding=1)), 2)
    return F.linear(h.flatten(1), p["fc1.weight"], p["fc1.bias"])


def main():
    d = sys.argv[1]
    torch.set_num_threads(1)
    m = onnx.load(os.path.join(d, "init.onnx"))
    onnx.checker.check_model(m)
    w0 = {t.name: torch.tensor(numpy_helper.to_array(t).copy()) for t in m.graph.initializer}
    x = torch.tensor(load(os.path.join(d, "x.pb")).copy())
    y = torch.tensor(load(os.path.join(d, "labels.pb")).astype(np.int64))
    optims = {
        "sgd": lambda ps: torch.optim.SGD(ps, lr=0.1, momentum=0.9, weight_decay=1e-3),
        "adam": lambda ps: torch.optim.Adam(ps, lr=0.01, weight_decay=1e-3),
    }
    for name, make in optims.items():
        p = {k: v.clone().requires_grad_() for k, v in w0.items()}
        opt = make(list(p.values()))
        for step in range(2):
            opt.zero_grad()
            loss = F.cross_entropy(net(p, x), y)
            loss.backward()
            if step == 0 and name == "sgd":
                for k, v in p.items():
                    onnx.save_tensor(numpy_helper.from_array(v.grad.numpy(), k),
                                     os.path.join(d, "grad_%s.pb" % k))
            print(name, step, float(loss))
            opt.step()
        for k, v in p.items():
            onnx.save_tensor(numpy_helper.from_array(v.detach().numpy(), k),
                             os.path.join(d, "%s_%s.pb" % (name, k)))


if __name__ == "__main__":
    main()
