"""The module gives what the CLI gives with the same options, bit for bit: pictures as the
PNGs it writes, tensors as its TensorProto files, numbers as it prints them."""
import csv
import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest

import dream

DREAM_OPTS = [
    # (model, CLI options, keyword arguments)
    ("googlenet", [], {}),
    ("googlenet", ["-l", "inception_3b/output", "-l", "conv2/3x3", "--norm", "std",
                   "--step", "2", "--jitter", "7", "--octave-scale", "1.3"],
     dict(layer=["inception_3b/output", "conv2/3x3"], norm="std", step=2, jitter=7,
          octave_scale=1.3)),
    ("squeezenet", ["-l", "fire4/concat", "--norm", "laplacian", "--lap-levels", "3",
                    "--tile", "48"],
     dict(layer="fire4/concat", norm="laplacian", lap_levels=3, tile=48)),
]


@pytest.mark.parametrize("name,opts,kw", DREAM_OPTS, ids=["default", "layers-std", "tiles"])
def test_dream(name, opts, kw, cli, photo, tmp_path, request):
    m = request.getfixturevalue(name)
    out = tmp_path / "out.png"
    cli("-q", "-m", name, "--seed", 3, "--octaves", 2, "--iters", 2, "--max-side", 96,
        *opts, photo[0], out)
    got = dream.dream(photo[1], model=m, seed=3, octaves=2, iters=2, max_side=96, **kw)
    want = dream.load_image(out)
    assert got.dtype == np.uint8 and got.shape == want.shape == (64, 96, 3)
    assert np.array_equal(got, want)


def test_dream_guide_and_budget(cli, squeezenet, photo, tmp_path):
    """A guided dream, with a budget that makes the dream tile."""
    out = tmp_path / "out.png"
    cli("-q", "-m", "squeezenet", "--seed", 5, "--octaves", 1, "--iters", 2, "--max-memory",
        "8M", "--guide", photo[0], "--guide-size", 40, "-l", "fire3/concat", photo[0], out)
    seen = []
    got = dream.dream(photo[1], model=squeezenet, seed=5, octaves=1, iters=2,
                      max_memory=8 << 20, guide=photo[1], guide_size=40, layer="fire3/concat",
                      progress=seen.append)
    assert seen[0].tiles > 1
    assert np.array_equal(got, dream.load_image(out))


def test_dream_preprocessing_overrides(cli, squeezenet, photo, tmp_path):
    """Model(mean=, std=, bgr=, scale=) acts as --mean, --std, --bgr and --scale."""
    out = tmp_path / "out.png"
    cli("-q", "-m", "squeezenet", "--bgr", "--scale", "2", "--mean", "0.4,0.5,0.6", "--std",
        "0.3", "--seed", 1, "--octaves", 1, "--iters", 2, "--max-side", 80, photo[0], out)
    with dream.Model("squeezenet", bgr=True, scale=2, mean=(0.4, 0.5, 0.6), std=0.3) as m:
        got = dream.dream(photo[1], model=m, seed=1, octaves=1, iters=2, max_side=80)
    assert np.array_equal(got, dream.load_image(out))
    plain = dream.dream(photo[1], model=squeezenet, seed=1, octaves=1, iters=2, max_side=80)
    assert not np.array_equal(got, plain)


def test_dream_progress_and_stop(squeezenet, photo):
    seen = []
    dream.dream(photo[1], model=squeezenet, octaves=2, iters=2, max_side=96,
                progress=seen.append)
    assert [(p.octave, p.iter) for p in seen] == [(0, 0), (0, 1), (1, 0), (1, 1)]
    assert seen[-1].done == pytest.approx(1.0)

    def stop(p):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        dream.dream(photo[1], model=squeezenet, octaves=2, iters=2, max_side=96, progress=stop)


@pytest.fixture
def tensor(tmp_path):
    """A preprocessed-looking input tensor, 1 x 3 x 67 x 61, and its TensorProto file."""
    x = np.random.default_rng(7).normal(0, 50, (1, 3, 67, 61)).astype(np.float32)
    path = tmp_path / "x.pb"
    dream.save_tensor(path, x, "data")
    return path, x


