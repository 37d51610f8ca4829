/* Temporary entry point: loads a model and reports.  Replaced by the subcommand CLI. */
#include <stdio.h>

#include "dream/graph.h"
#include "dream/model.h"

int main(int argc, char **argv) {
  dd_err err = {0};
  dd_model *m;
  if (argc < 2) return 2;
  if (dd_model_load(argv[1], &m, &err)) {
    fprintf(stderr, "dream: %s\n", err.msg);
    return 1;
  }
  printf("%s: opset %lld, %d nodes, %lld params\n", dd_model_name(m), (long long)dd_model_opset(m),
         dd_model_num_nodes(m), (long long)dd_model_num_params(m));
  dd_model_free(m);
  return 0;
}
