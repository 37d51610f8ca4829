#!/usr/bin/python3
"""Seconds per frame of `dream video` against a PyTorch peer doing the same per-frame work,
at 640x360 and 1280x720 (bench/README.md, "Video").

The clip is a pan over ../shared/images/kite.jpg, resized to just cover the pan (3 px right,
1 px down per frame), written as numbered PNGs.  Both programs run the same job with dream video's defaults on GoogLeNet
(inception_4c/output, 4 octaves x 1.4, step 1.5, jitter 32): frame 1 dreamed with 10
iterations per octave; every next frame starts from raw + 0.6 x the previous hallucination
warped along OpenCV's DIS flow (medium preset, one thread, grey frames, bilinear warp with
replicated borders) and is dreamed with 5 iterations per octave; each frame is written as a
PNG.  The peer is bench/dream_torch.py's dream loop (same octaves, jitter sequence, objective,
normalization) in PyTorch on the same ONNX graph, with OpenCV's DIS from python3-opencv.

Each program runs once as a whole process on N frames; a frame's time is the interval
between the modification times of its PNG and the previous one's (the first frame's counts
from the process start, start-up included), so both are timed by the same clock at the same
point of their work, whatever each prints.  The CPU time (user + system) of each whole job is
printed too: on a machine shared with other jobs it is the steadier comparison.

    /usr/bin/python3 bench/video.py [--build build] [--frames 3] [--sizes 640x360,1280x720]
                                    [--rounds 1]

With --rounds N the two programs alternate N times per size (dream, torch, dream, ...) and the
table gives medians over the rounds (of each round's mean carried frame): on a machine whose
neighbours come and go, one round says little.
"""
import argparse
import os
import resource
import statistics
import subprocess
import sys
import time

import numpy as np
from PIL import Image

from cpu import cpu_name  # bench/cpu.py

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
SHARED = os.environ.get("DREAM_SHARED", os.path.join(ROOT, "..", "shared"))


def make_clip(folder, w, h, n):
    os.makedirs(folder, exist_ok=True)
    photo = Image.open(os.path.join(SHARED, "images", "kite.jpg")).convert("RGB")
    # the whole photo, just large enough for the pan
    scale = max((w + 3 * n + 16) / photo.width, (h + n + 16) / photo.height)
    photo = photo.resize((int(photo.width * scale) + 1, int(photo.height * scale) + 1),
                         Image.LANCZOS)
    for t in range(n):
        photo.crop((8 + 3 * t, 8 + t, 8 + 3 * t + w, 8 + t + h)).save(
            os.path.join(folder, "in_%04d.png" % (t + 1)))
    return os.path.join(folder, "in_%04d.png")


