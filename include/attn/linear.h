/*
 * attn/linear.h - linear attention (Katharopoulos et al. 2020, "Transformers
 * are RNNs"), forward, backward and a recurrent state for decoding (0.5).
 * Included by attn.h; may also be included on its own.
 */
#ifndef ATTN_LINEAR_H
#define ATTN_LINEAR_H

#include "../attn.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------------ */
/* Linear attention                                                         */
/* ------------------------------------------------------------------------ */
/*
 * With the feature map phi(x) = elu(x) + 1 (x + 1 for x > 0, exp(x) else;
 * always > 0) applied elementwise, per batch b and query head h (kv head
 * g = h / (heads_q / heads_kv), as in attn_forward):
 *
 *     w[i][j]   = dot(phi(q[b,i,h,:]), phi(k[b,j,g,:]))   for visible j
 *     o[b,i,h,:] = sum_j w[i][j] v[b,j,g,:] / max(sum_j w[i][j], FLT_MIN)
 *
 * No scale, no softmax, no additive epsilon: the maths of the paper. The
 * denominator is > 0 whenever a key is visible (phi > 0); FLT_MIN guards
 * the rows where it is 0 in f32 (no visible key, or features that underflow
 * to 0): o is then sum_j w v / FLT_MIN, which is 0 for a row with no key
 * and never larger than max |v| (the weights then sum to less than 1).
 *
 * Non-causal: every key is visible; S = sum_j phi(k_j) v_j^T [dim, dim_v]
 * and z = sum_j phi(k_j) are computed once per (batch, query head), then
 * each row in O(dim dim_v): time O((seq_q + seq_k) dim dim_v) per head.
 * Causal (ATTN_CAUSAL_BOTTOM_RIGHT: row i sees keys j <= i + seq_k - seq_q,
 * the first seq_q - seq_k rows none when seq_q > seq_k; ATTN_CAUSAL_TOP_LEFT:
 * j <= i): chunked form, chunks of ATTN_LINEAR_CHUNK query rows; inside a
 * chunk the weights are computed exactly (quadratic in the chunk), the keys
 * before it come through the running state S, z. Time O(seq (C dim +
 * dim dim_v)), memory O(dim dim_v) per head plus the chunk's buffers:
 * nothing of size seq x seq or seq x dim x dim_v.
 *
 * All arithmetic is f32. Work items are (batch, query head) in the
 * forward and (batch, kv head) in the backward, each computed by one
 * thread with the same instructions whatever the team size: results are
 * bitwise the same for any thread count. NaN or infinity in an input
 * reaches, through the sums, every row whose weights include it (a
 * non-finite key or value makes every later row of a causal call, or
 * every row of a non-causal one, NaN).
 */
#define ATTN_LINEAR_CHUNK 64

typedef struct attn_linear_params {
  attn_tensor q;      /* [batch, seq_q, heads_q, dim]   f32|bf16|f16   */
  attn_tensor k;      /* [batch, seq_k, heads_kv, dim]                 */
  attn_tensor v;      /* [batch, seq_k, heads_kv, dim_v]               */
  attn_tensor o;      /* out [batch, seq_q, heads_q, dim_v]            */
  attn_causal causal; /* NONE (default), BOTTOM_RIGHT or TOP_LEFT    */
  /* backward (attn_linear_backward): gradients of sum(dout * o) w.r.t.
   * q, k, v (overwritten; dk and dv summed over a kv head's query heads),
   * through elu + 1 (phi'(x) = 1 for x > 0, exp(x) else). o is not read
   * (the backward recomputes what it needs), and may be unset. */
  attn_tensor dout;      /* in  [batch, seq_q, heads_q, dim_v]              */
  attn_tensor dq;        /* out [batch, seq_q, heads_q, dim]                */
  attn_tensor dk;        /* out [batch, seq_k, heads_kv, dim]               */
  attn_tensor dv;        /* out [batch, seq_k, heads_kv, dim_v]             */
  int num_threads;       /* 0 = the context's                               */
  void *workspace;       /* optional caller memory: then no allocation at all */
  size_t workspace_size; /* bytes at workspace (attn_linear_*_workspace_size) */
  char *error_message;   /* optional: the reason of a failure            */
  size_t error_message_size;
} attn_linear_params;

ATTN_API void attn_linear_params_init_sized(attn_linear_params *p, size_t size);
/* o = linear attention of q, k, v. Bad input (shapes that differ, dims
 * over 256, a bad dtype, o overlapping an input) gets a status and, with
 * error_message set, the reason. */
