/* dream grad: the input gradient of a layer's 1/2 sum a^2, saved as a TensorProto, so the
 * backward pass can be compared with any other framework's autograd. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "dream/dream.h"

static const char grad_help[] =
    "usage: dream grad [options] --input IN.pb --layer NAME [--layer NAME]... --save OUT.pb\n\n"
    "Writes to OUT.pb the gradient of sum over the layers of W * 1/2 sum(a^2) (a: the layer's\n"
    "activations) with respect to the model's input, for the input tensor in IN.pb as it is\n"
    "(an ONNX TensorProto, already preprocessed).  The result is a float32 TensorProto named\n"
    "after the graph input.  NAME is a value name or a convN alias, optionally with #CHANNEL\n"
    "(one channel only) and :WEIGHT (default 1), e.g. inception_4c/output#97:0.5.\n\n"
    "options:\n" CLI_MODEL_HELP
    "  -i, --input IN.pb    the input tensor\n"
    "  -l, --layer NAME     a layer of the objective (repeatable)\n"
    "  -o, --save OUT.pb    where to write the gradient\n" CLI_COMMON_HELP;

int cmd_grad(int argc, char **argv) {
  static const struct option longopts[] = {CLI_MODEL_LONGOPTS,
                                           {"input", required_argument, NULL, 'i'},
                                           {"layer", required_argument, NULL, 'l'},
                                           {"save", required_argument, NULL, 'o'},
                                           {NULL, 0, NULL, 0}};
  cli_common co;
  cli_common_init(&co);
  const char *input = NULL, *save = NULL;
  const char *specs[DD_DREAM_MAX_LAYERS];
  int n_specs = 0, c;
  dd_err err;
  opterr = 0;
  optind = 0;
  while ((c = getopt_long(argc, argv, ":m:i:l:o:qh", longopts, NULL)) != -1) {
    int r = cli_common_opt(&co, c, optarg, &err);
    if (r < 0) return cli_usage_error("grad", "%s", err.msg);
    if (r) continue;
    switch (c) {
      case 'i': input = optarg; break;
      case 'o': save = optarg; break;
      case 'l': {
        char name[512];
        int ch;
        float w;
        if (n_specs == DD_DREAM_MAX_LAYERS)
          return cli_usage_error("grad", "--layer: at most %d layers", DD_DREAM_MAX_LAYERS);
        if (dd_dream_layer_spec(optarg, name, sizeof name, &ch, &w, &err))
          return cli_usage_error("grad", "--layer: %s", err.msg);
        if (w == 0) cli_warnf("--layer %s: weight 0, this layer does nothing", optarg);
        specs[n_specs++] = optarg;
        break;
      }
      case 'h': fputs(grad_help, stdout); return 0;
      default: return cli_getopt_error("grad", c, argv);
    }
  }
  if (optind < argc) return cli_usage_error("grad", "unexpected argument '%s'", argv[optind]);
  if (!input || !save || !n_specs)
    return cli_usage_error("grad", "%s is required",
                           !input ? "--input" : !n_specs ? "--layer" : "--save");
  cli_common_warn(&co);
  cli_files files = {0};
  cli_files_in(&files, input);
  cli_files_out(&files, save, CLI_OUT_PB);
  cli_model cm;
  int status = cli_model_open_checked("grad", &co.model, &files, &cm);
  if (status) return status;
  const dd_model *m = cm.model;
  status = 1;
  dd_tensor *x = NULL, *g = NULL;
  dd_dream_layer layers[DD_DREAM_MAX_LAYERS];
  for (int i = 0; i < n_specs; i++)
    if (cli_resolve_spec(m, specs[i], &layers[i], &err)) {
      cli_report(&err);
      goto done;
    }
  if (dd_tensor_load_pb(input, &x, NULL, &err)) {
    cli_report(&err);
    goto done;
  }
  double obj;
  if (dd_input_gradient(m, x, layers, n_specs, cm.max_memory, &g, &obj, &err)) {
    cli_report(&err);
    goto done;
  }
  if (dd_tensor_save_pb(save, g, dd_model_value_name(m, dd_model_input(m)), &err)) {
    cli_report(&err);
    goto done;
  }
  double norm = 0;
  for (int64_t i = 0; i < dd_tensor_numel(g); i++) norm += (double)dd_f32(g)[i] * dd_f32(g)[i];
  cli_summary(&co, "objective %.9g, |grad| %.9g -> %s", obj, sqrt(norm), save);
  status = 0;
done:
  dd_tensor_free(x);
  dd_tensor_free(g);
  cli_model_close(&cm);
  return status;
}
