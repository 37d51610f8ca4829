#!/bin/sh
# Runs the ONNX operator conformance tests (tests/ops/test_conformance.c) and prints a Markdown
# table of every in-scope case: status (pass/skip/fail) and reason.
#
#   tools/conformance_report.sh [BUILD_DIR] > docs/conformance.md
#
# BUILD_DIR (default: build) holds dream_tests.  The test binary writes one line per case to
# $DREAM_CONFORMANCE_REPORT; this script only formats them.
set -eu
build=${1:-build}
bin="$build/dream_tests"
[ -x "$bin" ] || { echo "conformance_report.sh: $bin not found; build first" >&2; exit 2; }
tmp=$(mktemp)
trap 'rm -f "$tmp"' EXIT
# A failing case makes the test binary exit non-zero; the table still has to be printed.
DREAM_CONFORMANCE_REPORT="$tmp" "$bin" --filter 'conformance/*' --jobs 1 >/dev/null 2>&1 || true
[ -s "$tmp" ] || { echo "conformance_report.sh: no results (is libonnx-testdata installed?)" >&2; exit 1; }

data=${DREAM_ONNX_TESTDATA:-/usr/share/libonnx-testdata/data/node}
pkg=$(dpkg-query -W -f '${Version}' libonnx-testdata 2>/dev/null || echo unknown)
sort -t "$(printf '\t')" -k1,1 "$tmp" | awk -F '\t' -v data="$data" -v pkg="$pkg" '
  { name[NR] = $1; st[NR] = $2; r = $3
    # the case directory is in the row already; keep the reason short
    gsub(data "/" $1 "/model.onnx: ", "", r); gsub(data "/" $1 "/", "", r)
    sub(/ \(supported: [^)]*\)/, "", r)
    gsub(/\|/, "\\|", r); reason[NR] = r; count[$2]++ }
  END {
    printf "# ONNX operator conformance\n\n"
    printf "The ONNX project'"'"'s own node tests (Debian `libonnx-testdata` %s, `%s`), every case whose\n", pkg, data
    printf "model uses only operators of `src/ops/ops.def`, run by `tests/ops/test_conformance.c`:\n"
    printf "load with `dd_model_load`, float inputs at run time, int64 inputs as plan-time constants,\n"
    printf "outputs compared as |ours - expected| <= 1e-7 + 1e-3 |expected| (the ONNX backend test\n"
    printf "defaults). A case is skipped only when our loader or planner refuses it as unsupported\n"
    printf "(its message is the reason) or when an expected output has an element type dream does not\n"
    printf "hold. For passes, the reason gives the worst |d|/tolerance. When an op refuses at run\n"
    printf "time a float input that real models hold as an initializer (Clip'"'"'s bounds, Pad'"'"'s value),\n"
    printf "the case runs again with the inputs after the first bound as constants, and says so;\n"
    printf "when an op needs every input at plan time (Range'"'"'s start, limit and delta), with all\n"
    printf "of them bound as constants.\n\n"
    printf "Regenerate: `tools/conformance_report.sh BUILD_DIR > docs/conformance.md`.\n\n"
    printf "**%d cases: %d pass, %d skip, %d fail.**\n\n", NR, count["pass"], count["skip"], count["fail"]
    printf "| case | status | reason |\n|---|---|---|\n"
    for (i = 1; i <= NR; i++) printf "| %s | %s | %s |\n", name[i], st[i], reason[i]
  }'