ATTN_API attn_status attn_linear_forward_sized(attn_context *ctx,
                                               const attn_linear_params *p,
                                               size_t size);
/* dq, dk, dv from q, k, v and dout (o is recomputed, not read). */
ATTN_API attn_status attn_linear_backward_sized(attn_context *ctx,
                                                const attn_linear_params *p,
                                                size_t size);
/* Bytes of workspace the call needs with p's shapes and thread count
 * (num_threads, else the context's): pass that much in p->workspace and
 * the call allocates nothing. */
ATTN_API attn_status attn_linear_forward_workspace_size_sized(
    attn_context *ctx, const attn_linear_params *p, size_t size, size_t *bytes);
ATTN_API attn_status attn_linear_backward_workspace_size_sized(
    attn_context *ctx, const attn_linear_params *p, size_t size, size_t *bytes);

/* ------------------------------------------------------------------------ */
/* Recurrent state: token-by-token decoding                                 */
/* ------------------------------------------------------------------------ */
/*
 * Per batch b and kv head g, S [dim, dim_v] and z [dim] in f32, the sums
 * over every key appended so far. attn_linear_state_step appends the n
 * tokens of p (q [batch, n, heads_q, dim], k and v [batch, n, heads_kv,
 * ...], n >= 1) one after another, writing each token's output into p->o
 * after its own key joined the state: the causal form, so stepping token
 * by token equals attn_linear_forward with ATTN_CAUSAL_BOTTOM_RIGHT on the
 * whole sequence (within f32 rounding: the sums are taken in another
 * order). p->causal is ignored (a state is causal by construction); the
 * backward fields are ignored. Single-threaded per call (the work per
 * token is O(heads dim dim_v)); no allocation.
 */
typedef struct attn_linear_state attn_linear_state;

/* A zeroed state; ATTN_ERR_INVALID_SHAPE for sizes < 1 (dims over 256:
 * ATTN_ERR_HEAD_DIM), ATTN_ERR_OUT_OF_MEMORY. */
ATTN_API attn_status attn_linear_state_create(attn_linear_state **out,
                                              int64_t batch, int64_t heads_kv,
                                              int64_t dim, int64_t dim_v);
ATTN_API void attn_linear_state_free(attn_linear_state *s); /* NULL ok */
/* Back to no token (zeros); NULL is ignored. */
ATTN_API void attn_linear_state_reset(attn_linear_state *s);
/* Tokens appended since create or reset. -1 for NULL. */
ATTN_API int64_t attn_linear_state_length(const attn_linear_state *s);
/* Read-only views of S [batch, heads_kv, dim, dim_v] and z [batch,
 * heads_kv, dim], contiguous f32 (for checkpoints and tests); NULL for a
 * NULL state. */
ATTN_API const float *attn_linear_state_s(const attn_linear_state *s);
ATTN_API const float *attn_linear_state_z(const attn_linear_state *s);
ATTN_API attn_status attn_linear_state_step_sized(attn_context *ctx,
                                                  attn_linear_state *s,
                                                  const attn_linear_params *p,
                                                  size_t size);

#if !defined(ATTN_BUILDING_LIBRARY)
static inline void attn_linear_params_init(attn_linear_params *p) {
  attn_linear_params_init_sized(p, sizeof *p);
}
static inline attn_status attn_linear_forward(attn_context *ctx,
                                              const attn_linear_params *p) {
  return attn_linear_forward_sized(ctx, p, sizeof *p);
}
static inline attn_status attn_linear_backward(attn_context *ctx,
                                               const attn_linear_params *p) {
  return attn_linear_backward_sized(ctx, p, sizeof *p);
}
static inline attn_status
attn_linear_forward_workspace_size(attn_context *ctx,
                                   const attn_linear_params *p, size_t *bytes) {
  return attn_linear_forward_workspace_size_sized(ctx, p, sizeof *p, bytes);
}
static inline attn_status attn_linear_backward_workspace_size(
    attn_context *ctx, const attn_linear_params *p, size_t *bytes) {
  return attn_linear_backward_workspace_size_sized(ctx, p, sizeof *p, bytes);
}
static inline attn_status attn_linear_state_step(attn_context *ctx,
                                                 attn_linear_state *s,
                                                 const attn_linear_params *p) {
  return attn_linear_state_step_sized(ctx, s, p, sizeof *p);
}
#endif

#ifdef __cplusplus
}
#endif

#endif /* ATTN_LINEAR_H */