def test_run(cli, googlenet, tensor, tmp_path):
    names = ["conv2/3x3", "inception_4a/output", "conv5", "prob"]
    args = [a for n in names for a in ("--output", n)]
    cli("run", "-q", "-i", tensor[0], "-o", tmp_path / "out", *args)
    got = googlenet.run(tensor[1], names)
    assert list(got) == names
    for n in names:
        want, stored = dream.load_tensor(tmp_path / "out" / (n.replace("/", "_") + ".pb"))
        assert got[n].dtype == np.float32 and np.array_equal(got[n], want), n
        assert stored == googlenet.value_names[googlenet.resolve(n)]


def test_run_outputs(cli, squeezenet, tensor, tmp_path):
    cli("run", "-q", "-m", "squeezenet", "-i", tensor[0], "-o", tmp_path)
    got = squeezenet.run(tensor[1])
    assert list(got) == squeezenet.outputs
    for n, a in got.items():
        assert np.array_equal(a, dream.load_tensor(tmp_path / (n.replace("/", "_") + ".pb"))[0])


def test_grad(cli, googlenet, tensor, tmp_path):
    layers = ["inception_4c/output", "conv3"]
    r = cli("grad", "-i", tensor[0], "-l", layers[0], "-l", layers[1], "-o", tmp_path / "g.pb")
    g, objective = googlenet.grad(tensor[1], layers)
    want, _ = dream.load_tensor(tmp_path / "g.pb")
    assert g.shape == tensor[1].shape and np.array_equal(g, want)
    printed = re.search(r"objective (\S+),", r.stderr).group(1)
    assert "%.9g" % objective == printed


def test_explain(cli, googlenet, photo, tmp_path):
    out = tmp_path / "e.png"
    cli("explain", "-q", "--smoothgrad", 3, "--seed", 2, photo[0], out)
    e = dream.explain(googlenet, photo[1], smoothgrad=3, seed=2)
    j = json.load(open(tmp_path / "e.json"))
    assert [(t["class"], t["label"], "%.6g" % t["probability"]) for t in j["top5"]] == \
        [(c, label, "%.6g" % p) for c, label, p in e.top5]
    assert (j["class"], j["label"], j["gradcam"]["layer"]) == (e.cls, e.label, e.layer)
    assert "%.6g" % j["score"] == "%.6g" % e.score
    assert (j["gradcam"]["argmax"]["x"], j["gradcam"]["argmax"]["y"]) == e.argmax
    assert tuple(j["gradcam"]["argmax_in_photo"].values()) == e.argmax_in_photo
    assert tuple(j["gradcam"]["resolution"]) == e.cam_resolution
    assert e.cam.shape == e.saliency.shape == (j["height"], j["width"])
    assert np.array_equal(e.picture, dream.load_image(out))


def test_explain_class_and_layer(cli, squeezenet, photo, tmp_path):
    out = tmp_path / "e.png"
    cli("explain", "-q", "-m", "squeezenet", "--class", "kite", "-l", "fire7/concat",
        "--framing", "squash", "--height", 80, photo[0], out)
    e = dream.explain(squeezenet, photo[1], "kite", layer="fire7/concat", framing="squash",
                      height=80)
    assert e.label == "kite" and e.layer == "fire7/concat"
    assert json.load(open(tmp_path / "e.json"))["class"] == e.cls
    assert np.array_equal(e.picture, dream.load_image(out))


def test_filters(cli, googlenet, squeezenet, tmp_path):
    cli("filters", "-q", tmp_path / "g.png")
    cli("filters", "-q", "-m", "squeezenet", "--zoom", 5, "--gap", 1, tmp_path / "s.png")
    f = dream.filters(googlenet)
    assert np.array_equal(f.image, dream.load_image(tmp_path / "g.png"))
    assert f.n == 64 and f.node
    f = dream.filters(squeezenet, zoom=5, gap=1)
    assert np.array_equal(f.image, dream.load_image(tmp_path / "s.png"))


