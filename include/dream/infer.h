/* dream/infer.h - the one inference path: a model run forward on one input, for `run`,
 * `classify`, `explain`'s and `class`'s top-5 lists, and bindings.  A session plans once for
 * an input shape and runs any number of inputs of that shape.
 *
 *   dd_infer *s;
 *   if (dd_infer_new(model, &shape, &out_value, 1, max_memory, &s, &err)) ...
 *   dd_infer_image(s, framed, &preset.pre, &err);    // or dd_infer_run(s, floats, &err)
 *   dd_probabilities(dd_f32(dd_infer_output(s, 0)), n, prob);
 *   dd_infer_free(s);
 *
 * Limitations: one data input (the model's first); float32 only.
 */
#ifndef DREAM_INFER_H
#define DREAM_INFER_H

#include "dream/api.h"

#include "dream/error.h"
#include "dream/image.h"
#include "dream/model.h"
#include "dream/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct dd_infer dd_infer;

/* A session computing `targets` (value indices) from the model's data input at `input`'s
 * shape, which must fit the input's declared dims (-1 is any size).  max_memory caps the
 * plan (0: none).  DD_EARG for a shape that does not fit or a target the graph does not
 * compute (a weight, the input itself), the planner's errors otherwise. */
DD_API int dd_infer_new(const dd_model *m, const dd_shape *input, const int *targets,
                        int n_targets, size_t max_memory, dd_infer **out, dd_err *err);
DD_API void dd_infer_free(dd_infer *s);
/* One forward pass on `input` (as many floats as the session's input shape holds), or, when
 * `input` is NULL, on what was written to dd_infer_input(s) since the last run. */
DD_API int dd_infer_run(dd_infer *s, const float *input, dd_err *err);
/* The session's input buffer (as many floats as its input shape holds), to be written
 * before dd_infer_run(s, NULL, ...): a caller holding its input in a buffer it can free
 * then holds it once.  A run overwrites it: write it again before each run. */
DD_API float *dd_infer_input(dd_infer *s);
/* The same from an image of the session's width and height (1x3xHxW input), preprocessed by
 * `pp`.  DD_EARG when its size is not the session's. */
DD_API int dd_infer_image(dd_infer *s, const dd_image *im, const dd_preproc *pp, dd_err *err);
/* Bytes of the session's buffers (dd_plan_bytes of its plan).  The plan is forward only
 * and shares memory between values whose lifetimes do not meet (DD_PLAN_REUSE |
 * DD_PLAN_FORGET_INPUTS): only the targets hold their values after a run. */
DD_API size_t dd_infer_bytes(const dd_infer *s);
/* The i-th target after the last run; valid until the next run or dd_infer_free. */
DD_API const dd_tensor *dd_infer_output(const dd_infer *s, int i);

/* The one rule that turns a classifier's output into probabilities: kept when it already is
 * one (every value in [0, 1], summing to 1 within 1e-3), a softmax of it otherwise. */
DD_API void dd_probabilities(const float *scores, int64_t n, double *prob);

#ifdef __cplusplus
}
#endif

#endif
