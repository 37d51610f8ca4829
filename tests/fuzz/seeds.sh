#!/bin/sh
# Seed corpora for the fuzz targets, gathered from what is on the machine (nothing here is
# committed): tests/fuzz/seeds.sh TARGET DIR fills DIR for fuzz_onnx, fuzz_tensor,
# fuzz_image, fuzz_movie or fuzz_cli.  The regression inputs of
# tests/fuzz/regressions/TARGET are always included, so a fixed crash stays in the corpus.
set -eu
target=$1
dir=$2
here=$(cd "$(dirname "$0")" && pwd)
shared=${DREAM_SHARED:-$here/../../../shared}
node=/usr/share/libonnx-testdata/data/node
mkdir -p "$dir"

# copy SRC NAME: one seed, named so a re-run overwrites instead of duplicating.
copy() { [ -f "$1" ] && cp -f "$1" "$dir/$2" || true; }

case $target in
fuzz_onnx)
  if [ -d "$node" ]; then
    for f in "$node"/*/model.onnx; do copy "$f" "$(basename "$(dirname "$f")").onnx"; done
  fi
  # Real models are far over -max_len: libFuzzer keeps their first bytes, a truncated model.
  for f in "$shared"/models/*.onnx; do copy "$f" "$(basename "$f")"; done
  ;;
fuzz_tensor)
  if [ -d "$node" ]; then
    for f in "$node"/*/test_data_set_0/*.pb; do
      t=$(basename "$(dirname "$(dirname "$f")")")
      copy "$f" "$t.$(basename "$f")"
    done
  fi
  for f in "$shared"/models/*.golden/*.pb "$shared"/models/*.test_data_set_0/*.pb; do
    copy "$f" "$(basename "$(dirname "$f")").$(basename "$f")"
  done
  ;;
fuzz_image)
  # Every format and pixel layout stb_image decodes, tiny, made from one real photo.
  src=$shared/images/scream.jpg
  if [ -f "$src" ] && /usr/bin/python3 -c 'import PIL' 2>/dev/null; then
    /usr/bin/python3 - "$src" "$dir" <<'PY'
import sys
from PIL import Image
src, out = sys.argv[1], sys.argv[2]
im = Image.open(src).convert("RGB").resize((13, 17))
im.save(f"{out}/rgb.png")
im.convert("L").save(f"{out}/grey.png")
im.convert("RGBA").save(f"{out}/rgba.png")
im.convert("LA").save(f"{out}/grey_alpha.png")
im.convert("P").save(f"{out}/palette.png")
im.convert("L").convert("I").save(f"{out}/grey16.png")
im.save(f"{out}/interlaced.png", interlace=1)
im.save(f"{out}/baseline.jpg", quality=80)
im.save(f"{out}/progressive.jpg", quality=80, progressive=True)
im.convert("L").save(f"{out}/grey.jpg")
im.save(f"{out}/rgb.bmp")
im.convert("P").save(f"{out}/palette.bmp")
im.save(f"{out}/rgb.gif")
im.save(f"{out}/rgb.tga")
im.save(f"{out}/rle.tga", compression="tga_rle")
im.save(f"{out}/rgb.ppm")
im.convert("L").save(f"{out}/grey.pgm")
PY
  fi
  for f in "$shared"/images/*.jpg; do copy "$f" "$(basename "$f")"; done
  ;;
fuzz_movie)
  # Tiny movies in the containers and codecs OpenCV's and PIL's writers make (Debian's
  # python3-opencv writes through the same FFmpeg libraries): 16x12, 4 frames.
  if /usr/bin/python3 -c 'import cv2, numpy, PIL' 2>/dev/null; then
    /usr/bin/python3 - "$dir" <<'PY' || true
import sys
import cv2
import numpy as np
from PIL import Image
out = sys.argv[1]
frames = [np.full((12, 16, 3), 40 * i, np.uint8) for i in range(4)]
for i, f in enumerate(frames):
    f[i:i + 4, 2 * i:2 * i + 5] = (200, 30, 90)
for name, fourcc in (("mjpg.avi", "MJPG"), ("mp4v.mp4", "mp4v"), ("xvid.avi", "XVID"),
                     ("mjpg.mkv", "MJPG")):
    w = cv2.VideoWriter("%s/%s" % (out, name), cv2.VideoWriter_fourcc(*fourcc), 10, (16, 12))
    if w.isOpened():
        for f in frames:
            w.write(f)
    w.release()
ims = [Image.fromarray(f[:, :, ::-1]) for f in frames]
ims[0].save("%s/anim.gif" % out, save_all=True, append_images=ims[1:], duration=100, loop=0)
PY
  fi
  ;;
fuzz_cli)
  # NUL-separated argv words, as fuzz_cli splits its input.
  n=0
  while IFS= read -r line; do
    n=$((n + 1))
    printf '%s' "$line" | tr ' ' '\000' >"$dir/args$n"
  done <<'ARGS'
in.jpg out.jpg
dream --layer inception_4c/output in.jpg out.jpg
-m squeezenet --layer fire6/concat --octaves 4 --octave-scale 1.4 --iters 10 in.jpg out.png
--layer conv3#12:0.5 --layer inception_3b/output:2 --step 1.5 --jitter 32 --tile 512 --seed 42 in.jpg out.jpg
--model x.onnx --mean 1,2,3 --std 0.5,0.5,0.5 --bgr --scale 255 --max-memory 512M a.png b.png
--norm laplacian --lap-levels 4 --guide g.jpg --guide-size 300 --max-side 800 -q in.jpg out.bmp
--norm std --checkpoint-every 5 --timing --rgb in.png out.tga
--help
ARGS
  ;;
fuzz_commands)
  # Byte 0: the subcommand (0 classify, 1 explain, 2 activations, 3 class, 4 filters,
  # 5 dream, 6 zoom, 7 video, 8 shapes, 9 train); bytes 1-2: the model (0: GoogLeNet, then libonnx-testdata's in sorted order);
  # then NUL-separated words.
  n=0
  while IFS='|' read -r head words; do
    n=$((n + 1))
    { printf "$head"; printf '%s' "$words" | tr ' ' '\000'; } >"$dir/cmd$n"
  done <<'ARGS'
\000\000\000|@in
\001\000\000|@in @out
\001\000\000|--class 250 --layer inception_4c/output @in @out
\002\000\000|--layer conv2/3x3 --channels 0-3 --stats @csv @in @out
\003\000\000|--class 1 @out
\004\000\000|--optimize --layer conv2/3x3 @out
\004\000\000|--layer conv1 @out
\005\000\000|--layer inception_3b/output @in @out
\000\000\007|@in
\001\000\021|@in @out
\002\001\003|--layer y @in @out
\005\000\100|--layer y @in @out
\006\000\000|--layer inception_3b/output @in @pat
\006\000\000|--rotate 5 --zoom 0.1 @in @gif
\007\000\000|--layer inception_3b/output @clip @pat
\007\000\000|--no-flow --blend 0.3 @clip @gif
\007\000\000|--start 0.1 --end 0.2 @clip @pat
\010\000\000|--classes ring,star --color-by-class @dir
\010\000\000|--one-vs-rest circle @dir
\011\000\000|--arch perceptron @data @onnx
\011\000\000|--arch cnn --optimizer adam --val @data @data @onnx
\011\000\000|--arch mlp --snapshots @dir @data @onnx
ARGS
  ;;
*)
  echo "seeds.sh: unknown target '$target'" >&2
  exit 2
  ;;
esac
if [ -d "$here/regressions/$target" ]; then
  for f in "$here/regressions/$target"/*; do copy "$f" "regression.$(basename "$f")"; done
fi
