#!/usr/bin/python3
"""The six modern networks of issue #10 against ONNX Runtime and PyTorch, side by side,
alternating (A B A B ...) so that a change of machine load hits both:

  forward  the forward pass to the output of the last block: bench_engine forward against
           ONNX Runtime in-process (bench/ort_forward.js: session created once, then timed
           runs; a copy of the model cut at that value, bench/add_output.py);
  grad     one dream iteration, the gradient of 1/2 sum(a^2) at the dream layer (the zoo
           tests' tap, about two thirds deep) with respect to the input pixels: bench_engine
           grad (dd_dreamer_gradient) against PyTorch running the very torchvision module the
           ONNX file was exported from (same seeded weights), forward stopped at the tap by a
           hook, backward with torch.autograd.grad; --threads threads each (2).

    bench/modern.py [--build DIR] [--rounds N] [--iters N] [--only NAME,...] [--skip-export]
                    [--threads N] [--cpu-time] [--forward-only] [--wait-mode shared|split]
                    [--pairs N [--turn K] [--turn-warmup W] [--gap S]]

With --pairs, the forwards only, both engines kept running and alternated turn by turn, each
pair of turns classified by the host's mode measured just before and after it (run_pairs).

The models are exported by tests/ref/export_zoo.py's own recipe (torchvision 0.14, seeded
random weights, randomize_modern) at opset 17 into bench/out/modern/ (never committed), at a
realistic size where the model allows: 224x224 for the four with dynamic axes; the ViT
(image_size 64) and Swin-T (128, the zoo's size, see export_zoo.py) take their export size
only.  Prints a Markdown table and writes it to bench/out/modern_tN[_cpu][_forward][_MODE].md.
"""
import argparse
import importlib.util
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
OUT = os.path.join(HERE, "out", "modern")
PY = "/usr/bin/python3"

# name -> (size, the last block's module): the last stage/block before the head's final
# conv, norm or pooling.
LAST = {
    "efficientnet_b0": (224, "features.7"),
    "mobilenet_v3_small": (224, "features.11"),
    "regnet_y_400mf": (224, "trunk_output.block4"),
    "convnext_tiny": (224, "features.7"),
    "swin_t": (128, "features.7"),
    "vit_p16_l4": (64, "encoder.layers.encoder_layer_3"),
}


