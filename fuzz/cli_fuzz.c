/*
 * cli_fuzz.c - libFuzzer target for the `attn` command's argument parsing
 * (tools/attn/: main.c's command table, args.c, each command's parser and
 * its checks of the option values, paths.c's same-file check).
 *
 * The input is split at NUL bytes into argv[1..] (argv[0] is "attn"), at
 * most 64 words. The command runs in the command line's parse-only mode
 * (cli.h): a failure returns here instead of exiting, and the command
 * stops, returning here, once its options are parsed and checked, before
 * it reads a file or computes. Every input must end in one of those two
 * ways: a usage (2) or runtime (1) error with a non-empty one-line message,
 * or "parsed"; never a crash, a sanitizer report, a leak, or a command that
 * runs on past its parser.
 *
 * Not fuzzed: --help and the bare "help"/"version" words (they print the
 * help text and exit(0), which would end the fuzzer), and `attn ring`
 * (MPI; not linked here).
 */
#include "cli.h"

#include <setjmp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int attn_cli_main(int argc, char **argv); /* cli_main.c */

#define MAX_WORDS 64

/* --help (or --help=...) anywhere: the help text and exit(0). */
static int asks_help(const char *w) {
  return strncmp(w, "--help", 6) == 0 && (w[6] == '\0' || w[6] == '=');
}

static int skipped(int argc, char **argv) {
  if (argc >= 2) {
    static const char *const top[] = {"-h", "help", "--version", "version"};
    for (size_t i = 0; i < sizeof top / sizeof top[0]; i++)
      if (strcmp(argv[1], top[i]) == 0)
        return 1;
  }
  for (int i = 1; i < argc; i++)
    if (asks_help(argv[i]))
      return 1;
  return 0;
}

/* A failure's message: non-empty, one line, no control characters. */
static void check_message(const char *m) {
  size_t n = strlen(m);
  if (n == 0 || n >= 1024)
    abort();
  for (size_t i = 0; i < n; i++)
    if ((unsigned char)m[i] < 0x20 || (unsigned char)m[i] == 0x7f)
      abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size > 4096)
    return 0;
  char *buf = malloc(size + 1);
  if (buf == NULL)
    return 0;
  if (size)
    memcpy(buf, data, size);
  buf[size] = '\0';
  char *argv[MAX_WORDS + 2];
  int argc = 0;
  argv[argc++] = (char *)"attn";
  for (size_t at = 0; at < size && argc <= MAX_WORDS;) {
    argv[argc++] = buf + at;
    at += strlen(buf + at) + 1;
  }
  argv[argc] = NULL;
  if (skipped(argc, argv)) {
    free(buf);
    return 0;
  }
  jmp_buf env;
  cli_parse_only(&env);
  volatile int rc = setjmp(env);
  if (rc == 0) {
    (void)attn_cli_main(argc, argv);
    abort(); /* the command ran on past its parser (no cli_parsed) */
  }
  cli_parse_only(NULL);
  if (rc == CLI_EXIT_USAGE || rc == CLI_EXIT_RUNTIME)
    check_message(cli_last_message());
  else if (rc != CLI_PARSED)
    abort();
  free(buf);
  return 0;
}
