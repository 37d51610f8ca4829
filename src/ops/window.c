/* Sliding-window geometry shared by Conv and the pooling ops (see window.h). */
#include "ops/window.h"

#include <string.h>

/* Attribute values beyond this are rejected so that products of them cannot overflow. */
#define WIN_ATTR_MAX (1 << 20)

static int read_list(const dd_node *node, const char *name, int64_t min, int max_count,
                     int64_t *out, int *count, dd_err *err) {
  int rc = dd_attr_ints(node, name, max_count, out, count, err);
  if (rc) return rc;
  for (int i = 0; i < *count; i++)
    if (out[i] < min || out[i] > WIN_ATTR_MAX)
      return dd_fail(err, DD_EFORMAT, "attribute '%s' has value %lld, expected %lld..%d", name,
                     (long long)out[i], (long long)min, WIN_ATTR_MAX);
  return DD_OK;
}

int dd_window_parse(const dd_node *node, int with_ceil, dd_window_attrs *a, dd_err *err) {
  memset(a, 0, sizeof *a);
  int rc = read_list(node, "kernel_shape", 1, DD_WIN_MAX, a->kernel, &a->n_kernel, err);
  if (!rc) rc = read_list(node, "strides", 1, DD_WIN_MAX, a->strides, &a->n_strides, err);
  if (!rc) rc = read_list(node, "dilations", 1, DD_WIN_MAX, a->dilations, &a->n_dilations, err);
  if (!rc) rc = read_list(node, "pads", 0, 2 * DD_WIN_MAX, a->pads, &a->n_pads, err);
  if (rc) return rc;
  if (a->n_pads > 0 && a->n_pads % 2)
    return dd_fail(err, DD_EFORMAT, "attribute 'pads' has %d values, expected two per spatial dim",
                   a->n_pads);
  const char *ap;
  rc = dd_attr_string(node, "auto_pad", "NOTSET", &ap, err);
  if (rc) return rc;
  static const char *const modes[] = {"NOTSET", "SAME_UPPER", "SAME_LOWER", "VALID"};
  a->auto_pad = -1;
  for (int i = 0; i < 4; i++)
    if (!strcmp(ap, modes[i])) a->auto_pad = i;
  if (a->auto_pad < 0)
    return dd_fail(err, DD_EFORMAT,
                   "auto_pad '%s' is not one of NOTSET, SAME_UPPER, SAME_LOWER, VALID", ap);
  if (with_ceil) {
    int64_t c;
    rc = dd_attr_int(node, "ceil_mode", 0, &c, err);
    if (rc) return rc;
    if (c != 0 && c != 1)
      return dd_fail(err, DD_EFORMAT, "ceil_mode is %lld, expected 0 or 1", (long long)c);
    a->ceil_mode = (int)c;
  }
  return DD_OK;
}

static int check_count(const char *name, int have, int want, dd_err *err) {
  if (have >= 0 && have != want)
    return dd_fail(err, DD_ESHAPE, "attribute '%s' has %d values, the input has %d spatial dims",
                   name, have, want / (strcmp(name, "pads") ? 1 : 2));
  return DD_OK;
}

int dd_window_resolve(const dd_window_attrs *a, int nsp, const int64_t *in_sp,
                      const int64_t *kernel, dd_window *w, dd_err *err) {
  if (nsp < 1 || nsp > DD_WIN_MAX)
    return dd_fail(err, DD_EUNSUPPORTED, "%d spatial dims are not supported (1 to %d are)", nsp,
                   DD_WIN_MAX);
  int rc = check_count("kernel_shape", a->n_kernel, nsp, err);
  if (!rc) rc = check_count("strides", a->n_strides, nsp, err);
  if (!rc) rc = check_count("dilations", a->n_dilations, nsp, err);
  if (!rc) rc = check_count("pads", a->n_pads, 2 * nsp, err);
  if (rc) return rc;
  dd_window g;
  g.nsp = nsp;
  int off = DD_WIN_MAX - nsp;
  for (int i = 0; i < DD_WIN_MAX; i++) {
    g.in[i] = g.out[i] = g.k[i] = g.s[i] = g.d[i] = 1;
    g.pb[i] = g.pe[i] = 0;
  }
  for (int j = 0; j < nsp; j++) {
    int i = off + j;
    if (kernel[j] < 1 || kernel[j] > WIN_ATTR_MAX)
      return dd_fail(err, DD_EFORMAT, "kernel extent %lld along spatial dim %d is out of range",
                     (long long)kernel[j], j);
    g.in[i] = in_sp[j];
    g.k[i] = kernel[j];
    g.s[i] = a->n_strides > 0 ? a->strides[j] : 1;
    g.d[i] = a->n_dilations > 0 ? a->dilations[j] : 1;
    int64_t keff = (g.k[i] - 1) * g.d[i] + 1;
    if (a->auto_pad == DD_PAD_SAME_UPPER || a->auto_pad == DD_PAD_SAME_LOWER) {
      g.out[i] = (g.in[i] + g.s[i] - 1) / g.s[i];
      int64_t total = (g.out[i] - 1) * g.s[i] + keff - g.in[i];
      if (total < 0) total = 0;
      g.pb[i] = a->auto_pad == DD_PAD_SAME_UPPER ? total / 2 : total - total / 2;
      g.pe[i] = total - g.pb[i];
    } else {
      if (a->auto_pad == DD_PAD_NOTSET && a->n_pads > 0) {
        g.pb[i] = a->pads[j];
        g.pe[i] = a->pads[nsp + j];
      }
      int64_t span = g.in[i] + g.pb[i] + g.pe[i] - keff;
      if (span < 0)
        return dd_fail(err, DD_ESHAPE,
                       "the window (extent %lld with dilation) is larger than the padded input "
                       "(%lld) along spatial dim %d",
                       (long long)keff, (long long)(g.in[i] + g.pb[i] + g.pe[i]), j);
      g.out[i] = (a->ceil_mode ? (span + g.s[i] - 1) / g.s[i] : span / g.s[i]) + 1;
      /* ceil_mode: the last window must start inside the input or the left padding. */
      if (a->ceil_mode && (g.out[i] - 1) * g.s[i] >= g.in[i] + g.pb[i]) g.out[i]--;
    }
    if (g.in[i] < 1 || g.out[i] < 1)
      return dd_fail(err, DD_ESHAPE, "spatial dim %d: input extent %lld gives output extent %lld",
                     j, (long long)g.in[i], (long long)g.out[i]);
  }
  *w = g;
  return DD_OK;
}
