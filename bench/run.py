#!/usr/bin/python3
"""The benchmark harness: `dream` against its peers on identical work, side by side in one run,
alternating (A B A B ...) so that a change of machine load hits both.

  1. the whole default dream job (GoogLeNet, inception_4c/output, 4 octaves x 1.4, 10
     iterations, jitter 32, seed 1) on kite.jpg: `dream --timing` against bench/dream_torch.py
     (PyTorch on the same ONNX graph, the same algorithm step for step), wall time with
     start-up, the dream loop alone, peak resident memory, and how far apart the two results
     are;
  2. the forward pass to inception_4c/output at 1024x768: bench_engine forward against ONNX
     Runtime (bench/ort_forward.js on a copy of the model with that value as an output);
  3. one dream iteration (forward + backward to the pixels) at 224x224, 1024x768 and
     4096x3072 (tiles of 1024): bench_engine grad against dream_torch.py --bench-grad;
  4. the time per megapixel from 0.05 to 16 megapixels under a fixed memory budget, with
     the peak memory of each (ours only);
and the sgemm GFLOP/s of this machine measured in the same run (bench_engine sgemm), against
which the convolutions' throughput is judged.

    bench/run.py [--build DIR] [--rounds N] [--quick] [--only dream,forward,grad,mp]

Writes the report to bench/out/report.md and prints it.  Needs: the build (bench_engine,
dream), /usr/bin/python3 with torch, onnx and PIL, node with bench/node_modules
(cd bench && npm install --ignore-scripts).
"""
import argparse
import os
import re
import select
import statistics
import subprocess
import sys
import time

import numpy as np

from cpu import cpu_name  # bench/cpu.py

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
OUT = os.path.join(HERE, "out")
SHARED = os.environ.get("DREAM_SHARED", os.path.join(ROOT, "..", "shared"))
MODEL = os.path.join(SHARED, "models", "bvlc_googlenet.onnx")
KITE = os.path.join(SHARED, "images", "kite.jpg")
LAYER = "inception_4c/output"
PY = "/usr/bin/python3"


def run(cmd):
    """Runs cmd to completion: (wall seconds, stdout, stderr); exits when it fails."""
    t0 = time.monotonic()
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    wall = time.monotonic() - t0
    if p.returncode:
        sys.exit("bench/run.py: %s failed (%d):\n%s" % (" ".join(cmd), p.returncode,
                                                         p.stderr.decode()[-2000:]))
    return wall, p.stdout.decode(), p.stderr.decode()


def run_rss(cmd):
    """Runs cmd and reaps it with wait4, whose rusage is this child's alone (RUSAGE_CHILDREN
    would be the maximum over all children so far): (wall seconds, peak RSS MB, stdout,
    stderr)."""
    rd_out, wr_out = os.pipe()
    rd_err, wr_err = os.pipe()
    t0 = time.monotonic()
    pid = os.fork()
    if pid == 0:
        os.dup2(wr_out, 1)
        os.dup2(wr_err, 2)
        for fd in (rd_out, rd_err, wr_out, wr_err):
            os.close(fd)
        try:
            os.execvp(cmd[0], cmd)
        finally:
            os._exit(127)
    os.close(wr_out)
    os.close(wr_err)
    chunks = {rd_out: [], rd_err: []}
    open_fds = [rd_out, rd_err]
    while open_fds:
        ready, _, _ = select.select(open_fds, [], [])
        for fd in ready:
            data = os.read(fd, 65536)
            if data:
                chunks[fd].append(data)
            else:
                open_fds.remove(fd)
                os.close(fd)
    _, status, ru = os.wait4(pid, 0)
    wall = time.monotonic() - t0
    out = b"".join(chunks[rd_out]).decode()
    err = b"".join(chunks[rd_err]).decode()
    if os.waitstatus_to_exitcode(status):
        sys.exit("bench/run.py: %s failed:\n%s" % (" ".join(cmd), err[-2000:]))
    return wall, ru.ru_maxrss / 1024.0, out, err


def kv(line):
    return {k: v for k, v in re.findall(r"(\w+)=(\S+)", line)}


def last_line(out, prefix):
    lines = [l for l in out.splitlines() if l.startswith(prefix)]
    if not lines:
        sys.exit("bench/run.py: no '%s' line in:\n%s" % (prefix, out[-2000:]))
    return kv(lines[-1])


def med(v):
    return statistics.median(v)


def octave_sizes(w, h, octaves=4, scale=1.4):
    """dream's octave sizes (src/dream.c): lround(float(w) / 1.4f), shorter side >= 32."""
    sizes = [(w, h)]
    s = np.float32(scale)
    while len(sizes) < octaves:
        pw, ph = sizes[-1]
        nw = int(np.floor(float(np.float32(pw) / s) + 0.5))
        nh = int(np.floor(float(np.float32(ph) / s) + 0.5))
        if min(nw, nh) < 32:
            break
        sizes.append((nw, nh))
    return sizes


