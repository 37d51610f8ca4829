#!/bin/sh
# Makes every figure of README's "Watch a network learn" from scratch: datasets, trainings,
# audits, pictures.  Run from the repository root after building (build/dream); writes its
# work into ${WORK:-/tmp/dream-train} and the figures into samples/train/.  About 25 minutes
# on 2 threads before the 32x32 cnn's run grew to 48000 images and 50 epochs (that run alone:
# 8.5 minutes on 1 thread of a loaded machine, without --snapshots); not timed end to end since.
set -eu
D=${DREAM:-build/dream}
W=${WORK:-/tmp/dream-train}
S=samples/train
mkdir -p "$W" "$S"
log() { echo "== $*" >&2; }

# 1. Can a perceptron tell an 8x8 circle from other shapes?  And 16x16 multi-class.
log datasets
$D shapes -q --size 8 --count 2000 --one-vs-rest circle --seed 1 "$W/c8"
$D shapes -q --size 8 --count 500 --one-vs-rest circle --seed 2 "$W/c8-test"
$D shapes -q --size 16 --count 2000 --seed 3 "$W/s16"
$D shapes -q --size 16 --count 500 --seed 4 "$W/s16-test"
for set in c8 s16; do
  for arch in perceptron mlp cnn; do
    log "$arch on $set"
    $D train --arch $arch --optimizer adam --lr 0.002 --epochs 30 --batch 32 --seed 1 \
      --val "$W/$set-test" --snapshots "$W/snap-$arch-$set" "$W/$set" "$W/$arch-$set.onnx" \
      2>&1 | tail -n 1 | tee "$W/$arch-$set.txt"
  done
done
cp "$W/snap-perceptron-c8/filters_0030.png" "$S/perceptron_c8_weights.png"
cp "$W/snap-perceptron-s16/filters_0030.png" "$S/perceptron_s16_weights.png"

# 2. The CNN on 32x32 shapes; its filters before and after, with their feature maps.
log "cnn on 32x32"
$D shapes -q --size 32 --count 12000 --seed 11 "$W/s32"
$D shapes -q --size 32 --count 500 --seed 6 "$W/s32-test"
$D train --arch cnn --optimizer adam --lr 0.003 --schedule cosine --epochs 50 --batch 32 \
  --seed 1 --val "$W/s32-test" --snapshots "$W/snap-cnn-s32" "$W/s32" "$W/cnn-s32.onnx" \
  2>&1 | tail -n 1 | tee "$W/cnn-s32.txt"
cp "$W/snap-cnn-s32/filters.gif" "$S/cnn_filters_forming.gif"
cp "$W/snap-cnn-s32/curves.png" "$S/cnn_curves.png"
img="$W/s32-test/cross/cross_00003.png"
$D activations -q --model "$W/snap-cnn-s32/initial.onnx" --layer relu1_out "$img" "$W/cnn_maps_before.png"
$D activations -q --model "$W/cnn-s32.onnx" --layer relu1_out "$img" "$W/cnn_maps_after.png"
$D audit -q --model "$W/cnn-s32.onnx" "$W/s32-test" "$W/audit-s32"

# 3. Why does my trained network fail: circles always red, squares always blue, ...
log "flawed set"
$D shapes -q --size 32 --count 1000 --color-by-class --seed 7 "$W/flawed"
$D shapes -q --size 32 --count 200 --color-by-class --seed 8 "$W/flawed-test"
$D shapes -q --size 32 --count 200 --seed 9 "$W/fair"
$D shapes -q --size 32 --count 200 --color-by-class --color-shift 1 --seed 10 "$W/recoloured"
$D train --arch cnn --optimizer adam --lr 0.003 --epochs 10 --batch 32 --seed 1 \
  --val "$W/flawed-test" "$W/flawed" "$W/flawed.onnx" 2>&1 | tail -n 1 | tee "$W/flawed.txt"
for set in flawed-test fair recoloured; do
  $D audit --model "$W/flawed.onnx" "$W/$set" "$W/audit-flawed-$set" 2>&1 | tail -n 1 \
    | tee "$W/audit-flawed-$set.txt"
done
$D filters -q --model "$W/flawed.onnx" --optimize --layer relu2_out --size 32 --steps 128 \
  "$W/flawed_channels.png"
$D explain --model "$W/flawed.onnx" "$W/recoloured/circle/circle_00000.png" "$W/flawed_explain.png"

# The README's side-by-side figures, enlarged 2x (nearest neighbour).
log figures
/usr/bin/python3 - "$W" "$S" <<'PY'
import sys
from PIL import Image
w, s = sys.argv[1:]
def row(files, out):
    ims = [Image.open(f).convert("RGB") for f in files]
    ims = [i.resize((i.width * 2, i.height * 2), Image.NEAREST) for i in ims]
    canvas = Image.new("RGB", (sum(i.width for i in ims) + 10 * (len(ims) - 1),
                               max(i.height for i in ims)), (255, 255, 255))
    x = 0
    for i in ims:
        canvas.paste(i, (x, 0))
        x += i.width + 10
    canvas.save(out)
big = Image.open(w + "/s32-test/cross/cross_00003.png").resize((104, 104), Image.NEAREST)
big.save(w + "/cnn_input_big.png")
row([w + "/cnn_input_big.png", w + "/snap-cnn-s32/filters_0000.png", w + "/cnn_maps_before.png",
     w + "/snap-cnn-s32/filters_0050.png", w + "/cnn_maps_after.png"], s + "/cnn_before_after.png")
row([w + "/flawed_channels.png", w + "/flawed_explain.png"], s + "/flawed_story.png")
PY
log done
