/*
 * cmd_show.c - `attn show "sentence"`: runs a model on the sentence,
 * keeping what is needed to draw its attention (models.h, trace.h), and
 * draws it (show.h): the interactive page, PNG and SVG heat maps into DIR,
 * and the chosen token's attention in the terminal. The models `attn
 * train` writes are drawn the same way: the encoder-decoder's three kinds
 * of attention each into a subdirectory, the ViT's with its image.
 *
 * Parsing, running the model, choosing the token and writing the files are
 * separate functions. Defaults: the encoder, DIR ".", the last layer, head
 * 0, the word nearest the middle of the sentence.
 */
#include "args.h"
#include "cli.h"

#include "attnmap.h"
#include "models.h"
#include "show.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

const char cmd_show_help[] =
    "attn show \"sentence\" [--model encoder|decoder|encdec|vit] [--out DIR] "
    "[--layer L]"
    "\n          [--head H] [--token WORD]   what the attention heads look at"
    "\n  runs the model (encoder: all-MiniLM-L6-v2, 6 layers x 12 heads; "
    "decoder:\n  SmolLM2-135M, 30 layers x 9 heads on 3 KV heads, causal) "
    "and writes into\n  DIR (default: the current directory, made if "
    "missing) attention.html\n  (every layer and head, self-contained), "
    "layerL_headH.png and .svg for\n  every head of layer L, and "
    "layerL_heads.png (all of them); prints WORD's\n  attention in layer L, "
    "head H (coloured on a terminal unless NO_COLOR).\n"
    "  --layer L   0-based (default: the last)   --head H  0-based (default "
    "0)\n"
    "  --token WORD  a token's text (case-insensitive) or, when no token "
    "reads\n                so, its index (default: the word nearest the "
    "middle)\n"
    "  --format LIST  html,png,svg or none (default: all three)\n"
    "  --model encdec  `attn train encdec`'s model (--weights default\n"
    "                train-encdec/model.safetensors) on a number: attn show "
    "4721\n                --model encdec; writes DIR/encoder, DIR/decoder "
    "(self-attention)\n                and DIR/cross (rows: the words "
    "written, columns: the digits),\n                prints the "
    "cross-attention\n"
    "  --model vit   `attn train vit`'s model (train-vit/model.safetensors) "
    "on an\n                image: an index into scikit-learn's digits "
    "(0..1796) or an\n                8x8 .npy of 0..16; adds "
    "layerL_patches.png (the class token's\n                attention laid "
    "over the image)\n"
    "  --weights PATH  the model (default: its Python package)  --threads T "
    "(0 = all)\n"
    "  Inputs over 128 tokens are drawn in blocks (at most 128 a side), with "
    "the\n  exact rows around WORD in layer L; '--' ends the options\n";

typedef struct show_opts {
  const char *text, *model, *out, *layer, *head, *token, *weights, *format;
  int threads;
  int html, png, svg; /* from --format */
} show_opts;

/* ---------------------------------------------------------------------- */
/* Parsing                                                                */
/* ---------------------------------------------------------------------- */

static void parse_format(show_opts *o) {
  o->html = o->png = o->svg = 1;
  if (!o->format)
    return;
  o->html = o->png = o->svg = 0;
  if (strcmp(o->format, "none") == 0)
    return;
  const char *s = o->format;
  while (*s) {
    size_t n = strcspn(s, ",");
    if (n == 4 && strncmp(s, "html", 4) == 0)
      o->html = 1;
    else if (n == 3 && strncmp(s, "png", 3) == 0)
      o->png = 1;
    else if (n == 3 && strncmp(s, "svg", 3) == 0)
      o->svg = 1;
    else
      cli_fail(CLI_EXIT_USAGE,
               "--format: expected html, png, svg (comma-separated) or none, "
               "got '%s'",
               o->format);
    s += n + (s[n] == ',');
  }
}

