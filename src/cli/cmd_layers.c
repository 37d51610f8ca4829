/* dream layers: every value of a model in graph order, with the op that makes it, its shape
 * at one input size, the parameters its node reads and its MFLOPs. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "dream/graph.h"
#include "dream/layout.h"

static const char layers_help[] =
    "usage: dream layers [options]\n\n"
    "Lists every value of the model in graph order: the op that computes it, its shape for\n"
    "an input of the given size, how it is read (its layout: NCHW maps, tokens with or without\n"
    "a class token, sequence-first tokens, NHWC grids, vectors), the parameters its node\n"
    "reads, its MFLOPs (2 x multiply-adds) and its convN alias, which the other subcommands\n"
    "accept as a layer name.  The first line says which input sizes the model accepts.\n\n"
    "options:\n" CLI_MODEL_HELP
    "      --size S|WxH     the network's input size (default: the model's own when it takes\n"
    "                       one size only, else the preset's, 224x224)\n"
    CLI_COMMON_HELP;

static void thousands(char *buf, size_t size, long long v) {
  char digits[32];
  int n = snprintf(digits, sizeof digits, "%lld", v < 0 ? -v : v);
  size_t o = 0;
  if (v < 0 && o + 1 < size) buf[o++] = '-';
  for (int i = 0; i < n && o + 1 < size; i++) {
    if (i && (n - i) % 3 == 0 && o + 2 < size) buf[o++] = ',';
    buf[o++] = digits[i];
  }
  buf[o] = 0;
}

enum { OPT_SIZE = 3001 };

/* How a value is read (dream/layout.h): "NCHW 14x14", "tokens 1+4x4", "NHWC 8x8", ... */
static void layout_str(const dd_model *m, int v, const dd_shape *s, int in_w, int in_h,
                       char *buf, size_t size) {
  dd_layout l;
  dd_layout_kind k = dd_value_layout(m, v, s, in_w, in_h, &l);
  if (k == DD_LAYOUT_TOKENS || k == DD_LAYOUT_SEQ)
    snprintf(buf, size, "%s %s%dx%d", k == DD_LAYOUT_SEQ ? "seq" : "tokens", l.cls ? "1+" : "",
             l.grid_h, l.grid_w);
  else if (k == DD_LAYOUT_NCHW || k == DD_LAYOUT_NHWC)
    snprintf(buf, size, "%s %dx%d", dd_layout_name(k), l.grid_h, l.grid_w);
  else
    snprintf(buf, size, "%s", dd_layout_name(k));
}

static int value_fixed(const dd_model *m, int v, dd_input_sizes *sz) {
  return !dd_model_input_sizes(m, &v, 1, sz, NULL) && sz->fixed;
}

/* ", sizes: any from 8x8", or ", sizes: only 32x32 from 'tokens' on (the values before it
 * take any size from 8x8)": the first value that needs the one size is found by bisection
 * over the graph order (a value after one that needs it needs it too, as a rule). */
static void accepted_sizes(const dd_model *m, const dd_input_sizes *sz, const int *targets,
                           int n, char *buf, size_t size) {
  if (!sz) {
    buf[0] = 0;
    return;
  }
  if (!sz->fixed) {
    snprintf(buf, size, ", sizes: any from %dx%d", sz->min_w, sz->min_h);
    return;
  }
  int lo = 0, hi = n - 1;
  dd_input_sizes t;
  while (lo < hi) {
    int mid = lo + (hi - lo) / 2;
    if (value_fixed(m, targets[mid], &t)) hi = mid;
    else lo = mid + 1;
  }
  if (lo > 0 && value_fixed(m, targets[lo], &t) && !value_fixed(m, targets[lo - 1], &t) &&
      !dd_model_input_sizes(m, &targets[lo - 1], 1, &t, NULL))
    snprintf(buf, size, ", sizes: only %dx%d from '%s' on (the values before it take any size "
             "from %dx%d)", sz->native_w, sz->native_h, dd_model_value_name(m, targets[lo]),
             t.min_w, t.min_h);
  else
    snprintf(buf, size, ", sizes: only %dx%d", sz->native_w, sz->native_h);
}