class Report:
    def __init__(self):
        self.lines = []

    def add(self, s=""):
        print(s, flush=True)
        self.lines.append(s)

    def save(self, path):
        with open(path, "w") as f:
            f.write("\n".join(self.lines) + "\n")


def conv_gflop(build, w, h):
    _, out, _ = run([os.path.join(build, "bench_engine"), "count", "--size", "%dx%d" % (w, h)])
    return float(last_line(out, "count")["conv_gflop"])


def bench_sgemm(build, rep):
    res = {}
    for t in (1, 2):
        vals = []
        for _ in range(3):
            _, out, _ = run([os.path.join(build, "bench_engine"), "sgemm", "--threads", str(t),
                             "--size", "2048", "--reps", "5"])
            vals.append(float(last_line(out, "sgemm")["gflops"]))
        res[t] = max(vals)
    rep.add("sgemm (OpenBLAS cblas_sgemm 2048^3, best of 3 medians): 1 thread %.1f GFLOP/s, "
            "2 threads %.1f GFLOP/s" % (res[1], res[2]))
    return res


def bench_dream(build, rounds, rep, sgemm2):
    png = os.path.join(OUT, "kite.png")
    if not os.path.exists(png):
        # Both programs read the same pixels: a lossless copy of kite.jpg (JPEG decoders
        # differ by a level or two, which would make the two dreams drift apart).
        run([PY, "-c", "from PIL import Image; Image.open(%r).convert('RGB').save(%r)" %
             (KITE, png)])
    ours_cmd = [os.path.join(build, "dream"), "dream", "-q", "--timing", "--seed", "1", png,
                os.path.join(OUT, "dream_ours.png")]
    torch_cmd = [PY, os.path.join(HERE, "dream_torch.py"), MODEL, png,
                 os.path.join(OUT, "dream_torch.png"), "--seed", "1", "--threads", "2"]
    r = {"ours": [], "torch": []}
    for i in range(rounds):
        for name, cmd, pat in (("ours", ours_cmd, r"dream: loop ([\d.]+) s"),
                               ("torch", torch_cmd, r"dream_torch: loop ([\d.]+) s")):
            wall, rss, _, err = run_rss(cmd)
            loop = float(re.search(pat, err).group(1))
            r[name].append((wall, loop, rss))
            print("  dream job round %d %-5s wall %.2f s loop %.2f s peak %.0f MB" %
                  (i + 1, name, wall, loop, rss), flush=True)
    diff = image_diff(os.path.join(OUT, "dream_ours.png"), os.path.join(OUT, "dream_torch.png"),
                      png)
    o = [med([x[k] for x in r["ours"]]) for k in range(3)]
    t = [med([x[k] for x in r["torch"]]) for k in range(3)]
    flops = sum(2 * 10 * conv_gflop(build, w, h) for w, h in octave_sizes(1352, 900))
    rep.add()
    rep.add("## 1. Whole dream job on kite.jpg (1352x900; 4 octaves x 1.4, 10 iterations, jitter "
            "32, seed 1), medians of %d alternating rounds" % rounds)
    rep.add()
    rep.add("| | wall (with start-up) | dream loop | peak memory |")
    rep.add("|---|---|---|---|")
    rep.add("| dream | %.2f s | %.2f s | %.0f MB |" % tuple(o))
    rep.add("| PyTorch 1.13 (dream_torch.py) | %.2f s | %.2f s | %.0f MB |" % tuple(t))
    rep.add("| ratio dream / PyTorch | **%.2fx** | **%.2fx** | **%.2fx** |" %
            (o[0] / t[0], o[1] / t[1], o[2] / t[2]))
    rep.add()
    rep.add("Convolution work of the job (forward + data gradient): %.0f GFLOP; in dream's loop "
            "that is **%.1f GFLOP/s** = %.0f%% of the 2-thread sgemm rate (PyTorch: %.1f "
            "GFLOP/s)." % (flops, flops / o[1], 100 * flops / o[1] / sgemm2, flops / t[1]))
    rep.add("The two results differ by %.2f levels on average (each moved %.2f / %.2f levels "
            "from the input): over 40 steps gradient ascent amplifies the rounding differences "
            "(Winograd against direct convolution flip ReLU and max-pool decisions).  Run "
            "short, the two are the same computation: %s." % (diff + (equivalence(build),)))
    return {"wall": o[0] / t[0], "loop": o[1] / t[1], "rss": o[2] / t[2],
            "conv_frac": flops / o[1] / sgemm2}


