/* dream/dream.h - DeepDream: gradient ascent on an image to amplify what layers of a network
 * respond to.
 *
 * The algorithm is the original DeepDream notebook's (Mordvintsev, Olah, Tyka, 2015), on any
 * model whose input is an RGB image:
 *   - octaves: the image is downscaled `octaves - 1` times by `octave_scale` (bilinear); the
 *     dream starts on the smallest, and after each octave the detail it added (dreamed minus
 *     base) is upscaled and added to the next larger base;
 *   - each iteration rolls the image by a random offset of up to `jitter` pixels, computes the
 *     gradient of the objective with respect to the pixels, normalizes it over the whole image
 *     (mean |g|, standard deviation, or the Laplacian pyramid of the TensorFlow tutorial),
 *     steps by `step` (in 0..255 pixel units, so the notebook's 1.5 means the same on every
 *     model) and clips the pixels to 0..255;
 *   - objective: sum over the layers of weight * 1/2 sum(a^2) (one channel of a layer when
 *     `channel` >= 0), or with a guide image the notebook's objective_guide: at each position
 *     of the layer, the guide's feature vector with the largest dot product is the gradient;
 *   - large images are cut into tiles that share one plan (built once per tile size); a random
 *     roll moves the tile borders every iteration so no seams show, and the normalization
 *     still runs once over the whole image.  Tiles are used when asked (`tile`) or when the
 *     whole image's plan would exceed the memory budget;
 *   - a model that takes one input size only for the layers (dd_model_input_sizes in
 *     dream/layout.h: a ViT, a Swin) is always dreamed in tiles of that size, `tile` ignored:
 *     octaves smaller than it are skipped, and an image smaller than it is wrapped around
 *     (periodically) to fill one tile and takes its gradient from the central copy.
 *
 * Nothing is allocated inside the iteration loop: buffers are made once per run, plans once
 * per input size.  Results depend only on the inputs and `seed` (no global random state).
 */
#ifndef DREAM_DREAM_H
#define DREAM_DREAM_H

#include "dream/api.h"

#include <signal.h>
#include <stddef.h>
#include <stdint.h>

#include "dream/error.h"
#include "dream/image.h"
#include "dream/model.h"
#include "dream/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

#define DD_DREAM_MAX_LAYERS 16
/* Octaves whose shorter side would be smaller than this are skipped. */
#define DD_DREAM_MIN_SIDE 32
/* Smallest tile side accepted. */
#define DD_DREAM_MIN_TILE 32

/* One term of the objective. */
typedef struct dd_dream_layer {
  int value;    /* value index in the model (dd_model_resolve) */
  int channel;  /* -1: every channel; otherwise only this index of the value's channel axis
                   (dream/layout.h: dim 1 of a map, the last dim of tokens and channels-last
                   grids), at every position (a class token included) */
  float weight; /* the term's weight; negative weights suppress what the layer sees */
} dd_dream_layer;

typedef enum dd_dream_norm {
  DD_NORM_MEANABS,  /* g / mean|g|: the notebook */
  DD_NORM_STD,      /* g / std(g) */
  DD_NORM_LAPLACIAN /* each level of a Laplacian pyramid scaled to unit RMS, then merged */
} dd_dream_norm;

/* The number format of the convolutions' products (the CLI's --precision). */
typedef enum dd_precision {
  /* bf16 where this CPU makes it faster (AMX; see dd_precision_resolve), else fp32 */
  DD_PRECISION_AUTO = 0,
  /* float32 throughout: the reference */
  DD_PRECISION_FP32 = 1,
  /* operands rounded to bfloat16 (8 significant bits), products summed in float32, on the
   * CPU's bf16 instructions (AVX512-BF16); fp32 on a CPU without them.  Each convolution
   * output is then within about 2^-7 of the sum of its terms' magnitudes (float32: about
   * k 2^-24); through Winograd's transforms (3x3 layers) the error grows to a few percent
   * of the largest output.  The weight gradient stays float32. */
  DD_PRECISION_BF16 = 2,
} dd_precision;

