/* dream run: the graph on one TensorProto input; chosen values saved as TensorProto files,
 * the format of the ONNX test sets, so they compare directly with other runtimes. */
#include <errno.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli/cli.h"
#include "dream/infer.h"

static const char run_help[] =
    "usage: dream run [options] --input IN.pb --output NAME [--output NAME]... --save DIR\n\n"
    "Runs the model on the tensor in IN.pb (an ONNX TensorProto, as in the ONNX test sets)\n"
    "and writes each requested value to DIR/NAME.pb, with every '/' of NAME replaced by '_'\n"
    "(float32, dims set, the tensor's name field holding the value's name).  NAME is a value\n"
    "name as `dream layers` lists it, or a convN alias.  Without --output, the model's outputs\n"
    "are written.\n\n"
    "options:\n" CLI_MODEL_HELP
    "  -i, --input IN.pb    the input tensor\n"
    "      --output NAME    a value to save (repeatable)\n"
    "  -o, --save DIR       directory to write to (created if missing)\n" CLI_COMMON_HELP;

enum { OPT_OUTPUT = 3001 };

int cmd_run(int argc, char **argv) {
  static const struct option longopts[] = {CLI_MODEL_LONGOPTS,
                                           {"input", required_argument, NULL, 'i'},
                                           {"output", required_argument, NULL, OPT_OUTPUT},
                                           {"save", required_argument, NULL, 'o'},
                                           {NULL, 0, NULL, 0}};
  cli_common co;
  cli_common_init(&co);
  dd_err err;
  const char *input = NULL, *dir = NULL;
  const char **names = calloc((size_t)argc + 1, sizeof *names);
  if (!names) return cli_errorf("out of memory");
  int n_names = 0, c;
  opterr = 0;
  optind = 0;
  while ((c = getopt_long(argc, argv, ":m:i:o:qh", longopts, NULL)) != -1) {
    int r = cli_common_opt(&co, c, optarg, &err);
    if (r < 0) {
      free(names);
      return cli_usage_error("run", "%s", err.msg);
    }
    if (r) continue;
    switch (c) {
      case 'i': input = optarg; break;
      case OPT_OUTPUT: names[n_names++] = optarg; break;
      case 'o': dir = optarg; break;
      case 'h':
        free(names);
        fputs(run_help, stdout);
        return 0;
      default:
        free(names);
        return cli_getopt_error("run", c, argv);
    }
  }
  if (optind < argc || !input || !dir) {
    free(names);
    if (optind < argc) return cli_usage_error("run", "unexpected argument '%s'", argv[optind]);
    return cli_usage_error("run", "%s is required", !input ? "--input" : "--save");
  }

  cli_common_warn(&co);
  /* Large buffers from mmap, and back to the kernel when freed: glibc otherwise raises its
   * mmap threshold to the size of the first large block freed (the model file's bytes, freed
   * once parsed) and keeps freed heap memory below twice that, so the freed file and input
   * tensor would still count in the process's memory while the network runs. */
  mallopt(M_MMAP_THRESHOLD, 1 << 20);
  dd_preset pre;
  cli_model cm;
  if (cli_model_resolve(&co.model, &pre) || cli_model_load(&co.model, &pre, &cm)) {
    free(names);
    return 1;
  }
  const dd_model *m = cm.model;
  int status = 1;
  dd_tensor *x = NULL;
  dd_infer *session = NULL;
  int *targets = calloc((size_t)n_names + (size_t)dd_model_num_outputs(m) + 1, sizeof *targets);
  if (!targets) {
    cli_errorf("out of memory");
    goto done;
  }
  if (!n_names)
    for (int i = 0; i < dd_model_num_outputs(m); i++)
      names[n_names++] = dd_model_value_name(m, dd_model_output(m, i));
  for (int i = 0; i < n_names; i++)
    if (cli_resolve(m, names[i], &targets[i], &err)) {
      cli_report(&err);
      goto done;
    }
  if (dd_tensor_load_pb(input, &x, NULL, &err)) {
    cli_report(&err);
    goto done;
  }
  int in = dd_model_input(m);
  if (in < 0) {
    cli_errorf("%s: the model has no data input", dd_model_name(m));
    goto done;
  }
  char sb[128];
  if (x->dtype != DD_F32) {
    cli_errorf("%s: the tensor is %s; the model's input '%s' takes float32", input,
               dd_dtype_name(x->dtype), dd_model_value_name(m, in));
    goto done;
  }
  /* The one inference path: it checks the tensor's shape against the declared input.  The
   * tensor goes into the session's input and is freed before the run: held once. */
  int rc = dd_infer_new(m, &x->shape, targets, n_names, cm.max_memory, &session, &err);
  if (!rc) {
    memcpy(dd_infer_input(session), x->data, (size_t)dd_tensor_numel(x) * sizeof(float));
    dd_tensor_free(x);
    x = NULL;
    rc = dd_infer_run(session, NULL, &err);
  }
  if (rc) {
    if (err.code == DD_EARG && strstr(err.msg, "does not fit")) dd_err_prefix(&err, "%s", input);
    cli_report(&err);
    goto done;
  }

  struct stat st;
  if (mkdir(dir, 0777) != 0 && (errno != EEXIST || stat(dir, &st) != 0 || !S_ISDIR(st.st_mode))) {
    cli_errorf("%s: cannot create the directory: %s", dir, strerror(errno));
    goto done;
  }
  for (int i = 0; i < n_names; i++) {
    const dd_tensor *t = dd_infer_output(session, i);
    size_t len = strlen(dir) + strlen(names[i]) + 8;
    char *path = malloc(len);
    if (!path) {
      cli_errorf("out of memory");
      goto done;
    }
    int n = snprintf(path, len, "%s/", dir);
    for (const char *s = names[i]; *s; s++) path[n++] = *s == '/' ? '_' : *s;
    memcpy(path + n, ".pb", 4);
    /* Never over an input: the tensor file, the model, its labels. */
    cli_files files = {0};
    cli_files_in(&files, input);
    cli_files_in(&files, cm.preset.model_path);
    cli_files_in(&files, cm.preset.labels_path);
    cli_files_out(&files, path, CLI_OUT_PB);
    int rc = cli_files_check("run", &files);
    if (rc) {
      free(path);
      status = rc;
      goto done;
    }
    rc = dd_tensor_save_pb(path, t, dd_model_value_name(m, targets[i]), &err);
    if (!rc) printf("%s  %s  %s\n", path, dd_model_value_name(m, targets[i]),
                    dd_shape_str(&t->shape, sb, sizeof sb));
    free(path);
    if (rc) {
      cli_report(&err);
      goto done;
    }
  }
  status = 0;
done:
  dd_infer_free(session);
  dd_tensor_free(x);
  free(targets);
  free(names);
  cli_model_close(&cm);
  return status;
}
