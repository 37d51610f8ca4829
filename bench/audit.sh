#!/bin/sh
# Images per second of `dream audit` on a 200-image folder (copies of ../shared/images in
# labelled subfolders), without and with the perturbation sweep (--perturb all: 31 more
# forward passes per image), and with the Grad-CAM panels.  Usage:
#   bench/audit.sh [BUILD_DIR] [N_IMAGES]        (defaults: build, 200)
# Prints one line per configuration: seconds, images per second.
set -eu
here=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$here/build}
n=${2:-200}
shared=${DREAM_SHARED:-$here/../shared}
export DREAM_MODEL_PATH=$shared/models
work=$(mktemp -d /tmp/dream_audit_bench.XXXXXX)
trap 'rm -rf "$work"' EXIT
# the seven photos, labelled where ImageNet has their class (giraffe, person, scream and the
# kite beach photo unlabelled, at the top)
i=0
while [ "$i" -lt "$n" ]; do
  for f in "bald eagle:eagle" "sorrel:horses" "Siberian husky:dog" ":giraffe" ":person" \
           ":kite" ":scream"; do
    [ "$i" -lt "$n" ] || break
    dir=${f%%:*} name=${f#*:}
    mkdir -p "$work/ds/$dir"
    cp "$shared/images/$name.jpg" "$work/ds/$dir/$name-$i.jpg"
    i=$((i + 1))
  done
done
run() {
  label=$1
  shift
  t0=$(date +%s.%N)
  "$build/dream" audit -q "$@" "$work/ds" "$work/out-$label" || true
  t1=$(date +%s.%N)
  s=$(echo "$t1 - $t0" | bc)
  echo "$label $n images: $s s, $(echo "scale=2; $n / $s" | bc) images/s"
}
run plain --no-panels
run panels
run perturb --no-panels --perturb all