def load_zoo():
    spec = importlib.util.spec_from_file_location("export_zoo", os.path.join(ROOT, "tests", "ref",
                                                                             "export_zoo.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def build_model(zoo, torch, torchvision, name):
    """The model exactly as export_one builds it (same seeds, same randomization)."""
    spec = zoo.MODELS[name]
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    model = spec.build(torchvision)
    zoo.randomize_batchnorm_sequential(torch, model, spec.side, gen)
    zoo.randomize_modern(torch, model, gen)
    return model.eval()


def export(zoo, name):
    """Writes OUT/name.onnx (fixed size), OUT/name_last.onnx (the last block as an output);
    returns (size, tap value, last-block value)."""
    import onnx
    import torch
    import torchvision
    size, last = LAST[name]
    model = build_model(zoo, torch, torchvision, name)
    path = os.path.join(OUT, name + ".onnx")
    x = torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(1))
    torch.onnx.export(model, x, path, opset_version=17, input_names=["input"],
                      output_names=["logits"])
    g = onnx.load(path).graph
    tap, last_v = zoo.tap_value(g, zoo.MODELS[name].tap), zoo.tap_value(g, last)
    run([PY, os.path.join(HERE, "add_output.py"), path, last_v,
         os.path.join(OUT, name + "_last.onnx")])
    with open(os.path.join(OUT, name + ".values"), "w") as f:
        f.write("%d\n%s\n%s\n" % (size, tap, last_v))
    return size, tap, last_v


def torch_grad(name, size, iters, warmup, threads, cpu_time):
    """Runs in a child process (python3 modern.py --torch-grad NAME SIZE ...): one dream
    iteration in PyTorch, median ms."""
    import torch
    import torchvision
    torch.set_num_threads(threads)
    clock = time.process_time if cpu_time else time.monotonic
    zoo = load_zoo()
    model = build_model(zoo, torch, torchvision, name)
    module = dict(model.named_modules())[zoo.MODELS[name].tap]

    class Stop(Exception):
        pass

    st = {}

    def hook(mod, inp, out):
        st["a"] = out
        raise Stop()  # what follows the dream layer is not needed (ours does not run it)

    module.register_forward_hook(hook)
    gen = torch.Generator().manual_seed(7)
    img = torch.rand((size, size, 3), generator=gen) * 255
    mean = torch.tensor([123.675, 116.28, 103.53])
    std = torch.tensor([58.395, 57.12, 57.375])
    times = []
    for r in range(warmup + iters):
        t0 = clock()
        rolled = torch.roll(img, shifts=(-5, 3), dims=(0, 1))
        x = ((rolled - mean) / std).permute(2, 0, 1).unsqueeze(0).contiguous()
        x.requires_grad_(True)
        try:
            model(x)
        except Stop:
            pass
        a = st["a"]
        (g,) = torch.autograd.grad(0.5 * (a * a).sum(), x)
        g = torch.roll(g.squeeze(0).permute(1, 2, 0), shifts=(5, -3), dims=(0, 1)).contiguous()
        if r >= warmup:
            times.append(clock() - t0)
    print("grad_torch size=%dx%d iters=%d median_ms=%.2f min_ms=%.2f" %
          (size, size, iters, statistics.median(times) * 1e3, min(times) * 1e3))
    return 0


def run(cmd):
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    if p.returncode:
        sys.exit("bench/modern.py: %s failed (%d):\n%s" % (" ".join(cmd), p.returncode,
                                                           p.stderr.decode()[-2000:]))
    return p.stdout.decode()


# The host's two-thread modes (AMD EPYC VM, sessions 13-14): the two vCPUs sharing a cache
# (a cache line's round trip about 60 ns) or not (about 370 ns), minutes at a time.
SPLIT_NS = 150
MODES = ("shared", "split", "mixed")


def pingpong(eng):
    return field(run([eng, "pingpong"]), "pingpong", "round_trip_ns")


def host_mode(a, b):
    if a < SPLIT_NS and b < SPLIT_NS:
        return "shared"
    if a >= SPLIT_NS and b >= SPLIT_NS:
        return "split"
    return "mixed"


def field(out, prefix, key):
    for line in reversed(out.splitlines()):
        if line.startswith(prefix):
            for kv in line.split():
                if kv.startswith(key + "="):
                    return float(kv.split("=", 1)[1])
    sys.exit("bench/modern.py: no %s %s in:\n%s" % (prefix, key, out[-2000:]))


def cpu_name():
    name, flags = "?", set()
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name") and name == "?":
                name = line.split(":", 1)[1].strip()
            elif line.startswith("flags") and not flags:
                flags = set(line.split(":", 1)[1].split())
    isa = sorted(f for f in flags if f.startswith("avx512") or f.startswith("amx"))
    return name, isa


class Server:
    """One engine's forward plan or session, kept alive and asked for runs line by line
    (bench_engine serve, ort_forward.js --serve 1)."""

    def __init__(self, cmd):
        self.cmd = cmd
        self.p = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True, bufsize=1)
        self.expect("ready")

    def expect(self, prefix):
        while True:
            line = self.p.stdout.readline()
            if not line:
                sys.exit("bench/modern.py: %s ended:\n%s" % (" ".join(self.cmd),
                                                           self.p.stderr.read()[-2000:]))
            if line.startswith(prefix):
                return line

    def ask(self, command, prefix):
        self.p.stdin.write(command + "\n")
        return self.expect(prefix)

    def runs(self, n, key):
        line = self.ask("run %d" % n, "runs")
        return [float(x) for x in line.split(key + "=", 1)[1].split()[0].split(",")]

    def close(self):
        try:
            self.p.stdin.write("quit\n")
            self.p.stdin.close()
        except BrokenPipeError:
            pass
        self.p.wait()


