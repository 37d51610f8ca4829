/* Training (dream/train.h): built-in architectures as ONNX, a plan with parameter gradients
 * (DD_PLAN_PARAMS), softmax cross-entropy, torch.optim's SGD and Adam, ONNX export. */
#define _FILE_OFFSET_BITS 64
#define _DEFAULT_SOURCE /* fseeko */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

#include <omp.h>

#include "dream/graph.h"
#include "dream/model.h"
#include "dream/preset.h"
#include "dream/train.h"
#include "model_internal.h"
#include "onnx.pb-c.h"
#include "ops/op.h"
#include "util.h"

enum { T_FLOAT = 1 };

void dd_train_opts_init(dd_train_opts *o) {
  memset(o, 0, sizeof *o);
  o->optimizer = DD_OPT_SGD;
  o->lr = 0.01f;
  o->beta1 = 0.9f;
  o->beta2 = 0.999f;
  o->eps = 1e-8f;
}

/* ---- built-in architectures ----------------------------------------------------------- */

#define AB_MAX 16

/* A small graph under construction: every proto and its arrays live in here. */
typedef struct arch_builder {
  Onnx__NodeProto node[AB_MAX], *pnode[AB_MAX];
  char *node_in[AB_MAX][3], *node_out[AB_MAX][1];
  Onnx__AttributeProto attr[AB_MAX][4], *pattr[AB_MAX][4];
  int64_t attr_ints[AB_MAX][4][4];
  int n_node;
  Onnx__TensorProto init[AB_MAX], *pinit[AB_MAX];
  int64_t init_dims[AB_MAX][4];
  float *init_data[AB_MAX];
  int n_init;
  char names[2 * AB_MAX][32];
  int n_names;
} arch_builder;

static char *ab_name(arch_builder *b, const char *fmt, int i) {
  char *s = b->names[b->n_names++];
  snprintf(s, 32, fmt, i);
  return s;
}

static Onnx__NodeProto *ab_node(arch_builder *b, const char *op, const char *name, const char *in0,
                                const char *in1, const char *in2, const char *out) {
  int i = b->n_node++;
  Onnx__NodeProto *n = &b->node[i];
  onnx__node_proto__init(n);
  b->pnode[i] = n;
  n->op_type = (char *)op;
  n->name = (char *)name;
  b->node_in[i][0] = (char *)in0;
  b->node_in[i][1] = (char *)in1;
  b->node_in[i][2] = (char *)in2;
  n->n_input = in2 ? 3 : in1 ? 2 : 1;
  n->input = b->node_in[i];
  b->node_out[i][0] = (char *)out;
  n->n_output = 1;
  n->output = b->node_out[i];
  n->attribute = b->pattr[i];
  return n;
}

static void ab_attr(arch_builder *b, const char *name, int n, const int64_t *v) {
  int i = b->n_node - 1;
  Onnx__NodeProto *node = &b->node[i];
  int k = (int)node->n_attribute++;
  Onnx__AttributeProto *a = &b->attr[i][k];
  onnx__attribute_proto__init(a);
  b->pattr[i][k] = a;
  a->name = (char *)name;
  a->has_type = 1;
  if (n < 0) {
    a->type = ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INT;
    a->has_i = 1;
    a->i = v[0];
  } else {
    a->type = ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INTS;
    memcpy(b->attr_ints[i][k], v, (size_t)n * sizeof *v);
    a->n_ints = (size_t)n;
    a->ints = b->attr_ints[i][k];
  }
}

/* A float initializer of `ndim` dims, uniform in +-bound (torch.nn's default). */
static int ab_init(arch_builder *b, const char *name, int ndim, const int64_t *dims, float bound,
                   uint64_t *rng) {
  int i = b->n_init++;
  Onnx__TensorProto *t = &b->init[i];
  onnx__tensor_proto__init(t);
  b->pinit[i] = t;
  int64_t n = 1;
  for (int d = 0; d < ndim; d++) n *= dims[d];
  float *data = malloc((size_t)n * sizeof *data);
  if (!data) return -1;
  for (int64_t j = 0; j < n; j++) data[j] = (2.0f * dd_rng_uniform(rng) - 1.0f) * bound;
  b->init_data[i] = data;
  memcpy(b->init_dims[i], dims, (size_t)ndim * sizeof *dims);
  t->name = (char *)name;
  t->n_dims = (size_t)ndim;
  t->dims = b->init_dims[i];
  t->has_data_type = 1;
  t->data_type = T_FLOAT;
  t->has_raw_data = 1;
  t->raw_data.len = (size_t)n * sizeof(float);
  t->raw_data.data = (uint8_t *)data;
  return 0;
}

/* A Gemm layer `in` -> `out` (fan_in x fan_out, torch's Linear: weight out x in, transB). */
static int ab_linear(arch_builder *b, int li, const char *in, const char *out, int64_t fan_in,
                     int64_t fan_out, uint64_t *rng) {
  char *w = ab_name(b, "fc%d.weight", li), *bias = ab_name(b, "fc%d.bias", li);
  int64_t wd[2] = {fan_out, fan_in}, one = 1;
  float bound = 1.0f / sqrtf((float)fan_in);
  if (ab_init(b, w, 2, wd, bound, rng) || ab_init(b, bias, 1, &fan_out, bound, rng)) return -1;
  ab_node(b, "Gemm", ab_name(b, "fc%d", li), in, w, bias, out);
  ab_attr(b, "transB", -1, &one);
  return 0;
}

static int ab_conv(arch_builder *b, int li, const char *in, const char *out, int64_t cin,
                   int64_t cout, uint64_t *rng) {
  char *w = ab_name(b, "conv%d.weight", li), *bias = ab_name(b, "conv%d.bias", li);
  int64_t wd[4] = {cout, cin, 3, 3}, k[2] = {3, 3}, pads[4] = {1, 1, 1, 1};
  float bound = 1.0f / sqrtf((float)(cin * 9));
  if (ab_init(b, w, 4, wd, bound, rng) || ab_init(b, bias, 1, &cout, bound, rng)) return -1;
  ab_node(b, "Conv", ab_name(b, "conv%d", li), in, w, bias, out);
  ab_attr(b, "kernel_shape", 2, k);
  ab_attr(b, "pads", 4, pads);
  return 0;
}

