/*
 * main.c - the `attn` command line: the command table, --help, --version.
 *
 * Each command is one file (cmd_<name>.c) with its help text beside its
 * parser; args.c reads options, operands.c reads and writes .npy operands
 * (through the library's attn/io.h), paths.c refuses one file named twice.
 * Exit status and error output: see cli.h.
 */
#include "cli.h"

#include "attn.h"

#include <stdio.h>
#include <string.h>

extern const char cmd_decode_help[]; /* cmd_decode.c */
int cmd_decode(int argc, char **argv);
extern const char cmd_merge_help[]; /* cmd_merge.c */
int cmd_merge(int argc, char **argv);
#ifdef ATTN_HAVE_RING
extern const char cmd_ring_help[]; /* cmd_ring.c */
int cmd_ring(int argc, char **argv);
#endif
#ifdef ATTN_HAVE_LAYER
extern const char cmd_mha_help[]; /* cmd_mha.c */
int cmd_mha(int argc, char **argv);
#endif
/* attn_model built (src/model/) */
#ifdef ATTN_HAVE_MODEL
extern const char cmd_tokenize_help[]; /* cmd_tokenize.c */
int cmd_tokenize(int argc, char **argv);
extern const char cmd_embed_help[]; /* cmd_embed.c */
int cmd_embed(int argc, char **argv);
extern const char cmd_generate_help[]; /* cmd_generate.c */
int cmd_generate(int argc, char **argv);
extern const char cmd_show_help[]; /* cmd_show.c */
int cmd_show(int argc, char **argv);
extern const char cmd_plot_help[]; /* cmd_plot.c */
int cmd_plot(int argc, char **argv);
extern const char cmd_train_help[]; /* cmd_train.c */
int cmd_train(int argc, char **argv);
#endif

/* One command a line, some behind #ifdef. */
/* clang-format off */
static const cli_command commands[] = {
    {"run", cmd_run_help, cmd_run},
    {"grad", cmd_grad_help, cmd_grad},
    {"bench", cmd_bench_help, cmd_bench},
    {"peak", cmd_peak_help, cmd_peak},
    {"decode", cmd_decode_help, cmd_decode},
    {"merge", cmd_merge_help, cmd_merge},
#ifdef ATTN_HAVE_LAYER /* libattn_layer built (OpenBLAS found) */
    {"mha", cmd_mha_help, cmd_mha},
#endif
#ifdef ATTN_HAVE_RING /* libattn_ring built (MPI found) */
    {"ring", cmd_ring_help, cmd_ring},
#endif
#ifdef ATTN_HAVE_MODEL /* attn_model built (OpenBLAS and stb found) */
    {"tokenize", cmd_tokenize_help, cmd_tokenize},
    {"embed", cmd_embed_help, cmd_embed},
    {"generate", cmd_generate_help, cmd_generate},
    {"show", cmd_show_help, cmd_show},
    {"plot", cmd_plot_help, cmd_plot},
    {"train", cmd_train_help, cmd_train},
#endif
};
/* clang-format on */

void cli_print_help(void) {
  fputs("usage: attn <command> [options]\n\n", stdout);
  for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++) {
    fputs(commands[i].help, stdout);
    fputs("\n", stdout);
  }
  fputs("attn --help | --version\n"
        "\n"
        "Exit status: 0 ok, 1 runtime or library error (files, their "
        "contents,\n"
        "the library's checks), 2 usage error (flags and their values, the "
        "same\n"
        "file given twice).\n",
        stdout);
}

int main(int argc, char **argv) {
  if (argc < 2)
    cli_fail(CLI_EXIT_USAGE, "missing command (try attn --help)");
  const char *cmd = argv[1];
  if (strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0 ||
      strcmp(cmd, "help") == 0) {
    cli_print_help();
    return 0;
  }
  if (strcmp(cmd, "--version") == 0 || strcmp(cmd, "version") == 0) {
    printf("%s\n", attn_version_string());
    return 0;
  }
  for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++) {
    if (strcmp(cmd, commands[i].name) == 0)
      return commands[i].main(argc, argv);
  }
  cli_fail(CLI_EXIT_USAGE, "unknown command '%s' (try attn --help)", cmd);
}
