#!/bin/sh
# Fuzzes the loaders: builds the libFuzzer targets of tests/fuzz/ with clang, ASan and UBSan
# (library included) into build-fuzz/, seeds each from what is on the machine
# (tests/fuzz/seeds.sh) and runs it for FUZZ_SECONDS.  Any crash, sanitizer report, leak,
# timeout (> 60 s per input) or allocation over 2 GiB is a finding: its input is copied to
# tests/fuzz/regressions/<target>/, where tests/test_hostile.c replays it, and the script
# exits 1.
#
#   scripts/fuzz.sh [TARGET...]        default: every tests/fuzz/fuzz_*.c
#   FUZZ_SECONDS=60                    per target
#   FUZZ_BUILD=build-fuzz              build directory (its corpus/ grows from run to run)
#
# Needs clang, libclang-rt-14-dev (libFuzzer) and libomp-dev (OpenMP for clang);
# python3-pil makes the image seeds.
set -eu
cd "$(dirname "$0")/.."
secs=${FUZZ_SECONDS:-60}
build=${FUZZ_BUILD:-build-fuzz}
# Absolute: fuzz_commands changes into its scratch directory on its first input, after which
# libFuzzer still reads the corpus and writes artifacts by these paths.
mkdir -p "$build"
build=$(cd "$build" && pwd)

if ! command -v clang >/dev/null 2>&1; then
  echo "fuzz.sh: clang is missing (apt-get install clang libclang-rt-14-dev libomp-dev)" >&2
  exit 2
fi

if [ $# -gt 0 ]; then
  targets=$*
else
  targets=$(for f in tests/fuzz/fuzz_*.c; do basename "$f" .c; done)
fi

CC=clang CXX=clang++ cmake -S . -B "$build" -DDREAM_FUZZ=ON -DDREAM_TESTS=OFF \
  -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
# shellcheck disable=SC2086
cmake --build "$build" -j "$(nproc)" --target $targets >"$build/build.log" 2>&1 || {
  tail -30 "$build/build.log" >&2
  echo "fuzz.sh: build failed (full log: $build/build.log)" >&2
  exit 2
}

# Operator and attribute names help the mutator build graphs that get past the loader.
dict=$build/onnx.dict
{
  sed -n 's/^DD_OP(\(.*\))$/"\1"/p' src/ops/ops.def
  for a in kernel_shape strides pads dilations group auto_pad ceil_mode axis axes perm \
    alpha beta bias size transA transB keepdims epsilon momentum value to starts ends fmod \
    reduction; do
    echo "\"$a\""
  done
} >"$dict"

# The command line's option names, from the option tables.
cli_dict=$build/cli.dict
grep -oh '{"[a-z-]*", *[a-z]*_argument' src/cli/*.c src/cli/*.h |
  sed 's/{"\([a-z-]*\)".*/"--\1"/' | sort -u >"$cli_dict"
printf '"meanabs"\n"laplacian"\n"std"\n"#"\n":"\n"@in"\n"@out"\n"@csv"\n"@json"\n"@clip"\n"@data"\n"@gif"\n"@pat"\n"@dir"\n"@onnx"\n"random"\n' >>"$cli_dict"

fail=0
printf '%-12s %12s %8s %10s  %s\n' target executions seconds exec/s result
for t in $targets; do
  case $t in
  fuzz_onnx) max_len=65536 extra="-dict=$dict" ;;
  fuzz_tensor) max_len=65536 extra= ;;
  fuzz_image) max_len=16384 extra= ;;
  fuzz_movie) max_len=16384 extra= ;;
  fuzz_cli) max_len=4096 extra="-dict=$cli_dict" ;;
  # Whole subcommands on GoogLeNet under ASan take seconds: a unit is slow only past the
  # 60 s timeout, which is a finding as for every target.
  fuzz_commands) max_len=1024 extra="-dict=$cli_dict -close_fd_mask=3 -report_slow_units=60" ;;
  *) max_len=65536 extra= ;;
  esac
  corpus=$build/corpus/$t
  art=$build/artifacts/$t
  tests/fuzz/seeds.sh "$t" "$corpus"
  rm -rf "$art"
  mkdir -p "$art"
  log=$build/$t.log
  start=$(date +%s)
  set +e
  # shellcheck disable=SC2086
  ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
    "$build/$t" -max_len="$max_len" -rss_limit_mb=2048 -timeout=60 -max_total_time="$secs" \
    -print_final_stats=1 -artifact_prefix="$art/" $extra "$corpus" >"$log" 2>&1
  rc=$?
  set -e
  took=$(($(date +%s) - start))
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  execs=${execs:-0}
  rate=$((execs / (took > 0 ? took : 1)))
  found=$(find "$art" -type f | wc -l)
  if [ "$rc" -ne 0 ] || [ "$found" -ne 0 ]; then
    fail=1
    mkdir -p "tests/fuzz/regressions/$t"
    for f in "$art"/*; do
      [ -f "$f" ] && cp "$f" "tests/fuzz/regressions/$t/"
    done
    printf '%-12s %12s %8s %10s  %s\n' "$t" "$execs" "$took" "$rate" \
      "FOUND (exit $rc): input saved in tests/fuzz/regressions/$t/, log $log"
    grep -m 12 -E 'ERROR|runtime error|SUMMARY|^ +#[0-9] ' "$log" | sed 's/^/    /' >&2 || true
  else
    printf '%-12s %12s %8s %10s  %s\n' "$t" "$execs" "$took" "$rate" "clean"
  fi
done
exit "$fail"
