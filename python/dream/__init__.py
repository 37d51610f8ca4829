"""dream: DeepDream and CNN visualization on libdream, with numpy arrays in and out.

    import dream
    m = dream.Model("googlenet")                 # a preset name or a path to an .onnx file
    pic = dream.load_image("kite.jpg")           # uint8, H x W x 3
    out = dream.dream(pic, model=m, layer="inception_4c/output", octaves=4, seed=3)
    dream.save_image("kite-dream.png", out)      # the PNG `dream` would write

Every function gives what the CLI computes with the same options, bit for bit: the module
calls the same library functions in the same order (see src/cli/cmd_*.c).  Images are
H x W x 3 arrays (uint8, or floats in 0..255); pictures come back as uint8, rounded and
clamped as the library rounds them when it writes a file.  Failures raise dream.Error with
the library's message and status code.

dream.audit(dir, ...) returns the report of `dream audit` (dd_audit_run) as Python objects.
dream.shapes(out_dir, ...) and dream.train(train_dir, out, ...) write what `dream shapes` and
`dream train` write, byte for byte.
"""
import json
import math
import os
import re
import warnings
from collections import namedtuple
from dataclasses import dataclass
from typing import List, Tuple

import numpy as np

from dream._ffi import ffi, lib, library_path

__all__ = [
    "Error", "Model", "Layer", "InputSizes", "dream", "load_image", "save_image", "load_tensor",
    "save_tensor", "filters", "optimize_channels", "class_image", "activations", "explain",
    "Filters", "ChannelImages", "ClassImage", "Activations", "Explanation", "Progress",
    "audit", "default_max_memory", "library_path", "MovieInfo", "movie_info", "read_movie",
    "MovieWriter", "shapes", "train", "TrainResult", "Dreamer", "zoom", "video", "system",
]

# Status codes (include/dream/error.h, DD_ERRNO_MAP).
OK, EIO, EFORMAT, EUNSUPPORTED, ESHAPE, ENOMEM, ELIMIT, EARG, ENOTFOUND, EINTR = (
    0, -1, -2, -3, -4, -5, -6, -7, -8, -9)


class Error(Exception):
    """A failure reported by libdream: `message` says why, `code` is the status (dream.EARG,
    dream.ENOTFOUND, ...) and `name` its name ("DD_ENOTFOUND")."""

    def __init__(self, message, code):
        super().__init__(message)
        self.message = message
        self.code = code
        self.name = _str(lib.dd_errname(code))


# Bound now, not on first use: close() runs from __del__, which the garbage collector may
# call while cffi is building another attribute of lib under its lock.
_model_free = lib.dd_model_free
_labels_free = lib.dd_labels_free
_preset_clear = lib.dd_preset_clear
_dreamer_free = lib.dd_dreamer_free


def _str(p):
    return ffi.string(p).decode("utf-8", "replace") if p != ffi.NULL else None


def _check(rc, err):
    if rc:
        msg = _str(err.msg) if err.code == rc and err.msg[0] != b"\0" else None
        raise Error(msg or _str(lib.dd_strerror(rc)), rc)


def _fail(code, message):
    raise Error(message, code)


def default_max_memory():
    """Half of physical memory, the CLI's default --max-memory (cli_default_max_memory)."""
    try:
        pages, page = os.sysconf("SC_PHYS_PAGES"), os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError):
        pages = page = -1
    if pages <= 0 or page <= 0:
        return 1 << 31
    return pages * page // 2


def system():
    """What this process computes on, to print beside any figure (as `dream --version`):
    {"cpu": the CPU's brand string, "fp32_kernels": "avx512", "avx2" or "generic" (chosen once from
    cpuid; the environment variable DREAM_KERNELS forces one), "bf16_kernels": "amx",
    "avx512-bf16" or "none"}."""
    p = ffi.new("const char *[3]")
    lib.dd_system_kernels(p, p + 1, p + 2)
    return {"cpu": _str(p[0]), "fp32_kernels": _str(p[1]), "bf16_kernels": _str(p[2])}


# ---- images and tensors ----------------------------------------------------------------

def _image_from_array(a, what="image"):
    """An owned dd_image (freed with the returned cdata) holding an H x W x 3 (or H x W grey)
    array of 0..255 values."""
    a = np.asarray(a)
    if a.ndim == 2:
        a = np.repeat(a[:, :, None], 3, axis=2)
    if a.ndim != 3 or a.shape[2] != 3:
        raise ValueError("%s: expected an H x W x 3 (RGB) or H x W (grey) array, got shape %s"
                         % (what, a.shape))
    if a.dtype.kind not in "uif":
        raise TypeError("%s: expected numbers, got %s" % (what, a.dtype))
    h, w = a.shape[:2]
    err = ffi.new("dd_err *")
    out = ffi.new("dd_image **")
    _check(lib.dd_image_new(w, h, out, err), err)
    im = ffi.gc(out[0], lib.dd_image_free)
    _image_view(im)[...] = a
    return im


def _image_view(im):
    """The pixels of a dd_image as an H x W x 3 float32 array (no copy)."""
    n = im.w * im.h * 3
    return np.frombuffer(ffi.buffer(im.rgb, n * 4), dtype=np.float32).reshape(im.h, im.w, 3)


def _take_image(pp):
    """Owns the dd_image at *pp (freed when the cdata goes)."""
    return ffi.gc(pp[0], lib.dd_image_free)


def _to_bytes(v):
    """H x W x 3 pixels to bytes by the library's own rounding, as every save writes them
    (dd_image_to_bytes: 0 for anything not > 0, NaN too; 255 from 255 up; else the nearest
    integer, ties to even)."""
    v = np.ascontiguousarray(v, dtype=np.float32)
    if v.ndim != 3 or v.shape[2] != 3:
        raise ValueError("expected an H x W x 3 array, got shape %s" % (v.shape,))
    out = np.empty(v.shape, dtype=np.uint8)
    if v.size:
        view = ffi.new("dd_image *", {"w": v.shape[1], "h": v.shape[0],
                                       "rgb": ffi.cast("float *", ffi.from_buffer(v))})
        lib.dd_image_to_bytes(view, ffi.cast("unsigned char *", ffi.from_buffer(out)))
    return out


def _image_bytes(im):
    return _to_bytes(_image_view(im))


def load_image(path, dtype=np.uint8, max_pixels=0):
    """Decodes an image file with the library (dd_image_load: EXIF orientation applied, grey
    spread to RGB, alpha composited on white).  dtype uint8 gives the pixels as a file would
    store them again; float32 gives the decoded values as the CLI works on them."""
    err = ffi.new("dd_err *")
    out = ffi.new("dd_image **")
    _check(lib.dd_image_load(os.fsencode(path), max_pixels, out, err), err)
    im = _take_image(out)
    if np.dtype(dtype) == np.uint8:
        return _image_bytes(im)
    return _image_view(im).astype(dtype)


def save_image(path, rgb, quality=95):
    """Writes an H x W x 3 image by its extension (.png, .jpg, .bmp, .tga), as the CLI does
    (dd_image_save_with; floats rounded and clamped to bytes)."""
    im = _image_from_array(rgb)
    opts = ffi.new("dd_image_save_opts *", {"quality": quality, "keep_meta": 0})
    err = ffi.new("dd_err *")
    _check(lib.dd_image_save_with(os.fsencode(path), im, opts, err), err)


def _tensor_to_array(t):
    shape = tuple(t.shape.d[i] for i in range(t.shape.ndim))
    n = int(np.prod(shape, dtype=np.int64)) if shape else 1
    dtype = {lib.DD_F32: np.float32, lib.DD_I64: np.int64, lib.DD_BOOL: np.bool_}[t.dtype]
    return np.frombuffer(ffi.buffer(t.data, n * np.dtype(dtype).itemsize),
                         dtype=dtype).reshape(shape).copy()


def _shape_of(a):
    if a.ndim > 8:
        raise ValueError("at most 8 dimensions, got %d" % a.ndim)
    s = ffi.new("dd_shape *")
    s.ndim = a.ndim
    for i, d in enumerate(a.shape):
        s.d[i] = d
    return s


def _array_to_tensor(a):
    """An owned dd_tensor holding a copy of a float32, int64 or bool array."""
    a = np.ascontiguousarray(a)
    if a.dtype == np.float32:
        dt = lib.DD_F32
    elif a.dtype == np.int64:
        dt = lib.DD_I64
    elif a.dtype == np.bool_:
        dt = lib.DD_BOOL
    else:
        raise TypeError("tensors are float32, int64 or bool, not %s" % a.dtype)
    err = ffi.new("dd_err *")
    out = ffi.new("dd_tensor **")
    _check(lib.dd_tensor_new(dt, _shape_of(a), 0, out, err), err)
    t = ffi.gc(out[0], lib.dd_tensor_free)
    if a.size:
        ffi.memmove(t.data, a, a.nbytes)
    return t


