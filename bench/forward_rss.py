#!/usr/bin/python3
"""The forward pass as a whole process, against ONNX Runtime's (issue #13, part 3):
`dream run --output inception_4c/output` on a 1024x768 input against
`node bench/ort_forward.js` (onnxruntime-node, one run, no warm-up) on a copy of the model with
that value as an output, alternating (dream, ORT, dream, ORT, ...) so that a change of machine
load hits both.  Each process is reaped with wait4: wall time (fork to exit), user and system
CPU time, peak RSS and page faults, its own alone.

    bench/forward_rss.py [--build DIR] [--rounds N] [--size WxH] [--baseline DREAM]

--baseline: another `dream` binary (e.g. one built from an older commit) run in the same
alternation, as a third program.  Writes bench/out/forward_rss.md and prints it.
Targets (the issue's): peak RSS <= ONNX Runtime's; whole-process time <= 0.7x ONNX Runtime's
as a median, with no run over 1.0x (each dream run against the ORT run beside it).
"""
import argparse
import os
import resource
import statistics
import subprocess
import sys
import time

from cpu import cpu_name  # bench/cpu.py

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
OUT = os.path.join(HERE, "out")
SHARED = os.environ.get("DREAM_SHARED", os.path.join(ROOT, "..", "shared"))
MODEL = os.path.join(SHARED, "models", "bvlc_googlenet.onnx")
KITE = os.path.join(SHARED, "images", "kite.jpg")
LAYER = "inception_4c/output"
PY = "/usr/bin/python3"


def measure(cmd):
    """Runs cmd (output discarded) and reaps it with wait4: a dict of wall, user, sys (s),
    rss (MiB), minflt, majflt."""
    t0 = time.monotonic()
    with open(os.devnull, "wb") as null:
        p = subprocess.Popen(cmd, stdout=null, stderr=subprocess.PIPE)
        err = p.stderr.read()
        _, status, ru = os.wait4(p.pid, 0)
    wall = time.monotonic() - t0
    p.returncode = os.waitstatus_to_exitcode(status)
    if p.returncode:
        sys.exit("forward_rss.py: %s failed (%d):\n%s" % (" ".join(cmd), p.returncode,
                                                           err.decode()[-2000:]))
    return {"wall": wall, "user": ru.ru_utime, "sys": ru.ru_stime,
            "rss": ru.ru_maxrss / 1024.0, "minflt": ru.ru_minflt, "majflt": ru.ru_majflt}


def prepare(w, h):
    """The input TensorProto (kite.jpg resized to WxH, BGR minus the mean: GoogLeNet's
    preprocessing) and the model copy with LAYER as an output, in bench/out/."""
    import numpy as np
    import onnx
    from onnx import numpy_helper
    from PIL import Image
    os.makedirs(OUT, exist_ok=True)
    pb = os.path.join(OUT, "kite_%dx%d.pb" % (w, h))
    if not os.path.exists(pb):
        im = Image.open(KITE).convert("RGB").resize((w, h), Image.BILINEAR)
        a = np.asarray(im, dtype=np.float32)[:, :, ::-1] - np.array([104, 117, 123], np.float32)
        x = np.ascontiguousarray(a.transpose(2, 0, 1)[None])
        with open(pb, "wb") as f:
            f.write(numpy_helper.from_array(x, onnx.load(MODEL).graph.input[0].name)
                    .SerializeToString())
    onnx4c = os.path.join(OUT, "googlenet_4c.onnx")
    # made again every run: a copy from before add_output.py cut the graph ran all of it
    subprocess.run([PY, os.path.join(HERE, "add_output.py"), MODEL, LAYER, onnx4c], check=True)
    return pb, onnx4c


def stats(rows, key):
    v = [r[key] for r in rows]
    return statistics.median(v), min(v), max(v)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--size", default="1024x768")
    ap.add_argument("--baseline", help="another dream binary, run in the same alternation")
    args = ap.parse_args()
    w, h = map(int, args.size.split("x"))
    pb, onnx4c = prepare(w, h)
    save = os.path.join(OUT, "forward_rss_run")
    progs = [("dream", [os.path.join(args.build, "dream"), "run", "-q", "-m", MODEL,
                        "--input", pb, "--output", LAYER, "--save", save])]
    if args.baseline:
        progs.append(("baseline", [args.baseline, "run", "-q", "-m", MODEL, "--input", pb,
                                   "--output", LAYER, "--save", save + "_baseline"]))
    progs.append(("ort", ["node", os.path.join(HERE, "ort_forward.js"), onnx4c, LAYER,
                          "%dx%d" % (w, h), "--iters", "1", "--warmup", "0"]))
    load0 = os.getloadavg()
    res = {name: [] for name, _ in progs}
    for name, cmd in progs:  # one untimed run each: the files in the page cache
        measure(cmd)
    for r in range(args.rounds):
        line = []
        for name, cmd in progs:
            m = measure(cmd)
            res[name].append(m)
            line.append("%s %.2f s (user %.2f, sys %.2f) %.0f MiB %d faults" %
                        (name, m["wall"], m["user"], m["sys"], m["rss"], m["minflt"]))
        print("  round %d: %s" % (r + 1, "; ".join(line)), file=sys.stderr, flush=True)
    load1 = os.getloadavg()

    out = []
    out.append("Forward pass to %s at %dx%d as a whole process, %d alternating rounds" %
               (LAYER, w, h, args.rounds))
    out.append("CPU: %s, %d cores; load average before %.2f, after %.2f" %
               (cpu_name(), os.cpu_count(), load0[0], load1[0]))
    out.append("")
    out.append("| program | wall median (min-max) | user | sys | peak RSS (min-max) | "
               "minor faults |")
    out.append("|---|---|---|---|---|---|")
    labels = {"dream": "dream run", "baseline": "dream run (baseline)",
              "ort": "ONNX Runtime (node ort_forward.js)"}
    for name, _ in progs:
        rows = res[name]
        wm, wl, wh = stats(rows, "wall")
        rm, rl, rh = stats(rows, "rss")
        out.append("| %s | %.2f s (%.2f-%.2f) | %.2f s | %.2f s | %.0f MiB (%.0f-%.0f) | %d |" %
                   (labels[name], wm, wl, wh, stats(rows, "user")[0], stats(rows, "sys")[0],
                    rm, rl, rh, stats(rows, "minflt")[0]))
    d, o = res["dream"], res["ort"]
    ratios = [a["wall"] / b["wall"] for a, b in zip(d, o)]
    med_ratio = statistics.median([a["wall"] for a in d]) / statistics.median(
        [b["wall"] for b in o])
    rss_ok = max(a["rss"] for a in d) <= min(b["rss"] for b in o)
    out.append("")
    out.append("- peak RSS <= ONNX Runtime's: dream's largest %.0f MiB, ORT's smallest %.0f MiB: "
               "%s" % (max(a["rss"] for a in d), min(b["rss"] for b in o),
                       "met" if rss_ok else "NOT met"))
    out.append("- whole-process time <= 0.7x ONNX Runtime's (medians): %.2fx: %s" %
               (med_ratio, "met" if med_ratio <= 0.7 else "NOT met"))
    out.append("- no run over 1.0x (each dream run / the ORT run after it): largest %.2fx "
               "(%s): %s" % (max(ratios), ", ".join("%.2f" % r for r in ratios),
                             "met" if max(ratios) <= 1.0 else "NOT met"))
    text = "\n".join(out)
    print(text)
    with open(os.path.join(OUT, "forward_rss.md"), "w") as f:
        f.write(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
