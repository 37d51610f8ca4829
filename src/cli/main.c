/* dream: the command line.  `dream [SUBCOMMAND] [options]`; without a known subcommand word
 * the arguments are the dream's, so `dream --layer inception_4c/output in.jpg out.jpg` works. */
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"

/* Every subcommand listed in commands.def is defined in src/cli/cmd_<name>.c. */
#define DD_CMD(name, summary) int cmd_##name(int argc, char **argv);
#include "cli/commands.def"
#undef DD_CMD

typedef struct command {
  const char *name, *summary;
  int (*run)(int argc, char **argv);
} command;

static const command commands[] = {
#define DD_CMD(name, summary) {#name, summary, cmd_##name},
#include "cli/commands.def"
#undef DD_CMD
};
#define N_COMMANDS (sizeof commands / sizeof commands[0])

static void usage(FILE *f) {
  fprintf(f,
          "usage: dream [SUBCOMMAND] [options] ...\n"
          "       dream [dream] [options] IN OUT     (the subcommand word is optional)\n\n"
          "subcommands:\n");
  for (size_t i = 0; i < N_COMMANDS; i++)
    fprintf(f, "  %-12s %s\n", commands[i].name, commands[i].summary);
  fprintf(f, "\n`dream SUBCOMMAND --help` for each one's options.\n");
}

int main(int argc, char **argv) {
  if (argc >= 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help"))) {
    usage(stdout);
    return 0;
  }
  if (argc >= 2)
    for (size_t i = 0; i < N_COMMANDS; i++)
      if (!strcmp(argv[1], commands[i].name)) return commands[i].run(argc - 1, argv + 1);
  if (argc < 2) {
    usage(stderr);
    return 2;
  }
  /* No subcommand word: the whole command line is the dream's. */
  argv[0] = "dream";
  return cmd_dream(argc, argv);
}
