#!/usr/bin/python3
"""Exports torchvision's classic CNN families to ONNX with PyTorch's reference outputs, for
tests/test_zoo.c.

    export_zoo.py OUTDIR [--models resnet18,vgg11,...] [--force]

No pretrained weights are needed (nor reachable): each architecture is built with seeded
random weights, which checks operator coverage and numerics as well as real weights would.
For each model:
  - torch.manual_seed(0), the model built, its BatchNorm statistics measured on random images
    (train-mode forward) and then perturbed, and its affine parameters randomized, so that
    no BatchNorm is an identity and activations keep realistic magnitudes through the depth;
  - model.eval(), torch.onnx.export at opset 11 and 13 (default export options, so BatchNorm
    after a Conv is folded into it as users get it; height and width are dynamic axes where
    the exporter allows it -- not for VGG and AlexNet, whose adaptive average pooling needs
    the input size);
  - OUTDIR/<model>/opset<N>.onnx, input_0.pb (the input), output_0.pb (torch's float32
    output); with dynamic axes also input_1.pb and output_1.pb at a second, non-square size;
    for the gradient cases act_0.pb (torch's float32 activation of an
    intermediate layer, the value named in the manifest) and grad_0.pb: the gradient of
    1/2 * sum(a^2) of that activation with respect to the input, by torch autograd in float64
    from the same float32 weights.
OUTDIR/manifest.json describes everything (sizes, value names, ops, torch's own float32
error against float64); OUTDIR/zoo.tsv is the same for the C test, one line per file:
    model opset onnx input output input_1|- output_1|- tap|- act|- grad|- kinks.tsv|- kinks.pb|-
(kinks: see gradient_reference).

A run whose manifest was written by this same script (same bytes, same models) with every file
present does nothing, so a build directory exports once.  Exits non-zero when torch,
torchvision or onnx is missing or any export fails.
"""
import argparse
import collections
import copy
import hashlib
import importlib.util
import json
import os
import sys
import time

OPSETS = (11, 13)

# name: (constructor kwargs, input side, module whose output is the gradient tap or None).
# Sides: small where the architecture allows it, to keep the test fast; VGG and AlexNet need
# 224 (their adaptive pooling exports only as an exact AveragePool), Inception v3 needs >= 75
# (139 keeps every map of its last blocks at least 3x3).
MODELS = collections.OrderedDict([
    ("resnet18", ({}, 96, "layer3")),
    ("mobilenet_v2", ({}, 96, "features.13")),
    ("mobilenet_v3_small", ({}, 96, None)),
    ("mnasnet0_5", ({}, 96, None)),
    ("shufflenet_v2_x0_5", ({}, 96, "stage3")),
    ("densenet121", ({}, 96, "features.denseblock3")),
    ("inception_v3", ({"aux_logits": False, "init_weights": True}, 139, None)),
    ("vgg11", ({}, 224, None)),
    ("alexnet", ({}, 224, None)),
    ("squeezenet1_0", ({}, 96, None)),
    ("googlenet", ({"aux_logits": False, "init_weights": True}, 96, None)),
])

# Exported but not expected to load: the engine has no HardSigmoid (opsets 11 and 13 write
# hardswish as x * HardSigmoid(x); HardSwish itself is opset 14).
UNSUPPORTED = {"mobilenet_v3_small": "HardSigmoid (hardsigmoid, and hardswish as x*HardSigmoid(x)) is not implemented"}


