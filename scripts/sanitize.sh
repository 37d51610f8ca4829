#!/bin/sh
# Builds the whole test suite with AddressSanitizer and UndefinedBehaviorSanitizer
# (-DDREAM_SANITIZE=ON) into build-asan/ and runs it, leak checking on.  Any sanitizer report
# fails the test it happens in, so the suite must pass as in the normal build.
#
#   scripts/sanitize.sh [criterion options...]   e.g. --filter 'hostile/*'
#   SANITIZE_BUILD=build-asan                     build directory
set -eu
cd "$(dirname "$0")/.."
build=${SANITIZE_BUILD:-build-asan}

cmake -S . -B "$build" -DDREAM_SANITIZE=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$build" -j "$(nproc)" >"$build/build.log" 2>&1 || {
  tail -30 "$build/build.log" >&2
  echo "sanitize.sh: build failed (full log: $build/build.log)" >&2
  exit 2
}

# halt_on_error: the first report ends the test process, which Criterion counts as a crash.
# OpenBLAS and libgomp keep thread pools alive at exit and Criterion's runner keeps its own
# bookkeeping; those are not our leaks, and suppressing them by library keeps every leak of
# ours visible.
supp=$build/lsan.supp
printf 'leak:libopenblas\nleak:libgomp\nleak:libcriterion\n' >"$supp"
export ASAN_OPTIONS=detect_leaks=1:halt_on_error=1:abort_on_error=1:strict_string_checks=1:detect_stack_use_after_return=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
export LSAN_OPTIONS=suppressions=$supp
export DREAM_SHARED=${DREAM_SHARED:-$(pwd)/../shared}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
# Tests run two at a time (--jobs), each on OMP_NUM_THREADS threads: more threads than cores.
# libgomp's default waits at a barrier by spinning, so a thread whose partner is descheduled
# spins out its time slice, at every one of the op tests' thousands of small parallel
# regions: conv's two finite-difference tests took 87 s side by side, 41 s with passive
# waiting (and over 500 s inside the whole suite).  Results do not depend on it.
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}

# A leak is reported when a test's process exits, after Criterion has counted the test as
# passed, so the log is searched too.
log=$build/tests.log
start=$(date +%s)
status=0
"$build/dream_tests" --jobs "$(nproc)" "$@" >"$log" 2>&1 || status=$?
grep -E '^\[(FAIL|====)\]|Assertion|CRASH' "$log" || true
reports=$(grep -c -E 'ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:' "$log" || true)
if [ "$reports" -ne 0 ]; then
  grep -E -A 14 'ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:' "$log" | head -80 >&2
  echo "sanitize.sh: $reports sanitizer report(s), full log: $log" >&2
  [ "$status" -ne 0 ] || status=1
fi
echo "sanitize.sh: suite finished in $(($(date +%s) - start)) s with status $status"
exit "$status"
