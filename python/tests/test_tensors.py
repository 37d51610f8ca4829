"""Tensor files through the module: each dtype the library holds (float32, int64, bool) is
written as an ONNX TensorProto and read back unchanged; bool is stored as ONNX's BOOL, one
byte per element, as onnx's own reader sees it."""
import numpy as np
import pytest

import dream


@pytest.mark.parametrize("a", [
    np.arange(6, dtype=np.float32).reshape(2, 3) / 7,
    np.array([[-(2 ** 62), 5], [0, 2 ** 40]], dtype=np.int64),
    np.array([[True, False, True], [False, False, True]]),
    np.zeros((0, 3), dtype=np.bool_),
])
def test_round_trip(tmp_path, a):
    path = tmp_path / "t.pb"
    dream.save_tensor(path, a, "t")
    b, name = dream.load_tensor(path)
    assert name == "t"
    assert b.dtype == a.dtype and b.shape == a.shape
    assert np.array_equal(a, b)


def test_bool_is_onnx_bool(tmp_path):
    onnx = pytest.importorskip("onnx")
    from onnx import numpy_helper
    a = np.array([True, False, True, True])
    dream.save_tensor(tmp_path / "b.pb", a)
    t = onnx.load_tensor(str(tmp_path / "b.pb"))
    assert t.data_type == onnx.TensorProto.BOOL
    assert np.array_equal(numpy_helper.to_array(t), a)
    # and onnx's own file reads back
    onnx.save_tensor(numpy_helper.from_array(~a, "n"), str(tmp_path / "n.pb"))
    b, name = dream.load_tensor(tmp_path / "n.pb")
    assert name == "n" and b.dtype == np.bool_ and np.array_equal(b, ~a)


def test_other_dtypes_are_refused(tmp_path):
    with pytest.raises(TypeError):
        dream.save_tensor(tmp_path / "x.pb", np.zeros(3, dtype=np.int32))
