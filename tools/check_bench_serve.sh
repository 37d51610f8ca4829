#!/bin/sh
# Checks bench_engine serve's protocol, which bench/modern.py --pairs reads: a `ready` line,
# then one answer per command: `probe` -> round_trip_ns (a number), `run N` -> N wall times
# and N CPU times, all positive, an unknown command -> `error`, `quit` -> exit status 0.
# tools/check_bench_serve.sh BUILD_DIR (GoogLeNet from $DREAM_SHARED, 224x224)
set -eu
bench=${1:-build}/bench_engine
out=$(printf 'probe\nrun 3\nbogus\nquit\n' |
      "$bench" serve --preset googlenet --layer inception_4c/output --size 224x224)
fail=0
check() { # check DESCRIPTION AWK-PROGRAM
  printf '%s\n' "$out" | awk "$2" || { echo "check_bench_serve: $1; got:" >&2;
                                     printf '%s\n' "$out" >&2; fail=1; }
}
check "no ready line first" \
  '!/^#/ {exit !($1 == "ready" && $2 == "size=224x224")}'
check "no probe answer" \
  '/^probe / {split($2, a, "="); found = a[1] == "round_trip_ns" && a[2] ~ /^[0-9]+$/}
   END {exit !found}'
check "no 3 positive wall and CPU times" \
  '/^runs / {split($2, w, "="); split($3, c, "="); nw = split(w[2], wt, ","); nc = split(c[2], ct, ",")
             ok = w[1] == "ms" && c[1] == "cpu_ms" && nw == 3 && nc == 3
             for (i = 1; i <= 3; i++) ok = ok && wt[i] + 0 > 0 && ct[i] + 0 > 0
             found = ok}
   END {exit !found}'
check "no error for an unknown command" '/^error / {found = 1} END {exit !found}'
[ "$fail" = 0 ] && echo "check_bench_serve: ready, probe, run 3, error, quit as bench/modern.py reads them"
exit "$fail"