static int ab_pack(arch_builder *b, int channels, int size, int n_classes, void **onnx,
                   size_t *len) {
  Onnx__TensorShapeProto__Dimension din[4], dout[2], *pdin[4], *pdout[2];
  for (int i = 0; i < 4; i++) {
    onnx__tensor_shape_proto__dimension__init(&din[i]);
    pdin[i] = &din[i];
    din[i].value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE;
  }
  din[0].value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_PARAM;
  din[0].dim_param = "N";
  din[1].dim_value = channels;
  din[2].dim_value = din[3].dim_value = size;
  for (int i = 0; i < 2; i++) {
    onnx__tensor_shape_proto__dimension__init(&dout[i]);
    pdout[i] = &dout[i];
  }
  dout[0].value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_PARAM;
  dout[0].dim_param = "N";
  dout[1].value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE;
  dout[1].dim_value = n_classes;
  Onnx__TensorShapeProto sin, sout;
  onnx__tensor_shape_proto__init(&sin);
  onnx__tensor_shape_proto__init(&sout);
  sin.n_dim = 4;
  sin.dim = pdin;
  sout.n_dim = 2;
  sout.dim = pdout;
  Onnx__TypeProto__Tensor tin, tout;
  onnx__type_proto__tensor__init(&tin);
  onnx__type_proto__tensor__init(&tout);
  tin.has_elem_type = tout.has_elem_type = 1;
  tin.elem_type = tout.elem_type = T_FLOAT;
  tin.shape = &sin;
  tout.shape = &sout;
  Onnx__TypeProto tyin, tyout;
  onnx__type_proto__init(&tyin);
  onnx__type_proto__init(&tyout);
  tyin.value_case = tyout.value_case = ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE;
  tyin.tensor_type = &tin;
  tyout.tensor_type = &tout;
  Onnx__ValueInfoProto vin, vout, *pvin = &vin, *pvout = &vout;
  onnx__value_info_proto__init(&vin);
  onnx__value_info_proto__init(&vout);
  vin.name = "input";
  vin.type = &tyin;
  vout.name = "logits";
  vout.type = &tyout;
  Onnx__GraphProto g;
  onnx__graph_proto__init(&g);
  g.name = "dream_train";
  g.n_node = (size_t)b->n_node;
  g.node = b->pnode;
  g.n_initializer = (size_t)b->n_init;
  g.initializer = b->pinit;
  g.n_input = 1;
  g.input = &pvin;
  g.n_output = 1;
  g.output = &pvout;
  Onnx__OperatorSetIdProto ops, *pops = &ops;
  onnx__operator_set_id_proto__init(&ops);
  ops.domain = "";
  ops.has_version = 1;
  ops.version = 13;
  Onnx__ModelProto mp;
  onnx__model_proto__init(&mp);
  mp.has_ir_version = 1;
  mp.ir_version = 7;
  mp.n_opset_import = 1;
  mp.opset_import = &pops;
  mp.producer_name = "dream";
  mp.graph = &g;
  *len = onnx__model_proto__get_packed_size(&mp);
  *onnx = malloc(*len ? *len : 1);
  if (!*onnx) return -1;
  onnx__model_proto__pack(&mp, *onnx);
  return 0;
}

int dd_train_arch(const char *arch, int channels, int size, int n_classes, uint64_t seed,
                  void **onnx, size_t *len, dd_err *err) {
  *onnx = NULL;
  *len = 0;
  if (channels < 1 || channels > 4)
    return dd_fail(err, DD_EARG, "%d input channels: 1 to 4 are supported", channels);
  if (size < 1 || size > 4096)
    return dd_fail(err, DD_EARG, "input size %d: 1 to 4096 pixels are supported", size);
  if (n_classes < 2 || n_classes > 100000)
    return dd_fail(err, DD_EARG, "%d classes: a classifier needs 2 to 100000", n_classes);
  arch_builder *b = calloc(1, sizeof *b);
  if (!b) return dd_fail(err, DD_ENOMEM, "out of memory");
  uint64_t rng = seed ^ 0x747261696e2d7631ull; /* "train-v1" */
  int64_t in_feat = (int64_t)channels * size * size, one = 1;
  int rc = 0;
  if (!strcmp(arch, "perceptron")) {
    ab_node(b, "Flatten", "flatten", "input", NULL, NULL, "flat");
    ab_attr(b, "axis", -1, &one);
    rc = ab_linear(b, 1, "flat", "logits", in_feat, n_classes, &rng);
  } else if (!strcmp(arch, "mlp")) {
    ab_node(b, "Flatten", "flatten", "input", NULL, NULL, "flat");
    ab_attr(b, "axis", -1, &one);
    rc = ab_linear(b, 1, "flat", "fc1_out", in_feat, 64, &rng);
    ab_node(b, "Relu", "relu1", "fc1_out", NULL, NULL, "hidden");
    if (!rc) rc = ab_linear(b, 2, "hidden", "logits", 64, n_classes, &rng);
  } else if (!strcmp(arch, "cnn")) {
    if (size % 4 || size < 4) {
      free(b);
      return dd_fail(err, DD_EARG, "the cnn architecture needs a size divisible by 4 (two 2x2 "
                     "poolings), not %d", size);
    }
    int64_t k2[2] = {2, 2};
    rc = ab_conv(b, 1, "input", "conv1_out", channels, 8, &rng);
    ab_node(b, "Relu", "relu1", "conv1_out", NULL, NULL, "relu1_out");
    ab_node(b, "MaxPool", "pool1", "relu1_out", NULL, NULL, "pool1_out");
    ab_attr(b, "kernel_shape", 2, k2);
    ab_attr(b, "strides", 2, k2);
    if (!rc) rc = ab_conv(b, 2, "pool1_out", "conv2_out", 8, 16, &rng);
    ab_node(b, "Relu", "relu2", "conv2_out", NULL, NULL, "relu2_out");
    ab_node(b, "MaxPool", "pool2", "relu2_out", NULL, NULL, "pool2_out");
    ab_attr(b, "kernel_shape", 2, k2);
    ab_attr(b, "strides", 2, k2);
    ab_node(b, "Flatten", "flatten", "pool2_out", NULL, NULL, "flat");
    ab_attr(b, "axis", -1, &one);
    if (!rc) rc = ab_linear(b, 1, "flat", "logits", 16 * (int64_t)(size / 4) * (size / 4),
                            n_classes, &rng);
  } else {
    free(b);
    return dd_fail(err, DD_EARG, "unknown architecture '%s': perceptron, mlp, cnn or a .onnx "
                   "file", arch);
  }
  if (!rc) rc = ab_pack(b, channels, size, n_classes, onnx, len);
  for (int i = 0; i < b->n_init; i++) free(b->init_data[i]);
  free(b);
  if (rc) return dd_fail(err, DD_ENOMEM, "out of memory");
  return DD_OK;
}

