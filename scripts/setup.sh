#!/bin/sh
# One step from a fresh Debian checkout to a working build/dream:
#   1. installs the Debian packages dream builds and tests with (apt-get; sudo when not root),
#   2. builds with CMake into build/,
#   3. makes the model files available (weights/setup.sh).
# Set DREAM_SKIP_APT=1 to skip step 1 when the packages are already there.
set -eu
cd "$(dirname "$0")/.."

# Build: compiler, CMake, OpenBLAS (sgemm), stb (image IO), protobuf-c + Debian's onnx.proto.
build_packages="gcc g++ make cmake pkg-config libopenblas-dev libopenblas-openmp-dev libstb-dev libprotobuf-c-dev protobuf-c-compiler libonnx-dev libjansson-dev"
# Movies (dream zoom, dream video): FFmpeg's libraries; optical flow: OpenCV's video module.
build_packages="$build_packages libavformat-dev libavcodec-dev libswscale-dev libavutil-dev libopencv-video-dev"
# Tests: Criterion, the ONNX conformance suite, PyTorch as the gradient oracle, cffi and
# pytest for the Python module (python/tests).
test_packages="libcriterion-dev libonnx-testdata python3-torch python3-torchvision python3-onnx python3-numpy python3-cffi python3-pytest"
# bench/video.py's PyTorch peer takes its optical flow from OpenCV's Python module
test_packages="$test_packages python3-opencv"
# dream audit's page is tested in a real browser, headless
test_packages="$test_packages chromium"
# Scale-out tests (tests/cli/test_batch.c, ctest's slurm): GNU parallel, a one-node Slurm.
dist_packages="parallel slurm-wlm"

if [ "${DREAM_SKIP_APT:-0}" != 1 ]; then
  sudo=
  if [ "$(id -u)" -ne 0 ]; then sudo=sudo; fi
  $sudo apt-get update -q
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends \
    $build_packages $test_packages \
    $dist_packages
fi

cmake -S . -B build -DCMAKE_BUILD_TYPE=Release
cmake --build build -j "$(nproc)"
weights/setup.sh
