/* A genuinely unsupported piece of a model fails through the command line with the node, the
 * op and the missing piece named: the tiny models of tests/ref/unsupported_models.py (a Resize
 * in mode 'cubic', a Pad in mode 'wrap'), on every subcommand that loads a model. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "helper_cli.h"

static void setup(void) {
  th_cli_setup();
  char cmd[512];
  snprintf(cmd, sizeof cmd, "/usr/bin/python3 '%s/tests/ref/unsupported_models.py' '%s' >/dev/null",
           DREAM_SOURCE_DIR, th_tmpdir);
  cr_assert_eq(system(cmd), 0, "unsupported_models.py failed: /usr/bin/python3 with numpy and "
               "onnx is required\n%s", cmd);
}

TestSuite(unsupported_cli, .init = setup, .fini = th_cli_teardown, .timeout = 60);

/* Each subcommand on `file` exits with status 1, writes no output file, and says `want` (the
 * whole message after the model's path). */
static void expect_refused(const char *file, const char *want) {
  char m[128], photo[128], out[128], msg[512];
  th_tmp(m, sizeof m, file);
  th_photo("dog.jpg", 40, th_tmp(photo, sizeof photo, "dog.png"));
  snprintf(msg, sizeof msg, "%s: %s", m, want);
  const char *const runs[][12] = {
      {"layers", "-m", m, NULL},
      {"dream", "-m", m, "--layer", "out", "--octaves", "1", "--iters", "1", photo,
       th_tmp(out, sizeof out, "out_dream.png"), NULL},
      {"activations", "-m", m, "--layer", "out", "--size", "16", photo,
       th_tmp(out, sizeof out, "out_act.png"), NULL},
      {"explain", "-m", m, photo, th_tmp(out, sizeof out, "out_explain.png"), NULL},
  };
  for (size_t i = 0; i < sizeof runs / sizeof runs[0]; i++) {
    th_result r = th_run(runs[i]);
    cr_expect_eq(r.status, 1, "%s %s: status %d\n%s", runs[i][0], file, r.status, r.err);
    cr_expect(strstr(r.err, msg), "%s %s: wanted\n  %s\ngot\n  %s", runs[i][0], file, msg, r.err);
    th_result_free(&r);
  }
  /* nothing half-written */
  struct stat st;
  const char *outs[] = {"out_dream.png", "out_act.png", "out_explain.png"};
  for (size_t i = 0; i < 3; i++)
    cr_expect_neq(stat(th_tmp(out, sizeof out, outs[i]), &st), 0, "%s was written", outs[i]);
}

Test(unsupported_cli, resize_cubic_names_node_op_and_mode) {
  expect_refused("resize_cubic.onnx", "node 'up2' (Resize): Resize mode 'cubic' is not supported "
                                      "(only 'nearest' and 'linear')");
}

Test(unsupported_cli, pad_wrap_names_node_op_and_mode) {
  expect_refused("pad_wrap.onnx", "node 'padwrap' (Pad): Pad mode 'wrap' is not supported (only "
                                  "'constant', 'edge' and 'reflect')");
}
