/* The one inference path (dream/infer.h): a plan for one input shape, run on any number of
 * inputs. */
#include "dream/infer.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "dream/graph.h"

struct dd_infer {
  dd_plan *plan;
  int input;     /* the data input's value */
  dd_shape shape;
  int *targets;  /* (n_targets) */
  int n_targets;
};

int dd_infer_new(const dd_model *m, const dd_shape *input, const int *targets, int n_targets,
                 size_t max_memory, dd_infer **out, dd_err *err) {
  int in = dd_model_input(m);
  if (in < 0) return dd_fail(err, DD_EARG, "%s: the model has no data input", dd_model_name(m));
  if (n_targets < 1) return dd_fail(err, DD_EARG, "nothing to compute");
  dd_shape decl = dd_model_input_shape(m);
  int fits = decl.ndim < 0 || decl.ndim == input->ndim;
  for (int i = 0; fits && i < decl.ndim; i++) fits = decl.d[i] < 0 || decl.d[i] == input->d[i];
  if (!fits) {
    char sb[128], db[128];
    return dd_fail(err, DD_EARG, "shape %s does not fit the model's input '%s' (%s; -1 is any "
                   "size)", dd_shape_str(input, sb, sizeof sb), dd_model_value_name(m, in),
                   dd_shape_str(&decl, db, sizeof db));
  }
  dd_infer *s = calloc(1, sizeof *s);
  if (s) s->targets = malloc((size_t)n_targets * sizeof *s->targets);
  if (!s || !s->targets) {
    free(s);
    return dd_fail(err, DD_ENOMEM, "out of memory");
  }
  memcpy(s->targets, targets, (size_t)n_targets * sizeof *targets);
  s->n_targets = n_targets;
  s->input = in;
  s->shape = *input;
  /* Forward only, and only the targets must stay readable: every other value, the input
   * too (each run writes it afresh), shares memory with those whose lifetimes do not meet
   * its own (liveness, in-place ops, Concat joins, ReLU folding: plan/memory.c), so the
   * session holds what is live at its busiest step, not every value of the graph. */
  dd_binding b = {in, *input, NULL};
  int rc = dd_plan_new(m, &b, 1, targets, n_targets, DD_PLAN_REUSE | DD_PLAN_FORGET_INPUTS | DD_PLAN_EXACT,
                       max_memory, &s->plan, err);
  for (int i = 0; !rc && i < n_targets; i++)
    if (!dd_plan_tensor(s->plan, targets[i]))
      rc = dd_fail(err, DD_EARG, "%s: '%s' is not computed by the graph", dd_model_name(m),
                   dd_model_value_name(m, targets[i]));
  if (rc) {
    dd_infer_free(s);
    return rc;
  }
  *out = s;
  return DD_OK;
}

void dd_infer_free(dd_infer *s) {
  if (!s) return;
  dd_plan_free(s->plan);
  free(s->targets);
  free(s);
}

float *dd_infer_input(dd_infer *s) { return dd_f32(dd_plan_tensor(s->plan, s->input)); }

int dd_infer_run(dd_infer *s, const float *input, dd_err *err) {
  (void)err;
  if (input)
    memcpy(dd_infer_input(s), input, (size_t)dd_shape_numel(&s->shape) * sizeof(float));
  dd_plan_forward(s->plan);
  return DD_OK;
}

int dd_infer_image(dd_infer *s, const dd_image *im, const dd_preproc *pp, dd_err *err) {
  const dd_shape *sh = &s->shape;
  if (sh->ndim != 4 || sh->d[0] != 1 || sh->d[1] != 3 || sh->d[2] != im->h || sh->d[3] != im->w)
    return dd_fail(err, DD_EARG, "a %dx%d image does not fit the session's input", im->w,
                   im->h);
  dd_image_to_input(im, pp, dd_f32(dd_plan_tensor(s->plan, s->input)));
  dd_plan_forward(s->plan);
  return DD_OK;
}

size_t dd_infer_bytes(const dd_infer *s) { return dd_plan_bytes(s->plan); }

const dd_tensor *dd_infer_output(const dd_infer *s, int i) {
  return i >= 0 && i < s->n_targets ? dd_plan_tensor(s->plan, s->targets[i]) : NULL;
}

void dd_probabilities(const float *x, int64_t n, double *p) {
  int is_prob = 1;
  double sum = 0;
  for (int64_t i = 0; i < n; i++) {
    if (!(x[i] >= 0.f && x[i] <= 1.f)) is_prob = 0;
    sum += x[i];
  }
  if (is_prob && fabs(sum - 1.0) < 1e-3) {
    for (int64_t i = 0; i < n; i++) p[i] = x[i];
    return;
  }
  double mx = -INFINITY;
  for (int64_t i = 0; i < n; i++)
    if (x[i] > mx) mx = x[i];
  sum = 0;
  for (int64_t i = 0; i < n; i++) sum += p[i] = exp(x[i] - mx);
  for (int64_t i = 0; i < n; i++) p[i] /= sum;
}