typedef struct dd_dream_params {
  dd_dream_layer layers[DD_DREAM_MAX_LAYERS];
  int n_layers;
  int octaves;        /* number of scales, >= 1 (4) */
  float octave_scale; /* size ratio between octaves, > 1 (1.4) */
  int iters;          /* gradient steps per octave, >= 1 (10) */
  float step;         /* step size in pixel units after normalization, > 0 (1.5) */
  int jitter;         /* random roll of up to this many pixels each way, >= 0 (32) */
  dd_dream_norm norm; /* DD_NORM_MEANABS */
  int lap_levels;     /* levels of the Laplacian pyramid, 1..12 (4) */
  int tile;           /* 0: whole image unless over max_memory; else tiles of tile x tile */
  size_t max_memory;  /* bytes for the plan's buffers; 0: no limit */
  uint64_t seed;      /* of the jitter's generator */
  const dd_image *guide; /* NULL: 1/2 sum a^2; else objective_guide with this image */
  /* Polled between iterations and between tiles: when it becomes nonzero the run stops with
   * DD_EINTR (a signal handler may set it).  NULL: never. */
  const volatile sig_atomic_t *cancel;
  int checkpoint_every; /* > 0: pass the full-size current result to the callback every N
                           iterations (counted over all octaves) */
  int in_place; /* nonzero: the largest octave is dreamed in img itself and the smaller ones in
                   buffers of their own size, so the job holds one full-size picture less
                   (dd_dream_image_bytes); the result is the same, but a run stopped or failed
                   in the largest octave leaves img partly dreamed.  0: img is untouched
                   unless the run succeeds. */
  dd_precision precision; /* of the gradient's convolutions (DD_PRECISION_AUTO): resolved
                             by dd_precision_resolve(precision, 1) */
} dd_dream_params;

/* What `asked` means on this CPU, for a gradient-ascent loop (dream_loop != 0: dream,
 * batch, filters --optimize, class) or for a computation whose numbers are the result (0: run,
 * grad, classify, explain): FP32 or BF16, never AUTO.  AUTO is BF16 for a loop when the CPU
 * has AMX-BF16 tiles (usable, and bit-exact with the AVX512-BF16 kernel in a self-check at
 * the first call), else FP32: with AVX512-BF16 alone bf16 measured slower than float32
 * (bench/README.md).  The rule reads the CPU, never the clock, so a seed gives one picture.
 * BF16 is BF16 when the CPU has a bf16 kernel (AVX512-BF16), else FP32
 * (dd_precision_has_bf16 says which); FP32 is FP32.  Thread-safe. */
DD_API dd_precision dd_precision_resolve(dd_precision asked, int dream_loop);
/* Whether this CPU has a bf16 kernel (AVX512-BF16), so that BF16 is not FP32. */
DD_API int dd_precision_has_bf16(void);
/* What this process computes on, for reports beside any figure: the CPU's brand string, the
 * fp32 kernel path ("avx512" or "generic": chosen once from cpuid, DREAM_KERNELS forces one)
 * and the bf16 kernels ("amx", "avx512-bf16" or "none").  Any pointer may be NULL; the
 * strings are static.  Thread-safe. */
DD_API void dd_system_kernels(const char **cpu, const char **fp32, const char **bf16);

/* The notebook's defaults, no layers (n_layers = 0), seed 0. */
DD_API void dd_dream_params_init(dd_dream_params *p);

/* Splits a layer spec "NAME[#CHANNEL][:WEIGHT]" (pure syntax, no model): `name` receives NAME,
 * *channel -1 when absent, *weight 1 when absent.  A weight must be a finite number, a
 * channel a non-negative integer.  DD_EARG with the reason otherwise. */
DD_API int dd_dream_layer_spec(const char *spec, char *name, size_t name_size, int *channel,
                        float *weight, dd_err *err);
/* Resolves a spec against a model: NAME is a value name or a "convN" alias
 * (dd_model_resolve); a spec that is as a whole a value name is taken as that name.
 * DD_ENOTFOUND with the closest names when no layer has that name.  The channel is checked
 * against the layer's shape when a plan is built (dd_dream_run, dd_input_gradient). */