def load_tensor(path):
    """Reads an ONNX TensorProto file (dd_tensor_load_pb): (array, name or None)."""
    err = ffi.new("dd_err *")
    out = ffi.new("dd_tensor **")
    name = ffi.new("char **")
    _check(lib.dd_tensor_load_pb(os.fsencode(path), out, name, err), err)
    t = ffi.gc(out[0], lib.dd_tensor_free)
    s = _str(name[0])
    lib.free(name[0])  # malloc'ed by the library
    return _tensor_to_array(t), s


def save_tensor(path, a, name=None):
    """Writes a float32, int64 or bool array as an ONNX TensorProto file (dd_tensor_save_pb)."""
    t = _array_to_tensor(np.asarray(a))
    err = ffi.new("dd_err *")
    _check(lib.dd_tensor_save_pb(os.fsencode(path), t, name.encode() if name else ffi.NULL,
                                 err), err)


# ---- models ----------------------------------------------------------------------------

Layer = namedtuple("Layer", "name op shape params mflops alias runs layout")
Layer.__doc__ = """One value of `Model.layers()`, as `dream layers` lists it: the op that
computes it (None for the input), its shape at the listed size, the parameters its node reads
(0 after a node's first output), its MFLOPs (0 when folded), its convN alias (None), whether
its node runs at run time (False: folded into a constant) and how it is read (its layout, the
text of the listing's layout column: "NCHW 14x14", "tokens 1+14x14", "seq 1+7x7",
"NHWC 56x56", "vector", "other"; None for the input)."""

InputSizes = namedtuple("InputSizes", "fixed native min")
InputSizes.__doc__ = """The input sizes a model accepts (`Model.input_sizes()`): fixed (it
takes native = (w, h) only: a ViT's position embeddings, a Swin's windows), else any size from
min = (w, h)."""


def _layout_text(m, v, shape, w, h):
    """dream layers' layout column (src/cli/cmd_layers.c)."""
    s = ffi.new("dd_shape *")
    s.ndim = len(shape)
    for i, d in enumerate(shape):
        s.d[i] = d
    lay = ffi.new("dd_layout *")
    k = lib.dd_value_layout(m, v, s, w, h, lay)
    if k in (lib.DD_LAYOUT_TOKENS, lib.DD_LAYOUT_SEQ):
        return "%s %s%dx%d" % ("seq" if k == lib.DD_LAYOUT_SEQ else "tokens",
                               "1+" if lay.cls else "", lay.grid_h, lay.grid_w)
    if k in (lib.DD_LAYOUT_NCHW, lib.DD_LAYOUT_NHWC):
        return "%s %dx%d" % (_str(lib.dd_layout_name(k)), lay.grid_h, lay.grid_w)
    return _str(lib.dd_layout_name(k))


def _triple(v, what, positive):
    vals = [float(v)] * 3 if np.isscalar(v) else [float(x) for x in v]
    if len(vals) != 3 or not all(math.isfinite(x) and (x > 0 or not positive) for x in vals):
        raise ValueError("%s: expected three finite numbers%s" %
                         (what, " > 0" if positive else ""))
    return vals