/* ---- the trainer ---------------------------------------------------------------------- */

/* A batch is cut into chunks of TRAIN_CHUNK images (1 for a model pinned to one image; the
 * last chunk shorter), a number fixed by the batch size alone, never by the thread count.
 * Each thread runs whole chunks, forward and backward, through plans of its own
 * (DD_PLAN_SERIAL: the ops inside stay on that thread), in one parallel region per step;
 * the chunks' parameter gradients are then added in chunk order (copied out of the plans
 * and summed after the region, or for a large model summed wave by wave straight from the
 * plans: TRAIN_COPY_MAX).  Every sum is thus the same on any number of threads, and a step
 * costs one barrier (or two a wave) instead of one per op. */
#define TRAIN_CHUNK 8
/* The chunks' gradients are copied out of the plans (then summed in one pass after a single
 * barrier) when they take at most this many floats all together (64 MiB); a larger model's
 * are summed wave by wave straight from the plans (two barriers a wave, which cost more when
 * another process holds a core: 4.3-4.8 s against 3.3-3.6 s for the cnn's 4 epochs of 12000
 * images on 2 threads of a loaded machine). */
#define TRAIN_COPY_MAX ((int64_t)1 << 24)
/* Plans kept per thread, by chunk size (the full chunk and the recent remainders). */
#define N_PLANS 3

typedef struct plan_slot {
  dd_plan *plan[N_PLANS]; /* the most recently used first */
  int plan_n[N_PLANS];
} plan_slot;

struct dd_trainer {
  Onnx__ModelProto *mp; /* the file as given: exported with the new weights */
  dd_model *m;
  char *what;
  dd_train_opts o;
  int input, logits;
  int c, h, w, k;
  int chunk;              /* images per chunk: TRAIN_CHUNK, or 1 for a graph pinned to one */
  int np;
  int *pv;                /* (np) value index of each parameter */
  int64_t *poff;          /* (np + 1) offset of each parameter in a gradient vector */
  float **m1, **m2;       /* (np) momentum / Adam's moments, NULL until the first step */
  int64_t steps;
  plan_slot *slot;        /* (n_slot) one per thread */
  int n_slot;
  float *grad;            /* (poff[np]) the last step's summed gradient */
  dd_tensor *gt;          /* (np) views of grad, one per parameter; data NULL before a step */
  dd_plan **wave;         /* (n_slot) the plan each slot ran in the current wave, or NULL */
  float *cgrad;           /* (cgrad_n x poff[np]) each chunk's gradient, when they are small */
  int64_t cgrad_n;
  float *seed;            /* n x K gradient of the loss w.r.t. the logits */
  double *iloss;          /* (n) each image's loss */
  int *igood;             /* (n) each image: 1 when its top class is its label */
  int seed_n;
};

void dd_trainer_free(dd_trainer *t) {
  if (!t) return;
  for (int s = 0; s < t->n_slot; s++)
    for (int i = 0; i < N_PLANS; i++) dd_plan_free(t->slot[s].plan[i]);
  free(t->slot);
  for (int i = 0; i < t->np; i++) {
    if (t->m1) free(t->m1[i]);
    if (t->m2) free(t->m2[i]);
  }
  free(t->m1);
  free(t->m2);
  free(t->pv);
  free(t->poff);
  free(t->grad);
  free(t->gt);
  free(t->wave);
  free(t->cgrad);
  free(t->seed);
  free(t->iloss);
  free(t->igood);
  dd_model_free(t->m);
  if (t->mp) onnx__model_proto__free_unpacked(t->mp, NULL);
  free(t->what);
  free(t);
}

/* Thread slot s's plan for a chunk of n images (made on first use; the least recently used
 * of N_PLANS is dropped).  Not thread-safe: called before the parallel region. */
static int get_plan(dd_trainer *t, int s, int n, dd_plan **out, dd_err *err) {
  if (s >= t->n_slot) {
    plan_slot *ns = realloc(t->slot, sizeof *ns * (size_t)(s + 1));
    if (ns) t->slot = ns;
    dd_plan **w = realloc(t->wave, sizeof *w * (size_t)(s + 1));
    if (w) t->wave = w;
    if (!ns || !w) return dd_fail(err, DD_ENOMEM, "out of memory");
    memset(ns + t->n_slot, 0, sizeof *ns * (size_t)(s + 1 - t->n_slot));
    t->n_slot = s + 1;
  }
  plan_slot *ps = &t->slot[s];
  int hit = -1;
  for (int i = 0; i < N_PLANS && hit < 0; i++)
    if (ps->plan[i] && ps->plan_n[i] == n) hit = i;
  dd_plan *p;
  if (hit >= 0) {
    p = ps->plan[hit];
  } else {
    int64_t dims[4] = {n, t->c, t->h, t->w};
    dd_binding bind = {t->input, dd_shape_make(4, dims), NULL};
    int rc = dd_plan_new(t->m, &bind, 1, &t->logits, 1, DD_PLAN_PARAMS | DD_PLAN_SERIAL, 0, &p,
                         err);
    if (rc) return rc;
    hit = N_PLANS - 1;
    dd_plan_free(ps->plan[hit]);
  }
  for (int i = hit; i > 0; i--) { /* to the front */
    ps->plan[i] = ps->plan[i - 1];
    ps->plan_n[i] = ps->plan_n[i - 1];
  }
  ps->plan[0] = p;
  ps->plan_n[0] = n;
  *out = p;
  return DD_OK;
}

