/* synth_trace.c - see synth_trace.h. */
#include "synth_trace.h"

#include "attn.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static float uniform(uint64_t *s) { /* [-1, 1) */
  *s ^= *s << 13;
  *s ^= *s >> 7;
  *s ^= *s << 17;
  return (float)((double)(*s >> 11) * (2.0 / 9007199254740992.0) - 1.0);
}

int synth_trace(model_trace *t, int64_t n_layers, int64_t seq, int64_t hq,
                int64_t hk, int64_t d, int causal, float amp, uint64_t seed,
                const char *const *words) {
  return synth_trace_qk(t, n_layers, seq, seq, hq, hk, d, causal, amp, seed,
                        words, NULL);
}

int synth_trace_qk(model_trace *t, int64_t n_layers, int64_t seq, int64_t seq_k,
                   int64_t hq, int64_t hk, int64_t d, int causal, float amp,
                   uint64_t seed, const char *const *words,
                   const char *const *key_words) {
  if (model_trace_alloc_qk(t, n_layers, seq, seq_k, key_words != NULL, hq, hk,
                           d, causal) != 0)
    return -1;
  snprintf(t->model, sizeof t->model, "%s", causal ? "decoder" : "encoder");
  uint64_t s = seed * 0x9E3779B97F4A7C15ull + 1;
  float *v = calloc((size_t)(seq_k * hk), sizeof *v); /* (seq_k, hk, 1) */
  float *o = calloc((size_t)(seq * hq), sizeof *o);   /* (seq, hq, 1) */
  int rc = v && o ? 0 : -1;
  for (int64_t l = 0; rc == 0 && l < n_layers; l++) {
    model_trace_layer *y = &t->layers[l];
    for (int64_t x = 0; x < seq * hq * d; x++)
      y->q[x] = amp * uniform(&s);
    for (int64_t x = 0; x < seq_k * hk * d; x++)
      y->k[x] = amp * uniform(&s);
    attn_params p;
    attn_params_init(&p);
    p.q = attn_tensor_bshd(y->q, ATTN_DTYPE_F32, 1, seq, hq, d);
    p.k = attn_tensor_bshd(y->k, ATTN_DTYPE_F32, 1, seq_k, hk, d);
    p.v = attn_tensor_bshd(v, ATTN_DTYPE_F32, 1, seq_k, hk, 1);
    p.o = attn_tensor_bshd(o, ATTN_DTYPE_F32, 1, seq, hq, 1);
    p.lse = y->lse; /* (1, hq, seq) = the trace's (hq, seq) */
    p.scale = y->scale;
    p.causal = causal ? ATTN_CAUSAL_BOTTOM_RIGHT : ATTN_CAUSAL_NONE;
    if (attn_forward(NULL, &p) != ATTN_OK)
      rc = -1;
  }
  for (int64_t i = 0; rc == 0 && i < seq; i++) {
    char name[32];
    snprintf(name, sizeof name, "t%lld", (long long)i);
    if (model_trace_set_token(t, i, words ? words[i] : name) != 0)
      rc = -1;
  }
  for (int64_t j = 0; rc == 0 && key_words && j < seq_k; j++)
    if (model_trace_set_key_token(t, j, key_words[j]) != 0)
      rc = -1;
  free(v);
  free(o);
  if (rc != 0)
    model_trace_free(t);
  return rc;
}
