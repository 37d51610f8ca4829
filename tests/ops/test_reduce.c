#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "helper_ops.h"

/* Naive mean of x (shape s) over the dims flagged in `red`, as a dense tensor over the kept
 * dims (in order); compared element by element with the op's output, whatever keepdims. */
static void naive_mean(const dd_tensor *x, const int *red, double *out, int64_t *nout) {
  const dd_shape *s = &x->shape;
  int64_t n = dd_tensor_numel(x), cnt = 1, no = 1;
  for (int i = 0; i < s->ndim; i++) {
    if (red[i]) cnt *= s->d[i];
    else no *= s->d[i];
  }
  for (int64_t o = 0; o < no; o++) out[o] = 0;
  for (int64_t e = 0; e < n; e++) {
    int64_t rem = e, o = 0, st = 1;
    for (int i = s->ndim - 1; i >= 0; i--) {
      int64_t c = rem % s->d[i];
      rem /= s->d[i];
      if (!red[i]) {
        o += c * st;
        st *= s->d[i];
      }
    }
    out[o] += dd_f32(x)[e];
  }
  for (int64_t o = 0; o < no; o++) out[o] /= (double)cnt;
  *nout = no;
}

/* mask: bit i reduces axis i; form 0 attribute, 1 input (opset 18). */
static void reduce_case(int mask, int keepdims, int negative, int form, uint64_t seed) {
  int64_t dims[] = {3, 4, 5, 6};
  int red[4], n_axes = 0;
  int64_t axes[4];
  for (int i = 0; i < 4; i++) {
    red[i] = (mask >> i) & 1;
    if (red[i]) axes[n_axes++] = negative ? i - 4 : i;
  }
  if (n_axes == 0)
    for (int i = 0; i < 4; i++) red[i] = 1; /* no axes: all of them */
  th_node t;
  th_init(&t, "ReduceMean", form && n_axes ? 2 : 1, 1);
  th_attr_int(&t, "keepdims", keepdims);
  if (!form && n_axes) th_attr_ints(&t, "axes", n_axes, axes);
  dd_err err;
  cr_assert_eq(th_setup(&t, &err), 0, "%s", err.msg);
  int64_t na[] = {n_axes};
  dd_tensor *in[2] = {th_random(4, dims, seed, -1, 1),
                      form && n_axes ? th_tensor_i64(1, na, axes) : NULL};
  dd_tensor *y[1];
  cr_assert_eq(th_forward(&t, in, y, &err), 0, "%s", err.msg);
  int k = 0;
  for (int i = 0; i < 4; i++) {
    if (red[i] && !keepdims) continue;
    cr_assert_eq(y[0]->shape.d[k], red[i] ? 1 : dims[i], "mask %d dim %d", mask, i);
    k++;
  }
  cr_assert_eq(y[0]->shape.ndim, k);
  double want[360];
  int64_t no;
  naive_mean(in[0], red, want, &no);
  cr_assert_eq(dd_tensor_numel(y[0]), no);
  for (int64_t o = 0; o < no; o++)
    cr_assert(fabs(dd_f32(y[0])[o] - want[o]) < 1e-6, "mask %d at %lld: %g vs %g", mask,
              (long long)o, dd_f32(y[0])[o], want[o]);
  if (seed % 3 == 0) {
    int skipped = -1;
    double e = th_gradcheck(&t, in, 0, 1e-2f, seed, &skipped);
    cr_assert(e >= 0 && e < 1e-3, "mask %d: relative error %g", mask, e);
    cr_assert_eq(skipped, 0);
  }
  dd_tensor_free(in[0]);
  dd_tensor_free(in[1]);
  dd_tensor_free(y[0]);
  free(t.node.params);
}

Test(reduce_mean, matches_naive_reference_for_every_axis_set) {
  uint64_t seed = 1;
  for (int mask = 0; mask < 16; mask++)
    for (int keep = 0; keep < 2; keep++)
      for (int neg = 0; neg < 2; neg++)
        for (int form = 0; form < 2; form++) reduce_case(mask, keep, neg, form, seed++);
}

Test(reduce_mean, global_average_of_a_large_map) {
  th_node t;
  th_init(&t, "ReduceMean", 1, 1);
  int64_t axes[] = {2, 3};
  th_attr_ints(&t, "axes", 2, axes);
  dd_err err;
  cr_assert_eq(th_setup(&t, &err), 0, "%s", err.msg);
  int64_t dims[] = {2, 64, 33, 31};
  dd_tensor *x = th_random(4, dims, 3, -1, 1), *y[1];
  cr_assert_eq(th_forward(&t, &x, y, &err), 0, "%s", err.msg);
  int red[] = {0, 0, 1, 1};
  double want[128];
  int64_t no;
  naive_mean(x, red, want, &no);
  for (int64_t o = 0; o < no; o++) cr_assert(fabs(dd_f32(y[0])[o] - want[o]) < 1e-6);
  dd_tensor_free(x);
  dd_tensor_free(y[0]);
  free(t.node.params);
}

Test(reduce_mean, noop_with_empty_axes_is_the_identity) {
  th_node t;
  th_init(&t, "ReduceMean", 1, 1);
  th_attr_int(&t, "noop_with_empty_axes", 1);
  dd_err err;
  cr_assert_eq(th_setup(&t, &err), 0, "%s", err.msg);
  int64_t dims[] = {2, 3};
  dd_tensor *x = th_random(2, dims, 3, -1, 1), *y[1];
  cr_assert_eq(th_forward(&t, &x, y, &err), 0, "%s", err.msg);
  cr_assert_eq(th_max_abs_diff(x, y[0]), 0);
  dd_tensor_free(x);
  dd_tensor_free(y[0]);
  free(t.node.params);
}

Test(reduce_mean, refuses_bad_axes) {
  dd_err err;
  int64_t dims[] = {2, 3};
  dd_tensor *x = th_random(2, dims, 3, -1, 1), *y[1];
  const int64_t bad[][2] = {{0, -2}, {2, 0}, {-3, 0}};
  for (int k = 0; k < 3; k++) {
    th_node t;
    th_init(&t, "ReduceMean", 1, 1);
    th_attr_ints(&t, "axes", 2, bad[k]);
    cr_assert_eq(th_setup(&t, &err), 0, "%s", err.msg);
    cr_assert_eq(th_forward(&t, &x, y, &err), DD_EFORMAT, "case %d", k);
    free(t.node.params);
  }
  /* axes computed at run time */
  th_node t;
  th_init(&t, "ReduceMean", 2, 1);
  cr_assert_eq(th_setup(&t, &err), 0, "%s", err.msg);
  dd_tensor axes = {.dtype = DD_I64, .shape = {.ndim = 1, .d = {1}}};
  const dd_tensor *in[2] = {x, &axes};
  dd_tensor ys = {0}, *outs[1] = {&ys};
  size_t scratch;
  cr_assert_eq(t.node.op->infer(&t.node, in, outs, &scratch, &err), DD_EUNSUPPORTED);
  cr_assert(strstr(err.msg, "constant"), "%s", err.msg);
  free(t.node.params);
  dd_tensor_free(x);
}
