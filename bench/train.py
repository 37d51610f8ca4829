#!/usr/bin/python3
"""Training throughput: `dream train --arch cnn` against the same network in PyTorch.

    bench/train.py [--dream build/dream] [--images 4000] [--epochs 3] [--batch 32] [--rounds 3]
                   [--threads 2]

Both train dream's `cnn` (conv3x3 8 - relu - maxpool 2 - conv3x3 16 - relu - maxpool 2 -
linear) on 32x32 RGB shapes (`dream shapes`), with softmax cross-entropy and SGD with
momentum 0.9, batch 32, on 2 threads (OMP_NUM_THREADS=2, torch.set_num_threads(2); --threads
changes both).  Images
per second count training steps only (forward, backward, update), not the decoding of the
PNGs: dream's per-epoch times (the seconds `dream train` prints after each epoch, the first
epoch left out) against a PyTorch loop over the same images already in memory.  The runs
alternate (dream, torch, dream, torch ...) so that a change of machine load hits both; the
medians are printed with the CPU's name.  Each round also prints the CPU seconds the two
used (dream: the whole run, its PNG decoding included; PyTorch: the timed epochs), which tell
how much of a core they actually got on a loaded machine.
"""
import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from cpu import cpu_name  # bench/cpu.py


def dream_rate(dream, data, out, epochs, batch, n, threads):
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    r0 = os.times()
    w0 = time.perf_counter()
    r = subprocess.run([dream, "train", "--arch", "cnn", "--epochs", str(epochs), "--batch", str(batch),
                        "--optimizer", "sgd", "--lr", "0.01", "--seed", "1", data, out],
                       env=env, capture_output=True, text=True, check=True)
    r1 = os.times()
    wall = time.perf_counter() - w0
    cpu = (r1.children_user - r0.children_user) + (r1.children_system - r0.children_system)
    t = [float(x) for x in re.findall(r"epoch \d+/\d+ .*?([0-9.]+) s", r.stderr)]
    if len(t) != epochs:
        sys.exit("could not read dream's epoch times:\n" + r.stderr)
    per = [b - a for a, b in zip(t, t[1:])]  # epochs 2..E
    return n / statistics.median(per), cpu, wall


class Cnn(nn.Module):
    def __init__(self, k):
        super().__init__()
        self.c1 = nn.Conv2d(3, 8, 3, padding=1)
        self.c2 = nn.Conv2d(8, 16, 3, padding=1)
        self.fc = nn.Linear(16 * 8 * 8, k)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.c1(x)), 2)
        x = F.max_pool2d(F.relu(self.c2(x)), 2)
        return self.fc(x.flatten(1))


def torch_rate(x, y, epochs, batch, threads):
    torch.set_num_threads(threads)
    torch.manual_seed(1)
    net = Cnn(int(y.max()) + 1)
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
    n = len(x)
    times, cpus = [], []
    for e in range(epochs):
        perm = torch.randperm(n)
        t0, c0 = time.perf_counter(), time.process_time()
        for i in range(0, n, batch):
            idx = perm[i:i + batch]
            opt.zero_grad()
            loss = F.cross_entropy(net(x[idx]), y[idx])
            loss.backward()
            opt.step()
        times.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
    return n / statistics.median(times[1:]), sum(cpus[1:]), sum(times[1:])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dream", default="build/dream")
    ap.add_argument("--images", type=int, default=4000)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        data = os.path.join(tmp, "shapes")
        subprocess.run([a.dream, "shapes", "-q", "--size", "32", "--count", str(a.images // 4),
                        "--seed", "1", data], check=True)
        from PIL import Image
        xs, ys = [], []
        for k, cls in enumerate(sorted(os.listdir(data))):
            for f in sorted(os.listdir(os.path.join(data, cls))):
                im = np.asarray(Image.open(os.path.join(data, cls, f)).convert("RGB"), np.float32)
                xs.append((im.transpose(2, 0, 1) / 255 - 0.5) / 0.5)
                ys.append(k)
        x = torch.tensor(np.stack(xs))
        y = torch.tensor(ys)
        n = len(ys)
        d, t = [], []
        for r in range(a.rounds):
            dr, dc, dw = dream_rate(a.dream, data, os.path.join(tmp, "m.onnx"), a.epochs, a.batch, n,
                                    a.threads)
            tr, tc, tw = torch_rate(x, y, a.epochs, a.batch, a.threads)
            d.append(dr)
            t.append(tr)
            print("round %d: dream %.0f images/s (%.1f CPU s in %.1f s, whole run), "
                  "PyTorch %.0f images/s (%.1f CPU s in %.1f s, timed epochs)"
                  % (r + 1, dr, dc, dw, tr, tc, tw), flush=True)
    dm, tm = statistics.median(d), statistics.median(t)
    print("\n%s, %d thread(s), cnn on 32x32, batch %d, SGD momentum 0.9, %d images:"
          % (cpu_name(), a.threads, a.batch, n))
    print("| | images/s (median of %d) |\n|---|---|" % a.rounds)
    print("| dream train | %.0f |\n| PyTorch %s | %.0f |" % (dm, torch.__version__, tm))
    print("dream / PyTorch: %.2fx" % (dm / tm))


if __name__ == "__main__":
    main()
