/* libFuzzer target: ONNX model bytes -> dd_model_parse, then, when the model loads, a plan
 * at a small input size under a memory cap, one forward and, when the graph supports it, one
 * backward; first the bytes as a file through dd_train_read_meta, the metadata scan every
 * model path goes through.  Any crash, sanitizer report, leak or hang is a finding. */
#define _GNU_SOURCE
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz/fuzz.h"
#include "dream/graph.h"
#include "dream/model.h"
#include "dream/preset.h"
#include "dream/train.h"
#include "model_internal.h"

/* Large enough for every real input the node tests use, small enough that a forward at the
 * cap is quick. */
#define FUZZ_MAX_BYTES ((size_t)64 << 20)
/* A hostile graph may ask for enormous compute within the memory cap (a Conv whose weight
 * fills the file over a large output); such plans are built but not run.  Under the fuzzer's
 * instrumentation the generic N-d pooling walk is slow: a 46 MFLOP 3-D AveragePool (0.2 s in
 * the release build) and a 20.7 MFLOP 3-D MaxPool each took over 10 s forward and backward in
 * CI and were reported as timeouts (regressions/fuzz_onnx/timeout-*), so plans run only up to
 * 5 MFLOP, and scripts/fuzz.sh allows 60 s per input. */
#define FUZZ_MAX_FLOPS INT64_C(5000000)

/* The shape a binding gets: the declared one, unknown dims filled in with an NCHW-ish
 * 1x3x32x32 when the rank is 4, else 2. */
static dd_shape pick_shape(const dd_value *val) {
  static const int64_t nchw[4] = {1, 3, 32, 32};
  dd_shape s = val->shape;
  if (s.ndim < 0) return dd_shape_make(4, nchw);
  for (int i = 0; i < s.ndim; i++)
    if (s.d[i] < 0) s.d[i] = s.ndim == 4 ? nchw[i] : 2;
  return s;
}

static void fill(dd_tensor *t) {
  int64_t n = dd_tensor_numel(t);
  if (t->dtype == DD_F32)
    for (int64_t i = 0; i < n; i++) dd_f32(t)[i] = sinf((float)i * 0.37f);
  else
    memset(t->data, 0, (size_t)n * dd_dtype_size(t->dtype)); /* int64, bool */
}

static void run_plan(const dd_model *m, const dd_binding *b, int nb, const int *targets,
                     int nt) {
  dd_err err;
  dd_plan *p = NULL;
  unsigned flags = DD_PLAN_GRAD;
  if (dd_plan_new(m, b, nb, targets, nt, flags, FUZZ_MAX_BYTES, &p, &err)) {
    flags = 0;
    if (dd_plan_new(m, b, nb, targets, nt, flags, FUZZ_MAX_BYTES, &p, &err)) return;
  }
  int64_t flops = 0;
  for (int i = 0; i < dd_model_num_nodes(m); i++) {
    int64_t f = dd_plan_node_flops(p, i);
    if (f > 0) flops += f;
    if (f < 0 || flops > FUZZ_MAX_FLOPS) {
      flops = -1;
      break;
    }
  }
  if (flops >= 0) {
    for (int i = 0; i < nb; i++) {
      dd_tensor *t = dd_plan_tensor(p, b[i].value);
      if (t && !b[i].constant) fill(t);
    }
    dd_plan_forward(p);
    if (flags & DD_PLAN_GRAD) {
      dd_plan_zero_grad(p);
      for (int i = 0; i < nt; i++) {
        dd_tensor *g = dd_plan_grad(p, targets[i]);
        if (!g) continue;
        int64_t n = dd_tensor_numel(g);
        for (int64_t k = 0; k < n; k++) dd_f32(g)[k] = 1.f;
      }
      dd_plan_backward(p);
    }
  }
  dd_plan_free(p);
}

/* The metadata scan every model path goes through first (dd_preset_resolve, cli_model_load:
 * a model `dream train` wrote says how it reads its input), on the same bytes as a file. */
static void read_meta(const uint8_t *data, size_t size) {
  const char *path = dd_fuzz_file("fuzz_onnx", data, size);
  int found = 0, side = 0, n = 0;
  char **labels = NULL;
  dd_preproc pp;
  dd_err err;
  if (!dd_train_read_meta(path, &found, &pp, &side, &labels, &n, &err) && found)
    dd_labels_free(labels, n);
}

int dd_fuzz_onnx(const uint8_t *data, size_t size) {
  read_meta(data, size);
  dd_err err;
  dd_model *m = NULL;
  if (dd_model_parse(data, size, "fuzz.onnx", &m, &err)) return 0;

  /* The name lookups the CLI does on a loaded model. */
  int v;
  dd_model_resolve(m, "conv1", &v, &err);
  dd_model_resolve(m, "no_such_layer", &v, &err);

  enum { MAXB = 16 };
  dd_binding b[MAXB];
  int nb = m->n_inputs < MAXB ? m->n_inputs : MAXB;
  for (int i = 0; i < nb; i++) {
    b[i].value = m->inputs[i];
    b[i].shape = pick_shape(&m->values[m->inputs[i]]);
    b[i].constant = NULL;
  }
  int nt = dd_model_num_outputs(m);
  int targets[MAXB];
  if (nt > MAXB) nt = MAXB;
  for (int i = 0; i < nt; i++) targets[i] = dd_model_output(m, i);
  if (nt == 0 && dd_model_num_nodes(m) > 0) {
    /* No declared outputs: aim at the last node's first output, as `dream` would. */
    int last = dd_model_num_nodes(m) - 1;
    if (dd_model_node_num_outputs(m, last) > 0 && dd_model_node_output(m, last, 0) >= 0)
      targets[nt++] = dd_model_node_output(m, last, 0);
  }
  if (nt > 0) run_plan(m, b, nb, targets, nt);
  dd_model_free(m);
  return 0;
}

DD_FUZZ_TARGET(dd_fuzz_onnx)
