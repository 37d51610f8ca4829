#!/bin/sh
# Checks the library as a user of it meets it:
#   1. every public header compiles on its own, as C11 and as C++ (extern "C"),
#   2. libdream.so exports dd_* symbols only, and every function the headers declare,
#   3. `cmake --install` lays out lib/, include/dream/, lib/pkgconfig/dream.pc, bin/dream,
#   4. examples/dream_example.c builds against the installed tree with pkg-config and runs.
# tools/check_library.sh BUILD_DIR
set -eu
cd "$(dirname "$0")/.."
build=${1:-build}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail=0

for h in include/dream/*.h; do
  name=dream/$(basename "$h")
  printf '#include <%s>\ntypedef int dd_check_nonempty_;\n' "$name" >"$tmp/one.c"
  cp "$tmp/one.c" "$tmp/one.cpp"
  cc -std=c11 -Wall -Wextra -Werror -pedantic -Iinclude -fsyntax-only "$tmp/one.c" ||
    { echo "check_library: $name does not compile alone as C11" >&2; fail=1; }
  c++ -std=c++11 -Wall -Werror -Iinclude -fsyntax-only "$tmp/one.cpp" ||
    { echo "check_library: $name does not compile alone as C++" >&2; fail=1; }
done
echo "check_library: $(ls include/dream/*.h | wc -l) headers compile alone as C11 and C++"

lib=$build/libdream.so
nm -D --defined-only "$lib" | awk '$2 ~ /[TDBR]/ {print $3}' | sort >"$tmp/exported"
others=$(grep -v '^dd_' "$tmp/exported" || true)
if [ -n "$others" ]; then
  echo "check_library: $lib exports symbols outside dd_*: $others" >&2
  fail=1
fi
grep -ho 'DD_API[^(]*\bdd_[a-z0-9_]*' include/dream/*.h | grep -o 'dd_[a-z0-9_]*$' | sort -u >"$tmp/declared"
missing=$(comm -23 "$tmp/declared" "$tmp/exported")
if [ -n "$missing" ]; then
  echo "check_library: declared DD_API but not exported: $missing" >&2
  fail=1
fi
echo "check_library: $(wc -l <"$tmp/exported") symbols exported, all dd_*; $(wc -l <"$tmp/declared") declared, all exported"

prefix=$tmp/prefix
cmake --install "$build" --prefix "$prefix" >/dev/null
for f in lib/libdream.so include/dream/dream.h lib/pkgconfig/dream.pc bin/dream; do
  [ -e "$prefix/$f" ] || { echo "check_library: the install tree lacks $f" >&2; fail=1; }
done
soname=$(objdump -p "$prefix/lib/libdream.so" | awk '/SONAME/ {print $2}')
echo "check_library: installed into a temporary prefix; soname $soname"


export PKG_CONFIG_PATH=$prefix/lib/pkgconfig
# shellcheck disable=SC2046
cc -std=c11 -Wall -Werror examples/dream_example.c $(pkg-config --cflags --libs dream) \
  -o "$tmp/dream_example"
shared=${DREAM_SHARED:-../shared}
if [ -f "$shared/images/dog.jpg" ]; then
  DREAM_PRESET_PATH=$PWD/weights DREAM_MODEL_PATH=$shared/models \
    LD_LIBRARY_PATH=$prefix/lib "$tmp/dream_example" googlenet "$shared/images/dog.jpg" \
    "$tmp/out.jpg"
  [ -s "$tmp/out.jpg" ] || { echo "check_library: the example wrote nothing" >&2; fail=1; }
else
  echo "check_library: $shared/images/dog.jpg missing: the example was built, not run" >&2
  fail=1
fi
[ "$fail" -eq 0 ] && echo "check_library: passed"
exit "$fail"
