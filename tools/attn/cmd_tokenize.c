/*
 * cmd_tokenize.c - `attn tokenize --model encoder|decoder "text"`: the
 * token ids of one text, space-separated on one line (a contract other
 * tools script against).
 *
 * encoder: all-MiniLM-L6-v2's WordPiece (wordpiece.c), [CLS] ... [SEP],
 * never truncated (as Hugging Face's tokenizer called without truncation).
 * decoder: SmolLM2's byte-level BPE, through decoder_tokenize (llama.h,
 * the decoder's file).
 */
#include "args.h"
#include "cli.h"

#include "llama.h"
#include "locate.h"
#include "wordpiece.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char cmd_tokenize_help[] =
    "attn tokenize --model encoder|decoder \"text\"   token ids of a text\n"
    "  prints the ids space-separated on one line: encoder = all-MiniLM-L6-v2"
    "\n  (WordPiece, [CLS] ... [SEP], not truncated), decoder = SmolLM2 "
    "(byte-level\n  BPE). --weights PATH: the encoder's directory or the "
    "decoder's .gguf\n  (default: found through their Python packages)\n";

/* The encoder's ids: vocab.txt of the model directory. */
static void encoder_ids(const char *weights, const char *text, int32_t **ids,
                        int64_t *n) {
  char dir[4096], path[4200], err[512];
  wordpiece *wp;
  if (model_locate(MODEL_ENCODER, weights, dir, sizeof dir, err, sizeof err))
    cli_fail(CLI_EXIT_RUNTIME, "%s", err);
  snprintf(path, sizeof path, "%s/vocab.txt", dir);
  if (wordpiece_load(path, &wp, err, sizeof err) != 0)
    cli_fail(CLI_EXIT_RUNTIME, "%s", err);
  cli_defer((void (*)(void *))wordpiece_free, wp);
  if (wordpiece_encode(wp, text, strlen(text), 0, ids, n, err, sizeof err))
    cli_fail(CLI_EXIT_RUNTIME, "%s", err);
}

int cmd_tokenize(int argc, char **argv) {
  const char *model = NULL, *weights = NULL, *text = NULL;
  args a = args_start(argc, argv);
  while (a.i + 1 < argc) {
    const char *w = argv[a.i + 1];
    if (strcmp(w, "--") == 0 || strncmp(w, "--", 2) != 0) { /* the text */
      if (strcmp(w, "--") == 0) {
        if (a.i + 2 >= argc)
          cli_fail(CLI_EXIT_USAGE, "tokenize: '--' must be followed by the "
                                   "text");
        a.i++;
      }
      if (text)
        cli_fail(CLI_EXIT_USAGE,
                 "tokenize: one text only (got a second: "
                 "'%.40s')",
                 argv[a.i + 1]);
      text = argv[++a.i];
      continue;
    }
    args_next(&a);
    if (args_is(&a, "--help")) {
      fputs(cmd_tokenize_help, stdout);
      exit(0);
    } else if (args_is(&a, "--model")) {
      args_set_once(&model, args_value(&a), "--model");
    } else if (args_is(&a, "--weights")) {
      args_set_once(&weights, args_value(&a), "--weights");
    } else {
      args_unknown(&a, "tokenize");
    }
  }
  if (!model)
    cli_fail(CLI_EXIT_USAGE, "tokenize: --model encoder|decoder is required");
  if (strcmp(model, "encoder") != 0 && strcmp(model, "decoder") != 0)
    cli_fail(CLI_EXIT_USAGE, "--model: '%s' is not encoder or decoder", model);
  if (!text)
    cli_fail(CLI_EXIT_USAGE, "tokenize: the text is missing");
  cli_parsed(); /* parse-only mode (cli.h) ends here */
  int32_t *ids = NULL;
  int64_t n = 0;
  if (model[0] == 'e') {
    encoder_ids(weights, text, &ids, &n);
  } else {
    /* decoder: llama.c's decoder_tokenize (SmolLM2's BPE from the GGUF) */
    char err[512];
    if (decoder_tokenize(weights, text, &ids, &n, err, sizeof err) != 0)
      cli_fail(CLI_EXIT_RUNTIME, "%s", err);
  }
  cli_defer(free, ids);
  for (int64_t i = 0; i < n; i++)
    printf(i ? " %d" : "%d", ids[i]);
  printf("\n");
  if (fflush(stdout) != 0)
    cli_fail(CLI_EXIT_RUNTIME, "cannot write the ids to stdout");
  cli_cleanup();
  return 0;
}