class Model:
    """A network: `Model("googlenet")`, `Model("squeezenet")`, `Model("path/to/net.onnx")`
    (dd_preset_resolve, dd_model_load, dd_labels_load).  mean, std (three numbers or one),
    bgr and scale override the preset's preprocessing as --mean, --std, --bgr/--rgb and
    --scale do; max_memory (bytes) is every call's memory budget, by default half of RAM.
    Close it with close() or use it as a context manager."""

    def __init__(self, model="googlenet", *, mean=None, std=None, bgr=None, scale=None,
                 max_memory=None):
        err = ffi.new("dd_err *")
        pre = ffi.new("dd_preset *")
        _check(lib.dd_preset_resolve(os.fsencode(model), pre, err), err)
        if mean is not None:
            pre.pre.mean = _triple(mean, "mean", False)
        if std is not None:
            pre.pre.std = _triple(std, "std", True)
        if bgr is not None:
            pre.pre.bgr = 1 if bgr else 0
        if scale is not None:
            if not (scale > 0 and math.isfinite(scale)):
                raise ValueError("scale: expected a finite number > 0, got %r" % (scale,))
            pre.pre.scale = scale
        self._preset = pre  # freed by close()
        self.max_memory = int(max_memory) if max_memory else default_max_memory()
        out = ffi.new("dd_model **")
        _check(lib.dd_model_load(pre.model_path, out, err), err)
        self._m = out[0]
        self._labels = ffi.NULL
        self._n_labels = 0
        self.labels = []
        if pre.labels_path[0] != b"\0":
            labels = ffi.new("char ***")
            n = ffi.new("int *")
            if lib.dd_labels_load(pre.labels_path, labels, n, err):
                self.close()
                _check(err.code, err)
            self._labels, self._n_labels = labels[0], n[0]
            self.labels = [_str(self._labels[i]) for i in range(n[0])]

    # ---- lifetime
    def close(self):
        """Frees the model; using it afterwards raises dream.Error."""
        if getattr(self, "_m", None):
            _model_free(self._m)
            self._m = None
        if getattr(self, "_labels", ffi.NULL) != ffi.NULL:
            _labels_free(self._labels, self._n_labels)
            self._labels = ffi.NULL
        if getattr(self, "_preset", None) is not None:
            _preset_clear(self._preset)  # its strings are the library's

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        try:
            self.close()
        except Exception:  # at interpreter exit the library may already be gone
            pass

    @property
    def _model(self):
        if not self._m:
            _fail(EARG, "the model is closed")
        return self._m

    def __repr__(self):
        return "dream.Model(%r)" % (self.path if self._m else "<closed>")

    # ---- what it is
    @property
    def path(self):
        """The .onnx file."""
        if self._preset.model_path == ffi.NULL:
            return None
        return os.fsdecode(ffi.string(self._preset.model_path))

    @property
    def preset(self):
        """The preset's name ("googlenet"), or None for a bare .onnx file."""
        return _str(self._preset.name) or None

    @property
    def name(self):
        return _str(lib.dd_model_name(self._model))

    @property
    def default_layer(self):
        """The preset's dream layer, or None."""
        return _str(self._preset.layer) or None

    @property
    def size(self):
        """The classification input side: the model's own when it takes one square size only
        (Model.input_sizes), else the preset's (224), as the CLI's default --size."""
        if not hasattr(self, "_own_size"):
            self._own_size = None
            try:
                s = self.input_sizes()
                if s.fixed and s.native[0] == s.native[1]:
                    self._own_size = s.native[0]
            except Error:
                pass
        return self._own_size or self._preset.size

    @property
    def preprocessing(self):
        p = self._preset.pre
        return {"bgr": bool(p.bgr), "scale": p.scale, "mean": list(p.mean), "std": list(p.std)}

    @property
    def opset(self):
        return lib.dd_model_opset(self._model)

    @property
    def num_params(self):
        return lib.dd_model_num_params(self._model)

    @property
    def input_name(self):
        """The data input's value name, or None when the model has none."""
        v = lib.dd_model_input(self._model)
        return _str(lib.dd_model_value_name(self._model, v)) if v >= 0 else None

    @property
    def input_shape(self):
        """The data input's declared shape, -1 for symbolic dims (None: rank undeclared)."""
        s = lib.dd_model_input_shape(self._model)
        return tuple(s.d[i] for i in range(s.ndim)) if s.ndim >= 0 else None

    @property
    def value_names(self):
        """Every named value of the graph: inputs, weights, node outputs."""
        m = self._model
        return [_str(lib.dd_model_value_name(m, i)) for i in range(lib.dd_model_num_values(m))]

    @property
    def outputs(self):
        m = self._model
        return [_str(lib.dd_model_value_name(m, lib.dd_model_output(m, i)))
                for i in range(lib.dd_model_num_outputs(m))]

    def resolve(self, name):
        """Value index of a value name or convN alias (a dream layer spec NAME#C:W is taken
        by its NAME).  Warns when the name shadows an alias, as the CLI does."""
        m = self._model
        err = ffi.new("dd_err *")
        v = ffi.new("int *")
        _check(lib.dd_model_resolve(m, name.encode(), v, err), err)
        self._warn_shadowed(name)
        return v[0]

    def _warn_shadowed(self, spec):
        base = re.split("[#:]", spec, maxsplit=1)[0]  # as cli_resolve reads a spec
        av = ffi.new("int *")
        if lib.dd_model_alias_shadowed(self._model, base.encode(), av):
            warnings.warn("'%s' is the layer named %s; the alias %s (the Conv '%s') is shadowed "
                          "by it" % (base, base, base,
                                     _str(lib.dd_model_value_name(self._model, av[0]))),
                          stacklevel=3)

    def _layer_specs(self, layers):
        """dd_dream_layer[] for specs NAME[#CH][:W] (a str or a list of them)."""
        if layers is None:
            if not self.default_layer:
                _fail(EARG, "%s: the model has no default layer; give one" % self.name)
            layers = [self.default_layer]
        elif isinstance(layers, str):
            layers = [layers]
        layers = list(layers)
        if not 1 <= len(layers) <= 16:
            _fail(EARG, "between 1 and 16 layers, not %d" % len(layers))
        out = ffi.new("dd_dream_layer[]", len(layers))
        err = ffi.new("dd_err *")
        for i, spec in enumerate(layers):
            _check(lib.dd_dream_layer_resolve(self._model, spec.encode(), out + i, err), err)
            self._warn_shadowed(spec)
        return out, len(layers)

    def _class_index(self, cls):
        """A class given as an index or a label matched whole (cli_find_class)."""
        if self._n_labels:
            err = ffi.new("dd_err *")
            i = ffi.new("int *")
            q = str(cls).encode()
            _check(lib.dd_labels_find(self._labels, self._n_labels, q, i, err), err)
            return i[0]
        if isinstance(cls, (int, np.integer)) and 0 <= cls <= 1000000:
            return int(cls)
        _fail(EARG, "%s has no labels: give the class as an index" % self.name)

    def label(self, i):
        return self.labels[i] if 0 <= i < len(self.labels) else ""

    def _input_shape(self, w, h, image_only):
        """cli_input_shape / cli_any_input_shape: the shape to bind for a w x h image."""
        m = self._model
        v = lib.dd_model_input(m)
        if v < 0:
            _fail(EARG, "%s: the model has no data input" % self.name)
        s = lib.dd_model_input_shape(m)
        d = [s.d[i] for i in range(s.ndim)] if s.ndim >= 0 else [-1] * 4
        if len(d) != 4 or (d[1] >= 0 and d[1] != 3) or d[0] > 1:
            if image_only:
                _fail(EUNSUPPORTED, "%s: input '%s' is not an image (1x3xHxW): it is %s" % (
                    self.name, self.input_name, "x".join(map(str, d))))
            return [x if x >= 0 else 1 for x in d]
        d[0], d[1] = 1, 3
        for i, want in enumerate((h, w)):
            if want <= 0:
                if d[2 + i] < 0:
                    _fail(EARG, "%s: input '%s' has no fixed size; give one" %
                          (self.name, self.input_name))
                continue
            if d[2 + i] >= 0 and d[2 + i] != want:
                _fail(EARG, "%s: input '%s' takes %dx%d images only, not %dx%d" % (
                    self.name, self.input_name, d[3], d[2], w, h))
            d[2 + i] = want
        return d

    def input_sizes(self, layers=None):
        """Which input sizes the model accepts for `layers` (names; default its outputs), as
        `dream layers` says on its first line: an InputSizes."""
        m = self._model
        targets = [self.resolve(n) for n in layers] if layers else []
        t = ffi.new("int[]", targets) if targets else ffi.NULL
        sz = ffi.new("dd_input_sizes *")
        err = ffi.new("dd_err *")
        _check(lib.dd_model_input_sizes(m, t, len(targets), sz, err), err)
        return InputSizes(bool(sz.fixed), (sz.native_w, sz.native_h), (sz.min_w, sz.min_h))

    def layers(self, size=None):
        """Every value computed by the graph, in graph order, at an input of `size` (an int
        or (w, h); default the model's own when it takes one size only, else the preset's,
        unless the model declares one), as `dream layers` lists them: a list of Layer, the
        input first."""
        m = self._model
        sizes = None
        try:
            sizes = self.input_sizes()
        except Error:
            pass
        if size is None and sizes is not None and sizes.fixed:
            w, h = sizes.native
        elif size is None:
            s = lib.dd_model_input_shape(m)
            fixed = s.ndim == 4 and s.d[2] > 0 and s.d[3] > 0
            w = h = 0 if fixed else self.size
        else:
            w, h = (size, size) if np.isscalar(size) else size
        shape = self._input_shape(w, h, False)
        targets = [lib.dd_model_node_output(m, i, k)
                   for i in range(lib.dd_model_num_nodes(m))
                   for k in range(lib.dd_model_node_num_outputs(m, i))
                   if lib.dd_model_node_output(m, i, k) >= 0]
        plan = self._plan(np.empty(0), targets, 0, self.max_memory, shape=shape)
        try:
            out = [Layer(self.input_name, None, tuple(shape), 0, 0.0, None, True, None)]
            iw, ih = (shape[3], shape[2]) if len(shape) == 4 else (0, 0)
            for i in range(lib.dd_model_num_nodes(m)):
                runs = bool(lib.dd_plan_node_runs(plan, i))
                for k in range(lib.dd_model_node_num_outputs(m, i)):
                    v = lib.dd_model_node_output(m, i, k)
                    if v < 0:
                        continue
                    t = lib.dd_plan_tensor(plan, v)
                    tshape = tuple(t.shape.d[j] for j in range(t.shape.ndim)) \
                        if t != ffi.NULL else None
                    alias = _str(lib.dd_model_conv_alias(m, v, ffi.NULL))
                    out.append(Layer(_str(lib.dd_model_value_name(m, v)),
                                     _str(lib.dd_model_node_op(m, i)), tshape,
                                     lib.dd_model_node_params(m, i) if k == 0 else 0,
                                     lib.dd_plan_node_flops(plan, i) / 1e6 if k == 0 and runs
                                     else 0.0, alias, runs,
                                     _layout_text(m, v, tshape, iw, ih) if tshape else None))
            return out
        finally:
            lib.dd_plan_free(plan)

    def _plan(self, x, targets, flags, max_memory, shape=None):
        m = self._model
        b = ffi.new("dd_binding *")
        b.value = lib.dd_model_input(m)
        if b.value < 0:
            _fail(EARG, "%s: the model has no data input" % self.name)
        shape = list(x.shape) if shape is None else shape
        b.shape.ndim = len(shape)
        for i, d in enumerate(shape):
            b.shape.d[i] = d
        tg = ffi.new("int[]", list(targets))
        out = ffi.new("dd_plan **")
        err = ffi.new("dd_err *")
        _check(lib.dd_plan_new(m, b, 1, tg, len(targets), flags, max_memory, out, err), err)
        return out[0]

    # ---- computing
    def run(self, x, names=None, *, max_memory=None):
        """Runs the graph on the input tensor x (as given: already preprocessed, any shape
        the model takes) and returns {name: float32 array} for each value in `names` (a name
        or a list of value names or convN aliases, keys as given; default: the model's
        outputs), as `dream run` writes them."""
        m = self._model
        x = np.ascontiguousarray(x, dtype=np.float32)
        names = self.outputs if names is None else [names] if isinstance(names, str) \
            else list(names)
        targets = [self.resolve(n) for n in names]
        decl = self.input_shape
        if decl is not None and (len(decl) != x.ndim or
                                 any(d >= 0 and d != e for d, e in zip(decl, x.shape))):
            _fail(ESHAPE, "shape %s does not fit the model's input '%s' (%s; -1 is any size)" % (
                "x".join(map(str, x.shape)), self.input_name, "x".join(map(str, decl))))
        plan = self._plan(x, targets, lib.DD_PLAN_EXACT, max_memory or self.max_memory)
        try:
            inp = lib.dd_plan_tensor(plan, lib.dd_model_input(m))
            ffi.memmove(inp.data, x, x.nbytes)
            lib.dd_plan_forward(plan)
            out = {}
            for n, v in zip(names, targets):
                t = lib.dd_plan_tensor(plan, v)
                if t == ffi.NULL:
                    _fail(EARG, "%s: '%s' is not computed by the graph" % (self.name, n))
                out[n] = _tensor_to_array(t)
            return out
        finally:
            lib.dd_plan_free(plan)

    def grad(self, x, layers=None, *, max_memory=None):
        """The gradient of sum over `layers` of W * 1/2 sum(a^2) with respect to the input
        tensor x (as given, already preprocessed), as `dream grad` computes it
        (dd_input_gradient): (float32 array shaped like x, objective).  layers: a spec
        NAME[#CHANNEL][:WEIGHT] or a list of them; default the preset's layer."""
        specs, n = self._layer_specs(layers)
        t = _array_to_tensor(np.asarray(x, dtype=np.float32))
        g = ffi.new("dd_tensor **")
        obj = ffi.new("double *")
        err = ffi.new("dd_err *")
        _check(lib.dd_input_gradient(self._model, t, specs, n, max_memory or self.max_memory,
                                     g, obj, err), err)
        gt = ffi.gc(g[0], lib.dd_tensor_free)
        return _tensor_to_array(gt), obj[0]

    def classify(self, rgb, top=5, framing="crop", size=None):
        """The top classes of a photo framed as `dream classify`/`explain` frame it, computed
        by dd_vis_classify (softmax of the scores): [(class, label, probability)]."""
        return _top(self, self.probabilities(rgb, framing, size), top)

    def probabilities(self, rgb, framing="crop", size=None):
        """Every class's probability for a photo, framed as in classify()."""
        im = _image_from_array(rgb)
        s = size or self.size
        framed = _frame(im, framing, s, s)
        p = ffi.new("dd_tensor **")
        err = ffi.new("dd_err *")
        _check(lib.dd_vis_classify(self._model, ffi.addressof(self._preset.pre), framed,
                                   self.max_memory, p, err), err)
        return _tensor_to_array(ffi.gc(p[0], lib.dd_tensor_free))


