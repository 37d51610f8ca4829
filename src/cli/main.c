/* dream: the command line.  `dream [SUBCOMMAND] [options]`; without a subcommand word the
 * arguments are the dream's, so `dream --layer inception_4c/output in.jpg out.jpg` works. */
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "cli/cli.h"
#include "dream/version.h"
#include "util.h"

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
          "       dream [dream] [options] IN OUT     (the subcommand word is optional)\n"
          "       dream help SUBCOMMAND | dream --version\n\n"
          "subcommands:\n");
  for (size_t i = 0; i < N_COMMANDS; i++)
    fprintf(f, "  %-12s %s\n", commands[i].name, commands[i].summary);
  fprintf(f, "\n`dream help SUBCOMMAND` (or `dream SUBCOMMAND --help`) for each one's options.\n");
}

static const command *find(const char *name) {
  for (size_t i = 0; i < N_COMMANDS; i++)
    if (!strcmp(name, commands[i].name)) return &commands[i];
  return NULL;
}

/* The subcommand closest to a mistyped word, or NULL when none is close. */
static const command *closest(const char *word) {
  const command *best = NULL;
  int bestd = 3; /* at most two edits */
  for (size_t i = 0; i < N_COMMANDS; i++) {
    int d = dd_edit_distance(word, commands[i].name);
    if (d < bestd) {
      bestd = d;
      best = &commands[i];
    }
  }
  return best;
}

static int unknown_command(const char *word) {
  const command *c = closest(word);
  if (c) fprintf(stderr, "dream: unknown subcommand '%s'; did you mean '%s'?\n", word, c->name);
  else fprintf(stderr, "dream: unknown subcommand '%s'\n", word);
  fprintf(stderr, "Try 'dream --help'.\n");
  return 2;
}

/* A first word that is not an option, not a file and has no extension reads as a mistyped
 * subcommand rather than as IN: `dream clasify dog.jpg` must not dream 'clasify'. */
static int looks_like_a_command(const char *word) {
  struct stat st;
  return word[0] != '-' && !strchr(word, '.') && !strchr(word, '/') && stat(word, &st) != 0;
}

int main(int argc, char **argv) {
  if (argc < 2) {
    usage(stderr);
    return 2;
  }
  const char *first = argv[1];
  if (!strcmp(first, "--help") || !strcmp(first, "-h")) {
    usage(stdout);
    return 0;
  }
  if (!strcmp(first, "--version")) {
    printf("dream %s\n", DD_VERSION_STRING);
    /* the kernels are chosen at run time: say which, on which CPU */
    const char *cpu, *fp32, *bf16;
    dd_system_kernels(&cpu, &fp32, &bf16);
    printf("cpu: %s\nfp32 kernels: %s\nbf16 kernels: %s\n", cpu, fp32, bf16);
    return 0;
  }
  if (!strcmp(first, "help")) {
    if (argc == 2) {
      usage(stdout);
      return 0;
    }
    const command *c = find(argv[2]);
    if (!c) return unknown_command(argv[2]);
    char *args[] = {argv[2], "--help", NULL};
    return c->run(2, args);
  }
  const command *c = find(first);
  if (c) return c->run(argc - 1, argv + 1);
  if (looks_like_a_command(first)) return unknown_command(first);
  /* No subcommand word: the whole command line is the dream's. */
  argv[0] = "dream";
  return cmd_dream(argc, argv);
}