/* Initializers that are data, not parameters, though float: a BatchNormalization's running
 * statistics, a Resize's roi and scales. */
static int not_a_parameter(const dd_model *m, int v) {
  for (int i = 0; i < m->n_nodes; i++) {
    const dd_node *n = &m->nodes[i];
    for (int j = 0; j < n->n_in; j++) {
      if (n->in[j] != v) continue;
      if (!strcmp(n->op_type, "BatchNormalization") && j >= 3) return 1;
      if (!strcmp(n->op_type, "Resize") && j >= 1) return 1;
    }
  }
  return 0;
}

int dd_trainer_new(const void *onnx, size_t len, const char *what, const dd_train_opts *o,
                   dd_trainer **out, dd_err *err) {
  *out = NULL;
  if (!(o->lr > 0) || !(o->lr < 1e6f) || !(o->momentum >= 0) || !(o->momentum < 1) ||
      !(o->weight_decay >= 0) || !(o->beta1 >= 0) || !(o->beta1 < 1) || !(o->beta2 >= 0) ||
      !(o->beta2 < 1) || !(o->eps > 0))
    return dd_fail(err, DD_EARG, "training options out of range: the learning rate must be > 0, "
                   "momentum and betas in [0, 1), weight decay >= 0, eps > 0");
  dd_trainer *t = calloc(1, sizeof *t);
  if (!t || !(t->what = dd_strdup(what))) {
    free(t);
    return dd_fail(err, DD_ENOMEM, "out of memory");
  }
  t->o = *o;
  int rc = dd_model_parse(onnx, len, what, &t->m, err);
  if (rc) goto fail;
  t->mp = onnx__model_proto__unpack(NULL, len, onnx);
  if (!t->mp || !t->mp->graph) {
    rc = dd_fail(err, DD_EFORMAT, "%s: not a valid ONNX model", what);
    goto fail;
  }
  t->input = dd_model_input(t->m);
  if (t->input < 0 || t->m->values[t->input].shape.ndim != 4) {
    rc = dd_fail(err, DD_EUNSUPPORTED, "%s: a model trained on images needs one N x C x H x W "
                 "input", what);
    goto fail;
  }
  if (dd_model_num_outputs(t->m) < 1) {
    rc = dd_fail(err, DD_EFORMAT, "%s: the model has no output to train", what);
    goto fail;
  }
  t->logits = dd_model_output(t->m, 0);
  dd_shape is = t->m->values[t->input].shape;
  t->c = is.ndim == 4 && is.d[1] > 0 ? (int)is.d[1] : 3;
  t->h = is.ndim == 4 && is.d[2] > 0 ? (int)is.d[2] : 224;
  t->w = is.ndim == 4 && is.d[3] > 0 ? (int)is.d[3] : 224;
  dd_plan *p;
  if ((rc = get_plan(t, 0, 1, &p, err))) goto fail;
  const dd_tensor *lg = dd_plan_tensor(p, t->logits);
  int64_t k = lg ? dd_tensor_numel(lg) : 0;
  if (!lg || lg->dtype != DD_F32 || lg->shape.ndim < 1 || lg->shape.d[0] != 1 || k < 2 ||
      k > 1000000) {
    char sb[128];
    rc = dd_fail(err, DD_EUNSUPPORTED, "%s: output '%s' of shape %s is not the logits of a "
                 "classifier (1 x K floats, K >= 2, for one image)", what,
                 t->m->values[t->logits].name, lg ? dd_shape_str(&lg->shape, sb, sizeof sb) : "?");
    goto fail;
  }
  t->k = (int)k;
  /* A graph exported at batch 1 without a dynamic batch axis often pins it (a Reshape to
   * [1, -1] before the classifier, torch's default export): such a model learns from chunks
   * of one image.  Chunks of TRAIN_CHUNK are kept only when their plan gives TRAIN_CHUNK x K
   * logits; a pinned batch fails to plan (the sizes no longer meet) or gives other logits. */
  t->chunk = TRAIN_CHUNK;
  dd_err probe = {0};
  if (get_plan(t, 0, TRAIN_CHUNK, &p, &probe) != DD_OK) {
    t->chunk = 1;
  } else {
    const dd_tensor *l8 = dd_plan_tensor(p, t->logits);
    if (!l8 || l8->shape.ndim < 1 || l8->shape.d[0] != TRAIN_CHUNK ||
        dd_tensor_numel(l8) != (int64_t)TRAIN_CHUNK * k)
      t->chunk = 1;
  }
  if ((rc = get_plan(t, 0, 1, &p, err))) goto fail; /* kept: found again */
  t->pv = malloc(sizeof(int) * (size_t)(t->m->n_values ? t->m->n_values : 1));
  if (!t->pv) {
    rc = dd_fail(err, DD_ENOMEM, "out of memory");
    goto fail;
  }
  for (int v = 0; v < t->m->n_values; v++)
    if (t->m->values[v].init && dd_plan_grad(p, v) && !not_a_parameter(t->m, v))
      t->pv[t->np++] = v;
  if (!t->np) {
    rc = dd_fail(err, DD_EUNSUPPORTED, "%s: the model has no trainable weights (no float "
                 "initializer reaches output '%s')", what, t->m->values[t->logits].name);
    goto fail;
  }
  t->m1 = calloc((size_t)t->np, sizeof *t->m1);
  t->m2 = calloc((size_t)t->np, sizeof *t->m2);
  t->poff = malloc(sizeof *t->poff * (size_t)(t->np + 1));
  t->gt = calloc((size_t)t->np, sizeof *t->gt);
  if (!t->m1 || !t->m2 || !t->poff || !t->gt) {
    rc = dd_fail(err, DD_ENOMEM, "out of memory");
    goto fail;
  }
  t->poff[0] = 0;
  for (int i = 0; i < t->np; i++)
    t->poff[i + 1] = t->poff[i] + dd_tensor_numel(t->m->values[t->pv[i]].init);
  t->grad = malloc(sizeof(float) * (size_t)(t->poff[t->np] ? t->poff[t->np] : 1));
  if (!t->grad) {
    rc = dd_fail(err, DD_ENOMEM, "out of memory");
    goto fail;
  }
  *out = t;
  return DD_OK;
fail:
  dd_trainer_free(t);
  return rc;
}

