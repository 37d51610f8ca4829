/* dream/train.h - training a classifier: softmax cross-entropy, mini-batches, SGD and Adam
 * with torch.optim's formulas, and the result written as ONNX.
 *
 *   void *onnx; size_t len;
 *   dd_train_arch("cnn", 3, 32, 4, seed, &onnx, &len, &err);   // or the bytes of a file
 *   dd_train_opts o;
 *   dd_train_opts_init(&o);                                    // sgd, lr 0.01
 *   dd_trainer *t;
 *   dd_trainer_new(onnx, len, "cnn", &o, &t, &err);
 *   for (...) dd_trainer_step(t, x, labels, n, &loss, &correct, &err);   // x: n x C x H x W
 *   dd_trainer_save(t, "out.onnx", &meta, &err);
 *
 * The parameters are the model's float32 initializers that the logits depend on (a plan with
 * DD_PLAN_PARAMS, dream/graph.h); the model's first output is taken as the logits, N x K.
 * A batch is cut into chunks of 8 images, which the threads share, each chunk running
 * forward and backward through a plan of its thread (DD_PLAN_SERIAL); the chunks' gradients
 * are then added in chunk order.  Deterministic: the same build, inputs and options give
 * byte-identical weights, on any number of threads.
 */
#ifndef DREAM_TRAIN_H
#define DREAM_TRAIN_H

#include "dream/api.h"

#include <stddef.h>
#include <stdint.h>

#include "dream/error.h"
#include "dream/image.h"
#include "dream/model.h"
#include "dream/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum { DD_OPT_SGD = 0, DD_OPT_ADAM = 1 } dd_optimizer;

typedef struct dd_train_opts {
  dd_optimizer optimizer;
  float lr;           /* learning rate */
  float momentum;     /* SGD: torch.optim.SGD's momentum (dampening 0, not Nesterov) */
  float weight_decay; /* L2 added to the gradient, as torch.optim does (not AdamW) */
  float beta1, beta2, eps; /* Adam */
} dd_train_opts;

/* SGD, lr 0.01, momentum 0, weight decay 0; Adam's betas 0.9, 0.999, eps 1e-8. */
DD_API void dd_train_opts_init(dd_train_opts *o);

/* The ONNX bytes (malloc'ed, *len of them) of a built-in architecture with fresh weights,
 * initialized as torch.nn's layers are (uniform in +-1/sqrt(fan_in)) from `seed`:
 *   "perceptron"  Flatten, Gemm (K outputs)
 *   "mlp"         Flatten, Gemm (64), Relu, Gemm (K)
 *   "cnn"         Conv 3x3 (8), Relu, MaxPool 2, Conv 3x3 (16), Relu, MaxPool 2, Flatten, Gemm
 * for an input of N x channels x size x size (N symbolic) and n_classes outputs (logits).
 * The cnn needs size divisible by 4.  DD_EARG names what is wrong. */
DD_API int dd_train_arch(const char *arch, int channels, int size, int n_classes, uint64_t seed,
                         void **onnx, size_t *len, dd_err *err);

typedef struct dd_trainer dd_trainer;

/* A trainer of the ONNX model in `onnx` (copied; `what` names it in messages).  Fails with
 * DD_EUNSUPPORTED when it has no trainable weights or an op on the way to the logits has no
 * gradient, DD_EARG for options out of range. */
DD_API int dd_trainer_new(const void *onnx, size_t len, const char *what, const dd_train_opts *o,
                          dd_trainer **out, dd_err *err);
DD_API void dd_trainer_free(dd_trainer *t);

/* Changes the learning rate for the next steps (a schedule; torch: param_group["lr"] = lr).
 * DD_EARG unless 0 < lr < 1e6. */
DD_API int dd_trainer_set_lr(dd_trainer *t, float lr, dd_err *err);

/* The model being trained: its weights are the trainer's, current after each step (draw
 * them with dream/visualize.h).  Owned by the trainer. */
DD_API const dd_model *dd_trainer_model(const dd_trainer *t);

/* The model's input (C, H, W) and the number of classes K. */
DD_API void dd_trainer_geometry(const dd_trainer *t, int *c, int *h, int *w, int *k);

