/*
 * show_term.c - the terminal view of `attn show`: one query token's exact
 * attention row, "brown attends to: the 0.10, quick 0.30, brown 0.50",
 * each entry on the viridis colour of its weight (24-bit ANSI background,
 * scaled to the row's largest weight) when color is on. Keys the causal
 * mask hides are left out. Rows of more than SHOW_TERM_ALL keys list the
 * SHOW_TERM_TOP largest weights, largest first, with their token indices.
 * Lines wrap at SHOW_TERM_WIDTH columns. Token text is sanitised: control
 * characters (an escape sequence hidden in a token) print as '?'.
 */
#include "show.h"

#include "unicode.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SHOW_TERM_ALL 40
#define SHOW_TERM_TOP 20
#define SHOW_TERM_WIDTH 78

/* The token's text made safe for a terminal; returns its columns (code
 * points, a fair guess for the alphabetic scripts). */
static size_t term_text(show_buf *b, const char *s) {
  size_t n = strlen(s), i = 0, cols = 0;
  while (i < n) {
    uint32_t cp = 0;
    size_t k = utf8_decode(s + i, n - i, &cp);
    if (k == 0)
      k = 1;
    if (cp < 0x20 || (cp >= 0x7F && cp < 0xA0))
      cp = '?';
    char u[4];
    show_buf_add(b, u, utf8_encode(cp, u));
    cols++;
    i += k;
  }
  return cols;
}

typedef struct entry {
  int64_t j;
  float p;
} entry;

static int by_weight(const void *a, const void *b) {
  const entry *x = a, *y = b;
  if (x->p != y->p)
    return x->p < y->p ? 1 : -1;
  return x->j < y->j ? -1 : x->j > y->j;
}

/* One "token 0.12" item, coloured; returns its columns. */
static size_t term_item(show_buf *b, const show_input *in, const entry *e,
                        float top, int with_index, int color) {
  const char *tok = model_trace_key_token(in->trace, e->j);
  if (color) {
    unsigned char c[3];
    show_color(e->p / top, c);
    const int dark = 299 * c[0] + 587 * c[1] + 114 * c[2] < 128000;
    show_buf_printf(b, "\x1b[48;2;%d;%d;%dm\x1b[%sm", c[0], c[1], c[2],
                    dark ? "97" : "30");
  }
  size_t cols = term_text(b, tok);
  char num[48];
  int m = with_index ? snprintf(num, sizeof num, "#%lld %.2f", (long long)e->j,
                                (double)e->p)
                     : snprintf(num, sizeof num, " %.2f", (double)e->p);
  show_buf_add(b, num, (size_t)m);
  if (color)
    show_buf_str(b, "\x1b[0m");
  return cols + (size_t)m;
}

char *show_term(const show_input *in, int color) {
  const model_trace *t = in->trace;
  const model_trace_layer *y = &t->layers[in->layer];
  const int64_t n = y->seq, nk = attnmap_keys(y), i = in->token;
  int64_t keys = y->causal ? i + 1 + nk - n : nk; /* visible: 0..keys-1 */
  keys = keys < 0 ? 0 : keys > nk ? nk : keys;
  float *row = malloc((size_t)nk * sizeof *row);
  entry *e = malloc((size_t)(keys > 0 ? keys : 1) * sizeof *e);
  show_buf b = {0};
  if (!row || !e || attnmap_row(y, in->head, i, row) != 0) {
    free(row);
    free(e);
    return NULL;
  }
  for (int64_t j = 0; j < keys; j++)
    e[j] = (entry){j, row[j]};
  const float top = show_max(row, nk);
  const int many = keys > SHOW_TERM_ALL;
  const int64_t shown = many ? SHOW_TERM_TOP : keys;
  if (many)
    qsort(e, (size_t)keys, sizeof *e, by_weight);
  show_buf_printf(&b, "%s, layer %lld (0..%lld), head %lld (0..%lld)", t->model,
                  (long long)in->layer, (long long)t->n_layers - 1,
                  (long long)in->head, (long long)y->heads_q - 1);
  if (y->heads_kv != y->heads_q)
    show_buf_printf(&b, " (kv head %lld)",
                    (long long)(in->head / (y->heads_q / y->heads_kv)));
  show_buf_printf(&b, ", token %lld of %lld:\n", (long long)i, (long long)n);
  size_t col = term_text(&b, model_trace_query_token(t, i));
  char head[96];
  int hn = many ? snprintf(head, sizeof head,
                           " attends to (the %lld largest of %lld):",
                           (long long)shown, (long long)keys)
                : snprintf(head, sizeof head, " attends to:");
  show_buf_add(&b, head, (size_t)hn);
  col += (size_t)hn;
  double rest = 1.0;
  for (int64_t k = 0; k < shown; k++) {
    show_buf t2 = {0};
    size_t w = term_item(&t2, in, &e[k], top, many, color);
    rest -= e[k].p;
    const char *sep = k + 1 < shown ? "," : "";
    if (col + 1 + w + 1 > SHOW_TERM_WIDTH && col > 2) {
      show_buf_str(&b, "\n ");
      col = 1;
    }
    show_buf_str(&b, " ");
    if (t2.s)
      show_buf_add(&b, t2.s, t2.n);
    if (t2.failed)
      b.failed = 1;
    free(t2.s);
    show_buf_str(&b, sep);
    col += 1 + w + strlen(sep);
  }
  if (many)
    show_buf_printf(&b, "\n  (the other %lld keys: %.2f in all)",
                    (long long)(keys - shown), rest < 0 ? 0.0 : rest);
  show_buf_str(&b, "\n");
  free(row);
  free(e);
  if (b.failed) {
    free(b.s);
    return NULL;
  }
  return b.s;
}
