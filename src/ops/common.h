/* Shared by the op families: the op interface, attribute helpers, threading thresholds. */
#ifndef DREAM_OPS_COMMON_H
#define DREAM_OPS_COMMON_H

#include "dream/error.h"
#include "dream/tensor.h"
#include "model_internal.h"
#include "ops/op.h"
#include "util.h" /* DD_PAR_MIN, the threading threshold */

#endif
