/* Test harness for one operator: build a node with attributes, run it forward and backward
 * on tensors, and check its input gradients by central finite differences. */
#ifndef DREAM_TEST_HELPER_OPS_H
#define DREAM_TEST_HELPER_OPS_H

#include <stdint.h>

#include "dream/image.h"
#include "dream/tensor.h"
#include "model_internal.h"
#include "ops/op.h"
#include "util.h" /* dd_rng_next, the generator the tests share with the library */

#define TH_MAX_IO 16
#define TH_MAX_ATTR 16

typedef struct th_node {
  dd_node node;
  dd_attr attrs[TH_MAX_ATTR];
  int in_ids[TH_MAX_IO], out_ids[TH_MAX_IO];
  char name[64], op_type[64];
  char attr_names[TH_MAX_ATTR][64];
  int64_t ints[TH_MAX_ATTR][16];
  float floats[TH_MAX_ATTR][16];
  char strs[TH_MAX_ATTR][64];
} th_node;

/* Node of `op_type` with n_in inputs and n_out outputs, no attributes yet. */
void th_init(th_node *t, const char *op_type, int n_in, int n_out);
void th_attr_int(th_node *t, const char *name, int64_t v);
void th_attr_float(th_node *t, const char *name, float v);
void th_attr_ints(th_node *t, const char *name, int n, const int64_t *v);
void th_attr_floats(th_node *t, const char *name, int n, const float *v);
void th_attr_string(th_node *t, const char *name, const char *s);
/* Calls op->init; returns its status (message in err). */
int th_setup(th_node *t, dd_err *err);
/* Runs infer and forward; allocates outputs (free with dd_tensor_free).  in[i] may be NULL
 * for an omitted optional input. */
int th_forward(th_node *t, dd_tensor *const *in, dd_tensor **out, dd_err *err);
/* Max relative error between the analytic gradient of L = sum(w * out[0]) (w random, fixed
 * by `seed`) w.r.t. in[which] and central differences with step `eps`.  Coordinates where a
 * kink (ReLU at 0, a max tie, a clip bound) lies within the step are detected -- the
 * difference quotients at eps and eps/2 disagree -- and skipped; *skipped (may be NULL)
 * receives how many.  Returns a negative number on error. */
double th_gradcheck(th_node *t, dd_tensor *const *in, int which, float eps, uint64_t seed,
                    int *skipped);
/* Calls op->init (th_setup), then infer on `in` (NULL entries for omitted inputs): the first
 * failing status (message in err), or 0.  Frees the node's params: th_init it again before
 * another call. */
int th_infer_status(th_node *t, dd_tensor *const *in, dd_err *err);

/* Tensors for tests. */
dd_tensor *th_tensor(int ndim, const int64_t *dims);           /* zeros, float32 */
dd_tensor *th_tensor_i64(int ndim, const int64_t *dims, const int64_t *vals);
dd_tensor *th_random(int ndim, const int64_t *dims, uint64_t seed, float lo, float hi);
/* Max |a-b| over elements; +inf when shapes differ. */
double th_max_abs_diff(const dd_tensor *a, const dd_tensor *b);
double th_max_abs(const dd_tensor *a);
float th_rand_uniform(uint64_t *state, float lo, float hi);
/* ||a - b|| / ||b|| over all elements (float32 tensors of one size). */
double th_rel_l2(const dd_tensor *a, const dd_tensor *b);
/* Path under ../shared (or $DREAM_SHARED): returns a static-per-call buffer from `buf`. */
const char *th_shared(char *buf, size_t size, const char *rel);
/* The model at `rel` under ../shared, loaded; the test fails when it cannot be. */
dd_model *th_shared_model(const char *rel);
/* ../shared/images/<name>, resized to `w` pixels wide (the height in proportion). */
dd_image *th_shared_photo(const char *name, int w);
/* The value of m named `name` (or an alias such as conv3); the test fails when there is none. */
int th_value(const dd_model *m, const char *name);
struct dd_plan;
/* One dream step of a gradient plan: `input` into the plan's input value `in`, forward, then
 * backward from the gradient of 1/2 sum a^2 at `target` (its values as its gradient). */
void th_plan_half_sq(struct dd_plan *p, int in, int target, const dd_tensor *input);

#endif