def script_hash():
    with open(os.path.abspath(__file__), "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def up_to_date(outdir, models, digest):
    path = os.path.join(outdir, "manifest.json")
    try:
        with open(path) as f:
            man = json.load(f)
    except (OSError, ValueError):
        return False
    if man.get("script_sha256") != digest or [m["name"] for m in man["models"]] != models:
        return False
    for m in man["models"]:
        for f in m["files"]:
            if not os.path.exists(os.path.join(outdir, f)):
                return False
    return os.path.exists(os.path.join(outdir, "zoo.tsv"))


def randomize_batchnorm(torch, model, side, gen):
    """Real statistics from random images, then perturbed: BN is neither an identity nor a
    blow-up."""
    bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    if not bns:
        return 0
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None  # cumulative average over the calibration batch
    model.train()
    with torch.no_grad():
        model(torch.randn(4, 3, side, side, generator=gen))
    with torch.no_grad():
        for bn in bns:
            c = bn.num_features
            std = bn.running_var.sqrt()
            bn.running_mean += 0.2 * std * torch.randn(c, generator=gen)
            bn.running_var *= 0.5 + torch.rand(c, generator=gen)
            bn.weight.copy_(0.5 + torch.rand(c, generator=gen))
            bn.bias.copy_(0.1 * torch.randn(c, generator=gen))
    return len(bns)


def tap_value(graph, module_path):
    """The ONNX value that is `module_path`'s output: torch 1.13 names nodes by scope
    ('/layer3/layer3.1/relu_1/Relu' for layer3.1.relu_1), so it is the last node under the
    module's scope whose output is read outside it."""
    parts = module_path.split(".")

    # each level is named as torch.onnx.utils._unqualified_variable_name does: the qualified
    # name from its last non-numeric atom on ('layer3.1', 'relu', 'conv.0.0')
    def level(atoms):
        for i in reversed(range(len(atoms))):
            if not atoms[i].isnumeric():
                return ".".join(atoms[i:])
        return ".".join(atoms)

    prefix = "/" + "/".join(level(parts[:i + 1]) for i in range(len(parts))) + "/"
    inside = [n for n in graph.node if n.name.startswith(prefix)]
    if not inside:
        raise RuntimeError("no node under scope %s" % prefix)
    names = {o for n in inside for o in n.output}
    read_outside = {i for n in graph.node if not n.name.startswith(prefix) for i in n.input}
    read_outside |= {o.name for o in graph.output}
    for n in reversed(inside):
        for o in n.output:
            if o in names and o in read_outside:
                return o
    raise RuntimeError("nothing under scope %s is read outside it" % prefix)


# Kinks: the gradient of a ReLU network jumps where a pre-activation crosses 0 (6 for ReLU6)
# or where a max-pool window's maximum changes hands.  Elements closer to a kink than float32
# rounding can land on either side in any float32 engine, and one such element changes the
# input gradient by its whole contribution (measured: one ReLU of resnet18's layer1, 6.6e-6
# from 0, moves the gradient by 1.4e-2 relative L2).  So the reference lists every element
# within KINK_TAU * (peak of its tensor) of a kink, with the change of the input gradient if
# it took the other side; the test moves the reference to whichever side its own forward took.
KINK_TAU = 3e-5


def gradient_reference(torch, model, x, tap):
    """Autograd in float64 of 1/2 sum(a^2), a = output of module `tap`: (objective, input
    gradient, kinks, number of those module calls before the tap).  Each kink is a dict: kind ('Relu', 'Clip' or 'MaxPool', the ONNX op),
    call (index among the calls of those modules before the tap), i and j (flat indices in
    the op's input: the element, and for MaxPool the float64 argmax i and the runner-up j),
    pi, pj (their float64 values), lo, hi (Clip bounds), peak (max |input|) and effect (the
    input gradient's change if the other side is taken)."""
    import torch.nn.functional as F
    m = copy.deepcopy(model).double()
    calls = []

    def record(kind):
        def hook(mod, inp, out):
            out.retain_grad()
            calls.append((kind, mod, inp[0], out))
        return hook

    for mod in m.modules():
        if isinstance(mod, (torch.nn.ReLU, torch.nn.ReLU6)):
            mod.inplace = False  # the hooks need the input as it was
            mod.register_forward_hook(record("Clip" if isinstance(mod, torch.nn.ReLU6) else "Relu"))
        elif isinstance(mod, torch.nn.MaxPool2d):
            mod.register_forward_hook(record("MaxPool"))
    st = {}
    dict(m.named_modules())[tap].register_forward_hook(
        lambda mod, inp, out: st.update(a=out, n=len(calls)))
    x64 = x.double().requires_grad_(True)
    m(x64)
    a = st["a"]
    obj = 0.5 * (a * a).sum()
    obj.backward(retain_graph=True)
    grad = x64.grad.clone()

    def d_input(p, flat):
        g, = torch.autograd.grad(p.reshape(-1)[flat], x64, retain_graph=True)
        return g[0]

    kinks = []
    for call, (kind, mod, p, out) in enumerate(calls[:st["n"]]):
        if out.grad is None:
            continue
        pd, u = p.detach(), out.grad
        peak = float(pd.abs().max())
        tol = KINK_TAU * peak
        if kind in ("Relu", "Clip"):
            lo, hi = (0.0, 6.0) if kind == "Clip" else (0.0, float("inf"))
            near = ((pd - lo).abs() < tol) | ((pd - hi).abs() < tol)
            for flat in near.reshape(-1).nonzero().reshape(-1).tolist():
                uf = float(u.reshape(-1)[flat])
                if uf == 0:
                    continue
                v = float(pd.reshape(-1)[flat])
                passes = lo < v < hi  # torch passes the gradient strictly inside
                eff = (-uf if passes else uf) * d_input(p, flat)
                kinks.append(dict(kind=kind, call=call, i=flat, j=-1, pi=v, pj=0.0, lo=lo,
                                  hi=hi, peak=peak, effect=eff))
        else:
            k, s_, pad = mod.kernel_size, mod.stride, mod.padding
            k, s_, pad = [(v, v) if isinstance(v, int) else tuple(v) for v in (k, s_, pad)]
            if mod.ceil_mode or mod.dilation not in (1, (1, 1)):
                raise RuntimeError("max-pool kinks: only floor mode without dilation")
            n, c, h, w = pd.shape
            padded = F.pad(pd, (pad[1], pad[1], pad[0], pad[0]), value=float("-inf"))
            cols = F.unfold(padded, k, stride=s_).reshape(n, c, k[0] * k[1], -1)
            top, pos = cols.topk(2, dim=2)
            ow = (w + 2 * pad[1] - k[1]) // s_[1] + 1
            close = (top[:, :, 0] - top[:, :, 1]) < tol
            for nn_, cc, ll in close.nonzero().tolist():
                uf = float(u[nn_, cc].reshape(-1)[ll])
                if uf == 0:
                    continue
                oy, ox = divmod(ll, ow)
                flats = []
                for r in (0, 1):
                    ky, kx = divmod(int(pos[nn_, cc, r, ll]), k[1])
                    yy, xx = oy * s_[0] - pad[0] + ky, ox * s_[1] - pad[1] + kx
                    flats.append(((nn_ * c + cc) * h + yy) * w + xx)
                i, j = flats
                if float(top[nn_, cc, 0, ll]) == float(top[nn_, cc, 1, ll]) and j < i:
                    i, j = j, i  # an exact tie goes to the first in scan order
                eff = uf * (d_input(p, j) - d_input(p, i))
                kinks.append(dict(kind=kind, call=call, i=i, j=j, pi=float(top[nn_, cc, 0, ll]),
                                  pj=float(top[nn_, cc, 1, ll]), lo=0.0, hi=0.0, peak=peak,
                                  effect=eff))
    return float(obj), grad, [k for k in kinks if float(k["effect"].abs().max()) > 0], st["n"]


def write_kinks(path, graph, tap, kinks, n_calls):
    """kinks as lines of: value kind i j pi pj lo hi peak, the value being the ONNX input of
    the Relu, Clip or MaxPool node that is the torch module call `call` (the nodes of those
    types that the tap depends on, in graph order, are the calls before the tap in order)."""
    producer = {o: n for n in graph.node for o in n.output}
    need, stack = set(), [tap]
    while stack:
        v = stack.pop()
        n = producer.get(v)
        if n is not None and id(n) not in need:
            need.add(id(n))
            stack.extend(n.input)
    nodes = [n for n in graph.node if id(n) in need and n.op_type in ("Relu", "Clip", "MaxPool")]
    if len(nodes) != n_calls:
        raise RuntimeError("%s: %d Relu/Clip/MaxPool nodes before the tap, %d torch calls" % (
            path, len(nodes), n_calls))
    with open(path, "w") as f:
        for k in kinks:
            n = nodes[k["call"]]
            if n.op_type != k["kind"]:
                raise RuntimeError("%s: torch call %d is %s, ONNX node %s is %s" % (
                    path, k["call"], k["kind"], n.name, n.op_type))
            f.write("%s\t%s\t%d\t%d\t%.17g\t%.17g\t%.17g\t%.17g\t%.17g\n" % (
                n.input[0], k["kind"], k["i"], k["j"], k["pi"], k["pj"], k["lo"],
                min(k["hi"], 3e38), k["peak"]))


def export_one(torch, torchvision, onnx, nph, name, outdir):
    kwargs, side, tap = MODELS[name]
    t0 = time.time()
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    model = getattr(torchvision.models, name)(**kwargs)
    n_bn = randomize_batchnorm(torch, model, side, gen)
    model.eval()
    x = torch.randn(1, 3, side, side, generator=gen)

    stored = {}
    hooks = []
    if tap:
        module = dict(model.named_modules())[tap]
        hooks.append(module.register_forward_hook(lambda mod, inp, out: stored.__setitem__("a", out)))
    with torch.no_grad():
        y = model(x)
    act = stored.get("a")
    for h in hooks:
        h.remove()

    # float64 from the same float32 weights: torch's own float32 error
    with torch.no_grad():
        y64 = copy.deepcopy(model).double()(x.double())
    peak = float(y64.abs().max())
    entry = {
        "name": name, "input": [1, 3, side, side], "batchnorms": n_bn,
        "torch_f32_vs_f64": float((y.double() - y64).abs().max()) / peak,
        "output_peak": peak,
    }
    d = os.path.join(outdir, name)
    os.makedirs(d, exist_ok=True)
    files = []

    def save(fname, t, tname):
        tp = nph.from_array(t.detach().float().contiguous().numpy(), tname)
        with open(os.path.join(d, fname), "wb") as f:
            f.write(tp.SerializeToString())
        files.append(name + "/" + fname)

    save("input_0.pb", x, "input")
    save("output_0.pb", y, "logits")
    dynamic = name not in ("vgg11", "alexnet")
    if dynamic:
        # a second, non-square size through the same file: the shape arithmetic the exporter
        # writes for dynamic axes must follow the input, with height and width not swapped
        x1 = torch.randn(1, 3, side, side + 32, generator=gen)
        with torch.no_grad():
            y1 = model(x1)
        save("input_1.pb", x1, "input")
        save("output_1.pb", y1, "logits")
        entry["input_1"] = list(x1.shape)
    if tap:
        objective, grad, kinks, n_calls = gradient_reference(torch, model, x, tap)
        save("act_0.pb", act, tap)
        save("grad_0.pb", grad, "input")
        if kinks:
            save("kinks_0.pb", torch.stack([k["effect"] for k in kinks]), "effects")
        entry["tap_module"] = tap
        entry["objective"] = objective
        entry["kinks"] = len(kinks)

    entry["dynamic_hw"] = dynamic
    entry["opsets"] = {}
    for opset in OPSETS:
        t1 = time.time()
        fname = "opset%d.onnx" % opset
        torch.onnx.export(model, x, os.path.join(d, fname), opset_version=opset,
                          input_names=["input"], output_names=["logits"],
                          dynamic_axes={"input": {2: "height", 3: "width"}} if dynamic else None)
        files.append(name + "/" + fname)
        m = onnx.load(os.path.join(d, fname), load_external_data=False)
        ops = collections.Counter(n.op_type for n in m.graph.node)
        info = {"file": name + "/" + fname, "ops": dict(sorted(ops.items())),
                "export_seconds": round(time.time() - t1, 2)}
        if tap:
            info["tap"] = tap_value(m.graph, tap)
            info["kinks_file"] = name + "/kinks_opset%d.tsv" % opset
            write_kinks(os.path.join(outdir, info["kinks_file"]), m.graph, info["tap"], kinks,
                        n_calls)
            files.append(info["kinks_file"])
        entry["opsets"][str(opset)] = info
    entry["files"] = files
    if name in UNSUPPORTED:
        entry["unsupported"] = UNSUPPORTED[name]
    entry["seconds"] = round(time.time() - t0, 2)
    return entry


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("outdir")
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--force", action="store_true", help="export even when up to date")
    args = ap.parse_args()
    models = args.models.split(",")
    for m in models:
        if m not in MODELS:
            ap.error("unknown model %s (known: %s)" % (m, ", ".join(MODELS)))
    missing = [p for p in ("torch", "torchvision", "onnx") if importlib.util.find_spec(p) is None]
    if missing:
        print("export_zoo.py: missing Python packages: %s (Debian: python3-torch, "
              "python3-torchvision, python3-onnx)" % ", ".join(missing), file=sys.stderr)
        return 2
    digest = script_hash()
    if not args.force and up_to_date(args.outdir, models, digest):
        print("export_zoo.py: %s is up to date" % args.outdir)
        return 0

    import warnings
    warnings.filterwarnings("ignore")
    import onnx
    import onnx.numpy_helper as nph
    import torch
    import torchvision

    # one thread: the models are small, and on a busy 2-core machine every parallel region of
    # thousands of small ops would wait for a second core (measured 3x slower under load)
    torch.set_num_threads(1)
    os.makedirs(args.outdir, exist_ok=True)
    # a half-written directory is never taken as up to date
    try:
        os.remove(os.path.join(args.outdir, "manifest.json"))
    except FileNotFoundError:
        pass
    t0 = time.time()
    entries = []
    for name in models:
        e = export_one(torch, torchvision, onnx, nph, name, args.outdir)
        entries.append(e)
        print("%-20s %3dx%-3d %5.1f s  torch f32 vs f64 %.2g%s" % (
            name, e["input"][2], e["input"][3], e["seconds"], e["torch_f32_vs_f64"],
            ("  tap " + e["opsets"]["13"]["tap"]) if "tap_module" in e else ""))
    with open(os.path.join(args.outdir, "zoo.tsv"), "w") as f:
        for e in entries:
            for opset, info in e["opsets"].items():
                tap = info.get("tap")
                f.write("\t".join([
                    e["name"], opset, info["file"], e["name"] + "/input_0.pb",
                    e["name"] + "/output_0.pb",
                    e["name"] + "/input_1.pb" if e["dynamic_hw"] else "-",
                    e["name"] + "/output_1.pb" if e["dynamic_hw"] else "-", tap or "-",
                    e["name"] + "/act_0.pb" if tap else "-",
                    e["name"] + "/grad_0.pb" if tap else "-",
                    info["kinks_file"] if tap else "-",
                    e["name"] + "/kinks_0.pb" if tap and e["kinks"] else "-"]) + "\n")
    man = {"script_sha256": digest, "torch": torch.__version__,
           "torchvision": torchvision.__version__, "onnx": onnx.__version__,
           "seconds": round(time.time() - t0, 1), "models": entries}
    tmp = os.path.join(args.outdir, "manifest.json.tmp")
    with open(tmp, "w") as f:
        json.dump(man, f, indent=1)
    os.replace(tmp, os.path.join(args.outdir, "manifest.json"))
    print("export_zoo.py: %d models in %.1f s -> %s" % (len(entries), time.time() - t0, args.outdir))
    return 0


if __name__ == "__main__":
    sys.exit(main())