def peer(args):
    """The PyTorch peer: dream_torch's loop per frame, frames carried along DIS flow."""
    import cv2
    import torch
    sys.path.insert(0, HERE)
    import dream_torch as dt
    from onnx_torch import OnnxTorch

    torch.set_num_threads(args.threads)
    cv2.setNumThreads(1)
    net = OnnxTorch(args.model)
    for p in net.consts.values():
        p.requires_grad_(False)
    mean = torch.tensor([104.0, 117.0, 123.0])
    order = [2, 1, 0]

    def dream(pixels, iters, seed):
        import math
        base = [torch.from_numpy(pixels.copy())]
        scale = float(np.float32(1.4))
        while len(base) < 4:
            h0, w0 = base[-1].shape[:2]
            w = math.floor(float(np.float32(w0) / np.float32(scale)) + 0.5)
            h = math.floor(float(np.float32(h0) / np.float32(scale)) + 0.5)
            if min(w, h) < dt.MIN_SIDE:
                break
            base.append(dt.resize(base[-1], w, h))
        rng = dt.SplitMix(seed)
        cur = base[-1].clone()
        for k in range(len(base) - 1, -1, -1):
            h, w = base[k].shape[:2]
            if k < len(base) - 1:
                cur = base[k] + dt.resize(cur - base[k + 1], w, h)
            for _ in range(iters):
                dx, dy = rng.range(-32, 32), rng.range(-32, 32)
                g = dt.pixel_gradient(net, "inception_4c/output", cur, dx, dy, mean, order)
                m = float(g.abs().double().mean())
                if m > 0:
                    g = g / m
                cur = (cur + 1.5 * g).clamp_(0.0, 255.0)
        return cur.round().clamp(0, 255).numpy().astype(np.uint8)

    dis = None
    prev_raw = prev_out = None
    for t in range(args.peer_frames):
        raw = np.asarray(Image.open(args.peer_in % (t + 1)).convert("RGB"), dtype=np.float32)
        if t == 0:
            start, iters = raw, 10
        else:
            dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
            g1 = cv2.cvtColor(raw.round().astype(np.uint8), cv2.COLOR_RGB2GRAY)
            g0 = cv2.cvtColor(prev_raw.round().astype(np.uint8), cv2.COLOR_RGB2GRAY)
            flow = dis.calc(g1, g0, None)
            h, w = g1.shape
            gx, gy = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
            hall = prev_out.astype(np.float32) - prev_raw
            warped = cv2.remap(hall, gx + flow[..., 0], gy + flow[..., 1], cv2.INTER_LINEAR,
                               borderMode=cv2.BORDER_REPLICATE)
            start, iters = np.clip(raw + 0.6 * warped, 0, 255).astype(np.float32), 5
        out = dream(start, iters, 1 + t)
        Image.fromarray(out).save(args.peer_out % (t + 1))
        prev_out = np.asarray(Image.open(args.peer_out % (t + 1)), dtype=np.float32)
        prev_raw = raw
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--frames", type=int, default=3)
    ap.add_argument("--sizes", default="640x360,1280x720")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=1,
                    help="alternate dream and torch this many times per size; medians")
    ap.add_argument("--model", default=os.path.join(SHARED, "models", "bvlc_googlenet.onnx"))
    ap.add_argument("--only-clip", action="store_true",
                    help="write the clips to bench/out/video/WxH/in_%%04d.png and stop")
    ap.add_argument("--peer-frames", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--peer-in", help=argparse.SUPPRESS)
    ap.add_argument("--peer-out", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.peer_frames:
        return peer(args)
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads),
               DREAM_MODEL_PATH=os.path.join(SHARED, "models"))
    dream = os.path.join(args.build, "dream")
    out = os.path.join(HERE, "out", "video")
    load0 = os.getloadavg()
    rows = []
    for size in args.sizes.split(","):
        w, h = (int(v) for v in size.split("x"))
        clip = make_clip(os.path.join(out, size), w, h, args.frames)
        if args.only_clip:
            continue
        times, cpu = {"dream": [], "torch": []}, {"dream": [], "torch": []}
        for name in ("dream", "torch") * args.rounds:
            pat = os.path.join(out, size, name + "_%04d.png")
            for t in range(args.frames):
                if os.path.exists(pat % (t + 1)):
                    os.unlink(pat % (t + 1))
            if name == "dream":
                cmd = [dream, "video", "-q", "--seed", "1", clip, pat]
            else:
                cmd = [sys.executable, os.path.abspath(__file__), "--peer-frames", str(args.frames),
                       "--peer-in", clip, "--peer-out", pat, "--threads", str(args.threads),
                       "--model", args.model]
            t0 = time.time_ns()
            r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
            subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL)
            r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpu[name].append((r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime))
            marks = [t0] + [os.stat(pat % (t + 1)).st_mtime_ns for t in range(args.frames)]
            times[name].append([(b - a) / 1e9 for a, b in zip(marks, marks[1:])])
            f = times[name][-1]
            print("%s round %d %s: first frame (with start-up) %.2f s; carried frames %s s; CPU "
                  "%.1f s; load %.2f" % (size, len(times[name]), name, f[0],
                                         " ".join("%.2f" % v for v in f[1:]), cpu[name][-1],
                                         os.getloadavg()[0]), flush=True)
        med = statistics.median
        d1 = med(f[0] for f in times["dream"])
        p1 = med(f[0] for f in times["torch"])
        # per round, the mean carried frame; then the median over rounds
        d = med(sum(f[1:]) / (args.frames - 1) for f in times["dream"])
        p = med(sum(f[1:]) / (args.frames - 1) for f in times["torch"])
        cd, cp = med(cpu["dream"]), med(cpu["torch"])
        rows.append((size, d1, p1, d, p, cd, cp))
        print("%s: medians of %d rounds: carried frame dream %.2f s, torch %.2f s, ratio %.2f; "
              "CPU of the job %.1f / %.1f = %.2f" % (size, args.rounds, d, p, d / p, cd, cp,
                                                    cd / cp), flush=True)
    if args.only_clip:
        return 0
    load1 = os.getloadavg()
    print("\n%s, %d threads, load average %.2f before, %.2f after\n" %
          (cpu_name(), args.threads, load0[0], load1[0]))
    print("| size | dream: 1st frame + start-up | torch: 1st frame + start-up | dream s/frame "
          "| torch s/frame | dream / torch | CPU s of the job: dream / torch |")
    print("|---|---|---|---|---|---|---|")
    for size, d1, p1, d, p, cd, cp in rows:
        print("| %s | %.2f s | %.2f s | %.2f | %.2f | %.2f | %.1f / %.1f = %.2f |" %
              (size, d1, p1, d, p, d / p, cd, cp, cd / cp))
    return 0


if __name__ == "__main__":
    sys.exit(main())