int dd_trainer_set_lr(dd_trainer *t, float lr, dd_err *err) {
  if (!(lr > 0) || !(lr < 1e6f))
    return dd_fail(err, DD_EARG, "learning rate %g: expected 0 < lr < 1e6", lr);
  t->o.lr = lr;
  return DD_OK;
}

const dd_model *dd_trainer_model(const dd_trainer *t) { return t->m; }

void dd_trainer_geometry(const dd_trainer *t, int *c, int *h, int *w, int *k) {
  if (c) *c = t->c;
  if (h) *h = t->h;
  if (w) *w = t->w;
  if (k) *k = t->k;
}

int dd_trainer_num_params(const dd_trainer *t) { return t->np; }
const char *dd_trainer_param_name(const dd_trainer *t, int i) {
  return i >= 0 && i < t->np ? t->m->values[t->pv[i]].name : NULL;
}
dd_tensor *dd_trainer_param(dd_trainer *t, int i) {
  return i >= 0 && i < t->np ? t->m->values[t->pv[i]].init : NULL;
}
const dd_tensor *dd_trainer_param_grad(const dd_trainer *t, int i) {
  return i >= 0 && i < t->np && t->gt[i].data ? &t->gt[i] : NULL;
}

/* The plan of a chunk of n images in slot s, made by get_plan before the parallel region. */
static dd_plan *find_plan(const dd_trainer *t, int s, int n) {
  for (int i = 0; i < N_PLANS; i++)
    if (t->slot[s].plan[i] && t->slot[s].plan_n[i] == n) return t->slot[s].plan[i];
  return NULL;
}

/* Room for a batch of n: the seed and per-image results. */
static int reserve(dd_trainer *t, int n, dd_err *err) {
  if (n > t->seed_n) {
    float *s = realloc(t->seed, sizeof(float) * (size_t)n * t->k);
    if (s) t->seed = s;
    double *l = realloc(t->iloss, sizeof(double) * (size_t)n);
    if (l) t->iloss = l;
    int *g = realloc(t->igood, sizeof(int) * (size_t)n);
    if (g) t->igood = g;
    if (!s || !l || !g) return dd_fail(err, DD_ENOMEM, "out of memory");
    t->seed_n = n;
  }
  return DD_OK;
}

/* One chunk (images [i0, i0 + cn) of a batch of n) through plan p: its logits, each image's
 * loss and whether it is right, the seed (the loss's gradient w.r.t. the logits, as
 * nn.CrossEntropyLoss: the mean over the whole batch); with `train`, backward (the
 * parameters' gradients are then in the plan). */
static void run_chunk(dd_trainer *t, dd_plan *p, const float *x, const int *labels, int i0,
                      int cn, int n, int train, float *logits, float *g) {
  size_t per = (size_t)t->c * t->h * t->w;
  memcpy(dd_plan_tensor(p, t->input)->data, x + per * (size_t)i0, sizeof(float) * per * cn);
  dd_plan_forward(p);
  const float *z = dd_f32(dd_plan_tensor(p, t->logits));
  if (logits) memcpy(logits + (size_t)i0 * t->k, z, sizeof(float) * (size_t)cn * t->k);
  for (int i = 0; i < cn; i++) {
    const float *zi = z + (size_t)i * t->k;
    int lab = labels[i0 + i], best = 0;
    for (int j = 1; j < t->k; j++)
      if (zi[j] > zi[best]) best = j;
    t->igood[i0 + i] = best == lab;
    double mx = zi[best], s = 0;
    for (int j = 0; j < t->k; j++) s += exp((double)zi[j] - mx);
    double lse = mx + log(s);
    t->iloss[i0 + i] = lse - zi[lab];
    float *seed = t->seed + (size_t)(i0 + i) * t->k;
    for (int j = 0; train && j < t->k; j++)
      seed[j] = (float)((exp((double)zi[j] - lse) - (j == lab)) / (double)n);
  }
  if (!train) return;
  dd_plan_zero_grad(p);
  memcpy(dd_plan_grad(p, t->logits)->data, t->seed + (size_t)i0 * t->k,
         sizeof(float) * (size_t)cn * t->k);
  dd_plan_backward(p);
  for (int j = 0; g && j < t->np; j++) /* the copy out of the plan */
    memcpy(g + t->poff[j], dd_plan_grad(p, t->pv[j])->data,
           sizeof(float) * (size_t)(t->poff[j + 1] - t->poff[j]));
}

/* Elements [a, b) of the summed gradient (t->grad, parameters end to end): the gradients of
 * the wave's plans (t->wave[0 .. k), chunks `first` .. first + k - 1) added to it in chunk
 * order; the first chunk of the batch starts the sum. */
static void fold_wave(dd_trainer *t, int first, int k, int64_t a, int64_t b) {
  for (int j = 0; j < t->np; j++) {
    int64_t lo = t->poff[j] > a ? t->poff[j] : a, hi = t->poff[j + 1] < b ? t->poff[j + 1] : b;
    if (lo >= hi) continue;
    float *gs = t->grad + lo;
    const int64_t len = hi - lo, off = lo - t->poff[j];
    for (int c = 0; c < k; c++) {
      const float *g = dd_f32(dd_plan_grad(t->wave[c], t->pv[j])) + off;
      if (first == 0 && c == 0) memcpy(gs, g, sizeof(float) * (size_t)len);
      else
        for (int64_t e = 0; e < len; e++) gs[e] += g[e];
    }
  }
}