/* One step on a batch: x is n x C x H x W, labels n classes in 0..K-1.  The mean softmax
 * cross-entropy over the batch in *loss and the number of correct argmaxes in *correct
 * (either may be NULL), both of the weights before the update; then the update.  A loss
 * that is not finite leaves the weights as they were and returns DD_ELIMIT. */
DD_API int dd_trainer_step(dd_trainer *t, const float *x, const int *labels, int n, double *loss,
                           int *correct, dd_err *err);
/* As dd_trainer_step without the update: loss and correct only.  logits (may be NULL) gets
 * n x K floats. */
DD_API int dd_trainer_eval(dd_trainer *t, const float *x, const int *labels, int n, double *loss,
                           int *correct, float *logits, dd_err *err);

/* The trainable parameters: count, and each one's name and tensor (the model's own, updated
 * in place by each step; may be written between steps). */
DD_API int dd_trainer_num_params(const dd_trainer *t);
DD_API const char *dd_trainer_param_name(const dd_trainer *t, int i);
DD_API dd_tensor *dd_trainer_param(dd_trainer *t, int i);
/* The gradient of the last step's loss w.r.t. parameter i (before the update). */
DD_API const dd_tensor *dd_trainer_param_grad(const dd_trainer *t, int i);

/* What the saved model says about its input and classes (metadata_props "dream.*", which
 * dd_train_read_meta and the loader read back). */
typedef struct dd_train_meta {
  dd_preproc pre;
  int size;                 /* input side, pixels */
  const char *const *labels; /* n_labels class names, in logit order */
  int n_labels;
} dd_train_meta;

/* The model with the current weights and `meta` (may be NULL) as ONNX, written atomically
 * (temporary file and rename: a failure or an interruption leaves any old file whole). */
DD_API int dd_trainer_save(const dd_trainer *t, const char *path, const dd_train_meta *meta,
                           dd_err *err);

/* Reads the "dream.*" metadata of an ONNX file: *found 0 when it has none (then nothing is
 * set).  Labels are returned malloc'ed (dd_labels_free, dream/preset.h) when labels is not
 * NULL. */
DD_API int dd_train_read_meta(const char *path, int *found, dd_preproc *pre, int *size,
                              char ***labels, int *n_labels, dd_err *err);

/* ---- synthetic shapes (`dream shapes`) ---- */

#define DD_SHAPE_CLASSES 6
/* "circle", "square", "triangle", "cross", "ring", "star". */
extern DD_API const char *const dd_shape_names[DD_SHAPE_CLASSES];
/* Draws shape `cls` (an index of dd_shape_names) on `im` (square; the top-left side x side
 * when not): a random position, radius, rotation and colour on a random background (the
 * shape's colour at least 120 levels away), Gaussian noise of `noise` levels, all from
 * `seed`.  by_class: the colour is the fixed one of colour slot (slot + shift) mod n_slots
 * (red, blue, green, yellow, magenta, cyan) on a grey background -- the flawed set. */
DD_API void dd_shape_draw(dd_image *im, int cls, int slot, int n_slots, int by_class, int shift,
                          float noise, uint64_t seed);

/* A dataset of `dream shapes`: the folders and each image of them, the same bytes whoever
 * draws them (the CLI, the Python module). */
typedef struct dd_shapes_opts {
  int classes[DD_SHAPE_CLASSES]; /* indices into dd_shape_names */
  int n_classes;
  int one_vs_rest; /* -1, or the position in classes[] of the class against the rest:
                      then two folders, that class and "other" */
  int by_class, shift; /* the flawed set: see dd_shape_draw */
  float noise;
  uint64_t seed;
} dd_shapes_opts;
DD_API int dd_shapes_folders(const dd_shapes_opts *o);
DD_API const char *dd_shapes_folder_name(const dd_shapes_opts *o, int folder);
/* Image `index` of folder `folder` (seeded from o->seed, the folder and the index alone). */
DD_API void dd_shapes_image(dd_image *im, const dd_shapes_opts *o, int folder, int index);

#ifdef __cplusplus
}
#endif

#endif
