/* libFuzzer target: the dream command line.  The input is split at NUL bytes into argv words
 * (after "dream"), parsed by cli_dream_parse, and each accepted --layer spec is resolved
 * against a small model whose values carry GoogLeNet's layer names, so the name lookup and
 * its "closest names" suggestions are fuzzed too. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cmd_dream.h"
#include "dream/dream.h"
#include "dream/model.h"
#include "onnx.pb-c.h"

#define MAX_WORDS 64

/* x -> Relu -> conv1/7x7_s2 -> Relu -> inception_4c/output -> ... : names only matter. */
static dd_model *names_model(void) {
  static char *names[] = {"data", "conv1/7x7_s2", "inception_3b/output", "inception_4c/output",
                          "inception_5b/output", "prob"};
  enum { N = sizeof names / sizeof names[0] - 1 };
  Onnx__NodeProto node[N], *nodep[N];
  for (int i = 0; i < N; i++) {
    onnx__node_proto__init(&node[i]);
    node[i].op_type = "Relu";
    node[i].n_input = node[i].n_output = 1;
    node[i].input = &names[i];
    node[i].output = &names[i + 1];
    nodep[i] = &node[i];
  }
  Onnx__ValueInfoProto in = ONNX__VALUE_INFO_PROTO__INIT, out = ONNX__VALUE_INFO_PROTO__INIT;
  Onnx__ValueInfoProto *inp = &in, *outp = &out;
  in.name = names[0];
  out.name = names[N];
  Onnx__GraphProto g = ONNX__GRAPH_PROTO__INIT;
  g.n_node = N;
  g.node = nodep;
  g.n_input = g.n_output = 1;
  g.input = &inp;
  g.output = &outp;
  Onnx__ModelProto mp = ONNX__MODEL_PROTO__INIT;
  mp.graph = &g;
  size_t len = onnx__model_proto__get_packed_size(&mp);
  uint8_t *buf = malloc(len);
  if (!buf) abort();
  onnx__model_proto__pack(&mp, buf);
  dd_model *m = NULL;
  dd_err err;
  if (dd_model_parse(buf, len, "names.onnx", &m, &err)) abort();
  free(buf);
  return m;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static dd_model *model;
  if (!model) model = names_model();
  /* A writable copy: getopt permutes argv, and every word needs its NUL. */
  char *text = malloc(size + 1);
  if (!text) return 0;
  memcpy(text, data, size);
  text[size] = 0;
  char *argv[MAX_WORDS + 2];
  int argc = 0;
  argv[argc++] = "dream";
  for (size_t i = 0; i <= size && argc <= MAX_WORDS;) {
    argv[argc++] = text + i;
    i += strlen(text + i) + 1;
  }
  argv[argc] = NULL;

  cli_dream_args a;
  dd_err err;
  if (cli_dream_parse(argc, argv, &a, &err) == DD_OK && !a.help) {
    if (!a.in || !a.out || a.n_layers < 0 || a.n_layers > DD_DREAM_MAX_LAYERS) abort();
    for (int i = 0; i < a.n_layers; i++) {
      dd_dream_layer l;
      dd_dream_layer_resolve(model, a.layers[i], &l, &err);
    }
  }
  free(text);
  return 0;
}