int cmd_layers(int argc, char **argv) {
  static const struct option longopts[] = {
      CLI_MODEL_LONGOPTS, {"size", required_argument, NULL, OPT_SIZE}, {NULL, 0, NULL, 0}};
  cli_common co;
  cli_common_init(&co);
  int w = 0, h = 0, c;
  dd_err err;
  opterr = 0;
  optind = 0;
  while ((c = getopt_long(argc, argv, ":m:qh", longopts, NULL)) != -1) {
    int r = cli_common_opt(&co, c, optarg, &err);
    if (r < 0) return cli_usage_error("layers", "%s", err.msg);
    if (r) continue;
    switch (c) {
      case OPT_SIZE:
        if (cli_parse_wh("--size", optarg, &w, &h, &err))
          return cli_usage_error("layers", "%s", err.msg);
        break;
      case 'h':
        fputs(layers_help, stdout);
        return 0;
      default:
        return cli_getopt_error("layers", c, argv);
    }
  }
  if (optind < argc) return cli_usage_error("layers", "unexpected argument '%s'", argv[optind]);

  cli_common_warn(&co);
  cli_model cm;
  if (cli_model_open(&co.model, &cm)) return 1;
  const dd_model *m = cm.model;
  dd_input_sizes sz;
  int known = !dd_model_input_sizes(m, NULL, 0, &sz, &err);
  if (!w && known && sz.fixed) {
    w = sz.native_w;
    h = sz.native_h;
  } else if (!w) {
    /* The preset's size, unless the model declares a fixed one. */
    dd_shape decl = dd_model_input_shape(m);
    int fixed = decl.ndim == 4 && decl.d[2] > 0 && decl.d[3] > 0;
    w = h = fixed ? 0 : cm.preset.size;
  } else if (cli_network_size(&cm, NULL, 0, 0, &w, &h, NULL)) {
    cli_model_close(&cm);
    return 1;
  }
  dd_shape in_shape;
  if (cli_any_input_shape(m, w, h, &in_shape)) {
    cli_model_close(&cm);
    return 1;
  }
  int n_nodes = dd_model_num_nodes(m), n_targets = 0;
  int *targets = malloc(((size_t)dd_model_num_values(m) + 1) * sizeof *targets);
  if (!targets) {
    cli_model_close(&cm);
    return cli_errorf("out of memory");
  }
  for (int i = 0; i < n_nodes; i++)
    for (int k = 0; k < dd_model_node_num_outputs(m, i); k++)
      if (dd_model_node_output(m, i, k) >= 0) targets[n_targets++] = dd_model_node_output(m, i, k);
  dd_binding bind = {dd_model_input(m), in_shape, NULL};
  dd_plan *plan;
  if (dd_plan_new(m, &bind, 1, targets, n_targets, 0, cm.max_memory, &plan, &err)) {
    free(targets);
    cli_model_close(&cm);
    return cli_report(&err);
  }

  int name_w = 5, op_w = 5;
  for (int t = 0; t < n_targets; t++) {
    int len = (int)strlen(dd_model_value_name(m, targets[t]));
    if (len > name_w) name_w = len;
  }
  for (int i = 0; i < n_nodes; i++) {
    int len = (int)strlen(dd_model_node_op(m, i)) + (dd_plan_node_runs(plan, i) ? 0 : 9);
    if (len > op_w) op_w = len;
  }
  char sb[128], pb[32];
  char sizes[512];
  accepted_sizes(m, known ? &sz : NULL, targets, n_targets, sizes, sizeof sizes);
  printf("%s: opset %lld, input '%s' %s%s\n", dd_model_name(m), (long long)dd_model_opset(m),
         dd_model_value_name(m, bind.value), dd_shape_str(&in_shape, sb, sizeof sb), sizes);
  int in_w = in_shape.ndim == 4 ? (int)in_shape.d[3] : 0;
  int in_h = in_shape.ndim == 4 ? (int)in_shape.d[2] : 0;
  printf("%-*s  %-*s  %-18s %-16s %11s %10s  %s\n", name_w, "value", op_w, "op", "shape",
         "layout", "params", "MFLOPs", "alias");
  printf("%-*s  %-*s  %s\n", name_w, dd_model_value_name(m, bind.value), op_w, "(input)",
         dd_shape_str(&in_shape, sb, sizeof sb));
  double total_flops = 0;
  for (int i = 0; i < n_nodes; i++) {
    int runs = dd_plan_node_runs(plan, i);
    double mflops = dd_plan_node_flops(plan, i) / 1e6;
    total_flops += mflops;
    char op[96];
    snprintf(op, sizeof op, "%s%s", dd_model_node_op(m, i), runs ? "" : " (folded)");
    for (int k = 0; k < dd_model_node_num_outputs(m, i); k++) {
      int v = dd_model_node_output(m, i, k);
      if (v < 0) continue;
      dd_tensor *t = dd_plan_tensor(plan, v);
      int shadowed = 0;
      const char *alias = dd_model_conv_alias(m, v, &shadowed);
      char alias_buf[64];
      if (alias && shadowed) { /* a value of that name wins: the alias cannot be used */
        snprintf(alias_buf, sizeof alias_buf, "%s (shadowed)", alias);
        alias = alias_buf;
      }
      pb[0] = 0;
      if (k == 0) thousands(pb, sizeof pb, (long long)dd_model_node_params(m, i));
      char lb[64] = "";
      if (t) layout_str(m, v, &t->shape, in_w, in_h, lb, sizeof lb);
      printf("%-*s  %-*s  %-18s %-16s %11s ", name_w, dd_model_value_name(m, v), op_w, op,
             t ? dd_shape_str(&t->shape, sb, sizeof sb) : "?", lb, pb);
      if (k == 0 && runs) printf("%10.2f", mflops);
      else printf("%10s", "");
      printf("%s%s\n", alias ? "  " : "", alias ? alias : "");
    }
  }
  thousands(pb, sizeof pb, (long long)dd_model_num_params(m));
  printf("total: %d nodes, %s parameters, %.2f MFLOPs, %.1f MiB of buffers at this size\n",
         n_nodes, pb, total_flops, dd_plan_bytes(plan) / 1048576.0);
  dd_plan_free(plan);
  free(targets);
  cli_model_close(&cm);
  return 0;
}
