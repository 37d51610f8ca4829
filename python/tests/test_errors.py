"""Failures become dream.Error with the library's message and status code."""
import numpy as np
import pytest

import dream


def test_missing_model_file(tmp_path):
    path = tmp_path / "nothing.onnx"
    with pytest.raises(dream.Error) as e:
        dream.Model(str(path))
    assert e.value.code in (dream.EIO, dream.ENOTFOUND)
    assert str(path) in str(e.value) and e.value.message == str(e.value)
    assert e.value.name == {dream.EIO: "DD_EIO", dream.ENOTFOUND: "DD_ENOTFOUND"}[e.value.code]


def test_unknown_preset():
    with pytest.raises(dream.Error) as e:
        dream.Model("no-such-preset")
    assert e.value.code == dream.ENOTFOUND and "no-such-preset" in e.value.message


def test_not_a_model(tmp_path):
    path = tmp_path / "junk.onnx"
    path.write_bytes(b"\x08\x07 certainly not protobuf \xff\xff")
    with pytest.raises(dream.Error) as e:
        dream.Model(str(path))
    assert e.value.code == dream.EFORMAT and "junk.onnx" in e.value.message


def test_missing_image(tmp_path):
    with pytest.raises(dream.Error) as e:
        dream.load_image(tmp_path / "none.png")
    assert e.value.code == dream.EIO and "none.png" in e.value.message


def test_unknown_layer(googlenet, photo):
    with pytest.raises(dream.Error) as e:
        dream.dream(photo[1], model=googlenet, layer="inception_9z/output", iters=1, octaves=1)
    assert e.value.code == dream.ENOTFOUND
    assert "no layer named 'inception_9z/output'" in e.value.message
    assert "closest: inception_" in e.value.message
    with pytest.raises(dream.Error, match="no layer named 'nope'"):
        googlenet.run(np.zeros((1, 3, 32, 32), np.float32), ["nope"])
    with pytest.raises(dream.Error, match="no layer named 'nope'"):
        googlenet.grad(np.zeros((1, 3, 32, 32), np.float32), "nope")


def test_bad_arguments(googlenet, squeezenet, photo):
    with pytest.raises(dream.Error, match="channel 5000 is out of range"):
        googlenet.grad(np.zeros((1, 3, 64, 64), np.float32), "conv3#5000")
    with pytest.raises(dream.Error) as e:
        dream.dream(photo[1], model=squeezenet, octaves=0)
    assert e.value.code == dream.EARG and "octaves must be 1..64" in e.value.message
    with pytest.raises(dream.Error, match="norm: expected meanabs, std or laplacian"):
        dream.dream(photo[1], model=squeezenet, norm="l2")
    with pytest.raises(dream.Error, match="does not fit the model's input"):
        googlenet.run(np.zeros((3, 32, 32), np.float32))
    with pytest.raises(dream.Error) as e:
        dream.explain(squeezenet, photo[1], "no such class")
    assert e.value.code == dream.ENOTFOUND
    with pytest.raises(ValueError):
        dream.dream(np.zeros((8, 8, 4), np.uint8), model=squeezenet)


def test_too_small(squeezenet):
    with pytest.raises(dream.Error) as e:
        squeezenet.run(np.zeros((1, 3, 8, 8), np.float32), "fire9/concat")
    assert e.value.code == dream.ESHAPE and "too small" in e.value.message


def test_memory_budget(squeezenet):
    """A budget too small for the image names the max_side that fits, in the module's
    words (the CLI's say --max-side and --max-memory)."""
    grey = np.full((300, 450, 3), 128, np.uint8)
    with pytest.raises(dream.Error) as e:
        dream.dream(grey, model=squeezenet, max_memory=6 << 20, iters=1, octaves=1)
    assert e.value.code == dream.ELIMIT
    assert "max_memory=6M" in e.value.message and "raise max_memory to" in e.value.message
    assert "use max_side=" in e.value.message, e.value.message
    assert "--" not in e.value.message.split(";")[-1]


def test_closed_model():
    with dream.Model("squeezenet") as m:
        assert m.input_name == "data"
    with pytest.raises(dream.Error, match="closed"):
        m.input_name
    m.close()  # twice is fine
