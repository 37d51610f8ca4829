#!/usr/bin/python3
"""Exports torchvision's CNN and vision-transformer families to ONNX with PyTorch's reference
outputs, for tests/test_zoo.c.

    export_zoo.py OUTDIR [--models resnet18,vgg11,...] [--force]

No pretrained weights are needed (nor reachable): each architecture is built with seeded
random weights, which checks operator coverage and numerics as well as real weights would.
Two groups (MODELS): the classic CNN families at opsets 11 and 13, and the modern ones of
issue #10 (efficientnet_b0, mobilenet_v3_small, regnet_y_400mf, convnext_tiny, swin_t and a
4-layer ViT) at opsets 13 and 17.  For each model:
  - torch.manual_seed(0), the model built, its BatchNorm statistics measured on random images
    (train-mode forward) and then perturbed, and its affine parameters randomized, so that
    no BatchNorm is an identity and activations keep realistic magnitudes through the depth;
    in the modern group also the parameters torchvision initializes to constants
    (randomize_modern: LayerNorm affine, zero biases, ConvNeXt's layer scale, ...);
  - model.eval(), torch.onnx.export at the group's opsets (default export options, so
    BatchNorm after a Conv is folded into it as users get it; height and width are dynamic
    axes where the exporter allows it -- not for VGG and AlexNet, whose adaptive average
    pooling needs the input size, nor Swin and ViT, whose graphs are traced for one size);
  - OUTDIR/<model>/opset<N>.onnx, input_0.pb (the input), output_0.pb (torch's float32
    output); with dynamic axes also input_1.pb and output_1.pb at a second, non-square size;
    for the gradient cases act_0.pb (torch's float32 activation of an
    intermediate layer, the value named in the manifest) and grad_0.pb: the gradient of
    1/2 * sum(a^2) of that activation with respect to the input, by torch autograd in float64
    from the same float32 weights, with torch's own float32 autograd's distance to it.
OUTDIR/manifest.json describes everything (sizes, value names, ops, torch's own float32
error against float64); OUTDIR/zoo.tsv is the same for the C test, one line per file:
    model opset onnx input output input_1|- output_1|- tap|- act|- grad|- kinks.tsv|- kinks.pb|-
    grad_bound|-
(kinks: see gradient_reference; grad_bound: max(GRAD_FLOOR, GRAD_TORCH_FACTOR * torch
float32's relative L2 distance to the float64 gradient)).

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

# Two groups.  The classic CNN families at opsets 11 and 13; the modern ones of issue #10
# (squeeze-excitation, hardswish, LayerNorm, GELU, attention) at opsets 13 and 17 (17, torch
# 1.13's maximum, writes LayerNormalization and HardSwish as single ops, 13 decomposes them),
# mobilenet_v3_small at 11 too, as it was tested before it joined the modern group.
CLASSIC_OPSETS = (11, 13)
MODERN_OPSETS = (13, 17)

# build: the model from torchvision; side: the input's height and width; tap: the module whose
# output is the gradient's activation, or None; dynamic: whether height and width are dynamic
# axes of the export (a second, non-square input is then checked too); modern: whether the
# parameters torchvision initializes to constants are randomized (randomize_modern).
Spec = collections.namedtuple("Spec", "build side tap opsets dynamic modern")


def tv(name, **kwargs):
    return lambda torchvision: getattr(torchvision.models, name)(**kwargs)


def vit_p16_l4(torchvision):
    """A small VisionTransformer: 64x64 in 16x16 patches (16 tokens and the class token), 4
    layers of width 192, 3 heads, MLP 768 (ViT-Ti's width at a third of its depth)."""
    return torchvision.models.VisionTransformer(image_size=64, patch_size=16, num_layers=4,
                                                num_heads=3, hidden_dim=192, mlp_dim=768)


# Sides: small where the architecture allows it, to keep the test fast; VGG and AlexNet need
# 224 (their adaptive pooling exports only as an exact AveragePool), Inception v3 needs >= 75
# (139 keeps every map of its last blocks at least 3x3).  ConvNeXt at 64 has maps of 16, 8, 4
# and 2 in its four stages.  Swin-T at 128 has maps of 32, 16, 8 and 4: every stage the
# 224 model shifts its 7x7 windows in still does (a map is shifted when it is larger than the
# window, here after padding 8 to 14), and stages 3 and 4 pad their maps to the window, so
# the export has the window padding too; at 96 (and 112) the third stage's map fits one
# window, and the exporter drops its shift and the attention masks that go with it.  Swin and ViT are exported at a fixed size: the
# trace bakes Swin's padding, shift and mask decisions into the graph, and ViT's position
# embedding has one row per patch of its image_size.
# Taps, about two thirds deep: efficientnet_b0's stage 5 (block 11 of 16), mobilenet_v3_small's
# block 7 of 11, regnet_y_400mf's stage 3 (block 10 of 16), convnext_tiny's block 12 of 18,
# swin_t's block 8 of 12, the ViT's layer 3 of 4.
MODELS = collections.OrderedDict([
    ("resnet18", Spec(tv("resnet18"), 96, "layer3", CLASSIC_OPSETS, True, False)),
    ("mobilenet_v2", Spec(tv("mobilenet_v2"), 96, "features.13", CLASSIC_OPSETS, True, False)),
    ("mnasnet0_5", Spec(tv("mnasnet0_5"), 96, None, CLASSIC_OPSETS, True, False)),
    ("shufflenet_v2_x0_5", Spec(tv("shufflenet_v2_x0_5"), 96, "stage3", CLASSIC_OPSETS, True,
                                False)),
    ("densenet121", Spec(tv("densenet121"), 96, "features.denseblock3", CLASSIC_OPSETS, True,
                         False)),
    ("inception_v3", Spec(tv("inception_v3", aux_logits=False, init_weights=True), 139, None,
                          CLASSIC_OPSETS, True, False)),
    ("vgg11", Spec(tv("vgg11"), 224, None, CLASSIC_OPSETS, False, False)),
    ("alexnet", Spec(tv("alexnet"), 224, None, CLASSIC_OPSETS, False, False)),
    ("squeezenet1_0", Spec(tv("squeezenet1_0"), 96, None, CLASSIC_OPSETS, True, False)),
    ("googlenet", Spec(tv("googlenet", aux_logits=False, init_weights=True), 96, None,
                       CLASSIC_OPSETS, True, False)),
    ("efficientnet_b0", Spec(tv("efficientnet_b0"), 96, "features.5", MODERN_OPSETS, True, True)),
    ("mobilenet_v3_small", Spec(tv("mobilenet_v3_small"), 96, "features.7", (11,) + MODERN_OPSETS,
                                True, True)),
    ("regnet_y_400mf", Spec(tv("regnet_y_400mf"), 96, "trunk_output.block3", MODERN_OPSETS, True,
                            True)),
    ("convnext_tiny", Spec(tv("convnext_tiny"), 64, "features.5.5", MODERN_OPSETS, True, True)),
    ("swin_t", Spec(tv("swin_t"), 128, "features.5.3", MODERN_OPSETS, False, True)),
    ("vit_p16_l4", Spec(vit_p16_l4, 64, "encoder.layers.encoder_layer_2", MODERN_OPSETS, False,
                        True)),
])

# The gradient bound: ||ours - torch64|| / ||torch64|| <= max(GRAD_FLOOR, GRAD_TORCH_FACTOR *
# torch float32's own distance to float64) (issue #10; the same rule for every tapped model).
GRAD_FLOOR = 1e-3
GRAD_TORCH_FACTOR = 3.0


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


def randomize_batchnorm_sequential(torch, model, side, gen):
    """randomize_batchnorm's perturbation, on statistics measured in evaluation mode, one
    BatchNorm after the other in forward order (each sees its input as the eval-mode model
    computes it with the BatchNorms before it already final).  Statistics from one train-mode
    pass drift apart from what eval mode feeds each BatchNorm, and over a deep residual stack
    with squeeze-excitation the drift compounds: regnet_y_400mf's activations doubled at every
    block to 1.6e5 and torch's own float32 logits were 6.7e-3 of their peak away from float64,
    a model no float32 engine could be held to 1e-4 on.  Calibrated in order, activations
    stay at their trained scale."""
    bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    if not bns:
        return 0
    done = set()

    def calibrate(bn, inp):
        if id(bn) in done:
            return
        done.add(id(bn))
        x = inp[0]
        c = bn.num_features
        bn.running_mean.copy_(x.mean((0, 2, 3)))
        bn.running_var.copy_(x.var((0, 2, 3), unbiased=False))
        std = bn.running_var.sqrt()
        bn.running_mean += 0.2 * std * torch.randn(c, generator=gen)
        bn.running_var *= 0.5 + torch.rand(c, generator=gen)
        bn.weight.copy_(0.5 + torch.rand(c, generator=gen))
        bn.bias.copy_(0.1 * torch.randn(c, generator=gen))

    hooks = [bn.register_forward_pre_hook(calibrate) for bn in bns]
    model.eval()
    with torch.no_grad():
        model(torch.randn(4, 3, side, side, generator=gen))
    for h in hooks:
        h.remove()
    if len(done) != len(bns):
        raise RuntimeError("%d of %d BatchNorms ran in the calibration" % (len(done), len(bns)))
    return len(bns)


def randomize_modern(torch, model, gen):
    """The parameters torchvision initializes to constants, randomized, so that none of them
    can be mishandled unseen: LayerNorm's scale (1) and shift (0), Linear biases (0), ViT's
    zero class head and class token, ConvNeXt's layer scale (1e-6, which would make every
    residual branch invisible in the output), and Swin's relative position bias tables (std
    0.02, too small to notice a wrong index).  Returns how many tensors changed."""
    n = 0
    with torch.no_grad():
        for mod in model.modules():
            if isinstance(mod, torch.nn.LayerNorm) and mod.elementwise_affine:
                c = mod.weight.shape
                mod.weight.copy_(0.5 + torch.rand(c, generator=gen))
                mod.bias.copy_(0.1 * torch.randn(c, generator=gen))
                n += 2
            elif isinstance(mod, torch.nn.Linear):
                if not mod.weight.any():
                    fan_in = mod.weight.shape[1]
                    mod.weight.copy_(torch.randn(mod.weight.shape, generator=gen) / fan_in ** 0.5)
                    n += 1
                if mod.bias is not None and float(mod.bias.abs().max()) < 1e-5:
                    mod.bias.copy_(0.1 * torch.randn(mod.bias.shape, generator=gen))
                    n += 1
        for pname, p in model.named_parameters():
            leaf = pname.rsplit(".", 1)[-1]
            if leaf == "layer_scale":
                p.copy_(0.1 + 0.3 * torch.rand(p.shape, generator=gen))
            elif leaf == "relative_position_bias_table":
                p.copy_(0.5 * torch.randn(p.shape, generator=gen))
            elif leaf == "class_token":
                p.copy_(torch.randn(p.shape, generator=gen))
            elif leaf == "in_proj_bias" and float(p.abs().max()) < 1e-5:
                p.copy_(0.1 * torch.randn(p.shape, generator=gen))
            else:
                continue
            n += 1
    return n


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


# Kinks: the gradient of a ReLU network jumps where a pre-activation crosses 0 (6 for ReLU6,
# -3 and 3 for hardsigmoid and hardswish) or where a max-pool window's maximum changes hands.
# Elements closer to a kink than float32 rounding can land on either side in any float32
# engine, and one such element changes the input gradient by its whole contribution
# (measured: one ReLU of resnet18's layer1, 6.6e-6 from 0, moves the gradient by 1.4e-2
# relative L2).  So the reference lists every element within KINK_TAU * (peak of its tensor)
# of a kink, with the change of the input gradient if it took the other side; the test moves
# the reference to whichever side its own forward took.
KINK_TAU = 3e-5

# The piecewise activations: torch module class name -> (ONNX op, lower and upper kink).
# Between the kinks ("inside") torch passes the gradient with the inside slope, outside with
# the outside one (slopes below).  torch 1.13 exports hardswish below opset 14 as
# x * HardSigmoid(x): the HardSigmoid node's input is then the module's input.
PIECEWISE = {"ReLU": ("Relu", 0.0, float("inf")), "ReLU6": ("Clip", 0.0, 6.0),
             "Hardsigmoid": ("HardSigmoid", -3.0, 3.0), "Hardswish": ("HardSwish", -3.0, 3.0)}


def slope(kind, v, inside, upper):
    """d activation / d input at v, on the given side of the kink (upper: the upper one)."""
    if kind == "HardSwish":
        return v / 3.0 + 0.5 if inside else (1.0 if upper else 0.0)
    if kind == "HardSigmoid":
        return 1.0 / 6.0 if inside else 0.0
    return 1.0 if inside else 0.0


def kink_flipped(k, v):
    """Whether a run whose values at the kink's tensor are v (flat) took the other side than
    torch in float64 did; the rule of tests/test_zoo.c's kink_flipped."""
    if k["kind"] == "MaxPool":
        a, b = float(v[k["i"]]), float(v[k["j"]])
        return b > a or (b == a and k["j"] < k["i"])
    ref_inside = k["lo"] < k["pi"] < k["hi"]
    return ref_inside != (k["lo"] < float(v[k["i"]]) < k["hi"])


def run_to_tap(torch, model, x, tap):
    """Forward to the output of module `tap` and backward of 1/2 sum(a^2) in x's dtype, with
    the piecewise activations and max-pools recorded: (objective, input x with its gradient,
    [(kind, module, its input, its output) per call before the tap])."""
    calls = []

    def record(kind):
        def hook(mod, inp, out):
            out.retain_grad()
            calls.append((kind, mod, inp[0], out))
        return hook

    for mod in model.modules():
        name = type(mod).__name__
        if name in PIECEWISE:
            mod.inplace = False  # the hooks need the input as it was
            mod.register_forward_hook(record(PIECEWISE[name][0]))
        elif isinstance(mod, torch.nn.MaxPool2d):
            mod.register_forward_hook(record("MaxPool"))
    st = {}
    dict(model.named_modules())[tap].register_forward_hook(
        lambda mod, inp, out: st.update(a=out, n=len(calls)))
    xg = x.clone().requires_grad_(True)
    model(xg)
    a = st["a"]
    obj = 0.5 * (a * a).sum()
    obj.backward(retain_graph=True)
    return obj, xg, calls[:st["n"]]


def rel_l2(a, b):
    return float((a.double() - b.double()).norm() / b.double().norm())


def gradient_reference(torch, model, x, tap):
    """Autograd in float64 of 1/2 sum(a^2), a = output of module `tap`, from the model's
    float32 weights: a dict with objective, grad (the input gradient), kinks, n_calls (the
    number of recorded module calls before the tap), and torch float32's own distance to it:
    torch_raw (relative L2 of torch's float32 autograd gradient) and torch (the same once the
    reference is moved to float32's side of every kink, as the test does for ours).  Each
    kink is a dict: kind (the ONNX op: Relu, Clip, HardSigmoid, HardSwish or MaxPool), call
    (index among the recorded calls), i and j (flat indices in the op's input: the element,
    and for MaxPool the float64 argmax i and the runner-up j), pi, pj (their float64 values),
    lo, hi (the kinks of a piecewise activation), peak (max |input|) and effect (the input
    gradient's change if the other side is taken)."""
    import torch.nn.functional as F
    obj, x64, calls = run_to_tap(torch, copy.deepcopy(model).double(), x.double(), tap)
    grad = x64.grad.clone()

    def d_input(p, flat):
        g, = torch.autograd.grad(p.reshape(-1)[flat], x64, retain_graph=True)
        return g[0]

    kinks = []
    for call, (kind, mod, p, out) in enumerate(calls):
        if out.grad is None:
            continue
        pd, u = p.detach(), out.grad
        peak = float(pd.abs().max())
        tol = KINK_TAU * peak
        if kind != "MaxPool":
            lo, hi = {v[0]: (v[1], v[2]) for v in PIECEWISE.values()}[kind]
            near = ((pd - lo).abs() < tol) | ((pd - hi).abs() < tol)
            for flat in near.reshape(-1).nonzero().reshape(-1).tolist():
                v = float(pd.reshape(-1)[flat])
                uf = float(u.reshape(-1)[flat])
                inside = lo < v < hi  # torch's side
                upper = abs(v - hi) < abs(v - lo)
                ds = slope(kind, v, not inside, upper) - slope(kind, v, inside, upper)
                if uf == 0 or ds == 0:
                    continue
                eff = uf * ds * d_input(p, flat)
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
    kinks = [k for k in kinks if float(k["effect"].abs().max()) > 0]

    # torch's own float32 autograd, moved like ours would be
    _, x32, calls32 = run_to_tap(torch, copy.deepcopy(model).float(), x.float(), tap)
    if len(calls32) != len(calls):
        raise RuntimeError("float32 and float64 runs recorded %d and %d calls" % (
            len(calls32), len(calls)))
    moved = grad.clone()
    for k in kinks:
        if kink_flipped(k, calls32[k["call"]][2].detach().reshape(-1)):
            moved += k["effect"]
    return dict(objective=float(obj), grad=grad, kinks=kinks, n_calls=len(calls),
                torch_raw=rel_l2(x32.grad, grad), torch=rel_l2(x32.grad, moved))


def write_kinks(path, graph, tap, kinks, n_calls, opset):
    """kinks as lines of: value kind i j pi pj lo hi peak, the value being the ONNX input of
    the node that is the torch module call `call` (the nodes of the kinds the reference
    records that the tap depends on, in graph order, are the calls before the tap in order).
    kind is the ONNX op of the node: HardSigmoid for a hardswish below opset 14."""
    kinds = {v[0] for v in PIECEWISE.values()} | {"MaxPool"}
    producer = {o: n for n in graph.node for o in n.output}
    need, stack = set(), [tap]
    while stack:
        v = stack.pop()
        n = producer.get(v)
        if n is not None and id(n) not in need:
            need.add(id(n))
            stack.extend(n.input)
    nodes = [n for n in graph.node if id(n) in need and n.op_type in kinds]
    if len(nodes) != n_calls:
        raise RuntimeError("%s: %d Relu/Clip/HardSigmoid/HardSwish/MaxPool nodes before the tap, "
                           "%d torch calls" % (path, len(nodes), n_calls))
    with open(path, "w") as f:
        for k in kinks:
            n = nodes[k["call"]]
            op = "HardSigmoid" if k["kind"] == "HardSwish" and opset < 14 else k["kind"]
            if n.op_type != op:
                raise RuntimeError("%s: torch call %d is %s, ONNX node %s is %s" % (
                    path, k["call"], k["kind"], n.name, n.op_type))
            f.write("%s\t%s\t%d\t%d\t%.17g\t%.17g\t%.17g\t%.17g\t%.17g\n" % (
                n.input[0], n.op_type, k["i"], k["j"], k["pi"], k["pj"], k["lo"],
                min(k["hi"], 3e38), k["peak"]))


def export_one(torch, torchvision, onnx, nph, name, outdir):
    spec = MODELS[name]
    side, tap = spec.side, spec.tap
    t0 = time.time()
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    model = spec.build(torchvision)
    if spec.modern:
        n_bn = randomize_batchnorm_sequential(torch, model, side, gen)
    else:
        n_bn = randomize_batchnorm(torch, model, side, gen)
    n_rand = randomize_modern(torch, model, gen) if spec.modern else 0
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
        "randomized_constants": n_rand,
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
    dynamic = spec.dynamic
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
        ref = gradient_reference(torch, model, x, tap)
        kinks = ref["kinks"]
        save("act_0.pb", act, tap)
        save("grad_0.pb", ref["grad"], "input")
        if kinks:
            save("kinks_0.pb", torch.stack([k["effect"] for k in kinks]), "effects")
        entry["tap_module"] = tap
        entry["objective"] = ref["objective"]
        entry["kinks"] = len(kinks)
        entry["torch_grad_f32_vs_f64"] = ref["torch"]
        entry["torch_grad_f32_vs_f64_raw"] = ref["torch_raw"]
        entry["grad_bound"] = max(GRAD_FLOOR, GRAD_TORCH_FACTOR * ref["torch"])

    entry["dynamic_hw"] = dynamic
    entry["opsets"] = {}
    for opset in spec.opsets:
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
                        ref["n_calls"], opset)
            files.append(info["kinks_file"])
        entry["opsets"][str(opset)] = info
    entry["files"] = files
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
        print("%-20s %3dx%-3d %5.1f s  torch f32 vs f64: output %.2g%s" % (
            name, e["input"][2], e["input"][3], e["seconds"], e["torch_f32_vs_f64"],
            ("  gradient %.2g (raw %.2g, %d kinks), tap %s" % (
                e["torch_grad_f32_vs_f64"], e["torch_grad_f32_vs_f64_raw"], e["kinks"],
                e["opsets"]["13"]["tap"])) if "tap_module" in e else ""), flush=True)
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
                    e["name"] + "/kinks_0.pb" if tap and e["kinks"] else "-",
                    "%.17g" % e["grad_bound"] if tap else "-"]) + "\n")
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