def quantile(v, q):
    v = sorted(v)
    x = q * (len(v) - 1)
    i = int(x)
    return v[i] if i + 1 >= len(v) else v[i] + (x - i) * (v[i + 1] - v[i])


PROBE_GAVE_UP_NS = 1e6  # dd_threads_round_trip_ns gives up after 2 ms + 1 us a trip


def probe(ours, args):
    """The threads' round trip, bench_engine serve's probe after --gap seconds of rest (0 on
    one thread)."""
    if args.threads == 1:
        return 0
    time.sleep(args.gap)
    return field(ours.ask("probe", "probe"), "probe", "round_trip_ns")


def run_pairs(args, names, values, eng):
    """--pairs N: both engines kept running side by side (bench_engine serve, ort_forward.js
    --serve), then N pairs of turns, ours and ONNX Runtime's in alternating order, each turn
    --turn timed forwards after --gap seconds of rest (so that neither engine's threads still
    spin when the other starts: ONNX Runtime's pool went on taking a CPU for up to 30 ms after
    its last run, on this host) and --turn-warmup untimed ones (after the rest, the first
    forward ran 1.2-16x slower on this host, ours and ONNX Runtime's, and ONNX Runtime's next
    two up to 1.7x), each pair bracketed by two probes of the threads' round trip.  A
    pair's ratio is the median of our turn over the median of theirs; a pair lasts tens of
    milliseconds, so the host rarely changes mode inside one, and each pair is classified by
    its own probes."""
    key = "cpu_ms" if args.cpu_time else "ms"
    m = statistics.median
    load0 = os.getloadavg()
    res = {}
    for n in names:
        size, tap, last = values[n]
        sz = "%dx%d" % (size, size)
        ours = Server([eng, "serve", "--preset", os.path.join(OUT, n + ".onnx"), "--layer", last,
                       "--size", sz])
        ort = Server(["node", os.path.join(HERE, "ort_forward.js"),
                      os.path.join(OUT, n + "_last.onnx"), last, sz, "--threads",
                      str(args.threads), "--serve", "1"])
        for e in (ours, ort, ours, ort):  # warm-up
            time.sleep(args.gap)
            e.runs(args.turn, key)
        pairs = []  # (ratio, ours ms, ORT ms, mode)
        t0 = time.monotonic()
        for i in range(args.pairs):
            pp0 = probe(ours, args)
            t = {}
            for e in ((ours, ort) if i % 2 == 0 else (ort, ours)):
                time.sleep(args.gap)
                t[e] = m(e.runs(args.turn_warmup + args.turn, key)[args.turn_warmup:])
            pp1 = probe(ours, args)
            # a probe that gave up (its threads waited on the scheduler) tells no mode
            mode = "one thread" if args.threads == 1 else \
                "mixed" if max(pp0, pp1) >= PROBE_GAVE_UP_NS else host_mode(pp0, pp1)
            pairs.append((t[ours] / t[ort], t[ours], t[ort], mode))
        ours.close()
        ort.close()
        res[n] = pairs
        by = {}
        for r in pairs:
            by.setdefault(r[3], []).append(r[0])
        print("  %s: %d pairs in %.0f s; %s" % (
            n, len(pairs), time.monotonic() - t0,
            "; ".join("%s %d, median %.3f" % (k, len(v), m(v)) for k, v in sorted(by.items()))),
            flush=True)
    load1 = os.getloadavg()
    name, isa = cpu_name()
    modes = MODES if args.threads > 1 else ()  # columns beside "all pairs"

    def cell(pairs):
        r = [x[0] for x in pairs]
        if not r:
            return "-"
        return "%d: **%.2fx** (%.2f-%.2f), %d%% faster; %.3g / %.3g ms" % (
            len(r), m(r), quantile(r, 0.25), quantile(r, 0.75),
            round(100.0 * sum(1 for x in r if x < 1) / len(r)),
            m([x[1] for x in pairs]), m([x[2] for x in pairs]))

    lines = ["CPU: %s; %s" % (name, " ".join(isa) if isa else "no AVX-512/AMX"),
             "load average before %.2f, after %.2f (1 min)" % (load0[0], load1[0]),
             "%s; %d thread(s) each; %d pairs of turns per model, the two engines' turns in "
             "alternating order, each turn (and probe) after %.3g s of rest, each turn %d timed "
             "forwards after %d untimed; "
             "a pair's ratio: "
             "our turn's median over ONNX Runtime's" %
             ("CPU time per run (all threads)" if args.cpu_time else "wall time per run",
              args.threads, args.pairs, args.gap, args.turn, args.turn_warmup),
             "",
             "Each cell: pairs: the median ratio (the quartiles), the share of pairs where ours "
             "was faster; the median forward times, ours / ONNX Runtime's." +
             (" Modes by the threads' round trip (bench_engine serve's probe) before and after "
              "each pair: `shared` under %d ns both times, `split` over it both times, `mixed` "
              "otherwise or when a probe gave up (its threads waited on the scheduler)." % SPLIT_NS if args.threads > 1 else ""),
             "",
             "| model | size | all pairs |" + "".join(" %s |" % k for k in modes),
             "|---|---|---|" + "---|" * len(modes)]
    for n in names:
        size = values[n][0]
        lines.append("| %s | %dx%d | %s |" % (n, size, size, cell(res[n])) +
                     "".join(" %s |" % cell([x for x in res[n] if x[3] == k]) for k in modes))
    text = "\n".join(lines) + "\n"
    print("\n" + text)
    path = os.path.join(HERE, "out", "modern_pairs_t%d%s.md" % (args.threads,
                                                               "_cpu" if args.cpu_time else ""))
    with open(path, "w") as f:
        f.write(text)
    print("written to %s" % path)
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--iters", type=int, default=5)
    ap.add_argument("--only", default=",".join(LAST))
    ap.add_argument("--threads", type=int, default=2, help="threads of every engine (2)")
    ap.add_argument("--openblas-coretype", metavar="CORE",
                    help="set OPENBLAS_CORETYPE=CORE for every engine (e.g. SkylakeX where "
                         "OpenBLAS does not recognize the CPU and falls back to Prescott)")
    ap.add_argument("--cpu-time", action="store_true",
                    help="time the process's CPU time per run instead of wall time (all "
                         "threads; for a loaded machine, with --threads 1)")
    ap.add_argument("--skip-export", action="store_true", help="reuse bench/out/modern/")
    ap.add_argument("--forward-only", action="store_true",
                    help="time the forward passes only (no dream iteration): shorter rounds, "
                         "so each pair runs closer together on a host whose speed changes")
    ap.add_argument("--wait-mode", choices=("shared", "split"),
                    help="on two threads, start each round only once bench_engine pingpong "
                         "finds the host in this mode (polled every 2 s), to measure one mode "
                         "on a host that switches; a round the host leaves it during still "
                         "counts as mixed")
    ap.add_argument("--wait-max", type=float, default=1800,
                    help="with --wait-mode: seconds of waiting in all before the remaining "
                         "rounds are given up (1800)")
    ap.add_argument("--pairs", type=int, metavar="N",
                    help="forward only: keep both engines running and alternate them turn by "
                         "turn, N pairs per model, each pair classified by its own probes of "
                         "the host's mode (see run_pairs); instead of --rounds")
    ap.add_argument("--turn", type=int, default=5, help="with --pairs: timed forwards per turn (5)")
    ap.add_argument("--turn-warmup", type=int, default=3,
                    help="with --pairs: untimed forwards first in each turn (3)")
    ap.add_argument("--gap", type=float, default=0.1,
                    help="with --pairs: seconds of rest before each turn and each probe (0.1)")
    ap.add_argument("--torch-grad", nargs=2, metavar=("NAME", "SIZE"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.torch_grad:
        return torch_grad(args.torch_grad[0], int(args.torch_grad[1]), args.iters, 1,
                          args.threads, args.cpu_time)
    # ours: OpenMP and OpenBLAS threads as the user's environment would set them
    os.environ["OMP_NUM_THREADS"] = str(args.threads)
    os.environ["OPENBLAS_NUM_THREADS"] = str(args.threads)
    if args.cpu_time:
        os.environ["BENCH_CPU_TIME"] = "1"
    if args.openblas_coretype:
        os.environ["OPENBLAS_CORETYPE"] = args.openblas_coretype
    ort_key = "median_cpu_ms" if args.cpu_time else "median_ms"
    os.makedirs(OUT, exist_ok=True)
    names = args.only.split(",")
    zoo = load_zoo()
    values = {}
    for n in names:
        vf = os.path.join(OUT, n + ".values")
        if args.skip_export and os.path.exists(vf):
            s, tap, last = open(vf).read().split("\n")[:3]
            values[n] = (int(s), tap, last)
        else:
            t0 = time.monotonic()
            values[n] = export(zoo, n)
            print("exported %s in %.1f s" % (n, time.monotonic() - t0), flush=True)
    load0 = os.getloadavg()
    eng = os.path.join(args.build, "bench_engine")
    if args.pairs:
        return run_pairs(args, names, values, eng)
    rows, by_mode = [], {}
    waited = 0.0  # seconds spent waiting for --wait-mode

    def elsewhere(pp):  # the host not in the --wait-mode mode
        return args.wait_mode and args.threads > 1 and \
            (pp >= SPLIT_NS) != (args.wait_mode == "split")

    for n in names:
        size, tap, last = values[n]
        sz = "%dx%d" % (size, size)
        onnx_path = os.path.join(OUT, n + ".onnx")
        f_ours = [eng, "forward", "--preset", onnx_path, "--layer", last, "--size", sz,
                  "--iters", str(args.iters), "--warmup", "2"]
        f_ort = ["node", os.path.join(HERE, "ort_forward.js"), os.path.join(OUT, n + "_last.onnx"),
                 last, sz, "--iters", str(args.iters), "--warmup", "2", "--threads", str(args.threads)]
        g_ours = [eng, "grad", "--preset", onnx_path, "--layer", tap, "--size", sz,
                  "--iters", str(args.iters), "--warmup", "1"]
        g_torch = [PY, os.path.abspath(__file__), "--torch-grad", n, str(size),
                   "--iters", str(args.iters), "--threads", str(args.threads)] + \
            (["--cpu-time"] if args.cpu_time else [])
        fo, ft, go, gt, mode = [], [], [], [], []
        for r in range(args.rounds):
            pp0 = pingpong(eng) if args.threads > 1 else 0
            while elsewhere(pp0) and waited < args.wait_max:
                time.sleep(2)
                waited += 2
                pp0 = pingpong(eng)
            if elsewhere(pp0):
                print("  %s: the host did not return to the %s mode within --wait-max; "
                      "%d of %d rounds run" % (n, args.wait_mode, r, args.rounds), flush=True)
                break
            fo.append(field(run(f_ours), "forward", "median_ms"))
            ft.append(field(run(f_ort), "ort_forward", ort_key))
            pp1 = pingpong(eng) if args.threads > 1 else 0
            mode.append(host_mode(pp0, pp1))
            if args.forward_only:
                print("  %s round %d: forward %.3g vs ORT %.3g ms%s" %
                      (n, r + 1, fo[-1], ft[-1],
                       "; threads' round trip before %.0f, after %.0f ns (%s)" %
                       (pp0, pp1, mode[-1])
                       if args.threads > 1 else ""), flush=True)
                continue
            go.append(field(run(g_ours), "grad", "median_ms"))
            gt.append(field(run(g_torch), "grad_torch", "median_ms"))
            print("  %s round %d: forward %.3g vs ORT %.3g ms; grad %.3g vs torch %.3g ms%s" %
                  (n, r + 1, fo[-1], ft[-1], go[-1], gt[-1],
                   "; threads' round trip before the forwards %.0f, after %.0f ns (%s)" %
                   (pp0, pp1, mode[-1]) if args.threads > 1 else ""), flush=True)
        m = statistics.median
        if not fo:  # --wait-mode gave up before the first round
            by_mode[n] = {k: [] for k in MODES}
            continue
        # the ratio of each round's pair (run back to back, so a change of the host's speed
        # between rounds cancels), their median and range
        fr = [a / b for a, b in zip(fo, ft)]
        gr = [a / b for a, b in zip(go, gt)] or [float("nan")]
        rows.append((n, sz, last, tap, m(fo), m(ft), m(go or gr), m(gt or gr), m(fr), min(fr),
                     max(fr), m(gr), min(gr), max(gr)))
        by_mode[n] = {k: [x for x, md in zip(fr, mode) if md == k] for k in MODES}
    load1 = os.getloadavg()
    name, isa = cpu_name()
    env = dict(os.environ, OPENBLAS_VERBOSE="2")
    core = subprocess.run([eng, "sgemm", "--threads", "1", "--size", "64", "--reps", "1"], env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT).stdout.decode()
    core = core.split("Core:")[1].split()[0] if "Core:" in core else "?"
    lines = ["CPU: %s; %s" % (name, " ".join(isa) if isa else "no AVX-512/AMX"),
             "OpenBLAS %s kernels (%s)" % (core, "OPENBLAS_CORETYPE=" + args.openblas_coretype
                                           if args.openblas_coretype else "as it detects the CPU"),
             "load average before %.2f, after %.2f (1 min)" % (load0[0], load1[0]),
             "%s; %d thread(s) each; medians of %d alternating rounds x %d timed runs each; "
             "ratio: the median of the rounds' ratios (each round's two runs back to back), "
             "with their range" %
             ("CPU time per run (all threads)" if args.cpu_time else "wall time per run",
              args.threads, args.rounds, args.iters),
             "",
             "| model | size | forward to last block: dream | ORT | ratio (range) | dream "
             "iteration: dream | PyTorch | ratio (range) |",
             "|---|---|---|---|---|---|---|---|"]
    if args.wait_mode:
        lines.insert(3, "rounds started only in the `%s` mode (--wait-mode); %.0f s waited" %
                     (args.wait_mode, waited))
    for n, sz, last, tap, a, b, c, d, fr, fr0, fr1, gr, gr0, gr1 in rows:
        it = ("%.3g ms | %.3g ms | **%.2fx** (%.2f-%.2f)" % (c, d, gr, gr0, gr1)
              if not args.forward_only else "not timed | | ")
        lines.append("| %s | %s | %.3g ms | %.3g ms | **%.2fx** (%.2f-%.2f) | %s |" %
                     (n, sz, a, b, fr, fr0, fr1, it))
    if args.threads > 1:
        lines.append("")
        lines.append("Forward ratios by the host's mode, from `bench_engine pingpong` (one cache "
                     "line's round trip between two threads) before and after each round: "
                     "`shared` under %d ns both times, `split` over it both times, `mixed` "
                     "otherwise:" % SPLIT_NS)
        lines.append("")
        lines.append("| model | " + " | ".join(MODES) + " |")
        lines.append("|---|" + "---|" * len(MODES))
        for n in names:
            cells = []
            for k in MODES:
                v = by_mode[n][k]
                cells.append("%d: **%.2fx** (%.2f-%.2f)" % (len(v), statistics.median(v), min(v),
                                                            max(v)) if v else "0")
            lines.append("| %s | %s |" % (n, " | ".join(cells)))
    lines.append("")
    lines.append("Values (last block; dream layer):")
    for n, sz, last, tap, *_ in rows:
        lines.append("- %s: `%s`; `%s`" % (n, last, tap))
    text = "\n".join(lines) + "\n"
    print(text)
    with open(os.path.join(HERE, "out", "modern_t%d%s%s%s.md" % (
            args.threads, "_cpu" if args.cpu_time else "",
            "_forward" if args.forward_only else "",
            "_" + args.wait_mode if args.wait_mode else "")), "w") as f:
        f.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
