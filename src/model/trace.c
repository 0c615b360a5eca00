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
  return model_trace_alloc_qk(t, n_layers, seq, seq, 0, heads_q, heads_kv,
                              head_dim, causal);
}

int model_trace_alloc_qk(model_trace *t, int64_t n_layers, int64_t seq,
                         int64_t seq_k, int key_tokens, int64_t heads_q,
                         int64_t heads_kv, int64_t head_dim, int causal) {
  memset(t, 0, sizeof *t);
  if (n_layers <= 0 || n_layers > 4096 || seq <= 0 || seq_k <= 0 ||
      heads_kv <= 0 || heads_q <= 0 || heads_q % heads_kv != 0 || head_dim <= 0)
    return -1;
  const int keys = key_tokens || seq_k != seq;
  t->layers = calloc((size_t)n_layers, sizeof *t->layers);
  t->tokens = calloc((size_t)seq, sizeof *t->tokens);
  t->key_tokens = keys ? calloc((size_t)seq_k, sizeof *t->key_tokens) : NULL;
  if (!t->layers || !t->tokens || (keys && !t->key_tokens)) {
    model_trace_free(t);
    return -1;
  }
  t->n_layers = n_layers;
  t->n_tokens = seq;
  t->n_key_tokens = seq_k;
  for (int64_t l = 0; l < n_layers; l++) {
    model_trace_layer *y = &t->layers[l];
    y->seq = seq;
    y->seq_k = seq_k;
    y->heads_q = heads_q;
    y->heads_kv = heads_kv;
    y->head_dim = head_dim;
    y->scale = (float)(1.0 / sqrt((double)head_dim));
    y->causal = causal;
    y->q = zeros(seq, heads_q, head_dim);
    y->k = zeros(seq_k, heads_kv, head_dim);
    y->lse = zeros(heads_q, seq, 1);
    if (!y->q || !y->k || !y->lse) {
      model_trace_free(t);
      return -1;
    }
  }
  return 0;
}

static int set_text(char **slot, const char *s) {
  size_t n = strlen(s);
  char *c = malloc(n + 1);
  if (!c)
    return -1;
  memcpy(c, s, n + 1);
  free(*slot);
  *slot = c;
  return 0;
}

int model_trace_set_token(model_trace *t, int64_t i, const char *s) {
  if (!t || i < 0 || i >= t->n_tokens || !s)
    return -1;
  return set_text(&t->tokens[i], s);
}

int model_trace_set_key_token(model_trace *t, int64_t j, const char *s) {
  if (!t || !t->key_tokens || j < 0 || j >= t->n_key_tokens || !s)
    return -1;
  return set_text(&t->key_tokens[j], s);
}

const char *model_trace_key_token(const model_trace *t, int64_t j) {
  if (!t->key_tokens)
    return model_trace_query_token(t, j);
  return j >= 0 && j < t->n_key_tokens && t->key_tokens[j] ? t->key_tokens[j]
                                                           : "";
}

const char *model_trace_query_token(const model_trace *t, int64_t i) {
  return t->tokens && i >= 0 && i < t->n_tokens && t->tokens[i] ? t->tokens[i]
                                                                : "";
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
  if (t->key_tokens)
    for (int64_t j = 0; j < t->n_key_tokens; j++)
      free(t->key_tokens[j]);
  free(t->layers);
  free(t->tokens);
  free(t->key_tokens);
  memset(t, 0, sizeof *t);
}
