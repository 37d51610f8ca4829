"""The C declarations the module uses, written out from include/dream/*.h for cffi's ABI mode,
and the search for libdream.so.

ABI mode compiles nothing: the layouts below must match the headers byte for byte.
tests/test_abi.py compares every struct's size and field offsets with the C compiler's.
"""
import glob
import os

from cffi import FFI

ffi = FFI()
ffi.cdef(r"""
/* libc: strings the library malloc's for the caller */
void free(void *);

/* error.h */
typedef struct dd_err { int code; char msg[1024]; } dd_err;
const char *dd_strerror(int code);
const char *dd_errname(int code);

/* tensor.h */
typedef enum dd_dtype { DD_F32 = 1, DD_I64 = 7, DD_BOOL = 9 } dd_dtype;
typedef struct dd_shape { int ndim; int64_t d[8]; } dd_shape;
typedef struct dd_tensor {
  dd_dtype dtype; dd_shape shape; void *data; int owns;
} dd_tensor;
int64_t dd_shape_numel(const dd_shape *s);
const char *dd_dtype_name(dd_dtype t);
int dd_tensor_new(dd_dtype dtype, const dd_shape *shape, size_t max_memory, dd_tensor **out,
                  dd_err *err);
void dd_tensor_free(dd_tensor *t);
int dd_tensor_load_pb(const char *path, dd_tensor **out, char **name_out, dd_err *err);
int dd_tensor_save_pb(const char *path, const dd_tensor *t, const char *name, dd_err *err);

/* model.h */
typedef struct dd_model dd_model;
int dd_model_load(const char *path, dd_model **out, dd_err *err);
void dd_model_free(dd_model *m);
const char *dd_model_name(const dd_model *m);
int64_t dd_model_opset(const dd_model *m);
int64_t dd_model_num_params(const dd_model *m);
int dd_model_num_values(const dd_model *m);
const char *dd_model_value_name(const dd_model *m, int value);
int dd_model_find(const dd_model *m, const char *name);
int dd_model_value_is_const(const dd_model *m, int value);
int dd_model_input(const dd_model *m);
dd_shape dd_model_input_shape(const dd_model *m);
int dd_model_image_input(const dd_model *m, int *value, dd_err *err);
int dd_model_num_outputs(const dd_model *m);
int dd_model_output(const dd_model *m, int i);
int dd_model_num_nodes(const dd_model *m);
const char *dd_model_node_name(const dd_model *m, int node);
const char *dd_model_node_op(const dd_model *m, int node);
int dd_model_node_num_outputs(const dd_model *m, int node);
int dd_model_node_output(const dd_model *m, int node, int i);
int dd_model_resolve(const dd_model *m, const char *name, int *value, dd_err *err);
const char *dd_model_conv_alias(const dd_model *m, int value, int *shadowed);
int dd_model_alias_shadowed(const dd_model *m, const char *name, int *alias_value);

/* image.h */
typedef struct dd_image {
  int w, h; float *rgb;
  unsigned char *icc; size_t icc_len; unsigned char *exif; size_t exif_len;
} dd_image;
int dd_image_new(int w, int h, dd_image **out, dd_err *err);
void dd_image_free(dd_image *im);
int dd_image_load(const char *path, size_t max_pixels, dd_image **out, dd_err *err);
typedef struct dd_image_save_opts { int quality; int keep_meta; } dd_image_save_opts;
int dd_image_save_with(const char *path, const dd_image *im, const dd_image_save_opts *opts,
                       dd_err *err);
int dd_image_resize(const dd_image *im, int w, int h, dd_image **out, dd_err *err);
void dd_image_to_bytes(const dd_image *im, unsigned char *out);
void dd_image_round(const dd_image *im, dd_image *out);
typedef struct dd_preproc { int bgr; float scale; float mean[3]; float std[3]; } dd_preproc;

/* preset.h */
typedef struct dd_preset {
  char *name; char *model_path; char *labels_path; dd_preproc pre;
  char *layer; int size; char *url;
} dd_preset;
int dd_preset_resolve(const char *spec, dd_preset *out, dd_err *err);
void dd_preset_clear(dd_preset *p);
int dd_labels_load(const char *path, char ***labels, int *n, dd_err *err);
void dd_labels_free(char **labels, int n);
int dd_labels_find(char *const *labels, int n, const char *query, int *index, dd_err *err);

/* frame.h */
typedef enum dd_framing { DD_FRAME_CROP, DD_FRAME_SQUASH, DD_FRAME_FIT } dd_framing;
typedef struct dd_frame_rect { double x, y, w, h; } dd_frame_rect;
int dd_image_frame(const dd_image *im, dd_framing framing, int w, int h, dd_image **out,
                   dd_frame_rect *rect, dd_err *err);
int dd_frame_layout(int iw, int ih, dd_framing framing, int w, int h, dd_frame_rect *rect,
                    int *ow, int *oh, dd_err *err);
int dd_image_cut(const dd_image *im, int x0, int y0, int cw, int ch, dd_image **out,
                 dd_err *err);

/* graph.h */
typedef struct dd_plan dd_plan;
#define DD_PLAN_EXACT 32
typedef struct dd_binding { int value; dd_shape shape; const dd_tensor *constant; } dd_binding;
int dd_plan_new(const dd_model *m, const dd_binding *inputs, int n_inputs, const int *targets,
                int n_targets, unsigned flags, size_t max_memory, dd_plan **out, dd_err *err);
void dd_plan_free(dd_plan *p);
dd_tensor *dd_plan_tensor(dd_plan *p, int value);
void dd_plan_forward(dd_plan *p);
size_t dd_plan_bytes(const dd_plan *p);
int64_t dd_plan_node_flops(const dd_plan *p, int node);
int dd_plan_node_runs(const dd_plan *p, int node);
int64_t dd_model_node_params(const dd_model *m, int node);

/* layout.h */
typedef enum dd_layout_kind {
  DD_LAYOUT_OTHER, DD_LAYOUT_NCHW, DD_LAYOUT_VECTOR, DD_LAYOUT_TOKENS, DD_LAYOUT_SEQ,
  DD_LAYOUT_NHWC
} dd_layout_kind;
typedef struct dd_layout {
  dd_layout_kind kind; int channel_axis; int64_t channels; int64_t outer; int64_t inner;
  int grid_h, grid_w; int cls;
} dd_layout;
dd_layout_kind dd_value_layout(const dd_model *m, int value, const dd_shape *shape, int in_w,
                               int in_h, dd_layout *out);
const char *dd_layout_name(dd_layout_kind kind);
typedef struct dd_input_sizes { int fixed; int native_w, native_h; int min_w, min_h; } dd_input_sizes;
int dd_model_input_sizes(const dd_model *m, const int *targets, int n_targets,
                         dd_input_sizes *out, dd_err *err);

/* dream.h */
typedef struct dd_dream_layer { int value; int channel; float weight; } dd_dream_layer;
typedef enum dd_dream_norm { DD_NORM_MEANABS, DD_NORM_STD, DD_NORM_LAPLACIAN } dd_dream_norm;
typedef enum dd_precision {
  DD_PRECISION_AUTO = 0, DD_PRECISION_FP32 = 1, DD_PRECISION_BF16 = 2
} dd_precision;
typedef struct dd_dream_params {
  dd_dream_layer layers[16]; int n_layers; int octaves; float octave_scale; int iters;
  float step; int jitter; dd_dream_norm norm; int lap_levels; int tile; size_t max_memory;
  uint64_t seed; const dd_image *guide;
  const void *cancel; /* const volatile sig_atomic_t * */
  int checkpoint_every;
  int in_place;
  dd_precision precision;
} dd_dream_params;
void dd_dream_params_init(dd_dream_params *p);
dd_precision dd_precision_resolve(dd_precision asked, int dream_loop);
int dd_precision_has_bf16(void);
void dd_system_kernels(const char **cpu, const char **fp32, const char **bf16);
int dd_dream_layer_resolve(const dd_model *m, const char *spec, dd_dream_layer *out,
                           dd_err *err);
typedef struct dd_dream_progress {
  int octave, n_octaves; int iter, n_iters; int w, h; int tiles; double objective;
  double done; const dd_image *checkpoint;
} dd_dream_progress;
typedef int (*dd_dream_progress_fn)(const dd_dream_progress *info, void *user);
int dd_dream_run(const dd_model *m, const dd_preproc *pp, const dd_dream_params *p,
                 dd_image *img, dd_dream_progress_fn fn, void *user, dd_err *err);
typedef struct dd_dreamer dd_dreamer;
int dd_dreamer_new(const dd_model *m, const dd_preproc *pp, const dd_dream_params *p,
                   dd_dreamer **out, dd_err *err);
void dd_dreamer_free(dd_dreamer *d);
int dd_dreamer_dream(dd_dreamer *d, dd_image *img, int iters, uint64_t seed,
                     dd_dream_progress_fn fn, void *user, dd_err *err);
typedef struct dd_dream_budget {
  size_t weights; size_t image; size_t guide; size_t min_plan; int tile; size_t need;
  size_t plan_budget; int fit_w, fit_h;
} dd_dream_budget;
int dd_dream_check_budget(const dd_model *m, const dd_dream_params *p, int w, int h,
                          size_t max_memory, dd_dream_budget *out, dd_err *err);
size_t dd_dream_decode_bytes(int w, int h);
int dd_input_gradient(const dd_model *m, const dd_tensor *input, const dd_dream_layer *layers,
                      int n_layers, size_t max_memory, dd_tensor **grad, double *objective,
                      dd_err *err);

/* visualize.h */
typedef enum dd_cmap { DD_CMAP_INFERNO, DD_CMAP_VIRIDIS } dd_cmap;
typedef struct dd_grid { int n, cols, rows; int tile_w, tile_h, gap; } dd_grid;
int dd_vis_grid(const dd_image *const *tiles, int n, int gap, float bg, dd_image **out,
                dd_grid *grid, dd_err *err);
int dd_vis_find_conv(const dd_model *m, int value, int *node, dd_err *err);
int dd_vis_logits(const dd_model *m, int *value, dd_err *err);
int dd_vis_filters(const dd_model *m, int node, int bgr, int zoom, int gap, dd_image **out,
                   dd_grid *grid, dd_err *err);
typedef struct dd_fv_progress { int channel; int iter, n_iters; double objective; } dd_fv_progress;
typedef int (*dd_fv_progress_fn)(const dd_fv_progress *info, void *user);
typedef struct dd_fv_opts {
  int size; int iters; float lr; int jitter; float scale; float rotate; int pixels;
  size_t max_memory; dd_fv_progress_fn progress; void *user; dd_precision precision;
} dd_fv_opts;
void dd_fv_opts_init(dd_fv_opts *o);
typedef struct dd_fv dd_fv;
int dd_fv_new(const dd_model *m, const dd_preproc *pp, int value, const dd_fv_opts *o,
              dd_fv **out, dd_err *err);
void dd_fv_free(dd_fv *fv);
int dd_fv_channels(const dd_fv *fv);
int dd_fv_run(dd_fv *fv, int channel, uint64_t seed, dd_image **out, float *objective,
              dd_err *err);
int dd_vis_classify(const dd_model *m, const dd_preproc *pp, const dd_image *im,
                    size_t max_memory, dd_tensor **prob, dd_err *err);
int dd_vis_activations(const dd_model *m, const dd_preproc *pp, int value, const dd_image *im,
                       size_t max_memory, dd_tensor **out, dd_err *err);
typedef struct dd_chan_stats { float mean, max; float zeros; } dd_chan_stats;
void dd_vis_channel_stats(const dd_tensor *act, dd_chan_stats *st);
int dd_vis_activation_grid(const dd_tensor *act, int c0, int c1, int zoom, int gap,
                           dd_cmap map, dd_image **out, dd_grid *grid, dd_err *err);
typedef struct dd_explain_opts {
  int size; int cls; int layer; int smoothgrad; float noise; uint64_t seed; size_t max_memory;
} dd_explain_opts;
void dd_explain_opts_init(dd_explain_opts *o);
typedef struct dd_explanation {
  int n_classes; int top[5]; float prob[5]; int cls; float logit, prob_cls; int layer;
  int cam_w, cam_h; int w, h; float *cam; float *saliency; int cam_x, cam_y;
} dd_explanation;
int dd_explain(const dd_model *m, const dd_preproc *pp, const dd_image *im,
               const dd_explain_opts *o, dd_explanation **out, dd_err *err);
void dd_explanation_free(dd_explanation *e);
int dd_explain_picture(const dd_image *im, const dd_explanation *e, int height, dd_image **out,
                       dd_err *err);

/* audit.h (the report is jansson's json_t, opaque here: it crosses as text) */
typedef struct json_t json_t;
typedef struct dd_audit_opts {
  dd_framing framing; int size; int top; const char *labels_csv;
  int shard_index; int shard_count; size_t max_memory; size_t max_pixels; int max_files;
  const int *layers; int n_layers; unsigned perturb; uint64_t seed;
  void (*progress)(int done, int total, void *user); void *user;
} dd_audit_opts;
void dd_audit_opts_init(dd_audit_opts *o);
int dd_audit_run(const dd_model *m, const char *model_path, const dd_preproc *pp,
                 const char *labels_path, const char *dir, const dd_audit_opts *o,
                 json_t **report, dd_err *err);
int dd_audit_merge(json_t *const *parts, const char *const *names, int n, json_t **report,
                   dd_err *err);
int dd_audit_write(const json_t *report, const char *dir, dd_err *err);
int dd_audit_read(const char *dir, json_t **report, dd_err *err);
char *dd_audit_dumps(const json_t *report);
void dd_audit_free(json_t *report);
int dd_perturb_parse(const char *list, unsigned *bits, dd_err *err);

/* video.h */
typedef struct dd_movie_reader dd_movie_reader;
typedef struct dd_movie_info {
  int w, h;
  double fps;
  long long frames;
  int has_audio;
  double duration;
} dd_movie_info;
typedef struct dd_flow dd_flow;
int dd_flow_new(int w, int h, dd_flow **out, dd_err *err);
void dd_flow_free(dd_flow *f);
int dd_flow_compute(dd_flow *f, const dd_image *a, const dd_image *b, float *flow, dd_err *err);
void dd_flow_warp(const dd_image *src, const float *flow, dd_image *dst);
void dd_zoom_rotate(const dd_image *src, double zoom, double degrees, dd_image *dst);
void dd_video_carry(const dd_image *raw, const dd_image *raw_prev, const dd_image *back,
                    const float *flow, float blend, float blend_static, float flow_threshold,
                    dd_image *scratch, dd_image *out);
dd_movie_reader *dd_movie_read_open(const char *path, size_t max_pixels, dd_err *err);
void dd_movie_read_info(const dd_movie_reader *r, dd_movie_info *info);
int dd_movie_read(dd_movie_reader *r, dd_image **frame, dd_err *err);
long long dd_movie_read_count(const dd_movie_reader *r);
void dd_movie_read_close(dd_movie_reader *r);
typedef struct dd_movie_writer dd_movie_writer;
typedef struct dd_movie_opts {
  const char *audio_from;
  double audio_start, audio_end;
  long long start_frame;
  int first_number;
  int quality;
} dd_movie_opts;
void dd_movie_opts_init(dd_movie_opts *o);
dd_movie_writer *dd_movie_open_ex(const char *path, int w, int h, double fps,
                                  const dd_movie_opts *opts, dd_err *err);
int dd_movie_write(dd_movie_writer *mw, const dd_image *frame, dd_err *err);
int dd_movie_close(dd_movie_writer *mw, dd_err *err);
void dd_movie_abort(dd_movie_writer *mw);
long long dd_movie_write_count(const dd_movie_writer *mw);
/* train.h */
typedef enum { DD_OPT_SGD = 0, DD_OPT_ADAM = 1 } dd_optimizer;
typedef struct dd_train_opts {
  dd_optimizer optimizer; float lr; float momentum; float weight_decay;
  float beta1, beta2, eps;
} dd_train_opts;
void dd_train_opts_init(dd_train_opts *o);
int dd_train_arch(const char *arch, int channels, int size, int n_classes, uint64_t seed,
                  void **onnx, size_t *len, dd_err *err);
typedef struct dd_trainer dd_trainer;
int dd_trainer_new(const void *onnx, size_t len, const char *what, const dd_train_opts *o,
                   dd_trainer **out, dd_err *err);
void dd_trainer_free(dd_trainer *t);
void dd_trainer_geometry(const dd_trainer *t, int *c, int *h, int *w, int *k);
int dd_trainer_step(dd_trainer *t, const float *x, const int *labels, int n, double *loss,
                    int *correct, dd_err *err);
int dd_trainer_eval(dd_trainer *t, const float *x, const int *labels, int n, double *loss,
                    int *correct, float *logits, dd_err *err);
int dd_trainer_num_params(const dd_trainer *t);
const char *dd_trainer_param_name(const dd_trainer *t, int i);
typedef struct dd_train_meta {
  dd_preproc pre; int size; const char *const *labels; int n_labels;
} dd_train_meta;
int dd_trainer_save(const dd_trainer *t, const char *path, const dd_train_meta *meta,
                    dd_err *err);
int dd_train_read_meta(const char *path, int *found, dd_preproc *pre, int *size,
                       char ***labels, int *n_labels, dd_err *err);
extern const char *const dd_shape_names[6];
typedef struct dd_shapes_opts {
  int classes[6]; int n_classes; int one_vs_rest; int by_class, shift; float noise;
  uint64_t seed;
} dd_shapes_opts;
int dd_shapes_folders(const dd_shapes_opts *o);
const char *dd_shapes_folder_name(const dd_shapes_opts *o, int folder);
void dd_shapes_image(dd_image *im, const dd_shapes_opts *o, int folder, int index);
int dd_dataset_is_image_name(const char *name);
void dd_image_to_input(const dd_image *im, const dd_preproc *pp, float *out);
""")

