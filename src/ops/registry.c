#include <string.h>

#include "ops/op.h"

/* Every op listed in ops.def must be defined in src/ops/: a missing one is a link error. */
#define DD_OP(name) extern const dd_op dd_op_##name;
#include "ops/ops.def"
#undef DD_OP

static const dd_op *const op_table[] = {
#define DD_OP(name) &dd_op_##name,
#include "ops/ops.def"
#undef DD_OP
};

static const char *const op_names[] = {
#define DD_OP(name) #name,
#include "ops/ops.def"
#undef DD_OP
    NULL};

const dd_op *dd_op_find(const char *op_type) {
  for (size_t i = 0; i < sizeof op_table / sizeof op_table[0]; i++)
    if (strcmp(op_names[i], op_type) == 0) return op_table[i];
  return NULL;
}

const char *const *dd_op_names(void) { return op_names; }
