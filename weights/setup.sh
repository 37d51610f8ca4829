#!/bin/sh
# Makes the model files the presets name available in weights/models/ (gitignored).
#
# In this project's environment the files are in ../shared/models beside the checkout (or in
# $DREAM_SHARED/models): they are linked, never copied.  Elsewhere, for each missing file this
# prints where it comes from and exits 1; put the files in weights/models/ or in a directory
# listed in $DREAM_MODEL_PATH.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
shared=${DREAM_SHARED:-$here/../../shared}
models=$here/models
mkdir -p "$models"

if [ -d "$shared/models" ]; then
  shared=$(cd "$shared/models" && pwd)
  for f in "$shared"/*; do
    [ -e "$f" ] || continue
    ln -sfn "$f" "$models/$(basename "$f")"
  done
  echo "weights/setup.sh: linked $shared/* into $models"
fi

# Every file a preset needs must now be there.
missing=0
for preset in "$here"/*.preset; do
  name=$(basename "$preset" .preset)
  url=$(sed -n 's/^url[[:space:]]\{1,\}//p' "$preset")
  for key in file labels; do
    f=$(sed -n "s/^$key[[:space:]]\\{1,\\}\\([^[:space:]#]*\\).*/\\1/p" "$preset")
    [ -n "$f" ] || continue
    found=
    if [ -e "$models/$f" ]; then found=$models/$f; fi
    if [ -z "$found" ] && [ -n "${DREAM_MODEL_PATH:-}" ]; then
      old_ifs=$IFS; IFS=:
      for d in $DREAM_MODEL_PATH; do
        if [ -n "$d" ] && [ -e "$d/$f" ]; then found=$d/$f; break; fi
      done
      IFS=$old_ifs
    fi
    if [ -z "$found" ]; then
      missing=1
      echo "weights/setup.sh: $name: $f is missing; put it in $models/ or a directory of \$DREAM_MODEL_PATH" >&2
      if [ "$key" = file ] && [ -n "$url" ]; then echo "  source: $url" >&2; fi
      if [ "$key" = labels ]; then
        echo "  (one class per line in ILSVRC-2012 index order, 'wnid name', e.g. 'n02110185 Siberian husky')" >&2
      fi
    fi
  done
done
if [ "$missing" -ne 0 ]; then exit 1; fi
echo "weights/setup.sh: all preset files are available"
