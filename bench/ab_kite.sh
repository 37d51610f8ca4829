#!/bin/bash
# The default dream job on kite.jpg, two builds of dream alternated (A B A B ...) under
# /usr/bin/time, so that a change of machine load hits both: user and system CPU, wall time
# and peak RSS per run.  Used for "The restructured library (issue #14) against the code
# before it" in bench/README.md.
#
#   bench/ab_kite.sh OLD_DREAM NEW_DREAM [ROUNDS]      (default 4 rounds)
set -eu
old=$1 new=$2 rounds=${3:-4}
shared=${DREAM_SHARED:-$(cd "$(dirname "$0")/../.." && pwd)/shared}
kite=$shared/images/kite.jpg model=$shared/models/bvlc_googlenet.onnx
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
for r in $(seq "$rounds"); do
  for b in old new; do
    bin=$old
    [ "$b" = new ] && bin=$new
    /usr/bin/time -f "$r $b user %U sys %S wall %e maxrss_kb %M" "$bin" dream -q --timing \
      --seed 1 --model "$model" --layer inception_4c/output "$kite" "$out/$b.png" 2>&1 |
      grep -E "^$r |loop"
  done
done