def _top(model, prob, k):
    """The k best classes, ties to the lower index (as the CLI picks them)."""
    order = sorted(range(len(prob)), key=lambda i: (-prob[i], i))[:k]
    return [(i, model.label(i), float(prob[i])) for i in order]


_FRAMINGS = {"crop": 0, "squash": 1, "fit": 2}


def _framing(name):
    if name not in _FRAMINGS:
        _fail(EARG, "framing: expected crop, squash or fit, got '%s'" % (name,))
    return _FRAMINGS[name]


def _frame(im, framing, w, h, rect=None):
    out = ffi.new("dd_image **")
    err = ffi.new("dd_err *")
    _check(lib.dd_image_frame(im, _framing(framing), w, h, out, rect or ffi.NULL, err), err)
    return _take_image(out)


def _open_model(model):
    """(Model, owned): a Model as given, or one opened from a preset name or path."""
    if isinstance(model, Model):
        return model, False
    return Model(model if model is not None else "googlenet"), True


class _Closing:
    def __init__(self, model):
        self.model, self.owned = _open_model(model)

    def __enter__(self):
        return self.model

    def __exit__(self, *exc):
        if self.owned:
            self.model.close()


# ---- DeepDream --------------------------------------------------------------------------

Progress = namedtuple("Progress", "octave n_octaves iter n_iters w h tiles objective done")
Progress.__doc__ = "What a dream's progress callback receives after each iteration."

_NORMS = {"meanabs": 0, "std": 1, "laplacian": 2}
_PRECISIONS = {"auto": 0, "fp32": 1, "bf16": 2}


class _Callback:
    """A C progress callback that calls `fn` and turns an exception in it (a KeyboardInterrupt
    too) into a stop: the run returns DD_EINTR and the exception is raised again after."""

    def __init__(self, signature, convert, fn):
        self.exc = None

        def call(*args):
            try:
                return EINTR if fn is not None and fn(convert(*args)) else 0
            except BaseException as e:  # Ctrl-C too: it must stop the C loop
                self.exc = e
                return EINTR

        self.c = ffi.callback(signature, call)

    def check(self, rc, err):
        if self.exc is not None:
            raise self.exc
        _check(rc, err)


def _shrunk(im, size):
    """load_shrunk of cmd_dream.c: the image resized so its longer side is at most size."""
    longer = max(im.w, im.h)
    if size <= 0 or longer <= size:
        return im
    w = max(1, _round_half_away(im.w * size / longer))
    h = max(1, _round_half_away(im.h * size / longer))
    out = ffi.new("dd_image **")
    err = ffi.new("dd_err *")
    _check(lib.dd_image_resize(im, w, h, out, err), err)
    return _take_image(out)


def _round_half_away(v):
    """C's lround."""
    return int(math.floor(v + 0.5)) if v >= 0 else -int(math.floor(-v + 0.5))


def _dream_params(m, layer, octaves, octave_scale, iters, step, jitter, norm, lap_levels, tile,
                  guide, guide_size, seed, precision):
    """The dd_dream_params of cmd_dream.c's steps, in its order (the guide image, which p
    points at, returned beside it)."""
    if precision not in _PRECISIONS:
        _fail(EARG, "precision: expected bf16, fp32 or auto, got '%s'" % (precision,))
    p = ffi.new("dd_dream_params *")
    lib.dd_dream_params_init(p)
    specs, n = m._layer_specs(layer)
    p.n_layers = n
    for i in range(n):
        p.layers[i] = specs[i]
        if specs[i].value == lib.dd_model_input(m._model):
            warnings.warn("layer %d is the model's input: its gradient is the image itself, "
                          "so the dream only brightens what is bright" % i, stacklevel=3)
    for k, v in (("octaves", octaves), ("octave_scale", octave_scale), ("iters", iters),
                 ("step", step), ("jitter", jitter), ("lap_levels", lap_levels),
                 ("tile", tile)):
        if v is not None:
            setattr(p, k, v)
    if norm is not None:
        if norm not in _NORMS:
            _fail(EARG, "norm: expected meanabs, std or laplacian, got '%s'" % (norm,))
        p.norm = _NORMS[norm]
    err = ffi.new("dd_err *")
    _check(lib.dd_model_image_input(m._model, ffi.NULL, err), err)
    g = None
    if guide is not None:
        g = _shrunk(_image_from_array(guide, "guide"), guide_size)
        p.guide = g
    p.seed = seed
    # auto stays auto (the library's fast fp32 unless bf16 pays); fp32 is fp32-exact
    asked = _PRECISIONS[precision]
    p.precision = asked if precision == "auto" else lib.dd_precision_resolve(asked, 1)
    if precision == "bf16" and p.precision != lib.DD_PRECISION_BF16:
        warnings.warn("this CPU has no bf16 instructions (AVX512-BF16): precision='bf16' "
                      "runs in fp32", stacklevel=3)
    # as the CLI: the largest octave is dreamed in the image (the module's own copy)
    p.in_place = 1
    return p, g


def _dream_budget(m, p, img, max_memory, max_side):
    """dd_dream_check_budget for img, refused as cmd_dream.c refuses it: the plans' share."""
    err = ffi.new("dd_err *")
    budget_bytes = max_memory or m.max_memory
    b = ffi.new("dd_dream_budget *")
    rc = lib.dd_dream_check_budget(m._model, p, img.w, img.h, budget_bytes, b, err)
    if rc == ELIMIT:
        side = max(b.fit_w, b.fit_h)
        hint = "use max_side=%d or " % side if side > 0 else ""
        _fail(rc, "max_memory=%.0fM: %s; %sraise max_memory to %.0fM" % (
            budget_bytes / 1048576.0, _str(err.msg), hint, math.ceil(b.need / 1048576.0)))
    if rc and max_side:
        _fail(rc, "max_side=%d: %s" % (max_side, _str(err.msg)))
    _check(rc, err)
    return b.plan_budget


def _dream_callback(progress):
    return _Callback("int(const dd_dream_progress *, void *)",
                     lambda info, user: Progress(info.octave, info.n_octaves, info.iter,
                                                 info.n_iters, info.w, info.h, info.tiles,
                                                 info.objective, info.done), progress)


def dream(rgb, model=None, layer=None, *, octaves=None, octave_scale=None, iters=None,
          step=None, jitter=None, norm=None, lap_levels=None, tile=None, guide=None,
          guide_size=224, seed=0, max_side=0, max_memory=None, progress=None,
          precision="auto"):
    """DeepDreams an H x W x 3 image (uint8, or floats in 0..255) and returns the uint8
    H' x W' x 3 pixels `dream` writes to a PNG with the same options (H' x W': after
    max_side).  model: a Model, a preset name or an .onnx path (default googlenet); layer: a
    spec NAME[#CHANNEL][:WEIGHT] or a list of them (default the preset's).  Options left at
    None take the library's defaults (octaves 4, octave_scale 1.4, iters 10, step 1.5,
    jitter 32, norm "meanabs", lap_levels 4, tile: only when over the budget).  guide: an
    image whose features guide the dream (shrunk to guide_size first).  max_memory: the
    whole job's budget in bytes (default the model's, half of RAM).  progress(Progress) is
    called after each iteration; an exception in it (or Ctrl-C) stops the dream and is
    raised.  precision: "fp32" (fp32-exact: no Winograd, ties kept), "bf16" (bfloat16
    products summed in float32, on AVX512-BF16; fp32 with a warning where the CPU lacks it)
    or "auto" (the fast fp32 kernels, or bf16 where this CPU runs it faster), as `dream
    --precision`.  For many pictures of one size (a movie's frames), Dreamer plans once."""
    with _Closing(model) as m:
        p, g = _dream_params(m, layer, octaves, octave_scale, iters, step, jitter, norm,
                             lap_levels, tile, guide, guide_size, seed, precision)
        img = _shrunk(_image_from_array(rgb), max_side)
        p.max_memory = _dream_budget(m, p, img, max_memory, max_side)
        cb = _dream_callback(progress)
        err = ffi.new("dd_err *")
        rc = lib.dd_dream_run(m._model, ffi.addressof(m._preset.pre), p, img, cb.c, ffi.NULL,
                              err)
        cb.check(rc, err)
        return _image_bytes(img)


