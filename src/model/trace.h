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
 *
 * Cross-attention (a trained encoder-decoder's, trained_trace.c): queries
 * and keys are different sequences, seq_k != seq, labelled by key_tokens.
 * A causal mask is then aligned bottom-right, as the kernel's default:
 * query i sees keys j <= i + seq_k - seq.
 */
#ifndef ATTN_MODEL_TRACE_H
#define ATTN_MODEL_TRACE_H

#include <stdint.h>

typedef struct model_trace_layer {
  int64_t seq;      /* queries (and keys, for self-attention)             */
  int64_t seq_k;    /* keys: seq for self-attention                       */
  int64_t heads_q;  /* query heads                                        */
  int64_t heads_kv; /* key heads; heads_q is a multiple (GQA groups)      */
  int64_t head_dim; /* d                                                  */
  float scale;      /* the score scale the kernel used (1/sqrt(d))        */
  int causal;       /* 1: query i sees keys j <= i + seq_k - seq; 0: all  */
  float *q;         /* (seq, heads_q, head_dim)                           */
  float *k;         /* (seq_k, heads_kv, head_dim)                        */
  float *lse;       /* (heads_q, seq): natural log of sum_j exp(scale q.k) */
} model_trace_layer;

typedef struct model_trace {
  int64_t n_layers;
  model_trace_layer *layers; /* (n_layers)                               */
  int64_t n_tokens;          /* == every layer's seq                     */
  char **tokens;             /* (n_tokens) display text of each token,
                                UTF-8, NUL-terminated ("[CLS]", "fox",
                                " jumps" shown as "jumps"...)            */
  int64_t n_key_tokens;      /* == every layer's seq_k                   */
  char **key_tokens;         /* (n_key_tokens), or NULL: the keys are the
                                queries' tokens (self-attention)         */
  char model[32];            /* "encoder", "decoder", "encdec cross"...  */
} model_trace;

/* Allocates n_layers layers of the given shape (q, k and lse zeroed) and
 * n_tokens empty token strings; 0 on success, -1 on allocation failure or
 * a bad shape (t is then left empty and safe to free). */
int model_trace_alloc(model_trace *t, int64_t n_layers, int64_t seq,
                      int64_t heads_q, int64_t heads_kv, int64_t head_dim,
                      int causal);
/* The same with seq_k keys (cross-attention when seq_k != seq or
 * key_tokens is nonzero: the trace then holds seq_k key tokens too). */
int model_trace_alloc_qk(model_trace *t, int64_t n_layers, int64_t seq,
                         int64_t seq_k, int key_tokens, int64_t heads_q,
                         int64_t heads_kv, int64_t head_dim, int causal);
/* Copies s into token i; 0 on success, -1 on failure. */
int model_trace_set_token(model_trace *t, int64_t i, const char *s);
/* Copies s into key token j (a trace with key tokens only). */
int model_trace_set_key_token(model_trace *t, int64_t j, const char *s);
/* Key j's text: key_tokens[j], or tokens[j] for self-attention; never
 * NULL ("" when unset or out of range). */
const char *model_trace_key_token(const model_trace *t, int64_t j);
/* Query i's text, never NULL. */
const char *model_trace_query_token(const model_trace *t, int64_t i);
/* Frees everything the trace owns; t may be zeroed or half-built. */
void model_trace_free(model_trace *t);

#endif