/* A batch in chunks, the chunks shared among the threads: loss, correct, logits (may be
 * NULL) and, with `train`, the summed gradient in t->grad. */
static int run_batch(dd_trainer *t, const float *x, const int *labels, int n, int train,
                     double *loss, int *correct, float *logits, dd_err *err) {
  if (n < 1) return dd_fail(err, DD_EARG, "%s: an empty batch", t->what);
  for (int i = 0; i < n; i++)
    if (labels[i] < 0 || labels[i] >= t->k)
      return dd_fail(err, DD_EARG, "%s: label %d of sample %d is not a class (0..%d)", t->what,
                     labels[i], i, t->k - 1);
  const int cs = t->chunk;
  int chunks = (n + cs - 1) / cs, last = n - (chunks - 1) * cs;
  int nt = omp_get_max_threads();
  if (nt > chunks) nt = chunks;
  if (nt < 1) nt = 1;
  int rc = reserve(t, n, err);
  for (int s = 0; !rc && s < nt; s++) { /* any slot may run a full chunk and the last */
    dd_plan *p;
    if (chunks > 1) rc = get_plan(t, s, cs, &p, err);
    if (!rc) rc = get_plan(t, s, last, &p, err);
  }
  if (rc) return rc;
  const int64_t np = t->poff[t->np];
  const int copy = train && (int64_t)chunks * np <= TRAIN_COPY_MAX;
  if (copy && chunks > t->cgrad_n) {
    float *c = realloc(t->cgrad, sizeof(float) * (size_t)chunks * (size_t)np);
    if (!c) return dd_fail(err, DD_ENOMEM, "out of memory");
    t->cgrad = c;
    t->cgrad_n = chunks;
  }
  if (!train || copy) {
    /* the threads take chunks s, s + ns, ...; with `copy`, each chunk's gradient into cgrad */
#pragma omp parallel num_threads(nt) if (nt > 1)
    {
      const int s = omp_get_thread_num(), ns = omp_get_num_threads();
      for (int ci = s; ci < chunks; ci += ns) {
        const int cn = ci == chunks - 1 ? last : cs;
        run_chunk(t, find_plan(t, s, cn), x, labels, ci * cs, cn, n, train, logits,
                  copy ? t->cgrad + (size_t)ci * (size_t)np : NULL);
      }
    }
    if (copy) { /* added in chunk order, element by element */
      const float *cg = t->cgrad;
      float *gs = t->grad;
#pragma omp parallel for if (np > DD_PAR_MIN) schedule(static)
      for (int64_t e = 0; e < np; e++) {
        float acc = cg[e];
        for (int ci = 1; ci < chunks; ci++) acc += cg[(size_t)ci * (size_t)np + e];
        gs[e] = acc;
      }
    }
  } else {
    /* In waves of one chunk per thread; after each wave its gradients are added to the sum
     * in chunk order, each thread a share of the elements, before the next wave overwrites
     * them: the same sum ((c0 + c1) + c2) + ... however many threads run. */
#pragma omp parallel num_threads(nt) if (nt > 1)
    {
      const int s = omp_get_thread_num(), ns = omp_get_num_threads();
      for (int first = 0; first < chunks; first += ns) {
        const int ci = first + s, k = chunks - first < ns ? chunks - first : ns;
        if (ci < chunks) {
          const int cn = ci == chunks - 1 ? last : cs;
          t->wave[s] = find_plan(t, s, cn);
          run_chunk(t, t->wave[s], x, labels, ci * cs, cn, n, train, logits, NULL);
        }
#pragma omp barrier
        fold_wave(t, first, k, np * s / ns, np * (s + 1) / ns);
#pragma omp barrier
      }
    }
  }
  double total = 0;
  int good = 0;
  for (int i = 0; i < n; i++) {
    total += t->iloss[i];
    good += t->igood[i];
  }
  if (loss) *loss = total / n;
  if (correct) *correct = good;
  if (!isfinite(total))
    return dd_fail(err, DD_ELIMIT, "%s: the loss is not finite (%g): the weights diverged; try "
                   "a smaller learning rate", t->what, total / n);
  if (!train) return DD_OK;
  for (int j = 0; j < t->np; j++) {
    const dd_tensor *w = t->m->values[t->pv[j]].init;
    t->gt[j] = (dd_tensor){DD_F32, w->shape, t->grad + t->poff[j], 0};
  }
  return DD_OK;
}

int dd_trainer_eval(dd_trainer *t, const float *x, const int *labels, int n, double *loss,
                    int *correct, float *logits, dd_err *err) {
  return run_batch(t, x, labels, n, 0, loss, correct, logits, err);
}

/* torch.optim.SGD (dampening 0, not Nesterov) and torch.optim.Adam (not amsgrad), single
 * tensor, in float32 as torch computes them. */
static void update(dd_trainer *t, int i, float *w, const float *g, int64_t n) {
  const dd_train_opts *o = &t->o;
  float wd = o->weight_decay, lr = o->lr;
  if (o->optimizer == DD_OPT_SGD) {
    float *buf = t->m1[i], mu = o->momentum;
    int first = t->steps == 1;
    for (int64_t j = 0; j < n; j++) {
      float d = wd != 0 ? g[j] + wd * w[j] : g[j];
      if (mu != 0) {
        buf[j] = first ? d : mu * buf[j] + d;
        d = buf[j];
      }
      w[j] = w[j] + -lr * d;
    }
    return;
  }
  float *m = t->m1[i], *v = t->m2[i], b1 = o->beta1, b2 = o->beta2, eps = o->eps;
  double bc1 = 1.0 - pow((double)b1, (double)t->steps);
  double bc2 = 1.0 - pow((double)b2, (double)t->steps);
  float step_size = (float)((double)lr / bc1), bc2_sqrt = (float)sqrt(bc2);
  float one_b1 = 1.0f - b1, one_b2 = 1.0f - b2;
  for (int64_t j = 0; j < n; j++) {
    float d = wd != 0 ? g[j] + wd * w[j] : g[j];
    m[j] = m[j] + one_b1 * (d - m[j]);
    v[j] = v[j] * b2 + one_b2 * d * d;
    float denom = sqrtf(v[j]) / bc2_sqrt + eps;
    w[j] = w[j] + -step_size * (m[j] / denom);
  }
}