class Dreamer:
    """dream() for a sequence of pictures -- the frames of a movie, a zoom -- as `dream video`
    and `dream zoom` run it: one dd_dreamer keeps the network's plans of every octave size it
    has seen, so each picture after the first of its size plans nothing and touches no fresh
    memory.  The options are dream()'s; dream(rgb, iters=None, seed=None) takes a picture
    and, for it alone, other iterations per octave or another seed (the defaults: those given
    here), and returns what dream() returns with the same options, bit for bit.  close() (or
    a `with` block) frees the plans."""

    def __init__(self, model=None, layer=None, *, octaves=None, octave_scale=None, iters=None,
                 step=None, jitter=None, norm=None, lap_levels=None, tile=None, guide=None,
                 guide_size=224, seed=0, max_side=0, max_memory=None, precision="auto"):
        self._d = None
        self._m, self._owned = _open_model(model)
        try:
            self._p, self._guide = _dream_params(self._m, layer, octaves, octave_scale, iters,
                                                 step, jitter, norm, lap_levels, tile, guide,
                                                 guide_size, seed, precision)
        except BaseException:
            self.close()
            raise
        self._max_side, self._max_memory = max_side, max_memory

    def dream(self, rgb, iters=None, seed=None, progress=None):
        """One picture (H x W x 3, uint8 or floats in 0..255): the uint8 dreamed pixels."""
        if self._m is None:
            raise ValueError("the Dreamer is closed")
        img = _shrunk(_image_from_array(rgb), self._max_side)
        budget = _dream_budget(self._m, self._p, img, self._max_memory, self._max_side)
        err = ffi.new("dd_err *")
        if self._d is None or budget != self._p.max_memory:
            # the plans' share of the budget is fixed when the dreamer is made
            self._free_dreamer()
            self._p.max_memory = budget
            dp = ffi.new("dd_dreamer **")
            _check(lib.dd_dreamer_new(self._m._model, ffi.addressof(self._m._preset.pre),
                                      self._p, dp, err), err)
            self._d = dp[0]
        cb = _dream_callback(progress)
        rc = lib.dd_dreamer_dream(self._d, img, self._p.iters if iters is None else int(iters),
                                  self._p.seed if seed is None else int(seed), cb.c, ffi.NULL,
                                  err)
        cb.check(rc, err)
        return _image_bytes(img)

    def _free_dreamer(self):
        if self._d is not None:
            _dreamer_free(self._d)
            self._d = None

    def close(self):
        self._free_dreamer()
        if getattr(self, "_owned", False) and self._m is not None:
            self._m.close()
        self._m = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        self.close()


# ---- visualizations ---------------------------------------------------------------------

@dataclass
class Filters:
    """The kernels of a first convolution (`dream filters`)."""
    image: np.ndarray  # uint8 H x W x 3, the grid as written
    node: str          # the Conv node
    n: int             # kernels (tiles)
    cols: int
    rows: int
    tile_w: int
    tile_h: int


def filters(model=None, layer="conv1", *, zoom=0, gap=2):
    """The kernels of the Conv making `layer` (its output, the activation after it or a convN
    alias) as a grid of colour tiles, as `dream filters` draws them (dd_vis_filters)."""
    with _Closing(model) as m:
        v = m.resolve(layer)
        node = ffi.new("int *")
        out = ffi.new("dd_image **")
        grid = ffi.new("dd_grid *")
        err = ffi.new("dd_err *")
        _check(lib.dd_vis_find_conv(m._model, v, node, err), err)
        _check(lib.dd_vis_filters(m._model, node[0], m._preset.pre.bgr, zoom, gap, out, grid,
                                  err), err)
        im = _take_image(out)
        return Filters(_image_bytes(im), _str(lib.dd_model_node_name(m._model, node[0])),
                       grid.n, grid.cols, grid.rows, grid.tile_w, grid.tile_h)


def _fv_opts(m, size, steps, lr, jitter, transforms, pixels, max_memory):
    o = ffi.new("dd_fv_opts *")
    lib.dd_fv_opts_init(o)
    o.size = size
    if steps is not None:
        o.iters = steps
    if lr is not None:
        o.lr = lr
    if jitter is not None:
        o.jitter = jitter
    o.pixels = 1 if pixels else 0
    if not transforms:  # --no-transforms
        o.jitter, o.scale, o.rotate = 0, 0, 0
    o.max_memory = max_memory or m.max_memory
    return o


def _fv_callback(progress):
    """progress(iter, objective) after each step of a feature visualization."""
    return _Callback("int(const dd_fv_progress *, void *)",
                     lambda info, user: (info.iter, info.objective),
                     None if progress is None else lambda a: progress(*a))


@dataclass
class ChannelImages:
    """Images optimized to excite each channel of a layer (`dream filters --optimize`)."""
    image: np.ndarray              # uint8, the grid as written
    images: List[np.ndarray]       # uint8 size x size x 3, one per channel
    channels: List[int]
    objectives: List[float]        # each channel's mean activation on its image (the CSV)
    layer: str


def optimize_channels(model=None, layer=None, *, channels=None, size=128, steps=None, lr=None,
                      jitter=None, transforms=True, pixels=False, seed=0, gap=2,
                      max_memory=None, progress=None):
    """One image per channel of `layer` (default the preset's), optimized from noise
    (dd_fv_new, dd_fv_run with seed + channel for each channel, as `dream filters --optimize`
    does).  channels: a range or list of indices (default all); progress(iter, objective)
    is called after each step."""
    with _Closing(model) as m:
        if layer is None:
            layer = m.default_layer or "conv1"
        v = m.resolve(layer)
        o = _fv_opts(m, size, steps, lr, jitter, transforms, pixels, max_memory)
        cb = _fv_callback(progress)
        o.progress = cb.c
        fv = ffi.new("dd_fv **")
        err = ffi.new("dd_err *")
        _check(lib.dd_fv_new(m._model, ffi.addressof(m._preset.pre), v, o, fv, err), err)
        fv = ffi.gc(fv[0], lib.dd_fv_free)
        C = lib.dd_fv_channels(fv)
        chans = list(range(C)) if channels is None else [int(c) for c in channels]
        for c in chans:
            if not 0 <= c < C:
                _fail(EARG, "channels: channel %d out of range 0..%d of '%s' (%s)" % (
                    c, C - 1, layer, m.name))
        if not chans:
            _fail(EARG, "channels: none given")
        tiles, objs = [], []
        for c in chans:
            out = ffi.new("dd_image **")
            obj = ffi.new("float *")
            rc = lib.dd_fv_run(fv, c, (seed + c) & 0xFFFFFFFFFFFFFFFF, out, obj, err)
            cb.check(rc, err)
            tiles.append(_take_image(out))
            objs.append(obj[0])
        grid = _grid(tiles, gap)
        return ChannelImages(_image_bytes(grid), [_image_bytes(t) for t in tiles], chans, objs,
                             layer)


def _grid(tiles, gap):
    arr = ffi.new("dd_image *[]", tiles)
    out = ffi.new("dd_image **")
    g = ffi.new("dd_grid *")
    err = ffi.new("dd_err *")
    _check(lib.dd_vis_grid(arr, len(tiles), gap, 255, out, g, err), err)
    return _take_image(out)


@dataclass
class ClassImage:
    """An image optimized to maximize one class's score (`dream class`)."""
    image: np.ndarray                     # uint8 size x size x 3
    cls: int
    label: str
    logit: float                          # the score, measured on the image as saved
    probability: float                    # of cls, on the image framed as classify frames it
    top5: List[Tuple[int, str, float]]    # (class, label, probability)


def class_image(model=None, cls=0, *, size=224, steps=None, lr=None, jitter=None,
                transforms=True, pixels=False, seed=0, max_memory=None, progress=None):
    """An image optimized from noise to maximize class `cls` (an index or a label) before the
    softmax (dd_vis_logits, dd_fv_new, dd_fv_run with `seed`), and its top 5 read back as
    from a PNG, framed as `dream classify` frames photos (what `dream class` writes)."""
    with _Closing(model) as m:
        c = m._class_index(cls)
        logits = ffi.new("int *")
        err = ffi.new("dd_err *")
        _check(lib.dd_vis_logits(m._model, logits, err), err)
        o = _fv_opts(m, size, steps, lr, jitter, transforms, pixels, max_memory)
        cb = _fv_callback(progress)
        o.progress = cb.c
        fv = ffi.new("dd_fv **")
        _check(lib.dd_fv_new(m._model, ffi.addressof(m._preset.pre), logits[0], o, fv, err),
               err)
        fv = ffi.gc(fv[0], lib.dd_fv_free)
        if c >= lib.dd_fv_channels(fv):
            _fail(EARG, "class: class %d out of range 0..%d" % (c, lib.dd_fv_channels(fv) - 1))
        out = ffi.new("dd_image **")
        obj = ffi.new("float *")
        cb.check(lib.dd_fv_run(fv, c, seed, out, obj, err), err)
        pixels_ = _image_bytes(_take_image(out))
        # Read back as a PNG holds it: the bytes.
        prob = m.probabilities(pixels_)
        return ClassImage(pixels_, c, m.label(c), obj[0], float(prob[c]), _top(m, prob, 5))


@dataclass
class Activations:
    """A layer's feature maps for one photo (`dream activations`)."""
    image: np.ndarray        # uint8, the heat-map grid as written
    values: np.ndarray       # float32 C x H x W
    mean: np.ndarray         # per channel, as the CSV
    max: np.ndarray
    zero_fraction: np.ndarray
    input: np.ndarray        # uint8 view of the framed photo the network saw
    layer: str