def equivalence(build):
    """dream and dream_torch.py on the same pixels for 2 octaves x 1 iteration: the mean
    difference of the results against how far each moved."""
    src = os.path.join(OUT, "kite_small.png")
    run([PY, "-c", "from PIL import Image; Image.open(%r).convert('RGB').resize((448, 298))"
         ".save(%r)" % (KITE, src)])
    a, b = os.path.join(OUT, "eq_ours.png"), os.path.join(OUT, "eq_torch.png")
    run([os.path.join(build, "dream"), "dream", "-q", "--octaves", "2", "--iters", "1",
         "--seed", "5", src, a])
    run([PY, os.path.join(HERE, "dream_torch.py"), MODEL, src, b, "--octaves", "2", "--iters",
         "1", "--seed", "5"])
    d = image_diff(a, b, src)
    return ("2 octaves x 1 iteration on kite.jpg at 448x298 give results %.3f levels apart on "
            "average, having moved %.2f levels" % (d[0], d[1]))


def image_diff(a, b, ref):
    _, out, _ = run([PY, "-c", (
        "from PIL import Image; import numpy as np\n"
        "l=lambda p: np.asarray(Image.open(p).convert('RGB'), dtype=np.float64)\n"
        "a,b,r=l(%r),l(%r),l(%r)\n"
        "print(abs(a-b).mean(), abs(a-r).mean(), abs(b-r).mean())") % (a, b, ref)])
    return tuple(float(x) for x in out.split())


def bench_forward(build, rounds, rep, sgemm2, iters):
    onnx4c = os.path.join(OUT, "googlenet_4c.onnx")
    # made again every run: a copy from before add_output.py cut the graph ran all of it
    run([PY, os.path.join(HERE, "add_output.py"), MODEL, LAYER, onnx4c])
    ours_cmd = [os.path.join(build, "bench_engine"), "forward", "--size", "1024x768",
                "--iters", str(iters), "--warmup", "2"]
    ort_cmd = ["node", os.path.join(HERE, "ort_forward.js"), onnx4c, LAYER, "1024x768",
               "--iters", str(iters), "--warmup", "2", "--threads", "2"]
    o, t, gf = [], [], 0
    for i in range(rounds):
        _, out, _ = run(ours_cmd)
        d = last_line(out, "forward")
        o.append(float(d["median_ms"]))
        gf = float(d["conv_gflop"])
        _, out, _ = run(ort_cmd)
        t.append(float(last_line(out, "ort_forward")["median_ms"]))
        print("  forward round %d: dream %.1f ms, ONNX Runtime %.1f ms" % (i + 1, o[-1], t[-1]),
              flush=True)
    rep.add()
    rep.add("## 2. Forward pass to inception_4c/output at 1024x768 (%.1f GFLOP of convolution), "
            "median of %d rounds x %d runs" % (gf, rounds, iters))
    rep.add()
    rep.add("| | time | conv GFLOP/s |")
    rep.add("|---|---|---|")
    rep.add("| dream (bench_engine forward) | %.1f ms | %.1f |" % (med(o), gf / med(o) * 1e3))
    rep.add("| ONNX Runtime 1.30 (onnxruntime-node, 2 threads) | %.1f ms | %.1f |" %
            (med(t), gf / med(t) * 1e3))
    rep.add("| ratio dream / ONNX Runtime | **%.2fx** | |" % (med(o) / med(t)))
    return {"fwd": med(o) / med(t)}


def bench_grad(build, rounds, rep, sgemm2, quick):
    cases = [(224, 224, 0, 20), (1024, 768, 0, 5), (4096, 3072, 1024, 1)]
    if quick:
        cases = cases[:2]
    rep.add()
    rep.add("## 3. One dream iteration (forward + backward to the pixels), median of %d rounds"
            % rounds)
    rep.add()
    rep.add("| size | dream | PyTorch | ratio | dream conv GFLOP/s (% of sgemm) | dream peak "
            "| PyTorch peak |")
    rep.add("|---|---|---|---|---|---|---|")
    res = {}
    for w, h, tile, iters in cases:
        ours_cmd = [os.path.join(build, "bench_engine"), "grad", "--size", "%dx%d" % (w, h),
                    "--iters", str(iters), "--warmup", "1"]
        torch_cmd = [PY, os.path.join(HERE, "dream_torch.py"), MODEL, "-", "-",
                     "--bench-grad", "%dx%d" % (w, h), "--iters", str(iters), "--threads", "2"]
        if tile:
            ours_cmd += ["--tile", str(tile)]
            torch_cmd += ["--tile", str(tile)]
        o, t, orss, trss, gf = [], [], [], [], 0
        for i in range(rounds):
            _, rss, out, _ = run_rss(ours_cmd)
            d = last_line(out, "grad")
            o.append(float(d["median_ms"]))
            orss.append(rss)
            gf = float(d["conv_gflop"])
            _, rss, out, _ = run_rss(torch_cmd)
            t.append(float(last_line(out, "grad_torch")["median_ms"]))
            trss.append(rss)
            print("  grad %dx%d round %d: dream %.1f ms, PyTorch %.1f ms" %
                  (w, h, i + 1, o[-1], t[-1]), flush=True)
        rate = gf / med(o) * 1e3
        rep.add("| %dx%d%s | %.1f ms | %.1f ms | **%.2fx** | %.1f (%.0f%%) | %.0f MB | %.0f MB |" %
                (w, h, " (tiles %d)" % tile if tile else "", med(o), med(t), med(o) / med(t),
                 rate, 100 * rate / sgemm2, med(orss), med(trss)))
        res["%dx%d" % (w, h)] = (med(o), med(t), rate)
    return res