int dd_trainer_step(dd_trainer *t, const float *x, const int *labels, int n, double *loss,
                    int *correct, dd_err *err) {
  if (n < 1) return dd_fail(err, DD_EARG, "%s: an empty batch", t->what);
  for (int i = 0; i < t->np; i++) {
    int64_t ne = dd_tensor_numel(t->m->values[t->pv[i]].init);
    int need2 = t->o.optimizer == DD_OPT_ADAM;
    int need1 = need2 || t->o.momentum != 0;
    if (need1 && !t->m1[i] && !(t->m1[i] = calloc((size_t)ne, sizeof(float))))
      return dd_fail(err, DD_ENOMEM, "out of memory");
    if (need2 && !t->m2[i] && !(t->m2[i] = calloc((size_t)ne, sizeof(float))))
      return dd_fail(err, DD_ENOMEM, "out of memory");
  }
  int rc = run_batch(t, x, labels, n, 1, loss, correct, NULL, err);
  if (rc) return rc;
  t->steps++;
  for (int i = 0; i < t->np; i++) {
    dd_tensor *w = t->m->values[t->pv[i]].init;
    update(t, i, dd_f32(w), t->grad + t->poff[i], dd_tensor_numel(w));
  }
  return DD_OK;
}

/* ---- export ------------------------------------------------------------------------- */

static void fmt3(char *buf, size_t size, const float *v) {
  snprintf(buf, size, "%.9g,%.9g,%.9g", v[0], v[1], v[2]);
}

int dd_trainer_save(const dd_trainer *t, const char *path, const dd_train_meta *meta,
                    dd_err *err) {
  Onnx__GraphProto g = *t->mp->graph;
  Onnx__ModelProto mp = *t->mp;
  mp.graph = &g;
  size_t ni = g.n_initializer, nm = t->mp->n_metadata_props;
  Onnx__TensorProto *tp = calloc(ni ? ni : 1, sizeof *tp);
  Onnx__TensorProto **ptp = calloc(ni ? ni : 1, sizeof *ptp);
  Onnx__StringStringEntryProto *kv = calloc(nm + 8, sizeof *kv);
  Onnx__StringStringEntryProto **pkv = calloc(nm + 8, sizeof *pkv);
  char *labels = NULL, mean[64], std[64], size[32], scale[32];
  uint8_t *buf = NULL;
  int rc = DD_OK;
  if (!tp || !ptp || !kv || !pkv) {
    rc = dd_fail(err, DD_ENOMEM, "out of memory");
    goto done;
  }
  for (size_t i = 0; i < ni; i++) {
    ptp[i] = g.initializer[i];
    int v = dd_model_find(t->m, g.initializer[i]->name ? g.initializer[i]->name : "");
    int is_param = 0;
    for (int j = 0; v >= 0 && j < t->np; j++) is_param |= t->pv[j] == v;
    if (!is_param) continue;
    const dd_tensor *w = t->m->values[v].init;
    tp[i] = *g.initializer[i];
    tp[i].n_float_data = 0;
    tp[i].float_data = NULL;
    tp[i].has_raw_data = 1;
    tp[i].raw_data.len = (size_t)dd_tensor_numel(w) * sizeof(float);
    tp[i].raw_data.data = w->data;
    ptp[i] = &tp[i];
  }
  g.initializer = ptp;
  /* metadata: the file's own but dream's, then ours */
  size_t n = 0;
  for (size_t i = 0; i < nm; i++)
    if (strncmp(t->mp->metadata_props[i]->key ? t->mp->metadata_props[i]->key : "", "dream.", 6))
      pkv[n++] = t->mp->metadata_props[i];
  if (meta) {
    size_t total = 1;
    for (int i = 0; i < meta->n_labels; i++) total += strlen(meta->labels[i]) + 1;
    if (!(labels = malloc(total))) {
      rc = dd_fail(err, DD_ENOMEM, "out of memory");
      goto done;
    }
    labels[0] = 0;
    for (int i = 0, off = 0; i < meta->n_labels; i++)
      off += sprintf(labels + off, "%s%s", i ? "\n" : "", meta->labels[i]);
    fmt3(mean, sizeof mean, meta->pre.mean);
    fmt3(std, sizeof std, meta->pre.std);
    snprintf(size, sizeof size, "%d", meta->size);
    snprintf(scale, sizeof scale, "%.9g", meta->pre.scale);
    const char *keys[6] = {"dream.size", "dream.mean", "dream.std", "dream.scale",
                           "dream.channel_order", "dream.labels"};
    const char *vals[6] = {size, mean, std, scale, meta->pre.bgr ? "BGR" : "RGB", labels};
    for (int i = 0; i < 6; i++) {
      onnx__string_string_entry_proto__init(&kv[i]);
      kv[i].key = (char *)keys[i];
      kv[i].value = (char *)vals[i];
      pkv[n++] = &kv[i];
    }
  }
  mp.n_metadata_props = n;
  mp.metadata_props = pkv;
  size_t len = onnx__model_proto__get_packed_size(&mp);
  if (!(buf = malloc(len ? len : 1))) {
    rc = dd_fail(err, DD_ENOMEM, "out of memory");
    goto done;
  }
  onnx__model_proto__pack(&mp, buf);
  rc = dd_write_file_atomic(path, buf, len, err);
done:
  free(buf);
  free(labels);
  free(tp);
  free(ptp);
  free(kv);
  free(pkv);
  return rc;
}

/* The largest input side a model's dream.size may declare. */
#define DD_TRAIN_MAX_META_SIZE 8192

static int parse_floats(const char *s, float *v, int n) {
  for (int i = 0; i < n; i++) {
    char *end;
    v[i] = strtof(s, &end);
    if (end == s) return -1;
    s = end;
    if (i < n - 1) {
      if (*s != ',') return -1;
      s++;
    }
  }
  return 0;
}

