"""`cmake --install` puts the module where Python finds it beside the installed library."""
import os
import shutil
import subprocess
import sys

import pytest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


def test_installed_module_finds_its_library(tmp_path):
    build = os.environ.get("DREAM_BUILD_DIR", os.path.join(ROOT, "build"))
    cmake = shutil.which("cmake")
    if not cmake or not os.path.exists(os.path.join(build, "cmake_install.cmake")):
        pytest.skip("needs cmake and a configured build directory (DREAM_BUILD_DIR)")
    prefix = tmp_path / "prefix"
    subprocess.run([cmake, "--install", build, "--prefix", str(prefix)], check=True,
                   capture_output=True)
    site = prefix / "lib" / "python3" / "dist-packages"
    assert (site / "dream" / "__init__.py").exists()
    env = {k: v for k, v in os.environ.items() if k not in ("DREAM_LIBRARY", "PYTHONPATH")}
    env["PYTHONPATH"] = str(site)
    code = ("import dream, os; print(dream.__file__); print(os.path.realpath("
            "dream.library_path)); print(dream.Model('squeezenet').input_name)")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                         text=True, check=True, cwd=str(tmp_path)).stdout.split("\n")
    assert out[0].startswith(str(site))
    assert out[1].startswith(str(prefix)) and "libdream.so" in out[1]
    assert out[2] == "data"