def test_optimize_channels(cli, squeezenet, tmp_path):
    cli("filters", "-q", "-m", "squeezenet", "--optimize", "-l", "fire2/concat", "--channels",
        "3-5", "--steps", 6, "--size", 40, "--seed", 9, tmp_path / "o.png")
    c = dream.optimize_channels(squeezenet, "fire2/concat", channels=range(3, 6), steps=6,
                                size=40, seed=9)
    assert np.array_equal(c.image, dream.load_image(tmp_path / "o.png"))
    rows = list(csv.DictReader(open(tmp_path / "o.csv")))
    assert [(int(r["channel"]), r["mean_activation"]) for r in rows] == \
        [(ch, "%.6g" % o) for ch, o in zip(c.channels, c.objectives)]


def test_class_image(cli, squeezenet, tmp_path):
    cli("class", "-q", "-m", "squeezenet", "--class", "goldfish", "--steps", 5, "--size", 48,
        "--seed", 4, tmp_path / "c.png")
    c = dream.class_image(squeezenet, "goldfish", steps=5, size=48, seed=4)
    assert np.array_equal(c.image, dream.load_image(tmp_path / "c.png"))
    j = json.load(open(tmp_path / "c.json"))
    assert (j["class"], "%.6g" % j["logit"], "%.6g" % j["probability"]) == \
        (c.cls, "%.6g" % c.logit, "%.6g" % c.probability)
    assert [t["class"] for t in j["top5"]] == [t[0] for t in c.top5]


def test_activations(cli, googlenet, photo, tmp_path):
    cli("activations", "-q", "-l", "conv2/3x3", "--size", 64, "-c", "10-29", photo[0],
        tmp_path / "a.png")
    a = dream.activations(googlenet, photo[1], "conv2/3x3", size=64, channels=range(10, 30))
    assert np.array_equal(a.image, dream.load_image(tmp_path / "a.png"))
    rows = list(csv.DictReader(open(tmp_path / "a.csv")))
    assert len(rows) == a.values.shape[0] == 192
    for r, mean, mx, z in zip(rows, a.mean, a.max, a.zero_fraction):
        assert (r["mean"], r["max"], r["zero_fraction"]) == ("%.6g" % mean, "%.6g" % mx,
                                                            "%.6g" % z)


def test_layers(cli, squeezenet):
    out = cli("layers", "-m", "squeezenet").stdout.splitlines()
    listed = [(l.split()[0], re.search(r"\s(\d+(?:x\d+)+)(?:\s|$)", l).group(1))
              for l in out[2:-1]]
    got = [(l.name, "x".join(map(str, l.shape))) for l in squeezenet.layers()]
    assert got == listed


# `dream` and `dream grad` at 405e690 refuse NAME#CHANNEL and NAME:WEIGHT: after
# dd_dream_layer_resolve, cli_resolve (src/cli/common.c) looks the whole spec up as a layer
# name ("no layer named 'conv2/3x3:-0.5'").  These pass once the CLI resolves the NAME alone.
def test_dream_weighted_channel_layers(cli, googlenet, photo, tmp_path):
    out = tmp_path / "out.png"
    cli("-q", "--seed", 3, "--octaves", 2, "--iters", 2, "--max-side", 96, "-l",
        "inception_4c/output#97", "-l", "conv2/3x3:-0.5", photo[0], out)
    got = dream.dream(photo[1], model=googlenet, seed=3, octaves=2, iters=2, max_side=96,
                      layer=["inception_4c/output#97", "conv2/3x3:-0.5"])
    assert np.array_equal(got, dream.load_image(out))


def test_grad_weighted_channel_layers(cli, googlenet, tensor, tmp_path):
    cli("grad", "-q", "-i", tensor[0], "-l", "conv3#5:0.5", "-o", tmp_path / "g.pb")
    g, _ = googlenet.grad(tensor[1], "conv3#5:0.5")
    assert np.array_equal(g, dream.load_tensor(tmp_path / "g.pb")[0])


