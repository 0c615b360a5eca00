/* trace.c - allocation of a model_trace (see trace.h). */
#include "trace.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static float *zeros(int64_t a, int64_t b, int64_t c) {
  if (a <= 0 || b <= 0 || c <= 0 || a > INT64_MAX / b ||
      a * b > INT64_MAX / c || (uint64_t)(a * b * c) > SIZE_MAX / sizeof(float))
    return NULL;
  return calloc((size_t)(a * b * c), sizeof(float));
}

int model_trace_alloc(model_trace *t, int64_t n_layers, int64_t seq,
                      int64_t heads_q, int64_t heads_kv, int64_t head_dim,
                      int causal) {
  memset(t, 0, sizeof *t);
  if (n_layers <= 0 || n_layers > 4096 || seq <= 0 || heads_kv <= 0 ||
      heads_q <= 0 || heads_q % heads_kv != 0 || head_dim <= 0)
    return -1;
  t->layers = calloc((size_t)n_layers, sizeof *t->layers);
  t->tokens = calloc((size_t)seq, sizeof *t->tokens);
  if (!t->layers || !t->tokens) {
    model_trace_free(t);
    return -1;
  }
  t->n_layers = n_layers;
  t->n_tokens = seq;
  for (int64_t l = 0; l < n_layers; l++) {
    model_trace_layer *y = &t->layers[l];
    y->seq = seq;
    y->heads_q = heads_q;
    y->heads_kv = heads_kv;
    y->head_dim = head_dim;
    y->scale = (float)(1.0 / sqrt((double)head_dim));
    y->causal = causal;
    y->q = zeros(seq, heads_q, head_dim);
    y->k = zeros(seq, heads_kv, head_dim);
    y->lse = zeros(heads_q, seq, 1);
    if (!y->q || !y->k || !y->lse) {
      model_trace_free(t);
      return -1;
    }
  }
  return 0;
}

int model_trace_set_token(model_trace *t, int64_t i, const char *s) {
  if (!t || i < 0 || i >= t->n_tokens || !s)
    return -1;
  size_t n = strlen(s);
  char *c = malloc(n + 1);
  if (!c)
    return -1;
  memcpy(c, s, n + 1);
  free(t->tokens[i]);
  t->tokens[i] = c;
  return 0;
}

void model_trace_free(model_trace *t) {
  if (!t)
    return;
  if (t->layers)
    for (int64_t l = 0; l < t->n_layers; l++) {
      free(t->layers[l].q);
      free(t->layers[l].k);
      free(t->layers[l].lse);
    }
  if (t->tokens)
    for (int64_t i = 0; i < t->n_tokens; i++)
      free(t->tokens[i]);
  free(t->layers);
  free(t->tokens);
  memset(t, 0, sizeof *t);
}