static int read_varint(FILE *f, uint64_t *v) {
  *v = 0;
  for (int shift = 0; shift < 64; shift += 7) {
    int c = getc(f);
    if (c == EOF) return -1;
    *v |= (uint64_t)(c & 0x7f) << shift;
    if (!(c & 0x80)) return 0;
  }
  return -1;
}

/* The metadata_props (field 14) of the ModelProto in `path`, read by walking its top-level
 * fields and seeking past the others (the graph and its weights are not read): at most
 * `max` entries unpacked into kv (each freed with
 * onnx__string_string_entry_proto__free_unpacked). */
static int scan_metadata(const char *path, Onnx__StringStringEntryProto **kv, int max, int *n,
                         dd_err *err) {
  *n = 0;
  FILE *f = fopen(path, "rb");
  if (!f) return dd_fail(err, DD_EIO, "%s: cannot open: %s", path, strerror(errno));
  int rc = DD_OK;
  uint64_t tag, len;
  while (!rc && read_varint(f, &tag) == 0) {
    int wire = (int)(tag & 7);
    uint64_t field = tag >> 3;
    if (wire == 0) {
      if (read_varint(f, &len)) rc = -1;
    } else if (wire == 1 || wire == 5) {
      if (fseek(f, wire == 1 ? 8 : 4, SEEK_CUR)) rc = -1;
    } else if (wire == 2) {
      if (read_varint(f, &len) || len > ((uint64_t)1 << 40)) {
        rc = -1;
      } else if (field == 14 && *n < max && len < ((uint64_t)1 << 26)) {
        uint8_t *b = malloc(len ? len : 1);
        if (!b) {
          fclose(f);
          return dd_fail(err, DD_ENOMEM, "out of memory");
        }
        if (fread(b, 1, len, f) != len) rc = -1;
        else if ((kv[*n] = onnx__string_string_entry_proto__unpack(NULL, len, b))) (*n)++;
        free(b);
      } else if (fseeko(f, (off_t)len, SEEK_CUR)) {
        rc = -1;
      }
    } else {
      rc = -1;
    }
  }
  fclose(f);
  if (rc) { /* not protobuf as far as the scan went: no metadata; the loader will say why */
    for (int i = 0; i < *n; i++) onnx__string_string_entry_proto__free_unpacked(kv[i], NULL);
    *n = 0;
  }
  return DD_OK;
}

int dd_train_read_meta(const char *path, int *found, dd_preproc *pre, int *size, char ***labels,
                       int *n_labels, dd_err *err) {
  *found = 0;
  Onnx__StringStringEntryProto *kv[64];
  int nkv;
  int rc = scan_metadata(path, kv, 64, &nkv, err);
  if (rc) return rc;
  dd_preproc pp = {0, 1.0f, {0, 0, 0}, {1, 1, 1}};
  int sz = 0, any = 0;
  const char *lab = NULL;
  for (int i = 0; i < nkv && !rc; i++) {
    const char *k = kv[i]->key, *v = kv[i]->value;
    if (!k || !v || strncmp(k, "dream.", 6)) continue;
    any = 1;
    if (!strcmp(k, "dream.size")) {
      char *end;
      long s = strtol(v, &end, 10);
      if (end == v || *end || s < 1 || s > DD_TRAIN_MAX_META_SIZE)
        rc = dd_fail(err, DD_EFORMAT, "%s: metadata dream.size = '%s' is not a size from 1 to %d",
                     path, v, DD_TRAIN_MAX_META_SIZE);
      sz = (int)s;
    } else if (!strcmp(k, "dream.scale")) {
      char *end;
      pp.scale = strtof(v, &end);
      if (end == v || !isfinite(pp.scale) || !(pp.scale > 0))
        rc = dd_fail(err, DD_EFORMAT, "%s: metadata dream.scale = '%s' is not a positive number",
                     path, v);
    }
    else if (!strcmp(k, "dream.channel_order")) pp.bgr = !strcmp(v, "BGR");
    else if (!strcmp(k, "dream.labels")) lab = v;
    else if ((!strcmp(k, "dream.mean") && parse_floats(v, pp.mean, 3)) ||
             (!strcmp(k, "dream.std") && parse_floats(v, pp.std, 3)))
      rc = dd_fail(err, DD_EFORMAT, "%s: metadata %s = '%s' is not three numbers", path, k, v);
  }
  for (int c = 0; !rc && c < 3; c++)
    if (!isfinite(pp.mean[c]) || !isfinite(pp.std[c]) || !(fabsf(pp.std[c]) > 0))
      rc = dd_fail(err, DD_EFORMAT, "%s: metadata dream.mean/dream.std: channel %d has mean %g and "
                   "std %g (finite numbers, std not 0)", path, c, pp.mean[c], pp.std[c]);
  if (!rc && any) {
    *found = 1;
    if (pre) *pre = pp;
    if (size) *size = sz;
    if (labels && n_labels) {
      *labels = NULL;
      *n_labels = 0;
      int n = lab && *lab ? 1 : 0;
      for (const char *c = lab; n && *c; c++) n += *c == '\n';
      char **l = calloc((size_t)(n ? n : 1), sizeof *l);
      if (!l) rc = dd_fail(err, DD_ENOMEM, "out of memory");
      for (int i = 0; !rc && i < n; i++) {
        const char *e = strchr(lab, '\n');
        size_t ln = e ? (size_t)(e - lab) : strlen(lab);
        if (!(l[i] = malloc(ln + 1))) {
          dd_labels_free(l, i);
          l = NULL;
          rc = dd_fail(err, DD_ENOMEM, "out of memory");
          break;
        }
        memcpy(l[i], lab, ln);
        l[i][ln] = 0;
        lab = e ? e + 1 : lab + ln;
      }
      if (!rc) {
        *labels = l;
        *n_labels = n;
      }
    }
  }
  for (int i = 0; i < nkv; i++) onnx__string_string_entry_proto__free_unpacked(kv[i], NULL);
  return rc;
}