DD_API int dd_dream_layer_resolve(const dd_model *m, const char *spec, dd_dream_layer *out,
                           dd_err *err);

/* What the progress callback sees after each iteration. */
typedef struct dd_dream_progress {
  int octave, n_octaves; /* 0-based; octave 0 is the smallest */
  int iter, n_iters;     /* 0-based iteration of this octave just completed */
  int w, h;              /* this octave's size */
  int tiles;             /* tiles per gradient (1: whole image) */
  double objective;      /* before this iteration's step; with tiles, the sum over tiles */
  double done;           /* fraction of the whole run's work completed, 0..1 */
  /* On checkpoint iterations (checkpoint_every): the current result at the input's size,
   * valid during the call; NULL otherwise. */
  const dd_image *checkpoint;
} dd_dream_progress;

/* Returns 0 to go on; any other value stops the run, which returns that value (use a
 * dd_status, e.g. DD_EIO when a checkpoint could not be written). */
typedef int (*dd_dream_progress_fn)(const dd_dream_progress *info, void *user);

/* Dreams `img` in place with model `m` (preprocessing `pp`) and parameters `p`.  `fn` (may be
 * NULL) is called after every iteration.  On failure -- bad parameters (DD_EARG), a layer that
 * does not depend on the input or a channel out of range (DD_EARG), a budget too small even
 * for the smallest tile (DD_ELIMIT), cancellation (DD_EINTR) -- img is left untouched. */
DD_API int dd_dream_run(const dd_model *m, const dd_preproc *pp, const dd_dream_params *p,
                 dd_image *img, dd_dream_progress_fn fn, void *user, dd_err *err);

/* ---- what a job needs -------------------------------------------------------------------
 *
 * A dream holds, besides the network's plan (bounded by p->max_memory): the image, the
 * smaller octaves, the current result and the gradient (12 bytes a pixel each), the
 * Laplacian's scratch, a checkpoint picture, the guide's features.  The functions below add
 * them up so that a caller with one memory budget for the whole job can give the plan what
 * is left, and refuse only an image that cannot be dreamed even in the smallest tiles. */

/* The octave sizes dd_dream_run uses for a w x h image, largest first (ow[0] = w): each the
 * previous one divided by p->octave_scale, down to DD_DREAM_MIN_SIDE.  ow and oh hold 64
 * entries.  Returns their number. */
DD_API int dd_dream_octaves(int w, int h, const dd_dream_params *p, int *ow, int *oh);
/* Bytes dd_dream_run holds for a w x h image besides its plans and the guide: the image
 * itself (the caller's), the smaller octaves, the current result, the gradient, the
 * Laplacian normalization's scratch, the checkpoint picture, the tiles' maps. */
DD_API size_t dd_dream_image_bytes(int w, int h, const dd_dream_params *p);
/* Peak bytes of decoding a w x h file with dd_image_load: stb's 8-bit pixels (up to 4
 * channels) and the float image made from them, 16 bytes a pixel.  A caller may cap the
 * pixels it decodes at budget / dd_dream_decode_bytes(1, 1). */
DD_API size_t dd_dream_decode_bytes(int w, int h);

/* A dream job's memory, in bytes (dd_dream_check_budget). */
typedef struct dd_dream_budget {
  size_t weights;     /* the model's parameters */
  size_t image;       /* dd_dream_image_bytes */
  size_t guide;       /* the guide image, its features and their dot products (0: none) */
  size_t min_plan;    /* the gradient plan of the smallest tile the dream can use */
  int tile;           /* that tile's side (clamped to the image when larger) */
  size_t need;        /* the least the job needs: weights + image + guide + the larger of
                         min_plan and the guide's own plan */
  size_t plan_budget; /* what max_memory leaves the plans: give it as p->max_memory, and the
                         job stays within max_memory (0 when max_memory is 0: no limit) */
  int fit_w, fit_h;   /* the largest size of the image's aspect that fits (w x h when it
                         does; 0 x 0 when none does) */
} dd_dream_budget;

