"""The CPU a benchmark ran on, named the same way by every script in bench/ (the brief: name
the CPU beside every figure)."""


def cpu_name():
    """The CPU as /proc/cpuinfo names it, with its family and model (a virtual machine may
    report only "Intel(R) Xeon(R) Processor") and its widest vector extensions."""
    info = {}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if ":" in line:
                    k, v = line.split(":", 1)
                    info.setdefault(k.strip(), v.strip())
                elif info:
                    break
    except OSError:
        return "unknown CPU"
    flags = info.get("flags", "").split()
    ext = [x for x in ("avx512f", "avx512_bf16", "amx_bf16") if x in flags]
    return "%s (family %s, model %s; %s)" % (info.get("model name", "unknown CPU"),
                                             info.get("cpu family", "?"),
                                             info.get("model", "?"), ", ".join(ext) or "no AVX-512")
