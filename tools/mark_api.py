#!/usr/bin/python3
"""Marks every function declared in include/dream/*.h with DD_API and wraps each header's
declarations in extern "C", so the headers stay right as functions are added.  Idempotent:
run it after adding a public function (CI's header check fails on a missing DD_API)."""
import re
import sys
from pathlib import Path

root = Path(__file__).resolve().parent.parent
decl = re.compile(r'^(?!DD_API |typedef |static |#|extern |\s|/\*|\*)([A-Za-z_][\w \*]*?\bdd_\w+\()')
changed = 0
for h in sorted((root / "include" / "dream").glob("*.h")):
    if h.name in ("api.h", "version.h"):
        continue
    text = h.read_text()
    lines = text.split("\n")
    out = [("DD_API " + l) if decl.match(l) else
           ("extern DD_API " + l[len("extern "):]) if re.match(r'^extern (?!"C"|DD_API )\w', l)
           else l for l in lines]
    new = "\n".join(out)
    if '#include "dream/api.h"' not in new:
        # after the include guard's #define
        new = re.sub(r'(#define DREAM_\w+_H\n)', r'\1\n#include "dream/api.h"\n', new, count=1)
    if 'extern "C"' not in new:
        # open after the last #include, close before the guard's #endif
        idx = [m.end() for m in re.finditer(r'^#include .*\n', new, re.M)]
        at = idx[-1]
        new = new[:at] + '\n#ifdef __cplusplus\nextern "C" {\n#endif\n' + new[at:]
        end = new.rstrip().rfind("#endif")
        new = new[:end] + '#ifdef __cplusplus\n}\n#endif\n\n' + new[end:]
    if new != text:
        h.write_text(new)
        changed += 1
print(f"mark_api: {changed} header(s) changed")