def activations(model, rgb, layer=None, *, size=None, framing="fit", channels=None, zoom=0,
                gap=2, cmap="inferno", max_memory=None):
    """Runs the model on a photo framed as `dream activations` frames it (dd_image_frame,
    fit by default: shorter side to `size`, the preset's) and draws the channels of `layer`
    (default the preset's) as heat maps (dd_vis_activation_grid).  channels: a range of the
    channels to draw (default all; the statistics always cover all)."""
    with _Closing(model) as m:
        if layer is None:
            layer = m.default_layer or "conv1"
        if size is None:
            w = h = m.size
        else:
            w, h = (size, size) if np.isscalar(size) else size
        if cmap not in ("inferno", "viridis"):
            _fail(EARG, "cmap: expected inferno or viridis, got '%s'" % (cmap,))
        err = ffi.new("dd_err *")
        _check(lib.dd_model_image_input(m._model, ffi.NULL, err), err)
        v = m.resolve(layer)
        im = _frame(_image_from_array(rgb), framing, w, h)
        a = ffi.new("dd_tensor **")
        _check(lib.dd_vis_activations(m._model, ffi.addressof(m._preset.pre), v, im,
                                      max_memory or m.max_memory, a, err), err)
        act = ffi.gc(a[0], lib.dd_tensor_free)
        C = act.shape.d[0]
        c0, c1 = (0, C) if channels is None else (channels.start or 0, channels.stop)
        if c1 > C:
            _fail(EARG, "channels: channel %d out of range 0..%d of '%s'" % (c1 - 1, C - 1,
                                                                            layer))
        st = ffi.new("dd_chan_stats[]", C)
        lib.dd_vis_channel_stats(act, st)
        out = ffi.new("dd_image **")
        g = ffi.new("dd_grid *")
        _check(lib.dd_vis_activation_grid(act, c0, c1, zoom, gap, 0 if cmap == "inferno" else 1,
                                          out, g, err), err)
        return Activations(_image_bytes(_take_image(out)), _tensor_to_array(act),
                           np.array([st[i].mean for i in range(C)], dtype=np.float32),
                           np.array([st[i].max for i in range(C)], dtype=np.float32),
                           np.array([st[i].zeros for i in range(C)], dtype=np.float32),
                           _image_bytes(im), layer)


@dataclass
class Explanation:
    """Why a network sees a class in a photo (`dream explain`)."""
    top5: List[Tuple[int, str, float]]  # (class, label, probability), best first
    cls: int                            # the class explained
    label: str
    score: float                        # its logit
    probability: float
    layer: str                          # the Grad-CAM layer
    cam_resolution: Tuple[int, int]     # the layer's width, height
    cam: np.ndarray                     # float32 h x w Grad-CAM, >= 0, not normalized
    saliency: np.ndarray                # float32 h x w, max over colours of |d score/d pixel|
    argmax: Tuple[int, int]             # (x, y) of the Grad-CAM maximum in the pictured part
    argmax_in_photo: Tuple[int, int]
    frame: Tuple[float, float, float, float]  # (x, y, w, h): the part of the photo pictured
    picture: np.ndarray                 # uint8: the part, Grad-CAM over it, saliency


def explain(model, rgb, cls=None, *, layer=None, smoothgrad=0, seed=0, size=None, height=0,
            framing="crop", max_memory=None):
    """Classifies a photo and explains class `cls` (an index or a label; default the top
    one): the photo is framed as `dream explain` frames it (dd_frame_layout, dd_image_cut at
    full resolution), then dd_explain and dd_explain_picture."""
    with _Closing(model) as m:
        if framing == "fit":
            _fail(EARG, "framing fit: Grad-CAM's network input is a square; use crop or squash")
        eo = ffi.new("dd_explain_opts *")
        lib.dd_explain_opts_init(eo)
        eo.smoothgrad = smoothgrad
        eo.seed = seed
        eo.size = size or m.size
        eo.max_memory = max_memory or m.max_memory
        err = ffi.new("dd_err *")
        _check(lib.dd_model_image_input(m._model, ffi.NULL, err), err)
        if cls is not None:
            eo.cls = m._class_index(cls)
        if layer is not None:
            eo.layer = m.resolve(layer)
        photo = _image_from_array(rgb)
        r = ffi.new("dd_frame_rect *")
        ow, oh = ffi.new("int *"), ffi.new("int *")
        _check(lib.dd_frame_layout(photo.w, photo.h, _framing(framing), eo.size, eo.size, r,
                                   ow, oh, err), err)
        cut = ffi.new("dd_image **")
        _check(lib.dd_image_cut(photo, int(r.x), int(r.y), int(r.w), int(r.h), cut, err), err)
        im = _take_image(cut)
        ep = ffi.new("dd_explanation **")
        _check(lib.dd_explain(m._model, ffi.addressof(m._preset.pre), im, eo, ep, err), err)
        e = ffi.gc(ep[0], lib.dd_explanation_free)
        pic = ffi.new("dd_image **")
        _check(lib.dd_explain_picture(im, e, height, pic, err), err)
        picture = _image_bytes(_take_image(pic))
        n = e.w * e.h
        cam = np.frombuffer(ffi.buffer(e.cam, n * 4), np.float32).reshape(e.h, e.w).copy()
        sal = np.frombuffer(ffi.buffer(e.saliency, n * 4), np.float32).reshape(e.h, e.w).copy()
        top = [(e.top[k], m.label(e.top[k]), e.prob[k]) for k in range(5) if e.top[k] >= 0]
        return Explanation(top, e.cls, m.label(e.cls), e.logit, e.prob_cls,
                           _str(lib.dd_model_value_name(m._model, e.layer)), (e.cam_w, e.cam_h),
                           cam, sal, (e.cam_x, e.cam_y),
                           (int(r.x) + e.cam_x, int(r.y) + e.cam_y), (r.x, r.y, r.w, r.h),
                           picture)


# ---- audit ------------------------------------------------------------------------------

def _report(pp, err, rc):
    """The json_t the library returned, as Python objects (through its report.json text)."""
    _check(rc, err)
    r = pp[0]
    try:
        text = lib.dd_audit_dumps(r)
        if text == ffi.NULL:
            _fail(ENOMEM, "out of memory serializing the report")
        try:
            return json.loads(ffi.string(text).decode("ascii"))
        finally:
            lib.free(text)
    finally:
        lib.dd_audit_free(r)


