"""cffi's ABI mode trusts the declarations in dream/_ffi.py: every struct they declare must
have the size and field offsets the C compiler gives the real headers."""
import os
import shutil
import subprocess

import pytest

from dream._ffi import ffi, lib

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
STRUCTS = ["dd_err", "dd_shape", "dd_tensor", "dd_image", "dd_image_save_opts", "dd_preproc",
           "dd_preset", "dd_frame_rect", "dd_binding", "dd_dream_layer", "dd_dream_params",
           "dd_dream_progress", "dd_dream_budget", "dd_grid", "dd_fv_opts", "dd_chan_stats",
           "dd_explain_opts", "dd_explanation", "dd_layout", "dd_input_sizes", "dd_audit_opts",
           "dd_movie_info", "dd_movie_opts", "dd_train_opts", "dd_train_meta",
           "dd_shapes_opts"]
DEFINES = ["DD_PLAN_EXACT"]
ENUMS = ["dd_dtype", "dd_framing", "dd_dream_norm", "dd_cmap", "dd_layout_kind", "dd_precision",
         "dd_optimizer"]


def test_layouts_match_the_headers(tmp_path):
    cc = shutil.which(os.environ.get("CC", "cc"))
    include = os.path.join(ROOT, "include")
    if not cc or not os.path.isdir(include):
        pytest.skip("needs a C compiler and include/dream")
    lines = ["#include <stddef.h>", "#include <stdio.h>"] + \
        ['#include "dream/%s.h"' % h for h in
         ("error", "tensor", "image", "preset", "frame", "graph", "dream", "visualize",
          "layout", "audit", "video", "train")] + \
        ["int main(void) {"]
    want = []
    for s in STRUCTS:
        lines.append('  printf("%%s %%zu\\n", "%s", sizeof(%s));' % (s, s))
        want.append("%s %d" % (s, ffi.sizeof(s)))
        for name, f in ffi.typeof(s).fields:
            lines.append('  printf("%%s %%zu\\n", "%s.%s", offsetof(%s, %s));' % (s, name, s, name))
            want.append("%s.%s %d" % (s, name, f.offset))
    for e in ENUMS:
        lines.append('  printf("%%s %%zu\\n", "%s", sizeof(%s));' % (e, e))
        want.append("%s %d" % (e, ffi.sizeof(e)))
        for name, value in sorted(ffi.typeof(e).relements.items()):
            lines.append('  printf("%%s %%d\\n", "%s", (int)%s);' % (name, name))
            want.append("%s %d" % (name, value))
    for d in DEFINES:
        lines.append('  printf("%%s %%ld\\n", "%s", (long)%s);' % (d, d))
        want.append("%s %d" % (d, getattr(lib, d)))
    lines += ["  return 0;", "}"]
    src, exe = tmp_path / "abi.c", tmp_path / "abi"
    src.write_text("\n".join(lines) + "\n")
    subprocess.run([cc, "-std=c11", "-I", include, str(src), "-o", str(exe)], check=True)
    got = subprocess.run([str(exe)], capture_output=True, text=True, check=True).stdout
    assert got.split("\n")[:-1] == want