def test_grad_specs(googlenet, tensor):
    """A weight scales the objective and its gradient; a channel takes part of both."""
    g, obj = googlenet.grad(tensor[1], "conv3")
    g4, obj4 = googlenet.grad(tensor[1], "conv3:0.25")
    assert np.array_equal(g4, g * np.float32(0.25)) and obj4 == pytest.approx(obj / 4)
    gc, objc = googlenet.grad(tensor[1], "conv3#5")
    assert 0 < objc < obj and np.any(gc) and not np.array_equal(gc, g)
    assert googlenet.grad(tensor[1])[0].shape == tensor[1].shape  # the preset's layer


def test_dreamer_gives_dreams_pictures(googlenet, squeezenet, photo):
    """A Dreamer over frames of two sizes, with per-frame iterations and seeds, gives dream()'s
    pictures bit for bit (its plans are kept between frames), tiled too."""
    small = np.ascontiguousarray(photo[1][:64, :96])
    frames = [(photo[1], 2, 1), (photo[1], 1, 2), (small, 2, 3), (photo[1], 2, 4)]
    for m, kw in ((googlenet, dict(layer="inception_3b/output")),
                  (squeezenet, dict(layer="fire4/concat", tile=48))):
        with dream.Dreamer(m, octaves=3, **kw) as d:
            for rgb, iters, seed in frames:
                got = d.dream(rgb, iters=iters, seed=seed)
                want = dream.dream(rgb, model=m, octaves=3, iters=iters, seed=seed, **kw)
                assert np.array_equal(got, want)
                assert not np.array_equal(got, rgb)
    with pytest.raises(ValueError):
        d.dream(photo[1])
    with pytest.raises(dream.Error) as e:
        dream.Dreamer(squeezenet, layer="no/such/layer")
    assert "no/such/layer" in str(e.value)


def test_precision_fp32_is_exact_and_auto_is_the_clis_default(cli, squeezenet, photo, tmp_path):
    """precision="auto" (the CLI's default) keeps the fast kernels; "fp32" is fp32-exact, as
    `dream --precision fp32`: the two pictures differ a little, each equal to the CLI's.
    (6 iterations: only fire2 and fire3 have enough 4x4 tiles for Winograd at this size, and
    after 2 the two pictures still rounded to the same bytes.)"""
    pics = {}
    for prec in ("auto", "fp32"):
        out = tmp_path / ("%s.png" % prec)
        args = ["--precision", prec] if prec != "auto" else []
        cli("-q", "-m", "squeezenet", "--seed", 2, "--octaves", 2, "--iters", 6, *args,
            photo[0], out)
        pics[prec] = dream.dream(photo[1], model=squeezenet, seed=2, octaves=2, iters=6,
                                 precision=prec)
        assert np.array_equal(pics[prec], dream.load_image(out))
    assert not np.array_equal(pics["auto"], pics["fp32"])


def test_system_is_what_dream_version_says(cli, monkeypatch):
    """dream.system() names the CPU and kernels as `dream --version` does; DREAM_KERNELS=generic
    is obeyed by both (a subprocess for the module: the path is chosen once per process)."""
    lines = dict(l.split(": ", 1) for l in cli("--version").stdout.splitlines()[1:])
    s = dream.system()
    assert s == {"cpu": lines["cpu"], "fp32_kernels": lines["fp32 kernels"],
                 "bf16_kernels": lines["bf16 kernels"]}
    assert s["fp32_kernels"] in ("avx512", "avx2", "generic")
    monkeypatch.setenv("DREAM_KERNELS", "generic")
    assert "fp32 kernels: generic" in cli("--version").stdout
    env = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(dream.__file__)))
    out = subprocess.run([sys.executable, "-c",
                          "import dream; print(dream.system()['fp32_kernels'])"],
                         capture_output=True, text=True, check=True, env=env)
    assert out.stdout.strip() == "generic"
