/*
 * trace.h - what a model run keeps so that its attention can be drawn later
 * (`attn show`): per layer, the queries and keys exactly as the attention
 * kernel saw them (after RoPE) and the log-sum-exp of every query row. A
 * probability is then recomputed on demand, row by row, as
 *
 *     p[h][i][j] = exp(scale * dot(q[i][h], k[j][h / (heads_q / heads_kv)])
 *                      - lse[h][i])          for every visible key j
 *
 * so no seq x seq matrix is ever held (attnmap.h does that recomputation).
 * The runners fill a trace when the caller asks for one; one sequence only.
 */
#ifndef ATTN_MODEL_TRACE_H
#define ATTN_MODEL_TRACE_H

#include <stdint.h>

typedef struct model_trace_layer {
  int64_t seq;      /* tokens (queries and keys: self-attention)          */
  int64_t heads_q;  /* query heads                                        */
  int64_t heads_kv; /* key heads; heads_q is a multiple (GQA groups)      */
  int64_t head_dim; /* d                                                  */
  float scale;      /* the score scale the kernel used (1/sqrt(d))        */
  int causal;       /* 1: query i sees keys j <= i; 0: every key          */
  float *q;         /* (seq, heads_q, head_dim)                           */
  float *k;         /* (seq, heads_kv, head_dim)                          */
  float *lse;       /* (heads_q, seq): natural log of sum_j exp(scale q.k) */
} model_trace_layer;

typedef struct model_trace {
  int64_t n_layers;
  model_trace_layer *layers; /* (n_layers)                               */
  int64_t n_tokens;          /* == every layer's seq                     */
  char **tokens;             /* (n_tokens) display text of each token,
                                UTF-8, NUL-terminated ("[CLS]", "fox",
                                " jumps" shown as "jumps"...)            */
  char model[32];            /* "encoder" or "decoder" (for captions)    */
} model_trace;

/* Allocates n_layers layers of the given shape (q, k and lse zeroed) and
 * n_tokens empty token strings; 0 on success, -1 on allocation failure or
 * a bad shape (t is then left empty and safe to free). */
int model_trace_alloc(model_trace *t, int64_t n_layers, int64_t seq,
                      int64_t heads_q, int64_t heads_kv, int64_t head_dim,
                      int causal);
/* Copies s into token i; 0 on success, -1 on failure. */
int model_trace_set_token(model_trace *t, int64_t i, const char *s);
/* Frees everything the trace owns; t may be zeroed or half-built. */
void model_trace_free(model_trace *t);

#endif
