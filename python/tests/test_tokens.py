"""Fixed-size, token and channels-last models through the module: the tiny models of
tests/ref/tokens_models.py, their accepted sizes and layouts as `dream layers` gives them."""
import os
import re
import subprocess
import sys

import pytest

import dream

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    out = tmp_path_factory.mktemp("tokens")
    r = subprocess.run([sys.executable, os.path.join(ROOT, "tests", "ref", "tokens_models.py"),
                        str(out)], capture_output=True, text=True)
    if r.returncode:
        pytest.skip("tokens_models.py needs numpy and onnx: %s" % r.stderr[-300:])
    return out


def test_input_sizes(tiny):
    with dream.Model(str(tiny / "vit.onnx")) as m:
        assert m.input_sizes() == dream.InputSizes(True, (32, 32), (32, 32))
        s = m.input_sizes(["patches"])
        assert not s.fixed and s.min == (8, 8)
    with dream.Model(str(tiny / "swin.onnx")) as m:
        assert m.input_sizes().fixed
        assert not m.input_sizes(["grid1"]).fixed


def test_layouts_as_the_cli_lists_them(tiny, cli):
    for name in ("vit", "clip", "swin"):
        path = str(tiny / (name + ".onnx"))
        with dream.Model(path) as m:
            layers = m.layers()
        assert layers[0].shape == (1, 3, 32, 32)
        out = cli("layers", "-m", path).stdout.splitlines()
        for layer, line in zip(layers[1:], out[3:-1]):
            assert line.split()[0] == layer.name
            assert re.search(r"\s%s\s" % re.escape(layer.layout), line), (layer, line)
    with dream.Model(str(tiny / "vit.onnx")) as m:
        got = {l.name: l.layout for l in m.layers()}
    assert got["block1"] == "tokens 1+4x4" and got["patches"] == "NCHW 4x4"
    with dream.Model(str(tiny / "swin.onnx")) as m:
        got = {l.name: l.layout for l in m.layers()}
    assert got["grid1"] == "NHWC 8x8" and got["flat"] == "tokens 8x8"


def test_classify_at_the_models_size(tiny, cli, photo):
    path = str(tiny / "vit.onnx")
    with dream.Model(path) as m:
        assert m.size == 32
        got = m.classify(photo[1], top=3)
    out = cli("classify", "-m", path, "-k", "3", photo[0]).stdout
    assert len(got) == 3 and all(str(c) in out for c, *_ in got), (got, out)
