/* The input size each command gives the network: the model's own when it takes one size only
 * (a ViT's position embeddings, a Swin's windows), else the preset's or the user's. */
#include <stdio.h>

#include "cli/cli.h"
#include "dream/graph.h"
#include "dream/layout.h"

static int size_works(const dd_model *m, const int *targets, int n_targets, int w, int h,
                      dd_err *err) {
  int64_t dims[4] = {1, 3, h, w};
  dd_binding b = {dd_model_input(m), dd_shape_make(4, dims), NULL};
  size_t bytes;
  int outs[64], n = 0;
  if (!targets || n_targets < 1) {
    for (int i = 0; i < dd_model_num_outputs(m) && n < 64; i++) outs[n++] = dd_model_output(m, i);
    targets = outs;
    n_targets = n;
  }
  return dd_plan_measure(m, &b, 1, targets, n_targets, 0, &bytes, NULL, err);
}

int cli_network_size(const cli_model *cm, const int *targets, int n_targets, int dflt, int *w,
                     int *h, int *fixed) {
  const dd_model *m = cm->model;
  dd_input_sizes sz;
  dd_err err;
  int known = !dd_model_input_sizes(m, targets, n_targets, &sz, &err);
  if (fixed) *fixed = known && sz.fixed;
  if (*w <= 0 || *h <= 0) {
    if (known && sz.fixed) {
      *w = sz.native_w;
      *h = sz.native_h;
    } else {
      *w = *h = dflt;
    }
    return 0;
  }
  if (known && sz.fixed && (*w != sz.native_w || *h != sz.native_h) &&
      size_works(m, targets, n_targets, *w, *h, &err))
    return cli_errorf("%s takes only %dx%d inputs (a fixed size): --size %dx%d cannot work; "
                      "leave --size out", dd_model_name(m), sz.native_w, sz.native_h, *w, *h);
  return 0;
}