def audit(dir, model=None, *, labels=None, top=5, layers=(), perturb=None, seed=0,
          shard=None, framing="crop", size=None, max_memory=None, report_dir=None):
    """`dream audit` without its thumbnails, panels and page (--no-panels): the report of a
    folder of labelled images (dd_audit_run) as Python objects, the dict report.json holds.
    labels: a CSV of path,label (default: the subfolder names); top: K of accuracy.topk and
    the examples per unit; layers: names whose units are audited; perturb: "blur,noise",
    "all" or a list of names; shard: (I, N); report_dir: also write report_dir/report.json
    (the folder must exist).  Options the CLI records in the report (options.panels) are the
    CLI's: compare a report written here with `dream audit --no-panels`."""
    with _Closing(model) as m:
        if framing not in ("crop", "squash"):
            _fail(EUNSUPPORTED, "framing %s: audit plans one size (crop or squash)" % (framing,))
        o = ffi.new("dd_audit_opts *")
        lib.dd_audit_opts_init(o)
        err = ffi.new("dd_err *")
        o.framing = _framing(framing)
        o.size = size or m.size
        o.top = top
        o.max_memory = max_memory or m.max_memory
        # the CLI's cap: a decoded pixel costs about 64 bytes of the budget (cli_max_pixels)
        o.max_pixels = min(o.max_memory // 64, 1 << 28)
        keep = []
        if labels is not None:
            keep.append(ffi.new("char[]", os.fsencode(labels)))
            o.labels_csv = keep[-1]
        if shard is not None:
            o.shard_index, o.shard_count = shard
        values = [m.resolve(name) for name in (layers or ())]
        if values:
            keep.append(ffi.new("int[]", values))
            o.layers = keep[-1]
            o.n_layers = len(values)
        if perturb:
            bits = ffi.new("unsigned *")
            spec = perturb if isinstance(perturb, str) else ",".join(perturb)
            _check(lib.dd_perturb_parse(spec.encode(), bits, err), err)
            o.perturb = bits[0]
        o.seed = seed
        pp = ffi.new("json_t **")
        rc = lib.dd_audit_run(m._model, m._preset.model_path, ffi.addressof(m._preset.pre),
                              m._preset.labels_path, os.fsencode(dir), o, pp, err)
        if rc:
            _check(rc, err)
        if report_dir is not None:
            try:
                _check(lib.dd_audit_write(pp[0], os.fsencode(report_dir), err), err)
            except Exception:
                lib.dd_audit_free(pp[0])
                raise
        return _report(pp, err, rc)


# ---- movies ------------------------------------------------------------------------------
# dream/video.h: what `dream video` and `dream zoom` read and write.  The commands themselves
# (the dream of each frame, the flow, resuming) are the CLI's: run `dream video` for them.

MovieInfo = namedtuple("MovieInfo", "w h fps frames has_audio duration")


def _open_reader(path, max_pixels):
    err = ffi.new("dd_err *")
    r = lib.dd_movie_read_open(os.fsencode(path), max_pixels, err)
    if r == ffi.NULL:
        _check(err.code, err)
    return ffi.gc(r, lib.dd_movie_read_close)


def movie_info(path, max_pixels=0):
    """What a movie (or numbered images, "frames/in_%04d.png") declares: size, frame rate,
    frame count (-1 when the container does not say), audio, duration (0: unknown)."""
    r = _open_reader(path, max_pixels)
    i = ffi.new("dd_movie_info *")
    lib.dd_movie_read_info(r, i)
    return MovieInfo(i.w, i.h, i.fps, i.frames, bool(i.has_audio), i.duration)


def read_movie(path, dtype=np.uint8, max_pixels=0):
    """The frames of a movie, one at a time, as H x W x 3 arrays (a generator: memory holds
    one frame).  Bad files raise dream.Error naming the file (not a video, truncated, no video
    stream, over max_pixels)."""
    r = _open_reader(path, max_pixels)
    err = ffi.new("dd_err *")
    pp = ffi.new("dd_image **")
    try:
        while True:
            rc = lib.dd_movie_read(r, pp, err)
            if rc == 0:
                return
            if rc < 0:
                _check(rc, err)
            v = _image_view(pp[0])
            yield _to_bytes(v) if np.dtype(dtype) == np.uint8 else v.astype(dtype)
    finally:
        lib.dd_image_free(pp[0])


class MovieWriter:
    """Writes frames to a movie (.mp4 .mkv .mov .webm .gif) or numbered images
    ("out_%04d.png"), as dd_movie_open_ex: a temporary file renamed by close(); abort() (or
    leaving a `with` block by an exception) removes it.  audio_from: a file whose audio is
    stream-copied, [audio_start, audio_end) seconds of it."""

    def __init__(self, path, w, h, fps, *, audio_from=None, audio_start=0.0, audio_end=0.0):
        self._mw = None
        err = ffi.new("dd_err *")
        o = ffi.new("dd_movie_opts *")
        lib.dd_movie_opts_init(o)
        keep = os.fsencode(audio_from) if audio_from is not None else None
        if keep is not None:
            self._audio = ffi.new("char[]", keep)
            o.audio_from = self._audio
        o.audio_start, o.audio_end = audio_start, audio_end
        self._w, self._h = int(w), int(h)
        mw = lib.dd_movie_open_ex(os.fsencode(path), self._w, self._h, float(fps), o, err)
        if mw == ffi.NULL:
            _check(err.code, err)
        self._mw = mw

    def write(self, frame):
        """One frame: an H x W x 3 (or H x W grey) array of 0..255 values of the movie's size."""
        if self._mw is None:
            raise ValueError("the movie is closed")
        im = _image_from_array(frame, "frame")
        err = ffi.new("dd_err *")
        _check(lib.dd_movie_write(self._mw, im, err), err)

    @property
    def frames(self):
        return lib.dd_movie_write_count(self._mw) if self._mw is not None else 0

    def close(self):
        """Finishes the movie and renames it into place."""
        if self._mw is None:
            return
        mw, self._mw = self._mw, None
        err = ffi.new("dd_err *")
        _check(lib.dd_movie_close(mw, err), err)

    def abort(self):
        if self._mw is not None:
            lib.dd_movie_abort(self._mw)
            self._mw = None

    def __enter__(self):
        return self

    def __exit__(self, exc, *rest):
        if exc is None:
            self.close()
        else:
            self.abort()

    def __del__(self):
        self.abort()
def _new_image(w, h):
    err = ffi.new("dd_err *")
    out = ffi.new("dd_image **")
    _check(lib.dd_image_new(w, h, out, err), err)
    return ffi.gc(out[0], lib.dd_image_free)


def zoom(rgb, frames, model=None, layer=None, *, zoom=0.05, rotate=0.0, seed=0, progress=None,
         **options):
    """`dream zoom` as a generator: yields `frames` uint8 H x W x 3 pictures, frame t dreamed
    with seed + t and fed back zoomed about the centre by 1/(1 - zoom) and turned by `rotate`
    degrees -- the numbered frames `dream zoom` writes with the same options, bit for bit.
    The other keyword arguments are dream()'s (octaves, iters, step, max_side, ...);
    progress(t, Progress) is called after each iteration."""
    frames = int(frames)
    if frames < 1:
        _fail(EARG, "frames must be at least 1, got %d" % frames)
    z = float(np.float32(zoom))
    if not 0 <= z < 1:
        _fail(EARG, "zoom must be in [0, 1), got %g" % z)
    factor, turn = 1.0 / (1.0 - z), float(np.float32(rotate))
    with Dreamer(model, layer, seed=seed, **options) as d:
        cur = rgb
        for t in range(frames):
            cb = None if progress is None else (lambda p, t=t: progress(t, p))
            out = d.dream(cur, seed=seed + t, progress=cb)
            yield out
            if t + 1 < frames:
                src = _image_from_array(out)
                dst = _new_image(src.w, src.h)
                lib.dd_zoom_rotate(src, factor, turn, dst)
                cur = _image_view(dst).copy()


def video(frames, model=None, layer=None, *, blend=0.6, blend_static=None, flow=True,
          flow_threshold=0.0, iters=None, carried_iters=None, seed=0, progress=None,
          **options):
    """`dream video` as a generator over `frames` (any iterable of H x W x 3 pictures of one
    size, e.g. read_movie(path)): yields each dreamed uint8 frame -- the numbered frames
    `dream video` writes with the same options, bit for bit.  Frame 0 is dreamed with
    `iters` per octave (10); every next one starts from raw + blend x the previous frame's
    hallucination, warped along OpenCV's DIS flow (flow=False: not warped), with
    `blend_static` where the flow moves less than `flow_threshold` pixels, and is dreamed
    with `carried_iters` (half of iters, rounded up); frame t with seed + t.  The other
    keyword arguments are dream()'s but max_side (a movie keeps its size); progress(t,
    Progress) after each iteration."""
    if options.get("max_side"):
        _fail(EARG, "max_side: not for video, whose frames keep their size")
    p0 = ffi.new("dd_dream_params *")
    lib.dd_dream_params_init(p0)
    it = p0.iters if iters is None else int(iters)
    carried = (it + 1) // 2 if carried_iters is None else int(carried_iters)
    bs = -1.0 if blend_static is None else float(blend_static)
    err = ffi.new("dd_err *")
    fl = None
    raw_prev = back = scratch = out = flow_buf = None
    with Dreamer(model, layer, iters=it, seed=seed, **options) as d:
        try:
            for t, frame in enumerate(frames):
                raw = _image_from_array(frame, "frame %d" % t)
                cb = None if progress is None else (lambda p, t=t: progress(t, p))
                if t == 0:
                    start, n = _image_view(raw).copy(), it
                    w, h = raw.w, raw.h
                    scratch, out = _new_image(w, h), _new_image(w, h)
                    if flow:
                        pf = ffi.new("dd_flow **")
                        _check(lib.dd_flow_new(w, h, pf, err), err)
                        fl = pf[0]
                        flow_buf = ffi.new("float[]", 2 * w * h)
                else:
                    if (raw.w, raw.h) != (w, h):
                        _fail(ESHAPE, "frame %d is %dx%d, the first was %dx%d"
                              % (t, raw.w, raw.h, w, h))
                    fp = ffi.NULL
                    if fl is not None:
                        _check(lib.dd_flow_compute(fl, raw, raw_prev, flow_buf, err), err)
                        fp = flow_buf
                    lib.dd_video_carry(raw, raw_prev, back, fp, blend, bs, flow_threshold,
                                       scratch, out)
                    start, n = _image_view(out).copy(), carried
                dreamed = d.dream(start, iters=n, seed=seed + t, progress=cb)
                yield dreamed
                back = _image_from_array(dreamed)
                raw_prev = raw
        finally:
            if fl is not None:
                lib.dd_flow_free(fl)


# ---- shapes and train (dream/train.h) ----

SHAPE_CLASSES = ("circle", "square", "triangle", "cross", "ring", "star")


def shapes(out_dir=None, *, size=32, count=200, classes=("circle", "square", "triangle", "cross"),
           noise=8.0, color_by_class=False, color_shift=0, one_vs_rest=None, seed=0):
    """`dream shapes`: the labelled folder of synthetic shapes (dd_shapes_image), as a dict
    {folder: [uint8 H x W x 3 arrays]}; with out_dir also written as the CLI writes it,
    out_dir/<folder>/<folder>_NNNNN.png, the same bytes."""
    names = [str(c) for c in classes]
    for c in names:
        if c not in SHAPE_CLASSES:
            _fail(EARG, "unknown class '%s' (%s)" % (c, ", ".join(SHAPE_CLASSES)))
    if len(set(names)) != len(names) or not names:
        _fail(EARG, "classes: each class once, at least one")
    if not 8 <= size <= 1024 or not 1 <= count <= 1000000:
        _fail(EARG, "size 8..1024 and count 1..1000000")
    o = ffi.new("dd_shapes_opts *")
    for i, c in enumerate(names):
        o.classes[i] = SHAPE_CLASSES.index(c)
    o.n_classes = len(names)
    o.one_vs_rest = -1
    if one_vs_rest is not None:
        if one_vs_rest not in names or len(names) < 2 or color_by_class:
            _fail(EARG, "one_vs_rest %s: one of two or more classes, without color_by_class"
                  % (one_vs_rest,))
        o.one_vs_rest = names.index(one_vs_rest)
    o.by_class = 1 if color_by_class else 0
    o.shift = color_shift
    o.noise = noise
    o.seed = seed
    err = ffi.new("dd_err *")
    out = ffi.new("dd_image **")
    _check(lib.dd_image_new(size, size, out, err), err)
    im = ffi.gc(out[0], lib.dd_image_free)
    result = {}
    if out_dir is not None:
        os.makedirs(out_dir, exist_ok=True)
    for k in range(lib.dd_shapes_folders(o)):
        folder = _str(lib.dd_shapes_folder_name(o, k))
        pics = []
        if out_dir is not None:
            os.makedirs(os.path.join(out_dir, folder), exist_ok=True)
        for i in range(count):
            lib.dd_shapes_image(im, o, k, i)
            if out_dir is not None:
                path = os.path.join(out_dir, folder, "%s_%05d.png" % (folder, i))
                _check(lib.dd_image_save_with(os.fsencode(path), im, ffi.NULL, err), err)
            pics.append(_image_bytes(im))
        result[folder] = pics
    return result


@dataclass
class TrainResult:
    """What dream.train did: per epoch (train loss, train accuracy, val loss, val accuracy),
    NaN where there is no validation set; the classes in logit order."""
    history: List[Tuple[float, float, float, float]]
    classes: List[str]


def _splitmix(state):
    """dd_rng_next (src/util.c): the next value and the new state."""
    m = (1 << 64) - 1
    state = (state + 0x9E3779B97F4A7C15) & m
    z = state
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & m
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & m
    return z ^ (z >> 31), state


def _labelled_folder(dir, classes, size, pre, channels):
    """A folder as `dream train` reads it: files sorted by their relative paths' bytes, the
    class their first folder; each image through dd_image_to_input (resized when needed)."""
    rel = []
    for root, dirs, files in os.walk(dir):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        for f in files:
            if not f.startswith(".") and lib.dd_dataset_is_image_name(os.fsencode(f)):
                rel.append(os.path.relpath(os.path.join(root, f), dir).replace(os.sep, "/"))
    rel.sort(key=os.fsencode)
    if not rel:
        _fail(EARG, "%s: no images in it (one subfolder of images per class)" % dir)
    find = not classes
    for r in rel:
        if "/" not in r:
            _fail(EARG, "%s/%s: an image outside a class folder" % (dir, r))
        c = r.split("/", 1)[0]
        if c not in classes:
            if not find:
                _fail(EARG, "%s: class '%s' is not one the model was trained on" % (dir, c))
            classes.append(c)
    if find and len(classes) < 2:
        _fail(EARG, "%s: one class only ('%s'): a classifier needs at least two class folders"
              % (dir, classes[0]))
    err = ffi.new("dd_err *")
    xs, ys = None, []
    for i, r in enumerate(rel):
        out = ffi.new("dd_image **")
        _check(lib.dd_image_load(os.fsencode(os.path.join(dir, r)), 0, out, err), err)
        im = ffi.gc(out[0], lib.dd_image_free)
        if not size:
            size = im.w
        if im.w != size or im.h != size:
            rs = ffi.new("dd_image **")
            _check(lib.dd_image_resize(im, size, size, rs, err), err)
            im = ffi.gc(rs[0], lib.dd_image_free)
        if xs is None:
            xs = np.zeros((len(rel), channels, size, size), np.float32)
        buf = np.zeros((3, size, size), np.float32)
        lib.dd_image_to_input(im, pre, ffi.cast("float *", ffi.from_buffer(buf)))
        xs[i] = buf if channels == 3 else (buf[0] + buf[1] + buf[2]) / 3
        ys.append(classes.index(r.split("/", 1)[0]))
    return xs, np.array(ys, np.int32), size


def train(train_dir, out, *, arch="cnn", epochs=10, batch=32, lr=None, optimizer="sgd",
          momentum=0.9, weight_decay=0.0, seed=0, val=None, size=None, progress=None):
    """`dream train` without its snapshots: trains `arch` (perceptron, mlp, cnn or a path to an
    .onnx file) on a labelled folder and writes `out` after every epoch, the bytes the CLI
    writes for the same options.  progress(epoch, loss, accuracy, val_loss, val_accuracy) after
    each epoch.  Returns a TrainResult."""
    if optimizer not in ("sgd", "adam"):
        _fail(EARG, "optimizer: sgd or adam, not %r" % (optimizer,))
    err = ffi.new("dd_err *")
    o = ffi.new("dd_train_opts *")
    lib.dd_train_opts_init(o)
    o.optimizer = lib.DD_OPT_ADAM if optimizer == "adam" else lib.DD_OPT_SGD
    o.lr = lr if lr is not None else (0.001 if optimizer == "adam" else 0.05)
    o.momentum = momentum
    o.weight_decay = weight_decay
    builtin = arch in ("perceptron", "mlp", "cnn")
    pre = ffi.new("dd_preproc *", {"bgr": 0, "scale": 1.0, "mean": [0.5] * 3, "std": [0.5] * 3})
    channels = 3
    onnx = None
    if not builtin:
        with open(arch, "rb") as f:
            onnx = f.read()
        found, msize = ffi.new("int *"), ffi.new("int *")
        _check(lib.dd_train_read_meta(os.fsencode(arch), found, pre, msize, ffi.NULL, ffi.NULL,
                                      err), err)
        if not found[0]:
            pre[0] = Model(arch)._preset.pre
        probe = ffi.new("dd_trainer **")
        _check(lib.dd_trainer_new(onnx, len(onnx), os.fsencode(arch), o, probe, err), err)
        c, h, w = ffi.new("int *"), ffi.new("int *"), ffi.new("int *")
        lib.dd_trainer_geometry(probe[0], c, h, w, ffi.NULL)
        lib.dd_trainer_free(probe[0])
        channels, size = c[0], h[0]
    classes = []
    x, y, size = _labelled_folder(train_dir, classes, size or 0, pre, channels)
    vx = vy = None
    if val is not None:
        vx, vy, _ = _labelled_folder(val, classes, size, pre, channels)
    if builtin:
        buf, blen = ffi.new("void **"), ffi.new("size_t *")
        _check(lib.dd_train_arch(arch.encode(), channels, size, len(classes), seed, buf, blen,
                                 err), err)
        onnx = bytes(ffi.buffer(buf[0], blen[0]))
        lib.free(buf[0])
    tp = ffi.new("dd_trainer **")
    _check(lib.dd_trainer_new(onnx, len(onnx), os.fsencode(arch), o, tp, err), err)
    t = ffi.gc(tp[0], lib.dd_trainer_free)
    k = ffi.new("int *")
    lib.dd_trainer_geometry(t, ffi.NULL, ffi.NULL, ffi.NULL, k)
    if k[0] != len(classes):
        _fail(EARG, "%s has %d outputs but %s has %d classes" % (arch, k[0], train_dir,
                                                                 len(classes)))
    keep = [ffi.new("char[]", c.encode()) for c in classes]
    labels = ffi.new("const char *[]", keep)
    meta = ffi.new("dd_train_meta *", {"pre": pre[0], "size": size, "labels": labels,
                                       "n_labels": len(classes)})
    n = len(y)
    order = list(range(n))
    state = (seed ^ 0x73687566666c65) & ((1 << 64) - 1)
    loss, good = ffi.new("double *"), ffi.new("int *")
    history = []

    def evaluate(ex, ey):
        total, right = 0.0, 0
        for i in range(0, len(ey), batch):
            xb = np.ascontiguousarray(ex[i:i + batch])
            yb = np.ascontiguousarray(ey[i:i + batch])
            _check(lib.dd_trainer_eval(t, ffi.cast("float *", ffi.from_buffer(xb)),
                                       ffi.cast("int *", ffi.from_buffer(yb)), len(yb), loss,
                                       good, ffi.NULL, err), err)
            total += loss[0] * len(yb)
            right += good[0]
        return total / len(ey), right / len(ey)

    for e in range(epochs):
        for i in range(n - 1, 0, -1):  # Fisher-Yates with dd_rng_next, as the CLI
            r, state = _splitmix(state)
            j = r % (i + 1)
            order[i], order[j] = order[j], order[i]
        total, right = 0.0, 0
        for s in range(0, n, batch):
            idx = order[s:s + batch]
            xb = np.ascontiguousarray(x[idx])
            yb = np.ascontiguousarray(y[idx])
            rc = lib.dd_trainer_step(t, ffi.cast("float *", ffi.from_buffer(xb)),
                                     ffi.cast("int *", ffi.from_buffer(yb)), len(idx), loss,
                                     good, err)
            _check(rc, err)
            total += loss[0] * len(idx)
            right += good[0]
        h = [total / n, right / n, math.nan, math.nan]
        if vx is not None:
            h[2], h[3] = evaluate(vx, vy)
        _check(lib.dd_trainer_save(t, os.fsencode(out), meta, err), err)
        history.append(tuple(h))
        if progress is not None:
            progress(e + 1, *h)
    return TrainResult(history, classes)