static void parse(int argc, char **argv, show_opts *o) {
  args a = args_start(argc, argv);
  int rest = 0; /* after "--": the sentence only */
  while (a.i + 1 < argc) {
    const char *w = argv[a.i + 1];
    if (!rest && strcmp(w, "--") == 0) {
      rest = 1;
      a.i++;
      continue;
    }
    if (rest || strncmp(w, "--", 2) != 0) {
      if (o->text)
        cli_fail(CLI_EXIT_USAGE,
                 "show: give one sentence (quote it), got '%s' and '%s'",
                 o->text, w);
      o->text = argv[++a.i];
      continue;
    }
    args_next(&a);
    if (args_is(&a, "--help")) {
      fputs(cmd_show_help, stdout);
      exit(0);
    } else if (args_is(&a, "--model")) {
      args_set_once(&o->model, args_value(&a), "--model");
    } else if (args_is(&a, "--out")) {
      args_set_once(&o->out, args_value(&a), "--out");
    } else if (args_is(&a, "--layer")) {
      args_set_once(&o->layer, args_value(&a), "--layer");
    } else if (args_is(&a, "--head")) {
      args_set_once(&o->head, args_value(&a), "--head");
    } else if (args_is(&a, "--token")) {
      args_set_once(&o->token, args_value(&a), "--token");
    } else if (args_is(&a, "--format")) {
      args_set_once(&o->format, args_value(&a), "--format");
    } else if (args_is(&a, "--weights")) {
      args_set_once(&o->weights, args_value(&a), "--weights");
    } else if (args_is(&a, "--threads")) {
      o->threads = args_threads(args_value(&a));
    } else {
      args_unknown(&a, "show");
    }
  }
  if (!o->text)
    cli_fail(CLI_EXIT_USAGE, "show: give a sentence, e.g. attn show \"The "
                             "quick brown fox\"");
  if (!o->model)
    o->model = "encoder";
  if (strcmp(o->model, "encoder") != 0 && strcmp(o->model, "decoder") != 0 &&
      strcmp(o->model, "encdec") != 0 && strcmp(o->model, "vit") != 0)
    cli_fail(CLI_EXIT_USAGE,
             "--model: expected encoder, decoder, encdec or vit, got '%s'",
             o->model);
  if (!o->out)
    o->out = ".";
  if (!o->out[0])
    cli_fail(CLI_EXIT_USAGE, "--out: empty directory name");
  parse_format(o);
}

/* ---------------------------------------------------------------------- */
/* Choosing the layer, head and token                                     */
/* ---------------------------------------------------------------------- */

/* The token's text without a WordPiece "##" or a leading space. */
static const char *bare(const char *s) {
  if (s[0] == '#' && s[1] == '#' && s[2])
    return s + 2;
  while (*s == ' ')
    s++;
  return s;
}

static int is_word(const char *s) {
  if (s[0] == '[' || s[0] == '<') /* [CLS], [SEP], <|im_start|> */
    return 0;
  for (; *s; s++)
    if (isalnum((unsigned char)*s) || ((unsigned char)*s & 0x80))
      return 1;
  return 0;
}

/* The query token want names; the word nearest the middle when want is
 * NULL, or (strict 0) when no token reads so. */
static int64_t choose_token(const model_trace *t, const char *want,
                            int strict) {
  const int64_t n = t->n_tokens;
  if (!want) { /* the word nearest the middle */
    for (int64_t d = 0; d <= n; d++)
      for (int s = -1; s <= 1; s += 2) {
        int64_t i = n / 2 + s * d;
        if (i >= 0 && i < n && t->tokens[i] && is_word(t->tokens[i]))
          return i;
      }
    return n / 2;
  }
  for (int pass = 0; pass < 2; pass++) /* exact, then without ## or space */
    for (int64_t i = 0; i < n; i++) {
      const char *s = t->tokens[i] ? t->tokens[i] : "";
      if (strcasecmp(pass ? bare(s) : s, pass ? bare(want) : want) == 0)
        return i;
    }
  char *end = NULL;
  errno = 0;
  long long k = strtoll(want, &end, 10);
  if (*want && end && !*end && !errno && k >= 0 && k < n)
    return (int64_t)k;
  if (!strict)
    return choose_token(t, NULL, 1);
  char list[600] = "";
  size_t used = 0;
  for (int64_t i = 0; i < n && used + 40 < sizeof list; i++)
    used += (size_t)snprintf(list + used, sizeof list - used, "%s%.30s",
                             i ? " " : "", t->tokens[i] ? t->tokens[i] : "");
  cli_fail(CLI_EXIT_USAGE,
           "--token '%s': no such token and no index below %lld (tokens: "
           "%s%s)",
           want, (long long)n, list, used + 40 >= sizeof list ? " ..." : "");
}

static int64_t choose_index(const char *opt, const char *v, int64_t dflt,
                            int64_t count) {
  if (!v)
    return dflt;
  return (int64_t)args_int(opt, v, 0, count - 1);
}

/* ---------------------------------------------------------------------- */
/* Running and writing                                                    */
/* ---------------------------------------------------------------------- */

/* What the trace and the view own (cli_calloc frees them themselves). */
static void free_trace(void *p) { model_trace_free(p); }

static void free_view(void *p) { attnmap_view_free(p); }