/* Whether dreaming a w x h image with `m` and `p` fits in max_memory bytes (0: no limit),
 * counting every buffer of the job (see above) and the smallest tiles' plan, found by shape
 * inference without allocating.  Fills *out in every case but a parameter error, and returns:
 *  - DD_OK when it fits: dream with p->max_memory = out->plan_budget;
 *  - DD_ELIMIT when it does not: "4096x3072 image: the dream needs 595 MiB (562 MiB for the
 *    image, its octaves and gradient, 27 MiB for the model's weights, 7 MiB for the network
 *    on the smallest tiles of 32x32), more than the 512 MiB limit; an image of at most
 *    3780x2835 would fit" (out->fit_w x fit_h);
 *  - DD_ESHAPE when the image, or its smallest octave, is smaller than the layers' smallest
 *    input (dd_plan_min_input), saying so in pixels ("...: use at most 2 octaves");
 *  - DD_EARG for bad parameters (as dd_dream_run). */
DD_API int dd_dream_check_budget(const dd_model *m, const dd_dream_params *p, int w, int h,
                          size_t max_memory, dd_dream_budget *out, dd_err *err);

/* The gradient machinery of a dream: plans, the guide's features, tile buffers.  A dreamer
 * keeps the plans of the sizes it has dreamed (up to 8 octaves' worth, in the memory of the
 * largest), so a sequence of images of one size -- a movie's frames -- plans and touches fresh
 * memory only for the first. */
typedef struct dd_dreamer dd_dreamer;

/* Validates `p` and computes the guide's features (p->guide is not kept). */
DD_API int dd_dreamer_new(const dd_model *m, const dd_preproc *pp, const dd_dream_params *p,
                   dd_dreamer **out, dd_err *err);
DD_API void dd_dreamer_free(dd_dreamer *d);

/* dd_dream_run with this dreamer's parameters, but `iters` iterations per octave and `seed`:
 * the same picture, bit for bit, as dd_dream_run gives with those two changed, without
 * planning again for a size seen before. */
DD_API int dd_dreamer_dream(dd_dreamer *d, dd_image *img, int iters, uint64_t seed,
                            dd_dream_progress_fn fn, void *user, dd_err *err);

/* Gradient of the objective with respect to the pixels of `img` rolled by (dx, dy) (the
 * notebook's np.roll: the network sees img[y - dy][x - dx]), un-rolled: grad[i] is the
 * derivative by img->rgb[i] (w*h*3 floats, the layout of img).  Tiles as p->tile says (auto:
 * when the whole image would exceed max_memory); each tile owns the pixels nearest its center.
 * *objective (may be NULL) receives the objective, summed over tiles.  Not normalized. */
DD_API int dd_dreamer_gradient(dd_dreamer *d, const dd_image *img, int dx, int dy, float *grad,
                        double *objective, dd_err *err);
/* Tile side the last gradient used along x and y (the image's size when untiled). */
DD_API void dd_dreamer_tile_size(const dd_dreamer *d, int *tw, int *th);

/* Gradient normalization as the dream does it, in place on w*h*3 floats.  `work` holds
 * dd_dream_norm_work(w, h, levels) floats (only the Laplacian needs it; may be NULL then
 * for the others). */
DD_API void dd_dream_normalize(dd_dream_norm norm, int levels, float *g, int w, int h, float *work);
DD_API size_t dd_dream_norm_work(dd_dream_norm norm, int w, int h, int levels);

/* The gradient of sum over `layers` of weight * 1/2 sum(a^2) with respect to the model input
 * `input` as given (any shape the model accepts), for `dream grad`: a new tensor of input's
 * shape in *grad, the objective in *objective (may be NULL).  max_memory caps the plan (0:
 * none). */
DD_API int dd_input_gradient(const dd_model *m, const dd_tensor *input, const dd_dream_layer *layers,
                      int n_layers, size_t max_memory, dd_tensor **grad, double *objective,
                      dd_err *err);

#ifdef __cplusplus
}
#endif

#endif