_HERE = os.path.dirname(os.path.abspath(__file__))


def _candidates():
    """Where libdream.so may be, in the order tried."""
    env = os.environ.get("DREAM_LIBRARY")
    if env:
        yield env
        return
    try:  # written by `cmake --install`: the library installed with this package
        from dream._paths import LIBRARY
        yield LIBRARY
    except ImportError:
        pass
    # Next to the package: a copy in the package, or the install tree's lib/ (the package is
    # P/lib/python3/dist-packages/dream), and the build tree (python/dream -> build/).
    lib = os.path.normpath(os.path.join(_HERE, "..", "..", ".."))
    for d in (_HERE, lib, os.path.join(_HERE, "..", "..", "build")):
        found = sorted(glob.glob(os.path.join(d, "libdream.so*")), key=len)
        if found:
            yield found[0]
    yield "libdream.so"  # the dynamic linker's own search (ld.so.cache, LD_LIBRARY_PATH)


def _open():
    # What the CLI does for itself (src/cli/omp_env.c): libgomp, loaded with the library,
    # reads its environment once; spinning briefly at barriers keeps a shared machine fast.
    if "OMP_WAIT_POLICY" not in os.environ and "GOMP_SPINCOUNT" not in os.environ:
        os.environ["GOMP_SPINCOUNT"] = "10000"
    tried = []
    for path in _candidates():
        try:
            return ffi.dlopen(path), path
        except OSError as e:
            tried.append("%s (%s)" % (path, e))
    raise ImportError("dream: cannot load libdream.so; set DREAM_LIBRARY to its path. Tried: "
                      + "; ".join(tried))


lib, library_path = _open()
