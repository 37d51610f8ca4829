#!/usr/bin/python3
"""Bisects dream's fp32 forward values and input gradients against PyTorch float64, layer by
layer, and checks that equal inputs give equal outputs (issue #13: exact ties in fp32).

    tools/ties.py [--dream build/dream] [--size 320x240] IMAGE|const:V|flat [--layer L]...

IMAGE is a photo (resized, BGR, minus GoogLeNet's mean), const:V an image of the constant V
(already preprocessed), flat a synthetic picture of large constant areas.  For each layer it
prints, for dream and for PyTorch float32: the forward value's max |difference| to float64
over max |float64| and the input gradient's relative L2 distance to float64's (gradient of
1/2 sum(a^2)).  It also prints, per layer, how many channels have more than one distinct
value among the positions where float64's value is exactly the centre's (the positions the
image's border does not reach when the input is constant; the "interior").
"""
import argparse
import os
import subprocess
import sys
import tempfile

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "bench"))
from onnx_torch import OnnxTorch, load_pb, save_pb  # noqa: E402

DEFAULT_LAYERS = ["conv1/7x7_s2", "pool1/norm1", "conv2/3x3", "conv2/norm2", "pool2/3x3_s2",
                  "inception_3a/output", "inception_3b/output", "inception_4a/output",
                  "inception_4c/output", "inception_4e/output", "inception_5b/output"]
MEAN_BGR = (104.0, 117.0, 123.0)


def flat_image(w, h):
    """Large constant areas (sky, walls) with sharp edges between them, grey like camera.png."""
    img = np.full((h, w), 160.0)
    img[: h // 3, :] = 200.0
    img[h // 2:, : w // 3] = 40.0
    img[h // 3: 2 * h // 3, w // 2: 3 * w // 4] = 90.0
    yy, xx = np.mgrid[0:h, 0:w]
    img[(yy - 2 * h // 3) ** 2 + (xx - 2 * w // 3) ** 2 < (h // 6) ** 2] = 120.0
    return np.stack([img, img, img])  # grey: B = G = R


def make_input(spec, w, h):
    if spec.startswith("const:"):
        return np.full((1, 3, h, w), float(spec[6:]))
    if spec == "flat":
        bgr = flat_image(w, h)
    else:
        from PIL import Image
        im = Image.open(spec).convert("RGB").resize((w, h), Image.BILINEAR)
        bgr = np.asarray(im, dtype=np.float64).transpose(2, 0, 1)[::-1]
    x = bgr - np.array(MEAN_BGR).reshape(3, 1, 1)
    return x.reshape(1, 3, h, w).astype(np.float32)  # the input both sides see: float32


def rel_l2(a, b):
    return float(np.linalg.norm((a - b).ravel()) / max(np.linalg.norm(b.ravel()), 1e-300))


def max_rel(a, b):
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-300))


def untied_channels(ours, ref):
    """Channels (of N x C x H x W) with more than one distinct value of ours where ref equals
    its centre value exactly; and the most distinct values in one channel."""
    c, h, w = ref.shape[1:]
    bad, most = 0, 1
    for k in range(c):
        r, o = ref[0, k], ours[0, k]
        mask = r == r[h // 2, w // 2]
        n = len(np.unique(o[mask]))
        most = max(most, n)
        bad += n > 1
    return bad, most


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("image")
    ap.add_argument("--dream", default=os.path.join(HERE, "..", "build", "dream"))
    ap.add_argument("--model", default=os.path.join(os.environ.get("DREAM_SHARED",
                                                                   os.path.join(HERE, "..", "..", "shared")),
                                                    "models", "bvlc_googlenet.onnx"))
    ap.add_argument("--size", default="320x240")
    ap.add_argument("--layer", action="append")
    ap.add_argument("--no-grad", action="store_true", help="forward values only")
    args = ap.parse_args()
    layers = args.layer or DEFAULT_LAYERS
    w, h = (int(v) for v in args.size.split("x"))
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))
    x = make_input(args.image, w, h)
    const = args.image.startswith("const:")
    net64 = OnnxTorch(args.model, torch.float64)
    net32 = OnnxTorch(args.model, torch.float32)
    name = net64.inputs[0]
    with tempfile.TemporaryDirectory() as tmp:
        inp = os.path.join(tmp, "in.pb")
        save_pb(inp, torch.from_numpy(x), name)
        cmd = [args.dream, "run", "-q", "--model", args.model, "--input", inp, "--save", tmp]
        for l in layers:
            cmd += ["--output", l]
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        ours = {l: load_pb(os.path.join(tmp, l.replace("/", "_") + ".pb"), torch.float64)[1].numpy()
                for l in layers}
        x64 = torch.from_numpy(x).double()
        v64 = {k: v.numpy() for k, v in net64.run({name: x64}, layers).items()}
        v32 = {k: v.double().numpy() for k, v in net32.run({name: x64.float()}, layers).items()}
        print("%-22s %10s %10s %10s %10s %s" % ("layer", "fwd dream", "fwd torch", "grad dream",
                                                 "grad torch", "untied channels (most values)"
                                                 if const else ""))
        for l in layers:
            fd, ft = max_rel(ours[l], v64[l]), max_rel(v32[l], v64[l])
            gd = gt = float("nan")
            if not args.no_grad:
                gp = os.path.join(tmp, "g.pb")
                subprocess.run([args.dream, "grad", "-q", "--model", args.model, "--input", inp,
                                "--layer", l, "--save", gp], check=True)
                g = load_pb(gp, torch.float64)[1].numpy()
                grads = []
                for net, xx in ((net64, x64), (net32, x64.float())):
                    xv = xx.clone().requires_grad_(True)
                    a = net.run({name: xv}, [l])[l]
                    (0.5 * (a * a).sum()).backward()
                    grads.append(xv.grad.double().numpy())
                gd, gt = rel_l2(g, grads[0]), rel_l2(grads[1], grads[0])
            extra = ""
            if const and ours[l].ndim == 4:
                bd, md = untied_channels(ours[l], v64[l])
                bt, mt = untied_channels(v32[l], v64[l])
                extra = "dream %d/%d (%d), torch32 %d (%d)" % (bd, ours[l].shape[1], md, bt, mt)
            print("%-22s %10.3g %10.3g %10.3g %10.3g %s" % (l, fd, ft, gd, gt, extra), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