static void progress(int64_t done, int64_t total) {
  fprintf(stderr, "\rattn show: attention maps, layer %lld of %lld",
          (long long)done, (long long)total);
  if (done == total)
    fputs("\n", stderr);
}

/* mkdir -p */
static void make_dir(const char *dir) {
  char *p = cli_calloc((int64_t)strlen(dir) + 1, 1, "--out");
  memcpy(p, dir, strlen(dir));
  for (char *s = p + 1;; s++) {
    const char c = *s;
    if (c == '/' || c == '\0') {
      *s = '\0';
      if (mkdir(p, 0777) != 0 && errno != EEXIST)
        cli_fail(CLI_EXIT_RUNTIME, "--out %s: cannot make %s: %s", dir, p,
                 strerror(errno));
      *s = c;
    }
    if (c == '\0')
      break;
  }
  struct stat st;
  if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode))
    cli_fail(CLI_EXIT_RUNTIME, "--out %s: not a directory", dir);
}

/* dir/name into path (4096 bytes); fails when it does not fit. */
static const char *join(char *path, const char *dir, const char *name) {
  const size_t n = strlen(dir);
  const int k =
      snprintf(path, 4096, "%s%s%s", dir, dir[n - 1] == '/' ? "" : "/", name);
  if (k < 0 || k >= 4096)
    cli_fail(CLI_EXIT_RUNTIME, "--out %s: path too long", dir);
  return path;
}

static void write_files(const show_opts *o, const show_input *in) {
  char err[512], name[96], path[4096];
  const int64_t L = in->layer, H = in->view->heads_q;
  if (!o->html && !o->png && !o->svg)
    return;
  make_dir(o->out);
  if (o->html &&
      show_html(in, join(path, o->out, "attention.html"), err, sizeof err))
    cli_fail(CLI_EXIT_RUNTIME, "%s", err);
  for (int64_t h = 0; h < H; h++) {
    snprintf(name, sizeof name, "layer%lld_head%lld.png", (long long)L,
             (long long)h);
    if (o->png &&
        show_png_head(in, L, h, join(path, o->out, name), err, sizeof err))
      cli_fail(CLI_EXIT_RUNTIME, "%s", err);
    snprintf(name, sizeof name, "layer%lld_head%lld.svg", (long long)L,
             (long long)h);
    if (o->svg &&
        show_svg_head(in, L, h, join(path, o->out, name), err, sizeof err))
      cli_fail(CLI_EXIT_RUNTIME, "%s", err);
  }
  snprintf(name, sizeof name, "layer%lld_heads.png", (long long)L);
  if (o->png &&
      show_png_layer(in, L, join(path, o->out, name), err, sizeof err))
    cli_fail(CLI_EXIT_RUNTIME, "%s", err);
}

static void print_where(const show_opts *o, const show_input *in) {
  const long long L = (long long)in->layer, H = (long long)in->view->heads_q;
  const char *d = o->out, *sep = d[strlen(d) - 1] == '/' ? "" : "/";
  if (!o->html && !o->png && !o->svg)
    return;
  printf("\nwrote into %s:\n", d);
  if (o->html)
    printf("  %s%sattention.html       the page: every layer and head "
           "(open it in a browser)\n",
           d, sep);
  if (o->png)
    printf("  %s%slayer%lld_heads.png     all %lld heads of layer %lld\n"
           "  %s%slayer%lld_head{0..%lld}.png  one head each\n",
           d, sep, L, H, L, d, sep, L, H - 1);
  if (o->svg)
    printf("  %s%slayer%lld_head{0..%lld}.svg  one head each, with text "
           "labels\n",
           d, sep, L, H - 1);
}

/* Draws trace t into dir: the view, the terminal view (when term), the
 * files. default_token < 0: the word nearest the middle. --token must
 * name a token of the trace shown in the terminal; the others fall back
 * to their default. Returns what was drawn (its view is freed at exit by
 * cli_cleanup). */