def bench_mp(build, rep, quick, budget):
    mps = [0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 16]
    if quick:
        mps = [0.05, 0.25, 1, 4]
    rep.add()
    rep.add("## 4. Time per megapixel (one dream iteration, 4:3 images, memory budget %s)" %
            budget)
    rep.add()
    rep.add("| megapixels | size | tiles | ms / iteration | ms / megapixel | conv GFLOP/s | "
            "peak memory |")
    rep.add("|---|---|---|---|---|---|---|")
    for mp in mps:
        w = int(round((mp * 1e6 * 4 / 3) ** 0.5))
        h = int(round(w * 3 / 4))
        iters = 5 if mp <= 1 else 2 if mp <= 4 else 1
        cmd = [os.path.join(build, "bench_engine"), "grad", "--size", "%dx%d" % (w, h),
               "--iters", str(iters), "--warmup", "1", "--max-memory", str(parse_size(budget))]
        _, rss, out, _ = run_rss(cmd)
        d = last_line(out, "grad")
        ms = float(d["median_ms"])
        rep.add("| %.2f | %dx%d | %s | %.1f | %.1f | %.1f | %.0f MB |" %
                (w * h / 1e6, w, h, d["tiles"], ms, ms / (w * h / 1e6),
                 float(d["conv_gflops"]), rss))


def parse_size(s):
    m = re.fullmatch(r"(\d+)([KMG]?)", s)
    return int(m.group(1)) * {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30}[m.group(2)]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="1 round, fewer sizes")
    ap.add_argument("--only", default="dream,forward,grad,mp")
    ap.add_argument("--budget", default="1G", help="memory budget of the megapixel table")
    args = ap.parse_args()
    os.makedirs(OUT, exist_ok=True)
    rounds = 1 if args.quick else args.rounds
    only = args.only.split(",")
    rep = Report()
    load = os.getloadavg()
    rep.add("# dream benchmark, %s" % time.strftime("%Y-%m-%d %H:%M"))
    rep.add()
    rep.add("Machine: %s, %d cores; load average before the run %.2f %.2f %.2f." %
            (cpu_name(), os.cpu_count(), *load))
    sg = bench_sgemm(args.build, rep)
    res = {}
    if "dream" in only:
        res.update(bench_dream(args.build, rounds, rep, sg[2]))
    if "forward" in only:
        res.update(bench_forward(args.build, rounds, rep, sg[2], 5 if args.quick else 10))
    if "grad" in only:
        res["grad"] = bench_grad(args.build, rounds, rep, sg[2], args.quick)
    if "mp" in only:
        bench_mp(args.build, rep, args.quick, args.budget)
    rep.add()
    rep.add("## Targets")
    rep.add()
    if "wall" in res:
        rep.add("- dream job wall time <= 0.4x PyTorch's: %.2fx, %s" %
                (res["wall"], "met" if res["wall"] <= 0.4 else "NOT met"))
        rep.add("- dream job peak memory <= PyTorch's: %.2fx, %s" %
                (res["rss"], "met" if res["rss"] <= 1 else "NOT met"))
        rep.add("- convolution throughput in the dream loop >= 70%% of sgemm: %.0f%%, %s" %
                (100 * res["conv_frac"], "met" if res["conv_frac"] >= 0.7 else "NOT met"))
    if "fwd" in res:
        rep.add("- forward at 1024x768 <= 0.7x ONNX Runtime's time: %.2fx, %s" %
                (res["fwd"], "met" if res["fwd"] <= 0.7 else "NOT met"))
    rep.add("- load average after the run: %.2f %.2f %.2f" % os.getloadavg())
    rep.save(os.path.join(OUT, "report.md"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
