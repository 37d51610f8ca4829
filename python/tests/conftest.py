"""Fixtures for the module's tests: the CLI to compare with, the models, a small photo.

Environment (ctest sets them): DREAM_BINARY (default build/dream), DREAM_LIBRARY (the module
finds build/libdream.so by itself), DREAM_SHARED (the photos; default ../shared).
"""
import os
import subprocess
import sys

import numpy as np
import pytest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "python"))

import dream  # noqa: E402


@pytest.fixture(scope="session")
def cli():
    """cli(*args) runs the dream binary and returns its CompletedProcess; a failure fails the
    test with its stderr."""
    binary = os.environ.get("DREAM_BINARY", os.path.join(ROOT, "build", "dream"))
    if not os.access(binary, os.X_OK):
        pytest.skip("no dream binary at %s (set DREAM_BINARY)" % binary)

    def run(*args, ok=True):
        r = subprocess.run([binary] + [str(a) for a in args], capture_output=True, text=True)
        if ok and r.returncode:
            pytest.fail("dream %s: exit %d\n%s" % (" ".join(map(str, args)), r.returncode,
                                                    r.stderr))
        return r
    return run


def _model(name):
    try:
        return dream.Model(name)
    except dream.Error as e:
        pytest.skip("model %s unavailable (weights/setup.sh): %s" % (name, e))


@pytest.fixture(scope="session")
def googlenet():
    m = _model("googlenet")
    yield m
    m.close()


@pytest.fixture(scope="session")
def squeezenet():
    m = _model("squeezenet")
    yield m
    m.close()


@pytest.fixture(scope="session")
def photo(tmp_path_factory):
    """(path, uint8 pixels) of a small PNG: kite.jpg cut down to 133 x 89 by striding (a
    size no octave divides evenly), or a made-up picture without the shared photos."""
    shared = os.environ.get("DREAM_SHARED", os.path.join(ROOT, "..", "shared"))
    src = os.path.join(shared, "images", "kite.jpg")
    if os.path.exists(src):
        a = dream.load_image(src)
        step = max(1, max(a.shape[:2]) // 133)
        a = np.ascontiguousarray(a[::step, ::step][:89, :133])
    else:
        y, x = np.mgrid[0:89, 0:133]
        a = np.stack([x * 255 // 132, y * 255 // 88, (x ^ y) & 255], axis=2).astype(np.uint8)
    path = tmp_path_factory.mktemp("photo") / "small.png"
    dream.save_image(path, a)
    return str(path), dream.load_image(path)
