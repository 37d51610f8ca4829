"""dream.shapes and dream.train against `dream shapes` and `dream train`: the same bytes."""
import os

import numpy as np
import pytest

import dream


def _files(d):
    out = {}
    for root, _, files in os.walk(d):
        for f in files:
            p = os.path.join(root, f)
            with open(p, "rb") as fh:
                out[os.path.relpath(p, d)] = fh.read()
    return out


def test_shapes_writes_the_cli_bytes(cli, tmp_path):
    cli("shapes", "-q", "--size", "16", "--count", "3", "--seed", "4", "--one-vs-rest", "cross",
        tmp_path / "c")
    got = dream.shapes(tmp_path / "p", size=16, count=3, seed=4, one_vs_rest="cross")
    a, b = _files(tmp_path / "c"), _files(tmp_path / "p")
    assert sorted(a) == sorted(b) and len(a) == 6
    assert all(a[k] == b[k] for k in a)
    assert sorted(got) == ["cross", "other"]
    assert got["cross"][0].shape == (16, 16, 3) and got["cross"][0].dtype == np.uint8


def test_train_writes_the_cli_model(cli, tmp_path):
    dream.shapes(tmp_path / "tr", size=8, count=6, seed=1)
    dream.shapes(tmp_path / "va", size=8, count=2, seed=2)
    cli("train", "-q", "--arch", "cnn", "--epochs", "2", "--batch", "5", "--optimizer", "adam",
        "--seed", "3", "--val", tmp_path / "va", tmp_path / "tr", tmp_path / "cli.onnx")
    seen = []
    r = dream.train(tmp_path / "tr", tmp_path / "py.onnx", arch="cnn", epochs=2, batch=5,
                    optimizer="adam", seed=3, val=tmp_path / "va",
                    progress=lambda e, *h: seen.append(e))
    assert seen == [1, 2]
    assert r.classes == ["circle", "cross", "square", "triangle"]
    assert len(r.history) == 2 and all(0 <= h[3] <= 1 for h in r.history)
    with open(tmp_path / "cli.onnx", "rb") as a, open(tmp_path / "py.onnx", "rb") as b:
        assert a.read() == b.read()
    # the model opens with its own preprocessing and labels
    m = dream.Model(str(tmp_path / "py.onnx"))
    assert m.size == 8


def test_train_refuses_one_class(tmp_path):
    dream.shapes(tmp_path / "one", size=8, count=2, classes=["circle"])
    with pytest.raises(dream.Error, match="one class only"):
        dream.train(tmp_path / "one", tmp_path / "m.onnx")
    assert not os.path.exists(tmp_path / "m.onnx")