static show_input draw(const show_opts *o, model_trace *t, const char *dir,
                       int term, int64_t default_token) {
  char err[512] = "";
  show_input in = {t, NULL, o->text, 0, 0, 0};
  in.layer = choose_index("--layer", o->layer, t->n_layers - 1, t->n_layers);
  in.head = choose_index("--head", o->head, 0, t->layers[0].heads_q);
  in.token = !o->token && default_token >= 0 ? default_token
                                             : choose_token(t, o->token, term);
  attnmap_view *v = cli_calloc(1, sizeof *v, "the maps");
  cli_defer(free_view, v);
  const int64_t n = t->n_tokens;
  const int tty = isatty(STDERR_FILENO);
  if (attnmap_view_build(v, t, in.layer, in.token, o->threads,
                         tty && n > 256 ? progress : NULL, err,
                         sizeof err) != 0)
    cli_fail(CLI_EXIT_RUNTIME, "%s", err);
  in.view = v;
  if (term) {
    const char *nc = getenv("NO_COLOR");
    const int color = isatty(STDOUT_FILENO) && !(nc && nc[0]);
    char *s = show_term(&in, color);
    if (!s)
      cli_fail(CLI_EXIT_RUNTIME, "out of memory (terminal view)");
    cli_defer(free, s);
    fputs(s, stdout);
  }
  show_opts od = *o;
  od.out = dir;
  write_files(&od, &in);
  print_where(&od, &in);
  return in;
}

/* The encoder-decoder: three traces, each into its subdirectory. */
static void show_encdec(const show_opts *o) {
  static const char *const dirs[3] = {"encoder", "decoder", "cross"};
  char err[512] = "", words[256] = "", path[4096];
  model_trace *t = cli_calloc(3, sizeof *t, "the traces");
  for (int k = 0; k < 3; k++)
    cli_defer(free_trace, &t[k]);
  if (encdec_traces(o->weights, o->text, o->threads, t, words, sizeof words,
                    err, sizeof err) != 0)
    cli_fail(CLI_EXIT_RUNTIME, "%s", err);
  printf("%s -> %s\n\n", o->text, words);
  for (int k = 2; k >= 0; k--) { /* the cross-attention first */
    const int any = o->html || o->png || o->svg;
    const char *dir = any ? join(path, o->out, dirs[k]) : o->out;
    if (any)
      make_dir(o->out);
    draw(o, &t[k], dir, k == 2, -1);
  }
}

/* The ViT: one trace, and the class token's attention over the image. */
static void show_vit(const show_opts *o) {
  char err[512] = "", path[4096], name[96], title[160];
  model_trace *t = cli_calloc(1, sizeof *t, "the trace");
  cli_defer(free_trace, t);
  float pixels[64];
  int label = -1, predicted = -1;
  if (vit_trace(o->weights, o->text, o->threads, t, pixels, &label, &predicted,
                err, sizeof err) != 0)
    cli_fail(CLI_EXIT_RUNTIME, "%s", err);
  char truth[32] = "";
  if (label >= 0)
    snprintf(truth, sizeof truth, ", label %d", label);
  printf("image %s: predicted %d%s\n\n", o->text, predicted, truth);
  show_input in = draw(o, t, o->out, 1, 0);
  if (!o->png)
    return;
  snprintf(name, sizeof name, "layer%lld_patches.png", (long long)in.layer);
  snprintf(title, sizeof title,
           "vit layer %lld: attention of %s over the patches (predicted "
           "%d%s)",
           (long long)in.layer, model_trace_query_token(t, in.token), predicted,
           truth);
  if (show_png_patches(&in, in.layer, pixels, title, join(path, o->out, name),
                       err, sizeof err) != 0)
    cli_fail(CLI_EXIT_RUNTIME, "%s", err);
  printf("  %s%s%s  the attention of %s over the image, every head\n", o->out,
         o->out[strlen(o->out) - 1] == '/' ? "" : "/", name,
         model_trace_query_token(t, in.token));
}

int cmd_show(int argc, char **argv) {
  show_opts o;
  memset(&o, 0, sizeof o);
  parse(argc, argv, &o);
  cli_parsed(); /* parse-only mode (cli.h) ends here */
  const int tty = isatty(STDERR_FILENO);
  if (tty)
    fprintf(stderr, "attn show: running the %s...\n", o.model);
  if (strcmp(o.model, "encdec") == 0) {
    show_encdec(&o);
  } else if (strcmp(o.model, "vit") == 0) {
    show_vit(&o);
  } else {
    const int decoder = strcmp(o.model, "decoder") == 0;
    model_trace *t = cli_calloc(1, sizeof *t, "the trace");
    cli_defer(free_trace, t);
    char err[512] = "";
    int rc =
        decoder
            ? decoder_trace(o.weights, o.text, o.threads, t, err, sizeof err)
            : encoder_trace(o.weights, o.text, o.threads, t, err, sizeof err);
    if (rc != 0)
      cli_fail(CLI_EXIT_RUNTIME, "%s", err);
    draw(&o, t, o.out, 1, -1);
  }
  if (fflush(stdout) != 0)
    cli_fail(CLI_EXIT_RUNTIME, "cannot write to stdout");
  cli_cleanup();
  return 0;
}
