#!/usr/bin/python3
"""DeepDream in PyTorch on the same ONNX graph (bench/onnx_torch.py), the peer of `dream` in
bench/run.py.  The algorithm is dream's own (src/dream.c, the original notebook's), step for
step, so both programs do the same work:

  - octaves: sizes divided by the scale (rounded) while the shorter side stays >= 32; each
    base is the previous one resized bilinearly with corners aligned (scipy's zoom order=1);
    the detail dreamed at one octave is resized to the next and added to its base;
  - each iteration: roll by (dx, dy) drawn from the same seeded splitmix64 sequence as dream,
    forward to the layer, objective 1/2 sum(a^2), gradient to the pixels, un-roll, divide by
    mean |g|, step 1.5, clip to 0..255;
  - preprocessing of the preset (GoogLeNet: BGR, 0..255, minus 104, 117, 123).

    dream_torch.py MODEL IN OUT [--layer L] [--octaves 4] [--octave-scale 1.4] [--iters 10]
                   [--step 1.5] [--jitter 32] [--seed 1] [--threads 2]

Prints 'dream_torch: loop S s' (the dream itself, after loading, before writing) on stderr.

    dream_torch.py MODEL - - --bench-grad WxH [--tile N] [--iters N] [--warmup N]

times one iteration's gradient (forward + backward to the pixels) on a W x H picture, in
tiles of N x N when --tile is given (as many as dream uses: ceil(W/N) x ceil(H/N)), and
prints 'grad_torch size=WxH ... median_ms=...' like bench_engine grad.
"""
import argparse
import math
import os
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from onnx_torch import OnnxTorch  # noqa: E402

MASK = (1 << 64) - 1
MIN_SIDE = 32


class SplitMix:
    """dream's jitter generator (src/util.c dd_rng_next / dd_rng_range)."""

    def __init__(self, seed):
        self.s = seed & MASK

    def next(self):
        self.s = (self.s + 0x9E3779B97F4A7C15) & MASK
        z = self.s
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
        return z ^ (z >> 31)

    def range(self, lo, hi):
        span = hi - lo + 1
        return lo + (((self.next() >> 32) * span) >> 32)


def resize(img, w, h):
    """Bilinear, corners to corners, on an H x W x 3 tensor."""
    x = img.permute(2, 0, 1).unsqueeze(0)
    y = F.interpolate(x, size=(h, w), mode="bilinear", align_corners=True)
    return y.squeeze(0).permute(1, 2, 0).contiguous()


def pixel_gradient(net, layer, cur, dx, dy, mean, order):
    """Gradient of 1/2 sum(a^2) at `layer` by the pixels of cur (H x W x 3) rolled by (dx, dy),
    un-rolled: what dream's dd_dreamer_gradient computes."""
    rolled = torch.roll(cur, shifts=(dy, dx), dims=(0, 1))
    x = (rolled[:, :, order] - mean).permute(2, 0, 1).unsqueeze(0).contiguous()
    x.requires_grad_(True)
    a = net.run({net.inputs[0]: x}, [layer])[layer]
    loss = 0.5 * (a * a).sum()
    (g,) = torch.autograd.grad(loss, x)
    g = g.squeeze(0).permute(1, 2, 0)[:, :, order]
    return torch.roll(g, shifts=(-dy, -dx), dims=(0, 1))


def bench_grad(net, args, mean, order):
    w, h = (int(v) for v in args.bench_grad.split("x"))
    gen = torch.Generator().manual_seed(7)
    img = torch.rand((h, w, 3), generator=gen) * 255
    tw, th = (min(args.tile, w), min(args.tile, h)) if args.tile else (w, h)
    nx, ny = -(-w // tw), -(-h // th)
    times = []
    for r in range(args.warmup + args.iters):
        t0 = time.monotonic()
        for ty in range(ny):
            for tx in range(nx):
                y0, x0 = min(ty * th, h - th), min(tx * tw, w - tw)
                tile = img[y0:y0 + th, x0:x0 + tw]
                pixel_gradient(net, args.layer, tile, 3, -5, mean, order)
        if r >= args.warmup:
            times.append(time.monotonic() - t0)
    times.sort()
    n = len(times)
    medv = times[n // 2] if n % 2 else 0.5 * (times[n // 2 - 1] + times[n // 2])
    print("grad_torch size=%dx%d tile=%dx%d tiles=%d iters=%d median_ms=%.2f min_ms=%.2f" %
          (w, h, tw, th, nx * ny, args.iters, medv * 1e3, times[0] * 1e3))
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model")
    ap.add_argument("input")
    ap.add_argument("output")
    ap.add_argument("--layer", default="inception_4c/output")
    ap.add_argument("--octaves", type=int, default=4)
    ap.add_argument("--octave-scale", type=float, default=1.4)
    ap.add_argument("--iters", type=int, default=10)
    ap.add_argument("--step", type=float, default=1.5)
    ap.add_argument("--jitter", type=int, default=32)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--mean", default="104,117,123")
    ap.add_argument("--rgb", action="store_true", help="the model takes RGB (default BGR)")
    ap.add_argument("--bench-grad", metavar="WxH")
    ap.add_argument("--tile", type=int, default=0)
    ap.add_argument("--warmup", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    net = OnnxTorch(args.model)
    for p in net.consts.values():
        p.requires_grad_(False)
    mean = torch.tensor([float(v) for v in args.mean.split(",")])
    order = [0, 1, 2] if args.rgb else [2, 1, 0]
    if args.bench_grad:
        return bench_grad(net, args, mean, order)
    pixels = np.asarray(Image.open(args.input).convert("RGB"), dtype=np.float32)

    start = time.monotonic()
    base = [torch.from_numpy(pixels.copy())]
    scale = float(np.float32(args.octave_scale))  # dream keeps it as a C float
    while len(base) < args.octaves:
        h0, w0 = base[-1].shape[:2]
        w = math.floor(float(np.float32(w0) / np.float32(scale)) + 0.5)
        h = math.floor(float(np.float32(h0) / np.float32(scale)) + 0.5)
        if min(w, h) < MIN_SIDE:
            break
        base.append(resize(base[-1], w, h))
    rng = SplitMix(args.seed)
    cur = base[-1].clone()
    for k in range(len(base) - 1, -1, -1):
        h, w = base[k].shape[:2]
        if k < len(base) - 1:
            cur = base[k] + resize(cur - base[k + 1], w, h)
        for _ in range(args.iters):
            dx = rng.range(-args.jitter, args.jitter)
            dy = rng.range(-args.jitter, args.jitter)
            g = pixel_gradient(net, args.layer, cur, dx, dy, mean, order)
            mean_abs = float(g.abs().double().mean())
            if mean_abs > 0:
                g = g / mean_abs
            cur = (cur + args.step * g).clamp_(0.0, 255.0)
    loop = time.monotonic() - start
    print("dream_torch: loop %.3f s" % loop, file=sys.stderr)
    out = cur.round().clamp(0, 255).to(torch.uint8).numpy()
    Image.fromarray(out).save(args.output, quality=95)
    return 0


if __name__ == "__main__":
    sys.exit(main())
